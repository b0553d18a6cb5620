//! The collector's write-ahead spool: every batch a probe sends is appended here and
//! fsync'd before the probe gets its acknowledgement. Downstream (aggregation,
//! ClickHouse) reads the spool in order and commits its position once the data is
//! stored; a crash replays from the last committed position, and ClickHouse's per-batch
//! deduplication token makes the replay harmless. While ClickHouse is unreachable the
//! spool simply grows (bounded: when full, appends wait, which makes probes spool; past
//! half full, a probe over its equal share waits first, see [`shares`]).
//!
//! Layout of the directory:
//! - `NNNNNNNNNNNNNNNNNNNN.seg` — segments of entries, written in order;
//! - `cursor` — the committed read position (segment, offset), replaced atomically;
//! - `probes.json` — highest sequence number stored per probe sequence `(probe id,
//!   epoch)` (for deduplication after the segments holding them are deleted), replaced
//!   atomically before deletion.

mod entry;
mod error;
mod reader;
mod shares;
pub(crate) mod state;
mod streams;
mod writer;

pub use entry::Entry;

/// Bytes a spool entry adds to the batch it holds, at most (header, probe id, epoch,
/// sequence number): a segment must hold the largest frame plus this.
pub const MAX_ENTRY_OVERHEAD: usize = entry::HEADER + 2 + tidegate_wire::MAX_PROBE_ID + 8 + 8;
pub use error::SpoolError;
pub use reader::{SpoolCommitter, SpoolReader};
pub use shares::Holder;
pub use state::Intent;
pub use streams::{MAX_EPOCHS_PER_PROBE, Stream, Streams};
pub use writer::{Spool, SpoolConfig};

/// A position in the spool: segment number and byte offset in it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    /// Segment number.
    pub segment: u64,
    /// Byte offset inside the segment.
    pub offset: u64,
}

fn segment_name(n: u64) -> String {
    format!("{n:020}.seg")
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, directory fsync).
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = tidegate_base::durable::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
