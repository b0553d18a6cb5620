//! A collector that no probe, client or clock can stop (issue 19's findings, each
//! against the real `tidegate-collector` binary and a real ClickHouse):
//! - a flood of unauthenticated connections under a 1024 open-file limit is refused at
//!   accept while a real probe's records keep being stored;
//! - a decompression bomb from a probe with a valid certificate is refused with nothing
//!   stored and the collector's memory bounded;
//! - a record stamped 50 years ahead does not blind detection to a later scan;
//! - a CA-signed certificate whose name is a path is refused; CRLs and the allow-list
//!   refuse the probes they name;
//! - a forged sequence number near the end of `u64` is refused and the real probe goes on.

use std::{net::SocketAddr, time::Duration};

use crate::support::proc_status::status_field;
use tidegate_testkit::{
    Certs, CollectorProcess, TestClickHouse, block_on,
    collector::{CollectorConfig, Launch},
    eventually, eventually_async, free_port,
    http::{http_get, metric_opt},
    probe::{exporter, probe_options, replay_into},
    transport::{recv, say_hello, send, tls_connect},
};
use tidegate_wire::{Message, record::FlowRecord};

const CAPTURE: &str = "ndpi-1kxun.pcap";

/// ClickHouse, certificates for `probes` and a collector with `extra` configuration and
/// metrics, started as `launch` says.
struct Deployment {
    ch: TestClickHouse,
    certs: Certs,
    config: CollectorConfig,
    collector: CollectorProcess,
    dir: tempfile::TempDir,
}

impl Deployment {
    fn start(probes: &[&str], extra: &str, mut launch: Launch) -> Deployment {
        launch.ready = vec![
            "collector accepting probes".into(),
            "ClickHouse schema ready".into(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let ch = TestClickHouse::start();
        let certs = Certs::generate(&dir.path().join("certs"), probes);
        let mut config = CollectorConfig::new(dir.path(), &certs, free_port(), &ch.url());
        config.metrics_port = Some(free_port());
        config.extra = extra.to_string();
        let path = config.write(dir.path());
        let collector = CollectorProcess::launch(&path, config.addr(), launch).unwrap();
        Deployment {
            ch,
            certs,
            config,
            collector,
            dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.config.addr()
    }

    fn metrics(&self) -> String {
        let port = self.config.metrics_port.unwrap();
        block_on(http_get(&format!("http://127.0.0.1:{port}/metrics")))
    }

    fn counter(&self, sample: &str) -> f64 {
        metric_opt(&self.metrics(), sample).unwrap_or(0.0)
    }

    /// Sends `records` as probe `id` through a real exporter; every batch acknowledged.
    fn send(&self, id: &str, records: &[FlowRecord]) {
        let spool = self.dir.path().join(format!("spool-{id}"));
        let mut ex = exporter(probe_options(&self.certs, id, self.addr(), &spool));
        for r in records {
            tidegate_probe::export::Exporter::export(&mut ex, r).unwrap();
        }
        let rep = ex.finish(Duration::from_secs(60)).unwrap();
        assert_eq!(rep.left_batches, 0, "every batch acknowledged");
    }

    fn count(&self, sql: &str) -> u64 {
        block_on(self.ch.query(sql)).trim().parse().unwrap_or(0)
    }

    fn wait_rows(&self, probe: &str, n: u64) {
        let sql = format!("SELECT count() FROM tidegate.flows WHERE probe_id = '{probe}'");
        let ok = block_on(eventually_async(Duration::from_secs(90), async || {
            self.ch.query(&sql).await.trim().parse::<u64>().unwrap_or(0) >= n
        }));
        assert!(ok, "{probe}: {} of {n} rows stored", self.count(&sql));
        assert_eq!(self.count(&sql), n, "{probe}: exactly the records sent");
    }

    /// Field `name` of the collector's `/proc/<pid>/status`, its unit left out (`None`:
    /// this kernel does not report it).
    fn status(&self, name: &str) -> Option<u64> {
        let pid = self.collector.pid().unwrap();
        status_field(&format!("/proc/{pid}/status"), name)
    }

    /// The collector's peak resident memory (kB).
    fn peak_rss_kb(&self) -> u64 {
        self.status("VmHWM")
            .expect("VmHWM in the collector's status")
    }
}

fn corpus_records(line: &str) -> Vec<FlowRecord> {
    let mut all: Vec<FlowRecord> = Vec::new();
    replay_into(&[CAPTURE], &mut all);
    for r in &mut all {
        r.line = line.into();
    }
    all
}

#[test]
fn a_connection_flood_under_a_low_open_file_limit_is_refused_while_records_are_stored() {
    // The test opens 1100 sockets itself.
    tidegate_base::limits::raise_open_files().unwrap();
    let d = Deployment::start(
        &["edge-1"],
        "",
        Launch {
            open_files: Some(1024),
            ..Default::default()
        },
    );
    let addr = d.addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 1100 connections that never start TLS, from another loopback address.
    let flood: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..1100 {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            if let Ok(c) = s.connect(addr).await {
                v.push(c);
            }
        }
        v
    });
    assert!(flood.len() > 1000, "{} flood connections", flood.len());
    eventually("flood refused at accept", Duration::from_secs(20), || {
        d.counter("tidegate_collector_transport_probes_rejected_total{reason=\"too_many_handshakes_from_address\"}")
            > 1000.0
    });
    // A real probe, while the flood holds its sockets: everything stored.
    let records = corpus_records("flooded");
    d.send("edge-1", &records);
    d.wait_rows("edge-1", records.len() as u64);
    assert!(
        d.collector
            .pid()
            .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists()),
        "the collector is still running"
    );
    drop(flood);
    // And after the flood: more records, stored too (the pipeline never stopped).
    let more: Vec<FlowRecord> = records
        .iter()
        .map(|r| FlowRecord {
            line: "after-flood".into(),
            ..r.clone()
        })
        .collect();
    d.send("edge-1", &more);
    d.wait_rows("edge-1", 2 * records.len() as u64);
}

