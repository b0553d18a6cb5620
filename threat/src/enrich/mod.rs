//! Endpoint enrichment: country and ASN of every flow endpoint.
//!
//! Sources, in precedence order per field: operator range files ([`csv_ranges`]; operators
//! know their own networks), then MaxMind-format databases ([`mmdb`]) in configuration
//! order. IPv4-mapped IPv6 addresses are looked up as IPv4.

pub mod context;
pub mod csv_ranges;
pub mod error;
pub mod mmdb;

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use tidegate_wire::record::FlowRecord;

use crate::policy::{EndpointInfo, Endpoints};

pub use context::{Contextualizer, FlowContext};
pub use csv_ranges::RangeTable;
pub use error::EnrichError;
pub use mmdb::{DbKind, MmdbDb};

/// Which databases to load (the `[enrich]` section of a configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// MaxMind DB files (City/Country and/or ASN); each is classified by its
    /// `database_type` metadata.
    #[serde(default)]
    pub mmdb: Vec<PathBuf>,
    /// Operator range files (`CIDR,country,asn` or `first_ip,last_ip,country,asn`).
    #[serde(default)]
    pub csv: Vec<PathBuf>,
}

/// Looks up country and ASN of addresses in the configured sources.
#[derive(Debug, Default)]
pub struct Enricher {
    ranges: RangeTable,
    dbs: Vec<MmdbDb>,
}

impl Enricher {
    /// Opens every database and parses every range file of `cfg`; the first failure is
    /// returned, naming the file (and line for range files).
    pub fn load(cfg: &EnrichConfig) -> Result<Enricher, EnrichError> {
        let dbs = cfg
            .mmdb
            .iter()
            .map(|p| MmdbDb::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        let ranges = RangeTable::load(&cfg.csv)?;
        Ok(Enricher { ranges, dbs })
    }

    /// The opened MaxMind databases, in configuration order.
    pub fn databases(&self) -> &[MmdbDb] {
        &self.dbs
    }

    /// The operator ranges.
    pub fn ranges(&self) -> &RangeTable {
        &self.ranges
    }

    /// Country and ASN of `ip`; fields no source knows are `None`.
    pub fn lookup(&self, ip: IpAddr) -> EndpointInfo {
        let ip = unmap(ip);
        let country = self
            .ranges
            .country(ip)
            .map(str::to_string)
            .or_else(|| self.dbs.iter().find_map(|d| d.country(ip)));
        let asn = self
            .ranges
            .asn(ip)
            .or_else(|| self.dbs.iter().find_map(|d| d.asn(ip)));
        EndpointInfo { country, asn }
    }

    /// Enrichment of both ends of `r`.
    pub fn endpoints(&self, r: &FlowRecord) -> Endpoints {
        Endpoints {
            src: self.lookup(r.src),
            dst: self.lookup(r.dst),
        }
    }
}

pub use tidegate_base::unmap;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_unknown_fields() {
        let ok: EnrichConfig = toml::from_str("mmdb = [\"a.mmdb\"]\ncsv = [\"r.csv\"]").unwrap();
        assert_eq!(ok.mmdb, vec![PathBuf::from("a.mmdb")]);
        assert_eq!(ok.csv, vec![PathBuf::from("r.csv")]);
        let e = toml::from_str::<EnrichConfig>("mmdbs = []").unwrap_err();
        assert!(e.to_string().contains("unknown field `mmdbs`"), "{e}");
    }

    #[test]
    fn unmap_only_touches_mapped_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(unmap(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(unmap(ip("::1.2.3.4")), ip("::1.2.3.4"));
        assert_eq!(unmap(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(unmap(ip("1.2.3.4")), ip("1.2.3.4"));
    }

    #[test]
    fn ranges_alone_enrich_without_databases() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ops.csv");
        std::fs::write(&csv, "# ours\n203.0.113.0/24,HK,64496\n").unwrap();
        let e = Enricher::load(&EnrichConfig {
            mmdb: vec![],
            csv: vec![csv],
        })
        .unwrap();
        let info = e.lookup("::ffff:203.0.113.9".parse().unwrap());
        assert_eq!(info.country.as_deref(), Some("HK"));
        assert_eq!(info.asn, Some(64496));
        assert_eq!(
            e.lookup("198.51.100.1".parse().unwrap()),
            EndpointInfo::default()
        );
    }
}
