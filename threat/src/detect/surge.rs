//! Rate surges towards inside hosts, judged against each host's own baseline: a few
//! hundred packets per second at a host that normally receives almost nothing is an
//! incident even though it is far below any absolute DDoS floor.
//!
//! Counted per (inside target, protocol) and window: packets of *requests* — flows whose
//! destination port is not above their source port (the target acts as the server), or
//! without ports (ICMP, fragments). Answers to the host's own connections (a download to
//! a workstation: source port 443, destination port ephemeral) are the host's choice,
//! not something done to it, and do not count. All sources of a window are one incident
//! (the alert names how many); repeats merge into one alert with first/last time and the
//! peak rate.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use tidegate_base::Cidr;
use tidegate_wire::record::FlowRecord;

use super::alert::{AlertKind, Detection, Endpoint};
use super::baseline::Robust;
use super::config::SurgeConfig;
use super::keyed::KeyedWindows;
use super::volumetric::proto_name;
use super::{NS, Rule};
use crate::Severity;

/// TCP surges need this many flows in the window (see `close`).
const TCP_MIN_FLOWS: u64 = 3;

pub(crate) struct Surge {
    cfg: SurgeConfig,
    inside: Vec<Cidr>,
    /// Above these rates `volumetric` reports instead (one incident, one alert).
    volumetric_floor: Option<(f64, f64)>,
    evidence_max: usize,
    len: u64,
    /// Each target's open windows beside its baseline.
    windows: KeyedWindows<(IpAddr, u8)>,
    /// Start of the first window seen: hosts never seen count as idle since then.
    origin: Option<u64>,
    /// Start of the window of the newest record's end.
    newest: u64,
}

/// Whether `r` is a request towards its destination (see the module comment).
fn is_request(r: &FlowRecord) -> bool {
    match r.proto {
        6 | 17 | 132 => r.sport == 0 || r.dport <= r.sport,
        _ => true,
    }
}

#[derive(Serialize, Deserialize)]
struct Saved {
    origin: Option<u64>,
    baselines: Vec<((IpAddr, u8), Robust)>,
}

impl Surge {
    pub fn new(
        cfg: SurgeConfig,
        inside: Vec<Cidr>,
        volumetric_floor: Option<(f64, f64)>,
        evidence_max: usize,
    ) -> Self {
        let len = cfg.window_secs * NS;
        let max = cfg.max_hosts;
        Surge {
            cfg,
            inside,
            volumetric_floor,
            evidence_max,
            len,
            windows: KeyedWindows::new(len, max),
            origin: None,
            newest: 0,
        }
    }

    fn min_spread(&self) -> f64 {
        self.cfg.min_pps / 8.0
    }
}

impl Rule for Surge {
    fn observe(&mut self, r: &FlowRecord) {
        if !is_request(r) || !self.inside.iter().any(|c| c.contains(r.dst)) {
            return;
        }
        self.newest = self.newest.max(r.last - r.last % self.len);
        // The first window seen, but no earlier than one window before the newest
        // record's: a record with a bad old timestamp (an exporter's clock, a replay)
        // must not give every host a long idle history, which would skip the warm-up.
        let first = r.first.max(self.newest.saturating_sub(self.len));
        let w = first - first % self.len;
        self.origin = Some(self.origin.map_or(w, |o| o.min(w)));
        let gate = self.cfg.min_pps * self.cfg.window_secs as f64 / 2.0;
        self.windows
            .add_spread_gated(r, (r.dst, r.proto), self.evidence_max, |acc| {
                acc.packets >= gate
            });
    }

