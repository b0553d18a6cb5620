//! Where capture paths hand their flows: [`FlowSink`].
//!
//! Packet-by-packet paths (AF_PACKET, the kernel's fallback ring buffer) only
//! `observe`. The eBPF flow table counts in kernel memory, and copying every flow's
//! growth out at every sweep costs a hash-table update per flow per sweep — at 100 000
//! flows and 1 s sweeps that was most of the probe's CPU. A sink that keeps records
//! (the [`crate::table::FlowTable`]) tells the capture path its export timeouts; the
//! path then *holds* each flow's record open (no timeout applies to a held record) and
//! hands the counts over only when the record is due — active timeout, idle timeout,
//! the flow leaving the kernel table, shutdown — with `release`.

use tidegate_common::{FlowKey, FlowStats};

/// Receives flow counters from a capture path.
pub trait FlowSink {
    /// Adds counters observed for `key`.
    fn observe(&mut self, key: &FlowKey, s: &FlowStats);

    /// The export timeouts `(active, idle)` in ns, for a sink that keeps records and
    /// lets capture paths hold them; `None` (the default): hand every flow's growth
    /// over at each sweep.
    fn timeouts_ns(&self) -> Option<(u64, u64)> {
        None
    }

    /// A capture path goes on counting `key` in its own memory: its record stays open,
    /// whatever its timeouts, until the matching [`FlowSink::release`]. Returns the
    /// first packet (Unix-epoch ns) of what the record already holds, if anything (the
    /// flow left the kernel table and came back before its record was due).
    fn hold(&mut self, _key: &FlowKey) -> Option<u64> {
        None
    }

    /// Ends one hold of `key`, adding what the capture path counted since it began
    /// (`s.packets` may be 0: nothing new). `due`: the record's active or idle timeout
    /// has passed by the capture path's clock — it goes out at the next expiry, whatever
    /// the sink's own clock says.
    fn release(&mut self, key: &FlowKey, s: &FlowStats, _due: bool) {
        self.observe(key, s);
    }
}

/// A closure receives every flow's growth at every sweep.
impl<F: FnMut(&FlowKey, &FlowStats)> FlowSink for F {
    fn observe(&mut self, key: &FlowKey, s: &FlowStats) {
        self(key, s)
    }
}
