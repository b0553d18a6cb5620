//! `GET /api/v1/collector`: the collector's own health for the console — the write-ahead
//! spool (batches and bytes waiting), whether ClickHouse takes inserts, how far event
//! time lags the clock in detection, the alert-state queue and the webhook outbox,
//! dead letters — read from the same metrics `/metrics` exposes, plus every metric as a
//! sample list. A principal restricted to some lines gets the samples of its lines'
//! probes and exporters only (see [`visible`]), and no collector-wide counts of records
//! or alerts; the health gauges (spool, ClickHouse, detection lag, outbox depth, error
//! counts) stay the collector's as a whole.

use std::collections::{HashMap, HashSet};

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use serde_json::{Value, json};

use super::{AppState, auth::Principal, error::ApiResult, params::Params};

/// Prefix of the collector's metric names.
const PREFIX: &str = "tidegate_collector_";

/// One sample of the OpenMetrics text: name without [`PREFIX`], labels as written.
#[derive(Debug, PartialEq)]
pub struct Sample {
    /// Metric name (a counter's `_total` kept).
    pub name: String,
    /// `{a="b",...}` or empty.
    pub labels: String,
    /// Value.
    pub value: f64,
}

/// Parses OpenMetrics text (comments and `# EOF` skipped; malformed lines ignored).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            Some(Sample {
                name: name.strip_prefix(PREFIX).unwrap_or(name).to_string(),
                labels: labels.to_string(),
                value,
            })
        })
        .collect()
}

/// The value of label `key` in `labels` (`{a="b",...}` as OpenMetrics writes it; escapes
/// are kept as written).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let inner = labels.strip_prefix('{')?.strip_suffix('}')?;
    let mut rest = inner;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        // The value runs to the first quote not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        if name == key {
            return Some(&after[..end]);
        }
        let tail = &after[end + 1..];
        rest = tail.strip_prefix(',').unwrap_or(tail);
    }
    None
}

/// Whether a principal who sees the probes `probes` (`None`: every probe) may see
/// `sample`. A restricted principal sees only samples labelled with one of its probes or
/// exporters: the others count every line's traffic and alerts (collector-wide totals,
/// alerts by kind), or name another line's probe, and a metric added later is hidden
/// until it carries such a label. Labels that do not parse hide the sample.
pub fn visible(sample: &Sample, probes: Option<&HashSet<String>>) -> bool {
    let Some(probes) = probes else {
        return true;
    };
    let ids: Vec<&str> = ["probe", "exporter"]
        .iter()
        .filter_map(|k| label(&sample.labels, k))
        .collect();
    !ids.is_empty() && ids.iter().all(|id| probes.contains(*id))
}

