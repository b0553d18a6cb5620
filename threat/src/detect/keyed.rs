//! Tumbling windows laid out by key, each key's open windows beside its baseline: for
//! rules that judge every closed window against the key's own history (`surge`).
//!
//! [`super::window::Windows`] keeps one hash map per window, so a record spread over k
//! windows costs k lookups in k maps, and judging each closed window costs one more in the
//! baseline table. Here a key is looked up once per record: its slot holds its baseline
//! and where its open windows' counters are, by window number, in a small ring (a window
//! whose ring place another open window of the key holds goes to a spill map). The
//! counters themselves live in one array of open counters, and a list per window names
//! the counters of that window, so closing a window walks its counters without hashing,
//! in window order, and touches each key's slot once for its baseline. The windows,
//! counters and baselines are the same as with `Windows` and a `Table` (a unit test
//! compares them).
//!
//! Bounds: baselines as a [`super::baseline::Table`] bounds them (past `max`, the older
//! half, by last window learned, is forgotten); slots and counters of open windows
//! stay, as the per-window maps of `Windows` hold them. Slots freed by forgetting and
//! counters freed by closing are reused; once more than half of either are free (after a
//! flood of new keys), that array is compacted, so memory follows the keys and windows
//! in use, not the largest flood seen.

use std::collections::BTreeMap;
use std::hash::Hash;

use ahash::AHashMap as HashMap;
use tidegate_wire::record::FlowRecord;

use super::baseline::{Robust, oldest_half};
use super::window::{Acc, Lines, prefetch, spread};

/// Ring places of a slot: a key's open windows whose numbers (start / length) differ by
/// less than this never share a place. Open windows span the lateness plus the newest
/// records' windows (75 s over 10-second windows: up to 9), so the spill is rare.
const RING: usize = 16;
/// An empty ring place.
const NONE: u32 = u32::MAX;

/// The ring place of the `len_ns` window starting at `w`.
fn ring_at(w: u64, len_ns: u64) -> usize {
    ((w / len_ns) % RING as u64) as usize
}

/// One key: where its open windows' counters are, and its baseline.
#[derive(Debug)]
struct Slot<K> {
    key: K,
    /// Places in [`KeyedWindows::open`] of its open windows, at their window number
    /// modulo [`RING`]; those not here are in [`KeyedWindows::spill`].
    ring: [u32; RING],
    /// Open windows, and how many of them are in the spill.
    open: u32,
    spilled: u32,
    base: Option<Robust>,
    /// With a baseline: its place in `KeyedWindows::based`.
    based_at: u32,
}

impl<K> Slot<K> {
    fn new(key: K) -> Self {
        Slot {
            key,
            ring: [NONE; RING],
            open: 0,
            spilled: 0,
            base: None,
            based_at: 0,
        }
    }
}

/// The counter of one key (by slot) over one open window.
#[derive(Debug, Default)]
struct Open {
    slot: u32,
    w: u64,
    acc: Acc,
}

#[derive(Debug)]
pub(crate) struct KeyedWindows<K: Eq + Hash + Clone> {
    len_ns: u64,
    index: HashMap<K, u32>,
    slots: Vec<Slot<K>>,
    /// Numbers of slots no key uses (neither open windows nor a baseline).
    free: Vec<u32>,
    /// Counters of open windows, by place; places of closed ones are in `vacant`.
    open: Vec<Open>,
    vacant: Vec<u32>,
    /// Open windows whose ring place another open window of the key holds: (slot,
    /// window start) → place.
    spill: HashMap<(u32, u64), u32>,
    /// Per open window (by start), the places of its counters, in the order they opened.
    by_window: BTreeMap<u64, Vec<u32>>,
    /// Emptied lists of `by_window`, for the next windows.
    spare: Vec<Vec<u32>>,
    lines: Lines,
    /// The slots with a baseline (so forgetting visits those, not every slot), and
    /// their bound.
    based: Vec<u32>,
    max_baselines: usize,
    /// Free slots (or vacant counters) past which, when they are more than half,
    /// [`Self::compact`] (or [`Self::compact_open`]) gives the memory back.
    compact_at: usize,
}

/// Counters ahead of the one being closed whose slots are prefetched.
const PREFETCH_AHEAD: usize = 8;

/// Emptied window lists kept for reuse.
const SPARE_LISTS: usize = 4;

