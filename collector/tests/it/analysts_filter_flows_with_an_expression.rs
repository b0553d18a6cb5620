//! An analyst narrows flows with a filter expression (`q=`) over the stored fields: on
//! traffic from the real pipeline, each expression's totals, top talkers and CSV export equal
//! a hand-written ClickHouse query for the same question; typos come back as a 400 naming
//! `q` and the column.

use serde_json::Value;

use crate::support::ui::{CAPTURES, Console, api, block_on, enc};

/// (expression, the same question as SQL over tidegate.flows, whether it must match rows).
const CASES: &[(&str, &str, bool)] = &[
    (
        "proto = udp and port = 53",
        "proto = 17 AND (sport = 53 OR dport = 53)",
        true,
    ),
    (
        "proto = tcp flags = syn packets <= 2",
        "proto = 6 AND bitAnd(tcp_flags, 2) = 2 AND packets <= 2",
        true,
    ),
    (
        "not (proto = tcp) or bytes > 10k",
        "NOT (proto = 6) OR bytes > 10000",
        true,
    ),
    (
        "dport in (80, 443) and duration >= 1s",
        "dport IN (80, 443) AND toUnixTimestamp64Milli(last) - toUnixTimestamp64Milli(first) >= 1000",
        true,
    ),
    (
        "ip = 192.168.0.0/16 and port != 53",
        "(isIPAddressInRange(src_text, '192.168.0.0/16') OR isIPAddressInRange(dst_text, '192.168.0.0/16')) AND sport != 53 AND dport != 53",
        true,
    ),
    (
        "name ~ \"CO\" or dns_rcode = nxdomain",
        "positionCaseInsensitive(dns_qname, 'co') > 0 OR positionCaseInsensitive(tls_sni, 'co') > 0 OR dns_rcode = 3",
        true,
    ),
    (
        "proto = udp dns_rcode < servfail dns_qtype != aaaa",
        "proto = 17 AND dns_rcode >= 0 AND dns_rcode < 2 AND NOT (dns_qtype != 0 AND dns_qtype = 28)",
        true,
    ),
    (
        "vlan != 5 and not (icmp_code > 0)",
        "(vlan IS NULL OR vlan != 5) AND NOT (icmp_code IS NOT NULL AND icmp_code > 0)",
        true,
    ),
    (
        "direction = ingress and (packets > 100 or bytes >= 1M)",
        "direction = 'ingress' AND (packets > 100 OR bytes >= 1000000)",
        true,
    ),
    (
        "tunnel != gre and not (tunnel_id > 0) and outer_ip != 198.51.100.0/24",
        "NOT (tunnel != '' AND tunnel = 'gre') AND NOT (tunnel != '' AND tunnel_id > 0) \
         AND NOT (outer_src != toIPv6('::') AND isIPAddressInRange(IPv6NumToString(outer_src), '::ffff:198.51.100.0/120')) \
         AND NOT (outer_dst != toIPv6('::') AND isIPAddressInRange(IPv6NumToString(outer_dst), '::ffff:198.51.100.0/120'))",
        true,
    ),
    ("tunnel = vxlan", "tunnel != '' AND tunnel = 'vxlan'", true),
    (
        "tunnel = gre or not (outer_ip = 0.0.0.0/0 or outer_ip = ::/0) and tunnel = vxlan",
        "tunnel = 'gre' OR (outer_src = toIPv6('::') AND outer_dst = toIPv6('::') AND tunnel = 'vxlan')",
        false,
    ),
    ("line = \"no such line\"", "line = 'no such line'", false),
];

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn filter_expressions_give_what_the_same_sql_gives() {
    let mut c = Console::start(true);
    c.seed(&CAPTURES);
    // VXLAN traffic from a probe with tunnels = "inner": the tunnel fields have values.
    c.seed_keyed(&["ndpi-vxlan.pcap"], tidegate_common::Tunnels::Inner);
    block_on(async {
        let range = "from=1000000000000&to=2500000000000";
        for (expr, sql, nonempty) in CASES {
            let want = c
                .stack
                .ch
                .query(&format!(
                    "SELECT count(), sum(packets), sum(bytes) FROM tidegate.flows WHERE {sql}"
                ))
                .await;
            let v = api(
                &c.url,
                &format!("/api/v1/flows?{range}&limit=5&q={}", enc(expr)),
            )
            .await
            .json_ok(expr);
            let got = format!(
                "{}\t{}\t{}",
                u(&v["total"]),
                u(&v["packets"]),
                u(&v["bytes"])
            );
            assert_eq!(got, want, "{expr} vs {sql}");
            assert_eq!(u(&v["total"]) > 0, *nonempty, "{expr}: {got}");

            // Top destinations under the same expression.
            let want = c
                .stack
                .ch
                .query(&format!(
                    "SELECT dst_text, sum(bytes) FROM tidegate.flows WHERE {sql} GROUP BY dst_text ORDER BY sum(bytes) DESC, dst_text LIMIT 5"
                ))
                .await;
            let want: Vec<&str> = want.lines().collect();
            let v = api(
                &c.url,
                &format!("/api/v1/top-talkers?{range}&by=dst&limit=5&q={}", enc(expr)),
            )
            .await
            .json_ok(expr);
            let got: Vec<String> = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| format!("{}\t{}", i["dst"].as_str().unwrap(), u(&i["bytes"])))
                .collect();
            // Ties in bytes may order differently: the byte column in order, and the
            // destinations as a set unless a tie can cross the limit.
            let bytes = |rows: Vec<&str>| -> Vec<String> {
                rows.iter()
                    .map(|l| l.split_once('\t').unwrap().1.to_string())
                    .collect()
            };
            assert_eq!(
                bytes(got.iter().map(String::as_str).collect()),
                bytes(want.clone()),
                "{expr}: top talkers"
            );
            if !want.is_empty() && want.len() < 5 {
                let mut got_sorted: Vec<&str> = got.iter().map(String::as_str).collect();
                let mut want_sorted = want.clone();
                got_sorted.sort();
                want_sorted.sort();
                assert_eq!(got_sorted, want_sorted, "{expr}: top talkers");
            }
        }

        // The export of a filtered view holds exactly the filtered rows.
        let expr = CASES[0].0;
        let r = api(
            &c.url,
            &format!("/api/v1/flows?{range}&format=csv&q={}", enc(expr)),
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{expr}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let csv = String::from_utf8(r.body).unwrap();
        let want = c
            .stack
            .ch
            .query(&format!(
                "SELECT count() FROM tidegate.flows WHERE {}",
                CASES[0].1
            ))
            .await;
        assert_eq!((csv.lines().count() - 1).to_string(), want);

        // A decapsulated flow's row names its tunnel and endpoints as the probe sent them.
        let mut want: Vec<String> = c
            .records
            .iter()
            .filter_map(|r| {
                let t = r.tunnel.as_ref()?;
                let ip = |a: Option<std::net::IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
                Some(format!(
                    "{} {} {} {} {}",
                    r.src,
                    t.kind.name(),
                    t.id,
                    ip(t.outer_src),
                    ip(t.outer_dst)
                ))
            })
            .collect();
        want.sort();
        assert!(
            !want.is_empty(),
            "the VXLAN capture gives decapsulated flows"
        );
        let v = api(
            &c.url,
            &format!(
                "/api/v1/flows?{range}&limit=1000&q={}",
                enc("tunnel = vxlan")
            ),
        )
        .await
        .json_ok("tunnel = vxlan");
        let mut got: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{} {} {} {} {}",
                    i["src"].as_str().unwrap(),
                    i["tunnel"].as_str().unwrap(),
                    u(&i["tunnel_id"]),
                    i["outer_src"].as_str().unwrap(),
                    i["outer_dst"].as_str().unwrap()
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "tunnel columns of the VXLAN flows");

        // Mistakes name the parameter, the column and what was expected.
        for (expr, column, says) in [
            ("port = 53 and prot = udp", 15, "unknown field \"prot\""),
            ("port = 99999", 8, "port: 99999 is above 65535"),
            ("(port = 53", 11, "expected )"),
            ("ip > 10.0.0.1", 4, "operator > does not apply"),
        ] {
            let r = api(&c.url, &format!("/api/v1/flows?{range}&q={}", enc(expr))).await;
            assert_eq!(
                r.status,
                400,
                "{expr}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let v = r.json();
            assert_eq!(v["parameter"], "q", "{expr}: {v}");
            let e = v["error"].as_str().unwrap();
            assert!(e.contains(&format!("at column {column}: ")), "{expr}: {e}");
            assert!(e.contains(says), "{expr}: {e}");
        }
    });
}
