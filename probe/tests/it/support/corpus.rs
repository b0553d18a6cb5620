//! The corpus's per-flow ground truth (`<corpus>/truth/<capture>.tsv`, made by tshark)
//! and flow records summed by its key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tidegate_probe::record::FlowRecord;
use tidegate_testkit::paths::corpus_dir;

/// Unidirectional flow key as the truth files use it (no VLAN, no direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol / IPv6 next header (`-1` when tshark reported none).
    pub proto: i32,
    /// L4 source port (0 when none).
    pub sport: u16,
    /// L4 destination port (0 when none).
    pub dport: u16,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} > {} {} proto {}",
            self.src, self.sport, self.dst, self.dport, self.proto
        )
    }
}

/// Packet and IP-byte totals of one flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets.
    pub packets: u64,
    /// IP-layer bytes.
    pub ip_bytes: u64,
}

/// One row of a truth file. (Its family column follows from the addresses, and its TCP
/// flags column is checked for form only: no test compares either.)
#[derive(Clone, Debug)]
pub struct TruthFlow {
    /// The key.
    pub key: Key,
    /// Packets and IP bytes.
    pub counts: Counts,
    /// Whole frames' bytes.
    pub frame_bytes: u64,
    /// First packet, epoch seconds (µs precision).
    pub first: f64,
    /// Last packet, epoch seconds.
    pub last: f64,
}

/// A parsed truth file.
#[derive(Clone, Debug, Default)]
pub struct Truth {
    /// Flow rows, in file order.
    pub flows: Vec<TruthFlow>,
    /// Frames without an IP header (`#non-ip pkts=`).
    pub non_ip_packets: u64,
    /// Their frame bytes.
    pub non_ip_frame_bytes: u64,
}

impl Truth {
    /// Packets and IP bytes by key (rows with the same key summed).
    pub fn by_key(&self) -> BTreeMap<Key, Counts> {
        let mut m: BTreeMap<Key, Counts> = BTreeMap::new();
        for f in &self.flows {
            let c = m.entry(f.key).or_default();
            c.packets += f.counts.packets;
            c.ip_bytes += f.counts.ip_bytes;
        }
        m
    }

    /// Total packets over all flow rows (IP frames).
    pub fn ip_packets(&self) -> u64 {
        self.flows.iter().map(|f| f.counts.packets).sum()
    }
}

/// The truth file of a capture (`truth/<file name>.tsv`).
pub fn truth_path(pcap: &Path) -> PathBuf {
    let name = pcap.file_name().expect("file name").to_string_lossy();
    corpus_dir().join("truth").join(format!("{name}.tsv"))
}

/// Reads a truth file; panics with the line number on any malformed line.
pub fn read_truth(path: &Path) -> Truth {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read truth file {}: {e}", path.display()));
    let mut t = Truth::default();
    let mut saw_non_ip = false;
    for (i, line) in text.lines().enumerate() {
        let ctx = || format!("{}:{}: {line:?}", path.display(), i + 1);
        if line.is_empty() || line.starts_with("#fam") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("#non-ip\t") {
            for kv in rest.split('\t') {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{}", ctx()));
                let v: u64 = v.parse().unwrap_or_else(|_| panic!("{}", ctx()));
                match k {
                    "pkts" => t.non_ip_packets = v,
                    "frame_bytes" => t.non_ip_frame_bytes = v,
                    _ => panic!("unknown #non-ip field in {}", ctx()),
                }
            }
            saw_non_ip = true;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let c: Vec<&str> = line.split('\t').collect();
        assert_eq!(c.len(), 12, "expected 12 columns at {}", ctx());
        let num = |s: &str| -> u64 {
            s.parse()
                .unwrap_or_else(|_| panic!("bad number {s:?} at {}", ctx()))
        };
        u16::from_str_radix(c[11].trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("bad tcp_flags at {}", ctx()));
        let flow = TruthFlow {
            key: Key {
                src: c[1]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad src at {}", ctx())),
                dst: c[2]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad dst at {}", ctx())),
                proto: c[3]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad proto at {}", ctx())),
                sport: c[4]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad sport at {}", ctx())),
                dport: c[5]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad dport at {}", ctx())),
            },
            counts: Counts {
                packets: num(c[6]),
                ip_bytes: num(c[8]),
            },
            frame_bytes: num(c[7]),
            first: c[9]
                .parse()
                .unwrap_or_else(|_| panic!("bad first at {}", ctx())),
            last: c[10]
                .parse()
                .unwrap_or_else(|_| panic!("bad last at {}", ctx())),
        };
        t.flows.push(flow);
    }
    assert!(
        saw_non_ip,
        "{}: no #non-ip line (incomplete truth file?)",
        path.display()
    );
    t
}

/// Sums records by truth key: over VLANs and over records split by the timeouts.
pub fn sum_records(records: &[FlowRecord]) -> BTreeMap<Key, Counts> {
    let mut m: BTreeMap<Key, Counts> = BTreeMap::new();
    for r in records {
        let k = Key {
            src: r.src,
            dst: r.dst,
            proto: r.proto as i32,
            sport: r.sport,
            dport: r.dport,
        };
        let c = m.entry(k).or_default();
        c.packets += r.packets;
        c.ip_bytes += r.bytes;
    }
    m
}

/// Sums JSON records by truth key (packets, bytes).
pub fn sum_json(records: &[serde_json::Value]) -> BTreeMap<Key, Counts> {
    let mut m: BTreeMap<Key, Counts> = BTreeMap::new();
    for r in records {
        let k = Key {
            src: r["src"].as_str().unwrap().parse().unwrap(),
            dst: r["dst"].as_str().unwrap().parse().unwrap(),
            proto: r["proto"].as_i64().unwrap() as i32,
            sport: r["sport"].as_u64().unwrap() as u16,
            dport: r["dport"].as_u64().unwrap() as u16,
        };
        let c = m.entry(k).or_default();
        c.packets += r["packets"].as_u64().unwrap();
        c.ip_bytes += r["bytes"].as_u64().unwrap();
    }
    m
}
