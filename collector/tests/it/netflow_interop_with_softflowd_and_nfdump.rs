//! NetFlow/IPFIX both ways with the tools operators already run. In: softflowd (Debian)
//! reads a corpus capture and exports it as NetFlow v5, v9 and IPFIX to the collector's
//! UDP listener → the flows stored in ClickHouse carry, per key, exactly the packets of
//! tidegate's own replay of the capture, and its bytes within softflowd's documented
//! octet count (the exporter's timeouts may split a flow into several records; per key
//! the sums are what both meters saw). A sampling exporter's counts come back scaled. Out: the collector's IPFIX export, received by nfcapd and
//! read back with nfdump, carries exactly the records stored.

use std::time::Duration;

use tidegate_testkit::{Stack, free_port, probe::corpus_records_of, stack::StackOptions};

use crate::support::netflow::{
    Nfcapd, differences, listener_config, nfdump_sums, record_sums, softflowd, stored_sums,
};

const CAPTURE: &str = "ndpi-1kxun.pcap";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits (up to 60 s) until the rows under `filter` sum to `want`'s packets, then compares
/// key by key: packets exactly; bytes exactly, or — softflowd counts the bytes of the
/// frame after its Ethernet header, so a frame padded to Ethernet's 60-byte minimum
/// counts its padding — up to 18 bytes more per packet (46 minus the 28 bytes of the
/// smallest IPv4 packet with a UDP or ICMP header).
fn assert_stored(s: &Stack, filter: &str, want: &super::support::netflow::Sums, what: &str) {
    let total: u64 = want.values().map(|v| v.0).sum();
    rt().block_on(async {
        tidegate_testkit::eventually_async(Duration::from_secs(60), async || {
            s.ch.query(&format!(
                "SELECT sum(packets) FROM tidegate.flows WHERE {filter}"
            ))
            .await
            .parse::<u64>()
            .unwrap_or(0)
                >= total
        })
        .await;
        let got = stored_sums(&s.ch, filter).await;
        let padded: super::support::netflow::Sums = want
            .iter()
            .map(|(k, (p, b))| {
                let g = got.get(k).copied().unwrap_or_default();
                let ok = g.0 == *p && g.1 >= *b && g.1 - b <= p * 18;
                (*k, if ok { g } else { (*p, *b) })
            })
            .collect();
        let diff = differences(&got, &padded);
        assert!(
            diff.is_empty(),
            "{what}: {} keys stored vs {} expected; first differences:\n{}",
            got.len(),
            want.len(),
            diff.join("\n")
        );
    });
}

