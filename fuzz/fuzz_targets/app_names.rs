//! The DNS and TLS ClientHello parsers (names from a flow's first packets) on arbitrary
//! payloads: never a panic, names bounded, with no control, blank or invisible/bidi
//! character (what reaches logs and the console).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidegate_probe::app::{Hello, invisible_or_bidi, parse_client_hello, parse_dns};

fn safe(name: &str) -> bool {
    !name.chars().any(|c| c.is_control() || c.is_whitespace() || invisible_or_bidi(c))
}

fuzz_target!(|data: &[u8]| {
    if let Some(m) = parse_dns(data) {
        assert!(m.qname.len() <= 1024);
        assert!(safe(&m.qname), "{:?}", m.qname);
    }
    if let Hello::Sni(sni) = parse_client_hello(data) {
        assert!(sni.len() <= 1024 && safe(&sni), "{sni:?}");
    }
});
