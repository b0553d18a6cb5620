//! A user replays a real capture (`ndpi-1kxun.pcap` from the shared corpus) and enriches
//! every flow record's endpoints with the real GeoLite2-City database (July 2018).
//!
//! The expectation was computed independently of this crate: the outer IPv4/IPv6 addresses
//! of every packet were listed with `tshark -E occurrence=f -e ip.src -e ip.dst -e ipv6.src
//! -e ipv6.dst` (100 distinct addresses) and each was looked up with MaxMind's Python reader
//! (`country.iso_code`, else `registered_country.iso_code`): 51 addresses have a country,
//! all of them public unicast; the other 49 are private, link-local, multicast, broadcast
//! or unspecified.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tidegate_testkit::probe::corpus_records_of;
use tidegate_threat::enrich::{EnrichConfig, Enricher};

/// Globally routable unicast, by the address alone (no database).
fn public_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unspecified()
                || v6.is_unicast_link_local()
                || v6.is_unique_local())
        }
    }
}

#[test]
fn public_endpoints_of_a_real_capture_get_their_countries() {
    let e = Enricher::load(&EnrichConfig {
        mmdb: vec![tidegate_testkit::paths::geolite()],
        csv: vec![],
    })
    .expect("load GeoLite2-City");
    let records = corpus_records_of("ndpi-1kxun.pcap", "hk-intl-1");
    assert!(!records.is_empty());

    let mut country_of: BTreeMap<IpAddr, Option<String>> = BTreeMap::new();
    let mut records_with_a_country = 0;
    for r in &records {
        let ends = e.endpoints(r);
        assert_eq!(ends.src, e.lookup(r.src));
        assert_eq!(ends.dst, e.lookup(r.dst));
        if ends.src.country.is_some() || ends.dst.country.is_some() {
            records_with_a_country += 1;
        }
        for (ip, info) in [(r.src, ends.src), (r.dst, ends.dst)] {
            // A City database has no ASNs.
            assert_eq!(info.asn, None, "{ip}");
            // Every endpoint has a country exactly when it is public unicast.
            assert_eq!(
                info.country.is_some(),
                public_unicast(ip),
                "{ip}: {:?}",
                info.country
            );
            country_of.insert(ip, info.country);
        }
    }

    assert_eq!(country_of.len(), 100, "distinct endpoint addresses");
    let with_country: BTreeSet<_> = country_of.iter().filter(|(_, c)| c.is_some()).collect();
    assert_eq!(with_country.len(), 51, "distinct endpoints with a country");
    let mut per_country: BTreeMap<&str, usize> = BTreeMap::new();
    for c in country_of.values().flatten() {
        *per_country.entry(c.as_str()).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = [
        ("CN", 9),
        ("DE", 3),
        ("HK", 1),
        ("IE", 2),
        ("JP", 6),
        ("SG", 3),
        ("TW", 8),
        ("US", 19),
    ]
    .into_iter()
    .collect();
    assert_eq!(per_country, expected);
    // Most flows of this capture talk to the Internet.
    assert!(
        records_with_a_country * 2 > records.len(),
        "{records_with_a_country} of {} records have a public endpoint",
        records.len()
    );
}