/// A frame carrying a batch whose header declares `body_len` and whose zstd body is
/// `body` (which may decompress to much more than it takes on the wire).
fn raw_batch(probe: &str, seq: u64, body: &[u8], body_len: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"TGB");
    v.push(5); // format
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&tidegate_testkit::transport::EPOCH.to_be_bytes());
    v.extend_from_slice(&1_700_000_000_000_000_000u64.to_be_bytes());
    v.extend_from_slice(&(probe.len() as u32).to_be_bytes());
    v.extend_from_slice(probe.as_bytes());
    v.push(1); // zstd
    v.extend_from_slice(&body_len.to_be_bytes());
    v.extend_from_slice(&zstd::encode_all(body, 19).unwrap());
    v
}

/// A body of `n` all-zero records (no lines): what a bomb decompresses to.
fn zero_body(n: u32, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[4..8].copy_from_slice(&n.to_be_bytes());
    b
}

#[test]
fn decompression_bombs_from_a_certified_probe_are_refused_with_nothing_stored() {
    let d = Deployment::start(&["edge-1"], "", Launch::default());
    let (addr, ca) = (d.addr(), d.certs.ca().cert);
    let cert = d.certs.probe("edge-1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bombs: [(&str, Vec<u8>); 2] = [
        // 8 KB on the wire declaring 256 MiB (3.2 M records).
        (
            "body of 268435456 bytes",
            raw_batch("edge-1", 1, &zero_body(3_200_000, 256 << 20), 256 << 20),
        ),
        // Under the body limit, but more records than any probe sends.
        (
            "batch of 200000 records refused",
            raw_batch("edge-1", 1, &zero_body(200_000, 20 << 20), 20 << 20),
        ),
    ];
    for (want, frame) in &bombs {
        assert!(frame.len() < 64 << 10, "the bomb is small on the wire");
        for _ in 0..4 {
            rt.block_on(async {
                let mut c = tls_connect(addr, &ca, Some(&cert)).await.unwrap();
                assert!(matches!(
                    say_hello(&mut c, "edge-1").await.unwrap(),
                    Message::HelloAck(_)
                ));
                send(&mut c, &Message::Batch(frame.clone())).await.unwrap();
                match recv(&mut c).await {
                    Ok(Message::Error { reason }) => {
                        assert!(reason.contains(want), "{reason:?} lacks {want:?}")
                    }
                    other => panic!("expected an Error naming {want:?}, got {other:?}"),
                }
            });
        }
    }
    // Nothing was spooled or stored, and memory stayed far below what the bombs declare.
    let records = corpus_records("after-bombs");
    d.send("edge-1", &records);
    d.wait_rows("edge-1", records.len() as u64);
    let rss = d.peak_rss_kb();
    assert!(rss < 400_000, "peak RSS {rss} kB");
    // Its heap grows in 4 KiB pages, not 2 MiB ones (it turns transparent huge pages
    // off at start: a fault would zero a whole huge page it has not asked for). Only
    // telling where this test process has them on (the flag is inherited) and the kernel
    // reports it.
    match status_field("/proc/self/status", "THP_enabled") {
        Some(1) => assert_eq!(
            d.status("THP_enabled"),
            Some(0),
            "the running collector's THP setting"
        ),
        own => eprintln!("THP not checked: this test process reports THP_enabled {own:?}"),
    }
    assert_eq!(
        d.counter("tidegate_collector_pipeline_dead_letters_total"),
        0.0
    );
}

