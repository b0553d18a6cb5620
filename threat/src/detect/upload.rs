//! Exfiltration by asymmetry: an inside host that sends one outside destination far more
//! than it receives from it. Browsing and updates download (bytes in ≫ bytes out); an
//! upload of a few megabytes over HTTPS — where only sizes and the peer are visible —
//! inverts the ratio for that one destination, even when the host's total traffic looks
//! ordinary.
//!
//! Per (inside host, outside destination) the bytes out and in are summed over windows
//! of several lengths (minutes to hours, for bursts and for slow cumulative uploads),
//! each series hopping by half its length so that a transfer shorter than half a window
//! always falls whole into one window. A window reports when the bytes out reach the
//! length's minimum, are `min_ratio` × the bytes in, and stand out from the pair's own
//! baseline of bytes out per window in which it sent anything (sparse: idle windows are
//! not zeros here, so a host that backs up to the same place every night learns it). A destination the host had never exchanged anything with before (after
//! `warmup_secs` of history) raises the severity. Every scale reports under one key per
//! pair, so the alert book merges them into one alert. Only conversations the inside host
//! started count (the outside end holds the lower, service port): an inside server's
//! answers to outside clients are not uploads.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ahash::AHashMap as HashMap;
use serde::{Deserialize, Serialize};
use tidegate_base::Cidr;
use tidegate_wire::record::FlowRecord;

use super::alert::{AlertKind, Detection, Endpoint};
use super::baseline::{Robust, Table};
use super::config::UploadConfig;
use super::window::{forget_lowest_half, hopping_windows, keep_earliest, oldest_end};
use super::{NS, Rule};
use crate::Severity;

type Pair = (IpAddr, IpAddr);

/// Active windows a pair needs before its own baseline raises its threshold.
const MATURE_WINDOWS: u64 = 5;

/// Bytes each way of one pair in one window.
#[derive(Default)]
struct PairAcc {
    out: f64,
    inb: f64,
    out_packets: f64,
    out_flows: u64,
    first_ns: u64,
    last_ns: u64,
    line: Option<Arc<str>>,
    evidence: Vec<FlowRecord>,
}

/// One window length: its windows (by start) and the pairs' baselines of bytes out.
struct Scale {
    len: u64,
    min_out: f64,
    windows: BTreeMap<u64, HashMap<Pair, PairAcc>>,
    baselines: Table<Pair>,
}

/// When each pair was first and last seen (either direction), bounded.
#[derive(Default)]
struct Familiar {
    seen: HashMap<Pair, (u64, u64)>,
}

pub(crate) struct Upload {
    cfg: UploadConfig,
    inside: Vec<Cidr>,
    evidence_max: usize,
    scales: Vec<Scale>,
    familiar: Familiar,
    /// Event time of the first record seen (the start of the detector's history).
    origin: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    origin: Option<u64>,
    familiar: Vec<(Pair, (u64, u64))>,
    /// Per window length (seconds), the pairs' baselines.
    baselines: Vec<(u64, Vec<(Pair, Robust)>)>,
}

impl Upload {
    pub fn new(cfg: UploadConfig, inside: Vec<Cidr>, evidence_max: usize) -> Self {
        let scales = cfg
            .window_secs
            .iter()
            .zip(&cfg.min_out_bytes)
            .map(|(&secs, &min)| Scale {
                len: secs * NS,
                min_out: min as f64,
                windows: BTreeMap::new(),
                baselines: Table::new(cfg.max_pairs),
            })
            .collect();
        Upload {
            cfg,
            inside,
            evidence_max,
            scales,
            familiar: Familiar::default(),
            origin: None,
        }
    }

    fn is_inside(&self, ip: IpAddr) -> bool {
        self.inside.iter().any(|c| c.contains(ip))
    }

