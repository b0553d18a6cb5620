//! The packet parser shared by the kernel programs and userspace, on arbitrary frames of
//! every link type: never a panic, and offsets it reports lie inside the frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidegate_common::parse::{LinkType, parse_frame};

fuzz_target!(|data: &[u8]| {
    let Some((&k, frame)) = data.split_first() else {
        return;
    };
    let link = match k % 6 {
        0 => LinkType::Ethernet,
        1 => LinkType::RawIp,
        2 => LinkType::LinuxSll,
        3 => LinkType::LinuxSll2,
        4 => LinkType::Null,
        _ => LinkType::CiscoHdlc,
    };
    if let Ok(p) = parse_frame(frame, link) {
        assert!(usize::from(p.l3_off) <= frame.len());
        // The payload the L7 parsers get is a slice of the frame.
        let payload = tidegate_probe::app::payload(frame, &p);
        assert!(payload.len() <= frame.len());
    }
});
