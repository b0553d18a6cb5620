//! Tumbling event-time windows of per-key accumulators.
//!
//! Each window holds a hash map of its keys (one lookup per record, no ordered-tree
//! rebalancing; aHash, randomly seeded, so spoofed addresses cannot aim at collisions)
//! and the windows sit in an ordered map by start time, so closing drains whole windows
//! from the oldest. Keys come out of a window in no particular order: the detector sorts
//! the findings. Accumulators hold their line's number ([`Lines`]), not its name.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::net::IpAddr;

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use tidegate_wire::{Name, record::FlowRecord};

/// Counters of one key over one window. The counters are inline (no allocation); the
/// detail (distinct sources and values, sample flows) lives in [`Detail`], which rules
/// that need a large volume before reporting create only once a window nears it (see
/// [`Windows::add_spread_gated`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Acc {
    pub packets: f64,
    pub bytes: f64,
    pub flows: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Line of the first flow, as its [`Lines`] number (a `u16`: creating and dropping
    /// accumulators touches no reference count).
    pub line: u16,
    /// Source of the first flow.
    first_src: Option<IpAddr>,
    /// Whether a flow from another source than `first_src` was counted.
    multi_src: bool,
    /// Already reported while the window was open (see [`super::Rule::early`]).
    pub early: bool,
    detail: Option<Box<Detail>>,
}

/// Distinct values and sample flows of one window, counted from the flow that created
/// it on.
#[derive(Clone, Debug)]
struct Detail {
    /// Distinct values (ports, hosts), capped at [`DISTINCT_MAX`].
    distinct: Distinct,
    /// The source of the first flow followed.
    followed_src: IpAddr,
    /// Distinct sources, capped at [`DISTINCT_MAX`]: none while every flow followed
    /// came from `followed_src` (most windows, keyed by their source, have one: no set
    /// to make), else all of them.
    sources: Option<HashSet<IpAddr>>,
    /// Sample flows.
    evidence: Vec<FlowRecord>,
    /// Flows of the window counted before the detail existed.
    missed: u64,
}

/// Values inline before a window's distinct values take a hash set.
const DISTINCT_INLINE: usize = 4;

/// Distinct values of a window, the first few inline: most windows followed in detail
/// see one or a few (a probe each), which then allocate nothing beside the detail and
/// hash nothing.
#[derive(Clone, Debug, Default)]
struct Distinct {
    few: [u64; DISTINCT_INLINE],
    /// Values in `few`, while `more` is `None`.
    n: u8,
    /// Every value, once there were more than `few` holds.
    more: Option<HashSet<u64>>,
}

impl Distinct {
    fn insert(&mut self, v: u64) {
        let more = match self.more.as_mut() {
            Some(more) => more,
            None => {
                let n = usize::from(self.n);
                if self.few[..n].contains(&v) {
                    return;
                }
                if n < DISTINCT_INLINE {
                    self.few[n] = v;
                    self.n += 1;
                    return;
                }
                self.more.insert(self.few.iter().copied().collect())
            }
        };
        more.insert(v);
    }

    fn len(&self) -> usize {
        self.more.as_ref().map_or(usize::from(self.n), |m| m.len())
    }
}

/// Number of distinct sources of a window: exact, or a lower bound when some flows
/// came before the window was followed in detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SourceCount {
    pub n: usize,
    pub exact: bool,
}

impl std::fmt::Display for SourceCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exact {
            write!(f, "{}", self.n)
        } else {
            write!(f, "at least {}", self.n)
        }
    }
}

/// Order of evidence: earliest first, ties broken by the flow key, so the sample does
/// not depend on the order records arrive in.
fn evidence_order(r: &FlowRecord) -> impl Ord + use<> {
    (
        r.first, r.last, r.src, r.dst, r.sport, r.dport, r.proto, r.vlan, r.packets,
    )
}

/// Keeps in `sample` the `max` earliest records (by [`evidence_order`]), sorted.
pub(crate) fn keep_earliest(sample: &mut Vec<FlowRecord>, r: &FlowRecord, max: usize) {
    keep_earliest_with(sample, r, max, FlowRecord::clone);
}

