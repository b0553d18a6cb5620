//! Alerts: what a detector reports, and the book that merges repeats into open alerts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Serialize, Serializer};
use tidegate_wire::record::{FlowRecord, rfc3339_ns};

use super::window::keep_earliest;
use crate::Severity;

/// What kind of anomaly an alert reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// One source probing many ports of one target.
    PortScan,
    /// One source probing one port on many hosts.
    HostSweep,
    /// SYNs without completion towards one target.
    SynFlood,
    /// Packet or bit rate towards one target above its baseline and an absolute floor.
    Volumetric,
    /// Large responses from amplification ports (DNS, NTP, SSDP, ...) towards one target.
    Amplification,
    /// Outbound bytes from an inside host far above that host's baseline.
    Exfiltration,
    /// Periodic connections with low jitter.
    Beaconing,
    /// DNS traffic whose volume and query sizes look like a tunnel.
    DnsTunnel,
    /// ICMP echo traffic whose volume and payload sizes look like a tunnel.
    IcmpTunnel,
    /// Requests towards an inside host far above that host's own baseline.
    Surge,
    /// An inside host sending one destination far more than it receives from it.
    Upload,
    /// Records a probe delivered could not be stored (undecodable, or refused by
    /// ClickHouse) and were quarantined: an integrity alert about the collector itself.
    DataQuarantined,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 12] = [
        AlertKind::PortScan,
        AlertKind::HostSweep,
        AlertKind::SynFlood,
        AlertKind::Volumetric,
        AlertKind::Amplification,
        AlertKind::Exfiltration,
        AlertKind::Beaconing,
        AlertKind::DnsTunnel,
        AlertKind::IcmpTunnel,
        AlertKind::Surge,
        AlertKind::Upload,
        AlertKind::DataQuarantined,
    ];

    /// The kind named `s` (as serialized).
    pub fn parse(s: &str) -> Option<AlertKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Stable snake_case name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::PortScan => "port_scan",
            AlertKind::HostSweep => "host_sweep",
            AlertKind::SynFlood => "syn_flood",
            AlertKind::Volumetric => "volumetric",
            AlertKind::Amplification => "amplification",
            AlertKind::Exfiltration => "exfiltration",
            AlertKind::Beaconing => "beaconing",
            AlertKind::DnsTunnel => "dns_tunnel",
            AlertKind::IcmpTunnel => "icmp_tunnel",
            AlertKind::Surge => "surge",
            AlertKind::Upload => "upload",
            AlertKind::DataQuarantined => "data_quarantined",
        }
    }
}

/// One endpoint of an alert: a single address, or a description when there are many
/// (e.g. "37669 sources").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// One address.
    Addr(IpAddr),
    /// Many addresses, described.
    Many(String),
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Endpoint::Addr(a) => s.collect_str(a),
            Endpoint::Many(d) => s.serialize_str(d),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Many(d) => f.write_str(d),
        }
    }
}

/// One anomaly, possibly updated by later repeats of the same kind and key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// Deterministic id: hash of kind, key and the merge-gap epoch of the first window
    /// (replays give the same id).
    pub id: String,
    /// What was detected.
    pub kind: AlertKind,
    /// How urgent.
    pub severity: Severity,
    /// Event time of the first evidence (Unix ns; RFC 3339 in JSON).
    #[serde(rename = "first", with = "rfc3339_ns")]
    pub first_ns: u64,
    /// Event time of the last evidence (Unix ns; RFC 3339 in JSON).
    #[serde(rename = "last", with = "rfc3339_ns")]
    pub last_ns: u64,
    /// Source (attacker, leaking host), absent when not meaningful.
    pub src: Option<Endpoint>,
    /// Target.
    pub dst: Option<Endpoint>,
    /// Destination port concerned (scanned/flooded/tunnel port, or amplification source port).
    pub port: Option<u16>,
    /// Line the evidence was seen on.
    pub line: String,
    /// Detector key (what repeats are merged by).
    pub key: String,
    /// Measured value (the largest seen while the alert was open).
    pub measured: f64,
    /// Threshold the measured value was compared with.
    pub threshold: f64,
    /// Unit of `measured` and `threshold`.
    pub unit: String,
    /// Human-readable explanation.
    pub description: String,
    /// A bounded sample of the flows that triggered the alert.
    pub evidence: Vec<FlowRecord>,
    /// What the incident amounted to (every source merged): packets and bytes summed
    /// over the windows that reported. `None` for detectors whose windows overlap (a sum
    /// over them would count traffic twice) or that do not count volume.
    pub volume: Option<Volume>,
}

