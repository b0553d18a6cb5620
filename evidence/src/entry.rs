//! Log entries: canonical JSON objects, one per line of `entries.jsonl`.
//!
//! ```json
//! {"data":{…},"index":17,"prev":"<hex leaf hash of entry 16>","time_ns":…,"type":"alert"}
//! ```
//!
//! Canonical: object keys sorted by their UTF-8 bytes, no whitespace, strings and numbers
//! as `serde_json` writes them (integers as digits; floats in their shortest round-trip
//! form). A line that is not in this form, whose `index` is not its position, or whose
//! `prev` is not the previous line's leaf hash, is where a log was changed.

use serde_json::Value;

use crate::merkle::{Hash, leaf_hash};

/// `type` of an alert state.
pub const ALERT: &str = "alert";
/// `type` of a policy violation state.
pub const VIOLATION: &str = "violation";
/// `type` of a probe connection.
pub const PROBE_CONNECT: &str = "probe_connect";
/// `type` of a probe disconnection.
pub const PROBE_DISCONNECT: &str = "probe_disconnect";
/// `type` of a configuration or policy (re)load.
pub const CONFIG: &str = "config";
/// `type` of a digest of stored flows.
pub const FLOWS_DIGEST: &str = "flows_digest";
/// `type` of an enforcement change: a policy version published, a probe enforcing it
/// (or failing to), a manual block made, lifted or lapsed, a probe's enforcement ended.
pub const ENFORCEMENT: &str = "enforcement";
/// `type` of an analyst's triage action on an alert (state, assignee, note, who).
pub const TRIAGE: &str = "triage";

/// One entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Position in the log, from 0.
    pub index: u64,
    /// Leaf hash of the previous entry (zeros for the first).
    pub prev: Hash,
    /// When it was logged (collector clock), Unix ns.
    pub time_ns: u64,
    /// What it records (`alert`, `violation`, ...).
    pub kind: String,
    /// The record itself.
    pub data: Value,
}

impl Entry {
    /// The canonical line (without newline): the bytes the leaf hash covers. The keys
    /// `data` < `index` < `prev` < `time_ns` < `type` are already in sorted order.
    pub fn line(&self) -> String {
        line_of(self.index, &self.prev, self.time_ns, &self.kind, &self.data)
    }

    /// The leaf hash of the canonical line.
    pub fn leaf(&self) -> Hash {
        leaf_hash(self.line().as_bytes())
    }

    /// Parses a line, which must be canonical; the error says what is wrong.
    pub fn parse(line: &str) -> Result<Entry, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        if canonical_json(&v) != line {
            return Err("not canonical JSON (changed after it was written?)".into());
        }
        let o = v.as_object().ok_or("not an object")?;
        let u = |k: &str| {
            o.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("no integer `{k}`"))
        };
        let prev = o
            .get("prev")
            .and_then(Value::as_str)
            .and_then(crate::unhex::<32>)
            .ok_or("no 64-hex-digit `prev`")?;
        let kind = o
            .get("type")
            .and_then(Value::as_str)
            .ok_or("no string `type`")?
            .to_string();
        if o.len() != 5 {
            return Err("fields other than data, index, prev, time_ns, type".into());
        }
        Ok(Entry {
            index: u("index")?,
            prev,
            time_ns: u("time_ns")?,
            kind,
            data: o.get("data").cloned().ok_or("no `data`")?,
        })
    }
}

/// The canonical line of the entry with these fields ([`Entry::line`] without building
/// an [`Entry`]: the data is only borrowed, so its caller can still use it).
pub fn line_of(index: u64, prev: &Hash, time_ns: u64, kind: &str, data: &Value) -> String {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"data\":");
    write(data, &mut out);
    out.extend_from_slice(b",\"index\":");
    out.extend_from_slice(index.to_string().as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(crate::hex(prev).as_bytes());
    out.extend_from_slice(b"\",\"time_ns\":");
    out.extend_from_slice(time_ns.to_string().as_bytes());
    out.extend_from_slice(b",\"type\":");
    string(kind, &mut out);
    out.push(b'}');
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// The fields every entry ends with, read without parsing `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// `index`.
    pub index: u64,
    /// `prev`.
    pub prev: Hash,
    /// `time_ns`.
    pub time_ns: u64,
    /// `type`.
    pub kind: &'a str,
}

