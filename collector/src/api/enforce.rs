//! Enforcement: `GET /api/v1/enforce/status` (the published plan, each probe's version,
//! the manual blocks), `GET /api/v1/enforce/rules` (per-rule packets and bytes by verdict,
//! and the top dropped sources, from ClickHouse), and manual blocks for incident response:
//! `POST /api/v1/enforce/blocks` (`{"cidr", "expires_secs", "reason"}`) and
//! `DELETE /api/v1/enforce/blocks/{id}`. Every block change is logged with the user and
//! recorded in the evidence log.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tidegate_base::Cidr;

use super::{
    AppState,
    auth::Principal,
    error::{ApiError, ApiResult},
    params::Params,
    sql::{Sql, Where},
};
use crate::enforce::EnforceHub;

fn hub(st: &AppState) -> ApiResult<&Arc<EnforceHub>> {
    st.enforce
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("enforcement (the collector has no policy)".into()))
}

/// `GET /api/v1/enforce/status`. A principal restricted to some lines sees the probes of
/// those lines only ([`super::scope::visible_probes`]); the plan and the manual blocks
/// apply to every line.
pub async fn status(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let h = hub(&st)?;
    let (plan, mut probes) = h.status();
    if let Some(visible) = super::scope::visible_probes(&st, &who).await {
        probes.retain(|id, _| visible.contains(id));
    }
    let now = tidegate_base::clock::wall_ns();
    Ok(Json(json!({
        "plan": plan,
        "probes": probes,
        "blocks": h.blocks().live(now),
    })))
}

const FILTERS: [&str; 3] = ["from", "to", "line"];

/// `GET /api/v1/enforce/rules`: packets, bytes and flows per rule and verdict, and the
/// sources with the most dropped (or would-drop) packets.
pub async fn rules(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &FILTERS)?;
    let mut w = Where::default();
    w.range("first", p.time_range()?)
        .eq_opt("line", p.name("line")?.as_ref())
        .and("verdict != 'pass'", []);
    let mut per_rule = Sql::new(
        "SELECT enforce_rule AS rule, toString(verdict) AS verdict, count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes, uniqExact(src) AS sources, min(first) AS first_seen, max(last) AS last_seen FROM flows",
    );
    per_rule
        .filter(&w)
        .push(" GROUP BY rule, verdict ORDER BY sum(packets) DESC LIMIT 1000");
    let mut top = Sql::new(
        "SELECT IPv6NumToString(src) AS src, toString(verdict) AS verdict, groupUniqArray(10)(enforce_rule) AS rules, count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes FROM flows",
    );
    top.filter(&w)
        .push(" GROUP BY src, verdict ORDER BY sum(packets) DESC LIMIT 20");
    Ok(Json(json!({
        "rules": per_rule.rows(&st.db(&who)).await?,
        "top_sources": top.rows(&st.db(&who)).await?,
    })))
}

/// Body of `POST /api/v1/enforce/blocks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    /// Range to block (host bits zero), e.g. `"203.0.113.7/32"`.
    pub cidr: String,
    /// Seconds until it lapses.
    pub expires_secs: u64,
    /// Why (shown to analysts, kept as evidence).
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/v1/enforce/blocks`.
pub async fn block(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    super::auth::ClientAddr(client): super::auth::ClientAddr,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    who.require(super::config::Role::Admin, "placing a manual block")?;
    let h = hub(&st)?.clone();
    let b: BlockBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let cidr = Cidr::parse(&b.cidr).map_err(|e| ApiError::BadBody(format!("cidr: {e}")))?;
    let user = who.name.clone();
    let b_secs = b.expires_secs;
    let made = tokio::task::spawn_blocking(move || {
        h.block(cidr, Duration::from_secs(b.expires_secs), b.reason, &user)
    })
    .await
    .map_err(|e| ApiError::BadBody(format!("block: {e}")))?
    .map_err(ApiError::BadBody)?;
    tracing::warn!(user = %who.name, id = %made.id, cidr = %made.cidr, reason = %made.reason,
        "manual block made through the API");
    st.audit(
        &who.name,
        "block",
        client,
        &made.cidr.to_string(),
        &format!("id {} for {} s: {}", made.id, b_secs, made.reason),
    )
    .await?;
    Ok(Json(json!({ "block": made })))
}

/// `DELETE /api/v1/enforce/blocks/{id}`.
pub async fn unblock(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    super::auth::ClientAddr(client): super::auth::ClientAddr,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    who.require(super::config::Role::Admin, "lifting a manual block")?;
    let h = hub(&st)?.clone();
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::param("id", "not a block id"));
    }
    let user = who.name.clone();
    let gone = tokio::task::spawn_blocking(move || h.unblock(&id, &user))
        .await
        .map_err(|e| ApiError::BadBody(format!("unblock: {e}")))?
        .map_err(ApiError::NotFound)?;
    tracing::warn!(user = %who.name, id = %gone.id, cidr = %gone.cidr, "manual block lifted through the API");
    st.audit(
        &who.name,
        "unblock",
        client,
        &gone.cidr.to_string(),
        &format!("id {}", gone.id),
    )
    .await?;
    Ok(Json(json!({ "lifted": gone })))
}
