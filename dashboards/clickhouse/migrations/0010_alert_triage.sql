-- 0010_alert_triage: analysts' triage of alerts, one row per action — the full history,
-- never updated in place. An alert's current state is its newest row (argMax by `at`);
-- an alert without rows is `new`.
--
--   alert_id   alerts.id
--   at         when the action was taken (nanoseconds, UTC, collector clock)
--   user       who took it (the console user or API token name)
--   state      new, acknowledged, in_progress, closed, false_positive
--   assignee   who works on it ('' when nobody)
--   note       the analyst's note of this action ('' when none)
--
-- No TTL: triage is part of the audit trail (like alerts).

CREATE TABLE IF NOT EXISTS {{database}}.alert_triage
(
    alert_id  String,
    at        DateTime64(9, 'UTC'),
    user      LowCardinality(String),
    state     Enum8('new' = 0, 'acknowledged' = 1, 'in_progress' = 2, 'closed' = 3, 'false_positive' = 4),
    assignee  String,
    note      String
)
ENGINE = MergeTree
ORDER BY (alert_id, at);
