//! Policy files of the tests, table by table, written as an operator would write them.

/// A `[[zone]]` table: its name and CIDRs (3 lines).
pub fn zone(name: &str, cidrs: &[&str]) -> String {
    format!("[[zone]]\nname = \"{name}\"\ncidrs = {cidrs:?}\n")
}

/// A `[[rule]]` table: id, name and type (lines 1-4), then `rest`, its other `key = value`
/// lines.
pub fn rule(id: &str, name: &str, kind: &str, rest: &str) -> String {
    format!("[[rule]]\nid = \"{id}\"\nname = \"{name}\"\ntype = \"{kind}\"\n{rest}")
}

/// A policy file: `tables` separated by blank lines.
pub fn tables(tables: &[String]) -> String {
    tables.join("\n")
}

/// The "special-zone", 192.168.0.0/16, may exchange data only with itself: rule `id`, at
/// line 5.
pub fn special_zone_isolated(id: &str) -> String {
    tables(&[
        zone("special-zone", &["192.168.0.0/16"]),
        rule(
            id,
            "special zone stays inside",
            "isolate",
            "zone = \"special-zone\"\npeers = []\n",
        ),
    ])
}
