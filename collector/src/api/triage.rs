//! Triage of alerts: analysts move an alert through its states (new, acknowledged, in
//! progress, closed, false positive), assign it and leave notes. Every action is a row
//! of `alert_triage` (the full history, never updated in place; `0010_alert_triage.sql`),
//! logged with the user who took it, and — when the collector keeps an evidence log —
//! appended to it, so who did what to which alert can be proven later.

use std::collections::HashMap;

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    AppState,
    auth::Principal,
    error::{ApiError, ApiResult},
    params::Params,
    sql::{Arg, Sql, check_id},
};

/// The states of an alert, in the order an analyst usually moves through them.
pub const STATES: [&str; 5] = [
    "new",
    "acknowledged",
    "in_progress",
    "closed",
    "false_positive",
];

/// Longest assignee name, in characters.
const ASSIGNEE_MAX: usize = 64;
/// Longest note, in characters.
const NOTE_MAX: usize = 4000;

/// Body of `POST /api/v1/alerts/{id}/triage`: what changes (absent fields keep their
/// current value; the note belongs to this action only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageBody {
    /// New state (one of [`STATES`]).
    pub state: Option<String>,
    /// New assignee (`""` unassigns).
    pub assignee: Option<String>,
    /// A note on this action.
    pub note: Option<String>,
}

/// One row of `alert_triage`.
#[derive(Debug, Row, Serialize)]
struct TriageRow<'a> {
    alert_id: &'a str,
    /// DateTime64(9): ns since the Unix epoch.
    at: i64,
    user: &'a str,
    /// Enum8 code (index in [`STATES`]).
    state: i8,
    assignee: &'a str,
    note: &'a str,
}

/// Checks a free-text field: at most `max` characters, no control characters but
/// newlines and tabs (in notes).
fn text(field: &str, v: &str, max: usize, newlines: bool) -> ApiResult<()> {
    if v.chars().count() > max {
        return Err(ApiError::BadBody(format!(
            "{field}: longer than {max} characters"
        )));
    }
    if v.chars()
        .any(|c| c.is_control() && !(newlines && (c == '\n' || c == '\t')))
    {
        return Err(ApiError::BadBody(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok(())
}

/// The current state and assignee of each of `ids` that has been triaged.
pub async fn current(
    ch: &clickhouse::Client,
    ids: &[String],
) -> ApiResult<HashMap<String, (String, String)>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut sql = Sql::default();
    sql.bind(
        "SELECT alert_id, toString(argMax(state, at)) AS state, argMax(assignee, at) AS assignee \
         FROM alert_triage WHERE has(?, alert_id) GROUP BY alert_id",
        [Arg::Strs(ids.to_vec())],
    );
    Ok(sql
        .rows(ch)
        .await?
        .into_iter()
        .filter_map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
            Some((s("alert_id")?, (s("state")?, s("assignee")?)))
        })
        .collect())
}

/// Adds `triage_state` and `assignee` to each alert row (untriaged alerts are `new`).
pub async fn annotate(ch: &clickhouse::Client, rows: &mut [Map<String, Value>]) -> ApiResult<()> {
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect();
    let states = current(ch, &ids).await?;
    for r in rows {
        let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
        let (state, assignee) = states
            .get(id)
            .cloned()
            .unwrap_or_else(|| ("new".into(), String::new()));
        r.insert("triage_state".into(), state.into());
        r.insert("assignee".into(), assignee.into());
    }
    Ok(())
}

/// The SQL condition (with its argument) that keeps alerts whose current triage state is
/// one of `states` (an untriaged alert is `new`).
pub fn state_filter(states: &[String]) -> (String, Vec<Arg>) {
    let triaged = "SELECT alert_id FROM alert_triage GROUP BY alert_id \
                   HAVING has(?, toString(argMax(state, at)))";
    if states.iter().any(|s| s == "new") {
        // New: never triaged, or triaged back to new.
        let others: Vec<String> = STATES
            .iter()
            .filter(|s| !states.iter().any(|w| w == *s))
            .map(|s| s.to_string())
            .collect();
        (format!("id NOT IN ({triaged})"), vec![Arg::Strs(others)])
    } else {
        (
            format!("id IN ({triaged})"),
            vec![Arg::Strs(states.to_vec())],
        )
    }
}

