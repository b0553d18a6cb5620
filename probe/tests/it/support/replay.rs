//! Captures replayed in-process by the probe library, each on a line named after its file
//! stem, as `tidegate-probe replay` names them.

use std::path::Path;

use tidegate_probe::{
    capture::pcap::Replay, export::Exporter, record::FlowRecord, table::Timeouts,
};

/// The file stem: the line a capture is replayed on.
pub fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Replays `files` through one flow table (default timeouts) into `out`, then flushes it.
pub fn replay<P: AsRef<Path>>(files: &[P], out: &mut dyn Exporter) {
    let mut r = Replay::new(Timeouts::default());
    for f in files {
        let f = f.as_ref();
        r.replay_file(f, &stem(f), out).unwrap();
    }
    r.finish(out).unwrap();
}

/// The records [`replay`] of `files` produces.
pub fn records_of<P: AsRef<Path>>(files: &[P]) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    replay(files, &mut out);
    out
}
