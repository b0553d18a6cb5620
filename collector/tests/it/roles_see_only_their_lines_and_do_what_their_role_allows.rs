//! Access by role and line, through the real API on traffic from the real pipeline: a
//! viewer restricted to two lines and an analyst restricted to one see exactly their
//! lines' rows everywhere (meta, overview, the live view, alerts, violations, flows, top
//! talkers, triage) — equal to ClickHouse's numbers for those lines — and not another line's
//! alert by id; a viewer cannot triage or export, an analyst cannot block, an admin can;
//! logins (and a refused one), the triage and the export are in the audit log, which only
//! an admin reads. The collector's health page lists the metrics of their lines' probes
//! only.

use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;

use crate::support::ui::{CAPTURES, Console, PASSWORD, block_on, enc, http, wait_settled};

const VIEWER_LINES: [&str; 2] = ["ndpi-1kxun", "ndpi-synscan"];
const ANALYST_LINES: [&str; 1] = ["stopddos-pkt"];

fn users() -> String {
    let h = tidegate_collector::api::auth::hash_password_with(PASSWORD, 4096, 1, 1);
    let list = |l: &[&str]| {
        l.iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "\n[[api.user]]\nname = \"vera\"\npassword_hash = \"{h}\"\nrole = \"viewer\"\nlines = [{}]\n\
         \n[[api.user]]\nname = \"ali\"\npassword_hash = \"{h}\"\nrole = \"analyst\"\nlines = [{}]\n",
        list(&VIEWER_LINES),
        list(&ANALYST_LINES)
    )
}

/// Logs `user` in; the session cookie.
async fn login(url: &str, user: &str) -> String {
    let body = format!(r#"{{"user": "{user}", "password": "{PASSWORD}"}}"#);
    let r = http("POST", url, "/api/v1/login", &[], Some(&body)).await;
    assert_eq!(
        r.status,
        200,
        "{user}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let set = r.header("set-cookie").unwrap();
    set.split(';').next().unwrap().to_string()
}

struct As<'a> {
    url: &'a str,
    cookie: String,
}

impl As<'_> {
    async fn req(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let r = http(method, self.url, path, &[("Cookie", &self.cookie)], body).await;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }
    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.req("GET", path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }
}

