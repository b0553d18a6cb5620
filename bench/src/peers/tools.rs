//! The flow exporters compared: how each is started on the probed veth end, how it is
//! told the capture is over, and how its output is counted.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use tidegate_testkit::net::{ChildGuard, UdpWorkload, VethPair};

/// A flow exporter under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// `tidegate-probe run --json` (XDP).
    Tidegate,
    /// softflowd (libpcap) exporting NetFlow v5 to a local UDP socket.
    Softflowd,
    /// nfdump's nfpcapd (libpcap) writing nfcapd files, read with `nfdump`.
    Nfpcapd,
    /// pmacct's pmacctd (libpcap), print plugin to a CSV file.
    Pmacctd,
    /// argus (libpcap) writing an argus file, read with `ra`.
    Argus,
}

/// Capture buffer given to every libpcap peer that lets it be set.
pub const PCAP_BUFFER_BYTES: u64 = 64 << 20;
/// Snap length of every libpcap peer (headers only, like the XDP program reads).
pub const SNAPLEN: u32 = 128;

impl Tool {
    /// Every tool, tidegate first.
    pub const ALL: [Tool; 5] = [
        Tool::Tidegate,
        Tool::Softflowd,
        Tool::Nfpcapd,
        Tool::Pmacctd,
        Tool::Argus,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Tidegate => "tidegate",
            Tool::Softflowd => "softflowd",
            Tool::Nfpcapd => "nfpcapd",
            Tool::Pmacctd => "pmacctd",
            Tool::Argus => "argus",
        }
    }

    /// Parses a short name.
    pub fn parse(s: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Programs the tool needs on `PATH` (the probe binary is checked separately).
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Tool::Tidegate => &[],
            Tool::Softflowd => &["softflowd", "softflowctl"],
            Tool::Nfpcapd => &["nfpcapd", "nfdump"],
            Tool::Pmacctd => &["pmacctd"],
            Tool::Argus => &["argus", "ra"],
        }
    }

    /// Debian package the tool comes from.
    pub fn package(self) -> &'static str {
        match self {
            Tool::Tidegate => "(this repository)",
            Tool::Softflowd => "softflowd",
            Tool::Nfpcapd => "nfdump",
            Tool::Pmacctd => "pmacct",
            Tool::Argus => "argus-server, argus-client",
        }
    }

    /// How it is run and counted, for the report (`IF` = the probed interface).
    pub fn settings(self) -> String {
        let buf = PCAP_BUFFER_BYTES;
        let mib = buf >> 20;
        match self {
            Tool::Tidegate => "`tidegate-probe run --iface IF --json` (defaults: XDP native mode, TCX egress, \
                 1,048,576 flow entries per map generation, 16 MiB fallback ring, 60 s active / 15 s idle \
                 timeouts); stopped with SIGTERM, which flushes every flow; JSON records on stdout summed"
                .to_string(),
            Tool::Softflowd => format!(
                "`softflowd -d -i IF -n 127.0.0.1:PORT -v 5 -m 1048576 -B {buf} -C {SNAPLEN}` (libpcap buffer \
                 {mib} MiB, up to 1,048,576 flows, default timeouts ≥ 300 s for UDP); stopped with \
                 `softflowctl shutdown`, which expires and exports every flow; NetFlow v5 datagrams received \
                 on a local UDP socket (32 MiB receive buffer) in the same namespace and decoded"
            ),
            Tool::Nfpcapd => format!(
                "`nfpcapd -i IF -w DIR -e 300,60 -b {mib} -s {SNAPLEN}` (socket buffer {mib} MiB, default \
                 524,288-node flow cache, 300 s active / 60 s inactive); stopped with SIGTERM, which writes \
                 every flow; read with `nfdump -R DIR -q -N -o fmt:...`"
            ),
            Tool::Pmacctd => format!(
                "`pmacctd -f CONF`: `pcap_interface: IF`, `aggregate: src_host, dst_host, src_port, dst_port, \
                 proto`, `plugins: print`, `print_output: csv`, `print_refresh_time: 300`, \
                 `print_cache_entries: 65537`, `pmacctd_pipe_size: {buf}`, `plugin_pipe_size: {buf}`, \
                 `plugin_buffer_size: 65536`, `snaplen: {SNAPLEN}`; stopped with SIGINT, which purges the \
                 cache to the CSV file"
            ),
            Tool::Argus => format!(
                "`argus -X -i IF -w FILE -P 0 -s {SNAPLEN} -S 300` (`-X`: ignore /etc/argus.conf; no remote \
                 port; status records every 300 s; libpcap's default buffer, argus has no option for it); \
                 stopped with SIGTERM, which writes every flow; read with \
                 `ra -r FILE -n -c , -s saddr daddr sport dport proto pkts` (bidirectional records: the \
                 workload is one-way, so one record per flow)"
            ),
        }
    }

    /// Are its programs installed?
    pub fn installed(self) -> bool {
        self.programs().iter().all(|p| which(p).is_some())
    }
}

