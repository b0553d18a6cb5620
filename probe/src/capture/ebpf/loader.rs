//! Loading, attaching and draining `tidegate-ebpf`.

use std::{
    ffi::CString,
    os::fd::{AsFd, BorrowedFd},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray, RingBuf},
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{SchedClassifierLinkId, qdisc_add_clsact},
        xdp::XdpLinkId,
    },
};
use tidegate_common::{
    APP_SAMPLE_BYTES, AppSample, Counter, CounterBlock, FallbackRecord, FlowKey, FlowStats,
    maps::{
        APP_SAMPLES, CLOCK, CLOCK_COARSE, CLOCK_PRECISE, CLOCK_TICK, CONTROL, COUNTERS, ClockWord,
        DEFAULT_ENF_PREFIXES, DEFAULT_FALLBACK_BYTES, DEFAULT_FLOW_SLOTS, ENF_HOST4, ENF_HOST6,
        ENF_LPM4, ENF_LPM6, FALLBACK, FLOW_HASH_KEY, FLOW_SLOTS, FLOWS, FLOWS_TAKEN, Programs,
    },
    slot::{HashKey, KEY_WORDS, flows_for_slots, slots_for_flows},
};

use super::{
    EbpfError,
    enforce::{self, Enforcer},
    grace,
    mapped::Mapped,
    slots::{SlotTable, SweepStats, taken_words},
};
use crate::{clock::MonoToEpoch, sink::FlowSink};

/// The compiled kernel programs (built by `build.rs`), for tools that load them
/// themselves (benchmarks).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tidegate.bpf.o"));

/// How to attach XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeChoice {
    /// Native (driver) mode, falling back to generic SKB mode with a warning.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic SKB mode.
    Skb,
}

/// Which kernel clock stamps packets (`first`/`last` of every flow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Timestamps {
    /// CLOCK_MONOTONIC as the probe publishes it every millisecond ([`TICK_PERIOD`]) in a
    /// map the programs read (no helper call per packet): a stamp is at most one period,
    /// plus the ticker thread's scheduling delay, behind the packet. The thread wakes
    /// 1 000 times a second whatever the traffic (measured on a 2-vCPU VM: ~7 ms of
    /// machine CPU per second, see ARCHITECTURE.md).
    Tick,
    /// CLOCK_MONOTONIC to the nanosecond (`bpf_ktime_get_ns`, a helper call and a
    /// clocksource read per packet).
    Precise,
    /// CLOCK_MONOTONIC_COARSE, as of the kernel's last timer tick (one jiffy: 1 ms at
    /// HZ=1000, 4 ms at Debian's HZ=250), read on every packet (`bpf_ktime_get_coarse_ns`,
    /// ~0.5 ns more than the published tick, bench/results/xdp_cost.md); the timer
    /// interrupt keeps it, so a busy host delays it no further. The default.
    #[default]
    Coarse,
}

impl Timestamps {
    /// The `CLOCK` word's `clock` for this clock.
    pub const fn control_word(self) -> u32 {
        match self {
            Timestamps::Tick => CLOCK_TICK,
            Timestamps::Precise => CLOCK_PRECISE,
            Timestamps::Coarse => CLOCK_COARSE,
        }
    }
}

/// How often the probe publishes CLOCK_MONOTONIC for [`Timestamps::Tick`].
pub const TICK_PERIOD: std::time::Duration = std::time::Duration::from_millis(1);

/// Largest MTU for which the probe attaches the XDP program without multi-buffer
/// support (`Programs::xdp_linear`): a frame of it fits one page-sized buffer with the
/// headroom and shared info every driver keeps, so it never arrives in fragments.
pub const LINEAR_MAX_MTU: u32 = 3000;

