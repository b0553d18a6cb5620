//! Shared by the syslog tests: real alerts and violations from corpus captures, a small
//! RFC 5424 parser, an RFC 6587 octet-counting reader and independent expectations.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;

use tidegate_threat::Severity;
use tidegate_threat::detect::{Alert, DetectConfig, Detector};
use tidegate_threat::policy::{Endpoints, Policy, Violation};
use tidegate_wire::record::{FlowRecord, rfc3339_ns};

/// Flow records of a corpus capture, as the probe's replay exports them.
pub fn records(capture: &str) -> Vec<FlowRecord> {
    tidegate_testkit::probe::corpus_records_of(capture, "intl-1")
}

/// Alerts the detector raises on the SYN-flood capture (at least one).
pub fn synflood_alerts() -> Vec<Alert> {
    let mut d = Detector::new(DetectConfig::default()).expect("default config");
    for r in records("stopddos-pkt.TCP.synflood.spoofed.pcap") {
        d.observe(&r);
    }
    let alerts = d.finish();
    assert!(!alerts.is_empty(), "the SYN-flood capture raised no alert");
    alerts
}

/// Violations of an isolation policy on a real capture (at least one; at most `max`).
pub fn isolation_violations(max: usize) -> Vec<Violation> {
    let policy = Policy::parse(
        "[[zone]]\nname = \"special-zone\"\ncidrs = [\"192.168.0.0/16\"]\n\n[[rule]]\n\
         id = \"iso\"\nname = \"special zone stays \\\"inside\\\" [strict]\"\n\
         type = \"isolate\"\nzone = \"special-zone\"\npeers = []\n",
        Path::new("policy.toml"),
    )
    .expect("valid policy");
    let v: Vec<Violation> = records("ndpi-1kxun.pcap")
        .iter()
        .flat_map(|r| policy.evaluate(r, &Endpoints::default()))
        .take(max)
        .collect();
    assert!(!v.is_empty(), "the capture raised no violation");
    v
}

/// Syslog severity a finding must carry (the documented mapping, one scale for alerts
/// and violations).
pub fn level(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// RFC 3339 with microseconds, derived from the nanosecond formatter.
pub fn micros(ns: u64) -> String {
    let s = rfc3339_ns::format(ns);
    format!("{}Z", &s[..s.len() - 4])
}

/// One parsed RFC 5424 message.
#[derive(Debug)]
pub struct Msg {
    pub pri: u16,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// Structured data elements: id and (name, unescaped value) pairs.
    pub sd: Vec<(String, Vec<(String, String)>)>,
    pub msg: Option<String>,
}

impl Msg {
    /// Value of parameter `name` of SD element `id`.
    pub fn param(&self, id: &str, name: &str) -> Option<&str> {
        self.sd
            .iter()
            .find(|(i, _)| i == id)?
            .1
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn field<'a>(rest: &mut &'a str, what: &str) -> Result<&'a str, String> {
    let (f, r) = rest
        .split_once(' ')
        .ok_or_else(|| format!("no space after {what}"))?;
    if f.is_empty() || f.len() > 255 || !f.chars().all(|c| matches!(c, '!'..='~')) {
        return Err(format!("bad {what} {f:?}"));
    }
    *rest = r;
    Ok(f)
}

/// Parses an RFC 5424 message (strictly: header fields, SD syntax and escapes).
pub fn parse(raw: &[u8]) -> Result<Msg, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let rest = text.strip_prefix('<').ok_or("no '<'")?;
    let (pri, rest) = rest.split_once('>').ok_or("no '>'")?;
    let pri: u16 = pri.parse().map_err(|_| format!("bad PRI {pri:?}"))?;
    if pri > 191 {
        return Err(format!("PRI {pri} out of range"));
    }
    let mut rest = rest.strip_prefix("1 ").ok_or("version is not 1")?;
    let timestamp = field(&mut rest, "TIMESTAMP")?.to_string();
    let hostname = field(&mut rest, "HOSTNAME")?.to_string();
    let app_name = field(&mut rest, "APP-NAME")?.to_string();
    let procid = field(&mut rest, "PROCID")?.to_string();
    let msgid = field(&mut rest, "MSGID")?.to_string();
    if app_name.len() > 48 || procid.len() > 128 || msgid.len() > 32 {
        return Err("header field too long".into());
    }
    let mut sd = Vec::new();
    let mut chars = rest.char_indices().peekable();
    if rest.starts_with('-') {
        chars.next();
    } else {
        while let Some((_, '[')) = chars.peek().copied() {
            chars.next();
            let mut id = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| !matches!(c, ' ' | ']')) {
                id.push(c);
            }
            let mut params = Vec::new();
            loop {
                match chars.next() {
                    Some((_, ']')) => break,
                    Some((_, ' ')) => {}
                    other => return Err(format!("bad SD at {other:?}")),
                }
                let mut name = String::new();
                while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                    if matches!(c, ' ' | ']' | '"') {
                        return Err(format!("bad PARAM-NAME char {c:?}"));
                    }
                    name.push(c);
                }
                if chars.next().map(|x| x.1) != Some('=') || chars.next().map(|x| x.1) != Some('"')
                {
                    return Err(format!("param {name}: no =\""));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                            // RFC 5424: other backslashes are kept as they are.
                            Some((_, c)) => {
                                value.push('\\');
                                value.push(c);
                            }
                            None => return Err("unterminated escape".into()),
                        },
                        Some((_, '"')) => break,
                        Some((_, ']')) => return Err(format!("param {name}: unescaped ]")),
                        Some((_, c)) => value.push(c),
                        None => return Err(format!("param {name}: unterminated value")),
                    }
                }
                params.push((name, value));
            }
            sd.push((id, params));
        }
        if sd.is_empty() {
            return Err("no structured data".into());
        }
    }
    let msg = match chars.next() {
        None => None,
        Some((i, ' ')) => Some(rest[i + 1..].to_string()),
        Some(other) => return Err(format!("junk after SD: {other:?}")),
    };
    Ok(Msg {
        pri,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        msg,
    })
}

