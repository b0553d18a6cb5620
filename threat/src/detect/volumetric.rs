//! Volumetric DDoS (rate per target and protocol above a learned baseline and an
//! absolute floor) and amplification (large answers from reflection ports).

use std::collections::BTreeMap;
use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::alert::{AlertKind, Detection, Endpoint};
use super::config::{AmplificationConfig, VolumetricConfig};
use super::tiered::{ColdRun, Learned, Tiered};
use super::window::Windows;
use super::{NS, Rule};
use crate::Severity;

/// Well-known name of an amplification source port.
pub(crate) fn amp_service(port: u16) -> &'static str {
    match port {
        19 => "CHARGEN",
        53 => "DNS",
        123 => "NTP",
        161 => "SNMP",
        389 => "CLDAP",
        500 | 4500 => "ISAKMP",
        1900 => "SSDP",
        3702 => "WS-Discovery",
        11211 => "memcached",
        0 => "UDP fragments",
        _ => "UDP",
    }
}

pub(crate) fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        n => format!("protocol {n}"),
    }
}

/// Exponential moving averages of (pps, bps) per key.
#[derive(Default)]
struct Baseline {
    pps: f64,
    bps: f64,
    windows: u64,
    /// Start of the last window that updated it.
    seen_ns: u64,
}

impl Learned for Baseline {
    fn holds(&self) -> bool {
        self.windows > 0
    }
}

/// Baselines kept before idle ones are forgotten (bounds memory under spoofed targets).
/// A baseline lives in its key's state in `Tiered`, which keeps the key while it holds
/// one (and lets go of its buffers once it is quiet): 160 bytes a key and its state, up
/// to ~84 MB at this bound with the hash table's slack.
const BASELINES_MAX: usize = 1 << 18;
/// Baselines not updated for this long are forgotten first.
const BASELINE_IDLE_NS: u64 = 24 * 3600 * NS;

/// Packet and bit rates per (target, protocol) against max(floor, baseline × factor).
pub(crate) struct Volumetric {
    cfg: VolumetricConfig,
    amp_ports: Vec<u16>,
    evidence_max: usize,
    /// Windows per (target, protocol), each key's baseline in its state.
    windows: Tiered<(IpAddr, u8), Baseline>,
    /// Windows past these packets or bytes keep sample flows (see `observe`).
    gate_packets: f64,
    gate_bytes: f64,
    /// Bytes from amplification source ports per (target, port).
    amp: Windows<(IpAddr, u16)>,
}

impl Volumetric {
    pub fn new(cfg: VolumetricConfig, amp_ports: Vec<u16>, evidence_max: usize) -> Self {
        let len = cfg.window_secs * NS;
        // Only windows past a quarter of the floor can end up reporting (a learned
        // threshold is never below the floor): only those keep sample flows, and keys
        // below it are kept cold (see `tiered`).
        let secs = cfg.window_secs as f64;
        let (gate_packets, gate_bytes) =
            (cfg.floor_pps * secs / 4.0, cfg.floor_bps * secs / 8.0 / 4.0);
        Volumetric {
            cfg,
            amp_ports,
            evidence_max,
            windows: Tiered::new(len, gate_packets, gate_bytes),
            gate_packets,
            gate_bytes,
            amp: Windows::new(len),
        }
    }
}

impl Rule for Volumetric {
    fn observe(&mut self, r: &FlowRecord) {
        let (gate_packets, gate_bytes) = (self.gate_packets, self.gate_bytes);
        self.windows
            .add_spread_gated(r, (r.dst, r.proto), self.evidence_max, |acc| {
                acc.packets >= gate_packets || acc.bytes >= gate_bytes
            });
        if r.proto == 17 && self.amp_ports.contains(&r.sport) {
            self.amp.add_spread(r, (r.dst, r.sport), 0);
        }
    }

    fn reached(&mut self, watermark: u64) {
        self.windows.reached(watermark);
    }

    fn pending(&self) -> usize {
        self.windows.pending()
    }

