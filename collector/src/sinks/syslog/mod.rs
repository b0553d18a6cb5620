//! Syslog sink: alerts and policy violations as RFC 5424 messages over UDP or TCP
//! (octet-counting framing, RFC 6587), the MSG part optionally a CEF:0 record.
//!
//! Configuration (`[syslog]` in the collector's file):
//!
//! ```toml
//! [syslog]
//! address = "siem.example:6514"   # host:port of the receiver (required)
//! protocol = "tcp"                # "udp" or "tcp" (required)
//! facility = "local4"             # kern, user, ..., local0-local7 (default local4)
//! app_name = "tidegate"           # APP-NAME (default "tidegate")
//! hostname = "collector-1"        # HOSTNAME (default: this host's name)
//! cef = false                     # MSG as CEF:0 instead of the description
//! ```
//!
//! The message layout, escaping and UDP size limit are described in [`format`]; delivery,
//! framing and reconnection in [`transport`]. Timestamps are the event time of the alert's
//! or violation's last evidence, so a replayed capture produces the same messages.

pub mod error;
pub mod format;
pub mod transport;

pub use error::SyslogError;

use serde::Deserialize;

use format::{Event, Header};
use tidegate_threat::Finding;
use transport::{Tcp, Transport, Udp};

/// Transport protocol to the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// One datagram per message, at most 2048 bytes.
    Udp,
    /// A stream with octet-counting framing; reconnects with backoff.
    Tcp,
}

impl Protocol {
    /// `udp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// Syslog facility (RFC 5424 table 1), named as in syslog.conf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    Audit,
    Alert,
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    #[default]
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// Numeric code (0-23).
    pub fn code(self) -> u8 {
        self as u8
    }
}

fn default_app_name() -> String {
    "tidegate".to_string()
}

/// Where and how to send syslog messages.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Receiver, `host:port` (`[v6addr]:port` for IPv6 literals).
    pub address: String,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// Facility of every message (default `local4`).
    #[serde(default)]
    pub facility: Facility,
    /// APP-NAME (default `tidegate`).
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME (default: this host's name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// MSG as a CEF:0 record instead of the plain description.
    #[serde(default)]
    pub cef: bool,
}

fn config_err(field: &'static str, reason: impl Into<String>) -> SyslogError {
    SyslogError::Config {
        field,
        reason: reason.into(),
    }
}

/// Checks an RFC 5424 header field: 1..=max printable US-ASCII characters (33-126).
fn check_header_field(field: &'static str, v: &str, max: usize) -> Result<(), SyslogError> {
    if v.is_empty() || v.len() > max {
        return Err(config_err(
            field,
            format!("{v:?} must be 1 to {max} characters long"),
        ));
    }
    if let Some(c) = v.chars().find(|c| !matches!(c, '!'..='~')) {
        return Err(config_err(
            field,
            format!("{v:?} contains {c:?}; only printable ASCII without spaces is allowed"),
        ));
    }
    Ok(())
}

impl SyslogConfig {
    /// A config with every default, sending to `address` over `protocol`.
    pub fn new(address: impl Into<String>, protocol: Protocol) -> Self {
        SyslogConfig {
            address: address.into(),
            protocol,
            facility: Facility::default(),
            app_name: default_app_name(),
            hostname: None,
            cef: false,
        }
    }

    /// Checks every field; errors name the field (`syslog.address: ...`).
    pub fn validate(&self) -> Result<(), SyslogError> {
        let a = self.address.trim();
        let Some((host, port)) = a.rsplit_once(':') else {
            return Err(config_err(
                "address",
                format!("{:?} has no port; expected host:port", self.address),
            ));
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(config_err(
                "address",
                format!("{:?} has no host; expected host:port", self.address),
            ));
        }
        if host.contains(':') && !a.starts_with('[') {
            return Err(config_err(
                "address",
                format!("{:?}: write IPv6 addresses as [addr]:port", self.address),
            ));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => {
                return Err(config_err(
                    "address",
                    format!(
                        "{:?}: port {port:?} is not a number from 1 to 65535",
                        self.address
                    ),
                ));
            }
        }
        check_header_field("app_name", &self.app_name, 48)?;
        if let Some(h) = &self.hostname {
            check_header_field("hostname", h, 255)?;
        }
        Ok(())
    }
}

/// This host's name, or the RFC 5424 NILVALUE `-` when it is unknown or not printable
/// ASCII.
pub fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of its length; gethostname NUL-terminates within
    // it or truncates, and we only read up to the first NUL or the end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".to_string();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if !h.is_empty() && h.len() <= 255 && h.chars().all(|c| matches!(c, '!'..='~')) => {
            h.to_string()
        }
        _ => "-".to_string(),
    }
}