/// Reads octet-counted frames (`<len> <msg>`) until `n` have arrived or the peer closes.
pub fn read_frames(s: &mut TcpStream, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        // Take every complete frame in the buffer.
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp])
                .ok()
                .and_then(|l| l.parse().ok())
                .unwrap_or_else(|| panic!("bad frame length {:?}", &buf[..sp]));
            if buf.len() < sp + 1 + len {
                break;
            }
            out.push(buf[sp + 1..sp + 1 + len].to_vec());
            buf.drain(..sp + 1 + len);
        }
        if out.len() >= n {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => panic!("receiver read: {e}"),
        }
    }
    assert!(buf.is_empty(), "partial frame left: {buf:?}");
    out
}

/// Checks that `m` is the message of alert `a` sent with facility `facility`.
pub fn check_alert(m: &Msg, a: &Alert, facility: u16, hostname: &str) {
    assert_eq!(m.pri, facility * 8 + u16::from(level(a.severity)), "{m:?}");
    assert_eq!(m.timestamp, micros(a.last_ns));
    assert_eq!(m.hostname, hostname);
    assert_eq!(m.procid, std::process::id().to_string());
    assert_eq!(m.msgid, a.kind.as_str());
    let id = "tidegate@32473";
    assert_eq!(m.param(id, "id"), Some(a.id.as_str()));
    assert_eq!(m.param(id, "kind"), Some(a.kind.as_str()));
    assert_eq!(
        m.param(id, "src").map(String::from),
        a.src.as_ref().map(|s| s.to_string())
    );
    assert_eq!(
        m.param(id, "dst").map(String::from),
        a.dst.as_ref().map(|s| s.to_string())
    );
    assert_eq!(m.param(id, "line"), Some(a.line.as_str()));
    assert_eq!(
        m.param(id, "measured").map(|v| v.parse::<f64>().unwrap()),
        Some(a.measured)
    );
    assert_eq!(
        m.param(id, "threshold").map(|v| v.parse::<f64>().unwrap()),
        Some(a.threshold)
    );
}

/// Checks that `m` is the plain-MSG message of violation `v`.
pub fn check_violation(m: &Msg, v: &Violation, facility: u16) {
    assert_eq!(m.pri, facility * 8 + u16::from(level(v.severity)), "{m:?}");
    assert_eq!(m.timestamp, micros(v.last_ns));
    assert_eq!(m.msgid, "isolation");
    let id = "tidegate@32473";
    assert_eq!(m.param(id, "rule_id"), Some(v.rule_id.as_str()));
    assert_eq!(m.param(id, "rule_name"), Some(v.rule_name.as_str()));
    assert_eq!(m.param(id, "rule_location"), Some(v.rule_location.as_str()));
    assert_eq!(m.param(id, "src"), Some(v.src.to_string().as_str()));
    assert_eq!(m.param(id, "dst"), Some(v.dst.to_string().as_str()));
    assert_eq!(m.param(id, "line"), Some(v.line.as_str()));
    assert_eq!(
        m.msg.as_deref(),
        Some(format!("\u{feff}{}", v.description).as_str())
    );
}
