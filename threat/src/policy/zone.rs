//! Zones: named sets of networks defined by CIDR blocks, countries and ASNs, and the
//! classification of an address into exactly one zone.
//!
//! Precedence, most specific first:
//! 1. CIDR blocks: the **longest matching prefix** over every zone's blocks wins, so
//!    `10.1.2.0/24` in zone `special` beats `10.0.0.0/8` in zone `domestic` for `10.1.2.9`
//!    (the same block in two zones is refused at load time);
//! 2. ASN of the address (from enrichment): an ASN belongs to at most one zone;
//! 3. country of the address (from enrichment): a country belongs to at most one zone;
//! 4. otherwise the implicit zone [`UNZONED`].

use std::net::IpAddr;

use super::eval::EndpointInfo;
use tidegate_base::Cidr;

/// Name of the implicit zone of addresses that match no zone; rules may reference it.
pub const UNZONED: &str = "unzoned";

/// Index of a zone in [`Zones`]; [`ZoneId::UNZONED`] is the implicit zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ZoneId(pub usize);

impl ZoneId {
    /// The implicit `unzoned` zone.
    pub const UNZONED: ZoneId = ZoneId(0);
}

/// One zone as declared in the policy.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Unique name.
    pub name: String,
    /// CIDR blocks.
    pub cidrs: Vec<Cidr>,
    /// ISO 3166-1 alpha-2 country codes (upper case).
    pub countries: Vec<String>,
    /// Autonomous system numbers.
    pub asns: Vec<u32>,
}

/// Every zone of a policy, index 0 being the implicit `unzoned`.
#[derive(Clone, Debug)]
pub struct Zones {
    zones: Vec<Zone>,
}

impl Zones {
    /// Builds the set from the declared zones (validated by the loader: unique names,
    /// blocks/ASNs/countries in one zone only).
    pub fn new(declared: Vec<Zone>) -> Self {
        let mut zones = vec![Zone {
            name: UNZONED.to_string(),
            cidrs: Vec::new(),
            countries: Vec::new(),
            asns: Vec::new(),
        }];
        zones.extend(declared);
        Zones { zones }
    }

    /// The zone called `name` (including `unzoned`).
    pub fn id(&self, name: &str) -> Option<ZoneId> {
        self.zones.iter().position(|z| z.name == name).map(ZoneId)
    }

    /// Name of a zone.
    pub fn name(&self, id: ZoneId) -> &str {
        &self.zones[id.0].name
    }

    /// Every zone, `unzoned` (empty) first.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    /// The zone with id `id`.
    pub fn get(&self, id: ZoneId) -> Option<&Zone> {
        self.zones.get(id.0)
    }

    /// Number of zones, `unzoned` included.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Always false: `unzoned` exists.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The zone of an address given its enrichment (see the module docs for precedence).
    pub fn classify(&self, ip: IpAddr, info: &EndpointInfo) -> ZoneId {
        let mut best: Option<(u8, usize)> = None;
        for (i, z) in self.zones.iter().enumerate() {
            for c in &z.cidrs {
                if c.contains(ip) && best.is_none_or(|(p, _)| c.prefix() > p) {
                    best = Some((c.prefix(), i));
                }
            }
        }
        if let Some((_, i)) = best {
            return ZoneId(i);
        }
        if let Some(asn) = info.asn
            && let Some(i) = self.zones.iter().position(|z| z.asns.contains(&asn))
        {
            return ZoneId(i);
        }
        if let Some(cc) = &info.country
            && let Some(i) = self
                .zones
                .iter()
                .position(|z| z.countries.iter().any(|c| c.eq_ignore_ascii_case(cc)))
        {
            return ZoneId(i);
        }
        ZoneId::UNZONED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Zones {
        Zones::new(vec![
            Zone {
                name: "domestic".into(),
                cidrs: vec![Cidr::parse("10.0.0.0/8").unwrap()],
                countries: vec!["CN".into()],
                asns: vec![],
            },
            Zone {
                name: "special".into(),
                cidrs: vec![Cidr::parse("10.1.2.0/24").unwrap()],
                countries: vec![],
                asns: vec![64500],
            },
        ])
    }

    fn info(country: Option<&str>, asn: Option<u32>) -> EndpointInfo {
        EndpointInfo {
            country: country.map(str::to_string),
            asn,
        }
    }

    #[test]
    fn longest_prefix_then_asn_then_country() {
        let z = zones();
        let none = info(None, None);
        let both = info(Some("US"), Some(64500));
        let cn = info(Some("cn"), Some(1));
        for (ip, ends, want) in [
            ("10.1.2.9", &none, "special"),
            ("10.9.0.1", &none, "domestic"),
            // A CIDR match beats the ASN and the country.
            ("10.9.0.1", &both, "domestic"),
            ("8.8.8.8", &both, "special"),
            ("8.8.8.8", &cn, "domestic"),
        ] {
            assert_eq!(z.name(z.classify(ip.parse().unwrap(), ends)), want, "{ip}");
        }
        assert_eq!(
            z.classify("8.8.8.8".parse().unwrap(), &none),
            ZoneId::UNZONED
        );
        assert_eq!(z.id(UNZONED), Some(ZoneId::UNZONED));
    }
}
