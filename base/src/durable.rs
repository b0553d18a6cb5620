//! Durable files: what the spools and the webhook outbox need to survive a crash, and the
//! one directory lock that keeps two processes off one of them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Mode of every state file the daemons write (spools, cursors, outboxes, logs).
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of the directories that hold them.
pub const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` (and missing parents) as a private directory (0700) and makes sure an
/// existing one is not writable by group or others — state directories are never
/// world-writable, whatever the umask.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    not_writable_by_others(dir)
}

/// Takes write permission on `path` away from group and others (a directory created
/// under a permissive umask); read permissions stay as they are.
pub fn not_writable_by_others(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o022))?;
    }
    Ok(())
}

/// Options that create files with [`PRIVATE_FILE`] (0600).
pub fn private_file() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.mode(PRIVATE_FILE);
    o
}

/// fsyncs a directory so creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` durably: a temporary file beside it, fsync, rename over
/// `path`, fsync of the directory. A crash leaves either the old file or the new one
/// (and perhaps a `.tmp` file the owner removes when it opens the directory).
pub fn write_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_renamed(path, bytes)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// [`write_durable`] without the directory fsync, for callers that write several files
/// and sync the directory once.
pub fn write_renamed(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// The temporary name [`write_durable`] writes `path` under before renaming it: hidden,
/// ending in `.tmp` (`dir/.name.tmp`), so directory scans can tell and remove leftovers.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    path.with_file_name(name)
}

/// Whether a file name is a leftover of an interrupted [`write_durable`].
pub fn is_tmp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// An exclusive lock on a directory, held for the lifetime of the value: a lock file in
/// the directory, locked with `flock`. The kernel releases it when the process dies, so a
/// crashed owner never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

/// Why a [`DirLock`] could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "{dir} is in use by another process (it holds the lock {lock}); two processes must \
         not share one directory — stop the other one or give this one its own directory"
    )]
    Held {
        /// The directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("{path}: cannot take the directory lock: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: io::Error,
    },
}

impl DirLock {
    /// Takes the lock `dir/name` without waiting (creating `dir` if needed).
    pub fn acquire(dir: &Path, name: &str) -> Result<DirLock, LockError> {
        let path = dir.join(name);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        private_dir(dir).map_err(io_err)?;
        let file = private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                LockError::Held {
                    dir: dir.to_path_buf(),
                    lock: path,
                }
            } else {
                io_err(e)
            });
        }
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_directory_is_refused_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(d.path(), "lock").unwrap();
        let e = DirLock::acquire(d.path(), "lock").unwrap_err();
        assert!(matches!(e, LockError::Held { .. }), "{e}");
        assert!(e.to_string().contains("in use by another process"), "{e}");
        drop(first);
        DirLock::acquire(d.path(), "lock").unwrap();
    }

    #[test]
    fn durable_write_replaces_whole_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state");
        write_durable(&p, b"one").unwrap();
        write_durable(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
    }
}
