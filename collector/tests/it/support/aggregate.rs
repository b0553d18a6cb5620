//! Shared by the `aggregate_*` tests: corpus records, batching, and the straightforward
//! single-threaded reference the aggregator must match.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tidegate_collector::aggregate::{AggregateKey, Aggregator};
use tidegate_common::Direction;
use tidegate_probe::table::Timeouts;
use tidegate_wire::record::FlowRecord;

/// Records of one capture file, replayed alone with short export timeouts so flows are
/// split into several records (what merging is for).
pub fn replay_file(path: &std::path::Path, line: &str) -> Vec<FlowRecord> {
    let mut out = tidegate_testkit::probe::replay(
        path,
        line,
        Timeouts {
            active: Duration::from_secs(2),
            idle: Duration::from_secs(1),
        },
    );
    // Both directions: a flow whose ports have odd XOR is accounted as egress (the same
    // for every record of the flow).
    for r in &mut out {
        if (r.sport ^ r.dport) & 1 == 1 {
            r.direction = Direction::Egress;
        }
    }
    out
}

/// Every corpus capture, files alternating between two lines. Returns (file, records).
pub fn corpus_by_file() -> Vec<(PathBuf, Vec<FlowRecord>)> {
    tidegate_testkit::paths::corpus_pcaps()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let line = if i % 2 == 0 { "hk-intl-1" } else { "sg-intl-2" };
            let recs = replay_file(&p, line);
            (p, recs)
        })
        .collect()
}

/// Submits `records` in small batches of varying size, alternating two probe ids.
pub fn submit_in_batches(agg: &Aggregator, records: &[FlowRecord]) {
    const SIZES: [usize; 6] = [1, 3, 7, 16, 33, 64];
    let mut i = 0;
    let mut n = 0;
    while i < records.len() {
        let end = (i + SIZES[n % SIZES.len()]).min(records.len());
        let probe = if n % 2 == 0 { "probe-a" } else { "probe-b" };
        agg.submit(probe, &records[i..end]);
        i = end;
        n += 1;
    }
}

/// The probe that sent record `index` under [`submit_in_batches`].
pub fn probe_of(index: usize) -> &'static str {
    const SIZES: [usize; 6] = [1, 3, 7, 16, 33, 64];
    let (mut i, mut n) = (0, 0);
    loop {
        let end = i + SIZES[n % SIZES.len()];
        if index < end {
            return if n % 2 == 0 { "probe-a" } else { "probe-b" };
        }
        i = end;
        n += 1;
    }
}

/// A merged flow computed the plain way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefFlow {
    pub packets: u64,
    pub bytes: u64,
    pub first: u64,
    pub last: u64,
    pub tcp_flags: u16,
    pub probes: BTreeSet<String>,
}

/// Per (line, direction) sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefTotals {
    pub bytes: u64,
    pub packets: u64,
    pub records: u64,
    pub flows: u64,
}

/// The single-threaded reference.
#[derive(Debug, Default)]
pub struct Reference {
    pub flows: BTreeMap<AggregateKey, RefFlow>,
    pub totals: BTreeMap<(String, Direction), RefTotals>,
    pub records_per_line: BTreeMap<String, u64>,
}

impl Reference {
    /// Sums `records`; `probe(i)` names the probe of record `i`.
    pub fn of(records: &[FlowRecord], probe: impl Fn(usize) -> &'static str) -> Reference {
        let mut r = Reference::default();
        for (i, rec) in records.iter().enumerate() {
            let key = AggregateKey::of(rec);
            let new = !r.flows.contains_key(&key);
            let f = r.flows.entry(key).or_insert_with(|| RefFlow {
                first: u64::MAX,
                ..Default::default()
            });
            f.packets += rec.packets;
            f.bytes += rec.bytes;
            f.first = f.first.min(rec.first);
            f.last = f.last.max(rec.last);
            f.tcp_flags |= rec.tcp_flags;
            f.probes.insert(probe(i).to_string());
            let t = r
                .totals
                .entry((rec.line.to_string(), rec.direction))
                .or_default();
            t.bytes += rec.bytes;
            t.packets += rec.packets;
            t.records += 1;
            t.flows += u64::from(new);
            *r.records_per_line.entry(rec.line.to_string()).or_default() += 1;
        }
        r
    }

    /// Brute-force top talkers of `line`: (sources, destinations, conversations) as
    /// (address(es), bytes, packets, flows), largest bytes first, ties by address.
    #[allow(clippy::type_complexity)]
    pub fn top(
        &self,
        line: &str,
        n: usize,
    ) -> (
        Vec<(IpAddr, u64, u64, u64)>,
        Vec<(IpAddr, u64, u64, u64)>,
        Vec<((IpAddr, IpAddr), u64, u64, u64)>,
    ) {
        let mut src: HashMap<IpAddr, (u64, u64, u64)> = HashMap::new();
        let mut dst: HashMap<IpAddr, (u64, u64, u64)> = HashMap::new();
        let mut conv: HashMap<(IpAddr, IpAddr), (u64, u64, u64)> = HashMap::new();
        for (k, f) in self.flows.iter().filter(|(k, _)| k.line == line) {
            for e in [src.entry(k.src).or_default(), dst.entry(k.dst).or_default()] {
                e.0 += f.bytes;
                e.1 += f.packets;
                e.2 += 1;
            }
            let e = conv.entry((k.src, k.dst)).or_default();
            e.0 += f.bytes;
            e.1 += f.packets;
            e.2 += 1;
        }
        fn top<K: Ord + Copy>(m: HashMap<K, (u64, u64, u64)>, n: usize) -> Vec<(K, u64, u64, u64)> {
            let mut v: Vec<_> = m.into_iter().map(|(k, (b, p, f))| (k, b, p, f)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v.truncate(n);
            v
        }
        (top(src, n), top(dst, n), top(conv, n))
    }
}

/// A TCP record of flow `10.0.<sport/256>.<sport%256> -> 192.0.2.1:443` on `line`,
/// spanning `[first_s, last_s]` seconds after 2024-01-01.
pub fn record(sport: u16, line: &str, first_s: u64, last_s: u64, bytes: u64) -> FlowRecord {
    const BASE_NS: u64 = 1_704_067_200 * 1_000_000_000;
    FlowRecord {
        src: IpAddr::from([10, 0, (sport >> 8) as u8, sport as u8]),
        dst: IpAddr::from([192, 0, 2, 1]),
        sport,
        dport: 443,
        proto: 6,
        packets: bytes.div_ceil(1000).max(1),
        bytes,
        first: BASE_NS + first_s * 1_000_000_000,
        last: BASE_NS + last_s * 1_000_000_000,
        tcp_flags: 0x18,
        line: line.into(),
        ifindex: 3,
        ..Default::default()
    }
}
