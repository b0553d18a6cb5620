//! Batch encoding: round trips, and fuzz-style garbage (truncations, bit flips, byte
//! rewrites in both the compressed bytes and the decompressed body) that must give an
//! error — or a batch that re-encodes consistently — and never a panic.

use std::net::IpAddr;

use super::*;
use crate::record::{FlowRecord, FlowSource, Verdict};
use tidegate_common::Direction;

/// Deterministic xorshift64* so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Applies 1 to `max_edits` random edits to `m` (stopping if it becomes empty): flip a
/// bit, set a random byte, set `0xff` (with `with_ff`), or truncate there.
fn mutate(rng: &mut Rng, m: &mut Vec<u8>, max_edits: usize, with_ff: bool) {
    for _ in 0..1 + rng.below(max_edits) {
        let i = rng.below(m.len());
        match rng.below(if with_ff { 4 } else { 3 }) {
            0 => m[i] ^= 1 << rng.below(8),
            1 => m[i] = rng.next() as u8,
            2 if with_ff => m[i] = 0xff,
            _ => m.truncate(i),
        }
        if m.is_empty() {
            break;
        }
    }
}

fn record(i: u64) -> FlowRecord {
    let v6 = i.is_multiple_of(3);
    let src: IpAddr = if v6 {
        format!("2001:db8::{:x}", i + 1).parse().unwrap()
    } else {
        format!("10.0.{}.{}", i / 250, i % 250).parse().unwrap()
    };
    let dst: IpAddr = if v6 {
        "2001:db8::ffff".parse().unwrap()
    } else if i.is_multiple_of(7) {
        // An IPv4-mapped address as a genuine IPv6 destination.
        "::ffff:192.0.2.9".parse().unwrap()
    } else {
        "192.0.2.1".parse().unwrap()
    };
    let icmp = i.is_multiple_of(5);
    FlowRecord {
        src,
        dst,
        sport: (i * 7) as u16,
        dport: 443,
        proto: if icmp { 1 } else { 6 },
        vlan: (i.is_multiple_of(4)).then_some((i % 4095) as u16),
        packets: i + 1,
        bytes: (i + 1) * 1500,
        first: 1_700_000_000_000_000_000 + i * 1_000_000,
        // One record whose last precedes first: the wrapping delta must survive it.
        last: if i == 11 {
            5
        } else {
            1_700_000_000_500_000_000 + i * 1_000_000
        },
        tcp_flags: if icmp { 0 } else { 0x12 },
        icmp_type: icmp.then_some(8),
        icmp_code: icmp.then_some(0),
        line: format!("line-{}", i % 3).into(),
        ifindex: (i % 2) as u32 + 1,
        direction: if i.is_multiple_of(2) {
            Direction::Ingress
        } else {
            Direction::Egress
        },
        verdict: match i % 3 {
            0 => Verdict::Pass,
            1 => Verdict::WouldDrop,
            _ => Verdict::Dropped,
        },
        enforce_rule: match i % 3 {
            0 => None,
            1 => Some("sanctioned".into()),
            _ => Some(format!("rule-{}", i % 4).into()),
        },
        source: FlowSource::ALL[(i % 4) as usize],
        sampling: [1, 1, 64, 1000][(i % 4) as usize],
        dns: (i % 5 == 1).then(|| {
            Box::new(crate::record::DnsMeta {
                qname: format!("q{i}.example.com"),
                qtype: [1, 28, 16][(i % 3) as usize],
                rcode: i.is_multiple_of(2).then_some(3),
            })
        }),
        sni: (i % 5 >= 3).then(|| format!("s{i}.example.org").into()),
        tunnel: (!i.is_multiple_of(6)).then(|| {
            Box::new(crate::record::TunnelMeta {
                kind: crate::record::tunnel_kind::ALL[(i % 4) as usize],
                id: (i as u32).wrapping_mul(0x0101_0101),
                // Endpoints of both families, and none (the probe missed them).
                outer_src: (i % 6 != 5).then(|| {
                    if i.is_multiple_of(2) {
                        "198.51.100.1".parse().unwrap()
                    } else {
                        "2001:db8:1::1".parse().unwrap()
                    }
                }),
                outer_dst: (i % 6 != 5).then(|| "203.0.113.7".parse().unwrap()),
            })
        }),
    }
}

fn batch(n: u64, health: bool) -> Batch {
    Batch {
        probe_id: "edge-hk-1".into(),
        epoch: 0xfeed_beef,
        seq: 77,
        created_ns: 1_700_000_001_000_000_000,
        records: (0..n).map(record).collect(),
        health: health.then(|| ProbeHealth {
            ts_ns: 1_700_000_001_000_000_000,
            counters: vec![("packets".into(), 123), ("map_full".into(), 0)],
            spool_bytes: 4096,
            spool_batches: 2,
            lines: vec!["line-0".into(), "line-1".into()],
        }),
    }
}

