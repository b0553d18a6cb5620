//! Real NetFlow/IPFIX peers from Debian: softflowd exporting a capture, nfcapd/nfdump
//! receiving and reading back.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tidegate_testkit::TestClickHouse;
use tidegate_wire::record::FlowRecord;

/// (src, dst, proto, sport, dport).
pub type Key = (IpAddr, IpAddr, u8, u16, u16);
/// Per key: (packets, bytes).
pub type Sums = BTreeMap<Key, (u64, u64)>;

/// The collector configuration for a NetFlow listener on 127.0.0.1:`port` taking flows
/// from exporter 127.0.0.1 (named `softflowd`), spooling every 100 ms.
pub fn listener_config(port: u16) -> String {
    format!(
        "[netflow]\nlisten = [\"127.0.0.1:{port}\"]\naccept_unlisted = false\nflush_interval_ms = 100\n\n\
         [[netflow.exporter]]\naddress = \"127.0.0.1\"\nname = \"softflowd\"\nline = \"lab-1\"\n\n"
    )
}

/// Runs softflowd in the foreground over `pcap`, exporting to 127.0.0.1:`port` with
/// `-v version` and `extra` options, with pcap-time timeouts (`-a`); returns when it has
/// read the capture and exported everything (at most 60 s).
/// Returns softflowd's own totals (packets, octets) from its closing per-protocol
/// statistics: what it metered after sampling.
pub fn softflowd(pcap: &Path, port: u16, version: &str, extra: &[&str], dir: &Path) -> (u64, u64) {
    let out = Command::new("timeout")
        .args(["60", "softflowd", "-d", "-a", "-r"])
        .arg(pcap)
        .args(["-n", &format!("127.0.0.1:{port}"), "-v", version])
        // No control socket: softflowd 1.1.0 reading a file can block in accept() on it
        // forever (it tests an unset poll result), depending on its memory layout.
        .args(["-c", "none"])
        .arg("-p")
        .arg(dir.join(format!("softflowd-{version}.pid")))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("softflowd runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "softflowd -v {version}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // "            tcp (6):        2443462         1381       6.54s      45.37s"
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut totals = (0, 0);
    let stats = text
        .split("Per-protocol statistics:")
        .nth(1)
        .unwrap_or_else(|| panic!("softflowd printed no statistics:\n{text}"));
    for l in stats.lines().skip(1) {
        let Some((_, nums)) = l.split_once("):") else {
            break;
        };
        let f: Vec<u64> = nums
            .split_whitespace()
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        totals.0 += f[1];
        totals.1 += f[0];
    }
    totals
}

/// Per-key sums of records.
pub fn record_sums<'a>(records: impl IntoIterator<Item = &'a FlowRecord>) -> Sums {
    let mut m = Sums::new();
    for r in records {
        let e = m
            .entry((r.src, r.dst, r.proto, r.sport, r.dport))
            .or_default();
        e.0 += r.packets;
        e.1 += r.bytes;
    }
    m
}

/// Per-key sums stored in `flows` under `filter` (an SQL condition).
pub async fn stored_sums(ch: &TestClickHouse, filter: &str) -> Sums {
    let tsv = ch
        .query(&format!(
            "SELECT src_text, dst_text, proto, sport, dport, sum(packets), sum(bytes) FROM tidegate.flows \
             WHERE {filter} GROUP BY src_text, dst_text, proto, sport, dport"
        ))
        .await;
    let mut m = Sums::new();
    for l in tsv.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = l.split('\t').collect();
        m.insert(
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            ),
            (f[5].parse().unwrap(), f[6].parse().unwrap()),
        );
    }
    m
}

/// Up to five keys where `got` and `want` differ, for the failure message.
pub fn differences(got: &Sums, want: &Sums) -> Vec<String> {
    want.iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?}: want {v:?} got {:?}", got.get(k)))
        .chain(
            got.iter()
                .filter(|(k, _)| !want.contains_key(*k))
                .map(|(k, v)| format!("{k:?}: unexpected {v:?}")),
        )
        .take(5)
        .collect()
}

/// An `nfcapd` receiving on 127.0.0.1:`port`, writing under `dir`; killed on drop.
pub struct Nfcapd {
    child: Child,
}

impl Nfcapd {
    /// Starts nfcapd.
    pub fn start(port: u16, dir: &Path) -> Nfcapd {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("nfcapd")
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
            .arg(dir)
            .args(["-t", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfcapd runs (scripts/setup.sh installs nfdump)");
        std::thread::sleep(Duration::from_millis(500));
        Nfcapd { child }
    }

    /// Stops nfcapd with SIGTERM (it writes its current file) and waits for it.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per-key sums of every flow nfdump reads from `dir`.
pub fn nfdump_sums(dir: &Path) -> Sums {
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .args(["-q", "-N", "-6", "-o", "fmt:%sa|%da|%pr|%sp|%dp|%pkt|%byt"])
        .output()
        .expect("nfdump runs");
    assert!(
        out.status.success(),
        "nfdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = Sums::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split('|').map(str::trim).collect();
        if f.len() < 7 {
            continue;
        }
        let proto: u8 = match f[2].parse() {
            Ok(p) => p,
            Err(_) => match f[2] {
                "TCP" => 6,
                "UDP" => 17,
                "ICMP" => 1,
                "ICMP6" => 58,
                "IGMP" => 2,
                "GRE" => 47,
                "ESP" => 50,
                "AH" => 51,
                other => panic!("nfdump protocol {other:?}"),
            },
        };
        let e = m
            .entry((
                f[0].parse()
                    .unwrap_or_else(|_| panic!("address {:?}", f[0])),
                f[1].parse().unwrap(),
                proto,
                f[3].parse().unwrap_or(0),
                f[4].parse().unwrap_or(0),
            ))
            .or_default();
        e.0 += f[5].parse::<u64>().unwrap();
        e.1 += f[6].parse::<u64>().unwrap();
    }
    m
}

/// The collector's Prometheus text from 127.0.0.1:`port`.
pub fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(buf)
}

/// The value of the sample `name` (with its labels, as printed), 0 when absent.
pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Resident memory of process `pid`, bytes.
pub fn rss(pid: u32) -> u64 {
    super::proc_status::status_field(&format!("/proc/{pid}/status"), "VmRSS")
        .expect("VmRSS in the process's status")
        * 1024
}
