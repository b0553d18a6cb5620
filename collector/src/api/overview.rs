//! `GET /api/v1/overview`: traffic per line and direction over time, from the rollups.
//!
//! Each flow record counts in the bucket of its first packet, so the range is widened to
//! whole buckets: `[from rounded down to the step, to)`. Steps of a minute read the
//! minute rollup (`flows_1m`), steps of an hour or more `flows_1h`, and steps under a
//! minute — offered over ranges of at most [`RAW_MAX_SPAN`] — the flows themselves, so a
//! burst of a few seconds shows at its true rate when the analyst zooms in.

use std::collections::{BTreeMap, HashMap};

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use serde_json::{Value, json};

use super::{
    AppState,
    auth::Principal,
    error::ApiResult,
    params::{Params, TimeRange},
    sql::{Arg, Sql, Where},
};

/// Bucket widths offered, in seconds.
pub const STEPS: [u64; 16] = [
    1, 2, 5, 10, 15, 30, 60, 300, 900, 1800, 3600, 10_800, 21_600, 86_400, 604_800, 2_592_000,
];

/// Longest range, in seconds, read from the flows themselves (steps under a minute): a
/// bounded scan of the raw table, however busy the lines.
pub const RAW_MAX_SPAN: u64 = 3 * 3600;

/// Longest range, in seconds, for which the step is chosen under a minute automatically
/// (the default hour stays on the minute rollup).
pub const AUTO_RAW_SPAN: u64 = 30 * 60;

/// Most buckets a series has when the step is chosen automatically.
pub const MAX_BUCKETS: u64 = 360;

/// The smallest step of a minute or more in [`STEPS`] that gives at most
/// [`MAX_BUCKETS`] buckets (series read from rollups: alerts, probe health).
pub fn auto_step(r: TimeRange) -> u64 {
    let span = span_secs(r);
    STEPS
        .iter()
        .copied()
        .filter(|s| *s >= 60)
        .find(|s| span.div_ceil(*s) <= MAX_BUCKETS)
        .unwrap_or(STEPS[STEPS.len() - 1])
}

/// The traffic series' step: as [`auto_step`], but down to a second over ranges of at
/// most [`AUTO_RAW_SPAN`].
pub fn auto_traffic_step(r: TimeRange) -> u64 {
    let span = span_secs(r);
    if span > AUTO_RAW_SPAN {
        return auto_step(r);
    }
    STEPS
        .iter()
        .copied()
        .find(|s| span.div_ceil(*s) <= MAX_BUCKETS)
        .unwrap_or(60)
}

fn span_secs(r: TimeRange) -> u64 {
    ((r.to_ms - r.from_ms) / 1000).max(1) as u64
}

/// The table for a step and the range aligned to whole steps.
pub fn aligned(r: TimeRange, step: u64) -> (&'static str, TimeRange) {
    let table = if step < 60 {
        "flows"
    } else if step.is_multiple_of(3600) {
        "flows_1h"
    } else {
        "flows_1m"
    };
    let s = (step * 1000) as i64;
    (
        table,
        TimeRange {
            from_ms: r.from_ms.div_euclid(s) * s,
            to_ms: r.to_ms,
        },
    )
}

