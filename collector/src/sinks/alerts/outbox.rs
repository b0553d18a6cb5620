//! The webhook outbox: a directory with one file per undelivered notification.
//!
//! `<seq>-<id>.json` (seq: 20-digit arrival number) is written to a temporary name,
//! fsync'd, renamed and the directory fsync'd before [`Outbox::enqueue`] returns; it is
//! deleted once delivered, or moved to `dead/` when the receiver refuses it for good.
//! A restart resumes from whatever files are left, in arrival order.
//!
//! Delivered ids are appended to `delivered.ids` (the last [`DELIVERED_KEEP`] are kept)
//! before the file is deleted, so after a restart the same notification enqueued again
//! (e.g. by a replay) is not sent twice, and a file whose deletion a crash interrupted
//! is recognised as delivered.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tidegate_base::{DirLock, LockError, durable};

use super::{AlertSinkError, Notification, check_id};

/// Name of the dead-letter subdirectory.
pub const DEAD_DIR: &str = "dead";
/// Name of the journal of delivered ids.
const DELIVERED_FILE: &str = "delivered.ids";
/// How many delivered ids the journal remembers.
pub const DELIVERED_KEEP: usize = 65_536;
/// Name of the lock file that keeps two deliverers off one outbox.
const LOCK_FILE: &str = ".lock";

/// One queued notification file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Arrival number (delivery order).
    pub seq: u64,
    /// Notification id.
    pub id: String,
    /// The file.
    pub path: PathBuf,
}

/// A durable queue of notifications in a directory.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    /// Ids queued, delivered (journal) or dead-lettered at open, or enqueued since:
    /// enqueueing one again is a no-op.
    seen: HashSet<String>,
    /// The delivered ids in the journal, oldest first.
    delivered: VecDeque<String>,
    /// The journal, open for appending.
    journal: File,
}

