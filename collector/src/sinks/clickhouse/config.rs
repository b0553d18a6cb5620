//! ClickHouse sink configuration (the `[clickhouse]` table of the collector config).

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, de};

use super::error::SinkError;

/// Where and how the collector stores flows in ClickHouse.
///
/// ```toml
/// [clickhouse]
/// url = "http://127.0.0.1:8123"
/// database = "tidegate"
/// user = "default"
/// password = ""
/// retention_days = 30          # flows, flows_1m, probe_health; 0 = keep forever
/// rollup_retention_days = 0    # flows_1h; 0 = keep forever, else >= retention_days
/// max_rows_per_insert = 100000
/// insert_timeout = "30s"       # or a number of seconds
/// compression = "lz4"          # or "none" (ClickHouse on the same host or LAN)
/// dedup = "group"              # or "batch" (probes that fail over between collectors)
///
/// [clickhouse.cluster]         # a sharded cluster (see `cluster.rs`); absent: one server
/// name = "tidegate"            # the cluster in the servers' <remote_servers>
/// replicated = true            # Replicated*MergeTree tables (ClickHouse Keeper)
/// ddl = "on_cluster"           # or "each_node": run the DDL on every one of `nodes`
/// nodes = []                   # each_node: the HTTP URL of every node of the cluster
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface of the server, `http://host:port` (no path, query or credentials).
    pub url: String,
    /// Database holding tidegate's tables; created by the migrations. An identifier:
    /// `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters.
    pub database: String,
    /// ClickHouse user.
    pub user: String,
    /// Password of `user` (never printed by `Debug`).
    pub password: String,
    /// Days of raw flows (`flows`), per-minute rollups (`flows_1m`) and probe health to keep,
    /// counted from the day of each record's first packet; 0 keeps them forever. Changing
    /// it takes effect at the next start.
    pub retention_days: u32,
    /// Days of hourly rollups (`flows_1h`, the long-term record) to keep; 0 (the default)
    /// keeps them forever. Never shorter than `retention_days`: a rollup never disappears
    /// before the flows it sums.
    pub rollup_retention_days: u32,
    /// Largest number of rows sent in one INSERT; bigger batches are split, each part with
    /// its own deduplication token. Keep it unchanged while the collector's spool holds
    /// batches not yet stored: a retried batch must be split the same way to be recognised.
    pub max_rows_per_insert: usize,
    /// Deadline for one INSERT (connect, send, server-side processing) and for each
    /// migration statement; on expiry the attempt fails with a retryable error.
    #[serde(deserialize_with = "duration")]
    pub insert_timeout: Duration,
    /// How INSERT bodies travel: `auto` (the default) leaves them uncompressed when
    /// `url` names this host and LZ4-compresses them otherwise; `lz4` and `none` force
    /// one or the other (`none` also suits a server across a fast LAN).
    pub compression: Compression,
    /// What an INSERT's deduplication token names (see [`Dedup`]); default `batch` with a
    /// cluster, `group` without. Change it only while the collector's spool holds nothing
    /// unstored: a group replayed under the other kind of token is not recognised.
    pub dedup: Option<Dedup>,
    /// A sharded cluster: tables `<name>_local` on every node, `Distributed` tables named
    /// as on a single server; none: one server.
    pub cluster: Option<ClusterConfig>,
}

/// The unit an INSERT's deduplication token identifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dedup {
    /// The batches that are ready go in one INSERT whose token names where the group
    /// starts in this collector's spool: few parts, and exactly once as long as one
    /// collector stores each probe's batches.
    Group,
    /// Each probe batch is its own INSERT whose token is its probe sequence and number
    /// (`<probe>@<epoch>:<seq>`), whichever collector sends it: a batch two collectors
    /// both stored (a probe that moved to the next collector after an acknowledgement was
    /// lost) is kept once. Needed when probes list several collectors.
    Batch,
}

/// `[clickhouse.cluster]`: the schema on a ClickHouse cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name in the servers' `<remote_servers>`.
    pub name: String,
    /// `Replicated*MergeTree` local tables (Keeper paths
    /// `/clickhouse/tables/{shard}/<database>/<table>`, replica `{replica}`: the servers'
    /// macros); false: plain `MergeTree` family, one copy per shard.
    #[serde(default = "yes")]
    pub replicated: bool,
    /// How schema changes reach the nodes.
    #[serde(default)]
    pub ddl: Ddl,
    /// `ddl = "each_node"`: the HTTP URL of every node (every replica of every shard).
    #[serde(default)]
    pub nodes: Vec<String>,
}

fn yes() -> bool {
    true
}

