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

impl From<&FlowRecord> for Key {
    fn from(r: &FlowRecord) -> Self {
        Key {
            src: r.src,
            dst: r.dst,
            proto: r.proto as i32,
            sport: r.sport,
            dport: r.dport,
        }
    }
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

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.packets += o.packets;
        self.ip_bytes += o.ip_bytes;
    }
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
            *m.entry(f.key).or_default() += f.counts;
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
        u16::from_str_radix(c[11].trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("bad tcp_flags at {}", ctx()));
        let flow = TruthFlow {
            key: Key {
                src: column(c[1], "src", ctx),
                dst: column(c[2], "dst", ctx),
                proto: column(c[3], "proto", ctx),
                sport: column(c[4], "sport", ctx),
                dport: column(c[5], "dport", ctx),
            },
            counts: Counts {
                packets: column(c[6], "pkts", ctx),
                ip_bytes: column(c[8], "ip_bytes", ctx),
            },
            frame_bytes: column(c[7], "frame_bytes", ctx),
            first: column(c[9], "first", ctx),
            last: column(c[10], "last", ctx),
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

/// One column of a truth row, parsed; panics naming the column, its text and the line.
fn column<T: std::str::FromStr>(s: &str, what: &str, line: impl Fn() -> String) -> T {
    s.parse()
        .unwrap_or_else(|_| panic!("bad {what} {s:?} at {}", line()))
}

/// Sums records by truth key: over VLANs and over records split by the timeouts.
pub fn sum_records(records: &[FlowRecord]) -> BTreeMap<Key, Counts> {
    let mut m: BTreeMap<Key, Counts> = BTreeMap::new();
    for r in records {
        *m.entry(Key::from(r)).or_default() += Counts {
            packets: r.packets,
            ip_bytes: r.bytes,
        };
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
        *m.entry(k).or_default() += Counts {
            packets: r["packets"].as_u64().unwrap(),
            ip_bytes: r["bytes"].as_u64().unwrap(),
        };
    }
    m
}