    fn touch(&mut self, pair: Pair, r: &FlowRecord) {
        let max = self.cfg.max_pairs;
        let f = &mut self.familiar.seen;
        if f.len() >= max && !f.contains_key(&pair) {
            // Forget the half seen least recently.
            forget_lowest_half(f, |v| v.1 as f64);
        }
        let e = f.entry(pair).or_insert((r.first, r.last));
        e.0 = e.0.min(r.first);
        e.1 = e.1.max(r.last);
    }
}

impl Rule for Upload {
    fn observe(&mut self, r: &FlowRecord) {
        let (pair, outbound) = match (self.is_inside(r.src), self.is_inside(r.dst)) {
            (true, false) => ((r.src, r.dst), true),
            (false, true) => ((r.dst, r.src), false),
            _ => return,
        };
        // Only conversations the inside host started (the outside end has the service
        // port): an inside server answering outside clients sends more than it receives
        // by its nature, and that is not an upload.
        let (inside_port, outside_port) = if outbound {
            (r.sport, r.dport)
        } else {
            (r.dport, r.sport)
        };
        if matches!(r.proto, 6 | 17 | 132) && outside_port > inside_port {
            return;
        }
        self.origin = Some(self.origin.map_or(r.first, |o| o.min(r.first)));
        self.touch(pair, r);
        let (max_pairs, evidence_max) = (self.cfg.max_pairs, self.evidence_max);
        for s in &mut self.scales {
            for w in hopping_windows(r.first, s.len) {
                let win = s.windows.entry(w).or_default();
                if win.len() >= max_pairs && !win.contains_key(&pair) {
                    if !outbound {
                        continue;
                    }
                    // Full: drop the half of the pairs that sent least.
                    forget_lowest_half(win, |a| a.out);
                }
                let acc = win.entry(pair).or_default();
                if acc.first_ns == 0 || r.first < acc.first_ns {
                    acc.first_ns = r.first;
                }
                acc.last_ns = acc.last_ns.max(r.last);
                if outbound {
                    acc.out += r.bytes as f64;
                    acc.out_packets += r.packets as f64;
                    acc.out_flows += 1;
                    if acc.line.is_none() {
                        acc.line = Some(Arc::from(r.line.as_str()));
                    }
                    if acc.out >= s.min_out / 4.0 {
                        keep_earliest(&mut acc.evidence, r, evidence_max);
                    }
                } else {
                    acc.inb += r.bytes as f64;
                }
            }
        }
    }

    fn due(&self) -> u64 {
        self.scales
            .iter()
            .map(|s| oldest_end(&s.windows, s.len))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        let cfg = &self.cfg;
        let origin = self.origin.unwrap_or(0);
        for s in &mut self.scales {
            let min_spread = s.min_out / 8.0;
            while let Some(e) = s.windows.first_entry() {
                if e.key().saturating_add(s.len) > watermark {
                    break;
                }
                let (w, pairs) = e.remove_entry();
                for ((host, dst), mut acc) in pairs {
                    if acc.out_flows == 0 {
                        continue;
                    }
                    // Baselines learn on the tumbling half of the series (every other
                    // window), so the overlap does not count a window twice.
                    let base = s.baselines.entry((host, dst), origin - origin % s.len);
                    let prior = *base;
                    if w % s.len == 0 {
                        base.learn_sparse(w, acc.out, cfg.baseline_alpha, min_spread);
                    }
                    // A pair's habit counts once it has several active windows: the first
                    // windows of a transfer are not yet a habit (an upload spread over
                    // two windows must not raise its own bar).
                    let threshold = if prior.windows >= MATURE_WINDOWS {
                        prior.threshold(cfg.deviations, cfg.factor, s.min_out, min_spread)
                    } else {
                        s.min_out
                    };
                    let ratio = acc.out / acc.inb.max(1.0);
                    if acc.out < threshold || ratio < cfg.min_ratio {
                        continue;
                    }
                    let first_seen = self.familiar.seen.get(&(host, dst)).map_or(w, |f| f.0);
                    let warmed = w.saturating_sub(origin) >= cfg.warmup_secs * NS;
                    let new_dst = warmed && first_seen >= w;
                    let mut severity = Severity::scaled(Severity::Medium, acc.out, threshold);
                    if new_dst {
                        severity =
                            Severity::ALL[(severity as usize + 1).min(Severity::ALL.len() - 1)];
                    }
                    let secs = s.len / NS;
                    out.push(Detection {
                        kind: AlertKind::Upload,
                        key: format!("{host}>{dst}"),
                        window_start: w,
                        severity,
                        first_ns: acc.first_ns,
                        last_ns: acc.last_ns,
                        src: Some(Endpoint::Addr(host)),
                        dst: Some(Endpoint::Addr(dst)),
                        port: super::main_dport(&acc.evidence),
                        line: acc.line.as_deref().unwrap_or("").to_string(),
                        measured: acc.out,
                        threshold,
                        unit: "bytes",
                        description: format!(
                            "inside host {host} sent {:.0} bytes to {dst} and received {:.0} from it \
                             within {secs}s ({} flows out; {ratio:.1}× more out than in); this pair's \
                             baseline is {:.0} ± {:.0} bytes out per {secs}s over {} windows (alert at \
                             {threshold:.0}){}",
                            acc.out,
                            acc.inb,
                            acc.out_flows,
                            prior.level,
                            prior.spread,
                            prior.windows,
                            if new_dst {
                                "; the host had never exchanged traffic with this destination before"
                            } else {
                                ""
                            }
                        ),
                        evidence: std::mem::take(&mut acc.evidence),
                        volume: None,
                    });
                }
            }
        }
    }

