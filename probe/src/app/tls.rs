//! The server name (RFC 6066 `server_name`) of a TLS ClientHello (RFC 8446 §4.1.2),
//! possibly split over several records or TCP segments.

/// What the bytes so far say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello naming this host.
    Sni(String),
    /// A ClientHello without a server name.
    NoSni,
    /// The start of a ClientHello; more bytes are needed.
    NeedMore,
    /// Not a TLS handshake.
    NotTls,
}

/// Parses the TLS records at the start of a TCP stream.
pub fn parse_client_hello(stream: &[u8]) -> Hello {
    // Handshake bytes gathered from consecutive handshake records.
    let mut hs = Vec::new();
    let mut at = 0;
    while let Some(h) = stream.get(at..at + 5) {
        if h[0] != 0x16 || h[1] != 3 || h[2] > 4 {
            if at == 0 {
                return Hello::NotTls;
            }
            break;
        }
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        let body = &stream[at + 5..stream.len().min(at + 5 + len)];
        hs.extend_from_slice(body);
        if body.len() < len {
            break;
        }
        at += 5 + len;
    }
    if hs.is_empty() {
        return Hello::NeedMore;
    }
    if hs[0] != 1 {
        return Hello::NotTls;
    }
    let Some(l) = hs.get(1..4) else {
        return Hello::NeedMore;
    };
    let len = (l[0] as usize) << 16 | (l[1] as usize) << 8 | l[2] as usize;
    if hs.len() < 4 + len {
        return Hello::NeedMore;
    }
    match sni(&hs[4..4 + len]) {
        Some(Some(name)) => Hello::Sni(name),
        Some(None) => Hello::NoSni,
        None => Hello::NotTls,
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
}

/// The server name of a whole ClientHello body: `None` if malformed, `Some(None)`
/// without the extension.
fn sni(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader { b: body, at: 0 };
    r.take(2 + 32)?; // legacy_version, random
    let sid = r.u8()?;
    r.take(sid)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let comp = r.u8()?;
    r.take(comp)?;
    if r.at == body.len() {
        return Some(None); // no extensions
    }
    let ext_len = r.u16()?;
    let mut e = Reader {
        b: r.take(ext_len)?,
        at: 0,
    };
    while e.at < e.b.len() {
        let ty = e.u16()?;
        let len = e.u16()?;
        let data = e.take(len)?;
        if ty != 0 {
            continue;
        }
        let mut s = Reader { b: data, at: 0 };
        let list = s.u16()?;
        let mut l = Reader {
            b: s.take(list)?,
            at: 0,
        };
        while l.at < l.b.len() {
            let kind = l.u8()?;
            let n = l.u16()?;
            let name = l.take(n)?;
            if kind == 0 && !name.is_empty() {
                let mut out = String::new();
                super::presentable(&name[..name.len().min(255)], &mut out);
                return Some(Some(out));
            }
        }
        return Some(None);
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with `name` as SNI (after a padding extension of `pad` bytes).
    fn hello(name: &str, pad: usize) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        let mut ext = Vec::new();
        ext.extend_from_slice(&[0, 21]);
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0u8, pad));
        let n = name.len() as u16;
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&(n + 5).to_be_bytes());
        ext.extend_from_slice(&(n + 3).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&n.to_be_bytes());
        ext.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn names_whole_and_split_hellos() {
        let h = hello("api.example.org", 0);
        assert_eq!(parse_client_hello(&h), Hello::Sni("api.example.org".into()));
        // A post-quantum-sized hello: the name only in the second segment.
        let big = hello("big.example.org", 1800);
        assert_eq!(parse_client_hello(&big[..1400]), Hello::NeedMore);
        assert_eq!(
            parse_client_hello(&big),
            Hello::Sni("big.example.org".into())
        );
        assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
    }

    #[test]
    fn every_truncation_and_corruption_is_handled() {
        let h = hello("x.example", 40);
        for n in 0..h.len() {
            let r = parse_client_hello(&h[..n]);
            assert!(matches!(r, Hello::NeedMore | Hello::NotTls), "{n}: {r:?}");
        }
        for i in 5..h.len() {
            let mut c = h.clone();
            c[i] ^= 0xff;
            let _ = parse_client_hello(&c);
        }
    }
}
