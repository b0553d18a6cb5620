//! The compiled enforcement policy the collector pushes to probes ([`EnforcePlan`]),
//! and the probe's answer ([`EnforceStatus`]).
//!
//! A plan is self-contained: prefixes (country/ASN rules already resolved against the
//! collector's enrichment databases), rule bits, line modes and port tables, in the
//! layout of `tidegate_common::enforce`. The probe only maps line names to its
//! interfaces and writes the tables into the idle kernel generation.
//!
//! Encoded (inside a `Policy` frame): `format u8 = 1 | body_len u32 | zstd(body)`, body:
//!
//! ```text
//! version u64 | default_mode u8 | any_src u64 | any_dst u64 | default_src u64
//! | default_dst u64 | ordered u64 | drop_ordered u64 | drop_unordered u64
//! | rules u32 × (index u8, id str, action u8)
//! | lines u32 × (name str, mode u8 (0 monitor, 1 enforce, 2 = the default), port_mask u64)
//! | prefixes u32 × (addr [16], len u8 (0-128, IPv4-mapped), src_mask u64, dst_mask u64, flags u32)
//! | ports u32 × (key u32, mask u64)
//! ```

use super::{
    WireError,
    codec::{Put, Reader, decompress_stream},
};

/// Encoding format of [`EnforcePlan`].
const PLAN_FORMAT: u8 = 1;
/// Largest decompressed plan accepted (64 MiB: about 1.5 million prefixes).
pub const MAX_PLAN_BODY: usize = 64 << 20;
const PREFIX_BYTES: usize = 16 + 1 + 8 + 8 + 4;

/// A line's enforcement mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Count what would be dropped; pass every packet.
    #[default]
    Monitor,
    /// Drop what a drop rule matches.
    Enforce,
}

impl Mode {
    /// The kernel's word for the mode (`tidegate_common::enforce::MODE_*`).
    pub fn word(self) -> u32 {
        match self {
            Mode::Monitor => tidegate_common::enforce::MODE_MONITOR,
            Mode::Enforce => tidegate_common::enforce::MODE_ENFORCE,
        }
    }

    /// `monitor` / `enforce`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }
}

/// One rule bit's meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRule {
    /// Rule index: 0..64 address rules, 64..128 port rules.
    pub index: u8,
    /// The policy's rule id (several bits may share one id).
    pub id: String,
    /// Whether a match drops (else the bit only shadows later ordered rules).
    pub drops: bool,
}

/// A line's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanLine {
    /// Line (interface) name.
    pub name: String,
    /// Its mode; `None` = the plan's default.
    pub mode: Option<Mode>,
    /// Port rules that apply on it.
    pub port_mask: u64,
}

/// A prefix and its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanPrefix {
    /// Address, IPv4-mapped for IPv4 (host bits zero).
    pub addr: [u8; 16],
    /// Prefix length in the 128-bit space (IPv4 /n is 96 + n).
    pub len: u8,
    /// Rules matched as a source.
    pub src_mask: u64,
    /// Rules matched as a destination.
    pub dst_mask: u64,
    /// `tidegate_common::enforce::CLASS_*` bits.
    pub flags: u32,
}

/// A compiled enforcement policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnforcePlan {
    /// Version (strictly increasing per collector; 0 = no policy).
    pub version: u64,
    /// Mode of lines without an entry.
    pub default_mode: Mode,
    /// Rules matching any source.
    pub any_src: u64,
    /// Rules matching any destination.
    pub any_dst: u64,
    /// Class of uncovered source addresses.
    pub default_src: u64,
    /// Class of uncovered destination addresses.
    pub default_dst: u64,
    /// Ordered rules.
    pub ordered: u64,
    /// Ordered rules that drop.
    pub drop_ordered: u64,
    /// Unordered rules that drop.
    pub drop_unordered: u64,
    /// Rule bits.
    pub rules: Vec<PlanRule>,
    /// Lines with their own mode or port rules.
    pub lines: Vec<PlanLine>,
    /// Prefixes.
    pub prefixes: Vec<PlanPrefix>,
    /// `(port_key, mask of port rules allowing it)`.
    pub ports: Vec<(u32, u64)>,
}

