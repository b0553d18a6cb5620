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
    /// The canonical line (without newline): the bytes the leaf hash covers.
    pub fn line(&self) -> String {
        let v = serde_json::json!({
            "data": self.data,
            "index": self.index,
            "prev": crate::hex(&self.prev),
            "time_ns": self.time_ns,
            "type": self.kind,
        });
        canonical_json(&v)
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

/// `v` as canonical JSON (sorted keys, no whitespace).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
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
