//! The probe's side of the kernel flow table (`tidegate_common::slot`): the `FLOWS`
//! array mapped into the process, read in place at every sweep.
//!
//! Exactness: a slot's counters only grow — `packets`/`bytes` by plain adds of the CPU
//! that claimed it, `shared_packets`/`shared_bytes` by atomic adds of any other CPU, so
//! no word has two kinds of writer and no add is lost — and the probe keeps what it
//! exported of each slot (`seen`) in its own memory. Each sweep exports `counters - seen`
//! (both pairs summed) and sets `seen` to the counters it read, so every packet added
//! before that read is exported once, and every packet after it is left for a later
//! sweep. Removing an idle flow: the probe swaps its tag
//! for `SLOT_RETIRING` (programs stop matching it), waits for an RCU grace period (no
//! program run that matched it before the swap is still running), exports what was
//! added meanwhile — now final — and only then frees the slot. A packet of that flow
//! arriving after the swap claims a new slot: the flow continues there, counted once.

use std::{
    io,
    os::fd::BorrowedFd,
    ptr::addr_of_mut,
    sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
};

use tidegate_common::{
    FlowKey, FlowSlot, FlowStats,
    slot::{SLOT_EMPTY, SLOT_RETIRING, is_live},
};

use super::{grace, mapped::Mapped};
use crate::clock::MonoToEpoch;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Live slots found.
    pub live: usize,
    /// Deltas exported.
    pub exported: usize,
    /// Slots freed (idle flows).
    pub retired: usize,
}

/// `FLOWS` mapped read-write.
pub struct SlotTable {
    slots: Mapped<FlowSlot>,
    /// `FLOWS_TAKEN`: one bit per slot, set by the program that claims it.
    taken: Mapped<u64>,
    retiring: Vec<u32>,
    /// Per slot, the (packets, bytes) exported since it was claimed.
    seen: Vec<Seen>,
    /// Live slots at the last sweep (occupancy decides how soon idle flows go).
    last_live: usize,
}

/// Words of a taken-bitmap for `slots` slots.
pub fn taken_words(slots: u32) -> usize {
    (slots as usize).div_ceil(64)
}

impl SlotTable {
    /// Maps the `FLOWS` array behind `flows` (`slots` entries) and its `FLOWS_TAKEN`
    /// bitmap behind `taken` (`ceil(slots / 64)` words).
    pub fn map(flows: BorrowedFd<'_>, taken: BorrowedFd<'_>, slots: u32) -> io::Result<Self> {
        Self::over(
            Mapped::new(Some(flows), slots as usize)?,
            Mapped::new(Some(taken), taken_words(slots))?,
        )
    }

    /// A table in anonymous memory, for tests that play the kernel's part.
    #[cfg(test)]
    fn anonymous(slots: u32) -> io::Result<Self> {
        Self::over(
            Mapped::new(None, slots as usize)?,
            Mapped::new(None, taken_words(slots))?,
        )
    }

    fn over(slots: Mapped<FlowSlot>, taken: Mapped<u64>) -> io::Result<Self> {
        Ok(SlotTable {
            seen: vec![Seen::default(); slots.len()],
            slots,
            taken,
            retiring: Vec::new(),
            last_live: 0,
        })
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, i: usize) -> *mut FlowSlot {
        self.slots.at(i)
    }

    /// The bitmap word holding slot `i`'s bit, and the bit.
    fn taken_bit(&self, i: usize) -> (&AtomicU64, u64) {
        // SAFETY: a word of the live mapping, only accessed atomically.
        (
            unsafe { AtomicU64::from_ptr(self.taken.at(i / 64)) },
            1 << (i % 64),
        )
    }

