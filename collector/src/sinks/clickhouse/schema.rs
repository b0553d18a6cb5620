//! The migrations runner: brings the database to the schema of this build.

use clickhouse::Row;
use serde::Deserialize;

use super::{
    ClickHouseSink, SinkError,
    cluster::Layout,
    config::{ClusterConfig, Ddl},
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

/// One server the migrations run on.
struct Node {
    client: clickhouse::Client,
    url: String,
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
        // One server, a cluster through ON CLUSTER (both: the configured server), or every
        // node of a cluster in turn.
        let nodes: Vec<Node> = match &self.cfg.cluster {
            Some(c) if c.ddl == Ddl::EachNode => c
                .nodes
                .iter()
                .map(|url| Node {
                    client: self.admin.clone().with_url(url.trim_end_matches('/')),
                    url: url.clone(),
                })
                .collect(),
            _ => vec![Node {
                client: self.admin.clone(),
                url: self.cfg.url.clone(),
            }],
        };
        if let Some(c) = &self.cfg.cluster {
            self.check_cluster(c, nodes.len()).await?;
        }
        for node in nodes {
            self.migrate_node(&node, &mut report).await?;
        }
        report.version = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
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
            cluster = ?self.cfg.cluster.as_ref().map(|c| &c.name),
            "ClickHouse schema up to date"
        );
        Ok(report)
    }

    /// The layout of the database: on the configured cluster, or on one server.
    fn layout(&self) -> Layout<'_> {
        Layout::of(&self.cfg.database, self.cfg.cluster.as_ref())
    }

    /// Checks that the servers know the cluster and, when the collector runs the DDL on
    /// each node, that `nodes` lists all of them: a node left out would lack the tables
    /// its `Distributed` tables read.
    async fn check_cluster(&self, c: &ClusterConfig, listed: usize) -> Result<(), SinkError> {
        let n: u64 = self
            .deadline(
                "read system.clusters",
                self.admin
                    .query("SELECT count() FROM system.clusters WHERE cluster = ?")
                    .bind(&c.name)
                    .fetch_one::<u64>(),
            )
            .await?;
        if n == 0 {
            return Err(SinkError::SchemaDrift {
                database: self.cfg.database.clone(),
                detail: format!(
                    "the server at {} knows no cluster {:?} (system.clusters): define it in \
                     <remote_servers> of every node, or fix clickhouse.cluster.name",
                    self.cfg.url, c.name
                ),
            });
        }
        if c.ddl == Ddl::EachNode && n as usize != listed {
            return Err(SinkError::SchemaDrift {
                database: self.cfg.database.clone(),
                detail: format!(
                    "cluster {:?} has {n} nodes (system.clusters at {}) but \
                     clickhouse.cluster.nodes lists {listed}: list the HTTP URL of every node",
                    c.name, self.cfg.url
                ),
            });
        }
        Ok(())
    }

    /// Brings one node (or, with ON CLUSTER, the cluster through one node) to this build's
    /// schema.
    async fn migrate_node(
        &self,
        node: &Node,
        report: &mut MigrationReport,
    ) -> Result<(), SinkError> {
        let db = &self.cfg.database;
        let layout = self.layout();
        self.exec(node, &layout.create_database(), "create database")
            .await?;
        self.exec(
            node,
            &layout.create_schema_migrations(),
            "create schema_migrations",
        )
        .await?;
        let applied = self.applied(node).await?;
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
            if !report.already_applied.contains(&m.file) {
                report.already_applied.push(m.file);
            }
        }
        for m in MIGRATIONS {
            if applied.iter().any(|a| a.version == m.version) {
                continue;
            }
            self.apply(node, m).await?;
            if !report.applied.contains(&m.file) {
                report.applied.push(m.file);
            }
        }
        for change in self.reconcile_retention(node).await? {
            if !report.retention_changes.contains(&change) {
                report.retention_changes.push(change);
            }
        }
        Ok(())
    }

    /// Runs one DDL statement on `node`.
    async fn exec(&self, node: &Node, statement: &str, op: &str) -> Result<(), SinkError> {
        let op = self.on_node(node, op);
        self.deadline(&op, node.client.query_raw(statement).execute())
            .await
    }

    /// `op`, naming the node when the collector migrates several.
    fn on_node(&self, node: &Node, op: &str) -> String {
        if node.url == self.cfg.url {
            op.to_string()
        } else {
            format!("{op} on {}", node.url)
        }
    }

    async fn applied(&self, node: &Node) -> Result<Vec<Applied>, SinkError> {
        let q = format!(
            "SELECT version, any(name) AS name, arraySort(groupUniqArray(checksum)) AS checksums \
             FROM {}.schema_migrations GROUP BY version ORDER BY version",
            self.cfg.database
        );
        self.deadline(
            &self.on_node(node, "read schema_migrations"),
            node.client.query_raw(&q).fetch_all::<Applied>(),
        )
        .await
    }

    /// Applies one migration's statements (their cluster forms on a cluster), then records
    /// it.
    async fn apply(&self, node: &Node, m: &Migration) -> Result<(), SinkError> {
        let db = &self.cfg.database;
        let failed = |statement: usize, reason: String| SinkError::Migration {
            file: m.file,
            statement,
            source: Box::new(SinkError::Invalid {
                what: format!("migration file {}", m.file),
                reason,
            }),
        };
        let text = migrations::render(m.sql, db, self.cfg.retention_days)
            .map_err(|reason| failed(0, reason))?;
        let layout = self.layout();
        for (i, statement) in sql::statements(&text).into_iter().enumerate() {
            let forms = layout.statements(statement).map_err(|r| failed(i + 1, r))?;
            let op = format!("migration {} statement {}", m.file, i + 1);
            for form in forms {
                self.exec(node, &form, &op)
                    .await
                    .map_err(|e| SinkError::Migration {
                        file: m.file,
                        statement: i + 1,
                        source: Box::new(e),
                    })?;
            }
        }
        let record = node
            .client
            .query(&format!(
                "INSERT INTO {db}.schema_migrations (version, name, checksum) VALUES (?, ?, ?)"
            ))
            .bind(m.version)
            .bind(m.name)
            .bind(migrations::checksum(m.sql))
            .execute();
        self.deadline(
            &self.on_node(node, &format!("record migration {}", m.file)),
            record,
        )
        .await?;
        tracing::info!(database = %db, migration = m.file, node = %node.url, "applied ClickHouse migration");
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
    async fn reconcile_retention(&self, node: &Node) -> Result<Vec<String>, SinkError> {
        let db = &self.cfg.database;
        let layout = self.layout();
        let mut changes = Vec::new();
        let raw = migrations::RETENTION
            .iter()
            .map(|t| (t, self.cfg.retention_days));
        let rollup = migrations::ROLLUP_RETENTION
            .iter()
            .map(|t| (t, self.cfg.rollup_retention_days));
        for ((table, base), days) in raw.chain(rollup) {
            // On a cluster the TTL belongs to the local tables.
            let stored = layout.stored(table);
            let engine: Option<String> = self
                .deadline(
                    &self.on_node(node, &format!("read the definition of {db}.{stored}")),
                    node.client
                        .query(
                            "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?",
                        )
                        .bind(db)
                        .bind(&stored)
                        .fetch_optional::<String>(),
                )
                .await?;
            let Some(engine) = engine else {
                return Err(SinkError::SchemaDrift {
                    database: db.clone(),
                    detail: format!(
                        "table {stored} is missing although schema_migrations says it was \
                         created (dropped by hand?): restore it, or delete its migration's \
                         row from {db}.schema_migrations so it is created again"
                    ),
                });
            };
            let expected = migrations::ttl_clause(base, days);
            let has_ttl = engine.contains(" TTL ");
            let alter = |action: &str| layout.alter_stored(table, action);
            let statement = if days == 0 {
                has_ttl.then(|| (alter("REMOVE TTL"), "TTL removed".to_string()))
            } else {
                let current =
                    engine.contains(&format!("{expected} ")) || engine.ends_with(&expected);
                (!current).then(|| (alter(&format!("MODIFY {expected}")), expected.clone()))
            };
            if let Some((alter, what)) = statement {
                self.exec(node, &alter, &format!("set retention of {db}.{stored}"))
                    .await?;
                tracing::info!(table = %format!("{db}.{table}"), "retention changed: {what}");
                changes.push(format!("{table}: {what}"));
            }
        }
        Ok(changes)
    }
}
