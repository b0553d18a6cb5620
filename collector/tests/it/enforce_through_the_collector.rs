//! Enforcement as an operator runs it, end to end: a real collector (ClickHouse, the API,
//! an evidence log) compiles a policy with a dropping deny list and pushes it over mutual
//! TLS to a probe capturing with XDP on a veth line in namespaces this test creates. The
//! probe enforces it; dropped flows are still stored, with their verdict and rule, and the
//! violation says the traffic was dropped; the console's enforcement API counts per rule
//! and names the top dropped sources; a manual block made through the API (authenticated)
//! is pushed and enforced, a block over a protected range is refused; a reload whose drop
//! rule would cover a protected range is refused with file:line and the old plan kept;
//! every enforcement change is an entry in the evidence log; a token restricted to the
//! probe's line sees its enforcement status, one restricted to another line does not.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tidegate_probe::{
    capture::ebpf::{EbpfCapture, EbpfOptions, SharedEnforcer, XdpModeChoice},
    live::{LoopOptions, run_loop},
    metrics::ProbeMetrics,
    table::Timeouts,
};
use tidegate_testkit::{
    net::{
        VethPair,
        frames::{self, RawSender},
    },
    probe::{exporter, probe_options},
};

use crate::support::evidence::keygen;
use crate::support::ui::{Console, TOKEN, api, block_on, http, sha256_hex};

const LINE: &str = "line-b";
const HOME: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 1);
const DENIED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ALLOWED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const BLOCKED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const SCANNER: Ipv4Addr = Ipv4Addr::new(10, 10, 5, 5);
/// Bearer tokens of viewers restricted to the probe's line and to another line.
const LINE_TOKEN: &str = "token-of-a-viewer-of-line-b";
const OTHER_TOKEN: &str = "token-of-a-viewer-of-line-z";

/// `[[api.token]]`s for [`LINE_TOKEN`] and [`OTHER_TOKEN`].
fn restricted_tokens() -> String {
    format!(
        "\n[[api.token]]\nname = \"line-viewer\"\nsha256 = \"{}\"\nrole = \"viewer\"\nlines = [\"{LINE}\"]\n\
         \n[[api.token]]\nname = \"other-viewer\"\nsha256 = \"{}\"\nrole = \"viewer\"\nlines = [\"line-z\"]\n",
        sha256_hex(LINE_TOKEN),
        sha256_hex(OTHER_TOKEN)
    )
}

