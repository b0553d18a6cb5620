//! Loading, attaching and draining `tidegate-ebpf`.

use std::{
    ffi::CString,
    os::fd::{AsFd, BorrowedFd},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray, RingBuf},
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{SchedClassifierLinkId, qdisc_add_clsact},
        xdp::XdpLinkId,
    },
};
use tidegate_common::{
    APP_SAMPLE_BYTES, AppSample, Counter, CounterBlock, FallbackRecord, FlowKey, FlowStats,
    maps::{
        APP_SAMPLES, CLOCK_COARSE, CLOCK_PRECISE, CONTROL, COUNTERS, CTL_CLOCK, CTL_GENERATION,
        DEFAULT_ENF_PREFIXES, DEFAULT_FALLBACK_BYTES, DEFAULT_FLOW_ENTRIES, ENF_HOST4, ENF_HOST6,
        ENF_LPM4, ENF_LPM6, FALLBACK, FLOWS_GEN0, FLOWS_GEN1, PROG_TC_EGRESS, PROG_XDP,
    },
};

use super::{
    EbpfError,
    batch::Drainer,
    enforce::{self, Enforcer},
    grace,
};
use crate::clock::MonoToEpoch;

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
    /// CLOCK_MONOTONIC to the nanosecond (`bpf_ktime_get_ns`).
    #[default]
    Precise,
    /// CLOCK_MONOTONIC_COARSE, as of the last timer tick (one jiffy, 1-10 ms): a cheaper
    /// clock read on every packet (`bpf_ktime_get_coarse_ns`, see bench/results/xdp_cost.md).
    Coarse,
}

impl Timestamps {
    /// The `CONTROL[CTL_CLOCK]` word for this clock.
    pub const fn control_word(self) -> u32 {
        match self {
            Timestamps::Precise => CLOCK_PRECISE,
            Timestamps::Coarse => CLOCK_COARSE,
        }
    }
}

/// Load-time options.
#[derive(Clone, Copy, Debug)]
pub struct EbpfOptions {
    /// Entries per flow-map generation (concurrent flows between two sweeps).
    pub flow_entries: u32,
    /// Fallback ring buffer size in bytes (power of two, multiple of the page size).
    pub fallback_bytes: u32,
    /// XDP attach mode.
    pub xdp_mode: XdpModeChoice,
    /// Also account egress traffic with a TC (TCX) program.
    pub egress: bool,
    /// Clock for packet timestamps.
    pub timestamps: Timestamps,
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
            flow_entries: DEFAULT_FLOW_ENTRIES,
            fallback_bytes: DEFAULT_FALLBACK_BYTES,
            xdp_mode: XdpModeChoice::Auto,
            egress: true,
            timestamps: Timestamps::Precise,
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
    /// Whether the egress program is attached.
    pub egress: bool,
}

struct Attached {
    xdp: XdpLinkId,
    tc: Option<SchedClassifierLinkId>,
}

/// The loaded kernel side of the probe.
pub struct EbpfCapture {
    ebpf: Ebpf,
    opts: EbpfOptions,
    control: Array<MapData, u32>,
    counters: PerCpuArray<MapData, CounterBlock>,
    flows: [MapData; 2],
    fallback: RingBuf<MapData>,
    /// Payload starts of DNS messages and TLS handshakes.
    app_samples: RingBuf<MapData>,
    generation: u32,
    drainer: Drainer,
    attached: Vec<Attached>,
    enforcer: Option<Enforcer>,
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

impl EbpfCapture {
    /// Loads the programs and maps into the kernel (nothing attached yet).
    pub fn load(opts: EbpfOptions) -> Result<Self, EbpfError> {
        raise_memlock();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(FLOWS_GEN0, opts.flow_entries)
            .map_max_entries(FLOWS_GEN1, opts.flow_entries)
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
        let xdp: &mut Xdp = ebpf
            .program_mut(PROG_XDP)
            .ok_or_else(|| EbpfError::Load(format!("program {PROG_XDP} missing")))?
            .try_into()
            .map_err(EbpfError::from_load)?;
        xdp.load().map_err(EbpfError::from_load)?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROG_TC_EGRESS)
            .ok_or_else(|| EbpfError::Load(format!("program {PROG_TC_EGRESS} missing")))?
            .try_into()
            .map_err(EbpfError::from_load)?;
        tc.load().map_err(EbpfError::from_load)?;

