-- 0003_probe_health: what each probe reports about itself, one row per health report.
--
--   ts             when the probe took the report (nanoseconds, UTC, probe clock).
--   probe_id       the authenticated probe identity (from its certificate).
--   counters       the probe's counters by name (packets, parse errors per reason,
--                  map-full fallbacks, drops...): cumulative since the probe started.
--   spool_bytes, spool_batches  what the probe holds in its own spool, not yet
--                  acknowledged by the collector.
--   lines          the lines (interfaces) the probe captures on.
--   received_at    when ClickHouse stored the row.
--
-- Retention follows retention_days ({{ttl_probe_health}}). Health inserts carry the
-- token '<probe>:health:<ts>', so a retried report is stored once.

CREATE TABLE IF NOT EXISTS {{database}}.probe_health
(
    ts            DateTime64(9, 'UTC'),
    probe_id      LowCardinality(String),
    counters      Map(LowCardinality(String), UInt64),
    spool_bytes   UInt64,
    spool_batches UInt64,
    lines         Array(LowCardinality(String)),
    received_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (probe_id, ts)
{{ttl_probe_health}}
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;
