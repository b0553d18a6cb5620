//! Two network namespaces joined by a veth pair (the sender's end and the probed end),
//! removed on drop, on panic and on interrupting signals (see [`super::cleanup`]).

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use anyhow::{Context, bail};

use super::cleanup::{delete_namespace, forget_namespace, register_namespace};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip(8) (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ns_a/if_a <-> if_b/ns_b`. IPv6 is disabled in both namespaces and no address is
/// configured, so the kernel itself sends nothing on the link: every frame on it is the
/// workload's.
pub struct VethPair {
    /// Namespace of the sending side.
    pub ns_a: String,
    /// Namespace of the probed side.
    pub ns_b: String,
    /// Interface in `ns_a`.
    pub if_a: String,
    /// Interface in `ns_b`.
    pub if_b: String,
}

impl VethPair {
    /// Creates `tg-<tag>-<pid><seq>-a/b` (names unique per process and call); `tag`
    /// (a few characters) makes them readable in `ip netns list`.
    pub fn new(tag: &str) -> anyhow::Result<VethPair> {
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let p = VethPair {
            ns_a: format!("tg-{tag}-{id}-a"),
            ns_b: format!("tg-{tag}-{id}-b"),
            if_a: format!("tg{id}a"),
            if_b: format!("tg{id}b"),
        };
        for ns in [&p.ns_a, &p.ns_b] {
            register_namespace(ns);
            delete_namespace(ns);
            ip(&["netns", "add", ns])?;
            for kv in [
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ] {
                let out = Command::new("ip")
                    .args(["netns", "exec", ns, "sysctl", "-qw", kv])
                    .output()?;
                if !out.status.success() {
                    bail!("sysctl {kv} in {ns} failed");
                }
            }
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n", &p.ns_a, "link", "add", &p.if_a, "type", "veth", "peer", "name", &p.if_b,
            "netns", &p.ns_b,
        ])?;
        ip(&["-n", &p.ns_a, "link", "set", &p.if_a, "up"])?;
        ip(&["-n", &p.ns_b, "link", "set", &p.if_b, "up"])?;
        Ok(p)
    }

    /// Gives both ends an address (`a`/`b` like "10.77.0.1/24"), inside their
    /// namespaces, for tests that need IP between them.
    pub fn with_addresses(self, a: &str, b: &str) -> anyhow::Result<Self> {
        ip(&["-n", &self.ns_a, "addr", "add", a, "dev", &self.if_a])?;
        ip(&["-n", &self.ns_b, "addr", "add", b, "dev", &self.if_b])?;
        Ok(self)
    }

    /// Sends every frame of the capture `file` from the sender's end as fast as it goes
    /// (`tcpreplay --topspeed`, run inside `ns_a`); returns the packets tcpreplay says
    /// it sent. Fails with tcpreplay's output when it fails or reports no count.
    pub fn replay_into(&self, file: &std::path::Path) -> anyhow::Result<u64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns_a, "tcpreplay", "-i", &self.if_a])
            .arg("--topspeed")
            .arg(file)
            .output()
            .context("running tcpreplay (apt-get install tcpreplay)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let sent = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("Actual:")
                .and_then(|r| r.split_whitespace().next()?.parse().ok())
        });
        match sent {
            Some(n) if out.status.success() => Ok(n),
            _ => bail!(
                "tcpreplay {}: {} {}",
                file.display(),
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }

    /// `/sys/class/net/IF/statistics/NAME` of `iface`, read inside `ns`.
    /// (`ip netns exec` mounts the namespace's own sysfs.)
    pub fn link_stat(ns: &str, iface: &str, name: &str) -> anyhow::Result<u64> {
        let path = format!("/sys/class/net/{iface}/statistics/{name}");
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", &path])
            .output()
            .context("ip netns exec cat")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("{path} in {ns}: {text:?}"))
    }

    /// Runs `f` on a thread that has entered namespace `ns` (network namespace only).
    pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let path = format!("/var/run/netns/{ns}");
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on this thread only, with a namespace fd we hold open.
                let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if r != 0 {
                    bail!("setns {ns}: {}", std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// MAC address of `iface` in `ns`.
    pub fn mac(ns: &str, iface: &str) -> anyhow::Result<[u8; 6]> {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "link", "show", iface])
            .output()?;
        let s = String::from_utf8_lossy(&out.stdout);
        let m = s
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .with_context(|| format!("no MAC in {s}"))?;
        let mut mac = [0u8; 6];
        for (i, b) in m.split(':').take(6).enumerate() {
            mac[i] = u8::from_str_radix(b, 16)?;
        }
        Ok(mac)
    }

    /// Interface index of `iface` in `ns`.
    pub fn ifindex(ns: &str, iface: &str) -> anyhow::Result<u32> {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "link", "show", iface])
            .output()?;
        let s = String::from_utf8_lossy(&out.stdout);
        s.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no ifindex in {s}"))
    }

    /// Counters of `iface` in `ns` (`/proc/thread-self/net/dev` read from inside).
    pub fn counters(ns: &str, iface: &str) -> anyhow::Result<LinkCounters> {
        let text = Self::in_ns(ns, || std::fs::read_to_string("/proc/thread-self/net/dev"))??;
        LinkCounters::parse(&text, iface).with_context(|| format!("{iface} not in {ns}"))
    }

    /// Counters of both ends: (sender end in `ns_a`, probed end in `ns_b`).
    pub fn both_counters(&self) -> anyhow::Result<(LinkCounters, LinkCounters)> {
        Ok((
            Self::counters(&self.ns_a, &self.if_a)?,
            Self::counters(&self.ns_b, &self.if_b)?,
        ))
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting the namespaces destroys the veth pair too.
        for ns in [&self.ns_a, &self.ns_b] {
            delete_namespace(ns);
            forget_namespace(ns);
        }
    }
}

/// Packet counters of one interface (`/proc/net/dev`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames dropped on receive.
    pub rx_dropped: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Frames dropped on transmit (for a veth: the peer could not take them).
    pub tx_dropped: u64,
}

impl LinkCounters {
    /// Parses the line of `iface` in `/proc/net/dev` text.
    pub fn parse(text: &str, iface: &str) -> Option<LinkCounters> {
        let line = text.lines().find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == iface).then_some(rest)
        })?;
        let v: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        (v.len() >= 12).then(|| LinkCounters {
            rx_packets: v[1],
            rx_dropped: v[3],
            tx_packets: v[9],
            tx_dropped: v[11],
        })
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &LinkCounters) -> LinkCounters {
        LinkCounters {
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\ntgb12a: 6000000  100000    0    7    0     0          0         0  120000 2000    0   3    0     0       0          0\n";
        let c = LinkCounters::parse(t, "tgb12a").unwrap();
        assert_eq!(
            c,
            LinkCounters {
                rx_packets: 100_000,
                rx_dropped: 7,
                tx_packets: 2000,
                tx_dropped: 3
            }
        );
        assert!(LinkCounters::parse(t, "tgb12").is_none());
    }
}
