//! What an operator sees: a probe replays a real SYN-flood capture and real traffic that
//! leaves an isolated zone → `tidegate-collector run` with enrichment (GeoLite2), a policy,
//! the detectors and every delivery sink configured. The alerts and violations the live
//! collector raises are exactly those offline analysis of the same records gives; they
//! land in ClickHouse (`alerts`, `policy_violations`, enrichment columns of `flows`), the
//! JSONL file, syslog (UDP) and a webhook receiver that is down while the collector is
//! SIGKILLed and restarted, then comes up: it gets every notification exactly once, each
//! with a valid signature.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::alerts::{Behaviour, Log, Receiver, SECRET, free_addr, wait_until};
use crate::support::analysis::Analysis;
use tidegate_collector::sinks::alerts::verify_signature;
use tidegate_testkit::{
    Stack, TestClickHouse, eventually_async as eventually, stack::StackOptions,
};
use tidegate_threat::detect::{DetectConfig, Detector};
use tidegate_threat::enrich::{EnrichConfig, Enricher};
use tidegate_threat::policy::ViolationBook;
use tidegate_threat::policy::{PolicyEngine, PolicyHandle};
use tidegate_wire::record::FlowRecord;

/// Offline analysis of `records` with the same settings: alert ids and violation ids.
fn offline(
    records: &[FlowRecord],
    policy: &Path,
    detect: &Path,
    enricher: &Enricher,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut d = Detector::new(DetectConfig::load(detect).unwrap()).unwrap();
    let mut p = PolicyEngine::new(PolicyHandle::load(policy).unwrap());
    let mut book = ViolationBook::new(300 * 1_000_000_000);
    let mut violations = BTreeSet::new();
    for r in records {
        d.observe(r);
        for v in p.process(r, &enricher.endpoints(r)) {
            violations.insert(book.merge(v).id);
        }
    }
    let alerts = d.finish().into_iter().map(|a| a.id).collect();
    (alerts, violations)
}

