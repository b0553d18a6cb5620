//! Admission at accept: a cap on open connections, and on connections still in their
//! handshake (TLS, `Hello`) in total and per IP address ([`tidegate_base::limits::Slots`]),
//! so unauthenticated peers cannot use up the collector's file descriptors, memory or
//! handshake CPU. A connection that finishes its handshake gives its handshake slot back.

pub(crate) use tidegate_base::limits::{
    Refusal, SlotPermit as HandshakePermit, Slots as Handshakes,
};

/// The `probes_rejected` reason of a refused handshake slot.
pub(crate) fn reason(r: Refusal) -> &'static str {
    match r {
        Refusal::Total => "too_many_handshakes",
        Refusal::PerAddress => "too_many_handshakes_from_address",
    }
}
