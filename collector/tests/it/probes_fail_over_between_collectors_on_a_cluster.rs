//! A national deployment in small: three ClickHouse nodes sharding through `Distributed`,
//! two collectors writing through different nodes, three probes listing both collectors.
//! The first collector is killed with SIGKILL while the probes send (they move to the
//! second one with their spools), restarted (its spool replays what it had stored but not
//! inserted; the probes come back after `failback`), and the cluster holds exactly the
//! records the probes sent — counts and sums per probe — with every shard holding a
//! share, and the console of the second collector says what a direct query says.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use tidegate_probe::export::{
    Exporter,
    collector::{CollectorExporter, ExportMetrics},
};
use tidegate_testkit::{
    Certs, CollectorProcess,
    clickhouse::TestCluster,
    collector::{CollectorConfig, launch_ready},
    free_port,
    probe::{corpus_records_of, probe_options},
};
use tidegate_wire::record::FlowRecord;

use crate::support::{
    records::totals_row,
    ui::{TOKEN, api, block_on, sha256_hex},
};

/// (probe, capture, line).
const PROBES: [(&str, &str, &str); 3] = [
    ("edge-hk", "ndpi-1kxun.pcap", "hk-intl-1"),
    (
        "edge-sg",
        "stopddos-pkt.TCP.synflood.spoofed.pcap",
        "sg-intl-2",
    ),
    ("edge-mo", "ndpi-synscan.pcap", "mo-intl-3"),
];

/// How long each probe takes to send its capture (paced, so the kill lands mid-stream).
const SEND_FOR: Duration = Duration::from_secs(8);

