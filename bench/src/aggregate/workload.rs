//! Records to push through the aggregator: the capture corpus, replayed like a probe
//! exports it, and synthetic records over a chosen number of distinct flow keys.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use tidegate_common::Direction;
use tidegate_probe::capture::pcap::Replay;
use tidegate_probe::table::Timeouts;
use tidegate_wire::record::FlowRecord;

use crate::BenchError;

/// 2026-01-01T00:00:00Z in Unix ns: synthetic and rebased corpus records start here.
pub const T0_NS: u64 = 1_767_225_600 * 1_000_000_000;
const NS: u64 = 1_000_000_000;

/// Line names records are spread over.
pub const LINES: [&str; 4] = ["hk-intl-1", "hk-intl-2", "sg-intl-1", "sg-intl-2"];

/// Every capture of `dir` (`*.pcap`, `*.pcapng`), each replayed with the probe's default
/// export timeouts on line `LINES[i % 4]`, rebased so every capture starts at [`T0_NS`]
/// (the lines run side by side). Files that cannot be read completely contribute the
/// records of what could be read.
pub fn corpus(dir: &Path) -> Result<Vec<FlowRecord>, BenchError> {
    let io = |source| BenchError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let mut replay = Replay::new(Timeouts::default());
        let mut recs: Vec<FlowRecord> = Vec::new();
        let line = LINES[i % LINES.len()];
        replay
            .replay_file(path, line, &mut recs)
            .map_err(|source| BenchError::Io {
                path: path.clone(),
                source,
            })?;
        replay.finish(&mut recs).map_err(|source| BenchError::Io {
            path: path.clone(),
            source,
        })?;
        let Some(start) = recs.iter().map(|r| r.first.min(r.last)).min() else {
            continue;
        };
        for r in &mut recs {
            r.first = r.first - start + T0_NS;
            r.last = r.last - start + T0_NS;
        }
        all.extend(recs);
    }
    if all.is_empty() {
        return Err(BenchError::Corpus {
            path: dir.to_path_buf(),
            reason: format!("{} capture files gave no flow records", files.len()),
        });
    }
    Ok(all)
}

/// `base` repeated until `total` records, repetition `k` shifted `k * period_s` seconds
/// later: the same flows reported again interval after interval (the merge path).
pub fn repeat(base: &[FlowRecord], total: usize, period_s: u64) -> Vec<FlowRecord> {
    let mut out = Vec::with_capacity(total);
    let mut k = 0u64;
    while out.len() < total && !base.is_empty() {
        for r in base.iter().take(total - out.len()) {
            let mut r = r.clone();
            r.first += k * period_s * NS;
            r.last += k * period_s * NS;
            out.push(r);
        }
        k += 1;
    }
    out
}

/// SplitMix64: a fast, well-mixed hash of an index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The flow key fields of synthetic key `k` (distinct for every `k < 2^28`); the line as
/// its index in [`LINES`].
fn key_of(k: u64) -> (IpAddr, IpAddr, u16, u16, u8, usize, Direction) {
    let h = mix(k);
    let src = IpAddr::V4(Ipv4Addr::from(
        0x0a00_0000 | ((k >> 4) as u32 & 0x00ff_ffff),
    ));
    let sport = 32_768 + ((k & 15) as u16) * 1024 + (h & 1023) as u16;
    // Destinations are few and skewed, like servers: 4096 addresses, low ones popular.
    let d = (h >> 10) % 4096;
    let d = d * d / 4096;
    let dst = IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | d as u32));
    let (proto, dport) = match (h >> 24) % 10 {
        0..=5 => (6, 443),
        6 => (6, 80),
        7 => (17, 53),
        8 => (17, 443),
        _ => (6, 8443),
    };
    let line = ((h >> 32) % LINES.len() as u64) as usize;
    let dir = if (h >> 40) & 1 == 0 {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    (src, dst, sport, dport, proto, line, dir)
}

/// `total` records over `keys` distinct flow keys, visited in a scattered order (each key
/// `total / keys` times), with event time advancing evenly over `span_s` seconds from
/// [`T0_NS`]. Records last 0–30 s, carry 1–200 packets of 40–1500 bytes (DNS queries:
/// 1–2 packets of 60–159 bytes).
pub fn synthetic(keys: usize, total: usize, span_s: u64) -> Vec<FlowRecord> {
    let keys = keys.max(1) as u64;
    // A stride coprime with every keys count used (powers of ten): a permutation.
    const STRIDE: u64 = 1_000_003;
    let step = span_s * NS / (total.max(1) as u64);
    // One shared name per line, as the collector's batch decoding shares them.
    let names: Vec<tidegate_wire::Name> = LINES.iter().map(|l| (*l).into()).collect();
    (0..total as u64)
        .map(|j| {
            let k = (j % keys) * STRIDE % keys;
            let (src, dst, sport, dport, proto, line, direction) = key_of(k);
            let h = mix(j ^ 0x5eed);
            let last = T0_NS + j * step;
            let dur = (h % 30_000) * 1_000_000;
            // DNS flows are single queries (a fresh source port each), as resolvers see
            // them: one or two packets of 60-159 bytes. Everything else: 1-200 packets
            // of 40-1500 bytes.
            let (packets, size) = if dport == 53 {
                (1 + (h >> 16) % 2, 60 + (h >> 32) % 100)
            } else {
                (1 + (h >> 16) % 200, 40 + (h >> 32) % 1461)
            };
            FlowRecord {
                src,
                dst,
                sport,
                dport,
                proto,
                packets,
                bytes: packets * size,
                first: last.saturating_sub(dur).max(T0_NS),
                last,
                tcp_flags: if proto == 6 { 0x18 } else { 0 },
                line: names[line].clone(),
                ifindex: 2,
                direction,
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn synthetic_records_cover_exactly_the_requested_keys() {
        let recs = synthetic(10_000, 25_000, 60);
        let keys: HashSet<_> = recs
            .iter()
            .map(|r| {
                (
                    r.src,
                    r.dst,
                    r.sport,
                    r.dport,
                    r.proto,
                    r.line.clone(),
                    r.direction,
                )
            })
            .collect();
        assert_eq!(keys.len(), 10_000);
        assert!(recs.windows(2).all(|w| w[0].last <= w[1].last));
        assert!(recs.iter().all(|r| r.first <= r.last && r.packets >= 1));
        // Keys are distinct by (src, sport) alone, for up to 2^28 keys.
        let sk: HashSet<_> = (0..200_000u64)
            .map(|k| {
                let x = key_of(k);
                (x.0, x.2)
            })
            .collect();
        assert_eq!(sk.len(), 200_000);
    }

    #[test]
    fn repeat_shifts_each_round() {
        let base = synthetic(3, 3, 1);
        let r = repeat(&base, 7, 60);
        assert_eq!(r.len(), 7);
        assert_eq!(r[3].last, base[0].last + 60 * NS);
        assert_eq!(r[6].first, base[0].first + 120 * NS);
    }
}
