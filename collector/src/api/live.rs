//! `GET /api/v1/live`: the aggregation shards' live view, straight from memory (no
//! ClickHouse query) — per line: totals since the collector started and per-second rates
//! by direction over the rate window, merged flows held, top talkers and conversations
//! over them, and the distributions of flow size, flow duration and mean packet size.
//!
//! Times are event times: `watermark_ns` is the newest record time submitted, the rates
//! cover `window_secs` seconds from `window_start_s`. A snapshot asks every shard and
//! passes over every held flow, so one is taken at most once per [`MIN_INTERVAL`] and
//! shared by every request in it (requests that arrive while one is being taken wait for
//! it): a browser polling in a loop cannot make the shards do more. A principal limited
//! to some lines sees only those (totals included).

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::{
    AppState,
    auth::Principal,
    error::{ApiError, ApiResult},
    params::Params,
};
use crate::aggregate::{AggregateSnapshot, Aggregator, LineSnapshot};

/// Shortest time between two snapshots.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The aggregator as the API sees it: never kept alive by the API, snapshots shared.
pub struct Live {
    aggregator: Weak<Aggregator>,
    last: tokio::sync::Mutex<Option<(Instant, Arc<AggregateSnapshot>)>>,
}

impl Live {
    /// The live view of `aggregator` (held weakly: the collector's shutdown stops it).
    pub fn new(aggregator: &Arc<Aggregator>) -> Live {
        Live {
            aggregator: Arc::downgrade(aggregator),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// A snapshot at most [`MIN_INTERVAL`] old; `None` once the aggregator has stopped.
    pub async fn snapshot(&self) -> Option<Arc<AggregateSnapshot>> {
        let mut last = self.last.lock().await;
        if let Some((at, s)) = last.as_ref()
            && at.elapsed() < MIN_INTERVAL
        {
            return Some(s.clone());
        }
        let agg = self.aggregator.upgrade()?;
        // The shards answer over channels: a blocking wait, off the async workers.
        let snap = tokio::task::spawn_blocking(move || agg.snapshot())
            .await
            .ok()?;
        let snap = Arc::new(snap);
        *last = Some((Instant::now(), snap.clone()));
        Some(snap)
    }
}

/// Count, extremes, mean and percentiles of one distribution (zeros when empty).
fn distribution(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "min": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0, "mean": 0.0});
    }
    json!({
        "count": h.len(),
        "min": h.min(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "max": h.max(),
        "mean": h.mean(),
    })
}

/// One line's part of the answer.
pub fn line_json(name: &str, l: &LineSnapshot) -> Value {
    json!({
        "line": name,
        "active_flows": l.active_flows,
        "ingress": l.ingress,
        "egress": l.egress,
        "top": l.top,
        "flow_bytes": distribution(&l.histograms.flow_bytes),
        "flow_duration_ns": distribution(&l.histograms.flow_duration_ns),
        "packet_size": distribution(&l.histograms.packet_size),
    })
}

/// The handler.
pub async fn live(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &["line"])?;
    let only = p.name("line")?;
    let unavailable = || ApiError::NotFound("live view (no aggregation running here)".into());
    let snap = st
        .live
        .as_ref()
        .ok_or_else(unavailable)?
        .snapshot()
        .await
        .ok_or_else(unavailable)?;
    let visible = |name: &str| {
        only.as_deref().is_none_or(|o| o == name)
            && who
                .lines
                .as_ref()
                .is_none_or(|ls| ls.iter().any(|l| l == name))
    };
    let lines: Vec<Value> = snap
        .lines
        .iter()
        .filter(|(name, _)| visible(name))
        .map(|(name, l)| line_json(name, l))
        .collect();
    let active_flows: u64 = snap
        .lines
        .iter()
        .filter(|(name, _)| visible(name))
        .map(|(_, l)| l.active_flows)
        .sum();
    Ok(Json(json!({
        "watermark_ns": snap.watermark_ns,
        "window_start_s": snap.window_start_s,
        "window_secs": snap.window_secs,
        "shards_answered": snap.shards_answered,
        "active_flows": active_flows,
        "lines": lines,
    })))
}
