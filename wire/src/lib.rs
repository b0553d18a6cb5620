//! Flow records ([`FlowRecord`], the probe's output contract) and the probe → collector
//! wire protocol (version [`PROTOCOL_VERSION`]).
//!
//! A connection is a TLS stream of frames. A frame is
//!
//! ```text
//! length u32 (big-endian; bytes after this field: 1 + payload) | type u8 | payload
//! ```
//!
//! bounded by the receiver's maximum frame size ([`DEFAULT_MAX_FRAME`] by default). The
//! conversation:
//!
//! ```text
//! probe                                   collector
//!   Hello{version, probe_id, epoch, software} ─►
//!                                     ◄─  HelloAck{version, last_acked_seq} | Reject{reason}
//!   Batch (encode_batch bytes)        ─►
//!   Batch ...  (a window in flight)   ─►
//!                                     ◄─  Ack{seq, duplicate}   (only once the batch is durable)
//!                                     ◄─  Error{reason}         (then the collector closes)
//!                                     ◄─  Policy (an EnforcePlan; any time, to enforcing probes)
//!   EnforceStatus{version, failed?}   ─►  (after each Policy, and as a heartbeat)
//! ```
//!
//! A probe's batches form sequences named `(probe_id, epoch)`: the epoch is drawn when
//! the probe's spool is created, so a probe that starts over with another spool starts
//! a new sequence instead of reusing numbers the collector already holds. `HelloAck`
//! answers for the connection's sequence.
//!
//! Batches ([`Batch`], [`encode_batch`], [`decode_batch`]) have their own versioned
//! binary layout, zstd-compressed; the collector stores exactly the bytes it received,
//! so [`decode_batch`] validates everything and never panics on garbage.
//!
//! Numbers are big-endian everywhere. Strings are UTF-8 with a `u32` length prefix.

#![deny(missing_docs)]

mod batch;
mod codec;
pub mod enforce;
mod error;
mod frame;
mod message;
mod name;
mod probe_id;
pub mod record;

#[cfg(test)]
mod tests;

pub use batch::{
    BATCH_BODY_TARGET, BATCH_FORMAT, Batch, BatchHeader, MAX_BATCH_BODY, MAX_BATCH_HEADER,
    MAX_BATCH_RECORDS, MAX_HEALTH_ITEMS, ProbeHealth, decode_batch, encode_batch, encode_batch_as,
    peek_batch_header, record_body_bytes, set_batch_seq,
};
pub use enforce::{EnforcePlan, EnforceStatus};
pub use error::WireError;
pub use frame::{
    Frame, FrameStart, encode_frame, read_frame, read_frame_async, read_frame_head_async,
    read_frame_rest_async, read_frame_start_async, read_message, read_message_async, write_frame,
    write_frame_async, write_message, write_message_async,
};
pub use message::{Ack, CAP_ENFORCE, Hello, HelloAck, Message, MessageType};
pub use name::Name;
pub use probe_id::{MAX_PROBE_ID, probe_id_problem};
pub use record::{FlowRecord, FlowSource, Verdict};

/// The protocol version this build speaks (sent in `Hello` and `HelloAck`). Version 2
/// added the sequence epoch to `Hello` and to batches; version 3 the probe's
/// capabilities in `Hello` and the `Policy` / `EnforceStatus` messages.
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest version still accepted (a collector answers a version-2 probe in kind).
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// Default upper bound of a frame's length field (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
