//! `GET /api/v1/probes`: every probe that ever reported, its latest health report (lines,
//! spool, counters), and counter rates over the window (`window` seconds, default 300)
//! from the first and last report in it. `GET /api/v1/probes/history`: spool, exported
//! records, packets and drops per probe over time.

use std::collections::HashMap;

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use serde_json::{Map, Value, json};

use super::{
    AppState,
    auth::Principal,
    error::ApiResult,
    overview::auto_step,
    params::Params,
    sql::{Arg, Sql, Where},
};

/// Per-second rates of the counters that grew between two reports `secs` apart.
pub fn rates(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    secs: f64,
) -> Map<String, Value> {
    let mut out = Map::new();
    if secs <= 0.0 {
        return out;
    }
    for (k, v) in after {
        let (Some(a), Some(b)) = (v.as_u64(), before.get(k).and_then(Value::as_u64)) else {
            continue;
        };
        // Counters restart from zero when a probe restarts: no rate across a restart.
        if a >= b {
            out.insert(k.clone(), json!((a - b) as f64 / secs));
        }
    }
    out
}

/// The handler.
pub async fn probes(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &["window"])?;
    let window = p.uint("window", 300, 10, 86_400)?;
    let mut sql = Sql::default();
    sql.bind(
        "SELECT probe_id, toUnixTimestamp64Milli(max(ts)) AS last_report_ms, max(ts) AS last_report, argMax(lines, ts) AS lines, argMax(spool_bytes, ts) AS spool_bytes, argMax(spool_batches, ts) AS spool_batches, argMax(counters, ts) AS counters_now, \
         countIf(ts >= now64(9) - toIntervalSecond(?)) AS reports_in_window, \
         argMinIf(counters, ts, ts >= now64(9) - toIntervalSecond(?)) AS counters_window_start, \
         toUnixTimestamp64Milli(minIf(ts, ts >= now64(9) - toIntervalSecond(?))) AS window_start_ms \
         FROM probe_health GROUP BY probe_id ORDER BY probe_id LIMIT 1000",
        [Arg::U64(window), Arg::U64(window), Arg::U64(window)],
    );
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut items = Vec::new();
    for mut row in sql.rows(&st.db(&who)).await? {
        let last = row
            .get("last_report_ms")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let start = row
            .get("window_start_ms")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let n = row
            .get("reports_in_window")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let empty = Map::new();
        let after = row
            .get("counters_now")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let before = row
            .get("counters_window_start")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let r = if n >= 2 {
            rates(before, after, (last - start) as f64 / 1000.0)
        } else {
            Map::new()
        };
        let counters = row
            .remove("counters_now")
            .unwrap_or(Value::Object(Map::new()));
        row.insert("counters".into(), counters);
        row.remove("counters_window_start");
        row.remove("window_start_ms");
        row.insert("rates".into(), Value::Object(r));
        row.insert(
            "age_seconds".into(),
            json!((now_ms - last).max(0) as f64 / 1000.0),
        );
        row.insert("reporting".into(), json!(n > 0));
        items.push(Value::Object(row));
    }
    Ok(Json(json!({ "window": window, "probes": items })))
}

/// `GET /api/v1/probes/history`.
pub async fn history(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &["from", "to", "probe"])?;
    let r = p.time_range()?;
    let step = auto_step(r);
    let mut w = Where::default();
    w.range("ts", r)
        .eq_opt("probe_id", p.name("probe")?.as_ref());
    let mut sql = Sql::default();
    sql.bind(
        "SELECT probe_id, toUnixTimestamp(toStartOfInterval(ts, toIntervalSecond(?))) AS t, max(spool_bytes) AS spool_bytes, \
         max(counters['export_records']) - min(counters['export_records']) AS records, \
         max(counters['packets']) - min(counters['packets']) AS packets, \
         max(counters['capture_dropped'] + counters['fallback_dropped']) - min(counters['capture_dropped'] + counters['fallback_dropped']) AS dropped \
         FROM probe_health",
        [Arg::U64(step)],
    )
    .filter(&w)
    .push(" GROUP BY probe_id, t ORDER BY probe_id, t LIMIT 100000");
    Ok(Json(
        json!({ "step": step, "buckets": sql.rows(&st.db(&who)).await? }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_skip_counters_that_restarted() {
        let b = json!({"packets": 100, "drops": 50})
            .as_object()
            .unwrap()
            .clone();
        let a = json!({"packets": 300, "drops": 10, "new": 5})
            .as_object()
            .unwrap()
            .clone();
        let r = rates(&b, &a, 10.0);
        assert_eq!(r.get("packets"), Some(&json!(20.0)));
        assert!(r.get("drops").is_none() && r.get("new").is_none());
    }
}
