//! Replays EVERY capture of the shared corpus in-process and compares the flow records,
//! summed by (src, dst, proto, sport, dport) over VLANs and over timeout splits, with
//! the tshark-made ground truth (`corpus/truth/<capture>.tsv`): packets and IP bytes per
//! flow, first/last packet time (the truth has µs precision), total frames and frame
//! bytes, and the non-IP frame count.
//!
//! Differences are allowed only where they are listed below with the reason our side is
//! the right one (details and evidence: `probe/CORPUS_DEVIATIONS.md`). Each entry names the
//! capture and the exact truth rows and our rows; the test checks that the listed truth
//! rows exist exactly as listed (a stale entry fails), that the entry belongs to its class
//! (e.g. only IPv6 rows keyed by an extension header), that no packet or byte is lost by
//! the re-keying, and then requires everything else to match exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use tidegate_common::Counter;
use tidegate_probe::capture::pcap::{Replay, ReplayStats};
use tidegate_probe::record::FlowRecord;
use tidegate_probe::table::Timeouts;
use tidegate_testkit::paths::{corpus_dir, corpus_pcaps};

use crate::support::corpus::{Counts, Key, Truth, read_truth, sum_records, truth_path};

/// Why a capture's truth legitimately differs from our records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// IPv6 packet with extension headers: the truth keys it by the FIRST next-header
    /// value (0 hop-by-hop, 44 fragment, ...) without ports; we key it by the upper-layer
    /// protocol after walking the chain (IPFIX protocolIdentifier: "the Next Header field
    /// in the last extension header"), with the ports of a first fragment, exactly as the
    /// truth itself does for IPv4 first fragments.
    Ipv6ExtHeaders,
}

/// IPv6 extension header numbers the parser walks (hop-by-hop, routing, fragment, AH,
/// destination options, mobility, HIP, shim6) — the only truth protocols the
/// [`Class::Ipv6ExtHeaders`] class may re-key.
const IPV6_EXT: [i32; 8] = [0, 43, 44, 51, 60, 135, 139, 140];

/// One flow row: src, dst, proto, sport, dport, packets, ip_bytes.
type Row = (&'static str, &'static str, i32, u16, u16, u64, u64);

/// An expected difference: on `capture`, the `truth` rows are our `ours` rows.
struct Deviation {
    capture: &'static str,
    class: Class,
    truth: &'static [Row],
    ours: &'static [Row],
}

const DEVIATIONS: &[Deviation] = &[
    // MLDv2 reports (ICMPv6 type 143) behind a hop-by-hop header (router alert).
    Deviation {
        capture: "ndpi-android.pcap",
        class: Class::Ipv6ExtHeaders,
        truth: &[
            ("::", "ff02::16", 0, 0, 0, 2, 152),
            ("fe80::4e6a:f6ff:fe9f:f627", "ff02::16", 0, 0, 0, 2, 152),
        ],
        ours: &[
            ("::", "ff02::16", 58, 0, 0, 2, 152),
            ("fe80::4e6a:f6ff:fe9f:f627", "ff02::16", 58, 0, 0, 2, 152),
        ],
    },
    Deviation {
        capture: "ndpi-gnutella.pcap",
        class: Class::Ipv6ExtHeaders,
        truth: &[("fe80::c50d:519f:96a4:e108", "ff02::16", 0, 0, 0, 16, 1236)],
        ours: &[("fe80::c50d:519f:96a4:e108", "ff02::16", 58, 0, 0, 16, 1236)],
    },
    // Fragmented DNS-over-UDP responses: first fragment carries the UDP header (ports),
    // the second one does not (ports 0), both are UDP.
    Deviation {
        capture: "ndpi-dns_fragmented.pcap",
        class: Class::Ipv6ExtHeaders,
        truth: &[
            (
                "2001:470:765b::a25:53",
                "2001:470:1f0b:16b0:20c:29ff:fe7c:a4cb",
                44,
                0,
                0,
                2,
                1834,
            ),
            (
                "2001:470:765b::a25:53",
                "2a00:1450:4013:c03::10a",
                44,
                0,
                0,
                2,
                1605,
            ),
            (
                "2001:470:765b::a25:53",
                "2a00:1450:4013:c06::105",
                44,
                0,
                0,
                2,
                1594,
            ),
        ],
        ours: &[
            (
                "2001:470:765b::a25:53",
                "2001:470:1f0b:16b0:20c:29ff:fe7c:a4cb",
                17,
                53,
                55729,
                1,
                1480,
            ),
            (
                "2001:470:765b::a25:53",
                "2001:470:1f0b:16b0:20c:29ff:fe7c:a4cb",
                17,
                0,
                0,
                1,
                354,
            ),
            (
                "2001:470:765b::a25:53",
                "2a00:1450:4013:c03::10a",
                17,
                53,
                46433,
                1,
                1496,
            ),
            (
                "2001:470:765b::a25:53",
                "2a00:1450:4013:c03::10a",
                17,
                0,
                0,
                1,
                109,
            ),
            (
                "2001:470:765b::a25:53",
                "2a00:1450:4013:c06::105",
                17,
                53,
                63369,
                1,
                1496,
            ),
            (
                "2001:470:765b::a25:53",
                "2a00:1450:4013:c06::105",
                17,
                0,
                0,
                1,
                98,
            ),
        ],
    },
];

