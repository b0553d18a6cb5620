//! The migrations runner: brings the database to the schema of this build.

use clickhouse::Row;
use serde::Deserialize;

use super::{
    ClickHouseSink, SinkError,
    migrations::{self, MIGRATIONS, Migration},
    sql,
};

/// What [`ClickHouseSink::migrate`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Database migrated.
    pub database: String,
    /// Files applied by this call, in order.
    pub applied: Vec<&'static str>,
    /// Files the database already had (checksums verified).
    pub already_applied: Vec<&'static str>,
    /// Highest migration version now applied.
    pub version: u32,
    /// Retention changes made to bring the TTLs in line with `retention_days`, e.g.
    /// `flows: TTL toDate(first) + toIntervalDay(7)` or `flows: TTL removed`.
    pub retention_changes: Vec<String>,
}

/// A migration as recorded in `schema_migrations` (several rows of one version may exist
/// when two collectors migrated at once; they must agree).
#[derive(Debug, Row, Deserialize)]
struct Applied {
    version: u32,
    name: String,
    checksums: Vec<String>,
}

impl ClickHouseSink {
    /// Creates the database and the `schema_migrations` table if needed, checks the
    /// migrations already applied against this build (an edited file or an unknown newer
    /// migration is an error, before anything changes), applies the missing ones in order,
    /// and sets the TTLs of the retention tables from `retention_days`. Idempotent; safe to
    /// run at every start. Statements are `IF NOT EXISTS`, so a migration interrupted half
    /// way is completed by the next run.
    pub async fn migrate(&self) -> Result<MigrationReport, SinkError> {
        let db = &self.cfg.database;
        let mut report = MigrationReport {
            database: db.clone(),
            ..Default::default()
        };
        self.exec(
            &format!("CREATE DATABASE IF NOT EXISTS {db}"),
            "create database",
        )
        .await?;
        self.exec(
            &format!(
                "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (\
                 version UInt32, name String, checksum String, \
                 applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) \
                 ENGINE = MergeTree ORDER BY version"
            ),
            "create schema_migrations",
        )
        .await?;
        let applied = self.applied().await?;
        for a in &applied {
            let Some(m) = MIGRATIONS.iter().find(|m| m.version == a.version) else {
                return Err(SinkError::MigrationUnknown {
                    database: db.clone(),
                    version: a.version,
                    name: a.name.clone(),
                });
            };
            let embedded = migrations::checksum(m.sql);
            if a.checksums != [embedded.clone()] {
                return Err(SinkError::MigrationChanged {
                    database: db.clone(),
                    version: m.version,
                    name: m.name.to_string(),
                    applied: a.checksums.join(", "),
                    embedded,
                });
            }
            report.already_applied.push(m.file);
        }
        for m in MIGRATIONS {
            if applied.iter().any(|a| a.version == m.version) {
                continue;
            }
            self.apply(m).await?;
            report.applied.push(m.file);
        }
        report.version = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
        report.retention_changes = self.reconcile_retention().await?;
        // Inserts cache the table layout; it may have changed.
        self.client.clear_cached_metadata().await;
        self.check_flow_columns().await?;
        self.metrics
            .migration_version
            .set(i64::from(report.version));
        tracing::info!(
            database = %db,
            version = report.version,
            applied = ?report.applied,
            retention_changes = ?report.retention_changes,
            "ClickHouse schema up to date"
        );
        Ok(report)
    }

    /// Runs one DDL statement.
    async fn exec(&self, statement: &str, op: &str) -> Result<(), SinkError> {
        self.deadline(op, self.admin.query_raw(statement).execute())
            .await
    }

    async fn applied(&self) -> Result<Vec<Applied>, SinkError> {
        let q = format!(
            "SELECT version, any(name) AS name, arraySort(groupUniqArray(checksum)) AS checksums \
             FROM {}.schema_migrations GROUP BY version ORDER BY version",
            self.cfg.database
        );
        self.deadline(
            "read schema_migrations",
            self.admin.query_raw(&q).fetch_all::<Applied>(),
        )
        .await
    }

