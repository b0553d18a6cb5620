//! [`Cidr`]: the one address-block type of tidegate (policy zones, detector inside
//! ranges, operator enrichment ranges, API filters).
//!
//! Rules, the same everywhere:
//! - `address/prefix`, IPv4 or IPv6, prefix `0..=32` or `0..=128`;
//! - a bare address is a host block (`/32`, `/128`);
//! - host bits must be zero: `10.1.2.3/16` is refused (with "did you mean 10.1.0.0/16?")
//!   rather than silently meaning `10.1.0.0/16`;
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4 address they map, both
//!   when parsing a block and when testing membership, because flows carry IPv4
//!   addresses in mapped form on some paths.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 address block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {input:?}: {reason}")]
pub struct CidrError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it maps; others unchanged.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl Cidr {
    /// Parses `address/prefix` or a bare address (see the module's rules).
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let bad = |reason: String| CidrError {
            input: s.to_string(),
            reason,
        };
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let raw: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| bad(format!("{:?} is not an IP address", a.trim())))?;
        let mapped = matches!(raw, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let max: u8 = if raw.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(format!("prefix must be 0..={max}")))?,
        };
        let (addr, prefix) = if mapped {
            if prefix < 96 {
                return Err(bad(format!(
                    "an IPv4-mapped block needs a prefix of at least 96, not {prefix}"
                )));
            }
            (unmap(raw), prefix - 96)
        } else {
            (raw, prefix)
        };
        let c = Cidr { addr, prefix };
        if c.network_bits() != bits(addr) {
            return Err(bad(format!(
                "host bits are set (did you mean {}?)",
                Cidr {
                    addr: from_bits(addr, c.network_bits()),
                    prefix
                }
            )));
        }
        Ok(c)
    }

    /// The block holding exactly one address.
    pub fn host(ip: IpAddr) -> Self {
        let addr = unmap(ip);
        Cidr {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// Network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether the block is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` is inside the block. An IPv4-mapped address is tested as IPv4; an
    /// IPv4 block never contains another IPv6 address, nor the reverse.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        bits(ip) & self.mask() == bits(self.addr)
    }

    /// First address of the block.
    pub fn first(&self) -> IpAddr {
        self.addr
    }

    /// Last address of the block.
    pub fn last(&self) -> IpAddr {
        from_bits(
            self.addr,
            bits(self.addr) | !self.mask() & self.width_mask(),
        )
    }

    /// First and last address as IPv6 (IPv4 blocks mapped into `::ffff:0:0/96`), the
    /// form of tidegate's ClickHouse address columns.
    pub fn v6_range(&self) -> (Ipv6Addr, Ipv6Addr) {
        let v6 = |ip: IpAddr| match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        (v6(self.first()), v6(self.last()))
    }

    fn width_mask(&self) -> u128 {
        if self.addr.is_ipv4() {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        }
    }

    fn mask(&self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            let ones = u128::MAX << (128 - u32::from(self.prefix));
            if self.addr.is_ipv4() {
                ones >> 96
            } else {
                ones
            }
        }
    }

    fn network_bits(&self) -> u128 {
        bits(self.addr) & self.mask()
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(like: IpAddr, b: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(b as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(b)),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cidr::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One table for every rule of the type: input → accepted form or refusal reason.
    #[test]
    fn one_rule_set_for_every_input() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("10.1.0.0/16", Ok("10.1.0.0/16")),
            (" 10.1.0.0 / 16 ", Ok("10.1.0.0/16")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("192.0.2.7", Ok("192.0.2.7/32")),
            ("192.0.2.7/32", Ok("192.0.2.7/32")),
            ("2001:db8::/32", Ok("2001:db8::/32")),
            ("2001:db8::1", Ok("2001:db8::1/128")),
            ("::/0", Ok("::/0")),
            ("::ffff:10.0.0.0/104", Ok("10.0.0.0/8")),
            ("::ffff:192.0.2.1", Ok("192.0.2.1/32")),
            ("10.1.2.3/16", Err("did you mean 10.1.0.0/16?")),
            ("2001:db8::1/32", Err("did you mean 2001:db8::/32?")),
            ("10.0.0.0/33", Err("prefix must be 0..=32")),
            ("2001:db8::/129", Err("prefix must be 0..=128")),
            ("10.0.0.0/-1", Err("prefix must be 0..=32")),
            ("10.0.0.0/", Err("prefix must be 0..=32")),
            ("10.0.0/8", Err("is not an IP address")),
            ("", Err("is not an IP address")),
            ("/8", Err("is not an IP address")),
            ("host.example/8", Err("is not an IP address")),
            ("::ffff:10.0.0.0/8", Err("at least 96")),
        ];
        for (input, want) in cases {
            match (Cidr::parse(input), want) {
                (Ok(c), Ok(text)) => assert_eq!(c.to_string(), *text, "{input:?}"),
                (Err(e), Err(reason)) => {
                    let e = e.to_string();
                    assert!(e.contains(reason), "{input:?}: {e}");
                    assert!(e.starts_with("invalid CIDR"), "{input:?}: {e}");
                }
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn v4_membership_and_edges() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.0.0")));
        assert!(c.contains(ip("10.1.255.255")));
        assert!(!c.contains(ip("10.2.0.0")));
        // Mapped addresses are their IPv4 address.
        assert!(c.contains(ip("::ffff:10.1.0.1")));
        assert!(!c.contains(ip("2001:db8::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        assert_eq!(Cidr::parse("192.0.2.7").unwrap().prefix(), 32);
    }

    #[test]
    fn v6_membership() {
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(ip("2001:db8:ffff::1")));
        assert!(!c.contains(ip("2001:db9::1")));
        assert!(!c.contains(ip("10.0.0.1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn ranges() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert_eq!((c.first(), c.last()), (ip("10.1.0.0"), ip("10.1.255.255")));
        let (lo, hi) = c.v6_range();
        assert_eq!(
            (lo.to_string(), hi.to_string()),
            ("::ffff:10.1.0.0".into(), "::ffff:10.1.255.255".into())
        );
        let all = Cidr::parse("::/0").unwrap();
        assert_eq!(all.last(), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert_eq!(all4.last(), ip("255.255.255.255"));
        assert_eq!(Cidr::host(ip("::ffff:1.2.3.4")).to_string(), "1.2.3.4/32");
    }

    #[test]
    fn serde_uses_the_same_rules() {
        #[derive(serde::Deserialize)]
        struct T {
            c: Vec<Cidr>,
        }
        let t: T = toml::from_str("c = [\"10.0.0.0/8\", \"2001:db8::1\"]").unwrap();
        assert_eq!(t.c.len(), 2);
        let e = toml::from_str::<T>("c = [\"10.0.0.1/8\"]").err().unwrap();
        assert!(e.to_string().contains("host bits"), "{e}");
    }
}
