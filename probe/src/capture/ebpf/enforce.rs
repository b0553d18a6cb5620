//! Installing enforcement plans into the kernel: two generations of maps, filled while
//! idle, switched with one control word, the old one cleared after a grace period (no
//! packet is judged by a mix of two policies).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    os::fd::AsFd,
};

use aya::maps::{
    Array, HashMap as BpfHash, LpmTrie, Map, MapData, PerCpuArray, PerCpuValues, lpm_trie::Key,
};
use tidegate_common::{
    enforce::{
        EnforceConfig, LineRule, PrefixClass, RULE_COUNTER_ENTRIES, RULE_SLOTS, RuleCount,
        TABLE_DST, TABLE_HOST4, TABLE_HOST6, TABLE_LINES, TABLE_LPM4, TABLE_LPM6, TABLE_SRC,
    },
    maps::{
        CONTROL, CTL_ENFORCE, ENF_CFG, ENF_COUNTS, ENF_HOST4, ENF_HOST6, ENF_LINES, ENF_LPM4,
        ENF_LPM6, ENF_PORTS,
    },
};
use tidegate_wire::{EnforcePlan, Verdict, enforce::Mode};

use super::{EbpfError, grace};

/// Plans whose rule names are kept for naming drained flows (flows of a sweep interval
/// may carry the verdicts of every plan installed during it).
const RECENT_PLANS: usize = 256;

/// One generation's maps, and what userspace put in them.
struct Set {
    lpm4: LpmTrie<MapData, [u8; 4], PrefixClass>,
    lpm6: LpmTrie<MapData, [u8; 16], PrefixClass>,
    host4: BpfHash<MapData, [u8; 4], PrefixClass>,
    host6: BpfHash<MapData, [u8; 16], PrefixClass>,
    cfg: Array<MapData, EnforceConfig>,
    lines: BpfHash<MapData, u32, LineRule>,
    ports: BpfHash<MapData, u32, u64>,
    counts: PerCpuArray<MapData, RuleCount>,
    lpm4_keys: Vec<Key<[u8; 4]>>,
    lpm6_keys: Vec<Key<[u8; 16]>>,
    host4_keys: Vec<[u8; 4]>,
    host6_keys: Vec<[u8; 16]>,
    line_keys: Vec<u32>,
    port_keys: Vec<u32>,
    /// Rule index -> id of the plan in this set.
    names: HashMap<u8, String>,
}

/// Totals of one rule and verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleTotal {
    /// Packets.
    pub packets: u64,
    /// IP-layer bytes.
    pub bytes: u64,
}

/// What an installed plan covers on this probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// Plan version.
    pub version: u64,
    /// Prefixes written.
    pub prefixes: usize,
    /// This probe's lines with their modes.
    pub lines: Vec<(String, Mode)>,
}

/// The enforcement tables, shared by the capture loop (rule names, counters) and the
/// collector connection (installs).
#[derive(Clone)]
pub struct SharedEnforcer(pub std::sync::Arc<std::sync::Mutex<Enforcer>>);

impl SharedEnforcer {
    /// Wraps the tables.
    pub fn new(e: Enforcer) -> Self {
        SharedEnforcer(std::sync::Arc::new(std::sync::Mutex::new(e)))
    }

    /// Locks them (a panic while installing leaves them as they were: recover).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Enforcer> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for SharedEnforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedEnforcer")
    }
}

/// The probe's enforcement tables in the kernel.
pub struct Enforcer {
    control: Array<MapData, u32>,
    sets: [Set; 2],
    /// Index of the set the programs use, if any.
    active: Option<usize>,
    version: u64,
    /// Line name -> interface indices on this probe.
    lines: HashMap<String, Vec<u32>>,
    nr_cpus: usize,
    totals: BTreeMap<(String, Verdict), RuleTotal>,
    /// Rule names of recent plans by the low 16 bits of their version (flows drained
    /// after a swap still carry the older plan's rule indices).
    recent: VecDeque<(u16, HashMap<u8, String>)>,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |e| EbpfError::Map {
        map,
        source: std::io::Error::other(e.to_string()),
    }
}

