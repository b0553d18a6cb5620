//! Operator range files: `CIDR,country,asn` or `first_ip,last_ip,country,asn` lines.
//!
//! Either of country and ASN may be empty; `#` starts a comment. Where ranges overlap, the
//! most specific (smallest) range that sets a field wins for that field; between identical
//! ranges the later line wins. Lookups are a binary search in a table of disjoint segments
//! built once at load.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use super::error::EnrichError;
use super::unmap;
use tidegate_base::Cidr;

/// One parsed line: an inclusive address range (both ends the same family) and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeEntry {
    /// First address.
    pub first: IpAddr,
    /// Last address (inclusive).
    pub last: IpAddr,
    /// ISO 3166-1 alpha-2 country (upper case).
    pub country: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
}

/// Disjoint inclusive segments `(start, end, value)` sorted by start.
#[derive(Clone, Debug, Default)]
struct Segments<T> {
    segs: Vec<(u128, u128, T)>,
}

impl<T: Clone + PartialEq> Segments<T> {
    /// Flattens overlapping ranges `(first, last, value)`: each point gets the value of the
    /// smallest range covering it (ties: the later one in input order).
    fn build(ranges: &[(u128, u128, T)]) -> Self {
        let mut starts: Vec<usize> = (0..ranges.len()).collect();
        starts.sort_by_key(|&i| ranges[i].0);
        let mut ends: Vec<usize> = (0..ranges.len()).collect();
        ends.sort_by_key(|&i| ranges[i].1);
        let mut points: Vec<u128> = ranges.iter().map(|r| r.0).collect();
        points.extend(ranges.iter().filter_map(|r| r.1.checked_add(1)));
        points.sort_unstable();
        points.dedup();
        // Active ranges keyed by (size, later line first).
        let mut active: BTreeSet<(u128, Reverse<usize>)> = BTreeSet::new();
        let (mut si, mut ei) = (0, 0);
        let mut segs: Vec<(u128, u128, T)> = Vec::new();
        for (k, &p) in points.iter().enumerate() {
            while ei < ends.len() && ranges[ends[ei]].1 < p {
                let i = ends[ei];
                active.remove(&(ranges[i].1 - ranges[i].0, Reverse(i)));
                ei += 1;
            }
            while si < starts.len() && ranges[starts[si]].0 == p {
                let i = starts[si];
                active.insert((ranges[i].1 - ranges[i].0, Reverse(i)));
                si += 1;
            }
            let Some(&(_, Reverse(best))) = active.first() else {
                continue;
            };
            let end = points.get(k + 1).map_or(u128::MAX, |n| n - 1);
            let value = &ranges[best].2;
            match segs.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(p) && last.2 == *value => last.1 = end,
                _ => segs.push((p, end, value.clone())),
            }
        }
        Segments { segs }
    }

    fn get(&self, x: u128) -> Option<&T> {
        let i = self.segs.partition_point(|s| s.0 <= x);
        let s = self.segs.get(i.checked_sub(1)?)?;
        (x <= s.1).then_some(&s.2)
    }
}

/// Per-family, per-field lookup tables built from operator range files.
#[derive(Clone, Debug, Default)]
pub struct RangeTable {
    country_v4: Segments<String>,
    country_v6: Segments<String>,
    asn_v4: Segments<u32>,
    asn_v6: Segments<u32>,
    entries: usize,
}

