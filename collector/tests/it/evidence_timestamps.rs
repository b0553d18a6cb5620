//! Checkpoints time-stamped by an external RFC 3161 authority: a local `openssl ts` TSA
//! (its own CA, a certificate for time stamping) behind a small HTTP front; the live
//! collector sends it every new checkpoint; `evidence verify --tsa-ca` checks each stamp
//! with `openssl ts -verify`, and refuses a stamp that was altered or a TSA it does not
//! trust.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::support::analysis::Analysis;
use tidegate_testkit::{Stack, eventually, free_port, stack::StackOptions};

const BIN: &str = env!("CARGO_BIN_EXE_tidegate-collector");

fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`name`-ca.pem) and, for the TSA, a time-stamping certificate and its config.
fn authority(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -newkey rsa:2048 -nodes -keyout {name}-ca.key -out {name}-ca.pem -subj /CN={name}-ca -days 2 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ),
    );
}

/// The TSA's HTTP front, stopped when dropped (a failing test leaves nothing behind).
struct Front(Child);

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves RFC 3161 over HTTP on `port`: each POST body goes through `openssl ts -reply`.
fn tsa(dir: &Path, port: u16) -> Front {
    authority(dir, "tsa");
    openssl(
        dir,
        "req -newkey rsa:2048 -nodes -keyout tsa.key -out tsa.csr -subj /CN=test-tsa",
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    openssl(
        dir,
        "x509 -req -in tsa.csr -CA tsa-ca.pem -CAkey tsa-ca.key -CAcreateserial -out tsa.pem -days 2 -extfile ext.cnf",
    );
    std::fs::write(dir.join("tsaserial"), "01\n").unwrap();
    std::fs::write(
        dir.join("tsa.cnf"),
        format!(
            "[ tsa ]\ndefault_tsa = t\n[ t ]\ndir = {}\nserial = $dir/tsaserial\ncrypto_device = builtin\n\
             signer_cert = $dir/tsa.pem\ncerts = $dir/tsa-ca.pem\nsigner_key = $dir/tsa.key\n\
             signer_digest = sha256\ndefault_policy = 1.2.3.4.1\nother_policies = 1.2.3.4.5\n\
             digests = sha256\naccuracy = secs:1\nordering = yes\ntsa_name = yes\n\
             ess_cert_id_chain = no\ness_cert_id_alg = sha256\n",
            dir.display()
        ),
    )
    .unwrap();
    let front = r#"
import http.server, subprocess, sys, os
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        q = self.rfile.read(int(self.headers["Content-Length"]))
        with open(os.path.join(d, "q.tsq"), "wb") as f: f.write(q)
        subprocess.run(["openssl", "ts", "-reply", "-config", os.path.join(d, "tsa.cnf"),
            "-queryfile", os.path.join(d, "q.tsq"), "-out", os.path.join(d, "r.tsr")],
            check=True, capture_output=True)
        r = open(os.path.join(d, "r.tsr"), "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(r)))
        self.end_headers()
        self.wfile.write(r)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
"#;
    std::fs::write(dir.join("front.py"), front).unwrap();
    Front(
        Command::new("python3")
            .arg(dir.join("front.py"))
            .arg(dir)
            .arg(port.to_string())
            .spawn()
            .unwrap(),
    )
}

fn verify(config: &Path, ca: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["evidence", "verify", "--config"])
        .arg(config)
        .arg("--tsa-ca")
        .arg(ca)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn checkpoints_are_time_stamped_by_an_rfc3161_authority() {
    let pki = tempfile::tempdir().unwrap();
    let port = free_port();
    let front = tsa(pki.path(), port);
    let key = pki.path().join("evidence.key");
    assert!(
        Command::new(BIN)
            .args(["evidence", "keygen", "--out"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let analysis = Analysis::new();
    let extra = format!(
        "{}\n[evidence]\ndir = \"evidence\"\nkey = \"{}\"\ncheckpoint_secs = 1\ntsa_url = \"http://127.0.0.1:{port}/tsr\"\n",
        analysis.config(),
        key.display()
    );
    let mut stack = Stack::start_with(StackOptions {
        extra,
        ..StackOptions::default()
    });
    stack.replay("edge-1", &["ndpi-synscan.pcap"]);
    let stamps = stack.dir().join("evidence/timestamps.jsonl");
    eventually("a checkpoint time stamp", Duration::from_secs(60), || {
        std::fs::read_to_string(&stamps).is_ok_and(|t| t.lines().count() >= 1)
    });
    assert_eq!(stack.collector.stop(), 0);
    drop(front);

    let ca = pki.path().join("tsa-ca.pem");
    let config = stack.config_path();
    let (ok, said) = verify(&config, &ca);
    assert!(
        ok && said.contains("checkpoint time stamps verify"),
        "{said}"
    );

    // A TSA the auditor does not trust.
    authority(pki.path(), "other");
    let (ok, said) = verify(&config, &pki.path().join("other-ca.pem"));
    assert!(
        !ok,
        "verified against a CA that did not issue the TSA: {said}"
    );

    // An altered stamp.
    let text = std::fs::read_to_string(&stamps).unwrap();
    let mut t: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    t["note_sha256"] = "00".repeat(32).into();
    std::fs::write(&stamps, format!("{t}\n")).unwrap();
    let (ok, said) = verify(&config, &ca);
    assert!(!ok && said.contains("another note"), "{said}");
}