fn take(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<Map, EbpfError> {
    ebpf.take_map(name)
        .ok_or_else(|| EbpfError::Load(format!("map {name} missing from the object")))
}

impl Set {
    fn take(ebpf: &mut aya::Ebpf, g: usize) -> Result<Set, EbpfError> {
        Ok(Set {
            lpm4: LpmTrie::try_from(take(ebpf, ENF_LPM4[g])?).map_err(map_err(ENF_LPM4[g]))?,
            lpm6: LpmTrie::try_from(take(ebpf, ENF_LPM6[g])?).map_err(map_err(ENF_LPM6[g]))?,
            host4: BpfHash::try_from(take(ebpf, ENF_HOST4[g])?).map_err(map_err(ENF_HOST4[g]))?,
            host6: BpfHash::try_from(take(ebpf, ENF_HOST6[g])?).map_err(map_err(ENF_HOST6[g]))?,
            cfg: Array::try_from(take(ebpf, ENF_CFG[g])?).map_err(map_err(ENF_CFG[g]))?,
            lines: BpfHash::try_from(take(ebpf, ENF_LINES[g])?).map_err(map_err(ENF_LINES[g]))?,
            ports: BpfHash::try_from(take(ebpf, ENF_PORTS[g])?).map_err(map_err(ENF_PORTS[g]))?,
            counts: PerCpuArray::try_from(take(ebpf, ENF_COUNTS[g])?)
                .map_err(map_err(ENF_COUNTS[g]))?,
            lpm4_keys: Vec::new(),
            lpm6_keys: Vec::new(),
            host4_keys: Vec::new(),
            host6_keys: Vec::new(),
            line_keys: Vec::new(),
            port_keys: Vec::new(),
            names: HashMap::new(),
        })
    }

    /// Removes everything userspace wrote (the programs no longer read this set).
    fn clear(&mut self, nr_cpus: usize) -> Result<(), EbpfError> {
        for k in self.lpm4_keys.drain(..) {
            let _ = self.lpm4.remove(&k);
        }
        for k in self.lpm6_keys.drain(..) {
            let _ = self.lpm6.remove(&k);
        }
        for k in self.host4_keys.drain(..) {
            let _ = self.host4.remove(&k);
        }
        for k in self.host6_keys.drain(..) {
            let _ = self.host6.remove(&k);
        }
        for k in self.line_keys.drain(..) {
            let _ = self.lines.remove(&k);
        }
        for k in self.port_keys.drain(..) {
            let _ = self.ports.remove(&k);
        }
        self.cfg
            .set(0, EnforceConfig::default(), 0)
            .map_err(map_err("ENF_CFG"))?;
        for i in 0..RULE_COUNTER_ENTRIES {
            let zero = PerCpuValues::try_from(vec![RuleCount::default(); nr_cpus])
                .map_err(|e| EbpfError::Load(format!("per-CPU values: {e}")))?;
            self.counts.set(i, zero, 0).map_err(map_err("ENF_COUNTS"))?;
        }
        self.names.clear();
        Ok(())
    }

    /// Sums of this set's counters by (rule index, dropped).
    fn counts(&self) -> Result<Vec<(u8, bool, RuleTotal)>, EbpfError> {
        let mut out = Vec::new();
        for i in 0..RULE_COUNTER_ENTRIES {
            let per_cpu = self.counts.get(&i, 0).map_err(map_err("ENF_COUNTS"))?;
            let (p, b) = per_cpu
                .iter()
                .fold((0u64, 0u64), |(p, b), c| (p + c.packets, b + c.bytes));
            if p > 0 {
                let rule = (i % RULE_SLOTS) as u8;
                out.push((
                    rule,
                    i >= RULE_SLOTS,
                    RuleTotal {
                        packets: p,
                        bytes: b,
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Adds this set's counters to `totals`, by rule id (`#index` for an unnamed bit) and
    /// verdict.
    fn add_counts(
        &self,
        totals: &mut BTreeMap<(String, Verdict), RuleTotal>,
    ) -> Result<(), EbpfError> {
        for (rule, dropped, t) in self.counts()? {
            let id = self
                .names
                .get(&rule)
                .cloned()
                .unwrap_or_else(|| format!("#{rule}"));
            let v = if dropped {
                Verdict::Dropped
            } else {
                Verdict::WouldDrop
            };
            let e = totals.entry((id, v)).or_default();
            e.packets += t.packets;
            e.bytes += t.bytes;
        }
        Ok(())
    }

    fn fill(
        &mut self,
        plan: &EnforcePlan,
        ifindex: &HashMap<String, Vec<u32>>,
    ) -> Result<Vec<(String, Mode)>, String> {
        let e = |what: &str, err: aya::maps::MapError| format!("writing {what}: {err}");
        let mut tables = 0u32;
        for p in &plan.prefixes {
            // A side whose every prefix classifies like the default is not looked up.
            if p.src_mask != plan.default_src || p.flags != 0 {
                tables |= TABLE_SRC;
            }
            if p.dst_mask != plan.default_dst || p.flags != 0 {
                tables |= TABLE_DST;
            }
            let class = PrefixClass {
                src_mask: p.src_mask,
                dst_mask: p.dst_mask,
                flags: p.flags,
                pad: 0,
            };
            // IPv4 prefixes come IPv4-mapped (::ffff:a.b.c.d/96+n).
            let v4 = p.len >= 96 && p.addr[..10] == [0; 10] && p.addr[10..12] == [0xff, 0xff];
            let a4 = [p.addr[12], p.addr[13], p.addr[14], p.addr[15]];
            match (v4, p.len) {
                (true, 128) => {
                    self.host4
                        .insert(a4, class, 0)
                        .map_err(|x| e("an IPv4 host prefix (exact-match map full?)", x))?;
                    self.host4_keys.push(a4);
                    tables |= TABLE_HOST4;
                }
                (true, len) => {
                    let k = Key::new(len as u32 - 96, a4);
                    self.lpm4
                        .insert(&k, class, 0)
                        .map_err(|x| e("an IPv4 prefix (LPM trie full?)", x))?;
                    self.lpm4_keys.push(k);
                    tables |= TABLE_LPM4;
                }
                (false, 128) => {
                    self.host6
                        .insert(p.addr, class, 0)
                        .map_err(|x| e("an IPv6 host prefix (exact-match map full?)", x))?;
                    self.host6_keys.push(p.addr);
                    tables |= TABLE_HOST6;
                }
                (false, len) => {
                    let k = Key::new(len as u32, p.addr);
                    self.lpm6
                        .insert(&k, class, 0)
                        .map_err(|x| e("an IPv6 prefix (LPM trie full?)", x))?;
                    self.lpm6_keys.push(k);
                    tables |= TABLE_LPM6;
                }
            }
        }
        for (k, m) in &plan.ports {
            self.ports.insert(*k, *m, 0).map_err(|x| e("a port", x))?;
            self.port_keys.push(*k);
        }
        let mut modes = Vec::new();
        let mut named: Vec<&str> = Vec::new();
        for l in &plan.lines {
            named.push(&l.name);
            let Some(ixs) = ifindex.get(&l.name) else {
                continue; // a line of another probe
            };
            let mode = l.mode.unwrap_or(plan.default_mode);
            for ix in ixs {
                let rule = LineRule {
                    port_mask: l.port_mask,
                    mode: mode.word(),
                    pad: 0,
                };
                self.lines
                    .insert(*ix, rule, 0)
                    .map_err(|x| e("a line", x))?;
                self.line_keys.push(*ix);
                tables |= TABLE_LINES;
            }
            modes.push((l.name.clone(), mode));
        }
        for name in ifindex.keys() {
            if !named.contains(&name.as_str()) {
                modes.push((name.clone(), plan.default_mode));
            }
        }
        modes.sort();
        let cfg = plan.kernel_config(tables);
        self.cfg
            .set(0, cfg, 0)
            .map_err(|x| e("the policy words", x))?;
        self.names = plan.rules.iter().map(|r| (r.index, r.id.clone())).collect();
        Ok(modes)
    }
}

impl Enforcer {
    /// Takes the enforcement maps out of the loaded object. `lines`: line name ->
    /// interface indices this probe captures on.
    /// `control` is a handle on the CONTROL map of its own (see [`dup`]).
    pub fn take(
        ebpf: &mut aya::Ebpf,
        control: MapData,
        nr_cpus: usize,
    ) -> Result<Enforcer, EbpfError> {
        let control = Array::try_from(Map::Array(control)).map_err(map_err(CONTROL))?;
        Ok(Enforcer {
            control,
            sets: [Set::take(ebpf, 0)?, Set::take(ebpf, 1)?],
            active: None,
            version: 0,
            lines: HashMap::new(),
            nr_cpus,
            totals: BTreeMap::new(),
            recent: VecDeque::new(),
        })
    }

    /// Sets the line names this probe captures on (name -> interface indices); applies
    /// from the next [`Enforcer::install`].
    pub fn set_lines(&mut self, lines: HashMap<String, Vec<u32>>) {
        self.lines = lines;
    }

    /// Version enforced now (0: none).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Installs `plan`: fills the idle generation, switches to it, waits out in-flight
    /// packets, then empties the old one. On error nothing changes (the old plan stays).
    pub fn install(&mut self, plan: &EnforcePlan) -> Result<Installed, String> {
        let idle = match self.active {
            Some(0) => 1,
            _ => 0,
        };
        let modes = match self.sets[idle].fill(plan, &self.lines) {
            Ok(m) => m,
            Err(e) => {
                let _ = self.sets[idle].clear(self.nr_cpus);
                return Err(e);
            }
        };
        self.control
            .set(CTL_ENFORCE, idle as u32 + 1, 0)
            .map_err(|e| format!("switching the policy generation: {e}"))?;
        let old = self.active.replace(idle);
        self.version = plan.version;
        self.recent
            .push_back((plan.version as u16, self.sets[idle].names.clone()));
        while self.recent.len() > RECENT_PLANS {
            self.recent.pop_front();
        }
        if let Some(old) = old {
            grace::wait();
            self.retire(old).map_err(|e| e.to_string())?;
        }
        Ok(Installed {
            version: plan.version,
            prefixes: plan.prefixes.len(),
            lines: modes,
        })
    }

    /// Removes the policy: every packet passes (fail-open), counters are kept.
    pub fn clear(&mut self) -> Result<(), EbpfError> {
        self.control
            .set(CTL_ENFORCE, 0, 0)
            .map_err(map_err(CONTROL))?;
        if let Some(old) = self.active.take() {
            grace::wait();
            self.retire(old)?;
        }
        self.version = 0;
        Ok(())
    }

    /// Folds a set's counters into the totals and empties it.
    fn retire(&mut self, g: usize) -> Result<(), EbpfError> {
        self.sets[g].add_counts(&mut self.totals)?;
        self.sets[g].clear(self.nr_cpus)
    }

    /// Packets and bytes per rule id and verdict since the probe started.
    pub fn rule_totals(&self) -> Result<BTreeMap<(String, Verdict), RuleTotal>, EbpfError> {
        let mut out = self.totals.clone();
        if let Some(g) = self.active {
            self.sets[g].add_counts(&mut out)?;
        }
        Ok(out)
    }

    /// The id of rule `rule` of the plan whose version ends in `policy` (as stamped on
    /// a flow by the kernel).
    pub fn rule_name(&self, policy: u16, rule: u8) -> Option<String> {
        self.recent
            .iter()
            .rev()
            .find(|(v, _)| *v == policy)
            .and_then(|(_, names)| names.get(&rule).cloned())
    }
}

/// A second handle on a map (its fd duplicated).
pub fn dup(data: &MapData) -> Result<MapData, EbpfError> {
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| EbpfError::Load(format!("duplicating a map fd: {e}")))?;
    MapData::from_fd(fd).map_err(map_err(CONTROL))
}
