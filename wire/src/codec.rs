//! Bounds-checked big-endian reading and writing of the protocol's primitive fields,
//! and the bounded decompression of a body of declared length.

use std::io::Read;

use super::WireError;

/// Largest zstd window (log2 bytes) a peer's frame may use: 32 MiB, the largest body.
const WINDOW_LOG_MAX: u32 = 25;

/// The first zstd frame of `compressed`, which must decompress to exactly `declared`
/// bytes: decompressed as a stream into a buffer grown with what actually comes out
/// (`declared` is trusted for no more than a modest start), reading one byte more than
/// declared to tell a longer body. Callers bound `declared` first.
pub(crate) fn decompress_stream(compressed: &[u8], declared: usize) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::with_capacity(declared.min(compressed.len().saturating_mul(8)));
    let mut d = zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(|e| WireError::Decompress(e.to_string()))?;
    // The window a frame asks for is allocated: no larger than the largest body (the
    // default allows 128 MiB).
    d.window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| WireError::Decompress(e.to_string()))?;
    d.single_frame()
        .take(declared as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| WireError::Decompress(e.to_string()))?;
    if body.len() != declared {
        return Err(WireError::BodyLength {
            declared,
            actual: body.len(),
        });
    }
    Ok(body)
}

/// Appends primitive fields to a buffer.
pub(crate) trait Put {
    /// One byte.
    fn put_u8(&mut self, v: u8);
    /// `u16` big-endian.
    fn put_u16(&mut self, v: u16);
    /// `u32` big-endian.
    fn put_u32(&mut self, v: u32);
    /// `u64` big-endian.
    fn put_u64(&mut self, v: u64);
    /// A length prefix (`u32`). Lengths beyond `u32::MAX` cannot occur: frames and batch
    /// bodies are bounded far below it, and [`put_str`](Put::put_str) refuses them.
    fn put_len(&mut self, n: usize);
    /// A `u32`-length-prefixed UTF-8 string.
    fn put_str(&mut self, s: &str);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_len(&mut self, n: usize) {
        // Saturating: a (theoretical) longer value then fails to decode instead of
        // silently wrapping into a valid-looking shorter one.
        self.put_u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn put_str(&mut self, s: &str) {
        self.put_len(s.len());
        self.extend_from_slice(s.as_bytes());
    }
}

/// Reads primitive fields from a byte slice; every read checks the remaining length.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                what,
                offset: self.pos,
                need: n,
                have: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// `u16` big-endian.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// `u32` big-endian.
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// `u64` big-endian.
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A boolean byte: 0 or 1, anything else is invalid.
    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::Invalid {
                what,
                detail: format!("boolean byte {v} (must be 0 or 1)"),
            }),
        }
    }

    /// A `u32`-length-prefixed UTF-8 string.
    pub(crate) fn str(&mut self, what: &'static str) -> Result<String, WireError> {
        let n = self.u32(what)? as usize;
        let offset = self.pos;
        let b = self.bytes(n, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| WireError::BadUtf8 { what, offset })
    }

    /// A `u32` count of items that take at least `min_item` bytes each, checked against
    /// what is left so a garbage count cannot make the caller allocate.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        min_item: usize,
    ) -> Result<usize, WireError> {
        let count = self.u32(what)? as usize;
        let have = self.remaining();
        if count.saturating_mul(min_item.max(1)) > have {
            return Err(WireError::CountTooLarge { what, count, have });
        }
        Ok(count)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes { what, extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut v = Vec::new();
        v.put_u8(7);
        v.put_u16(0x1234);
        v.put_u32(0xdead_beef);
        v.put_u64(u64::MAX - 1);
        v.put_str("héllo");
        let mut r = Reader::new(&v);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0x1234);
        assert_eq!(r.u32("c").unwrap(), 0xdead_beef);
        assert_eq!(r.u64("d").unwrap(), u64::MAX - 1);
        assert_eq!(r.str("e").unwrap(), "héllo");
        r.finish("all").unwrap();
        assert!(matches!(
            r.u8("past the end"),
            Err(WireError::Truncated {
                what: "past the end",
                have: 0,
                ..
            })
        ));
    }

    #[test]
    fn garbage_counts_and_strings_are_refused() {
        let mut v = Vec::new();
        v.put_u32(1_000_000);
        v.extend_from_slice(&[0; 10]);
        let e = Reader::new(&v).count("records", 8).unwrap_err();
        assert!(matches!(
            e,
            WireError::CountTooLarge {
                count: 1_000_000,
                have: 10,
                ..
            }
        ));
        let mut v = Vec::new();
        v.put_u32(2);
        v.extend_from_slice(&[0xff, 0xfe]);
        assert!(matches!(
            Reader::new(&v).str("name"),
            Err(WireError::BadUtf8 {
                what: "name",
                offset: 4
            })
        ));
        assert!(matches!(
            Reader::new(&[2]).bool("flag"),
            Err(WireError::Invalid { what: "flag", .. })
        ));
    }
}
