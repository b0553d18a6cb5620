-- 0011_audit_log: who did what at the console and API — logins (and refused ones),
-- logouts, triage actions, exports, manual blocks placed and lifted. One row per
-- action, never updated; written before the action's answer (an export or a block
-- whose record cannot be stored is refused).
--
--   at       when (milliseconds, UTC, collector clock)
--   user     the console user or API token name (for a refused login: the name tried)
--   action   login, login_refused, logout, triage, export, block, unblock
--   client   the client's address ('' when unknown)
--   target   what it acted on (alert id, exported view, blocked range or block id)
--   detail   more, as text (the new triage state, the export's format and filters, ...)
--
-- No TTL: the audit trail is kept like alerts.

CREATE TABLE IF NOT EXISTS {{database}}.audit_log
(
    at      DateTime64(3, 'UTC'),
    user    String,
    action  LowCardinality(String),
    client  String,
    target  String,
    detail  String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, user);
