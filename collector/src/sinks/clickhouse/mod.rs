//! ClickHouse sink: flow records and probe health into ClickHouse, exactly once.
//!
//! - [`ClickHouseSink::migrate`] creates the database and applies the versioned SQL files
//!   of `dashboards/clickhouse/migrations/` (embedded in the binary) that the database has
//!   not seen yet, recording each with its SHA-256 in `schema_migrations`; it refuses to
//!   run against an edited applied file or a newer schema, and brings the retention TTLs in
//!   line with `retention_days`.
//! - [`ClickHouseSink::insert_batch`] writes the records of one probe batch `(probe, seq)`
//!   to `flows` in RowBinary over HTTP, with `insert_deduplication_token = "<probe>:<seq>"`
//!   (`"<probe>:<seq>:<part>"` for each part of a batch bigger than `max_rows_per_insert`).
//!   `flows` and the rollup tables keep a deduplication window, so a retry of a batch
//!   ClickHouse already stored — the response was lost, the deadline expired after the
//!   server committed, the collector restarted — is dropped by the server: the collector's
//!   spool replays a batch until this call succeeds, and storage still sees it once.
//! - Errors say whether a retry can help ([`SinkError::is_retryable`], [`ErrorClass`]).
//!
//! Nothing here waits for the server to be up: [`ClickHouseSink::connect`] only checks
//! the configuration, and every call is bounded by `insert_timeout`.

mod alerts;
pub mod cluster;
mod config;
mod error;
mod insert;
mod metrics;
pub mod migrations;
mod row;
mod schema;
mod sql;
mod token;

use std::future::Future;

use clickhouse::Client;

pub use alerts::{AlertRow, ViolationRow};
pub use config::{ClickHouseConfig, ClusterConfig, Compression, Ddl, Dedup};
pub use error::{ErrorClass, SinkError};
pub use insert::GroupPart;
pub use metrics::{InsertLabels, Outcome, SinkMetrics, TableLabel};
pub use row::{FlowRow, ProbeHealthRow};
pub use schema::MigrationReport;

/// Writes flows and probe health into one ClickHouse database. Cheap to share: every
/// method takes `&self` and calls may run concurrently.
#[derive(Clone)]
pub struct ClickHouseSink {
    cfg: ClickHouseConfig,
    /// Without a default database: creates the database, runs the migrations.
    admin: Client,
    /// With `cfg.database` as default database: inserts.
    client: Client,
    /// Set once `flows`' columns matched [`FlowRow::COLUMN_TYPES`] (at migration).
    flows_checked: std::sync::Arc<std::sync::atomic::AtomicBool>,
    metrics: SinkMetrics,
    /// The last `flows` INSERT body's buffer, emptied, for the next one (see
    /// [`insert::SpareBody`]).
    spare_body: insert::SpareBody,
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl ClickHouseSink {
    /// Checks `cfg` and prepares the HTTP client. Does not contact the server: the sink may
    /// be created while ClickHouse is down. Errors are [`SinkError::Config`] naming the field.
    pub async fn connect(cfg: ClickHouseConfig, metrics: SinkMetrics) -> Result<Self, SinkError> {
        cfg.validate()?;
        let admin = cfg
            .server_client()
            .with_compression(match cfg.compression.for_url(&cfg.url) {
                config::Compression::None => clickhouse::Compression::None,
                config::Compression::Lz4 | config::Compression::Auto => {
                    clickhouse::Compression::Lz4
                }
            });
        let client = admin.clone().with_database(&cfg.database);
        Ok(ClickHouseSink {
            cfg,
            admin,
            client,
            flows_checked: Default::default(),
            metrics,
            spare_body: Default::default(),
        })
    }

    /// True if the server answers a query within `insert_timeout`.
    pub async fn ping(&self) -> bool {
        self.deadline("ping", self.admin.query("SELECT 1").fetch_one::<u8>())
            .await
            .is_ok_and(|one| one == 1)
    }

    /// The configuration the sink runs with.
    pub fn config(&self) -> &ClickHouseConfig {
        &self.cfg
    }

    /// The sink's metrics.
    pub fn metrics(&self) -> &SinkMetrics {
        &self.metrics
    }

    /// Runs a client call under `insert_timeout` and maps its error.
    async fn deadline<T>(
        &self,
        op: &str,
        call: impl Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T, SinkError> {
        match tokio::time::timeout(self.cfg.insert_timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SinkError::from_client(
                &self.cfg.url,
                self.cfg.insert_timeout,
                op,
                e,
            )),
            Err(_) => Err(SinkError::Timeout {
                url: self.cfg.url.clone(),
                op: op.to_string(),
                after: self.cfg.insert_timeout,
            }),
        }
    }
}
