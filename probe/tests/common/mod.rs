//! Shared helpers of the probe's integration tests: the corpus location and a reader for
//! its per-flow ground truth (`../shared/corpus/truth/<capture>.tsv`).
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tidegate_probe::record::FlowRecord;

/// The corpus directory (`<workspace>/../shared/corpus`). Panics loudly when it is
/// missing: CI has it, and a silently skipped corpus test proves nothing.
pub fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    assert!(
        dir.join("pcap").is_dir() && dir.join("truth").is_dir(),
        "corpus not found at {} (expected pcap/ and truth/ there; see the corpus README) — \
         the corpus tests cannot run without it",
        dir.display()
    );
    dir.canonicalize().expect("canonicalize corpus dir")
}

/// One corpus capture by file name (panics when absent).
pub fn corpus_pcap(name: &str) -> PathBuf {
    let p = corpus_dir().join("pcap").join(name);
    assert!(p.is_file(), "corpus capture {} is missing", p.display());
    p
}

/// Every capture in `corpus/pcap`, sorted by name.
pub fn corpus_pcaps() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus_dir().join("pcap"))
        .expect("read corpus/pcap")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

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

/// One row of a truth file.
#[derive(Clone, Debug)]
pub struct TruthFlow {
    /// `ip` or `ipv6`.
    pub fam: String,
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
    /// OR of TCP flags.
    pub tcp_flags: u16,
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
        let flow = TruthFlow {
            fam: c[0].to_string(),
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
            tcp_flags: u16::from_str_radix(c[11].trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| panic!("bad tcp_flags at {}", ctx())),
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

// ---------------------------------------------------------------------------------------
// Capture files: record boundaries of real files and writers for synthetic ones.

/// End offsets of the packet records of a pcap or pcapng file, in file order (for pcapng
/// the end of each EPB/SPB/PB; other blocks lie between them).
pub fn packet_record_ends(data: &[u8]) -> Vec<usize> {
    let magic = u32::from_be_bytes(data[0..4].try_into().unwrap());
    let mut ends = Vec::new();
    match magic {
        0xA1B2_C3D4 | 0xA1B2_3C4D | 0xD4C3_B2A1 | 0x4D3C_B2A1 => {
            let be = matches!(magic, 0xA1B2_C3D4 | 0xA1B2_3C4D);
            let rd = |o: usize| {
                let b: [u8; 4] = data[o..o + 4].try_into().unwrap();
                if be {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            };
            let mut off = 24;
            while off + 16 <= data.len() {
                off += 16 + rd(off + 8) as usize;
                assert!(off <= data.len(), "capture is itself truncated");
                ends.push(off);
            }
        }
        0x0A0D_0D0A => {
            let mut off = 0;
            let mut be = false;
            while off + 12 <= data.len() {
                let rd = |o: usize, be: bool| {
                    let b: [u8; 4] = data[o..o + 4].try_into().unwrap();
                    if be {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    }
                };
                let t = rd(off, be);
                if t == 0x0A0D_0D0A {
                    be = u32::from_be_bytes(data[off + 8..off + 12].try_into().unwrap())
                        == 0x1A2B_3C4D;
                }
                let len = rd(off + 4, be) as usize;
                off += len;
                if matches!(t, 2 | 3 | 6) {
                    ends.push(off);
                }
            }
        }
        m => panic!("not a capture: magic {m:08x}"),
    }
    ends
}

/// Writes a classic pcap file: `frames` are (timestamp ns, bytes); `nanos` selects the
/// nanosecond magic, `be` big-endian byte order.
pub fn write_pcap(path: &Path, linktype: u32, nanos: bool, be: bool, frames: &[(u64, Vec<u8>)]) {
    let mut out = Vec::new();
    let w32 = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
    };
    w32(&mut out, if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 });
    let ver = if be { [0, 2, 0, 4] } else { [2, 0, 4, 0] };
    out.extend_from_slice(&ver);
    w32(&mut out, 0);
    w32(&mut out, 0);
    w32(&mut out, 65535);
    w32(&mut out, linktype);
    for (ts, data) in frames {
        w32(&mut out, (ts / 1_000_000_000) as u32);
        let frac = ts % 1_000_000_000;
        w32(
            &mut out,
            if nanos {
                frac as u32
            } else {
                (frac / 1000) as u32
            },
        );
        w32(&mut out, data.len() as u32);
        w32(&mut out, data.len() as u32);
        out.extend_from_slice(data);
    }
    std::fs::write(path, out).expect("write pcap");
}

/// Builds pcapng files block by block.
pub struct PcapNg {
    /// The file so far.
    pub out: Vec<u8>,
    be: bool,
}

impl PcapNg {
    /// A new file starting with a section header block.
    pub fn new(be: bool) -> Self {
        let mut p = PcapNg {
            out: Vec::new(),
            be,
        };
        p.section(be);
        p
    }

