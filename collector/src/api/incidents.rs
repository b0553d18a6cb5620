//! `GET /api/v1/incidents`: related findings grouped, so one attack reads as one thing —
//! alerts on the same target (the destination when it is one address, else the source)
//! and violations of the same rule, on the same line, each group extended while the next
//! finding starts within `gap` of the group's latest end. Computed by ClickHouse when
//! asked (window functions over `alerts FINAL` and `policy_violations FINAL`), so it
//! always reflects the stored findings and the analyst's chosen gap.

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
    params::Params,
    sql::{Arg, Sql, Where},
};

/// Default gap between findings of one incident, in seconds.
pub const DEFAULT_GAP_SECS: u64 = 900;

/// The handler.
pub async fn list(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &["from", "to", "line", "gap", "limit", "offset"])?;
    let r = p.time_range()?;
    let gap = p.uint("gap", DEFAULT_GAP_SECS, 1, 7 * 86_400)?;
    let (limit, offset) = p.page(50, 500)?;
    let line = p.name("line")?;
    let mut w = Where::default();
    w.overlaps(r).eq_opt("line", line.as_ref());

    // One stream of findings: (finding, subject, line, first, last, severity rank, what,
    // id); an alert's subject is its target, a violation's its rule.
    let mut findings = Sql::new(
        "SELECT 'alert' AS finding, if(isIPv4String(dst) OR isIPv6String(dst), dst, src) AS subject, line, first, last, \
         indexOf(['info', 'low', 'medium', 'high', 'critical'], toString(severity)) AS rank, toString(kind) AS what, id FROM alerts FINAL",
    );
    findings.filter(&w).push(
        " UNION ALL SELECT 'violation', concat('rule ', rule_id), line, first, last, \
         indexOf(['info', 'low', 'medium', 'high', 'critical'], toString(severity)), toString(rule_id), id FROM policy_violations FINAL",
    );
    findings.filter(&w);

    // Gaps and islands: a finding opens a new incident (`opens`) when it starts more than
    // `gap` after every earlier finding of its subject has ended; the running sum of
    // openings numbers the incidents of a subject.
    let numbered = |out: &mut Sql| {
        out.push(
            "SELECT *, sum(opens) OVER (PARTITION BY line, subject ORDER BY first, id ROWS UNBOUNDED PRECEDING) AS n FROM (\
             SELECT *, if(first > max(last) OVER (PARTITION BY line, subject ORDER BY first, id \
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + toIntervalSecond(",
        )
        .bind("?", [Arg::U64(gap)])
        .push("), 1, 0) AS opens FROM (")
        .append(&findings)
        .push("))");
    };
    let mut sql = Sql::new(
        "SELECT subject, line, f AS first, l AS last, ['info', 'low', 'medium', 'high', 'critical'][top] AS severity, \
         kinds, alerts, violations, ids FROM (SELECT subject, line, n, min(first) AS f, max(last) AS l, max(rank) AS top, \
         groupUniqArray(20)(what) AS kinds, countIf(finding = 'alert') AS alerts, \
         countIf(finding = 'violation') AS violations, groupArray(50)(id) AS ids FROM (",
    );
    numbered(&mut sql);
    sql.push(") GROUP BY subject, line, n) ORDER BY top DESC, l DESC, subject")
        .bind(" LIMIT ? OFFSET ?", [Arg::U64(limit), Arg::U64(offset)]);
    let mut count = Sql::new("SELECT count() AS n FROM (SELECT 1 FROM (");
    numbered(&mut count);
    count.push(") GROUP BY subject, line, n)");
    let ch = st.db(&who);
    let (items, total) = tokio::try_join!(sql.rows(&ch), count.row(&ch))?;
    let total = total
        .and_then(|r| r.get("n").and_then(Value::as_u64))
        .unwrap_or(0);
    Ok(Json(
        json!({ "gap_secs": gap, "total": total, "items": items }),
    ))
}
