//! The packet parser shared by the kernel programs and userspace, on arbitrary frames of
//! every link type, keyed by the outer or the inner header of tunnels: never a panic, and
//! offsets it reports lie inside the frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidegate_common::parse::{LinkType, Tunnels, parse_frame};

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
    let tunnels = if k & 0x80 != 0 {
        Tunnels::Inner
    } else {
        Tunnels::Outer
    };
    if let Ok(p) = parse_frame(frame, link, tunnels) {
        assert!(usize::from(p.l3_off) <= frame.len());
        assert!(usize::from(p.outer_l3_off) <= usize::from(p.l3_off));
        assert!(tunnels == Tunnels::Inner || p.key.tunnel == 0);
        // The payload the L7 parsers get is a slice of the frame.
        let payload = tidegate_probe::app::payload(frame, &p);
        assert!(payload.len() <= frame.len());
    }
});