/// Sends alerts and violations to one syslog receiver.
#[derive(Debug)]
pub struct SyslogSink {
    header: Header,
    cef: bool,
    transport: Transport,
}

impl SyslogSink {
    /// Validates `cfg` and connects (TCP: an unreachable receiver is an error here; later
    /// disconnections are repaired by reconnecting).
    pub fn connect(cfg: &SyslogConfig) -> Result<SyslogSink, SyslogError> {
        cfg.validate()?;
        let transport = match cfg.protocol {
            Protocol::Udp => Transport::Udp(Udp::connect(cfg.address.trim())?),
            Protocol::Tcp => Transport::Tcp(Tcp::connect(cfg.address.trim())?),
        };
        Ok(SyslogSink {
            header: Header {
                facility: cfg.facility.code(),
                hostname: cfg.hostname.clone().unwrap_or_else(local_hostname),
                app_name: cfg.app_name.clone(),
                procid: std::process::id().to_string(),
            },
            cef: cfg.cef,
            transport,
        })
    }

    /// The header fields every message carries.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The message `event` becomes on this sink (shortened to the UDP limit on UDP).
    pub fn render(&self, event: &Event) -> Result<String, SyslogError> {
        format::message(&self.header, event, self.cef, self.transport.max_len())
    }

    /// Sends one finding (an alert or a violation).
    pub fn send(&mut self, finding: Finding<'_>) -> Result<(), SyslogError> {
        self.send_event(&Event::from_finding(finding))
    }

    /// Formats and sends one event.
    pub fn send_event(&mut self, event: &Event) -> Result<(), SyslogError> {
        let msg = self.render(event)?;
        self.transport.send(msg.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SyslogConfig, String> {
        toml::from_str::<SyslogConfig>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply_when_only_address_and_protocol_are_given() {
        let c = parse("address = \"127.0.0.1:514\"\nprotocol = \"udp\"\n").unwrap();
        assert_eq!(c, SyslogConfig::new("127.0.0.1:514", Protocol::Udp));
        assert_eq!(c.facility.code(), 20);
        assert_eq!(c.app_name, "tidegate");
        c.validate().unwrap();
        assert_eq!(Facility::Local7.code(), 23);
        assert_eq!(Facility::Kern.code(), 0);
    }

    #[test]
    fn unknown_fields_and_values_are_refused_by_name() {
        let e = parse("address = \"a:1\"\nprotocol = \"udp\"\nport = 5\n").unwrap_err();
        assert!(e.contains("unknown field `port`"), "{e}");
        let e = parse("address = \"a:1\"\nprotocol = \"sctp\"\n").unwrap_err();
        assert!(e.contains("unknown variant `sctp`"), "{e}");
        let e =
            parse("address = \"a:1\"\nprotocol = \"tcp\"\nfacility = \"local9\"\n").unwrap_err();
        assert!(e.contains("unknown variant `local9`"), "{e}");
    }

    #[test]
    fn validate_names_the_field_and_the_problem() {
        let bad = |f: fn(&mut SyslogConfig)| {
            let mut c = SyslogConfig::new("127.0.0.1:514", Protocol::Tcp);
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        let long = "x".repeat(49);
        type Case = (fn(&mut SyslogConfig), String);
        let cases: [Case; 7] = [
            (
                |c| c.address = "localhost".into(),
                "syslog.address: \"localhost\" has no port; expected host:port".into(),
            ),
            (
                |c| c.address = "h:0".into(),
                "syslog.address: \"h:0\": port \"0\" is not a number from 1 to 65535".into(),
            ),
            (
                |c| c.address = ":514".into(),
                "syslog.address: \":514\" has no host; expected host:port".into(),
            ),
            (
                |c| c.address = "::1:514".into(),
                "syslog.address: \"::1:514\": write IPv6 addresses as [addr]:port".into(),
            ),
            (
                |c| c.app_name = "tide gate".into(),
                "syslog.app_name: \"tide gate\" contains ' '; only printable ASCII without spaces is allowed".into(),
            ),
            (
                |c| c.app_name = "x".repeat(49),
                format!("syslog.app_name: {long:?} must be 1 to 48 characters long"),
            ),
            (
                |c| c.hostname = Some(String::new()),
                "syslog.hostname: \"\" must be 1 to 255 characters long".into(),
            ),
        ];
        for (set, want) in cases {
            assert_eq!(bad(set), want);
        }
        let mut ok = SyslogConfig::new("[::1]:514", Protocol::Udp);
        ok.hostname = Some("collector-1.example".into());
        ok.validate().unwrap();
    }

    #[test]
    fn local_hostname_is_a_valid_header_field() {
        let h = local_hostname();
        check_header_field("hostname", &h, 255).unwrap();
    }
}
