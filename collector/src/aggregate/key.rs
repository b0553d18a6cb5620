//! The aggregation flow key: compact in memory, [`AggregateKey`] in results.
//!
//! A merged flow is identified by (src, dst, sport, dport, proto, vlan, line, direction);
//! `ifindex` is deliberately not part of it, so the same line seen by two probes (with
//! different interface indexes) merges. Lines are interned: inside a message the line is
//! an index into the batch's line list, inside a shard an index into the shard's line
//! table.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use tidegate_common::Direction;
use tidegate_wire::record::{FlowRecord, key_addr};

/// An IP address in 17 bytes: IPv4 is stored IPv4-mapped with `v6 == false`, so ordering
/// by `(v6, bytes)` is the order of [`IpAddr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Addr {
    pub v6: bool,
    pub bytes: [u8; 16],
}

impl Addr {
    pub fn from_ip(ip: IpAddr) -> Addr {
        let (family, bytes) = key_addr(ip);
        Addr {
            v6: family == 6,
            bytes,
        }
    }

    pub fn ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bytes))
        } else {
            let b = &self.bytes;
            IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]))
        }
    }
}

const BIT_SRC_V6: u8 = 1;
const BIT_DST_V6: u8 = 2;
const BIT_VLAN: u8 = 4;
const BIT_EGRESS: u8 = 8;

/// The compact key (44 bytes). `line` is a batch-local index in messages and a
/// shard-local index in flow tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub vlan: u16,
    pub proto: u8,
    bits: u8,
    pub line: u32,
}

impl CKey {
    /// The key of `r`, with `line` standing for `r.line`.
    pub fn of(r: &FlowRecord, line: u32) -> CKey {
        let src = Addr::from_ip(r.src);
        let dst = Addr::from_ip(r.dst);
        let mut bits = 0;
        if src.v6 {
            bits |= BIT_SRC_V6;
        }
        if dst.v6 {
            bits |= BIT_DST_V6;
        }
        if r.vlan.is_some() {
            bits |= BIT_VLAN;
        }
        if r.direction == Direction::Egress {
            bits |= BIT_EGRESS;
        }
        CKey {
            src: src.bytes,
            dst: dst.bytes,
            sport: r.sport,
            dport: r.dport,
            vlan: r.vlan.unwrap_or(0),
            proto: r.proto,
            bits,
            line,
        }
    }

    pub fn src(&self) -> Addr {
        Addr {
            v6: self.bits & BIT_SRC_V6 != 0,
            bytes: self.src,
        }
    }

    pub fn dst(&self) -> Addr {
        Addr {
            v6: self.bits & BIT_DST_V6 != 0,
            bytes: self.dst,
        }
    }

    pub fn vlan(&self) -> Option<u16> {
        (self.bits & BIT_VLAN != 0).then_some(self.vlan)
    }

    pub fn direction(&self) -> Direction {
        if self.bits & BIT_EGRESS != 0 {
            Direction::Egress
        } else {
            Direction::Ingress
        }
    }

    /// 0 for ingress, 1 for egress.
    pub fn dir_index(&self) -> usize {
        usize::from(self.bits & BIT_EGRESS != 0)
    }

    /// Every field but the line, as five words: what both hashes feed their hasher,
    /// one word per step (field by field, the addresses' lengths and the small fields
    /// made twice as many steps).
    fn words(&self) -> [u64; 5] {
        let half = |a: &[u8; 16], i: usize| {
            u64::from_ne_bytes(a[i..i + 8].try_into().expect("eight bytes of sixteen"))
        };
        [
            half(&self.src, 0),
            half(&self.src, 8),
            half(&self.dst, 0),
            half(&self.dst, 8),
            u64::from(self.sport)
                | u64::from(self.dport) << 16
                | u64::from(self.vlan) << 32
                | u64::from(self.proto) << 48
                | u64::from(self.bits) << 56,
        ]
    }

    /// Hash used to pick the shard: every key field, with the line given by the hash of
    /// its name (so the submitter needs no shared line table).
    pub fn shard_hash(&self, line_hash: u64, seed: &ahash::RandomState) -> u64 {
        let mut h = seed.build_hasher();
        for w in self.words() {
            h.write_u64(w);
        }
        h.write_u64(line_hash);
        h.finish()
    }

    /// The public form, with the line name resolved.
    pub fn public(&self, line: &str) -> AggregateKey {
        AggregateKey {
            src: self.src().ip(),
            dst: self.dst().ip(),
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            vlan: self.vlan(),
            line: line.to_string(),
            direction: self.direction(),
        }
    }
}

/// The fixed seeds of the shard hash: a flow always lands on the same shard for a given
/// shard count, across runs and processes of one build (nothing stores a shard: another
/// version or platform may pick others).
pub(crate) fn shard_seed() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x7469_6465_6761_7465,
        0x6167_6772_6567_6174,
        0x6f72_5f73_6861_7264,
        0x9e37_79b9_7f4a_7c15,
    )
}

