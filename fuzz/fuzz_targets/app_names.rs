//! The DNS and TLS ClientHello parsers (names from a flow's first packets) on arbitrary
//! payloads: never a panic, names bounded and printable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidegate_probe::app::{parse_client_hello, parse_dns};

fuzz_target!(|data: &[u8]| {
    if let Some(m) = parse_dns(data) {
        assert!(m.qname.len() <= 1024);
        assert!(m.qname.bytes().all(|b| (0x21..0x7f).contains(&b)), "{:?}", m.qname);
    }
    let _ = parse_client_hello(data);
});