    /// Slots whose taken bit is set, in order (a snapshot, word by word).
    fn taken_slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.taken.len()).flat_map(move |w| {
            // SAFETY: as in `taken_bit`.
            let mut bits = unsafe { AtomicU64::from_ptr(self.taken.at(w)) }.load(Ordering::Acquire);
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + b)
            })
        })
    }

    /// Exports every flow's growth since its last export; removes flows idle for
    /// `retire_idle_ns` (kernel monotonic clock), or, when more than half the table is
    /// taken, every flow that saw no packet since `last_sweep_mono` (then waits one grace
    /// period and exports their final deltas). Timestamps handed out are Unix-epoch ns.
    pub fn sweep(
        &mut self,
        now_mono: u64,
        last_sweep_mono: u64,
        retire_idle_ns: u64,
        out: &mut impl FnMut(&FlowKey, &FlowStats),
    ) -> SweepStats {
        let conv = MonoToEpoch::now();
        let idle_before = if self.last_live > self.slots.len() / 2 {
            last_sweep_mono
        } else {
            now_mono.saturating_sub(retire_idle_ns)
        };
        let mut st = SweepStats::default();
        self.retiring.clear();
        let mut retiring = std::mem::take(&mut self.retiring);
        let mut seen = std::mem::take(&mut self.seen);
        for i in self.taken_slots().filter(|&i| i < self.slots.len()) {
            let s = self.slot(i);
            // SAFETY: slot inside the mapping; shared words are accessed atomically.
            let state = unsafe { AtomicU64::from_ptr(addr_of_mut!((*s).state)) };
            let tag = state.load(Ordering::Acquire);
            if !is_live(tag) {
                continue;
            }
            st.live += 1;
            // SAFETY: as above.
            if unsafe { export_delta(s, &mut seen[i], false, &conv, out) } {
                st.exported += 1;
            }
            // SAFETY: as above.
            let last =
                unsafe { AtomicU64::from_ptr(addr_of_mut!((*s).last_ns)) }.load(Ordering::Relaxed);
            if last < idle_before
                && state
                    .compare_exchange(tag, SLOT_RETIRING, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                retiring.push(i as u32);
            }
        }
        self.retiring = retiring;
        self.seen = seen;
        self.last_live = st.live;
        if !self.retiring.is_empty() {
            grace::wait();
            let conv = MonoToEpoch::now();
            for &i in &self.retiring {
                let s = self.slot(i as usize);
                // SAFETY: a retiring slot no program can touch any more (grace period).
                unsafe {
                    if export_delta(s, &mut self.seen[i as usize], true, &conv, out) {
                        st.exported += 1;
                    }
                    // Unmarked before it is freed: a program that claims it afterwards
                    // marks it again.
                    let (word, bit) = self.taken_bit(i as usize);
                    word.fetch_and(!bit, Ordering::AcqRel);
                    free(s);
                    self.seen[i as usize] = Seen::default();
                }
            }
            st.retired = self.retiring.len();
            self.last_live -= st.retired;
        }
        st
    }

    /// Shutdown (programs detached, grace period over): exports what every slot holds
    /// beyond its last export.
    pub fn finish(&mut self, out: &mut impl FnMut(&FlowKey, &FlowStats)) -> usize {
        let conv = MonoToEpoch::now();
        let mut n = 0;
        for i in 0..self.slots.len() {
            let s = self.slot(i);
            // SAFETY: slot inside the mapping.
            let state =
                unsafe { AtomicU64::from_ptr(addr_of_mut!((*s).state)) }.load(Ordering::Acquire);
            // SAFETY: as above.
            if (is_live(state) || state == SLOT_RETIRING)
                && unsafe { export_delta(s, &mut self.seen[i], true, &conv, out) }
            {
                n += 1;
            }
        }
        n
    }
}

/// What the probe has exported of one slot since it was claimed.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    packets: u64,
    bytes: u64,
}