/// The probe ids in `/api/v1/enforce/status` as `token` sees it.
fn status_probes(url: &str, token: &str) -> Vec<String> {
    let auth = format!("Bearer {token}");
    let r = block_on(http(
        "GET",
        url,
        "/api/v1/enforce/status",
        &[("Authorization", auth.as_str())],
        None,
    ));
    json(r)["probes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn policy(protected: &str) -> String {
    format!(
        r#"[[zone]]
name = "home"
cidrs = ["10.10.0.0/16"]

[[rule]]
id = "sanctioned"
name = "no traffic to the sanctioned network"
type = "deny_list"
cidrs = ["198.51.100.0/24"]
action = "drop"

[enforce]
mode = "enforce"
protected = ["{protected}"]

[enforce.block_alerts]
kinds = ["port_scan"]
min_severity = "low"
block_secs = 600
"#
    )
}

fn json(r: crate::support::ui::Resp) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

fn status(url: &str) -> Value {
    block_on(async { json(api(url, "/api/v1/enforce/status").await) })
}

/// Waits until probe `edge-1` reports enforcing the published version; returns it.
fn wait_enforced(url: &str, not: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let s = status(url);
        let v = s["plan"]["version"].as_u64().unwrap();
        if v != not && s["probes"]["edge-1"]["version"].as_u64() == Some(v) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "not enforced: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post(url: &str, path: &str, body: &str, auth: bool) -> crate::support::ui::Resp {
    let bearer = format!("Bearer {TOKEN}");
    let mut h = vec![("Content-Type", "application/json")];
    if auth {
        h.push(("Authorization", bearer.as_str()));
    }
    block_on(http("POST", url, path, &h, Some(body)))
}

#[test]
fn enforce_policy_from_the_collector_drops_at_the_line_and_every_drop_is_accounted() {
    let files = tempfile::tempdir().unwrap();
    let policy_path = files.path().join("policy.toml");
    std::fs::write(&policy_path, policy("10.10.9.0/24")).unwrap();
    let key = keygen(files.path());
    let c = Console::start_with(
        false,
        &format!(
            "\n[policy]\nfile = \"{}\"\n\n[evidence]\ndir = \"evidence\"\nkey = \"{}\"\norigin = \"tidegate.test/enforce\"\ncheckpoint_secs = 1\n{}",
            policy_path.display(),
            key.display(),
            restricted_tokens()
        ),
    );
    let first = status(&c.url)["plan"]["version"].as_u64().unwrap();
    assert_eq!(
        status(&c.url)["plan"]["drop_rules"],
        serde_json::json!(["sanctioned"])
    );

    // The probe: XDP on the near end of a veth pair, exporting to the collector and
    // installing what it pushes.
    let pair = VethPair::new("ecl").unwrap();
    let mac_b = VethPair::mac(&pair.ns_b, &pair.if_b).unwrap();
    let (cap, ifindex, enforcer) = VethPair::in_ns(&pair.ns_b, || {
        let mut cap = EbpfCapture::load(EbpfOptions {
            flow_entries: 4096,
            xdp_mode: XdpModeChoice::Native,
            enforce: true,
            ..Default::default()
        })
        .unwrap();
        let rep = cap.attach(&pair.if_b).unwrap();
        let mut e = cap.take_enforcer().unwrap();
        e.set_lines(HashMap::from([(LINE.to_string(), vec![rep.ifindex])]));
        (cap, rep.ifindex, SharedEnforcer::new(e))
    })
    .unwrap();
    let mut o = probe_options(
        &c.stack.certs,
        "edge-1",
        c.stack.config.addr(),
        &files.path().join("spool"),
    );
    o.enforcer = Some(enforcer.clone());
    o.lines = vec![LINE.into()];
    let stop = Arc::new(AtomicBool::new(false));
    let looping = {
        let (stop, enforcer) = (stop.clone(), enforcer.clone());
        let mut cap = cap;
        std::thread::spawn(move || {
            let mut ex = exporter(o);
            let opts = LoopOptions {
                timeouts: Timeouts {
                    active: Duration::from_secs(60),
                    idle: Duration::from_secs(1),
                },
                sweep_interval: Duration::from_millis(100),
                duration: None,
                lines: HashMap::from([(ifindex, LINE.to_string())]),
                enforcer: Some(enforcer),
                records_max: tidegate_probe::table::RECORDS_MAX,
            };
            let m = Arc::new(Mutex::new(ProbeMetrics::new()));
            run_loop(&mut cap, &mut ex, &m, &stop, &opts, None).unwrap();
            let rep = ex.finish(Duration::from_secs(30)).unwrap();
            assert!(rep.delivered(), "{rep:?}");
        })
    };
    assert_eq!(
        wait_enforced(&c.url, 0),
        first,
        "the probe enforces the published plan"
    );

    let send = |flows: &[(Ipv4Addr, Ipv4Addr, u16, u64)]| {
        VethPair::in_ns(&pair.ns_a, || {
            let tx = RawSender::new(&pair.if_a).unwrap();
            for &(s, d, sport, n) in flows {
                let f = frames::ipv4(mac_b, None, 17, s, d, sport, 5000, 100, 0);
                for _ in 0..n {
                    tx.send(&f).unwrap();
                }
            }
        })
        .unwrap();
    };
    send(&[(HOME, DENIED, 40000, 40), (HOME, ALLOWED, 40001, 30)]);

    // A port scan: the alert opens, and the policy blocks its source at the lines.
    VethPair::in_ns(&pair.ns_a, || {
        let tx = RawSender::new(&pair.if_a).unwrap();
        for port in 1000..1030 {
            let f = frames::ipv4(mac_b, None, 6, SCANNER, ALLOWED, 45000, port, 40, 0x02);
            tx.send(&f).unwrap();
        }
    })
    .unwrap();
    let t0 = Instant::now();
    let auto = loop {
        let s = status(&c.url);
        if let Some(b) = s["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["created_by"] == "auto-block")
        {
            break b.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no block after the scan: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(auto["cidr"], "10.10.5.5/32");
    assert!(
        auto["reason"].as_str().unwrap().contains("port_scan"),
        "{auto}"
    );
    let auto_version = wait_enforced(&c.url, first);
    send(&[(SCANNER, ALLOWED, 45001, 25)]);

    // A manual block for incident response: authenticated only, protected ranges refused.
    let body = r#"{"cidr": "192.0.2.0/24", "expires_secs": 600, "reason": "incident 42"}"#;
    assert_eq!(
        post(&c.url, "/api/v1/enforce/blocks", body, false).status,
        401
    );
    let bad = r#"{"cidr": "10.10.9.0/25", "expires_secs": 600, "reason": "oops"}"#;
    let r = post(&c.url, "/api/v1/enforce/blocks", bad, true);
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("protected"));
    let made = json(post(&c.url, "/api/v1/enforce/blocks", body, true));
    let id = made["block"]["id"].as_str().unwrap().to_string();
    assert_eq!(made["block"]["created_by"], "automation");
    let blocked_version = wait_enforced(&c.url, auto_version);
    assert!(
        status(&c.url)["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == id.as_str())
    );
    send(&[(HOME, BLOCKED, 40002, 20)]);

    // A reload whose drop rule would cover a protected range is refused, with file:line.
    std::fs::write(&policy_path, policy("198.51.100.0/28")).unwrap();
    c.stack.collector.signal(libc::SIGHUP);
    let refused = c
        .stack
        .collector
        .wait_log("policy reload refused", Duration::from_secs(10))
        .expect("reload refused");
    assert!(
        refused.contains(&format!("{}:10:", policy_path.display()))
            && refused.contains("protected"),
        "{refused}"
    );
    assert_eq!(
        status(&c.url)["plan"]["version"].as_u64(),
        Some(blocked_version)
    );

    // Lift the block; stop the probe (everything flushed and acknowledged).
    let lifted = block_on(http(
        "DELETE",
        &c.url,
        &format!("/api/v1/enforce/blocks/{id}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        None,
    ));
    assert_eq!(lifted.status, 200);
    wait_enforced(&c.url, blocked_version);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    looping.join().unwrap();

    // Stored: dropped flows with their rule, the allowed one untouched.
    // (The scanner's flows arrive too: wait for these three, not for any three rows.)
    let want = "::ffff:192.0.2.7\tdropped\tmanual-block\t20\n::ffff:198.51.100.7\tdropped\tsanctioned\t40\n::ffff:203.0.113.9\tpass\t\t30";
    c.stack.wait_for_schema();
    let stored = async || {
        c.stack.ch.query(
            "SELECT IPv6NumToString(dst), toString(verdict), enforce_rule, sum(packets) FROM tidegate.flows \
             WHERE line = 'line-b' AND direction = 'ingress' AND IPv6NumToString(src) = '::ffff:10.10.1.1' \
             GROUP BY 1, 2, 3 ORDER BY 1",
        )
        .await
    };
    block_on(tidegate_testkit::eventually_async(
        Duration::from_secs(60),
        async || stored().await == want,
    ));
    assert_eq!(block_on(stored()), want);
    // The console's per-rule counters and top dropped sources.
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 3_600_000;
    let path = format!("/api/v1/enforce/rules?from={hour_ago}");
    let r = block_on(async { json(api(&c.url, &path).await) });
    let per_rule: Vec<(String, String, u64)> = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["rule"].as_str().unwrap().to_string(),
                x["verdict"].as_str().unwrap().to_string(),
                x["packets"]
                    .as_str()
                    .map_or_else(|| x["packets"].as_u64().unwrap(), |s| s.parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        per_rule,
        vec![
            ("manual-block".into(), "dropped".into(), 45),
            ("sanctioned".into(), "dropped".into(), 40)
        ]
    );
    assert_eq!(r["top_sources"][0]["src"], "::ffff:10.10.1.1");
    assert_eq!(r["top_sources"][1]["src"], "::ffff:10.10.5.5");
    // The scanner's traffic after the block was dropped, and the alert says it blocked.
    let scanner = block_on(c.stack.ch.query(
        "SELECT toString(verdict), enforce_rule, sum(packets) FROM tidegate.flows \
         WHERE IPv6NumToString(src) = '::ffff:10.10.5.5' AND sport = 45001 GROUP BY 1, 2",
    ));
    assert_eq!(scanner, "dropped\tmanual-block\t25");
    let alert = block_on(c.stack.ch.query(
        "SELECT description FROM tidegate.alerts FINAL WHERE kind = 'port_scan' AND src = '10.10.5.5'",
    ));
    assert!(
        alert.contains("source blocked at the lines for 600 s"),
        "{alert}"
    );
    assert!(
        alert.contains("dropped on lines in enforce mode"),
        "{alert}"
    );

    // The violation says the traffic was dropped at the line.
    let ok = block_on(tidegate_testkit::eventually_async(
        Duration::from_secs(30),
        async || {
            c.stack
            .ch
            .query("SELECT action FROM tidegate.policy_violations FINAL WHERE rule_id = 'sanctioned'")
            .await
            == "dropped"
        },
    ));
    assert!(ok, "violation with action = dropped");

    // Enforcement status by line: once the probe's health (naming its line) is stored, a
    // viewer of that line sees the probe, a viewer of another line does not.
    let ok = block_on(tidegate_testkit::eventually_async(
        Duration::from_secs(30),
        async || {
            c.stack
                .ch
                .query(&format!(
                    "SELECT count() FROM tidegate.probe_health WHERE has(lines, '{LINE}')"
                ))
                .await
                != "0"
        },
    ));
    assert!(ok, "the probe's health naming its line is stored");
    assert_eq!(status_probes(&c.url, LINE_TOKEN), ["edge-1"]);
    assert_eq!(status_probes(&c.url, OTHER_TOKEN), Vec::<String>::new());
    assert_eq!(
        status_probes(&c.url, TOKEN),
        ["edge-1"],
        "an admin sees it too"
    );

    // Every enforcement change is in the evidence log.
    let entries = std::fs::read_to_string(c.dir().join("evidence").join("entries.jsonl")).unwrap();
    let events: Vec<String> = entries
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "enforcement")
        .map(|e| e["data"]["event"].as_str().unwrap_or("").to_string())
        .collect();
    for want in ["published", "applied", "block", "unblock"] {
        assert!(
            events.iter().any(|e| e == want),
            "no {want:?} entry: {events:?}"
        );
    }
}
