//! A synthetic workload with an exactly known flow truth, sent by netsniff-ng's trafgen.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::Context;

use super::cleanup::ChildGuard;

/// IPv4/UDP frames from `SRC:sport` to `DST:dport`, the source port cycling over
/// `sports` consecutive values and the destination port over `dports` (trafgen `dinc`
/// on both, counts coprime), so packet `i` belongs to flow (`i % sports`, `i % dports`)
/// and the workload has `sports × dports` flows (one destination port up to 50 000
/// flows). With `packets` a multiple of `flows`, every flow has exactly
/// `packets / flows` packets: the truth is known without looking at the traffic.
#[derive(Clone, Copy, Debug)]
pub struct UdpWorkload {
    /// Distinct flows: `sports × dports`.
    pub flows: u32,
    /// Source ports `FIRST_PORT ..` (at most [`UdpWorkload::MAX_SPORTS`]).
    pub sports: u32,
    /// Destination ports `DPORT ..` (1 up to 50 000 flows).
    pub dports: u32,
    /// Packets in total (a multiple of `flows`).
    pub packets: u64,
    /// IP total length of every frame (≥ 28; 46 gives minimum-size 60-byte frames).
    pub ip_len: u16,
}

impl UdpWorkload {
    /// Source address of every frame.
    pub const SRC: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    /// Destination address of every frame.
    pub const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// First source port.
    pub const FIRST_PORT: u16 = 10_000;
    /// (First) destination port.
    pub const DPORT: u16 = 4789;
    /// Source ports at most.
    pub const MAX_SPORTS: u32 = 50_000;
    /// Flows at most.
    pub const MAX_FLOWS: u32 = 10_000_000;

    /// `packets` rounded up to a multiple of the flows; `flows` clamped to
    /// 1..=[`Self::MAX_FLOWS`] and, above 50 000, to the nearest count at or below it that
    /// is a product of coprime source- and destination-port counts (100 000 = 3 125 × 32
    /// is exact).
    pub fn new(flows: u32, packets: u64, ip_len: u16) -> UdpWorkload {
        let (sports, dports) = split_flows(flows.clamp(1, Self::MAX_FLOWS));
        let flows = sports * dports;
        let packets = packets.max(1).div_ceil(flows as u64) * flows as u64;
        UdpWorkload {
            flows,
            sports,
            dports,
            packets,
            ip_len: ip_len.max(28),
        }
    }

    /// Packets of every flow.
    pub fn per_flow(&self) -> u64 {
        self.packets / self.flows as u64
    }

    /// Ethernet frame length without FCS.
    pub fn frame_len(&self) -> u16 {
        self.ip_len + 14
    }

    /// Is this (src, dst, sport, dport, proto) one of the workload's flows?
    pub fn is_flow(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, proto: u8) -> bool {
        src == Self::SRC
            && dst == Self::DST
            && proto == 17
            && (u32::from(Self::DPORT)..u32::from(Self::DPORT) + self.dports)
                .contains(&u32::from(dport))
            && (u32::from(Self::FIRST_PORT)..u32::from(Self::FIRST_PORT) + self.sports)
                .contains(&u32::from(sport))
    }

    /// trafgen configuration text.
    pub fn config(&self, dst_mac: [u8; 6]) -> String {
        let mac = dst_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let last = u32::from(Self::FIRST_PORT) + self.sports - 1;
        let dp = if self.dports == 1 {
            Self::DPORT.to_string()
        } else {
            format!(
                "dinc({}, {})",
                Self::DPORT,
                u32::from(Self::DPORT) + self.dports - 1
            )
        };
        format!(
            "{{\n  eth(da={mac}, sa=02:00:00:00:00:01, type=0x0800),\n  ipv4(saddr={}, daddr={}, ttl=64),\n  udp(sp=dinc({}, {last}), dp={dp}),\n  fill(0x41, {}),\n}}\n",
            Self::SRC,
            Self::DST,
            Self::FIRST_PORT,
            self.ip_len - 28
        )
    }

    /// Starts trafgen in `ns` on `iface` at `pps` packets/s or flat out (`None`), as
    /// `cpus` processes. Each process sends its share of the packets cycling over every
    /// flow from the first, so the per-flow truth stays exact when `packets / cpus` is a
    /// multiple of `flows`.
    pub fn spawn(
        &self,
        ns: &str,
        iface: &str,
        dst_mac: [u8; 6],
        pps: Option<u64>,
        cpus: u32,
        dir: &Path,
    ) -> anyhow::Result<ChildGuard> {
        let cfg = dir.join(format!("trafgen-{iface}.cfg"));
        std::fs::write(&cfg, self.config(dst_mac))?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, "trafgen", "--dev", iface, "--conf"])
            .arg(&cfg)
            .args([
                "--num",
                &self.packets.to_string(),
                "--cpus",
                &cpus.max(1).to_string(),
                "--no-sock-mem",
                "-q",
            ]);
        if let Some(r) = pps {
            c.args(["--rate", &format!("{r}pps")]);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn trafgen (apt-get install netsniff-ng)")?;
        Ok(ChildGuard::new(child))
    }
}