    fn due(&self) -> u64 {
        self.amp.due().min(self.windows.due())
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        let mut amp: BTreeMap<(u64, IpAddr), (u16, f64)> = BTreeMap::new();
        for (w, (dst, port), acc) in self.amp.drain_closed(watermark) {
            let e = amp.entry((w, dst)).or_insert((port, 0.0));
            if acc.bytes > e.1 {
                *e = (port, acc.bytes);
            }
        }
        let secs = self.cfg.window_secs as f64;
        // Windows of cold keys only teach the baseline: they are below the gate, so
        // below the floor. They come per key in window order, as runs of equal windows,
        // each folded into the key's baseline in one step.
        let cfg = &self.cfg;
        let hot = self
            .windows
            .drain_closed_with(watermark, |_, base, run| learn_run(cfg, base, run));
        for (w, (dst, proto), mut acc) in hot {
            let pps = acc.packets / secs;
            let bps = acc.bytes * 8.0 / secs;
            let (thr_pps, thr_bps) = self.learn((dst, proto), w, pps, bps);
            if pps < thr_pps && bps < thr_bps {
                continue;
            }
            let (measured, threshold, unit) = if pps / thr_pps >= bps / thr_bps {
                (pps, thr_pps, "pps")
            } else {
                (bps, thr_bps, "bps")
            };
            // The amplification port, when reflection answers are most of the bytes.
            let port = amp
                .get(&(w, dst))
                .filter(|(_, b)| *b * 2.0 >= acc.bytes)
                .map(|(p, _)| *p);
            let sources = acc.sources();
            let pname = proto_name(proto);
            out.push(Detection {
                kind: AlertKind::Volumetric,
                key: match port {
                    Some(p) => format!("{dst}/{proto}/amp{p}"),
                    None => format!("{dst}/{proto}"),
                },
                window_start: w,
                severity: Severity::scaled(Severity::High, measured, threshold),
                first_ns: acc.first_ns,
                last_ns: acc.last_ns,
                src: Some(acc.source_endpoint()),
                dst: Some(Endpoint::Addr(dst)),
                port,
                line: self.windows.line(&acc),
                measured,
                threshold,
                unit,
                description: format!(
                    "{pname} towards {dst}: {pps:.0} pps, {:.1} Mbit/s from {sources} sources{}",
                    bps / 1e6,
                    port.map(|p| format!(
                        ", {} amplification from source port {p}",
                        amp_service(p)
                    ))
                    .unwrap_or_default()
                ),
                volume: Some(super::alert::Volume::of(&acc)),
                evidence: acc.take_evidence(),
            });
        }
        if self.windows.holding() > BASELINES_MAX {
            let newest = self
                .windows
                .learned_all()
                .map(|b| b.seen_ns)
                .max()
                .unwrap_or(0);
            let cutoff = newest.saturating_sub(BASELINE_IDLE_NS);
            self.windows
                .retain_learned(|b| b.seen_ns >= cutoff && b.windows > 1);
            if self.windows.holding() > BASELINES_MAX / 2 {
                // Still full of recent, established targets: keep the most recently seen
                // half, so this sweep does not run again on every closed window.
                let mut seen: Vec<u64> = self.windows.learned_all().map(|b| b.seen_ns).collect();
                seen.sort_unstable();
                let keep_from = seen[seen.len() - BASELINES_MAX / 2];
                self.windows.retain_learned(|b| b.seen_ns >= keep_from);
            }
        }
    }
}

impl Volumetric {
    /// The thresholds of `key`'s window starting at `w` with these rates, and what the
    /// window teaches its baseline: every window teaches it, an alerting one only up
    /// to the threshold, so a flood cannot raise its own bar faster than `alpha` allows.
    fn learn(&mut self, key: (IpAddr, u8), w: u64, pps: f64, bps: f64) -> (f64, f64) {
        let cfg = &self.cfg;
        self.windows
            .learn(&key, |base| learn(cfg, base, w, pps, bps))
    }
}

/// [`Volumetric::learn`] of one baseline.
fn learn(cfg: &VolumetricConfig, base: &mut Baseline, w: u64, pps: f64, bps: f64) -> (f64, f64) {
    let learned = base.windows >= 10;
    let thr_pps = if learned {
        cfg.floor_pps.max(base.pps * cfg.baseline_factor)
    } else {
        cfg.floor_pps
    };
    let thr_bps = if learned {
        cfg.floor_bps.max(base.bps * cfg.baseline_factor)
    } else {
        cfg.floor_bps
    };
    let (sample_pps, sample_bps) = (pps.min(thr_pps), bps.min(thr_bps));
    if base.windows == 0 {
        (base.pps, base.bps) = (sample_pps, sample_bps);
    } else {
        let a = cfg.baseline_alpha;
        base.pps += a * (sample_pps - base.pps);
        base.bps += a * (sample_bps - base.bps);
    }
    base.windows += 1;
    base.seen_ns = w;
    (thr_pps, thr_bps)
}

/// [`learn`] of a run of windows with the same totals. Below the floors (as cold
/// windows are) no sample is capped, so the run folds into the averages in closed form:
/// n steps of `b += α (x − b)` leave `x + (1 − α)ⁿ (b − x)`.
fn learn_run(cfg: &VolumetricConfig, base: &mut Baseline, run: ColdRun) {
    let secs = cfg.window_secs as f64;
    let len_ns = cfg.window_secs * NS;
    let (pps, bps) = (run.packets / secs, run.bytes * 8.0 / secs);
    if run.windows <= 1 || pps >= cfg.floor_pps || bps >= cfg.floor_bps {
        for i in 0..run.windows {
            learn(cfg, base, run.start + i * len_ns, pps, bps);
        }
        return;
    }
    let mut n = run.windows;
    if base.windows == 0 {
        learn(cfg, base, run.start, pps, bps);
        n -= 1;
    }
    let keep = (1.0 - cfg.baseline_alpha).powi(i32::try_from(n).unwrap_or(i32::MAX));
    base.pps = pps + keep * (base.pps - pps);
    base.bps = bps + keep * (base.bps - bps);
    base.windows += n;
    base.seen_ns = run.start + (run.windows - 1) * len_ns;
}

