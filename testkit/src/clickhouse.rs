//! A throwaway ClickHouse: the repository's launcher (`scripts/clickhouse.sh`,
//! ClickHouse 26.9 from chdb-core) with its data in a temporary directory and its HTTP
//! interface on a free loopback port, optionally inside a network namespace. Stopped (and
//! its data deleted) when dropped.

use std::{
    process::{Output, Stdio},
    time::Instant,
};

use anyhow::{Context, ensure};

use crate::{net::in_netns, paths::script, ports::free_port};

/// A running (or stopped) ClickHouse of one test or benchmark.
pub struct TestClickHouse {
    dir: tempfile::TempDir,
    port: u16,
    ns: Option<String>,
    running: bool,
    /// Native TCP port, when open (a cluster node).
    tcp_port: Option<u16>,
    /// `NAME:PORT,...` of the cluster this node knows.
    cluster: Option<String>,
}

/// Several servers on loopback forming one sharded cluster (one replica per shard: this
/// ClickHouse build has no Keeper) — what `Distributed` tables and the collector's
/// cluster layout run on in tests and benchmarks.
pub struct TestCluster {
    /// Cluster name (in every node's `<remote_servers>`).
    pub name: String,
    /// The nodes, shard 1 first.
    pub nodes: Vec<TestClickHouse>,
}

impl TestCluster {
    /// Starts `shards` servers that all know cluster `name` (panics when it cannot).
    pub fn start(name: &str, shards: usize) -> Self {
        let tcp: Vec<u16> = (0..shards).map(|_| free_port()).collect();
        let spec = format!(
            "{name}:{}",
            tcp.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
        );
        let nodes = tcp
            .iter()
            .map(|&t| {
                TestClickHouse::try_start_node(None, Some(t), Some(spec.clone()))
                    .unwrap_or_else(|e| panic!("{e:#}"))
            })
            .collect();
        TestCluster {
            name: name.to_string(),
            nodes,
        }
    }

    /// Every node's HTTP URL, shard 1 first.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(TestClickHouse::url).collect()
    }

    /// The sink's configuration for database `db` on this cluster, through node `via`
    /// (the typed twin of [`collector_toml`](Self::collector_toml)); flows kept forever,
    /// 30 s per statement.
    pub fn sink_config(
        &self,
        via: usize,
        db: &str,
    ) -> tidegate_collector::sinks::clickhouse::ClickHouseConfig {
        use tidegate_collector::sinks::clickhouse::{ClickHouseConfig, ClusterConfig, Ddl};
        ClickHouseConfig {
            url: self.nodes[via].url(),
            database: db.to_string(),
            retention_days: 0,
            insert_timeout: std::time::Duration::from_secs(30),
            cluster: Some(ClusterConfig {
                name: self.name.clone(),
                replicated: false,
                ddl: Ddl::EachNode,
                nodes: self.urls(),
            }),
            ..Default::default()
        }
    }

    /// Rows of `db.flows_local` on each node, shard 1 first (panics on error: test set-up).
    pub async fn shard_rows(&self, db: &str) -> Vec<u64> {
        let mut rows = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            rows.push(
                n.query(&format!("SELECT count() FROM {db}.flows_local"))
                    .await
                    .parse()
                    .expect("a count"),
            );
        }
        rows
    }

    /// The collector's `[clickhouse.cluster]` table for this cluster (no Keeper here:
    /// plain MergeTree shards, the collector running the DDL on each node).
    pub fn collector_toml(&self) -> String {
        format!(
            "[clickhouse.cluster]\nname = \"{}\"\nreplicated = false\nddl = \"each_node\"\nnodes = [{}]\n",
            self.name,
            self.urls()
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl TestClickHouse {
    /// Starts a server with an empty data directory; returns once `/ping` answers.
    /// Panics when it cannot (test set-up).
    pub fn start() -> Self {
        Self::try_start_in(None).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts a server inside network namespace `ns` (its loopback), or in this one.
    pub fn try_start_in(ns: Option<&str>) -> anyhow::Result<Self> {
        Self::try_start_node(ns, None, None)
    }

    /// A server that also opens native TCP on `tcp_port` and knows `cluster`
    /// (`NAME:PORT,...`, see `scripts/clickhouse.sh`).
    pub fn try_start_node(
        ns: Option<&str>,
        tcp_port: Option<u16>,
        cluster: Option<String>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tidegate-ch-test-")
            .tempdir()
            .context("create a temporary directory")?;
        let mut ch = TestClickHouse {
            dir,
            port: free_port(),
            ns: ns.map(str::to_string),
            running: false,
            tcp_port,
            cluster,
        };
        ch.try_resume()?;
        Ok(ch)
    }

    /// `http://127.0.0.1:<port>` (inside its namespace when it has one).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (from its pid file), while it runs.
    pub fn pid(&self) -> Option<u32> {
        let s = std::fs::read_to_string(self.dir.path().join("server.pid")).ok()?;
        s.trim().parse().ok().filter(|_| self.running)
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn run(&self, cmd: &str) -> std::io::Result<Output> {
        let mut c = in_netns(self.ns.as_deref(), "bash");
        c.arg(script("clickhouse.sh"))
            .arg(cmd)
            .env("TIDEGATE_CH_DIR", self.dir.path())
            .env("TIDEGATE_CH_PORT", self.port.to_string())
            .env(
                "TIDEGATE_CH_TCP_PORT",
                self.tcp_port.map(|p| p.to_string()).unwrap_or_default(),
            )
            .env(
                "TIDEGATE_CH_CLUSTER",
                self.cluster.clone().unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .output()
    }

    /// Stops the server (SIGTERM, clean shutdown); its data stays for [`Self::resume`].
    pub fn stop(&mut self) {
        let out = self.run("stop").expect("run clickhouse.sh stop");
        assert!(
            out.status.success(),
            "clickhouse.sh stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
    }

    /// Starts the server again on the same port and data; returns once `/ping` answers.
    pub fn resume(&mut self) {
        self.try_resume().unwrap_or_else(|e| panic!("{e:#}"));
    }

    fn try_resume(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let out = self
            .run("start")
            .context("run scripts/clickhouse.sh start")?;
        ensure!(
            out.status.success(),
            "clickhouse.sh start (dir {}, port {}) failed after {:?}:\n{}",
            self.dir.path().display(),
            self.port,
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
        Ok(())
    }

    /// A client of this server (no default database). Only for a server in this
    /// namespace; see [`Self::query_sync`] for one inside a namespace.
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default().with_url(self.url())
    }

    /// Runs `sql` and returns its TabSeparatedRaw output without the final newline
    /// (panics on error: test set-up).
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

    /// Runs a statement (panics on error: test set-up).
    pub async fn exec(&self, sql: &str) {
        self.client()
            .query_raw(sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs `sql` with curl from the server's namespace (no runtime needed); the
    /// answer, trimmed.
    pub fn query_sync(&self, sql: &str) -> anyhow::Result<String> {
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

impl Drop for TestClickHouse {
    fn drop(&mut self) {
        if self.running {
            match self.run("stop") {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "clickhouse.sh stop failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("clickhouse.sh stop: {e}"),
            }
        }
    }
}
