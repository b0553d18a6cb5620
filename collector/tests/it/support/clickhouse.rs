//! Shared by the `clickhouse_*` tests: the sink's configuration and a sink whose schema is
//! migrated on a throwaway ClickHouse.

use std::time::Duration;

use tidegate_collector::sinks::clickhouse::{ClickHouseConfig, ClickHouseSink, SinkMetrics};
use tidegate_testkit::TestClickHouse;

/// The sink's configuration for `database` at `url`, keeping `retention_days` of data,
/// with a 10 s deadline per statement.
pub fn config(url: String, database: &str, retention_days: u32) -> ClickHouseConfig {
    ClickHouseConfig {
        url,
        database: database.to_string(),
        retention_days,
        insert_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

/// A sink with `config`, its schema migrated.
pub async fn migrated(config: ClickHouseConfig) -> ClickHouseSink {
    let s = ClickHouseSink::connect(config, SinkMetrics::default())
        .await
        .unwrap();
    s.migrate().await.unwrap();
    s
}

/// A new ClickHouse and a migrated sink on it writing to `database`, at most
/// `max_rows_per_insert` rows per INSERT (20 s each), flows kept forever: the corpus
/// captures are from 2016 and 2021, with a retention they would expire.
pub async fn start_sink(
    database: &str,
    max_rows_per_insert: usize,
) -> (TestClickHouse, ClickHouseSink) {
    let ch = TestClickHouse::start();
    let s = migrated(ClickHouseConfig {
        max_rows_per_insert,
        insert_timeout: Duration::from_secs(20),
        ..config(ch.url(), database, 0)
    })
    .await;
    (ch, s)
}