/// Frames cut inside the link-layer header: the truth has no IP layer for them and
/// counts them as `#non-ip`; we count them as `truncated_l2` (we cannot know whether
/// they carried IP). Any other capture must have none.
const TRUNCATED_L2: &[(&str, u64)] = &[
    // Frame 1: 4 bytes captured of a 60-byte frame (snap length 4).
    ("ndpi-gnutella.pcap", 1),
];

/// Captures on which the shared parser (common/src/parse.rs) is known to be wrong. They
/// are NOT excused: the test fails on them until the parser is fixed; this table only
/// explains the failure. An entry whose capture matches fails too (remove it).
const KNOWN_PARSER_BUGS: &[(&str, &str)] = &[];

fn key(r: &Row) -> Key {
    let ip = |s: &str| -> IpAddr {
        s.parse()
            .unwrap_or_else(|_| panic!("bad address {s:?} in table"))
    };
    Key {
        src: ip(r.0),
        dst: ip(r.1),
        proto: r.2,
        sport: r.3,
        dport: r.4,
    }
}

fn counts(r: &Row) -> Counts {
    Counts {
        packets: r.5,
        ip_bytes: r.6,
    }
}

/// Expected flows by key, and the keys a deviation touched.
type Expected = (BTreeMap<Key, Counts>, BTreeSet<Key>);

/// Applies the capture's deviations to the truth; returns the expected flows and the keys
/// they touched, or the reasons the table is wrong.
fn expected_flows(capture: &str, truth: &Truth) -> Result<Expected, Vec<String>> {
    let mut exp = truth.by_key();
    let mut touched = BTreeSet::new();
    let mut problems = Vec::new();
    for d in DEVIATIONS.iter().filter(|d| d.capture == capture) {
        // Class invariants: only IPv6 rows keyed by an extension header are re-keyed, to
        // rows of the same address pair, with every packet and byte kept.
        let mut by_pair: BTreeMap<(IpAddr, IpAddr), (Counts, Counts)> = BTreeMap::new();
        for r in d.truth {
            let k = key(r);
            match d.class {
                Class::Ipv6ExtHeaders => {
                    if !k.src.is_ipv6() || !IPV6_EXT.contains(&k.proto) {
                        problems.push(format!(
                            "deviation row {k} is not an IPv6 extension-header key"
                        ));
                    }
                }
            }
            by_pair.entry((k.src, k.dst)).or_default().0 += counts(r);
        }
        for r in d.ours {
            let k = key(r);
            if IPV6_EXT.contains(&k.proto) {
                problems.push(format!(
                    "deviation row {k}: our side must be an upper-layer protocol"
                ));
            }
            by_pair.entry((k.src, k.dst)).or_default().1 += counts(r);
        }
        for ((s, t), (a, b)) in &by_pair {
            if a != b {
                problems.push(format!(
                    "deviation for {s} > {t} does not conserve packets/bytes: truth {}/{} vs ours {}/{}",
                    a.packets, a.ip_bytes, b.packets, b.ip_bytes
                ));
            }
        }
        // The listed truth rows must be exactly what the truth file says (stale check).
        for r in d.truth {
            let k = key(r);
            match exp.get(&k) {
                Some(c) if *c == counts(r) => {
                    exp.remove(&k);
                    touched.insert(k);
                }
                other => problems.push(format!(
                    "stale deviation: truth row {k} {}/{} not in the truth file (found {other:?})",
                    r.5, r.6
                )),
            }
        }
        for r in d.ours {
            let k = key(r);
            *exp.entry(k).or_default() += counts(r);
            touched.insert(k);
        }
    }
    if problems.is_empty() {
        Ok((exp, touched))
    } else {
        Err(problems)
    }
}

