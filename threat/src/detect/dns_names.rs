//! DNS tunnelling by query names: many distinct, long, high-entropy leading labels under
//! one parent domain from one host — data encoded into names (dnscat, iodine, DNS
//! exfiltration kits) — including the low-and-slow variant interleaved with ordinary
//! lookups, which the flow-size rule (`dns_tunnel`) cannot see.
//!
//! Per (client host, parent domain) and window (several lengths: a burst, and hours for
//! the slow variant; each hopping by half its length), from the DNS question of each query flow (`FlowRecord::dns`, read by
//! the probe from the first packets of the flow): the number of distinct leading parts,
//! their mean length and mean character entropy. The parent is the registrable-looking
//! suffix (two labels, three under a country code's second level such as `com.cn`);
//! names whose last label does not look like a top-level domain (raw dnscat) are counted
//! under "(no domain)".

use std::collections::BTreeMap;
use std::net::IpAddr;

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use tidegate_wire::{Name, record::FlowRecord};

use super::alert::{AlertKind, Detection, Endpoint};
use super::config::DnsNamesConfig;
use super::window::{forget_lowest_half, hopping_windows, keep_earliest, oldest_end};
use super::{NS, Rule};
use crate::Severity;

/// Distinct leading parts kept per key and window.
const DISTINCT_MAX: usize = 4096;
/// Example names kept for the description.
const EXAMPLES: usize = 3;

#[derive(Default)]
struct Acc {
    distinct: HashSet<u64>,
    queries: u64,
    len_sum: f64,
    entropy_sum: f64,
    first_ns: u64,
    last_ns: u64,
    line: Name,
    examples: Vec<String>,
    /// Resolvers asked (up to [`RESOLVERS_MAX`]).
    resolvers: Vec<IpAddr>,
    evidence: Vec<FlowRecord>,
}

const RESOLVERS_MAX: usize = 8;

struct Scale {
    len: u64,
    min_distinct: u64,
    windows: BTreeMap<u64, HashMap<(IpAddr, String), Acc>>,
}

pub(crate) struct DnsNames {
    cfg: DnsNamesConfig,
    evidence_max: usize,
    scales: Vec<Scale>,
}

/// Country-code second levels under which registrations sit one label deeper.
const SECOND_LEVELS: [&str; 10] = [
    "co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go",
];

/// (leading part, parent domain) of a query name (lower-cased).
pub(crate) fn split_name(qname: &str) -> (String, String) {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    let tld_like =
        |l: &str| l.len() <= 24 && l.chars().all(|c| c.is_ascii_alphabetic() || c == '-');
    match labels.last() {
        Some(l) if tld_like(l) => {
            let mut n = 2.min(labels.len());
            if labels.len() >= 3
                && l.len() == 2
                && SECOND_LEVELS.contains(&labels[labels.len() - 2])
            {
                n = 3;
            }
            let cut = labels.len() - n;
            (labels[..cut].join("."), labels[cut..].join("."))
        }
        _ => (labels.join("."), "(no domain)".to_string()),
    }
}

