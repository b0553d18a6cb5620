//! Hand-built flow records.

use tidegate_wire::record::FlowRecord;

/// 2023-11-14T22:13:20Z, in ns.
pub const T0: u64 = 1_700_000_000_000_000_000;

/// A TCP record `src:40000 -> dst:443` on line `hk-intl-1`, ingress: one packet of 100
/// bytes at [`T0`] lasting half a second, flags PSH+ACK. Tests set what they look at with
/// struct-update syntax.
pub fn tcp(src: &str, dst: &str) -> FlowRecord {
    FlowRecord {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        sport: 40_000,
        dport: 443,
        proto: 6,
        packets: 1,
        bytes: 100,
        first: T0,
        last: T0 + 500_000_000,
        tcp_flags: 0x18,
        line: "hk-intl-1".into(),
        ..Default::default()
    }
}

/// `count \t packets \t bytes` of `records`: what ClickHouse prints for
/// `SELECT count(), sum(packets), sum(bytes)` over the rows they became.
pub fn totals_row(records: &[FlowRecord]) -> String {
    format!(
        "{}\t{}\t{}",
        records.len(),
        records.iter().map(|r| r.packets).sum::<u64>(),
        records.iter().map(|r| r.bytes).sum::<u64>()
    )
}
