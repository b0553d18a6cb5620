//! Violation records: what rule was broken, by which flows, on which line.

use std::net::IpAddr;

use serde::Serialize;
use tidegate_common::record::{FlowRecord, rfc3339_ns};

/// Most flows kept as evidence in one violation.
pub const MAX_EVIDENCE: usize = 32;

/// How a rule was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A `deny` rule was the first allow/deny rule to match the flow.
    Deny,
    /// Traffic between an isolated zone and a zone outside its peers.
    Isolation,
    /// The destination is on a deny-list.
    DenyList,
    /// The destination is not on the allow-list.
    NotAllowListed,
    /// Protocol/port not allowed on the line.
    ForbiddenPort,
    /// Bytes to one destination went over the cap within one window.
    ByteCap,
}

/// How serious a violation is (per rule, with a default per rule type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Low,
    /// Worth a look.
    Medium,
    /// Needs action.
    High,
    /// Regulatory breach.
    Critical,
}

impl Severity {
    /// Parses `low`, `medium`, `high` or `critical`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// One policy violation with its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Rule id from the policy file.
    pub rule_id: String,
    /// Rule's human name.
    pub rule_name: String,
    /// Where the rule is defined, `file:line`.
    pub rule_location: String,
    /// The rule as written in the policy file.
    pub rule_text: String,
    /// How the rule was broken.
    pub kind: ViolationKind,
    /// Severity of the rule.
    pub severity: Severity,
    /// Line (interface) of the evidence flows.
    pub line: String,
    /// Source address of the (first) offending flow.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Event time of the first evidence packet (RFC 3339 ns in JSON).
    #[serde(rename = "first", serialize_with = "rfc3339_ns::serialize")]
    pub first_ns: u64,
    /// Event time of the last evidence packet (RFC 3339 ns in JSON).
    #[serde(rename = "last", serialize_with = "rfc3339_ns::serialize")]
    pub last_ns: u64,
    /// The offending flows (at most [`MAX_EVIDENCE`]).
    pub evidence: Vec<FlowRecord>,
    /// Human explanation.
    pub description: String,
}