impl Outbox {
    /// Opens (creating) the outbox directory and its `dead/` subdirectory and indexes
    /// the delivered journal, the dead letters and the queued files. When no other
    /// deliverer holds the outbox, it also removes temporary files of interrupted writes
    /// and files already delivered, and compacts the journal; while one does (a previous
    /// sink finishing its last request), only [`Self::try_lock`] does, once it has the
    /// outbox to itself — never rewriting what another deliverer is appending to.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, AlertSinkError> {
        let dir = dir.as_ref().to_path_buf();
        tidegate_base::durable::private_dir(&dir.join(DEAD_DIR))
            .map_err(|e| AlertSinkError::io("create outbox directory", &dir, e))?;
        let journal = open_journal(&dir)?;
        let ob = Outbox {
            dir,
            state: Mutex::new(State {
                next_seq: 1,
                seen: HashSet::new(),
                delivered: VecDeque::new(),
                journal,
            }),
        };
        // Indexed (and tidied) under the lock when it is free; released at once.
        if ob.try_lock()?.is_none() {
            ob.index(false)?;
        }
        Ok(ob)
    }

    /// Reads the journal, the dead letters and the queued files into the index (adding
    /// to what was enqueued since the outbox was opened). With `locked` (this outbox
    /// holds the delivery lock, so no other deliverer writes here) it also removes
    /// temporary files of interrupted writes and files delivered already (a crash
    /// interrupted their deletion), and compacts the journal.
    ///
    /// The directories are listed before the journal is read: a deliverer appends an id
    /// to the journal before it deletes the file, so an id whose file is gone from the
    /// listing is in the journal read after it — no id is missed, whatever another
    /// deliverer does meanwhile.
    fn index(&self, locked: bool) -> Result<(), AlertSinkError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let dead_files = read_dir(&self.dir.join(DEAD_DIR))?;
        let files = read_dir(&self.dir)?;
        let journal_path = self.dir.join(DELIVERED_FILE);
        let delivered: VecDeque<String> = match fs::read_to_string(&journal_path) {
            Ok(text) => {
                // Whole lines only: another deliverer may be appending the last one.
                let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
                let all: Vec<&str> = whole.lines().filter(|l| check_id(l).is_ok()).collect();
                let skip = all.len().saturating_sub(DELIVERED_KEEP);
                all[skip..].iter().map(|s| s.to_string()).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => VecDeque::new(),
            Err(e) => {
                return Err(AlertSinkError::io(
                    "read delivered journal",
                    &journal_path,
                    e,
                ));
            }
        };
        if locked {
            st.journal = rewrite_journal(&self.dir, &delivered)?;
        }
        let done: HashSet<String> = delivered.iter().cloned().collect();
        st.seen.extend(done.iter().cloned());
        for (path, name) in dead_files {
            if let Some((seq, id)) = parse_name(&name) {
                st.next_seq = st.next_seq.max(seq + 1);
                st.seen.insert(id.to_string());
            } else if locked && durable::is_tmp_name(&name) {
                remove_file(&path)?;
            }
        }
        let mut removed = false;
        for (path, name) in files {
            if durable::is_tmp_name(&name) {
                if locked {
                    remove_file(&path)?;
                }
            } else if let Some((seq, id)) = parse_name(&name) {
                st.next_seq = st.next_seq.max(seq + 1);
                if done.contains(id) {
                    if locked {
                        // Delivered; a crash interrupted the deletion.
                        remove_file(&path)?;
                        removed = true;
                    }
                } else {
                    st.seen.insert(id.to_string());
                }
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        st.delivered = delivered;
        Ok(())
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `n` durable; returns false (and writes nothing) when its id is known here:
    /// queued, delivered or dead-lettered when the outbox was indexed (see
    /// `index`: an id another deliverer finishes meanwhile is among them), or
    /// enqueued since.
    pub fn enqueue(&self, n: &Notification) -> Result<bool, AlertSinkError> {
        check_id(&n.id)?;
        let body = serde_json::to_vec(n).map_err(|source| AlertSinkError::Json {
            what: format!("notification {}", n.id),
            source,
        })?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.seen.contains(&n.id) {
            return Ok(false);
        }
        let seq = st.next_seq;
        let name = format!("{seq:020}-{}.json", n.id);
        let path = self.dir.join(&name);
        durable::write_durable(&path, &body)
            .map_err(|e| AlertSinkError::io("write outbox file", &path, e))?;
        st.next_seq = seq + 1;
        st.seen.insert(n.id.clone());
        Ok(true)
    }

    /// The queued files, in arrival order.
    pub fn pending(&self) -> Result<Vec<OutboxEntry>, AlertSinkError> {
        let mut out: Vec<OutboxEntry> = read_dir(&self.dir)?
            .into_iter()
            .filter_map(|(path, name)| {
                let (seq, id) = parse_name(&name)?;
                Some(OutboxEntry {
                    seq,
                    id: id.to_string(),
                    path,
                })
            })
            .collect();
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// How many notifications are queued.
    pub fn len(&self) -> Result<usize, AlertSinkError> {
        Ok(self.pending()?.len())
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> Result<bool, AlertSinkError> {
        Ok(self.len()? == 0)
    }

    /// The dead letters (file paths), sorted.
    pub fn dead_letters(&self) -> Result<Vec<PathBuf>, AlertSinkError> {
        let mut v: Vec<PathBuf> = read_dir(&self.dir.join(DEAD_DIR))?
            .into_iter()
            .filter(|(_, name)| parse_name(name).is_some())
            .map(|(p, _)| p)
            .collect();
        v.sort();
        Ok(v)
    }

    /// Reads a queued notification; `None` when the file is gone (delivered meanwhile).
    pub fn load(&self, e: &OutboxEntry) -> Result<Option<(Notification, Vec<u8>)>, AlertSinkError> {
        let bytes = match fs::read(&e.path) {
            Ok(b) => b,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(AlertSinkError::io("read outbox file", &e.path, err)),
        };
        let n: Notification =
            serde_json::from_slice(&bytes).map_err(|source| AlertSinkError::Json {
                what: format!("outbox file {}", e.path.display()),
                source,
            })?;
        Ok(Some((n, bytes)))
    }

    /// Records a notification as delivered (journal, fsync'd), then deletes its file.
    pub fn mark_delivered(&self, e: &OutboxEntry) -> Result<(), AlertSinkError> {
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let journal_path = self.dir.join(DELIVERED_FILE);
            st.journal
                .write_all(format!("{}\n", e.id).as_bytes())
                .and_then(|_| st.journal.sync_data())
                .map_err(|err| {
                    AlertSinkError::io("append to delivered journal", &journal_path, err)
                })?;
            st.seen.insert(e.id.clone());
            st.delivered.push_back(e.id.clone());
            if st.delivered.len() >= 2 * DELIVERED_KEEP {
                let drop_n = st.delivered.len() - DELIVERED_KEEP;
                st.delivered.drain(..drop_n);
                st.journal = rewrite_journal(&self.dir, &st.delivered)?;
            }
        }
        match fs::remove_file(&e.path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(AlertSinkError::io(
                    "delete delivered outbox file",
                    &e.path,
                    err,
                ));
            }
        }
        sync_dir(&self.dir)
    }

    /// Moves a refused notification to `dead/`, with `reason` in `<name>.reason` beside it.
    pub fn dead_letter(&self, e: &OutboxEntry, reason: &str) -> Result<PathBuf, AlertSinkError> {
        let dead = self.dir.join(DEAD_DIR);
        let name = e.path.file_name().map(PathBuf::from).unwrap_or_default();
        let target = dead.join(&name);
        let why = dead.join(format!("{}.reason", name.display()));
        fs::write(&why, format!("{reason}\n"))
            .map_err(|err| AlertSinkError::io("write dead-letter reason", &why, err))?;
        fs::rename(&e.path, &target)
            .map_err(|err| AlertSinkError::io("move outbox file to dead letters", &target, err))?;
        sync_dir(&dead)?;
        sync_dir(&self.dir)?;
        Ok(target)
    }

    /// Tries to take the exclusive delivery lock (`.lock`, flock); `None` while another
    /// deliverer (in this or another process) holds it. Dropping the guard releases it.
    /// Taking it indexes the outbox again, tidying it (see [`Self::open`]): what a
    /// previous holder delivered meanwhile is known, and its files are gone.
    pub fn try_lock(&self) -> Result<Option<OutboxLock>, AlertSinkError> {
        match DirLock::acquire(&self.dir, LOCK_FILE) {
            Ok(lock) => {
                self.index(true)?;
                Ok(Some(OutboxLock { _lock: lock }))
            }
            Err(LockError::Held { .. }) => Ok(None),
            Err(LockError::Io { path, source }) => {
                Err(AlertSinkError::io("lock outbox", &path, source))
            }
        }
    }
}

/// The outbox's delivery lock; released on drop.
#[derive(Debug)]
pub struct OutboxLock {
    _lock: DirLock,
}

/// Writes `ids` as the whole journal (temporary file, fsync, rename) and opens it for
/// appending.
fn rewrite_journal(dir: &Path, ids: &VecDeque<String>) -> Result<File, AlertSinkError> {
    let path = dir.join(DELIVERED_FILE);
    let mut text = String::with_capacity(ids.len() * 24);
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    durable::write_durable(&path, text.as_bytes())
        .map_err(|e| AlertSinkError::io("replace delivered journal", &path, e))?;
    open_journal(dir)
}

/// Opens (creating) the journal for appending, as it is.
fn open_journal(dir: &Path) -> Result<File, AlertSinkError> {
    let path = dir.join(DELIVERED_FILE);
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| AlertSinkError::io("open delivered journal", &path, e))
}

/// Removes a file, naming it on error.
fn remove_file(path: &Path) -> Result<(), AlertSinkError> {
    fs::remove_file(path).map_err(|e| AlertSinkError::io("remove outbox file", path, e))
}

/// `(seq, id)` of an outbox file name `<20 digits>-<id>.json`.
fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (seq, id) = stem.split_once('-')?;
    if seq.len() != 20 || check_id(id).is_err() {
        return None;
    }
    Some((seq.parse().ok()?, id))
}

