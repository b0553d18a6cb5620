//! What an analyst's script reads from the JSON API after real traffic went through the
//! real pipeline (probe replay → mTLS → collector with enrichment, policy and detectors →
//! ClickHouse): every number — traffic totals per line, country pairs, alert and
//! violation counts, evidence, flow searches, top talkers, probe health — equals what a
//! direct ClickHouse query says, filters narrow results the way the same SQL does, and
//! pages follow each other.

use crate::support::ui::{CAPTURES, Console, api, block_on, enc};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn api_numbers_equal_direct_clickhouse_queries_on_traffic_from_the_real_pipeline() {
    let mut c = Console::start(true);
    c.seed(&CAPTURES);
    block_on(async {
        let q = |sql: String| {
            let ch = &c.ch;
            async move { ch.query(&sql).await }
        };
        let get = |path: String| {
            let url = c.url.clone();
            async move {
                let r = api(&url, &path).await;
                assert_eq!(
                    r.status,
                    200,
                    "{path}: {}",
                    String::from_utf8_lossy(&r.body)
                );
                r.json()
            }
        };

        // The stored extent and lines.
        let meta = get("/api/v1/meta".into()).await;
        let (from, to) = (u(&meta["extent"]["from"]), u(&meta["extent"]["to"]));
        let range = format!("from={from}&to={to}");
        let lines: Vec<String> = meta["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        let want_lines = q("SELECT DISTINCT line FROM tidegate.flows ORDER BY line".into()).await;
        assert_eq!(lines.join("\n"), want_lines);
        assert_eq!(lines.len(), CAPTURES.len());

        // Overview totals and per line/direction, against the raw table.
        let ov = get(format!("/api/v1/overview?{range}")).await;
        let want = q("SELECT sum(packets), sum(bytes), count() FROM tidegate.flows".into()).await;
        let t = &ov["totals"];
        assert_eq!(
            format!("{}\t{}\t{}", t["packets"], t["bytes"], t["flows"]),
            want
        );
        assert_eq!(u(&t["flows"]), c.records.len() as u64);
        let want = q("SELECT line, direction, sum(packets), sum(bytes), count() FROM tidegate.flows GROUP BY line, direction ORDER BY line, direction".into()).await;
        let got: Vec<String> = ov["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                format!(
                    "{}\t{}\t{}\t{}\t{}",
                    l["line"].as_str().unwrap(),
                    l["direction"].as_str().unwrap(),
                    l["packets"],
                    l["bytes"],
                    l["flows"]
                )
            })
            .collect();
        assert_eq!(got.join("\n"), want);
        let series_bytes: u64 = ov["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| u(&s["bytes"]))
            .sum();
        assert_eq!(series_bytes, u(&t["bytes"]));
        // One line only.
        let line = &lines[0];
        let one = get(format!("/api/v1/overview?{range}&line={}", enc(line))).await;
        let want = q(format!(
            "SELECT sum(bytes) FROM tidegate.flows WHERE line = '{line}'"
        ))
        .await;
        assert_eq!(one["totals"]["bytes"].to_string(), want);
        // Hourly buckets read the hourly rollup and agree.
        let hourly = get(format!("/api/v1/overview?{range}&step=604800")).await;
        assert_eq!(hourly["table"], "flows_1h");
        assert_eq!(hourly["totals"], ov["totals"]);

        // Country pairs, from enrichment.
        let geo = get(format!("/api/v1/geo?{range}")).await;
        let want = q("SELECT src_country, dst_country, sum(bytes), count() FROM tidegate.flows GROUP BY src_country, dst_country ORDER BY src_country, dst_country".into()).await;
        let mut got: Vec<String> = geo["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}\t{}\t{}\t{}",
                    p["src_country"].as_str().unwrap(),
                    p["dst_country"].as_str().unwrap(),
                    p["bytes"],
                    p["flows"]
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<&str> = want.lines().collect();
        want.sort();
        assert_eq!(got, want);
        assert!(
            got.iter().any(|p| !p.starts_with('\t')),
            "no enriched country: {got:?}"
        );
        let want = q("SELECT c, count() FROM (SELECT arrayJoin(arrayDistinct(arrayFilter(x -> x != '', [src_country, dst_country]))) AS c FROM tidegate.alerts FINAL) GROUP BY c ORDER BY c".into()).await;
        let mut got: Vec<String> = geo["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}\t{}", a["country"].as_str().unwrap(), a["alerts"]))
            .collect();
        got.sort();
        assert_eq!(got.join("\n"), want);

        // Alerts: total, facets, a kind filter, pages, the detail with its evidence.
        let all = get(format!("/api/v1/alerts?{range}&limit=500")).await;
        let n_alerts: u64 = q("SELECT count() FROM tidegate.alerts FINAL".into())
            .await
            .parse()
            .unwrap();
        assert!(n_alerts > 0);
        assert_eq!(u(&all["total"]), n_alerts);
        assert_eq!(all["items"].as_array().unwrap().len() as u64, n_alerts);
        let want_ids =
            q("SELECT id FROM tidegate.alerts FINAL ORDER BY first DESC, id".into()).await;
        let ids: Vec<&str> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.join("\n"), want_ids);
        let kinds = q(
            "SELECT kind, count() FROM tidegate.alerts FINAL GROUP BY kind ORDER BY kind".into(),
        )
        .await;
        assert!(kinds.contains("syn_flood"), "{kinds}");
        for l in kinds.lines() {
            let (kind, n) = l.split_once('\t').unwrap();
            let r = get(format!("/api/v1/alerts?{range}&kind={kind}")).await;
            assert_eq!(r["total"].to_string(), n, "kind {kind}");
            assert!(
                r["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|a| a["kind"] == kind)
            );
        }
        let sev = q(
            "SELECT count() FROM tidegate.alerts FINAL WHERE severity IN ('high', 'critical')"
                .into(),
        )
        .await;
        let r = get(format!("/api/v1/alerts?{range}&severity=high,critical")).await;
        assert_eq!(r["total"].to_string(), sev);
        if n_alerts >= 2 {
            let second = get(format!("/api/v1/alerts?{range}&limit=1&offset=1")).await;
            assert_eq!(second["items"][0]["id"], all["items"][1]["id"]);
        }
        let empty = get(format!(
            "/api/v1/alerts?from={}&to={}",
            to + 86_400_000,
            to + 2 * 86_400_000
        ))
        .await;
        assert_eq!(empty["total"], 0);
        let timeline = get(format!("/api/v1/alerts/timeline?{range}")).await;
        let tl: u64 = timeline["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| u(&b["n"]))
            .sum();
        assert_eq!(tl, n_alerts);
        for a in all["items"].as_array().unwrap() {
            let id = a["id"].as_str().unwrap();
            let d = get(format!("/api/v1/alerts/{}", enc(id))).await;
            let want = q(format!(
                "SELECT kind, src, dst, JSONLength(evidence), toString(severity) FROM tidegate.alerts FINAL WHERE id = '{id}'"
            ))
            .await;
            let ev = d["evidence"]
                .as_array()
                .expect("evidence parsed into an array");
            assert_eq!(
                format!(
                    "{}\t{}\t{}\t{}\t{}",
                    d["kind"].as_str().unwrap(),
                    d["src"].as_str().unwrap(),
                    d["dst"].as_str().unwrap(),
                    ev.len(),
                    d["severity"].as_str().unwrap()
                ),
                want
            );
            assert!(
                ev.iter()
                    .all(|f| f["src"].is_string() && f["bytes"].is_u64()),
                "{id}: evidence records"
            );
        }

        // Policy violations: grouped by rule with the rule's text; list; detail.
        let rules = get(format!("/api/v1/violations/rules?{range}")).await;
        let want = q("SELECT rule_id, count(), sum(flows), sum(bytes), any(rule_text) FROM tidegate.policy_violations FINAL GROUP BY rule_id ORDER BY rule_id".into()).await;
        let got: Vec<String> = rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}\t{}\t{}\t{}\t{}",
                    r["rule_id"].as_str().unwrap(),
                    r["violations"],
                    r["flows"],
                    r["bytes"],
                    r["rule_text"].as_str().unwrap()
                )
            })
            .collect();
        // rule_text is multi-line: compare as a whole.
        assert_eq!(got.join("\n"), want.replace("\\n", "\n"));
        assert!(
            rules["rules"][0]["rule_text"]
                .as_str()
                .unwrap()
                .contains("isolate")
        );
        let n_viol: u64 = q("SELECT count() FROM tidegate.policy_violations FINAL".into())
            .await
            .parse()
            .unwrap();
        let list = get(format!(
            "/api/v1/violations?{range}&rule=special-isolation&limit=5"
        ))
        .await;
        assert_eq!(u(&list["total"]), n_viol);
        assert_eq!(
            list["items"].as_array().unwrap().len() as u64,
            n_viol.min(5)
        );
        let id = list["items"][0]["id"].as_str().unwrap();
        let d = get(format!("/api/v1/violations/{}", enc(id))).await;
        let want = q(format!("SELECT JSONLength(evidence), flows FROM tidegate.policy_violations FINAL WHERE id = '{id}'")).await;
        assert_eq!(
            format!(
                "{}\t{}",
                d["evidence"].as_array().unwrap().len(),
                d["flows"]
            ),
            want
        );
        assert!(d["rule_text"].as_str().unwrap().contains("special-zone"));
        let none = get(format!("/api/v1/violations?{range}&rule=no-such-rule")).await;
        assert_eq!(none["total"], 0);

        // Flow search: CIDR, port + protocol, country, line; paging by bytes.
        let checks = [
            (
                "ip=192.168.0.0%2F16",
                "isIPAddressInRange(src_text, '192.168.0.0/16') OR isIPAddressInRange(dst_text, '192.168.0.0/16')",
            ),
            (
                "port=53&proto=udp",
                "(sport = 53 OR dport = 53) AND proto = 17",
            ),
            (
                "proto=tcp&direction=ingress",
                "proto = 6 AND direction = 'ingress'",
            ),
        ];
        for (params, cond) in checks {
            let r = get(format!("/api/v1/flows?{range}&{params}&limit=3")).await;
            let want = q(format!(
                "SELECT count(), sum(bytes) FROM tidegate.flows WHERE {cond}"
            ))
            .await;
            assert_eq!(format!("{}\t{}", r["total"], r["bytes"]), want, "{params}");
            assert!(u(&r["total"]) > 0, "{params} finds nothing: a weak check");
        }
        let cc = q("SELECT src_country FROM tidegate.flows WHERE src_country != '' GROUP BY src_country ORDER BY count() DESC LIMIT 1".into()).await;
        let r = get(format!(
            "/api/v1/flows?{range}&country={}",
            cc.to_lowercase()
        ))
        .await;
        let want = q(format!(
            "SELECT count() FROM tidegate.flows WHERE src_country = '{cc}' OR dst_country = '{cc}'"
        ))
        .await;
        assert_eq!(r["total"].to_string(), want);
        let r = get(format!("/api/v1/flows?{range}&line={}", enc(line))).await;
        let want = q(format!(
            "SELECT count() FROM tidegate.flows WHERE line = '{line}'"
        ))
        .await;
        assert_eq!(r["total"].to_string(), want);
        let page2 = get(format!("/api/v1/flows?{range}&sort=bytes&limit=7&offset=7")).await;
        let want =
            q("SELECT bytes FROM tidegate.flows ORDER BY bytes DESC LIMIT 7 OFFSET 7".into()).await;
        let got: Vec<String> = page2["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["bytes"].to_string())
            .collect();
        assert_eq!(got.join("\n"), want);

        // Top talkers.
        for (by, col) in [("src", "src_text"), ("dst", "dst_text")] {
            let r = get(format!("/api/v1/top-talkers?{range}&by={by}&limit=5")).await;
            let want = q(format!(
                "SELECT sum(bytes) AS b FROM tidegate.flows GROUP BY {col} ORDER BY b DESC LIMIT 5"
            ))
            .await;
            let got: Vec<String> = r["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["bytes"].to_string())
                .collect();
            assert_eq!(got.join("\n"), want, "by {by}");
            let top = r["items"][0][by].as_str().unwrap();
            let other = if by == "src" { "dst" } else { "src" };
            let want = q(format!(
                "SELECT sum(bytes), uniq({other}) FROM tidegate.flows WHERE {col} = '{top}'"
            ))
            .await;
            assert_eq!(
                format!("{}\t{}", r["items"][0]["bytes"], r["items"][0]["peers"]),
                want
            );
        }
        let r = get(format!(
            "/api/v1/top-talkers?{range}&by=pair&metric=packets&limit=3"
        ))
        .await;
        let want = q("SELECT sum(packets) AS p FROM tidegate.flows GROUP BY src_text, dst_text ORDER BY p DESC LIMIT 3".into()).await;
        let got: Vec<String> = r["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["packets"].to_string())
            .collect();
        assert_eq!(got.join("\n"), want);
        let (s0, d0) = (
            r["items"][0]["src"].as_str().unwrap(),
            r["items"][0]["dst"].as_str().unwrap(),
        );
        let want = q(format!(
            "SELECT uniq(dport) FROM tidegate.flows WHERE src_text = '{s0}' AND dst_text = '{d0}'"
        ))
        .await;
        assert_eq!(r["items"][0]["ports"].to_string(), want);

        // Probe health: the replaying probe with its latest report.
        let p = get("/api/v1/probes".into()).await;
        let probe = p["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["probe_id"] == "edge-1")
            .expect("edge-1 listed");
        let want = q("SELECT argMax(spool_bytes, ts), argMax(spool_batches, ts), argMax(counters['export_records'], ts) FROM tidegate.probe_health WHERE probe_id = 'edge-1'".into()).await;
        assert_eq!(
            format!(
                "{}\t{}\t{}",
                probe["spool_bytes"], probe["spool_batches"], probe["counters"]["export_records"]
            ),
            want
        );
        assert_eq!(probe["reporting"], true);
        assert!(u(&probe["counters"]["export_records"]) > 0);
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let h = get(format!(
            "/api/v1/probes/history?from={}&to={}&probe=edge-1",
            now - 3_600_000,
            now + 60_000
        ))
        .await;
        let buckets = h["buckets"].as_array().unwrap();
        assert!(!buckets.is_empty());
        let max_spool = buckets.iter().map(|b| u(&b["spool_bytes"])).max().unwrap();
        let want = q(
            "SELECT max(spool_bytes) FROM tidegate.probe_health WHERE probe_id = 'edge-1'".into(),
        )
        .await;
        assert_eq!(max_spool.to_string(), want);
    });
}
