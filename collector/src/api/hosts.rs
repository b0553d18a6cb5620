//! `GET /api/v1/hosts/{ip}`: one address seen from every side — its traffic in and out
//! over time, its peers and ports, where it is (country, ASN, zone as enriched), and the
//! alerts and violations naming it. Flows count at their first packet in the range, as
//! everywhere; the host is "out" when it is the source.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
};
use serde_json::{Value, json};

use super::{
    AppState,
    auth::Principal,
    error::{ApiError, ApiResult},
    overview::auto_traffic_step,
    params::Params,
    sql::{Arg, Sql, Where},
};

/// Peers and ports listed.
const TOP: u64 = 20;
/// Alerts and violations listed.
const FINDINGS: u64 = 100;

/// The handler.
pub async fn host(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(ip): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| ApiError::param("ip", "expected one IPv4 or IPv6 address"))?;
    let p = Params::new(q, &["from", "to", "line"])?;
    let r = p.time_range()?;
    let line = p.name("line")?;
    // Stored as IPv6 (IPv4 mapped); alerts and violations hold the text form.
    let v6 = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
    .to_string();
    let text = addr.to_string();
    let ch = st.db(&who);

    let mut w = Where::default();
    w.range("first", r).eq_opt("line", line.as_ref()).and(
        "(src = toIPv6(?) OR dst = toIPv6(?))",
        [Arg::Str(v6.clone()), Arg::Str(v6.clone())],
    );
    let out = || Arg::Str(v6.clone());

    let mut totals = Sql::default();
    totals
        .bind(
            "SELECT countIf(src = toIPv6(?)) AS flows_out, sumIf(packets, src = toIPv6(?)) AS packets_out, \
             sumIf(bytes, src = toIPv6(?)) AS bytes_out, countIf(dst = toIPv6(?)) AS flows_in, \
             sumIf(packets, dst = toIPv6(?)) AS packets_in, sumIf(bytes, dst = toIPv6(?)) AS bytes_in, \
             min(first) AS first_seen, max(last) AS last_seen, groupUniqArray(10)(line) AS lines, \
             anyIf(src_country, src = toIPv6(?)) AS country_out, anyIf(dst_country, dst = toIPv6(?)) AS country_in, \
             anyIf(src_asn, src = toIPv6(?)) AS asn_out, anyIf(dst_asn, dst = toIPv6(?)) AS asn_in, \
             anyIf(src_zone, src = toIPv6(?)) AS zone_out, anyIf(dst_zone, dst = toIPv6(?)) AS zone_in FROM flows",
            (0..12).map(|_| out()),
        )
        .filter(&w);

    let step = auto_traffic_step(r);
    let from_aligned = r.from_ms.div_euclid(step as i64 * 1000) * step as i64 * 1000;
    let mut series = Sql::default();
    series
        .bind(
            "SELECT toUnixTimestamp(toStartOfInterval(toDateTime(first, 'UTC'), toIntervalSecond(?))) AS t, \
             sumIf(bytes, src = toIPv6(?)) AS bytes_out, sumIf(bytes, dst = toIPv6(?)) AS bytes_in, \
             sumIf(packets, src = toIPv6(?)) AS packets_out, sumIf(packets, dst = toIPv6(?)) AS packets_in FROM flows",
            [Arg::U64(step), out(), out(), out(), out()],
        )
        .filter(&w)
        .push(" GROUP BY t ORDER BY t");

    let mut peers = Sql::default();
    peers
        .bind(
            "SELECT if(src = toIPv6(?), dst_text, src_text) AS peer, \
             any(if(src = toIPv6(?), dst_country, src_country)) AS country, \
             any(if(src = toIPv6(?), dst_asn, src_asn)) AS asn, \
             sumIf(bytes, src = toIPv6(?)) AS bytes_out, sumIf(bytes, dst = toIPv6(?)) AS bytes_in, \
             sum(bytes) AS bytes, sum(packets) AS packets, count() AS flows FROM flows",
            (0..5).map(|_| out()),
        )
        .filter(&w)
        .push(" GROUP BY peer ORDER BY sum(bytes) DESC, peer")
        .bind(" LIMIT ?", [Arg::U64(TOP)]);

    // Ports it serves (as destination) and ports it talks to (as source).
    let ports = |served: bool| {
        let mut s = Sql::default();
        // Served: the host is the destination, its peers the sources; used: the other way.
        let (side, peer) = if served {
            ("dst", "src")
        } else {
            ("src", "dst")
        };
        s.push(&format!(
            "SELECT proto, dport AS port, count() AS flows, sum(bytes) AS bytes, uniq({peer}) AS peers FROM flows"
        ))
        .filter(&w)
        .bind(&format!(" AND {side} = toIPv6(?)"), [out()])
        .push(" GROUP BY proto, port ORDER BY flows DESC, port")
        .bind(" LIMIT ?", [Arg::U64(TOP)]);
        s
    };
    let (served, used) = (ports(true), ports(false));

    // Findings naming it (their time overlapping the range).
    let findings = |table: &str, cols: &str| {
        let mut fw = Where::default();
        fw.overlaps(r).eq_opt("line", line.as_ref()).and(
            "(src = ? OR dst = ?)",
            [Arg::Str(text.clone()), Arg::Str(text.clone())],
        );
        let mut s = Sql::new(&format!("SELECT {cols} FROM {table} FINAL"));
        s.filter(&fw)
            .push(" ORDER BY last DESC, id")
            .bind(" LIMIT ?", [Arg::U64(FINDINGS)]);
        s
    };
    let alerts = findings(
        "alerts",
        "id, kind, toString(severity) AS severity, first, last, src, dst, line, measured, unit",
    );
    let violations = findings(
        "policy_violations",
        "id, rule_id, toString(severity) AS severity, first, last, src, dst, line, flows, bytes",
    );

    let (totals, series, peers, served, used, alerts, violations) = tokio::try_join!(
        totals.row(&ch),
        series.rows(&ch),
        peers.rows(&ch),
        served.rows(&ch),
        used.rows(&ch),
        alerts.rows(&ch),
        violations.rows(&ch),
    )?;
    Ok(Json(json!({
        "ip": text,
        "from": from_aligned, "to": r.to_ms, "step": step,
        "totals": totals.unwrap_or_default(),
        "series": series,
        "peers": peers,
        "ports_served": served,
        "ports_used": used,
        "alerts": alerts,
        "violations": violations,
    })))
}