/// Reflection: bytes from amplification source ports (and UDP fragments, which carry
/// the rest of large answers) towards one target, from several reflectors.
pub(crate) struct Amplification {
    cfg: AmplificationConfig,
    evidence_max: usize,
    windows: Windows<IpAddr>,
    ports: BTreeMap<(u64, IpAddr), BTreeMap<u16, f64>>,
}

impl Amplification {
    pub fn new(cfg: AmplificationConfig, evidence_max: usize) -> Self {
        let windows = Windows::new(cfg.window_secs * NS);
        Amplification {
            cfg,
            evidence_max,
            windows,
            ports: BTreeMap::new(),
        }
    }
}

impl Rule for Amplification {
    fn observe(&mut self, r: &FlowRecord) {
        let fragment = r.sport == 0 && r.dport == 0;
        if r.proto != 17 || !(fragment || self.cfg.ports.contains(&r.sport)) {
            return;
        }
        self.windows.add(r, r.dst, self.evidence_max);
        let w = self.windows.start_of(r.first);
        *self
            .ports
            .entry((w, r.dst))
            .or_default()
            .entry(r.sport)
            .or_default() += r.bytes as f64;
    }

    fn due(&self) -> u64 {
        self.windows.due()
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        let secs = self.cfg.window_secs as f64;
        for (w, dst, mut acc) in self.windows.drain_closed(watermark) {
            let ports = self.ports.remove(&(w, dst)).unwrap_or_default();
            let Some((&port, _)) = ports
                .iter()
                .filter(|(p, _)| **p != 0)
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            else {
                continue; // fragments alone name no service
            };
            let bps = acc.bytes * 8.0 / secs;
            let mean = acc.bytes / acc.packets.max(1.0);
            let reflectors = acc.sources().n;
            if bps < self.cfg.min_bps
                || mean < self.cfg.min_mean_packet_bytes
                || (reflectors as u64) < self.cfg.min_reflectors
            {
                continue;
            }
            let service = amp_service(port);
            out.push(Detection {
                kind: AlertKind::Amplification,
                key: format!("{dst}/amp{port}"),
                window_start: w,
                severity: Severity::scaled(Severity::High, bps, self.cfg.min_bps),
                first_ns: acc.first_ns,
                last_ns: acc.last_ns,
                src: Some(Endpoint::Many(format!("{reflectors} reflectors"))),
                dst: Some(Endpoint::Addr(dst)),
                port: Some(port),
                line: self.windows.line(&acc),
                measured: bps,
                threshold: self.cfg.min_bps,
                unit: "bps",
                description: format!(
                    "{service} amplification towards {dst}: {:.2} Mbit/s of answers from source \
                     port {port}, mean {mean:.0} bytes/packet, {reflectors} reflectors",
                    bps / 1e6
                ),
                volume: Some(super::alert::Volume::of(&acc)),
                evidence: acc.take_evidence(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectConfig;

    #[test]
    fn a_run_of_equal_windows_teaches_what_its_windows_one_by_one_teach() {
        let cfg = DetectConfig::default().volumetric;
        let len = cfg.window_secs * NS;
        let secs = cfg.window_secs as f64;
        let t0 = 1_700_000_000 * NS;
        // (windows, packets, bytes per window): a fresh baseline, then runs of several
        // lengths, one of them a single window.
        let runs = [
            (7u64, 300.0, 90_000.0),
            (1, 10.0, 800.0),
            (250, 42.0, 5_000.0),
        ];
        let (mut by_run, mut by_window) = (Baseline::default(), Baseline::default());
        let mut start = t0;
        for (windows, packets, bytes) in runs {
            let run = ColdRun {
                start,
                windows,
                packets,
                bytes,
            };
            learn_run(&cfg, &mut by_run, run);
            for i in 0..windows {
                learn(
                    &cfg,
                    &mut by_window,
                    start + i * len,
                    packets / secs,
                    bytes * 8.0 / secs,
                );
            }
            start += windows * len;
            assert_eq!(by_run.windows, by_window.windows);
            assert_eq!(by_run.seen_ns, by_window.seen_ns);
            assert!((by_run.pps - by_window.pps).abs() <= 1e-9 * by_window.pps.abs().max(1.0));
            assert!((by_run.bps - by_window.bps).abs() <= 1e-9 * by_window.bps.abs().max(1.0));
        }
        // A run above the floor (never cold, but handled): capped window by window.
        let hot = ColdRun {
            start,
            windows: 20,
            packets: cfg.floor_pps * secs * 3.0,
            bytes: 0.0,
        };
        learn_run(&cfg, &mut by_run, hot);
        for i in 0..20 {
            learn(
                &cfg,
                &mut by_window,
                start + i * len,
                hot.packets / secs,
                0.0,
            );
        }
        assert_eq!(by_run.windows, by_window.windows);
        assert!((by_run.pps - by_window.pps).abs() <= 1e-9 * by_window.pps);
    }
}