/// Maps a 64-bit hash onto `0..n` (multiply-shift; uses the high bits).
pub(crate) fn shard_index(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// Hash of a line name, for [`CKey::shard_hash`].
pub(crate) fn line_hash(line: &str, seed: &ahash::RandomState) -> u64 {
    seed.hash_one(line)
}

/// A merged flow's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AggregateKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// L4 source port (0 when none).
    pub sport: u16,
    /// L4 destination port (0 when none).
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Outer VLAN id, `None` when untagged.
    pub vlan: Option<u16>,
    /// Line (interface) name.
    pub line: String,
    /// Ingress or egress.
    #[serde(with = "tidegate_wire::record::direction")]
    pub direction: Direction,
}

impl AggregateKey {
    /// The key a record aggregates under.
    pub fn of(r: &FlowRecord) -> AggregateKey {
        AggregateKey {
            src: r.src,
            dst: r.dst,
            sport: r.sport,
            dport: r.dport,
            proto: r.proto,
            vlan: r.vlan,
            line: r.line.to_string(),
            direction: r.direction,
        }
    }
}

/// Every field (as [`CKey::words`] and the line): keys that are equal hash the same.
impl Hash for CKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for w in self.words() {
            h.write_u64(w);
        }
        h.write_u32(self.line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(src: &str, dst: &str, vlan: Option<u16>, dir: Direction) -> FlowRecord {
        FlowRecord {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 1234,
            dport: 443,
            proto: 6,
            vlan,
            packets: 1,
            bytes: 60,
            first: 1,
            last: 2,
            tcp_flags: 2,
            line: "l".into(),
            ifindex: 7,
            direction: dir,
            ..Default::default()
        }
    }

    #[test]
    fn compact_key_round_trips_every_field() {
        for r in [
            rec("192.0.2.1", "2001:db8::1", Some(0), Direction::Egress),
            rec("::ffff:192.0.2.1", "192.0.2.9", None, Direction::Ingress),
            rec("2001:db8::2", "2001:db8::3", Some(4095), Direction::Ingress),
        ] {
            let k = CKey::of(&r, 0).public("l");
            assert_eq!(k, AggregateKey::of(&r));
        }
        // An IPv4-mapped IPv6 address is not the IPv4 address.
        let a = CKey::of(
            &rec("::ffff:192.0.2.1", "192.0.2.9", None, Direction::Ingress),
            0,
        );
        let b = CKey::of(&rec("192.0.2.1", "192.0.2.9", None, Direction::Ingress), 0);
        assert_ne!(a, b);
    }

    #[test]
    fn keys_differing_in_any_one_field_hash_apart() {
        let seed = shard_seed();
        let r = rec("192.0.2.1", "2001:db8::1", Some(7), Direction::Egress);
        let base = CKey::of(&r, 3);
        let mut others = Vec::new();
        for i in 0..16 {
            let mut k = base;
            k.src[i] ^= 1;
            others.push(k);
            let mut k = base;
            k.dst[i] ^= 1;
            others.push(k);
        }
        for change in [
            |k: &mut CKey| k.sport ^= 1,
            |k: &mut CKey| k.dport ^= 1,
            |k: &mut CKey| k.vlan ^= 1,
            |k: &mut CKey| k.proto ^= 1,
            |k: &mut CKey| k.bits ^= BIT_EGRESS,
            |k: &mut CKey| k.line ^= 1,
        ] {
            let mut k = base;
            change(&mut k);
            others.push(k);
        }
        for k in others {
            assert_ne!(k, base);
            assert_ne!(seed.hash_one(k), seed.hash_one(base), "{k:?}");
            if k.line == base.line {
                assert_ne!(k.shard_hash(9, &seed), base.shard_hash(9, &seed), "{k:?}");
            }
        }
    }

    #[test]
    fn addr_order_is_ipaddr_order() {
        let mut ips: Vec<IpAddr> = ["10.0.0.2", "::1", "10.0.0.1", "2001:db8::1", "1.2.3.4"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut addrs: Vec<Addr> = ips.iter().map(|&ip| Addr::from_ip(ip)).collect();
        ips.sort();
        addrs.sort();
        assert_eq!(addrs.iter().map(Addr::ip).collect::<Vec<_>>(), ips);
    }

    #[test]
    fn shard_index_covers_the_range() {
        let seed = shard_seed();
        let mut seen = [0u32; 7];
        for i in 0..7000u64 {
            seen[shard_index(seed.hash_one(i), 7)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(shard_index(u64::MAX, 7), 6);
        assert_eq!(shard_index(0, 7), 0);
    }
}