/// [`keep_earliest`], copying `r` (when kept) with `copy`.
pub(crate) fn keep_earliest_with(
    sample: &mut Vec<FlowRecord>,
    r: &FlowRecord,
    max: usize,
    copy: impl FnOnce(&FlowRecord) -> FlowRecord,
) {
    if max == 0 {
        return;
    }
    let key = evidence_order(r);
    if sample.len() == max {
        match sample.last() {
            Some(last) if evidence_order(last) > key => {
                sample.pop();
            }
            _ => return,
        }
    }
    let at = sample.partition_point(|e| evidence_order(e) <= key);
    // Room for the first record alone (most samples stay at one: a one-off series, a
    // window with a single flow, and a record is ~150 bytes), then straight to `max`:
    // at most two allocations, none per doubling, and no memory for records that never
    // come.
    if sample.len() == sample.capacity() {
        sample.reserve_exact(if sample.is_empty() {
            1
        } else {
            max - sample.len()
        });
    }
    sample.insert(at, copy(r));
}

/// Most windows one record is spread over.
const SPREAD_WINDOWS_MAX: u64 = 4096;

/// The [first, last] span [`spread`] shares a record over: `last` no earlier than
/// `first`, and `first` clamped to the most recent [`SPREAD_WINDOWS_MAX`] windows.
pub(super) fn clamped_span(first: u64, last: u64, len_ns: u64) -> (u64, u64) {
    let last = last.max(first);
    (
        first.max(last.saturating_sub(SPREAD_WINDOWS_MAX * len_ns)),
        last,
    )
}

/// Asks the CPU to bring what `p` points at into the cache, for a loop that knows
/// which scattered state it needs a few steps ahead (no effect where there is no such
/// hint). Nothing is read: `p` may be dangling.
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch hint reads nothing and cannot fault, whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Calls `add(window start, packets, bytes)` for each `len_ns` window the [first, last]
/// span of a record overlaps, in window order, with its share of the packets and bytes
/// in proportion to the overlap. A record spanning more windows than any probe timeout
/// allows is clamped to its most recent [`SPREAD_WINDOWS_MAX`] windows, so bad
/// timestamps cannot make this loop run for long. Only windows starting in
/// [`from`, `to`) are visited (their shares still of the whole span).
pub(super) fn spread(
    (first, last, packets, bytes): (u64, u64, u64, u64),
    len_ns: u64,
    (from, to): (u64, u64),
    mut add: impl FnMut(u64, f64, f64),
) {
    let len_ns = len_ns.max(1);
    let (first, last) = clamped_span(first, last, len_ns);
    let span = (last - first) as f64;
    let mut w = first - first % len_ns;
    if w < from {
        w = from - from % len_ns;
    }
    while w <= last && w < to {
        let end = w.saturating_add(len_ns);
        let share = if span == 0.0 {
            1.0
        } else {
            // The overlap in integer ns, then as f64: Unix-ns timestamps are beyond f64's
            // exact range, so subtracting them as floats would make every full window's
            // share differ in its last bits.
            end.min(last).saturating_sub(first.max(w)) as f64 / span
        };
        if share > 0.0 || span == 0.0 {
            add(w, packets as f64 * share, bytes as f64 * share);
        }
        if end == u64::MAX {
            break;
        }
        w = end;
    }
}

/// Starts of the two windows of length `len_ns`, hopping by half their length, that hold
/// `ts` (a burst shorter than half a window falls whole into one of them).
pub(crate) fn hopping_windows(ts: u64, len_ns: u64) -> impl Iterator<Item = u64> {
    let hop = (len_ns / 2).max(1);
    let w0 = ts - ts % hop;
    [w0.saturating_sub(hop), w0]
        .into_iter()
        .filter(move |w| w.saturating_add(len_ns) > ts)
}

/// Removes the lower-ranked half (plus one) of `map`'s entries by `rank` (a bounded
/// table making room: one O(n) pass instead of evicting entry by entry).
pub(crate) fn forget_lowest_half<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    rank: impl Fn(&V) -> f64,
) {
    let mut by: Vec<(f64, K)> = map.iter().map(|(k, v)| (rank(v), k.clone())).collect();
    if by.is_empty() {
        return;
    }
    let half = by.len() / 2;
    by.select_nth_unstable_by(half, |a, b| a.0.total_cmp(&b.0));
    for (_, k) in &by[..=half] {
        map.remove(k);
    }
}

