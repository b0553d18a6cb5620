//! An analyst at the console, in a real browser: real traffic goes through the real
//! pipeline (probe replay → collector with enrichment, policy, detectors → ClickHouse),
//! then Debian's headless Chromium (driven by `testkit/browser/pages.mjs` with
//! playwright-core) logs in and walks every page — overview, map, alerts with a filter
//! and an alert's evidence, violations by rule, top talkers and a flow search, probe
//! health, the evidence badge of an alert and a violation (proven by a signed checkpoint),
//! the triage of an alert through its states (history shown, and stored in ClickHouse)
//! and the evidence log page. The numbers shown must equal what ClickHouse holds; any
//! console error fails.
//! Screenshots go to `$TIDEGATE_STATE/ui-screenshots` (or `target/ui-screenshots`).
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `testkit/browser`: run
//! `scripts/setup-browser.sh` (scripts/setup.sh does).

use std::{collections::BTreeMap, path::PathBuf, process::Command};

use crate::support::ui::{CAPTURES, Console, PASSWORD, USER, block_on};
use serde_json::json;

/// A viewer restricted to one line.
const VIEWER: &str = "vera";
const VIEWER_LINE: &str = "stopddos-pkt";
/// An admin whose configured console language is Chinese.
const ZH_USER: &str = "lin";

fn browser_dir() -> PathBuf {
    tidegate_testkit::paths::repo().join("testkit/browser")
}

