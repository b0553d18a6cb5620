//! A user points the enricher at the real GeoLite2-City database (July 2018, installed by
//! `scripts/geoip.sh`) and looks up well-known addresses.
//!
//! Expected countries were read from the same file with MaxMind's Python reader
//! (`maxminddb` 2.x, `country.iso_code`), not guessed.

use std::net::IpAddr;
use std::path::PathBuf;

use tidegate_threat::enrich::{DbKind, EnrichConfig, EnrichError, Enricher};

fn enricher() -> Enricher {
    Enricher::load(&EnrichConfig {
        mmdb: vec![tidegate_testkit::paths::geolite()],
        csv: vec![],
    })
    .expect("load GeoLite2-City")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn the_database_is_detected_as_a_country_database() {
    let e = enricher();
    assert_eq!(e.databases().len(), 1);
    assert_eq!(e.databases()[0].database_type(), "GeoLite2-City");
    assert_eq!(e.databases()[0].kind(), DbKind::Geo);
}

#[test]
fn well_known_addresses_resolve_to_their_2018_countries() {
    let e = enricher();
    for (addr, country) in [
        ("8.8.8.8", "US"),
        ("1.1.1.1", "AU"),
        ("9.9.9.9", "FR"),
        ("114.114.114.114", "CN"),
        ("223.5.5.5", "CN"),
        ("210.0.255.251", "HK"),
        ("202.12.27.33", "JP"),
        ("193.0.14.129", "NL"),
        ("81.2.69.160", "GB"),
        ("175.45.176.1", "KP"),
        ("2001:4860:4860::8888", "US"),
        ("2001:250::1", "CN"),
        // IPv4-mapped IPv6 is looked up as IPv4.
        ("::ffff:8.8.8.8", "US"),
        ("::ffff:210.0.255.251", "HK"),
    ] {
        let info = e.lookup(ip(addr));
        assert_eq!(info.country.as_deref(), Some(country), "{addr}");
        // A City database carries no ASN.
        assert_eq!(info.asn, None, "{addr}");
    }
}

#[test]
fn private_and_special_addresses_have_no_country() {
    let e = enricher();
    for addr in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "fe80::1",
        "::1",
        "::ffff:192.168.1.1",
    ] {
        assert_eq!(e.lookup(ip(addr)).country, None, "{addr}");
    }
}

#[test]
fn a_nonexistent_database_is_named_in_the_error() {
    let missing = PathBuf::from("/nonexistent/GeoLite2-City.mmdb");
    let err = Enricher::load(&EnrichConfig {
        mmdb: vec![missing.clone()],
        csv: vec![],
    })
    .unwrap_err();
    assert!(
        matches!(&err, EnrichError::Mmdb { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("/nonexistent/GeoLite2-City.mmdb: cannot open MaxMind DB"),
        "{err}"
    );
}

#[test]
fn a_corrupt_database_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    // Not a database at all.
    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, b"this is not a MaxMind database\n").unwrap();
    // The real database cut in half: its metadata (at the end) is gone.
    let cut = dir.path().join("cut.mmdb");
    let real = std::fs::read(tidegate_testkit::paths::geolite()).unwrap();
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap();
    for path in [junk, cut] {
        let err = Enricher::load(&EnrichConfig {
            mmdb: vec![path.clone()],
            csv: vec![],
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: cannot open MaxMind DB", path.display())),
            "{msg}"
        );
    }
}