impl RangeTable {
    /// Loads and merges the given range files (later files win ties with earlier ones).
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<RangeTable, EnrichError> {
        let mut entries = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path).map_err(|source| EnrichError::CsvIo {
                path: path.to_path_buf(),
                source,
            })?;
            entries.extend(parse(&text).map_err(|(line, message)| EnrichError::Csv {
                path: path.to_path_buf(),
                line,
                message,
            })?);
        }
        Ok(RangeTable::from_entries(&entries))
    }

    /// Builds the tables from parsed entries (later entries win ties).
    pub fn from_entries(entries: &[RangeEntry]) -> RangeTable {
        let mut c4 = Vec::new();
        let mut c6 = Vec::new();
        let mut a4 = Vec::new();
        let mut a6 = Vec::new();
        for e in entries {
            let (v4, first, last) = (e.first.is_ipv4(), key(e.first), key(e.last));
            if let Some(c) = &e.country {
                let t = if v4 { &mut c4 } else { &mut c6 };
                t.push((first, last, c.clone()));
            }
            if let Some(a) = e.asn {
                let t = if v4 { &mut a4 } else { &mut a6 };
                t.push((first, last, a));
            }
        }
        RangeTable {
            country_v4: Segments::build(&c4),
            country_v6: Segments::build(&c6),
            asn_v4: Segments::build(&a4),
            asn_v6: Segments::build(&a6),
            entries: entries.len(),
        }
    }

    /// Number of ranges loaded.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when no range was loaded.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Every segment of constant answer: `(is_ipv4, first, last)` as integers (IPv4 as
    /// 32-bit), for compiling enforcement tables.
    pub fn segments(&self) -> Vec<(bool, u128, u128)> {
        let mut out = Vec::new();
        for (v4, t) in [(true, &self.country_v4), (false, &self.country_v6)] {
            out.extend(t.segs.iter().map(|s| (v4, s.0, s.1)));
        }
        for (v4, t) in [(true, &self.asn_v4), (false, &self.asn_v6)] {
            out.extend(t.segs.iter().map(|s| (v4, s.0, s.1)));
        }
        out
    }

    /// Country of the most specific range covering `ip` that sets one.
    pub fn country(&self, ip: IpAddr) -> Option<&str> {
        let ip = unmap(ip);
        let t = if ip.is_ipv4() {
            &self.country_v4
        } else {
            &self.country_v6
        };
        t.get(key(ip)).map(String::as_str)
    }

    /// ASN of the most specific range covering `ip` that sets one.
    pub fn asn(&self, ip: IpAddr) -> Option<u32> {
        let ip = unmap(ip);
        let t = if ip.is_ipv4() {
            &self.asn_v4
        } else {
            &self.asn_v6
        };
        t.get(key(ip)).copied()
    }
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Parses a whole range file; errors are `(1-based line, message)`.
pub fn parse(text: &str) -> Result<Vec<RangeEntry>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(parse_line(line).map_err(|m| (i + 1, m))?);
    }
    Ok(out)
}

/// Parses one non-empty, comment-free line.
pub fn parse_line(line: &str) -> Result<RangeEntry, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let (first, last, country, asn) = match fields.as_slice() {
        [cidr, country, asn] => {
            let c = Cidr::parse(cidr).map_err(|e| e.to_string())?;
            (c.first(), c.last(), *country, *asn)
        }
        [first, last, country, asn] => {
            let first = parse_ip(first)?;
            let last = parse_ip(last)?;
            if first.is_ipv4() != last.is_ipv4() {
                return Err(format!("range {first}..{last} mixes IPv4 and IPv6"));
            }
            if key(first) > key(last) {
                return Err(format!(
                    "range {first}..{last}: first address is after the last"
                ));
            }
            (first, last, *country, *asn)
        }
        _ => {
            return Err(format!(
                "expected `CIDR,country,asn` or `first_ip,last_ip,country,asn`, got {} fields",
                fields.len()
            ));
        }
    };
    let country = parse_country(country)?;
    let asn = parse_asn(asn)?;
    if country.is_none() && asn.is_none() {
        return Err("both country and ASN are empty".to_string());
    }
    Ok(RangeEntry {
        first,
        last,
        country,
        asn,
    })
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map(unmap)
        .map_err(|_| format!("{s:?} is not an IP address"))
}

fn parse_country(s: &str) -> Result<Option<String>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(Some(s.to_ascii_uppercase()))
    } else {
        Err(format!("country {s:?} is not an ISO 3166-1 alpha-2 code"))
    }
}