fn launch(cfg: &CollectorConfig, dir: &Path) -> CollectorProcess {
    launch_ready(cfg, dir, None).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn probes_move_to_the_next_collector_when_one_is_killed_and_the_cluster_stores_every_record_once() {
    let cl = TestCluster::start("tg3", 3);
    let urls = cl.urls();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ids: Vec<&str> = PROBES.iter().map(|p| p.0).collect();
    let certs = Arc::new(Certs::generate(&dir.join("certs"), &ids));
    let cluster = cl.collector_toml();
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let mut cfg_a = CollectorConfig::new(&dir_a, &certs, free_port(), &urls[0]);
    cfg_a.clickhouse_extra = cluster.clone();
    let mut cfg_b = CollectorConfig::new(&dir_b, &certs, free_port(), &urls[1]);
    cfg_b.clickhouse_extra = cluster;
    let ui_port = free_port();
    cfg_b.extra = format!(
        "[api]\nlisten = \"127.0.0.1:{ui_port}\"\n[[api.token]]\nname = \"automation\"\n\
         sha256 = \"{}\"\nrole = \"admin\"\n",
        sha256_hex(TOKEN)
    );
    let mut a = launch(&cfg_a, &dir_a);
    let mut b = launch(&cfg_b, &dir_b);
    let (addr_a, addr_b) = (cfg_a.addr(), cfg_b.addr());

    // The probes: first choice A, then B; back to A 3 s after leaving it.
    let metrics: Vec<ExportMetrics> = PROBES.iter().map(|_| ExportMetrics::default()).collect();
    let senders: Vec<_> = PROBES
        .iter()
        .zip(&metrics)
        .map(|(&(id, capture, line), m)| {
            let (certs, m) = (certs.clone(), m.clone());
            let spool = dir.join(format!("spool-{id}"));
            std::thread::spawn(move || {
                let records = corpus_records_of(capture, line);
                let mut o = probe_options(&certs, id, addr_a, &spool);
                o.failover = vec![addr_b.to_string()];
                o.failback = Duration::from_secs(3);
                // At least 20 batches per probe, at most 400 records each.
                let size = (records.len() / 20).clamp(1, 400);
                o.batch_records = size;
                let mut ex = CollectorExporter::start(o, m).expect("start exporter");
                let chunks = records.len().div_ceil(size).max(1);
                let pace = SEND_FOR / chunks as u32;
                for chunk in records.chunks(size) {
                    for r in chunk {
                        ex.export(r).unwrap();
                    }
                    ex.flush().unwrap();
                    std::thread::sleep(pace);
                }
                let report = ex.finish(Duration::from_secs(90)).unwrap();
                assert!(report.delivered(), "{id}: {report:?}");
                records
            })
        })
        .collect();

    // Kill A while the probes send, then bring it back with its spool.
    std::thread::sleep(SEND_FOR / 4);
    a.kill();
    let killed_at = Instant::now();
    std::thread::sleep(SEND_FOR / 4);
    a = launch(&cfg_a, &dir_a);
    eprintln!("collector A back after {:?}", killed_at.elapsed());

    let sent: Vec<Vec<FlowRecord>> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let all: Vec<FlowRecord> = sent.iter().flatten().cloned().collect();
    for (m, (id, ..)) in metrics.iter().zip(PROBES) {
        eprintln!(
            "{id}: failovers {}, sent {}, acked {}, duplicates {}",
            m.failovers.get(),
            m.batches_sent.get(),
            m.batches_acked.get(),
            m.batches_duplicate.get()
        );
    }
    assert!(
        metrics.iter().all(|m| m.failovers.get() >= 2),
        "every probe left A and came back"
    );

    // A clean stop of both collectors stores everything they spooled.
    let stopping = Instant::now();
    assert_eq!(a.stop_within(Duration::from_secs(60)), Some(0));
    eprintln!("collector A stopped in {:?}", stopping.elapsed());
    let b_log_dir = dir_b.clone();
    block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = cl.nodes[2]
                .query("SELECT count(), sum(packets), sum(bytes) FROM tidegate.flows")
                .await;
            if got == totals_row(&all) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster holds {got}, the probes sent {} (logs in {})",
                totals_row(&all),
                b_log_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // Per probe, through every node.
        for node in &cl.nodes {
            for (records, (id, ..)) in sent.iter().zip(PROBES) {
                assert_eq!(
                    node.query(&format!(
                        "SELECT count(), sum(packets), sum(bytes) FROM tidegate.flows WHERE probe_id = '{id}'"
                    ))
                    .await,
                    totals_row(records),
                    "{id}"
                );
            }
        }
        // Every shard holds a share.
        for (i, n) in cl.shard_rows("tidegate").await.iter().enumerate() {
            let share = *n as f64 / all.len() as f64;
            assert!(
                (0.2..0.47).contains(&share),
                "shard {i}: {n} of {} flows",
                all.len()
            );
        }

        // The console (collector B) reads the Distributed tables.
        let url = format!("http://127.0.0.1:{ui_port}");
        let meta = api(&url, "/api/v1/meta").await.json_ok("meta");
        let range = format!(
            "from={}&to={}",
            meta["extent"]["from"], meta["extent"]["to"]
        );
        let ov: Value = api(&url, &format!("/api/v1/overview?{range}"))
            .await
            .json_ok("overview");
        let t = &ov["totals"];
        assert_eq!(
            format!("{}\t{}\t{}", t["flows"], t["packets"], t["bytes"]),
            totals_row(&all)
        );
        let want = cl.nodes[0]
            .query("SELECT line, sum(packets), sum(bytes) FROM tidegate.flows GROUP BY line ORDER BY line")
            .await;
        let mut got: Vec<(String, u64, u64)> = Vec::new();
        for l in ov["lines"].as_array().unwrap() {
            let line = l["line"].as_str().unwrap().to_string();
            let (p, bytes) = (l["packets"].as_u64().unwrap(), l["bytes"].as_u64().unwrap());
            match got.iter_mut().find(|g| g.0 == line) {
                Some(g) => {
                    g.1 += p;
                    g.2 += bytes;
                }
                None => got.push((line, p, bytes)),
            }
        }
        got.sort();
        let got = got
            .iter()
            .map(|(l, p, b)| format!("{l}\t{p}\t{b}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(got, want);
    });
    assert_eq!(b.stop_within(Duration::from_secs(60)), Some(0));
    block_on(async {
        assert_eq!(
            cl.nodes[1]
                .query("SELECT count(), sum(packets), sum(bytes) FROM tidegate.flows")
                .await,
            totals_row(&all),
            "nothing more after both collectors stopped"
        );
    });
}