    fn due(&self) -> u64 {
        self.windows.due()
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        let min_spread = self.min_spread();
        let Surge {
            cfg,
            volumetric_floor,
            len,
            windows,
            origin,
            ..
        } = self;
        let (secs, alpha, len) = (cfg.window_secs as f64, cfg.baseline_alpha, *len);
        windows.close(watermark, origin.unwrap_or(0), |w, &(dst, proto), mut acc, base, lines| {
            let pps = acc.packets / secs;
            let bps = acc.bytes * 8.0 / secs;
            base.catch_up(w, len, alpha, min_spread);
            let prior = *base;
            base.learn(w, len, pps, alpha, min_spread);
            if prior.windows < cfg.warmup_windows || pps < cfg.min_pps {
                return;
            }
            // One or two TCP connections are conversations the host accepted (a transfer
            // to a server), not something done to it.
            if proto == 6 && acc.flows < TCP_MIN_FLOWS {
                return;
            }
            if let Some((fpps, fbps)) = *volumetric_floor
                && (pps >= fpps || bps >= fbps)
            {
                return;
            }
            let threshold = prior.threshold(cfg.deviations, cfg.factor, cfg.min_pps, min_spread);
            if pps < threshold {
                return;
            }
            let deviation = prior.deviation(pps, min_spread);
            let sources = acc.sources();
            let pname = proto_name(proto);
            out.push(Detection {
                kind: AlertKind::Surge,
                key: format!("{dst}/{proto}"),
                window_start: w,
                // Medium at the threshold, high from 4× it; never critical below the
                // volumetric floors.
                severity: Severity::scaled(Severity::Medium, pps, threshold).min(Severity::High),
                first_ns: acc.first_ns,
                last_ns: acc.last_ns,
                src: Some(acc.source_endpoint()),
                dst: Some(Endpoint::Addr(dst)),
                port: super::main_dport(acc.evidence()),
                line: lines.name(acc.line).to_string(),
                measured: pps,
                threshold,
                unit: "pps",
                description: format!(
                    "{pname} requests towards inside host {dst}: {pps:.0} pps ({:.0} packets, {:.0} bytes \
                     in {secs}s) from {sources} source(s); its baseline is {:.1} ± {:.1} pps over {} \
                     windows, so this is {deviation:.0} spreads above it (alert at {threshold:.0} pps)",
                    acc.packets, acc.bytes, prior.level, prior.spread, prior.windows
                ),
                evidence: acc.take_evidence(),
                volume: Some(super::alert::Volume::of(&acc)),
            });
        });
    }

