//! Saved flow filters (`saved_filters`, `0012_saved_filters.sql`): a user keeps filter
//! expressions ([`super::filter`]) by name and may share them with every console user.
//!
//! - `GET /api/v1/filters`: the caller's filters and those others shared, by name.
//! - `PUT /api/v1/filters/{name}` with `{"q": "...", "shared": false}`: saves (or
//!   replaces) the caller's filter; the expression must parse; sharing needs the analyst
//!   role; at most [`MAX_PER_USER`] per user.
//! - `DELETE /api/v1/filters/{name}`: deletes the caller's own filter.
//!
//! Saves and deletions go to the audit log. A saved expression is only text: applying it
//! still goes through the caller's line restrictions.

use axum::{
    Extension, Json,
    extract::{Path, State},
};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    AppState,
    auth::{ClientAddr, Principal},
    config::Role,
    error::{ApiError, ApiResult},
    filter,
    sql::{Arg, Sql},
};

/// Most saved filters per user.
pub const MAX_PER_USER: u64 = 200;
/// Longest filter name, in characters.
pub const NAME_MAX: usize = 64;

#[derive(Debug, Row, Serialize)]
struct SavedRow<'a> {
    owner: &'a str,
    name: &'a str,
    q: &'a str,
    shared: u8,
    deleted: u8,
    /// DateTime64(3): ms since the Unix epoch.
    at: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveBody {
    q: String,
    #[serde(default)]
    shared: bool,
}

fn check_name(name: &str) -> ApiResult<()> {
    let n = name.chars().count();
    if n == 0 || n > NAME_MAX || name.trim() != name || name.chars().any(char::is_control) {
        return Err(ApiError::param(
            "name",
            format!(
                "expected 1 to {NAME_MAX} printable characters without leading or trailing spaces"
            ),
        ));
    }
    Ok(())
}

/// The filters as they stand: the newest row of each (owner, name) among the rows
/// matching `cond`, deleted ones left out (columns owner, name, q, shared, at; `newest`
/// holds the newest row's (q, shared, deleted)).
fn current(cond: &str, args: Vec<Arg>) -> Sql {
    let mut sql = Sql::new(
        "SELECT owner, name, newest.1 AS q, newest.2 = 1 AS shared, at FROM (SELECT owner, name, argMax((q, shared, deleted), at) AS newest, max(at) AS at FROM saved_filters WHERE ",
    );
    sql.bind(cond, args)
        .push(" GROUP BY owner, name) WHERE newest.3 = 0");
    sql
}

/// How many filters [`current`] finds for `cond`.
async fn count_current(
    st: &AppState,
    who: &Principal,
    cond: &str,
    args: Vec<Arg>,
) -> ApiResult<u64> {
    let mut sql = Sql::new("SELECT count() AS n FROM (");
    sql.append(&current(cond, args)).push(")");
    let r = sql.row(&st.db(who)).await?.unwrap_or_default();
    Ok(r.get("n").and_then(Value::as_u64).unwrap_or(0))
}

/// The caller's filters and those others shared, own first.
fn visible(who: &Principal) -> Sql {
    let mut sql = current("1", Vec::new());
    sql.bind(
        " AND (owner = ? OR newest.2 = 1)",
        [Arg::Str(who.name.clone())],
    )
    .bind(
        " ORDER BY owner != ?, name, owner",
        [Arg::Str(who.name.clone())],
    );
    sql
}

/// `GET /api/v1/filters`.
pub async fn list(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let items = visible(&who).rows(&st.db(&who)).await?;
    Ok(Json(json!({ "user": who.name, "items": items })))
}

async fn store(
    st: &AppState,
    who: &Principal,
    name: &str,
    q: &str,
    shared: bool,
    deleted: bool,
) -> ApiResult<()> {
    let row = SavedRow {
        owner: &who.name,
        name,
        q,
        shared: u8::from(shared),
        deleted: u8::from(deleted),
        at: next_at(),
    };
    let mut insert = st.db(who).insert::<SavedRow<'_>>("saved_filters").await?;
    insert.write(&row).await?;
    insert.end().await?;
    Ok(())
}

/// The time of a new row: the wall clock in ms, but always after the previous row this
/// collector wrote, so the newest row of a filter is one row even when a save and a
/// delete fall in one millisecond or the clock steps back.
fn next_at() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = (tidegate_base::clock::wall_ns() / 1_000_000) as i64;
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(prev + 1)
}

/// Whether `who` has a (not deleted) filter called `name`.
async fn own_exists(st: &AppState, who: &Principal, name: &str) -> ApiResult<bool> {
    let args = vec![Arg::Str(who.name.clone()), Arg::Str(name.to_string())];
    Ok(count_current(st, who, "owner = ? AND name = ?", args).await? > 0)
}

/// `PUT /api/v1/filters/{name}`.
pub async fn save(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(client): ClientAddr,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    check_name(&name)?;
    let b: SaveBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let q = b.q.trim();
    filter::parse(q).map_err(|e| ApiError::param("q", e.to_string()))?;
    if b.shared {
        who.require(Role::Analyst, "sharing a filter")?;
    }
    // The limit check and the write are one step: two saves at once (two tabs, a script)
    // could otherwise both see 199 and both store. Saves are rare and human-paced, so
    // this collector takes them one at a time. (Collectors sharing a cluster each
    // serialise their own: together they can exceed the limit by one per collector.)
    static SAVES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = SAVES.lock().await;
    if !own_exists(&st, &who, &name).await?
        && count_current(&st, &who, "owner = ?", vec![Arg::Str(who.name.clone())]).await?
            >= MAX_PER_USER
    {
        return Err(ApiError::BadBody(format!(
            "{MAX_PER_USER} saved filters already: delete one first"
        )));
    }
    store(&st, &who, &name, q, b.shared, false).await?;
    st.audit(
        &who.name,
        "filter_save",
        client,
        &name,
        &format!("shared={} q={q}", b.shared),
    )
    .await?;
    Ok(Json(
        json!({ "owner": who.name, "name": name, "q": q, "shared": b.shared }),
    ))
}

/// `DELETE /api/v1/filters/{name}`.
pub async fn remove(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(client): ClientAddr,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    check_name(&name)?;
    if !own_exists(&st, &who, &name).await? {
        return Err(ApiError::NotFound(format!(
            "saved filter {name:?} of {}",
            who.name
        )));
    }
    store(&st, &who, &name, "", false, true).await?;
    st.audit(&who.name, "filter_delete", client, &name, "")
        .await?;
    Ok(Json(json!({ "deleted": name })))
}