#[test]
fn a_scan_after_a_record_stamped_fifty_years_ahead_is_detected() {
    let d = Deployment::start(&["edge-1"], "", Launch::default());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let year = 365 * 24 * 3600 * 1_000_000_000u64;
    let poison = FlowRecord {
        src: "10.9.9.9".parse().unwrap(),
        dst: "10.9.9.10".parse().unwrap(),
        sport: 40_000,
        dport: 443,
        proto: 6,
        packets: 1,
        bytes: 60,
        first: now + 50 * year,
        last: now + 50 * year,
        line: "clock".into(),
        ..Default::default()
    };
    d.send("edge-1", std::slice::from_ref(&poison));
    // 40 ports of one target, one SYN each, stamped now.
    let scan: Vec<FlowRecord> = (0..40u16)
        .map(|i| FlowRecord {
            src: "198.51.100.7".parse().unwrap(),
            dst: "10.1.2.3".parse().unwrap(),
            sport: 50_000,
            dport: 1000 + i,
            proto: 6,
            packets: 1,
            bytes: 60,
            tcp_flags: 0x02,
            first: now + u64::from(i) * 1_000_000,
            last: now + u64::from(i) * 1_000_000,
            line: "clock".into(),
            ..Default::default()
        })
        .collect();
    d.send("edge-1", &scan);
    let sql = "SELECT count() FROM tidegate.alerts FINAL WHERE kind = 'port_scan' \
               AND src = '198.51.100.7' AND dst = '10.1.2.3'";
    let ok = block_on(eventually_async(Duration::from_secs(60), async || {
        d.ch.query(sql).await.trim() == "1"
    }));
    assert!(ok, "the scan after the far-future record raised no alert");
    eventually(
        "the far-future record counted",
        Duration::from_secs(10),
        || d.counter("tidegate_collector_detect_future_records_total") >= 1.0,
    );
    // Stored as sent (storage may trail detection a little).
    eventually("every record stored", Duration::from_secs(30), || {
        d.count("SELECT count() FROM tidegate.flows WHERE line = 'clock'") == 41
    });
    let far = d.count(&format!(
        "SELECT count() FROM tidegate.flows WHERE line = 'clock' \
         AND first > fromUnixTimestamp64Nano(toInt64({}))",
        now + 40 * year
    ));
    assert_eq!(far, 1, "the far-future record is stored with its own time");
}

#[test]
fn certificates_naming_a_path_revoked_or_unlisted_probes_are_refused() {
    let d = Deployment::start(&["edge-1", "edge-2", "edge-3"], "", Launch::default());
    let (addr, ca) = (d.addr(), d.certs.ca().cert);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hello = |cert: tidegate_collector::certs::CertPaths, id: &'static str| {
        rt.block_on(async {
            match tls_connect(addr, &ca, Some(&cert)).await {
                Ok(mut c) => say_hello(&mut c, id).await,
                Err(e) => Err(tidegate_wire::WireError::Io(e)),
            }
        })
    };
    // A CA-signed certificate whose CN is a path.
    let evil = "../../../../tmp/tidegate-evil";
    let cert = d.certs.issue_any(evil, 1);
    match hello(cert, "../../../../tmp/tidegate-evil") {
        Ok(Message::Reject { reason }) => {
            assert!(reason.contains("only ASCII letters"), "{reason}")
        }
        other => panic!("expected a Reject, got {other:?}"),
    }
    assert!(!std::path::Path::new("/tmp/tidegate-evil").exists());
    assert!(!std::path::Path::new("/tmp/tidegate-evil-1.bin").exists());

    // Revoke edge-2 with gen-certs, list only edge-1 and edge-2: restart with both.
    let certs_dir = d.certs.dir.clone();
    let out = std::process::Command::new(tidegate_testkit::paths::bin("tidegate-collector"))
        .args(["gen-certs", "--out"])
        .arg(&certs_dir)
        .args(["--revoke", "edge-2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoked edge-2"),
        "{out:?}"
    );
    let path = d.dir.path().join("collector.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[spool]",
        &format!(
            "crl = [\"{}\"]\nallowed_probes = [\"edge-1\", \"edge-2\"]\n\n[spool]",
            certs_dir.join("crl.pem").display()
        ),
    );
    std::fs::write(&path, text).unwrap();
    let mut d = d;
    d.collector.kill();
    d.collector = CollectorProcess::start(&path, addr);
    let ok = hello(d.certs.probe("edge-1"), "edge-1");
    assert!(matches!(ok, Ok(Message::HelloAck(_))), "{ok:?}");
    assert!(
        !matches!(
            hello(d.certs.probe("edge-2"), "edge-2"),
            Ok(Message::HelloAck(_))
        ),
        "a revoked certificate was accepted"
    );
    match hello(d.certs.probe("edge-3"), "edge-3") {
        Ok(Message::Reject { reason }) => assert!(reason.contains("allowed_probes"), "{reason}"),
        other => panic!("expected a Reject for an unlisted probe, got {other:?}"),
    }
    eventually("refusals counted", Duration::from_secs(10), || {
        d.counter(
            "tidegate_collector_transport_probes_rejected_total{reason=\"revoked_client_cert\"}",
        ) >= 1.0
            && d.counter(
                "tidegate_collector_transport_probes_rejected_total{reason=\"probe_not_allowed\"}",
            ) >= 1.0
    });
}

