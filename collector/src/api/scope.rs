//! Line restrictions, enforced by ClickHouse: a principal restricted to some lines
//! queries through a client whose every query carries the `additional_table_filters`
//! setting — a row filter on each table that holds per-line data (flows and rollups,
//! alerts, violations, triage of those alerts, health of probes capturing on those
//! lines). The filter applies wherever the table is read, subqueries included, so no
//! handler's SQL can forget it. Line names in restrictions come from the configuration
//! and are limited to characters that need no quoting (checked at load).

use std::{collections::HashSet, sync::Arc};

use super::auth::Principal;

/// The `additional_table_filters` value restricting reads to `lines` of database `db`
/// (an identifier, checked at load; subqueries name it: on a cluster the shards run them
/// without a default database).
pub fn table_filters(lines: &[String], db: &str) -> String {
    debug_assert!(lines.iter().all(|l| {
        l.chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._:/@+-".contains(c))
    }));
    let (line, probe) = if lines.is_empty() {
        ("false".to_string(), "false".to_string())
    } else {
        // Inside the map each filter is a quoted string: the names' quotes are escaped.
        let list = lines
            .iter()
            .map(|l| format!("\\'{l}\\'"))
            .collect::<Vec<_>>()
            .join(", ");
        (
            format!("has([{list}], line)"),
            format!("hasAny(lines, [{list}])"),
        )
    };
    format!(
        "{{'flows': '{line}', 'flows_1m': '{line}', 'flows_1h': '{line}', 'alerts': '{line}', \
         'policy_violations': '{line}', 'probe_health': '{probe}', \
         'alert_triage': 'alert_id IN (SELECT id FROM {db}.alerts WHERE {line})'}}"
    )
}

/// `ch` as `who` may use it: restricted to its lines, if it has a restriction.
pub fn client_for(ch: &clickhouse::Client, db: &str, who: &Principal) -> clickhouse::Client {
    match &who.lines {
        None => ch.clone(),
        Some(lines) => ch
            .clone()
            .with_setting("additional_table_filters", table_filters(lines, db)),
    }
}

/// How long a line restriction's probe set is reused before it is read again.
const PROBE_SCOPE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Line restrictions kept at most (there are as many as distinct `lines` lists in the
/// configuration).
const PROBE_SCOPES_MAX: usize = 256;

/// How long the empty set a failed read gives is reused (while ClickHouse is down every
/// poll of the health page would otherwise wait for the query to fail).
const PROBE_SCOPE_FAILED_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The probe sets of line restrictions, each with the time it expires.
pub(crate) type ProbeScopes = std::sync::Mutex<
    std::collections::HashMap<Vec<String>, (std::time::Instant, Arc<HashSet<String>>)>,
>;

/// The probe ids whose operational state (`/collector` metrics, `/enforce/status`) `who`
/// may see: the probes whose health reports of the last week name one of its lines, and
/// the probes and NetFlow exporters with flows of its lines in the last day (by flow
/// time; exporters send no health). `None` for a principal that sees every line. Both
/// reads go through the principal's row filter, so the set cannot name a probe of
/// another line only. Reused for [`PROBE_SCOPE_TTL`]; when ClickHouse cannot answer the
/// set is empty (nothing is shown rather than everything) for [`PROBE_SCOPE_FAILED_TTL`].
pub async fn visible_probes(st: &super::AppState, who: &Principal) -> Option<Arc<HashSet<String>>> {
    let lines = who.lines.as_ref()?;
    let mut key = lines.clone();
    key.sort();
    if let Some((expires, set)) = st
        .probe_scopes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        && std::time::Instant::now() < *expires
    {
        return Some(set.clone());
    }
    let sql = super::sql::Sql::new(
        "SELECT DISTINCT probe_id FROM (\
         SELECT probe_id FROM probe_health WHERE ts >= now() - INTERVAL 7 DAY UNION ALL \
         SELECT probe_id FROM flows WHERE first >= now() - INTERVAL 1 DAY) LIMIT 100000",
    );
    let set: HashSet<String> = match sql.rows(&st.db(who)).await {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|r| r.get("probe_id")?.as_str().map(str::to_string))
            .collect(),
        Err(e) => {
            tracing::warn!(user = %who.name, error = %e, "cannot read which probes carry the user's lines; showing none");
            return Some(remember(st, key, PROBE_SCOPE_FAILED_TTL, HashSet::new()));
        }
    };
    Some(remember(st, key, PROBE_SCOPE_TTL, set))
}

/// Keeps `set` as line list `key`'s probes for `ttl`.
fn remember(
    st: &super::AppState,
    key: Vec<String>,
    ttl: std::time::Duration,
    set: HashSet<String>,
) -> Arc<HashSet<String>> {
    let set = Arc::new(set);
    let mut cache = st.probe_scopes.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= PROBE_SCOPES_MAX {
        cache.clear();
    }
    cache.insert(key, (std::time::Instant::now() + ttl, set.clone()));
    set
}

/// Refuses (as not found) an alert or violation `id` outside `who`'s lines; nothing
/// to check for a principal who sees every line.
pub async fn check_finding(
    st: &super::AppState,
    who: &Principal,
    id: &str,
) -> super::error::ApiResult<()> {
    if who.all_lines() {
        return Ok(());
    }
    let mut sql = super::sql::Sql::default();
    sql.bind(
        "SELECT (SELECT count() FROM alerts WHERE id = ?) + (SELECT count() FROM policy_violations WHERE id = ?) AS n",
        [super::sql::Arg::Str(id.to_string()), super::sql::Arg::Str(id.to_string())],
    );
    let n = sql
        .row(&st.db(who))
        .await?
        .and_then(|r| r.get("n").and_then(serde_json::Value::as_u64))
        .unwrap_or(0);
    if n == 0 {
        return Err(super::error::ApiError::NotFound(format!("finding {id}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_each_line_table_and_nothing_for_no_lines() {
        let f = table_filters(&["hk-sg-1".into(), "ndpi-1kxun".into()], "tg");
        assert!(
            f.contains("'flows': 'has([\\'hk-sg-1\\', \\'ndpi-1kxun\\'], line)'"),
            "{f}"
        );
        for t in [
            "flows_1m",
            "flows_1h",
            "alerts",
            "policy_violations",
            "probe_health",
            "alert_triage",
        ] {
            assert!(f.contains(&format!("'{t}': '")), "{t}: {f}");
        }
        let none = table_filters(&[], "tg");
        assert!(none.contains("'flows': 'false'"), "{none}");
    }
}
