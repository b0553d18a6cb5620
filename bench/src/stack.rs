//! A throwaway tidegate stack for end-to-end benchmarks: a local ClickHouse from the
//! repository's launcher and a `tidegate-collector run` process, optionally inside a
//! network namespace (so a probe attached to a veth end in that namespace reaches them on
//! its loopback). Both stop on drop.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};

use crate::net::ChildGuard;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `cmd` prefixed with `ip netns exec NS` when `ns` is given.
pub fn in_netns(ns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A release binary of this workspace next to the running benchmark.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?.with_file_name(name);
    ensure!(
        exe.is_file(),
        "{} missing: cargo build --release -p tidegate-probe -p tidegate-collector",
        exe.display()
    );
    Ok(exe)
}

/// A local ClickHouse (scripts/clickhouse.sh) with its data in a temporary directory.
pub struct LocalClickHouse {
    dir: tempfile::TempDir,
    port: u16,
    ns: Option<String>,
}

impl LocalClickHouse {
    /// Starts it on a free port, inside `ns` if given.
    pub fn start(ns: Option<&str>) -> anyhow::Result<LocalClickHouse> {
        let ch = LocalClickHouse {
            dir: tempfile::tempdir()?,
            port: free_port()?,
            ns: ns.map(str::to_string),
        };
        let st = ch.script("start").status()?;
        ensure!(st.success(), "scripts/clickhouse.sh start failed");
        Ok(ch)
    }

    fn script(&self, cmd: &str) -> Command {
        let mut c = in_netns(self.ns.as_deref(), repo().join("scripts/clickhouse.sh"));
        c.arg(cmd)
            .env("TIDEGATE_CH_DIR", self.dir.path())
            .env("TIDEGATE_CH_PORT", self.port.to_string())
            .stdout(Stdio::null());
        c
    }

    /// `http://127.0.0.1:PORT` (reachable from inside its namespace).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `sql` with curl from inside the namespace; the answer, trimmed.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        let out = in_netns(self.ns.as_deref(), "curl")
            .args([
                "-sS",
                "--fail-with-body",
                &format!("{}/", self.url()),
                "--data-binary",
                sql,
            ])
            .output()
            .context("curl (apt-get install curl)")?;
        ensure!(
            out.status.success(),
            "ClickHouse: {}: {}",
            sql,
            String::from_utf8_lossy(&out.stdout).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for LocalClickHouse {
    fn drop(&mut self) {
        let _ = self.script("stop").status();
    }
}

/// A running `tidegate-collector run` and its configuration directory.
pub struct CollectorProcess {
    /// The process (SIGTERM on drop).
    pub child: ChildGuard,
    /// Probe-facing port on 127.0.0.1.
    pub port: u16,
    /// Certificates from `gen-certs` (`ca.pem`, `probe-<id>.pem`, ...).
    pub certs: PathBuf,
}

impl CollectorProcess {
    /// Writes `dir/collector.toml` (transport on a free port, spool in `dir/spool`,
    /// ClickHouse at `ch_url`, then `extra` TOML sections), generates certificates for
    /// `probe_id` and starts the collector (inside `ns` if given); returns once it accepts
    /// probes and the schema is ready.
    pub fn start(
        dir: &Path,
        ns: Option<&str>,
        ch_url: &str,
        probe_id: &str,
        extra: &str,
    ) -> anyhow::Result<CollectorProcess> {
        let exe = sibling_binary("tidegate-collector")?;
        let certs = dir.join("certs");
        let st = Command::new(&exe)
            .args(["gen-certs", "--out"])
            .arg(&certs)
            .args(["--probe", probe_id])
            .stdout(Stdio::null())
            .status()?;
        ensure!(st.success(), "tidegate-collector gen-certs failed");
        let port = free_port()?;
        let cfg = format!(
            "[transport]\nlisten = \"127.0.0.1:{port}\"\nca_cert = \"certs/ca.pem\"\n\
             cert = \"certs/collector.pem\"\nkey = \"certs/collector.key\"\n\n\
             [spool]\ndir = \"spool\"\n\n[clickhouse]\nurl = \"{ch_url}\"\nretention_days = 0\n\n{extra}"
        );
        let path = dir.join("collector.toml");
        std::fs::write(&path, cfg)?;
        let mut child = in_netns(ns, &exe)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let err = child.stderr.take().context("stderr")?;
        let child = ChildGuard::new(child);
        let (tx, rx) = std::sync::mpsc::channel();
        let log = dir.join("collector.log");
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(log).ok();
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{l}");
                }
                let _ = tx.send(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ready = (false, false);
        while !(ready.0 && ready.1) {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    ready.0 |= l.contains("collector accepting probes");
                    ready.1 |= l.contains("ClickHouse schema ready");
                }
                Err(_) if Instant::now() > deadline => bail!("collector did not get ready"),
                Err(_) => {}
            }
        }
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Ok(CollectorProcess { child, port, certs })
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.child.signal(libc::SIGTERM);
        self.child.wait_timeout(Duration::from_secs(40));
    }
}
