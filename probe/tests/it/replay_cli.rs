//! `tidegate-probe replay` as a user runs it: the built binary on corpus and synthetic
//! captures — the JSON record contract, error reporting (unreadable, not a capture,
//! truncated, corrupt), counters on malformed captures, and pcap/pcapng format variants.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::IpAddr;

use tidegate_testkit::paths::corpus_pcap;

use crate::support::{
    corpus::sum_json,
    pcap::{PcapNg, eth, ipv4, packet_record_ends, udp, write_pcap},
    probe_cli::{Run, bin, run_probe},
};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, and a valid RFC 3339 time.
fn assert_rfc3339_ns(v: &serde_json::Value, what: &str) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    let b = s.as_bytes();
    let shape_ok = b.len() == 30
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            29 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "{what} {s:?} is not RFC 3339 UTC with 9 fractional digits"
    );
    tidegate_probe::record::rfc3339_ns::parse(s).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn json_records_follow_the_contract() {
    // zoom: pcapng with tagged and untagged frames, TCP, UDP and ICMP.
    let file = corpus_pcap("ndpi-zoom.pcap");
    let run = run_probe(&[os("replay"), os("--json"), file.as_os_str()]);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert!(run.error_lines().is_empty(), "stderr:\n{}", run.stderr);
    assert!(!run.records.is_empty());
    let (mut tagged, mut untagged, mut tcp_with_flags) = (0, 0, 0);
    for r in &run.records {
        let o = r
            .as_object()
            .unwrap_or_else(|| panic!("record is not an object: {r}"));
        for f in [
            "src",
            "dst",
            "sport",
            "dport",
            "proto",
            "vlan",
            "packets",
            "bytes",
            "first",
            "last",
            "tcp_flags",
        ] {
            assert!(o.contains_key(f), "record lacks {f}: {r}");
        }
        let src: IpAddr = r["src"]
            .as_str()
            .unwrap()
            .parse()
            .expect("src is an IP address");
        let dst: IpAddr = r["dst"]
            .as_str()
            .unwrap()
            .parse()
            .expect("dst is an IP address");
        assert_eq!(src.is_ipv4(), dst.is_ipv4(), "{r}");
        for f in ["sport", "dport"] {
            assert!(r[f].as_u64().is_some_and(|p| p <= 65535), "{f}: {r}");
        }
        let proto = r["proto"].as_u64().expect("proto is a number");
        assert!(proto <= 255, "{r}");
        match &r["vlan"] {
            serde_json::Value::Null => untagged += 1,
            v => {
                assert!(v.as_u64().is_some_and(|v| v < 4096), "vlan: {r}");
                tagged += 1;
            }
        }
        let packets = r["packets"].as_u64().expect("packets");
        let bytes = r["bytes"].as_u64().expect("bytes");
        assert!(packets >= 1 && bytes >= 20 * packets, "{r}");
        let first = assert_rfc3339_ns(&r["first"], "first");
        let last = assert_rfc3339_ns(&r["last"], "last");
        assert!(first <= last, "{r}");
        let flags = r["tcp_flags"].as_u64().expect("tcp_flags is a number");
        assert!(flags < 0x1000, "{r}");
        if proto == 6 && flags != 0 {
            tcp_with_flags += 1;
        }
        if proto != 6 {
            assert_eq!(flags, 0, "{r}");
        }
        let icmp = proto == 1 || proto == 58;
        assert_eq!(o.contains_key("icmp_type"), icmp, "{r}");
        assert_eq!(r["line"], "ndpi-zoom", "default line is the file stem: {r}");
        assert_eq!(r["ifindex"], 0, "{r}");
        assert_eq!(r["direction"], "ingress", "{r}");
    }
    assert!(
        tagged > 0 && untagged > 0 && tcp_with_flags > 0,
        "{tagged} {untagged} {tcp_with_flags}"
    );
    // The same records (order aside) without --json, and --line renames the line.
    let plain = run_probe(&[os("replay"), os("--line"), os("uplink-1"), file.as_os_str()]);
    assert_eq!(plain.code, Some(0), "stderr:\n{}", plain.stderr);
    let mut a: Vec<String> = run.records.iter().map(|r| r.to_string()).collect();
    let mut b: Vec<String> = plain
        .records
        .iter()
        .map(|r| {
            assert_eq!(r["line"], "uplink-1");
            let mut r = r.clone();
            r["line"] = "ndpi-zoom".into();
            r.to_string()
        })
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // A per-file counter summary on stderr.
    let s = run.summary("ndpi-zoom.pcap");
    assert_eq!(
        s["packets"],
        s["accounted"] + s.get("non_ip").copied().unwrap_or(0)
    );
}