    fn name(&self) -> &'static str {
        "surge"
    }

    fn save(&self) -> Option<serde_json::Value> {
        serde_json::to_value(Saved {
            origin: self.origin,
            baselines: self.windows.snapshot(),
        })
        .ok()
    }

    fn restore(&mut self, v: serde_json::Value) -> Result<(), String> {
        let s: Saved = serde_json::from_value(v).map_err(|e| e.to_string())?;
        self.origin = s.origin;
        self.windows.restore(s.baselines);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectConfig;

    fn rec(src: [u8; 4], dst: [u8; 4], dport: u16, t: u64, packets: u64) -> FlowRecord {
        FlowRecord {
            src: IpAddr::from(src),
            dst: IpAddr::from(dst),
            sport: 40_000,
            dport,
            proto: 17,
            packets,
            bytes: packets * 120,
            first: t,
            last: t + 9 * NS,
            line: "l".into(),
            ..Default::default()
        }
    }

    fn rule() -> Surge {
        let cfg = DetectConfig::default();
        Surge::new(
            cfg.surge.clone(),
            cfg.inside_cidrs().unwrap(),
            Some((cfg.volumetric.floor_pps, cfg.volumetric.floor_bps)),
            5,
        )
    }

    #[test]
    fn a_small_burst_at_a_quiet_host_alerts_and_names_every_source() {
        let mut s = rule();
        let t0 = 1_700_000_000 * NS;
        let mut out = Vec::new();
        // Two hours of a little traffic to another host teach the detector's history.
        for i in 0..720u64 {
            s.observe(&rec([10, 0, 0, 5], [10, 0, 0, 9], 53, t0 + i * 10 * NS, 3));
        }
        s.close(t0 + 720 * 10 * NS, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // 150 pps from three workstations to 10.0.0.20, which received nothing so far.
        let t1 = t0 + 720 * 10 * NS;
        for k in 0..6u64 {
            for src in 1..=3u8 {
                s.observe(&rec(
                    [10, 0, 1, src],
                    [10, 0, 0, 20],
                    9000,
                    t1 + k * 10 * NS,
                    500,
                ));
            }
        }
        s.close(t1 + 7 * 10 * NS, &mut out);
        assert!(!out.is_empty());
        let d = &out[0];
        assert_eq!(d.kind, AlertKind::Surge);
        assert_eq!(d.dst, Some(Endpoint::Addr("10.0.0.20".parse().unwrap())));
        assert_eq!(d.src, Some(Endpoint::Many("3 sources".into())));
        assert!(d.severity >= Severity::Medium && d.severity <= Severity::High);
        assert!(d.description.contains("baseline"), "{}", d.description);
    }

    #[test]
    fn a_record_with_an_old_timestamp_does_not_give_new_hosts_a_history() {
        let mut s = rule();
        let t0 = 1_700_000_000 * NS;
        s.observe(&rec([10, 0, 1, 1], [10, 0, 0, 20], 9000, t0, 5));
        let origin = s.origin.unwrap();
        assert!(origin <= t0 && origin + 2 * s.len > t0, "{origin}");
        // From a clock set to 1970, and a flow that claims to have started then.
        s.observe(&rec([10, 0, 1, 2], [10, 0, 0, 21], 9000, 0, 5));
        let mut long = rec([10, 0, 1, 3], [10, 0, 0, 22], 9000, t0, 5);
        long.first = 0;
        s.observe(&long);
        // (Records out of order by up to a window still move it back.)
        assert_eq!(s.origin, Some(origin - s.len));
        // No alert for a host first seen now, before any warm-up.
        let mut out = Vec::new();
        for k in 0..6u64 {
            s.observe(&rec(
                [10, 0, 1, 4],
                [10, 0, 0, 30],
                9000,
                t0 + k * 10 * NS,
                5_000,
            ));
        }
        s.close(t0 + 8 * 10 * NS, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_host_that_always_receives_this_much_does_not_alert() {
        let mut s = rule();
        let t0 = 1_700_000_000 * NS;
        let mut out = Vec::new();
        for i in 0..1000u64 {
            let p = 1500 + (i % 7) * 40;
            s.observe(&rec(
                [10, 0, 1, 1],
                [10, 0, 0, 20],
                9000,
                t0 + i * 10 * NS,
                p,
            ));
        }
        s.close(t0 + 1001 * 10 * NS, &mut out);
        assert!(out.is_empty(), "{:?}", out.first().map(|d| &d.description));
    }

    #[test]
    fn answers_to_the_hosts_own_connections_do_not_count() {
        let mut s = rule();
        let t0 = 1_700_000_000 * NS;
        let mut out = Vec::new();
        for i in 0..720u64 {
            s.observe(&rec([10, 0, 0, 5], [10, 0, 0, 9], 53, t0 + i * 10 * NS, 3));
        }
        // A download: server port 443 answering the workstation's ephemeral port.
        let mut r = rec(
            [93, 184, 216, 34],
            [10, 0, 0, 20],
            50_000,
            t0 + 720 * 10 * NS,
            20_000,
        );
        r.sport = 443;
        r.proto = 6;
        s.observe(&r);
        s.close(t0 + 800 * 10 * NS, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn baselines_survive_save_and_restore() {
        let mut s = rule();
        let t0 = 1_700_000_000 * NS;
        let mut out = Vec::new();
        for i in 0..100u64 {
            s.observe(&rec(
                [10, 0, 1, 1],
                [10, 0, 0, 20],
                9000,
                t0 + i * 10 * NS,
                100,
            ));
        }
        s.close(t0 + 101 * 10 * NS, &mut out);
        let saved = s.save().unwrap();
        let mut t = rule();
        t.restore(saved).unwrap();
        let key = ("10.0.0.20".parse().unwrap(), 17);
        assert_eq!(t.windows.baseline(&key), s.windows.baseline(&key));
        assert_eq!(t.origin, s.origin);
    }
}
