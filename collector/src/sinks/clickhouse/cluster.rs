//! The schema on a ClickHouse cluster: the single-server migrations, rewritten.
//!
//! One set of migration files serves both layouts. On a cluster each table `T` of a
//! migration becomes
//! - `T_local` on every node: the table as the file defines it, its engine made
//!   `Replicated…` when `replicated` (Keeper path `/clickhouse/tables/{shard}/<db>/T_local`,
//!   replica `{replica}`: the servers' macros), and
//! - `T`, a `Distributed` table over the `T_local` of every shard, sharded by the key in
//!   [`SHARDED`]: what the collector inserts into and the console reads, under the name a
//!   single server uses, so no query changes.
//!
//! A materialized view reads and writes the local tables of its own node (each shard rolls
//! up its own flows); a column change goes to both tables of a pair, anything else on a
//! table (an index, a TTL) to the local one. A statement of another form is refused with
//! its text, so a new migration cannot silently skip the cluster.
//!
//! Sharding keys keep together what must meet in one shard: the rows of one alert,
//! violation or saved filter (their tables are `ReplacingMergeTree`, and `FINAL` merges
//! within a shard), the triage of one alert, the reports of one probe. Flows spread by
//! line and flow key (the records of one conversation direction on one line land on one
//! shard; lines of any size spread over every shard).

use super::config::{ClusterConfig, Ddl};

/// Every table a migration creates, with its sharding key; `None`: never inserted into
/// directly (the rollups, filled by materialized views on each shard), so its
/// `Distributed` table has no key and refuses inserts.
pub const SHARDED: &[(&str, Option<&str>)] = &[
    (
        "flows",
        Some("cityHash64(line, src, dst, sport, dport, proto)"),
    ),
    ("flows_1m", None),
    ("flows_1h", None),
    ("probe_health", Some("cityHash64(probe_id)")),
    ("alerts", Some("cityHash64(id)")),
    ("policy_violations", Some("cityHash64(id)")),
    ("alert_triage", Some("cityHash64(alert_id)")),
    ("audit_log", Some("cityHash64(user)")),
    ("saved_filters", Some("cityHash64(owner, name)")),
];

/// The name of `table`'s local table on each node.
pub fn local(table: &str) -> String {
    format!("{table}_local")
}

/// How one database is laid out: on one server (no cluster: every statement as the file
/// has it), or on a cluster.
#[derive(Clone, Copy, Debug)]
pub struct Layout<'a> {
    /// Database.
    pub db: &'a str,
    /// Cluster name; none on a single server.
    pub cluster: Option<&'a str>,
    /// Replicated engines.
    pub replicated: bool,
    /// Statements carry `ON CLUSTER` (else they are run on each node).
    pub on_cluster: bool,
}

impl<'a> Layout<'a> {
    /// The layout of `db` on `c`.
    pub fn new(db: &'a str, c: &'a ClusterConfig) -> Self {
        Layout {
            db,
            cluster: Some(&c.name),
            replicated: c.replicated,
            on_cluster: c.ddl == Ddl::OnCluster,
        }
    }

    /// The layout of `db` on a cluster `c`, or on one server.
    pub fn of(db: &'a str, c: Option<&'a ClusterConfig>) -> Self {
        match c {
            Some(c) => Self::new(db, c),
            None => Layout {
                db,
                cluster: None,
                replicated: false,
                on_cluster: false,
            },
        }
    }

    /// ` ON CLUSTER <name>`, or nothing.
    pub fn on_cluster(&self) -> String {
        match self.cluster {
            Some(c) if self.on_cluster => format!(" ON CLUSTER {c}"),
            _ => String::new(),
        }
    }

    /// The table that stores `table`'s rows on a node: its local table on a cluster,
    /// itself on one server.
    pub fn stored(&self, table: &str) -> String {
        match self.cluster {
            Some(_) => local(table),
            None => table.to_string(),
        }
    }

