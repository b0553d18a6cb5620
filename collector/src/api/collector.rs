//! `GET /api/v1/collector`: the collector's own health for the console — the write-ahead
//! spool (batches and bytes waiting), whether ClickHouse takes inserts, how far event
//! time lags the clock in detection, the alert-state queue and the webhook outbox,
//! dead letters — read from the same metrics `/metrics` exposes, plus every metric as a
//! sample list.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Query, State},
};
use serde_json::{Value, json};

use super::{AppState, error::ApiResult, params::Params};

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
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    Params::new(q, &[])?;
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
            "records_committed": one("pipeline_records_committed_total"),
            "batches_committed": one("pipeline_batches_committed_total"),
            "insert_retries": one("pipeline_insert_retries_total"),
            "dead_letters": one("pipeline_dead_letters_total"),
        },
        "detection": {
            "records": one("analysis_records_total"),
            "event_time_secs": event_time.map(num),
            "event_time_lag_secs": event_time.map(|t| (now_ns as f64 / 1e9 - t).max(0.0)),
            "alert_store_pending": one("alert_store_pending"),
            "cold_records_pending": one("detect_cold_records_pending"),
            "sink_errors": num(sum("alert_sink_errors_total")),
        },
        "webhook": {
            "outbox": one("alert_webhook_queued"),
            "delivered": one("alert_webhook_delivered_total"),
            "dead_letters": one("alert_webhook_dead_letters_total"),
        },
        "metrics": samples.iter().map(|s| json!({"name": s.name, "labels": s.labels, "value": num(s.value)})).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

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
