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

use super::{Position, SpoolError, SpoolReader, Streams, entry, segment_name, state};

/// Spool settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory holding the spool.
    pub dir: PathBuf,
    /// Upper bound on spooled bytes; appends wait (probes back off) beyond it.
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
    /// Entries appended and not yet committed downstream.
    pub pending: AtomicU64,
    /// Signalled when a commit frees space.
    pub space: Notify,
    /// Highest durable sequence number per probe sequence.
    pub last_seq: Mutex<Streams>,
    /// Held while the spool is open (by the writer and the reader): a second collector on
    /// the same directory is refused.
    _lock: tidegate_base::DirLock,
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
            last_seq: Mutex::new(rec.last_seq),
            _lock: lock,
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
    /// on stable storage. Waits while the spool is full (backpressure).
    pub async fn append(
        &self,
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
            let cur = self.shared.bytes.load(Ordering::Acquire);
            if cur == 0 || cur + len <= self.shared.cfg.max_bytes {
                if self
                    .shared
                    .bytes
                    .compare_exchange(cur, cur + len, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    break;
                }
                continue;
            }
            notified.await;
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Req {
                bytes,
                probe: probe_id.to_string(),
                epoch,
                seq,
                done,
            })
            .map_err(|_| SpoolError::Closed)?;
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
}

fn sync_dir(dir: &std::path::Path) -> Result<(), SpoolError> {
    tidegate_base::durable::sync_dir(dir).map_err(SpoolError::io(dir, "fsync directory"))
}

struct Writer {
    shared: Arc<Shared>,
    file: File,
    pos: Position,
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
            let result = self.write_group(&group);
            match result {
                Ok(ends) => {
                    {
                        let mut m = self.shared.last_seq.lock().expect("last_seq lock");
                        for r in &group {
                            if let Some(gone) = m.note(&r.probe, r.epoch, r.seq) {
                                tracing::warn!(probe = %gone.probe, epoch = gone.epoch,
                                    kept = super::MAX_EPOCHS_PER_PROBE,
                                    "forgetting the probe's least recently used sequence \
                                     (should it come back, its batches are stored again)");
                            }
                        }
                    }
                    self.shared
                        .pending
                        .fetch_add(group.len() as u64, Ordering::AcqRel);
                    self.shared.durable.send_replace(self.pos);
                    for (r, end) in group.into_iter().zip(ends) {
                        let _ = r.done.send(Ok(end));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool write failed; the batches are not acknowledged");
                    let n: u64 = group.iter().map(|r| r.bytes.len() as u64).sum();
                    self.shared.bytes.fetch_sub(n, Ordering::AcqRel);
                    for r in group {
                        let _ = r.done.send(Err(SpoolError::Io {
                            path: self.shared.dir.clone(),
                            op: "append",
                            source: std::io::Error::other(e.to_string()),
                        }));
                    }
                }
            }
        }
    }

    fn write_group(&mut self, group: &[Req]) -> Result<Vec<Position>, SpoolError> {
        let mut ends = Vec::with_capacity(group.len());
        for r in group {
            if self.pos.offset > 0
                && self.pos.offset + r.bytes.len() as u64 > self.shared.cfg.segment_bytes
            {
                self.roll()?;
            }
            let path = self.shared.dir.join(segment_name(self.pos.segment));
            self.file
                .write_all(&r.bytes)
                .map_err(SpoolError::io(&path, "write"))?;
            self.pos.offset += r.bytes.len() as u64;
            ends.push(self.pos);
        }
        let path = self.shared.dir.join(segment_name(self.pos.segment));
        self.file
            .sync_data()
            .map_err(SpoolError::io(&path, "fdatasync"))?;
        Ok(ends)
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        let old = self.shared.dir.join(segment_name(self.pos.segment));
        self.file
            .sync_all()
            .map_err(SpoolError::io(&old, "fsync"))?;
        // Publish the sealed end before moving on, so the reader finishes this segment.
        self.shared.durable.send_replace(self.pos);
        self.pos = Position {
            segment: self.pos.segment + 1,
            offset: 0,
        };
        let path = self.shared.dir.join(segment_name(self.pos.segment));
        self.file = tidegate_base::durable::private_file()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(SpoolError::io(&path, "create segment"))?;
        sync_dir(&self.shared.dir)
    }
}
