//! Findings: what tidegate reports — an anomaly the detectors saw ([`Alert`]) or a policy
//! rule a flow broke ([`ViolationState`]) — with one [`Severity`] scale for both. Sinks
//! take a [`Finding`], so a new kind of finding, or a new sink, is written once.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::detect::Alert;
use crate::policy::book::ViolationState;

/// How urgent a finding is: one scale for alerts and violations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth recording.
    Info = 0,
    /// Unusual, probably harmless.
    Low = 1,
    /// Needs a look.
    Medium = 2,
    /// Likely an attack or a leak; needs action.
    High = 3,
    /// An attack in progress at a damaging scale, or a regulatory breach.
    Critical = 4,
}

impl Severity {
    /// Every level, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// Stable lowercase name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The number stored in ClickHouse's `severity` columns (0 info … 4 critical).
    pub fn code(self) -> i8 {
        self as i8
    }

    /// Syslog severity (RFC 5424): critical → 2 (crit), high → 3 (err), medium → 4
    /// (warning), low → 5 (notice), info → 6 (info).
    pub fn syslog(self) -> u8 {
        match self {
            Severity::Critical => 2,
            Severity::High => 3,
            Severity::Medium => 4,
            Severity::Low => 5,
            Severity::Info => 6,
        }
    }

    /// CEF severity (0-10).
    pub fn cef(self) -> u8 {
        match self {
            Severity::Critical => 10,
            Severity::High => 8,
            Severity::Medium => 5,
            Severity::Low => 3,
            Severity::Info => 1,
        }
    }

    /// Severity from how far `measured` exceeds `threshold`: x1 → `base`, x4 one step
    /// higher, x32 two steps higher (capped at critical).
    pub fn scaled(base: Severity, measured: f64, threshold: f64) -> Severity {
        let ratio = if threshold > 0.0 {
            measured / threshold
        } else {
            1.0
        };
        let steps = if ratio >= 32.0 {
            2
        } else if ratio >= 4.0 {
            1
        } else {
            0
        };
        Severity::ALL[(base as usize + steps).min(Severity::ALL.len() - 1)]
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding, as every sink takes it.
#[derive(Clone, Copy, Debug)]
pub enum Finding<'a> {
    /// An anomaly (a state of it: alerts are updated while they last).
    Alert(&'a Alert),
    /// A policy violation (a state of it, with the flows merged so far).
    Violation(&'a ViolationState),
}

impl Finding<'_> {
    /// `"alert"` or `"violation"`.
    pub fn class(&self) -> &'static str {
        match self {
            Finding::Alert(_) => "alert",
            Finding::Violation(_) => "violation",
        }
    }

    /// The kind within its class (`syn_flood`, `deny_list`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::Alert(a) => a.kind.as_str(),
            Finding::Violation(v) => v.violation.kind.as_str(),
        }
    }

    /// Stable id; states of one finding share it.
    pub fn id(&self) -> &str {
        match self {
            Finding::Alert(a) => &a.id,
            Finding::Violation(v) => &v.id,
        }
    }

    /// Id of its first notification: `alert-<id>` for alerts, the violation's id (which
    /// starts with `violation-`) for violations. Both are safe file names.
    pub fn notification_id(&self) -> String {
        match self {
            Finding::Alert(a) => format!("alert-{}", a.id),
            Finding::Violation(v) => v.id.clone(),
        }
    }

    /// How urgent.
    pub fn severity(&self) -> Severity {
        match self {
            Finding::Alert(a) => a.severity,
            Finding::Violation(v) => v.violation.severity,
        }
    }

    /// Event time of the first evidence, Unix ns.
    pub fn first_ns(&self) -> u64 {
        match self {
            Finding::Alert(a) => a.first_ns,
            Finding::Violation(v) => v.violation.first_ns,
        }
    }

    /// Event time of the last evidence, Unix ns (a new state has a later one).
    pub fn last_ns(&self) -> u64 {
        match self {
            Finding::Alert(a) => a.last_ns,
            Finding::Violation(v) => v.violation.last_ns,
        }
    }

    /// The finding as JSON (the body of notifications): the alert, or the violation with
    /// its `id`.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Finding::Alert(a) => serde_json::to_value(a),
            Finding::Violation(v) => {
                let mut b = serde_json::to_value(&v.violation)?;
                if let Some(o) = b.as_object_mut() {
                    o.insert("id".into(), v.id.clone().into());
                }
                Ok(b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scale_with_stable_names_and_codes() {
        for (i, s) in Severity::ALL.iter().enumerate() {
            assert_eq!(s.code() as usize, i);
            assert_eq!(Severity::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
        assert_eq!(Severity::parse("CRITICAL"), None);
        assert!(Severity::Info < Severity::Critical);
    }

    #[test]
    fn scaled_steps_up_with_the_ratio() {
        assert_eq!(Severity::scaled(Severity::Low, 1.0, 1.0), Severity::Low);
        assert_eq!(Severity::scaled(Severity::Low, 4.0, 1.0), Severity::Medium);
        assert_eq!(Severity::scaled(Severity::Low, 32.0, 1.0), Severity::High);
        assert_eq!(
            Severity::scaled(Severity::High, 1e9, 1.0),
            Severity::Critical
        );
        assert_eq!(
            Severity::scaled(Severity::Medium, 5.0, 0.0),
            Severity::Medium
        );
    }
}
