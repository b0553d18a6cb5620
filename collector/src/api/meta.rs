//! `GET /api/v1/meta`: what the UI needs to offer choices — the lines seen, the time
//! extent of the stored traffic and alerts, alert kinds and severities.

use std::collections::HashMap;

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use serde_json::{Value, json};

use super::{
    AppState, alerts, auth::Principal, error::ApiResult, params::Params, sql::Sql, violations,
};

/// The handler.
pub async fn meta(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    Params::new(q, &[])?;
    let lines = Sql::new("SELECT DISTINCT line FROM flows_1h ORDER BY line LIMIT 1000")
        .rows(&st.db(&who))
        .await?;
    let lines: Vec<Value> = lines
        .into_iter()
        .filter_map(|mut r| r.remove("line"))
        .collect();
    let extent = Sql::new(
        "SELECT toUnixTimestamp64Milli(min(t0)) AS from, toUnixTimestamp64Milli(max(t1)) AS to, sum(n) AS total FROM (\
         SELECT toDateTime64(min(ts), 3) AS t0, toDateTime64(max(ts) + 60, 3) AS t1, count() AS n FROM flows_1m \
         UNION ALL SELECT toDateTime64(min(first), 3), toDateTime64(max(last), 3) + toIntervalSecond(1), count() FROM alerts \
         UNION ALL SELECT toDateTime64(min(first), 3), toDateTime64(max(last), 3) + toIntervalSecond(1), count() FROM policy_violations) WHERE n > 0",
    )
    .row(&st.db(&who))
    .await?
    .unwrap_or_default();
    let extent = if extent.get("total").and_then(Value::as_u64).unwrap_or(0) > 0 {
        json!({"from": extent.get("from"), "to": extent.get("to")})
    } else {
        Value::Null
    };
    Ok(Json(json!({
        "lines": lines,
        "extent": extent,
        "home_country": st.home_country,
        "alert_kinds": alerts::KINDS,
        "alert_severities": alerts::SEVERITIES,
        "violation_severities": violations::SEVERITIES,
    })))
}
