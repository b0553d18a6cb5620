//! The enrichment of one flow record as stored with it: country and ASN of both ends
//! (from the [`Enricher`]) and their zones (from the current policy).

use std::sync::Arc;

use tidegate_wire::record::FlowRecord;

use super::Enricher;
use crate::policy::{Endpoints, PolicyHandle};

/// Enrichment of one flow record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowContext {
    /// Country and ASN of both ends (fields nothing knows are `None`).
    pub ends: Endpoints,
    /// Zone of the source under the current policy (`""` without a policy).
    pub src_zone: Arc<str>,
    /// Zone of the destination.
    pub dst_zone: Arc<str>,
}

impl FlowContext {
    /// The context of the same flow seen the other way round (source and destination
    /// swapped): what describes a finding whose source is this flow's destination.
    pub fn reversed(&self) -> FlowContext {
        FlowContext {
            ends: crate::policy::Endpoints {
                src: self.ends.dst.clone(),
                dst: self.ends.src.clone(),
            },
            src_zone: self.dst_zone.clone(),
            dst_zone: self.src_zone.clone(),
        }
    }
}

/// Computes [`FlowContext`]s: enrichment sources plus the policy's zones, either optional.
#[derive(Clone, Debug, Default)]
pub struct Contextualizer {
    enricher: Option<Arc<Enricher>>,
    policy: Option<PolicyHandle>,
}

impl Contextualizer {
    /// From the loaded sources; `None` for what is not configured.
    pub fn new(enricher: Option<Arc<Enricher>>, policy: Option<PolicyHandle>) -> Self {
        Contextualizer { enricher, policy }
    }

    /// Whether anything is configured (otherwise every context is empty).
    pub fn is_active(&self) -> bool {
        self.enricher.is_some() || self.policy.is_some()
    }

    /// The context of every record, in order (empty when nothing is configured).
    pub fn contexts(&self, records: &[FlowRecord]) -> Vec<FlowContext> {
        if !self.is_active() {
            return Vec::new();
        }
        let policy = self.policy.as_ref().map(PolicyHandle::current);
        // Zone names repeat: share one allocation per zone.
        let names: Vec<Arc<str>> = policy
            .as_ref()
            .map(|p| {
                (0..p.zones.len())
                    .map(|i| Arc::from(p.zones.name(crate::policy::ZoneId(i))))
                    .collect()
            })
            .unwrap_or_default();
        records
            .iter()
            .map(|r| {
                let ends = self
                    .enricher
                    .as_ref()
                    .map(|e| e.endpoints(r))
                    .unwrap_or_default();
                let (src_zone, dst_zone) = match &policy {
                    Some(p) => (
                        names[p.zones.classify(r.src, &ends.src).0].clone(),
                        names[p.zones.classify(r.dst, &ends.dst).0].clone(),
                    ),
                    None => (Arc::from(""), Arc::from("")),
                };
                FlowContext {
                    ends,
                    src_zone,
                    dst_zone,
                }
            })
            .collect()
    }
}
