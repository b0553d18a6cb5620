//! Raw flow records: `GET /api/v1/flows` (search by time range, IP/CIDR, port, protocol,
//! country, line and a filter expression `q` over every stored field (see [`filter`]);
//! paginated) and `GET /api/v1/top-talkers` (largest sources,
//! destinations or pairs by bytes, packets or flows).

use std::collections::HashMap;

use axum::{
    Extension, Json,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    AppState,
    auth::Principal,
    error::{ApiError, ApiResult},
    export, filter,
    params::Params,
    sql::{Arg, Sql, Where},
};

const FILTERS: [&str; 14] = [
    "q",
    "from",
    "to",
    "ip",
    "port",
    "proto",
    "country",
    "asn",
    "zone",
    "line",
    "direction",
    "probe",
    "source",
    "name",
];

/// The WHERE clause shared by the search and the top talkers. `first` inside the range:
/// a flow counts at its first packet, as in the rollups.
fn filters(p: &Params) -> ApiResult<Where> {
    let mut w = Where::default();
    w.range("first", p.time_range()?)
        .eq_opt("line", p.name("line")?.as_ref())
        .eq_opt("probe_id", p.name("probe")?.as_ref());
    if let Some(c) = p.cidr("ip")? {
        let (lo, hi) = c.v6_range();
        let (lo, hi) = (lo.to_string(), hi.to_string());
        w.and(
            "((src BETWEEN toIPv6(?) AND toIPv6(?)) OR (dst BETWEEN toIPv6(?) AND toIPv6(?)))",
            [
                Arg::Str(lo.clone()),
                Arg::Str(hi.clone()),
                Arg::Str(lo),
                Arg::Str(hi),
            ],
        );
    }
    if let Some(port) = p.port("port")? {
        w.and(
            "(sport = ? OR dport = ?)",
            [Arg::U64(port.into()), Arg::U64(port.into())],
        );
    }
    if let Some(proto) = p.proto("proto")? {
        w.and("proto = ?", [Arg::U64(proto.into())]);
    }
    if let Some(c) = p.country("country")? {
        w.and(
            "(src_country = ? OR dst_country = ?)",
            [Arg::Str(c.clone()), Arg::Str(c)],
        );
    }
    if let Some(a) = p.get("asn") {
        let n: u32 = a
            .trim_start_matches("AS")
            .trim_start_matches("as")
            .parse()
            .map_err(|_| ApiError::param("asn", "expected an AS number such as 4134 or AS4134"))?;
        w.and(
            "(src_asn = ? OR dst_asn = ?)",
            [Arg::U64(n.into()), Arg::U64(n.into())],
        );
    }
    if let Some(z) = p.name("zone")? {
        w.and(
            "(src_zone = ? OR dst_zone = ?)",
            [Arg::Str(z.clone()), Arg::Str(z)],
        );
    }
    match p.choice(
        "source",
        &["any", "probe", "netflow_v5", "netflow_v9", "ipfix"],
    )? {
        "any" => {}
        s => {
            w.and("source = ?", [Arg::Str(s.to_string())]);
        }
    }
    if let Some(d) = p.domain("name")? {
        // The name or any name under it, in the DNS question or the TLS server name.
        let under = format!(".{d}");
        w.and(
            "(lower(dns_qname) = ? OR endsWith(lower(dns_qname), ?) OR lower(tls_sni) = ? OR endsWith(lower(tls_sni), ?))",
            [
                Arg::Str(d.clone()),
                Arg::Str(under.clone()),
                Arg::Str(d),
                Arg::Str(under),
            ],
        );
    }
    match p.choice("direction", &["any", "ingress", "egress"])? {
        "any" => {}
        d => {
            w.and("direction = ?", [Arg::Str(d.to_string())]);
        }
    }
    if let Some(q) = p.get("q") {
        let f = filter::parse(q).map_err(|e| ApiError::param("q", e.to_string()))?;
        w.and(f.sql(), f.args().iter().cloned());
    }
    Ok(w)
}

/// `GET /api/v1/flows`.
pub async fn search(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    super::auth::ClientAddr(client): super::auth::ClientAddr,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params::new(
        q,
        &[&FILTERS[..], &["limit", "offset", "sort", "format"]].concat(),
    )?;
    let w = filters(&p)?;
    let export = export::requested(&p)?;
    let (limit, offset) = match export {
        Some(_) => p.page(export::MAX_ROWS, export::MAX_ROWS)?,
        None => p.page(100, 1000)?,
    };
    let order = match p.choice("sort", &["first", "bytes", "packets"])? {
        "bytes" => " ORDER BY bytes DESC, first DESC",
        "packets" => " ORDER BY packets DESC, first DESC",
        _ => " ORDER BY first DESC, src, dst",
    };
    let mut sql = Sql::new(
        "SELECT first, last, line, toString(direction) AS direction, probe_id, src_text AS src, dst_text AS dst, sport, dport, proto, vlan, packets, bytes, tcp_flags, icmp_type, icmp_code, src_country, dst_country, src_asn, dst_asn, src_zone, dst_zone, toString(source) AS source, sampling, dns_qname, dns_qtype, dns_rcode, tls_sni, tunnel, tunnel_id, if(outer_src = toIPv6('::'), '', replaceOne(IPv6NumToString(outer_src), '::ffff:', '')) AS outer_src, if(outer_dst = toIPv6('::'), '', replaceOne(IPv6NumToString(outer_dst), '::ffff:', '')) AS outer_dst FROM flows",
    );
    sql.filter(&w)
        .push(order)
        .bind(" LIMIT ? OFFSET ?", [Arg::U64(limit), Arg::U64(offset)]);
    if let Some(f) = export {
        return export::respond(&st, &who, client, &sql, f, "flows", &p.describe()).await;
    }
    let items = sql.rows(&st.db(&who)).await?;
    let mut count =
        Sql::new("SELECT count() AS n, sum(packets) AS packets, sum(bytes) AS bytes FROM flows");
    count.filter(&w);
    let c = count.row(&st.db(&who)).await?.unwrap_or_default();
    let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
    Ok(Json(json!({
        "total": n("n"), "packets": n("packets"), "bytes": n("bytes"),
        "limit": limit, "offset": offset, "items": items,
    }))
    .into_response())
}