    fn name(&self) -> &'static str {
        "upload"
    }

    fn save(&self) -> Option<serde_json::Value> {
        serde_json::to_value(Saved {
            origin: self.origin,
            familiar: {
                let mut f: Vec<(Pair, (u64, u64))> =
                    self.familiar.seen.iter().map(|(k, v)| (*k, *v)).collect();
                f.sort_unstable();
                f
            },
            baselines: self
                .scales
                .iter()
                .map(|s| (s.len / NS, s.baselines.snapshot()))
                .collect(),
        })
        .ok()
    }

    fn restore(&mut self, v: serde_json::Value) -> Result<(), String> {
        let saved: Saved = serde_json::from_value(v).map_err(|e| e.to_string())?;
        self.origin = saved.origin;
        self.familiar.seen = saved
            .familiar
            .into_iter()
            .take(self.cfg.max_pairs)
            .collect();
        for (secs, b) in saved.baselines {
            if let Some(s) = self.scales.iter_mut().find(|s| s.len / NS == secs) {
                s.baselines.restore(b);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectConfig;

    const T0: u64 = 1_700_000_000 * NS;

    fn flow(src: &str, dst: &str, sport: u16, dport: u16, t: u64, bytes: u64) -> FlowRecord {
        FlowRecord {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            proto: 6,
            packets: bytes / 1000 + 1,
            bytes,
            first: t,
            last: t + 20 * NS,
            line: "l".into(),
            ..Default::default()
        }
    }

    /// A TCP exchange: `up` bytes from the host, `down` bytes back.
    fn exchange(host: &str, peer: &str, t: u64, up: u64, down: u64) -> [FlowRecord; 2] {
        [
            flow(host, peer, 50_000, 443, t, up),
            flow(peer, host, 443, 50_000, t, down),
        ]
    }

    fn rule() -> Upload {
        let cfg = DetectConfig::default();
        Upload::new(cfg.upload.clone(), cfg.inside_cidrs().unwrap(), 5)
    }

    fn run(u: &mut Upload, recs: &[FlowRecord]) -> Vec<Detection> {
        let mut out = Vec::new();
        for r in recs {
            u.observe(r);
        }
        u.close(u64::MAX, &mut out);
        out
    }

    /// Two hours of browsing: many destinations, downloads far larger than uploads.
    fn browsing(host: &str) -> Vec<FlowRecord> {
        (0..720u64)
            .flat_map(|i| {
                let peer = format!("198.51.100.{}", i % 50);
                exchange(host, &peer, T0 + i * 10 * NS, 2_000 + i % 13 * 100, 60_000)
            })
            .collect()
    }

    #[test]
    fn a_burst_upload_to_a_new_destination_alerts_and_browsing_does_not() {
        let mut u = rule();
        let mut recs = browsing("10.1.1.7");
        assert!(run(&mut u, &recs).is_empty());
        // 3 MB up, 40 kB down, to a host never contacted, after the 2 hours.
        recs = exchange("10.1.1.7", "203.0.113.9", T0 + 7300 * NS, 3_000_000, 40_000).to_vec();
        let out = run(&mut u, &recs);
        assert!(!out.is_empty());
        let d = &out[0];
        assert_eq!(d.kind, AlertKind::Upload);
        assert_eq!(d.src, Some(Endpoint::Addr("10.1.1.7".parse().unwrap())));
        assert_eq!(d.dst, Some(Endpoint::Addr("203.0.113.9".parse().unwrap())));
        assert_eq!(d.port, Some(443));
        assert!(
            d.description.contains("never exchanged"),
            "{}",
            d.description
        );
        assert!(d.severity >= Severity::High, "{:?}", d.severity);
    }

    #[test]
    fn a_slow_upload_spread_over_hours_is_found_by_the_long_window() {
        let mut u = rule();
        let mut recs = browsing("10.1.1.7");
        // 400 kB every 10 minutes for 6 hours, answers of 8 kB: never 2 MB in 10 minutes.
        for i in 0..36u64 {
            recs.extend(exchange(
                "10.1.1.7",
                "203.0.113.9",
                T0 + i * 600 * NS,
                400_000,
                8_000,
            ));
        }
        let out = run(&mut u, &recs);
        let found: Vec<_> = out
            .iter()
            .filter(|d| d.key == "10.1.1.7>203.0.113.9")
            .collect();
        assert!(
            !found.is_empty(),
            "{:?}",
            out.iter().map(|d| &d.description).collect::<Vec<_>>()
        );
        assert!(found.iter().any(|d| d.measured >= 6_000_000.0));
    }

    #[test]
    fn an_inside_server_answering_outside_clients_is_not_an_upload() {
        let mut u = rule();
        // 10.1.1.80:443 serves 50 MB to an outside client that sent 20 kB of requests.
        let recs = [
            flow("198.51.100.9", "10.1.1.80", 51_000, 443, T0, 20_000),
            flow("10.1.1.80", "198.51.100.9", 443, 51_000, T0, 50_000_000),
        ];
        assert!(run(&mut u, &recs).is_empty());
    }

    #[test]
    fn a_big_download_with_a_big_request_is_not_an_upload() {
        let mut u = rule();
        let recs = exchange("10.1.1.7", "203.0.113.9", T0, 3_000_000, 900_000_000);
        assert!(run(&mut u, &recs).is_empty());
    }

    #[test]
    fn a_pair_that_uploads_this_much_every_night_learns_it() {
        let mut u = rule();
        let mut alerts_late = 0;
        for day in 0..40u64 {
            let recs = exchange(
                "10.1.1.7",
                "203.0.113.50",
                T0 + day * 86_400 * NS,
                5_000_000,
                50_000,
            );
            let out = run(&mut u, &recs);
            if day >= 30 {
                alerts_late += out.len();
            }
        }
        assert_eq!(
            alerts_late, 0,
            "a routine nightly upload still alerts after 30 days"
        );
    }

    #[test]
    fn state_round_trips() {
        let mut u = rule();
        run(&mut u, &browsing("10.1.1.7"));
        let saved = u.save().unwrap();
        let mut v = rule();
        v.restore(saved).unwrap();
        assert_eq!(v.origin, u.origin);
        assert_eq!(v.familiar.seen.len(), u.familiar.seen.len());
        let k = ("10.1.1.7".parse().unwrap(), "198.51.100.3".parse().unwrap());
        assert_eq!(v.scales[0].baselines.get(&k), u.scales[0].baselines.get(&k));
    }
}
