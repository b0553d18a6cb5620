//! The probe's on-disk spool of sealed, unacknowledged batches.
//!
//! One file per batch, `NNNNNNNNNNNNNNNNNNNN.batch` named by sequence number, holding the
//! exact bytes sent on the wire. A batch counts as spooled once its file is written,
//! fsync'd, renamed into place and the directory fsync'd; it is deleted when the
//! collector acknowledges it. The spool is bounded: when it is full, [`Spool::append`]
//! blocks until acknowledgements free space (backpressure; nothing is dropped).
//!
//! Sequence numbers survive restarts: the next one is one more than the highest of the
//! spooled files and of `seq.mark`, a high-water mark written (atomically) before the
//! newest spooled file is deleted. A directory lock (`lock`, `flock`) keeps two
//! processes from sharing a spool.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Read},
    path::{Path, PathBuf},
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use tidegate_base::{DirLock, LockError, durable};
use tidegate_wire::{peek_batch_header, set_batch_seq};
use tracing::{info, warn};

use super::{ExportMetrics, SpoolError};

const MARK: &str = "seq.mark";
const LOCK: &str = "lock";
const EXT: &str = "batch";

fn file_name(seq: u64) -> String {
    format!("{seq:020}.{EXT}")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    durable::sync_dir(dir).map_err(io_err(dir))
}

/// Writes `bytes` to `path` durably (temp file, fsync, rename); the caller fsyncs the
/// directory.
fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    durable::write_renamed(path, bytes).map_err(io_err(path))
}

#[derive(Debug, Default)]
struct State {
    /// seq → file size.
    files: BTreeMap<u64, u64>,
    bytes: u64,
    next_seq: u64,
    /// Persisted high-water mark.
    mark: u64,
}

/// What [`Spool::reconcile`] did with the collector's `last_acked_seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Nothing to do.
    Nothing,
    /// This many spooled batches were already stored by the collector and are deleted.
    Dropped(usize),
    /// The collector knows sequence numbers this spool never assigned (the spool was
    /// lost): this many spooled batches were renumbered to follow the collector's.
    Renumbered(usize),
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    changed: Condvar,
    metrics: ExportMetrics,
    _lock: DirLock,
}

