//! JSONL alert sink: one notification per line, appended and fsync'd per batch.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{AlertSinkError, Notification};

/// Appends notifications to a file, one JSON object (`{"id","kind","body"}`) per line.
/// A notification id already in the file (written by this sink or an earlier run) is
/// skipped.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    written: HashSet<String>,
}

impl JsonlSink {
    /// Opens (creating if needed) `path` for appending. If the file's last line was torn
    /// by a crash (no final newline), a newline is added so new lines stay parseable.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AlertSinkError> {
        let path = path.as_ref().to_path_buf();
        let mut file = tidegate_base::durable::private_file()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| AlertSinkError::io("open alert JSONL file", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| AlertSinkError::io("stat alert JSONL file", &path, e))?
            .len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| AlertSinkError::io("read alert JSONL file", &path, e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n")
                    .map_err(|e| AlertSinkError::io("repair alert JSONL file", &path, e))?;
            }
        }
        // Ids already in the file (a restart must not write them again).
        let mut written = HashSet::new();
        if len > 0 {
            #[derive(serde::Deserialize)]
            struct IdOnly {
                id: String,
            }
            file.seek(SeekFrom::Start(0))
                .map_err(|e| AlertSinkError::io("read alert JSONL file", &path, e))?;
            let reader = std::io::BufReader::new(&mut file);
            for line in std::io::BufRead::lines(reader) {
                let line =
                    line.map_err(|e| AlertSinkError::io("read alert JSONL file", &path, e))?;
                if let Ok(r) = serde_json::from_str::<IdOnly>(&line) {
                    written.insert(r.id);
                }
            }
        }
        Ok(JsonlSink {
            path,
            file,
            written,
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the notifications not written before (by this sink) and fsyncs the file;
    /// returns how many lines were written.
    pub fn write(&mut self, batch: &[Notification]) -> Result<usize, AlertSinkError> {
        let mut buf = Vec::new();
        let mut fresh = Vec::new();
        for n in batch {
            if self.written.contains(&n.id) || fresh.contains(&&n.id) {
                continue;
            }
            serde_json::to_writer(&mut buf, n).map_err(|source| AlertSinkError::Json {
                what: format!("notification {}", n.id),
                source,
            })?;
            buf.push(b'\n');
            fresh.push(&n.id);
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        self.file
            .write_all(&buf)
            .map_err(|e| AlertSinkError::io("append to alert JSONL file", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| AlertSinkError::io("fsync alert JSONL file", &self.path, e))?;
        let n = fresh.len();
        self.written.extend(fresh.into_iter().cloned());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(id: &str) -> Notification {
        Notification::new(id, "alert", json!({ "id": id })).unwrap()
    }

    #[test]
    fn duplicates_are_skipped_and_a_torn_line_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        std::fs::write(&path, "{\"torn\":").unwrap();
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.write(&[n("a"), n("b"), n("a")]).unwrap(), 2);
        assert_eq!(sink.write(&[n("b")]).unwrap(), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "{\"torn\":");
        let back: Notification = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(back, n("b"));
    }

    #[test]
    fn a_reopened_file_does_not_get_ids_it_already_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        JsonlSink::open(&path)
            .unwrap()
            .write(&[n("a"), n("b")])
            .unwrap();
        let mut again = JsonlSink::open(&path).unwrap();
        assert_eq!(again.write(&[n("b"), n("c")]).unwrap(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn unopenable_path_names_the_file() {
        let e = JsonlSink::open("/nonexistent-dir/x/alerts.jsonl").unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-dir/x/alerts.jsonl"),
            "{e}"
        );
    }
}
