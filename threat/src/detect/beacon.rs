//! Beaconing: connections from one host to one service starting at regular intervals.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::alert::{AlertKind, Detection, Endpoint};
use super::config::BeaconConfig;
use super::window::{Lines, keep_earliest_with};
use super::{ACK, NS, Rule, SYN};
use crate::Severity;

/// Connection starts kept per key.
const STARTS_MAX: usize = 64;
/// Keys idle for this long (event time) are forgotten.
const IDLE_NS: u64 = 6 * 3600 * NS;
/// Idle keys are swept once per this much event time (not per record): a sixteenth of
/// the idle time, so a sweep (which visits every series) costs little per record however
/// many series are held, and a series outlives its idle time by at most 6 %.
const SWEEP_NS: u64 = IDLE_NS / 16;

type Key = (IpAddr, IpAddr, u8, u16);

#[derive(Default)]
struct Series {
    starts: Vec<u64>,
    last_sport: u16,
    last_end: u64,
    evidence: Vec<FlowRecord>,
    /// Line of the first start, as `Beaconing::lines` numbers it.
    line: u16,
    pending: bool,
}

/// Connection start times per (client, server, protocol, port).
pub(crate) struct Beaconing {
    cfg: BeaconConfig,
    evidence_max: usize,
    series: BTreeMap<Key, Series>,
    /// Keys with a connection start not evaluated yet (in key order: deterministic).
    pending: BTreeSet<Key>,
    next_sweep_ns: u64,
    lines: Lines,
}

impl Beaconing {
    pub fn new(cfg: BeaconConfig, evidence_max: usize) -> Self {
        Beaconing {
            cfg,
            evidence_max,
            series: BTreeMap::new(),
            pending: BTreeSet::new(),
            next_sweep_ns: 0,
            lines: Lines::default(),
        }
    }
}

/// Mean and coefficient of variation of the gaps between sorted times.
fn periodicity(starts: &[u64]) -> (f64, f64) {
    let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
    (
        mean,
        if mean > 0.0 {
            var.sqrt() / mean
        } else {
            f64::INFINITY
        },
    )
}

impl Rule for Beaconing {
    fn observe(&mut self, r: &FlowRecord) {
        let new_connection = match r.proto {
            6 => r.tcp_flags & SYN != 0 && r.tcp_flags & ACK != 0 && r.sport > r.dport,
            17 => r.sport > r.dport,
            _ => false,
        };
        if !new_connection {
            return;
        }
        let key = (r.src, r.dst, r.proto, r.dport);
        let s = self.series.entry(key).or_default();
        // A UDP record continuing the previous one (split by the probe's timeouts) is not
        // a new connection.
        let min_gap = (self.cfg.min_period_secs * NS as f64 / 2.0) as u64;
        let continues = r.proto == 17
            && r.sport == s.last_sport
            && r.first < s.last_end.saturating_add(min_gap);
        s.last_sport = r.sport;
        s.last_end = s.last_end.max(r.last);
        if continues {
            return;
        }
        if s.starts.len() == STARTS_MAX {
            s.starts.remove(0);
        }
        s.starts.push(r.first);
        let line = self.lines.id(&r.line);
        let lines = &self.lines;
        keep_earliest_with(&mut s.evidence, r, self.evidence_max, |r| {
            lines.copy(r, line)
        });
        if s.starts.len() == 1 {
            s.line = line;
        }
        s.pending = true;
        // Only a series with enough starts can be judged: younger ones wait here
        // without costing the close an entry.
        if s.starts.len() >= self.cfg.min_events {
            self.pending.insert(key);
        }
    }

    fn due(&self) -> u64 {
        // Series to judge, or the sweep of idle ones.
        if self.pending.is_empty() {
            self.next_sweep_ns
        } else {
            0
        }
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        let cfg = &self.cfg;
        // Only series with a new start since their last evaluation can change verdict:
        // evaluating just those keeps a record's cost independent of how many series
        // are held.
        for key in std::mem::take(&mut self.pending) {
            let (src, dst, proto, port) = key;
            let Some(s) = self.series.get_mut(&key) else {
                continue;
            };
            if !s.pending || s.starts.len() < cfg.min_events {
                continue;
            }
            s.pending = false;
            let mut starts = s.starts.clone();
            starts.sort_unstable();
            let (mean, cv) = periodicity(&starts);
            if mean < cfg.min_period_secs * NS as f64 || cv > cfg.max_jitter {
                continue;
            }
            out.push(Detection {
                kind: AlertKind::Beaconing,
                key: format!("{src}>{dst}/{proto}/{port}"),
                window_start: starts[0],
                severity: Severity::Low,
                first_ns: starts[0],
                last_ns: starts[starts.len() - 1],
                src: Some(Endpoint::Addr(src)),
                dst: Some(Endpoint::Addr(dst)),
                port: Some(port),
                line: self.lines.name(s.line).to_string(),
                measured: cv,
                threshold: cfg.max_jitter,
                unit: "jitter (cv)",
                description: format!(
                    "{src} connected to {dst} port {port} {} times every {:.1}s (jitter {:.3})",
                    starts.len(),
                    mean / NS as f64,
                    cv
                ),
                evidence: s.evidence.clone(),
                volume: None,
            });
        }
        if watermark != u64::MAX && watermark >= self.next_sweep_ns {
            self.series
                .retain(|_, s| s.last_end.saturating_add(IDLE_NS) >= watermark);
            self.next_sweep_ns = watermark.saturating_add(SWEEP_NS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodicity_of_regular_and_irregular_series() {
        let (mean, cv) = periodicity(&[0, 10, 20, 30, 40]);
        assert_eq!(mean, 10.0);
        assert_eq!(cv, 0.0);
        let (_, cv) = periodicity(&[0, 1, 20, 21, 40]);
        assert!(cv > 0.5);
    }
}
