//! SQL injection, tried in every filter field of every endpoint (a table of fields ×
//! hostile inputs): each answer is a 400 naming the field, a 404 for a path id, or a 200
//! whose result is empty (the input was bound as a value, never read as SQL) — never a
//! server error, never wider results; the tables are intact afterwards.

use serde_json::Value;

use crate::support::ui::{CAPTURES, Console, api, block_on, enc};

/// Hostile inputs: quoting breaks, comments, stacked statements, UNION, functions,
/// encodings, oversize.
fn payloads() -> Vec<String> {
    vec![
        "' OR 1=1 --".into(),
        "x') OR ('1'='1".into(),
        "1 OR 1=1".into(),
        "1; DROP TABLE tidegate.flows".into(),
        "' UNION SELECT name FROM system.users --".into(),
        "\\' OR sleep(3) --".into(),
        "x\" OR \"1\"=\"1".into(),
        "{x:String}".into(),
        "?".into(),
        "中文' --".into(),
        "%27%20OR%201%3D1".into(),
        "a".repeat(5000),
    ]
}

/// (endpoint, field): every query filter the API takes.
const FIELDS: &[(&str, &str)] = &[
    ("/api/v1/flows", "ip"),
    ("/api/v1/flows", "port"),
    ("/api/v1/flows", "proto"),
    ("/api/v1/flows", "country"),
    ("/api/v1/flows", "asn"),
    ("/api/v1/flows", "zone"),
    ("/api/v1/flows", "line"),
    ("/api/v1/flows", "probe"),
    ("/api/v1/flows", "name"),
    ("/api/v1/flows", "direction"),
    ("/api/v1/flows", "source"),
    ("/api/v1/flows", "sort"),
    ("/api/v1/flows", "from"),
    ("/api/v1/flows", "limit"),
    ("/api/v1/flows", "q"),
    ("/api/v1/top-talkers", "q"),
    ("/api/v1/top-talkers", "by"),
    ("/api/v1/top-talkers", "metric"),
    ("/api/v1/top-talkers", "zone"),
    ("/api/v1/alerts", "kind"),
    ("/api/v1/alerts", "severity"),
    ("/api/v1/alerts", "line"),
    ("/api/v1/alerts", "ip"),
    ("/api/v1/alerts", "country"),
    ("/api/v1/alerts", "state"),
    ("/api/v1/violations", "rule"),
    ("/api/v1/violations", "severity"),
    ("/api/v1/violations", "line"),
    ("/api/v1/violations", "ip"),
    ("/api/v1/overview", "line"),
    ("/api/v1/overview", "step"),
    ("/api/v1/geo", "line"),
    ("/api/v1/incidents", "line"),
    ("/api/v1/incidents", "gap"),
    ("/api/v1/audit", "user"),
    ("/api/v1/audit", "action"),
    ("/api/v1/probes/history", "probe"),
];

/// Filter expressions (`q`) with each hostile input as a value, quoted (escaped as the
/// grammar says) and bare, in every kind of field.
const Q_TEMPLATES: &[&str] = &[
    "line = \"{}\"",
    "line ~ \"{}\"",
    "zone in (\"{}\", x)",
    "name = \"{}\"",
    "dns_qname ~ \"{}\"",
    "probe != \"{}\" and line = \"{}\"",
    "port = {}",
    "ip = {}",
    "country = {}",
    "direction = {}",
    "duration > {}",
    "not (line = {})",
];

/// Path ids: (path before the id, after it).
const PATHS: &[(&str, &str)] = &[
    ("/api/v1/alerts/", ""),
    ("/api/v1/alerts/", "/triage"),
    ("/api/v1/violations/", ""),
    ("/api/v1/hosts/", ""),
];

/// The number of rows an answer holds (0 when it holds none).
fn rows(v: &Value) -> u64 {
    if let Some(t) = v.get("total").and_then(Value::as_u64) {
        return t;
    }
    if let Some(t) = v.pointer("/totals/flows").and_then(Value::as_u64) {
        return t;
    }
    for k in ["items", "series", "pairs", "buckets", "probes"] {
        if let Some(a) = v.get(k).and_then(Value::as_array) {
            return a.len() as u64;
        }
    }
    0
}

