//! Inserts of alert and policy-violation states into `alerts` and `policy_violations`
//! (see `0004_alerts.sql`): every state is a row, `ReplacingMergeTree(version)` keeps the
//! newest per id.

use clickhouse::Row;
use serde::Serialize;

use super::{ClickHouseSink, SinkError};

/// One state of an alert, as stored in `alerts`.
#[derive(Clone, Debug, PartialEq, Row, Serialize)]
pub struct AlertRow {
    /// Deterministic alert id.
    pub id: String,
    /// Larger is newer (the collector uses the alert's last event time).
    pub version: u64,
    /// Alert kind (snake_case).
    pub kind: String,
    /// `Enum8('info' = 0, 'low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4)`.
    pub severity: i8,
    /// First evidence, ns since the epoch.
    pub first: i64,
    /// Last evidence, ns since the epoch.
    pub last: i64,
    /// Source address or description.
    pub src: String,
    /// Target address or description.
    pub dst: String,
    /// Port concerned.
    pub port: Option<u16>,
    /// Line of the evidence.
    pub line: String,
    /// Detector key.
    pub key: String,
    /// Country of `src` when it is one address ('' otherwise).
    pub src_country: String,
    /// Country of `dst`.
    pub dst_country: String,
    /// ASN of `src` (0 unknown).
    pub src_asn: u32,
    /// ASN of `dst`.
    pub dst_asn: u32,
    /// Measured value.
    pub measured: f64,
    /// Threshold it crossed.
    pub threshold: f64,
    /// Unit of both.
    pub unit: String,
    /// Explanation.
    pub description: String,
    /// JSON array of evidence flow records.
    pub evidence: String,
    /// Packets of the incident (`0009_alerts_volume.sql`), when the detector totals them.
    pub packets: Option<u64>,
    /// Its bytes.
    pub bytes: Option<u64>,
}

/// One state of a policy violation, as stored in `policy_violations`.
#[derive(Clone, Debug, PartialEq, Row, Serialize)]
pub struct ViolationRow {
    /// Deterministic violation id.
    pub id: String,
    /// Larger is newer.
    pub version: u64,
    /// Rule id.
    pub rule_id: String,
    /// Rule name.
    pub rule_name: String,
    /// `file:line` of the rule.
    pub rule_location: String,
    /// The rule as written in the policy file.
    pub rule_text: String,
    /// How the rule was broken (snake_case).
    pub kind: String,
    /// `Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4)`.
    pub severity: i8,
    /// Line of the evidence.
    pub line: String,
    /// Source address (text).
    pub src: String,
    /// Destination address (text).
    pub dst: String,
    /// Zone of the source.
    pub src_zone: String,
    /// Zone of the destination.
    pub dst_zone: String,
    /// Country of the source.
    pub src_country: String,
    /// Country of the destination.
    pub dst_country: String,
    /// ASN of the source.
    pub src_asn: u32,
    /// ASN of the destination.
    pub dst_asn: u32,
    /// First evidence, ns.
    pub first: i64,
    /// Last evidence, ns.
    pub last: i64,
    /// Flows merged into the violation.
    pub flows: u64,
    /// Their packets.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Explanation.
    pub description: String,
    /// JSON array of evidence flow records.
    pub evidence: String,
    /// What the line did (`dropped`, `would_drop`, or empty): `0006_flows_enforcement.sql`.
    pub action: String,
}

/// A stable token for a set of (id, version) states.
fn token(prefix: &str, states: impl Iterator<Item = (String, u64)>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, v) in states {
        for b in id.bytes().chain(v.to_be_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{prefix}:{h:016x}")
}

impl ClickHouseSink {
    /// Stores alert states. Storing the same states again is harmless (the table keeps
    /// the newest version per id).
    pub async fn insert_alerts(&self, rows: &[AlertRow]) -> Result<(), SinkError> {
        if rows.is_empty() {
            return Ok(());
        }
        let t = token("alerts", rows.iter().map(|r| (r.id.clone(), r.version)));
        self.insert_rows::<AlertRow>("alerts", &t, rows).await
    }

    /// Stores violation states (idempotent like [`insert_alerts`](Self::insert_alerts)).
    pub async fn insert_violations(&self, rows: &[ViolationRow]) -> Result<(), SinkError> {
        if rows.is_empty() {
            return Ok(());
        }
        let t = token("violations", rows.iter().map(|r| (r.id.clone(), r.version)));
        self.insert_rows::<ViolationRow>("policy_violations", &t, rows)
            .await
    }
}
