//! The log on disk, in one directory:
//!
//! - `entries.jsonl`: one canonical entry per line ([`Entry`]), appended, fsync'd before
//!   anything that depends on it leaves the collector;
//! - `checkpoints.jsonl`: every signed checkpoint ever made, one JSON object per line
//!   (`{"note": "<signed note>", "size": N, "time_ns": T}`), so consistency between any
//!   two can be proved;
//! - `lock`: held while a collector has the log open.
//!
//! A crash can leave a torn last line in either file (never acknowledged to anyone); it
//! is cut off when the log is opened. Anything else that does not chain (an entry whose
//! `index` or `prev` is wrong) stops the open: the log was changed, and `evidence verify`
//! says where.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use ed25519_dalek::SigningKey;
use serde_json::Value;
use tidegate_base::{DirLock, LockError};

use crate::entry::{Entry, line_of};
use crate::merkle::{Hash, Tree, leaf_hash};
use crate::note::Checkpoint;

/// File of entries.
pub const ENTRIES: &str = "entries.jsonl";
/// File of checkpoints.
pub const CHECKPOINTS: &str = "checkpoints.jsonl";
/// File of RFC 3161 time stamps of checkpoints.
pub const TIMESTAMPS: &str = "timestamps.jsonl";

/// An RFC 3161 time stamp of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timestamp {
    /// The checkpoint's tree size.
    pub size: u64,
    /// SHA-256 (hex) of the checkpoint's whole signed note: what the TSA signed.
    pub note_sha256: String,
    /// The DER `TimeStampResp`, base64.
    pub response: String,
}
const LOCK: &str = "lock";

/// Why the log cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// I/O on a file of the log.
    #[error("evidence log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another process has the log open.
    #[error("evidence log {dir} is in use by another process")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The log on disk does not chain.
    #[error(
        "evidence log {path}: entry {index}: {reason} — the log was changed; run \
         `tidegate-collector evidence verify` and keep the directory for investigation"
    )]
    Broken {
        /// The file.
        path: PathBuf,
        /// The first entry that does not chain.
        index: u64,
        /// How.
        reason: String,
    },
}

/// Where an appended entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf: Hash,
}

/// A stored checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredCheckpoint {
    /// The signed note.
    pub note: String,
    /// Its tree size.
    pub size: u64,
    /// When it was signed (collector clock), Unix ns.
    pub time_ns: u64,
}

struct Inner {
    entries: File,
    checkpoints: File,
    tree: Tree,
    /// Byte offset of each entry's line.
    offsets: Vec<u64>,
    /// End of the entries (written or pending).
    end: u64,
    /// Entries known durable.
    synced: u64,
    /// End of the durable entries in the file.
    synced_end: u64,
    /// Appended lines not yet written to the file (written and fsync'd by `sync`).
    pending: Vec<u8>,
    last_checkpoint: Option<StoredCheckpoint>,
}

