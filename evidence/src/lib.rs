//! The evidence log (存证): an append-only transparency log that regulators can check
//! without trusting the operator.
//!
//! - [`merkle`]: RFC 6962 / RFC 9162 tree hashing (leaf = SHA-256(0x00 ‖ entry), node =
//!   SHA-256(0x01 ‖ left ‖ right)), inclusion and consistency proofs and their verifiers.
//! - [`note`]: C2SP `signed-note` with Ed25519 keys, and `tlog-checkpoint` bodies.
//! - [`entry`]: entries are canonical JSON objects (sorted keys, no spaces) with `index`,
//!   `prev` (the previous entry's leaf hash, so a changed or missing entry is pinpointed),
//!   `time_ns` and `type`.
//! - [`log`]: the log on disk (`entries.jsonl`, `checkpoints.jsonl`), durable appends, a
//!   directory lock, recovery after a crash.
//! - [`verify`]: checks a whole log directory and names the first bad entry.
//! - [`bundle`]: one file per finding: its entries, inclusion proofs, the checkpoint and
//!   the public key — what `dashboards/evidence/verify_bundle.py` checks with Python's
//!   standard library and `openssl`.
//!
//! Merkle arithmetic is written here over stored leaf hashes (the log does not keep its
//! entries in memory, which the tree crates assume) and cross-checked in tests against
//! the `ct-merkle` crate; hashing and signatures are `sha2` and `ed25519-dalek`.

#![deny(missing_docs)]

pub mod bundle;
pub mod entry;
pub mod key;
pub mod log;
pub mod merkle;
pub mod note;
pub mod rfc3161;
pub mod verify;

pub use entry::{Entry, canonical_json};
pub use key::{KeyError, SigningKeyFile};
pub use log::{Appended, EvidenceLog, LogError};
pub use merkle::{Hash, Tree};
pub use note::Checkpoint;
pub use verify::{Problem, Report, verify_dir};

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Bytes of lower-case or upper-case hex; `None` when it is not hex of `n` bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let b = s.as_bytes();
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nibble(b[2 * i])? << 4 | nibble(b[2 * i + 1])?;
    }
    Some(out)
}
