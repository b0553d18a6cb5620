//! HMAC-SHA256 signatures of webhook bodies (`X-Tidegate-Signature: sha256=<hex>`).

use ring::hmac;

/// Prefix of the signature header value.
const PREFIX: &str = "sha256=";

/// The `X-Tidegate-Signature` header value for `body`: `sha256=` and the lowercase hex of
/// HMAC-SHA256(`secret`, `body`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, body);
    let mut out = String::with_capacity(PREFIX.len() + 64);
    out.push_str(PREFIX);
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// For receivers: true when `header` (the `X-Tidegate-Signature` value) is the valid
/// signature of `body` under `secret`. The comparison of the MAC is constant-time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix(PREFIX) else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, body, &tag).is_ok()
}

/// Bytes of an even-length hex string, `None` when it is not one.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_signature(
            b"Jefe",
            b"what do ya want for nothing?",
            &sig
        ));
    }

    #[test]
    fn tampered_body_wrong_secret_and_malformed_headers_fail() {
        let sig = sign(b"s3cret", b"{\"a\":1}");
        assert!(verify_signature(b"s3cret", b"{\"a\":1}", &sig));
        assert!(!verify_signature(b"s3cret", b"{\"a\":2}", &sig));
        assert!(!verify_signature(b"other", b"{\"a\":1}", &sig));
        assert!(!verify_signature(b"s3cret", b"{\"a\":1}", &sig[7..]));
        assert!(!verify_signature(b"s3cret", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify_signature(b"s3cret", b"{\"a\":1}", "sha256=abc"));
        assert!(!verify_signature(b"s3cret", b"{\"a\":1}", ""));
    }
}
