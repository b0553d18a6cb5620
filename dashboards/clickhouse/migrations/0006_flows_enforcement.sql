-- 0006_flows_enforcement: what the line's XDP enforcement did to each flow.
--
-- verdict: 'pass' (no drop rule matched, or no policy), 'would_drop' (a drop rule matched
-- on a line in monitor mode: counted and passed), 'dropped' (a drop rule matched on a
-- line in enforce mode: the packets were dropped at the line, and still accounted here).
-- enforce_rule: the policy rule id behind the verdict ('manual-block' for blocks made
-- through the API), empty for 'pass'. Rows stored before this migration read 'pass'.

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS verdict Enum8('pass' = 0, 'would_drop' = 1, 'dropped' = 2) DEFAULT 'pass';

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS enforce_rule LowCardinality(String) DEFAULT '';

-- policy_violations.action: what the line did to the offending traffic — 'dropped',
-- 'would_drop' (monitor mode), or '' (the rule only alerts, or the line did not judge it).
ALTER TABLE {{database}}.policy_violations
    ADD COLUMN IF NOT EXISTS action LowCardinality(String) DEFAULT '';