    /// `CREATE DATABASE`.
    pub fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS {}{}",
            self.db,
            self.on_cluster()
        )
    }

    /// `schema_migrations`: with `ON CLUSTER` one table replicated to every node of the
    /// cluster (one Keeper path for all shards), so every collector reads one record;
    /// without, each node keeps the record of its own migrations.
    pub fn create_schema_migrations(&self) -> String {
        let engine = if self.on_cluster {
            format!(
                "ReplicatedMergeTree('/clickhouse/tables/all/{}/schema_migrations', \
                 '{{shard}}-{{replica}}')",
                self.db
            )
        } else {
            "MergeTree".to_string()
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {}.schema_migrations{} (\
             version UInt32, name String, checksum String, \
             applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) \
             ENGINE = {engine} ORDER BY version",
            self.db,
            self.on_cluster()
        )
    }

    /// `ALTER TABLE <the table storing table's rows> [ON CLUSTER] <action>` (a TTL change).
    pub fn alter_stored(&self, table: &str, action: &str) -> String {
        format!(
            "ALTER TABLE {}.{}{} {action}",
            self.db,
            self.stored(table),
            self.on_cluster()
        )
    }

    /// The statements of one rendered migration statement in this layout: itself on one
    /// server, its cluster forms on a cluster.
    pub fn statements(&self, statement: &str) -> Result<Vec<String>, String> {
        let Some(cluster) = self.cluster else {
            return Ok(vec![statement.to_string()]);
        };
        let body = skip_comments(statement);
        let db = self.db;
        let oc = self.on_cluster();
        if let Some(rest) = body.strip_prefix(&format!("CREATE TABLE IF NOT EXISTS {db}.")) {
            let (table, rest) = identifier(rest);
            let key = sharding_key(table)?;
            let engine_at = rest
                .find("ENGINE = ")
                .ok_or_else(|| format!("CREATE TABLE {table} without `ENGINE = `"))?;
            let (columns, engine_and_tail) = rest.split_at(engine_at);
            let engine_and_tail = &engine_and_tail["ENGINE = ".len()..];
            let (engine, tail) = engine(engine_and_tail)?;
            let engine = if self.replicated {
                replicated(
                    &engine,
                    &format!("/clickhouse/tables/{{shard}}/{db}/{}", local(table)),
                )?
            } else {
                engine
            };
            let local_t = local(table);
            let dist = format!(
                "CREATE TABLE IF NOT EXISTS {db}.{table}{oc} AS {db}.{local_t} \
                 ENGINE = Distributed({cluster}, {db}, {local_t}{})",
                key.map(|k| format!(", {k}")).unwrap_or_default()
            );
            return Ok(vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.{local_t}{oc}{columns}ENGINE = {engine}{tail}"
                ),
                dist,
            ]);
        }
        if let Some(rest) =
            body.strip_prefix(&format!("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}."))
        {
            let (view, rest) = identifier(rest);
            if rest.trim_start().starts_with("ON CLUSTER") {
                return Err(format!(
                    "materialized view {view}: ON CLUSTER belongs to the layout"
                ));
            }
            if !rest.trim_start().starts_with("TO ") {
                return Err(format!(
                    "materialized view {view} without `TO <table>`: a cluster needs its \
                     target to be a local table"
                ));
            }
            let mut text = rest.to_string();
            for (t, _) in SHARDED {
                text = replace_table(&text, db, t, &local(t));
            }
            return Ok(vec![format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view}{oc}{text}"
            )]);
        }
        if let Some(rest) = body.strip_prefix(&format!("ALTER TABLE {db}.")) {
            let (table, action) = identifier(rest);
            sharding_key(table)?;
            let local_t = local(table);
            let mut out = vec![format!("ALTER TABLE {db}.{local_t}{oc}{action}")];
            let column_change = [
                "ADD COLUMN",
                "MODIFY COLUMN",
                "DROP COLUMN",
                "RENAME COLUMN",
                "COMMENT COLUMN",
            ]
            .iter()
            .any(|a| action.trim_start().starts_with(a));
            if column_change {
                out.push(format!("ALTER TABLE {db}.{table}{oc}{action}"));
            }
            return Ok(out);
        }
        Err(format!(
            "no cluster form for this statement (the layout knows CREATE TABLE IF NOT EXISTS, \
             CREATE MATERIALIZED VIEW IF NOT EXISTS … TO, ALTER TABLE): {}",
            body.lines().next().unwrap_or_default()
        ))
    }
}

