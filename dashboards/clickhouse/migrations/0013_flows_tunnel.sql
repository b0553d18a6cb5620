-- 0013_flows_tunnel: the tunnel a decapsulated flow came through (probes with
-- tunnels = "inner"; the flow's src/dst/ports are then the inner packet's).
--
-- tunnel: 'gre', 'vxlan', 'gtp-u', 'ip-in-ip', or '' for a flow keyed by its outermost
--   header. tunnel_id: VXLAN network id, GTP-U TEID, GRE key or PPTP call id (0: none).
-- outer_src / outer_dst: the tunnel's endpoints (IPv4 as IPv4-mapped); '::' when the
--   probe did not see them.

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS tunnel LowCardinality(String) DEFAULT '';

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS tunnel_id UInt32 DEFAULT 0;

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS outer_src IPv6 DEFAULT '::';

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS outer_dst IPv6 DEFAULT '::';
