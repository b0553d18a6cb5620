//! Batch encoding on real records: every corpus capture replayed, cut into batches of
//! 5000 records (the exporter's default), encoded and decoded. Checks the round trip is
//! exact and reports throughput and size per record (run with `--nocapture`; meaningful
//! figures need `--release`).

use std::{path::Path, time::Instant};

use tidegate_probe::{capture::pcap::Replay, record::FlowRecord, table::Timeouts};
use tidegate_testkit::paths::{corpus_pcap, corpus_pcaps};
use tidegate_wire::{Batch, decode_batch, encode_batch, peek_batch_header};

fn records(files: &[&Path]) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for f in files {
        let mut r = Replay::new(Timeouts::default());
        let line = f.file_stem().unwrap().to_string_lossy().into_owned();
        r.replay_file(f, &line, &mut out).unwrap();
        r.finish(&mut out).unwrap();
    }
    out
}

struct Figures {
    records: usize,
    batches: usize,
    encode_rps: f64,
    decode_rps: f64,
    compressed_per_record: f64,
    columns_per_record: f64,
    json_per_record: f64,
}

fn measure(recs: &[FlowRecord]) -> Figures {
    let batches: Vec<Batch> = recs
        .chunks(5000)
        .enumerate()
        .map(|(i, c)| Batch {
            probe_id: "edge-hk-1".into(),
            epoch: 1,
            seq: i as u64 + 1,
            created_ns: 1_700_000_000_000_000_000,
            records: c.to_vec(),
            health: None,
        })
        .collect();
    // Repeat small inputs so the timings are not dominated by timer resolution.
    let rounds = (200_000 / recs.len().max(1)).clamp(1, 50);
    let t = Instant::now();
    let mut encoded = Vec::new();
    for _ in 0..rounds {
        encoded = batches.iter().map(encode_batch).collect::<Vec<_>>();
    }
    let enc = t.elapsed().as_secs_f64() / rounds as f64;
    let t = Instant::now();
    let mut decoded = Vec::new();
    for _ in 0..rounds {
        decoded = encoded
            .iter()
            .map(|b| decode_batch(b).unwrap())
            .collect::<Vec<_>>();
    }
    let dec = t.elapsed().as_secs_f64() / rounds as f64;
    assert!(decoded == batches, "decode(encode(batch)) != batch");
    let compressed: usize = encoded.iter().map(Vec::len).sum();
    let columns: usize = encoded
        .iter()
        .map(|b| peek_batch_header(b).unwrap().body_len)
        .sum();
    let json: usize = recs
        .iter()
        .map(|r| serde_json::to_string(r).unwrap().len() + 1)
        .sum();
    let n = recs.len() as f64;
    Figures {
        records: recs.len(),
        batches: batches.len(),
        encode_rps: n / enc,
        decode_rps: n / dec,
        compressed_per_record: compressed as f64 / n,
        columns_per_record: columns as f64 / n,
        json_per_record: json as f64 / n,
    }
}

fn report(name: &str, f: &Figures) {
    println!(
        "{name}: {} records in {} batches; encode {:.0} records/s, decode {:.0} records/s; \
         {:.1} bytes/record compressed ({:.1} columnar before zstd, {:.1} as JSON lines)",
        f.records,
        f.batches,
        f.encode_rps,
        f.decode_rps,
        f.compressed_per_record,
        f.columns_per_record,
        f.json_per_record
    );
}

#[test]
fn corpus_batches_round_trip_and_compress() {
    let one = corpus_pcap("ndpi-1kxun.pcap");
    let flood = corpus_pcap("stopddos-pkt.TCP.synflood.spoofed.pcap");
    let all = corpus_pcaps();
    let all_refs: Vec<&Path> = all.iter().map(|p| p.as_path()).collect();
    for (name, files) in [
        ("ndpi-1kxun", vec![one.as_path()]),
        ("synflood (spoofed sources)", vec![flood.as_path()]),
        ("whole corpus", all_refs),
    ] {
        let recs = records(&files);
        assert!(!recs.is_empty());
        let f = measure(&recs);
        report(name, &f);
        // The columnar layout plus zstd must beat JSON lines by a wide margin.
        assert!(
            f.compressed_per_record * 4.0 < f.json_per_record,
            "{name}: {:.1} bytes/record compressed vs {:.1} as JSON",
            f.compressed_per_record,
            f.json_per_record
        );
    }
}