/// `table`'s sharding key, or an error when the layout does not know the table.
fn sharding_key(table: &str) -> Result<Option<&'static str>, String> {
    SHARDED
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            format!(
                "table {table} has no place in the cluster layout: add it with its sharding \
                 key to cluster::SHARDED"
            )
        })
}

/// `s` after leading whitespace and `--`/`/* */` comments.
fn skip_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix("--") {
            s = r.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(r) = s.strip_prefix("/*") {
            s = r.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return s;
        }
    }
}

/// The identifier at the start of `s`, and what follows it.
fn identifier(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    s.split_at(end)
}

/// The engine at the start of `s` (`Name` or `Name(args)`, parentheses balanced) and what
/// follows it.
fn engine(s: &str) -> Result<(String, &str), String> {
    let (name, rest) = identifier(s);
    if name.is_empty() {
        return Err(format!(
            "no engine name in {:?}",
            s.lines().next().unwrap_or_default()
        ));
    }
    if !rest.starts_with('(') {
        return Ok((name.to_string(), rest));
    }
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((format!("{name}{}", &rest[..=i]), &rest[i + 1..]));
                }
            }
            _ => {}
        }
    }
    Err(format!("engine {name}: unbalanced parentheses"))
}

/// The replicated form of a MergeTree-family engine: `XMergeTree(args)` →
/// `ReplicatedXMergeTree('<path>', '{replica}', args)`.
fn replicated(engine: &str, path: &str) -> Result<String, String> {
    let (name, args) = match engine.split_once('(') {
        Some((n, a)) => (n, a.strip_suffix(')').unwrap_or(a).trim()),
        None => (engine, ""),
    };
    if !name.ends_with("MergeTree") || name.starts_with("Replicated") {
        return Err(format!(
            "engine {name} has no replicated form in the layout"
        ));
    }
    let sep = if args.is_empty() { "" } else { ", " };
    Ok(format!(
        "Replicated{name}('{path}', '{{replica}}'{sep}{args})"
    ))
}

