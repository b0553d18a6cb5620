//! An operator who wrote a policy with a `domestic` zone need not say the home country
//! again: the console's map puts our own (country-less) addresses there, unless
//! `[api] home_country` says otherwise. Real collector, real ClickHouse.

use crate::support::ui::{Console, api, block_on};

fn policy(dir: &std::path::Path, countries: &str) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(
        &p,
        format!(
            "[[zone]]\nname = \"domestic\"\ncidrs = [\"10.0.0.0/8\"]\ncountries = [{countries}]\n"
        ),
    )
    .unwrap();
    format!("\n[policy]\nfile = \"{}\"\n", p.display())
}

#[test]
fn the_domestic_zone_country_is_the_map_home_unless_the_console_names_one() {
    let files = tempfile::tempdir().unwrap();
    let home = |c: &Console| block_on(api(&c.url, "/api/v1/meta")).json()["home_country"].clone();

    let c = Console::start_home(false, &policy(files.path(), "\"CN\""), None);
    assert_eq!(home(&c), "CN");
    drop(c);
    // The console's own setting wins.
    let c = Console::start_home(false, &policy(files.path(), "\"CN\""), Some("HK"));
    assert_eq!(home(&c), "HK");
    drop(c);
    // A domestic zone of several countries names no single home.
    let c = Console::start_home(false, &policy(files.path(), "\"CN\", \"HK\""), None);
    assert!(home(&c).is_null());
}
