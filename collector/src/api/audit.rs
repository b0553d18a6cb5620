//! The audit trail (`audit_log`, `0011_audit_log.sql`): logins and refused logins,
//! logouts, triage actions, exports, manual blocks. An action's record is written before
//! its answer; an export or block whose record cannot be stored is refused (fail
//! closed), a refused login's record is best effort (ClickHouse down must not hide the
//! refusal, which is logged anyway). `GET /api/v1/audit` lists it for admins.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::{
    Extension, Json,
    extract::{Query, State},
};
use clickhouse::Row;
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    AppState,
    auth::Principal,
    config::Role,
    error::ApiResult,
    params::Params,
    sql::{Arg, Sql, Where},
};

/// Actions recorded.
pub const ACTIONS: [&str; 9] = [
    "login",
    "login_refused",
    "logout",
    "triage",
    "export",
    "block",
    "unblock",
    "filter_save",
    "filter_delete",
];

/// One row of `audit_log`.
#[derive(Debug, Row, Serialize)]
struct AuditRow<'a> {
    /// DateTime64(3): ms since the Unix epoch.
    at: i64,
    user: &'a str,
    action: &'a str,
    client: String,
    target: &'a str,
    detail: &'a str,
}

/// Stores one record (through `ch`, which must see `audit_log`).
pub(crate) async fn record(
    ch: &clickhouse::Client,
    user: &str,
    action: &'static str,
    client: Option<IpAddr>,
    target: &str,
    detail: &str,
) -> ApiResult<()> {
    debug_assert!(ACTIONS.contains(&action));
    let row = AuditRow {
        at: (tidegate_base::clock::wall_ns() / 1_000_000) as i64,
        user,
        action,
        client: client.map(|c| c.to_string()).unwrap_or_default(),
        target,
        detail,
    };
    // Server-side batching (many small inserts, e.g. refused logins from many addresses,
    // must not each make a part), acknowledged once written.
    let ch = ch
        .clone()
        .with_setting("async_insert", "1")
        .with_setting("wait_for_async_insert", "1");
    let mut insert = ch.insert::<AuditRow<'_>>("audit_log").await?;
    insert.write(&row).await?;
    insert.end().await?;
    Ok(())
}

/// `GET /api/v1/audit`: the audit trail in a time range, newest first, filtered by user
/// and action; admins only.
pub async fn list(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Admin, "reading the audit log")?;
    let p = Params::new(q, &["from", "to", "user", "action", "limit", "offset"])?;
    let r = p.time_range()?;
    let (limit, offset) = p.page(100, 1000)?;
    let mut w = Where::default();
    w.range("at", r)
        .eq_opt("user", p.name("user")?.as_ref())
        .any_of("action", &p.list("action", &ACTIONS)?);
    let mut sql = Sql::new("SELECT at, user, action, client, target, detail FROM audit_log");
    sql.filter(&w)
        .push(" ORDER BY at DESC, user")
        .bind(" LIMIT ? OFFSET ?", [Arg::U64(limit), Arg::U64(offset)]);
    let mut count = Sql::new("SELECT count() AS n FROM audit_log");
    count.filter(&w);
    let ch = st.db(&who);
    let items = sql.rows(&ch).await?;
    let total = count
        .row(&ch)
        .await?
        .and_then(|r| r.get("n").and_then(Value::as_u64))
        .unwrap_or(0);
    Ok(Json(json!({ "total": total, "items": items })))
}