impl Spool {
    /// Opens (creating if needed) and scans `dir`. Leftover temp files are removed;
    /// unreadable batch files are renamed `*.corrupt` and reported; batches of another
    /// probe id are an error.
    pub fn open(
        dir: &Path,
        probe_id: &str,
        max_bytes: u64,
        metrics: ExportMetrics,
    ) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = DirLock::acquire(dir, LOCK).map_err(|e| match e {
            LockError::Held { .. } => SpoolError::Locked {
                dir: dir.to_path_buf(),
            },
            LockError::Io { path, source } => SpoolError::Io { path, source },
        })?;
        let mark_path = dir.join(MARK);
        let mark = match fs::read_to_string(&mark_path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| SpoolError::BadMark {
                path: mark_path.clone(),
                reason: format!("{:?} is not a sequence number", s.trim()),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err(&mark_path)(e)),
        };
        let mut st = State {
            mark,
            ..State::default()
        };
        let mut highest = mark;
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if durable::is_tmp_name(&name) || name.ends_with(".tmp") {
                // A crash between write and rename: never counted as spooled.
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            if let Some(seq) = name
                .strip_suffix(".batch.corrupt")
                .and_then(|s| s.parse::<u64>().ok())
            {
                // Set aside earlier; its number may have reached the collector.
                highest = highest.max(seq);
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".batch")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            highest = highest.max(seq);
            let mut head = Vec::with_capacity(4096);
            File::open(&path)
                .and_then(|f| f.take(4096).read_to_end(&mut head))
                .map_err(io_err(&path))?;
            let problem = match peek_batch_header(&head) {
                Err(e) => Some(e.to_string()),
                Ok(h) if h.seq != seq => Some(format!("header says seq {}", h.seq)),
                Ok(h) if h.probe_id != probe_id => {
                    return Err(SpoolError::ForeignProbe {
                        path,
                        found: h.probe_id,
                        expected: probe_id.to_owned(),
                    });
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                let aside = path.with_extension("batch.corrupt");
                warn!(file = %path.display(), %problem, "unreadable spooled batch moved aside");
                fs::rename(&path, &aside).map_err(io_err(&path))?;
                continue;
            }
            let len = entry.metadata().map_err(io_err(&path))?.len();
            st.files.insert(seq, len);
            st.bytes += len;
        }
        st.next_seq = highest + 1;
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(st),
            changed: Condvar::new(),
            metrics,
            _lock: lock,
        };
        spool.publish(&spool.lock());
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, st: &State) {
        self.metrics.spool_bytes.set(st.bytes as i64);
        self.metrics.spool_batches.set(st.files.len() as i64);
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(file_name(seq))
    }

    fn write_mark(&self, st: &mut State, seq: u64) -> Result<(), SpoolError> {
        if seq <= st.mark {
            return Ok(());
        }
        let path = self.dir.join(MARK);
        write_durable(&path, format!("{seq}\n").as_bytes())?;
        sync_dir(&self.dir)?;
        st.mark = seq;
        Ok(())
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number the next appended batch gets.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Bytes and batches spooled.
    pub fn stats(&self) -> (u64, u64) {
        let st = self.lock();
        (st.bytes, st.files.len() as u64)
    }

    /// Spooled sequence numbers, oldest first.
    pub fn seqs(&self) -> Vec<u64> {
        self.lock().files.keys().copied().collect()
    }

    /// Nothing spooled.
    pub fn is_empty(&self) -> bool {
        self.lock().files.is_empty()
    }

    /// Spools an encoded batch under the next sequence number (written into its header)
    /// and returns that number. Blocks while the spool is full and not empty.
    pub fn append(&self, mut bytes: Vec<u8>) -> Result<u64, SpoolError> {
        let len = bytes.len() as u64;
        let mut st = self.lock();
        let mut waited = false;
        while !st.files.is_empty() && st.bytes + len > self.max_bytes {
            if !waited {
                waited = true;
                self.metrics.spool_full_waits.inc();
                warn!(
                    spool_bytes = st.bytes,
                    max_bytes = self.max_bytes,
                    batches = st.files.len(),
                    "spool full: waiting for the collector to acknowledge batches"
                );
            }
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if waited {
            info!(spool_bytes = st.bytes, "spool has room again");
        }
        let seq = st.next_seq;
        // Never reuse a number once tried, whatever happens below.
        st.next_seq += 1;
        let path = self.path(seq);
        set_batch_seq(&mut bytes, seq).map_err(|source| SpoolError::Batch {
            path: path.clone(),
            source,
        })?;
        write_durable(&path, &bytes)?;
        if let Err(e) = sync_dir(&self.dir) {
            // Not durable: do not let it be sent (the caller keeps the records).
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        st.files.insert(seq, len);
        st.bytes += len;
        self.publish(&st);
        drop(st);
        self.changed.notify_all();
        Ok(seq)
    }

    /// The oldest spooled sequence number after `after` (or the oldest of all).
    pub fn first_after(&self, after: Option<u64>) -> Option<u64> {
        let st = self.lock();
        match after {
            None => st.files.keys().next().copied(),
            Some(a) => st.files.range(a + 1..).next().map(|(k, _)| *k),
        }
    }

    /// The bytes of a spooled batch; `None` when it is no longer spooled.
    pub fn read(&self, seq: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        if !self.lock().files.contains_key(&seq) {
            return Ok(None);
        }
        let path = self.path(seq);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Deletes an acknowledged batch. Returns whether it was spooled.
    pub fn remove(&self, seq: u64) -> Result<bool, SpoolError> {
        let mut st = self.lock();
        let Some(len) = st.files.get(&seq).copied() else {
            return Ok(false);
        };
        if st.files.keys().next_back() == Some(&seq) {
            // The newest file carries the high-water mark; persist it before it goes.
            self.write_mark(&mut st, seq)?;
        }
        let path = self.path(seq);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        st.files.remove(&seq);
        st.bytes -= len;
        self.publish(&st);
        drop(st);
        self.changed.notify_all();
        Ok(true)
    }

    /// Applies the collector's `last_acked_seq` at connect time: batches up to it are
    /// already stored and are deleted — unless the collector knows numbers this spool
    /// never assigned, in which case the spool was lost and every spooled batch is new
    /// data: they are renumbered after `last` so deduplication does not discard them.
    pub fn reconcile(&self, last: u64) -> Result<Reconciled, SpoolError> {
        let mut st = self.lock();
        if last < st.next_seq {
            let stored: Vec<u64> = st.files.range(..=last).map(|(k, _)| *k).collect();
            drop(st);
            for s in &stored {
                self.remove(*s)?;
            }
            return Ok(if stored.is_empty() {
                Reconciled::Nothing
            } else {
                Reconciled::Dropped(stored.len())
            });
        }
        // The mark first: even if the renumbering is interrupted, no later batch can
        // reuse a number the collector has.
        self.write_mark(&mut st, last)?;
        let old: Vec<(u64, u64)> = st.files.iter().map(|(k, v)| (*k, *v)).collect();
        let mut renamed = BTreeMap::new();
        let mut next = last + 1;
        for (seq, len) in &old {
            let from = self.path(*seq);
            let mut bytes = fs::read(&from).map_err(io_err(&from))?;
            let to = self.path(next);
            set_batch_seq(&mut bytes, next).map_err(|source| SpoolError::Batch {
                path: from.clone(),
                source,
            })?;
            write_durable(&to, &bytes)?;
            renamed.insert(next, *len);
            next += 1;
        }
        sync_dir(&self.dir)?;
        for (seq, _) in &old {
            let p = self.path(*seq);
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
        sync_dir(&self.dir)?;
        st.files = renamed;
        st.next_seq = next;
        self.publish(&st);
        Ok(Reconciled::Renumbered(old.len()))
    }

    /// Waits until the spool is empty or `deadline` passes; returns whether it is empty.
    pub fn wait_empty(&self, deadline: Instant) -> bool {
        let mut st = self.lock();
        loop {
            if st.files.is_empty() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{sync::Arc, time::Duration};
    use tidegate_wire::{Batch, decode_batch, encode_batch};

    fn enc(probe: &str, n: u64) -> Vec<u8> {
        encode_batch(&Batch {
            probe_id: probe.into(),
            seq: 0,
            created_ns: n,
            records: Vec::new(),
            health: None,
        })
    }

    fn open(dir: &Path, max: u64) -> Spool {
        Spool::open(dir, "p", max, ExportMetrics::new()).unwrap()
    }

    #[test]
    fn sequence_numbers_survive_restarts_and_acks() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), 1 << 20);
        assert_eq!(s.append(enc("p", 1)).unwrap(), 1);
        assert_eq!(s.append(enc("p", 2)).unwrap(), 2);
        let b = decode_batch(&s.read(2).unwrap().unwrap()).unwrap();
        assert_eq!((b.seq, b.created_ns), (2, 2));
        drop(s);
        // Restart with files: continues after them.
        let s = open(d.path(), 1 << 20);
        assert_eq!(s.seqs(), vec![1, 2]);
        assert!(s.remove(1).unwrap());
        assert!(s.remove(2).unwrap());
        assert!(!s.remove(2).unwrap());
        assert!(s.is_empty());
        drop(s);
        // Restart with an empty spool: the mark keeps the numbers going.
        let s = open(d.path(), 1 << 20);
        assert_eq!(s.next_seq(), 3);
        assert_eq!(s.append(enc("p", 3)).unwrap(), 3);
    }

    #[test]
    fn a_second_process_and_a_foreign_probe_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), 1 << 20);
        s.append(enc("p", 1)).unwrap();
        assert!(matches!(
            Spool::open(d.path(), "p", 1 << 20, ExportMetrics::new()),
            Err(SpoolError::Locked { .. })
        ));
        drop(s);
        let e = Spool::open(d.path(), "q", 1 << 20, ExportMetrics::new()).unwrap_err();
        assert!(matches!(e, SpoolError::ForeignProbe { .. }), "{e}");
    }

    #[test]
    fn garbage_and_leftovers_are_set_aside() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(file_name(7)), b"not a batch").unwrap();
        fs::write(d.path().join(file_name(8).replace("batch", "tmp")), b"half").unwrap();
        fs::write(d.path().join("notes.txt"), b"ignored").unwrap();
        let s = open(d.path(), 1 << 20);
        assert!(s.is_empty());
        // The corrupt file's number is not reused.
        assert_eq!(s.next_seq(), 8);
        assert!(d.path().join(format!("{}.corrupt", file_name(7))).exists());
        assert!(!d.path().join(file_name(8).replace("batch", "tmp")).exists());
        drop(s);
        // Still not reused after another restart.
        assert_eq!(open(d.path(), 1 << 20).next_seq(), 8);
        fs::write(d.path().join(MARK), "x\n").unwrap();
        let e = Spool::open(d.path(), "p", 1 << 20, ExportMetrics::new()).unwrap_err();
        assert!(
            e.to_string().contains("\"x\" is not a sequence number"),
            "{e}"
        );
    }

    #[test]
    fn full_spool_blocks_until_space_frees() {
        let d = tempfile::tempdir().unwrap();
        let one = enc("p", 0).len() as u64;
        let s = Arc::new(open(d.path(), 2 * one));
        s.append(enc("p", 1)).unwrap();
        s.append(enc("p", 2)).unwrap();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.append(enc("p", 3)).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        assert!(!t.is_finished(), "append did not wait for space");
        assert_eq!(s.stats(), (2 * one, 2));
        s.remove(1).unwrap();
        assert_eq!(t.join().unwrap(), 3);
        assert_eq!(s.seqs(), vec![2, 3]);
        assert_eq!(s.metrics.spool_full_waits.get(), 1);
        // An oversized batch still goes into an empty spool.
        let d2 = tempfile::tempdir().unwrap();
        let tiny = open(d2.path(), 1);
        assert_eq!(tiny.append(enc("p", 1)).unwrap(), 1);
    }

    #[test]
    fn reconcile_drops_stored_batches_or_renumbers_after_a_lost_spool() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), 1 << 20);
        for i in 1..=4 {
            s.append(enc("p", i)).unwrap();
        }
        assert_eq!(s.reconcile(2).unwrap(), Reconciled::Dropped(2));
        assert_eq!(s.seqs(), vec![3, 4]);
        assert_eq!(s.reconcile(2).unwrap(), Reconciled::Nothing);
        // The collector has seen up to 100: ours are new data, renumbered after it.
        assert_eq!(s.reconcile(100).unwrap(), Reconciled::Renumbered(2));
        assert_eq!(s.seqs(), vec![101, 102]);
        let b = decode_batch(&s.read(101).unwrap().unwrap()).unwrap();
        assert_eq!((b.seq, b.created_ns), (101, 3));
        assert_eq!(s.append(enc("p", 5)).unwrap(), 103);
        drop(s);
        let s = open(d.path(), 1 << 20);
        assert_eq!(s.seqs(), vec![101, 102, 103]);
        // An empty spool behind the collector just moves its numbers on.
        for q in s.seqs() {
            s.remove(q).unwrap();
        }
        assert_eq!(s.reconcile(500).unwrap(), Reconciled::Renumbered(0));
        assert_eq!(s.next_seq(), 501);
        drop(s);
        assert_eq!(open(d.path(), 1 << 20).next_seq(), 501);
    }
}
