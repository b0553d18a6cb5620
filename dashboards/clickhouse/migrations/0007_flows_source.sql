-- 0007_flows_source: where each flow record came from, and the sampling behind its counts.
--
-- source: 'probe' (a tidegate probe), 'netflow_v5', 'netflow_v9' or 'ipfix' (a router's
-- export taken in by the collector's NetFlow/IPFIX listeners; probe_id is then
-- 'exporter:<address>' or the exporter's configured name).
-- sampling: the meter counted one packet in `sampling`; packets and bytes are already
-- scaled up by it (estimates when > 1). 1 = every packet. Rows stored before this
-- migration read 'probe' and 1.

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS source Enum8('probe' = 0, 'netflow_v5' = 1, 'netflow_v9' = 2, 'ipfix' = 3) DEFAULT 'probe';

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS sampling UInt32 DEFAULT 1;
