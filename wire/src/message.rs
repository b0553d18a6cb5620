//! The protocol's messages and their payload layouts.
//!
//! | type | message  | payload                                                          |
//! |------|----------|------------------------------------------------------------------|
//! | 1    | Hello    | `version u16, probe_id str, epoch u64, software str`, and from    |
//! |      |          | version 3 `capabilities u32` (bit 0: enforces policies)          |
//! | 2    | HelloAck | `version u16, has_seq u8 (0/1), last_acked_seq u64 (0 if none)`  |
//! | 3    | Reject   | `reason str`                                                     |
//! | 4    | Batch    | the bytes of [`encode_batch`](super::encode_batch)               |
//! | 5    | Ack      | `seq u64, duplicate u8 (0/1)`                                    |
//! | 6    | Error    | `reason str`                                                     |
//! | 7    | Policy   | an encoded [`EnforcePlan`](crate::EnforcePlan) (collector → probe)|
//! | 8    | EnforceStatus | `version u64, failed u8 (0/1), failed_version u64, error str` |
//!
//! A collector speaks versions 2 and 3: it answers a version-2 `Hello` (a probe built
//! before enforcement) in version 2 and never sends it a `Policy`.

use super::{
    EnforceStatus, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, WireError, codec::Put, codec::Reader,
};

/// `Hello::capabilities` bit: the probe enforces policies (XDP) and wants `Policy` frames.
pub const CAP_ENFORCE: u32 = 1;

/// A frame's message type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Probe → collector, first frame.
    Hello = 1,
    /// Collector → probe: the probe is accepted.
    HelloAck = 2,
    /// Collector → probe: the probe is refused; the collector closes.
    Reject = 3,
    /// Probe → collector: one encoded batch.
    Batch = 4,
    /// Collector → probe: a batch is durable.
    Ack = 5,
    /// Either way: a fatal problem; the sender closes.
    Error = 6,
    /// Collector → probe: the enforcement policy to install.
    Policy = 7,
    /// Probe → collector: the policy version enforced (answer and heartbeat).
    EnforceStatus = 8,
}

impl MessageType {
    /// Decodes a type byte.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            1 => MessageType::Hello,
            2 => MessageType::HelloAck,
            3 => MessageType::Reject,
            4 => MessageType::Batch,
            5 => MessageType::Ack,
            6 => MessageType::Error,
            7 => MessageType::Policy,
            8 => MessageType::EnforceStatus,
            v => return Err(WireError::UnknownMessageType(v)),
        })
    }

    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Hello => "Hello",
            MessageType::HelloAck => "HelloAck",
            MessageType::Reject => "Reject",
            MessageType::Batch => "Batch",
            MessageType::Ack => "Ack",
            MessageType::Error => "Error",
            MessageType::Policy => "Policy",
            MessageType::EnforceStatus => "EnforceStatus",
        }
    }
}

/// First frame of a connection: who the probe says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the probe speaks.
    pub version: u16,
    /// The probe's id; must match its client certificate.
    pub probe_id: String,
    /// The epoch of the sequence this connection sends (see
    /// [`Batch::epoch`](crate::Batch::epoch)); every batch on it must carry it.
    pub epoch: u64,
    /// Software name and version, for logs.
    pub software: String,
    /// `CAP_*` bits (0 for a version-2 probe).
    pub capabilities: u32,
}

/// The collector's answer to an accepted `Hello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloAck {
    /// Protocol version the collector speaks.
    pub version: u16,
    /// Highest sequence number already stored for this probe's `(probe_id, epoch)`
    /// sequence, if any.
    pub last_acked_seq: Option<u64>,
}

/// A batch is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The batch's sequence number.
    pub seq: u64,
    /// The batch had been stored before (a resend); it was not stored again.
    pub duplicate: bool,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`HelloAck`].
    HelloAck(HelloAck),
    /// The probe is refused, with the reason.
    Reject {
        /// Why.
        reason: String,
    },
    /// An encoded batch ([`encode_batch`](super::encode_batch)), carried as is.
    Batch(Vec<u8>),
    /// See [`Ack`].
    Ack(Ack),
    /// A fatal problem; the sender closes the connection after it.
    Error {
        /// Why.
        reason: String,
    },
    /// An encoded [`EnforcePlan`](crate::EnforcePlan), carried as is.
    Policy(Vec<u8>),
    /// See [`EnforceStatus`].
    EnforceStatus(EnforceStatus),
}