/// Free slots (or vacant counters) below which the slot array (or the counters) are not
/// compacted (a compaction then costs less than the windows that freed them).
const COMPACT_AT: usize = 4096;

impl<K: Eq + Hash + Clone + Ord> KeyedWindows<K> {
    pub fn new(len_ns: u64, max_baselines: usize) -> Self {
        KeyedWindows {
            len_ns: len_ns.max(1),
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            open: Vec::new(),
            vacant: Vec::new(),
            spill: HashMap::new(),
            by_window: BTreeMap::new(),
            spare: Vec::new(),
            lines: Lines::default(),
            based: Vec::new(),
            max_baselines: max_baselines.max(2),
            compact_at: COMPACT_AT,
        }
    }

    /// The slot of `key`, created when it has none.
    fn slot_of(&mut self, key: K) -> u32 {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let slot = Slot::new(key.clone());
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        i
    }

    /// [`super::window::Windows::add_spread_gated`]: adds `r` to `key`, spreading its
    /// packets and bytes over the windows its span overlaps, following a window in detail
    /// once `gate` holds for it.
    pub fn add_spread_gated(
        &mut self,
        r: &FlowRecord,
        key: K,
        evidence_max: usize,
        gate: impl Fn(&Acc) -> bool,
    ) {
        let line = self.lines.id(&r.line);
        let i = self.slot_of(key);
        let len_ns = self.len_ns;
        let KeyedWindows {
            slots,
            open,
            vacant,
            spill,
            by_window,
            spare,
            lines,
            ..
        } = self;
        let slot = &mut slots[i as usize];
        spread(
            (r.first, r.last, r.packets, r.bytes),
            len_ns,
            (0, u64::MAX),
            |w, p, b| {
                let at = ring_at(w, len_ns);
                let ringed = slot.ring[at];
                let place = if ringed != NONE && open[ringed as usize].w == w {
                    ringed
                } else if let Some(&place) =
                    (slot.spilled > 0).then(|| spill.get(&(i, w))).flatten()
                {
                    place
                } else {
                    // The key's first counter in this window.
                    let o = Open {
                        slot: i,
                        w,
                        acc: Acc::default(),
                    };
                    let place = match vacant.pop() {
                        Some(place) => {
                            open[place as usize] = o;
                            place
                        }
                        None => {
                            open.push(o);
                            (open.len() - 1) as u32
                        }
                    };
                    by_window
                        .entry(w)
                        .or_insert_with(|| spare.pop().unwrap_or_default())
                        .push(place);
                    slot.open += 1;
                    if ringed == NONE {
                        slot.ring[at] = place;
                    } else {
                        spill.insert((i, w), place);
                        slot.spilled += 1;
                    }
                    place
                };
                let acc = &mut open[place as usize].acc;
                acc.count_gated(r, (p, b), (line, lines), evidence_max, &gate);
            },
        );
    }

    /// The watermark at which the oldest open window closes (`u64::MAX`: none open).
    pub fn due(&self) -> u64 {
        self.by_window
            .first_key_value()
            .map_or(u64::MAX, |(w, _)| w.saturating_add(self.len_ns))
    }

