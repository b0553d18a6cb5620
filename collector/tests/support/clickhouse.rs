//! A throwaway ClickHouse server for one test: the repository's launcher
//! (`scripts/clickhouse.sh`, ClickHouse 26.9 from chdb-core in `.state/venv`) with its data
//! in a temporary directory and its HTTP interface on a free port. Stopped (and its data
//! deleted) when dropped.
//!
//! Include it with `#[path = "support/clickhouse.rs"] mod clickhouse_support;`.

#![allow(dead_code)] // each test file uses a different subset

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

/// A running (or stopped) ClickHouse of one test.
pub struct TestClickHouse {
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/clickhouse.sh")
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl TestClickHouse {
    /// Starts a server with an empty data directory; returns once `/ping` answers.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tidegate-ch-test-")
            .tempdir()
            .expect("create a temporary directory");
        let mut ch = TestClickHouse {
            dir,
            port: free_port(),
            running: false,
        };
        ch.resume();
        ch
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn run(&self, cmd: &str) -> Output {
        Command::new("bash")
            .arg(script())
            .arg(cmd)
            .env("TIDEGATE_CH_DIR", self.dir.path())
            .env("TIDEGATE_CH_PORT", self.port.to_string())
            .output()
            .unwrap_or_else(|e| panic!("run {} {cmd}: {e}", script().display()))
    }

    /// Stops the server (SIGTERM, clean shutdown); its data stays for [`Self::resume`].
    pub fn stop(&mut self) {
        let out = self.run("stop");
        assert!(
            out.status.success(),
            "clickhouse.sh stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
    }

    /// Starts the server again on the same port and data; returns once `/ping` answers.
    pub fn resume(&mut self) {
        let started = Instant::now();
        let out = self.run("start");
        assert!(
            out.status.success(),
            "clickhouse.sh start (dir {}, port {}) failed after {:?}:\n{}",
            self.dir.path().display(),
            self.port,
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }

    /// A client of this server (no default database).
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default().with_url(self.url())
    }

    /// Runs `sql` and returns its TabSeparatedRaw output without the final newline (panics
    /// on error: test setup).
    pub async fn query(&self, sql: &str) -> String {
        let mut cursor = self
            .client()
            .query_raw(sql)
            .fetch_bytes("TabSeparatedRaw")
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let bytes = cursor
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        String::from_utf8_lossy(&bytes)
            .trim_end_matches('\n')
            .to_string()
    }

    /// Runs a statement (panics on error: test setup).
    pub async fn exec(&self, sql: &str) {
        self.client()
            .query_raw(sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for TestClickHouse {
    fn drop(&mut self) {
        if self.running {
            let out = self.run("stop");
            if !out.status.success() {
                eprintln!(
                    "clickhouse.sh stop failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes; returns the last result.
pub async fn eventually(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `../shared/corpus/pcap/<name>` from the repository root.
pub fn corpus_pcap(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/pcap")
        .join(name)
}

/// The flow records of real captures, replayed by the probe with its default timeouts:
/// `ndpi-1kxun.pcap` (IPv4 and IPv6, untagged) on line `hk-intl-1`, `ndpi-vxlan.pcap`
/// (VLAN 5) on `sg-intl-2`, `ndpi-icmp-tunnel.pcap` (ICMP) on `mo-intl-3`,
/// `ndpi-steam.pcapng` (nanosecond timestamps) on `tw-intl-4`.
pub fn corpus_records() -> Vec<tidegate_wire::record::FlowRecord> {
    use tidegate_probe::{capture::pcap::Replay, table::Timeouts};
    let mut records = Vec::new();
    let mut replay = Replay::new(Timeouts::default());
    for (file, line) in [
        ("ndpi-1kxun.pcap", "hk-intl-1"),
        ("ndpi-vxlan.pcap", "sg-intl-2"),
        ("ndpi-icmp-tunnel.pcap", "mo-intl-3"),
        ("ndpi-steam.pcapng", "tw-intl-4"),
    ] {
        let path = corpus_pcap(file);
        let report = replay
            .replay_file(&path, line, &mut records)
            .unwrap_or_else(|e| panic!("replay {}: {e}", path.display()));
        assert!(
            report.error.is_none(),
            "{}: {:?}",
            path.display(),
            report.error
        );
    }
    replay.finish(&mut records).expect("flush the replay");
    records
}
