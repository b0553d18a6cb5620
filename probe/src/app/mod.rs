//! Application metadata from the first packets of a flow: the DNS question (name, type,
//! and the response code of answers) and the TLS server name (SNI of the ClientHello).
//! One parser for every userspace path — pcap replay, AF_PACKET — so a replay names
//! the same flows a live capture does. Names only ever become data (a string column,
//! a filter value); they are never used to build a path or a query.
//!
//! Only the first [`FIRST_PACKETS`] packets of a flow are looked at, and at most
//! [`HELLO_MAX`] bytes of a ClientHello split over several segments are held.

mod dns;
mod tls;

use std::net::IpAddr;

pub use dns::parse_dns;
use tidegate_wire::record::{DnsMeta, FlowRecord};
pub use tls::{Hello, parse_client_hello};

/// Application metadata of one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppMeta {
    /// The question of its first DNS message.
    Dns(DnsMeta),
    /// The server name of its TLS ClientHello.
    TlsSni(String),
}

impl AppMeta {
    /// Writes it into a record.
    pub fn apply(self, r: &mut FlowRecord) {
        match self {
            AppMeta::Dns(d) => r.dns = Some(Box::new(d)),
            AppMeta::TlsSni(s) => r.sni = Some(s.into()),
        }
    }
}

/// What a flow's packets told besides its counters: application metadata and, for a
/// decapsulated tunnel, the endpoints of its outer header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowAttrs {
    /// DNS question or TLS server name.
    pub app: Option<AppMeta>,
    /// Outer source and destination of the tunnel the flow came through.
    pub outer: Option<(IpAddr, IpAddr)>,
}

impl FlowAttrs {
    /// Writes them into a record (the endpoints only into a record of a tunnelled flow).
    pub fn apply(self, r: &mut FlowRecord) {
        if let Some(a) = self.app {
            a.apply(r);
        }
        if let (Some((s, d)), Some(t)) = (self.outer, r.tunnel.as_mut()) {
            t.outer_src = Some(s);
            t.outer_dst = Some(d);
        }
    }
}

/// Whether a packet's payload is one the kernel programs sample for names: a DNS
/// message (DNS, mDNS, LLMNR ports) or a TCP segment that starts a TLS handshake record.
pub fn worth_sampling(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> bool {
    if payload.is_empty() {
        return false;
    }
    let dns = |p: u16| matches!(p, 53 | 5353 | 5355);
    match proto {
        17 => dns(sport) || dns(dport),
        6 => dns(sport) || dns(dport) || payload.starts_with(&[0x16, 3]),
        _ => false,
    }
}

/// Where a parsed packet's L4 payload is in `frame` (empty when it has none or it is
/// not all captured): from the end of the L4 header to the end of the IP packet.
pub fn payload<'a>(frame: &'a [u8], p: &tidegate_common::Parsed) -> &'a [u8] {
    if p.hdr_len == 0 || !matches!(p.key.proto, 6 | 17) {
        return &[];
    }
    let start = p.l3_off as usize + p.hdr_len as usize;
    let end = (p.l3_off as usize + p.ip_bytes as usize).min(frame.len());
    frame.get(start..end).unwrap_or(&[])
}

/// Packets of a flow inspected for metadata.
pub const FIRST_PACKETS: u64 = 8;
/// Largest ClientHello reassembled over segments.
pub const HELLO_MAX: usize = 16 * 1024;

/// What a flow's first packets have told so far.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// The metadata found (final).
    pub meta: Option<AppMeta>,
    /// Payload bytes of a ClientHello that spans segments (in arrival order).
    hello: Vec<u8>,
    /// Packets inspected.
    seen: u64,
    /// When the first sample arrived (live capture; 0 in replay).
    pub born_ns: u64,
    /// The outer endpoints of the flow's tunnel (the first seen).
    pub outer: Option<(IpAddr, IpAddr)>,
}

impl AppState {
    /// What the flow's packets told.
    pub fn attrs(self) -> FlowAttrs {
        FlowAttrs {
            app: self.meta,
            outer: self.outer,
        }
    }

    /// Whether more packets can still tell something.
    pub fn open(&self) -> bool {
        self.meta.is_none() && self.seen < FIRST_PACKETS
    }

    /// Looks at one packet's L4 payload (`proto`, ports of the packet).
    pub fn inspect(&mut self, proto: u8, sport: u16, dport: u16, payload: &[u8]) {
        if !self.open() {
            return;
        }
        self.seen += 1;
        if payload.is_empty() {
            return;
        }
        let dns_port = [53, 5353, 5355].contains(&sport) || [53, 5353, 5355].contains(&dport);
        match proto {
            17 if dns_port => self.meta = parse_dns(payload).map(AppMeta::Dns),
            // DNS over TCP: a 2-byte length, then the message.
            6 if dns_port && payload.len() > 2 => {
                self.meta = parse_dns(&payload[2..]).map(AppMeta::Dns);
            }
            6 if dns_port => {}
            6 => self.tls(payload),
            _ => {}
        }
    }

    fn tls(&mut self, payload: &[u8]) {
        if self.hello.is_empty() {
            match parse_client_hello(payload) {
                Hello::Sni(name) => self.meta = Some(AppMeta::TlsSni(name)),
                Hello::NeedMore => self.hello.extend_from_slice(payload),
                Hello::NotTls | Hello::NoSni => self.seen = FIRST_PACKETS,
            }
            return;
        }
        let room = HELLO_MAX.saturating_sub(self.hello.len());
        self.hello
            .extend_from_slice(&payload[..payload.len().min(room)]);
        match parse_client_hello(&self.hello) {
            Hello::Sni(name) => self.meta = Some(AppMeta::TlsSni(name)),
            Hello::NeedMore if self.hello.len() < HELLO_MAX => {}
            _ => self.seen = FIRST_PACKETS,
        }
        if !self.open() {
            self.hello = Vec::new();
        }
    }
}

/// Format characters (Unicode category Cf) and other invisible code points that change
/// how surrounding text displays.
pub fn invisible_or_bidi(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
        | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e0fff}')
}

/// The DNS metadata of a message, if it is one (re-exported for tests).
pub fn dns_meta(payload: &[u8]) -> Option<DnsMeta> {
    parse_dns(payload)
}

/// Renders a DNS label or SNI for display and storage: UTF-8 text as is (case kept, as
/// on the wire; internationalised names sent as UTF-8, as LLMNR and mDNS do, stay
/// readable), and when the bytes are not UTF-8 or hold control characters or `\`,
/// printable ASCII as is and every other byte as `\DDD` (RFC 1035 presentation
/// format), so a hostile name cannot carry control characters into logs or the console.
/// Invisible and direction-changing characters (zero-width, bidirectional overrides such
/// as U+202E, soft hyphen, byte-order mark) count as control characters here: they
/// would let a name display as another.
pub(crate) fn presentable(label_bytes: &[u8], out: &mut String) {
    if let Ok(s) = std::str::from_utf8(label_bytes)
        && !s
            .chars()
            .any(|c| c.is_control() || c == '\\' || c.is_whitespace() || invisible_or_bidi(c))
    {
        out.push_str(s);
        return;
    }
    for &b in label_bytes {
        if (0x21..=0x7e).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\{b:03}"));
        }
    }
}