impl Alert {
    /// The alert raised when a spool entry is quarantined: `place` names the entry's
    /// position in the collector's spool (unique, so each quarantine is its own alert),
    /// `records`/`volume` what it held when it could be decoded, `now_ns` the collector's
    /// clock.
    pub fn data_quarantined(
        probe_id: &str,
        place: &str,
        records: &[FlowRecord],
        why: &str,
        file: &str,
        now_ns: u64,
    ) -> Alert {
        let key = format!("{probe_id} {place}");
        let id = fnv1a(&[
            AlertKind::DataQuarantined.as_str().as_bytes(),
            key.as_bytes(),
        ]);
        let (first_ns, last_ns) = records
            .iter()
            .fold(None, |acc: Option<(u64, u64)>, r| {
                Some(acc.map_or((r.first, r.last), |(f, l)| (f.min(r.first), l.max(r.last))))
            })
            .unwrap_or((now_ns, now_ns));
        let volume = (!records.is_empty()).then(|| {
            records.iter().fold(Volume::default(), |v, r| Volume {
                packets: v.packets.saturating_add(r.packets),
                bytes: v.bytes.saturating_add(r.bytes),
            })
        });
        let line = records
            .first()
            .map(|r| r.line.to_string())
            .unwrap_or_default();
        let mut evidence = records.to_vec();
        evidence.truncate(8);
        Alert {
            id: format!("{id:016x}"),
            kind: AlertKind::DataQuarantined,
            severity: Severity::High,
            first_ns,
            last_ns,
            src: None,
            dst: None,
            port: None,
            line,
            key,
            measured: records.len() as f64,
            threshold: 0.0,
            unit: "records".into(),
            description: format!(
                "{} record(s) from probe {probe_id} could not be stored ({why}); the batch is \
                 quarantined in {file} and is not in ClickHouse",
                records.len()
            ),
            evidence,
            volume,
        }
    }
}

/// Packets and bytes an alert counted. (Not flows: a flow spread over several windows
/// is in each of them.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Volume {
    /// The counters of one window.
    pub(crate) fn of(acc: &super::window::Acc) -> Volume {
        Volume {
            packets: acc.packets.round() as u64,
            bytes: acc.bytes.round() as u64,
        }
    }

    fn max(self, o: Volume) -> Volume {
        Volume {
            packets: self.packets.max(o.packets),
            bytes: self.bytes.max(o.bytes),
        }
    }

    fn add(self, o: Volume) -> Volume {
        Volume {
            packets: self.packets.saturating_add(o.packets),
            bytes: self.bytes.saturating_add(o.bytes),
        }
    }
}

/// How many recent windows an open alert keeps apart (see [`Tally`]).
const TALLY_RECENT: usize = 16;

/// An open alert's volume: one entry per recent window — an early warning and its
/// window's final report describe the same window, so the larger counts — and the older
/// windows summed.
#[derive(Clone, Debug, Default)]
struct Tally {
    older: Volume,
    recent: BTreeMap<u64, Volume>,
}

impl Tally {
    fn count(&mut self, window_start: u64, v: Volume) -> Volume {
        let e = self.recent.entry(window_start).or_default();
        *e = e.max(v);
        while self.recent.len() > TALLY_RECENT {
            if let Some((_, old)) = self.recent.pop_first() {
                self.older = self.older.add(old);
            }
        }
        self.recent.values().fold(self.older, |t, v| t.add(*v))
    }
}

