//! Evidence bundles: everything needed to check one finding offline, in one JSON file.
//!
//! ```json
//! {
//!   "format": "tidegate-evidence-bundle/1",
//!   "origin": "<log name>",
//!   "public_key_pem": "-----BEGIN PUBLIC KEY-----…",
//!   "verifier_key": "<name>+<key id>+<base64 key>",
//!   "checkpoint": {"note": "<signed note>", "size": N, "time_ns": T},
//!   "entries": [{"index": i, "line": "<canonical entry>", "leaf_hash": "<hex>",
//!                "inclusion_proof": ["<hex>", …]}, …]
//! }
//! ```
//!
//! Each entry's leaf hash is SHA-256(0x00 ‖ line); its proof leads to the checkpoint's
//! root (RFC 9162 §2.1.3.2); the checkpoint's signature covers its text. The auditor's
//! script `dashboards/evidence/verify_bundle.py` checks exactly this with Python's
//! standard library and `openssl`.

use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};

use crate::log::{EvidenceLog, LogError, StoredCheckpoint};
use crate::merkle::{leaf_hash, verify_inclusion};
use crate::note::{Checkpoint, verifier_key};

/// The bundle format's name.
pub const FORMAT: &str = "tidegate-evidence-bundle/1";

/// One entry of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEntry {
    /// Its index in the log.
    pub index: u64,
    /// Its canonical line.
    pub line: String,
    /// Its leaf hash (hex).
    pub leaf_hash: String,
    /// Audit path to the checkpoint's root (hex, leaf side first).
    pub inclusion_proof: Vec<String>,
}

/// A bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// [`FORMAT`].
    pub format: String,
    /// The log's name.
    pub origin: String,
    /// The log's public key (SubjectPublicKeyInfo PEM).
    pub public_key_pem: String,
    /// The same key in signed-note verifier form.
    pub verifier_key: String,
    /// The checkpoint the proofs lead to.
    pub checkpoint: StoredCheckpoint,
    /// The finding's entries the checkpoint covers.
    pub entries: Vec<BundleEntry>,
}

/// Why a bundle cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Nothing in the log has this id.
    #[error("no evidence entry has id {0:?}")]
    Unknown(String),
    /// The chosen checkpoint does not cover the finding.
    #[error("checkpoint {0} does not exist or was signed before the finding was logged")]
    Checkpoint(usize),
}

impl Bundle {
    /// The bundle of finding `id` (every logged state of it) against checkpoint number
    /// `at` (0 = oldest), or against a fresh checkpoint of the whole log.
    pub fn build(log: &EvidenceLog, id: &str, at: Option<usize>) -> Result<Bundle, BundleError> {
        let indexes = log.find(id)?;
        if indexes.is_empty() {
            return Err(BundleError::Unknown(id.to_string()));
        }
        let checkpoint = match at {
            Some(k) => log
                .checkpoints()?
                .into_iter()
                .nth(k)
                .filter(|c| c.size > indexes[0])
                .ok_or(BundleError::Checkpoint(k))?,
            None => {
                log.checkpoint()?;
                log.last_checkpoint().ok_or(BundleError::Checkpoint(0))?
            }
        };
        let mut entries = Vec::new();
        for i in indexes.into_iter().filter(|i| *i < checkpoint.size) {
            let line = log
                .entry_line(i)?
                .ok_or(BundleError::Unknown(id.to_string()))?;
            let proof = log
                .inclusion_proof(i, checkpoint.size)
                .ok_or(BundleError::Checkpoint(at.unwrap_or(0)))?;
            entries.push(BundleEntry {
                index: i,
                leaf_hash: crate::hex(&leaf_hash(line.as_bytes())),
                line,
                inclusion_proof: proof.iter().map(|h| crate::hex(h)).collect(),
            });
        }
        let key = log.verifying_key();
        Ok(Bundle {
            format: FORMAT.into(),
            origin: log.origin().to_string(),
            public_key_pem: crate::key::public_pem(&key),
            verifier_key: verifier_key(log.origin(), &key),
            checkpoint,
            entries,
        })
    }