/// Exports `counters - seen` of a live or retiring slot, if it grew; whether it did.
/// `last` (a retired slot past its grace period, or shutdown with the programs
/// detached): nothing can be added any more, so bytes alone count as growth.
///
/// # Safety
/// `s` points at a slot of the mapping.
unsafe fn export_delta(
    s: *mut FlowSlot,
    seen: &mut Seen,
    last: bool,
    conv: &MonoToEpoch,
    out: &mut impl FnMut(&FlowKey, &FlowStats),
) -> bool {
    // SAFETY: the caller's contract; every word programs write is read atomically (one
    // aligned load each).
    unsafe {
        // Programs add bytes, then packets (the owner's stores in program order, the
        // others' packet add ordered): a packet count read here comes with at least its
        // packets' bytes, so the count alone says whether there is anything to export.
        // (Bytes can be ahead by a packet in flight; its count, and so the difference,
        // comes with a later export — at the latest the final one.)
        if packets(s) == seen.packets && !(last && bytes(s) != seen.bytes) {
            return false;
        }
        // Interval words first, then the counters: a packet counted after the swap
        // stamps the next interval (its stamp can only be early, never late).
        let first =
            AtomicU64::from_ptr(addr_of_mut!((*s).interval_first_ns)).swap(0, Ordering::AcqRel);
        let flags = AtomicU32::from_ptr(addr_of_mut!((*s).tcp_flags)).swap(0, Ordering::AcqRel);
        let verdict = AtomicU8::from_ptr(addr_of_mut!((*s).verdict)).swap(0, Ordering::AcqRel);
        AtomicU32::from_ptr(addr_of_mut!((*s).interval_packets)).store(0, Ordering::Release);
        let p = packets(s);
        let b = bytes(s);
        let last_ns = word(addr_of_mut!((*s).last_ns));
        let key = (*s).key;
        let d = FlowStats {
            packets: p.wrapping_sub(seen.packets),
            bytes: b.wrapping_sub(seen.bytes),
            // 0 only if the interval's first packet raced the previous export's swap.
            first_ns: conv.convert(if first == 0 || first > last_ns {
                last_ns
            } else {
                first
            }),
            last_ns: conv.convert(last_ns),
            tcp_flags: flags as u16,
            icmp: (*s).icmp,
            verdict,
            rule: (*s).rule,
            policy: (*s).policy,
        };
        *seen = Seen {
            packets: p,
            bytes: b,
        };
        out(&key, &d);
        true
    }
}

/// One counter word, read whole.
///
/// # Safety
/// `p` is an 8-aligned word of the mapping.
unsafe fn word(p: *mut u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { AtomicU64::from_ptr(p).load(Ordering::Acquire) }
}

/// A slot's packets: the owner CPU's and the others'.
///
/// # Safety
/// `s` points at a slot of the mapping.
unsafe fn packets(s: *mut FlowSlot) -> u64 {
    // SAFETY: the caller's contract.
    unsafe {
        word(addr_of_mut!((*s).packets)).wrapping_add(word(addr_of_mut!((*s).shared_packets)))
    }
}

/// A slot's bytes: the owner CPU's and the others'.
///
/// # Safety
/// `s` points at a slot of the mapping.
unsafe fn bytes(s: *mut FlowSlot) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { word(addr_of_mut!((*s).bytes)).wrapping_add(word(addr_of_mut!((*s).shared_bytes))) }
}