impl EnforcePlan {
    /// The kernel's policy-wide words for this plan; `tables`: which tables the installer
    /// filled (`tidegate_common::enforce::TABLE_*`).
    pub fn kernel_config(&self, tables: u32) -> tidegate_common::enforce::EnforceConfig {
        tidegate_common::enforce::EnforceConfig {
            any_src: self.any_src,
            any_dst: self.any_dst,
            default_src: self.default_src,
            default_dst: self.default_dst,
            ordered: self.ordered,
            drop_ordered: self.drop_ordered,
            drop_unordered: self.drop_unordered,
            default_mode: self.default_mode.word(),
            version: self.version as u32,
            tables,
            pad: 0,
        }
    }

    /// The id of rule `index`, if the plan has it.
    pub fn rule_id(&self, index: u8) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.index == index)
            .map(|r| r.id.as_str())
    }

    /// Encodes the plan (compressed).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(128 + self.prefixes.len() * PREFIX_BYTES);
        v.put_u64(self.version);
        v.put_u8(mode_byte(Some(self.default_mode)));
        for w in [
            self.any_src,
            self.any_dst,
            self.default_src,
            self.default_dst,
            self.ordered,
            self.drop_ordered,
            self.drop_unordered,
        ] {
            v.put_u64(w);
        }
        v.put_len(self.rules.len());
        for r in &self.rules {
            v.put_u8(r.index);
            v.put_str(&r.id);
            v.put_u8(r.drops as u8);
        }
        v.put_len(self.lines.len());
        for l in &self.lines {
            v.put_str(&l.name);
            v.put_u8(mode_byte(l.mode));
            v.put_u64(l.port_mask);
        }
        v.put_len(self.prefixes.len());
        for p in &self.prefixes {
            v.extend_from_slice(&p.addr);
            v.put_u8(p.len);
            v.put_u64(p.src_mask);
            v.put_u64(p.dst_mask);
            v.put_u32(p.flags);
        }
        v.put_len(self.ports.len());
        for (k, m) in &self.ports {
            v.put_u32(*k);
            v.put_u64(*m);
        }
        let z = zstd::bulk::compress(&v, 3)
            .expect("zstd compression of an in-memory buffer only fails when out of memory");
        let mut out = Vec::with_capacity(5 + z.len());
        out.put_u8(PLAN_FORMAT);
        out.put_len(v.len());
        out.extend_from_slice(&z);
        out
    }

    /// Decodes and validates a plan: every count, index, length and mask is checked.
    pub fn decode(bytes: &[u8]) -> Result<EnforcePlan, WireError> {
        let mut r = Reader::new(bytes);
        let format = r.u8("plan format")?;
        if format != PLAN_FORMAT {
            return Err(invalid("plan format", format!("unknown format {format}")));
        }
        let declared = r.u32("plan body_len")? as usize;
        if declared > MAX_PLAN_BODY {
            return Err(WireError::BodyTooLarge {
                declared,
                max: MAX_PLAN_BODY,
            });
        }
        let body = decompress_stream(r.rest(), declared)?;
        let mut r = Reader::new(&body);
        let version = r.u64("plan version")?;
        let default_mode = decode_mode(r.u8("plan default_mode")?)?
            .ok_or_else(|| invalid("plan default_mode", "must be monitor or enforce".into()))?;
        let mut w = [0u64; 7];
        for x in &mut w {
            *x = r.u64("plan words")?;
        }
        let n = r.count("plan rules", 6)?;
        let mut rules = Vec::with_capacity(n);
        for _ in 0..n {
            let index = r.u8("plan rule index")?;
            if index >= 128 {
                return Err(invalid(
                    "plan rule index",
                    format!("{index} is not below 128"),
                ));
            }
            let id = r.str("plan rule id")?;
            let drops = r.bool("plan rule action")?;
            if rules.iter().any(|x: &PlanRule| x.index == index) {
                return Err(invalid("plan rule index", format!("{index} given twice")));
            }
            rules.push(PlanRule { index, id, drops });
        }
        let n = r.count("plan lines", 13)?;
        let mut lines = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.str("plan line name")?;
            let mode = decode_mode(r.u8("plan line mode")?)?;
            let port_mask = r.u64("plan line port_mask")?;
            lines.push(PlanLine {
                name,
                mode,
                port_mask,
            });
        }
        let n = r.count("plan prefixes", PREFIX_BYTES)?;
        let mut prefixes = Vec::with_capacity(n);
        for _ in 0..n {
            let addr: [u8; 16] = r.bytes(16, "plan prefix addr")?.try_into().expect("16");
            let len = r.u8("plan prefix len")?;
            if len > 128 {
                return Err(invalid(
                    "plan prefix len",
                    format!("/{len} is longer than 128"),
                ));
            }
            if u128::from_be_bytes(addr) & !prefix_mask(len) != 0 {
                return Err(invalid(
                    "plan prefix addr",
                    format!("{}/{len} has host bits set", std::net::Ipv6Addr::from(addr)),
                ));
            }
            prefixes.push(PlanPrefix {
                addr,
                len,
                src_mask: r.u64("plan prefix src_mask")?,
                dst_mask: r.u64("plan prefix dst_mask")?,
                flags: r.u32("plan prefix flags")?,
            });
        }
        let n = r.count("plan ports", 12)?;
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            ports.push((r.u32("plan port key")?, r.u64("plan port mask")?));
        }
        r.finish("plan body")?;
        Ok(EnforcePlan {
            version,
            default_mode,
            any_src: w[0],
            any_dst: w[1],
            default_src: w[2],
            default_dst: w[3],
            ordered: w[4],
            drop_ordered: w[5],
            drop_unordered: w[6],
            rules,
            lines,
            prefixes,
            ports,
        })
    }
}

