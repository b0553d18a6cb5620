//! Violation records: what rule was broken, by which flows, on which line.

use std::net::IpAddr;

use serde::Serialize;

pub use crate::Severity;
use tidegate_wire::Verdict;
use tidegate_wire::record::{FlowRecord, rfc3339_ns};

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

impl ViolationKind {
    /// Stable snake_case name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::Deny => "deny",
            ViolationKind::Isolation => "isolation",
            ViolationKind::DenyList => "deny_list",
            ViolationKind::NotAllowListed => "not_allow_listed",
            ViolationKind::ForbiddenPort => "forbidden_port",
            ViolationKind::ByteCap => "byte_cap",
        }
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
    /// What the line did to the offending traffic: `dropped` (enforce mode), `would_drop`
    /// (monitor mode), or `null` when the line did not act on it (the rule only alerts,
    /// or the flow was not judged at the line). The strongest over the merged flows.
    pub action: Option<Verdict>,
}

impl Violation {
    /// Stable id: `violation-` and a hash of the rule, kind, line, addresses and first
    /// event time (a replay gives the same id; it is also its first notification's id).
    pub fn id(&self) -> String {
        let key = format!(
            "{}\0{}\0{}\0{}\0{}\0{}",
            self.rule_id,
            self.kind.as_str(),
            self.line,
            self.src,
            self.dst,
            self.first_ns
        );
        let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("violation-{hex}")
    }
}