    /// The bundle of `id` against the newest existing checkpoint (none is signed for it):
    /// `Ok(None)` when the finding is logged but not yet under a checkpoint.
    pub fn latest(log: &EvidenceLog, id: &str) -> Result<Option<Bundle>, BundleError> {
        let n = log.checkpoints()?.len();
        if n == 0 {
            return match log.find(id)?.is_empty() {
                true => Err(BundleError::Unknown(id.to_string())),
                false => Ok(None),
            };
        }
        match Bundle::build(log, id, Some(n - 1)) {
            Ok(b) => Ok(Some(b)),
            Err(BundleError::Checkpoint(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks the bundle on its own (its key, its checkpoint's signature, every proof);
    /// `trusted` is the key the reader expects (a bundle signed by another key fails).
    pub fn verify(&self, trusted: Option<&VerifyingKey>) -> Result<Checkpoint, String> {
        if self.format != FORMAT {
            return Err(format!("format {:?}, expected {FORMAT}", self.format));
        }
        let key = VerifyingKey::from_public_key_pem(&self.public_key_pem)
            .map_err(|e| format!("public key: {e}"))?;
        if trusted.is_some_and(|t| *t != key) {
            return Err("signed by another key than the log's".into());
        }
        let c = Checkpoint::open(&self.checkpoint.note, &key)?;
        if c.size != self.checkpoint.size || c.origin != self.origin {
            return Err("the checkpoint's size or origin differ from the bundle's".into());
        }
        if self.entries.is_empty() {
            return Err("no entries".into());
        }
        for e in &self.entries {
            let leaf = leaf_hash(e.line.as_bytes());
            if crate::hex(&leaf) != e.leaf_hash {
                return Err(format!(
                    "entry {}: leaf hash does not match its line",
                    e.index
                ));
            }
            let proof = e
                .inclusion_proof
                .iter()
                .map(|h| crate::unhex::<32>(h).ok_or(format!("entry {}: bad proof hash", e.index)))
                .collect::<Result<Vec<_>, _>>()?;
            if !verify_inclusion(e.index, c.size, &leaf, &proof, &c.root) {
                return Err(format!(
                    "entry {}: not included in the checkpoint of {} entries",
                    e.index, c.size
                ));
            }
            let parsed = crate::entry::Entry::parse(&e.line)
                .map_err(|r| format!("entry {}: {r}", e.index))?;
            if parsed.index != e.index {
                return Err(format!(
                    "entry {}: its line says index {}",
                    e.index, parsed.index
                ));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    #[test]
    fn bundles_verify_and_tampering_fails() {
        let d = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[4u8; 32]);
        let log = EvidenceLog::open(d.path(), "t/1", key.clone()).unwrap();
        for i in 0..9 {
            log.append("alert", json!({"id": format!("a{}", i % 3), "v": i}))
                .unwrap();
        }
        log.checkpoint().unwrap();
        log.append("alert", json!({"id": "a1", "v": 9})).unwrap();
        let b = Bundle::build(&log, "a1", None).unwrap();
        assert_eq!(
            b.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 4, 7, 9]
        );
        let c = b.verify(Some(&key.verifying_key())).unwrap();
        assert_eq!(c.size, 10);
        // Against the checkpoint signed before the last update.
        let old = Bundle::build(&log, "a1", Some(0)).unwrap();
        assert_eq!(old.entries.len(), 3);
        assert_eq!(old.verify(None).unwrap().size, 9);
        let mut t = b.clone();
        t.entries[0].line = t.entries[0].line.replace("\"v\":1", "\"v\":2");
        assert!(t.verify(None).is_err());
        let mut t = b.clone();
        t.entries[1].index = 5;
        assert!(t.verify(None).is_err());
        let other = SigningKey::from_bytes(&[9u8; 32]);
        assert!(b.verify(Some(&other.verifying_key())).is_err());
        assert!(matches!(
            Bundle::build(&log, "zz", None),
            Err(BundleError::Unknown(_))
        ));
    }
}
