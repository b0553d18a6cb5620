//! Verifying a whole log directory: every entry canonical and chained (`index`, `prev`),
//! every checkpoint signed by the log's key with the root of the entries it covers, and
//! consecutive checkpoints consistent. The first problem names the entry (index and
//! time) or the range of entries it concerns.

use std::fmt;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::log::{CHECKPOINTS, ENTRIES, LogError, read_checkpoints};
use crate::merkle::{Hash, Tree, verify_consistency};
use crate::note::Checkpoint;

/// One thing wrong with a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The first entry concerned.
    pub index: u64,
    /// Its time (Unix ns), when known.
    pub time_ns: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}", self.index)?;
        if let Some(t) = self.time_ns {
            write!(f, " (logged {})", rfc3339(t))?;
        }
        write!(f, ": {}", self.reason)
    }
}

fn rfc3339(ns: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ns} ns"))
}

/// Entry problems listed at most (the rest follow from the first ones).
pub const MAX_PROBLEMS: usize = 100;

/// What verification found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Entries read.
    pub entries: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Root of all entries.
    pub root: Option<Hash>,
    /// Size of the newest checkpoint.
    pub checkpointed: u64,
    /// Problems (empty: the log verifies): those of single entries first, in log order
    /// (at most [`MAX_PROBLEMS`]), then those of checkpoints.
    pub problems: Vec<Problem>,
}

impl Report {
    /// No problem.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the log in `dir` against the public `key`.
pub fn verify_dir(dir: &Path, key: &VerifyingKey) -> Result<Report, LogError> {
    let path = dir.join(ENTRIES);
    let file = std::fs::File::open(&path).map_err(|source| LogError::Io {
        path: path.clone(),
        source,
    })?;
    let mut report = Report::default();
    let mut tree = Tree::new();
    let mut times: Vec<Option<u64>> = Vec::new();
    let mut prev = [0u8; 32];
    let (complete, total) = crate::entry::scan_reader(file, |line| {
        let crate::entry::Scanned { leaf, head, .. } = line;
        let i = tree.len();
        let problem = match head {
            Err(reason) => {
                times.push(None);
                Some(reason)
            }
            Ok(e) => {
                times.push(Some(e.time_ns));
                if e.index != i {
                    Some(format!(
                        "says it is entry {} (entries missing or reordered here)",
                        e.index
                    ))
                } else if e.prev != prev {
                    Some("its `prev` is not the previous entry's hash: the entry before it was changed or removed".into())
                } else {
                    None
                }
            }
        };
        if let Some(reason) = problem
            && report.problems.len() < MAX_PROBLEMS
        {
            // A broken `prev` points at the entry before.
            let index = if reason.contains("entry before") {
                i.saturating_sub(1)
            } else {
                i
            };
            report.problems.push(Problem {
                index,
                time_ns: times.get(index as usize).copied().flatten(),
                reason,
            });
        }
        prev = leaf;
        tree.push(leaf);
    })
    .map_err(|source| LogError::Io {
        path: path.clone(),
        source,
    })?;
    if complete < total {
        tracing::info!(
            bytes = total - complete,
            "an incomplete last line (a crash mid-append) is not part of the log"
        );
    }
    report.entries = tree.len();
    report.root = Some(tree.root());

    let checkpoints = read_checkpoints(&dir.join(CHECKPOINTS))?;
    report.checkpoints = checkpoints.len() as u64;
    let mut last: Option<Checkpoint> = None;
    let mut later = Vec::new();
    for (k, stored) in checkpoints.iter().enumerate() {
        let at = |index: u64, reason: String| Problem {
            index,
            time_ns: times.get(index as usize).copied().flatten(),
            reason,
        };
        let c = match Checkpoint::open(&stored.note, key) {
            Ok(c) => c,
            Err(e) => {
                later.push(at(0, format!("checkpoint {k}: {e}")));
                continue;
            }
        };
        let from = last.as_ref().map_or(0, |l| l.size);
        if c.size < from {
            later.push(at(
                c.size,
                format!(
                    "checkpoint {k} covers {} entries, fewer than the one before",
                    c.size
                ),
            ));
        } else if c.size > tree.len() {
            later.push(at(
                tree.len(),
                format!(
                    "checkpoint {k} covers {} entries but the log has {}: entries from {} on were removed",
                    c.size,
                    tree.len(),
                    tree.len()
                ),
            ));
        } else if tree.root_at(c.size) != Some(c.root) {
            later.push(at(
                from,
                format!(
                    "checkpoint {k} (size {}) does not match the entries: one of entries {from}..{} was changed",
                    c.size,
                    c.size - 1
                ),
            ));
        } else if let Some(l) = &last {
            let proof = tree.consistency_proof(l.size, c.size).unwrap_or_default();
            if !verify_consistency(l.size, c.size, &l.root, &c.root, &proof) {
                later.push(at(
                    from,
                    format!("checkpoints {} and {k} are not consistent", k - 1),
                ));
            }
        }
        report.checkpointed = c.size;
        last = Some(c);
    }
    report.problems.extend(later);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::EvidenceLog;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    fn make(dir: &Path, n: u64) -> SigningKey {
        let key = SigningKey::from_bytes(&[5u8; 32]);
        let log = EvidenceLog::open(dir, "t/1", key.clone()).unwrap();
        for i in 0..n {
            log.append("alert", json!({"id": format!("a{i}"), "n": i}))
                .unwrap();
            if i % 4 == 3 {
                log.checkpoint().unwrap();
            }
        }
        log.checkpoint().unwrap();
        key
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join(ENTRIES))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write(dir: &Path, lines: &[String]) {
        let mut t = lines.join("\n");
        t.push('\n');
        std::fs::write(dir.join(ENTRIES), t).unwrap();
    }

    fn first(dir: &Path, key: &SigningKey) -> Problem {
        let r = verify_dir(dir, &key.verifying_key()).unwrap();
        assert!(!r.ok());
        r.problems[0].clone()
    }

    #[test]
    fn an_intact_log_verifies() {
        let d = tempfile::tempdir().unwrap();
        let key = make(d.path(), 10);
        let r = verify_dir(d.path(), &key.verifying_key()).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.entries, r.checkpoints, r.checkpointed), (10, 3, 10));
        let other = SigningKey::from_bytes(&[6u8; 32]);
        assert!(!verify_dir(d.path(), &other.verifying_key()).unwrap().ok());
    }

    #[test]
    fn tampering_is_pinpointed() {
        let d = tempfile::tempdir().unwrap();
        let key = make(d.path(), 10);
        let orig = lines(d.path());

        // One flipped byte inside entry 6's data.
        let mut l = orig.clone();
        l[6] = l[6].replacen("\"n\":6", "\"n\":7", 1);
        write(d.path(), &l);
        let p = first(d.path(), &key);
        assert_eq!(p.index, 6, "{p}");
        assert!(p.time_ns.is_some());

        // Entry 4 deleted.
        let mut l = orig.clone();
        l.remove(4);
        write(d.path(), &l);
        assert_eq!(first(d.path(), &key).index, 4);

        // Entries 2 and 3 swapped.
        let mut l = orig.clone();
        l.swap(2, 3);
        write(d.path(), &l);
        assert_eq!(first(d.path(), &key).index, 2);

        // The tail cut off.
        write(d.path(), &orig[..7]);
        let p = first(d.path(), &key);
        assert_eq!(p.index, 7, "{p}");
        assert!(p.reason.contains("removed"), "{p}");
    }
}
