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
//!
//! The numbers belong to the spool's **epoch** (`epoch`, a random number drawn when the
//! directory is created, or 0 for a spool an older build wrote): the collector tracks
//! `(probe id, epoch, seq)`, so another spool of the same probe (a forensic replay with
//! its own `--spool-dir`, a wiped disk) is another sequence and never taken for a resend
//! of this one. Every spooled batch carries the spool's epoch in its header.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Read},
    path::{Path, PathBuf},
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use tidegate_base::{DirLock, LockError, durable};
use tidegate_wire::{decode_batch, encode_batch, peek_batch_header, set_batch_seq};
use tracing::{info, warn};

use super::{ExportMetrics, SpoolError};

const MARK: &str = "seq.mark";
const EPOCH: &str = "epoch";
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
    /// The sequence's epoch.
    epoch: u64,
}

impl State {
    /// Batch `seq` now takes `len` bytes.
    fn resize(&mut self, seq: u64, len: u64) {
        if let Some(old) = self.files.insert(seq, len) {
            self.bytes = self.bytes - old + len;
        }
    }
}

/// What [`Spool::reconcile`] did with the collector's `last_acked_seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Nothing to do.
    Nothing,
    /// This many spooled batches were already stored by the collector and are deleted.
    Dropped(usize),
    /// The collector knows numbers of this sequence that this spool never assigned (the
    /// directory was restored from a backup or copied): the spool starts a new epoch, and
    /// this many spooled batches move to it, to be sent again in full (a batch the
    /// collector may already hold is stored twice rather than risk losing one).
    NewEpoch(usize),
}

