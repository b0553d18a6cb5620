//! The collector's NetFlow v5/v9/IPFIX decoder on arbitrary datagram sequences.
//!
//! Input: a series of `[sender u8][len u16 BE][len bytes]` chunks, each one datagram from
//! sender 127.0.0.<sender % 4> (so templates learnt from one datagram meet data in later
//! ones, across a few scopes). The decoder must never panic, every record it returns must
//! be well formed, and its state must stay within the configured bounds.

#![no_main]

use std::{net::SocketAddr, sync::Arc};

use libfuzzer_sys::fuzz_target;
use tidegate_collector::netflow::{Decoder, NetflowConfig};

fuzz_target!(|data: &[u8]| {
    let cfg = NetflowConfig {
        max_exporters: 4,
        pending_templates: 4,
        pending_sets_per_template: 4,
        pending_set_bytes: 4096,
        ..NetflowConfig::accepting_any()
    };
    let mut d = Decoder::new(Arc::new(cfg)).expect("valid configuration");
    let mut rest = data;
    let mut all = Vec::new();
    while rest.len() >= 3 {
        let sender = rest[0] % 4;
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let datagram = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let from = SocketAddr::from(([127, 0, 0, sender], 2055));
        let out = d.decode(from, datagram, 1_700_000_000_000_000_000);
        for r in &out.records {
            assert!(r.sampling >= 1);
            assert!(r.last >= r.first);
            assert_eq!(r.src.is_ipv4(), r.dst.is_ipv4());
            assert!(r.packets > 0);
        }
        all.extend(out.records);
        assert!(d.scopes() <= 4);
    }
    // Every record survives the spool's encoding.
    if !all.is_empty() {
        let b = tidegate_wire::Batch {
            probe_id: "fuzz".into(),
            epoch: 1,
            seq: 1,
            created_ns: 0,
            records: all,
            health: None,
        };
        let back =
            tidegate_wire::decode_batch(&tidegate_wire::encode_batch(&b)).expect("round trip");
        assert_eq!(back.records, b.records);
    }
});
