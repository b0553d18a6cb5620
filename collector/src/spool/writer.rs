//! Appending to the spool with group commit: a writer thread takes every waiting
//! append, writes them, issues one `fdatasync`, then acknowledges them all.

use std::{
    fs::File,
    io::Write,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
};

use serde::Deserialize;
use tokio::sync::{Notify, oneshot, watch};

use super::{Holder, Position, SpoolError, SpoolReader, Streams, entry, segment_name, state};

/// Spool settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory holding the spool.
    pub dir: PathBuf,
    /// Upper bound on spooled bytes; appends wait (probes back off) beyond it, and past
    /// half of it appends of a probe holding more than its equal share wait.
    pub max_bytes: u64,
    /// Segment size; committed segments are deleted whole.
    pub segment_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("/var/lib/tidegate/spool"),
            max_bytes: 8 << 30,
            segment_bytes: 64 << 20,
        }
    }
}

impl SpoolConfig {
    /// Checks the sizes; the error names the field (`spool.<field>`).
    pub fn validate(&self) -> Result<(), tidegate_base::FieldError> {
        use tidegate_base::FieldError;
        if self.segment_bytes < 4096 {
            return Err(FieldError::new(
                "spool.segment_bytes",
                "must be at least 4096",
            ));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return Err(FieldError::new(
                "spool.max_bytes",
                format!(
                    "({}) must be at least twice segment_bytes ({})",
                    self.max_bytes, self.segment_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// The spool directory's lock file (see [`tidegate_base::DirLock`]).
pub const LOCK_FILE: &str = "lock";

/// Takes the directory lock. A holder in this process that is closing (its writer thread
/// finishing) gets a second to let go; another process holding it is an error.
fn lock_dir(dir: &std::path::Path) -> Result<tidegate_base::DirLock, SpoolError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match tidegate_base::DirLock::acquire(dir, LOCK_FILE) {
            Ok(l) => return Ok(l),
            Err(tidegate_base::LockError::Held { .. }) if std::time::Instant::now() < deadline => {
                thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(SpoolError::Locked(e)),
        }
    }
}

struct Req {
    bytes: Vec<u8>,
    holder: Holder,
    probe: String,
    epoch: u64,
    seq: u64,
    done: oneshot::Sender<Result<Position, SpoolError>>,
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    /// Identity of this spool directory.
    pub id: String,
    pub cfg: SpoolConfig,
    /// End of the durable (fsync'd) data.
    pub durable: watch::Sender<Position>,
    /// Bytes held in segments (including appends in flight).
    pub bytes: AtomicU64,
    /// Entries appended and not yet committed downstream, counted from admission (a
    /// segment roll can publish entries, and the pipeline commit them, before their
    /// group's sync returns: counted any later, the commit's subtraction would be lost).
    pub pending: AtomicU64,
    /// Signalled when a commit frees space.
    pub space: Notify,
    /// What each probe holds (admission past half full; see [`super::shares`]).
    pub shares: Mutex<super::shares::Shares>,
    /// Highest durable sequence number per probe sequence.
    pub last_seq: Mutex<Streams>,
    /// Held while the spool is open (by the writer and the reader): a second collector on
    /// the same directory is refused.
    _lock: tidegate_base::DirLock,
    /// Faults the tests inject into the writer's file operations.
    #[cfg(test)]
    pub fault: Fault,
}

impl Shared {
    /// Gives back what admitting `reqs` took (their appends failed, or never reached the
    /// writer): their bytes, their pending count and their probes' shares; wakes the
    /// appends waiting for room.
    fn give_back(&self, reqs: &[Req]) {
        {
            let mut shares = self.shares.lock().expect("shares lock");
            for r in reqs.iter().filter(|r| r.holder == Holder::Probe) {
                shares.release(&r.probe, r.bytes.len() as u64);
            }
        }
        let bytes: u64 = reqs.iter().map(|r| r.bytes.len() as u64).sum();
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.pending.fetch_sub(reqs.len() as u64, Ordering::AcqRel);
        self.space.notify_waiters();
    }
}

/// Faults for the tests: the bytes the writer may still write before a write fails
/// part-way (as with a full disk), and whether the next `fdatasync` fails.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Fault {
    pub write_budget: AtomicU64,
    pub fail_sync: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl Default for Fault {
    fn default() -> Self {
        Fault {
            write_budget: AtomicU64::new(u64::MAX),
            fail_sync: Default::default(),
        }
    }
}

/// The appending half of the spool (cheap to clone).
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    tx: crossbeam_channel::Sender<Req>,
}

impl Spool {
    /// Opens `cfg.dir`, repairs a torn tail, and starts the writer thread. The reader
    /// starts at the committed cursor, so anything not yet stored downstream is replayed.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, SpoolReader), SpoolError> {
        let lock = lock_dir(&cfg.dir)?;
        let rec = state::recover(&cfg.dir)?;
        let (durable, _) = watch::channel(rec.end);
        let shared = Arc::new(Shared {
            dir: cfg.dir.clone(),
            id: rec.id.clone(),
            cfg: cfg.clone(),
            durable,
            bytes: AtomicU64::new(rec.bytes),
            pending: AtomicU64::new(rec.pending_entries),
            space: Notify::new(),
            shares: Mutex::new(rec.shares),
            last_seq: Mutex::new(rec.last_seq),
            _lock: lock,
            #[cfg(test)]
            fault: Fault::default(),
        });
        let path = shared.dir.join(segment_name(rec.end.segment));
        let file = tidegate_base::durable::private_file()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(SpoolError::io(&path, "open segment"))?;
        sync_dir(&shared.dir)?;
        let (tx, rx) = crossbeam_channel::unbounded::<Req>();
        let w = Writer {
            shared: shared.clone(),
            file,
            pos: rec.end,
            broken: None,
        };
        thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || w.run(rx))
            .map_err(SpoolError::io(&cfg.dir, "spawn writer"))?;
        tracing::info!(dir = %cfg.dir.display(), bytes = rec.bytes, pending = rec.pending_entries, "spool open");
        let reader = SpoolReader::new(shared.clone(), rec.cursor);
        Ok((Spool { shared, tx }, reader))
    }

    /// Appends batch `seq` of the probe sequence `(probe_id, epoch)`; resolves once it is
    /// on stable storage. Waits while the spool is full, or past half full while the
    /// probe holds more than its share (backpressure; see [`super::shares`]).
    pub async fn append(
        &self,
        probe_id: &str,
        epoch: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<Position, SpoolError> {
        self.append_as(Holder::Probe, probe_id, epoch, seq, payload)
            .await
    }

    /// [`Spool::append`] for `holder`: an exporter waits only while the spool is full.
    pub async fn append_as(
        &self,
        holder: Holder,
        probe_id: &str,
        epoch: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<Position, SpoolError> {
        let bytes = entry::encode(probe_id, epoch, seq, payload);
        let len = bytes.len() as u64;
        if len > self.shared.cfg.segment_bytes {
            return Err(SpoolError::TooLarge {
                size: bytes.len(),
                max: self.shared.cfg.segment_bytes,
            });
        }
        loop {
            let notified = self.shared.space.notified();
            {
                // Admission and the reservation under one lock: commits only lower
                // `bytes`, so a stale read can only make an append wait for the next
                // commit's signal.
                let mut shares = self.shared.shares.lock().expect("shares lock");
                let cur = self.shared.bytes.load(Ordering::Acquire);
                let uncommitted = self.shared.pending.load(Ordering::Acquire);
                let room = (cur, self.shared.cfg.max_bytes);
                if shares.admits(holder, probe_id, len, room, uncommitted) {
                    self.shared.bytes.fetch_add(len, Ordering::AcqRel);
                    self.shared.pending.fetch_add(1, Ordering::AcqRel);
                    if holder == Holder::Probe {
                        shares.reserve(probe_id, len);
                    }
                    break;
                }
            }
            notified.await;
        }
        let (done, wait) = oneshot::channel();
        let sent = self.tx.send(Req {
            bytes,
            holder,
            probe: probe_id.to_string(),
            epoch,
            seq,
            done,
        });
        if let Err(crossbeam_channel::SendError(req)) = sent {
            // The writer is gone: give the reservation back.
            self.shared.give_back(std::slice::from_ref(&req));
            return Err(SpoolError::Closed);
        }
        wait.await.map_err(|_| SpoolError::Closed)?
    }

    /// Highest sequence number durably spooled (or stored) of the probe sequence
    /// `(probe_id, epoch)`.
    pub fn last_seq(&self, probe_id: &str, epoch: u64) -> Option<u64> {
        self.shared
            .last_seq
            .lock()
            .expect("last_seq lock")
            .get(probe_id, epoch)
    }

    /// Identity of this spool directory (random, created with it; part of the storage
    /// deduplication tokens, so a wiped spool never reuses one).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Entries appended but not yet committed downstream.
    pub fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Bytes `probe` holds of the spool (tests).
    #[cfg(test)]
    pub(crate) fn held_by(&self, probe: &str) -> u64 {
        self.shared.shares.lock().expect("shares lock").held(probe)
    }

    /// Faults to inject into the writer (tests).
    #[cfg(test)]
    pub(crate) fn fault(&self) -> &Fault {
        &self.shared.fault
    }
}

fn sync_dir(dir: &std::path::Path) -> Result<(), SpoolError> {
    tidegate_base::durable::sync_dir(dir).map_err(SpoolError::io(dir, "fsync directory"))
}

struct Writer {
    shared: Arc<Shared>,
    file: File,
    pos: Position,
    /// Why the writer refuses every append until a restart: an `fdatasync` failed (the
    /// kernel may have dropped the dirty pages and will not say so twice), or a failed
    /// group could not be cut off the segment.
    broken: Option<String>,
}

impl Writer {
    fn run(mut self, rx: crossbeam_channel::Receiver<Req>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < 1024 {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let (ends, failed) = match &self.broken {
                Some(why) => (Vec::new(), Some(why.clone())),
                None => self.write_group(&group),
            };
            // The entries before the failure are durable: acknowledge them.
            let mut rest = group;
            let failed_reqs = rest.split_off(ends.len());
            if let Some(&end) = ends.last() {
                {
                    let mut m = self.shared.last_seq.lock().expect("last_seq lock");
                    for r in &rest {
                        if let Some(gone) = m.note(&r.probe, r.epoch, r.seq) {
                            tracing::warn!(probe = %gone.probe, epoch = gone.epoch,
                                kept = super::MAX_EPOCHS_PER_PROBE,
                                "forgetting the probe's least recently used sequence \
                                 (should it come back, its batches are stored again)");
                        }
                    }
                }
                {
                    let mut shares = self.shared.shares.lock().expect("shares lock");
                    for (r, end) in rest.iter().zip(&ends) {
                        if r.holder == Holder::Probe {
                            shares.place(end.segment, &r.probe, r.bytes.len() as u64);
                        }
                    }
                }
                self.shared.durable.send_modify(|d| *d = (*d).max(end));
                for (r, end) in rest.into_iter().zip(ends) {
                    let _ = r.done.send(Ok(end));
                }
            }
            if let Some(e) = failed {
                self.shared.give_back(&failed_reqs);
                for r in failed_reqs {
                    let _ = r.done.send(Err(SpoolError::Io {
                        path: self.shared.dir.clone(),
                        op: "append",
                        source: std::io::Error::other(e.clone()),
                    }));
                }
            }
        }
    }

    /// Writes the group and makes it durable. Returns the ends of the entries that are
    /// durable (all, or those before a failure: a segment roll syncs what it seals) and
    /// the failure. A failed group is cut off the segment, so the entries after it
    /// follow the last durable one with no garbage between; the entries it failed are
    /// neither acknowledged nor published, and their probes send them again.
    fn write_group(&mut self, group: &[Req]) -> (Vec<Position>, Option<String>) {
        let mut ends = Vec::with_capacity(group.len());
        // Where this group's bytes in the current segment start.
        let mut start = self.pos;
        let mut durable = 0;
        for r in group {
            if self.pos.offset > 0
                && self.pos.offset + r.bytes.len() as u64 > self.shared.cfg.segment_bytes
            {
                if let Err(e) = self.seal() {
                    ends.truncate(durable);
                    return (ends, Some(self.fail(start, e)));
                }
                // Everything so far is durable (and published) now.
                durable = ends.len();
                if let Err(e) = self.open_next() {
                    return (ends, Some(self.fail(self.pos, e)));
                }
                start = self.pos;
            }
            if let Err(e) = self.put(&r.bytes) {
                ends.truncate(durable);
                let path = self.shared.dir.join(segment_name(self.pos.segment));
                return (
                    ends,
                    Some(self.fail(start, SpoolError::io(&path, "write")(e))),
                );
            }
            self.pos.offset += r.bytes.len() as u64;
            ends.push(self.pos);
        }
        if let Err(e) = self.sync_data() {
            ends.truncate(durable);
            let path = self.shared.dir.join(segment_name(self.pos.segment));
            let e = SpoolError::io(&path, "fdatasync")(e);
            self.break_on(&e);
            return (ends, Some(self.fail(start, e)));
        }
        (ends, None)
    }

    /// Cuts the current segment back to `start` (what the failed group wrote) and makes
    /// that durable; if that fails too, the writer is broken. Returns the error to give
    /// the failed appends.
    fn fail(&mut self, start: Position, e: SpoolError) -> String {
        let what = e.to_string();
        tracing::error!(error = %what, "spool write failed; the batches are not acknowledged");
        if start.segment == self.pos.segment {
            let cut = self
                .file
                .set_len(start.offset)
                .and_then(|()| self.file.sync_all());
            match cut {
                Ok(()) => self.pos = start,
                Err(cut) => {
                    let path = self.shared.dir.join(segment_name(self.pos.segment));
                    self.broken = Some(format!(
                        "{what}; cutting {} back to {} failed too ({cut}); the spool takes \
                         no more batches until the collector restarts (recovery cuts the \
                         unacknowledged tail)",
                        path.display(),
                        start.offset
                    ));
                }
            }
        }
        if let Some(b) = &self.broken {
            tracing::error!(reason = %b, "spool writer stopped");
        }
        what
    }

    /// Stops the writer for good after `e` (a sync that failed: its pages may be lost).
    fn break_on(&mut self, e: &SpoolError) {
        self.broken = Some(format!(
            "{e}; the spool takes no more batches until the collector restarts"
        ));
    }

    /// Appends to the current segment (the file is opened in append mode).
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        {
            let budget = &self.shared.fault.write_budget;
            let left = budget.load(Ordering::Relaxed);
            if bytes.len() as u64 > left {
                self.file.write_all(&bytes[..left as usize])?;
                budget.store(0, Ordering::Relaxed);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "injected: no space left on device",
                ));
            }
            if left != u64::MAX {
                budget.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            }
        }
        self.file.write_all(bytes)
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.shared.fault.fail_sync.swap(false, Ordering::Relaxed) {
            return Err(std::io::Error::other("injected: fdatasync failed"));
        }
        self.file.sync_data()
    }

    /// Seals the current segment: synced, its end published (so the reader finishes
    /// it). A failed sync breaks the writer.
    fn seal(&mut self) -> Result<(), SpoolError> {
        let old = self.shared.dir.join(segment_name(self.pos.segment));
        if let Err(e) = self.file.sync_all() {
            let e = SpoolError::io(&old, "fsync")(e);
            self.break_on(&e);
            return Err(e);
        }
        self.shared.durable.send_replace(self.pos);
        Ok(())
    }

    /// Starts the next segment. If it cannot be created the position is unchanged; if
    /// the directory cannot be synced the writer is broken (the new segment might not
    /// survive a crash).
    fn open_next(&mut self) -> Result<(), SpoolError> {
        let next = Position {
            segment: self.pos.segment + 1,
            offset: 0,
        };
        let path = self.shared.dir.join(segment_name(next.segment));
        self.file = tidegate_base::durable::private_file()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(SpoolError::io(&path, "create segment"))?;
        self.pos = next;
        sync_dir(&self.shared.dir).inspect_err(|e| self.break_on(e))
    }
}