/// `POST /api/v1/alerts/{id}/triage`: records one triage action; answers the alert's
/// new current state and its history.
pub async fn act(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    super::auth::ClientAddr(client): super::auth::ClientAddr,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    who.require(super::config::Role::Analyst, "triaging an alert")?;
    check_id(&id)?;
    let b: TriageBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    if b.state.is_none() && b.assignee.is_none() && b.note.is_none() {
        return Err(ApiError::BadBody(
            "nothing to do: give a state, an assignee or a note".into(),
        ));
    }
    let state_code = match &b.state {
        Some(s) => Some(STATES.iter().position(|k| k == s).ok_or_else(|| {
            ApiError::BadBody(format!("state: {s:?} is not one of {}", STATES.join(", ")))
        })?),
        None => None,
    };
    if let Some(a) = &b.assignee {
        text("assignee", a, ASSIGNEE_MAX, false)?;
    }
    if let Some(n) = &b.note {
        text("note", n, NOTE_MAX, true)?;
    }
    // The alert must exist (among those the principal sees).
    alert_exists(&st.db(&who), &id).await?;
    let now = current(&st.db(&who), std::slice::from_ref(&id)).await?;
    let (cur_state, cur_assignee) = now
        .get(&id)
        .cloned()
        .unwrap_or_else(|| ("new".into(), String::new()));
    let state = state_code.unwrap_or_else(|| {
        STATES
            .iter()
            .position(|k| *k == cur_state)
            .unwrap_or_default()
    });
    let assignee = b.assignee.clone().unwrap_or(cur_assignee);
    let note = b.note.clone().unwrap_or_default();
    let at = tidegate_base::clock::wall_ns();
    let row = TriageRow {
        alert_id: &id,
        at: i64::try_from(at).unwrap_or(i64::MAX),
        user: &who.name,
        state: state as i8,
        assignee: &assignee,
        note: &note,
    };
    // Evidence first (durable), then ClickHouse: a recorded action is always provable.
    if let Some(log) = st.evidence.clone() {
        let entry = json!({
            "alert_id": id, "user": who.name, "state": STATES[state],
            "assignee": assignee, "note": note,
        });
        tokio::task::spawn_blocking(move || log.append_durable(crate::evidence::TRIAGE, entry))
            .await
            .map_err(|e| ApiError::BadBody(format!("evidence log: {e}")))?
            .map_err(|e| ApiError::BadBody(format!("evidence log: {e}")))?;
    }
    let mut insert = st.db(&who).insert::<TriageRow<'_>>("alert_triage").await?;
    insert.write(&row).await?;
    insert.end().await?;
    tracing::info!(user = %who.name, alert = %id, state = STATES[state], assignee = %assignee.escape_debug(),
        "alert triaged");
    st.audit(
        &who.name,
        "triage",
        client,
        &id,
        &format!("{} assignee={assignee:?}", STATES[state]),
    )
    .await?;
    Ok(Json(json!({
        "id": id,
        "triage_state": STATES[state],
        "assignee": assignee,
        "history": history_of(&st.db(&who), &id).await?,
    })))
}

/// Every triage action on alert `id`, oldest first.
async fn history_of(ch: &clickhouse::Client, id: &str) -> ApiResult<Vec<Map<String, Value>>> {
    let mut sql = Sql::default();
    sql.bind(
        "SELECT at, user, toString(state) AS state, assignee, note FROM alert_triage \
         WHERE alert_id = ? ORDER BY at",
        [Arg::Str(id.to_string())],
    );
    sql.rows(ch).await
}

/// Not found unless alert `id` is stored (and within the lines `ch` may read).
async fn alert_exists(ch: &clickhouse::Client, id: &str) -> ApiResult<()> {
    let mut exists = Sql::default();
    exists.bind(
        "SELECT count() AS n FROM alerts WHERE id = ?",
        [Arg::Str(id.to_string())],
    );
    let n = exists
        .row(ch)
        .await?
        .and_then(|r| r.get("n").and_then(Value::as_u64))
        .unwrap_or(0);
    if n == 0 {
        return Err(ApiError::NotFound(format!("alert {id}")));
    }
    Ok(())
}

/// `GET /api/v1/alerts/{id}/triage`: the current state and every action, oldest first.
pub async fn history(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    Params::new(q, &[])?;
    check_id(&id)?;
    alert_exists(&st.db(&who), &id).await?;
    let h = history_of(&st.db(&who), &id).await?;
    let (state, assignee) = h
        .last()
        .map(|r| {
            let s = |k: &str| {
                r.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (s("state"), s("assignee"))
        })
        .unwrap_or_else(|| ("new".into(), String::new()));
    Ok(Json(json!({
        "id": id, "triage_state": state, "assignee": assignee, "history": h,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_and_assignees_are_bounded_and_printable() {
        assert!(text("note", "line one\nline two\tend", NOTE_MAX, true).is_ok());
        assert!(text("assignee", "ana\nbob", ASSIGNEE_MAX, false).is_err());
        assert!(text("note", "bell\u{7}", NOTE_MAX, true).is_err());
        assert!(text("note", &"x".repeat(NOTE_MAX + 1), NOTE_MAX, true).is_err());
        assert!(text("assignee", &"分".repeat(ASSIGNEE_MAX), ASSIGNEE_MAX, false).is_ok());
    }

    #[test]
    fn the_new_filter_keeps_untriaged_alerts() {
        let (sql, args) = state_filter(&["new".into()]);
        assert!(sql.starts_with("id NOT IN"), "{sql}");
        match &args[0] {
            Arg::Strs(v) => assert_eq!(v.len(), STATES.len() - 1),
            other => panic!("{other:?}"),
        }
        let (sql, _) = state_filter(&["closed".into()]);
        assert!(sql.starts_with("id IN"), "{sql}");
    }
}
