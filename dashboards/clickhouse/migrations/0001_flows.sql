-- 0001_flows: the raw flow records, one row per record a probe exported
-- (tidegate_common::record::FlowRecord), written by the collector's ClickHouse sink.
--
-- Placeholders, filled by the collector at start-up (never edit an applied file: the
-- collector keeps a SHA-256 of every applied migration and refuses to start if one changed;
-- add a new NNNN_name.sql instead):
--   {{database}}   the configured database (default `tidegate`)
--   {{ttl_flows}}  `TTL toDate(first) + toIntervalDay(<retention_days>)`, or nothing when
--                  retention_days = 0; a later change of retention_days is applied with
--                  ALTER TABLE ... MODIFY/REMOVE TTL, not by editing this file.
--
-- Columns
--   received_at        when ClickHouse stored the row (server clock).
--   probe_id, batch_seq the probe and the sequence number of the batch the record came in;
--                      with them every row traces back to one acknowledged probe batch.
--   ip_version         4 or 6: IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d) in the
--                      IPv6 columns, and ip_version keeps an IPv4 flow apart from an IPv6
--                      packet that really carried a mapped address.
--   vlan               outer VLAN id, NULL when the frame was untagged (0 is a valid id:
--                      priority-tagged frames).
--   icmp_type/code     NULL for every protocol other than ICMP (1) and ICMPv6 (58).
--   first, last        first/last packet, nanoseconds, UTC.
--   *_country, *_asn, *_zone  filled by enrichment; '' / 0 until then.
--   src_text, dst_text (ALIAS, computed at query time, not stored) the address as text:
--                      dotted quad for IPv4 flows, RFC 5952 text for IPv6, so analysts can
--                      write  WHERE src_text = '192.0.2.1'  or
--                      WHERE isIPAddressInRange(dst_text, '10.0.0.0/8').  Filtering on the
--                      IPv6 column itself uses the index:  WHERE src = toIPv6('192.0.2.1').
--
-- Layout
--   PARTITION BY toDate(first): one partition per day of traffic, so a time-range query
--   reads only its days and retention drops whole parts (ttl_only_drop_parts).
--   ORDER BY (line, toStartOfHour(first), src, dst, first): analysts ask "this line, this
--   time range, this address". The few lines come first, so a line filter selects a
--   contiguous range and a query without one still skips by hour within each line; the
--   hour bucket keeps a time range contiguous; src inside the hour makes a source-address
--   lookup read a handful of granules; dst then first keep the rows of one conversation
--   together and time-ordered. A bloom filter on dst (and src, for queries that skip the
--   line or hour) serves destination lookups. The primary index holds only the first
--   three key columns (enough to prune; smaller in memory).
--
-- Settings
--   non_replicated_deduplication_window = 100000: the sink sends every insert with
--   insert_deduplication_token = '<probe>:<seq>[:<part>]', and a plain MergeTree only
--   deduplicates when it remembers the block ids of its last N inserted blocks. A retry
--   comes right after the failed attempt (the spool replays in order; while ClickHouse is
--   down nothing else is inserted), so the window only has to cover the blocks inserted
--   between an attempt and its retry. 100000 blocks is hours of inserts at tens of batches
--   per second, and costs about 10 MB of memory (one ~45-byte block id per block) plus a
--   small deduplication log on disk.
--   ttl_only_drop_parts = 1: expire whole parts (every part lies inside one day) instead of
--   rewriting them row by row.

CREATE TABLE IF NOT EXISTS {{database}}.flows
(
    received_at DateTime64(3, 'UTC') DEFAULT now64(3),
    probe_id    LowCardinality(String),
    batch_seq   UInt64,
    line        LowCardinality(String),
    ifindex     UInt32,
    direction   Enum8('ingress' = 0, 'egress' = 1),
    ip_version  UInt8,
    src         IPv6,
    dst         IPv6,
    sport       UInt16,
    dport       UInt16,
    proto       UInt8,
    vlan        Nullable(UInt16),
    packets     UInt64,
    bytes       UInt64,
    first       DateTime64(9, 'UTC'),
    last        DateTime64(9, 'UTC'),
    tcp_flags   UInt16,
    icmp_type   Nullable(UInt8),
    icmp_code   Nullable(UInt8),
    src_country LowCardinality(String) DEFAULT '',
    dst_country LowCardinality(String) DEFAULT '',
    src_asn     UInt32 DEFAULT 0,
    dst_asn     UInt32 DEFAULT 0,
    src_zone    LowCardinality(String) DEFAULT '',
    dst_zone    LowCardinality(String) DEFAULT '',
    src_text    String ALIAS if(ip_version = 4, replaceOne(IPv6NumToString(src), '::ffff:', ''), IPv6NumToString(src)),
    dst_text    String ALIAS if(ip_version = 4, replaceOne(IPv6NumToString(dst), '::ffff:', ''), IPv6NumToString(dst)),
    INDEX dst_bloom dst TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX src_bloom src TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toDate(first)
PRIMARY KEY (line, toStartOfHour(first), src)
ORDER BY (line, toStartOfHour(first), src, dst, first)
{{ttl_flows}}
SETTINGS non_replicated_deduplication_window = 100000, ttl_only_drop_parts = 1;