fn parse_asn(s: &str) -> Result<Option<u32>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let digits = s
        .strip_prefix("AS")
        .or_else(|| s.strip_prefix("as"))
        .unwrap_or(s);
    digits
        .parse::<u32>()
        .map(Some)
        .map_err(|_| format!("ASN {s:?} is not a number in 0..=4294967295"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table(text: &str) -> RangeTable {
        RangeTable::from_entries(&parse(text).unwrap())
    }

    #[test]
    fn both_line_forms_parse() {
        let e = parse("10.0.0.0/8,cn,AS4134\n# c\n\n192.0.2.10,192.0.2.20,,64500 # x\n").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].first, ip("10.0.0.0"));
        assert_eq!(e[0].last, ip("10.255.255.255"));
        assert_eq!(e[0].country.as_deref(), Some("CN"));
        assert_eq!(e[0].asn, Some(4134));
        assert_eq!(e[1].country, None);
        assert_eq!(e[1].asn, Some(64500));
    }

    #[test]
    fn most_specific_range_wins_per_field() {
        let t = table(
            "10.0.0.0/8,CN,100\n10.1.0.0/16,HK,\n10.1.2.0/24,,300\n10.1.2.5,10.1.2.5,MO,400\n",
        );
        assert_eq!(t.country(ip("10.9.9.9")), Some("CN"));
        assert_eq!(t.country(ip("10.1.9.9")), Some("HK"));
        assert_eq!(t.asn(ip("10.1.9.9")), Some(100));
        assert_eq!(t.country(ip("10.1.2.9")), Some("HK"));
        assert_eq!(t.asn(ip("10.1.2.9")), Some(300));
        assert_eq!(t.country(ip("10.1.2.5")), Some("MO"));
        assert_eq!(t.asn(ip("10.1.2.5")), Some(400));
        assert_eq!(t.country(ip("10.1.2.6")), Some("HK"));
        assert_eq!(t.country(ip("11.0.0.0")), None);
        assert_eq!(t.country(ip("9.255.255.255")), None);
        assert_eq!(t.country(ip("10.255.255.255")), Some("CN"));
    }

    #[test]
    fn later_identical_range_wins_and_edges_are_inclusive() {
        let t = table("0.0.0.0/0,US,1\n0.0.0.0/0,CA,2\n255.255.255.255/32,JP,\n");
        assert_eq!(t.country(ip("1.2.3.4")), Some("CA"));
        assert_eq!(t.country(ip("255.255.255.255")), Some("JP"));
        assert_eq!(t.asn(ip("255.255.255.255")), Some(2));
        assert_eq!(t.country(ip("0.0.0.0")), Some("CA"));
    }

    #[test]
    fn ipv6_ranges_are_separate_from_ipv4() {
        let t = table("2001:db8::/32,SG,\n::/0,,9\n");
        assert_eq!(t.country(ip("2001:db8::1")), Some("SG"));
        assert_eq!(t.asn(ip("2001:db8::1")), Some(9));
        assert_eq!(t.country(ip("2001:db9::1")), None);
        // ::/0 is IPv6 only: IPv4 (and IPv4-mapped) addresses are not in it.
        assert_eq!(t.asn(ip("10.0.0.1")), None);
        assert_eq!(t.asn(ip("::ffff:10.0.0.1")), None);
    }

    #[test]
    fn mapped_addresses_look_up_as_ipv4() {
        let t = table("198.51.100.0/24,TW,65000\n");
        assert_eq!(t.country(ip("::ffff:198.51.100.7")), Some("TW"));
        assert_eq!(t.asn(ip("::ffff:198.51.100.7")), Some(65000));
    }

    #[test]
    fn bad_lines_report_their_line_number() {
        let cases = [
            ("10.0.0.0/8,CN\n", "got 2 fields"),
            ("\n10.0.0.1/8,CN,1\n", "host bits are set"),
            ("10.0.0.0/33,CN,1\n", "prefix must be 0..=32"),
            ("# h\nx.y,CN,1\n", "invalid CIDR"),
            ("10.0.0.9,10.0.0.1,CN,1\n", "after the last"),
            ("10.0.0.1,::1,CN,1\n", "mixes IPv4 and IPv6"),
            ("10.0.0.0/8,CHN,1\n", "alpha-2"),
            ("10.0.0.0/8,CN,-1\n", "ASN"),
            ("10.0.0.0/8,,\n", "both country and ASN are empty"),
        ];
        for (text, want) in cases {
            let (line, msg) = parse(text).unwrap_err();
            let expect_line = text
                .lines()
                .position(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .unwrap()
                + 1;
            assert_eq!(line, expect_line, "{text:?}");
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
    }
}