/// A new alert, or a change to an open one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertUpdate {
    /// True when the alert was just opened, false when an open alert was updated.
    pub new: bool,
    /// The alert's current state.
    pub alert: Alert,
}

/// What a detector found in one closed window, before merging into an alert.
#[derive(Clone, Debug)]
pub(crate) struct Detection {
    pub kind: AlertKind,
    pub key: String,
    pub window_start: u64,
    pub severity: Severity,
    pub first_ns: u64,
    pub last_ns: u64,
    pub src: Option<Endpoint>,
    pub dst: Option<Endpoint>,
    pub port: Option<u16>,
    pub line: String,
    pub measured: f64,
    pub threshold: f64,
    pub unit: &'static str,
    pub description: String,
    pub evidence: Vec<FlowRecord>,
    /// This window's counters, for detectors whose windows do not overlap.
    pub volume: Option<Volume>,
}

/// 64-bit FNV-1a: a stable hash (unlike std's, the same across runs and builds).
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Open and closed alerts; repeats of a kind and key within `merge_gap_ns` of the open
/// alert's last evidence update it instead of opening a new alert.
#[derive(Debug)]
pub(crate) struct AlertBook {
    merge_gap_ns: u64,
    evidence_max: usize,
    open: BTreeMap<(AlertKind, String), (Alert, Tally)>,
    pub(super) closed: Vec<Alert>,
    /// Keep closed alerts for [`Self::drain`] (a finite analysis); a live stream, which
    /// publishes every state as it happens, does not.
    keep_closed: bool,
}

impl AlertBook {
    pub fn new(merge_gap_ns: u64, evidence_max: usize) -> Self {
        AlertBook {
            merge_gap_ns,
            evidence_max,
            open: BTreeMap::new(),
            closed: Vec::new(),
            keep_closed: true,
        }
    }

    /// Whether closed alerts are kept for [`Self::drain`].
    pub fn keep_closed(&mut self, keep: bool) {
        self.keep_closed = keep;
        if !keep {
            self.closed = Vec::new();
        }
    }

    fn close_alert(&mut self, a: Alert) {
        if self.keep_closed {
            self.closed.push(a);
        }
    }

    /// Merges a finding; returns the resulting update.
    pub fn merge(&mut self, f: Detection) -> AlertUpdate {
        let slot = (f.kind, f.key.clone());
        if let Some((a, tally)) = self.open.get_mut(&slot) {
            if f.first_ns <= a.last_ns.saturating_add(self.merge_gap_ns) {
                a.first_ns = a.first_ns.min(f.first_ns);
                a.last_ns = a.last_ns.max(f.last_ns);
                a.severity = a.severity.max(f.severity);
                if f.measured >= a.measured {
                    // The fuller report (e.g. a window's final count after an early
                    // warning) describes the alert.
                    a.measured = f.measured;
                    a.threshold = f.threshold;
                    a.description = f.description;
                    a.src = f.src;
                    a.dst = f.dst;
                    a.port = f.port;
                }
                if let Some(v) = f.volume {
                    a.volume = Some(tally.count(f.window_start, v));
                }
                for r in &f.evidence {
                    // An early warning and its window's final report share flows.
                    if !a.evidence.contains(r) {
                        keep_earliest(&mut a.evidence, r, self.evidence_max);
                    }
                }
                return AlertUpdate {
                    new: false,
                    alert: a.clone(),
                };
            }
            let (old, _) = self.open.remove(&slot).expect("present");
            self.close_alert(old);
        }
        // The id names the merge-gap-long epoch of the opening window, not the window
        // itself: an early warning may come from any window of an attack depending on the
        // order records arrive in, and all of them open the same alert.
        let epoch = f.window_start / self.merge_gap_ns.max(1);
        let id = fnv1a(&[
            f.kind.as_str().as_bytes(),
            f.key.as_bytes(),
            &epoch.to_be_bytes(),
        ]);
        let mut evidence = f.evidence;
        evidence.truncate(self.evidence_max);
        let mut tally = Tally::default();
        let volume = f.volume.map(|v| tally.count(f.window_start, v));
        let alert = Alert {
            id: format!("{id:016x}"),
            kind: f.kind,
            severity: f.severity,
            first_ns: f.first_ns,
            last_ns: f.last_ns,
            src: f.src,
            dst: f.dst,
            port: f.port,
            line: f.line,
            key: f.key,
            measured: f.measured,
            threshold: f.threshold,
            unit: f.unit.to_string(),
            description: f.description,
            evidence,
            volume,
        };
        self.open.insert(slot, (alert.clone(), tally));
        AlertUpdate { new: true, alert }
    }