/// An open evidence log.
pub struct EvidenceLog {
    dir: PathBuf,
    origin: String,
    key: SigningKey,
    inner: Mutex<Inner>,
    _lock: DirLock,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads `path`'s complete lines (`\n`-terminated) with their offsets; cuts off a torn
/// last line. Returns (lines, end of the last complete line).
fn read_lines(path: &Path, file: &mut File) -> Result<(Vec<(u64, String)>, u64), LogError> {
    file.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let mut r = BufReader::new(&mut *file);
    let mut lines = Vec::new();
    let mut off = 0u64;
    loop {
        let mut buf = Vec::new();
        let n = r.read_until(b'\n', &mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            tracing::warn!(file = %path.display(), offset = off, bytes = n,
                "evidence log: cutting off a torn last line (a crash mid-append; never acknowledged)");
            break;
        }
        buf.pop();
        let line = String::from_utf8(buf).map_err(|_| LogError::Broken {
            path: path.to_path_buf(),
            index: lines.len() as u64,
            reason: "not UTF-8".into(),
        })?;
        lines.push((off, line));
        off += n as u64;
    }
    drop(r);
    if file.metadata().map_err(io(path))?.len() != off {
        file.set_len(off).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
    }
    file.seek(SeekFrom::End(0)).map_err(io(path))?;
    Ok((lines, off))
}

impl EvidenceLog {
    /// Opens (creating if needed) the log in `dir`, named `origin` in its checkpoints,
    /// signing with `key`.
    pub fn open(dir: &Path, origin: &str, key: SigningKey) -> Result<EvidenceLog, LogError> {
        tidegate_base::durable::private_dir(dir).map_err(io(dir))?;
        let lock = DirLock::acquire(dir, LOCK).map_err(|e| match e {
            LockError::Held { .. } => LogError::Locked {
                dir: dir.to_path_buf(),
            },
            LockError::Io { path, source } => LogError::Io { path, source },
        })?;
        let open = |name: &str| {
            let p = dir.join(name);
            tidegate_base::durable::private_file()
                .read(true)
                .append(true)
                .create(true)
                .open(&p)
                .map_err(|source| LogError::Io { path: p, source })
        };
        let (entries_path, ckpt_path) = (dir.join(ENTRIES), dir.join(CHECKPOINTS));
        let mut entries = open(ENTRIES)?;
        let mut checkpoints = open(CHECKPOINTS)?;
        entries
            .seek(SeekFrom::Start(0))
            .map_err(io(&entries_path))?;
        let mut tree = Tree::new();
        let mut offsets = Vec::new();
        let mut prev = [0u8; 32];
        let mut off = 0u64;
        let mut broken: Option<LogError> = None;
        let (complete, total) = crate::entry::scan_reader(&entries, |line| {
            if broken.is_some() {
                return;
            }
            let i = tree.len();
            let fail = |reason: String| LogError::Broken {
                path: entries_path.clone(),
                index: i,
                reason,
            };
            match line.head {
                Err(r) => broken = Some(fail(r)),
                Ok(e) if e.index != i => {
                    broken = Some(fail(format!("says it is entry {}", e.index)))
                }
                Ok(e) if e.prev != prev => {
                    broken = Some(fail("its `prev` is not the previous entry's hash".into()))
                }
                Ok(_) => {
                    prev = line.leaf;
                    tree.push(prev);
                    offsets.push(off);
                    off += line.len as u64;
                }
            }
        })
        .map_err(io(&entries_path))?;
        if let Some(e) = broken {
            return Err(e);
        }
        let end = complete;
        if complete < total {
            tracing::warn!(file = %entries_path.display(), offset = end, bytes = total - complete,
                "evidence log: cutting off a torn last line (a crash mid-append; never acknowledged)");
            entries.set_len(end).map_err(io(&entries_path))?;
            entries.sync_all().map_err(io(&entries_path))?;
        }
        entries.seek(SeekFrom::End(0)).map_err(io(&entries_path))?;
        let (ckpts, _) = read_lines(&ckpt_path, &mut checkpoints)?;
        let last_checkpoint =
            match ckpts.last() {
                None => None,
                Some((_, l)) => Some(serde_json::from_str::<StoredCheckpoint>(l).map_err(|e| {
                    LogError::Broken {
                        path: ckpt_path.clone(),
                        index: ckpts.len() as u64 - 1,
                        reason: e.to_string(),
                    }
                })?),
            };
        let synced = tree.len();
        tracing::info!(dir = %dir.display(), entries = synced, checkpoints = ckpts.len(), "evidence log open");
        Ok(EvidenceLog {
            dir: dir.to_path_buf(),
            origin: origin.to_string(),
            key,
            inner: Mutex::new(Inner {
                entries,
                checkpoints,
                tree,
                offsets,
                end,
                synced,
                synced_end: end,
                pending: Vec::new(),
                last_checkpoint,
            }),
            _lock: lock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's name (checkpoint origin and key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public key checkpoints verify with.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// Entries in the log.
    pub fn len(&self) -> u64 {
        self.lock().tree.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends an entry of `kind` (buffered, not yet durable: call [`sync`](Self::sync)
    /// before anything depends on it; a failed sync drops every entry appended since
    /// the last good one).
    pub fn append(&self, kind: &str, data: Value) -> Result<Appended, LogError> {
        self.append_ref(kind, &data)
    }

    /// [`Self::append`] of borrowed data (the caller keeps it, e.g. to send it on).
    pub fn append_ref(&self, kind: &str, data: &Value) -> Result<Appended, LogError> {
        let mut g = self.lock();
        let index = g.tree.len();
        let prev = index
            .checked_sub(1)
            .and_then(|i| g.tree.leaf(i))
            .unwrap_or([0; 32]);
        let line = line_of(index, &prev, now_ns(), kind, data);
        let leaf = leaf_hash(line.as_bytes());
        let at = g.end;
        g.pending.extend_from_slice(line.as_bytes());
        g.pending.push(b'\n');
        g.offsets.push(at);
        g.end += line.len() as u64 + 1;
        g.tree.push(leaf);
        Ok(Appended { index, leaf })
    }

    /// Makes every appended entry durable (one write, one `fdatasync`). On an error the
    /// entries appended since the last good sync are dropped (from the file and the
    /// tree), so the log stays what was durably written and the caller sends none of
    /// them anywhere.
    pub fn sync(&self) -> Result<(), LogError> {
        let mut g = self.lock();
        if g.synced == g.tree.len() {
            return Ok(());
        }
        let pending = std::mem::take(&mut g.pending);
        let r = g
            .entries
            .write_all(&pending)
            .and_then(|()| g.entries.sync_data());
        if let Err(e) = r {
            let (n, end) = (g.synced, g.synced_end);
            g.tree.truncate(n);
            g.offsets.truncate(n as usize);
            g.end = end;
            let _ = g.entries.set_len(end);
            return Err(io(&self.dir.join(ENTRIES))(e));
        }
        g.synced = g.tree.len();
        g.synced_end = g.end;
        Ok(())
    }

    /// [`append`](Self::append) then [`sync`](Self::sync).
    pub fn append_durable(&self, kind: &str, data: Value) -> Result<Appended, LogError> {
        let a = self.append(kind, data)?;
        self.sync()?;
        Ok(a)
    }

    /// Signs and stores a checkpoint of the whole (synced) log, unless the last one
    /// already covers it; returns the new one.
    pub fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, LogError> {
        self.sync()?;
        let mut g = self.lock();
        let size = g.tree.len();
        if g.last_checkpoint.as_ref().is_some_and(|c| c.size == size) {
            return Ok(None);
        }
        let note = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: g.tree.root(),
        }
        .sign(&self.key);
        let c = StoredCheckpoint {
            note,
            size,
            time_ns: now_ns(),
        };
        let mut line = serde_json::to_vec(&c).expect("checkpoint serializes");
        line.push(b'\n');
        let path = self.dir.join(CHECKPOINTS);
        g.checkpoints.write_all(&line).map_err(io(&path))?;
        g.checkpoints.sync_data().map_err(io(&path))?;
        g.last_checkpoint = Some(c.clone());
        Ok(Some(c))
    }

    /// Stores a time stamp (one JSON line, fsync'd).
    pub fn record_timestamp(&self, t: &Timestamp) -> Result<(), LogError> {
        let path = self.dir.join(TIMESTAMPS);
        let mut line = serde_json::to_vec(t).expect("time stamp serializes");
        line.push(b'\n');
        let _g = self.lock();
        let mut f = tidegate_base::durable::private_file()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(&line).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))
    }

    /// The newest checkpoint.
    pub fn last_checkpoint(&self) -> Option<StoredCheckpoint> {
        self.lock().last_checkpoint.clone()
    }

    /// Every checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LogError> {
        let path = self.dir.join(CHECKPOINTS);
        read_checkpoints(&path)
    }

    /// The line of entry `index` (flushing what is pending first).
    pub fn entry_line(&self, index: u64) -> Result<Option<String>, LogError> {
        self.sync()?;
        let g = self.lock();
        let Some(&start) = g.offsets.get(index as usize) else {
            return Ok(None);
        };
        let end = g.offsets.get(index as usize + 1).copied().unwrap_or(g.end);
        drop(g);
        let path = self.dir.join(ENTRIES);
        let mut f = File::open(&path).map_err(io(&path))?;
        f.seek(SeekFrom::Start(start)).map_err(io(&path))?;
        let mut buf = vec![0u8; (end - start) as usize];
        f.read_exact(&mut buf).map_err(io(&path))?;
        buf.pop();
        Ok(String::from_utf8(buf).ok())
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        self.lock().tree.inclusion_proof(index, size)
    }

    /// The consistency proof between trees of `old` and `new` entries.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        self.lock().tree.consistency_proof(old, new)
    }

