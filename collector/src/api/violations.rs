//! Policy violations: `GET /api/v1/violations/rules` (violations grouped by rule, with
//! the rule's text), `GET /api/v1/violations` (filtered, paginated list) and
//! `GET /api/v1/violations/{id}` (one violation with its evidence flows). Read from
//! `policy_violations FINAL`.

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
    params::Params,
    sql::{Arg, Sql, States, Where},
};

/// Violation severities, lowest first.
pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// The `policy_violations` table, newest version of each violation.
const VIOLATIONS: States = States {
    table: "policy_violations",
    columns: "id, toString(version) AS version, rule_id, rule_name, rule_location, kind, toString(severity) AS severity, line, src, dst, src_zone, dst_zone, src_country, dst_country, src_asn, dst_asn, first, last, flows, packets, bytes, description, action, JSONLength(evidence) AS evidence_count, updated_at",
    what: "violation",
};

const FILTERS: [&str; 7] = ["from", "to", "rule", "severity", "line", "ip", "kind"];

fn filters(p: &Params) -> ApiResult<Where> {
    let mut w = Where::default();
    w.overlaps(p.time_range()?)
        .eq_opt("rule_id", p.name("rule")?.as_ref())
        .eq_opt("kind", p.name("kind")?.as_ref())
        .any_of("severity", &p.list("severity", &SEVERITIES)?)
        .eq_opt("line", p.name("line")?.as_ref());
    if let Some(ip) = p.name("ip")? {
        w.and("(src = ? OR dst = ?)", [Arg::Str(ip.clone()), Arg::Str(ip)]);
    }
    Ok(w)
}

/// `GET /api/v1/violations/rules`.
pub async fn rules(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &FILTERS)?;
    let w = filters(&p)?;
    let mut sql = Sql::new(
        "SELECT rule_id, argMax(rule_name, updated_at) AS rule_name, argMax(rule_location, updated_at) AS rule_location, argMax(rule_text, updated_at) AS rule_text, groupUniqArray(10)(kind) AS kinds, toString(max(severity)) AS max_severity, count() AS violations, sum(flows) AS flows, sum(packets) AS packets, sum(bytes) AS bytes, min(first) AS first_seen, max(last) AS last_seen FROM policy_violations FINAL",
    );
    sql.filter(&w)
        .push(" GROUP BY rule_id ORDER BY count() DESC, rule_id LIMIT 1000");
    Ok(Json(json!({ "rules": sql.rows(&st.db(&who)).await? })))
}

/// `GET /api/v1/violations`.
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
        let sql = VIOLATIONS.page_sql(&w, page);
        return export::respond(&st, &who, client, &sql, f, "violations", &p.describe()).await;
    }
    let (limit, offset) = p.page(50, 500)?;
    let items = VIOLATIONS.page(&st.db(&who), &w, (limit, offset)).await?;
    let mut count = Sql::new("SELECT count() AS n FROM policy_violations FINAL");
    count.filter(&w);
    let total = count
        .row(&st.db(&who))
        .await?
        .and_then(|r| r.get("n").and_then(Value::as_u64))
        .unwrap_or(0);
    Ok(Json(json!({
        "total": total, "limit": limit, "offset": offset, "items": items,
    }))
    .into_response())
}

/// `GET /api/v1/violations/{id}`.
pub async fn detail(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    Params::new(q, &[])?;
    let row = VIOLATIONS.by_id(&st.db(&who), &id, ", rule_text").await?;
    Ok(Json(Value::Object(row)))
}