    /// Closes open alerts whose last evidence is more than the merge gap before `watermark`.
    pub fn expire(&mut self, watermark: u64) {
        let gap = self.merge_gap_ns;
        let stale: Vec<_> = self
            .open
            .iter()
            .filter(|(_, (a, _))| a.last_ns.saturating_add(gap) < watermark)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some((a, _)) = self.open.remove(&k) {
                self.close_alert(a);
            }
        }
    }

    /// Every alert, closed (when kept) and open, ordered by first time then id.
    pub fn drain(&mut self) -> Vec<Alert> {
        let mut all = std::mem::take(&mut self.closed);
        all.extend(std::mem::take(&mut self.open).into_values().map(|(a, _)| a));
        all.sort_by(|a, b| (a.first_ns, &a.id).cmp(&(b.first_ns, &b.id)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(first: u64, measured: f64) -> Detection {
        Detection {
            kind: AlertKind::PortScan,
            key: "a>b".into(),
            window_start: first,
            severity: Severity::Low,
            first_ns: first,
            last_ns: first + 10,
            src: None,
            dst: None,
            port: None,
            line: "l".into(),
            measured,
            threshold: 1.0,
            unit: "ports",
            description: String::new(),
            evidence: Vec::new(),
            volume: Some(Volume {
                packets: measured as u64,
                bytes: 100,
            }),
        }
    }

    #[test]
    fn repeats_within_the_gap_update_the_open_alert() {
        let mut book = AlertBook::new(100, 10);
        let a = book.merge(finding(0, 5.0));
        let b = book.merge(finding(50, 9.0));
        assert!(a.new && !b.new);
        assert_eq!(a.alert.id, b.alert.id);
        assert_eq!(b.alert.measured, 9.0);
        assert_eq!(b.alert.last_ns, 60);
        let c = book.merge(finding(1_000, 5.0));
        assert!(c.new);
        assert_ne!(c.alert.id, a.alert.id);
        assert_eq!(book.drain().len(), 2);
    }

    #[test]
    fn an_incident_totals_its_windows_and_counts_a_window_once() {
        let mut book = AlertBook::new(1_000, 10);
        book.merge(finding(0, 5.0));
        // The final report of the same window after its early warning: the larger counts.
        book.merge(finding(0, 7.0));
        book.merge(finding(100, 3.0));
        let last = book.merge(finding(200, 4.0));
        assert_eq!(
            last.alert.volume,
            Some(Volume {
                packets: 14,
                bytes: 300
            })
        );
        // Many windows: the older ones are summed, not forgotten.
        let mut book = AlertBook::new(1_000, 10);
        let mut last = None;
        for w in 0..40 {
            last = Some(book.merge(finding(w * 10, 2.0)));
        }
        assert_eq!(last.unwrap().alert.volume.unwrap().packets, 80);
    }

    #[test]
    fn severity_scales_with_the_ratio() {
        assert_eq!(
            Severity::scaled(Severity::Medium, 2.0, 1.0),
            Severity::Medium
        );
        assert_eq!(Severity::scaled(Severity::Medium, 5.0, 1.0), Severity::High);
        assert_eq!(
            Severity::scaled(Severity::High, 100.0, 1.0),
            Severity::Critical
        );
    }
}
