//! What an operator gets from the provisioned Grafana dashboards
//! (`dashboards/grafana/provisioning`): every panel's SQL, with the ClickHouse plugin's
//! macros and the dashboard variables expanded as Grafana would for a fixed time range,
//! runs on a real ClickHouse holding traffic from the real pipeline (probe replay →
//! collector with enrichment, policy, detectors), returns rows, and returns the columns
//! the panel is built on: `time` (a DateTime) plus numbers for time series, numbers for
//! stats, every column a field override names for tables and bar charts. Variables are
//! tried both as "All" and as one value; a macro this test does not know fails it.

use std::path::PathBuf;

use crate::support::ui::{CAPTURES, Console, block_on};
use serde_json::Value;

fn provisioning() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards/grafana/provisioning")
}

/// The fixed range the panels are expanded for (covers the corpus captures and now).
struct Range {
    from_s: i64,
    to_s: i64,
    interval_s: i64,
}

/// Splits the arguments of a macro call starting after its `(`; returns them and the
/// index after the closing `)`.
fn args(s: &str, open: usize) -> (Vec<String>, usize) {
    let (mut depth, mut cur, mut out) = (0, String::new(), Vec::new());
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' if depth == 0 => {
                out.push(cur.trim().to_string());
                return (out, open + i + 1);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    panic!("unclosed macro call in {s}");
}

/// Grafana's variable interpolation: `${var:singlequote}` and `$var`, for the chosen
/// values (`None`: "All").
fn interpolate(sql: &str, vars: &[(String, Option<String>)]) -> String {
    let mut s = sql.to_string();
    for (name, value) in vars {
        let quoted = match value {
            Some(v) => format!("'{}'", v.replace('\'', "\\'")),
            None => "'$__all'".to_string(),
        };
        s = s.replace(&format!("${{{name}:singlequote}}"), &quoted);
        s = s.replace(
            &format!("${{{name}}}"),
            value.as_deref().unwrap_or("$__all"),
        );
        s = s.replace(&format!("${name}"), value.as_deref().unwrap_or("$__all"));
    }
    s
}

/// The plugin's macros (pkg/macros of grafana-clickhouse-datasource, and sqlds'
/// $__conditionalAll, which is "1=1" when the variable is All).
fn expand(sql: &str, r: &Range) -> String {
    let mut s = sql.to_string();
    while let Some(at) = s.find("$__") {
        let name_end = s[at + 3..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|i| at + 3 + i)
            .unwrap_or(s.len());
        let name = s[at + 3..name_end].to_string();
        let has_args = s[name_end..].starts_with('(');
        let (a, end) = if has_args {
            args(&s, name_end + 1)
        } else {
            (Vec::new(), name_end)
        };
        let (from, to) = (r.from_s, r.to_s);
        let rep = match (name.as_str(), a.as_slice()) {
            ("timeFilter", [c]) => {
                format!("{c} >= toDateTime({from}) AND {c} <= toDateTime({to})")
            }
            ("timeFilter_ms", [c]) => format!(
                "{c} >= fromUnixTimestamp64Milli({}) AND {c} <= fromUnixTimestamp64Milli({})",
                from * 1000,
                to * 1000
            ),
            ("dateFilter", [c]) => {
                format!("{c} >= toDate(toDateTime({from})) AND {c} <= toDate(toDateTime({to}))")
            }
            ("fromTime", []) => format!("toDateTime({from})"),
            ("toTime", []) => format!("toDateTime({to})"),
            ("fromTime_ms", []) => format!("fromUnixTimestamp64Milli({})", from * 1000),
            ("toTime_ms", []) => format!("fromUnixTimestamp64Milli({})", to * 1000),
            ("timeInterval", [c]) => format!(
                "toStartOfInterval(toDateTime({c}), INTERVAL {} second)",
                r.interval_s
            ),
            ("timeInterval_ms", [c]) => format!(
                "toStartOfInterval(toDateTime64({c}, 3), INTERVAL {} millisecond)",
                r.interval_s * 1000
            ),
            ("interval_s", []) => r.interval_s.to_string(),
            ("conditionalAll", [cond, var]) => {
                if var.contains("$__all") {
                    "1=1".to_string()
                } else {
                    cond.clone()
                }
            }
            ("all", []) => {
                // Left over from interpolation inside a condition that $__conditionalAll
                // already replaced: never reached for well-formed panels.
                panic!("a variable set to All is used outside $__conditionalAll: {sql}")
            }
            _ => panic!("macro $__{name} with {a:?} is not supported by this test: {sql}"),
        };
        s.replace_range(at..end, &rep);
    }
    s
}

