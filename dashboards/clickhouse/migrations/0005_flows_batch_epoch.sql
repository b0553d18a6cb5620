-- 0005_flows_batch_epoch: the sequence epoch of the batch each flow came in.
--
-- A probe's batches are numbered within a sequence (probe_id, epoch): the epoch is drawn
-- when the probe's spool is created, so two spools of one probe (forensic replays, a
-- wiped disk) are two sequences. With it, (probe_id, batch_epoch, batch_seq) names the
-- one acknowledged probe batch a row came in. Rows stored before this migration read 0,
-- the epoch of a probe built before epochs.

ALTER TABLE {{database}}.flows
    ADD COLUMN IF NOT EXISTS batch_epoch UInt64 DEFAULT 0 AFTER probe_id;
