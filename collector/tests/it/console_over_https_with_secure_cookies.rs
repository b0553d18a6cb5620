//! An operator serves the console beyond loopback: with `api.tls_cert`/`api.tls_key` it
//! speaks HTTPS only (rustls, the PEM files `gen-certs` makes), its session cookie is
//! `Secure` and HSTS is sent; plain HTTP gets no answer; a key that does not belong to
//! the certificate is refused by `check-config` at its file:line.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use crate::support::ui::{Console, PASSWORD, USER};
use tidegate_collector::certs::{GenCertsOptions, ca_paths, collector_paths, generate};

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_console_speaks_https_only_with_secure_cookies() {
    let certs = tempfile::tempdir().unwrap();
    generate(&GenCertsOptions {
        out: certs.path().to_path_buf(),
        probes: vec![],
        collector_names: vec!["localhost".into()],
        collector_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        force: false,
    })
    .unwrap();
    let (leaf, ca) = (collector_paths(certs.path()), ca_paths(certs.path()));
    let c = Console::start_api(
        false,
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            leaf.cert.display(),
            leaf.key.display()
        ),
        "",
        None,
    );
    assert!(c.url.starts_with("https://"), "{}", c.url);
    let cacert = ca.cert.to_string_lossy().to_string();
    let session = format!("{}/api/v1/session", c.url);
    tidegate_testkit::eventually(
        "the console answers over HTTPS",
        std::time::Duration::from_secs(30),
        || curl(&["--cacert", &cacert, &session]).0,
    );

    // Log in over HTTPS: the cookie is Secure, HSTS is on.
    let body = format!(r#"{{"user": "{USER}", "password": "{PASSWORD}"}}"#);
    let (ok, head) = curl(&[
        "--cacert",
        &cacert,
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Content-Type: application/json",
        "--data",
        &body,
        &format!("{}/api/v1/login", c.url),
    ]);
    assert!(ok, "{head}");
    let head = head.to_ascii_lowercase();
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(cookie.contains("; secure"), "{cookie}");
    assert!(
        cookie.contains("httponly") && cookie.contains("samesite=strict"),
        "{cookie}"
    );
    assert!(
        head.contains("strict-transport-security: max-age="),
        "{head}"
    );
    let pair = cookie.split(';').next().unwrap().trim().to_string();
    let (ok, meta) = curl(&[
        "--cacert",
        &cacert,
        "-b",
        &pair,
        "--fail-with-body",
        &format!("{}/api/v1/meta", c.url),
    ]);
    assert!(ok && meta.contains("\"lines\""), "{meta}");

    // Plain HTTP on the same port gets no HTTP answer; nor does an unknown CA.
    let plain = c.url.replacen("https://", "http://", 1);
    let (ok, said) = curl(&[&format!("{plain}/api/v1/session")]);
    assert!(!ok, "plain HTTP answered: {said}");
    let (ok, said) = curl(&[&session]);
    assert!(!ok, "a client without the CA connected: {said}");

    // A key that is not the certificate's: check-config names it at its line.
    let cfg = std::fs::read_to_string(c.stack.config_path()).unwrap();
    let wrong = cfg.replace(
        &leaf.key.display().to_string(),
        &ca.key.display().to_string(),
    );
    assert_ne!(wrong, cfg);
    let bad = c.dir().join("wrong-key.toml");
    std::fs::write(&bad, &wrong).unwrap();
    let line = wrong
        .lines()
        .position(|l| l.starts_with("tls_cert"))
        .unwrap()
        + 1;
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("wrong-key.toml:{line}")), "{err}");
    assert!(err.contains("api.tls"), "{err}");
}