/// Runs `sql` and returns (column name, type) pairs and the row count. (Panel queries name
/// their tables with the database, so they run as well without Grafana's default database.)
async fn run(c: &Console, sql: &str) -> (Vec<(String, String)>, usize) {
    let json = c
        .stack
        .ch
        .query(&format!("{sql}\nFORMAT JSONCompact"))
        .await;
    let v: Value = serde_json::from_str(&json).unwrap();
    let cols = v["meta"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (cols, v["rows"].as_u64().unwrap() as usize)
}

fn numeric(t: &str) -> bool {
    let t = t
        .trim_start_matches("Nullable(")
        .trim_start_matches("LowCardinality(");
    ["UInt", "Int", "Float", "Decimal"]
        .iter()
        .any(|p| t.starts_with(p))
}

/// Checks the columns of one panel's result against what the panel is built on.
fn check_columns(title: &str, panel: &Value, cols: &[(String, String)], sql: &str) {
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let kind = panel["type"].as_str().unwrap();
    let ctx = || format!("panel {title:?} ({kind}) columns {cols:?}\n{sql}");
    match kind {
        "timeseries" => {
            assert_eq!(names.first(), Some(&"time"), "{}", ctx());
            assert!(cols[0].1.starts_with("DateTime"), "{}", ctx());
            assert!(cols[1..].iter().any(|(_, t)| numeric(t)), "{}", ctx());
            assert_eq!(
                panel["targets"][0]["format"],
                0,
                "time series format: {}",
                ctx()
            );
        }
        "stat" => {
            assert!(
                !cols.is_empty() && cols.iter().all(|(_, t)| numeric(t)),
                "{}",
                ctx()
            );
        }
        "barchart" => {
            let x = panel["options"]["xField"].as_str().unwrap();
            assert!(names.contains(&x), "xField {x}: {}", ctx());
            assert!(cols.iter().any(|(_, t)| numeric(t)), "{}", ctx());
        }
        "table" => {}
        other => panic!("panel type {other} not covered: {}", ctx()),
    }
    for o in panel["fieldConfig"]["overrides"].as_array().unwrap() {
        if o["matcher"]["id"] == "byName" {
            let n = o["matcher"]["options"].as_str().unwrap();
            assert!(names.contains(&n), "override names column {n}: {}", ctx());
        }
    }
}

#[test]
fn every_grafana_panel_query_runs_on_clickhouse_and_returns_the_columns_its_panel_uses() {
    let ds = std::fs::read_to_string(provisioning().join("datasources/tidegate-clickhouse.yaml"))
        .unwrap();
    assert!(ds.contains("type: grafana-clickhouse-datasource"));
    assert!(ds.contains("uid: tidegate-clickhouse"));
    let mut boards: Vec<(String, Value)> = std::fs::read_dir(provisioning().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().to_string(), v)
        })
        .collect();
    boards.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(boards.len(), 3, "traffic, threats, probes");

    let mut c = Console::start(true);
    c.seed(&CAPTURES);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let r = Range {
        from_s: 1_262_304_000, // 2010-01-01
        to_s: now + 86_400,
        interval_s: 604_800,
    };
    block_on(async {
        let mut panels = 0;
        for (file, board) in &boards {
            // Variables: their own queries run, and give the value tried besides All.
            let mut one_value = Vec::new();
            for v in board["templating"]["list"].as_array().unwrap() {
                let name = v["name"].as_str().unwrap().to_string();
                assert_eq!(
                    v["datasource"]["uid"], "tidegate-clickhouse",
                    "{file} ${name}"
                );
                let q = expand(v["query"].as_str().unwrap(), &r);
                let (cols, rows) = run(&c, &q).await;
                assert!(
                    cols.len() == 1 && rows > 0,
                    "{file} ${name}: {cols:?} {rows}"
                );
                let first = c
                    .stack
                    .ch
                    .query(&format!("SELECT * FROM ({q}) LIMIT 1"))
                    .await;
                one_value.push((name, Some(first)));
            }
            let all: Vec<(String, Option<String>)> =
                one_value.iter().map(|(n, _)| (n.clone(), None)).collect();
            for panel in board["panels"].as_array().unwrap() {
                let title = panel["title"].as_str().unwrap();
                for t in panel["targets"].as_array().unwrap() {
                    assert_eq!(t["datasource"]["uid"], "tidegate-clickhouse", "{title}");
                    assert_eq!(t["editorType"], "sql", "{title}");
                    let raw = t["rawSql"].as_str().unwrap();
                    for vars in [&all, &one_value] {
                        let sql = expand(&interpolate(raw, vars), &r);
                        let (cols, rows) = run(&c, &sql).await;
                        check_columns(title, panel, &cols, &sql);
                        if vars == &all {
                            assert!(rows > 0, "{file}: panel {title:?} shows nothing:\n{sql}");
                        }
                    }
                    panels += 1;
                }
            }
        }
        assert!(panels >= 15, "{panels} panel queries");
    });
}