impl Message {
    /// The frame type of this message.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::HelloAck(_) => MessageType::HelloAck,
            Message::Reject { .. } => MessageType::Reject,
            Message::Batch(_) => MessageType::Batch,
            Message::Ack(_) => MessageType::Ack,
            Message::Error { .. } => MessageType::Error,
            Message::Policy(_) => MessageType::Policy,
            Message::EnforceStatus(_) => MessageType::EnforceStatus,
        }
    }

    /// Appends the payload (without frame header) to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello(h) => {
                out.put_u16(h.version);
                out.put_str(&h.probe_id);
                out.put_u64(h.epoch);
                out.put_str(&h.software);
                if h.version >= 3 {
                    out.put_u32(h.capabilities);
                }
            }
            Message::HelloAck(a) => {
                out.put_u16(a.version);
                out.put_u8(a.last_acked_seq.is_some() as u8);
                out.put_u64(a.last_acked_seq.unwrap_or(0));
            }
            Message::Reject { reason } | Message::Error { reason } => out.put_str(reason),
            Message::Batch(b) => out.extend_from_slice(b),
            Message::Ack(a) => {
                out.put_u64(a.seq);
                out.put_u8(a.duplicate as u8);
            }
            Message::Policy(p) => out.extend_from_slice(p),
            Message::EnforceStatus(st) => {
                out.put_u64(st.version);
                out.put_u8(st.failed_version.is_some() as u8);
                out.put_u64(st.failed_version.unwrap_or(0));
                out.put_str(&st.error);
            }
        }
    }

    /// Decodes a payload of type `ty`. The whole payload must be consumed.
    ///
    /// `Hello` and `HelloAck` start with the version: a version other than
    /// [`PROTOCOL_VERSION`] gives [`WireError::UnsupportedVersion`] whatever follows it.
    /// Batch payloads are returned as is; [`decode_batch`](super::decode_batch) validates
    /// them.
    pub fn decode(ty: MessageType, payload: &[u8]) -> Result<Message, WireError> {
        let mut r = Reader::new(payload);
        let m = match ty {
            MessageType::Hello => {
                let version = version(&mut r, "Hello version")?;
                Message::Hello(Hello {
                    version,
                    probe_id: r.str("Hello probe_id")?,
                    epoch: r.u64("Hello epoch")?,
                    software: r.str("Hello software")?,
                    capabilities: if version >= 3 {
                        r.u32("Hello capabilities")?
                    } else {
                        0
                    },
                })
            }
            MessageType::HelloAck => {
                let version = version(&mut r, "HelloAck version")?;
                let has = r.bool("HelloAck has_seq")?;
                let seq = r.u64("HelloAck last_acked_seq")?;
                if !has && seq != 0 {
                    return Err(WireError::Invalid {
                        what: "HelloAck last_acked_seq",
                        detail: format!("{seq} given while has_seq is 0"),
                    });
                }
                Message::HelloAck(HelloAck {
                    version,
                    last_acked_seq: has.then_some(seq),
                })
            }
            MessageType::Reject => Message::Reject {
                reason: r.str("Reject reason")?,
            },
            MessageType::Batch => Message::Batch(r.rest().to_vec()),
            MessageType::Ack => Message::Ack(Ack {
                seq: r.u64("Ack seq")?,
                duplicate: r.bool("Ack duplicate")?,
            }),
            MessageType::Error => Message::Error {
                reason: r.str("Error reason")?,
            },
            MessageType::Policy => Message::Policy(r.rest().to_vec()),
            MessageType::EnforceStatus => {
                let version = r.u64("EnforceStatus version")?;
                let failed = r.bool("EnforceStatus failed")?;
                let fv = r.u64("EnforceStatus failed_version")?;
                Message::EnforceStatus(EnforceStatus {
                    version,
                    failed_version: failed.then_some(fv),
                    error: r.str("EnforceStatus error")?,
                })
            }
        };
        r.finish(ty.name())?;
        Ok(m)
    }
}

fn version(r: &mut Reader<'_>, what: &'static str) -> Result<u16, WireError> {
    let got = r.u16(what)?;
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&got) {
        return Err(WireError::UnsupportedVersion {
            got,
            want: PROTOCOL_VERSION,
        });
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message) {
        let mut p = Vec::new();
        m.encode_payload(&mut p);
        assert_eq!(Message::decode(m.message_type(), &p).unwrap(), m);
        // Every strict prefix is refused, never accepted or panicking.
        if !matches!(m.message_type(), MessageType::Batch | MessageType::Policy) {
            for n in 0..p.len() {
                assert!(
                    Message::decode(m.message_type(), &p[..n]).is_err(),
                    "{m:?} prefix {n}"
                );
            }
        }
        p.push(0);
        if !matches!(m.message_type(), MessageType::Batch | MessageType::Policy) {
            assert!(matches!(
                Message::decode(m.message_type(), &p),
                Err(WireError::TrailingBytes { extra: 1, .. })
            ));
        }
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            probe_id: "edge-hk-1".into(),
            epoch: 0x1234_5678_9abc_def0,
            software: "tidegate-probe 0.1.0".into(),
            capabilities: CAP_ENFORCE,
        }));
        round_trip(Message::Hello(Hello {
            version: 2,
            probe_id: "old".into(),
            epoch: 1,
            software: "tidegate-probe 0.0.9".into(),
            capabilities: 0,
        }));
        round_trip(Message::Policy(vec![1, 2]));
        round_trip(Message::EnforceStatus(EnforceStatus {
            version: 3,
            failed_version: Some(4),
            error: "line hk-1 unknown".into(),
        }));
        round_trip(Message::EnforceStatus(EnforceStatus {
            version: 3,
            failed_version: None,
            error: String::new(),
        }));
        round_trip(Message::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            last_acked_seq: None,
        }));
        round_trip(Message::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            last_acked_seq: Some(0),
        }));
        round_trip(Message::Reject {
            reason: "no".into(),
        });
        round_trip(Message::Batch(vec![1, 2, 3]));
        round_trip(Message::Ack(Ack {
            seq: 42,
            duplicate: true,
        }));
        round_trip(Message::Error {
            reason: "frame too large".into(),
        });
    }

    #[test]
    fn other_versions_are_named() {
        let mut p = Vec::new();
        p.put_u16(PROTOCOL_VERSION + 1);
        // Whatever follows the version of a future protocol is not looked at.
        p.extend_from_slice(b"future layout");
        assert!(matches!(
            Message::decode(MessageType::Hello, &p),
            Err(WireError::UnsupportedVersion { got, want: PROTOCOL_VERSION }) if got == PROTOCOL_VERSION + 1
        ));
        assert!(matches!(
            MessageType::from_u8(0),
            Err(WireError::UnknownMessageType(0))
        ));
    }
}