/// Shannon entropy (bits per character) of `s` without its dots.
fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes().filter(|b| *b != b'.') {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl DnsNames {
    pub fn new(cfg: DnsNamesConfig, evidence_max: usize) -> Self {
        let scales = cfg
            .window_secs
            .iter()
            .zip(&cfg.min_distinct)
            .map(|(&secs, &min)| Scale {
                len: secs * NS,
                min_distinct: min,
                windows: BTreeMap::new(),
            })
            .collect();
        DnsNames {
            cfg,
            evidence_max,
            scales,
        }
    }
}

impl Rule for DnsNames {
    fn observe(&mut self, r: &FlowRecord) {
        // Queries only (answers repeat the question back to the client).
        let Some(d) = r.dns.as_ref().filter(|d| d.rcode.is_none()) else {
            return;
        };
        let (lead, parent) = split_name(&d.qname);
        if lead.is_empty() {
            return;
        }
        let (h, e, l) = (fnv(&lead), entropy(&lead), lead.len() as f64);
        let max_keys = self.cfg.max_keys;
        for s in &mut self.scales {
            for w in hopping_windows(r.first, s.len) {
                let win = s.windows.entry(w).or_default();
                let key = (r.src, parent.clone());
                if win.len() >= max_keys && !win.contains_key(&key) {
                    // Full: keep the keys with the most distinct names.
                    forget_lowest_half(win, |a| a.distinct.len() as f64);
                }
                let acc = win.entry(key).or_default();
                if acc.queries == 0 {
                    acc.first_ns = r.first;
                    acc.line = r.line.clone();
                }
                acc.first_ns = acc.first_ns.min(r.first);
                acc.last_ns = acc.last_ns.max(r.last);
                acc.queries += 1;
                acc.len_sum += l;
                acc.entropy_sum += e;
                if acc.distinct.len() < DISTINCT_MAX
                    && acc.distinct.insert(h)
                    && acc.examples.len() < EXAMPLES
                {
                    acc.examples.push(d.qname.clone());
                }
                if acc.resolvers.len() < RESOLVERS_MAX && !acc.resolvers.contains(&r.dst) {
                    acc.resolvers.push(r.dst);
                }
                keep_earliest(&mut acc.evidence, r, self.evidence_max);
            }
        }
    }

    fn due(&self) -> u64 {
        self.scales
            .iter()
            .map(|s| oldest_end(&s.windows, s.len))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        let cfg = &self.cfg;
        for s in &mut self.scales {
            while let Some(e) = s.windows.first_entry() {
                if e.key().saturating_add(s.len) > watermark {
                    break;
                }
                let (w, keys) = e.remove_entry();
                for ((host, parent), mut acc) in keys {
                    let distinct = acc.distinct.len() as u64;
                    let q = acc.queries as f64;
                    let (mean_len, mean_entropy) = (acc.len_sum / q, acc.entropy_sum / q);
                    if distinct < s.min_distinct
                        || mean_len < cfg.min_mean_length
                        || mean_entropy < cfg.min_entropy
                    {
                        continue;
                    }
                    let secs = s.len / NS;
                    out.push(Detection {
                        kind: AlertKind::DnsTunnel,
                        key: format!("names:{host}>{parent}"),
                        window_start: w,
                        severity: Severity::scaled(Severity::Medium, distinct as f64, s.min_distinct as f64)
                            .min(Severity::High),
                        first_ns: acc.first_ns,
                        last_ns: acc.last_ns,
                        src: Some(Endpoint::Addr(host)),
                        dst: Some(match acc.resolvers[..] {
                            [one] => Endpoint::Addr(one),
                            ref many if many.len() >= RESOLVERS_MAX => {
                                Endpoint::Many(format!("at least {} resolvers", many.len()))
                            }
                            ref many => Endpoint::Many(format!("{} resolvers", many.len())),
                        }),
                        port: Some(53),
                        line: acc.line.to_string(),
                        measured: distinct as f64,
                        threshold: s.min_distinct as f64,
                        unit: "distinct names",
                        description: format!(
                            "{host} asked {distinct} distinct names under {parent} in {secs}s ({} queries; \
                             leading labels {mean_len:.0} characters long on average, {mean_entropy:.1} bits \
                             of entropy per character — data encoded in names; alert at {} names, {:.0} \
                             characters, {:.1} bits), e.g. {}",
                            acc.queries,
                            s.min_distinct,
                            cfg.min_mean_length,
                            cfg.min_entropy,
                            acc.examples.join(", ")
                        ),
                        evidence: std::mem::take(&mut acc.evidence),
                        volume: None,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectConfig;
    use tidegate_wire::record::DnsMeta;

    #[test]
    fn parents_are_registrable_looking_suffixes() {
        assert_eq!(
            split_name("a.b.example.com"),
            ("a.b".into(), "example.com".into())
        );
        assert_eq!(
            split_name("x.y.example.com.cn"),
            ("x.y".into(), "example.com.cn".into())
        );
        assert_eq!(
            split_name("Example.COM."),
            ("".into(), "example.com".into())
        );
        assert_eq!(
            split_name("dnscat.546b03f5.19e4d098dc8c618f"),
            (
                "dnscat.546b03f5.19e4d098dc8c618f".into(),
                "(no domain)".into()
            )
        );
    }

    fn query(host: &str, name: &str, t: u64) -> FlowRecord {
        FlowRecord {
            src: host.parse().unwrap(),
            dst: "10.0.0.53".parse().unwrap(),
            sport: 40_000 + (t / NS % 20_000) as u16,
            dport: 53,
            proto: 17,
            packets: 1,
            bytes: 60 + name.len() as u64,
            first: t,
            last: t,
            line: "l".into(),
            dns: Some(Box::new(DnsMeta {
                qname: name.into(),
                qtype: 1,
                rcode: None,
            })),
            ..Default::default()
        }
    }

    /// Random-looking bytes, as encoded data is.
    pub(crate) fn splitmix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn run(recs: &[FlowRecord]) -> Vec<Detection> {
        let mut r = DnsNames::new(DetectConfig::default().dns_names, 5);
        let mut out = Vec::new();
        for x in recs {
            r.observe(x);
        }
        r.close(u64::MAX, &mut out);
        out
    }

    #[test]
    fn encoded_names_under_one_parent_alert_and_ordinary_lookups_do_not() {
        let t0 = 1_700_000_000 * NS;
        let mut recs: Vec<FlowRecord> = (0..200u64)
            .map(|i| {
                let data = format!("{:016x}{:016x}", splitmix(2 * i), splitmix(2 * i + 1));
                query(
                    "10.1.1.9",
                    &format!("{data}.t.exfil-example.net"),
                    t0 + i * 2 * NS,
                )
            })
            .collect();
        let ordinary = [
            "www.example.com",
            "mail.example.com",
            "api.github.com",
            "cdn.jsdelivr.net",
        ];
        recs.extend(
            (0..400u64).map(|i| query("10.1.1.10", ordinary[(i % 4) as usize], t0 + i * NS)),
        );
        let out = run(&recs);
        assert!(!out.is_empty());
        assert!(
            out.iter()
                .all(|d| d.src == Some(Endpoint::Addr("10.1.1.9".parse().unwrap())))
        );
        assert!(out[0].key.ends_with("exfil-example.net"), "{}", out[0].key);
        assert!(
            out[0].description.contains("distinct names"),
            "{}",
            out[0].description
        );
    }
}
