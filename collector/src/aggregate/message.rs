//! What travels from submitters to shard workers.

use std::sync::Arc;

use crossbeam_channel::Sender;
use tidegate_wire::record::FlowRecord;

use super::flows::{FlowCounters, MergedFlow};
use super::key::CKey;
use super::shard::ShardView;

/// A record in the form shards consume: no heap data (the line is an index into
/// [`Batch::lines`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rec {
    pub key: CKey,
    pub counters: FlowCounters,
}

impl Rec {
    pub fn of(r: &FlowRecord, line: u32) -> Rec {
        Rec {
            key: CKey::of(r, line),
            counters: FlowCounters::of(r),
        }
    }
}

/// One shard's part of a submitted batch.
pub(crate) struct Batch {
    /// The probe that sent the records.
    pub probe: Arc<str>,
    /// Line names the records' `key.line` index into (shared by the batch's shards).
    pub lines: Arc<[Arc<str>]>,
    /// Newest `last` of the whole submitted batch (event-time watermark).
    pub watermark: u64,
    pub recs: Vec<Rec>,
}

/// A message to a shard worker.
pub(crate) enum Msg {
    /// Records to aggregate.
    Batch(Batch),
    /// Reply once every earlier message has been processed.
    Flush(Sender<()>),
    /// Reply with the shard's partial view at event time `watermark`.
    Snapshot {
        watermark: u64,
        reply: Sender<ShardView>,
    },
    /// Reply with every merged flow held at event time `watermark`.
    Flows {
        watermark: u64,
        reply: Sender<Vec<MergedFlow>>,
    },
}
