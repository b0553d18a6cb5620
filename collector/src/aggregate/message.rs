//! What travels from submitters to shard workers.

use std::sync::Arc;

use crossbeam_channel::Sender;
use tidegate_wire::record::FlowRecord;

use super::flows::MergedFlow;
use super::key::CKey;
use super::shard::ShardView;

/// A record in the form shards consume: no heap data (the line is an index into
/// [`Batch::lines`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rec {
    pub key: CKey,
    pub packets: u64,
    pub bytes: u64,
    pub first: u64,
    pub last: u64,
    pub tcp_flags: u16,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

impl Rec {
    pub fn of(r: &FlowRecord, line: u32) -> Rec {
        Rec {
            key: CKey::of(r, line),
            packets: r.packets,
            bytes: r.bytes,
            first: r.first,
            last: r.last,
            tcp_flags: r.tcp_flags,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
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