/// A metric value as JSON: an integer when it is one (counters, gauges), else a float.
fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// The handler.
pub async fn health(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    Params::new(q, &[])?;
    let probes = super::scope::visible_probes(&st, &who).await;
    // Collector-wide volume is every line's: not for a principal restricted to some.
    let volume = |v: Value| if probes.is_some() { Value::Null } else { v };
    let now_ns = tidegate_base::clock::wall_ns();
    let text = match &st.metrics {
        Some(r) => {
            let r = r.lock().unwrap_or_else(|p| p.into_inner());
            tidegate_base::metrics::render(&r)
        }
        None => String::new(),
    };
    let samples = parse(&text);
    let value = |name: &str| -> Option<f64> {
        samples
            .iter()
            .find(|s| s.name == name && s.labels.is_empty())
            .map(|s| s.value)
    };
    let one = |name: &str| -> Value { value(name).map(num).unwrap_or(Value::Null) };
    let sum = |name: &str| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    };
    let event_time = value("detect_event_time_seconds").filter(|v| *v > 0.0);
    let insert_mean = match (
        value("clickhouse_insert_seconds_sum"),
        value("clickhouse_insert_seconds_count"),
    ) {
        (Some(s), Some(n)) if n > 0.0 => Some(s / n),
        _ => None,
    };
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": now_ns.saturating_sub(st.started_ns) / 1_000_000_000,
        "spool": {
            "pending_batches": one("spool_pending_batches"),
            "bytes": one("spool_bytes"),
        },
        "clickhouse": {
            "down": value("clickhouse_down").map(|v| v > 0.0),
            "schema_version": one("clickhouse_migration_version"),
            "insert_seconds_mean": insert_mean,
            "records_committed": volume(one("pipeline_records_committed_total")),
            "batches_committed": volume(one("pipeline_batches_committed_total")),
            "insert_retries": one("pipeline_insert_retries_total"),
            "dead_letters": one("pipeline_dead_letters_total"),
        },
        "detection": {
            "records": volume(one("analysis_records_total")),
            "event_time_secs": event_time.map(num),
            "event_time_lag_secs": event_time.map(|t| (now_ns as f64 / 1e9 - t).max(0.0)),
            "alert_store_pending": one("alert_store_pending"),
            "cold_records_pending": one("detect_cold_records_pending"),
            "sink_errors": num(sum("alert_sink_errors_total")),
        },
        "webhook": {
            "outbox": one("alert_webhook_queued"),
            "delivered": volume(one("alert_webhook_delivered_total")),
            "dead_letters": volume(one("alert_webhook_dead_letters_total")),
        },
        "metrics": samples.iter().filter(|s| visible(s, probes.as_deref())).map(|s| json!({"name": s.name, "labels": s.labels, "value": num(s.value)})).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &str) -> Sample {
        Sample {
            name: "x".into(),
            labels: labels.into(),
            value: 1.0,
        }
    }

    #[test]
    fn labels_are_read_by_name_past_escaped_quotes() {
        let l = r#"{exporter="a\"b,probe=\"x",probe="edge-1",reason="bad"}"#;
        assert_eq!(label(l, "exporter"), Some(r#"a\"b,probe=\"x"#));
        assert_eq!(label(l, "probe"), Some("edge-1"));
        assert_eq!(label(l, "reason"), Some("bad"));
        assert_eq!(label(l, "target"), None);
        assert_eq!(label("", "probe"), None);
        assert_eq!(label(r#"{probe="unterminated}"#, "probe"), None);
    }

    #[test]
    fn restricted_principals_see_their_probes_samples_only() {
        let mine: HashSet<String> = ["edge-1".to_string(), "exporter:r1".to_string()].into();
        let some = Some(&mine);
        // Collector-wide samples count every line: hidden.
        assert!(!visible(&sample(""), some));
        assert!(!visible(&sample(r#"{table="flows"}"#), some));
        assert!(!visible(&sample(r#"{kind="syn_flood"}"#), some));
        // Labels that do not parse hide the sample.
        assert!(!visible(&sample(r#"{probe="edge-1"#), some));
        assert!(visible(&sample(r#"{probe="edge-1"}"#), some));
        assert!(visible(
            &sample(r#"{exporter="exporter:r1",reason="x"}"#),
            some
        ));
        assert!(!visible(&sample(r#"{probe="edge-2"}"#), some));
        assert!(!visible(&sample(r#"{exporter="unlisted"}"#), some));
        assert!(!visible(&sample(r#"{target="10.0.0.1:4739"}"#), some));
        // A value that merely contains a visible id is not that id.
        assert!(!visible(&sample(r#"{probe="edge-1x"}"#), some));
        assert!(visible(&sample(r#"{probe="edge-2"}"#), None));
        assert!(visible(&sample(r#"{target="10.0.0.1:4739"}"#), None));
    }

    #[test]
    fn openmetrics_text_becomes_samples() {
        let t = "# HELP tidegate_collector_spool_bytes Bytes\n# TYPE tidegate_collector_spool_bytes gauge\n\
                 tidegate_collector_spool_bytes 4096\n\
                 tidegate_collector_clickhouse_inserts_total{table=\"flows\",outcome=\"ok\"} 3\nbogus\n# EOF\n";
        assert_eq!(
            parse(t),
            [
                Sample {
                    name: "spool_bytes".into(),
                    labels: String::new(),
                    value: 4096.0
                },
                Sample {
                    name: "clickhouse_inserts_total".into(),
                    labels: "{table=\"flows\",outcome=\"ok\"}".into(),
                    value: 3.0
                }
            ]
        );
    }
}
