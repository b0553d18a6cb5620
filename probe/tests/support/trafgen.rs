//! Line-rate synthetic traffic with netsniff-ng's trafgen, bounded by packet count.

use std::process::{Child, Command, Stdio};

/// A UDP stream cycling the source port over `ports` (one flow per port).
pub struct UdpSweep {
    /// First source port.
    pub first_port: u16,
    /// Number of distinct source ports (flows).
    pub ports: u16,
    /// IP total length of every packet (≥ 28).
    pub ip_len: u16,
    /// Packets to send in total.
    pub count: u64,
}

impl UdpSweep {
    /// trafgen configuration text.
    pub fn config(&self, dst_mac: [u8; 6]) -> String {
        let mac = dst_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let last = self.first_port + self.ports - 1;
        format!(
            "{{\n  eth(da={mac}, sa=02:00:00:00:00:01, type=0x0800),\n  ipv4(saddr=198.51.100.9, daddr=203.0.113.9, ttl=64),\n  udp(sp=dinc({}, {last}), dp=4789),\n  fill(0x41, {}),\n}}\n",
            self.first_port,
            self.ip_len - 28
        )
    }

    /// Starts trafgen in `ns` on `iface`, flat out, one CPU.
    pub fn spawn(&self, ns: &str, iface: &str, dst_mac: [u8; 6], dir: &std::path::Path) -> Child {
        let cfg = dir.join(format!("trafgen-{iface}.cfg"));
        std::fs::write(&cfg, self.config(dst_mac)).unwrap();
        Command::new("ip")
            .args(["netns", "exec", ns, "trafgen", "--dev", iface, "--conf"])
            .arg(&cfg)
            .args([
                "--num",
                &self.count.to_string(),
                "--cpus",
                "1",
                "--no-sock-mem",
                "-q",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn trafgen (apt-get install netsniff-ng)")
    }
}

/// `/sys/class/net/IF/statistics/NAME` read inside `ns`.
pub fn link_stat(ns: &str, iface: &str, name: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{iface}/statistics/{name}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}
