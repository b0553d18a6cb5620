//! The `tidegate-probe` binary under test: one-shot runs (`replay`, errors) and
//! `tidegate-probe run` as a real process inside a namespace.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use tidegate_testkit::net::VethPair;

/// A running probe process; its stdout (JSON records) and stderr are collected.
pub struct ProbeProcess {
    child: Child,
    stdout: thread::JoinHandle<String>,
    stderr_lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

/// The probe binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tidegate-probe")
}

impl ProbeProcess {
    /// `ip netns exec NS tidegate-probe ARGS...`; waits until it says it is capturing.
    pub fn start(ns: &str, args: &[&str]) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, bin()])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn probe");
        let mut out = child.stdout.take().unwrap();
        let stdout = thread::spawn(move || {
            let mut s = String::new();
            out.read_to_string(&mut s).unwrap();
            s
        });
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut p = ProbeProcess {
            child,
            stdout,
            stderr_lines: rx,
            stderr: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match p.stderr_lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let ready = l.contains("capturing");
                    p.stderr.push(l);
                    if ready {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = p.child.try_wait() {
                        panic!("probe exited early ({st}): {}", p.drain_stderr().join("\n"));
                    }
                    assert!(Instant::now() < deadline, "probe not ready: {:?}", p.stderr);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = p.child.wait().unwrap();
                    panic!("probe exited early ({st}): {}", p.stderr.join("\n"));
                }
            }
        }
        p
    }

    /// `tidegate-probe run --iface <pair.if_b> ARGS...` in `pair.ns_b`; waits until it says
    /// it is capturing.
    pub fn run_on(pair: &VethPair, args: &[&str]) -> Self {
        let mut all = vec!["run", "--iface", pair.if_b.as_str()];
        all.extend_from_slice(args);
        Self::start(&pair.ns_b, &all)
    }

    /// The probe's process id (`ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn drain_stderr(&mut self) -> Vec<String> {
        while let Ok(l) = self.stderr_lines.recv_timeout(Duration::from_millis(200)) {
            self.stderr.push(l);
        }
        self.stderr.clone()
    }

    /// Sends SIGINT, waits for exit, returns (exit code, records, stderr lines).
    pub fn stop(mut self) -> (i32, Vec<Value>, Vec<String>) {
        // `ip netns exec` execs the probe, so the child pid is the probe.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait().unwrap();
        let err = self.drain_stderr();
        let out = self.stdout.join().unwrap();
        let records = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
            .collect();
        (st.code().unwrap_or(-1), records, err)
    }
}

impl ProbeProcess {
    /// Sends SIGKILL (no chance to export or flush), waits for it, returns stderr lines.
    pub fn kill(mut self) -> Vec<String> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        self.child.wait().unwrap();
        self.drain_stderr()
    }
}

/// The `run` arguments that send `probe`'s records to the collector at `addr` over
/// mutual TLS with the test PKI, spooling in `spool`.
pub fn collector_args(
    certs: &tidegate_testkit::certs::Certs,
    probe: &str,
    addr: &str,
    spool: &std::path::Path,
) -> Vec<String> {
    let p = certs.probe(probe);
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_string();
    [
        ("--probe-id", probe.to_string()),
        ("--collector", addr.to_string()),
        ("--tls-ca", path(&certs.ca().cert)),
        ("--tls-cert", path(&p.cert)),
        ("--tls-key", path(&p.key)),
        ("--spool-dir", path(spool)),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect()
}

/// Result of one `tidegate-probe` run.
pub struct Run {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Records printed on stdout.
    pub records: Vec<serde_json::Value>,
    /// Raw stdout.
    pub stdout: String,
    /// stderr with ANSI colour sequences removed.
    pub stderr: String,
}

impl Run {
    /// stderr lines that report an error.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("error"))
            .collect()
    }

    /// The one stderr line that reports an error (panics unless there is exactly one).
    pub fn error_line(&self) -> &str {
        let errs = self.error_lines();
        assert_eq!(
            errs.len(),
            1,
            "exactly one error line expected:\n{}",
            self.stderr
        );
        errs[0]
    }

    /// Packets over all records.
    pub fn packets(&self) -> u64 {
        self.records
            .iter()
            .map(|r| r["packets"].as_u64().unwrap())
            .sum()
    }

    /// The counters of the per-file summary line logged for `file` (by its file name).
    pub fn summary(&self, file: &str) -> BTreeMap<String, u64> {
        let line = self
            .stderr
            .lines()
            .find(|l| l.contains("replayed:") && l.contains(file))
            .unwrap_or_else(|| panic!("no summary for {file} in stderr:\n{}", self.stderr));
        let names: Vec<&str> = tidegate_common::Counter::ALL
            .iter()
            .map(|c| c.name())
            .collect();
        line.split_whitespace()
            .filter_map(|t| t.split_once('='))
            .filter(|(k, _)| names.contains(k))
            .map(|(k, v)| (k.to_string(), v.parse().expect("counter value")))
            .collect()
    }
}

/// Removes ANSI escape sequences (the log formatter may colour its output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            it.next();
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `tidegate-probe` with `args` (RUST_LOG unset, so the default info level).
pub fn run_probe(args: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run tidegate-probe");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    let records = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}"))
        })
        .collect();
    Run {
        code: out.status.code(),
        records,
        stdout,
        stderr,
    }
}