struct Outcome {
    name: String,
    /// Mismatch lines (empty: the capture matches).
    mismatches: Vec<String>,
    secs: f64,
}

fn check_capture(path: &Path) -> Outcome {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let t0 = Instant::now();
    let mut replay = Replay::new(Timeouts::default());
    let mut records: Vec<FlowRecord> = Vec::new();
    let report = replay
        .replay_file(path, "corpus", &mut records)
        .expect("collecting records");
    let stats: ReplayStats = replay.finish(&mut records).expect("collecting records");
    let secs = t0.elapsed().as_secs_f64();
    let mut m = Vec::new();
    if let Some(e) = &report.error {
        m.push(format!("file error: {e}"));
    }
    let truth_file = truth_path(path);
    if !truth_file.is_file() {
        m.push(format!("no truth file {}", truth_file.display()));
        return Outcome {
            name,
            mismatches: m,
            secs,
        };
    }
    let truth = read_truth(&truth_file);

    // Pipeline conservation: every accounted packet is in exactly one record.
    let rec_pkts: u64 = records.iter().map(|r| r.packets).sum();
    if rec_pkts != stats.get(Counter::Accounted) {
        m.push(format!(
            "records hold {rec_pkts} packets but {} were accounted",
            stats.get(Counter::Accounted)
        ));
    }
    // Every frame of the file, with its wire length.
    let truth_frames = truth.ip_packets() + truth.non_ip_packets;
    if stats.get(Counter::Packets) != truth_frames {
        m.push(format!(
            "frames: ours {} truth {truth_frames}",
            stats.get(Counter::Packets)
        ));
    }
    let truth_fb: u64 =
        truth.flows.iter().map(|f| f.frame_bytes).sum::<u64>() + truth.non_ip_frame_bytes;
    if stats.get(Counter::FrameBytes) != truth_fb {
        m.push(format!(
            "frame bytes: ours {} truth {truth_fb}",
            stats.get(Counter::FrameBytes)
        ));
    }
    // Non-IP frames, plus frames cut inside L2 that the truth also files as non-IP.
    let tl2 = TRUNCATED_L2
        .iter()
        .find(|(c, _)| *c == name)
        .map_or(0, |(_, n)| *n);
    if stats.get(Counter::ErrTruncatedL2) != tl2 {
        m.push(format!(
            "truncated_l2: ours {} expected {tl2}",
            stats.get(Counter::ErrTruncatedL2)
        ));
    }
    let non_ip = stats.get(Counter::ErrNonIp) + stats.get(Counter::ErrTruncatedL2);
    if non_ip != truth.non_ip_packets {
        m.push(format!(
            "non-IP frames: ours {} (non_ip + truncated_l2) truth {}",
            non_ip, truth.non_ip_packets
        ));
    }
    // Every frame the truth keys as a flow must be accounted by us.
    for c in [
        Counter::ErrTruncatedIp,
        Counter::ErrBadIpHeader,
        Counter::ErrLinkType,
    ] {
        if stats.get(c) != 0 {
            m.push(format!(
                "{}={} (the truth accounts these frames as flows)",
                c.name(),
                stats.get(c)
            ));
        }
    }

    let ours = sum_records(&records);
    match expected_flows(&name, &truth) {
        Err(problems) => m.extend(
            problems
                .into_iter()
                .map(|p| format!("deviation table: {p}")),
        ),
        Ok((exp, touched)) => {
            let keys: BTreeSet<&Key> = ours.keys().chain(exp.keys()).collect();
            for k in keys {
                let a = ours.get(k).copied().unwrap_or_default();
                let b = exp.get(k).copied().unwrap_or_default();
                if a != b {
                    m.push(format!(
                        "{k:<70} ours {:>6} pkts {:>9} B   truth {:>6} pkts {:>9} B",
                        a.packets, a.ip_bytes, b.packets, b.ip_bytes
                    ));
                }
            }
            // First/last packet time per flow (truth: µs, float-rounded).
            let mut times: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
            for r in &records {
                let e = times.entry(Key::from(r)).or_insert((u64::MAX, 0));
                e.0 = e.0.min(r.first);
                e.1 = e.1.max(r.last);
            }
            let mut ttimes: BTreeMap<Key, (f64, f64)> = BTreeMap::new();
            for f in &truth.flows {
                let e = ttimes.entry(f.key).or_insert((f64::MAX, 0.0));
                e.0 = e.0.min(f.first);
                e.1 = e.1.max(f.last);
            }
            for (k, (tf, tl)) in &ttimes {
                if touched.contains(k) {
                    continue;
                }
                let Some((of, ol)) = times.get(k) else {
                    continue;
                };
                let off = |ns: u64, s: f64| (ns as f64 / 1e9 - s).abs() > 1.5e-6;
                if off(*of, *tf) || off(*ol, *tl) {
                    m.push(format!(
                        "{k}: first/last ours {of}/{ol} ns, truth {tf:.6}/{tl:.6} s"
                    ));
                }
            }
        }
    }
    Outcome {
        name,
        mismatches: m,
        secs,
    }
}

