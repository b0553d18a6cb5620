//! `GET /api/v1/live`: the aggregation shards' live view, straight from memory (no
//! ClickHouse query) — per line: totals since the collector started and per-second rates
//! by direction over the rate window, merged flows held, top talkers and conversations
//! over them, and the distributions of flow size, flow duration and mean packet size.
//!
//! Times are event times: `watermark_ns` is the newest record time submitted, the rates
//! cover `window_secs` seconds from `window_start_s`. A snapshot asks every shard and
//! passes over every held flow (the shards stop aggregating meanwhile), so one is reused
//! for [`MIN_INTERVAL`] or ten times as long as it took, whichever is longer, by every
//! request in that time (requests that arrive while one is being taken wait for it): a
//! client polling in a loop keeps the shards in snapshots at most a tenth of the time. A
//! principal limited to some lines sees only those (totals included).

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

/// A snapshot is reused for this many times as long as it took (at least
/// [`MIN_INTERVAL`]).
const REUSE_FACTOR: u32 = 10;

/// The last snapshot: when it was finished, how long it took.
struct Taken {
    at: Instant,
    took: Duration,
    snap: Arc<AggregateSnapshot>,
}

/// The aggregator as the API sees it: never kept alive by the API, snapshots shared.
pub struct Live {
    aggregator: Weak<Aggregator>,
    last: tokio::sync::Mutex<Option<Taken>>,
}

impl Live {
    /// The live view of `aggregator` (held weakly: the collector's shutdown stops it).
    pub fn new(aggregator: &Arc<Aggregator>) -> Live {
        Live {
            aggregator: Arc::downgrade(aggregator),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The last snapshot while it is fresh enough (see the module), else a new one;
    /// `None` once the aggregator has stopped.
    pub async fn snapshot(&self) -> Option<Arc<AggregateSnapshot>> {
        let mut last = self.last.lock().await;
        if let Some(t) = last.as_ref()
            && t.at.elapsed() < MIN_INTERVAL.max(t.took.saturating_mul(REUSE_FACTOR))
        {
            return Some(t.snap.clone());
        }
        let agg = self.aggregator.upgrade()?;
        let started = Instant::now();
        // The shards answer over channels: a blocking wait, off the async workers.
        let snap = tokio::task::spawn_blocking(move || agg.snapshot())
            .await
            .ok()?;
        let snap = Arc::new(snap);
        *last = Some(Taken {
            at: Instant::now(),
            took: started.elapsed(),
            snap: snap.clone(),
        });
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
    let visible: Vec<_> = snap
        .lines
        .iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name) && who.sees_line(name))
        .collect();
    let active_flows: u64 = visible.iter().map(|(_, l)| l.active_flows).sum();
    let lines: Vec<Value> = visible
        .into_iter()
        .map(|(name, l)| line_json(name, l))
        .collect();
    Ok(Json(json!({
        "watermark_ns": snap.watermark_ns,
        "window_start_s": snap.window_start_s,
        "window_secs": snap.window_secs,
        "shards_answered": snap.shards_answered,
        "active_flows": active_flows,
        "lines": lines,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggregateConfig, AggregateMetrics};
    use tidegate_wire::record::FlowRecord;

    fn record(bytes: u64) -> FlowRecord {
        FlowRecord {
            src: "192.0.2.1".parse().unwrap(),
            dst: "198.51.100.2".parse().unwrap(),
            sport: 40000,
            dport: 443,
            proto: 6,
            packets: 1,
            bytes,
            first: 1_700_000_000_000_000_000,
            last: 1_700_000_000_000_000_000,
            line: "hk-1".into(),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_in_a_second_share_one_snapshot_and_a_stopped_aggregator_answers_none() {
        let agg = Arc::new(
            Aggregator::start(AggregateConfig::default(), AggregateMetrics::default()).unwrap(),
        );
        let live = Live::new(&agg);
        agg.submit("p", &[record(100)]);
        agg.flush();
        let first = live.snapshot().await.unwrap();
        assert_eq!(first.lines["hk-1"].ingress.totals.bytes, 100);
        // A record submitted now shows in the next snapshot, not in the shared one.
        agg.submit("p", &[record(50)]);
        agg.flush();
        let again = live.snapshot().await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "one snapshot within the interval"
        );
        tokio::time::sleep(MIN_INTERVAL + Duration::from_millis(50)).await;
        let later = live.snapshot().await.unwrap();
        assert_eq!(later.lines["hk-1"].ingress.totals.bytes, 150);
        // The API never keeps the aggregator alive: once the collector drops it, the
        // next snapshot is refused.
        drop(agg);
        tokio::time::sleep(MIN_INTERVAL + Duration::from_millis(50)).await;
        assert!(live.snapshot().await.is_none());
    }

    #[test]
    fn an_empty_distribution_is_zeros_and_percentiles_are_ordered() {
        let mut h = Histogram::<u64>::new(2).unwrap();
        assert_eq!(distribution(&h)["count"], 0);
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let d = distribution(&h);
        let u = |k: &str| d[k].as_u64().unwrap();
        assert_eq!(u("count"), 1000);
        assert!(u("min") <= u("p50") && u("p50") <= u("p90") && u("p90") <= u("p99"));
        assert!(u("p99") <= u("max") && u("max") >= 1000 && u("max") <= 1010);
        assert!((495..=505).contains(&u("p50")), "{d}");
    }
}
