//! C2SP `signed-note` (Ed25519) and `tlog-checkpoint`.
//!
//! A checkpoint's text is `<origin>\n<tree size>\n<base64 root>\n`; the note appends a
//! blank line and one signature line per signer:
//! `— <key name> <base64(key id (4 bytes) ‖ Ed25519 signature (64 bytes))>\n`, where the
//! key id is the first 4 bytes of `SHA-256(<key name> ‖ "\n" ‖ 0x01 ‖ public key)` and
//! the signature covers the text. The key name is the log's origin.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Algorithm byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;
const DASH: &str = "\u{2014} ";

/// The 4-byte key id of `name`'s Ed25519 key.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The verifier key string `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let mut raw = vec![ALG_ED25519];
    raw.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        crate::hex(&key_id(name, key)),
        B64.encode(raw)
    )
}

/// A signed tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// The signed note.
    pub fn sign(&self, key: &SigningKey) -> String {
        let text = self.text();
        let sig = key.sign(text.as_bytes());
        let mut blob = key_id(&self.origin, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{text}\n{DASH}{} {}\n", self.origin, B64.encode(blob))
    }

    /// Parses a signed note and checks its signature by `key` (named after the
    /// checkpoint's origin). The error says what is wrong.
    pub fn open(note: &str, key: &VerifyingKey) -> Result<Checkpoint, String> {
        let (text, sigs) = note
            .split_once("\n\n")
            .ok_or("no blank line between the text and the signatures")?;
        let text = format!("{text}\n");
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or("no origin line")?;
        let size: u64 = lines
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or("line 2 is not a tree size")?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or("line 3 is not a base64 SHA-256 root")?;
        let id = key_id(origin, key);
        let mut found = false;
        for l in sigs.lines() {
            let Some(rest) = l.strip_prefix(DASH) else {
                return Err(format!("not a signature line: {l:?}"));
            };
            let Some((name, b64)) = rest.split_once(' ') else {
                return Err(format!("not a signature line: {l:?}"));
            };
            let blob = B64
                .decode(b64)
                .map_err(|e| format!("signature of {name}: {e}"))?;
            if name != origin || blob.len() != 68 || blob[..4] != id {
                continue; // another signer (a witness): not ours to check
            }
            let sig = Signature::from_slice(&blob[4..]).map_err(|e| e.to_string())?;
            key.verify(text.as_bytes(), &sig)
                .map_err(|_| "the signature does not verify with the log's key".to_string())?;
            found = true;
        }
        if !found {
            return Err(format!("no signature by the log's key ({origin})"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_open_and_tampering_is_refused() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let c = Checkpoint {
            origin: "tidegate.example/hub-1".into(),
            size: 42,
            root: [9u8; 32],
        };
        let note = c.sign(&key);
        assert!(note.starts_with("tidegate.example/hub-1\n42\n"));
        assert!(note.contains("\n\n\u{2014} tidegate.example/hub-1 "));
        assert_eq!(Checkpoint::open(&note, &key.verifying_key()).unwrap(), c);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(Checkpoint::open(&note, &other.verifying_key()).is_err());
        let forged = note.replacen("\n42\n", "\n43\n", 1);
        assert!(
            Checkpoint::open(&forged, &key.verifying_key())
                .unwrap_err()
                .contains("does not verify")
        );
        let vkey = verifier_key("tidegate.example/hub-1", &key.verifying_key());
        assert!(vkey.starts_with("tidegate.example/hub-1+"));
    }
}