#[test]
fn every_filter_field_refuses_or_binds_injection_attempts() {
    let mut c = Console::start(true);
    c.seed(&CAPTURES);
    block_on(async {
        let before = c
            .stack
            .ch
            .query("SELECT (SELECT count() FROM tidegate.flows), (SELECT count() FROM system.tables WHERE database = 'tidegate')")
            .await;
        let range = "from=1000000000000&to=2500000000000";
        let mut tried = 0;
        for (path, field) in FIELDS {
            for p in payloads() {
                let r = api(&c.url, &format!("{path}?{range}&{field}={}", enc(&p))).await;
                let body = String::from_utf8_lossy(&r.body).to_string();
                let short: String = p.chars().take(40).collect();
                match r.status {
                    400 => assert!(
                        body.contains(field) || (*field == "from" && body.contains("from")),
                        "{path} {field}={short:?}: 400 without naming the field: {body}"
                    ),
                    200 => {
                        let v: Value = serde_json::from_str(&body).unwrap();
                        assert_eq!(
                            rows(&v),
                            0,
                            "{path} {field}={short:?}: rows for a hostile value: {body:.300}"
                        );
                    }
                    s => panic!("{path} {field}={short:?}: status {s}: {body:.300}"),
                }
                tried += 1;
            }
        }
        let all = rows(
            &api(&c.url, &format!("/api/v1/flows?{range}&limit=1"))
                .await
                .json(),
        );
        assert!(all > 0);
        for t in Q_TEMPLATES {
            for p in payloads() {
                let quoted = p.replace('\\', "\\\\").replace('"', "\\\"");
                let q = if t.contains("\"{}\"") {
                    t.replace("{}", &quoted)
                } else {
                    t.replace("{}", &p)
                };
                let r = api(&c.url, &format!("/api/v1/flows?{range}&q={}", enc(&q))).await;
                let body = String::from_utf8_lossy(&r.body).to_string();
                let short: String = q.chars().take(60).collect();
                match r.status {
                    400 => assert!(
                        body.contains("\"parameter\":\"q\""),
                        "q={short:?}: 400 without naming q: {body}"
                    ),
                    200 => {
                        let v: Value = serde_json::from_str(&body).unwrap();
                        // No line is named like a payload: a match finds nothing, its
                        // negation finds every flow.
                        let want = if t.starts_with("not") { all } else { 0 };
                        assert_eq!(rows(&v), want, "q={short:?}: {body:.300}");
                    }
                    s => panic!("q={short:?}: status {s}: {body:.300}"),
                }
                tried += 1;
            }
        }
        for (pre, post) in PATHS {
            for p in payloads() {
                let r = api(&c.url, &format!("{pre}{}{post}", enc(&p))).await;
                let short: String = p.chars().take(40).collect();
                assert!(
                    r.status == 400 || r.status == 404,
                    "{pre}…{post} with {short:?}: status {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
                tried += 1;
            }
        }
        let after = c
            .stack
            .ch
            .query("SELECT (SELECT count() FROM tidegate.flows), (SELECT count() FROM system.tables WHERE database = 'tidegate')")
            .await;
        assert_eq!(before, after, "tables changed");
        eprintln!("{tried} hostile requests: each refused by name or bound as a value");
    });
}

#[tokio::test]
async fn the_apis_queries_cannot_write_and_carry_resource_limits() {
    use tidegate_collector::api::sql::{MAX_QUERY_MEMORY, MAX_RESULT_BYTES, Sql};
    let ch = tidegate_testkit::TestClickHouse::start();
    ch.query("CREATE TABLE default.t (x UInt8) ENGINE = MergeTree ORDER BY x")
        .await;
    let client = clickhouse::Client::default().with_url(ch.url());
    // Whatever text reached it, an API query could not change anything.
    assert!(
        Sql::new("INSERT INTO default.t VALUES (1)")
            .raw(&client, "JSONEachRow")
            .await
            .is_err()
    );
    assert!(
        Sql::new("DROP TABLE default.t")
            .raw(&client, "JSONEachRow")
            .await
            .is_err()
    );
    assert_eq!(ch.query("SELECT count() FROM default.t").await.trim(), "0");
    let row = Sql::new(
        "SELECT toUInt64(getSetting('max_memory_usage')) AS m, \
         toUInt64(getSetting('max_result_bytes')) AS r",
    )
    .row(&client)
    .await
    .unwrap()
    .unwrap();
    assert_eq!(row["m"], MAX_QUERY_MEMORY);
    assert_eq!(row["r"], MAX_RESULT_BYTES);
}
