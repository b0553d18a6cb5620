//! A shard's merged-flow table: a slab of slots, a hash index of slot numbers, and a
//! CLOCK (second-chance) hand for the memory bound.
//!
//! The index stores 4-byte slot numbers (the key lives once, in its slot), so a flow
//! costs its slot plus about 5 bytes of index per bucket. Slots freed by eviction or
//! expiry are reused before the slab grows.
//!
//! Eviction when full: a hand walks the slots in order; a flow seen again since the hand
//! last passed (its *seen* mark, set by [`FlowTable::touch`]) loses the mark and is
//! passed over, the first flow without it is evicted. A new flow starts unmarked, so a
//! burst of one-record flows evicts its own kind before flows seen more than once. This
//! is how page caches approximate least-recently-seen, without a list to keep in order:
//! seeing a flow again writes one byte of the slot it already reads, and removing a flow
//! touches no other slot (an intrusive list's unlink touched two, at random addresses:
//! two cache misses per expiry).

use hashbrown::HashTable;

use super::flows::FlowState;
use super::key::CKey;

/// No slot (end of the free list).
const NIL: u32 = u32::MAX;

/// [`Slot::mark`] values.
const FREE: u8 = 0;
const HELD: u8 = 1;
const SEEN: u8 = 2;

struct Slot {
    key: CKey,
    state: FlowState,
    /// The key's [`FlowTable::hash`] (in what was padding), so removing a flow and
    /// growing the index hash no key.
    hash: u32,
    /// Next free slot when unused.
    next: u32,
    /// [`FREE`], [`HELD`], or [`SEEN`] (held and seen again since the hand passed).
    mark: u8,
}

