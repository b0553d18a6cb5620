//! A real `tidegate-collector run` process with generated certificates, and a probe-side
//! exporter talking to it (the probe library, as `tidegate-probe replay --collector` uses it).
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use tidegate_collector::certs::{
    GenCertsOptions, ca_paths, collector_paths, generate, probe_paths,
};
use tidegate_probe::{
    capture::pcap::Replay,
    export::{
        Exporter,
        collector::{CollectorExporter, CollectorOptions, ExportMetrics},
    },
    table::Timeouts,
};
use tidegate_wire::record::FlowRecord;

/// Certificates for a collector and probes `edge-1`, `edge-2`.
pub fn certs(dir: &Path) -> PathBuf {
    let out = dir.join("certs");
    generate(&GenCertsOptions {
        out: out.clone(),
        probes: vec!["edge-1".into(), "edge-2".into()],
        collector_names: vec![],
        collector_ips: vec![],
        force: false,
    })
    .expect("generate certificates");
    out
}

/// A collector process.
pub struct CollectorProcess {
    child: Option<Child>,
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub log: mpsc::Receiver<String>,
}

/// Writes a collector config in `dir` for ClickHouse at `ch_url`; the spool lives in
/// `dir/spool` so restarts reuse it.
pub fn write_config(dir: &Path, certs: &Path, port: u16, ch_url: &str) -> PathBuf {
    write_config_with_metrics(dir, certs, port, ch_url, None)
}

/// Like [`write_config`], with the Prometheus endpoint on `metrics_port`.
pub fn write_config_with_metrics(
    dir: &Path,
    certs: &Path,
    port: u16,
    ch_url: &str,
    metrics_port: Option<u16>,
) -> PathBuf {
    let ca = ca_paths(certs);
    let c = collector_paths(certs);
    let metrics = metrics_port
        .map(|p| format!("[collector]\nmetrics_listen = \"127.0.0.1:{p}\"\n\n"))
        .unwrap_or_default();
    let cfg = format!(
        "{metrics}[transport]\nlisten = \"127.0.0.1:{port}\"\nca_cert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [spool]\ndir = \"{}\"\nmax_bytes = 1073741824\nsegment_bytes = 4194304\n\n\
         [clickhouse]\nurl = \"{ch_url}\"\ndatabase = \"tidegate\"\nretention_days = 0\n\n\
         [aggregate]\nshards = 2\n",
        ca.cert.display(),
        c.cert.display(),
        c.key.display(),
        dir.join("spool").display()
    );
    let p = dir.join("collector.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

impl CollectorProcess {
    /// Starts `tidegate-collector run --config FILE`; returns once it accepts probes.
    pub fn start(config: &Path, addr: SocketAddr) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn collector");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[collector] {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains("collector accepting probes") => break,
                Ok(_) => {}
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!("collector exited early: {st}");
                    }
                    assert!(Instant::now() < deadline, "collector did not start");
                }
            }
        }
        CollectorProcess {
            child: Some(child),
            config: config.to_path_buf(),
            addr,
            log: rx,
        }
    }

    /// SIGKILL: no chance to drain or flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the running process.
    #[allow(dead_code)]
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Waits up to `limit` for a log line containing `needle`.
    #[allow(dead_code)]
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
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options for probe `id` sending to `addr`, spooling in `spool`.
pub fn probe_options(certs: &Path, id: &str, addr: SocketAddr, spool: &Path) -> CollectorOptions {
    let p = probe_paths(certs, id);
    let mut o = CollectorOptions::new(
        addr.to_string(),
        id,
        ca_paths(certs).cert,
        p.cert,
        p.key,
        spool.to_path_buf(),
    );
    o.batch_records = 2000;
    o.backoff_max = Duration::from_millis(500);
    o
}

/// Replays corpus captures (each on a line named after it) into `exporter`, and also
/// returns the records so tests can compare.
pub fn replay_into(files: &[&str], exporter: &mut dyn Exporter) -> Vec<FlowRecord> {
    let mut all: Vec<FlowRecord> = Vec::new();
    let mut replay = Replay::new(Timeouts::default());
    let mut tee = Tee {
        a: exporter,
        b: &mut all,
    };
    for f in files {
        let path = corpus(f);
        let line = f.split('.').next().unwrap();
        let r = replay.replay_file(&path, line, &mut tee).expect("replay");
        assert!(r.error.is_none(), "{f}: {:?}", r.error);
    }
    replay.finish(&mut tee).expect("flush");
    all
}

struct Tee<'a> {
    a: &'a mut dyn Exporter,
    b: &'a mut Vec<FlowRecord>,
}

impl Exporter for Tee<'_> {
    fn export(&mut self, rec: &FlowRecord) -> std::io::Result<()> {
        self.b.push(rec.clone());
        self.a.export(rec)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.a.flush()
    }
}

/// `../shared/corpus/pcap/NAME`.
pub fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/pcap")
        .join(name)
}

/// Starts an exporter.
pub fn exporter(o: CollectorOptions) -> CollectorExporter {
    CollectorExporter::start(o, ExportMetrics::default()).expect("start exporter")
}