/// How long a flow may go without packets before it leaves the kernel table (when the
/// table is at most half full).
pub const RETIRE_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The packet clock word (`CLOCK`), mapped into the probe, and for the tick clock the
/// thread that stores CLOCK_MONOTONIC into it every [`TICK_PERIOD`] (a plain store into
/// shared memory, no syscall); the thread stops when this is dropped.
struct Clock {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clock {
    /// Sets the clock the programs use; starts the ticker for [`Timestamps::Tick`].
    fn start(map: &MapData, timestamps: Timestamps) -> Result<Self, EbpfError> {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let word = Mapped::<ClockWord>::new(Some(map.fd().as_fd()), 1)
            .map_err(|source| EbpfError::Map { map: CLOCK, source })?;
        let w = word.at(0);
        // SAFETY: the one value of the live mapping; the programs only read it. The
        // tick goes first so no packet is stamped 0.
        unsafe {
            AtomicU64::from_ptr(std::ptr::addr_of_mut!((*w).tick_ns))
                .store(crate::clock::monotonic_ns(), Ordering::Release);
            std::ptr::write_volatile(
                std::ptr::addr_of_mut!((*w).clock),
                timestamps.control_word(),
            );
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let mut thread = None;
        if timestamps == Timestamps::Tick {
            let s = stop.clone();
            thread = Some(
                std::thread::Builder::new()
                    .name("ebpf-tick".into())
                    .spawn(move || {
                        let tick = word.at(0);
                        while !s.load(Ordering::Relaxed) {
                            std::thread::sleep(TICK_PERIOD);
                            // SAFETY: as above; `word` (moved here) keeps the mapping.
                            unsafe {
                                AtomicU64::from_ptr(std::ptr::addr_of_mut!((*tick).tick_ns))
                                    .store(crate::clock::monotonic_ns(), Ordering::Release);
                            }
                        }
                    })
                    .map_err(|e| {
                        EbpfError::Load(format!("cannot start the clock tick thread: {e}"))
                    })?,
            );
        }
        Ok(Clock { stop, thread })
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The MTU of interface `iface` in the calling thread's network namespace (asked with
/// `SIOCGIFMTU` on a socket of that namespace: sysfs shows the namespace it was mounted
/// in), if the kernel says.
fn mtu(iface: &str) -> Option<u32> {
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return None;
    }
    // SAFETY: plain socket call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: an all-zero ifreq is valid; the name fits (checked) and stays NUL-terminated.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the name and writes ifru_mtu of a valid ifreq.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) };
    // SAFETY: the union member SIOCGIFMTU wrote; fd is ours.
    let m = unsafe { req.ifr_ifru.ifru_mtu };
    unsafe { libc::close(fd) };
    (r == 0 && m > 0).then_some(m as u32)
}

/// Load-time options.
#[derive(Clone, Copy, Debug)]
pub struct EbpfOptions {
    /// Concurrent flows the kernel table is sized for: it gets a quarter more slots
    /// than this (128 bytes each, whatever the number of CPUs).
    pub flow_entries: u32,
    /// A flow with no packet for this long leaves the kernel table (its counts are
    /// exported first; a later packet starts a new slot). When more than half the table
    /// is taken, flows go after one sweep interval without packets.
    pub retire_idle: std::time::Duration,
    /// Fallback ring buffer size in bytes (power of two, multiple of the page size).
    pub fallback_bytes: u32,
    /// XDP attach mode.
    pub xdp_mode: XdpModeChoice,
    /// Also account egress traffic with a TC (TCX) program.
    pub egress: bool,
    /// Clock for packet timestamps.
    pub timestamps: Timestamps,
    /// Which header keys a tunnelled packet.
    pub tunnels: crate::capture::TunnelMode,
    /// Capacity of each enforcement prefix map (LPM trie and exact-match hash).
    pub enforce_prefixes: u32,
    /// Install the collector's enforcement policies (the probe announces it can).
    pub enforce: bool,
    /// Clear the policy (fail-open) once the collector has been unreachable this many
    /// seconds; `None` keeps enforcing the last policy.
    pub enforce_max_offline_secs: Option<u64>,
}

impl Default for EbpfOptions {
    fn default() -> Self {
        EbpfOptions {
            flow_entries: flows_for_slots(DEFAULT_FLOW_SLOTS),
            retire_idle: RETIRE_IDLE,
            fallback_bytes: DEFAULT_FALLBACK_BYTES,
            xdp_mode: XdpModeChoice::Auto,
            egress: true,
            timestamps: Timestamps::Coarse,
            tunnels: crate::capture::TunnelMode::Outer,
            enforce_prefixes: DEFAULT_ENF_PREFIXES,
            enforce: false,
            enforce_max_offline_secs: None,
        }
    }
}

/// What got attached where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachReport {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// "native" or "skb".
    pub xdp_mode: &'static str,
    /// The XDP program attached: the mode's multi-buffer or linear one
    /// ([`Programs::for_tunnels`]).
    pub xdp_program: &'static str,
    /// Whether the egress program is attached.
    pub egress: bool,
}

struct Attached {
    /// The XDP program attached (multi-buffer or linear) and its link.
    program: &'static str,
    xdp: XdpLinkId,
    tc: Option<SchedClassifierLinkId>,
}

/// The loaded kernel side of the probe.
pub struct EbpfCapture {
    ebpf: Ebpf,
    opts: EbpfOptions,
    counters: PerCpuArray<MapData, CounterBlock>,
    /// The flow table mapped into the probe (keeps `_flows` open).
    slots: SlotTable,
    _flows: [MapData; 2],
    /// Kernel clock at the last sweep.
    last_sweep_mono: u64,
    fallback: RingBuf<MapData>,
    /// Payload starts of DNS messages and TLS handshakes.
    app_samples: RingBuf<MapData>,
    attached: Vec<Attached>,
    enforcer: Option<Enforcer>,
    /// Publishes the packet clock ([`Timestamps::Tick`]).
    _clock: Clock,
    _clock_map: MapData,
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, EbpfError> {
    ebpf.take_map(name)
        .ok_or_else(|| EbpfError::Load(format!("map {name} missing from the object")))
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |e| EbpfError::Map {
        map,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF memory against it (< 5.11).
fn raise_memlock() {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) } != 0 {
        tracing::debug!(
            "cannot raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Resolves an interface name in the calling thread's network namespace.
pub fn ifindex(iface: &str) -> Result<u32, EbpfError> {
    let c = CString::new(iface).map_err(|_| EbpfError::UnknownInterface(iface.to_string()))?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(EbpfError::UnknownInterface(iface.to_string()))
    } else {
        Ok(i)
    }
}

/// A random secret for the flow table's hash (`tidegate_common::slot::flow_hash`), from
/// the operating system's generator: a new one at every load.
fn hash_secret() -> Result<HashKey, EbpfError> {
    let mut secret: HashKey = [0; KEY_WORDS];
    for w in &mut secret {
        *w = getrandom::u64().map_err(|e| EbpfError::Random(e.to_string()))?;
    }
    Ok(secret)
}

impl EbpfCapture {
    /// Loads the programs and maps into the kernel (nothing attached yet).
    pub fn load(opts: EbpfOptions) -> Result<Self, EbpfError> {
        raise_memlock();
        let slots = slots_for_flows(opts.flow_entries);
        let secret = hash_secret()?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(FLOWS, slots)
            .map_max_entries(FLOWS_TAKEN, taken_words(slots) as u32)
            .override_global(FLOW_SLOTS, &slots, true)
            .override_global(FLOW_HASH_KEY, &secret, true)
            .map_max_entries(FALLBACK, opts.fallback_bytes)
            .map_max_entries(ENF_LPM4[0], opts.enforce_prefixes)
            .map_max_entries(ENF_LPM4[1], opts.enforce_prefixes)
            .map_max_entries(ENF_LPM6[0], opts.enforce_prefixes)
            .map_max_entries(ENF_LPM6[1], opts.enforce_prefixes)
            .map_max_entries(ENF_HOST4[0], opts.enforce_prefixes)
            .map_max_entries(ENF_HOST4[1], opts.enforce_prefixes)
            .map_max_entries(ENF_HOST6[0], opts.enforce_prefixes)
            .map_max_entries(ENF_HOST6[1], opts.enforce_prefixes)
            .load(OBJECT)
            .map_err(EbpfError::from_load)?;
        // Only the tunnel mode's programs are verified and loaded.
        let progs = Programs::for_tunnels(opts.tunnels.parser());
        for name in [progs.xdp, progs.xdp_linear] {
            let xdp: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| EbpfError::Load(format!("program {name} missing")))?
                .try_into()
                .map_err(EbpfError::from_load)?;
            xdp.load().map_err(EbpfError::from_load)?;
        }
        let tc: &mut SchedClassifier = ebpf
            .program_mut(progs.tc_egress)
            .ok_or_else(|| EbpfError::Load(format!("program {} missing", progs.tc_egress)))?
            .try_into()
            .map_err(EbpfError::from_load)?;
        tc.load().map_err(EbpfError::from_load)?;

        let control_map = take(&mut ebpf, CONTROL)?;
        let control_dup = match &control_map {
            Map::Array(d) => enforce::dup(d)?,
            _ => return Err(EbpfError::Load(format!("map {CONTROL} is not an array"))),
        };
        let clock_map = match take(&mut ebpf, CLOCK)? {
            Map::Array(d) => d,
            _ => return Err(EbpfError::Load(format!("map {CLOCK} is not an array"))),
        };
        let clock = Clock::start(&clock_map, opts.timestamps)?;
        let counters =
            PerCpuArray::try_from(take(&mut ebpf, COUNTERS)?).map_err(map_err(COUNTERS))?;
        let fallback = RingBuf::try_from(take(&mut ebpf, FALLBACK)?).map_err(map_err(FALLBACK))?;
        let app_samples =
            RingBuf::try_from(take(&mut ebpf, APP_SAMPLES)?).map_err(map_err(APP_SAMPLES))?;
        let flows = match take(&mut ebpf, FLOWS)? {
            Map::Array(d) => d,
            _ => return Err(EbpfError::Load(format!("map {FLOWS} is not an array"))),
        };
        let taken = match take(&mut ebpf, FLOWS_TAKEN)? {
            Map::Array(d) => d,
            _ => {
                return Err(EbpfError::Load(format!(
                    "map {FLOWS_TAKEN} is not an array"
                )));
            }
        };
        let table = SlotTable::map(flows.fd().as_fd(), taken.fd().as_fd(), slots)
            .map_err(|source| EbpfError::Map { map: FLOWS, source })?;
        let nr_cpus = aya::util::nr_cpus()
            .map_err(|(f, e)| EbpfError::Load(format!("cannot read {f}: {e}")))?;
        let enforcer = Enforcer::take(&mut ebpf, control_dup, nr_cpus)?;
        // Probe the grace-period mechanism once, up front (logs if it must fall back).
        grace::method();
        Ok(EbpfCapture {
            ebpf,
            opts,
            counters,
            slots: table,
            _flows: [flows, taken],
            last_sweep_mono: crate::clock::monotonic_ns(),
            fallback,
            app_samples,
            attached: Vec::new(),
            enforcer: Some(enforcer),
            _clock: clock,
            _clock_map: clock_map,
        })
    }

    /// The programs of the configured tunnel mode.
    fn programs(&self) -> Programs {
        Programs::for_tunnels(self.opts.tunnels.parser())
    }

    /// Hands out the enforcement tables (once; `None` after). Dropping them, like
    /// detaching or the probe exiting, leaves every packet passing (fail-open).
    pub fn take_enforcer(&mut self) -> Option<Enforcer> {
        self.enforcer.take()
    }

    /// Attaches XDP (ingress) and, if enabled, TCX (egress) to `iface`.
    pub fn attach(&mut self, iface: &str) -> Result<AttachReport, EbpfError> {
        let index = ifindex(iface)?;
        // Frames that always fit one buffer need no multi-buffer program (one helper call
        // less per packet); an MTU that is unknown or larger gets the one that handles
        // fragments. (A later MTU change above the limit is refused by the kernel while
        // the linear program is attached.)
        let progs = self.programs();
        let program = match mtu(iface) {
            Some(m) if m <= LINEAR_MAX_MTU => progs.xdp_linear,
            _ => progs.xdp,
        };
        let xdp: &mut Xdp = self
            .ebpf
            .program_mut(program)
            .expect("loaded in load()")
            .try_into()
            .expect("XDP program");
        let attach_err = |e: aya::programs::ProgramError| EbpfError::Attach {
            program,
            iface: iface.to_string(),
            reason: format!("{e:#}"),
        };
        let (link, mode) = match self.opts.xdp_mode {
            XdpModeChoice::Native => (
                xdp.attach(iface, XdpMode::Driver).map_err(attach_err)?,
                "native",
            ),
            XdpModeChoice::Skb => (xdp.attach(iface, XdpMode::Skb).map_err(attach_err)?, "skb"),
            XdpModeChoice::Auto => match xdp.attach(iface, XdpMode::Driver) {
                Ok(l) => (l, "native"),
                Err(e) => {
                    tracing::warn!(iface, error = %e, "native XDP unavailable, falling back to generic (SKB) mode: expect lower throughput");
                    (xdp.attach(iface, XdpMode::Skb).map_err(attach_err)?, "skb")
                }
            },
        };
        let mut tc_link = None;
        if self.opts.egress {
            let tc: &mut SchedClassifier = self
                .ebpf
                .program_mut(progs.tc_egress)
                .expect("loaded in load()")
                .try_into()
                .expect("TC program");
            let l = match tc.attach(iface, TcAttachType::Egress) {
                Ok(l) => l,
                // Kernels without TCX need the clsact qdisc for the netlink attach path.
                Err(_) => {
                    let _ = qdisc_add_clsact(iface);
                    tc.attach(iface, TcAttachType::Egress)
                        .map_err(|e| EbpfError::Attach {
                            program: progs.tc_egress,
                            iface: iface.to_string(),
                            reason: format!("{e:#}"),
                        })?
                }
            };
            tc_link = Some(l);
        }
        self.attached.push(Attached {
            program,
            xdp: link,
            tc: tc_link,
        });
        tracing::info!(
            iface,
            ifindex = index,
            xdp_mode = mode,
            xdp_program = program,
            egress = self.opts.egress,
            "attached"
        );
        Ok(AttachReport {
            iface: iface.to_string(),
            ifindex: index,
            xdp_mode: mode,
            xdp_program: program,
            egress: self.opts.egress,
        })
    }

    /// Detaches every program from every interface (maps stay readable).
    pub fn detach_all(&mut self) {
        let tc_program = self.programs().tc_egress;
        for a in self.attached.drain(..) {
            if let Some(Ok(xdp)) = self.ebpf.program_mut(a.program).map(<&mut Xdp>::try_from)
                && let Err(e) = xdp.detach(a.xdp)
            {
                tracing::warn!(error = %e, "XDP detach failed");
            }
            if let Some(l) = a.tc
                && let Some(Ok(tc)) = self
                    .ebpf
                    .program_mut(tc_program)
                    .map(<&mut SchedClassifier>::try_from)
                && let Err(e) = tc.detach(l)
            {
                tracing::warn!(error = %e, "TC detach failed");
            }
        }
    }

    /// Hands the kernel table's flows to `out` — every flow's growth since the last
    /// sweep, or for a sink that keeps records only the records that are due — and
    /// removes idle flows from the kernel table (see [`SlotTable::sweep`]). Timestamps
    /// handed to `out` are Unix-epoch ns.
    pub fn sweep<S: FlowSink + ?Sized>(&mut self, out: &mut S) -> Result<SweepStats, EbpfError> {
        let now = crate::clock::monotonic_ns();
        let st = self.slots.sweep(
            now,
            self.last_sweep_mono,
            self.opts.retire_idle.as_nanos() as u64,
            out,
        );
        self.last_sweep_mono = now;
        Ok(st)
    }

    /// Consumes every record waiting in the fallback ring buffer.
    pub fn drain_fallback<S: FlowSink + ?Sized>(&mut self, out: &mut S) -> usize {
        let conv = MonoToEpoch::now();
        let mut n = 0;
        while let Some(item) = self.fallback.next() {
            if item.len() < std::mem::size_of::<FallbackRecord>() {
                continue;
            }
            // SAFETY: the kernel wrote a FallbackRecord; read_unaligned copes with alignment.
            let r: FallbackRecord = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let ts = conv.convert(r.ts_ns);
            let s = FlowStats {
                packets: r.packets as u64,
                bytes: r.bytes as u64,
                first_ns: ts,
                last_ns: ts,
                tcp_flags: r.tcp_flags,
                icmp: r.icmp,
                verdict: r.verdict,
                rule: r.rule,
                policy: r.policy,
            };
            out.observe(&r.key, &s);
            n += 1;
        }
        n
    }

    /// Hands every waiting sample (flow key, [`AppSample::kind`], payload start or outer
    /// IP header) to `out`, at most `max` of them (the rest wait for the next call).
    pub fn drain_app_samples(
        &mut self,
        max: usize,
        out: &mut impl FnMut(&FlowKey, u8, &[u8]),
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Some(item) = self.app_samples.next() else {
                break;
            };
            n += 1;
            if item.len() < std::mem::size_of::<AppSample>() {
                continue;
            }
            // SAFETY: the kernel wrote an AppSample; read_unaligned copes with alignment.
            let s: AppSample = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let len = usize::from(s.len).min(APP_SAMPLE_BYTES);
            out(&s.key, s.kind, &s.data[..len]);
        }
        n
    }

    /// Shutdown: detaches, waits for in-flight runs, then exports what the flow table
    /// holds beyond the last sweep, and the ring buffer. After this every packet the programs accounted has been handed out.
    pub fn finish<S: FlowSink + ?Sized>(&mut self, out: &mut S) -> Result<usize, EbpfError> {
        self.detach_all();
        grace::wait();
        let mut n = self.slots.finish(out);
        n += self.drain_fallback(out);
        Ok(n)
    }

    /// Sums of the kernel counters over all CPUs, indexed by [`Counter`].
    pub fn counters(&self) -> Result<[u64; Counter::COUNT as usize], EbpfError> {
        let mut out = [0u64; Counter::COUNT as usize];
        let per_cpu = self.counters.get(&0, 0).map_err(map_err(COUNTERS))?;
        for blk in per_cpu.iter() {
            for c in Counter::ALL {
                out[c as usize] += blk.counters[c as usize];
            }
        }
        Ok(out)
    }

    /// The fallback ring buffer's fd, readable when records are waiting (for poll/epoll).
    pub fn fallback_fd(&self) -> BorrowedFd<'_> {
        self.fallback.as_fd()
    }

    /// Slots of the kernel flow table.
    pub fn flow_slots(&self) -> usize {
        self.slots.slots()
    }
}

impl Drop for EbpfCapture {
    fn drop(&mut self) {
        self.detach_all();
    }
}