/// A slot's 32-bit hash as the index takes it: spread over 64 bits by an odd multiplier
/// (a bijection), so the bucket (low bits) and the tag (top 7 bits) both come from it.
fn spread(h: u32) -> u64 {
    u64::from(h).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Merged flows keyed by [`CKey`], at most `limit` of them.
pub(crate) struct FlowTable {
    index: HashTable<u32>,
    slots: Vec<Slot>,
    free: u32,
    /// The next slot the eviction hand looks at.
    hand: u32,
    len: usize,
    limit: usize,
    hasher: ahash::RandomState,
}

impl FlowTable {
    /// An empty table holding at most `limit` (>= 1) flows.
    pub fn new(limit: usize) -> FlowTable {
        FlowTable {
            index: HashTable::new(),
            slots: Vec::new(),
            free: NIL,
            hand: 0,
            len: 0,
            limit: limit.max(1),
            hasher: ahash::RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The index's hash of `key`, for [`Self::find_hashed`] and [`Self::insert_hashed`]
    /// (one hash per record however many of them it takes).
    pub fn hash(&self, key: &CKey) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    /// Slot of `key`.
    #[cfg(test)]
    pub fn find(&self, key: &CKey) -> Option<u32> {
        self.find_hashed(self.hash(key), key)
    }

    /// Slot of `key`, whose [`Self::hash`] is `h`.
    pub fn find_hashed(&self, h: u32, key: &CKey) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(spread(h), |&i| slots[i as usize].key == *key)
            .copied()
    }

    pub fn state(&self, slot: u32) -> &FlowState {
        &self.slots[slot as usize].state
    }

    pub fn state_mut(&mut self, slot: u32) -> &mut FlowState {
        &mut self.slots[slot as usize].state
    }

    /// Marks the flow in `slot` as seen again (it is passed over once by the hand).
    pub fn touch(&mut self, slot: u32) {
        self.slots[slot as usize].mark = SEEN;
    }

    /// [`Self::insert_hashed`], hashing `key`.
    #[cfg(test)]
    pub fn insert(&mut self, key: CKey, state: FlowState) -> (u32, Option<(CKey, FlowState)>) {
        self.insert_hashed(self.hash(&key), key, state)
    }

    /// Inserts a flow whose key, of [`Self::hash`] `h`, is not in the table. When the
    /// table is full, the flow the hand picks (see the module documentation) is evicted
    /// first and returned.
    pub fn insert_hashed(
        &mut self,
        h: u32,
        key: CKey,
        state: FlowState,
    ) -> (u32, Option<(CKey, FlowState)>) {
        debug_assert_eq!(h, self.hash(&key));
        debug_assert!(self.find_hashed(h, &key).is_none());
        let evicted = if self.len >= self.limit {
            self.victim().map(|v| self.remove(v))
        } else {
            None
        };
        let slot = if self.free != NIL {
            let s = self.free;
            let e = &mut self.slots[s as usize];
            self.free = e.next;
            e.key = key;
            e.state = state;
            e.hash = h;
            e.mark = HELD;
            e.next = NIL;
            s
        } else {
            self.slots.push(Slot {
                key,
                state,
                hash: h,
                next: NIL,
                mark: HELD,
            });
            (self.slots.len() - 1) as u32
        };
        let slots = &self.slots;
        self.index
            .insert_unique(spread(h), slot, |&i| spread(slots[i as usize].hash));
        self.len += 1;
        (slot, evicted)
    }

    /// The slot to evict: the first held slot from the hand on without a [`SEEN`] mark,
    /// clearing the marks it passes (at most two turns: after one every mark is clear).
    fn victim(&mut self) -> Option<u32> {
        let n = self.slots.len() as u32;
        if n == 0 || self.len == 0 {
            return None;
        }
        for _ in 0..2 * n as u64 + 1 {
            if self.hand >= n {
                self.hand = 0;
            }
            let i = self.hand;
            self.hand += 1;
            let s = &mut self.slots[i as usize];
            match s.mark {
                HELD => return Some(i),
                SEEN => s.mark = HELD,
                _ => {}
            }
        }
        None
    }

    /// Removes the flow in `slot` and returns it.
    pub fn remove(&mut self, slot: u32) -> (CKey, FlowState) {
        let (key, h) = (
            self.slots[slot as usize].key,
            self.slots[slot as usize].hash,
        );
        let found = self.index.find_entry(spread(h), |&i| i == slot);
        debug_assert!(found.is_ok(), "slot {slot} held but not in the index");
        if let Ok(e) = found {
            e.remove();
        }
        let e = &mut self.slots[slot as usize];
        let state = std::mem::take(&mut e.state);
        e.mark = FREE;
        e.next = self.free;
        self.free = slot;
        self.len -= 1;
        (key, state)
    }

    /// Every flow, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&CKey, &FlowState)> {
        self.slots
            .iter()
            .filter(|s| s.mark != FREE)
            .map(|s| (&s.key, &s.state))
    }

    /// Removes every flow for which `keep` is false, handing each to `removed`.
    pub fn retain(
        &mut self,
        mut keep: impl FnMut(&CKey, &FlowState) -> bool,
        mut removed: impl FnMut(CKey, FlowState),
    ) {
        for slot in 0..self.slots.len() as u32 {
            let s = &self.slots[slot as usize];
            if s.mark != FREE && !keep(&s.key, &s.state) {
                let (k, st) = self.remove(slot);
                removed(k, st);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::message::Rec;

    use tidegate_wire::record::FlowRecord;

    /// One packet of TCP flow `i` (source port `i`) carrying `i` bytes at time `i`.
    fn rec(i: u16) -> FlowRecord {
        FlowRecord {
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            sport: i,
            dport: 80,
            proto: 6,
            packets: 1,
            bytes: u64::from(i),
            first: u64::from(i),
            last: u64::from(i),
            line: "l".into(),
            ..Default::default()
        }
    }

    fn key(i: u16) -> CKey {
        CKey::of(&rec(i), 0)
    }

    fn state(i: u16) -> FlowState {
        FlowState::new(&Rec::of(&rec(i), 0), 0)
    }

    #[test]
    fn a_flow_costs_a_112_byte_slot() {
        assert_eq!(std::mem::size_of::<CKey>(), 44);
        assert_eq!(std::mem::size_of::<Slot>(), 112);
    }

    #[test]
    fn full_table_evicts_a_flow_not_seen_again_first() {
        let mut t = FlowTable::new(3);
        for i in 0..3 {
            assert!(t.insert(key(i), state(i)).1.is_none());
        }
        // Seeing flow 0 again makes flow 1 the first to go.
        let s0 = t.find(&key(0)).unwrap();
        t.touch(s0);
        let (_, ev) = t.insert(key(3), state(3));
        assert_eq!(ev.unwrap().0, key(1));
        let (_, ev) = t.insert(key(4), state(4));
        assert_eq!(ev.unwrap().0, key(2));
        assert_eq!(t.len(), 3);
        let mut held: Vec<u64> = t.iter().map(|(_, s)| s.counters.bytes).collect();
        held.sort();
        assert_eq!(held, vec![0, 3, 4]);
        // Freed slots are reused: the slab did not grow past the limit.
        assert_eq!(t.slots.len(), 3);
        // Flow 0's second chance is spent: not seen since, it goes next.
        let (_, ev) = t.insert(key(5), state(5));
        assert_eq!(ev.unwrap().0, key(0));
    }

    #[test]
    fn flows_seen_again_outlast_a_burst_of_new_ones() {
        let mut t = FlowTable::new(100);
        for i in 0..100 {
            t.insert(key(i), state(i));
        }
        // Flows 0..10 recur while 1 000 one-record flows pass through.
        let mut evicted = 0;
        for i in 100..1_100u16 {
            for k in 0..10 {
                let s = t.find(&key(k)).expect("a recurring flow was evicted");
                t.touch(s);
            }
            evicted += usize::from(t.insert(key(i), state(i)).1.is_some());
        }
        assert_eq!(evicted, 1_000);
        assert_eq!(t.len(), 100);
        assert_eq!(t.slots.len(), 100);
        for k in 0..10 {
            assert!(t.find(&key(k)).is_some(), "flow {k}");
        }
        // Every flow marked: the hand clears the marks and still finds one.
        for s in 0..100 {
            t.touch(s);
        }
        assert!(t.insert(key(2_000), state(2_000)).1.is_some());
        assert_eq!(t.len(), 100);
    }

    #[test]
    fn retain_removes_and_index_stays_consistent() {
        let mut t = FlowTable::new(100);
        for i in 0..50 {
            t.insert(key(i), state(i));
        }
        let mut gone = Vec::new();
        t.retain(|_, s| s.counters.bytes % 2 == 0, |k, _| gone.push(k));
        assert_eq!(gone.len(), 25);
        assert_eq!(t.len(), 25);
        for i in 0..50 {
            assert_eq!(t.find(&key(i)).is_some(), i % 2 == 0, "flow {i}");
        }
        for i in 50..80 {
            t.insert(key(i), state(i));
        }
        assert_eq!(t.slots.len(), 55);
        for i in 50..80 {
            let s = t.find(&key(i)).unwrap();
            assert_eq!(t.state(s).counters.bytes, u64::from(i));
        }
    }

    #[test]
    fn every_flow_stays_findable_as_the_index_grows_and_flows_go() {
        // Growing rehashes from the hashes kept in the slots, removing finds the entry
        // by them: 20 000 flows grow the index many times over.
        let mut t = FlowTable::new(100_000);
        let keys: Vec<CKey> = (0..20_000u32)
            .map(|i| {
                let mut k = key(i as u16);
                k.line = i;
                k
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            t.insert(*k, state(i as u16));
        }
        t.retain(|k, _| k.line % 3 != 0, |_, _| {});
        for (i, k) in keys.iter().enumerate() {
            let found = t.find(k);
            assert_eq!(found.is_some(), i % 3 != 0, "flow {i}");
            if let Some(s) = found {
                assert_eq!(t.state(s).counters.bytes, u64::from(i as u16));
            }
        }
        // The freed slots take new flows, and every index entry still leads to its own.
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            let mut k = *k;
            k.line += 1_000_000;
            t.insert(k, state(i as u16));
        }
        assert_eq!(t.slots.len(), keys.len());
        assert_eq!(t.index.len(), t.len());
        for &i in &t.index {
            let s = &t.slots[i as usize];
            assert_eq!(t.find(&s.key), Some(i));
        }
        // The flows in reused slots go again, found by the hashes those slots took.
        t.retain(|k, _| k.line < 1_000_000, |_, _| {});
        assert_eq!(t.len(), keys.len() - keys.len().div_ceil(3));
        assert_eq!(t.index.len(), t.len());
        for &i in &t.index {
            assert!(t.slots[i as usize].key.line < 1_000_000);
        }
    }
}