fn jsonl_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn ids(ch: &TestClickHouse, table: &str) -> BTreeSet<String> {
    ch.query(&format!(
        "SELECT id FROM tidegate.{table} FINAL ORDER BY id"
    ))
    .await
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn live_alerts_and_violations_reach_clickhouse_jsonl_syslog_and_a_webhook_exactly_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let analysis = Analysis::new();
        let (policy, detect) = (analysis.policy(), analysis.detect());
        let hook_addr = free_addr();
        let syslog = UdpSocket::bind("127.0.0.1:0").unwrap();
        let syslog_addr = syslog.local_addr().unwrap();
        // A SIEM's receive buffer, not the 208 KiB default: the collector sends a detection
        // step's messages together, right after the evidence log holds them, and UDP
        // drops what a receiver cannot buffer (use TCP where every message matters).
        {
            use std::os::fd::AsRawFd;
            let size: libc::c_int = 8 << 20;
            let set = |opt| {
                // SAFETY: a valid socket descriptor and a c_int option value of its size.
                unsafe {
                    libc::setsockopt(
                        syslog.as_raw_fd(),
                        libc::SOL_SOCKET,
                        opt,
                        (&size as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                }
            };
            // Beyond rmem_max as root; up to it otherwise.
            if set(libc::SO_RCVBUFFORCE) != 0 {
                assert_eq!(set(libc::SO_RCVBUF), 0, "SO_RCVBUF");
            }
        }
        // Read datagrams as they come.
        let syslog_got = Arc::new(Mutex::new(Vec::<String>::new()));
        {
            let got = syslog_got.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = syslog.recv(&mut buf) {
                    got.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).to_string());
                }
            });
        }
        let extra = format!(
            "{}\n[alerts]\njsonl = \"alerts.jsonl\"\n\n\
             [alerts.webhook]\nurl = \"http://{hook_addr}/hook\"\nsecret = \"{SECRET}\"\n\
             backoff_min_ms = 20\nbackoff_max_ms = 200\ntimeout_ms = 2000\n\n\
             [alerts.syslog]\naddress = \"{}\"\nprotocol = \"udp\"\ncef = true\n",
            analysis.config(),
            syslog_addr
        );
        let mut stack = Stack::start_with(StackOptions {
            extra,
            ..StackOptions::default()
        });
        let ch = &stack.ch;
        let jsonl = stack.dir().join("alerts.jsonl");
        let captures = ["stopddos-pkt.TCP.synflood.spoofed.pcap", "ndpi-1kxun.pcap"];
        let records = stack.replay("edge-1", &captures);

        let enricher = Enricher::load(&EnrichConfig {
            mmdb: vec![analysis.mmdb.clone()],
            csv: vec![],
        })
        .unwrap();
        let (want_alerts, want_violations) = offline(&records, &policy, &detect, &enricher);
        assert!(!want_alerts.is_empty() && !want_violations.is_empty());

        // ClickHouse: the same alerts and violations as offline analysis.
        let ok = eventually(Duration::from_secs(150), async || {
            ids(ch, "alerts").await == want_alerts
                && ids(ch, "policy_violations").await == want_violations
        })
        .await;
        assert!(
            ok,
            "ClickHouse alerts {:?} (want {want_alerts:?}); violations: {} of {}",
            ids(ch, "alerts").await,
            ids(ch, "policy_violations").await.len(),
            want_violations.len()
        );
        let flood = ch
            .query(
                "SELECT severity, dst, measured > threshold, length(JSONExtractArrayRaw(evidence)) > 0, packets \
                 FROM tidegate.alerts FINAL WHERE kind = 'syn_flood'",
            )
            .await;
        let offline_flood = {
            let mut d = Detector::new(DetectConfig::load(&detect).unwrap()).unwrap();
            for r in &records {
                d.observe(r);
            }
            d.finish()
                .into_iter()
                .find(|a| a.kind.as_str() == "syn_flood")
                .expect("offline syn flood")
        };
        let dst = offline_flood.dst.as_ref().unwrap().to_string();
        // The incident's total volume, as the offline detector counts it.
        let packets = offline_flood.volume.expect("floods total their volume").packets;
        assert!(packets > 0);
        assert!(
            flood.contains(&format!("\t{dst}\t1\t1\t{packets}")),
            "{flood}"
        );
        let rule = ch
            .query(
                "SELECT DISTINCT rule_location, rule_text LIKE '%type = \"isolate\"%', severity, src_zone = 'special-zone' OR dst_zone = 'special-zone' \
                 FROM tidegate.policy_violations FINAL",
            )
            .await;
        assert_eq!(rule, format!("{}:5\t1\tcritical\t1", policy.display()));
        // Zones describe the violation's own ends, even after flows the other way merged
        // into it (both directions of a breach are one violation).
        let misnamed = ch
            .query(
                "SELECT count() FROM tidegate.policy_violations FINAL \
                 WHERE (src_zone = 'special-zone') != isIPAddressInRange(src, '192.168.0.0/16') \
                    OR (dst_zone = 'special-zone') != isIPAddressInRange(dst, '192.168.0.0/16')",
            )
            .await;
        assert_eq!(misnamed, "0");

        // Enrichment stored with every flow: countries from GeoLite2, zones from the policy.
        let sample = ch
            .query(
                "SELECT src_text, src_country, dst_text, dst_country FROM tidegate.flows \
                 WHERE src_country != '' ORDER BY src_text, dst_text LIMIT 50",
            )
            .await;
        assert!(!sample.is_empty(), "no flow was enriched");
        for l in sample.lines() {
            let f: Vec<&str> = l.split('\t').collect();
            let src = enricher.lookup(f[0].parse().unwrap());
            let dst = enricher.lookup(f[2].parse().unwrap());
            assert_eq!(src.country.as_deref().unwrap_or(""), f[1], "{l}");
            assert_eq!(dst.country.as_deref().unwrap_or(""), f[3], "{l}");
        }
        let zoned: u64 = ch
            .query("SELECT count() FROM tidegate.flows WHERE src_zone = 'special-zone' OR dst_zone = 'special-zone'")
            .await
            .parse()
            .unwrap();
        assert!(zoned > 0);

        // JSONL: one line per notification, every alert and violation among them.
        let lines = jsonl_ids(&jsonl);
        let unique: BTreeSet<String> = lines.iter().cloned().collect();
        assert_eq!(lines.len(), unique.len(), "duplicate JSONL lines");
        for a in &want_alerts {
            assert!(unique.contains(&format!("alert-{a}")), "alert {a} not in JSONL");
        }
        for v in &want_violations {
            assert!(unique.contains(v), "violation {v} not in JSONL");
        }

        // Syslog got a message per notification, the flood among them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = syslog_got.lock().unwrap().clone();
        assert_eq!(got.len(), unique.len(), "syslog messages");
        assert!(got.iter().any(|m| m.contains("syn_flood") && m.contains("CEF:0")));

        // The webhook receiver is still down: kill the collector, start it again on the same
        // outbox and spool, then bring the receiver up.
        stack.collector.kill();
        let outbox = stack.dir().join("spool/webhook-outbox");
        let queued = std::fs::read_dir(&outbox)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".json")
            })
            .count();
        assert!(queued > 0 && queued <= unique.len(), "outbox holds {queued}");
        stack.restart_collector();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = Arc::new(Mutex::new(Log::default()));
        let receiver = Receiver::start(hook_addr, Behaviour::default(), log.clone()).await;
        wait_until(Duration::from_secs(60), "every notification delivered", || {
            receiver.accepted().len() >= unique.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        {
            let log = log.lock().unwrap();
            let accepted: BTreeSet<String> = log.accepted.iter().cloned().collect();
            assert_eq!(accepted, unique, "webhook got a different set than the JSONL file");
            assert!(log.duplicates.is_empty(), "duplicates: {:?}", log.duplicates);
            for d in &log.deliveries {
                assert!(
                    verify_signature(SECRET.as_bytes(), &d.body, &d.signature),
                    "bad signature on {}",
                    d.id
                );
            }
            // The restarted collector raised nothing new (nothing was left to re-analyse).
            assert_eq!(jsonl_ids(&jsonl).len(), lines.len());
        }
        receiver.stop().await;
    });
}
