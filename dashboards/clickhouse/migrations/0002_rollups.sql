-- 0002_rollups: traffic per minute and per hour, per line / direction / protocol /
-- country pair, kept up to date by materialized views on `flows`.
--
--   ts           window start (toStartOfMinute / toStartOfHour of the record's `first`:
--                a record counts entirely in the window its first packet fell in; records
--                are at most one active timeout, 60 s by default, long).
--   packets, bytes  sums over the records of the window.
--   flows        number of flow records (a long flow exported every active timeout counts
--                once per record).
--   src_country, dst_country  '' until enrichment fills flows.src_country/dst_country.
--
-- SummingMergeTree adds rows with the same key together when it merges parts, which it
-- does at its own pace: always read with sum() ... GROUP BY, e.g.
--   SELECT ts, line, sum(bytes) FROM tidegate.flows_1m
--   WHERE ts >= now() - INTERVAL 1 HOUR GROUP BY ts, line ORDER BY ts
--
-- Exactly once: the sink inserts with deduplicate_blocks_in_dependent_materialized_views
-- = 1, so a retried insert that `flows` drops as a duplicate is also dropped here; that
-- needs a deduplication window on these target tables too (without it the retry is
-- dropped from `flows` but counted again in the rollups).
--
-- Retention: flows_1m follows retention_days like `flows` ({{ttl_flows_1m}}); flows_1h is
-- the long-term record (a few thousand rows an hour) and is kept.
--
-- Key order: dashboards read a time range across all lines, so ts comes first.

CREATE TABLE IF NOT EXISTS {{database}}.flows_1m
(
    ts          DateTime('UTC'),
    line        LowCardinality(String),
    direction   Enum8('ingress' = 0, 'egress' = 1),
    proto       UInt8,
    src_country LowCardinality(String),
    dst_country LowCardinality(String),
    packets     UInt64,
    bytes       UInt64,
    flows       UInt64
)
ENGINE = SummingMergeTree((packets, bytes, flows))
PARTITION BY toDate(ts)
ORDER BY (ts, line, direction, proto, src_country, dst_country)
{{ttl_flows_1m}}
SETTINGS non_replicated_deduplication_window = 100000, ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.flows_1m_mv TO {{database}}.flows_1m AS
SELECT
    toStartOfMinute(toDateTime(first, 'UTC')) AS ts,
    line,
    direction,
    proto,
    src_country,
    dst_country,
    sum(packets) AS packets,
    sum(bytes) AS bytes,
    count() AS flows
FROM {{database}}.flows
GROUP BY ts, line, direction, proto, src_country, dst_country;

CREATE TABLE IF NOT EXISTS {{database}}.flows_1h
(
    ts          DateTime('UTC'),
    line        LowCardinality(String),
    direction   Enum8('ingress' = 0, 'egress' = 1),
    proto       UInt8,
    src_country LowCardinality(String),
    dst_country LowCardinality(String),
    packets     UInt64,
    bytes       UInt64,
    flows       UInt64
)
ENGINE = SummingMergeTree((packets, bytes, flows))
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, line, direction, proto, src_country, dst_country)
SETTINGS non_replicated_deduplication_window = 100000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.flows_1h_mv TO {{database}}.flows_1h AS
SELECT
    toStartOfHour(toDateTime(first, 'UTC')) AS ts,
    line,
    direction,
    proto,
    src_country,
    dst_country,
    sum(packets) AS packets,
    sum(bytes) AS bytes,
    count() AS flows
FROM {{database}}.flows
GROUP BY ts, line, direction, proto, src_country, dst_country;
