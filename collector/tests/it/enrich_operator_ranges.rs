//! An operator adds range files for their own networks on top of GeoLite2-City: the
//! operator's country and ASN win; malformed lines are reported as `file:line`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tidegate_common::{FlowKey, FlowStats};
use tidegate_threat::enrich::{EnrichConfig, EnrichError, Enricher};
use tidegate_threat::policy::{EndpointInfo, Endpoints};
use tidegate_wire::record::FlowRecord;
use tidegate_wire::record::key_addr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn info(country: Option<&str>, asn: Option<u32>) -> EndpointInfo {
    EndpointInfo {
        country: country.map(str::to_string),
        asn,
    }
}

#[test]
fn operator_ranges_override_the_database_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let ops = write(
        dir.path(),
        "ops.csv",
        "# our lines and customers\n\
         8.8.8.0/24,HK,64500\n\
         8.8.8.8,8.8.8.8,,64501   # a single host: only the ASN\n\
         192.168.0.0/16,MO,\n\
         2001:4860::/32,,15169\n",
    );
    let e = Enricher::load(&EnrichConfig {
        mmdb: vec![tidegate_testkit::paths::geolite()],
        csv: vec![ops],
    })
    .unwrap();
    // The /24 sets the country; the more specific /32 sets only the ASN.
    assert_eq!(e.lookup(ip("8.8.8.8")), info(Some("HK"), Some(64501)));
    assert_eq!(e.lookup(ip("8.8.8.9")), info(Some("HK"), Some(64500)));
    // Outside the operator ranges the database answers (8.8.4.4 is US in July 2018).
    assert_eq!(e.lookup(ip("8.8.4.4")), info(Some("US"), None));
    // A private range the database knows nothing about.
    assert_eq!(e.lookup(ip("192.168.7.7")), info(Some("MO"), None));
    assert_eq!(e.lookup(ip("::ffff:192.168.7.7")), info(Some("MO"), None));
    // ASN only from the operator, country still from the database.
    assert_eq!(
        e.lookup(ip("2001:4860:4860::8888")),
        info(Some("US"), Some(15169))
    );

    let mut key = FlowKey::ZERO;
    let (fam, src) = key_addr(ip("192.168.7.7"));
    key.family = fam;
    key.src = src;
    key.dst = key_addr(ip("8.8.4.4")).1;
    key.proto = 17;
    key.dport = 53;
    let r = FlowRecord::new(&key, &FlowStats::default(), "hk-intl-1");
    assert_eq!(
        e.endpoints(&r),
        Endpoints {
            src: info(Some("MO"), None),
            dst: info(Some("US"), None),
        }
    );
}

#[test]
fn later_files_win_over_earlier_ones_for_identical_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "203.0.113.0/24,SG,1\n");
    let b = write(dir.path(), "b.csv", "203.0.113.0,203.0.113.255,TW,\n");
    let e = Enricher::load(&EnrichConfig {
        mmdb: vec![],
        csv: vec![a, b],
    })
    .unwrap();
    assert_eq!(e.lookup(ip("203.0.113.1")), info(Some("TW"), Some(1)));
    assert_eq!(e.ranges().len(), 2);
}

#[test]
fn malformed_lines_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.csv", "10.0.0.0/8,CN,4134\n");
    for (text, line, what) in [
        (
            "# header\n10.0.0.0/8,CN,1\n\n10.0.0.0/8,China,1\n",
            4,
            "alpha-2",
        ),
        ("10.0.0.0/8,CN,1\n10.0.0.1/8,CN,1\n", 2, "host bits are set"),
        ("10.0.0.300/8,CN,1\n", 1, "not an IP address"),
        ("10.0.0.0/8,CN,AS-X\n", 1, "ASN"),
        ("10.0.0.0/8 CN 1\n", 1, "got 1 fields"),
        ("10.0.0.0/8,CN,1,2,3\n", 1, "got 5 fields"),
    ] {
        let bad = write(dir.path(), "bad.csv", text);
        let err = Enricher::load(&EnrichConfig {
            mmdb: vec![],
            csv: vec![good.clone(), bad.clone()],
        })
        .unwrap_err();
        assert!(
            matches!(&err, EnrichError::Csv { path, line: l, .. } if *path == bad && *l == line),
            "{text:?}: {err:?}"
        );
        let msg = err.to_string();
        let prefix = format!("{}:{line}: ", bad.display());
        assert!(
            msg.starts_with(&prefix) && msg.contains(what),
            "{text:?}: {msg}"
        );
    }
}

#[test]
fn a_missing_range_file_is_named() {
    let err = Enricher::load(&EnrichConfig {
        mmdb: vec![],
        csv: vec![PathBuf::from("/nonexistent/ops.csv")],
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/ops.csv: cannot read range file"),
        "{err}"
    );
}