/// The watermark at which the oldest of `windows` (by start, each `len_ns` long) closes;
/// `u64::MAX` when there is none.
pub(crate) fn oldest_end<V>(windows: &BTreeMap<u64, V>, len_ns: u64) -> u64 {
    windows
        .first_key_value()
        .map_or(u64::MAX, |(w, _)| w.saturating_add(len_ns))
}

/// Largest set kept per accumulator (bounds memory under floods of spoofed sources).
pub(crate) const DISTINCT_MAX: usize = 1 << 16;

impl Acc {
    /// Adds `packets`/`bytes` of `r` (a share of it when spread over windows), not
    /// considering it as evidence.
    fn count(&mut self, r: &FlowRecord, packets: f64, bytes: f64, line: u16) {
        if self.flows == 0 {
            self.first_ns = r.first;
            self.last_ns = r.last;
            self.line = line;
            self.first_src = Some(r.src);
        } else if self.first_src != Some(r.src) {
            self.multi_src = true;
        }
        self.first_ns = self.first_ns.min(r.first);
        self.last_ns = self.last_ns.max(r.last);
        self.packets += packets;
        self.bytes += bytes;
        self.flows += 1;
        if let Some(d) = self.detail.as_mut() {
            match d.sources.as_mut() {
                None => {
                    if r.src != d.followed_src {
                        d.sources = Some(HashSet::from_iter([d.followed_src, r.src]));
                    }
                }
                Some(sources) if sources.len() < DISTINCT_MAX => {
                    sources.insert(r.src);
                }
                Some(_) => {}
            }
        }
    }

    /// Counts `packets`/`bytes` of `r` (on line `line` of `lines`), following the window
    /// in detail from the first flow after which `gate` holds for it (see
    /// [`Windows::add_spread_gated`]).
    pub(super) fn count_gated(
        &mut self,
        r: &FlowRecord,
        (packets, bytes): (f64, f64),
        (line, lines): (u16, &Lines),
        evidence_max: usize,
        gate: impl Fn(&Acc) -> bool,
    ) {
        self.count(r, packets, bytes, line);
        if gate(self) {
            keep_earliest_with(&mut self.follow(r).evidence, r, evidence_max, |r| {
                lines.copy(r, line)
            });
        }
    }

    /// Starts following the window in detail (from the flow just counted on).
    fn follow(&mut self, r: &FlowRecord) -> &mut Detail {
        let flows = self.flows;
        self.detail.get_or_insert_with(|| {
            Box::new(Detail {
                distinct: Distinct::default(),
                followed_src: r.src,
                sources: None,
                evidence: Vec::new(),
                missed: flows - 1,
            })
        })
    }

    /// Records a distinct value.
    pub fn mark(&mut self, v: u64) {
        if let Some(d) = self.detail.as_mut()
            && d.distinct.len() < DISTINCT_MAX
        {
            d.distinct.insert(v);
        }
    }

    /// Distinct values marked.
    pub fn distinct(&self) -> usize {
        self.detail.as_ref().map_or(0, |d| d.distinct.len())
    }

    /// Distinct sources.
    pub fn sources(&self) -> SourceCount {
        let seen = (self.detail.as_ref()).map_or(0, |d| d.sources.as_ref().map_or(1, |s| s.len()));
        let missed = self.detail.as_ref().map_or(self.flows, |d| d.missed);
        let at_least = if self.multi_src { 2 } else { 1 }.min(self.flows as usize);
        SourceCount {
            n: seen.max(at_least),
            exact: missed == 0 || (!self.multi_src && seen <= 1),
        }
    }

    /// The source, when every flow came from one.
    pub fn single_source(&self) -> Option<IpAddr> {
        if self.multi_src { None } else { self.first_src }
    }

