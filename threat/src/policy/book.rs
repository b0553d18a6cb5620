//! Repeats of one policy violation (same rule, kind, line and pair of addresses, in either
//! direction) close in event time are merged into one open violation instead of raising a
//! new one each: a breach is a conversation, and its requests and answers are one
//! violation (keeping the direction of the flow that opened it).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::policy::{Violation, ViolationKind, violation::MAX_EVIDENCE};

/// A violation's current state.
#[derive(Clone, Debug, PartialEq)]
pub struct ViolationState {
    /// Stable id (the notification id of its first occurrence).
    pub id: String,
    /// True when this occurrence opened the violation.
    pub new: bool,
    /// The violation: first/last span every merged flow, evidence is the earliest flows.
    pub violation: Violation,
    /// Flows merged so far.
    pub flows: u64,
    /// Their packets.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl ViolationState {
    /// The state a violation opens with: its own evidence, its own id.
    pub fn opening(violation: Violation) -> Self {
        ViolationState {
            id: violation.id(),
            new: true,
            flows: violation.evidence.len().max(1) as u64,
            packets: violation.evidence.iter().map(|r| r.packets).sum(),
            bytes: violation.evidence.iter().map(|r| r.bytes).sum(),
            violation,
        }
    }
}

type Key = (String, ViolationKind, String, IpAddr, IpAddr);

/// Open violations by key.
#[derive(Debug)]
pub struct ViolationBook {
    gap_ns: u64,
    open: HashMap<Key, ViolationState>,
}

impl ViolationBook {
    /// Merges repeats whose first packet is within `gap_ns` of the open violation's last.
    pub fn new(gap_ns: u64) -> Self {
        ViolationBook {
            gap_ns,
            open: HashMap::new(),
        }
    }

    /// Adds one violation; returns the state to publish.
    pub fn merge(&mut self, v: Violation) -> ViolationState {
        // Either direction of the conversation: the pair in address order.
        let pair = if v.src <= v.dst {
            (v.src, v.dst)
        } else {
            (v.dst, v.src)
        };
        let key = (v.rule_id.clone(), v.kind, v.line.clone(), pair.0, pair.1);
        let flows = v.evidence.len().max(1) as u64;
        let packets = v.evidence.iter().map(|r| r.packets).sum::<u64>();
        let bytes = v.evidence.iter().map(|r| r.bytes).sum::<u64>();
        if let Some(open) = self.open.get_mut(&key)
            && v.first_ns <= open.violation.last_ns.saturating_add(self.gap_ns)
        {
            let o = &mut open.violation;
            o.first_ns = o.first_ns.min(v.first_ns);
            o.last_ns = o.last_ns.max(v.last_ns);
            o.action = o.action.max(v.action);
            for r in v.evidence {
                if o.evidence.len() < MAX_EVIDENCE {
                    o.evidence.push(r);
                }
            }
            open.flows += flows;
            open.packets += packets;
            open.bytes += bytes;
            open.new = false;
            return open.clone();
        }
        let state = ViolationState::opening(v);
        self.open.insert(key, state.clone());
        state
    }

    /// Forgets violations whose last flow is more than the gap before `watermark`.
    pub fn expire(&mut self, watermark: u64) {
        let gap = self.gap_ns;
        self.open
            .retain(|_, s| s.violation.last_ns.saturating_add(gap) >= watermark);
    }

    /// Violations currently open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;
    use tidegate_wire::record::FlowRecord;

    fn v(first: u64, dst: &str) -> Violation {
        let r = FlowRecord {
            src: "10.0.0.1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 1000,
            dport: 443,
            proto: 6,
            packets: 2,
            bytes: 100,
            first,
            last: first + 10,
            tcp_flags: 0x12,
            line: "l".into(),
            ifindex: 1,
            direction: tidegate_common::Direction::Ingress,
            ..Default::default()
        };
        Violation {
            rule_id: "r".into(),
            rule_name: "n".into(),
            rule_location: "p.toml:1".into(),
            rule_text: "[[rule]]".into(),
            kind: ViolationKind::Deny,
            severity: Severity::High,
            line: "l".into(),
            src: "10.0.0.1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            first_ns: first,
            last_ns: first + 10,
            evidence: vec![r],
            description: String::new(),
            action: None,
        }
    }

    #[test]
    fn repeats_within_the_gap_merge_and_later_ones_open_anew() {
        let mut b = ViolationBook::new(100);
        let a = b.merge(v(0, "192.0.2.1"));
        let c = b.merge(v(50, "192.0.2.1"));
        assert!(a.new && !c.new);
        assert_eq!(a.id, c.id);
        assert_eq!((c.flows, c.packets, c.bytes), (2, 4, 200));
        assert_eq!(c.violation.last_ns, 60);
        assert_eq!(c.violation.evidence.len(), 2);
        let other = b.merge(v(50, "192.0.2.2"));
        assert!(other.new);
        let late = b.merge(v(1_000, "192.0.2.1"));
        assert!(late.new);
        assert_ne!(late.id, a.id);
        b.expire(2_000);
        assert!(b.is_empty());
    }

    #[test]
    fn both_directions_of_one_conversation_are_one_violation() {
        let mut b = ViolationBook::new(100);
        let out = b.merge(v(0, "192.0.2.1"));
        // The answer: 192.0.2.1 -> 10.0.0.1.
        let mut back = v(20, "192.0.2.1");
        std::mem::swap(&mut back.src, &mut back.dst);
        let merged = b.merge(back);
        assert!(!merged.new);
        assert_eq!(merged.id, out.id);
        assert_eq!(merged.flows, 2);
        // The violation keeps the direction of the flow that opened it.
        assert_eq!(merged.violation.src, out.violation.src);
        assert_eq!(b.len(), 1);
    }
}
