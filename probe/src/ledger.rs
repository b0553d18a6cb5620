//! What a killed probe never exported, counted at its next start.
//!
//! A probe holds flows it has counted but not yet exported: in the kernel's flow map
//! until the next sweep, and in its own flow table until their idle or active timeout.
//! A clean stop (SIGINT/SIGTERM, `--duration`) exports all of them; a SIGKILL, a crash or
//! a power loss loses them. The loss cannot be avoided by a process that is gone, but it
//! must not be silent: after every sweep the probe writes, beside its spool, how many
//! packets the capture had accounted and how many it had exported (`unexported.json`),
//! and marks the file clean when it stops cleanly. A start that finds the file not marked
//! clean reports the difference — packets the previous run counted and never exported,
//! as of its last checkpoint (at most one sweep interval before it died) — in the log,
//! in the metrics and in its health reports (so it reaches ClickHouse's `probe_health`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the spool directory.
pub const FILE: &str = "unexported.json";

/// What the file holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    /// False while a run is going on; true once it stopped with everything exported.
    clean: bool,
    /// Packets the capture had accounted into flows (its `accounted` counter).
    accounted_packets: u64,
    /// Packets of the records exported (handed to the spool).
    exported_packets: u64,
    /// When the checkpoint was written (Unix ns, probe clock).
    at_ns: u64,
}

/// What the previous run lost when it did not stop cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreviousLoss {
    /// Packets counted and never exported, as of its last checkpoint.
    pub packets: u64,
    /// When that checkpoint was written (Unix ns, probe clock); 0 if it never wrote one.
    pub at_ns: u64,
}

/// The running probe's ledger.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    last: Checkpoint,
}

impl Ledger {
    /// Opens the ledger in `dir` (the spool directory, which the caller holds locked):
    /// reads what the previous run left, then marks this run as started.
    pub fn open(dir: &Path) -> std::io::Result<(Ledger, Option<PreviousLoss>)> {
        let path = dir.join(FILE);
        let previous = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice::<Checkpoint>(&b) {
                Ok(c) if c.clean => None,
                Ok(c) => Some(PreviousLoss {
                    packets: c.accounted_packets.saturating_sub(c.exported_packets),
                    at_ns: c.at_ns,
                }),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e,
                        "the previous run's export ledger is unreadable; what it left unexported is unknown");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut l = Ledger {
            path,
            last: Checkpoint::default(),
        };
        // Not clean until this run says so.
        l.write(Checkpoint {
            at_ns: tidegate_base::clock::wall_ns(),
            ..Checkpoint::default()
        })?;
        Ok((l, previous))
    }

    /// Records, after a sweep's records reached the spool, the packets accounted so far
    /// and the packets exported so far (both since this run started). Written only when
    /// they changed.
    pub fn checkpoint(&mut self, accounted_packets: u64, exported_packets: u64) {
        if (accounted_packets, exported_packets)
            == (self.last.accounted_packets, self.last.exported_packets)
        {
            return;
        }
        let c = Checkpoint {
            clean: false,
            accounted_packets,
            exported_packets,
            at_ns: tidegate_base::clock::wall_ns(),
        };
        if let Err(e) = self.write(c) {
            tracing::warn!(file = %self.path.display(), error = %e,
                "cannot update the export ledger (a crash now would go uncounted)");
        }
    }

    /// Marks the run as stopped with everything exported.
    pub fn close_clean(mut self) -> std::io::Result<()> {
        let c = Checkpoint {
            clean: true,
            at_ns: tidegate_base::clock::wall_ns(),
            ..self.last
        };
        self.write(c)
    }

    fn write(&mut self, c: Checkpoint) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&c).map_err(std::io::Error::other)?;
        tidegate_base::durable::write_renamed(&self.path, &bytes)?;
        self.last = c;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_killed_after_a_checkpoint_is_reported_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, prev) = Ledger::open(dir.path()).unwrap();
        assert_eq!(prev, None, "first start: nothing before");
        l.checkpoint(1000, 400);
        l.checkpoint(1500, 1200);
        drop(l); // killed: never closed
        let (l, prev) = Ledger::open(dir.path()).unwrap();
        let prev = prev.expect("the killed run is reported");
        assert_eq!(prev.packets, 300);
        assert!(prev.at_ns > 0);
        // The new run closes cleanly: the start after it reports nothing.
        l.close_clean().unwrap();
        let (_l, prev) = Ledger::open(dir.path()).unwrap();
        assert_eq!(prev, None);
    }

    #[test]
    fn a_run_killed_before_its_first_checkpoint_lost_nothing_it_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = Ledger::open(dir.path()).unwrap();
        drop(l);
        let (_l, prev) = Ledger::open(dir.path()).unwrap();
        assert_eq!(prev.map(|p| p.packets), Some(0));
    }

    #[test]
    fn a_damaged_ledger_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"clean\": tru").unwrap();
        let (_l, prev) = Ledger::open(dir.path()).unwrap();
        assert_eq!(prev, None);
    }
}