/// Full path of `prog` on `PATH` (plus the sbin folders, which a non-login root shell
/// may lack).
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

/// What a tool reported for the workload.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Counted {
    /// Flow records read.
    pub records: u64,
    /// Packets summed over the workload's flow records.
    pub packets: u64,
    /// Distinct workload flows with at least one packet.
    pub flows: u64,
    /// Records that were not one of the workload's flows (should be 0).
    pub foreign_records: u64,
    /// What the tool itself said about the capture, if anything (its counters).
    pub note: String,
}

/// Adds records `(src, dst, sport, dport, proto, packets)` to a count.
struct Tally<'a> {
    w: &'a UdpWorkload,
    out: Counted,
    seen: HashSet<(u16, u16)>,
}

impl<'a> Tally<'a> {
    fn new(w: &'a UdpWorkload) -> Tally<'a> {
        Tally {
            w,
            out: Counted::default(),
            seen: HashSet::new(),
        }
    }

    fn add(&mut self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, proto: u8, pk: u64) {
        self.out.records += 1;
        if self.w.is_flow(src, dst, sport, dport, proto) {
            self.out.packets += pk;
            if pk > 0 {
                self.seen.insert((sport, dport));
            }
        } else {
            self.out.foreign_records += 1;
        }
    }

    /// Adds a flow written as text fields: src, dst, sport, dport, protocol (name or
    /// number), packets (unparsable fields count as 0 / 0.0.0.0, i.e. not the workload's).
    fn add_fields(&mut self, f: &[&str]) {
        self.add(
            f[0].trim().parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
            f[1].trim().parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
            f[2].trim().parse().unwrap_or(0),
            f[3].trim().parse().unwrap_or(0),
            proto_num(f[4]),
            f[5].trim().parse().unwrap_or(0),
        );
    }

    fn finish(mut self) -> Counted {
        self.out.flows = self.seen.len() as u64;
        self.out
    }
}

fn proto_num(s: &str) -> u8 {
    match s.trim().to_ascii_lowercase().as_str() {
        "udp" => 17,
        "tcp" => 6,
        "icmp" => 1,
        other => other.parse().unwrap_or(0),
    }
}

/// Where a tool run keeps its files, and what it needs to know.
pub struct Ctx<'a> {
    /// The namespace pair.
    pub pair: &'a VethPair,
    /// A fresh folder for this run.
    pub dir: PathBuf,
    /// The probe binary.
    pub probe_bin: &'a Path,
    /// Extra arguments for `tidegate-probe run` (after the defaults).
    pub probe_args: &'a [String],
}

/// The NetFlow receiver of softflowd's export: its stop flag and its thread, which
/// returns every datagram.
type Receiver = (Arc<AtomicBool>, thread::JoinHandle<Vec<Vec<u8>>>);

