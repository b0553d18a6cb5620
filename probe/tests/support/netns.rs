//! Two network namespaces joined by a veth pair, removed on drop (also when the test
//! panics). Traffic never leaves these namespaces.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip(8)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sysctl_in(ns: &str, kv: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", kv])
        .output()
        .expect("run sysctl");
    assert!(
        out.status.success(),
        "sysctl {kv} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ns_a/if_a <-> if_b/ns_b`. IPv6 is disabled in both namespaces and no address is
/// configured unless asked, so the kernel itself sends nothing on the link.
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
    /// Creates the pair; `tag` (≤ 4 chars) makes names readable in `ip netns list`.
    pub fn new(tag: &str) -> Self {
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let p = VethPair {
            ns_a: format!("tgt-{tag}-{id}-a"),
            ns_b: format!("tgt-{tag}-{id}-b"),
            if_a: format!("tg{id}a"),
            if_b: format!("tg{id}b"),
        };
        for ns in [&p.ns_a, &p.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            sysctl_in(ns, "net.ipv6.conf.all.disable_ipv6=1");
            sysctl_in(ns, "net.ipv6.conf.default.disable_ipv6=1");
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", &p.ns_a, "link", "add", &p.if_a, "type", "veth", "peer", "name", &p.if_b,
            "netns", &p.ns_b,
        ]);
        ip(&["-n", &p.ns_a, "link", "set", &p.if_a, "up"]);
        ip(&["-n", &p.ns_b, "link", "set", &p.if_b, "up"]);
        p
    }

    /// Gives both ends an address (`a`/`b` like "10.77.0.1/24") for tests that need IP.
    pub fn with_addresses(self, a: &str, b: &str) -> Self {
        ip(&["-n", &self.ns_a, "addr", "add", a, "dev", &self.if_a]);
        ip(&["-n", &self.ns_b, "addr", "add", b, "dev", &self.if_b]);
        self
    }

    /// Runs `f` on a thread that has entered namespace `ns`.
    pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{ns}");
        thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns on this thread only, with a namespace fd we hold open.
                let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// MAC address of `iface` in `ns`.
    pub fn mac(ns: &str, iface: &str) -> [u8; 6] {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "link", "show", iface])
            .output()
            .expect("ip link show");
        let s = String::from_utf8_lossy(&out.stdout);
        let m = s
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {s}"));
        let mut mac = [0u8; 6];
        for (i, b) in m.split(':').enumerate() {
            mac[i] = u8::from_str_radix(b, 16).unwrap();
        }
        mac
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting the namespaces destroys the veth pair too.
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
