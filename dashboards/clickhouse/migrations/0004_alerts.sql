-- 0004_alerts: anomaly alerts and policy violations, written by the collector's
-- detection stage (collector/src/analysis). Both tables keep every state an alert or a
-- violation went through; ReplacingMergeTree(version) collapses them to the newest, so
-- read them with FINAL (or argMax by version).
--
-- No TTL: alerts and violations are the audit trail regulators ask for; they outlive the
-- raw flows (whose retention is `retention_days`). Each row carries its evidence flows.
--
-- Columns (alerts)
--   id            deterministic alert id (hash of kind, key and first window), the same
--                 on a replay of the same traffic and in every sink (JSONL, webhook, syslog).
--   version       grows with every update of an open alert (a merged repeat); the row with
--                 the largest version is the alert's current state.
--   kind          port_scan, host_sweep, syn_flood, volumetric, amplification,
--                 exfiltration, beaconing, dns_tunnel, icmp_tunnel.
--   src, dst      one address as text, or a description ("3712 sources") when many.
--   src_country.. enrichment of src/dst when they are single addresses ('' / 0 otherwise).
--   measured, threshold, unit   the value that crossed the threshold (largest seen).
--   evidence      JSON array of sample flow records (tidegate_common::record::FlowRecord).
--
-- Columns (policy_violations)
--   id            deterministic: hash of rule, kind, line, src, dst and first time.
--   rule_id, rule_name, rule_location (file:line), rule_text (the rule as written in the
--   policy file when the violation was raised: the policy may change later).
--   flows, packets, bytes  totals over the evidence flows merged into the violation.

CREATE TABLE IF NOT EXISTS {{database}}.alerts
(
    id            String,
    version       UInt64,
    kind          LowCardinality(String),
    severity      Enum8('info' = 0, 'low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4),
    first         DateTime64(9, 'UTC'),
    last          DateTime64(9, 'UTC'),
    src           String,
    dst           String,
    port          Nullable(UInt16),
    line          LowCardinality(String),
    key           String,
    src_country   LowCardinality(String) DEFAULT '',
    dst_country   LowCardinality(String) DEFAULT '',
    src_asn       UInt32 DEFAULT 0,
    dst_asn       UInt32 DEFAULT 0,
    measured      Float64,
    threshold     Float64,
    unit          LowCardinality(String),
    description   String,
    evidence      String,
    updated_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

CREATE TABLE IF NOT EXISTS {{database}}.policy_violations
(
    id            String,
    version       UInt64,
    rule_id       LowCardinality(String),
    rule_name     String,
    rule_location String,
    rule_text     String,
    kind          LowCardinality(String),
    severity      Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4),
    line          LowCardinality(String),
    src           String,
    dst           String,
    src_zone      LowCardinality(String) DEFAULT '',
    dst_zone      LowCardinality(String) DEFAULT '',
    src_country   LowCardinality(String) DEFAULT '',
    dst_country   LowCardinality(String) DEFAULT '',
    src_asn       UInt32 DEFAULT 0,
    dst_asn       UInt32 DEFAULT 0,
    first         DateTime64(9, 'UTC'),
    last          DateTime64(9, 'UTC'),
    flows         UInt64,
    packets       UInt64,
    bytes         UInt64,
    description   String,
    evidence      String,
    updated_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;