impl<'a> Head<'a> {
    /// Reads `{"data":…,"index":N,"prev":"<hex>","time_ns":N,"type":"<name>"}` from the
    /// end of a line (the canonical order puts these last; none can contain a quote), so
    /// checking a log costs a hash per entry, not a JSON parse. Any change to the line —
    /// `data` included — changes its leaf hash, which the chain and the checkpoints cover.
    pub fn parse(line: &'a str) -> Result<Head<'a>, String> {
        let b = line.as_bytes();
        let bad = |what: &str| format!("not an entry ({what})");
        if !b.starts_with(b"{\"data\":") {
            return Err(bad("does not start with data"));
        }
        // Walk back from the end over fixed tokens and fields without quotes.
        let mut end = b.len();
        let expect = |tok: &[u8], end: &mut usize| -> bool {
            let ok = *end >= tok.len() && &b[*end - tok.len()..*end] == tok;
            if ok {
                *end -= tok.len();
            }
            ok
        };
        if !expect(b"\"}", &mut end) {
            return Err(bad("end"));
        }
        let kind_end = end;
        while end > 0 && (b[end - 1].is_ascii_lowercase() || b[end - 1] == b'_') {
            end -= 1;
        }
        let kind = &line[end..kind_end];
        if kind.is_empty() || !expect(b",\"type\":\"", &mut end) {
            return Err(bad("type"));
        }
        let digits = |end: &mut usize, what: &str| -> Result<u64, String> {
            let e = *end;
            while *end > 0 && b[*end - 1].is_ascii_digit() {
                *end -= 1;
            }
            let d = &line[*end..e];
            if d.is_empty() || d.len() > 20 || (d.len() > 1 && d.starts_with('0')) {
                return Err(bad(what));
            }
            d.parse().map_err(|_| bad(what))
        };
        let time_ns = digits(&mut end, "time_ns")?;
        if !expect(b",\"time_ns\":", &mut end) || !expect(b"\"", &mut end) || end < 64 {
            return Err(bad("time_ns"));
        }
        let prev = crate::unhex::<32>(&line[end - 64..end]).ok_or_else(|| bad("prev"))?;
        if line[end - 64..end].bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("prev"));
        }
        end -= 64;
        if !expect(b",\"prev\":\"", &mut end) {
            return Err(bad("prev"));
        }
        let index = digits(&mut end, "index")?;
        if !expect(b",\"index\":", &mut end) {
            return Err(bad("index"));
        }
        Ok(Head {
            index,
            prev,
            time_ns,
            kind,
        })
    }
}

/// Reads an `entries.jsonl` stream in large chunks and calls `each` for every complete
/// line, in order ([`scan`] on each chunk: hashed on all cores, memory bounded by the
/// chunk). Returns (bytes in complete lines, bytes read).
pub fn scan_reader(
    mut r: impl std::io::Read,
    mut each: impl FnMut(Scanned<'_>),
) -> std::io::Result<(u64, u64)> {
    const CHUNK: usize = 32 << 20;
    let mut buf: Vec<u8> = Vec::new();
    let (mut complete, mut total) = (0u64, 0u64);
    // Small logs read small; large ones in chunks growing to CHUNK (the buffer is reused,
    // so its pages are touched once).
    let mut want = 64 << 10;
    loop {
        let start = buf.len();
        buf.resize(start + want, 0);
        want = (want * 2).min(CHUNK);
        let mut filled = start;
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let n = filled - start;
        buf.truncate(filled);
        total += n as u64;
        if n == 0 {
            return Ok((complete, total));
        }
        let (parts, used) = scan(&buf);
        for l in parts.into_iter().flatten() {
            each(l);
        }
        complete += used as u64;
        buf.drain(..used);
    }
}

/// One line of an `entries.jsonl`, as [`scan`] read it.
pub struct Scanned<'a> {
    /// Leaf hash of the line's bytes.
    pub leaf: Hash,
    /// Its head, or why it is not an entry.
    pub head: Result<Head<'a>, String>,
    /// Bytes, newline included.
    pub len: usize,
}

fn scan_piece(piece: &[u8]) -> Vec<Scanned<'_>> {
    let mut out = Vec::with_capacity(piece.len() / 256 + 1);
    let mut rest = piece;
    while let Some(nl) = memchr::memchr(b'\n', rest) {
        let raw = &rest[..nl];
        rest = &rest[nl + 1..];
        let head = std::str::from_utf8(raw)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(Head::parse);
        out.push(Scanned {
            leaf: leaf_hash(raw),
            head,
            len: nl + 1,
        });
    }
    out
}

