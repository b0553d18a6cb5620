//! Opening a spool directory: committed cursor, per-probe sequence high-water marks,
//! and the repair of a torn tail.

use std::{
    fs::{self, OpenOptions},
    os::unix::fs::FileExt,
    path::Path,
};

use super::{Position, SpoolError, Streams, entry, segment_name, segment_number, write_atomic};

/// What a spool directory holds when it is opened.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Identity of this spool directory (random, created with it).
    pub id: String,
    /// Committed read position.
    pub cursor: Position,
    /// Segments present, ascending.
    pub segments: Vec<u64>,
    /// End of the last segment (where appends continue).
    pub end: Position,
    /// Bytes in all segments.
    pub bytes: u64,
    /// Highest stored sequence number per probe sequence.
    pub last_seq: Streams,
    /// Entries not yet committed downstream.
    pub pending_entries: u64,
    /// What each probe holds of the segments.
    pub shares: super::shares::Shares,
}

pub(crate) fn cursor_path(dir: &Path) -> std::path::PathBuf {
    dir.join("cursor")
}

pub(crate) fn probes_path(dir: &Path) -> std::path::PathBuf {
    dir.join("probes.json")
}

pub(crate) fn write_cursor(dir: &Path, p: Position) -> Result<(), SpoolError> {
    let path = cursor_path(dir);
    let bytes = serde_json::to_vec(&p).expect("position serializes");
    write_atomic(&path, &bytes).map_err(SpoolError::io(path, "write cursor"))
}

pub(crate) fn write_probes(dir: &Path, m: &Streams) -> Result<(), SpoolError> {
    let path = probes_path(dir);
    write_atomic(&path, &m.to_json()).map_err(SpoolError::io(path, "write probes.json"))
}

fn read_probes(path: &Path) -> Result<Streams, SpoolError> {
    match fs::read(path) {
        Ok(b) => Streams::from_json(&b).map_err(|e| SpoolError::Corrupt {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Streams::default()),
        Err(e) => Err(SpoolError::Io {
            path: path.to_path_buf(),
            op: "read",
            source: e,
        }),
    }
}

fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, SpoolError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| SpoolError::Corrupt {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(SpoolError::Io {
            path: path.to_path_buf(),
            op: "read",
            source: e,
        }),
    }
}

/// Opens (creating if needed) and recovers `dir`.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    tidegate_base::durable::private_dir(dir).map_err(SpoolError::io(dir, "create directory"))?;
    let id_path = dir.join("spool-id");
    let id = match fs::read_to_string(&id_path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let id = fs::read_to_string("/proc/sys/kernel/random/uuid")
                .map(|u| u.trim().replace('-', ""))
                .unwrap_or_else(|_| {
                    format!(
                        "{:x}",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_nanos()
                    )
                });
            write_atomic(&id_path, id.as_bytes())
                .map_err(SpoolError::io(&id_path, "write spool-id"))?;
            id
        }
    };
    let cursor: Position = read_json(&cursor_path(dir))?;
    let mut last_seq = read_probes(&probes_path(dir))?;
    let mut segments: Vec<u64> = fs::read_dir(dir)
        .map_err(SpoolError::io(dir, "list"))?
        .filter_map(|e| {
            e.ok()
                .and_then(|e| segment_number(&e.file_name().to_string_lossy()))
        })
        .collect();
    segments.sort_unstable();
    // Segments wholly before the cursor were committed; a crash may have left them.
    for s in segments.iter().filter(|s| **s < cursor.segment) {
        let p = dir.join(segment_name(*s));
        fs::remove_file(&p).map_err(SpoolError::io(p, "remove committed segment"))?;
    }
    segments.retain(|s| *s >= cursor.segment);

    let mut rec = Recovered {
        id,
        cursor,
        ..Default::default()
    };
    let last = segments.last().copied();
    for s in &segments {
        let path = dir.join(segment_name(*s));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(SpoolError::io(&path, "open segment"))?;
        let len = f
            .metadata()
            .map_err(SpoolError::io(&path, "stat segment"))?
            .len();
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, 0)
            .map_err(SpoolError::io(&path, "read segment"))?;
        let mut off = 0usize;
        loop {
            match entry::decode(&buf[off..]) {
                Ok(Some(entry::Decoded {
                    probe_id,
                    epoch,
                    seq,
                    len: n,
                    ..
                })) => {
                    last_seq.note(&probe_id, epoch, seq);
                    rec.shares.reserve(&probe_id, n as u64);
                    rec.shares.place(*s, &probe_id, n as u64);
                    if (Position {
                        segment: *s,
                        offset: off as u64,
                    }) >= cursor
                    {
                        rec.pending_entries += 1;
                    }
                    off += n;
                }
                Ok(None) if off == buf.len() => break,
                Ok(None) | Err(_) if Some(*s) == last => {
                    // Torn tail from a crash mid-append: never acknowledged, cut it off.
                    tracing::warn!(segment = %path.display(), offset = off, dropped = buf.len() - off, "spool: cutting off a torn tail (unacknowledged)");
                    f.set_len(off as u64)
                        .map_err(SpoolError::io(&path, "truncate torn tail"))?;
                    f.sync_all().map_err(SpoolError::io(&path, "fsync"))?;
                    break;
                }
                Ok(None) => {
                    return Err(SpoolError::Corrupt {
                        path,
                        msg: format!("truncated entry at offset {off} in a sealed segment"),
                    });
                }
                Err(msg) => {
                    return Err(SpoolError::Corrupt {
                        path,
                        msg: format!("offset {off}: {msg}"),
                    });
                }
            }
        }
        if Some(*s) == last {
            // Entries a failed fdatasync (or a crash) left complete but unacknowledged are
            // kept and count as spooled (their probes' resends are duplicates): make sure
            // they are durable.
            f.sync_all().map_err(SpoolError::io(&path, "fsync"))?;
        }
        rec.bytes += off as u64;
        rec.end = Position {
            segment: *s,
            offset: off as u64,
        };
    }
    if segments.is_empty() {
        rec.end = Position {
            segment: cursor.segment,
            offset: 0,
        };
    }
    rec.segments = segments;
    rec.last_seq = last_seq;
    Ok(rec)
}

/// Bounds of the group of entries being stored downstream, saved before the insert so a
/// restart rebuilds the identical group (and so the identical deduplication token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    /// First entry's position (the committed cursor when the group was formed).
    pub start: Position,
    /// Position just after the group's last entry.
    pub end: Position,
}

pub(crate) fn intent_path(dir: &Path) -> std::path::PathBuf {
    dir.join("intent.json")
}

pub(crate) fn read_intent(dir: &Path) -> Result<Option<Intent>, SpoolError> {
    read_json::<Option<Intent>>(&intent_path(dir))
}

pub(crate) fn write_intent(dir: &Path, i: &Intent) -> Result<(), SpoolError> {
    let path = intent_path(dir);
    let bytes = serde_json::to_vec(i).expect("intent serializes");
    write_atomic(&path, &bytes).map_err(SpoolError::io(path, "write intent"))
}