#[test]
fn a_forged_sequence_number_does_not_stop_the_real_probe() {
    let d = Deployment::start(&["edge-1"], "", Launch::default());
    let first = corpus_records("before");
    d.send("edge-1", &first);
    d.wait_rows("edge-1", first.len() as u64);
    // Someone holding edge-1's certificate sends batches numbered near the end of u64,
    // under the probe's own sequence epoch (read from its spool).
    let spool = d.dir.path().join("spool-edge-1");
    let epoch: u64 = std::fs::read_to_string(spool.join("epoch"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (addr, ca) = (d.addr(), d.certs.ca().cert);
    let cert = d.certs.probe("edge-1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for seq in [u64::MAX, u64::MAX / 2, 1 << 50] {
        rt.block_on(async {
            let mut c = tls_connect(addr, &ca, Some(&cert)).await.unwrap();
            tidegate_testkit::transport::send(
                &mut c,
                &Message::Hello(tidegate_wire::Hello {
                    version: tidegate_wire::PROTOCOL_VERSION,
                    probe_id: "edge-1".into(),
                    epoch,
                    software: "forger".into(),
                    capabilities: 0,
                }),
            )
            .await
            .unwrap();
            assert!(matches!(recv(&mut c).await.unwrap(), Message::HelloAck(_)));
            let mut b = tidegate_testkit::transport::batch("edge-1", seq, 3);
            b.epoch = epoch;
            send(&mut c, &Message::Batch(tidegate_wire::encode_batch(&b)))
                .await
                .unwrap();
            match recv(&mut c).await {
                Ok(Message::Error { reason }) => assert!(reason.contains("beyond"), "{reason}"),
                other => panic!("seq {seq}: expected an Error, got {other:?}"),
            }
        });
    }
    // The real probe goes on, in the same sequence: every record stored.
    let second = corpus_records("after");
    d.send("edge-1", &second);
    d.wait_rows("edge-1", (first.len() + second.len()) as u64);
    assert_eq!(
        d.count("SELECT count() FROM tidegate.flows WHERE line = 'line-a'"),
        0,
        "no forged record stored"
    );
}

#[test]
fn a_spool_entry_that_cannot_be_quarantined_stops_the_collector_loudly_then_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start();
    let certs = Certs::generate(&dir.path().join("certs"), &["edge-1"]);
    let mut config = CollectorConfig::new(dir.path(), &certs, free_port(), &ch.url());
    config.metrics_port = Some(free_port());
    let path = config.write(dir.path());
    // A poison entry in the spool (written by an older build, or damaged on disk).
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (spool, reader) =
            tidegate_collector::spool::Spool::open(tidegate_collector::spool::SpoolConfig {
                dir: config.spool.clone(),
                max_bytes: 1 << 30,
                segment_bytes: 4 << 20,
            })
            .unwrap();
        rt.block_on(spool.append("edge-1", 7, 1, b"not a batch"))
            .unwrap();
        drop((spool, reader));
    }
    // Where it would be quarantined is taken by a file: it cannot be.
    let dead = config.spool.join("dead-letter");
    std::fs::write(&dead, b"in the way").unwrap();
    let log = dir.path().join("first.log");
    let started = CollectorProcess::launch(
        &path,
        config.addr(),
        Launch {
            log_file: Some(log.clone()),
            ..Default::default()
        },
    );
    if let Ok(mut c) = started {
        assert_eq!(
            c.wait_exit(Duration::from_secs(60)),
            Some(1),
            "the collector must stop with status 1 when storage cannot go on"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("storage pipeline failed") && text.contains("dead-letter"),
        "{text}"
    );
    assert!(!text.contains("ClickHouse unreachable"), "{text}");

    // Room again: the entry is quarantined (named by its spool position, never by the
    // probe's id) and storage goes on.
    std::fs::remove_file(&dead).unwrap();
    let collector = CollectorProcess::start(&path, config.addr());
    let records = corpus_records("after-poison");
    let mut ex = exporter(probe_options(
        &certs,
        "edge-1",
        config.addr(),
        &dir.path().join("spool-edge-1"),
    ));
    for r in &records {
        tidegate_probe::export::Exporter::export(&mut ex, r).unwrap();
    }
    assert_eq!(ex.finish(Duration::from_secs(60)).unwrap().left_batches, 0);
    let sql = "SELECT count() FROM tidegate.flows WHERE probe_id = 'edge-1'";
    let ok = block_on(eventually_async(Duration::from_secs(60), async || {
        ch.query(sql).await.trim().parse::<usize>().unwrap_or(0) == records.len()
    }));
    assert!(ok, "records after the poison entry stored");
    let mut names: Vec<String> = std::fs::read_dir(&dead)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with(".bin") && names[1].ends_with(".json"),
        "{names:?}"
    );
    assert!(
        names.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_digit() || "-.binjso".contains(c))),
        "{names:?}"
    );
    let about: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dead.join(&names[1])).unwrap()).unwrap();
    assert_eq!(about["probe_id"], "edge-1");
    assert_eq!(std::fs::read(dead.join(&names[0])).unwrap(), b"not a batch");
    // And it is an alert, not only a log line: one `data_quarantined` alert naming the
    // probe and the quarantine file, through the same sinks as every alert.
    let stem = names[0].trim_end_matches(".bin").to_string();
    let sql = "SELECT key, severity, description FROM tidegate.alerts FINAL \
               WHERE kind = 'data_quarantined' FORMAT TSV";
    let mut rows = String::new();
    let raised = block_on(eventually_async(Duration::from_secs(30), async || {
        rows = ch.query(sql).await;
        !rows.trim().is_empty()
    }));
    assert!(raised, "no data_quarantined alert in ClickHouse");
    let rows: Vec<&str> = rows.trim().lines().collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].starts_with(&format!("edge-1 {stem}\t")), "{rows:?}");
    assert!(rows[0].contains(&format!("{stem}.bin")), "{rows:?}");
    assert!(rows[0].contains("high"), "{rows:?}");
    drop(collector);
}

