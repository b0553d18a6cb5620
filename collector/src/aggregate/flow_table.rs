//! A shard's merged-flow table: a slab of slots, a hash index of slot numbers, and an
//! intrusive least-recently-seen list for the memory bound.
//!
//! The index stores 4-byte slot numbers (the key lives once, in its slot), so a flow
//! costs its slot plus about 5 bytes of index per bucket. Slots freed by eviction or
//! expiry are reused before the slab grows.

use hashbrown::HashTable;

use super::flows::FlowState;
use super::key::CKey;

/// No slot (list ends).
const NIL: u32 = u32::MAX;
/// `prev` of a free slot.
const FREE: u32 = u32::MAX - 1;

struct Slot {
    key: CKey,
    state: FlowState,
    /// Towards the most recently seen end; [`FREE`] when the slot is unused.
    prev: u32,
    /// Towards the least recently seen end; next free slot when unused.
    next: u32,
}

/// Merged flows keyed by [`CKey`], at most `limit` of them.
pub(crate) struct FlowTable {
    index: HashTable<u32>,
    slots: Vec<Slot>,
    free: u32,
    /// Most recently seen.
    head: u32,
    /// Least recently seen (evicted first).
    tail: u32,
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
            head: NIL,
            tail: NIL,
            len: 0,
            limit: limit.max(1),
            hasher: ahash::RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn hash(&self, key: &CKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Slot of `key`.
    pub fn find(&self, key: &CKey) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(key), |&i| slots[i as usize].key == *key)
            .copied()
    }

    pub fn state(&self, slot: u32) -> &FlowState {
        &self.slots[slot as usize].state
    }

    pub fn state_mut(&mut self, slot: u32) -> &mut FlowState {
        &mut self.slots[slot as usize].state
    }

    /// Marks `slot` as the most recently seen.
    pub fn touch(&mut self, slot: u32) {
        if self.head == slot {
            return;
        }
        self.unlink(slot);
        self.push_head(slot);
    }

    /// Inserts a flow whose key is not in the table, as the most recently seen. When the
    /// table is full, the least recently seen flow is evicted first and returned.
    pub fn insert(&mut self, key: CKey, state: FlowState) -> (u32, Option<(CKey, FlowState)>) {
        debug_assert!(self.find(&key).is_none());
        let evicted = if self.len >= self.limit && self.tail != NIL {
            Some(self.remove(self.tail))
        } else {
            None
        };
        let slot = if self.free != NIL {
            let s = self.free;
            let e = &mut self.slots[s as usize];
            self.free = e.next;
            e.key = key;
            e.state = state;
            s
        } else {
            self.slots.push(Slot {
                key,
                state,
                prev: NIL,
                next: NIL,
            });
            (self.slots.len() - 1) as u32
        };
        self.push_head(slot);
        let h = self.hash(&key);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(h, slot, |&i| hasher.hash_one(slots[i as usize].key));
        self.len += 1;
        (slot, evicted)
    }

    /// Removes the flow in `slot` and returns it.
    pub fn remove(&mut self, slot: u32) -> (CKey, FlowState) {
        let key = self.slots[slot as usize].key;
        let h = self.hash(&key);
        if let Ok(e) = self.index.find_entry(h, |&i| i == slot) {
            e.remove();
        }
        self.unlink(slot);
        let e = &mut self.slots[slot as usize];
        let state = std::mem::take(&mut e.state);
        e.prev = FREE;
        e.next = self.free;
        self.free = slot;
        self.len -= 1;
        (key, state)
    }

    /// Every flow, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&CKey, &FlowState)> {
        self.slots
            .iter()
            .filter(|s| s.prev != FREE)
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
            if s.prev != FREE && !keep(&s.key, &s.state) {
                let (k, st) = self.remove(slot);
                removed(k, st);
            }
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let s = &self.slots[slot as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    fn push_head(&mut self, slot: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[slot as usize];
            s.prev = NIL;
            s.next = old;
        }
        if old == NIL {
            self.tail = slot;
        } else {
            self.slots[old as usize].prev = slot;
        }
        self.head = slot;
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
    fn full_table_evicts_least_recently_seen() {
        let mut t = FlowTable::new(3);
        for i in 0..3 {
            assert!(t.insert(key(i), state(i)).1.is_none());
        }
        // Seeing flow 0 again makes flow 1 the least recently seen.
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
}