        let control_map = take(&mut ebpf, CONTROL)?;
        let control_dup = match &control_map {
            Map::Array(d) => enforce::dup(d)?,
            _ => return Err(EbpfError::Load(format!("map {CONTROL} is not an array"))),
        };
        let mut control: Array<MapData, u32> =
            Array::try_from(control_map).map_err(map_err(CONTROL))?;
        control
            .set(CTL_CLOCK, opts.timestamps.control_word(), 0)
            .map_err(map_err(CONTROL))?;
        let counters =
            PerCpuArray::try_from(take(&mut ebpf, COUNTERS)?).map_err(map_err(COUNTERS))?;
        let fallback = RingBuf::try_from(take(&mut ebpf, FALLBACK)?).map_err(map_err(FALLBACK))?;
        let app_samples =
            RingBuf::try_from(take(&mut ebpf, APP_SAMPLES)?).map_err(map_err(APP_SAMPLES))?;
        let flow_map = |m: Map, name: &'static str| match m {
            Map::PerCpuHashMap(d) => Ok(d),
            _ => Err(EbpfError::Load(format!(
                "map {name} is not a per-CPU hash map"
            ))),
        };
        let flows = [
            flow_map(take(&mut ebpf, FLOWS_GEN0)?, FLOWS_GEN0)?,
            flow_map(take(&mut ebpf, FLOWS_GEN1)?, FLOWS_GEN1)?,
        ];
        let nr_cpus = aya::util::nr_cpus()
            .map_err(|(f, e)| EbpfError::Load(format!("cannot read {f}: {e}")))?;
        let enforcer = Enforcer::take(&mut ebpf, control_dup, nr_cpus)?;
        // Probe the grace-period mechanism once, up front (logs if it must fall back).
        grace::method();
        Ok(EbpfCapture {
            ebpf,
            opts,
            control,
            counters,
            flows,
            fallback,
            app_samples,
            generation: 0,
            drainer: Drainer::new(nr_cpus),
            attached: Vec::new(),
            enforcer: Some(enforcer),
        })
    }

    /// Hands out the enforcement tables (once; `None` after). Dropping them, like
    /// detaching or the probe exiting, leaves every packet passing (fail-open).
    pub fn take_enforcer(&mut self) -> Option<Enforcer> {
        self.enforcer.take()
    }

    /// Attaches XDP (ingress) and, if enabled, TCX (egress) to `iface`.
    pub fn attach(&mut self, iface: &str) -> Result<AttachReport, EbpfError> {
        let index = ifindex(iface)?;
        let xdp: &mut Xdp = self
            .ebpf
            .program_mut(PROG_XDP)
            .expect("loaded in load()")
            .try_into()
            .expect("XDP program");
        let attach_err = |e: aya::programs::ProgramError| EbpfError::Attach {
            program: PROG_XDP,
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
                .program_mut(PROG_TC_EGRESS)
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
                            program: PROG_TC_EGRESS,
                            iface: iface.to_string(),
                            reason: format!("{e:#}"),
                        })?
                }
            };
            tc_link = Some(l);
        }
        self.attached.push(Attached {
            xdp: link,
            tc: tc_link,
        });
        tracing::info!(
            iface,
            ifindex = index,
            xdp_mode = mode,
            egress = self.opts.egress,
            "attached"
        );
        Ok(AttachReport {
            iface: iface.to_string(),
            ifindex: index,
            xdp_mode: mode,
            egress: self.opts.egress,
        })
    }

    /// Detaches every program from every interface (maps stay readable).
    pub fn detach_all(&mut self) {
        for a in self.attached.drain(..) {
            if let Some(Ok(xdp)) = self.ebpf.program_mut(PROG_XDP).map(<&mut Xdp>::try_from)
                && let Err(e) = xdp.detach(a.xdp)
            {
                tracing::warn!(error = %e, "XDP detach failed");
            }
            if let Some(l) = a.tc
                && let Some(Ok(tc)) = self
                    .ebpf
                    .program_mut(PROG_TC_EGRESS)
                    .map(<&mut SchedClassifier>::try_from)
                && let Err(e) = tc.detach(l)
            {
                tracing::warn!(error = %e, "TC detach failed");
            }
        }
    }

    /// Flips the generation, waits out the grace period, and drains the old generation.
    /// Timestamps handed to `out` are Unix-epoch ns. Returns the number of flows drained.
    pub fn sweep(
        &mut self,
        out: &mut impl FnMut(&FlowKey, &FlowStats),
    ) -> Result<usize, EbpfError> {
        let old = (self.generation & 1) as usize;
        let next = self.generation.wrapping_add(1);
        self.control
            .set(CTL_GENERATION, next, 0)
            .map_err(map_err(CONTROL))?;
        self.generation = next;
        grace::wait();
        self.drain_generation(old, out)
    }

    fn drain_generation(
        &mut self,
        g: usize,
        out: &mut impl FnMut(&FlowKey, &FlowStats),
    ) -> Result<usize, EbpfError> {
        let conv = MonoToEpoch::now();
        let fd = self.flows[g].fd().as_fd();
        let name = if g == 0 { FLOWS_GEN0 } else { FLOWS_GEN1 };
        self.drainer
            .drain(fd, |k, per_cpu| {
                let mut s = FlowStats::default();
                for v in per_cpu {
                    s.merge(v);
                }
                if s.packets > 0 {
                    s.first_ns = conv.convert(s.first_ns);
                    s.last_ns = conv.convert(s.last_ns);
                    out(k, &s);
                }
            })
            .map_err(|source| EbpfError::Map { map: name, source })
    }

    /// Consumes every record waiting in the fallback ring buffer.
    pub fn drain_fallback(&mut self, out: &mut impl FnMut(&FlowKey, &FlowStats)) -> usize {
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
            out(&r.key, &s);
            n += 1;
        }
        n
    }

    /// Hands every waiting payload sample (flow key, payload start) to `out`, at most
    /// `max` of them (the rest wait for the next call).
    pub fn drain_app_samples(
        &mut self,
        max: usize,
        out: &mut impl FnMut(&FlowKey, &[u8]),
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
            out(&s.key, &s.data[..len]);
        }
        n
    }

    /// Shutdown: detaches, waits for in-flight runs, then drains both generations and the
    /// ring buffer. After this every packet the programs accounted has been handed out.
    pub fn finish(
        &mut self,
        out: &mut impl FnMut(&FlowKey, &FlowStats),
    ) -> Result<usize, EbpfError> {
        self.detach_all();
        grace::wait();
        let mut n = self.drain_generation(0, out)?;
        n += self.drain_generation(1, out)?;
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

    /// Current generation number (flips at each sweep).
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

impl Drop for EbpfCapture {
    fn drop(&mut self) {
        self.detach_all();
    }
}
