//! On-disk entry format:
//! `magic u32 | body_len u32 | crc32(body) u32 | body`, body =
//! `probe_len u16 | probe_id | epoch u64 | seq u64 | payload`. Little-endian. Entries of
//! a build before sequence epochs (magic `TGW1`, no `epoch`) read as epoch 0. A torn tail (crash in
//! the middle of a write) fails the length or CRC check and is cut off on open; it was
//! never acknowledged.

use super::Position;

pub(crate) const MAGIC: u32 = 0x5447_5732; // "TGW2"
/// Entries written before sequence epochs.
const MAGIC_V1: u32 = 0x5447_5731; // "TGW1"
pub(crate) const HEADER: usize = 12;

/// One spooled batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Probe that sent it.
    pub probe_id: String,
    /// The epoch of the probe's sequence.
    pub epoch: u64,
    /// The probe's sequence number.
    pub seq: u64,
    /// The encoded batch, as received.
    pub payload: Vec<u8>,
    /// Position just after this entry (commit it once the entry is stored downstream).
    pub end: Position,
}

/// Serializes an entry.
pub(crate) fn encode(probe_id: &str, epoch: u64, seq: u64, payload: &[u8]) -> Vec<u8> {
    let body_len = 2 + probe_id.len() + 8 + 8 + payload.len();
    let mut v = Vec::with_capacity(HEADER + body_len);
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&(body_len as u32).to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&(probe_id.len() as u16).to_le_bytes());
    v.extend_from_slice(probe_id.as_bytes());
    v.extend_from_slice(&epoch.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(payload);
    let crc = crc32fast::hash(&v[HEADER..]);
    v[8..12].copy_from_slice(&crc.to_le_bytes());
    v
}

/// A decoded entry and the bytes it occupied.
pub(crate) struct Decoded {
    pub probe_id: String,
    pub epoch: u64,
    pub seq: u64,
    pub payload: Vec<u8>,
    pub len: usize,
}

/// Decodes the entry at the start of `buf`: `Ok(Some(..))`, `Ok(None)` when `buf` is
/// shorter than a whole entry, `Err` when the bytes are not a valid entry.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<Decoded>, String> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let magic = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    if magic != MAGIC && magic != MAGIC_V1 {
        return Err(format!("bad magic {magic:#x}"));
    }
    let body_len = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if buf.len() < HEADER + body_len {
        return Ok(None);
    }
    let body = &buf[HEADER..HEADER + body_len];
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    if body.len() < 10 {
        return Err("body too short".into());
    }
    let plen = u16::from_le_bytes([body[0], body[1]]) as usize;
    let numbers = if magic == MAGIC { 16 } else { 8 };
    if body.len() < 2 + plen + numbers {
        return Err("probe id overruns the body".into());
    }
    let probe = std::str::from_utf8(&body[2..2 + plen])
        .map_err(|e| format!("probe id: {e}"))?
        .to_string();
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let (epoch, seq) = if magic == MAGIC {
        (u64_at(2 + plen), u64_at(10 + plen))
    } else {
        (0, u64_at(2 + plen))
    };
    Ok(Some(Decoded {
        probe_id: probe,
        epoch,
        seq,
        payload: body[2 + plen + numbers..].to_vec(),
        len: HEADER + body_len,
    }))
}