/// Text of an address column for IPv4-mapped and IPv6 rows of one group.
fn text(col: &str) -> String {
    format!(
        "if(any(ip_version) = 4, replaceOne(IPv6NumToString({col}), '::ffff:', ''), IPv6NumToString({col}))"
    )
}

/// `GET /api/v1/top-talkers`.
///
/// Two passes: the top groups by the metric (grouped by the IPv6 columns, text made per
/// group), then the distinct peers (or ports, for pairs) of just those groups — counting
/// distinct peers of every group of a day-long range would cost ten times the first pass.
pub async fn top_talkers(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &[&FILTERS[..], &["by", "metric", "limit"]].concat())?;
    let w = filters(&p)?;
    let limit = p.uint("limit", 20, 1, 200)?;
    let by = p.choice("by", &["src", "dst", "pair"])?;
    let metric = p.choice("metric", &["bytes", "packets", "flows"])?;
    let (select, group) = match by {
        "src" => (
            format!(
                "SELECT {} AS src, toString(src) AS k1, '' AS k2, any(src_country) AS src_country, any(src_asn) AS src_asn,",
                text("src")
            ),
            " GROUP BY src",
        ),
        "dst" => (
            format!(
                "SELECT {} AS dst, toString(dst) AS k1, '' AS k2, any(dst_country) AS dst_country, any(dst_asn) AS dst_asn,",
                text("dst")
            ),
            " GROUP BY dst",
        ),
        _ => (
            format!(
                "SELECT {} AS src, {} AS dst, toString(src) AS k1, toString(dst) AS k2, any(src_country) AS src_country, any(dst_country) AS dst_country,",
                text("src"),
                text("dst")
            ),
            " GROUP BY src, dst",
        ),
    };
    let order = match metric {
        "packets" => " ORDER BY sum(packets) DESC",
        "flows" => " ORDER BY count() DESC",
        _ => " ORDER BY sum(bytes) DESC",
    };
    let mut sql = Sql::new(&select);
    sql.push(" sum(bytes) AS bytes, sum(packets) AS packets, count() AS flows FROM flows")
        .filter(&w)
        .push(group)
        .push(order)
        .bind(" LIMIT ?", [Arg::U64(limit)]);
    let mut items = sql.rows(&st.db(&who)).await?;

    // Second pass: distinct peers (ports for pairs) of the groups shown.
    let key = |r: &serde_json::Map<String, Value>, k: &str| {
        r.get(k).and_then(Value::as_str).unwrap_or("").to_string()
    };
    let k1: Vec<String> = items.iter().map(|r| key(r, "k1")).collect();
    let k2: Vec<String> = items.iter().map(|r| key(r, "k2")).collect();
    if !items.is_empty() {
        let mut w2 = w.clone();
        let (select, group, name) = match by {
            "src" => {
                w2.and(
                    "src IN (SELECT toIPv6(arrayJoin(?)))",
                    [Arg::Strs(k1.clone())],
                );
                (
                    "SELECT toString(src) AS k1, '' AS k2, uniq(dst) AS n FROM flows",
                    " GROUP BY src",
                    "peers",
                )
            }
            "dst" => {
                w2.and(
                    "dst IN (SELECT toIPv6(arrayJoin(?)))",
                    [Arg::Strs(k1.clone())],
                );
                (
                    "SELECT toString(dst) AS k1, '' AS k2, uniq(src) AS n FROM flows",
                    " GROUP BY dst",
                    "peers",
                )
            }
            _ => {
                w2.and(
                    "(src, dst) IN (SELECT toIPv6(p.1), toIPv6(p.2) FROM (SELECT arrayJoin(arrayZip(?, ?)) AS p))",
                    [Arg::Strs(k1.clone()), Arg::Strs(k2.clone())],
                );
                (
                    "SELECT toString(src) AS k1, toString(dst) AS k2, uniq(dport) AS n FROM flows",
                    " GROUP BY src, dst",
                    "ports",
                )
            }
        };
        let mut sql = Sql::new(select);
        sql.filter(&w2).push(group);
        let counts: HashMap<(String, String), Value> = sql
            .rows(&st.db(&who))
            .await?
            .into_iter()
            .map(|r| {
                (
                    (key(&r, "k1"), key(&r, "k2")),
                    r.get("n").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        for r in &mut items {
            let n = counts
                .get(&(key(r, "k1"), key(r, "k2")))
                .cloned()
                .unwrap_or(Value::from(0));
            r.insert(name.to_string(), n);
        }
    }
    for r in &mut items {
        r.remove("k1");
        r.remove("k2");
    }
    Ok(Json(json!({ "by": by, "metric": metric, "items": items })))
}