    /// Applies one migration's statements, then records it.
    async fn apply(&self, m: &Migration) -> Result<(), SinkError> {
        let db = &self.cfg.database;
        let text = migrations::render(m.sql, db, self.cfg.retention_days).map_err(|reason| {
            SinkError::Migration {
                file: m.file,
                statement: 0,
                source: Box::new(SinkError::Invalid {
                    what: format!("migration file {}", m.file),
                    reason,
                }),
            }
        })?;
        for (i, statement) in sql::statements(&text).into_iter().enumerate() {
            let op = format!("migration {} statement {}", m.file, i + 1);
            self.exec(statement, &op)
                .await
                .map_err(|e| SinkError::Migration {
                    file: m.file,
                    statement: i + 1,
                    source: Box::new(e),
                })?;
        }
        let record = self
            .admin
            .query(&format!(
                "INSERT INTO {db}.schema_migrations (version, name, checksum) VALUES (?, ?, ?)"
            ))
            .bind(m.version)
            .bind(m.name)
            .bind(migrations::checksum(m.sql))
            .execute();
        self.deadline(&format!("record migration {}", m.file), record)
            .await?;
        tracing::info!(database = %db, migration = m.file, "applied ClickHouse migration");
        Ok(())
    }

    /// Checks, once, that `flows` has every column the sink writes with the type it
    /// writes ([`FlowRow::COLUMN_TYPES`]); from then on flows go as plain RowBinary
    /// without the client's per-row validation. A mismatch (a column altered by hand)
    /// stops the start with the column named.
    async fn check_flow_columns(&self) -> Result<(), SinkError> {
        let db = &self.cfg.database;
        let have: Vec<(String, String)> = self
            .deadline(
                "read the columns of flows",
                self.admin
                    .query(
                        "SELECT name, type FROM system.columns \
                         WHERE database = ? AND table = 'flows'",
                    )
                    .bind(db)
                    .fetch_all::<(String, String)>(),
            )
            .await?;
        for (name, want) in super::FlowRow::COLUMN_TYPES {
            let found = have
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.as_str());
            if found != Some(*want) {
                self.flows_checked
                    .store(false, std::sync::atomic::Ordering::Release);
                return Err(SinkError::SchemaDrift {
                    database: db.clone(),
                    detail: format!(
                        "column flows.{name} is {} where this collector writes {want} (altered \
                         by hand?): restore it, or migrate with a matching collector",
                        found.map_or("missing".to_string(), |t| format!("of type {t}"))
                    ),
                });
            }
        }
        self.flows_checked
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Makes the TTL of each retention table match `retention_days`; returns the changes.
    async fn reconcile_retention(&self) -> Result<Vec<String>, SinkError> {
        let db = &self.cfg.database;
        let mut changes = Vec::new();
        let raw = migrations::RETENTION
            .iter()
            .map(|t| (t, self.cfg.retention_days));
        let rollup = migrations::ROLLUP_RETENTION
            .iter()
            .map(|t| (t, self.cfg.rollup_retention_days));
        for ((table, base), days) in raw.chain(rollup) {
            let engine: Option<String> = self
                .deadline(
                    &format!("read the definition of {db}.{table}"),
                    self.admin
                        .query(
                            "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?",
                        )
                        .bind(db)
                        .bind(table)
                        .fetch_optional::<String>(),
                )
                .await?;
            let Some(engine) = engine else {
                return Err(SinkError::SchemaDrift {
                    database: db.clone(),
                    detail: format!(
                        "table {table} is missing although schema_migrations says it was \
                         created (dropped by hand?): restore it, or delete its migration's \
                         row from {db}.schema_migrations so it is created again"
                    ),
                });
            };
            let expected = migrations::ttl_clause(base, days);
            let has_ttl = engine.contains(" TTL ");
            let statement = if days == 0 {
                has_ttl.then(|| {
                    (
                        format!("ALTER TABLE {db}.{table} REMOVE TTL"),
                        "TTL removed".to_string(),
                    )
                })
            } else {
                let current =
                    engine.contains(&format!("{expected} ")) || engine.ends_with(&expected);
                (!current).then(|| {
                    (
                        format!("ALTER TABLE {db}.{table} MODIFY {expected}"),
                        expected.clone(),
                    )
                })
            };
            if let Some((alter, what)) = statement {
                self.exec(&alter, &format!("set retention of {db}.{table}"))
                    .await?;
                tracing::info!(table = %format!("{db}.{table}"), "retention changed: {what}");
                changes.push(format!("{table}: {what}"));
            }
        }
        Ok(changes)
    }
}
