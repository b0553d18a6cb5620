//! The analysis a live collector of the end-to-end tests runs: enrichment from GeoLite2, a
//! policy isolating 192.168.0.0/16 and the detectors.

use std::path::PathBuf;

use crate::support::policy::{rule, tables, zone};

/// The files the collector reads at start, in a directory of their own: a
/// [`tidegate_testkit::Stack`] creates its directory only as it starts the collector.
pub struct Analysis {
    /// The GeoLite2 database.
    pub mmdb: PathBuf,
    files: tempfile::TempDir,
}

impl Analysis {
    /// Writes the policy (the "special-zone", 192.168.0.0/16, exchanges data with nobody
    /// outside; critical) and the detector settings (short lateness: replayed records
    /// arrive at once, in order).
    pub fn new() -> Analysis {
        let files = tempfile::tempdir().unwrap();
        let policy = tables(&[
            zone("special-zone", &["192.168.0.0/16"]),
            rule(
                "special-isolation",
                "special zone exchanges data with nobody outside",
                "isolate",
                "zone = \"special-zone\"\npeers = []\nseverity = \"critical\"\n",
            ),
        ]);
        std::fs::write(files.path().join("policy.toml"), policy).unwrap();
        std::fs::write(files.path().join("detect.toml"), "lateness_secs = 2\n").unwrap();
        Analysis {
            mmdb: tidegate_testkit::paths::geolite(),
            files,
        }
    }

    /// The policy file.
    pub fn policy(&self) -> PathBuf {
        self.files.path().join("policy.toml")
    }

    /// The detector settings.
    pub fn detect(&self) -> PathBuf {
        self.files.path().join("detect.toml")
    }

    /// The `[enrich]`, `[policy]` and `[detect]` sections of the collector's
    /// configuration (idle lines advance event time after 1 s).
    pub fn config(&self) -> String {
        format!(
            "[enrich]\nmmdb = [\"{}\"]\n\n[policy]\nfile = \"{}\"\n\n\
             [detect]\nconfig = \"{}\"\nidle_advance_secs = 1\n",
            self.mmdb.display(),
            self.policy().display(),
            self.detect().display()
        )
    }
}
