//! The schema migrations, embedded at build time from `dashboards/clickhouse/migrations/`,
//! and how their placeholders are filled from the configuration.

use std::fmt::Write as _;

pub use super::sql::statements;

/// One migration file, `NNNN_name.sql`.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// `NNNN`: applied in increasing order, each once.
    pub version: u32,
    /// `name`.
    pub name: &'static str,
    /// File name, for messages.
    pub file: &'static str,
    /// The file's text, placeholders unfilled.
    pub sql: &'static str,
}

/// The number of a `NNNN` prefix (evaluated at compile time; a bad prefix fails the build).
const fn version(digits: &str) -> u32 {
    let b = digits.as_bytes();
    assert!(b.len() == 4, "migration prefixes have 4 digits");
    let mut v = 0;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "migration prefixes are digits");
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: const { version($version) },
            name: $name,
            file: concat!($version, "_", $name, ".sql"),
            sql: include_str!(concat!(
                "../../../../dashboards/clickhouse/migrations/",
                $version,
                "_",
                $name,
                ".sql"
            )),
        }
    };
}

/// Every migration, in order. A new file must be listed here (a test checks the list
/// against the directory).
pub const MIGRATIONS: &[Migration] = &[
    migration!("0001", "flows"),
    migration!("0002", "rollups"),
    migration!("0003", "probe_health"),
    migration!("0004", "alerts"),
    migration!("0005", "flows_batch_epoch"),
    migration!("0006", "flows_enforcement"),
    migration!("0007", "flows_source"),
    migration!("0008", "flows_app"),
    migration!("0009", "alerts_volume"),
    migration!("0010", "alert_triage"),
    migration!("0011", "audit_log"),
    migration!("0012", "saved_filters"),
    migration!("0013", "flows_tunnel"),
];

/// Tables whose rows expire after `retention_days`: (table, TTL base expression). Each has
/// a `{{ttl_<table>}}` placeholder in the migration that creates it.
pub const RETENTION: &[(&str, &str)] = &[
    ("flows", "toDate(first)"),
    ("flows_1m", "toDate(ts)"),
    ("probe_health", "toDate(ts)"),
];

/// Tables whose rows expire after `rollup_retention_days` (created without a TTL; the
/// start-up check sets it with `ALTER TABLE ... MODIFY TTL`).
pub const ROLLUP_RETENTION: &[(&str, &str)] = &[("flows_1h", "toDate(ts)")];

/// The TTL clause of a table with base expression `base`, as ClickHouse prints it in
/// `system.tables.engine_full`; empty when `retention_days` is 0.
pub fn ttl_clause(base: &str, retention_days: u32) -> String {
    if retention_days == 0 {
        String::new()
    } else {
        format!("TTL {base} + toIntervalDay({retention_days})")
    }
}

/// SHA-256 of a migration's text, in hex: what `schema_migrations.checksum` records.
pub fn checksum(sql: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, sql.as_bytes());
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Fills `{{database}}` and the `{{ttl_<table>}}` placeholders of `sql`. Any other
/// `{{…}}` is an error naming it (a mistake in a migration file).
pub fn render(sql: &str, database: &str, retention_days: u32) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed placeholder at {:?}", &rest[open..]))?;
        let name = &after[..close];
        if name == "database" {
            out.push_str(database);
        } else if let Some((_, base)) = name
            .strip_prefix("ttl_")
            .and_then(|t| RETENTION.iter().find(|(table, _)| *table == t))
        {
            out.push_str(&ttl_clause(base, retention_days));
        } else {
            return Err(format!("unknown placeholder {{{{{name}}}}}"));
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn embedded_list_matches_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/clickhouse/migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        assert_eq!(
            files,
            embedded,
            "list every file of {} in MIGRATIONS",
            dir.display()
        );
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                m.version as usize,
                i + 1,
                "{}: versions must be 1, 2, 3...",
                m.file
            );
            assert_eq!(std::fs::read_to_string(dir.join(m.file)).unwrap(), m.sql);
        }
    }

    #[test]
    fn every_file_renders_and_every_retention_table_has_its_placeholder() {
        for m in MIGRATIONS {
            let sql = render(m.sql, "tg_test", 30).unwrap_or_else(|e| panic!("{}: {e}", m.file));
            assert!(!sql.contains("{{"), "{}", m.file);
            assert!(
                !super::super::sql::statements(&sql).is_empty(),
                "{}",
                m.file
            );
        }
        for (table, _) in RETENTION {
            let ph = format!("{{{{ttl_{table}}}}}");
            assert!(
                MIGRATIONS.iter().any(|m| m.sql.contains(&ph)),
                "no migration has {ph}"
            );
        }
    }

    #[test]
    fn render_fills_and_rejects() {
        let s = render(
            "CREATE TABLE {{database}}.flows (x UInt8) {{ttl_flows}} SETTINGS a=1",
            "db1",
            7,
        )
        .unwrap();
        assert_eq!(
            s,
            "CREATE TABLE db1.flows (x UInt8) TTL toDate(first) + toIntervalDay(7) SETTINGS a=1"
        );
        let s = render("{{ttl_flows}}", "db1", 0).unwrap();
        assert_eq!(s, "");
        assert_eq!(
            render("{{ttl_nope}}", "d", 1).unwrap_err(),
            "unknown placeholder {{ttl_nope}}"
        );
        assert!(
            render("{{database", "d", 1)
                .unwrap_err()
                .starts_with("unclosed placeholder")
        );
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            checksum("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