    /// The source as an alert names it: the address when every flow came from one,
    /// else how many sources there were.
    pub fn source_endpoint(&self) -> super::alert::Endpoint {
        match self.single_source() {
            Some(a) => super::alert::Endpoint::Addr(a),
            None => super::alert::Endpoint::Many(format!("{} sources", self.sources())),
        }
    }

    /// The sample flows.
    pub fn evidence(&self) -> &[FlowRecord] {
        self.detail.as_ref().map_or(&[], |d| &d.evidence)
    }

    /// Takes the sample flows (for a report).
    pub fn take_evidence(&mut self) -> Vec<FlowRecord> {
        self.detail
            .as_mut()
            .map(|d| std::mem::take(&mut d.evidence))
            .unwrap_or_default()
    }
}

/// Line names numbered: accumulators and pending segments hold a line's number, not the
/// name. Lines are few (the links the probes watch); past [`LINES_MAX`] names the
/// further ones share the number [`OTHER_LINES`].
#[derive(Debug)]
pub(super) struct Lines {
    names: Vec<Name>,
    index: HashMap<Name, u16>,
    /// The names looked up last, and their numbers: records of one batch share their
    /// line's name, so most lookups are a few pointer comparisons.
    recent: [Option<(Name, u16)>; RECENT_LINES],
    /// Slot of `recent` the next new name replaces.
    recent_next: usize,
    max: usize,
}

pub(super) const LINES_MAX: usize = 4096;
/// Names [`Lines`] finds by pointer.
const RECENT_LINES: usize = 8;
/// The number of every line beyond [`LINES_MAX`].
pub(super) const OTHER_LINES: u16 = u16::MAX;

impl Default for Lines {
    fn default() -> Self {
        Lines::with_max(LINES_MAX)
    }
}

impl Lines {
    pub(super) fn with_max(max: usize) -> Self {
        Lines {
            names: Vec::new(),
            index: HashMap::new(),
            recent: Default::default(),
            recent_next: 0,
            max: max.min(usize::from(OTHER_LINES)),
        }
    }

    /// The number of `name`.
    pub(super) fn id(&mut self, name: &Name) -> u16 {
        for (n, id) in self.recent.iter().flatten() {
            if Name::ptr_eq(n, name) {
                return *id;
            }
        }
        let id = match self.index.get(name.as_str()) {
            Some(&id) => id,
            None if self.names.len() < self.max => {
                let id = self.names.len() as u16;
                // A copy of its own (not the batch's shared name, which the pipeline's
                // other threads count): `copy` hands it out for every sample record.
                let own = Name::from(name.as_str());
                self.names.push(own.clone());
                self.index.insert(own, id);
                id
            }
            None => OTHER_LINES,
        };
        self.recent[self.recent_next] = Some((name.clone(), id));
        self.recent_next = (self.recent_next + 1) % RECENT_LINES;
        id
    }

    /// A copy of `r`, numbered `id`, on this table's copy of its line name (see
    /// [`FlowRecord::clone_on_line`]).
    pub(super) fn copy(&self, r: &FlowRecord, id: u16) -> FlowRecord {
        match self.names.get(usize::from(id)) {
            Some(n) => r.clone_on_line(n.clone()),
            None => r.clone(),
        }
    }

    /// The name numbered `id` by [`Self::id`].
    pub(super) fn name(&self, id: u16) -> Name {
        match self.names.get(usize::from(id)) {
            Some(n) => n.clone(),
            None => Name::from(OTHER_LINES_NAME),
        }
    }

    /// Names numbered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }
}

/// What a report names as the line of a window of a line beyond [`LINES_MAX`].
const OTHER_LINES_NAME: &str = "(other lines)";

/// Accumulators keyed by (window start, key); windows are `len_ns` long and aligned to
/// the Unix epoch, so the same records always fall into the same windows.
#[derive(Debug)]
pub(crate) struct Windows<K: Eq + Hash + Clone> {
    len_ns: u64,
    map: BTreeMap<u64, HashMap<K, Acc>>,
    lines: Lines,
    /// Keys of the last window drained: the capacity a new window starts with.
    typical_keys: usize,
    /// Maps of drained windows, emptied, for the next new windows: their memory is
    /// already sized and touched, so a new window neither allocates nor faults in pages.
    spare: Vec<HashMap<K, Acc>>,
}

