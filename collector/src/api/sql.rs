//! A small SQL builder: fixed SQL text from this crate plus bound values for every piece
//! of user input (the `clickhouse` crate escapes each `?`), and a runner returning rows as
//! JSON objects (`JSONEachRow`: UInt64 as numbers, times in ISO 8601 UTC). Names in
//! WHERE/GROUP BY/ORDER BY refer to table columns before output aliases, so ordering by an
//! aggregate is written as the aggregate (`ORDER BY sum(bytes)`).

use serde_json::{Map, Value};

use super::{
    error::{ApiError, ApiResult},
    params::TimeRange,
};

/// A bound value.
#[derive(Clone, Debug)]
pub enum Arg {
    /// String.
    Str(String),
    /// Signed integer.
    I64(i64),
    /// Unsigned integer.
    U64(u64),
    /// Array of strings.
    Strs(Vec<String>),
}

/// SQL text with its bound values, in order of the `?` placeholders.
#[derive(Clone, Debug, Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

/// The conditions of a WHERE clause, joined with AND.
#[derive(Clone, Debug, Default)]
pub struct Where {
    parts: Vec<(String, Vec<Arg>)>,
}

impl Where {
    /// Adds a condition with its `?` values.
    pub fn and(&mut self, cond: &str, args: impl IntoIterator<Item = Arg>) -> &mut Self {
        let args: Vec<Arg> = args.into_iter().collect();
        debug_assert_eq!(cond.matches('?').count(), args.len(), "{cond}");
        self.parts.push((cond.to_string(), args));
        self
    }

    /// `col >= from AND col < to` for a time or date-time column.
    pub fn range(&mut self, col: &str, r: TimeRange) -> &mut Self {
        self.and(
            &format!(
                "{col} >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND {col} < fromUnixTimestamp64Milli(toInt64(?), 'UTC')"
            ),
            [Arg::I64(r.from_ms), Arg::I64(r.to_ms)],
        )
    }

    /// Records overlapping the range: `last >= from AND first < to`.
    pub fn overlaps(&mut self, r: TimeRange) -> &mut Self {
        self.and(
            "last >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND first < fromUnixTimestamp64Milli(toInt64(?), 'UTC')",
            [Arg::I64(r.from_ms), Arg::I64(r.to_ms)],
        )
    }

    /// `col = value` when a value is given.
    pub fn eq_opt(&mut self, col: &str, v: Option<&String>) -> &mut Self {
        if let Some(v) = v {
            self.and(&format!("{col} = ?"), [Arg::Str(v.clone())]);
        }
        self
    }

    /// `has(values, toString(col))` when the list is not empty.
    pub fn any_of(&mut self, col: &str, v: &[String]) -> &mut Self {
        if !v.is_empty() {
            self.and(&format!("has(?, toString({col}))"), [Arg::Strs(v.to_vec())]);
        }
        self
    }
}