#[test]
fn softflowd_v5_v9_and_ipfix_exports_match_tidegates_own_replay() {
    let port = free_port();
    let s = Stack::start_with(StackOptions {
        extra: listener_config(port),
        ..StackOptions::default()
    });
    s.wait_for_schema();
    let pcap = tidegate_testkit::paths::corpus_pcap(CAPTURE);
    let replay = corpus_records_of(CAPTURE, "lab-1");
    let all = record_sums(&replay);
    // NetFlow v5 carries IPv4 only.
    let v4 = record_sums(replay.iter().filter(|r| r.src.is_ipv4()));
    assert!(v4.len() < all.len(), "the capture has IPv6 flows too");
    // IPFIX with absolute millisecond times (flowStart/EndMilliseconds): this capture
    // jumps six years, past what 32-bit sysUpTime stamps (v5, v9, softflowd's default
    // IPFIX) can span.
    for (version, source, want, extra) in [
        ("5", "netflow_v5", &v4, &[][..]),
        ("9", "netflow_v9", &all, &[]),
        ("10", "ipfix", &all, &["-A", "milli"]),
    ] {
        softflowd(&pcap, port, version, extra, s.dir());
        assert_stored(&s, &format!("source = '{source}'"), want, source);
    }
    rt().block_on(async {
        // The exporter is named, on its configured line, unsampled; its times are the
        // capture's (softflowd -a), not the time of the export.
        let rows = s
            .ch
            .query(
                "SELECT DISTINCT probe_id, line, sampling FROM tidegate.flows ORDER BY probe_id",
            )
            .await;
        assert_eq!(rows.trim(), "exporter:softflowd\tlab-1\t1");
        // Per key, the first packet's time as softflowd stamped it (milliseconds, from
        // the capture) against the replay's. softflowd meters a conversation as one
        // bidirectional flow and stamps both of its records with the conversation's
        // start: the earlier of the two directions' first packets.
        let firsts = s
            .ch
            .query("SELECT src_text, dst_text, proto, sport, dport, toUnixTimestamp64Milli(min(first)) FROM tidegate.flows WHERE source = 'ipfix' GROUP BY ALL")
            .await;
        let mut replay_first = std::collections::BTreeMap::new();
        for r in &replay {
            let e = replay_first
                .entry((r.src.to_string(), r.dst.to_string(), r.proto, r.sport, r.dport))
                .or_insert(u64::MAX);
            *e = (*e).min(r.first / 1_000_000);
        }
        let (mut close, mut n) = (0, 0);
        for l in firsts.lines() {
            let f: Vec<&str> = l.split('\t').collect();
            let k = (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap());
            let ms: u64 = f[5].parse().unwrap();
            n += 1;
            let rev = (k.1.clone(), k.0.clone(), k.2, k.4, k.3);
            let want = replay_first
                .get(&k)
                .copied()
                .unwrap_or(u64::MAX)
                .min(replay_first.get(&rev).copied().unwrap_or(u64::MAX));
            if want.abs_diff(ms) <= 1 {
                close += 1;
            }
        }
        assert!(n > 100 && close == n, "{close} of {n} flows start within 1 ms of the replay's first packet");
    });
}

#[test]
fn a_sampling_exporter_s_counts_are_scaled_up() {
    let port = free_port();
    let s = Stack::start_with(StackOptions {
        extra: listener_config(port),
        ..StackOptions::default()
    });
    s.wait_for_schema();
    let pcap = tidegate_testkit::paths::corpus_pcap(CAPTURE);
    let replay = corpus_records_of(CAPTURE, "lab-1");
    let packets: u64 = replay.iter().map(|r| r.packets).sum();
    let (sampled_packets, sampled_bytes) = softflowd(&pcap, port, "10", &["-s", "10"], s.dir());
    rt().block_on(async {
        let ok = tidegate_testkit::eventually_async(Duration::from_secs(60), async || {
            s.ch.query("SELECT count() FROM tidegate.flows")
                .await
                .trim()
                != "0"
        })
        .await;
        assert!(ok, "no sampled flows stored");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = s
            .ch
            .query("SELECT groupUniqArray(sampling), sum(packets), sum(bytes) FROM tidegate.flows")
            .await;
        let f: Vec<&str> = r.trim().split('\t').collect();
        assert_eq!(f[0], "[10]", "every row says 1 in 10");
        let (p, b): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        // softflowd said "1 in 10" in its options records (samplingPacketInterval and
        // samplingPacketSpace): what it metered comes back ten times over...
        assert_eq!((p, b), (10 * sampled_packets, 10 * sampled_bytes));
        // ...and estimates what was on the line (systematic sampling: close).
        let off = (p as f64 - packets as f64).abs() / packets as f64;
        assert!(off <= 0.05, "scaled packets {p} vs {packets} on the line");
    });
}