/// Emptied window maps [`Windows`] keeps for reuse.
const SPARE_WINDOWS: usize = 2;

impl<K: Eq + Hash + Clone> Windows<K> {
    pub fn new(len_ns: u64) -> Self {
        Windows {
            len_ns: len_ns.max(1),
            map: BTreeMap::new(),
            lines: Lines::default(),
            typical_keys: 0,
            spare: Vec::new(),
        }
    }

    /// The line of `acc` (for a report).
    pub fn line(&self, acc: &Acc) -> String {
        self.lines.name(acc.line).to_string()
    }

    /// The line numbered `id`.
    pub(super) fn line_name(&self, id: u16) -> Name {
        self.lines.name(id)
    }

    /// The line numbers of the accumulators.
    pub(super) fn lines_mut(&mut self) -> &mut Lines {
        &mut self.lines
    }

    /// Start of the window holding `ts`.
    pub fn start_of(&self, ts: u64) -> u64 {
        ts - ts % self.len_ns
    }

    /// A copy of `key`'s accumulator in the window starting at `w` the first time
    /// `crossed` holds for it (then marked as reported early); `None` otherwise.
    pub fn take_early(&mut self, w: u64, key: &K, crossed: impl Fn(&Acc) -> bool) -> Option<Acc> {
        let acc = self.map.get_mut(&w)?.get_mut(key)?;
        if acc.early || !crossed(acc) {
            return None;
        }
        acc.early = true;
        Some(acc.clone())
    }

    /// Counts `r` (all of it) in `key`'s accumulator of the window holding `r.first`,
    /// keeping it as evidence if among the `evidence_max` earliest; returns the
    /// accumulator.
    pub fn add(&mut self, r: &FlowRecord, key: K, evidence_max: usize) -> &mut Acc {
        let w = self.start_of(r.first);
        let line = self.lines.id(&r.line);
        let acc = window(&mut self.map, &mut self.spare, w, self.typical_keys)
            .entry(key)
            .or_default();
        acc.count(r, r.packets as f64, r.bytes as f64, line);
        let lines = &self.lines;
        keep_earliest_with(&mut acc.follow(r).evidence, r, evidence_max, |r| {
            lines.copy(r, line)
        });
        acc
    }

    /// Adds `r` to `key`, spreading its packets and bytes over the windows its
    /// [first, last] span overlaps in proportion to the overlap.
    pub fn add_spread(&mut self, r: &FlowRecord, key: K, evidence_max: usize) {
        self.add_spread_gated(r, key, evidence_max, |_| true);
    }

    /// [`Self::add_spread`], following a window in detail (distinct sources, sample
    /// flows) only once `gate` holds for its accumulator with `r` counted: rules whose
    /// verdict needs a large volume follow only windows nearing it, not every window of
    /// every key. The record that crosses the gate is the first one followed, so a
    /// window that reports always has evidence; its source count is then a lower bound
    /// ([`Acc::sources`]).
    pub fn add_spread_gated(
        &mut self,
        r: &FlowRecord,
        key: K,
        evidence_max: usize,
        gate: impl Fn(&Acc) -> bool,
    ) {
        self.add_spread_gated_from(r, key, 0, evidence_max, gate);
    }

    /// [`Self::add_spread_gated`], leaving out the windows that start before `from`.
    pub fn add_spread_gated_from(
        &mut self,
        r: &FlowRecord,
        key: K,
        from: u64,
        evidence_max: usize,
        gate: impl Fn(&Acc) -> bool,
    ) {
        let line = self.lines.id(&r.line);
        self.add_spread_gated_line(r, line, key, from, evidence_max, gate);
    }

    /// [`Self::add_spread_gated_from`] of a record whose line is numbered `line`.
    pub(super) fn add_spread_gated_line(
        &mut self,
        r: &FlowRecord,
        line: u16,
        key: K,
        from: u64,
        evidence_max: usize,
        gate: impl Fn(&Acc) -> bool,
    ) {
        let (map, spare) = (&mut self.map, &mut self.spare);
        let (typical, lines) = (self.typical_keys, &self.lines);
        let span = (r.first, r.last, r.packets, r.bytes);
        spread(span, self.len_ns, (from, u64::MAX), |w, p, b| {
            window(map, spare, w, typical)
                .entry(key.clone())
                .or_default()
                .count_gated(r, (p, b), (line, lines), evidence_max, &gate);
        });
    }