/// A tool capturing on the probed end.
pub struct Running {
    tool: Tool,
    child: ChildGuard,
    /// tidegate: stderr lines.
    stderr_lines: Option<Arc<Mutex<Vec<String>>>>,
    /// softflowd: the NetFlow receiver (stop flag, thread).
    receiver: Option<Receiver>,
    /// softflowd: its own counters just before shutdown.
    softflowd_stats: String,
}

fn ns_cmd(ns: &str, prog: &str) -> anyhow::Result<Command> {
    let p = which(prog).with_context(|| format!("{prog} is not installed"))?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(p);
    Ok(c)
}

fn spawn_logged(mut c: Command, dir: &Path, name: &str) -> anyhow::Result<ChildGuard> {
    let out = std::fs::File::create(dir.join(format!("{name}.stdout")))?;
    let err = std::fs::File::create(dir.join(format!("{name}.stderr")))?;
    let child = c
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("spawn {name}"))?;
    Ok(ChildGuard::new(child))
}

/// Is an AF_PACKET socket of the namespace of `pid` bound and running on `ifindex`?
fn packet_socket_ready(pid: u32, ifindex: u32) -> bool {
    let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/net/packet")) else {
        return false;
    };
    t.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 6 && f[4] == ifindex.to_string() && f[5] == "1"
    })
}

fn bind_receiver(ns: &str) -> anyhow::Result<UdpSocket> {
    VethPair::in_ns(ns, || -> anyhow::Result<UdpSocket> {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        let size: libc::c_int = 32 << 20;
        // SAFETY: setsockopt on our socket with a valid int option value.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(s)
    })?
}

