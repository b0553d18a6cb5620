//! The highest stored sequence number of every probe sequence `(probe id, epoch)`: what
//! deduplication compares a batch with, and what `HelloAck` tells a reconnecting probe.
//!
//! Bounded: a probe keeps its [`MAX_EPOCHS_PER_PROBE`] most recently written sequences
//! (a probe starts a new one with each new spool, e.g. per forensic replay). A forgotten
//! sequence that comes back is answered "nothing stored", so the probe sends all it has:
//! at worst a batch is stored twice, never dropped.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Sequences remembered per probe.
pub const MAX_EPOCHS_PER_PROBE: usize = 1024;

/// One probe sequence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stream {
    /// Probe id.
    pub probe: String,
    /// The sequence's epoch.
    pub epoch: u64,
}

impl Stream {
    /// `(probe, epoch)`.
    pub fn new(probe: &str, epoch: u64) -> Stream {
        Stream {
            probe: probe.to_owned(),
            epoch,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    seq: u64,
    /// Write order (higher = more recent), for eviction.
    touched: u64,
}

/// Highest stored sequence number per probe sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Streams {
    marks: HashMap<Stream, Mark>,
    clock: u64,
}

/// `probes.json`: one row per sequence, oldest write first.
#[derive(Serialize, Deserialize)]
struct Row {
    probe: String,
    epoch: u64,
    seq: u64,
}

/// What `probes.json` holds: rows, or (written before epochs) a map probe → seq.
#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    Rows(Vec<Row>),
    Legacy(HashMap<String, u64>),
}

impl Streams {
    /// The highest stored sequence number of `(probe, epoch)`.
    pub fn get(&self, probe: &str, epoch: u64) -> Option<u64> {
        // Allocation-free lookup would need a borrowed key type; the map is small and
        // this runs once per batch.
        self.marks.get(&Stream::new(probe, epoch)).map(|m| m.seq)
    }

    /// Records that `seq` of `(probe, epoch)` is stored (a lower number changes nothing).
    /// Returns the sequence evicted to keep the probe within its bound, if any.
    pub fn note(&mut self, probe: &str, epoch: u64, seq: u64) -> Option<Stream> {
        self.clock += 1;
        let touched = self.clock;
        let key = Stream::new(probe, epoch);
        if let Some(m) = self.marks.get_mut(&key) {
            m.seq = m.seq.max(seq);
            m.touched = touched;
            return None;
        }
        self.marks.insert(key, Mark { seq, touched });
        let of_probe = self.marks.keys().filter(|s| s.probe == probe).count();
        if of_probe <= MAX_EPOCHS_PER_PROBE {
            return None;
        }
        let oldest = self
            .marks
            .iter()
            .filter(|(s, _)| s.probe == probe)
            .min_by_key(|(_, m)| m.touched)
            .map(|(s, _)| s.clone())?;
        self.marks.remove(&oldest);
        Some(oldest)
    }

    /// Sequences remembered.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// The `probes.json` form.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v: Vec<(&Stream, &Mark)> = self.marks.iter().collect();
        v.sort_by_key(|(_, m)| m.touched);
        let rows: Vec<Row> = v
            .into_iter()
            .map(|(s, m)| Row {
                probe: s.probe.clone(),
                epoch: s.epoch,
                seq: m.seq,
            })
            .collect();
        serde_json::to_vec(&rows).expect("rows serialize")
    }

    /// Reads the `probes.json` form (either layout).
    pub fn from_json(bytes: &[u8]) -> Result<Streams, serde_json::Error> {
        let mut s = Streams::default();
        match serde_json::from_slice::<File>(bytes)? {
            File::Rows(rows) => {
                for r in rows {
                    s.note(&r.probe, r.epoch, r.seq);
                }
            }
            File::Legacy(m) => {
                let mut m: Vec<(String, u64)> = m.into_iter().collect();
                m.sort();
                for (probe, seq) in m {
                    s.note(&probe, 0, seq);
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_separate_and_round_trip() {
        let mut s = Streams::default();
        s.note("edge-1", 7, 10);
        s.note("edge-1", 7, 4); // lower: no change
        s.note("edge-1", 9, 2);
        s.note("edge-2", 7, 5);
        assert_eq!(s.get("edge-1", 7), Some(10));
        assert_eq!(s.get("edge-1", 9), Some(2));
        assert_eq!(s.get("edge-1", 8), None);
        assert_eq!(s.get("edge-2", 7), Some(5));
        let back = Streams::from_json(&s.to_json()).unwrap();
        for (p, e) in [("edge-1", 7), ("edge-1", 9), ("edge-2", 7), ("edge-3", 1)] {
            assert_eq!(back.get(p, e), s.get(p, e));
        }
        // probes.json of a build before epochs: probe → seq, read as epoch 0.
        let old = Streams::from_json(br#"{"edge-1": 42}"#).unwrap();
        assert_eq!(old.get("edge-1", 0), Some(42));
        assert!(Streams::from_json(b"[{\"probe\": 1}]").is_err());
    }

    #[test]
    fn a_probe_keeps_its_most_recent_sequences() {
        let mut s = Streams::default();
        s.note("other", 1, 1);
        for e in 0..MAX_EPOCHS_PER_PROBE as u64 {
            assert_eq!(s.note("p", e, 1), None);
        }
        s.note("p", 0, 2); // epoch 0 written again: now the most recent
        assert_eq!(s.note("p", 5000, 1), Some(Stream::new("p", 1)));
        assert_eq!(s.get("p", 1), None);
        assert_eq!(s.get("p", 0), Some(2));
        assert_eq!(s.get("other", 1), Some(1));
        assert_eq!(s.len(), MAX_EPOCHS_PER_PROBE + 1);
        // The order survives a restart: the next eviction takes epoch 2.
        let mut back = Streams::from_json(&s.to_json()).unwrap();
        assert_eq!(back.note("p", 5001, 1), Some(Stream::new("p", 2)));
    }
}
