//! RFC 3161 time-stamp requests for checkpoints: an external authority (TSA) signs that a
//! checkpoint existed at a time, so even the log's own key cannot back-date one. The
//! request is built here (a fixed DER layout); responses are kept as received, one JSON
//! line per checkpoint in `timestamps.jsonl`, and checked with `openssl ts -verify`.

use sha2::Digest;

use crate::merkle::Hash;

/// `TimeStampReq` (RFC 3161 §2.4.1) for the SHA-256 `digest`: version 1, the message
/// imprint, a 63-bit `nonce`, and `certReq` so the response carries the TSA certificate.
pub fn request(digest: &Hash, nonce: u64) -> Vec<u8> {
    // AlgorithmIdentifier { id-sha256, NULL }
    const SHA256: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    ];
    let mut imprint = vec![0x30, (SHA256.len() + 34) as u8];
    imprint.extend_from_slice(&SHA256);
    imprint.extend_from_slice(&[0x04, 0x20]);
    imprint.extend_from_slice(digest);
    let mut body = vec![0x02, 0x01, 0x01];
    body.extend_from_slice(&imprint);
    body.extend_from_slice(&[0x02, 0x08]);
    body.extend_from_slice(&(nonce & (u64::MAX >> 1) | 1 << 56).to_be_bytes());
    body.extend_from_slice(&[0x01, 0x01, 0xff]);
    let mut out = vec![0x30, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

/// SHA-256 of the bytes a checkpoint's time stamp covers (its whole signed note).
pub fn imprint(note: &str) -> Hash {
    sha2::Sha256::digest(note.as_bytes()).into()
}

/// Reads a DER header at `at`: (tag, content start, content length).
fn header(b: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *b.get(at)?;
    let first = *b.get(at + 1)? as usize;
    if first < 0x80 {
        return Some((tag, at + 2, first));
    }
    let n = first & 0x7f;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = len << 8 | *b.get(at + 2 + i)? as usize;
    }
    Some((tag, at + 2 + n, len))
}

/// The `PKIStatus` of a `TimeStampResp`: 0 granted, 1 granted with modifications, other
/// values refused. `None` when the bytes are not a response.
pub fn status(resp: &[u8]) -> Option<u64> {
    let (t, outer, len) = header(resp, 0)?;
    if t != 0x30 || outer + len != resp.len() {
        return None;
    }
    let (t, info, _) = header(resp, outer)?;
    if t != 0x30 {
        return None;
    }
    let (t, v, n) = header(resp, info)?;
    if t != 0x02 || n == 0 || n > 8 {
        return None;
    }
    Some(
        resp.get(v..v + n)?
            .iter()
            .fold(0u64, |a, b| a << 8 | *b as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_rfc_layout() {
        let q = request(&[0xab; 32], 0x1234);
        assert_eq!(q.len(), 2 + 0x43);
        assert_eq!(&q[..5], &[0x30, 0x43, 0x02, 0x01, 0x01]);
        assert!(
            q.windows(34)
                .any(|w| w[..2] == [0x04, 0x20] && w[2..] == [0xab; 32])
        );
        assert_eq!(&q[q.len() - 3..], &[0x01, 0x01, 0xff]);
        // A granted response (status 0) and garbage.
        let granted = [0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00];
        assert_eq!(status(&granted), Some(0));
        assert_eq!(status(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02]), Some(2));
        assert_eq!(status(b"<html>"), None);
    }
}
