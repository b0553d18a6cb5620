//! The DNS question names and TLS server names the replay attaches to flows, checked
//! against tshark's own dissection (`dns.qry.name`, `tls.handshake.extensions_server_name`)
//! of every corpus capture: for every unidirectional 5-tuple in which tshark sees a name,
//! one of our records of that 5-tuple carries tshark's first name for it, and every name
//! we attach is one tshark saw in that 5-tuple.
//!
//! Left out of the comparison, with the reason: frames inside tunnels (tshark names the
//! inner packet; our records are keyed by the outer header, whose payload is the
//! tunnel), QUIC (tshark decrypts the Initial packet; we read only cleartext
//! ClientHellos), IP fragments (the truth convention: no reassembly), and TLS names
//! tshark finds after the first 8 packets of a flow (we read only the first packets).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;

use tidegate_probe::capture::pcap::Replay;
use tidegate_probe::table::Timeouts;
use tidegate_testkit::paths::corpus_pcaps;

type Key = (IpAddr, IpAddr, u8, u16, u16);

/// tshark's names per 5-tuple, in frame order.
/// `tls_ports`: TCP ports tshark is told to decode as TLS (it dissects TLS only on
/// the ports it knows; the replay reads a ClientHello on any port).
fn tshark_names(pcap: &std::path::Path, tls_ports: &BTreeSet<u16>) -> BTreeMap<Key, Vec<String>> {
    let decode_as: Vec<String> = tls_ports
        .iter()
        .flat_map(|p| ["-d".to_string(), format!("tcp.port=={p},tls")])
        .collect();
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(&decode_as)
        .args([
            "-o",
            "ip.defragment:FALSE",
            "-o",
            "ipv6.defragment:FALSE",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.src",
            "-e",
            "ipv6.dst",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "dns.qry.name",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "quic.version",
            "-e",
            "ip.flags.mf",
            "-e",
            "ip.frag_offset",
            "-Y",
            "dns.qry.name || tls.handshake.extensions_server_name",
        ])
        .output()
        .expect("tshark (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 11 {
            continue;
        }
        let one = |s: &str| (!s.is_empty() && !s.contains('|')).then(|| s.to_string());
        // Tunnels show several IP layers; QUIC and fragments are left out (see above).
        let multi = f[..4].iter().any(|s| s.contains('|'))
            || (!f[0].is_empty() && !f[2].is_empty())
            || !f[10].is_empty();
        if multi {
            continue;
        }
        let (src, dst) = match (one(f[0]), one(f[1]), one(f[2]), one(f[3])) {
            (Some(s), Some(d), _, _) | (_, _, Some(s), Some(d)) => (s, d),
            _ => continue,
        };
        let (proto, sport, dport) = match (one(f[4]), one(f[5]), one(f[6]), one(f[7])) {
            (Some(s), Some(d), _, _) => (17u8, s, d),
            (_, _, Some(s), Some(d)) => (6u8, s, d),
            _ => continue,
        };
        let name = match (f[8], f[9]) {
            (q, _) if !q.is_empty() => q.split('|').next().unwrap().to_string(),
            (_, s) if !s.is_empty() => s.split('|').next().unwrap().to_string(),
            _ => continue,
        };
        let name = if name == "<Root>" {
            ".".to_string()
        } else {
            name
        };
        let key = (
            src.parse().unwrap(),
            dst.parse().unwrap(),
            proto,
            sport.parse().unwrap(),
            dport.parse().unwrap(),
        );
        names.entry(key).or_default().push(name);
    }
    names
}

#[test]
fn replayed_dns_and_tls_names_match_tshark_on_every_capture() {
    let mut compared = (0usize, 0usize);
    let mut problems = Vec::new();
    for pcap in corpus_pcaps() {
        let mut want = tshark_names(&pcap, &BTreeSet::new());
        let mut records = Vec::new();
        let mut replay = Replay::new(Timeouts::default());
        replay.replay_file(&pcap, "l", &mut records).unwrap();
        replay.finish(&mut records).unwrap();
        let mut ours: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
        for r in &records {
            let name = r
                .dns
                .as_ref()
                .map(|d| d.qname.clone())
                .or(r.sni.as_deref().map(String::from));
            if let Some(n) = name {
                ours.entry((r.src, r.dst, r.proto, r.sport, r.dport))
                    .or_default()
                    .insert(n);
            }
        }
        let file = pcap.file_name().unwrap().to_string_lossy().to_string();
        // TLS names on ports tshark does not dissect as TLS: ask it to, then compare.
        let odd: BTreeSet<u16> = ours
            .iter()
            .filter(|(k, _)| k.2 == 6 && !want.contains_key(k))
            .map(|(k, _)| k.3.min(k.4))
            .collect();
        if !odd.is_empty() {
            want = tshark_names(&pcap, &odd);
        }
        for (k, names) in &want {
            let first = &names[0];
            let dns_ports = [53, 5353, 5355];
            let is_tls = !dns_ports.contains(&k.3) && !dns_ports.contains(&k.4);
            compared.0 += 1;
            match ours.get(k) {
                Some(got) if got.contains(first) => {}
                // A TLS name tshark found later than our first packets.
                None if is_tls && records_of(&records, k) > tidegate_probe::app::FIRST_PACKETS => {}
                got => problems.push(format!(
                    "{file} {k:?}: tshark {first:?} (all {names:?}), ours {got:?}"
                )),
            }
        }
        for (k, got) in &ours {
            compared.1 += 1;
            let seen: BTreeSet<&String> =
                want.get(k).map(|v| v.iter().collect()).unwrap_or_default();
            for n in got {
                if !seen.contains(n) {
                    problems.push(format!("{file} {k:?}: ours {n:?}, tshark {seen:?}"));
                }
            }
        }
    }
    eprintln!(
        "{} tshark-named 5-tuples, {} named by the replay, {} differences",
        compared.0,
        compared.1,
        problems.len()
    );
    assert!(compared.0 > 300, "too few names compared: {compared:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Packets of the 5-tuple `k` over all its records.
fn records_of(records: &[tidegate_wire::record::FlowRecord], k: &Key) -> u64 {
    records
        .iter()
        .filter(|r| (r.src, r.dst, r.proto, r.sport, r.dport) == *k)
        .map(|r| r.packets)
        .sum()
}