#[test]
fn an_analyst_walks_every_page_in_headless_chromium_and_sees_what_clickhouse_holds() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir()
            && PathBuf::from("/usr/bin/chromium").exists(),
        "browser test tooling missing: run scripts/setup-browser.sh"
    );
    // With an evidence log: alert and violation pages show its badge.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("evidence.key");
    assert!(
        Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
            .args(["evidence", "keygen", "--out"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let mut c = Console::start_with(
        true,
        &format!(
            "\n[evidence]\ndir = \"evidence\"\nkey = \"{}\"\ncheckpoint_secs = 1\n\
             \n[[api.user]]\nname = \"{VIEWER}\"\npassword_hash = \"{hash}\"\nrole = \"viewer\"\nlines = [\"{VIEWER_LINE}\"]\n\
             \n[[api.user]]\nname = \"{ZH_USER}\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\nlang = \"zh\"\n",
            key.display(),
            hash = tidegate_collector::api::auth::hash_password_with(PASSWORD, 4096, 1, 1),
        ),
    );
    c.seed(&CAPTURES);
    // VXLAN traffic from a probe with tunnels = "inner": rows with a tunnel tag.
    c.seed_keyed(&["ndpi-vxlan.pcap"], tidegate_common::Tunnels::Inner);
    let expect = block_on(async {
        let q = |sql: &'static str| c.stack.ch.query(sql);
        let nums = |s: String| -> Vec<u64> { s.split('\t').map(|v| v.parse().unwrap()).collect() };
        let t = nums(q("SELECT sum(bytes), sum(packets), count() FROM tidegate.flows").await);
        let lines: Vec<String> = q("SELECT DISTINCT line FROM tidegate.flows ORDER BY line")
            .await
            .lines()
            .map(str::to_string)
            .collect();
        let per_line = |sql| async move {
            q(sql)
                .await
                .lines()
                .map(|l| {
                    let (k, v) = l.split_once('\t').unwrap();
                    (k.to_string(), v.parse::<u64>().unwrap())
                })
                .collect::<BTreeMap<_, _>>()
        };
        let ingress = per_line(
            "SELECT line, sum(bytes) FROM tidegate.flows WHERE direction = 'ingress' GROUP BY line",
        )
        .await;
        let bytes_by_line =
            per_line("SELECT line, sum(bytes) FROM tidegate.flows GROUP BY line").await;
        let by_kind =
            per_line("SELECT kind, count() FROM tidegate.alerts FINAL GROUP BY kind").await;
        let alert_evidence =
            per_line("SELECT id, JSONLength(evidence) FROM tidegate.alerts FINAL").await;
        // Each alert's first packet as Hong Kong's clock shows it (the time-zone setting).
        let first_hk: BTreeMap<String, String> = q(
            "SELECT id, formatDateTime(first, '%F %T', 'Asia/Hong_Kong') FROM tidegate.alerts FINAL",
        )
        .await
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
        // Each alert's pivot to its flows: its line, from its first to its last packet
        // (ms), to or from its target (else its source) — what the link asks the API.
        let mut pivot = BTreeMap::new();
        let mut host = BTreeMap::new();
        let targets = q(
            "SELECT id, line, if(isIPv4String(dst) OR isIPv6String(dst), dst, src), \
             toUnixTimestamp64Milli(first), toUnixTimestamp64Milli(last) + 1 \
             FROM tidegate.alerts FINAL WHERE isIPv4String(dst) OR isIPv6String(dst) \
             OR isIPv4String(src) OR isIPv6String(src)",
        )
        .await;
        for l in targets.lines() {
            let f: Vec<&str> = l.split('\t').collect();
            let n = c
                .stack
                .ch
                .query(&format!(
                    "SELECT count() FROM tidegate.flows WHERE line = '{}' \
                     AND first >= fromUnixTimestamp64Milli(toInt64({}), 'UTC') \
                     AND first < fromUnixTimestamp64Milli(toInt64({}), 'UTC') \
                     AND (src = toIPv6('{ip}') OR dst = toIPv6('{ip}'))",
                    f[1],
                    f[3],
                    f[4],
                    ip = f[2]
                ))
                .await;
            pivot.insert(f[0].to_string(), n.parse::<u64>().unwrap());
            // The target's host page, half an hour either side of the alert.
            let h = nums(
                c.stack
                    .ch
                    .query(&format!(
                        "SELECT sumIf(bytes, dst = toIPv6('{ip}')), sumIf(bytes, src = toIPv6('{ip}')), count() \
                         FROM tidegate.flows WHERE first >= fromUnixTimestamp64Milli(toInt64({}) - 1800000, 'UTC') \
                         AND first < fromUnixTimestamp64Milli(toInt64({}) - 1 + 1800000, 'UTC') \
                         AND (src = toIPv6('{ip}') OR dst = toIPv6('{ip}'))",
                        f[3],
                        f[4],
                        ip = f[2]
                    ))
                    .await,
            );
            host.insert(
                f[0].to_string(),
                json!({"ip": f[2], "bytes_in": h[0], "bytes_out": h[1], "flows": h[2]}),
            );
        }
        let violation_evidence =
            per_line("SELECT id, JSONLength(evidence) FROM tidegate.policy_violations FINAL").await;
        let kind = if by_kind.contains_key("syn_flood") {
            "syn_flood".to_string()
        } else {
            by_kind.keys().next().unwrap().clone()
        };
        let geo = nums(
            q("SELECT (SELECT count() FROM (SELECT DISTINCT src_country, dst_country FROM tidegate.flows)), \
               (SELECT uniqExact(c) FROM (SELECT arrayJoin(arrayFilter(x -> x != '', [src_country, dst_country])) AS c FROM tidegate.alerts FINAL))")
            .await,
        );
        // Flows of every single address an alert names (the list's pivots).
        let by_ip = per_line(
            "SELECT ip, (SELECT count() FROM tidegate.flows WHERE src = toIPv6(ip) OR dst = toIPv6(ip)) \
             FROM (SELECT DISTINCT arrayJoin([src, dst]) AS ip FROM tidegate.alerts FINAL) \
             WHERE isIPv4String(ip) OR isIPv6String(ip)",
        )
        .await;
        // Flows of each country, AS and zone at either end (the table's pivots).
        let by_country = per_line(
            "SELECT c, (SELECT count() FROM tidegate.flows WHERE src_country = c OR dst_country = c) \
             FROM (SELECT DISTINCT arrayJoin([src_country, dst_country]) AS c FROM tidegate.flows) WHERE c != ''",
        )
        .await;
        let by_asn = per_line(
            "SELECT toString(a), (SELECT count() FROM tidegate.flows WHERE src_asn = a OR dst_asn = a) \
             FROM (SELECT DISTINCT arrayJoin([src_asn, dst_asn]) AS a FROM tidegate.flows) WHERE a != 0",
        )
        .await;
        let by_zone = per_line(
            "SELECT z, (SELECT count() FROM tidegate.flows WHERE src_zone = z OR dst_zone = z) \
             FROM (SELECT DISTINCT arrayJoin([src_zone, dst_zone]) AS z FROM tidegate.flows) WHERE z != ''",
        )
        .await;
        let cidr = "192.168.0.0/16";
        let flows = nums(
            q("SELECT count(), countIf(isIPAddressInRange(src_text, '192.168.0.0/16') OR isIPAddressInRange(dst_text, '192.168.0.0/16')) FROM tidegate.flows").await,
        );
        // A filter expression and the same question in SQL.
        let expr_total = nums(
            q("SELECT count() FROM tidegate.flows WHERE proto = 17 AND (sport = 53 OR dport = 53) AND bytes > 100").await,
        );
        // Decapsulated flows: how many, and per network id what its tag's filter gives.
        let vxlan = nums(q("SELECT count() FROM tidegate.flows WHERE tunnel = 'vxlan'").await);
        let by_vni: serde_json::Map<String, serde_json::Value> = q(
            "SELECT tunnel_id, count() FROM tidegate.flows WHERE tunnel = 'vxlan' GROUP BY tunnel_id",
        )
        .await
        .lines()
        .map(|l| {
            let (id, n) = l.split_once('\t').unwrap();
            let q = if id == "0" {
                "tunnel = vxlan".to_string()
            } else {
                format!("tunnel = vxlan tunnel_id = {id}")
            };
            (q, json!(n.parse::<u64>().unwrap()))
        })
        .collect();
        let top_src = nums(q("SELECT sum(bytes) AS b FROM tidegate.flows GROUP BY src_text ORDER BY b DESC LIMIT 1").await);
        let spool = nums(q("SELECT argMax(spool_bytes, ts) FROM tidegate.probe_health WHERE probe_id = 'edge-1'").await);
        // The busiest second (all lines, one direction; a flow counts at its first
        // packet): what one-second buckets must show as the packet rate's peak.
        let flood_target =
            q("SELECT dst FROM tidegate.alerts FINAL WHERE kind = 'syn_flood' LIMIT 1").await;
        let flood_alerts: u64 = c
            .stack
            .ch
            .query(&format!(
                "SELECT count() FROM tidegate.alerts FINAL WHERE dst = '{flood_target}'"
            ))
            .await
            .parse()
            .unwrap();
        let viewer = nums(q("SELECT sum(bytes), (SELECT count() FROM tidegate.alerts FINAL WHERE line = 'stopddos-pkt') \
             FROM tidegate.flows WHERE line = 'stopddos-pkt'").await);
        let burst = nums(
            q(
                "SELECT toUnixTimestamp(first) AS s, sum(packets) AS p FROM tidegate.flows \
             GROUP BY s, direction ORDER BY p DESC, s LIMIT 1",
            )
            .await,
        );
        // Bytes of the two minutes around the busiest second (the overview's total there).
        let burst_bytes: u64 = c
            .stack
            .ch
            .query(&format!(
                "SELECT sum(bytes) FROM tidegate.flows WHERE first >= fromUnixTimestamp64Milli(toInt64({}), 'UTC') \
                 AND first < fromUnixTimestamp64Milli(toInt64({}), 'UTC')",
                (burst[0] - 60) * 1000,
                (burst[0] + 60) * 1000
            ))
            .await
            .parse()
            .unwrap();
        json!({
            "totals": {"bytes": t[0], "packets": t[1], "flows": t[2]},
            "lines": lines,
            "ingress_bytes_by_line": ingress,
            "bytes_by_line": bytes_by_line,
            "geo": {"pairs": geo[0], "alert_countries": geo[1]},
            "alerts": {"total": alert_evidence.len(), "by_kind": by_kind, "kind": kind, "evidence": alert_evidence, "pivot": pivot, "host": host, "first_hk": first_hk},
            "violations": {"total": violation_evidence.len(), "rule": "special-isolation", "evidence": violation_evidence},
            "flows": {"total": flows[0], "by_ip": by_ip, "by_country": by_country, "by_asn": by_asn, "by_zone": by_zone, "cidr": cidr, "cidr_total": flows[1], "top_src_bytes": top_src[0],
                "expr": {"q": "proto = udp and port = 53 and bytes > 100", "total": expr_total[0]},
                "tunnel": {"vxlan": vxlan[0], "by_q": by_vni}},
            "probe": {"spool_bytes": spool[0]},
            "burst": {"t": burst[0], "packets": burst[1], "range_bytes": burst_bytes},
            "incident": {"subject": flood_target, "alerts": flood_alerts},
            "viewer": {"user": VIEWER, "lines": [VIEWER_LINE], "bytes": viewer[0], "alerts": viewer[1]},
            "zh_user": ZH_USER,
        })
    });
    assert!(expect["alerts"]["total"].as_u64().unwrap() > 0);
    assert!(
        expect["viewer"]["alerts"].as_u64().unwrap() > 0,
        "the viewer's line has an alert to open"
    );
    assert!(expect["flows"]["cidr_total"].as_u64().unwrap() > 0);
    assert!(expect["flows"]["expr"]["total"].as_u64().unwrap() > 0);
    assert!(expect["flows"]["tunnel"]["vxlan"].as_u64().unwrap() > 0);
    let expect_file = c.dir().join("expect.json");
    std::fs::write(&expect_file, serde_json::to_vec_pretty(&expect).unwrap()).unwrap();
    let out = Console::artifacts("ui-screenshots");
    let status = Command::new("node")
        .arg(dir.join("pages.mjs"))
        .current_dir(&dir)
        .env("URL", &c.url)
        .env("USER", USER)
        .env("PASSWORD", PASSWORD)
        .env("EXPECT", &expect_file)
        .env("OUT", &out)
        .status()
        .expect("run node (scripts/setup-browser.sh installs it)");
    assert!(
        status.success(),
        "browser walk failed; screenshots in {}",
        out.display()
    );
    // The triage the browser did is in ClickHouse: three actions on one alert, by the
    // analyst who was logged in.
    let triage = block_on(c.stack.ch.query(
        "SELECT count(), uniqExact(alert_id), any(user), groupArray(toString(state)) \
         FROM (SELECT * FROM tidegate.alert_triage ORDER BY at)",
    ));
    assert_eq!(
        triage,
        format!("3\t1\t{USER}\t['acknowledged','in_progress','closed']")
    );
    // The filter the browser saved and shared is stored under the analyst's name.
    let saved = block_on(c.stack.ch.query(
        "SELECT owner, name, argMax(q, at), argMax(shared, at) FROM tidegate.saved_filters GROUP BY owner, name",
    ));
    assert_eq!(
        saved,
        format!("{USER}\tDNS over UDP\tproto = udp and port = 53 and bytes > 100\t1")
    );
    eprintln!("screenshots in {}", out.display());
}