    /// Indexes of the entries whose `data.id` is `id` (the states of one finding).
    pub fn find(&self, id: &str) -> Result<Vec<u64>, LogError> {
        self.sync()?;
        let path = self.dir.join(ENTRIES);
        let n = self.len();
        let f = File::open(&path).map_err(io(&path))?;
        let needle = format!("\"id\":{}", Value::String(id.to_string()));
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            if i as u64 >= n {
                break;
            }
            let line = line.map_err(io(&path))?;
            if line.contains(&needle)
                && Entry::parse(&line).is_ok_and(|e| e.data.get("id") == Some(&Value::from(id)))
            {
                out.push(i as u64);
            }
        }
        Ok(out)
    }
}

/// Reads a `checkpoints.jsonl` (complete lines only).
pub fn read_checkpoints(path: &Path) -> Result<Vec<StoredCheckpoint>, LogError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(path)(e)),
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| LogError::Broken {
                path: path.to_path_buf(),
                index: i as u64,
                reason: format!("checkpoint line: {e}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3u8; 32])
    }

    #[test]
    fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        let d = tempfile::tempdir().unwrap();
        let log = EvidenceLog::open(d.path(), "t/1", key()).unwrap();
        for i in 0..5 {
            let a = log.append("alert", json!({"id": format!("a{i}")})).unwrap();
            assert_eq!(a.index, i);
        }
        log.sync().unwrap();
        let c = log.checkpoint().unwrap().unwrap();
        assert_eq!(c.size, 5);
        assert!(log.checkpoint().unwrap().is_none(), "nothing new to sign");
        assert!(matches!(
            EvidenceLog::open(d.path(), "t/1", key()),
            Err(LogError::Locked { .. })
        ));
        let root = log.lock().tree.root();
        assert_eq!(log.find("a3").unwrap(), vec![3]);
        drop(log);
        // A crash mid-append leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(ENTRIES))
            .unwrap();
        f.write_all(b"{\"data\":{\"id\"").unwrap();
        drop(f);
        let log = EvidenceLog::open(d.path(), "t/1", key()).unwrap();
        assert_eq!(log.len(), 5);
        assert_eq!(log.lock().tree.root(), root);
        let a = log.append("alert", json!({"id": "a5"})).unwrap();
        assert_eq!(a.index, 5);
        let line = log.entry_line(5).unwrap().unwrap();
        assert_eq!(Entry::parse(&line).unwrap().index, 5);
        assert_eq!(log.last_checkpoint().unwrap(), c);
    }

    #[test]
    fn a_changed_entry_stops_the_open() {
        let d = tempfile::tempdir().unwrap();
        let log = EvidenceLog::open(d.path(), "t/1", key()).unwrap();
        for i in 0..3 {
            log.append_durable("alert", json!({"id": i})).unwrap();
        }
        drop(log);
        let p = d.path().join(ENTRIES);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replacen("\"id\":1", "\"id\":7", 1)).unwrap();
        let e = EvidenceLog::open(d.path(), "t/1", key()).err().unwrap();
        assert!(
            matches!(e, LogError::Broken { index: 2, .. }),
            "the next entry no longer chains: {e}"
        );
    }
}
