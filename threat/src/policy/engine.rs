//! The stateful part of policy evaluation: byte caps per destination per event-time window.

use std::collections::HashMap;
use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::eval::{Endpoints, violation};
use super::reload::PolicyHandle;
use super::rule::{RuleBody, in_set};
use super::violation::{MAX_EVIDENCE, Violation, ViolationKind};

/// Records between two sweeps of expired windows.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Default)]
struct CapWindow {
    bytes: u64,
    fired: bool,
    evidence: Vec<FlowRecord>,
}

/// Evaluates records against the current policy of a [`PolicyHandle`], including byte caps.
///
/// Byte caps use event time only: a record counts in the tumbling window (aligned to the
/// Unix epoch) holding its `first` timestamp, so replaying a capture gives the same
/// violations as seeing it live. The first record that takes a destination over the cap in
/// a window raises exactly one violation whose evidence is the window's flows so far
/// (at most [`MAX_EVIDENCE`]). Windows are forgotten once the newest `last` timestamp seen
/// is more than one window past their end (records later than that start a fresh count).
#[derive(Debug)]
pub struct PolicyEngine {
    handle: PolicyHandle,
    windows: HashMap<(String, IpAddr, u64), CapWindow>,
    watermark_ns: u64,
    seen: u64,
}

impl PolicyEngine {
    /// An engine following `handle` (a reload takes effect at the next record).
    pub fn new(handle: PolicyHandle) -> Self {
        PolicyEngine {
            handle,
            windows: HashMap::new(),
            watermark_ns: 0,
            seen: 0,
        }
    }

    /// Every violation of `r`: the policy's stateless ones, then byte caps.
    pub fn process(&mut self, r: &FlowRecord, ctx: &Endpoints) -> Vec<Violation> {
        let policy = self.handle.current();
        let mut out = policy.evaluate(r, ctx);
        self.watermark_ns = self.watermark_ns.max(r.last);
        let mut zones = None;
        for rule in &policy.rules {
            let RuleBody::ByteCap {
                from,
                to,
                max_bytes,
                window_ns,
            } = &rule.body
            else {
                continue;
            };
            let (zs, zd) = *zones.get_or_insert_with(|| {
                (
                    policy.zones.classify(r.src, &ctx.src),
                    policy.zones.classify(r.dst, &ctx.dst),
                )
            });
            if !in_set(from, zs) || !in_set(to, zd) {
                continue;
            }
            let start = r.first - r.first % window_ns;
            let w = self
                .windows
                .entry((rule.id.clone(), r.dst, start))
                .or_default();
            if w.fired {
                continue;
            }
            w.bytes = w.bytes.saturating_add(r.bytes);
            if w.evidence.len() < MAX_EVIDENCE {
                w.evidence.push(r.clone());
            } else if let Some(last) = w.evidence.last_mut() {
                *last = r.clone();
            }
            if w.bytes > *max_bytes {
                w.fired = true;
                let mut v = violation(
                    rule,
                    ViolationKind::ByteCap,
                    r,
                    format!(
                        "{} bytes to {} in the {} s window starting {} (cap {max_bytes})",
                        w.bytes,
                        r.dst,
                        window_ns / 1_000_000_000,
                        tidegate_wire::record::rfc3339_ns::format(start)
                    ),
                );
                let evidence = std::mem::take(&mut w.evidence);
                v.first_ns = evidence.iter().map(|e| e.first).min().unwrap_or(r.first);
                v.last_ns = evidence.iter().map(|e| e.last).max().unwrap_or(r.last);
                v.evidence = evidence;
                out.push(v);
            }
        }
        self.seen += 1;
        if self.seen.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        out
    }

    /// Byte-cap windows currently held.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// Forgets windows that ended more than one window before the watermark, and windows
    /// of rules that are no longer in the policy.
    pub fn sweep(&mut self) {
        let policy = self.handle.current();
        let caps: HashMap<&str, u64> = policy
            .rules
            .iter()
            .filter_map(|r| match r.body {
                RuleBody::ByteCap { window_ns, .. } => Some((r.id.as_str(), window_ns)),
                _ => None,
            })
            .collect();
        let wm = self.watermark_ns;
        self.windows.retain(|(id, _, start), _| {
            caps.get(id.as_str())
                .is_some_and(|w| start.saturating_add(w.saturating_mul(2)) > wm)
        });
    }
}
