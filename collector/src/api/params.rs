//! Query-string parameters: every endpoint names the parameters it takes, unknown ones
//! are refused (a typo must not silently widen a search), and each value is checked
//! here so errors name the parameter. Values reach SQL only through bind parameters.

use std::collections::HashMap;

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use tidegate_base::Cidr;

use super::error::{ApiError, ApiResult};

/// Longest time range a query may cover (50 years: stored captures can be old; result
/// sizes are bounded by buckets and limits, not by the range).
pub const MAX_RANGE_MS: i64 = 50 * 366 * 86_400_000;

/// The parameters of one request.
pub struct Params(HashMap<String, String>);

/// A half-open time range `[from, to)` in milliseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, inclusive.
    pub from_ms: i64,
    /// End, exclusive.
    pub to_ms: i64,
}

/// Parses `s` as RFC 3339 or as integer milliseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .expect("current time fits")
}

/// IP protocol number from a number or a name.
pub fn parse_proto(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" | "ipv6-icmp" => Some(58),
        "gre" => Some(47),
        "esp" => Some(50),
        "sctp" => Some(132),
        n => n.parse().ok(),
    }
}

impl Params {
    /// Takes the raw parameters, refusing any not in `allowed`.
    pub fn new(raw: HashMap<String, String>, allowed: &[&str]) -> ApiResult<Self> {
        let mut unknown: Vec<&String> = raw
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            return Err(ApiError::param(
                k.as_str(),
                format!(
                    "unknown parameter; this endpoint takes {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Params(raw))
    }

    /// The parameters as given, sorted (`k=v&k=v`; values percent-free as typed): what a
    /// request asked, for the audit trail.
    pub fn describe(&self) -> String {
        let mut kv: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        kv.sort();
        kv.join("&")
    }

    /// A non-empty value, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// `from`/`to` (RFC 3339 or epoch milliseconds); by default the hour up to now.
    pub fn time_range(&self) -> ApiResult<TimeRange> {
        /// 2255-01-01 in epoch ms: nanosecond timestamps (Int64) end in 2262.
        const MAX_TIME_MS: i64 = 9_025_315_200_000;
        let t = |name: &str| -> ApiResult<Option<i64>> {
            self.get(name)
                .map(|s| match parse_time(s) {
                    Some(v) if (0..=MAX_TIME_MS).contains(&v) => Ok(v),
                    Some(_) => Err(ApiError::param(
                        name,
                        "outside 1970-01-01 .. 2255-01-01 (what the flow tables can hold)",
                    )),
                    None => Err(ApiError::param(
                        name,
                        "expected RFC 3339 time or epoch milliseconds",
                    )),
                })
                .transpose()
        };
        let to_ms = t("to")?.unwrap_or_else(now_ms);
        let from_ms = t("from")?.unwrap_or(to_ms.saturating_sub(3_600_000).max(0));
        if from_ms >= to_ms {
            return Err(ApiError::param("from", "must be before to"));
        }
        if to_ms.saturating_sub(from_ms) > MAX_RANGE_MS {
            return Err(ApiError::param("from", "time range longer than 50 years"));
        }
        Ok(TimeRange { from_ms, to_ms })
    }

    /// An unsigned integer in `min..=max`, or `default`.
    pub fn uint(&self, name: &str, default: u64, min: u64, max: u64) -> ApiResult<u64> {
        match self.get(name) {
            None => Ok(default),
            Some(s) => match s.parse::<u64>() {
                Ok(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(ApiError::param(
                    name,
                    format!("expected an integer between {min} and {max}"),
                )),
            },
        }
    }

    /// `limit` (1..=max, default `default`) and `offset` (0..=100000).
    pub fn page(&self, default: u64, max: u64) -> ApiResult<(u64, u64)> {
        Ok((
            self.uint("limit", default, 1, max)?,
            self.uint("offset", 0, 0, 100_000)?,
        ))
    }

    /// One of `choices` (the first is the default).
    pub fn choice(&self, name: &str, choices: &[&'static str]) -> ApiResult<&'static str> {
        match self.get(name) {
            None => Ok(choices[0]),
            Some(s) => choices.iter().find(|c| **c == s).copied().ok_or_else(|| {
                ApiError::param(name, format!("expected one of {}", choices.join(", ")))
            }),
        }
    }

    /// A comma-separated list whose items are all in `choices` (empty when absent).
    pub fn list(&self, name: &str, choices: &[&str]) -> ApiResult<Vec<String>> {
        let Some(s) = self.get(name) else {
            return Ok(Vec::new());
        };
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| {
                if choices.contains(&x) {
                    Ok(x.to_string())
                } else {
                    Err(ApiError::param(
                        name,
                        format!("{x:?} is not one of {}", choices.join(", ")),
                    ))
                }
            })
            .collect()
    }

    /// A free-form name (line, rule id): at most 128 printable characters.
    pub fn name(&self, name: &str) -> ApiResult<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(s) if s.len() <= 128 && !s.chars().any(char::is_control) => {
                Ok(Some(s.to_string()))
            }
            Some(_) => Err(ApiError::param(
                name,
                "expected at most 128 printable characters",
            )),
        }
    }

    /// A domain name to match by suffix (lower-cased, without a trailing dot): labels of
    /// letters, digits, `-`, `_` and `\`-escapes, at most 253 characters.
    pub fn domain(&self, name: &str) -> ApiResult<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(s) => {
                let d = s.trim_end_matches('.').to_ascii_lowercase();
                let ok = !d.is_empty()
                    && d.len() <= 253
                    && d.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '\\'))
                    });
                if ok {
                    Ok(Some(d))
                } else {
                    Err(ApiError::param(
                        name,
                        "expected a domain name (labels of letters, digits, '-' and '_', at most 253 characters)",
                    ))
                }
            }
        }
    }

    /// An ISO 3166 alpha-2 country code (upper-cased).
    pub fn country(&self, name: &str) -> ApiResult<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(s) if s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic()) => {
                Ok(Some(s.to_ascii_uppercase()))
            }
            Some(_) => Err(ApiError::param(
                name,
                "expected a two-letter country code such as DE",
            )),
        }
    }

    /// An IP address or CIDR network (the rules of [`Cidr`]: host bits must be zero).
    pub fn cidr(&self, name: &str) -> ApiResult<Option<Cidr>> {
        self.get(name)
            .map(|s| {
                Cidr::parse(s).map_err(|e| {
                    ApiError::param(
                        name,
                        format!(
                            "{}; expected an IP address or CIDR such as 192.0.2.0/24 or 2001:db8::/32",
                            e.reason
                        ),
                    )
                })
            })
            .transpose()
    }

    /// A port number.
    pub fn port(&self, name: &str) -> ApiResult<Option<u16>> {
        self.get(name)
            .map(|s| {
                s.parse::<u16>()
                    .map_err(|_| ApiError::param(name, "expected a port number 0-65535"))
            })
            .transpose()
    }

    /// An IP protocol (number or tcp/udp/icmp/icmpv6/gre/esp/sctp).
    pub fn proto(&self, name: &str) -> ApiResult<Option<u8>> {
        self.get(name)
            .map(|s| {
                parse_proto(s).ok_or_else(|| {
                    ApiError::param(
                        name,
                        "expected a protocol number 0-255 or tcp, udp, icmp, icmpv6",
                    )
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)], allowed: &[&str]) -> ApiResult<Params> {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            allowed,
        )
    }

    #[test]
    fn cidrs_map_ipv4_into_the_ipv6_column() {
        let p = |v: &str| {
            Params::new(HashMap::from([("ip".to_string(), v.to_string())]), &["ip"])
                .unwrap()
                .cidr("ip")
        };
        use std::net::Ipv6Addr;
        let (lo, hi) = p("192.0.2.0/24").unwrap().unwrap().v6_range();
        assert_eq!(lo, "::ffff:192.0.2.0".parse::<Ipv6Addr>().unwrap());
        assert_eq!(hi, "::ffff:192.0.2.255".parse::<Ipv6Addr>().unwrap());
        let (_, hi) = p("2001:db8::/32").unwrap().unwrap().v6_range();
        assert_eq!(
            hi,
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        let (lo, hi) = p("10.0.0.1").unwrap().unwrap().v6_range();
        assert_eq!(lo, hi);
        for bad in ["10.0.0.0/33", "bogus", "10.0.0.1/24"] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains("ip"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = p(&[("lmit", "5")], &["limit"]).err().unwrap();
        assert!(matches!(e, ApiError::BadParam { ref param, .. } if param == "lmit"));
        let q = p(&[("limit", "0"), ("from", "yesterday")], &["limit", "from"]).unwrap();
        assert!(
            matches!(q.page(10, 100), Err(ApiError::BadParam { ref param, .. }) if param == "limit")
        );
        assert!(
            matches!(q.time_range(), Err(ApiError::BadParam { ref param, .. }) if param == "from")
        );
    }

    #[test]
    fn times_are_rfc3339_or_epoch_millis() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time("1500"), Some(1500));
        let q = p(&[("from", "2000"), ("to", "1000")], &["from", "to"]).unwrap();
        assert!(q.time_range().is_err());
    }
}
