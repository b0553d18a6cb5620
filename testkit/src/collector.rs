//! A real `tidegate-collector run` process and the configuration file it reads.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{certs::Certs, net::in_netns, paths::bin};

/// What goes into a test's `collector.toml`.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Probe-facing port on 127.0.0.1.
    pub port: u16,
    /// Certificates (`ca.pem`, `collector.pem`, `collector.key`).
    pub certs: PathBuf,
    /// Spool directory (kept across restarts of the process).
    pub spool: PathBuf,
    /// ClickHouse URL.
    pub clickhouse: String,
    /// Prometheus endpoint port, if any.
    pub metrics_port: Option<u16>,
    /// Small spool segments and two aggregation shards (tests); off: the defaults
    /// (benchmarks measure the collector as deployed).
    pub small: bool,
    /// More TOML appended as is (`[api]`, `[policy]`, ...).
    pub extra: String,
    /// `clickhouse.retention_days` (tests keep flows forever: 0).
    pub retention_days: u32,
    /// More `[clickhouse]` settings, as TOML lines (e.g. `compression = "none"\n`).
    pub clickhouse_extra: String,
    /// `spool.max_bytes` and `spool.segment_bytes` instead of the test sizes, for tests
    /// that fill the spool. Like `small`, it also sets two aggregation shards and
    /// `transport.max_frame_bytes` to the largest frame a segment holds.
    pub spool_bytes: Option<(u64, u64)>,
}

impl CollectorConfig {
    /// A test configuration: spool in `dir/spool`, ClickHouse at `clickhouse`, flows kept
    /// forever (`retention_days = 0`, replays of old captures stay).
    pub fn new(dir: &Path, certs: &Certs, port: u16, clickhouse: &str) -> Self {
        CollectorConfig {
            port,
            certs: certs.dir.clone(),
            spool: dir.join("spool"),
            clickhouse: clickhouse.to_string(),
            metrics_port: None,
            small: true,
            extra: String::new(),
            retention_days: 0,
            clickhouse_extra: String::new(),
            spool_bytes: None,
        }
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let metrics = self
            .metrics_port
            .map(|p| format!("[collector]\nmetrics_listen = \"127.0.0.1:{p}\"\n\n"))
            .unwrap_or_default();
        let (max, segment) = self.spool_bytes.unwrap_or((1 << 30, 4 << 20));
        let sized = self.small || self.spool_bytes.is_some();
        let (spool_sizes, aggregate) = if sized {
            (
                format!("max_bytes = {max}\nsegment_bytes = {segment}\n"),
                "[aggregate]\nshards = 2\n\n",
            )
        } else {
            (String::new(), "")
        };
        // Small segments hold small frames only (the collector checks it).
        let frames = if sized {
            let largest = segment - tidegate_collector::spool::MAX_ENTRY_OVERHEAD as u64;
            format!("max_frame_bytes = {largest}\n")
        } else {
            String::new()
        };
        format!(
            "{metrics}[transport]\nlisten = \"127.0.0.1:{port}\"\nca_cert = \"{ca}\"\n\
             cert = \"{cert}\"\nkey = \"{key}\"\n{frames}\n\
             [spool]\ndir = \"{spool}\"\n{spool_sizes}\n\
             [clickhouse]\nurl = \"{ch}\"\ndatabase = \"tidegate\"\nretention_days = {retention}\n{ch_extra}\n\
             {aggregate}{extra}",
            port = self.port,
            ca = self.certs.join("ca.pem").display(),
            cert = self.certs.join("collector.pem").display(),
            key = self.certs.join("collector.key").display(),
            spool = self.spool.display(),
            ch = self.clickhouse,
            retention = self.retention_days,
            ch_extra = self.clickhouse_extra,
            extra = self.extra,
        )
    }

    /// Writes `dir/collector.toml`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("collector.toml");
        std::fs::write(&p, self.render()).expect("write collector.toml");
        p
    }

    /// The probe-facing address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A collector process; its log lines arrive on [`Self::log`] (and are echoed to stderr
/// with a `[collector]` prefix, or written to a file).
pub struct CollectorProcess {
    child: Option<Child>,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its probe-facing address.
    pub addr: SocketAddr,
    /// Its log lines.
    pub log: mpsc::Receiver<String>,
}

/// How to start a collector process.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Network namespace to run in.
    pub ns: Option<String>,
    /// Write the log to this file instead of echoing it.
    pub log_file: Option<PathBuf>,
    /// Log lines that must all have appeared before start returns (default: "collector
    /// accepting probes").
    pub ready: Vec<String>,
    /// Start it with this open-file limit (soft and hard), as a small host would.
    pub open_files: Option<u64>,
    /// Start it with this umask (a careless operator's 000).
    pub umask: Option<u32>,
}

