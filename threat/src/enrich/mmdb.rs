//! Country and ASN lookups in MaxMind-format (`.mmdb`) databases.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{PathElement, Reader};

use super::error::EnrichError;

/// What a database holds, from its `database_type` metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    /// GeoIP2/GeoLite2 City, Country or Enterprise: countries (Enterprise also has ASNs).
    Geo,
    /// GeoLite2 ASN or GeoIP2 ISP: autonomous system numbers.
    Asn,
}

impl DbKind {
    /// Classifies a `database_type` such as `GeoLite2-City` or `GeoLite2-ASN`.
    pub fn from_database_type(t: &str) -> Option<DbKind> {
        let t = t.to_ascii_lowercase();
        if t.contains("asn") || t.contains("isp") {
            Some(DbKind::Asn)
        } else if t.contains("city") || t.contains("country") || t.contains("enterprise") {
            Some(DbKind::Geo)
        } else {
            None
        }
    }
}

/// One opened MaxMind database.
pub struct MmdbDb {
    path: PathBuf,
    kind: DbKind,
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for MmdbDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmdbDb")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

const COUNTRY: [PathElement<'static>; 2] =
    [PathElement::Key("country"), PathElement::Key("iso_code")];
const REGISTERED: [PathElement<'static>; 2] = [
    PathElement::Key("registered_country"),
    PathElement::Key("iso_code"),
];
const ASN: [PathElement<'static>; 1] = [PathElement::Key("autonomous_system_number")];
const TRAITS_ASN: [PathElement<'static>; 2] = [
    PathElement::Key("traits"),
    PathElement::Key("autonomous_system_number"),
];

impl MmdbDb {
    /// Opens `path` and classifies it by its `database_type` metadata.
    pub fn open(path: &Path) -> Result<MmdbDb, EnrichError> {
        let reader = Reader::open_readfile(path).map_err(|source| EnrichError::Mmdb {
            path: path.to_path_buf(),
            source,
        })?;
        let database_type = reader.metadata().database_type.clone();
        let kind = DbKind::from_database_type(&database_type).ok_or_else(|| {
            EnrichError::UnsupportedDatabase {
                path: path.to_path_buf(),
                database_type,
            }
        })?;
        Ok(MmdbDb {
            path: path.to_path_buf(),
            kind,
            reader,
        })
    }

    /// What the database holds.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `database_type` metadata (e.g. `GeoLite2-City`).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// ISO 3166-1 alpha-2 country of `ip`: the located country, else the registered one.
    /// `None` for ASN databases, addresses without data, and damaged records.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        if self.kind != DbKind::Geo {
            return None;
        }
        let found = self.reader.lookup(ip).ok()?;
        let code = match found.decode_path::<&str>(&COUNTRY) {
            Ok(Some(c)) => Some(c),
            _ => found.decode_path::<&str>(&REGISTERED).ok().flatten(),
        };
        code.map(str::to_string)
    }

    /// Every network whose country (as [`MmdbDb::country`] reads it) is in `countries`
    /// or whose ASN is in `asns`: `(address, prefix length)`, IPv4 as IPv4. One pass over
    /// the database.
    pub fn networks_of(
        &self,
        countries: &std::collections::HashSet<String>,
        asns: &std::collections::HashSet<u32>,
    ) -> Result<Vec<(IpAddr, u8)>, EnrichError> {
        let mut out = Vec::new();
        if countries.is_empty() && asns.is_empty() {
            return Ok(out);
        }
        let err = |e: maxminddb::MaxMindDbError| EnrichError::Mmdb {
            path: self.path.clone(),
            source: e,
        };
        for item in self.reader.networks(Default::default()).map_err(err)? {
            let found = item.map_err(err)?;
            let hit = match self.kind {
                DbKind::Geo => {
                    let cc = match found.decode_path::<&str>(&COUNTRY) {
                        Ok(Some(c)) => Some(c),
                        _ => found.decode_path::<&str>(&REGISTERED).ok().flatten(),
                    };
                    cc.is_some_and(|c| countries.contains(c))
                        || (!asns.is_empty()
                            && found
                                .decode_path::<u32>(&TRAITS_ASN)
                                .ok()
                                .flatten()
                                .is_some_and(|a| asns.contains(&a)))
                }
                DbKind::Asn => found
                    .decode_path::<u32>(&ASN)
                    .ok()
                    .flatten()
                    .is_some_and(|a| asns.contains(&a)),
            };
            if hit {
                let net = found.network().map_err(err)?;
                out.push((net.ip(), net.prefix()));
            }
        }
        Ok(out)
    }

    /// Autonomous system number of `ip` (ASN/ISP databases; Enterprise via its traits).
    pub fn asn(&self, ip: IpAddr) -> Option<u32> {
        let found = self.reader.lookup(ip).ok()?;
        let path: &[PathElement<'_>] = match self.kind {
            DbKind::Asn => &ASN,
            DbKind::Geo => &TRAITS_ASN,
        };
        found.decode_path::<u32>(path).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_types_are_classified() {
        assert_eq!(
            DbKind::from_database_type("GeoLite2-City"),
            Some(DbKind::Geo)
        );
        assert_eq!(
            DbKind::from_database_type("GeoIP2-Country"),
            Some(DbKind::Geo)
        );
        assert_eq!(
            DbKind::from_database_type("GeoIP2-Enterprise"),
            Some(DbKind::Geo)
        );
        assert_eq!(
            DbKind::from_database_type("GeoLite2-ASN"),
            Some(DbKind::Asn)
        );
        assert_eq!(DbKind::from_database_type("GeoIP2-ISP"), Some(DbKind::Asn));
        assert_eq!(DbKind::from_database_type("GeoIP2-Anonymous-IP"), None);
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let e = MmdbDb::open(Path::new("/nonexistent/x.mmdb")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/x.mmdb: "), "{e}");
    }
}
