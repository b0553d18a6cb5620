//! The detectors' learned state on disk: baselines saved every `every` (and at
//! shutdown) with a durable rename, and restored when the collector starts, so a restart
//! — even a SIGKILL — loses at most `every` of learning, not the whole history.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tidegate_threat::detect::{Detector, DetectorState};

/// Largest state file read back (a full table of every rule is far below it).
const STATE_MAX_BYTES: u64 = 1 << 30;

/// Saves a detector's state periodically.
pub(crate) struct Learned {
    path: PathBuf,
    every: Duration,
    last: Instant,
}

impl Learned {
    pub fn new(path: PathBuf, every: Duration) -> Self {
        Learned {
            path,
            every,
            last: Instant::now(),
        }
    }

    /// Restores `d` from the state file, if there is one. A file that cannot be read or
    /// parsed is reported (with its path) and set aside as `<name>.bad`; the detectors
    /// then start from scratch rather than not at all.
    pub fn restore(&self, d: &mut Detector) {
        match read(&self.path) {
            Ok(None) => tracing::info!(
                path = %self.path.display(),
                "no saved detector state: baselines start from scratch"
            ),
            Ok(Some(state)) => {
                let newest = state.newest_ns;
                match d.restore(state) {
                    Ok(rules) => tracing::info!(
                        path = %self.path.display(),
                        rules = ?rules,
                        event_time_ns = newest,
                        "detector state restored"
                    ),
                    Err(e) => self.set_aside(&e),
                }
            }
            Err(e) => self.set_aside(&e),
        }
    }

    fn set_aside(&self, why: &str) {
        let bad = self.path.with_extension("json.bad");
        let moved = std::fs::rename(&self.path, &bad).is_ok();
        tracing::error!(
            path = %self.path.display(),
            set_aside_as = %if moved { bad.display().to_string() } else { "(not moved)".into() },
            "detector state not usable, baselines start from scratch: {why}"
        );
    }

    /// Saves `d`'s state when `every` has passed since the last save (or `now`).
    pub fn maybe_save(&mut self, d: &Detector, force: bool) {
        if !force && self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let state = d.state();
        let res = serde_json::to_vec(&state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| tidegate_base::durable::write_durable(&self.path, &bytes));
        if let Err(e) = res {
            // Loud but not fatal: detection goes on with what it holds in memory.
            tracing::error!(path = %self.path.display(), "saving the detector state failed: {e}");
        }
    }
}

fn read(path: &Path) -> Result<Option<DetectorState>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.len() > STATE_MAX_BYTES {
        return Err(format!(
            "{}: {} bytes, larger than any state this build writes",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_threat::detect::DetectConfig;
    use tidegate_wire::record::FlowRecord;

    #[test]
    fn state_is_saved_and_restored_and_a_bad_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("detector-state.json");
        let mut d = Detector::new(DetectConfig::default()).unwrap();
        let t0 = 1_700_000_000_000_000_000u64;
        for i in 0..500u64 {
            d.observe(&FlowRecord {
                src: "198.51.100.7".parse().unwrap(),
                dst: "10.0.0.20".parse().unwrap(),
                sport: 40_000,
                dport: 9000,
                proto: 17,
                packets: 100,
                bytes: 12_000,
                first: t0 + i * 10_000_000_000,
                last: t0 + i * 10_000_000_000 + 1,
                line: "l".into(),
                ..Default::default()
            });
        }
        let mut l = Learned::new(path.clone(), Duration::from_secs(3600));
        l.maybe_save(&d, true);
        let mut e = Detector::new(DetectConfig::default()).unwrap();
        l.restore(&mut e);
        assert_eq!(e.state().rules, d.state().rules);
        assert!(d.state().rules.contains_key("surge"));

        std::fs::write(&path, b"{ not json").unwrap();
        let mut f = Detector::new(DetectConfig::default()).unwrap();
        l.restore(&mut f);
        assert!(!path.exists());
        assert!(dir.path().join("detector-state.json.bad").exists());
    }
}