/// The probe ids labelling the metrics of a `/api/v1/collector` answer.
fn metric_probes(health: &Value) -> BTreeSet<String> {
    health["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            let l = m["labels"].as_str()?;
            let rest = &l[l.find("probe=\"")? + 7..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn restricted_principals_see_their_lines_only_and_act_by_role() {
    let mut c = Console::start_with(true, &users());
    c.seed(&CAPTURES);
    // A second probe, on a line neither restricted user sees (its health names it).
    let more = c.stack.replay("edge-2", &CAPTURES[3..]);
    let all = (c.records.len() + more.len()) as u64;
    c.stack.wait_for_flows(all, Duration::from_secs(90));
    wait_settled(&c.stack);
    block_on(async {
        let q = |sql: String| {
            let ch = &c.stack.ch;
            async move { ch.query(&sql).await }
        };
        let meta = As {
            url: &c.url,
            cookie: login(&c.url, "analyst").await,
        }
        .get("/api/v1/meta")
        .await;
        let (from, to) = (u(&meta["extent"]["from"]), u(&meta["extent"]["to"]));
        let admin_health = As {
            url: &c.url,
            cookie: login(&c.url, "analyst").await,
        }
        .get("/api/v1/collector")
        .await;
        assert_eq!(
            metric_probes(&admin_health),
            BTreeSet::from(["edge-1".to_string(), "edge-2".to_string()]),
            "an admin sees every probe's metrics"
        );
        let range = format!("from={from}&to={to}");
        for (user, lines) in [("vera", &VIEWER_LINES[..]), ("ali", &ANALYST_LINES[..])] {
            let who = As {
                url: &c.url,
                cookie: login(&c.url, user).await,
            };
            let set = lines
                .iter()
                .map(|l| format!("'{l}'"))
                .collect::<Vec<_>>()
                .join(", ");
            // The collector's health: its lines' probe (edge-1 carries every line), not
            // edge-2, whose only line it does not see.
            let health = who.get("/api/v1/collector").await;
            assert_eq!(
                metric_probes(&health),
                BTreeSet::from(["edge-1".to_string()]),
                "{user}: /collector"
            );
            let session = who.get("/api/v1/session").await;
            assert_eq!(session["lines"], serde_json::json!(lines), "{user}");
            // The line list and every total are those of the allowed lines.
            let m = who.get("/api/v1/meta").await;
            assert_eq!(m["lines"], serde_json::json!(lines), "{user}: lines");
            let ov = who.get(&format!("/api/v1/overview?{range}")).await;
            let want = q(format!(
                "SELECT sum(packets), sum(bytes), count() FROM tidegate.flows WHERE line IN ({set})"
            ))
            .await;
            let t = &ov["totals"];
            assert_eq!(
                format!("{}\t{}\t{}", t["packets"], t["bytes"], t["flows"]),
                want,
                "{user}: overview totals"
            );
            // The live view (from the aggregation shards' memory): the same lines only,
            // their record counts, and nothing when asking for another line.
            let live = who.get("/api/v1/live").await;
            let live_lines: Vec<&str> = live["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["line"].as_str().unwrap())
                .collect();
            assert_eq!(live_lines, lines, "{user}: live lines");
            let records: u64 = live["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    u(&l["ingress"]["totals"]["records"]) + u(&l["egress"]["totals"]["records"])
                })
                .sum();
            assert_eq!(records.to_string(), t["flows"].to_string(), "{user}: live");
            let fl = who.get(&format!("/api/v1/flows?{range}&limit=1")).await;
            let want = q(format!(
                "SELECT count() FROM tidegate.flows WHERE line IN ({set})"
            ))
            .await;
            assert_eq!(fl["total"].to_string(), want, "{user}: flow search");
            let other = CAPTURES
                .iter()
                .map(|f| f.split('.').next().unwrap())
                .find(|l| !lines.contains(l))
                .unwrap();
            let none = who
                .get(&format!(
                    "/api/v1/flows?{range}&line={}&limit=1",
                    enc(other)
                ))
                .await;
            assert_eq!(u(&none["total"]), 0, "{user}: asking for {other}");
            let none = who.get(&format!("/api/v1/live?line={}", enc(other))).await;
            assert_eq!(none["lines"], serde_json::json!([]), "{user}: live {other}");
            assert_eq!(u(&none["active_flows"]), 0, "{user}: live {other}");
            for (path, table) in [("alerts", "alerts"), ("violations", "policy_violations")] {
                let got = who.get(&format!("/api/v1/{path}?{range}&limit=500")).await;
                let want = q(format!(
                    "SELECT count() FROM tidegate.{table} FINAL WHERE line IN ({set})"
                ))
                .await;
                assert_eq!(got["total"].to_string(), want, "{user}: {path}");
                for it in got["items"].as_array().unwrap() {
                    assert!(
                        lines.contains(&it["line"].as_str().unwrap()),
                        "{user}: {it}"
                    );
                }
            }
            let top = who
                .get(&format!("/api/v1/top-talkers?{range}&by=src&limit=1"))
                .await;
            let want = q(format!(
                "SELECT sum(bytes) AS b FROM tidegate.flows WHERE line IN ({set}) \
                 GROUP BY src ORDER BY b DESC LIMIT 1"
            ))
            .await;
            assert_eq!(
                top["items"][0]["bytes"].to_string(),
                want,
                "{user}: top talker"
            );
            // Another line's alert is not there, nor its triage or evidence.
            let foreign = q(format!(
                "SELECT id FROM tidegate.alerts FINAL WHERE line NOT IN ({set}) LIMIT 1"
            ))
            .await;
            assert!(
                !foreign.is_empty(),
                "{user}: no alert outside its lines to try"
            );
            for path in [
                format!("/api/v1/alerts/{foreign}"),
                format!("/api/v1/alerts/{foreign}/triage"),
            ] {
                let (s, v) = who.req("GET", &path, None).await;
                assert_eq!(s, 404, "{user}: {path}: {v}");
            }
            let (s, v) = who
                .req(
                    "POST",
                    &format!("/api/v1/alerts/{foreign}/triage"),
                    Some(r#"{"state": "acknowledged"}"#),
                )
                .await;
            assert!(
                s == 403 || s == 404,
                "{user}: triage of a foreign alert: {s} {v}"
            );
        }

        // What each role may do.
        let vera = As {
            url: &c.url,
            cookie: login(&c.url, "vera").await,
        };
        let ali = As {
            url: &c.url,
            cookie: login(&c.url, "ali").await,
        };
        let own = |lines: &[&str]| {
            let set = lines
                .iter()
                .map(|l| format!("'{l}'"))
                .collect::<Vec<_>>()
                .join(", ");
            q(format!(
                "SELECT id FROM tidegate.alerts FINAL WHERE line IN ({set}) ORDER BY id LIMIT 1"
            ))
        };
        let veras = own(&VIEWER_LINES).await;
        let alis = own(&ANALYST_LINES).await;
        let triage = r#"{"state": "acknowledged", "note": "seen"}"#;
        let (s, v) = vera
            .req(
                "POST",
                &format!("/api/v1/alerts/{veras}/triage"),
                Some(triage),
            )
            .await;
        assert_eq!(s, 403, "a viewer triages: {v}");
        assert!(v["error"].as_str().unwrap().contains("analyst role"), "{v}");
        let (s, _) = vera
            .req("GET", &format!("/api/v1/alerts?{range}&format=csv"), None)
            .await;
        assert_eq!(s, 403, "a viewer exports");
        let (s, v) = ali
            .req(
                "POST",
                &format!("/api/v1/alerts/{alis}/triage"),
                Some(triage),
            )
            .await;
        assert_eq!(s, 200, "an analyst triages its line's alert: {v}");
        let r = http(
            "GET",
            &c.url,
            &format!("/api/v1/alerts?{range}&format=csv"),
            &[("Cookie", &ali.cookie)],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "an analyst exports");
        let rows = String::from_utf8_lossy(&r.body).lines().count() - 1;
        let want: usize = q(format!(
            "SELECT count() FROM tidegate.alerts FINAL WHERE line = '{}'",
            ANALYST_LINES[0]
        ))
        .await
        .parse()
        .unwrap();
        assert_eq!(
            rows, want,
            "the analyst's export holds its line's alerts only"
        );
        let block = r#"{"cidr": "192.0.2.0/24", "expires_secs": 600, "reason": "x"}"#;
        let (s, v) = ali.req("POST", "/api/v1/enforce/blocks", Some(block)).await;
        assert_eq!(s, 403, "an analyst blocks: {v}");
        assert!(v["error"].as_str().unwrap().contains("admin role"), "{v}");
        // The triage is stored with its author; the viewer's refused one is not.
        assert_eq!(
            q("SELECT user, alert_id FROM tidegate.alert_triage".into()).await,
            format!("ali\t{alis}")
        );

        // The audit trail: what was done, by whom, from where; refused actions are not
        // actions. Only an admin reads it.
        let wrong = r#"{"user": "ali", "password": "not it"}"#;
        let r = http("POST", &c.url, "/api/v1/login", &[], Some(wrong)).await;
        assert_eq!(r.status, 401);
        let (s, _) = ali.req("GET", "/api/v1/audit", None).await;
        assert_eq!(s, 403, "an analyst reads the audit log");
        let admin = As {
            url: &c.url,
            cookie: login(&c.url, "analyst").await,
        };
        let now = tidegate_base::clock::wall_ns() / 1_000_000;
        let audit = admin
            .get(&format!(
                "/api/v1/audit?from={}&to={}&limit=1000",
                now - 600_000,
                now + 60_000
            ))
            .await;
        let rows: Vec<String> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{} {} {} {}",
                    a["user"].as_str().unwrap(),
                    a["action"].as_str().unwrap(),
                    a["client"].as_str().unwrap(),
                    a["target"].as_str().unwrap()
                )
            })
            .collect();
        let has = |want: &str| rows.iter().filter(|r| r.as_str() == want).count();
        assert!(has("vera login 127.0.0.1 ") >= 2, "{rows:#?}");
        assert!(has("ali login 127.0.0.1 ") >= 2, "{rows:#?}");
        assert_eq!(has("ali login_refused 127.0.0.1 "), 1, "{rows:#?}");
        assert_eq!(has(&format!("ali triage 127.0.0.1 {alis}")), 1, "{rows:#?}");
        assert_eq!(has("ali export 127.0.0.1 alerts"), 1, "{rows:#?}");
        assert!(
            !rows.iter().any(|r| r.starts_with("vera triage")
                || r.starts_with("vera export")
                || r.contains(" block ")),
            "a refused action was recorded: {rows:#?}"
        );
        assert_eq!(audit["total"].as_u64().unwrap() as usize, rows.len());
        let exports = admin
            .get(&format!(
                "/api/v1/audit?from={}&to={}&action=export",
                now - 600_000,
                now + 60_000
            ))
            .await;
        assert_eq!(exports["total"], 1);
        let detail = exports["items"][0]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("csv ") && detail.contains("format=csv"),
            "{detail}"
        );
    });
}