impl Running {
    /// Starts `tool` on the probed end and waits until it captures.
    pub fn start(tool: Tool, ctx: &Ctx<'_>) -> anyhow::Result<Running> {
        let ns = &ctx.pair.ns_b;
        let iface = &ctx.pair.if_b;
        let dir = &ctx.dir;
        let mut stderr_lines = None;
        let mut receiver = None;
        let child = match tool {
            Tool::Tidegate => {
                let out = std::fs::File::create(dir.join("records.jsonl"))?;
                let child = Command::new("ip")
                    .args(["netns", "exec", ns])
                    .arg(ctx.probe_bin)
                    .args(["run", "--iface", iface, "--json"])
                    .args(ctx.probe_args)
                    .env("RUST_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("spawn {}", ctx.probe_bin.display()))?;
                let mut g = ChildGuard::new(child);
                let err = g
                    .child_mut()
                    .and_then(|c| c.stderr.take())
                    .context("probe stderr")?;
                let lines = Arc::new(Mutex::new(Vec::new()));
                let (tx, rx) = mpsc::channel();
                let l2 = lines.clone();
                thread::spawn(move || {
                    for l in BufReader::new(err).lines().map_while(Result::ok) {
                        if l.contains("capturing") {
                            let _ = tx.send(());
                        }
                        l2.lock().unwrap_or_else(|e| e.into_inner()).push(l);
                    }
                });
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                        break;
                    }
                    if g.exited().is_some() || Instant::now() > deadline {
                        let l = lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
                        bail!("tidegate-probe did not start capturing:\n{l}");
                    }
                }
                stderr_lines = Some(lines);
                g
            }
            Tool::Softflowd => {
                let sock = bind_receiver(ns)?;
                let port = sock.local_addr()?.port();
                let stop = Arc::new(AtomicBool::new(false));
                let s2 = stop.clone();
                let h = thread::spawn(move || {
                    let mut dgrams = Vec::new();
                    let mut buf = vec![0u8; 65_536];
                    let mut idle_since = Instant::now();
                    loop {
                        match sock.recv(&mut buf) {
                            Ok(n) => {
                                dgrams.push(buf[..n].to_vec());
                                idle_since = Instant::now();
                            }
                            Err(_) => {
                                if s2.load(Ordering::Relaxed)
                                    && idle_since.elapsed() > Duration::from_secs(1)
                                {
                                    break;
                                }
                            }
                        }
                    }
                    dgrams
                });
                receiver = Some((stop, h));
                let mut c = ns_cmd(ns, "softflowd")?;
                c.args(["-d", "-i", iface, "-n", &format!("127.0.0.1:{port}")])
                    .args(["-v", "5", "-m", "1048576"])
                    .args(["-B", &PCAP_BUFFER_BYTES.to_string()])
                    .args(["-C", &SNAPLEN.to_string()])
                    .arg("-p")
                    .arg(dir.join("softflowd.pid"))
                    .arg("-c")
                    .arg(dir.join("softflowd.ctl"));
                spawn_logged(c, dir, "softflowd")?
            }
            Tool::Nfpcapd => {
                let out = dir.join("nfcapd");
                std::fs::create_dir_all(&out)?;
                let mut c = ns_cmd(ns, "nfpcapd")?;
                c.args(["-i", iface, "-w"])
                    .arg(&out)
                    .args(["-e", "300,60"])
                    .args(["-b", &(PCAP_BUFFER_BYTES >> 20).to_string()])
                    .args(["-s", &SNAPLEN.to_string()]);
                spawn_logged(c, dir, "nfpcapd")?
            }
            Tool::Pmacctd => {
                let conf = dir.join("pmacctd.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "daemonize: false\npcap_interface: {iface}\n\
                         aggregate: src_host, dst_host, src_port, dst_port, proto\n\
                         plugins: print\nprint_output: csv\nprint_output_file: {}\n\
                         print_refresh_time: 300\nprint_cache_entries: 65537\n\
                         pmacctd_pipe_size: {PCAP_BUFFER_BYTES}\nplugin_pipe_size: {PCAP_BUFFER_BYTES}\n\
                         plugin_buffer_size: 65536\nsnaplen: {SNAPLEN}\n",
                        dir.join("pmacctd.csv").display()
                    ),
                )?;
                let mut c = ns_cmd(ns, "pmacctd")?;
                c.arg("-f").arg(&conf);
                spawn_logged(c, dir, "pmacctd")?
            }
            Tool::Argus => {
                let mut c = ns_cmd(ns, "argus")?;
                c.args(["-X", "-i", iface, "-w"])
                    .arg(dir.join("argus.out"))
                    .args(["-P", "0", "-s", &SNAPLEN.to_string(), "-S", "300"]);
                spawn_logged(c, dir, "argus")?
            }
        };
        let mut r = Running {
            tool,
            child,
            stderr_lines,
            receiver,
            softflowd_stats: String::new(),
        };
        if tool != Tool::Tidegate {
            let ifindex = VethPair::ifindex(ns, iface)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while !packet_socket_ready(r.child.pid(), ifindex) {
                if r.child.exited().is_some() || Instant::now() > deadline {
                    bail!(
                        "{} did not start capturing on {iface}: {}",
                        tool.name(),
                        std::fs::read_to_string(dir.join(format!("{}.stderr", tool.name())))
                            .unwrap_or_default()
                    );
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        // Let the capture settle (pcap ring mapped, XDP maps warm) before traffic.
        thread::sleep(Duration::from_millis(300));
        Ok(r)
    }

    /// Peak resident memory of the tool's main process (`VmHWM`), bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    }

    /// Tells the tool the capture is over (each its own way: every tool flushes every
    /// flow it holds), waits for it to exit, and counts what it reported.
    pub fn stop(mut self, ctx: &Ctx<'_>, w: &UdpWorkload) -> anyhow::Result<Counted> {
        let dir = &ctx.dir;
        match self.tool {
            Tool::Tidegate | Tool::Nfpcapd | Tool::Argus => self.child.signal(libc::SIGTERM),
            Tool::Pmacctd => self.child.signal(libc::SIGINT),
            Tool::Softflowd => {
                self.softflowd_stats = which("softflowctl")
                    .and_then(|p| {
                        Command::new(p)
                            .arg("-c")
                            .arg(dir.join("softflowd.ctl"))
                            .arg("statistics")
                            .output()
                            .ok()
                    })
                    .map(|o| {
                        let t = String::from_utf8_lossy(&o.stdout).to_string();
                        t.lines()
                            .filter(|l| {
                                l.starts_with("Packets processed")
                                    || l.starts_with("Packets received by libpcap")
                                    || l.starts_with("Packets dropped by libpcap")
                            })
                            .map(|l| l.trim().to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                let ok = which("softflowctl")
                    .map(|p| {
                        Command::new(p)
                            .arg("-c")
                            .arg(dir.join("softflowd.ctl"))
                            .arg("shutdown")
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success())
                    })
                    .unwrap_or(false);
                if !ok {
                    self.child.signal(libc::SIGTERM);
                }
            }
        }
        let exited = self.child.wait_timeout(Duration::from_secs(120));
        if exited.is_none() {
            bail!(
                "{} did not exit within 120 s of being stopped",
                self.tool.name()
            );
        }
        let mut t = Tally::new(w);
        match self.tool {
            Tool::Tidegate => {
                // Give the stderr reader a moment to take the last lines.
                thread::sleep(Duration::from_millis(100));
                let text = std::fs::read_to_string(dir.join("records.jsonl"))?;
                for l in text.lines().filter(|l| !l.trim().is_empty()) {
                    let v: serde_json::Value =
                        serde_json::from_str(l).with_context(|| format!("probe record {l:?}"))?;
                    let ip = |k: &str| {
                        v[k].as_str()
                            .and_then(|s| s.parse::<Ipv4Addr>().ok())
                            .unwrap_or(Ipv4Addr::UNSPECIFIED)
                    };
                    let n = |k: &str| v[k].as_u64().unwrap_or(0);
                    t.add(
                        ip("src"),
                        ip("dst"),
                        n("sport") as u16,
                        n("dport") as u16,
                        n("proto") as u8,
                        n("packets"),
                    );
                }
                let mut c = t.finish();
                if let Some(lines) = &self.stderr_lines {
                    let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(l) = lines.iter().rev().find(|l| l.contains("counters=")) {
                        c.note = probe_counters(l);
                    }
                }
                Ok(c)
            }
            Tool::Softflowd => {
                let (stop, h) = self.receiver.take().context("receiver")?;
                stop.store(true, Ordering::Relaxed);
                let dgrams = h.join().map_err(|_| anyhow::anyhow!("receiver panicked"))?;
                for d in &dgrams {
                    netflow_v5(d, &mut t);
                }
                let mut c = t.finish();
                c.note = format!(
                    "before shutdown: {}; {} NetFlow v5 datagrams",
                    self.softflowd_stats,
                    dgrams.len()
                );
                Ok(c)
            }
            Tool::Nfpcapd => {
                let out = Command::new(which("nfdump").context("nfdump")?)
                    .arg("-R")
                    .arg(dir.join("nfcapd"))
                    .args(["-q", "-N", "-o", "fmt:%sa %da %sp %dp %pr %pkt"])
                    .output()?;
                if !out.status.success() {
                    bail!("nfdump: {}", String::from_utf8_lossy(&out.stderr));
                }
                for l in String::from_utf8_lossy(&out.stdout).lines() {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    if f.len() < 6 {
                        continue;
                    }
                    t.add_fields(&f);
                }
                let mut c = t.finish();
                c.note = tool_log_line(dir, "nfpcapd", "Stat:");
                Ok(c)
            }
            Tool::Pmacctd => {
                let text = std::fs::read_to_string(dir.join("pmacctd.csv")).unwrap_or_default();
                for l in text.lines().skip(1) {
                    let f: Vec<&str> = l.split(',').collect();
                    if f.len() < 7 {
                        continue;
                    }
                    t.add_fields(&f);
                }
                let mut c = t.finish();
                c.note = tool_log_line(dir, "pmacctd", "dropped");
                Ok(c)
            }
            Tool::Argus => {
                let out = Command::new(which("ra").context("ra")?)
                    .arg("-r")
                    .arg(dir.join("argus.out"))
                    .args(["-n", "-c", ",", "-s", "saddr", "daddr", "sport", "dport"])
                    .args(["proto", "pkts"])
                    .output()?;
                if !out.status.success() {
                    bail!("ra: {}", String::from_utf8_lossy(&out.stderr));
                }
                for l in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
                    let f: Vec<&str> = l.split(',').map(str::trim).collect();
                    if f.len() < 6 || f[4] == "man" {
                        continue;
                    }
                    t.add_fields(&f);
                }
                Ok(t.finish())
            }
        }
    }
}

/// The last line of the tool's stderr/stdout containing `needle`, trimmed.
fn tool_log_line(dir: &Path, name: &str, needle: &str) -> String {
    ["stderr", "stdout"]
        .iter()
        .filter_map(|s| std::fs::read_to_string(dir.join(format!("{name}.{s}"))).ok())
        .flat_map(|t| {
            t.lines()
                .filter(|l| l.contains(needle))
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .next_back()
        .unwrap_or_default()
}

/// `packets=…, map_full=…, fallback_dropped=…` from the probe's final log line.
fn probe_counters(line: &str) -> String {
    let get = |name: &str| -> Option<u64> {
        let key = format!("(\"{name}\", ");
        let i = line.find(&key)? + key.len();
        line[i..]
            .split(')')
            .next()
            .and_then(|n| n.trim().parse().ok())
    };
    ["packets", "accounted", "map_full", "fallback_dropped"]
        .iter()
        .filter_map(|n| get(n).map(|v| format!("{n}={v}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds the records of one NetFlow v5 datagram.
fn netflow_v5(d: &[u8], t: &mut Tally<'_>) {
    if d.len() < 24 || u16::from_be_bytes([d[0], d[1]]) != 5 {
        return;
    }
    let count = u16::from_be_bytes([d[2], d[3]]) as usize;
    for r in d[24..].chunks_exact(48).take(count) {
        let ip = |o: usize| Ipv4Addr::new(r[o], r[o + 1], r[o + 2], r[o + 3]);
        let pk = u32::from_be_bytes([r[16], r[17], r[18], r[19]]) as u64;
        t.add(
            ip(0),
            ip(4),
            u16::from_be_bytes([r[32], r[33]]),
            u16::from_be_bytes([r[34], r[35]]),
            r[38],
            pk,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_netflow_v5_and_tallies_only_workload_flows() {
        let w = UdpWorkload::new(10, 100, 46);
        let mut d = vec![0u8; 24 + 2 * 48];
        d[1] = 5;
        d[3] = 2;
        for (i, sport) in [(0usize, 10_003u16), (1, 9_999)] {
            let r = &mut d[24 + i * 48..24 + (i + 1) * 48];
            r[0..4].copy_from_slice(&UdpWorkload::SRC.octets());
            r[4..8].copy_from_slice(&UdpWorkload::DST.octets());
            r[16..20].copy_from_slice(&7u32.to_be_bytes());
            r[32..34].copy_from_slice(&sport.to_be_bytes());
            r[34..36].copy_from_slice(&4789u16.to_be_bytes());
            r[38] = 17;
        }
        let mut t = Tally::new(&w);
        netflow_v5(&d, &mut t);
        let c = t.finish();
        assert_eq!(
            (c.records, c.packets, c.flows, c.foreign_records),
            (2, 7, 1, 1)
        );
    }

    #[test]
    fn reads_the_probe_counters_line() {
        let l = r#"INFO probe stopped; all flows exported records=10000 counters=[("packets", 49703), ("frame_bytes", 2982180), ("accounted", 49703), ("map_full", 0), ("fallback_dropped", 0)]"#;
        assert_eq!(
            probe_counters(l),
            "packets=49703, accounted=49703, map_full=0, fallback_dropped=0"
        );
    }
}
