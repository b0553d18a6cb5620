//! What an analyst's script reads from the JSON API after real traffic went through the
//! real pipeline (probe replay → mTLS → collector with enrichment, policy and detectors →
//! ClickHouse): every number — traffic totals per line, country pairs, alert and
//! violation counts, evidence, flow searches, top talkers, probe health, the live view
//! from the aggregation shards' memory — equals what a direct ClickHouse query says,
//! filters narrow results the way the same SQL does, and pages follow each other.

use crate::support::ui::{CAPTURES, Console, api, block_on, enc};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The elements of an array.
fn items(v: &Value) -> &[Value] {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

/// Fields of `v` as a row of ClickHouse's tab-separated output: the `texts` (strings), then
/// the `numbers`.
fn row(v: &Value, texts: &[&str], numbers: &[&str]) -> String {
    let texts = texts.iter().map(|f| text(&v[*f]).to_string());
    let numbers = numbers.iter().map(|f| {
        assert!(v[*f].is_number(), "{f}: not a number: {v}");
        v[*f].to_string()
    });
    texts.chain(numbers).collect::<Vec<_>>().join("\t")
}

/// `row` of each element of an array.
fn rows(v: &Value, texts: &[&str], numbers: &[&str]) -> Vec<String> {
    items(v).iter().map(|e| row(e, texts, numbers)).collect()
}

#[test]
fn api_numbers_equal_direct_clickhouse_queries_on_traffic_from_the_real_pipeline() {
    let mut c = Console::start(true);
    c.seed(&CAPTURES);
    block_on(async {
        let q = |sql: String| {
            let ch = &c.stack.ch;
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
        let lines: Vec<&str> = items(&meta["lines"]).iter().map(text).collect();
        let want_lines = q("SELECT DISTINCT line FROM tidegate.flows ORDER BY line".into()).await;
        assert_eq!(lines.join("\n"), want_lines);
        assert_eq!(lines.len(), CAPTURES.len());

        // Overview totals and per line/direction, against the raw table.
        let ov = get(format!("/api/v1/overview?{range}")).await;
        let want = q("SELECT sum(packets), sum(bytes), count() FROM tidegate.flows".into()).await;
        let t = &ov["totals"];
        assert_eq!(row(t, &[], &["packets", "bytes", "flows"]), want);
        assert_eq!(u(&t["flows"]), c.records.len() as u64);
        let want = q("SELECT line, direction, sum(packets), sum(bytes), count() FROM tidegate.flows GROUP BY line, direction ORDER BY line, direction".into()).await;
        let got = rows(
            &ov["lines"],
            &["line", "direction"],
            &["packets", "bytes", "flows"],
        );
        assert_eq!(got.join("\n"), want);
        let series_bytes: u64 = items(&ov["series"]).iter().map(|s| u(&s["bytes"])).sum();
        assert_eq!(series_bytes, u(&t["bytes"]));
        // One line only.
        let line = lines[0];
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
        // Second buckets over the busiest two minutes read the flows themselves, bucket
        // by bucket what ClickHouse counts by first packet.
        let busiest: u64 = q("SELECT toUnixTimestamp(first) AS s FROM tidegate.flows \
             GROUP BY s ORDER BY sum(packets) DESC, s LIMIT 1"
            .into())
        .await
        .parse()
        .unwrap();
        let (b0, b1) = ((busiest - 60) * 1000, (busiest + 60) * 1000);
        let secs = get(format!("/api/v1/overview?from={b0}&to={b1}")).await;
        assert_eq!(
            (secs["table"].as_str(), u(&secs["step"])),
            (Some("flows"), 1)
        );
        let want = q(format!(
            "SELECT toUnixTimestamp(first) AS t, line, direction, sum(packets), sum(bytes), count() \
             FROM tidegate.flows WHERE first >= fromUnixTimestamp64Milli(toInt64({b0}), 'UTC') \
             AND first < fromUnixTimestamp64Milli(toInt64({b1}), 'UTC') \
             GROUP BY t, line, direction ORDER BY t, line, direction"
        ))
        .await;
        let got: Vec<String> = items(&secs["series"])
            .iter()
            .map(|r| {
                format!(
                    "{}\t{}",
                    u(&r["t"]),
                    row(r, &["line", "direction"], &["packets", "bytes", "flows"])
                )
            })
            .collect();
        assert!(got.len() > 1, "{got:?}");
        assert_eq!(got.join("\n"), want);
        // The host page of the busiest destination equals ClickHouse's numbers for it.
        let ip = q("SELECT dst_text FROM tidegate.flows GROUP BY dst_text ORDER BY sum(bytes) DESC, dst_text LIMIT 1".into()).await;
        let h = get(format!("/api/v1/hosts/{ip}?{range}")).await;
        let want = q(format!(
            "SELECT sumIf(bytes, src_text = '{ip}'), sumIf(bytes, dst_text = '{ip}'), countIf(src_text = '{ip}'), countIf(dst_text = '{ip}') \
             FROM tidegate.flows WHERE src_text = '{ip}' OR dst_text = '{ip}'"
        ))
        .await;
        let t = &h["totals"];
        assert_eq!(
            format!(
                "{}\t{}\t{}\t{}",
                t["bytes_out"], t["bytes_in"], t["flows_out"], t["flows_in"]
            ),
            want,
            "host {ip}"
        );
        let series_in: u64 = items(&h["series"]).iter().map(|s| u(&s["bytes_in"])).sum();
        assert_eq!(series_in, u(&t["bytes_in"]), "host series");
        let peers = items(&h["peers"]);
        assert!(!peers.is_empty() && peers.len() <= 20);
        let top_peer = q(format!(
            "SELECT sum(bytes) AS b FROM tidegate.flows WHERE dst_text = '{ip}' OR src_text = '{ip}' \
             GROUP BY if(src_text = '{ip}', dst_text, src_text) ORDER BY b DESC LIMIT 1"
        ))
        .await;
        assert_eq!(peers[0]["bytes"].to_string(), top_peer);
        let named = q(format!(
            "SELECT count() FROM tidegate.alerts FINAL WHERE src = '{ip}' OR dst = '{ip}'"
        ))
        .await;
        assert_eq!(
            items(&h["alerts"]).len().to_string(),
            named,
            "alerts naming {ip}"
        );
        let e = api(&c.url, "/api/v1/hosts/10.0.0.0%2F8").await;
        assert_eq!(e.status, 400, "a network is not a host");
        assert!(String::from_utf8_lossy(&e.body).contains("ip"));
        // Incidents: every finding in exactly one; a target's alerts close in time are
        // one incident (the SYN flood raised two kinds on one target).
        let inc = get(format!("/api/v1/incidents?{range}&limit=500")).await;
        let incs = items(&inc["items"]);
        assert_eq!(u(&inc["total"]) as usize, incs.len());
        let sum = |k: &str| incs.iter().map(|i| u(&i[k])).sum::<u64>();
        let want_alerts: u64 = q("SELECT count() FROM tidegate.alerts FINAL".into())
            .await
            .parse()
            .unwrap();
        let want_violations: u64 = q("SELECT count() FROM tidegate.policy_violations FINAL".into())
            .await
            .parse()
            .unwrap();
        assert_eq!(
            (sum("alerts"), sum("violations")),
            (want_alerts, want_violations)
        );
        let flood_target =
            q("SELECT dst FROM tidegate.alerts FINAL WHERE kind = 'syn_flood' LIMIT 1".into())
                .await;
        let kinds_on_target = q(format!(
            "SELECT count(), arrayStringConcat(arraySort(groupUniqArray(toString(kind))), ',') FROM tidegate.alerts FINAL WHERE dst = '{flood_target}'"
        ))
        .await;
        let flood: Vec<&Value> = incs
            .iter()
            .filter(|i| i["subject"] == flood_target.as_str())
            .collect();
        assert_eq!(
            flood.len(),
            1,
            "one incident for the flood on {flood_target}: {flood:?}"
        );
        let mut kinds: Vec<&str> = flood[0]["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        kinds.sort();
        assert_eq!(
            format!("{}\t{}", flood[0]["alerts"], kinds.join(",")),
            kinds_on_target
        );
        assert!(
            u(&flood[0]["alerts"]) >= 2,
            "the flood raised several alerts: {:?}",
            flood[0]
        );
        // A tiny gap splits what a wide one joins.
        let wide = get(format!("/api/v1/incidents?{range}&limit=500&gap=604800")).await;
        let narrow = get(format!("/api/v1/incidents?{range}&limit=500&gap=1")).await;
        assert!(u(&wide["total"]) <= u(&inc["total"]) && u(&inc["total"]) <= u(&narrow["total"]));

        // AS and zone filters (stored enrichment, either end).
        // (GeoLite2-City carries no AS numbers: the most frequent stored AS, else one.)
        let stored = q("SELECT a FROM (SELECT arrayJoin([src_asn, dst_asn]) AS a FROM tidegate.flows) WHERE a != 0 GROUP BY a ORDER BY count() DESC, a LIMIT 1".into()).await;
        let asn = if stored.is_empty() {
            "4134".to_string()
        } else {
            stored
        };
        let got = get(format!("/api/v1/flows?{range}&asn=AS{asn}&limit=1")).await;
        let want = q(format!(
            "SELECT count() FROM tidegate.flows WHERE src_asn = {asn} OR dst_asn = {asn}"
        ))
        .await;
        assert_eq!(got["total"].to_string(), want, "AS{asn}");
        let got = get(format!("/api/v1/flows?{range}&zone=special-zone&limit=1")).await;
        let want = q("SELECT count() FROM tidegate.flows WHERE src_zone = 'special-zone' OR dst_zone = 'special-zone'".into()).await;
        assert_eq!(got["total"].to_string(), want, "zone");
        assert!(u(&got["total"]) > 0, "the isolated zone has flows");
        let e = api(&c.url, &format!("/api/v1/flows?{range}&asn=AS-x")).await;
        assert_eq!(e.status, 400);
        assert!(String::from_utf8_lossy(&e.body).contains("asn"));

        // The collector's own health: everything stored, nothing waiting.
        let h = get("/api/v1/collector".into()).await;
        assert_eq!(
            u(&h["clickhouse"]["records_committed"]),
            c.records.len() as u64,
            "{h}"
        );
        assert_eq!(u(&h["spool"]["pending_batches"]), 0, "{h}");
        assert_eq!(h["clickhouse"]["down"], false, "{h}");
        assert_eq!(u(&h["clickhouse"]["schema_version"]), 13, "{h}");
        assert_eq!(u(&h["detection"]["records"]), c.records.len() as u64, "{h}");
        assert!(
            h["detection"]["event_time_lag_secs"].as_f64().unwrap() > 0.0,
            "{h}"
        );
        // Records of cold windows not taught to the baselines yet: some of those seen.
        let held = h["detection"]["cold_records_pending"].as_u64();
        assert!(held.is_some_and(|n| n <= c.records.len() as u64), "{h}");
        assert!(items(&h["metrics"]).len() > 20, "{h}");

        // The live view, from the aggregation shards' memory: every line and direction
        // with the stored packets, bytes and records; one distribution value per record
        // (mean packet size: per record with packets), its largest within 1 % above the
        // stored largest; held flows summed; top talkers within their line's bytes.
        let live = get("/api/v1/live".into()).await;
        let want = q("SELECT line, direction, sum(packets), sum(bytes), count() FROM tidegate.flows GROUP BY line, direction ORDER BY line, direction".into()).await;
        let mut got = Vec::new();
        let mut dists = Vec::new();
        let mut held = 0;
        for l in items(&live["lines"]) {
            let line = text(&l["line"]);
            for d in ["ingress", "egress"] {
                let t = &l[d]["totals"];
                if u(&t["records"]) > 0 {
                    got.push(format!(
                        "{line}\t{d}\t{}\t{}\t{}",
                        u(&t["packets"]),
                        u(&t["bytes"]),
                        u(&t["records"])
                    ));
                }
            }
            let (fb, dur, ps) = (&l["flow_bytes"], &l["flow_duration_ns"], &l["packet_size"]);
            dists.push(format!(
                "{line}\t{}\t{}\t{}",
                u(&fb["count"]),
                u(&dur["count"]),
                u(&ps["count"])
            ));
            for d in [fb, dur, ps] {
                let v = |k: &str| u(&d[k]);
                assert!(
                    v("min") <= v("p50") && v("p50") <= v("p90") && v("p90") <= v("p99"),
                    "{line}: {d}"
                );
                assert!(v("p99") <= v("max"), "{line}: {d}");
            }
            let max: u64 = q(format!(
                "SELECT max(bytes) FROM tidegate.flows WHERE line = '{line}'"
            ))
            .await
            .parse()
            .unwrap();
            assert!(
                u(&fb["max"]) >= max && u(&fb["max"]) <= max + max / 100 + 1,
                "{line}: largest record {max} bytes, live {fb}"
            );
            let line_bytes =
                u(&l["ingress"]["totals"]["bytes"]) + u(&l["egress"]["totals"]["bytes"]);
            for t in items(&l["top"]["sources"]) {
                assert!(u(&t["bytes"]) <= line_bytes, "{line}: {t}");
            }
            held += u(&l["active_flows"]);
        }
        assert_eq!(got.join("\n"), want, "live totals");
        let want = q("SELECT line, count(), count(), countIf(packets > 0) FROM tidegate.flows GROUP BY line ORDER BY line".into()).await;
        assert_eq!(dists.join("\n"), want, "live distributions");
        assert_eq!(u(&live["active_flows"]), held);
        assert!(u(&live["watermark_ns"]) > 0);
        let one = get(format!("/api/v1/live?line={}", enc(lines[0]))).await;
        assert_eq!(items(&one["lines"]).len(), 1);
        assert_eq!(one["lines"][0]["line"], lines[0]);
        let e = api(&c.url, "/api/v1/live?shard=1").await;
        assert_eq!(e.status, 400, "unknown parameter");
        // A sub-minute step over more than three hours would scan too much: refused.
        let long = format!("from={}&to={}", b0, b0 + 4 * 3_600_000);
        let e = api(&c.url, &format!("/api/v1/overview?{long}&step=10")).await;
        let said = String::from_utf8_lossy(&e.body).to_string();
        assert_eq!(e.status, 400, "{said}");
        assert!(said.contains("step"), "{said}");
        let auto = get(format!("/api/v1/overview?{long}")).await;
        assert_eq!(u(&auto["step"]), 60, "four hours stay on minute buckets");

        // Country pairs, from enrichment.
        let geo = get(format!("/api/v1/geo?{range}")).await;
        let want = q("SELECT src_country, dst_country, sum(bytes), count() FROM tidegate.flows GROUP BY src_country, dst_country ORDER BY src_country, dst_country".into()).await;
        let mut got = rows(
            &geo["pairs"],
            &["src_country", "dst_country"],
            &["bytes", "flows"],
        );
        got.sort();
        let mut want: Vec<&str> = want.lines().collect();
        want.sort();
        assert_eq!(got, want);
        assert!(
            got.iter().any(|p| !p.starts_with('\t')),
            "no enriched country: {got:?}"
        );
        let want = q("SELECT c, count() FROM (SELECT arrayJoin(arrayDistinct(arrayFilter(x -> x != '', [src_country, dst_country]))) AS c FROM tidegate.alerts FINAL) GROUP BY c ORDER BY c".into()).await;
        let mut got = rows(&geo["alerts"], &["country"], &["alerts"]);
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
        assert_eq!(items(&all["items"]).len() as u64, n_alerts);
        let want_ids =
            q("SELECT id FROM tidegate.alerts FINAL ORDER BY first DESC, id".into()).await;
        let ids: Vec<&str> = items(&all["items"])
            .iter()
            .map(|a| text(&a["id"]))
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
            assert!(items(&r["items"]).iter().all(|a| a["kind"] == kind));
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
        let tl: u64 = items(&timeline["buckets"]).iter().map(|b| u(&b["n"])).sum();
        assert_eq!(tl, n_alerts);
        for a in items(&all["items"]) {
            let id = text(&a["id"]);
            let d = get(format!("/api/v1/alerts/{}", enc(id))).await;
            let want = q(format!(
                "SELECT kind, src, dst, JSONLength(evidence), toString(severity) FROM tidegate.alerts FINAL WHERE id = '{id}'"
            ))
            .await;
            let ev = d["evidence"]
                .as_array()
                .expect("evidence parsed into an array");
            let got = row(&d, &["kind", "src", "dst"], &[]);
            assert_eq!(
                format!("{got}\t{}\t{}", ev.len(), text(&d["severity"])),
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
        let got: Vec<String> = items(&rules["rules"])
            .iter()
            .map(|r| {
                let counts = row(r, &["rule_id"], &["violations", "flows", "bytes"]);
                format!("{counts}\t{}", text(&r["rule_text"]))
            })
            .collect();
        // rule_text is multi-line: compare as a whole.
        assert_eq!(got.join("\n"), want.replace("\\n", "\n"));
        assert!(text(&rules["rules"][0]["rule_text"]).contains("isolate"));
        let n_viol: u64 = q("SELECT count() FROM tidegate.policy_violations FINAL".into())
            .await
            .parse()
            .unwrap();
        let list = get(format!(
            "/api/v1/violations?{range}&rule=special-isolation&limit=5"
        ))
        .await;
        assert_eq!(u(&list["total"]), n_viol);
        assert_eq!(items(&list["items"]).len() as u64, n_viol.min(5));
        let id = text(&list["items"][0]["id"]);
        let d = get(format!("/api/v1/violations/{}", enc(id))).await;
        let want = q(format!("SELECT JSONLength(evidence), flows FROM tidegate.policy_violations FINAL WHERE id = '{id}'")).await;
        assert_eq!(
            format!(
                "{}\t{}",
                items(&d["evidence"]).len(),
                row(&d, &[], &["flows"])
            ),
            want
        );
        assert!(text(&d["rule_text"]).contains("special-zone"));
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
            assert_eq!(row(&r, &[], &["total", "bytes"]), want, "{params}");
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
        assert_eq!(rows(&page2["items"], &[], &["bytes"]).join("\n"), want);

        // Top talkers.
        for (by, col) in [("src", "src_text"), ("dst", "dst_text")] {
            let r = get(format!("/api/v1/top-talkers?{range}&by={by}&limit=5")).await;
            let want = q(format!(
                "SELECT sum(bytes) AS b FROM tidegate.flows GROUP BY {col} ORDER BY b DESC LIMIT 5"
            ))
            .await;
            assert_eq!(
                rows(&r["items"], &[], &["bytes"]).join("\n"),
                want,
                "by {by}"
            );
            let top = text(&r["items"][0][by]);
            let other = if by == "src" { "dst" } else { "src" };
            let want = q(format!(
                "SELECT sum(bytes), uniq({other}) FROM tidegate.flows WHERE {col} = '{top}'"
            ))
            .await;
            assert_eq!(row(&r["items"][0], &[], &["bytes", "peers"]), want);
        }
        let r = get(format!(
            "/api/v1/top-talkers?{range}&by=pair&metric=packets&limit=3"
        ))
        .await;
        let want = q("SELECT sum(packets) AS p FROM tidegate.flows GROUP BY src_text, dst_text ORDER BY p DESC LIMIT 3".into()).await;
        assert_eq!(rows(&r["items"], &[], &["packets"]).join("\n"), want);
        let (s0, d0) = (text(&r["items"][0]["src"]), text(&r["items"][0]["dst"]));
        let want = q(format!(
            "SELECT uniq(dport) FROM tidegate.flows WHERE src_text = '{s0}' AND dst_text = '{d0}'"
        ))
        .await;
        assert_eq!(r["items"][0]["ports"].to_string(), want);

        // Probe health: the replaying probe with its latest report.
        let p = get("/api/v1/probes".into()).await;
        let probe = items(&p["probes"])
            .iter()
            .find(|p| p["probe_id"] == "edge-1")
            .expect("edge-1 listed");
        let want = q("SELECT argMax(spool_bytes, ts), argMax(spool_batches, ts), argMax(counters['export_records'], ts) FROM tidegate.probe_health WHERE probe_id = 'edge-1'".into()).await;
        let spool = row(probe, &[], &["spool_bytes", "spool_batches"]);
        let records = row(&probe["counters"], &[], &["export_records"]);
        assert_eq!(format!("{spool}\t{records}"), want);
        assert_eq!(probe["reporting"], true);
        assert!(u(&probe["counters"]["export_records"]) > 0);
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let h = get(format!(
            "/api/v1/probes/history?from={}&to={}&probe=edge-1",
            now - 3_600_000,
            now + 60_000
        ))
        .await;
        let buckets = items(&h["buckets"]);
        assert!(!buckets.is_empty());
        let max_spool = buckets.iter().map(|b| u(&b["spool_bytes"])).max().unwrap();
        let want = q(
            "SELECT max(spool_bytes) FROM tidegate.probe_health WHERE probe_id = 'edge-1'".into(),
        )
        .await;
        assert_eq!(max_spool.to_string(), want);

        // Exports: the flow search of one line as CSV holds exactly that line's flows
        // (every row, each with its addresses, ports and counters), as a download.
        let line =
            q("SELECT line FROM tidegate.flows GROUP BY line ORDER BY count() LIMIT 1".into())
                .await;
        let r = api(
            &c.url,
            &format!(
                "/api/v1/flows?from=946684800000&line={}&format=csv",
                enc(&line)
            ),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename=\"tidegate-flows.csv\"")
        );
        let csv = String::from_utf8(r.body.clone()).unwrap();
        let mut lines = csv.lines();
        let header = csv_fields(lines.next().unwrap());
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let picked = ["src", "dst", "sport", "dport", "packets", "bytes"].map(col);
        let mut got: Vec<String> = lines
            .map(|l| {
                let f = csv_fields(l);
                picked
                    .iter()
                    .map(|i| f[*i].clone())
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect();
        got.sort();
        let want = q(format!(
            "SELECT src_text, dst_text, sport, dport, packets, bytes FROM tidegate.flows \
             WHERE line = '{line}'"
        ))
        .await;
        let mut want: Vec<String> = want.lines().map(str::to_string).collect();
        want.sort();
        assert!(!want.is_empty());
        assert_eq!(got, want, "the CSV export of line {line}");

        // Alerts as JSON: every alert of the range, as stored.
        let r = api(&c.url, "/api/v1/alerts?from=946684800000&format=json").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let exported = r.json();
        let mut ids: Vec<&str> = items(&exported).iter().map(|a| text(&a["id"])).collect();
        ids.sort();
        let want = q("SELECT id FROM tidegate.alerts FINAL ORDER BY id".into()).await;
        assert_eq!(ids.join("\n"), want);
        // A bad format is named.
        let r = api(&c.url, "/api/v1/violations?format=xlsx").await;
        assert_eq!(r.status, 400);
        assert!(text(&r.json()["error"]).contains("format"));
    });
}

/// The fields of one CSV line as ClickHouse writes it (`"` quotes, `""` inside).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}