    /// The accumulator of `key` in the window holding `ts`, if it has one.
    pub fn get_mut(&mut self, ts: u64, key: &K) -> Option<&mut Acc> {
        let w = self.start_of(ts);
        self.map.get_mut(&w)?.get_mut(key)
    }

    /// The watermark at which the oldest window closes (`u64::MAX`: none open).
    pub fn due(&self) -> u64 {
        oldest_end(&self.map, self.len_ns)
    }

    /// Removes and returns (in window order; keys of a window in no particular order)
    /// every window that ends at or before `watermark`.
    pub fn drain_closed(&mut self, watermark: u64) -> Vec<(u64, K, Acc)> {
        let mut out = Vec::new();
        while let Some(entry) = self.map.first_entry() {
            if entry.key().saturating_add(self.len_ns) > watermark {
                break;
            }
            let (w, mut keys) = entry.remove_entry();
            self.typical_keys = keys.len();
            out.reserve(keys.len());
            out.extend(keys.drain().map(|(k, acc)| (w, k, acc)));
            // A map far larger than its windows now need (after a flood of keys) is
            // let go rather than kept.
            if self.spare.len() < SPARE_WINDOWS
                && keys.capacity() <= self.typical_keys.saturating_mul(2).max(1024)
            {
                self.spare.push(keys);
            }
        }
        out
    }
}

