//! [`AggregateConfig`]: shard count, queue bound, flow-table bounds and windows.
//!
//! In a TOML file (every key optional):
//!
//! ```toml
//! [aggregate]
//! shards = 4                   # default: number of CPUs
//! queue_depth = 64             # sub-batches waiting per shard before submit blocks
//! flow_idle = "5m"             # or seconds as an integer: 300
//! max_flows_per_shard = 1048576
//! top_n = 20
//! rate_window = "5m"
//! ```
//!
//! Durations are an integer number of seconds or a string with a unit: `ms`, `s`, `m`,
//! `h`, `d` (`"250ms"`, `"90s"`, `"5m"`). Deserializing validates the values, so a loaded
//! configuration can always be started.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::error::AggregateError;

/// Largest shard count accepted.
pub const MAX_SHARDS: usize = 1024;
/// Largest per-shard queue depth accepted (sub-batches).
pub const MAX_QUEUE_DEPTH: usize = 1 << 20;
/// Largest per-shard flow bound accepted (slots are indexed by `u32`).
pub const MAX_FLOWS_PER_SHARD: usize = (u32::MAX - 1) as usize;
/// Largest `top_n` accepted.
pub const MAX_TOP_N: usize = 10_000;
/// Longest rate window accepted (one bucket per second per line and direction).
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(86_400);

/// Configuration of the sharded aggregation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateConfig {
    /// Shard worker threads (default: number of CPUs).
    pub shards: usize,
    /// Sub-batches that may wait in each shard's bounded queue; when a target shard's
    /// queue is full, [`submit`](super::Aggregator::submit) blocks (backpressure).
    pub queue_depth: usize,
    /// A merged flow is forgotten once the event-time watermark is this far past its last
    /// packet (default 5 min).
    pub flow_idle: Duration,
    /// Memory bound of each shard's flow table; when it is reached a flow not seen again
    /// lately is evicted (CLOCK, an approximation of least recently seen) and counted.
    pub max_flows_per_shard: usize,
    /// Entries in each top-talker list (default 20).
    pub top_n: usize,
    /// Per-second rate buckets kept per line and direction (default 5 min).
    pub rate_window: Duration,
    /// Test hook: `(shard, delay)` sleeps `delay` per record on that shard, to simulate a
    /// slow consumer. Not configurable from files.
    #[doc(hidden)]
    pub debug_slow_shard: Option<(usize, Duration)>,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue_depth: 64,
            flow_idle: Duration::from_secs(300),
            max_flows_per_shard: 1 << 20,
            top_n: 20,
            rate_window: Duration::from_secs(300),
            debug_slow_shard: None,
        }
    }
}

impl AggregateConfig {
    /// Checks every value; the error names the field and the accepted range.
    pub fn validate(&self) -> Result<(), AggregateError> {
        let bad = |field: &'static str, reason: String| {
            Err(AggregateError::InvalidConfig { field, reason })
        };
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return bad(
                "shards",
                format!("{} is not in 1..={MAX_SHARDS}", self.shards),
            );
        }
        if !(1..=MAX_QUEUE_DEPTH).contains(&self.queue_depth) {
            return bad(
                "queue_depth",
                format!("{} is not in 1..={MAX_QUEUE_DEPTH}", self.queue_depth),
            );
        }
        if self.flow_idle.is_zero() {
            return bad("flow_idle", "must be longer than zero".into());
        }
        if !(1..=MAX_FLOWS_PER_SHARD).contains(&self.max_flows_per_shard) {
            return bad(
                "max_flows_per_shard",
                format!(
                    "{} is not in 1..={MAX_FLOWS_PER_SHARD}",
                    self.max_flows_per_shard
                ),
            );
        }
        if !(1..=MAX_TOP_N).contains(&self.top_n) {
            return bad("top_n", format!("{} is not in 1..={MAX_TOP_N}", self.top_n));
        }
        if self.rate_window < Duration::from_secs(1) || self.rate_window > MAX_RATE_WINDOW {
            return bad(
                "rate_window",
                format!(
                    "{:?} is not between 1s and {}s",
                    self.rate_window,
                    MAX_RATE_WINDOW.as_secs()
                ),
            );
        }
        if let Some((shard, _)) = self.debug_slow_shard
            && shard >= self.shards
        {
            return bad(
                "debug_slow_shard",
                format!("shard {shard} does not exist ({} shards)", self.shards),
            );
        }
        Ok(())
    }

    /// Seconds of rate history kept (whole seconds of `rate_window`).
    pub fn rate_window_secs(&self) -> u64 {
        self.rate_window.as_secs().max(1)
    }

    /// `flow_idle` in nanoseconds (saturating).
    pub fn flow_idle_ns(&self) -> u64 {
        u64::try_from(self.flow_idle.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The file form: every field optional, unknown keys rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    shards: Option<usize>,
    queue_depth: Option<usize>,
    #[serde(default, deserialize_with = "opt_duration")]
    flow_idle: Option<Duration>,
    max_flows_per_shard: Option<usize>,
    top_n: Option<usize>,
    #[serde(default, deserialize_with = "opt_duration")]
    rate_window: Option<Duration>,
}

impl<'de> Deserialize<'de> for AggregateConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawConfig::deserialize(d)?;
        let mut c = AggregateConfig::default();
        if let Some(v) = raw.shards {
            c.shards = v;
        }
        if let Some(v) = raw.queue_depth {
            c.queue_depth = v;
        }
        if let Some(v) = raw.flow_idle {
            c.flow_idle = v;
        }
        if let Some(v) = raw.max_flows_per_shard {
            c.max_flows_per_shard = v;
        }
        if let Some(v) = raw.top_n {
            c.top_n = v;
        }
        if let Some(v) = raw.rate_window {
            c.rate_window = v;
        }
        c.validate().map_err(serde::de::Error::custom)?;
        Ok(c)
    }
}

/// An integer number of seconds, or a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum DurationForm {
    Secs(u64),
    Text(String),
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match DurationForm::deserialize(d)? {
        DurationForm::Secs(s) => Ok(Some(Duration::from_secs(s))),
        DurationForm::Text(t) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Parses `"250ms"`, `"90s"`, `"5m"`, `"2h"`, `"1d"` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. \"90s\", \"5m\", 300)"))?;
    let per_unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    n.checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert!(
            parse_duration("5 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("m").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn toml_fills_defaults_and_accepts_both_duration_forms() {
        let c: AggregateConfig = toml::from_str("shards = 3\nflow_idle = 60\nrate_window = \"2m\"")
            .expect("valid config");
        assert_eq!(c.shards, 3);
        assert_eq!(c.flow_idle, Duration::from_secs(60));
        assert_eq!(c.rate_window, Duration::from_secs(120));
        assert_eq!(c.top_n, 20);
        assert_eq!(c.queue_depth, 64);
    }

    #[test]
    fn bad_values_are_rejected_with_the_field_name() {
        let e = toml::from_str::<AggregateConfig>("shards = 0").unwrap_err();
        assert!(e.to_string().contains("shards"), "{e}");
        let e = toml::from_str::<AggregateConfig>("rate_window = \"0s\"").unwrap_err();
        assert!(e.to_string().contains("rate_window"), "{e}");
        let e = toml::from_str::<AggregateConfig>("flow_idle = \"x\"").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
        let e = toml::from_str::<AggregateConfig>("shardz = 2").unwrap_err();
        assert!(e.to_string().contains("shardz"), "{e}");
        let c = AggregateConfig {
            debug_slow_shard: Some((5, Duration::ZERO)),
            shards: 2,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("debug_slow_shard")
        );
    }
}
