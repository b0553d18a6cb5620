//! pcap/pcapng replay: capture files through the shared parser into the flow table.
//!
//! Every frame is parsed by [`tidegate_common::parse_frame`] with the link type of the
//! interface it was captured on (pcapng files may mix interfaces, link types and
//! timestamp resolutions) and counted exactly like the live backends count: `packets` and
//! `frame_bytes` for every frame, then `accounted` or one error reason, plus a warning
//! counter for packets accounted with reduced detail. Accounted packets go into a
//! [`FlowTable`] with their capture timestamp as event time; idle/active timeouts are
//! applied in event time (a sweep whenever event time has advanced by at least
//! [`SWEEP_INTERVAL_NS`]) and everything left is flushed by [`Replay::finish`].
//!
//! Replay is in-process and embeddable:
//!
//! ```no_run
//! use tidegate_probe::capture::pcap::Replay;
//! use tidegate_probe::record::FlowRecord;
//! use tidegate_probe::table::Timeouts;
//!
//! let mut replay = Replay::new(Timeouts::default());
//! let mut records: Vec<FlowRecord> = Vec::new();
//! let report = replay.replay_file("trace.pcapng".as_ref(), "line-a", &mut records)?;
//! if let Some(err) = &report.error {
//!     eprintln!("{err}"); // records of the packets read before the problem are kept
//! }
//! let totals = replay.finish(&mut records)?;
//! println!("{} records, {totals}", records.len());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A truncated or corrupt file never panics: the packets read before the problem stay
//! accounted, [`FileReport::error`] says what is wrong and where, and
//! [`ReplayStats::file_errors`] counts it.

mod reader;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use tidegate_common::{
    Counter, Direction, FlowKey, FlowStats, Tunnels, WireFrame, parse::LinkType, parse_frame,
};

pub use reader::{CaptureReader, FileErrorKind, Format, Frame, MAX_RECORD};

use crate::export::Exporter;
use crate::record::{FlowRecord, outer_endpoints};
use crate::table::{FlowTable, Timeouts};

/// Event time must advance this much (ns) between two timeout sweeps.
pub const SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

/// How often (in frames) the progress callback is called while reading a file.
const PROGRESS_EVERY: u64 = 4096;

/// A capture file that could not be read completely, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong (part of the message, so not also a `source`).
    pub kind: FileErrorKind,
}

/// Probe counters of a replay (one file, or the whole run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    counters: [u64; Counter::COUNT as usize],
    /// Files that could not be read completely (unreadable, truncated, corrupt).
    pub file_errors: u64,
    /// Flow records exported.
    pub records: u64,
}

impl ReplayStats {
    /// The value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }

    /// Every counter with its value, in index order.
    pub fn counters(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c, self.counters[c as usize]))
    }

    #[inline]
    fn add(&mut self, c: Counter, n: u64) {
        self.counters[c as usize] += n;
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, o: &ReplayStats) {
        for (a, b) in self.counters.iter_mut().zip(o.counters.iter()) {
            *a += b;
        }
        self.file_errors += o.file_errors;
        self.records += o.records;
    }
}

/// `packets=.. frame_bytes=.. accounted=..` followed by every non-zero other counter and
/// `incomplete_files=..` when some file could not be read completely.
impl fmt::Display for ReplayStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (c, v) in self.counters() {
            let always = matches!(
                c,
                Counter::Packets | Counter::FrameBytes | Counter::Accounted
            );
            if always || v != 0 {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{}={v}", c.name())?;
                first = false;
            }
        }
        if self.file_errors != 0 {
            write!(f, " incomplete_files={}", self.file_errors)?;
        }
        Ok(())
    }
}

/// What replaying one file did.
#[derive(Debug)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Line name its records carry.
    pub line: String,
    /// Container format (`None` when the file header could not be read).
    pub format: Option<Format>,
    /// Counters of this file's frames (`records`: records exported while reading it,
    /// which may include other files' flows that timed out meanwhile).
    pub stats: ReplayStats,
    /// Bytes of the file read.
    pub bytes_read: u64,
    /// Set when the file could not be read completely; everything read before the
    /// problem is accounted.
    pub error: Option<FileError>,
}