    fn u32b(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u16b(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn block(&mut self, t: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = body.len() as u32 + 12;
        let (a, b) = (self.u32b(t), self.u32b(len));
        self.out.extend_from_slice(&a);
        self.out.extend_from_slice(&b);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&b);
    }

    /// Starts a new section (interfaces are reset) in the given byte order.
    pub fn section(&mut self, be: bool) {
        self.be = be;
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32b(0x1A2B_3C4D));
        body.extend_from_slice(&self.u16b(1));
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0A0D_0D0A, &body);
    }

    /// Describes an interface; `tsresol`/`tsoffset` add those options.
    pub fn interface(&mut self, linktype: u16, tsresol: Option<u8>, tsoffset: Option<i64>) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16b(linktype));
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&self.u32b(0));
        if let Some(r) = tsresol {
            body.extend_from_slice(&self.u16b(9));
            body.extend_from_slice(&self.u16b(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(o) = tsoffset {
            body.extend_from_slice(&self.u16b(14));
            body.extend_from_slice(&self.u16b(8));
            body.extend_from_slice(&if self.be {
                o.to_be_bytes()
            } else {
                o.to_le_bytes()
            });
        }
        if tsresol.is_some() || tsoffset.is_some() {
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        self.block(1, &body);
    }

    /// An enhanced packet block; `ts` in the interface's units.
    pub fn epb(&mut self, iface: u32, ts: u64, data: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32b(iface));
        body.extend_from_slice(&self.u32b((ts >> 32) as u32));
        body.extend_from_slice(&self.u32b(ts as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        self.block(6, &body);
    }

    /// A simple packet block (interface 0, no timestamp).
    pub fn spb(&mut self, data: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        self.block(3, &body);
    }
}

/// IPv4 header + `l4` (total length = 20 + l4.len() unless `total_len` is given).
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8], total_len: Option<u16>) -> Vec<u8> {
    let tl = total_len.unwrap_or(20 + l4.len() as u16);
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&tl.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(l4);
    h
}

/// A UDP header and `payload` zero bytes.
pub fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.resize(8 + payload, 0);
    u
}

/// Ethernet II header with `ethertype` followed by `payload`.
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

// ---------------------------------------------------------------------------------------
// Running the binary.

/// Result of one `tidegate-probe` run.
pub struct Run {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Records printed on stdout.
    pub records: Vec<serde_json::Value>,
    /// Raw stdout.
    pub stdout: String,
    /// stderr with ANSI colour sequences removed.
    pub stderr: String,
}

impl Run {
    /// stderr lines that report an error.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("error"))
            .collect()
    }

    /// The counters of the per-file summary line logged for `file` (by its file name).
    pub fn summary(&self, file: &str) -> BTreeMap<String, u64> {
        let line = self
            .stderr
            .lines()
            .find(|l| l.contains("replayed:") && l.contains(file))
            .unwrap_or_else(|| panic!("no summary for {file} in stderr:\n{}", self.stderr));
        let names: Vec<&str> = tidegate_common::Counter::ALL
            .iter()
            .map(|c| c.name())
            .collect();
        line.split_whitespace()
            .filter_map(|t| t.split_once('='))
            .filter(|(k, _)| names.contains(k))
            .map(|(k, v)| (k.to_string(), v.parse().expect("counter value")))
            .collect()
    }
}

/// Removes ANSI escape sequences (the log formatter may colour its output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            it.next();
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `tidegate-probe` with `args` (RUST_LOG unset, so the default info level).
pub fn run_probe(args: &[&std::ffi::OsStr]) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate-probe"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run tidegate-probe");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    let records = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}"))
        })
        .collect();
    Run {
        code: out.status.code(),
        records,
        stdout,
        stderr,
    }
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