/// Source- and destination-port counts for about `flows` flows: (`flows`, 1) up to
/// [`UdpWorkload::MAX_SPORTS`]; above, coprime counts whose product is the largest at or
/// below `flows` (exactly `flows` when it factors so).
fn split_flows(flows: u32) -> (u32, u32) {
    if flows <= UdpWorkload::MAX_SPORTS {
        return (flows, 1);
    }
    let gcd = |mut a: u32, mut b: u32| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut best = (1, 1);
    let first = flows.div_ceil(UdpWorkload::MAX_SPORTS);
    for d in first..=first.saturating_mul(64).min(20_000) {
        let mut s = (flows / d).min(UdpWorkload::MAX_SPORTS);
        while s > 1 && gcd(s, d) != 1 {
            s -= 1;
        }
        if s * d > best.0 * best.1 {
            best = (s, d);
        }
        if s * d == flows {
            break;
        }
    }
    best
}

/// Sends `count` frames that are not part of any workload (UDP port 9 to port 9), one
/// every `gap_ms` milliseconds, and waits for trafgen to finish. A libpcap capture
/// (TPACKET_V3) hands a partly filled ring block to its reader only when the block's
/// timer retires it, which the kernel checks when a later frame arrives: this trickle
/// makes every tool see the workload's last frames before it is stopped.
pub fn send_flush_trickle(
    ns: &str,
    iface: &str,
    dst_mac: [u8; 6],
    count: u32,
    gap_ms: u32,
    dir: &Path,
) -> anyhow::Result<()> {
    let mac = dst_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let cfg = dir.join(format!("flush-{iface}.cfg"));
    std::fs::write(
        &cfg,
        format!(
            "{{\n  eth(da={mac}, sa=02:00:00:00:00:01, type=0x0800),\n  ipv4(saddr=10.1.0.2, daddr=192.0.2.2, ttl=64),\n  udp(sp=9, dp=9),\n  fill(0x42, 18),\n}}\n"
        ),
    )?;
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "trafgen", "--dev", iface, "--conf"])
        .arg(&cfg)
        .args([
            "--num",
            &count.to_string(),
            "--cpus",
            "1",
            "--no-sock-mem",
            "-q",
        ])
        .args(["--gap", &format!("{gap_ms}ms")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("trafgen (flush trickle)")?;
    anyhow::ensure!(st.success(), "trafgen (flush trickle) failed: {st}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_is_exact_and_config_names_the_port_range() {
        let w = UdpWorkload::new(1000, 4500, 46);
        assert_eq!(w.packets, 5000);
        assert_eq!(w.per_flow(), 5);
        assert_eq!(w.frame_len(), 60);
        let c = w.config([2, 0, 0, 0, 0, 2]);
        assert!(c.contains("dinc(10000, 10999)"), "{c}");
        assert!(c.contains("fill(0x41, 18)"), "{c}");
        assert!(w.is_flow(UdpWorkload::SRC, UdpWorkload::DST, 10_999, 4789, 17));
        assert!(!w.is_flow(UdpWorkload::SRC, UdpWorkload::DST, 11_000, 4789, 17));
        assert!(!w.is_flow(UdpWorkload::SRC, UdpWorkload::DST, 10_000, 4790, 17));
        assert!(c.contains("dp=4789"), "{c}");
    }

    #[test]
    fn more_than_fifty_thousand_flows_cycle_over_coprime_port_counts() {
        let w = UdpWorkload::new(100_000, 1_000_000, 46);
        assert_eq!((w.flows, w.sports, w.dports), (100_000, 3_125, 32));
        let c = w.config([2, 0, 0, 0, 0, 2]);
        assert!(c.contains("sp=dinc(10000, 13124)"), "{c}");
        assert!(c.contains("dp=dinc(4789, 4820)"), "{c}");
        // Packet i is flow (i % sports, i % dports): every pair once per `flows` packets.
        let mut seen = std::collections::HashSet::new();
        for i in 0..w.flows {
            seen.insert((i % w.sports, i % w.dports));
        }
        assert_eq!(seen.len(), w.flows as usize);
        // A prime count is approximated from below.
        let p = UdpWorkload::new(100_003, 1, 46);
        assert!(p.flows <= 100_003 && p.flows > 99_000, "{p:?}");
        assert_eq!(UdpWorkload::new(60_000, 1, 46).flows, 60_000);
    }
}