impl CollectorProcess {
    /// Starts `tidegate-collector run --config FILE`; returns once it accepts probes.
    pub fn start(config: &Path, addr: SocketAddr) -> Self {
        Self::launch(config, addr, Launch::default()).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts it as `launch` says; an error when it exits or is not ready within 60 s.
    pub fn launch(config: &Path, addr: SocketAddr, launch: Launch) -> anyhow::Result<Self> {
        let mut cmd = in_netns(launch.ns.as_deref(), bin("tidegate-collector"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(m) = launch.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(m as libc::mode_t);
                    Ok(())
                });
            }
        }
        if let Some(n) = launch.open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs before exec.
            unsafe {
                cmd.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn()?;
        let err = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let mut file = match &launch.log_file {
            Some(p) => Some(std::fs::File::create(p)?),
            None => None,
        };
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                match file.as_mut() {
                    Some(f) => {
                        let _ = writeln!(f, "{l}");
                    }
                    None => eprintln!("[collector] {l}"),
                }
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let ready = if launch.ready.is_empty() {
            vec!["collector accepting probes".to_string()]
        } else {
            launch.ready
        };
        let mut seen = vec![false; ready.len()];
        let deadline = Instant::now() + Duration::from_secs(60);
        // The last lines logged, for the error when the start fails.
        let mut tail = std::collections::VecDeque::with_capacity(20);
        while !seen.iter().all(|s| *s) {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    for (i, r) in ready.iter().enumerate() {
                        seen[i] |= l.contains(r.as_str());
                    }
                    if tail.len() == 20 {
                        tail.pop_front();
                    }
                    tail.push_back(l);
                }
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        // Whatever it logged before exiting.
                        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                            if tail.len() == 20 {
                                tail.pop_front();
                            }
                            tail.push_back(l);
                        }
                        anyhow::bail!(
                            "collector exited early: {st}; its last lines:\n{}",
                            Vec::from(tail).join("\n")
                        );
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        anyhow::bail!("collector not ready within 60 s (waiting for {ready:?})");
                    }
                }
            }
        }
        Ok(CollectorProcess {
            child: Some(child),
            config: config.to_path_buf(),
            addr,
            log: rx,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to drain or flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the running process.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Waits up to `limit` for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(l) = self.log.recv_timeout(Duration::from_millis(100))
                && l.contains(needle)
            {
                return Some(l);
            }
        }
        None
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let Some(mut c) = self.child.take() else {
            return 0;
        };
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().map(|s| s.code().unwrap_or(-1)).unwrap_or(-1)
    }

    /// Waits up to `limit` for the process to exit on its own; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then SIGKILL if it has not exited within `limit`.
    pub fn stop_within(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The collector as deployed (default spool and aggregation settings, `extra` appended),
/// with fresh certificates for `probe_id` in `dir/certs`, run inside `ns` if given, its
/// log written to `dir/collector.log`; returns once it accepts probes and its schema is
/// ready. For benchmarks, which measure what production runs.
pub fn start_deployed(
    dir: &Path,
    ns: Option<&str>,
    clickhouse: &str,
    probe_id: &str,
    extra: &str,
) -> anyhow::Result<(CollectorProcess, Certs)> {
    start_deployed_with(dir, ns, clickhouse, probe_id, |c| {
        c.extra = extra.to_string()
    })
}

/// [`start_deployed`], with the configuration edited by `edit` before it is written.
pub fn start_deployed_with(
    dir: &Path,
    ns: Option<&str>,
    clickhouse: &str,
    probe_id: &str,
    edit: impl FnOnce(&mut CollectorConfig),
) -> anyhow::Result<(CollectorProcess, Certs)> {
    let certs = Certs::generate(&dir.join("certs"), &[probe_id]);
    let mut cfg = CollectorConfig::new(dir, &certs, crate::ports::free_port(), clickhouse);
    cfg.small = false;
    edit(&mut cfg);
    Ok((launch_ready(&cfg, dir, ns)?, certs))
}

/// Writes `cfg` into `dir/collector.toml` and starts it (inside `ns` if given), its log in
/// `dir/collector.log`; returns once it accepts probes and its schema is ready.
pub fn launch_ready(
    cfg: &CollectorConfig,
    dir: &Path,
    ns: Option<&str>,
) -> anyhow::Result<CollectorProcess> {
    let path = cfg.write(dir);
    CollectorProcess::launch(
        &path,
        cfg.addr(),
        Launch {
            ns: ns.map(str::to_string),
            log_file: Some(dir.join("collector.log")),
            ready: vec![
                "collector accepting probes".into(),
                "ClickHouse schema ready".into(),
            ],
            ..Default::default()
        },
    )
}