impl Sql {
    /// Starts with fixed text.
    pub fn new(text: &str) -> Self {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Appends fixed text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends fixed text holding `?` placeholders and their values.
    pub fn bind(&mut self, text: &str, args: impl IntoIterator<Item = Arg>) -> &mut Self {
        self.text.push_str(text);
        self.args.extend(args);
        self
    }

    /// Appends another statement's text and values (a subquery).
    pub fn append(&mut self, other: &Sql) -> &mut Self {
        self.text.push_str(&other.text);
        self.args.extend(other.args.iter().cloned());
        self
    }

    /// Appends ` WHERE a AND b ...` (nothing when there is no condition).
    pub fn filter(&mut self, w: &Where) -> &mut Self {
        for (i, (cond, args)) in w.parts.iter().enumerate() {
            self.text.push_str(if i == 0 { " WHERE " } else { " AND " });
            self.text.push_str(cond);
            self.args.extend(args.iter().cloned());
        }
        self
    }

    /// The SQL text (with `?` placeholders).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The query with its values bound and the API's settings.
    fn query(&self, ch: &clickhouse::Client) -> clickhouse::query::Query {
        let mut q = ch.query(&self.text);
        for a in &self.args {
            q = match a {
                Arg::Str(s) => q.bind(s.as_str()),
                Arg::I64(v) => q.bind(*v),
                Arg::U64(v) => q.bind(*v),
                Arg::Strs(v) => q.bind(v.as_slice()),
            };
        }
        // WHERE and GROUP BY mean the table's columns even where an output column has
        // the same name (`toString(severity) AS severity`, `src_text AS src`).
        q.with_setting("prefer_column_name_to_alias", "1")
            .with_setting("date_time_output_format", "iso")
            .with_setting("output_format_json_quote_64bit_integers", "0")
            .with_setting("output_format_json_quote_64bit_floats", "0")
            .with_setting("max_execution_time", "60")
            // An analyst's query reads; it must not take the server's memory from the
            // inserts, nor hand the collector a result it cannot hold.
            .with_setting("readonly", "2")
            .with_setting("max_memory_usage", MAX_QUERY_MEMORY.to_string())
            .with_setting("max_result_bytes", MAX_RESULT_BYTES.to_string())
    }

    /// Runs the query and returns what ClickHouse answers in `format` (`CSVWithNames`,
    /// `JSONEachRow`), as it answers it.
    pub async fn raw(&self, ch: &clickhouse::Client, format: &str) -> ApiResult<Vec<u8>> {
        Ok(self
            .query(ch)
            .fetch_bytes(format)?
            .collect()
            .await?
            .to_vec())
    }

    /// Runs the query and returns its rows.
    pub async fn rows(&self, ch: &clickhouse::Client) -> ApiResult<Vec<Map<String, Value>>> {
        let bytes = self.query(ch).fetch_bytes("JSONEachRow")?.collect().await?;
        let mut rows = Vec::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            rows.push(serde_json::from_slice(line)?);
        }
        Ok(rows)
    }

    /// Runs the query and returns its first row, if any.
    pub async fn row(&self, ch: &clickhouse::Client) -> ApiResult<Option<Map<String, Value>>> {
        Ok(self.rows(ch).await?.into_iter().next())
    }
}

/// Memory one API query may take on the ClickHouse server (bytes).
pub const MAX_QUERY_MEMORY: u64 = 2 << 30;
/// Largest result one API query may return (bytes; the largest export, 100 000 rows, is
/// far below).
pub const MAX_RESULT_BYTES: u64 = 512 << 20;

/// A table of states replaced by id (`ReplacingMergeTree`: alerts, policy violations),
/// read `FINAL` — the newest version of each.
pub struct States {
    /// Table name.
    pub table: &'static str,
    /// Listed columns (the detail adds `extra` and `evidence`).
    pub columns: &'static str,
    /// What one row is, for "not found" errors (`alert`, `violation`).
    pub what: &'static str,
}

impl States {
    /// One page of the rows matching `w`, newest first (then by id).
    pub async fn page(
        &self,
        ch: &clickhouse::Client,
        w: &Where,
        page: (u64, u64),
    ) -> ApiResult<Vec<Map<String, Value>>> {
        self.page_sql(w, page).rows(ch).await
    }

    /// The query of [`Self::page`].
    pub fn page_sql(&self, w: &Where, (limit, offset): (u64, u64)) -> Sql {
        let mut sql = Sql::new(&format!(
            "SELECT {} FROM {} FINAL",
            self.columns, self.table
        ));
        sql.filter(w).bind(
            " ORDER BY first DESC, id LIMIT ? OFFSET ?",
            [Arg::U64(limit), Arg::U64(offset)],
        );
        sql
    }

    /// The row with this id, with the `extra` columns and its evidence flows parsed.
    pub async fn by_id(
        &self,
        ch: &clickhouse::Client,
        id: &str,
        extra: &str,
    ) -> ApiResult<Map<String, Value>> {
        check_id(id)?;
        let mut sql = Sql::new(&format!(
            "SELECT {}{extra}, evidence FROM {} FINAL",
            self.columns, self.table
        ));
        sql.bind(" WHERE id = ? LIMIT 1", [Arg::Str(id.to_string())]);
        let mut row = sql
            .row(ch)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("{} {id}", self.what)))?;
        expand_evidence(&mut row);
        Ok(row)
    }
}

/// Parses the `evidence` column (a JSON array of flow records) in place.
pub fn expand_evidence(row: &mut Map<String, Value>) {
    if let Some(Value::String(s)) = row.get("evidence") {
        let v = serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()));
        row.insert("evidence".into(), v);
    }
}

/// Checks an id path segment (ids are hex or similar short tokens).
pub fn check_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(ApiError::param(
            "id",
            "expected an id of at most 128 characters",
        ));
    }
    Ok(())
}
