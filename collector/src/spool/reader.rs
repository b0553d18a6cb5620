//! Reading the spool in order, and committing what downstream has stored.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    sync::{Arc, atomic::Ordering},
};

use super::{Entry, Position, SpoolError, entry, segment_name, state, writer::Shared};

/// The reading half of the spool (one per spool).
pub struct SpoolReader {
    shared: Arc<Shared>,
    pos: Position,
    file: Option<(u64, File)>,
    committer: Option<SpoolCommitter>,
}

/// Commits what downstream has stored; split from the reader with
/// [`SpoolReader::take_committer`] so reading ahead and committing can run in different
/// tasks.
pub struct SpoolCommitter {
    shared: Arc<Shared>,
    committed: Position,
}

impl SpoolReader {
    pub(crate) fn new(shared: Arc<Shared>, cursor: Position) -> Self {
        let committer = SpoolCommitter {
            shared: shared.clone(),
            committed: cursor,
        };
        SpoolReader {
            shared,
            pos: cursor,
            file: None,
            committer: Some(committer),
        }
    }

    /// Hands out the committer (once); afterwards [`SpoolReader::commit`] errors.
    pub fn take_committer(&mut self) -> Option<SpoolCommitter> {
        self.committer.take()
    }

    /// Commits through this reader's own committer; see [`SpoolCommitter::commit`].
    pub fn commit(&mut self, upto: Position, entries: u64) -> Result<(), SpoolError> {
        match self.committer.as_mut() {
            Some(c) => c.commit(upto, entries),
            None => Err(SpoolError::Closed),
        }
    }

    /// The committed position (of this reader's own committer).
    pub fn committed(&self) -> Position {
        self.committer
            .as_ref()
            .map(|c| c.committed)
            .unwrap_or_default()
    }

    /// The next entry after the last one returned; waits for one to be appended.
    pub async fn next(&mut self) -> Result<Entry, SpoolError> {
        let mut rx = self.shared.durable.subscribe();
        loop {
            let durable = *rx.borrow_and_update();
            if self.pos < durable {
                if let Some(e) = self.read_at_pos(durable)? {
                    return Ok(e);
                }
                continue;
            }
            if rx.changed().await.is_err() {
                return Err(SpoolError::Closed);
            }
        }
    }

    /// The next entry if one is durable now, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Entry>, SpoolError> {
        let durable = *self.shared.durable.borrow();
        while self.pos < durable {
            if let Some(e) = self.read_at_pos(durable)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Reads the entry at `self.pos`; `None` when `pos` was at a segment's end and moved
    /// to the next segment.
    fn read_at_pos(&mut self, durable: Position) -> Result<Option<Entry>, SpoolError> {
        let seg = self.pos.segment;
        let path = self.shared.dir.join(segment_name(seg));
        if self.file.as_ref().map(|(s, _)| *s) != Some(seg) {
            let f = File::open(&path).map_err(SpoolError::io(&path, "open segment"))?;
            self.file = Some((seg, f));
        }
        let (_, f) = self.file.as_ref().expect("opened above");
        let len = if seg == durable.segment {
            durable.offset
        } else {
            f.metadata().map_err(SpoolError::io(&path, "stat"))?.len()
        };
        if self.pos.offset >= len {
            // Sealed segment fully read: continue with the next one.
            self.pos = Position {
                segment: seg + 1,
                offset: 0,
            };
            return Ok(None);
        }
        let mut head = [0u8; entry::HEADER];
        f.read_exact_at(&mut head, self.pos.offset)
            .map_err(SpoolError::io(&path, "read"))?;
        let body_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let mut buf = vec![0u8; entry::HEADER + body_len];
        f.read_exact_at(&mut buf, self.pos.offset)
            .map_err(SpoolError::io(&path, "read"))?;
        match entry::decode(&buf) {
            Ok(Some(entry::Decoded {
                probe_id,
                epoch,
                seq,
                payload,
                len: n,
            })) => {
                self.pos.offset += n as u64;
                Ok(Some(Entry {
                    probe_id,
                    epoch,
                    seq,
                    payload,
                    end: self.pos,
                }))
            }
            Ok(None) => Err(SpoolError::Corrupt {
                path,
                msg: format!("short entry at {}", self.pos.offset),
            }),
            Err(msg) => Err(SpoolError::Corrupt {
                path,
                msg: format!("offset {}: {msg}", self.pos.offset),
            }),
        }
    }
}

impl SpoolCommitter {
    /// The group intent saved before the crash, if it starts at the committed cursor.
    pub fn pending_intent(&self) -> Result<Option<state::Intent>, SpoolError> {
        Ok(state::read_intent(&self.shared.dir)?.filter(|i| i.start == self.committed))
    }

    /// Saves (fsync'd) the bounds of the group about to be stored downstream.
    pub fn save_intent(&self, end: Position) -> Result<state::Intent, SpoolError> {
        let i = state::Intent {
            start: self.committed,
            end,
        };
        state::write_intent(&self.shared.dir, &i)?;
        Ok(i)
    }

    /// Records that every entry up to `upto` is stored downstream: persists the cursor
    /// and deletes segments that are wholly consumed (after saving the per-probe
    /// sequence marks they held).
    pub fn commit(&mut self, upto: Position, entries: u64) -> Result<(), SpoolError> {
        if upto <= self.committed {
            return Ok(());
        }
        let dir = &self.shared.dir;
        let dead: Vec<u64> = (self.committed.segment..upto.segment).collect();
        if !dead.is_empty() {
            let marks = self.shared.last_seq.lock().expect("last_seq lock").clone();
            state::write_probes(dir, &marks)?;
        }
        state::write_cursor(dir, upto)?;
        let mut freed = 0;
        for s in dead {
            let p = dir.join(segment_name(s));
            if let Ok(m) = std::fs::metadata(&p) {
                freed += m.len();
            }
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SpoolError::Io {
                        path: p,
                        op: "remove segment",
                        source: e,
                    });
                }
            }
        }
        self.committed = upto;
        self.shared
            .shares
            .lock()
            .expect("shares lock")
            .free_before(upto.segment);
        self.shared.bytes.fetch_sub(
            freed.min(self.shared.bytes.load(Ordering::Acquire)),
            Ordering::AcqRel,
        );
        self.shared.pending.fetch_sub(
            entries.min(self.shared.pending.load(Ordering::Acquire)),
            Ordering::AcqRel,
        );
        self.shared.space.notify_waiters();
        Ok(())
    }

    /// The committed position.
    pub fn committed(&self) -> Position {
        self.committed
    }
}
