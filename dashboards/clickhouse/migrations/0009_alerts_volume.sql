-- 0009_alerts_volume: what an alert's incident amounted to.
--
-- packets, bytes: totals over the windows that reported, every source merged (one flood
--   from many sources is one alert with its start `first`, end `last`, peak `measured`
--   and these totals). NULL for detectors whose windows overlap (upload, dns_tunnel by
--   names: a sum would count traffic twice) or that count no volume (beaconing), and for
--   alerts stored before this migration.

ALTER TABLE {{database}}.alerts
    ADD COLUMN IF NOT EXISTS packets Nullable(UInt64);

ALTER TABLE {{database}}.alerts
    ADD COLUMN IF NOT EXISTS bytes Nullable(UInt64);
