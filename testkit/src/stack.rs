//! A whole throwaway deployment for one test: a temporary directory, a ClickHouse,
//! certificates, a `tidegate-collector run` process, and probe exporters.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tidegate_probe::export::collector::{CollectorExporter, CollectorOptions};
use tidegate_wire::record::FlowRecord;

use crate::{
    certs::Certs,
    clickhouse::TestClickHouse,
    collector::{CollectorConfig, CollectorProcess},
    ports::free_port,
    probe::{exporter, probe_options, replay_into_keyed},
    wait::{block_on, eventually_async},
};

/// Probe ids the stack has certificates for.
pub const PROBES: [&str; 2] = ["edge-1", "edge-2"];

/// A running stack. Dropping it stops the collector (SIGKILL) and ClickHouse and
/// deletes the directory.
pub struct Stack {
    /// The collector process.
    pub collector: CollectorProcess,
    /// Its configuration.
    pub config: CollectorConfig,
    /// The ClickHouse it writes to.
    pub ch: TestClickHouse,
    /// Certificates for the collector and probes `edge-1`, `edge-2`.
    pub certs: Certs,
    dir: tempfile::TempDir,
}

/// What [`Stack::start_with`] changes from the defaults.
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// More collector configuration (`[api]`, `[policy]`, ...); relative paths in it are
    /// relative to [`Stack::dir`].
    pub extra: String,
    /// Serve Prometheus metrics on a free port.
    pub metrics: bool,
    /// `spool.max_bytes` and `spool.segment_bytes` (see [`CollectorConfig::spool_bytes`]).
    pub spool_bytes: Option<(u64, u64)>,
}

impl Stack {
    /// Starts ClickHouse, generates certificates and starts the collector with the test
    /// configuration; returns once the collector accepts probes.
    pub fn start() -> Stack {
        Self::start_with(StackOptions::default())
    }

    /// [`Self::start`] with options.
    pub fn start_with(opts: StackOptions) -> Stack {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ch = TestClickHouse::start();
        let certs = Certs::generate(&dir.path().join("certs"), &PROBES);
        let mut config = CollectorConfig::new(dir.path(), &certs, free_port(), &ch.url());
        config.extra = opts.extra;
        config.spool_bytes = opts.spool_bytes;
        if opts.metrics {
            config.metrics_port = Some(free_port());
        }
        let path = config.write(dir.path());
        let collector = CollectorProcess::start(&path, config.addr());
        Stack {
            collector,
            config,
            ch,
            certs,
            dir,
        }
    }

    /// The stack's directory (configuration, certificates, spools).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The collector's configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("collector.toml")
    }

    /// Restarts the collector process on the same configuration and spool (after a
    /// [`CollectorProcess::kill`] or `stop`).
    pub fn restart_collector(&mut self) {
        self.collector.kill();
        self.collector = CollectorProcess::start(&self.config_path(), self.config.addr());
    }

    /// An exporter for probe `id` spooling in `<dir>/spool-<id>`.
    pub fn exporter(&self, id: &str) -> CollectorExporter {
        exporter(self.exporter_options(id))
    }

    /// The options of [`Stack::exporter`].
    pub fn exporter_options(&self, id: &str) -> CollectorOptions {
        let spool = self.dir.path().join(format!("spool-{id}"));
        probe_options(&self.certs, id, self.config.addr(), &spool)
    }

    /// Replays corpus captures through probe `id` (each capture on a line named after
    /// it, the lines the probe reports in its health), waits until every batch is
    /// acknowledged; returns the records sent.
    pub fn replay(&self, id: &str, captures: &[&str]) -> Vec<FlowRecord> {
        self.replay_keyed(id, captures, tidegate_common::Tunnels::Outer)
    }

    /// [`Stack::replay`] keying tunnelled packets as `tunnels` says.
    pub fn replay_keyed(
        &self,
        id: &str,
        captures: &[&str],
        tunnels: tidegate_common::Tunnels,
    ) -> Vec<FlowRecord> {
        // The probe reports the captures' lines in its health, as a probe reports the
        // lines it captures on.
        let mut o = self.exporter_options(id);
        o.lines = captures
            .iter()
            .map(|f| crate::probe::capture_line(f).to_string())
            .collect();
        let mut ex = exporter(o);
        let records = replay_into_keyed(captures, &mut ex, tunnels);
        let rep = ex
            .finish(Duration::from_secs(60))
            .expect("finish the exporter");
        assert_eq!(rep.left_batches, 0, "every batch acknowledged");
        records
    }

    /// Waits until the collector has made its ClickHouse schema (migrations run in the
    /// background after start); panics after 60 s.
    pub fn wait_for_schema(&self) {
        let all = tidegate_collector::sinks::clickhouse::migrations::MIGRATIONS.len();
        let ok = block_on(eventually_async(Duration::from_secs(60), async || {
            // Each migration is recorded once it has been applied.
            let exists = self
                .ch
                .query("EXISTS TABLE tidegate.schema_migrations")
                .await;
            exists.trim() == "1"
                && self
                    .ch
                    .query("SELECT uniqExact(version) FROM tidegate.schema_migrations")
                    .await
                    .trim()
                    .parse::<usize>()
                    .unwrap_or(0)
                    >= all
        }));
        assert!(
            ok,
            "the collector did not make its ClickHouse schema within 60 s"
        );
    }

    /// Asserts that `tidegate.flows` holds, for `probe` on each line, exactly the
    /// (rows, packets, bytes) wanted (e.g. [`crate::probe::replay_totals`] of its capture).
    pub fn assert_line_totals<L: AsRef<str>>(&self, probe: &str, want: &[(L, (u64, u64, u64))]) {
        for (line, (n, packets, bytes)) in want {
            let line = line.as_ref();
            let got = self
                .ch
                .query_sync(&format!(
                    "SELECT count(), sum(packets), sum(bytes) FROM tidegate.flows \
                     WHERE probe_id = '{probe}' AND line = '{line}' FORMAT TSV"
                ))
                .expect("query flows");
            assert_eq!(
                got.trim(),
                format!("{n}\t{packets}\t{bytes}"),
                "line {line}: stored (rows, packets, bytes) differ from what the probe made"
            );
        }
    }

    /// Waits until `tidegate.flows` holds at least `n` rows; panics after `timeout`.
    pub fn wait_for_flows(&self, n: u64, timeout: Duration) {
        self.wait_for_schema();
        let ok = block_on(eventually_async(timeout, async || {
            self.ch
                .query("SELECT count() FROM tidegate.flows")
                .await
                .parse::<u64>()
                .unwrap_or(0)
                >= n
        }));
        assert!(
            ok,
            "ClickHouse did not get {n} flow rows within {timeout:?}"
        );
    }
}