/// Mode bits of a path.
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn under_umask_000_state_stays_private_and_nothing_is_world_writable() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    // gen-certs from a shell with umask 000.
    let out = {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(tidegate_testkit::paths::bin("tidegate-collector"));
        c.args(["gen-certs", "--probe", "edge-1", "--out"])
            .arg(&certs_dir);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        c.output().unwrap()
    };
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        mode(&certs_dir) & 0o022,
        0,
        "certs directory {:o}",
        mode(&certs_dir)
    );
    assert_eq!(mode(&certs_dir.join("probe-edge-1.key")), 0o600);
    let certs = Certs { dir: certs_dir };
    let ch = TestClickHouse::start();
    let mut config = CollectorConfig::new(dir.path(), &certs, free_port(), &ch.url());
    config.extra = format!(
        "[alerts]\njsonl = \"{}\"\n",
        dir.path().join("log/alerts.jsonl").display()
    );
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    let path = config.write(dir.path());
    let collector = CollectorProcess::launch(
        &path,
        config.addr(),
        Launch {
            umask: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    let spool = config.spool.clone();
    eventually("spool segments written", Duration::from_secs(20), || {
        std::fs::read_dir(&spool).is_ok_and(|d| d.count() > 0)
    });
    assert_eq!(mode(&spool), 0o700, "spool directory");
    for e in std::fs::read_dir(&spool).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
        }
    }
    let jsonl = dir.path().join("log/alerts.jsonl");
    assert_eq!(mode(&jsonl), 0o600, "alerts.jsonl");
    drop(collector);
}