/// Clears a retired slot and hands it back to the programs.
///
/// # Safety
/// `s` is a retiring slot past its grace period.
unsafe fn free(s: *mut FlowSlot) {
    // SAFETY: the caller's contract: no program reads or writes the slot until the
    // state says empty, which is stored last.
    unsafe {
        let mut e = FlowSlot::EMPTY;
        e.state = SLOT_RETIRING;
        std::ptr::write_volatile(s, e);
        AtomicU64::from_ptr(addr_of_mut!((*s).state)).store(SLOT_EMPTY, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tidegate_common::slot::{SLOT_BUSY, flow_hash, live_tag};

    use super::*;

    fn key(port: u16) -> FlowKey {
        let mut k = FlowKey::ZERO;
        k.family = 4;
        k.proto = 17;
        k.sport = port;
        k.dport = 53;
        k
    }

    /// Plays a program: adds a packet to `key`'s slot at `i`, claiming it if empty.
    fn packet(t: &SlotTable, i: usize, k: &FlowKey, bytes: u64, now: u64, flags: u32) {
        let s = t.slot(i);
        // SAFETY: slot inside the test mapping; single-threaded test.
        unsafe {
            if (*s).state == SLOT_EMPTY {
                (*s).state = SLOT_BUSY;
                let (word, bit) = t.taken_bit(i);
                word.fetch_or(bit, Ordering::AcqRel);
                (*s).key = *k;
                (*s).state = live_tag(flow_hash(k));
            }
            assert_eq!((*s).key, *k);
            if (*s).interval_first_ns == 0 {
                (*s).interval_first_ns = now;
            }
            (*s).packets += 1;
            (*s).bytes += bytes;
            (*s).last_ns = now;
            (*s).tcp_flags |= flags;
        }
    }

    /// Plays a program on another CPU than the slot's owner: atomic adds to the shared
    /// pair.
    fn packet_elsewhere(t: &SlotTable, i: usize, k: &FlowKey, bytes: u64, now: u64) {
        let s = t.slot(i);
        // SAFETY: slot inside the test mapping; the shared words are accessed atomically.
        unsafe {
            assert_eq!((*s).key, *k);
            AtomicU64::from_ptr(addr_of_mut!((*s).shared_bytes)).fetch_add(bytes, Ordering::AcqRel);
            AtomicU64::from_ptr(addr_of_mut!((*s).shared_packets)).fetch_add(1, Ordering::AcqRel);
            (*s).last_ns = now;
        }
    }

    type Totals = HashMap<u16, (u64, u64, usize)>;

    fn sum(into: &mut Totals) -> impl FnMut(&FlowKey, &FlowStats) + '_ {
        |k, d| {
            let e = into.entry(k.sport).or_default();
            e.0 += d.packets;
            e.1 += d.bytes;
            e.2 += 1;
        }
    }

    #[test]
    fn each_sweep_exports_only_what_was_added_since_the_last() {
        let mut t = SlotTable::anonymous(64).unwrap();
        let (a, b) = (key(1000), key(2000));
        let mut got = Totals::new();
        packet(&t, 3, &a, 100, 1_000, 0x02);
        packet(&t, 3, &a, 100, 2_000, 0x10);
        packet(&t, 9, &b, 60, 2_000, 0);
        let st = t.sweep(3_000, 0, u64::MAX, &mut sum(&mut got));
        assert_eq!((st.live, st.exported, st.retired), (2, 2, 0));
        // Nothing new: nothing exported, nothing retired.
        let st = t.sweep(4_000, 3_000, u64::MAX, &mut sum(&mut got));
        assert_eq!((st.live, st.exported), (2, 0));
        packet(&t, 3, &a, 100, 5_000, 0x10);
        let mut deltas = Vec::new();
        t.sweep(6_000, 4_000, u64::MAX, &mut |k, d| deltas.push((*k, *d)));
        assert_eq!(deltas.len(), 1);
        let (k, d) = deltas[0];
        assert_eq!((k.sport, d.packets, d.bytes), (1000, 1, 100));
        // Only this interval's flags, and its first packet (not the flow's).
        assert_eq!(d.tcp_flags, 0x10);
        assert_eq!(d.last_ns - d.first_ns, 0);
        assert_eq!(got[&1000], (2, 200, 1));
        assert_eq!(got[&2000], (1, 60, 1));
    }

    #[test]
    fn packets_counted_on_other_cpus_are_exported_with_the_owners_once() {
        let mut t = SlotTable::anonymous(64).unwrap();
        let a = key(1000);
        let mut got = Totals::new();
        packet(&t, 4, &a, 100, 1_000, 0);
        packet_elsewhere(&t, 4, &a, 40, 1_500);
        t.sweep(2_000, 0, u64::MAX, &mut sum(&mut got));
        assert_eq!(got[&1000], (2, 140, 1));
        packet_elsewhere(&t, 4, &a, 40, 2_500);
        packet_elsewhere(&t, 4, &a, 40, 2_600);
        t.sweep(3_000, 2_000, u64::MAX, &mut sum(&mut got));
        assert_eq!(got[&1000], (4, 220, 2));
        // Nothing new on either pair: nothing exported.
        t.sweep(4_000, 3_000, u64::MAX, &mut sum(&mut got));
        packet(&t, 4, &a, 100, 4_500, 0);
        // Idle: the final export, and the slot's next life starts from zero.
        t.sweep(20_000, 4_000, 10_000, &mut sum(&mut got));
        assert_eq!(got[&1000], (5, 320, 3));
        packet(&t, 4, &a, 100, 30_000, 0);
        t.finish(&mut sum(&mut got));
        assert_eq!(got[&1000], (6, 420, 4));
    }

    #[test]
    fn an_idle_flow_leaves_with_its_last_packets_and_its_slot_is_reused() {
        let mut t = SlotTable::anonymous(64).unwrap();
        let a = key(1000);
        let mut got = Totals::new();
        packet(&t, 5, &a, 100, 1_000, 0);
        t.sweep(2_000, 0, 10_000, &mut sum(&mut got));
        packet(&t, 5, &a, 100, 3_000, 0);
        // Idle for 10 µs of kernel time: exported and freed in the same sweep.
        let st = t.sweep(20_000, 2_000, 10_000, &mut sum(&mut got));
        assert_eq!((st.live, st.exported, st.retired), (1, 1, 1));
        assert_eq!(got[&1000], (2, 200, 2));
        // SAFETY: slot inside the mapping.
        assert_eq!(unsafe { *t.slot(5) }, FlowSlot::EMPTY);
        // The flow comes back: a fresh slot life, counted from zero, never re-exported.
        packet(&t, 5, &a, 100, 30_000, 0);
        t.sweep(31_000, 20_000, 10_000, &mut sum(&mut got));
        t.finish(&mut sum(&mut got));
        assert_eq!(got[&1000], (3, 300, 3));
    }

    #[test]
    fn a_table_more_than_half_full_retires_flows_quiet_since_the_last_sweep() {
        let mut t = SlotTable::anonymous(16).unwrap();
        let mut got = Totals::new();
        for i in 0..10 {
            packet(&t, i, &key(i as u16), 60, 1_000, 0);
        }
        // Under half full before: the long idle threshold applies, nobody leaves.
        let st = t.sweep(2_000, 0, u64::MAX, &mut sum(&mut got));
        assert_eq!((st.live, st.retired), (10, 0));
        packet(&t, 0, &key(0), 60, 2_500, 0);
        // 10 of 16 live at the last sweep: every flow without a packet since it goes.
        let st = t.sweep(3_000, 2_000, u64::MAX, &mut sum(&mut got));
        assert_eq!((st.live, st.retired), (10, 9));
        assert_eq!(got[&0], (2, 120, 2));
        assert!((1..10).all(|i| got[&i] == (1, 60, 1)));
    }

    #[test]
    fn shutdown_exports_what_no_sweep_has_seen_yet() {
        let mut t = SlotTable::anonymous(32).unwrap();
        let mut got = Totals::new();
        packet(&t, 7, &key(1), 60, 1_000, 0);
        t.sweep(2_000, 0, u64::MAX, &mut sum(&mut got));
        packet(&t, 7, &key(1), 60, 2_500, 0);
        packet(&t, 30, &key(2), 60, 2_600, 0);
        assert_eq!(t.finish(&mut sum(&mut got)), 2);
        assert_eq!(got[&1], (2, 120, 2));
        assert_eq!(got[&2], (1, 60, 1));
        assert_eq!(t.finish(&mut sum(&mut got)), 0, "nothing twice");
    }
}