/// The network mask of a 128-bit prefix length.
pub fn prefix_mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - l as u32),
    }
}

fn mode_byte(m: Option<Mode>) -> u8 {
    match m {
        Some(Mode::Monitor) => 0,
        Some(Mode::Enforce) => 1,
        None => 2,
    }
}

fn decode_mode(b: u8) -> Result<Option<Mode>, WireError> {
    Ok(match b {
        0 => Some(Mode::Monitor),
        1 => Some(Mode::Enforce),
        2 => None,
        b => return Err(invalid("plan mode", format!("unknown mode {b}"))),
    })
}

fn invalid(what: &'static str, detail: String) -> WireError {
    WireError::Invalid { what, detail }
}

/// The probe's report of the plan it enforces (answer to a `Policy` frame, and repeated
/// as a heartbeat so an idle connection stays up while enforcement depends on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforceStatus {
    /// Version now in the kernel (0: none).
    pub version: u64,
    /// Version the last `Policy` frame carried, if it could not be applied.
    pub failed_version: Option<u64>,
    /// Why it could not be applied (empty when it was).
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> EnforcePlan {
        EnforcePlan {
            version: 7,
            default_mode: Mode::Enforce,
            any_src: 1,
            drop_unordered: 3,
            rules: vec![PlanRule {
                index: 0,
                id: "sanctioned".into(),
                drops: true,
            }],
            lines: vec![PlanLine {
                name: "hk-1".into(),
                mode: None,
                port_mask: 1,
            }],
            prefixes: vec![PlanPrefix {
                addr: std::net::Ipv4Addr::new(198, 51, 100, 0)
                    .to_ipv6_mapped()
                    .octets(),
                len: 120,
                src_mask: 0,
                dst_mask: 1,
                flags: 0,
            }],
            ports: vec![(5, 1)],
            ..Default::default()
        }
    }

    #[test]
    fn plans_round_trip_and_garbage_is_refused() {
        let p = plan();
        let e = p.encode();
        assert_eq!(EnforcePlan::decode(&e).unwrap(), p);
        for n in 0..e.len() {
            assert!(EnforcePlan::decode(&e[..n]).is_err(), "prefix {n}");
        }
        let mut bad = p.clone();
        bad.prefixes[0].len = 96;
        assert!(
            EnforcePlan::decode(&bad.encode())
                .unwrap_err()
                .to_string()
                .contains("host bits")
        );
        let mut dup = p;
        dup.rules.push(dup.rules[0].clone());
        assert!(EnforcePlan::decode(&dup.encode()).is_err());
    }
}
