//! Export of a table view: the same query as the page (the same filters, bound values and
//! order), up to [`MAX_ROWS`] rows, as ClickHouse formats it — `CSVWithNames` for CSV, a
//! JSON array of the rows for JSON — sent as a download. Every export is logged with who
//! asked for it and what.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use super::{auth::Principal, error::ApiResult, params::Params, sql::Sql};

/// Most rows one export carries.
pub const MAX_ROWS: u64 = 100_000;

/// A download format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// The `format` parameter: `None` for the page itself (JSON with totals and facets).
pub fn requested(p: &Params) -> ApiResult<Option<Format>> {
    Ok(match p.choice("format", &["page", "csv", "json"])? {
        "csv" => Some(Format::Csv),
        "json" => Some(Format::Json),
        _ => None,
    })
}

/// Runs `sql` and answers its rows as a download named `tidegate-<name>.<ext>`, after
/// recording the export (view, format and the request's parameters) in the audit log.
pub async fn respond(
    st: &super::AppState,
    who: &Principal,
    client: Option<std::net::IpAddr>,
    sql: &Sql,
    format: Format,
    name: &str,
    asked: &str,
) -> ApiResult<Response> {
    who.require(super::config::Role::Analyst, "exporting a table")?;
    let fmt = match format {
        Format::Csv => "csv",
        Format::Json => "json",
    };
    st.audit(&who.name, "export", client, name, &format!("{fmt} {asked}"))
        .await?;
    let ch = &st.db(who);
    let (body, ext, ty) = match format {
        Format::Csv => (
            sql.raw(ch, "CSVWithNames").await?,
            "csv",
            "text/csv; charset=utf-8",
        ),
        Format::Json => {
            let lines = sql.raw(ch, "JSONEachRow").await?;
            let mut out = Vec::with_capacity(lines.len() + 2);
            out.push(b'[');
            for (i, l) in lines
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .enumerate()
            {
                if i > 0 {
                    out.extend_from_slice(b",\n");
                }
                out.extend_from_slice(l);
            }
            out.extend_from_slice(b"]\n");
            (out, "json", "application/json")
        }
    };
    tracing::info!(user = %who.name, view = name, format = ext, bytes = body.len(), "table exported");
    let disposition = format!("attachment; filename=\"tidegate-{name}.{ext}\"");
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
