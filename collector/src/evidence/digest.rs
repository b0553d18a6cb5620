//! Digests of stored flows (`flows_digest` entries): after each group of batches is in
//! ClickHouse, one entry per line with the batches it came in, the row count, packet and
//! byte sums, the range of `first`, and a SHA-256 over the sorted hashes of the rows
//! ([`FlowRow::digest`]). [`check`] recomputes them from ClickHouse, so a row changed or
//! deleted after it was stored is found.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::Digest;

use crate::sinks::clickhouse::{FlowRow, GroupPart};

#[derive(Default)]
struct Acc {
    batches: Vec<(String, u64, u64)>,
    hashes: Vec<[u8; 32]>,
    packets: u64,
    bytes: u64,
    first_min: i64,
    first_max: i64,
}

impl Acc {
    fn add(&mut self, row: &FlowRow<'_>) {
        if self.hashes.is_empty() {
            (self.first_min, self.first_max) = (row.first, row.first);
        }
        self.first_min = self.first_min.min(row.first);
        self.first_max = self.first_max.max(row.first);
        self.packets += row.packets;
        self.bytes += row.bytes;
        self.hashes.push(row.digest());
    }

    fn sha256(&mut self) -> String {
        self.hashes.sort_unstable();
        let mut h = sha2::Sha256::new();
        for x in &self.hashes {
            h.update(x);
        }
        tidegate_evidence::hex(&h.finalize())
    }

    fn entry(mut self, line: &str) -> Value {
        let sha = self.sha256();
        json!({
            "line": line,
            "batches": self.batches.iter().map(|(p, e, s)| json!([p, e, s])).collect::<Vec<_>>(),
            "rows": self.hashes.len(),
            "packets": self.packets,
            "bytes": self.bytes,
            "first_min": self.first_min,
            "first_max": self.first_max,
            "sha256": sha,
        })
    }
}

/// The `flows_digest` entries of a stored group (one per line), in line order. Records
/// that cannot be rows were not stored and are left out, as the sink left them out.
pub fn of_group(parts: &[GroupPart<'_>]) -> Vec<Value> {
    let mut lines: BTreeMap<&str, Acc> = BTreeMap::new();
    for (probe, epoch, seq, records, ctx) in parts {
        for (i, r) in records.iter().enumerate() {
            let Ok(row) = FlowRow::new(probe, *epoch, *seq, r, ctx.get(i)) else {
                continue;
            };
            let acc = lines.entry(&r.line).or_default();
            if acc.batches.last() != Some(&(probe.to_string(), *epoch, *seq)) {
                acc.batches.push((probe.to_string(), *epoch, *seq));
            }
            acc.add(&row);
        }
    }
    lines.into_iter().map(|(l, a)| a.entry(l)).collect()
}

/// What ClickHouse holds for the rows a `flows_digest` entry describes, as the same kind
/// of entry (for comparison field by field).
pub async fn recompute(ch: &clickhouse::Client, digest: &Value) -> Result<Value, String> {
    let line = digest["line"].as_str().ok_or("no line")?;
    let batches: Vec<(String, u64, u64)> =
        serde_json::from_value(digest["batches"].clone()).map_err(|e| format!("batches: {e}"))?;
    let (lo, hi) = (
        digest["first_min"].as_i64().ok_or("no first_min")?,
        digest["first_max"].as_i64().ok_or("no first_max")?,
    );
    let mut cursor = ch
        .query(
            "SELECT ?fields FROM flows WHERE line = ? \
             AND first BETWEEN fromUnixTimestamp64Nano(?) - INTERVAL 1 DAY AND fromUnixTimestamp64Nano(?) + INTERVAL 1 DAY \
             AND has(?, (probe_id, batch_epoch, batch_seq))",
        )
        .bind(line)
        .bind(lo)
        .bind(hi)
        .bind(&batches)
        .fetch::<FlowRow<'_>>()
        .map_err(|e| e.to_string())?;
    let mut acc = Acc {
        batches,
        ..Acc::default()
    };
    while let Some(r) = cursor.next().await.map_err(|e| e.to_string())? {
        acc.add(&r);
    }
    if acc.hashes.is_empty() {
        (acc.first_min, acc.first_max) = (lo, hi);
    }
    Ok(acc.entry(line))
}

/// Compares a logged digest with what ClickHouse holds; `None` when they agree, else
/// what differs.
pub async fn check(ch: &clickhouse::Client, digest: &Value) -> Result<Option<String>, String> {
    let now = recompute(ch, digest).await?;
    let mut diff = Vec::new();
    for k in ["rows", "packets", "bytes", "sha256"] {
        if now[k] != digest[k] {
            diff.push(format!("{k} {} logged, {} stored", digest[k], now[k]));
        }
    }
    Ok((!diff.is_empty()).then(|| {
        format!(
            "flows of line {} in {} batch(es) changed after they were stored: {}",
            digest["line"],
            digest["batches"].as_array().map_or(0, Vec::len),
            diff.join(", ")
        )
    }))
}