/// How the migrations reach every node of a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ddl {
    /// `ON CLUSTER` statements sent to `url`: ClickHouse's distributed DDL queue (Keeper)
    /// runs them on every node.
    #[default]
    OnCluster,
    /// The same statements without `ON CLUSTER`, run by the collector on each of
    /// `nodes` in turn (servers without Keeper); each node records its own migrations.
    EachNode,
}

/// INSERT body compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// ClickHouse's own rule for its client and its cluster connections: none when the
    /// server is on this host (`url`'s host is `localhost` or a loopback address), where
    /// compressing costs both ends CPU and saves no bandwidth; LZ4 otherwise.
    #[default]
    Auto,
    /// LZ4.
    Lz4,
    /// None.
    None,
}

impl Compression {
    /// The compression INSERT bodies to `url` get (`Auto` resolved).
    pub fn for_url(self, url: &str) -> Compression {
        match self {
            Compression::Auto if url_host(url).is_ok_and(is_loopback) => Compression::None,
            Compression::Auto => Compression::Lz4,
            c => c,
        }
    }
}

/// Whether a URL's host (as written, IPv6 literals in brackets) is this machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".to_string(),
            database: "tidegate".to_string(),
            user: "default".to_string(),
            password: String::new(),
            retention_days: 30,
            rollup_retention_days: 0,
            max_rows_per_insert: 100_000,
            insert_timeout: Duration::from_secs(30),
            compression: Compression::Auto,
            dedup: None,
            cluster: None,
        }
    }
}