/// `(path, file name)` of every entry of `dir`.
fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, String)>, AlertSinkError> {
    let rd = fs::read_dir(dir).map_err(|e| AlertSinkError::io("list outbox directory", dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| AlertSinkError::io("list outbox directory", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((entry.path(), name.to_string()));
        }
    }
    Ok(out)
}

/// fsyncs a directory so renames and deletions in it are durable.
fn sync_dir(dir: &Path) -> Result<(), AlertSinkError> {
    durable::sync_dir(dir).map_err(|e| AlertSinkError::io("fsync outbox directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(id: &str) -> Notification {
        Notification::new(id, "violation", json!({ "rule": id })).unwrap()
    }

    #[test]
    fn queue_survives_reopen_in_arrival_order_and_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        assert!(ob.enqueue(&n("zz")).unwrap());
        assert!(ob.enqueue(&n("aa")).unwrap());
        assert!(!ob.enqueue(&n("zz")).unwrap());
        std::fs::write(dir.path().join(".00000000000000000009-x.json.tmp"), b"{").unwrap();
        drop(ob);
        let ob = Outbox::open(dir.path()).unwrap();
        assert!(!dir.path().join(".00000000000000000009-x.json.tmp").exists());
        assert!(!ob.enqueue(&n("aa")).unwrap());
        assert!(ob.enqueue(&n("mm")).unwrap());
        let p = ob.pending().unwrap();
        let ids: Vec<&str> = p.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["zz", "aa", "mm"]);
        assert_eq!(ob.load(&p[0]).unwrap().unwrap().0, n("zz"));
        ob.mark_delivered(&p[0]).unwrap();
        let dead = ob.dead_letter(&p[1], "HTTP 400").unwrap();
        assert!(dead.exists());
        assert_eq!(ob.dead_letters().unwrap(), vec![dead]);
        assert_eq!(ob.len().unwrap(), 1);
        assert!(ob.load(&p[0]).unwrap().is_none());
        drop(ob);
        // After a restart, delivered and dead-lettered ids are still known.
        let ob = Outbox::open(dir.path()).unwrap();
        assert!(!ob.enqueue(&n("zz")).unwrap());
        assert!(!ob.enqueue(&n("aa")).unwrap());
        assert!(ob.enqueue(&n("new")).unwrap());
        let ids: Vec<String> = ob.pending().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["mm", "new"]);
    }

    #[test]
    fn a_delivered_file_whose_deletion_was_interrupted_is_not_resent() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        ob.enqueue(&n("x1")).unwrap();
        let e = ob.pending().unwrap().remove(0);
        let copy = std::fs::read(&e.path).unwrap();
        ob.mark_delivered(&e).unwrap();
        std::fs::write(&e.path, copy).unwrap(); // as if the crash came before the unlink
        drop(ob);
        let ob = Outbox::open(dir.path()).unwrap();
        assert!(ob.is_empty().unwrap());
        assert!(!e.path.exists());
    }

    #[test]
    fn an_outbox_opened_beside_a_deliverer_loses_none_of_its_journal_or_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = Outbox::open(dir.path()).unwrap();
        a.enqueue(&n("x1")).unwrap();
        a.enqueue(&n("x2")).unwrap();
        let held = a.try_lock().unwrap().expect("free");
        let queued = a.pending().unwrap();
        // Another outbox opens while the first still delivers; a write of the first's is
        // half done.
        let tmp = dir.path().join(".00000000000000000009-x9.json.tmp");
        std::fs::write(&tmp, b"{").unwrap();
        let b = Outbox::open(dir.path()).unwrap();
        assert!(
            tmp.exists(),
            "not the second's to remove while the first delivers"
        );
        a.mark_delivered(&queued[0]).unwrap();
        assert!(!b.enqueue(&n("x1")).unwrap());
        assert!(!b.enqueue(&n("x2")).unwrap());
        drop(held);
        drop(a);
        assert!(b.try_lock().unwrap().is_some());
        assert!(!tmp.exists(), "tidied once the second has the outbox");
        let ids: Vec<String> = b.pending().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["x2"]);
        drop(b);
        // The first's journal entry, appended after the second opened, is still there.
        let journal = std::fs::read_to_string(dir.path().join(DELIVERED_FILE)).unwrap();
        assert_eq!(journal, "x1\n");
        let c = Outbox::open(dir.path()).unwrap();
        assert!(!c.enqueue(&n("x1")).unwrap());
    }

    #[test]
    fn only_one_holder_of_the_delivery_lock() {
        let dir = tempfile::tempdir().unwrap();
        let a = Outbox::open(dir.path()).unwrap();
        let b = Outbox::open(dir.path()).unwrap();
        let held = a.try_lock().unwrap().expect("free");
        assert!(b.try_lock().unwrap().is_none());
        drop(held);
        assert!(b.try_lock().unwrap().is_some());
    }
}
