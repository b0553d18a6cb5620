//! Alerts: `GET /api/v1/alerts` (filtered, paginated list with facet counts),
//! `GET /api/v1/alerts/timeline` (counts per bucket and severity) and
//! `GET /api/v1/alerts/{id}` (one alert with its evidence flows). Read from `alerts FINAL`:
//! the newest version of each alert.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use serde_json::{Value, json};

use super::{
    AppState,
    error::{ApiError, ApiResult},
    overview::auto_step,
    params::Params,
    sql::{Arg, Sql, Where},
};

/// Alert kinds the detectors raise.
pub const KINDS: [&str; 9] = [
    "port_scan",
    "host_sweep",
    "syn_flood",
    "volumetric",
    "amplification",
    "exfiltration",
    "beaconing",
    "dns_tunnel",
    "icmp_tunnel",
];

/// Alert severities, lowest first.
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

const COLUMNS: &str = "id, version, kind, toString(severity) AS severity, first, last, src, dst, port, line, key, src_country, dst_country, src_asn, dst_asn, measured, threshold, unit, description, JSONLength(evidence) AS evidence_count, updated_at";

fn filters(p: &Params) -> ApiResult<Where> {
    let r = p.time_range()?;
    let mut w = Where::default();
    w.overlaps(r)
        .any_of("kind", &p.list("kind", &KINDS)?)
        .any_of("severity", &p.list("severity", &SEVERITIES)?)
        .eq_opt("line", p.name("line")?.as_ref());
    if let Some(ip) = p.name("ip")? {
        w.and("(src = ? OR dst = ?)", [Arg::Str(ip.clone()), Arg::Str(ip)]);
    }
    if let Some(c) = p.country("country")? {
        w.and(
            "(src_country = ? OR dst_country = ?)",
            [Arg::Str(c.clone()), Arg::Str(c)],
        );
    }
    Ok(w)
}

const FILTERS: [&str; 7] = ["from", "to", "kind", "severity", "line", "ip", "country"];

/// `GET /api/v1/alerts`.
pub async fn list(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &[&FILTERS[..], &["limit", "offset"]].concat())?;
    let w = filters(&p)?;
    let (limit, offset) = p.page(50, 500)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM alerts FINAL"));
    sql.filter(&w).bind(
        " ORDER BY first DESC, id LIMIT ? OFFSET ?",
        [Arg::U64(limit), Arg::U64(offset)],
    );
    let items = sql.rows(&st.ch).await?;
    let mut facets =
        Sql::new("SELECT kind, toString(severity) AS severity, count() AS n FROM alerts FINAL");
    facets
        .filter(&w)
        .push(" GROUP BY kind, severity ORDER BY kind, severity");
    let facets = facets.rows(&st.ch).await?;
    let total: u64 = facets
        .iter()
        .filter_map(|f| f.get("n").and_then(Value::as_u64))
        .sum();
    Ok(Json(json!({
        "total": total, "limit": limit, "offset": offset,
        "items": items, "facets": facets,
    })))
}

/// `GET /api/v1/alerts/timeline`.
pub async fn timeline(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &FILTERS)?;
    let w = filters(&p)?;
    let step = auto_step(p.time_range()?);
    let mut sql = Sql::default();
    sql.bind(
        "SELECT toUnixTimestamp(toStartOfInterval(first, toIntervalSecond(?))) AS t, toString(severity) AS severity, count() AS n FROM alerts FINAL",
        [Arg::U64(step)],
    )
    .filter(&w)
    .push(" GROUP BY t, severity ORDER BY t, severity");
    Ok(Json(
        json!({ "step": step, "buckets": sql.rows(&st.ch).await? }),
    ))
}

/// Parses the `evidence` column (a JSON array of flow records) in place.
pub fn expand_evidence(row: &mut serde_json::Map<String, Value>) {
    if let Some(Value::String(s)) = row.get("evidence") {
        let v = serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()));
        row.insert("evidence".into(), v);
    }
}

/// Checks an id path segment (ids are hex or similar short tokens).
pub fn check_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(ApiError::param(
            "id",
            "expected an id of at most 128 characters",
        ));
    }
    Ok(())
}

/// `GET /api/v1/alerts/{id}`.
pub async fn detail(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    Params::new(q, &[])?;
    check_id(&id)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS}, evidence FROM alerts FINAL"));
    sql.bind(" WHERE id = ? LIMIT 1", [Arg::Str(id.clone())]);
    let mut row = sql
        .row(&st.ch)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("alert {id}")))?;
    expand_evidence(&mut row);
    Ok(Json(Value::Object(row)))
}