    /// Closes every window that ends at or before `watermark`, in window order: for each
    /// key with a counter in it, calls `judge(window start, key, counter, baseline,
    /// lines)`. A key without a baseline gets one whose history starts at `origin`.
    pub fn close(
        &mut self,
        watermark: u64,
        origin: u64,
        mut judge: impl FnMut(u64, &K, Acc, &mut Robust, &Lines),
    ) {
        while let Some(entry) = self.by_window.first_entry() {
            if entry.key().saturating_add(self.len_ns) > watermark {
                break;
            }
            let (w, mut list) = entry.remove_entry();
            let at = ring_at(w, self.len_ns);
            for (k, &place) in list.iter().enumerate() {
                // Two stages: the counter twice as far ahead (its place is in the list),
                // then the slot of the one half as far, whose number that counter holds
                // (fetched by now: reading it uncached stalled as long as the slot).
                if let Some(&far) = list.get(k + 2 * PREFETCH_AHEAD) {
                    let o = &self.open[far as usize];
                    prefetch(o);
                    prefetch(&o.slot);
                }
                if let Some(&ahead) = list.get(k + PREFETCH_AHEAD) {
                    let i = self.open[ahead as usize].slot as usize;
                    prefetch(&self.slots[i]);
                }
                let o = &mut self.open[place as usize];
                let (i, acc) = (o.slot, std::mem::take(&mut o.acc));
                self.vacant.push(place);
                let slot = &mut self.slots[i as usize];
                slot.open -= 1;
                if slot.spilled > 0 && self.spill.remove(&(i, w)).is_some() {
                    slot.spilled -= 1;
                } else {
                    slot.ring[at] = NONE;
                }
                if slot.base.is_none() {
                    // (Forgetting touches only slots with a baseline: not this one.)
                    if self.based.len() >= self.max_baselines {
                        self.forget_oldest_baselines();
                    }
                    self.add_based(i, Robust::starting_at(origin));
                }
                let slot = &mut self.slots[i as usize];
                let Some(base) = slot.base.as_mut() else {
                    continue;
                };
                judge(w, &slot.key, acc, base, &self.lines);
            }
            list.clear();
            if self.spare.len() < SPARE_LISTS {
                self.spare.push(list);
            }
        }
        if self.free.len() >= self.compact_at && self.free.len() * 2 > self.slots.len() {
            self.compact();
        }
        if self.vacant.len() >= self.compact_at && self.vacant.len() * 2 > self.open.len() {
            self.compact_open();
        }
    }

    /// Moves the slots in use to the front, in order, renumbers them wherever they are
    /// named (index, open counters, spill, baselines), and gives the rest of the memory
    /// back. Slots are freed only when their baselines are forgotten, so after a flood of
    /// new keys (spoofed sources, a scan) the array and the index kept the flood's size,
    /// mostly free, for good; this returns them to what is in use.
    fn compact(&mut self) {
        let mut to = vec![0u32; self.slots.len()];
        for &i in &self.free {
            to[i as usize] = u32::MAX;
        }
        let used = self.slots.len() - self.free.len();
        let mut slots = Vec::with_capacity(used);
        for (i, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if to[i] != u32::MAX {
                to[i] = slots.len() as u32;
                slots.push(slot);
            }
        }
        self.slots = slots;
        self.free = Vec::new();
        for i in self.index.values_mut() {
            *i = to[*i as usize];
        }
        self.index.shrink_to_fit();
        // Only the counters of open windows name a slot still (vacant ones are stale).
        for list in self.by_window.values() {
            for &place in list {
                let o = &mut self.open[place as usize];
                o.slot = to[o.slot as usize];
            }
        }
        self.spill = std::mem::take(&mut self.spill)
            .into_iter()
            .map(|((i, w), place)| ((to[i as usize], w), place))
            .collect();
        // Same order: each slot's `based_at` stays right.
        for i in self.based.iter_mut() {
            *i = to[*i as usize];
        }
    }

    /// Moves the counters of open windows to the front, window by window, renumbers them
    /// wherever they are named (window lists, rings, spill), and gives the rest back: a
    /// flood's windows, once closed, leave their counters vacant.
    fn compact_open(&mut self) {
        let mut open = Vec::with_capacity(self.open.len() - self.vacant.len());
        for (&w, list) in self.by_window.iter_mut() {
            let at = ring_at(w, self.len_ns);
            for place in list.iter_mut() {
                let o = std::mem::take(&mut self.open[*place as usize]);
                let moved = open.len() as u32;
                let slot = &mut self.slots[o.slot as usize];
                match (slot.spilled > 0)
                    .then(|| self.spill.get_mut(&(o.slot, w)))
                    .flatten()
                {
                    Some(spilled) => *spilled = moved,
                    None => slot.ring[at] = moved,
                }
                open.push(o);
                *place = moved;
            }
        }
        self.open = open;
        self.vacant = Vec::new();
        // Spilled windows that closed (a burst of records far apart) leave the map sized
        // for them.
        self.spill.shrink_to_fit();
    }

    /// Forgets the older half (plus one) of the baselines ([`oldest_half`], as
    /// [`super::baseline::Table`] does); slots left with nothing are freed.
    fn forget_oldest_baselines(&mut self) {
        let mut by: Vec<(u64, K, u32)> = (self.based.iter())
            .filter_map(|&i| {
                let s = &self.slots[i as usize];
                s.base.map(|b| (b.last_w, s.key.clone(), i))
            })
            .collect();
        for &(_, _, i) in oldest_half(&mut by) {
            self.forget_baseline(i);
        }
    }

