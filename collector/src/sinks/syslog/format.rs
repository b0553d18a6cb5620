//! RFC 5424 syslog messages, with the MSG part either the description (UTF-8 with a BOM)
//! or a CEF:0 record.
//!
//! A message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [tidegate@32473 ...] MSG`:
//!
//! - PRI = facility * 8 + syslog severity; alert and violation severities map as
//!   critical → 2 (crit), high → 3 (err), medium → 4 (warning), low → 5 (notice),
//!   info → 6 (info).
//! - TIMESTAMP is the event time of the last evidence (never the wall clock), RFC 3339 UTC
//!   with microseconds.
//! - MSGID is the alert or violation kind (`syn_flood`, `deny_list`, ...).
//! - Structured data `tidegate@32473` carries the fields; values escape `"`, `\` and `]`
//!   with a backslash (RFC 5424 section 6.3.3). Absent fields (no port, no source) are
//!   left out.
//! - Plain MSG is the description as UTF-8 preceded by the BOM (RFC 5424 section 6.4), so
//!   receivers know the encoding. A CEF MSG carries no BOM: CEF parsers expect the text
//!   to start with `CEF:0`, and CEF is UTF-8 by definition.
//!
//! CEF: `CEF:0|tidegate|tidegate|<version>|<kind>|<description>|<0-10>|<extensions>`.
//! Header fields escape `\` and `|`, and carry CR/LF as spaces (the header is one line);
//! extension values escape `\` and `=`, and newlines as `\n` / `\r`.
//!
//! Size limit (UDP): when the message is longer than the limit, the MSG part is shortened
//! and nothing else: a plain description is cut at a character boundary and ends in
//! `...`; a CEF record drops extension fields from the end (least important last), then
//! shortens its Name (the description) ending in `...`. Escapes are never split. When the
//! header and structured data alone do not fit, formatting fails with
//! [`SyslogError::TooLarge`].

use std::fmt::Write as _;

use super::error::SyslogError;
use tidegate_threat::Finding;
use tidegate_threat::detect::{Alert, Endpoint};
use tidegate_threat::policy::Violation;

/// Structured-data id of tidegate's parameters (32473 is the private enterprise number
/// reserved for documentation, RFC 5612).
pub const SD_ID: &str = "tidegate@32473";

/// UTF-8 byte order mark that starts a plain MSG.
pub const BOM: &str = "\u{feff}";

/// Marker ending a shortened description.
const ELLIPSIS: &str = "...";

/// The fixed per-sink header fields of every message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Facility code (0-23).
    pub facility: u8,
    /// HOSTNAME field (printable ASCII, at most 255 bytes).
    pub hostname: String,
    /// APP-NAME field (printable ASCII, at most 48 bytes).
    pub app_name: String,
    /// PROCID field (printable ASCII, at most 128 bytes).
    pub procid: String,
}

