//! A running analyst console for the API and browser tests: a real ClickHouse, a real
//! `tidegate-collector run` with `[api]` (one user, one token), enrichment (GeoLite2), a
//! policy and the detectors, fed by the probe library replaying corpus captures over
//! mTLS — the same path production data takes. Plus a minimal HTTP client.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::support::analysis::Analysis;
use tidegate_testkit::{Stack, stack::StackOptions};
use tidegate_wire::record::FlowRecord;

/// The console's login.
pub const USER: &str = "analyst";
/// Its password.
pub const PASSWORD: &str = "correct horse battery staple";
/// A bearer token.
pub const TOKEN: &str = "tg-test-token-2f8c1e";

/// Captures that give traffic with countries, a SYN flood, a port scan, DNS exfiltration,
/// and flows leaving the isolated 192.168.0.0/16 zone.
pub const CAPTURES: [&str; 4] = [
    "stopddos-pkt.TCP.synflood.spoofed.pcap",
    "ndpi-1kxun.pcap",
    "ndpi-synscan.pcap",
    "ndpi-dns_exfiltration.pcap",
];

/// SHA-256 of `s`, in hex (what `[[api.token]] sha256` holds).
pub fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A running console.
pub struct Console {
    /// Base URL of the UI/API, `http://127.0.0.1:<port>`.
    pub url: String,
    /// ClickHouse and the collector.
    pub stack: Stack,
    /// Records replayed so far.
    pub records: Vec<FlowRecord>,
    _analysis: Option<Analysis>,
}

impl Console {
    /// Starts ClickHouse and the collector; `analysis` adds enrichment, policy and
    /// detectors. Returns once the UI answers and the schema is in place.
    pub fn start(analysis: bool) -> Console {
        Self::start_with(analysis, "")
    }

    /// [`start`](Self::start) with more configuration (`[evidence]`, ...).
    pub fn start_with(analysis: bool, more: &str) -> Console {
        Self::start_home(analysis, more, Some("HK"))
    }

    /// [`start_with`](Self::start_with) with `api.home_country` set to `home` (or unset).
    pub fn start_home(analysis: bool, more: &str, home: Option<&str>) -> Console {
        Self::start_api(analysis, "", more, home)
    }

    /// [`start_home`](Self::start_home) with more keys of `[api]` (`api_extra`); with
    /// `tls_cert` among them the console is at `https://`.
    pub fn start_api(analysis: bool, api_extra: &str, more: &str, home: Option<&str>) -> Console {
        let ui_port = tidegate_testkit::free_port();
        let scheme = if api_extra.contains("tls_cert") {
            "https"
        } else {
            "http"
        };
        let home = home
            .map(|h| format!("home_country = \"{h}\"\n"))
            .unwrap_or_default()
            + api_extra;
        let mut extra = format!(
            "[api]\nlisten = \"127.0.0.1:{ui_port}\"\n{home}\n[[api.user]]\nname = \"{USER}\"\npassword_hash = \"{}\"\nrole = \"admin\"\n\n\
             [[api.token]]\nname = \"automation\"\nsha256 = \"{}\"\nrole = \"admin\"\n",
            tidegate_collector::api::auth::hash_password_with(PASSWORD, 4096, 1, 1),
            sha256_hex(TOKEN)
        );
        let analysis = analysis.then(Analysis::new);
        if let Some(a) = &analysis {
            extra.push_str(&format!("\n{}", a.config()));
        }
        extra.push_str(more);
        let c = Console {
            url: format!("{scheme}://127.0.0.1:{ui_port}"),
            stack: Stack::start_with(StackOptions {
                extra,
                ..StackOptions::default()
            }),
            records: Vec::new(),
            _analysis: analysis,
        };
        // Every migration applied: the API reads columns the last ones add.
        c.stack.wait_for_schema();
        c
    }

    /// Replays `captures` through a probe exporter (probe `edge-1`) and waits until
    /// ClickHouse holds every record and the alert and violation tables stop changing.
    pub fn seed(&mut self, captures: &[&str]) {
        self.seed_keyed(captures, tidegate_common::Tunnels::Outer);
    }

    /// [`Console::seed`] keying tunnelled packets as `tunnels` says.
    pub fn seed_keyed(&mut self, captures: &[&str], tunnels: tidegate_common::Tunnels) {
        self.records
            .extend(self.stack.replay_keyed("edge-1", captures, tunnels));
        self.stack
            .wait_for_flows(self.records.len() as u64, Duration::from_secs(90));
        wait_settled(&self.stack);
    }

    /// `$TIDEGATE_STATE` or `<repo>/target`: where screenshots and reports go.
    pub fn artifacts(name: &str) -> PathBuf {
        tidegate_testkit::paths::artifacts(name)
    }

    /// The temporary directory of this console.
    pub fn dir(&self) -> &Path {
        self.stack.dir()
    }
}

pub use tidegate_testkit::block_on;

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as JSON of a 200 answer (panics naming `what` otherwise).
    pub fn json_ok(&self, what: &str) -> serde_json::Value {
        assert_eq!(
            self.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Waits until `stack`'s alert and violation tables are non-empty and stop changing
/// (alerts close when event time passes their windows; idle lines advance with the wall
/// clock).
pub fn wait_settled(stack: &Stack) {
    block_on(async {
        // Alerts close when event time passes their windows (idle lines advance with
        // the wall clock): wait until both tables are non-empty and stable.
        let deadline = Instant::now() + Duration::from_secs(150);
        let mut last = String::new();
        let mut stable_since = Instant::now();
        loop {
            let now = stack
                .ch
                .query(
                    "SELECT (SELECT count() FROM tidegate.alerts FINAL), (SELECT count() FROM tidegate.policy_violations FINAL), \
                     (SELECT max(version) FROM tidegate.alerts), (SELECT count() FROM tidegate.probe_health)",
                )
                .await;
            if now != last {
                eprintln!(
                    "wait_settled: alerts, violations, max alert version, health rows = {now:?}"
                );
                last = now.clone();
                stable_since = Instant::now();
            }
            let nonempty = !now.starts_with("0\t") && now.split('\t').nth(1) != Some("0");
            if nonempty && stable_since.elapsed() > Duration::from_secs(6) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "alerts/violations never settled: {now}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// One HTTP/1.0 request to `base` + `path` (loopback only; no client crate needed).
pub async fn http(
    method: &str,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.strip_prefix("http://").unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut buf))
        .await
        .expect("response within 120 s")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

/// GET with the bearer token.
pub async fn api(base: &str, path: &str) -> Resp {
    http(
        "GET",
        base,
        path,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        None,
    )
    .await
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