    /// Gives slot `i` (without one) the baseline `base`.
    fn add_based(&mut self, i: u32, base: Robust) {
        let slot = &mut self.slots[i as usize];
        slot.base = Some(base);
        slot.based_at = self.based.len() as u32;
        self.based.push(i);
    }

    fn forget_baseline(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        if slot.base.take().is_some() {
            let at = slot.based_at as usize;
            self.based.swap_remove(at);
            if let Some(&moved) = self.based.get(at) {
                self.slots[moved as usize].based_at = at as u32;
            }
        }
        let slot = &mut self.slots[i as usize];
        if slot.open == 0 {
            self.index.remove(&slot.key);
            self.free.push(i);
        }
    }

    /// The baselines, sorted by key (for a saved state).
    pub fn snapshot(&self) -> Vec<(K, Robust)> {
        let mut v: Vec<(K, Robust)> = (self.slots.iter())
            .filter_map(|s| s.base.map(|b| (s.key.clone(), b)))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Replaces the baselines with saved ones (at most the bound; the first of a key
    /// repeated wins).
    pub fn restore(&mut self, saved: Vec<(K, Robust)>) {
        while let Some(&i) = self.based.last() {
            self.forget_baseline(i);
        }
        for (key, base) in saved {
            if self.based.len() >= self.max_baselines {
                break;
            }
            let i = self.slot_of(key);
            if self.slots[i as usize].base.is_none() {
                self.add_based(i, base);
            }
        }
    }

    /// The baseline of `key`.
    #[cfg(test)]
    pub fn baseline(&self, key: &K) -> Option<&Robust> {
        let &i = self.index.get(key)?;
        self.slots[i as usize].base.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::super::baseline::Table;
    use super::super::window::Windows;
    use super::super::window::tests::xorshift;
    use super::*;
    use std::net::IpAddr;

    const LEN: u64 = 10;

    /// Records of `keys` keys with spans of 0–60 ns over 10-ns windows, in an order
    /// that goes back in time now and then (late records), from a fixed seed.
    fn records(n: u64, keys: u64) -> Vec<(FlowRecord, u8)> {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        (0..n)
            .map(|j| {
                let h = next();
                let last =
                    (j * 3 + 200).saturating_sub(if h.is_multiple_of(7) { h % 90 } else { 0 });
                let src = IpAddr::from([198, 51, 100, (h >> 8) as u8 % 5]);
                let r = FlowRecord {
                    src,
                    dst: IpAddr::from([192, 0, 2, 1]),
                    packets: 1 + (h >> 16) % 50,
                    bytes: 100 + (h >> 24) % 5000,
                    first: last - (h >> 32) % 60,
                    last,
                    line: if h & 1 == 0 { "a" } else { "b" }.into(),
                    ..Default::default()
                };
                (r, ((h >> 40) % keys) as u8)
            })
            .collect()
    }

    /// What a close saw: window, key, counters, sources, evidence firsts, line, and the
    /// baseline after learning.
    type Seen = (u64, u8, u64, u64, u64, String, Vec<u64>, String, u64, u64);

    fn seen(w: u64, k: u8, acc: &Acc, line: String, base: &mut Robust) -> Seen {
        base.catch_up(w, LEN, 0.1, 1.0);
        base.learn(w, LEN, acc.packets, 0.1, 1.0);
        (
            w,
            k,
            acc.packets.to_bits(),
            acc.bytes.to_bits(),
            acc.flows,
            acc.sources().to_string(),
            acc.evidence().iter().map(|r| r.first).collect(),
            line,
            base.level.to_bits(),
            base.windows,
        )
    }

    /// The same records through `KeyedWindows`, and through `Windows` with a `Table`,
    /// closing at the same watermarks: the same windows, counters, evidence, lines and
    /// baselines. (Under the bound, which baselines a close forgets depends on the order
    /// it visits a window's keys in, which neither fixes: compared unbounded.) Windows
    /// close `lateness` after the newest record's end; returns the most counters that
    /// were in the spill at once.
    fn compare(max: usize, keys: u64, lateness: u64) -> usize {
        let gate = |a: &Acc| a.packets >= 60.0;
        let mut keyed: KeyedWindows<u8> = KeyedWindows::new(LEN, max);
        let (mut plain, mut table) = (Windows::<u8>::new(LEN), Table::<u8>::new(max));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let recs = records(3000, keys);
        let mut spilled = 0;
        for (j, (r, k)) in recs.iter().enumerate() {
            keyed.add_spread_gated(r, *k, 3, gate);
            plain.add_spread_gated(r, *k, 3, gate);
            if j % 17 == 0 {
                let mark = r.last.saturating_sub(lateness);
                spilled = spilled.max(keyed.spill.len());
                assert_eq!(keyed.due(), plain.due());
                keyed.close(mark, 5, |w, k, acc, base, lines| {
                    let line = lines.name(acc.line).to_string();
                    a.push(seen(w, *k, &acc, line, base));
                });
                for (w, k, acc) in plain.drain_closed(mark) {
                    let base = table.entry(k, 5);
                    b.push(seen(w, k, &acc, plain.line(&acc), base));
                }
                // Keys of one window come in no particular order.
                a.sort();
                b.sort();
                assert_eq!(a, b);
            }
        }
        keyed.close(u64::MAX, 5, |w, k, acc, base, lines| {
            let line = lines.name(acc.line).to_string();
            a.push(seen(w, *k, &acc, line, base));
        });
        for (w, k, acc) in plain.drain_closed(u64::MAX) {
            b.push(seen(w, k, &acc, plain.line(&acc), table.entry(k, 5)));
        }
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert!(a.len() > 500, "{}", a.len());
        assert_eq!(keyed.snapshot(), table.snapshot());
        assert!(keyed.based.len() <= max);
        assert_eq!(keyed.due(), u64::MAX);
        spilled
    }

    /// `based` lists exactly the slots with a baseline, each at its `based_at`.
    fn check_based<K: Eq + Hash + Clone + Ord>(keyed: &KeyedWindows<K>) {
        for (at, &i) in keyed.based.iter().enumerate() {
            let s = &keyed.slots[i as usize];
            assert!(s.base.is_some(), "slot {i} listed without a baseline");
            assert_eq!(s.based_at as usize, at);
        }
        let with = keyed.slots.iter().filter(|s| s.base.is_some()).count();
        assert_eq!(with, keyed.based.len());
        for (k, &i) in &keyed.index {
            assert!(
                keyed.slots[i as usize].key == *k,
                "index names another slot"
            );
            assert!(!keyed.free.contains(&i), "index names a free slot");
        }
        assert_eq!(keyed.index.len() + keyed.free.len(), keyed.slots.len());
        // Every open counter is listed by its window once and found from its slot (ring
        // or spill); every other place is vacant; the slots count them.
        let mut listed = vec![false; keyed.open.len()];
        let mut per_slot = vec![(0u32, 0u32); keyed.slots.len()];
        for (&w, list) in &keyed.by_window {
            for &place in list {
                assert!(!listed[place as usize], "counter {place} listed twice");
                listed[place as usize] = true;
                let o = &keyed.open[place as usize];
                assert_eq!(o.w, w, "window {w} lists another window's counter");
                let s = &keyed.slots[o.slot as usize];
                let at = ring_at(w, keyed.len_ns);
                let spilled = keyed.spill.get(&(o.slot, w));
                assert!(
                    s.ring[at] == place && spilled.is_none() || spilled == Some(&place),
                    "counter {place} of window {w} not found from its slot"
                );
                per_slot[o.slot as usize].0 += 1;
                per_slot[o.slot as usize].1 += u32::from(spilled.is_some());
            }
        }
        for &place in &keyed.vacant {
            assert!(
                !listed[place as usize],
                "counter {place} both open and vacant"
            );
            listed[place as usize] = true;
        }
        assert!(
            listed.iter().all(|&l| l),
            "a counter neither open nor vacant"
        );
        for (i, s) in keyed.slots.iter().enumerate() {
            if !keyed.free.contains(&(i as u32)) {
                assert_eq!((s.open, s.spilled), per_slot[i], "slot {i} miscounts");
            }
        }
        assert_eq!(
            keyed.spill.len() as u32,
            per_slot.iter().map(|c| c.1).sum::<u32>()
        );
        // Every ring place in use names an open counter of its slot, at its window's place.
        for (i, s) in keyed.slots.iter().enumerate() {
            if keyed.free.contains(&(i as u32)) {
                continue;
            }
            for (at, &place) in s.ring.iter().enumerate() {
                if place == NONE {
                    continue;
                }
                let o = &keyed.open[place as usize];
                assert!(
                    !keyed.vacant.contains(&place),
                    "slot {i} names vacant counter {place}"
                );
                assert_eq!(o.slot as usize, i, "slot {i} names another slot's counter");
                assert_eq!(
                    ring_at(o.w, keyed.len_ns),
                    at,
                    "counter {place} at the wrong place"
                );
            }
        }
    }

    #[test]
    fn windows_by_key_close_like_windows_by_time_with_a_table_of_baselines() {
        compare(1000, 40, 70);
    }

    #[test]
    fn windows_open_longer_than_a_ring_close_like_windows_by_time() {
        // 300 ns of lateness over 10-ns windows: a key holds ~30 open windows, more than
        // its ring places, so some wait in the spill.
        let spilled = compare(1000, 40, 300);
        assert!(spilled > 0, "the spill was never used");
    }

    #[test]
    fn bounded_baselines_are_forgotten_and_their_slots_reused() {
        let mut keyed: KeyedWindows<u8> = KeyedWindows::new(LEN, 4);
        for (r, k) in records(2000, 200) {
            keyed.add_spread_gated(&r, k, 1, |_| true);
            keyed.close(r.last.saturating_sub(70), 0, |_, _, _, _, _| {});
            check_based(&keyed);
        }
        keyed.close(u64::MAX, 0, |_, _, _, _, _| {});
        assert!(keyed.based.len() <= 4);
        let live = keyed.slots.len() - keyed.free.len();
        assert_eq!(live, keyed.index.len());
        assert!(live <= 4, "{live} slots live with nothing open");
        assert!(
            keyed.slots.len() < 200,
            "{} slots: none reused",
            keyed.slots.len()
        );
    }

    #[test]
    fn a_flood_of_new_keys_gives_its_memory_back_once_its_windows_close() {
        // 100 000 keys in a few windows, 64 baselines kept: while the windows are open the
        // slots are the flood's size; once they close and the baselines are forgotten, the
        // slot array, the index and the counters shrink to what is in use.
        let mut keyed: KeyedWindows<u32> = KeyedWindows::new(LEN, 64);
        let mut judged = 0u64;
        for k in 0..100_000u32 {
            let r = FlowRecord {
                packets: 1,
                bytes: 60,
                first: 100 + u64::from(k % 3),
                last: 100 + u64::from(k % 3),
                line: "a".into(),
                ..Default::default()
            };
            keyed.add_spread_gated(&r, k, 1, |_| true);
        }
        assert_eq!(keyed.slots.len(), 100_000);
        keyed.close(200, 0, |_, _, _, _, _| judged += 1);
        check_based(&keyed);
        assert_eq!(judged, 100_000);
        assert!(keyed.based.len() <= 64);
        assert!(keyed.slots.capacity() <= 64, "{}", keyed.slots.capacity());
        assert!(keyed.open.capacity() < 1024, "{}", keyed.open.capacity());
        assert!(keyed.index.capacity() < 1024, "{}", keyed.index.capacity());
        // The keys kept go on learning; new ones come in.
        for k in (0..200_000u32).step_by(1000) {
            let r = FlowRecord {
                packets: 2,
                bytes: 120,
                first: 300,
                last: 305,
                line: "b".into(),
                ..Default::default()
            };
            keyed.add_spread_gated(&r, k, 1, |_| true);
        }
        check_based(&keyed);
        keyed.close(u64::MAX, 0, |_, _, _, _, _| judged += 1);
        check_based(&keyed);
        assert_eq!(judged, 100_200);
    }

    #[test]
    fn windows_compacted_at_every_close_close_as_without() {
        // Compacting whenever a slot or a counter is free must not change a close.
        let run = |compact_at: usize, lateness: u64| {
            let mut keyed: KeyedWindows<u8> = KeyedWindows::new(LEN, 8);
            keyed.compact_at = compact_at;
            let mut out = Vec::new();
            for (j, (r, k)) in records(3000, 200).into_iter().enumerate() {
                keyed.add_spread_gated(&r, k, 3, |a| a.packets >= 60.0);
                if j % 13 == 0 {
                    keyed.close(
                        r.last.saturating_sub(lateness),
                        5,
                        |w, k, acc, base, lines| {
                            let line = lines.name(acc.line).to_string();
                            out.push(seen(w, *k, &acc, line, base));
                        },
                    );
                    check_based(&keyed);
                }
            }
            keyed.close(u64::MAX, 5, |w, k, acc, base, lines| {
                let line = lines.name(acc.line).to_string();
                out.push(seen(w, *k, &acc, line, base));
            });
            (out, keyed.snapshot(), keyed.slots.len(), keyed.open.len())
        };
        // Over 30 open windows per key (300 ns of lateness), some in the spill, too.
        for lateness in [70, 300] {
            let (plain, compacted) = (run(usize::MAX, lateness), run(1, lateness));
            assert_eq!(plain.0.len(), compacted.0.len());
            assert!(plain.0.len() > 500, "{}", plain.0.len());
            assert_eq!(plain.0, compacted.0);
            assert_eq!(plain.1, compacted.1);
            assert!(
                compacted.2 < plain.2,
                "{} vs {} slots",
                compacted.2,
                plain.2
            );
            assert!(
                compacted.3 < plain.3,
                "{} vs {} counters",
                compacted.3,
                plain.3
            );
        }
    }

    #[test]
    fn counters_compacted_while_windows_stay_open_close_as_without() {
        // Ten keys' records span 40 windows, more than a ring holds (their last windows
        // are spilled); ten others' span the last 15 (all in their rings). Closing the
        // first 30 windows leaves most counters vacant: with `compact_at` at 1 the
        // counters are compacted while the last 10 windows of every key, in rings and in
        // the spill, are still open; more records then land in them.
        let run = |compact_at: usize| {
            let mut keyed: KeyedWindows<u8> = KeyedWindows::new(LEN, 64);
            keyed.compact_at = compact_at;
            let rec = |k: u8, first: u64, last: u64| FlowRecord {
                packets: 10 + u64::from(k),
                bytes: 1000,
                first,
                last,
                line: "a".into(),
                ..Default::default()
            };
            let mut out = Vec::new();
            for k in 0..20u8 {
                let first = if k < 10 { 0 } else { 250 };
                keyed.add_spread_gated(&rec(k, first, 399), k, 2, |_| true);
            }
            let (spilled, live) = (keyed.spill.len(), keyed.open.len());
            keyed.close(300, 5, |w, k, acc, base, lines| {
                let line = lines.name(acc.line).to_string();
                out.push(seen(w, *k, &acc, line, base));
            });
            check_based(&keyed);
            let kept = (keyed.open.len(), keyed.spill.len(), keyed.by_window.len());
            for k in 0..20u8 {
                keyed.add_spread_gated(&rec(k, 305 + u64::from(k), 395), k, 2, |_| true);
            }
            check_based(&keyed);
            keyed.close(u64::MAX, 5, |w, k, acc, base, lines| {
                let line = lines.name(acc.line).to_string();
                out.push(seen(w, *k, &acc, line, base));
            });
            check_based(&keyed);
            (out, keyed.snapshot(), spilled, live, kept)
        };
        let (plain, compacted) = (run(usize::MAX), run(1));
        assert!(plain.2 > 0, "no window was spilled");
        assert_eq!(plain.0.len(), 10 * 40 + 10 * 15);
        assert_eq!(plain.0, compacted.0);
        assert_eq!(plain.1, compacted.1);
        // Compacted with 10 windows per key open, half of the keys' in the spill.
        let (open, spill, windows) = compacted.4;
        assert_eq!(windows, 10);
        assert_eq!(spill, 10 * 10);
        assert_eq!(open, 20 * 10, "{} counters before", plain.3);
    }

    #[test]
    fn restored_baselines_replace_the_learned_ones() {
        let mut keyed: KeyedWindows<u8> = KeyedWindows::new(LEN, 3);
        for (r, k) in records(300, 5) {
            keyed.add_spread_gated(&r, k, 1, |_| true);
        }
        keyed.close(u64::MAX, 0, |_, _, _, _, _| {});
        let saved = vec![(1u8, Robust::starting_at(7)), (2, Robust::starting_at(8))];
        keyed.restore(saved.clone());
        check_based(&keyed);
        assert_eq!(keyed.snapshot(), saved);
        assert_eq!(keyed.baseline(&3), None);
        let four: Vec<(u8, Robust)> = (0..4).map(|k| (k, Robust::starting_at(1))).collect();
        keyed.restore(four.clone());
        assert_eq!(keyed.snapshot(), four[..3]);
    }
}