/// What one message says, independent of encoding: built from an alert or a violation.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Syslog severity (0-7).
    pub severity: u8,
    /// CEF severity (0-10).
    pub cef_severity: u8,
    /// Event time of the last evidence, Unix ns.
    pub time_ns: u64,
    /// MSGID and CEF signature id: the kind.
    pub kind: &'static str,
    /// Structured-data parameters, in order.
    pub params: Vec<(&'static str, String)>,
    /// Human description (plain MSG, CEF Name).
    pub description: String,
    /// CEF extension fields, most important first; each entry is one unit kept or dropped
    /// whole (a custom field with its label), as unescaped `(key, value)` pairs.
    pub cef_ext: Vec<Vec<(&'static str, String)>>,
}

fn ms(ns: u64) -> String {
    (ns / 1_000_000).to_string()
}

/// A CEF custom field with its label: `(label key, value key)`, the label, the value.
fn labeled(
    keys: (&'static str, &'static str),
    label: &str,
    value: impl ToString,
) -> Vec<(&'static str, String)> {
    vec![(keys.0, label.to_string()), (keys.1, value.to_string())]
}

/// CEF extension unit for an endpoint: the address as `key`, or a description in a
/// labelled custom string when the endpoint stands for many addresses.
fn endpoint_ext(
    e: &Endpoint,
    key: &'static str,
    cs: (&'static str, &'static str),
) -> Vec<(&'static str, String)> {
    match e {
        Endpoint::Addr(a) => vec![(key, a.to_string())],
        Endpoint::Many(d) => vec![(cs.0, key.to_string()), (cs.1, d.clone())],
    }
}

impl Event {
    /// Adds where the finding's state is in the evidence log (`logIndex`, `leafHash` in
    /// the structured data; CEF `cn3`/`cs6`), so a receiver can later ask for its
    /// inclusion proof. The CEF fields come first: they are what an auditor needs.
    pub fn with_evidence(mut self, index: u64, leaf_hash: &str) -> Event {
        self.params.push(("logIndex", index.to_string()));
        self.params.push(("leafHash", leaf_hash.to_string()));
        self.cef_ext.insert(
            0,
            vec![
                ("cn3Label", "evidenceLogIndex".into()),
                ("cn3", index.to_string()),
                ("cs6Label", "evidenceLeafHash".into()),
                ("cs6", leaf_hash.to_string()),
            ],
        );
        self
    }

    /// The message describing a finding (time: its last evidence).
    pub fn from_finding(f: Finding<'_>) -> Event {
        match f {
            Finding::Alert(a) => Event::from_alert(a),
            Finding::Violation(v) => Event::from_violation(&v.violation),
        }
    }

    /// The message describing an alert (time: its last evidence).
    pub fn from_alert(a: &Alert) -> Event {
        let mut params = vec![
            ("id", a.id.clone()),
            ("kind", a.kind.as_str().to_string()),
            ("severity", a.severity.as_str().to_string()),
        ];
        if let Some(s) = &a.src {
            params.push(("src", s.to_string()));
        }
        if let Some(d) = &a.dst {
            params.push(("dst", d.to_string()));
        }
        if let Some(p) = a.port {
            params.push(("port", p.to_string()));
        }
        params.extend([
            ("line", a.line.clone()),
            ("measured", a.measured.to_string()),
            ("threshold", a.threshold.to_string()),
            ("unit", a.unit.clone()),
            ("first", timestamp(a.first_ns)),
        ]);
        let mut ext = vec![vec![("rt", ms(a.last_ns))]];
        if let Some(s) = &a.src {
            ext.push(endpoint_ext(s, "src", ("cs3Label", "cs3")));
        }
        if let Some(d) = &a.dst {
            ext.push(endpoint_ext(d, "dst", ("cs4Label", "cs4")));
        }
        if let Some(p) = a.port {
            ext.push(vec![("dpt", p.to_string())]);
        }
        ext.extend([
            labeled(("cs1Label", "cs1"), "line", &a.line),
            labeled(("cs2Label", "cs2"), "alertId", &a.id),
            vec![("start", ms(a.first_ns))],
            vec![("end", ms(a.last_ns))],
            labeled(("cfp1Label", "cfp1"), "measured", a.measured),
            labeled(("cfp2Label", "cfp2"), "threshold", a.threshold),
            labeled(("cs5Label", "cs5"), "unit", &a.unit),
        ]);
        Event {
            severity: a.severity.syslog(),
            cef_severity: a.severity.cef(),
            time_ns: a.last_ns,
            kind: a.kind.as_str(),
            params,
            description: a.description.clone(),
            cef_ext: ext,
        }
    }

    /// The message describing a policy violation (time: its last evidence).
    pub fn from_violation(v: &Violation) -> Event {
        let kind = v.kind.as_str();
        let params = vec![
            ("rule_id", v.rule_id.clone()),
            ("rule_name", v.rule_name.clone()),
            ("rule_location", v.rule_location.clone()),
            ("kind", kind.to_string()),
            ("severity", v.severity.as_str().to_string()),
            ("src", v.src.to_string()),
            ("dst", v.dst.to_string()),
            ("line", v.line.clone()),
            ("first", timestamp(v.first_ns)),
            ("flows", v.evidence.len().to_string()),
        ];
        let ext = vec![
            vec![("rt", ms(v.last_ns))],
            vec![("src", v.src.to_string())],
            vec![("dst", v.dst.to_string())],
            labeled(("cs1Label", "cs1"), "line", &v.line),
            labeled(("cs2Label", "cs2"), "ruleId", &v.rule_id),
            vec![("start", ms(v.first_ns))],
            vec![("end", ms(v.last_ns))],
            labeled(("cs3Label", "cs3"), "ruleName", &v.rule_name),
            labeled(("cs4Label", "cs4"), "ruleLocation", &v.rule_location),
        ];
        Event {
            severity: v.severity.syslog(),
            cef_severity: v.severity.cef(),
            time_ns: v.last_ns,
            kind,
            params,
            description: v.description.clone(),
            cef_ext: ext,
        }
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2023-11-14T22:13:20.123456Z`.
pub fn timestamp(ns: u64) -> String {
    tidegate_wire::record::rfc3339_ns::format_digits(ns, 6)
}

fn sd_char(c: char, out: &mut String) {
    if matches!(c, '"' | '\\' | ']') {
        out.push('\\');
    }
    out.push(c);
}

fn cef_header_char(c: char, out: &mut String) {
    match c {
        '\\' | '|' => {
            out.push('\\');
            out.push(c);
        }
        '\r' | '\n' => out.push(' '),
        _ => out.push(c),
    }
}

fn cef_ext_char(c: char, out: &mut String) {
    match c {
        '\\' | '=' => {
            out.push('\\');
            out.push(c);
        }
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        _ => out.push(c),
    }
}

fn escape_with(s: &str, f: fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        f(c, &mut out);
    }
    out
}

/// Escapes an RFC 5424 PARAM-VALUE: `"`, `\` and `]` get a backslash.
pub fn sd_escape(s: &str) -> String {
    escape_with(s, sd_char)
}

/// Escapes a CEF header field: `\` and `|` get a backslash, CR and LF become spaces.
pub fn cef_header_escape(s: &str) -> String {
    escape_with(s, cef_header_char)
}

/// Escapes a CEF extension value: `\` and `=` get a backslash, LF is `\n`, CR is `\r`.
pub fn cef_ext_escape(s: &str) -> String {
    escape_with(s, cef_ext_char)
}

/// `s` escaped with `f`, shortened to at most `budget` bytes ending in `...` when it does
/// not fit whole; whole characters and whole escapes only.
fn escape_fitting(s: &str, f: fn(char, &mut String), budget: usize) -> String {
    let full = escape_with(s, f);
    if full.len() <= budget {
        return full;
    }
    let room = budget.saturating_sub(ELLIPSIS.len());
    let mut out = String::new();
    let mut one = String::new();
    for c in s.chars() {
        one.clear();
        f(c, &mut one);
        if out.len() + one.len() > room {
            break;
        }
        out.push_str(&one);
    }
    if budget >= ELLIPSIS.len() {
        out.push_str(ELLIPSIS);
    }
    out
}

fn plain_char(c: char, out: &mut String) {
    out.push(c);
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD]`: everything but MSG.
pub fn head(h: &Header, e: &Event) -> String {
    let mut s = format!(
        "<{}>1 {} {} {} {} {} [{SD_ID}",
        u16::from(h.facility) * 8 + u16::from(e.severity),
        timestamp(e.time_ns),
        h.hostname,
        h.app_name,
        h.procid,
        e.kind,
    );
    for (k, v) in &e.params {
        let _ = write!(s, " {k}=\"{}\"", sd_escape(v));
    }
    s.push(']');
    s
}

/// The CEF:0 record of an event, at most `budget` bytes (`usize::MAX`: no limit).
pub fn cef(e: &Event, budget: usize) -> String {
    let version = cef_header_escape(env!("CARGO_PKG_VERSION"));
    let prefix = format!("CEF:0|tidegate|tidegate|{version}|{}|", e.kind);
    let suffix = format!("|{}|", e.cef_severity);
    if prefix.len() + suffix.len() + ELLIPSIS.len() > budget {
        return String::new();
    }
    let name_budget = budget.saturating_sub(prefix.len() + suffix.len());
    let name = escape_fitting(&e.description, cef_header_char, name_budget);
    let mut out = format!("{prefix}{name}{suffix}");
    let mut first = true;
    for unit in &e.cef_ext {
        let mut u = String::new();
        for (k, v) in unit {
            if !first || !u.is_empty() {
                u.push(' ');
            }
            let _ = write!(u, "{k}={}", cef_ext_escape(v));
        }
        if out.len() + u.len() > budget {
            break;
        }
        out.push_str(&u);
        first = false;
    }
    out
}

/// The plain MSG of an event (BOM + description), at most `budget` bytes; empty when
/// even the BOM and `...` do not fit.
pub fn plain(e: &Event, budget: usize) -> String {
    if BOM.len() + e.description.len() > budget && budget < BOM.len() + ELLIPSIS.len() {
        return String::new();
    }
    let text = escape_fitting(&e.description, plain_char, budget - BOM.len());
    format!("{BOM}{text}")
}

/// One complete RFC 5424 message, at most `max_len` bytes when given (only MSG is ever
/// shortened; see the module doc).
pub fn message(
    h: &Header,
    e: &Event,
    cef_msg: bool,
    max_len: Option<usize>,
) -> Result<String, SyslogError> {
    let mut s = head(h, e);
    let budget = match max_len {
        Some(max) if s.len() > max => return Err(SyslogError::TooLarge { len: s.len(), max }),
        // One byte for the space before MSG.
        Some(max) => max.saturating_sub(s.len() + 1),
        None => usize::MAX,
    };
    let msg = if cef_msg {
        cef(e, budget)
    } else {
        plain(e, budget)
    };
    if !msg.is_empty() && budget > 0 {
        s.push(' ');
        s.push_str(&msg);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use tidegate_threat::Severity;
    use tidegate_threat::detect::AlertKind;
    use tidegate_threat::policy::ViolationKind;

    /// Every character the escapes care about.
    const NASTY: &str = "a\"b]c\\d=e|f\ng";
    /// 2023-11-14T22:13:20.123456789Z
    const T: u64 = 1_700_000_000_123_456_789;

    fn header() -> Header {
        Header {
            facility: 20,
            hostname: "h1".into(),
            app_name: "tidegate".into(),
            procid: "42".into(),
        }
    }

    fn alert() -> Alert {
        Alert {
            id: "00ab".into(),
            kind: AlertKind::SynFlood,
            severity: Severity::High,
            first_ns: T - 2_000_000_000,
            last_ns: T,
            src: Some(Endpoint::Many("3 sources".into())),
            dst: Some(Endpoint::Addr("10.10.10.10".parse().unwrap())),
            port: Some(80),
            line: NASTY.into(),
            key: "k".into(),
            measured: 1234.5,
            threshold: 100.0,
            unit: "syn/s".into(),
            description: format!("flood {NASTY}"),
            evidence: Vec::new(),
            volume: None,
        }
    }

    fn violation() -> Violation {
        Violation {
            rule_id: "r1".into(),
            rule_name: "no [x]".into(),
            rule_location: "p.toml:5".into(),
            rule_text: "[[rule]]".into(),
            kind: ViolationKind::DenyList,
            severity: Severity::Critical,
            line: "intl-1".into(),
            src: "10.0.0.1".parse::<IpAddr>().unwrap(),
            dst: "2001:db8::1".parse::<IpAddr>().unwrap(),
            first_ns: T,
            last_ns: T + 1_000,
            evidence: Vec::new(),
            description: "to a=b".into(),
            action: None,
        }
    }

    #[test]
    fn escapes_follow_each_format() {
        assert_eq!(sd_escape(NASTY), "a\\\"b\\]c\\\\d=e|f\ng");
        assert_eq!(cef_header_escape(NASTY), "a\"b]c\\\\d=e\\|f g");
        assert_eq!(cef_ext_escape(NASTY), "a\"b]c\\\\d\\=e|f\\ng");
        assert_eq!(cef_ext_escape("x\r\ny"), "x\\r\\ny");
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        assert_eq!(timestamp(T), "2023-11-14T22:13:20.123456Z");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn alert_message_is_exact() {
        let m = message(&header(), &Event::from_alert(&alert()), false, None).unwrap();
        assert_eq!(
            m,
            "<163>1 2023-11-14T22:13:20.123456Z h1 tidegate 42 syn_flood \
             [tidegate@32473 id=\"00ab\" kind=\"syn_flood\" severity=\"high\" \
             src=\"3 sources\" dst=\"10.10.10.10\" port=\"80\" line=\"a\\\"b\\]c\\\\d=e|f\ng\" \
             measured=\"1234.5\" threshold=\"100\" unit=\"syn/s\" \
             first=\"2023-11-14T22:13:18.123456Z\"] \u{feff}flood a\"b]c\\d=e|f\ng"
        );
    }

    #[test]
    fn alert_cef_message_is_exact() {
        let m = message(&header(), &Event::from_alert(&alert()), true, None).unwrap();
        let (_, msg) = m.split_once("\"] ").unwrap();
        assert_eq!(
            msg,
            format!(
                "CEF:0|tidegate|tidegate|{}|syn_flood|flood a\"b]c\\\\d=e\\|f g|8|\
                 rt=1700000000123 cs3Label=src cs3=3 sources dst=10.10.10.10 dpt=80 \
                 cs1Label=line cs1=a\"b]c\\\\d\\=e|f\\ng cs2Label=alertId cs2=00ab \
                 start=1699999998123 end=1700000000123 \
                 cfp1Label=measured cfp1=1234.5 cfp2Label=threshold cfp2=100 \
                 cs5Label=unit cs5=syn/s",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn violation_messages_are_exact() {
        let e = Event::from_violation(&violation());
        assert_eq!(
            message(&header(), &e, false, None).unwrap(),
            "<162>1 2023-11-14T22:13:20.123457Z h1 tidegate 42 deny_list \
             [tidegate@32473 rule_id=\"r1\" rule_name=\"no [x\\]\" rule_location=\"p.toml:5\" \
             kind=\"deny_list\" severity=\"critical\" src=\"10.0.0.1\" dst=\"2001:db8::1\" \
             line=\"intl-1\" first=\"2023-11-14T22:13:20.123456Z\" flows=\"0\"] \u{feff}to a=b"
        );
        let cef_msg = message(&header(), &e, true, None).unwrap();
        assert!(
            cef_msg.ends_with(&format!(
                "] CEF:0|tidegate|tidegate|{}|deny_list|to a=b|10|rt=1700000000123 \
                 src=10.0.0.1 dst=2001:db8::1 cs1Label=line cs1=intl-1 cs2Label=ruleId cs2=r1 \
                 start=1700000000123 end=1700000000123 cs3Label=ruleName cs3=no [x] \
                 cs4Label=ruleLocation cs4=p.toml:5",
                env!("CARGO_PKG_VERSION")
            )),
            "{cef_msg}"
        );
    }

    #[test]
    fn evidence_fields_ride_in_both_forms() {
        let e = Event::from_violation(&violation()).with_evidence(17, "ab01");
        let plain = message(&header(), &e, false, None).unwrap();
        assert!(
            plain.contains(" logIndex=\"17\" leafHash=\"ab01\"]"),
            "{plain}"
        );
        let cef_msg = message(&header(), &e, true, None).unwrap();
        assert!(
            cef_msg.contains(
                "|10|cn3Label=evidenceLogIndex cn3=17 cs6Label=evidenceLeafHash cs6=ab01 rt="
            ),
            "{cef_msg}"
        );
        // A tight budget drops the other extensions before the evidence fields.
        let short = message(&header(), &e, true, Some(cef_msg.len() - 20)).unwrap();
        assert!(
            short.contains("cs6=ab01") && !short.contains("cs4="),
            "{short}"
        );
    }

    #[test]
    fn severities_map_to_syslog_levels() {
        let sev = [
            (Severity::Critical, 2),
            (Severity::High, 3),
            (Severity::Medium, 4),
            (Severity::Low, 5),
            (Severity::Info, 6),
        ];
        for (s, n) in sev {
            assert_eq!(s.syslog(), n);
        }
    }

    #[test]
    fn long_plain_msg_is_cut_at_a_character_and_keeps_the_header() {
        let mut a = alert();
        a.description = "é".repeat(3000);
        let e = Event::from_alert(&a);
        let full = message(&header(), &e, false, None).unwrap();
        let cut = message(&header(), &e, false, Some(2048)).unwrap();
        let head = head(&header(), &e);
        assert!(full.len() > 2048);
        assert!(cut.len() <= 2048 && cut.len() >= 2046, "{}", cut.len());
        assert!(cut.starts_with(&format!("{head} \u{feff}éé")));
        assert!(cut.ends_with("é..."));
    }

    #[test]
    fn long_cef_msg_drops_extensions_then_shortens_the_name_without_splitting_escapes() {
        let mut a = alert();
        a.line = "l".repeat(1500);
        let e = Event::from_alert(&a);
        let cut = message(&header(), &e, true, Some(2048)).unwrap();
        assert!(cut.len() <= 2048);
        // Extensions up to the line survive, the line and everything after it are dropped.
        assert!(cut.ends_with(" dpt=80"), "{cut}");
        // A name of pipes: each is two bytes escaped and never split.
        a.line = "l".into();
        a.description = "|".repeat(3000);
        let e = Event::from_alert(&a);
        let cut = message(&header(), &e, true, Some(2048)).unwrap();
        assert!(cut.len() <= 2048);
        let name = cut.split("|syn_flood|").nth(1).unwrap();
        let name = name.strip_suffix("...|8|").unwrap();
        assert!(
            name.len() > 1000 && name.len().is_multiple_of(2),
            "{}",
            name.len()
        );
        assert_eq!(name.replace("\\|", ""), "");
    }

    #[test]
    fn header_and_sd_over_the_limit_is_an_error() {
        let mut a = alert();
        a.line = "x".repeat(3000);
        let e = Event::from_alert(&a);
        let err = message(&header(), &e, false, Some(2048)).unwrap_err();
        assert!(
            err.to_string().ends_with("over the 2048-byte UDP limit"),
            "{err}"
        );
    }
}
