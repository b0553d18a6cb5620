//! The policy engine: zones, rules between zones, destination lists, per-line ports and
//! byte caps, loaded from a TOML file (errors are `file:line: message`) and hot-reloaded
//! on SIGHUP (an invalid new policy is refused and the old one kept).
//!
//! - [`Policy::load`] parses and validates a file; [`Policy::evaluate`] returns the
//!   stateless violations of one flow record (deny, isolation, deny/allow lists, ports).
//! - [`PolicyEngine`] adds the stateful byte caps (event-time windows per destination).
//! - [`PolicyHandle`] holds the current policy and swaps it on [`PolicyHandle::reload`];
//!   the collector wires that to SIGHUP.
//! - [`ViolationBook`] merges repeats of a violation into one open violation.
//!
//! Zone membership (CIDR longest prefix, then ASN, then country, else `unzoned`) is
//! described in [`zone`]. `dashboards/policy/example.toml` documents the file format.

pub mod book;
mod country;
pub mod enforce;
pub mod engine;
pub mod error;
pub mod eval;
pub mod file;
pub mod reload;
pub mod rule;
pub mod violation;
pub mod zone;

use std::path::{Path, PathBuf};

pub use book::{ViolationBook, ViolationState};
pub use engine::PolicyEngine;
pub use error::PolicyError;
pub use eval::{EndpointInfo, Endpoints};
pub use reload::PolicyHandle;
pub use rule::{Action, Rule, RuleBody};
pub use violation::{Violation, ViolationKind};
pub use zone::{UNZONED, ZoneId, Zones};

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// File it was loaded from.
    pub path: PathBuf,
    /// Zones (index 0 is `unzoned`).
    pub zones: Zones,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// The `[enforce]` section (line modes, protected ranges).
    pub enforce: enforce::EnforceSettings,
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let file = tidegate_base::ConfigFile::read(path)?;
        Self::parse(file.text(), path)
    }

    /// Parses policy text; `path` names it in errors and in rule locations.
    pub fn parse(src: &str, path: &Path) -> Result<Self, PolicyError> {
        file::parse(src, path)
    }

    /// The home country the policy implies: the one country of the zone named
    /// `domestic` (where the console's map draws our own, country-less addresses).
    /// `None` when there is no such zone or it lists several countries or none.
    pub fn home_country(&self) -> Option<&str> {
        let z = self.zones.iter().find(|z| z.name == "domestic")?;
        match z.countries.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

#[cfg(test)]
mod home_tests {
    use super::*;

    #[test]
    fn the_domestic_zone_with_one_country_is_home() {
        let p = |t: &str| Policy::parse(t, Path::new("p.toml")).unwrap();
        let home =
            p("[[zone]]\nname = \"domestic\"\ncidrs = [\"10.0.0.0/8\"]\ncountries = [\"CN\"]\n");
        assert_eq!(home.home_country(), Some("CN"));
        let two = p("[[zone]]\nname = \"domestic\"\ncountries = [\"CN\", \"HK\"]\n");
        assert_eq!(two.home_country(), None);
        let other = p("[[zone]]\nname = \"office\"\ncountries = [\"CN\"]\n");
        assert_eq!(other.home_country(), None);
    }
}
