-- 0012_saved_filters: flow filter expressions the console's users saved by name
-- (collector/src/api/saved_filters.rs). Each save or delete appends a row; the newest
-- row of an (owner, name) is the filter (read with argMax, so the answer does not wait
-- for merges; ReplacingMergeTree drops the older rows when parts merge).
--
--   owner    the user who saved it
--   name     its name (unique per owner)
--   q        the expression (valid when saved: the API parses it first)
--   shared   1: every user of the console sees it in their list (read-only for them)
--   deleted  1: the owner deleted it
--   at       when (milliseconds, UTC, collector clock)

CREATE TABLE IF NOT EXISTS {{database}}.saved_filters
(
    owner   String,
    name    String,
    q       String,
    shared  UInt8,
    deleted UInt8,
    at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(at)
ORDER BY (owner, name);
