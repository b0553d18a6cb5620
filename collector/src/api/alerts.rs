//! Alerts: `GET /api/v1/alerts` (filtered, paginated list with facet counts),
//! `GET /api/v1/alerts/timeline` (counts per bucket and severity) and
//! `GET /api/v1/alerts/{id}` (one alert with its evidence flows). Read from `alerts FINAL`:
//! the newest version of each alert.

use std::collections::HashMap;

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    AppState,
    auth::Principal,
    error::ApiResult,
    export,
    overview::auto_step,
    params::Params,
    sql::{Arg, Sql, States, Where},
};

/// Alert kinds the detectors raise.
pub const KINDS: [&str; 12] = [
    "port_scan",
    "host_sweep",
    "syn_flood",
    "volumetric",
    "amplification",
    "exfiltration",
    "beaconing",
    "dns_tunnel",
    "icmp_tunnel",
    "surge",
    "upload",
    "data_quarantined",
];

/// Alert severities, lowest first.
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// The `alerts` table, newest version of each alert.
const ALERTS: States = States {
    table: "alerts",
    columns: "id, toString(version) AS version, kind, toString(severity) AS severity, first, last, src, dst, port, line, key, src_country, dst_country, src_asn, dst_asn, measured, threshold, unit, packets, bytes, description, JSONLength(evidence) AS evidence_count, updated_at",
    what: "alert",
};

fn filters(p: &Params) -> ApiResult<Where> {
    let r = p.time_range()?;
    let mut w = Where::default();
    w.overlaps(r)
        .any_of("kind", &p.list("kind", &KINDS)?)
        .any_of("severity", &p.list("severity", &SEVERITIES)?)
        .eq_opt("line", p.name("line")?.as_ref());
    let states = p.list("state", &super::triage::STATES)?;
    if !states.is_empty() {
        let (cond, args) = super::triage::state_filter(&states);
        w.and(&cond, args);
    }
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

const FILTERS: [&str; 8] = [
    "from", "to", "kind", "severity", "line", "ip", "country", "state",
];

/// `GET /api/v1/alerts` (`format=csv|json`: the rows as a download).
pub async fn list(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    super::auth::ClientAddr(client): super::auth::ClientAddr,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params::new(q, &[&FILTERS[..], &["limit", "offset", "format"]].concat())?;
    let w = filters(&p)?;
    if let Some(f) = export::requested(&p)? {
        let page = p.page(export::MAX_ROWS, export::MAX_ROWS)?;
        return export::respond(
            &st,
            &who,
            client,
            &ALERTS.page_sql(&w, page),
            f,
            "alerts",
            &p.describe(),
        )
        .await;
    }
    let (limit, offset) = p.page(50, 500)?;
    let mut items = ALERTS.page(&st.db(&who), &w, (limit, offset)).await?;
    super::triage::annotate(&st.db(&who), &mut items).await?;
    let mut facets =
        Sql::new("SELECT kind, toString(severity) AS severity, count() AS n FROM alerts FINAL");
    facets
        .filter(&w)
        .push(" GROUP BY kind, severity ORDER BY kind, severity");
    let facets = facets.rows(&st.db(&who)).await?;
    let total: u64 = facets
        .iter()
        .filter_map(|f| f.get("n").and_then(Value::as_u64))
        .sum();
    Ok(Json(json!({
        "total": total, "limit": limit, "offset": offset,
        "items": items, "facets": facets,
    }))
    .into_response())
}

/// `GET /api/v1/alerts/timeline`.
pub async fn timeline(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
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
        json!({ "step": step, "buckets": sql.rows(&st.db(&who)).await? }),
    ))
}

/// `GET /api/v1/alerts/{id}`.
pub async fn detail(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    Params::new(q, &[])?;
    let mut row = ALERTS.by_id(&st.db(&who), &id, "").await?;
    super::triage::annotate(&st.db(&who), std::slice::from_mut(&mut row)).await?;
    Ok(Json(Value::Object(row)))
}

#[cfg(test)]
mod kinds_tests {
    #[test]
    fn the_api_lists_every_kind_the_detectors_raise() {
        let names: Vec<&str> = tidegate_threat::detect::AlertKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(super::KINDS.to_vec(), names);
    }
}