#[test]
fn every_corpus_capture_matches_its_truth() {
    let t0 = Instant::now();
    let captures = corpus_pcaps();
    assert!(!captures.is_empty(), "no captures in the corpus");
    // Every truth file has its capture, and every table entry names a real capture.
    let names: BTreeSet<String> = captures
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let truth_dir = corpus_dir().join("truth");
    for e in std::fs::read_dir(&truth_dir).expect("read truth dir") {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(cap) = n.strip_suffix(".tsv") {
            assert!(names.contains(cap), "truth file {n} has no capture");
        }
    }
    for c in DEVIATIONS
        .iter()
        .map(|d| d.capture)
        .chain(TRUNCATED_L2.iter().map(|t| t.0))
    {
        assert!(names.contains(c), "table entry for unknown capture {c}");
    }

    let outcomes: Vec<Outcome> = captures.iter().map(|p| check_capture(p)).collect();
    let replay_secs: f64 = outcomes.iter().map(|o| o.secs).sum();
    let matching = outcomes.iter().filter(|o| o.mismatches.is_empty()).count();
    let with_dev: BTreeSet<&str> = DEVIATIONS
        .iter()
        .map(|d| d.capture)
        .chain(TRUNCATED_L2.iter().map(|t| t.0))
        .collect();
    let mut report = String::new();
    let mut failed = 0;
    for o in &outcomes {
        let bug = KNOWN_PARSER_BUGS.iter().find(|(c, _)| *c == o.name);
        if o.mismatches.is_empty() {
            if bug.is_some() {
                failed += 1;
                let _ = writeln!(
                    report,
                    "{}: matches now — remove it from KNOWN_PARSER_BUGS",
                    o.name
                );
            }
            continue;
        }
        failed += 1;
        let _ = writeln!(report, "{}:", o.name);
        if let Some((_, why)) = bug {
            let _ = writeln!(report, "  KNOWN PARSER BUG (not excused): {why}");
        }
        for l in &o.mismatches {
            let _ = writeln!(report, "  {l}");
        }
    }
    println!(
        "{} captures: {} match (of which {} via documented deviations: {}), {} differ; \
         replay {:.2} s, test {:.2} s",
        outcomes.len(),
        matching,
        outcomes
            .iter()
            .filter(|o| o.mismatches.is_empty() && with_dev.contains(o.name.as_str()))
            .count(),
        with_dev.iter().copied().collect::<Vec<_>>().join(", "),
        outcomes.len() - matching,
        replay_secs,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failed == 0,
        "{failed} captures differ from their truth:\n{report}"
    );
}
