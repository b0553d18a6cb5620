-- 0008_flows_app: application metadata from a flow's first packets (probe records).
--
-- dns_qname: the question name of the flow's first DNS message ('' when none); bytes
--   outside printable ASCII are written \DDD. dns_qtype: its type (0 when none).
-- dns_rcode: the response code when that message was an answer, -1 for a query or none.
-- tls_sni: the server name of the flow's TLS ClientHello ('' when none).
-- Searchable by suffix (`endsWith`) and substring; the bloom-filter skip indexes let a
-- name search skip most granules.

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS dns_qname String DEFAULT '';

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS dns_qtype UInt16 DEFAULT 0;

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS dns_rcode Int16 DEFAULT -1;

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS tls_sni String DEFAULT '';

ALTER TABLE {{database}}.flows
    ADD INDEX IF NOT EXISTS idx_dns_qname dns_qname TYPE ngrambf_v1(4, 4096, 2, 0) GRANULARITY 4;

ALTER TABLE {{database}}.flows
    ADD INDEX IF NOT EXISTS idx_tls_sni tls_sni TYPE ngrambf_v1(4, 4096, 2, 0) GRANULARITY 4;