#[test]
fn ipfix_export_read_back_by_nfdump_has_identical_totals() {
    let nf_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let nfcapd = Nfcapd::start(nf_port, &dir.path().join("nfcapd"));
    let s = Stack::start_with(StackOptions {
        extra: format!(
            "[netflow]\n\n[[netflow.export]]\nto = \"127.0.0.1:{nf_port}\"\ntemplate_refresh_secs = 5\n"
        ),
        ..StackOptions::default()
    });
    let records = s.replay("edge-1", &[CAPTURE, "ndpi-vxlan.pcap"]);
    s.wait_for_flows(records.len() as u64, Duration::from_secs(60));
    // Stored means read from the spool, which is when export happens; give the last
    // datagrams a moment.
    std::thread::sleep(Duration::from_secs(2));
    nfcapd.stop();
    let got = nfdump_sums(&dir.path().join("nfcapd"));
    let want = record_sums(&records);
    let diff = differences(&got, &want);
    assert!(
        diff.is_empty(),
        "nfdump read {} keys, tidegate stored {}; first differences:\n{}",
        got.len(),
        want.len(),
        diff.join("\n")
    );
}

/// An exporter's flows take the probes' path after the spool: enriched (GeoLite2 and
/// zones), judged by the policy, watched by the detectors, and shown in the console with
/// their source.
#[test]
fn exporter_flows_are_enriched_judged_detected_and_shown_in_the_console() {
    use crate::support::ui::{Console, api, block_on};
    let port = free_port();
    let c = Console::start_with(true, &format!("\n{}", listener_config(port)));
    // A scan, and office traffic of the isolated 192.168.0.0/16 zone.
    let mut replay = Vec::new();
    for capture in ["ndpi-synscan.pcap", "ndpi-1kxun.pcap"] {
        replay.extend(corpus_records_of(capture, "lab-1"));
        softflowd(
            &tidegate_testkit::paths::corpus_pcap(capture),
            port,
            "10",
            &["-A", "milli"],
            c.dir(),
        );
    }
    block_on(async {
        let ch = &c.stack.ch;
        let ok = tidegate_testkit::eventually_async(Duration::from_secs(120), async || {
            ch.query("SELECT count() FROM tidegate.alerts FINAL WHERE kind = 'port_scan' AND line = 'lab-1'")
                .await
                .trim()
                != "0"
        })
        .await;
        assert!(ok, "no port scan alert from the exporter's flows");
        // Enrichment filled countries (GeoLite2) and the zone of the isolated side, and
        // the policy saw that zone's flows leave.
        // The alert can be stored before the last flows are: wait for them.
        let q = "SELECT countIf(src_zone = 'special-zone' OR dst_zone = 'special-zone') > 0, countIf(dst_country = 'US') > 0 FROM tidegate.flows WHERE source = 'ipfix'";
        let ok = tidegate_testkit::eventually_async(Duration::from_secs(60), async || {
            ch.query(q).await.trim() == "1\t1"
        })
        .await;
        assert!(
            ok,
            "zones and countries on exporter flows: {}",
            ch.query(q).await.trim()
        );
        // Violation states are stored by the detection stage, on their own schedule.
        let ok = tidegate_testkit::eventually_async(Duration::from_secs(60), async || {
            ch.query("SELECT count() FROM tidegate.policy_violations FINAL WHERE line = 'lab-1'")
                .await
                .trim()
                != "0"
        })
        .await;
        assert!(ok, "policy violations from exporter flows");
        // The console lists them with their source.
        let from = replay.iter().map(|r| r.first).min().unwrap() / 1_000_000 - 1000;
        let to = replay.iter().map(|r| r.last).max().unwrap() / 1_000_000 + 1000;
        let r = api(
            &c.url,
            &format!("/api/v1/flows?from={from}&to={to}&source=ipfix&limit=5"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        let total = j["total"].as_u64().unwrap();
        assert!(total > 100, "{j}");
        for item in j["items"].as_array().unwrap() {
            assert_eq!(item["source"], "ipfix");
            assert_eq!(item["probe_id"], "exporter:softflowd");
            assert_eq!(item["sampling"], 1);
        }
        let none = api(
            &c.url,
            &format!("/api/v1/flows?from={from}&to={to}&source=probe"),
        )
        .await;
        assert_eq!(none.json()["total"], 0);
        let bad = api(
            &c.url,
            &format!("/api/v1/flows?from={from}&to={to}&source=sflow"),
        )
        .await;
        assert_eq!(bad.status, 400);
    });
}