#[test]
fn nonexistent_file_gives_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-capture.pcap");
    let run = run_probe(&[os("replay"), os("--json"), missing.as_os_str()]);
    assert_ne!(run.code, Some(0));
    assert!(run.code.is_some(), "killed by a signal:\n{}", run.stderr);
    let err = run.error_line();
    assert!(err.contains(&*missing.to_string_lossy()), "{err}");
    assert!(err.contains("cannot open"), "{err}");
    assert!(run.records.is_empty());
}

#[test]
fn non_capture_file_gives_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.pcap");
    std::fs::write(&text, "#fam\tsrc\tdst\nthis is not a capture\n").unwrap();
    let empty = dir.path().join("empty.pcapng");
    std::fs::write(&empty, "").unwrap();
    for f in [&text, &empty] {
        let run = run_probe(&[os("replay"), f.as_os_str()]);
        assert!(
            run.code.is_some_and(|c| c != 0),
            "exit {:?}\n{}",
            run.code,
            run.stderr
        );
        let err = run.error_line();
        assert!(err.contains(&*f.to_string_lossy()), "{err}");
        assert!(err.contains("not a pcap or pcapng file"), "{err}");
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // A directory is not a capture either.
    let run = run_probe(&[os("replay"), dir.path().as_os_str()]);
    assert!(run.code.is_some_and(|c| c != 0));
    run.error_line();
}