/// Decoding never panics; a successful decode re-encodes to something that decodes to
/// the same batch.
fn check_no_panic(bytes: &[u8]) -> bool {
    match decode_batch(bytes) {
        Ok(b) => {
            let again = decode_batch(&encode_batch(&b)).expect("re-encoded batch decodes");
            assert_eq!(again, b);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

/// Header + compressed `body`, as `encode_batch` would frame it.
fn wrap(body: &[u8], declared: usize) -> Vec<u8> {
    let real = encode_batch(&batch(0, false));
    let h = peek_batch_header(&real).unwrap();
    let hdr_len = 3 + 1 + 8 + 8 + 8 + 4 + h.probe_id.len() + 1;
    let mut v = real[..hdr_len].to_vec();
    v.extend_from_slice(&(declared as u32).to_be_bytes());
    v.extend_from_slice(&zstd::bulk::compress(body, 1).unwrap());
    v
}

#[test]
fn batches_round_trip() {
    for (n, health) in [(0, false), (0, true), (1, false), (50, true), (5000, false)] {
        let b = batch(n, health);
        let bytes = encode_batch(&b);
        assert_eq!(decode_batch(&bytes).unwrap(), b, "n={n} health={health}");
        let h = peek_batch_header(&bytes).unwrap();
        assert_eq!(
            (h.seq, h.epoch, h.probe_id.as_str(), h.format),
            (77, 0xfeed_beef, "edge-hk-1", BATCH_FORMAT)
        );
    }
}

#[test]
fn set_batch_seq_renumbers_in_place() {
    let mut bytes = encode_batch(&batch(3, true));
    set_batch_seq(&mut bytes, 99, 1234).unwrap();
    let b = decode_batch(&bytes).unwrap();
    assert_eq!((b.epoch, b.seq), (99, 1234));
    assert_eq!(b.records, batch(3, true).records);
    assert!(set_batch_seq(&mut [1, 2, 3], 1, 1).is_err());
}

/// A batch written before sequence epochs (format 1: no epoch field) still decodes, as
/// epoch 0, so an upgraded collector drains what an older build spooled; it cannot be
/// renumbered in place (it has no epoch to set).
#[test]
fn format_1_batches_decode_as_epoch_0() {
    let mut b = batch(4, true);
    for r in &mut b.records {
        r.verdict = Verdict::Pass;
        r.enforce_rule = None;
        r.source = FlowSource::Probe;
        r.sampling = 1;
        r.dns = None;
        r.sni = None;
        r.tunnel = None;
    }
    // Format 1 = format 2 without the 8 epoch bytes after seq.
    let mut v1 = encode_batch_as(&b, 1);
    b.epoch = 0;
    assert_eq!(decode_batch(&v1).unwrap(), b);
    assert_eq!(peek_batch_header(&v1).unwrap().format, 1);
    assert!(set_batch_seq(&mut v1, 5, 5).is_err());
}

/// A batch written before enforcement (format 2) decodes with every verdict `pass`; a
/// format-3 batch keeps each record's verdict and rule id.
#[test]
fn format_2_batches_decode_as_pass_and_verdicts_round_trip() {
    let b = batch(30, false);
    assert!(b.records.iter().any(|r| r.verdict == Verdict::Dropped));
    assert_eq!(decode_batch(&encode_batch(&b)).unwrap(), b);
    let v2 = encode_batch_as(&b, 2);
    assert_eq!(peek_batch_header(&v2).unwrap().format, 2);
    let d = decode_batch(&v2).unwrap();
    assert!(
        d.records
            .iter()
            .all(|r| r.verdict == Verdict::Pass && r.enforce_rule.is_none())
    );
    assert_eq!(d.records.len(), b.records.len());
}

/// A batch written before NetFlow ingest (format 3) decodes as probe records, unsampled,
/// with its verdicts; a format-4 batch keeps each record's source and sampling.
#[test]
fn format_3_batches_decode_as_probe_records_and_sources_round_trip() {
    let b = batch(30, false);
    assert!(
        b.records
            .iter()
            .any(|r| r.source == FlowSource::Ipfix && r.sampling == 1000)
    );
    assert_eq!(decode_batch(&encode_batch(&b)).unwrap(), b);
    let v3 = encode_batch_as(&b, 3);
    assert_eq!(peek_batch_header(&v3).unwrap().format, 3);
    let d = decode_batch(&v3).unwrap();
    for (got, sent) in d.records.iter().zip(&b.records) {
        assert_eq!((got.source, got.sampling), (FlowSource::Probe, 1));
        assert_eq!(got.verdict, sent.verdict);
    }
}

/// A batch written before application metadata (format 4) decodes without names, with
/// its sources and sampling; a format-5 batch keeps each record's DNS question and SNI.
#[test]
fn format_4_batches_decode_without_names_and_names_round_trip() {
    let b = batch(30, false);
    assert!(b.records.iter().any(|r| r.dns.is_some()) && b.records.iter().any(|r| r.sni.is_some()));
    assert_eq!(decode_batch(&encode_batch(&b)).unwrap(), b);
    let v4 = encode_batch_as(&b, 4);
    assert_eq!(peek_batch_header(&v4).unwrap().format, 4);
    let d = decode_batch(&v4).unwrap();
    for (got, sent) in d.records.iter().zip(&b.records) {
        assert_eq!((&got.dns, &got.sni), (&None, &None));
        assert_eq!((got.source, got.sampling), (sent.source, sent.sampling));
    }
}

/// A batch written before tunnels (format 5) decodes with no record decapsulated, with
/// its names; a format-6 batch keeps each record's tunnel kind, id and outer endpoints.
#[test]
fn format_5_batches_decode_without_tunnels_and_tunnels_round_trip() {
    let b = batch(30, false);
    assert!(
        b.records
            .iter()
            .any(|r| r.tunnel.as_ref().is_some_and(|t| t.outer_src.is_none()))
    );
    assert!(
        b.records
            .iter()
            .any(|r| r.tunnel.as_ref().is_some_and(|t| t.outer_src.is_some()))
    );
    assert_eq!(decode_batch(&encode_batch(&b)).unwrap(), b);
    let v5 = encode_batch_as(&b, 5);
    assert_eq!(peek_batch_header(&v5).unwrap().format, 5);
    let d = decode_batch(&v5).unwrap();
    for (got, sent) in d.records.iter().zip(&b.records) {
        assert_eq!(got.tunnel, None);
        assert_eq!((&got.dns, &got.sni), (&sent.dns, &sent.sni));
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = encode_batch(&batch(20, true));
    for n in 0..bytes.len() {
        assert!(
            decode_batch(&bytes[..n]).is_err(),
            "prefix of {n} bytes accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        decode_batch(&longer),
        Err(WireError::Decompress(_) | WireError::TrailingBytes { .. })
    ));
}

#[test]
fn random_mutations_of_the_encoding_never_panic() {
    let bytes = encode_batch(&batch(40, true));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut m = bytes.clone();
        mutate(&mut rng, &mut m, 4, false);
        check_no_panic(&m);
    }
    // Pure noise, with and without a valid-looking header.
    for len in [0usize, 1, 5, 31, 64, 1000] {
        let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(decode_batch(&noise).is_err());
        let mut v = wrap(&noise, noise.len());
        v.truncate(v.len().min(40));
        v.extend_from_slice(&noise);
        check_no_panic(&v);
    }
}

#[test]
fn random_mutations_of_the_body_never_panic() {
    // Mutate the decompressed body and compress it again, so validation past the zstd
    // layer (counts, flags, indexes, UTF-8, health) is what gets exercised.
    let b = batch(30, true);
    let body = {
        let bytes = encode_batch(&b);
        let h = peek_batch_header(&bytes).unwrap();
        let start = 3 + 1 + 8 + 8 + 8 + 4 + h.probe_id.len() + 1 + 4;
        zstd::bulk::decompress(&bytes[start..], h.body_len).unwrap()
    };
    assert_eq!(decode_batch(&wrap(&body, body.len())).unwrap(), b);
    let mut rng = Rng(42);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..20_000 {
        let mut m = body.clone();
        mutate(&mut rng, &mut m, 3, true);
        // Both the honest length and a lying one.
        let declared = if rng.below(4) == 0 {
            rng.below(m.len() + 2)
        } else {
            m.len()
        };
        if check_no_panic(&wrap(&m, declared)) {
            ok += 1;
        } else {
            err += 1;
        }
    }
    // Mutations in counter values or ports decode fine; most others must be caught.
    assert!(ok > 0 && err > 0, "ok={ok} err={err}");
}

#[test]
fn specific_garbage_is_named() {
    let e = decode_batch(b"XYZ\x01").unwrap_err();
    assert!(matches!(e, WireError::BadMagic(_)), "{e}");
    let mut bytes = encode_batch(&batch(1, false));
    bytes[3] = 9;
    assert!(matches!(
        decode_batch(&bytes),
        Err(WireError::UnsupportedBatchFormat(9))
    ));
    // A declared body beyond the limit is refused before decompressing.
    let v = wrap(&[0; 8], MAX_BATCH_BODY + 1);
    assert!(matches!(
        decode_batch(&v),
        Err(WireError::BodyTooLarge { .. })
    ));
    // A small frame that decompresses to far more than declared (a "zip bomb") is cut
    // off at declared + 1 bytes.
    let big = vec![0u8; 8 << 20];
    let v = wrap(&big, 100);
    assert!(matches!(
        decode_batch(&v),
        Err(WireError::BodyLength {
            declared: 100,
            actual: 101
        })
    ));
    // A frame giving less than it declares, on either path: declared within the ratio
    // decompressed at once, or far beyond it as a stream.
    let some: Vec<u8> = (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(matches!(
        decode_batch(&wrap(&some, 2000)),
        Err(WireError::BodyLength {
            declared: 2000,
            actual: 1000
        })
    ));
    assert!(matches!(
        decode_batch(&wrap(&[0u8; 1000], 16 << 20)),
        Err(WireError::BodyLength {
            declared: 0x100_0000,
            actual: 1000
        })
    ));
    // A record count larger than the body can hold.
    let mut body = Vec::new();
    body.extend_from_slice(&0u32.to_be_bytes());
    body.extend_from_slice(&1_000_000u32.to_be_bytes());
    body.extend_from_slice(&[0; 100]);
    assert!(matches!(
        decode_batch(&wrap(&body, body.len())),
        Err(WireError::CountTooLarge {
            what: "records",
            ..
        })
    ));
}

#[test]
fn tables_and_health_reports_larger_than_their_records_need_are_refused() {
    // 1 M empty line names: 4 MiB of body, a few KB compressed, 50 MB decoded.
    let mut body = (1u32 << 20).to_be_bytes().to_vec();
    body.resize(4 + (4 << 20), 0);
    let e = decode_batch(&wrap(&body, body.len())).unwrap_err();
    assert_eq!(e.reason(), "too_many_records", "{e}");
    // Three names for no record.
    let mut body = 3u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0; 12]);
    body.extend_from_slice(&0u32.to_be_bytes());
    let e = decode_batch(&wrap(&body, body.len())).unwrap_err();
    assert!(e.to_string().contains("3 names for 0 records"), "{e}");
    // A health report with more lines, or counters, than any probe has.
    for (counters, lines) in [(0, MAX_HEALTH_ITEMS + 1), (MAX_HEALTH_ITEMS + 1, 0)] {
        let mut b = batch(0, true);
        let h = b.health.as_mut().unwrap();
        h.lines = vec![String::new(); lines];
        h.counters = vec![(String::new(), 0); counters];
        let e = decode_batch(&encode_batch(&b)).unwrap_err();
        assert_eq!(e.reason(), "invalid_field", "{e}");
    }
    // At the bounds, they decode.
    let mut b = batch(3, true);
    b.health.as_mut().unwrap().lines = vec!["l".into(); MAX_HEALTH_ITEMS];
    assert_eq!(decode_batch(&encode_batch(&b)).unwrap(), b);
}

#[test]
fn a_batch_naming_an_impossible_probe_is_refused_before_its_body() {
    for id in ["", "a b", "probe\u{1b}[2J", &"x".repeat(MAX_PROBE_ID + 1)] {
        let mut b = batch(1, false);
        b.probe_id = id.into();
        let bytes = encode_batch(&b);
        let e = peek_batch_header(&bytes).unwrap_err();
        assert_eq!(e.reason(), "invalid_field", "{id:?}: {e}");
        assert!(decode_batch(&bytes).is_err());
    }
}

#[test]
fn the_longest_batch_header_fits_in_max_batch_header() {
    let mut b = batch(1, false);
    b.probe_id = "p".repeat(MAX_PROBE_ID);
    let bytes = encode_batch(&b);
    let h = peek_batch_header(&bytes[..MAX_BATCH_HEADER]).unwrap();
    assert_eq!(h.probe_id, b.probe_id);
    assert!(peek_batch_header(&bytes[..MAX_BATCH_HEADER - 1]).is_err());
}

#[test]
fn a_body_compressed_with_a_window_larger_than_any_body_is_refused() {
    // 1 MiB of zeros with a 128 MiB window and no content size in the frame: the stream
    // decoder would allocate the window.
    let body = vec![0u8; 1 << 20];
    let compress = |log: u32| {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.set_parameter(zstd::stream::raw::CParameter::WindowLog(log))
            .unwrap();
        e.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut e, &body).unwrap();
        e.finish().unwrap()
    };
    let wrap_z = |z: Vec<u8>| {
        let real = encode_batch(&batch(0, false));
        let h = peek_batch_header(&real).unwrap();
        let hdr_len = 3 + 1 + 8 + 8 + 8 + 4 + h.probe_id.len() + 1;
        let mut v = real[..hdr_len].to_vec();
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(&z);
        v
    };
    let e = decode_batch(&wrap_z(compress(27))).unwrap_err();
    assert_eq!(e.reason(), "decompress", "{e}");
    // The same body with a small window gets past decompression (to the body's fields).
    let e = decode_batch(&wrap_z(compress(20))).unwrap_err();
    assert_ne!(e.reason(), "decompress", "{e}");
}