/// Progress of the file being read, for progress bars.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Bytes read so far.
    pub bytes: u64,
    /// Size of the file (0 when unknown).
    pub total: u64,
}

/// Collects records in memory (tests, tooling).
impl Exporter for Vec<FlowRecord> {
    fn export(&mut self, rec: &FlowRecord) -> io::Result<()> {
        self.push(rec.clone());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A replay session: one or more files through one set of flow tables (one per line
/// name), with a common event-time clock.
pub struct Replay {
    timeouts: Timeouts,
    tunnels: Tunnels,
    tables: Vec<(String, FlowTable)>,
    /// Event time: the latest capture timestamp seen.
    now_ns: Option<u64>,
    last_sweep_ns: u64,
    stats: ReplayStats,
    progress: Option<Box<dyn FnMut(Progress)>>,
}

impl fmt::Debug for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("timeouts", &self.timeouts)
            .field("now_ns", &self.now_ns)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Replay {
    /// A replay with the given export timeouts (applied in event time).
    pub fn new(timeouts: Timeouts) -> Self {
        Replay {
            timeouts,
            tunnels: Tunnels::Outer,
            tables: Vec::new(),
            now_ns: None,
            last_sweep_ns: 0,
            stats: ReplayStats::default(),
            progress: None,
        }
    }

    /// Keys tunnelled packets by the header inside their tunnel ([`Tunnels::Inner`]) or
    /// by the outermost (the default).
    pub fn set_tunnels(&mut self, t: Tunnels) {
        self.tunnels = t;
    }

    /// Calls `f` with the read progress of the current file every few thousand frames and
    /// at the end of each file.
    pub fn on_progress(&mut self, f: impl FnMut(Progress) + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// Counters of everything replayed so far.
    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// Flows currently held (not yet exported).
    pub fn open_flows(&self) -> usize {
        self.tables.iter().map(|(_, t)| t.len()).sum()
    }

    /// Replays one file; its records carry `line`. Files with the same line name share a
    /// flow table, so a flow continuing across rotated files is not split.
    ///
    /// File problems (unreadable, not a capture, truncated, corrupt) are reported in
    /// [`FileReport::error`], never as `Err` and never by panicking; `Err` means the
    /// exporter failed.
    pub fn replay_file(
        &mut self,
        path: &Path,
        line: &str,
        out: &mut dyn Exporter,
    ) -> io::Result<FileReport> {
        let ti = match self.tables.iter().position(|(l, _)| l == line) {
            Some(i) => i,
            None => {
                self.tables
                    .push((line.to_string(), FlowTable::new(self.timeouts)));
                self.tables.len() - 1
            }
        };
        let mut report = FileReport {
            path: path.to_path_buf(),
            line: line.to_string(),
            format: None,
            stats: ReplayStats::default(),
            bytes_read: 0,
            error: None,
        };
        let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut rd = match CaptureReader::open(path) {
            Ok(r) => r,
            Err(kind) => {
                report.error = Some(FileError {
                    path: path.to_path_buf(),
                    kind,
                });
                report.stats.file_errors = 1;
                self.stats.file_errors += 1;
                return Ok(report);
            }
        };
        report.format = Some(rd.format());
        let mut fs = ReplayStats::default();
        let mut last_ts = self.now_ns.unwrap_or(0);
        let result = loop {
            let frame = match rd.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(kind) => break Err(kind),
            };
            fs.add(Counter::Packets, 1);
            fs.add(
                Counter::FrameBytes,
                (frame.orig_len as u64).max(frame.data.len() as u64),
            );
            // A pcapng simple packet block has no timestamp: it comes after the previous one.
            let ts = frame.ts_ns.unwrap_or(last_ts);
            last_ts = ts;
            let parsed = match LinkType::from_linktype(frame.linktype) {
                None => Err(Counter::ErrLinkType),
                Some(link) => {
                    let wire = WireFrame {
                        data: frame.data,
                        wire_len: frame.orig_len as usize,
                    };
                    parse_frame(&wire, link, self.tunnels).map_err(|e| e.counter())
                }
            };
            // Event time advances with every frame; sweep before accounting so a packet
            // after an idle gap starts a new record.
            self.advance(ts, &mut fs, out)?;
            match parsed {
                Err(c) => fs.add(c, 1),
                Ok(p) => {
                    fs.add(Counter::Accounted, 1);
                    if let Some(w) = p.warn {
                        fs.add(w, 1);
                    }
                    if p.key.tunnel != 0 {
                        fs.add(Counter::Decapsulated, 1);
                    }
                    let mut key = p.key;
                    key.ifindex = 0;
                    key.direction = Direction::Ingress as u8;
                    let table = &mut self.tables[ti].1;
                    table.observe_packet(&key, ts, p.ip_bytes as u64, p.tcp_flags, p.icmp);
                    let payload = crate::app::payload(frame.data, &p);
                    if !payload.is_empty() {
                        table.inspect_payload(&key, payload);
                    }
                    if key.tunnel != 0
                        && let Some(o) = frame
                            .data
                            .get(p.outer_l3_off as usize..)
                            .and_then(outer_endpoints)
                    {
                        table.note_outer(&key, o);
                    }
                }
            }
            if fs.get(Counter::Packets).is_multiple_of(PROGRESS_EVERY)
                && let Some(cb) = self.progress.as_mut()
            {
                cb(Progress {
                    bytes: rd.position(),
                    total,
                });
            }
        };
        report.bytes_read = rd.position();
        if let Some(cb) = self.progress.as_mut() {
            cb(Progress {
                bytes: rd.position(),
                total,
            });
        }
        if let Err(kind) = result {
            fs.file_errors = 1;
            report.error = Some(FileError {
                path: path.to_path_buf(),
                kind,
            });
        }
        self.stats.merge(&fs);
        report.stats = fs;
        Ok(report)
    }

    /// Moves event time to `ts` (it never goes back) and sweeps the tables when it has
    /// advanced by [`SWEEP_INTERVAL_NS`] since the last sweep.
    fn advance(&mut self, ts: u64, fs: &mut ReplayStats, out: &mut dyn Exporter) -> io::Result<()> {
        let now = match self.now_ns {
            None => {
                self.last_sweep_ns = ts;
                ts
            }
            Some(n) => n.max(ts),
        };
        self.now_ns = Some(now);
        if now.saturating_sub(self.last_sweep_ns) < SWEEP_INTERVAL_NS {
            return Ok(());
        }
        self.last_sweep_ns = now;
        let n = self.sweep(Some(now), out)?;
        fs.records += n;
        Ok(())
    }

    /// Exports expired flows (`Some(now)`) or every flow (`None`).
    fn sweep(&mut self, now: Option<u64>, out: &mut dyn Exporter) -> io::Result<u64> {
        let mut res = Ok(());
        let mut n = 0u64;
        for (line, table) in &mut self.tables {
            let mut emit = |k: &FlowKey, s: &FlowStats, attrs: crate::app::FlowAttrs| {
                if res.is_ok() {
                    let mut r = FlowRecord::new(k, s, line.as_str());
                    attrs.apply(&mut r);
                    res = out.export(&r);
                    n += 1;
                }
            };
            match now {
                Some(t) => table.expire(t, &mut emit),
                None => table.flush(&mut emit),
            };
        }
        res.map(|()| n)
    }

    /// Flushes every remaining flow to `out` and returns the counters of the whole replay.
    pub fn finish(mut self, out: &mut dyn Exporter) -> io::Result<ReplayStats> {
        let n = self.sweep(None, out)?;
        self.stats.records += n;
        out.flush()?;
        Ok(self.stats)
    }
}