/// The handler.
pub async fn overview(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &["from", "to", "line", "step"])?;
    let r = p.time_range()?;
    let line = p.name("line")?;
    let step = match p.get("step") {
        None => auto_traffic_step(r),
        Some(_) => {
            let s = p.uint("step", 60, 1, STEPS[STEPS.len() - 1])?;
            if !STEPS.contains(&s) {
                let list: Vec<String> = STEPS.iter().map(u64::to_string).collect();
                return Err(super::error::ApiError::param(
                    "step",
                    format!("expected one of {}", list.join(", ")),
                ));
            }
            if (r.to_ms - r.from_ms) / 1000 / s as i64 > 5000 {
                return Err(super::error::ApiError::param(
                    "step",
                    "more than 5000 buckets: choose a larger step",
                ));
            }
            if s < 60 && span_secs(r) > RAW_MAX_SPAN {
                return Err(super::error::ApiError::param(
                    "step",
                    format!(
                        "steps under a minute read the flows themselves: at most {} hours of range",
                        RAW_MAX_SPAN / 3600
                    ),
                ));
            }
            s
        }
    };
    let (table, ar) = aligned(r, step);
    let mut w = Where::default();
    let mut sql = Sql::default();
    if table == "flows" {
        // Bucketed by the first packet, like the rollups, to the second.
        w.and(
            "first >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND first < fromUnixTimestamp64Milli(toInt64(?), 'UTC')",
            [Arg::I64(ar.from_ms), Arg::I64(ar.to_ms)],
        )
        .eq_opt("line", line.as_ref());
        sql.bind("SELECT toUnixTimestamp(toStartOfInterval(toDateTime(first, 'UTC'), toIntervalSecond(?))) AS t, line, toString(direction) AS direction, sum(packets) AS packets, sum(bytes) AS bytes, count() AS flows FROM ", [Arg::U64(step)]);
    } else {
        w.and(
            "ts >= toDateTime(intDiv(toInt64(?), 1000), 'UTC') AND ts < toDateTime(intDiv(toInt64(?) + 999, 1000), 'UTC')",
            [Arg::I64(ar.from_ms), Arg::I64(ar.to_ms)],
        )
        .eq_opt("line", line.as_ref());
        sql.bind("SELECT toUnixTimestamp(toStartOfInterval(ts, toIntervalSecond(?))) AS t, line, toString(direction) AS direction, sum(packets) AS packets, sum(bytes) AS bytes, sum(flows) AS flows FROM ", [Arg::U64(step)]);
    }
    sql.push(table)
        .filter(&w)
        .push(" GROUP BY t, line, direction ORDER BY t, line, direction");
    let rows = sql.rows(&st.db(&who)).await?;

    let mut totals = [0u64; 3];
    let mut per_line: BTreeMap<(String, String), [u64; 3]> = BTreeMap::new();
    let mut series = Vec::with_capacity(rows.len());
    for row in rows {
        let n = |k: &str| row.get(k).and_then(Value::as_u64).unwrap_or(0);
        let v = [n("packets"), n("bytes"), n("flows")];
        let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let e = per_line.entry((s("line"), s("direction"))).or_default();
        for i in 0..3 {
            totals[i] += v[i];
            e[i] += v[i];
        }
        series.push(json!({
            "t": n("t"), "line": s("line"), "direction": s("direction"),
            "packets": v[0], "bytes": v[1], "flows": v[2],
        }));
    }
    let lines: Vec<Value> = per_line
        .into_iter()
        .map(|((line, direction), v)| {
            json!({"line": line, "direction": direction, "packets": v[0], "bytes": v[1], "flows": v[2]})
        })
        .collect();
    Ok(Json(json!({
        "from": ar.from_ms, "to": ar.to_ms, "step": step, "table": table,
        "totals": {"packets": totals[0], "bytes": totals[1], "flows": totals[2]},
        "lines": lines,
        "series": series,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_series_short_and_align_to_buckets() {
        let hour = TimeRange {
            from_ms: 90_000,
            to_ms: 90_000 + 3_600_000,
        };
        assert_eq!(auto_step(hour), 60);
        assert_eq!(
            auto_traffic_step(hour),
            60,
            "the default hour stays on flows_1m"
        );
        let burst = TimeRange {
            from_ms: 1_000,
            to_ms: 1_000 + 120_000,
        };
        assert_eq!(auto_step(burst), 60);
        assert_eq!(auto_traffic_step(burst), 1, "two minutes in seconds");
        let half = TimeRange {
            from_ms: 0,
            to_ms: 1_800_000,
        };
        assert_eq!(auto_traffic_step(half), 5);
        assert_eq!(aligned(burst, 1).0, "flows");
        let week = TimeRange {
            from_ms: 0,
            to_ms: 7 * 86_400_000,
        };
        assert_eq!(auto_step(week), 1800);
        assert_eq!(
            aligned(hour, 60),
            (
                "flows_1m",
                TimeRange {
                    from_ms: 60_000,
                    to_ms: hour.to_ms
                }
            )
        );
        assert_eq!(aligned(week, 3600).0, "flows_1h");
    }
}
