//! `tidegate-collector gen-certs` as a user runs it: a CA, the collector's and the
//! probes' certificates with private keys readable by the owner only, usable as they are
//! for an authenticated session; a second run adds a probe and keeps the CA.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use tidegate_testkit::{certs::Certs, transport::*};
use tidegate_wire::Message;

fn gen_certs(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
        .arg("gen-certs")
        .args(args)
        .output()
        .expect("run tidegate-collector");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn generated_certificates_authenticate_a_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let d = dir.to_str().unwrap();
    let (ok, stdout, stderr) = gen_certs(&[
        "--out",
        d,
        "--probe",
        "edge-hk-1",
        "--probe",
        "edge-hk-2",
        "--collector-name",
        "collector.example",
        "--collector-ip",
        "192.0.2.10",
    ]);
    assert!(ok, "stderr: {stderr}");
    for f in ["ca", "collector", "probe-edge-hk-1", "probe-edge-hk-2"] {
        assert!(stdout.contains(&format!("wrote {d}/{f}.pem")), "{stdout}");
        assert_eq!(mode(&dir.join(format!("{f}.key"))), 0o600, "{f}.key");
        assert_eq!(mode(&dir.join(format!("{f}.pem"))), 0o644, "{f}.pem");
    }
    let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();

    // Adding a probe later keeps the CA (every issued certificate stays valid).
    let (ok, stdout, stderr) = gen_certs(&["--out", d, "--probe", "edge-sg-1"]);
    assert!(ok, "stderr: {stderr}");
    assert!(stdout.contains(&format!("kept  {d}/ca.pem")), "{stdout}");
    assert!(
        stdout.contains(&format!("wrote {d}/probe-edge-sg-1.pem")),
        "{stdout}"
    );
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);

    // A probe id that cannot be a file name is refused with the rule.
    let (ok, _, stderr) = gen_certs(&["--out", d, "--probe", "../evil"]);
    assert!(!ok);
    assert!(
        stderr.contains("probe id \"../evil\" is not usable"),
        "{stderr}"
    );

    // The files work as they are: a certificate from the first run and one from the
    // second both get a session.
    let certs = Certs { dir: dir.clone() };
    let server = TestServer::start(&certs.transport_config(0), MemSink::new());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for id in ["edge-hk-2", "edge-sg-1"] {
            let mut c = tls_connect(server.addr, &certs.ca().cert, Some(&certs.probe(id)))
                .await
                .unwrap();
            assert!(
                matches!(say_hello(&mut c, id).await.unwrap(), Message::HelloAck(_)),
                "{id}"
            );
        }
    });
    server.stop();
}