/// The keys of the window starting at `w`; a new window takes a `spare` map, or is
/// created with room for `typical` keys (the size of the last window closed).
fn window<'m, K: Eq + Hash>(
    map: &'m mut BTreeMap<u64, HashMap<K, Acc>>,
    spare: &mut Vec<HashMap<K, Acc>>,
    w: u64,
    typical: usize,
) -> &'m mut HashMap<K, Acc> {
    map.entry(w).or_insert_with(|| match spare.pop() {
        Some(mut m) => {
            m.reserve(typical);
            m
        }
        None => HashMap::with_capacity(typical),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A xorshift64 sequence from `seed` (not zero): test workloads, the same on every
    /// run.
    pub(in super::super) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// A UDP record 192.0.2.1 → 192.0.2.2 of `packets` 100-byte packets on line `l`.
    pub(in super::super) fn rec(first: u64, last: u64, packets: u64) -> FlowRecord {
        FlowRecord {
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            sport: 1,
            dport: 2,
            proto: 17,
            packets,
            bytes: packets * 100,
            first,
            last,
            line: "l".into(),
            ..Default::default()
        }
    }

    #[test]
    fn spreading_splits_by_overlap_and_windows_close_in_order() {
        let mut w: Windows<u8> = Windows::new(10);
        w.add_spread(&rec(5, 25, 20), 0, 4);
        let closed = w.drain_closed(20);
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].0, 0);
        assert!((closed[0].2.packets - 5.0).abs() < 1e-9);
        assert!((closed[1].2.packets - 10.0).abs() < 1e-9);
        let rest = w.drain_closed(u64::MAX);
        assert!((rest[0].2.packets - 5.0).abs() < 1e-9);
    }

    #[test]
    fn absurd_spans_are_clamped_not_looped_over() {
        let mut w: Windows<u8> = Windows::new(1_000_000_000);
        w.add_spread(&rec(0, u64::MAX - 1, 4096), 0, 1);
        let closed = w.drain_closed(u64::MAX);
        assert!(closed.len() <= SPREAD_WINDOWS_MAX as usize + 1);
        let total: f64 = closed.iter().map(|c| c.2.packets).sum();
        assert!((total - 4096.0).abs() < 1e-6, "{total}");
    }

    fn from(src: u8, t: u64, packets: u64) -> FlowRecord {
        let mut r = rec(t, t, packets);
        r.src = std::net::IpAddr::from([198, 51, 100, src]);
        r
    }

    #[test]
    fn a_gated_window_is_followed_from_the_record_that_crosses_the_gate() {
        let mut w: Windows<u8> = Windows::new(10);
        let gate = |a: &Acc| a.packets >= 100.0;
        // Two sources below the gate: counted, not followed.
        w.add_spread_gated(&from(1, 1, 40), 0, 4, gate);
        w.add_spread_gated(&from(2, 2, 40), 0, 4, gate);
        // A quiet key never crosses it.
        w.add_spread_gated(&from(9, 3, 5), 1, 4, gate);
        // This one crosses it, and the next ones are followed too.
        w.add_spread_gated(&from(3, 3, 40), 0, 4, gate);
        w.add_spread_gated(&from(4, 4, 40), 0, 4, gate);
        let mut closed = w.drain_closed(10);
        closed.sort_by_key(|c| c.1);
        let (hot, quiet) = (&closed[0].2, &closed[1].2);
        assert_eq!(hot.flows, 4);
        assert_eq!(hot.evidence().len(), 2);
        assert_eq!(hot.evidence()[0].src, from(3, 3, 1).src);
        let n = hot.sources();
        assert_eq!(
            (n.n, n.exact, n.to_string()),
            (2, false, "at least 2".into())
        );
        assert_eq!(hot.single_source(), None);
        assert!(quiet.evidence().is_empty());
        assert_eq!(quiet.single_source(), Some(from(9, 0, 1).src));
        assert_eq!(quiet.sources(), SourceCount { n: 1, exact: true });
    }

    #[test]
    fn distinct_values_count_alike_inline_and_in_a_set() {
        // Repeats before, at and after the switch from inline values to a set.
        let mut next = xorshift(7);
        for round in 0..200u64 {
            let (mut d, mut set) = (Distinct::default(), std::collections::HashSet::new());
            for _ in 0..(round % 12) {
                let v = next() % (1 + round % 7);
                d.insert(v);
                set.insert(v);
                assert_eq!(d.len(), set.len());
            }
        }
    }

    #[test]
    fn ungated_windows_count_sources_exactly_and_keep_the_earliest_flows() {
        let mut w: Windows<u8> = Windows::new(10);
        for (i, t) in [5u64, 1, 3, 2].into_iter().enumerate() {
            w.add(&from(i as u8 % 3, t, 1), 0, 2);
        }
        let closed = w.drain_closed(10);
        let acc = &closed[0].2;
        assert_eq!(acc.sources(), SourceCount { n: 3, exact: true });
        assert_eq!(acc.sources().to_string(), "3");
        let firsts: Vec<u64> = acc.evidence().iter().map(|r| r.first).collect();
        assert_eq!(firsts, [1, 2]);
    }

    #[test]
    fn windows_name_their_line_and_lines_beyond_the_numbered_ones_share_one_name() {
        let mut w: Windows<u8> = Windows::new(10);
        *w.lines_mut() = Lines::with_max(2);
        for (key, line) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let mut r = rec(1, 1, 1);
            r.line = line.into();
            w.add(&r, key as u8, 1);
            // The same name again, as another allocation: the same number.
            r.line = String::from(line).into();
            w.add(&r, key as u8, 1);
        }
        let mut closed = w.drain_closed(10);
        closed.sort_by_key(|c| c.1);
        let names: Vec<String> = closed.iter().map(|c| w.line(&c.2)).collect();
        assert_eq!(names, ["a", "b", OTHER_LINES_NAME, OTHER_LINES_NAME]);
        assert!(closed.iter().all(|c| c.2.flows == 2));
        assert_eq!(w.lines_mut().len(), 2);
    }

    #[test]
    fn a_single_source_stays_named_even_when_followed_late() {
        let mut w: Windows<u8> = Windows::new(10);
        let gate = |a: &Acc| a.packets >= 100.0;
        for t in 0..5 {
            w.add_spread_gated(&from(7, t, 40), 0, 4, gate);
        }
        let acc = &w.drain_closed(10)[0].2;
        assert_eq!(acc.single_source(), Some(from(7, 0, 1).src));
        assert_eq!(acc.sources(), SourceCount { n: 1, exact: true });
    }
}