/// Reads the spool's epoch, creating it when absent: random for a new directory, 0 for
/// one that already holds batches or a mark from a build before epochs.
fn open_epoch(dir: &Path) -> Result<u64, SpoolError> {
    let path = dir.join(EPOCH);
    match fs::read_to_string(&path) {
        Ok(s) => {
            return s.trim().parse::<u64>().map_err(|_| SpoolError::BadMark {
                path: path.clone(),
                reason: format!("{:?} is not an epoch number", s.trim()),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    let mut older = false;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        older |= name == MARK || name.ends_with(".batch") || name.ends_with(".batch.corrupt");
    }
    let epoch = if older { 0 } else { new_epoch(0)? };
    write_epoch(dir, epoch)?;
    Ok(epoch)
}

/// A random epoch, never 0 (the epoch of pre-epoch spools) nor `old`.
fn new_epoch(old: u64) -> Result<u64, SpoolError> {
    loop {
        let e = getrandom::u64().map_err(|e| SpoolError::Io {
            path: PathBuf::from("getrandom"),
            source: io::Error::other(e.to_string()),
        })?;
        if e != 0 && e != old {
            return Ok(e);
        }
    }
}

fn write_epoch(dir: &Path, epoch: u64) -> Result<(), SpoolError> {
    write_durable(&dir.join(EPOCH), format!("{epoch}\n").as_bytes())?;
    sync_dir(dir)
}

/// Puts `bytes` (a batch) in sequence `(epoch, seq)`: in place for the current format,
/// re-encoded for a format-1 batch (which has no epoch field).
fn stamp(bytes: &mut Vec<u8>, epoch: u64, seq: u64) -> Result<(), tidegate_wire::WireError> {
    if peek_batch_header(bytes)?.format == tidegate_wire::BATCH_FORMAT {
        return set_batch_seq(bytes, epoch, seq);
    }
    let mut b = decode_batch(bytes)?;
    (b.epoch, b.seq) = (epoch, seq);
    *bytes = encode_batch(&b);
    Ok(())
}

/// Rewrites spooled batch `seq` into `epoch`, durably; returns its new size.
fn restamp_file(dir: &Path, seq: u64, epoch: u64) -> Result<u64, SpoolError> {
    let path = dir.join(file_name(seq));
    let mut bytes = fs::read(&path).map_err(io_err(&path))?;
    stamp(&mut bytes, epoch, seq).map_err(|source| SpoolError::Batch {
        path: path.clone(),
        source,
    })?;
    write_durable(&path, &bytes)?;
    sync_dir(dir)?;
    Ok(bytes.len() as u64)
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
        tidegate_base::durable::private_dir(dir).map_err(io_err(dir))?;
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
        let epoch = open_epoch(dir)?;
        let mut st = State {
            mark,
            epoch,
            ..State::default()
        };
        let mut restamp = Vec::new();
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
                Ok(h) => {
                    if h.epoch != epoch {
                        restamp.push(seq);
                    }
                    None
                }
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
        st.next_seq = highest.checked_add(1).ok_or_else(|| SpoolError::BadMark {
            path: dir.to_path_buf(),
            reason: "sequence numbers exhausted (a batch or the mark holds the largest one)".into(),
        })?;
        // A batch of another epoch: a move to a new epoch was interrupted. Every batch
        // here belongs to the spool's epoch.
        for seq in restamp {
            st.resize(seq, restamp_file(dir, seq, epoch)?);
        }
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

    /// The epoch of this spool's sequence (sent in `Hello`).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
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
        st.next_seq = seq.checked_add(1).ok_or_else(|| SpoolError::BadMark {
            path: self.dir.clone(),
            reason: "sequence numbers exhausted".into(),
        })?;
        let path = self.path(seq);
        set_batch_seq(&mut bytes, st.epoch, seq).map_err(|source| SpoolError::Batch {
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

    /// Applies the collector's `last_acked_seq` for this spool's sequence at connect
    /// time. Batches up to it were stored by the collector under this very `(epoch, seq)`
    /// (their acknowledgements were lost) and are deleted. If the collector knows numbers
    /// this spool never assigned, the spool's numbering cannot be trusted: it moves to a
    /// new epoch and keeps every batch ([`Reconciled::NewEpoch`]); the caller reconnects
    /// with the new epoch.
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
        // The epoch file first: if the move is interrupted, the next open restamps the
        // batches still carrying the old epoch.
        let epoch = new_epoch(st.epoch)?;
        write_epoch(&self.dir, epoch)?;
        st.epoch = epoch;
        let seqs: Vec<u64> = st.files.keys().copied().collect();
        for seq in &seqs {
            st.resize(*seq, restamp_file(&self.dir, *seq, epoch)?);
        }
        self.publish(&st);
        Ok(Reconciled::NewEpoch(seqs.len()))
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
            epoch: 0,
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
    fn reconcile_drops_stored_batches_or_moves_to_a_new_epoch() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), 1 << 20);
        let e0 = s.epoch();
        assert_ne!(e0, 0, "a new spool draws a random epoch");
        for i in 1..=4 {
            s.append(enc("p", i)).unwrap();
        }
        let b = decode_batch(&s.read(1).unwrap().unwrap()).unwrap();
        assert_eq!((b.epoch, b.seq), (e0, 1));
        // The collector stored 1 and 2 of this sequence; their acks were lost.
        assert_eq!(s.reconcile(2).unwrap(), Reconciled::Dropped(2));
        assert_eq!(s.seqs(), vec![3, 4]);
        assert_eq!(s.reconcile(2).unwrap(), Reconciled::Nothing);
        // The collector knows up to 100 of this sequence, which this spool never
        // assigned (restored from a backup): a new epoch, every batch kept, numbers kept.
        assert_eq!(s.reconcile(100).unwrap(), Reconciled::NewEpoch(2));
        let e1 = s.epoch();
        assert!(e1 != e0 && e1 != 0);
        assert_eq!(s.seqs(), vec![3, 4]);
        let b = decode_batch(&s.read(3).unwrap().unwrap()).unwrap();
        assert_eq!((b.epoch, b.seq, b.created_ns), (e1, 3, 3));
        assert_eq!(s.append(enc("p", 5)).unwrap(), 5);
        drop(s);
        let s = open(d.path(), 1 << 20);
        assert_eq!((s.epoch(), s.seqs()), (e1, vec![3, 4, 5]));
    }

    #[test]
    fn another_spool_is_another_sequence_and_old_spools_are_epoch_0() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (open(a.path(), 1 << 20), open(b.path(), 1 << 20));
        let ea = sa.epoch();
        assert_ne!(ea, sb.epoch());
        drop((sa, sb));
        assert_eq!(
            open(a.path(), 1 << 20).epoch(),
            ea,
            "the epoch survives restarts"
        );

        // A spool from a build before epochs: format-1 batches, no epoch file.
        let old = tempfile::tempdir().unwrap();
        let v1 = tidegate_wire::encode_batch_as(
            &Batch {
                probe_id: "p".into(),
                epoch: 0,
                seq: 7,
                created_ns: 70,
                records: Vec::new(),
                health: None,
            },
            1,
        );
        fs::write(old.path().join(file_name(7)), &v1).unwrap();
        let s = open(old.path(), 1 << 20);
        assert_eq!((s.epoch(), s.seqs(), s.next_seq()), (0, vec![7], 8));
        // Moving it to a new epoch re-encodes the old batch in the current format.
        assert_eq!(s.reconcile(50).unwrap(), Reconciled::NewEpoch(1));
        let bytes = s.read(7).unwrap().unwrap();
        let b = decode_batch(&bytes).unwrap();
        assert_eq!((b.epoch, b.seq, b.created_ns), (s.epoch(), 7, 70));
        assert_eq!(s.stats(), (bytes.len() as u64, 1));
    }

    #[test]
    fn an_interrupted_move_to_a_new_epoch_completes_on_open() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), 1 << 20);
        s.append(enc("p", 1)).unwrap();
        s.append(enc("p", 2)).unwrap();
        drop(s);
        // The epoch file was rewritten, then the process died before the batches were.
        write_epoch(d.path(), 4242).unwrap();
        let s = open(d.path(), 1 << 20);
        assert_eq!(s.epoch(), 4242);
        for q in [1, 2] {
            assert_eq!(
                decode_batch(&s.read(q).unwrap().unwrap()).unwrap().epoch,
                4242
            );
        }
    }
}