/// Every complete line of `text` (an `entries.jsonl`) with its leaf hash and head,
/// hashed on all cores; returns them (in order, one vector per piece hashed) and the
/// length of the complete lines.
pub fn scan(text: &[u8]) -> (Vec<Vec<Scanned<'_>>>, usize) {
    let complete = memchr::memrchr(b'\n', text).map_or(0, |i| i + 1);
    let text = &text[..complete];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    // Cut into `threads` pieces at line ends.
    let mut cuts = vec![0];
    for k in 1..threads {
        let at = (text.len() * k / threads).max(*cuts.last().unwrap_or(&0));
        let next = memchr::memchr(b'\n', &text[at..]).map_or(text.len(), |i| at + i + 1);
        cuts.push(next);
    }
    cuts.push(text.len());
    cuts.dedup();
    let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    let parts: Vec<Vec<Scanned<'_>>> = std::thread::scope(|sc| {
        // The other pieces on their own threads, the first on this one.
        let handles: Vec<_> = pieces[1..]
            .iter()
            .map(|p| sc.spawn(move || scan_piece(p)))
            .collect();
        let mut parts = vec![pieces.first().map_or_else(Vec::new, |p| scan_piece(p))];
        parts.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("hashing thread")),
        );
        parts
    });
    (parts, complete)
}

/// `v` as canonical JSON (sorted keys, no whitespace).
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::new();
    write(v, &mut out);
    String::from_utf8(out).expect("JSON text is UTF-8")
}

fn string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            out.push(b'{');
            let emit = |i: usize, k: &String, x: &Value, out: &mut Vec<u8>| {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                write(x, out);
            };
            // serde_json's map iterates in key order unless its `preserve_order` feature
            // is on somewhere in the build; sort only then.
            if m.keys().is_sorted() {
                for (i, (k, x)) in m.iter().enumerate() {
                    emit(i, k, x, out);
                }
            } else {
                let mut kv: Vec<(&String, &Value)> = m.iter().collect();
                kv.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (i, (k, x)) in kv.into_iter().enumerate() {
                    emit(i, k, x, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(x, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect("writing to a Vec cannot fail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_canonical_and_parse_back() {
        let e = Entry {
            index: 3,
            prev: [0xab; 32],
            time_ns: 1_700_000_000_000_000_000,
            kind: ALERT.into(),
            data: json!({"z": 1, "a": [1.5, "x\ny", null], "m": {"b": true, "a": -2}}),
        };
        let line = e.line();
        assert!(line.starts_with(
            r#"{"data":{"a":[1.5,"x\ny",null],"m":{"a":-2,"b":true},"z":1},"index":3,"prev":"abab"#
        ));
        assert!(!line.contains(' ') && !line.contains('\n'));
        assert_eq!(Entry::parse(&line).unwrap(), e);
        // Reformatted, reordered or extended lines are refused.
        let spaced = line.replacen(":3,", ": 3,", 1);
        assert!(Entry::parse(&spaced).unwrap_err().contains("canonical"));
        let extra = line.replacen(r#","type""#, r#","x":1,"type""#, 1);
        assert!(Entry::parse(&extra).is_err());
        // The head reads the same fields without parsing data.
        let h = Head::parse(&line).unwrap();
        assert_eq!(
            (h.index, h.prev, h.time_ns, h.kind),
            (e.index, e.prev, e.time_ns, ALERT)
        );
        for broken in [
            &line[..line.len() - 1],
            &line[1..],
            &line.replacen(":3,", ":03,", 1),
        ] {
            assert!(Head::parse(broken).is_err(), "{broken}");
        }
        // Nested "index" keys inside data do not confuse it.
        let nested = Entry {
            data: json!({"index": 99, "prev": "x"}),
            ..e.clone()
        };
        assert_eq!(Head::parse(&nested.line()).unwrap().index, 3);
    }

    #[test]
    fn floats_read_back_to_the_bytes_they_were_written_as() {
        // 1890.4000055037366 is what a detector measured; without exact parsing it reads
        // back as …368 and the entry would look changed.
        for x in [
            1890.4000055037366,
            0.1,
            1e-7,
            123456789.12345679,
            f64::MAX,
            5e-324,
        ] {
            let e = Entry {
                index: 0,
                prev: [0; 32],
                time_ns: 1,
                kind: ALERT.into(),
                data: json!({ "measured": x }),
            };
            assert_eq!(Entry::parse(&e.line()).unwrap(), e, "{x}");
        }
    }
}