/// `text` with every reference `db.from` (a whole name) replaced by `db.to`.
fn replace_table(text: &str, db: &str, from: &str, to: &str) -> String {
    let pat = format!("{db}.{from}");
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(i) = rest.find(&pat) {
        let after = &rest[i + pat.len()..];
        let before_ok = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
        let after_ok = after
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        out.push_str(&rest[..i]);
        if before_ok && after_ok {
            out.push_str(&format!("{db}.{to}"));
        } else {
            out.push_str(&pat);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::super::{
        migrations::{MIGRATIONS, render},
        sql::statements,
    };
    use super::*;

    fn layout(replicated: bool, on_cluster: bool) -> Layout<'static> {
        Layout {
            db: "tg",
            cluster: Some("c3"),
            replicated,
            on_cluster,
        }
    }

    #[test]
    fn every_migration_statement_has_a_cluster_form() {
        for (replicated, on_cluster) in [(false, false), (true, true), (true, false)] {
            let l = layout(replicated, on_cluster);
            for m in MIGRATIONS {
                let text = render(m.sql, "tg", 30).unwrap();
                for st in statements(&text) {
                    let out = l
                        .statements(st)
                        .unwrap_or_else(|e| panic!("{}: {e}", m.file));
                    assert!(!out.is_empty());
                    for o in &out {
                        assert_eq!(o.contains(" ON CLUSTER c3"), on_cluster, "{o}");
                        assert_eq!(
                            o.contains("Replicated"),
                            replicated && o.contains("MergeTree"),
                            "{o}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_table_becomes_a_local_table_and_a_distributed_one() {
        let st = "-- c\nCREATE TABLE IF NOT EXISTS tg.alerts\n(\n    id String\n)\nENGINE = ReplacingMergeTree(version)\nORDER BY id";
        let out = layout(true, true).statements(st).unwrap();
        assert_eq!(
            out[0],
            "CREATE TABLE IF NOT EXISTS tg.alerts_local ON CLUSTER c3\n(\n    id String\n)\nENGINE = \
             ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tg/alerts_local', '{replica}', version)\nORDER BY id"
        );
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS tg.alerts ON CLUSTER c3 AS tg.alerts_local \
             ENGINE = Distributed(c3, tg, alerts_local, cityHash64(id))"
        );
        let out = layout(false, false).statements(st).unwrap();
        assert!(out[0].contains("ENGINE = ReplacingMergeTree(version)\nORDER BY id"));
        let plain = layout(true, false)
            .statements(
                "CREATE TABLE IF NOT EXISTS tg.audit_log (a UInt8) ENGINE = MergeTree ORDER BY a",
            )
            .unwrap();
        assert!(plain[0].contains("ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tg/audit_log_local', '{replica}') ORDER BY a"), "{}", plain[0]);
    }

    #[test]
    fn views_read_and_write_local_tables_and_alters_reach_both() {
        let out = layout(false, true)
            .statements("CREATE MATERIALIZED VIEW IF NOT EXISTS tg.flows_1m_mv TO tg.flows_1m AS SELECT 1 FROM tg.flows GROUP BY x")
            .unwrap();
        assert_eq!(
            out,
            [
                "CREATE MATERIALIZED VIEW IF NOT EXISTS tg.flows_1m_mv ON CLUSTER c3 TO tg.flows_1m_local AS SELECT 1 FROM tg.flows_local GROUP BY x"
            ]
        );
        let out = layout(false, false)
            .statements("ALTER TABLE tg.flows\n    ADD COLUMN IF NOT EXISTS x UInt8")
            .unwrap();
        assert_eq!(
            out,
            [
                "ALTER TABLE tg.flows_local\n    ADD COLUMN IF NOT EXISTS x UInt8",
                "ALTER TABLE tg.flows\n    ADD COLUMN IF NOT EXISTS x UInt8"
            ]
        );
        let out = layout(false, false)
            .statements("ALTER TABLE tg.flows ADD INDEX IF NOT EXISTS i x TYPE minmax")
            .unwrap();
        assert_eq!(
            out,
            ["ALTER TABLE tg.flows_local ADD INDEX IF NOT EXISTS i x TYPE minmax"]
        );
    }

    #[test]
    fn unknown_forms_and_tables_are_refused() {
        let l = layout(false, false);
        assert!(
            l.statements("DROP TABLE tg.flows")
                .unwrap_err()
                .contains("no cluster form")
        );
        assert!(
            l.statements(
                "CREATE TABLE IF NOT EXISTS tg.mystery (a UInt8) ENGINE = MergeTree ORDER BY a"
            )
            .unwrap_err()
            .contains("SHARDED")
        );
        assert!(
            l.statements("CREATE TABLE IF NOT EXISTS tg.flows (a UInt8) ENGINE = Log")
                .is_ok()
        );
        assert!(
            layout(true, false)
                .statements("CREATE TABLE IF NOT EXISTS tg.flows (a UInt8) ENGINE = Log")
                .unwrap_err()
                .contains("no replicated form")
        );
    }

    #[test]
    fn table_references_are_replaced_whole() {
        assert_eq!(
            replace_table(
                "FROM tg.flows, tg.flows_1m, xtg.flows, tg.flows)",
                "tg",
                "flows",
                "flows_local"
            ),
            "FROM tg.flows_local, tg.flows_1m, xtg.flows, tg.flows_local)"
        );
    }
}
