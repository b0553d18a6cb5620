//! `GET /api/v1/geo`: traffic by country pair (from the per-minute rollup) and the alerts
//! touching each country, for the cross-border map.

use std::collections::HashMap;

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use serde_json::{Value, json};

use super::{
    AppState,
    auth::Principal,
    error::ApiResult,
    overview::aligned,
    params::Params,
    sql::{Arg, Sql, Where},
};

/// The handler.
pub async fn geo(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &["from", "to", "line"])?;
    let r = p.time_range()?;
    let line = p.name("line")?;
    let (_, ar) = aligned(r, 60);
    let mut w = Where::default();
    w.and(
        "ts >= toDateTime(intDiv(toInt64(?), 1000), 'UTC') AND ts < toDateTime(intDiv(toInt64(?) + 999, 1000), 'UTC')",
        [Arg::I64(ar.from_ms), Arg::I64(ar.to_ms)],
    )
    .eq_opt("line", line.as_ref());
    let mut pairs = Sql::new(
        "SELECT src_country, dst_country, sum(packets) AS packets, sum(bytes) AS bytes, sum(flows) AS flows FROM flows_1m",
    );
    pairs
        .filter(&w)
        .push(" GROUP BY src_country, dst_country ORDER BY sum(bytes) DESC LIMIT 1000");
    let mut aw = Where::default();
    aw.overlaps(r).eq_opt("line", line.as_ref());
    let mut alerts = Sql::new(
        "SELECT country, count() AS alerts, toString(max(severity)) AS max_severity, groupUniqArray(10)(kind) AS kinds FROM (SELECT arrayJoin(arrayDistinct(arrayFilter(c -> c != '', [src_country, dst_country]))) AS country, severity, kind FROM alerts FINAL",
    );
    alerts
        .filter(&aw)
        .push(") GROUP BY country ORDER BY count() DESC LIMIT 300");
    Ok(Json(json!({
        "from": ar.from_ms, "to": ar.to_ms,
        "pairs": pairs.rows(&st.db(&who)).await?,
        "alerts": alerts.rows(&st.db(&who)).await?,
    })))
}
