//! Configuration files: one located error type for every TOML file tidegate reads, and
//! the helpers that turn a byte offset or a dotted field name into `file:line`.
//!
//! Each section of a configuration validates itself once, returning a [`FieldError`]
//! that names the dotted field (`clickhouse.url`, `volumetric.floor_pps`); the file it
//! came from ([`ConfigFile`]) turns that into `file:line: field: message`. Start-up and
//! `check-config` call the same validators, so they cannot disagree.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the OS error is part of the message, not a separate
    /// cause, so a `{:#}` chain says it once).
    #[error("{path}: cannot read: {error}")]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        error: std::io::Error,
    },
    /// A problem at a line of the file.
    #[error("{path}:{line}: {msg}")]
    At {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A problem with the file as a whole.
    #[error("{path}: {msg}")]
    File {
        /// File.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl ConfigError {
    /// The line the error points at, if it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::At { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// A value that failed validation: the dotted field it is in, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {msg}")]
pub struct FieldError {
    /// Dotted path of the field, from the top of the file (`clickhouse.url`).
    pub field: String,
    /// What is wrong with its value.
    pub msg: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, msg: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// The same error one table further down: `field` becomes `section.field`.
    pub fn within(mut self, section: &str) -> Self {
        self.field = format!("{section}.{}", self.field);
        self
    }
}

/// The text of a configuration file and where it came from.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        if path.is_dir() {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                msg: "is a directory, not a configuration file".into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(ConfigFile::new(path, text))
    }

    /// Text that `path` names in errors and anchors relative paths.
    pub fn new(path: &Path, text: impl Into<String>) -> Self {
        ConfigFile {
            path: path.to_path_buf(),
            text: text.into(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Deserializes the whole file; syntax, type and unknown-field errors carry the line.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            self.at(
                e.span().map(|s| s.start).unwrap_or(0),
                e.message().to_string(),
            )
        })
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        line_of(&self.text, offset)
    }

    /// `path:line` of a byte offset (how rules cite where they are defined).
    pub fn location(&self, offset: usize) -> String {
        format!("{}:{}", self.path.display(), self.line_of(offset))
    }

    /// An error at a byte offset.
    pub fn at(&self, offset: usize, msg: impl Into<String>) -> ConfigError {
        ConfigError::At {
            path: self.path.clone(),
            line: self.line_of(offset),
            msg: msg.into(),
        }
    }

    /// An error about the file as a whole.
    pub fn whole(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError::File {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }

    /// Offset of `key = ...` inside the table whose header (or inline start) is at
    /// `table_off`, or `table_off` itself when the key is not written there.
    pub fn key_offset(&self, table_off: usize, key: &str) -> usize {
        key_offset(&self.text, Some(table_off), key).unwrap_or(table_off)
    }

    /// A [`FieldError`] located at its field's line: the `key = ...` line when it is
    /// written in the file, else the line of its table's header, else line 1.
    pub fn field_error(&self, e: &FieldError) -> ConfigError {
        self.at(self.field_offset(&e.field).unwrap_or(0), e.to_string())
    }

    /// A [`FieldError`] of the table whose header starts at `table_off` (the span of a
    /// `Spanned` section), located at the key's line within that table.
    pub fn field_error_in(&self, table_off: usize, e: &FieldError) -> ConfigError {
        let key = e.field.rsplit('.').next().unwrap_or(&e.field);
        let key = key.split('[').next().unwrap_or(key);
        self.at(self.key_offset(table_off, key), e.to_string())
    }

    /// Where a dotted field is written: `a.b.c` looks for the key `c` in table `[a.b]`
    /// (or `b.c` in `[a]`, or `a.b.c` at the top); `None` when it is not in the file.
    pub fn field_offset(&self, field: &str) -> Option<usize> {
        // Array indexes (`line[2].name`) name a table of an array; only the keys matter.
        let clean: String = {
            let mut s = String::new();
            let mut skip = false;
            for c in field.chars() {
                match c {
                    '[' => skip = true,
                    ']' => skip = false,
                    c if !skip => s.push(c),
                    _ => {}
                }
            }
            s
        };
        let parts: Vec<&str> = clean.split('.').filter(|p| !p.is_empty()).collect();
        let mut best: Option<usize> = None;
        for split in (0..parts.len()).rev() {
            let (table, key) = parts.split_at(split);
            let table_off = if table.is_empty() {
                None
            } else {
                match table_header(&self.text, &table.join(".")) {
                    Some(off) => Some(off),
                    None => continue,
                }
            };
            if let Some(k) = key_offset(&self.text, table_off, &key.join(".")) {
                return Some(k);
            }
            if best.is_none() {
                best = table_off;
            }
        }
        best
    }

    /// Parses a string value written at a known place (a `toml::Spanned`): `field` names
    /// it and `expected` says what it should look like, in the error.
    pub fn value<T>(
        &self,
        v: &toml::Spanned<String>,
        field: &str,
        expected: &str,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        v.get_ref().trim().parse().map_err(|e| {
            self.at(
                v.span().start,
                format!("{field} {:?} is not {expected}: {e}", v.get_ref()),
            )
        })
    }

    /// Checks a number written at a known place lies in `range`.
    pub fn in_range<T>(
        &self,
        v: &toml::Spanned<T>,
        field: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: PartialOrd + Copy + std::fmt::Display,
    {
        check_range(field, *v.get_ref(), range).map_err(|e| self.at(v.span().start, e.to_string()))
    }

    /// Resolves a path written in the file against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// 1-based line of a byte offset in `src`.
pub fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Offset of the header line `[name]` or `[[name]]` (the first one).
fn table_header(src: &str, name: &str) -> Option<usize> {
    let mut pos = 0;
    for line in src.split_inclusive('\n') {
        let t = line.trim();
        let inner = t
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
            .or_else(|| t.strip_prefix('[').and_then(|r| r.split(']').next()));
        if let Some(inner) = inner {
            let norm: String = inner
                .split('.')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(".");
            if norm == name {
                return Some(pos + (line.len() - line.trim_start().len()));
            }
        }
        pos += line.len();
    }
    None
}

/// Offset of `key = ...` in the table whose header line holds `table_off`, or at the
/// top of the file (before any header) for `None`.
fn key_offset(src: &str, table_off: Option<usize>, key: &str) -> Option<usize> {
    let in_table = table_off.is_some();
    let start = table_off.unwrap_or(0).min(src.len());
    let start = src[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let rest = &src[start..];
    let quoted = format!("\"{key}\"");
    let mut pos = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if t.starts_with('[') {
            if !(i == 0 && in_table) {
                break;
            }
        } else {
            let after = t
                .strip_prefix(key)
                .or_else(|| t.strip_prefix(quoted.as_str()));
            if after.is_some_and(|r| r.trim_start().starts_with('=')) {
                return Some(start + pos + indent);
            }
            // An inline table on the first line: `section = { key = 1 }`.
            if i == 0
                && let Some(idx) = find_inline_key(t, key)
            {
                return Some(start + pos + indent + idx);
            }
        }
        pos += line.len();
    }
    None
}

fn find_inline_key(line: &str, key: &str) -> Option<usize> {
    let brace = line.find('{')?;
    let mut from = brace;
    while let Some(i) = line[from..].find(key) {
        let at = from + i;
        let before = line[..at].trim_end();
        let after = line[at + key.len()..].trim_start();
        if (before.ends_with('{') || before.ends_with(',')) && after.starts_with('=') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// Checks that an integer option lies in `range`; the error says the range.
pub fn check_range<T>(
    field: &str,
    v: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, FieldError>
where
    T: PartialOrd + Copy + std::fmt::Display,
{
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{v} is out of range: must be between {} and {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "# top\nname = \"x\"\n\n[clickhouse]\nurl = \"ftp://\"\n database = \"1db\"\n\n[volumetric]\nfloor_pps = -1\n[[line]]\nname = \"a\"\n[[line]]\nname = \"b\"\n[api]\nlisten = \"x\"\n[[api.user]]\nname = \"u\"\n";

    fn file() -> ConfigFile {
        ConfigFile::new(Path::new("/etc/t.toml"), SRC)
    }

    #[test]
    fn dotted_fields_find_their_line() {
        let f = file();
        let line = |field: &str| f.field_offset(field).map(|o| f.line_of(o));
        assert_eq!(line("name"), Some(2));
        assert_eq!(line("clickhouse.url"), Some(5));
        assert_eq!(line("clickhouse.database"), Some(6));
        assert_eq!(line("volumetric.floor_pps"), Some(9));
        assert_eq!(line("api.listen"), Some(15));
        assert_eq!(line("api.user.name"), Some(17));
        // Not written: the table's header, or nothing.
        assert_eq!(line("clickhouse.user"), Some(4));
        assert_eq!(line("nowhere.at_all"), None);
    }

    #[test]
    fn field_errors_are_located() {
        let f = file();
        let e = f.field_error(&FieldError::new("clickhouse.database", "bad name"));
        assert_eq!(
            e.to_string(),
            "/etc/t.toml:6: clickhouse.database: bad name"
        );
        assert_eq!(e.line(), Some(6));
        let table = f.field_offset("clickhouse").unwrap_or(0);
        let e = f.field_error_in(
            SRC.find("[clickhouse]").unwrap(),
            &FieldError::new("clickhouse.url", "no"),
        );
        assert_eq!(e.line(), Some(5), "{e} {table}");
        let e = f.field_error(&FieldError::new("missing", "required"));
        assert_eq!(e.line(), Some(1));
    }

    #[test]
    fn parse_errors_carry_the_line() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Only {
            a: u32,
        }
        let f = ConfigFile::new(Path::new("c.toml"), "\n\na = 1\nb = 2\n");
        let e = f.parse::<Only>().unwrap_err();
        assert!(e.to_string().starts_with("c.toml:4: "), "{e}");
    }

    #[test]
    fn a_directory_is_not_a_config_file() {
        let e = ConfigFile::read(Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[test]
    fn ranges_name_their_bounds() {
        assert_eq!(check_range("x", 5u64, 1..=10), Ok(5));
        let e = check_range("a.b", 0u64, 1..=10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.b: 0 is out of range: must be between 1 and 10"
        );
    }
}