impl fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("retention_days", &self.retention_days)
            .field("rollup_retention_days", &self.rollup_retention_days)
            .field("max_rows_per_insert", &self.max_rows_per_insert)
            .field("insert_timeout", &self.insert_timeout)
            .field("compression", &self.compression)
            .field("dedup", &self.dedup)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl ClickHouseConfig {
    /// A client of the configured server with `database` as its default database. On a
    /// cluster every statement also carries what reading and writing `Distributed` tables
    /// needs: inserts are synchronous (`distributed_foreground_insert`: the answer means
    /// every shard stored its rows — the collector acknowledges nothing less), and a
    /// subquery over a `Distributed` table inside a query over another runs once and goes
    /// to the shards as a set (`distributed_product_mode = 'global'`).
    pub fn client(&self) -> clickhouse::Client {
        self.server_client().with_database(&self.database)
    }

    /// [`client`](Self::client) without a default database (one that creates it).
    pub fn server_client(&self) -> clickhouse::Client {
        let c = clickhouse::Client::default()
            .with_url(self.url.trim_end_matches('/'))
            .with_user(&self.user)
            .with_password(&self.password);
        if self.cluster.is_some() {
            c.with_setting("distributed_foreground_insert", "1")
                .with_setting("distributed_product_mode", "global")
        } else {
            c
        }
    }

    /// The deduplication unit in effect: `dedup`, or its default (`batch` with a cluster,
    /// where several collectors are expected; `group` on one server).
    pub fn dedup(&self) -> Dedup {
        self.dedup.unwrap_or(if self.cluster.is_some() {
            Dedup::Batch
        } else {
            Dedup::Group
        })
    }

    /// Checks every field; the error names the field (`clickhouse.<field>`) and the problem.
    pub fn validate(&self) -> Result<(), SinkError> {
        validate_url(&self.url).map_err(|reason| config_err("url", reason))?;
        validate_identifier(&self.database).map_err(|reason| config_err("database", reason))?;
        if self.user.is_empty() {
            return Err(config_err(
                "user",
                "must not be empty (ClickHouse's is `default`)",
            ));
        }
        let (raw, rollup) = (self.retention_days, self.rollup_retention_days);
        if rollup != 0 && (raw == 0 || rollup < raw) {
            return Err(config_err(
                "rollup_retention_days",
                format!(
                    "{rollup} days is shorter than retention_days ({}): hourly rollups \
                     would vanish before the flows they sum; use 0 (keep forever) or at \
                     least retention_days",
                    if raw == 0 {
                        "0: forever".to_string()
                    } else {
                        raw.to_string()
                    }
                ),
            ));
        }
        if self.max_rows_per_insert == 0 {
            return Err(config_err("max_rows_per_insert", "must be at least 1"));
        }
        if self.insert_timeout.is_zero() {
            return Err(config_err("insert_timeout", "must be longer than zero"));
        }
        if let Some(c) = &self.cluster {
            validate_identifier(&c.name).map_err(|reason| {
                config_err("cluster.name", reason.replace("database", "cluster"))
            })?;
            match c.ddl {
                Ddl::OnCluster if !c.nodes.is_empty() => {
                    return Err(config_err(
                        "cluster.nodes",
                        "is only used with ddl = \"each_node\" (with \"on_cluster\" the \
                         servers' distributed DDL reaches every node)",
                    ));
                }
                Ddl::EachNode if c.nodes.is_empty() => {
                    return Err(config_err(
                        "cluster.nodes",
                        "ddl = \"each_node\" needs the HTTP URL of every node of the cluster",
                    ));
                }
                _ => {}
            }
            for (i, n) in c.nodes.iter().enumerate() {
                validate_url(n).map_err(|reason| config_err("cluster.nodes", reason))?;
                if c.nodes[..i]
                    .iter()
                    .any(|m| m.trim_end_matches('/') == n.trim_end_matches('/'))
                {
                    return Err(config_err(
                        "cluster.nodes",
                        format!("{n:?} is listed twice"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn config_err(field: &'static str, reason: impl Into<String>) -> SinkError {
    SinkError::Config {
        field,
        reason: reason.into(),
    }
}

/// `http://host[:port][/]`: the only form the sink can use (the `clickhouse` crate is built
/// without TLS; settings and credentials have their own fields).
fn validate_url(url: &str) -> Result<(), String> {
    url_host(url).map(|_| ())
}

/// The host of a URL [`validate_url`] accepts (an IPv6 literal keeps its brackets).
fn url_host(url: &str) -> Result<&str, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(format!(
                "{url:?}: https is not supported by this build (the clickhouse client has no \
                 TLS); use http:// to a local TLS-terminating proxy"
            ));
        }
        Some((scheme, _)) => return Err(format!("{url:?}: scheme {scheme:?} is not http")),
        None => return Err(format!("{url:?}: expected http://host:port")),
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if !(path.is_empty() || path == "/") {
        return Err(format!(
            "{url:?}: unexpected path or query {path:?}; use the database/user/password fields"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "{url:?}: credentials in the URL are not used; set user and password"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal without a port ("[::1]") has colons but ends with ']'.
        Some((host, port)) if !port.ends_with(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(format!("{url:?}: port {port:?} is not a TCP port number"));
    }
    Ok(host)
}

/// A ClickHouse identifier the sink may paste into SQL unquoted.
pub(crate) fn validate_identifier(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    };
    if !valid || name.len() > 64 {
        return Err(format!(
            "{name:?} is not a valid database name: use 1 to 64 characters from \
             [A-Za-z0-9_], not starting with a digit"
        ));
    }
    Ok(())
}

/// Accepts a number of seconds (`30`, `2.5`) or a string with a unit (`"500ms"`, `"30s"`,
/// `"2m"`).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("seconds as a number, or a string like \"500ms\", \"30s\", \"2m\"")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("negative duration {v}")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(|e| E::custom(format!("duration {v}: {e}")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?}: expected a number followed by ms, s or m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        other => return Err(format!("duration {s:?}: unknown unit {other:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: SinkError) -> &'static str {
        match e {
            SinkError::Config { field, .. } => field,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = ClickHouseConfig::default();
        c.validate().unwrap();
        assert_eq!(c.url, "http://127.0.0.1:8123");
        assert_eq!(c.database, "tidegate");
        assert_eq!(c.user, "default");
        assert_eq!(c.retention_days, 30);
    }

    #[test]
    fn toml_with_units_and_defaults() {
        let c: ClickHouseConfig = toml::from_str(
            "url = \"http://ch.example:9000\"\nretention_days = 0\ninsert_timeout = \"1500ms\"",
        )
        .unwrap();
        assert_eq!(c.insert_timeout, Duration::from_millis(1500));
        assert_eq!(c.retention_days, 0);
        assert_eq!(c.database, "tidegate");
        let c: ClickHouseConfig = toml::from_str("insert_timeout = 7").unwrap();
        assert_eq!(c.insert_timeout, Duration::from_secs(7));
        assert_eq!(c.compression, Compression::Auto);
        let c: ClickHouseConfig = toml::from_str("compression = \"none\"").unwrap();
        assert_eq!(c.compression, Compression::None);
        let e = toml::from_str::<ClickHouseConfig>("compression = \"zstd\"").unwrap_err();
        assert!(e.to_string().contains("lz4"), "{e}");
        let e = toml::from_str::<ClickHouseConfig>("insert_timeout = \"7 weeks\"").unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
        let e = toml::from_str::<ClickHouseConfig>("databse = \"x\"").unwrap_err();
        assert!(e.to_string().contains("databse"), "{e}");
    }

    #[test]
    fn compression_auto_sends_plain_bodies_only_to_this_host() {
        let auto = |url: &str| Compression::Auto.for_url(url);
        for url in [
            "http://127.0.0.1:8123",
            "http://127.8.9.10:8123/",
            "http://localhost:8123",
            "http://LocalHost",
            "http://[::1]:8123",
            "http://[::1]",
            "http://[::ffff:127.0.0.1]:8123",
        ] {
            assert_eq!(auto(url), Compression::None, "{url}");
        }
        for url in [
            "http://10.0.0.5:8123",
            "http://ch.example:8123",
            "http://localhost.example:8123",
            "http://[2001:db8::1]:8123",
            "http://0.0.0.0:8123",
            "not a url",
        ] {
            assert_eq!(auto(url), Compression::Lz4, "{url}");
        }
        assert_eq!(
            Compression::Lz4.for_url("http://127.0.0.1:8123"),
            Compression::Lz4
        );
        assert_eq!(
            Compression::None.for_url("http://ch.example:8123"),
            Compression::None
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |f: fn(&mut ClickHouseConfig)| {
            let mut c = ClickHouseConfig::default();
            f(&mut c);
            field_of(c.validate().unwrap_err())
        };
        assert_eq!(bad(|c| c.database = "tide-gate".into()), "database");
        assert_eq!(bad(|c| c.database = "x; DROP TABLE y".into()), "database");
        assert_eq!(bad(|c| c.database = "1abc".into()), "database");
        assert_eq!(bad(|c| c.database = String::new()), "database");
        assert_eq!(bad(|c| c.database = "a".repeat(65)), "database");
        assert_eq!(bad(|c| c.url = "https://ch:8443".into()), "url");
        assert_eq!(bad(|c| c.url = "ch:8123".into()), "url");
        assert_eq!(bad(|c| c.url = "http://:8123".into()), "url");
        assert_eq!(bad(|c| c.url = "http://ch:99999".into()), "url");
        assert_eq!(bad(|c| c.url = "http://ch:8123/?database=x".into()), "url");
        assert_eq!(bad(|c| c.url = "http://u:p@ch:8123".into()), "url");
        assert_eq!(bad(|c| c.user = String::new()), "user");
        assert_eq!(bad(|c| c.max_rows_per_insert = 0), "max_rows_per_insert");
        assert_eq!(bad(|c| c.insert_timeout = Duration::ZERO), "insert_timeout");
    }

    #[test]
    fn cluster_settings_parse_and_bad_ones_are_named() {
        let c: ClickHouseConfig = toml::from_str(
            "[cluster]\nname = \"tg\"\nreplicated = false\nddl = \"each_node\"\nnodes = [\"http://a:8123\", \"http://b:8123\"]",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.dedup(),
            Dedup::Batch,
            "a cluster defaults to batch tokens"
        );
        assert_eq!(ClickHouseConfig::default().dedup(), Dedup::Group);
        let c: ClickHouseConfig = toml::from_str("dedup = \"batch\"").unwrap();
        assert_eq!(c.dedup(), Dedup::Batch);
        let on: ClickHouseConfig = toml::from_str("[cluster]\nname = \"tg\"").unwrap();
        let cl = on.cluster.as_ref().unwrap();
        assert!(cl.replicated && cl.ddl == Ddl::OnCluster);
        let bad = |toml: &str| {
            field_of(
                toml::from_str::<ClickHouseConfig>(toml)
                    .unwrap()
                    .validate()
                    .unwrap_err(),
            )
        };
        assert_eq!(bad("[cluster]\nname = \"t-g\""), "cluster.name");
        assert_eq!(
            bad("[cluster]\nname = \"tg\"\nddl = \"each_node\""),
            "cluster.nodes"
        );
        assert_eq!(
            bad("[cluster]\nname = \"tg\"\nnodes = [\"http://a:1\"]"),
            "cluster.nodes"
        );
        assert_eq!(
            bad(
                "[cluster]\nname = \"tg\"\nddl = \"each_node\"\nnodes = [\"http://a:1\", \"http://a:1/\"]"
            ),
            "cluster.nodes"
        );
        assert_eq!(
            bad("[cluster]\nname = \"tg\"\nddl = \"each_node\"\nnodes = [\"a:1\"]"),
            "cluster.nodes"
        );
        assert!(
            toml::from_str::<ClickHouseConfig>("[cluster]\nname = \"tg\"\nddl = \"gossip\"")
                .is_err()
        );
    }

    #[test]
    fn good_urls() {
        for u in [
            "http://localhost",
            "http://10.0.0.1:8123/",
            "http://[::1]:8123",
            "http://[::1]",
        ] {
            validate_url(u).unwrap_or_else(|e| panic!("{u}: {e}"));
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let c = ClickHouseConfig {
            password: "hunter2".into(),
            ..Default::default()
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && s.contains("<redacted>"), "{s}");
    }
}