/// Cuts a corpus capture in the middle of a packet record: the complete packets' records
/// come out (the same as for a copy cut exactly after them), then one error line, exit ≠ 0.
fn truncated_copy_keeps_complete_packets(name: &str) {
    let src = corpus_pcap(name);
    let data = std::fs::read(&src).unwrap();
    let ends = packet_record_ends(&data);
    assert!(ends.len() > 10, "{name}: too few packets");
    let k = ends.len() / 2;
    let cut = ends[k - 1] + (ends[k] - ends[k - 1]) / 2;
    let dir = tempfile::tempdir().unwrap();
    let exact = dir.path().join(format!("exact-{name}"));
    let trunc = dir.path().join(format!("cut-{name}"));
    std::fs::write(&exact, &data[..ends[k - 1]]).unwrap();
    std::fs::write(&trunc, &data[..cut]).unwrap();

    let ok = run_probe(&[os("replay"), os("--json"), exact.as_os_str()]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let summary_ok = ok.summary(&exact.file_name().unwrap().to_string_lossy());
    assert_eq!(
        summary_ok["packets"], k as u64,
        "{name}: the exact copy holds {k} packets"
    );

    let bad = run_probe(&[os("replay"), os("--json"), trunc.as_os_str()]);
    assert!(
        bad.code.is_some_and(|c| c != 0),
        "{name}: exit {:?}\n{}",
        bad.code,
        bad.stderr
    );
    assert!(!bad.stderr.contains("panicked"), "{}", bad.stderr);
    let e = bad.error_line();
    assert!(
        e.contains(&*trunc.to_string_lossy()) && e.contains("truncated"),
        "{e}"
    );
    assert!(e.contains(&format!("{k} complete packets")), "{e}");
    // The error comes after the records: the last stderr line, and stdout is complete.
    assert_eq!(bad.stderr.lines().last(), Some(e), "{}", bad.stderr);
    let summary_bad = bad.summary(&trunc.file_name().unwrap().to_string_lossy());
    assert_eq!(
        summary_bad, summary_ok,
        "{name}: counters of the complete packets"
    );
    assert_eq!(
        sum_json(&bad.records),
        sum_json(&ok.records),
        "{name}: records"
    );
    let accounted = bad.packets();
    assert_eq!(accounted, summary_bad["accounted"]);
    assert!(accounted > 0);
}

#[test]
fn truncated_pcap_keeps_complete_packets() {
    truncated_copy_keeps_complete_packets("ndpi-mongodb.pcap");
}

#[test]
fn truncated_pcapng_keeps_complete_packets() {
    truncated_copy_keeps_complete_packets("ndpi-quic_interop_V.pcapng");
}

#[test]
fn corrupt_record_header_is_reported_after_the_records() {
    let src = corpus_pcap("ndpi-mongodb.pcap");
    let mut data = std::fs::read(&src).unwrap();
    let ends = packet_record_ends(&data);
    // Record 6's captured length becomes 0x7fff_ffff (little-endian file).
    let hdr = ends[4];
    assert_eq!(
        &data[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "expected a little-endian pcap"
    );
    data[hdr + 8..hdr + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("corrupt.pcap");
    std::fs::write(&f, &data).unwrap();
    let run = run_probe(&[os("replay"), f.as_os_str()]);
    assert!(run.code.is_some_and(|c| c != 0), "{}", run.stderr);
    let err = run.error_line();
    assert!(
        err.contains("corrupt packet record 6") && err.contains("5 complete packets"),
        "{err}"
    );
    assert_eq!(run.packets(), 5);
}

#[test]
fn several_files_report_every_bad_one_and_keep_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pcap");
    let junk = dir.path().join("junk.pcapng");
    std::fs::write(&junk, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).unwrap();
    let good = corpus_pcap("ndpi-mongodb.pcap");
    let run = run_probe(&[
        os("replay"),
        missing.as_os_str(),
        good.as_os_str(),
        junk.as_os_str(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let errs = run.error_lines();
    assert_eq!(errs.len(), 2, "{}", run.stderr);
    assert!(errs[0].contains("missing.pcap"), "{}", errs[0]);
    assert!(
        errs[1].contains("junk.pcapng") && errs[1].contains("gzip"),
        "{}",
        errs[1]
    );
    assert_eq!(run.packets(), 27, "all of the good file's packets");
}

fn counters(run: &Run, file: &str) -> BTreeMap<String, u64> {
    run.summary(file)
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The malformed corpus captures replay without panicking, and their counters say
/// exactly what the parser found. Their malformations are all of kinds the flow
/// definition accounts normally (see CORPUS_DEVIATIONS.md, "Malformed captures"):
/// - badpackets: 93 UDP/DNS packets whose IPv4 total length (1500) exceeds the frame —
///   bytes are the IPv4 total length by definition, as in the truth;
/// - malformed_icmp: one ICMP message of unknown type 165 — a valid IP packet;
/// - ip_fragmented_garbage: 1248 non-first fragments and 4 first fragments with bogus TCP
///   data offsets — ports and flags are inside the packet, nothing is cut off.
///
/// So no error counter fires on them; the counters that must fire on broken frames are
/// checked on gnutella's 4-byte frame below and on a synthetic capture with one frame
/// of every kind in `every_error_counter_fires_on_its_frame`.
#[test]
fn malformed_corpus_captures_do_not_panic_and_count_correctly() {
    let cases: [(&str, &[(&str, u64)]); 4] = [
        (
            "ndpi-badpackets.pcap",
            &[("packets", 93), ("frame_bytes", 49526), ("accounted", 93)],
        ),
        (
            "ndpi-malformed_icmp.pcap",
            &[("packets", 1), ("frame_bytes", 42), ("accounted", 1)],
        ),
        (
            "ndpi-ip_fragmented_garbage.pcap",
            &[
                ("packets", 1252),
                ("frame_bytes", 62584),
                ("accounted", 1252),
            ],
        ),
        (
            "ndpi-gnutella.pcap",
            &[
                ("packets", 3905),
                ("frame_bytes", 578474),
                ("accounted", 3882),
                ("non_ip", 22),
                ("truncated_l2", 1),
            ],
        ),
    ];
    for (name, want) in cases {
        let f = corpus_pcap(name);
        let run = run_probe(&[os("replay"), f.as_os_str()]);
        assert_eq!(run.code, Some(0), "{name}:\n{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{name}:\n{}", run.stderr);
        assert!(run.error_lines().is_empty(), "{name}:\n{}", run.stderr);
        assert_eq!(counters(&run, name), expect(want), "{name}");
    }
}

fn tcp_hdr(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

/// One frame of every kind the parser rejects or accounts with reduced detail, in a
/// big-endian nanosecond pcap.
#[test]
fn every_error_counter_fires_on_its_frame() {
    let (a, b) = ([192, 0, 2, 1], [192, 0, 2, 2]);
    let t0 = 1_700_000_000_000_000_001u64;
    let mut bad_ihl = ipv4(a, b, 17, &udp(1, 2, 0), None);
    bad_ihl[0] = 0x43;
    // IPv6: seven hop-by-hop headers (one more than the walk limit), then TCP.
    let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    let mut pl = Vec::new();
    for i in 0..7 {
        pl.extend_from_slice(&[if i == 6 { 6 } else { 0 }, 0, 1, 4, 0, 0, 0, 0]);
    }
    pl.extend(tcp_hdr(5, 6, 0x02));
    v6[4..6].copy_from_slice(&(pl.len() as u16).to_be_bytes());
    v6.extend(pl);
    let frames: Vec<(u64, Vec<u8>)> = vec![
        (t0, eth(0x0806, &[0u8; 28])),                               // ARP
        (t0 + 1, vec![0u8; 10]),                                     // cut in Ethernet
        (t0 + 2, eth(0x0800, &[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6])), // cut in IPv4
        (t0 + 3, eth(0x0800, &bad_ihl)),                             // IHL 3
        (t0 + 4, eth(0x0800, &ipv4(a, b, 6, &[0, 80], Some(22)))),   // TCP cut
        (t0 + 5, eth(0x86dd, &v6)),                                  // ext chain too long
        (
            t0 + 6,
            eth(0x0800, &ipv4(a, b, 17, &udp(1000, 53, 12), None)),
        ), // fine
    ];
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kinds.pcap");
    write_pcap(&f, 1, true, true, &frames);
    let run = run_probe(&[os("replay"), os("--json"), f.as_os_str()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let frame_bytes: usize = frames.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(
        counters(&run, "kinds.pcap"),
        expect(&[
            ("packets", 7),
            ("frame_bytes", frame_bytes as u64),
            ("accounted", 3),
            ("non_ip", 1),
            ("truncated_l2", 1),
            ("truncated_ip", 1),
            ("bad_ip_header", 1),
            ("truncated_l4", 1),
            ("ipv6_ext_limit", 1),
        ])
    );
    assert_eq!(run.records.len(), 3, "{}", run.stdout);
    let by_proto: BTreeMap<u64, &serde_json::Value> = run
        .records
        .iter()
        .map(|r| (r["proto"].as_u64().unwrap(), r))
        .collect();
    // TCP with the L4 header cut: accounted without ports.
    assert_eq!(
        (
            by_proto[&6]["sport"].as_u64(),
            by_proto[&6]["bytes"].as_u64()
        ),
        (Some(0), Some(22))
    );
    // The chain longer than the limit keeps the header it stopped at (hop-by-hop).
    assert_eq!(by_proto[&0]["bytes"].as_u64(), Some(40 + 56 + 20));
    let u = by_proto[&17];
    assert_eq!(
        (
            u["sport"].as_u64(),
            u["dport"].as_u64(),
            u["bytes"].as_u64()
        ),
        (Some(1000), Some(53), Some(40))
    );
    assert_eq!(
        u["first"], "2023-11-14T22:13:20.000000007Z",
        "nanosecond timestamps, big-endian file"
    );
}

/// pcapng with several interfaces of different link types and timestamp resolutions
/// (if_tsresol decimal and binary, if_tsoffset), a simple packet block, an unsupported
/// link type, and a second section in the other byte order.
#[test]
fn pcapng_interfaces_link_types_and_resolutions() {
    let s = 1_700_000_000u64; // 2023-11-14T22:13:20Z
    let flow = |n: u8, sport: u16| ipv4([10, 0, 0, n], [10, 0, 1, n], 17, &udp(sport, 53, 4), None);
    let mut p = PcapNg::new(false);
    p.interface(1, None, None); // 0: Ethernet, µs (default)
    p.interface(101, Some(9), None); // 1: raw IP, ns
    p.interface(1, Some(3), Some(1000)); // 2: Ethernet, ms, +1000 s
    p.interface(147, None, None); // 3: LINKTYPE_USER0 — unsupported
    p.interface(12, Some(0x80 | 20), None); // 4: raw IP (12), 2^-20 s units
    p.epb(0, s * 1_000_000 + 123_456, &eth(0x0800, &flow(1, 1001)));
    p.spb(&eth(0x0800, &flow(1, 1001))); // no timestamp: after the previous packet
    p.epb(1, s * 1_000_000_000 + 123_456_789, &flow(2, 1002));
    p.epb(2, (s - 1000) * 1000 + 500, &eth(0x0800, &flow(3, 1003)));
    p.epb(3, s * 1_000_000, &[0u8; 20]);
    p.epb(4, (s << 20) + (1 << 19), &flow(4, 1004)); // + 0.5 s
    p.epb(0, s * 1_000_000 + 200_000, &eth(0x0806, &[0u8; 28])); // ARP
    p.section(true); // big-endian section: interfaces start again
    p.interface(1, Some(9), None);
    p.epb(
        0,
        s * 1_000_000_000 + 999_999_999,
        &eth(0x0800, &flow(5, 1005)),
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mixed.pcapng");
    std::fs::write(&f, &p.out).unwrap();
    let run = run_probe(&[os("replay"), os("--json"), f.as_os_str()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let c = counters(&run, "mixed.pcapng");
    assert_eq!(
        (
            c["packets"],
            c["accounted"],
            c["non_ip"],
            c["unsupported_link_type"]
        ),
        (8, 6, 1, 1),
        "{c:?}"
    );
    let by_sport: BTreeMap<u64, &serde_json::Value> = run
        .records
        .iter()
        .map(|r| (r["sport"].as_u64().unwrap(), r))
        .collect();
    let want = [
        (
            1001,
            2,
            "2023-11-14T22:13:20.123456000Z",
            "2023-11-14T22:13:20.123456000Z",
        ),
        (
            1002,
            1,
            "2023-11-14T22:13:20.123456789Z",
            "2023-11-14T22:13:20.123456789Z",
        ),
        (
            1003,
            1,
            "2023-11-14T22:13:20.500000000Z",
            "2023-11-14T22:13:20.500000000Z",
        ),
        (
            1004,
            1,
            "2023-11-14T22:13:20.500000000Z",
            "2023-11-14T22:13:20.500000000Z",
        ),
        (
            1005,
            1,
            "2023-11-14T22:13:20.999999999Z",
            "2023-11-14T22:13:20.999999999Z",
        ),
    ];
    assert_eq!(by_sport.len(), want.len(), "{}", run.stdout);
    for (sport, pk, first, last) in want {
        let r = by_sport[&sport];
        assert_eq!(
            (
                r["packets"].as_u64(),
                r["first"].as_str(),
                r["last"].as_str()
            ),
            (Some(pk), Some(first), Some(last)),
            "{r}"
        );
        assert_eq!(r["bytes"].as_u64(), Some(32 * pk), "{r}");
    }
}

/// Event-time timeouts: a flow idle longer than --idle-timeout is split into two records
/// whose sums are the flow's totals; --active-timeout splits a long flow.
#[test]
fn timeouts_split_records_in_event_time() {
    let t0 = 1_600_000_000_000_000_000u64;
    let s = 1_000_000_000u64;
    let pkt = |sport| {
        eth(
            0x0800,
            &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(sport, 9, 0), None),
        )
    };
    let mut frames = Vec::new();
    // Flow 7: packets at 0, 1, 2 s, then 20 s (idle gap > 5 s).
    for t in [0, 1, 2, 20] {
        frames.push((t0 + t * s, pkt(7)));
    }
    // Flow 8: one packet a second for 25 s.
    for t in 0..25 {
        frames.push((t0 + t * s + 1, pkt(8)));
    }
    frames.sort_by_key(|f| f.0);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("timeouts.pcap");
    write_pcap(&f, 1, false, false, &frames);
    let run = run_probe(&[
        os("replay"),
        os("--idle-timeout"),
        os("5"),
        os("--active-timeout"),
        os("10"),
        f.as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let recs = |sport: u64| -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = run
            .records
            .iter()
            .filter(|r| r["sport"].as_u64() == Some(sport))
            .map(|r| {
                (
                    r["packets"].as_u64().unwrap(),
                    tidegate_probe::record::rfc3339_ns::parse(r["first"].as_str().unwrap())
                        .unwrap(),
                )
            })
            .collect();
        v.sort_by_key(|x| x.1);
        v
    };
    let r7 = recs(7);
    assert_eq!(
        r7.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![3, 1],
        "{r7:?}"
    );
    let r8 = recs(8);
    assert!(r8.len() >= 3, "active timeout splits the 25 s flow: {r8:?}");
    assert_eq!(r8.iter().map(|x| x.0).sum::<u64>(), 25);
    // Invalid timeouts are rejected by the argument parser.
    let bad = run_probe(&[os("replay"), os("--idle-timeout"), os("0"), f.as_os_str()]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}

#[test]
fn help_lists_the_replay_options() {
    let out = std::process::Command::new(bin())
        .args(["replay", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for o in ["--json", "--active-timeout", "--idle-timeout", "--line"] {
        assert!(text.contains(o), "{o} missing from:\n{text}");
    }
}
