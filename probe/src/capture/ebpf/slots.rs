//! The probe's side of the kernel flow table (`tidegate_common::slot`): the `FLOWS`
//! array mapped into the process, read in place at every sweep.
//!
//! Exactness: a slot's counters only grow — `packets`/`bytes` by plain adds of the CPU
//! that claimed it, `shared_packets`/`shared_bytes` by atomic adds of any other CPU, so
//! no word has two kinds of writer and no add is lost — and the probe keeps what it
//! handed over of each slot (`seen`) in its own memory. Each hand-over passes
//! `counters - seen` (both pairs summed) and sets `seen` to the counters it read, so
//! every packet added before that read is handed over once, and every packet after it
//! is left for a later one. When that happens is the sink's choice: at every sweep, or
//! — for the probe's flow table — only when the flow's record is due, the flow being
//! *held* in between (see [`crate::sink`]). Removing an idle flow: the probe swaps its
//! tag for `SLOT_RETIRING` (programs stop matching it), waits for an RCU grace period
//! (no program run that matched it before the swap is still running), hands over what
//! was added meanwhile — now final — and only then frees the slot. A packet of that
//! flow arriving after the swap claims a new slot: the flow continues there, counted
//! once.

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
use crate::{clock::MonoToEpoch, sink::FlowSink};

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Live slots found.
    pub live: usize,
    /// Flows handed over: growth (a sink without timeouts), or held records released.
    pub exported: usize,
    /// Holds begun (new flows, and flows whose last record was released).
    pub held: usize,
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

    /// Hands the kernel table's flows to `sink` and removes idle flows from it.
    ///
    /// A sink that keeps records ([`FlowSink::timeouts_ns`]) gets each flow *held* at
    /// the first sweep of its slot's life and *released* with everything the slot
    /// counted when its record is due (open for the active timeout, idle for the idle
    /// timeout) or when the flow leaves the table — a sweep reads two words of a flow
    /// whose record is not due, and touches nothing else. Any other sink gets every
    /// flow's growth since the last sweep.
    ///
    /// Removal: flows idle for `retire_idle_ns` (kernel monotonic clock) or, when more
    /// than half the table is taken, every flow that saw no packet since
    /// `last_sweep_mono`; after one grace period their final counts are handed over.
    /// Timestamps handed out are Unix-epoch ns.
    pub fn sweep<S: FlowSink + ?Sized>(
        &mut self,
        now_mono: u64,
        last_sweep_mono: u64,
        retire_idle_ns: u64,
        sink: &mut S,
    ) -> SweepStats {
        let conv = MonoToEpoch::now();
        let timeouts = sink.timeouts_ns();
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
            let seen = &mut seen[i];
            // SAFETY: as above.
            let last = unsafe { word(addr_of_mut!((*s).last_ns)) };
            match timeouts {
                None => {
                    // SAFETY: as above.
                    if let Some((key, d)) = unsafe { export_delta(s, seen, false, &conv) } {
                        sink.observe(&key, &d);
                        st.exported += 1;
                    }
                }
                Some((active_ns, idle_ns)) => {
                    // Held from the first sweep that finds packets the sink has not had
                    // (so the record's first packet is known).
                    // SAFETY: as above.
                    if seen.held_since == 0 && unsafe { packets(s) } != seen.packets {
                        // SAFETY: as above; a live slot's key no longer changes.
                        let key = unsafe { (*s).key };
                        seen.held_since = match sink.hold(&key) {
                            Some(first) => conv.to_mono(first),
                            // SAFETY: as above.
                            None => match unsafe { word(addr_of_mut!((*s).interval_first_ns)) } {
                                0 => last,
                                first => first,
                            },
                        }
                        .clamp(1, now_mono.max(1));
                        st.held += 1;
                    }
                    if seen.held_since != 0
                        && (now_mono.saturating_sub(seen.held_since) >= active_ns
                            || last.saturating_add(idle_ns) <= now_mono)
                    {
                        // SAFETY: as above.
                        unsafe { release(s, seen, false, true, &conv, sink) };
                        st.exported += 1;
                    }
                }
            }
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
                    if hand_over_last(s, &mut self.seen[i as usize], &conv, sink) {
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

    /// Shutdown (programs detached, grace period over): hands over what every slot
    /// holds beyond its last hand-over, and ends every hold.
    pub fn finish<S: FlowSink + ?Sized>(&mut self, sink: &mut S) -> usize {
        let conv = MonoToEpoch::now();
        let mut n = 0;
        for i in 0..self.slots.len() {
            let s = self.slot(i);
            // SAFETY: slot inside the mapping.
            let state =
                unsafe { AtomicU64::from_ptr(addr_of_mut!((*s).state)) }.load(Ordering::Acquire);
            // SAFETY: as above; nothing writes the slot any more.
            if (is_live(state) || state == SLOT_RETIRING)
                && unsafe { hand_over_last(s, &mut self.seen[i], &conv, sink) }
            {
                n += 1;
            }
        }
        n
    }
}

/// What the probe has done with one slot since it was claimed.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// Packets and bytes handed to the sink.
    packets: u64,
    bytes: u64,
    /// The slot's flow is held in the sink ([`FlowSink::hold`]) since the first packet
    /// of its record (kernel monotonic ns); 0: not held.
    held_since: u64,
}

/// Ends a held record: hands the slot's growth (possibly nothing) to the sink's
/// `release`; `due`: the record's timeout passed. Whether the slot had grown.
///
/// # Safety
/// As [`export_delta`].
unsafe fn release<S: FlowSink + ?Sized>(
    s: *mut FlowSlot,
    seen: &mut Seen,
    last: bool,
    due: bool,
    conv: &MonoToEpoch,
    sink: &mut S,
) -> bool {
    // SAFETY: the caller's contract.
    let grew = unsafe { export_delta(s, seen, last, conv) };
    let grown = grew.is_some();
    // SAFETY: as above.
    let (key, d) = grew.unwrap_or_else(|| (unsafe { (*s).key }, FlowStats::default()));
    sink.release(&key, &d, due);
    seen.held_since = 0;
    grown
}

/// The last hand-over of a slot nothing writes any more (retired past its grace
/// period, or shutdown with the programs detached): its growth, and the end of its
/// hold. Whether anything was counted.
///
/// # Safety
/// As [`export_delta`].
unsafe fn hand_over_last<S: FlowSink + ?Sized>(
    s: *mut FlowSlot,
    seen: &mut Seen,
    conv: &MonoToEpoch,
    sink: &mut S,
) -> bool {
    if seen.held_since != 0 {
        // SAFETY: the caller's contract.
        return unsafe { release(s, seen, true, false, conv, sink) };
    }
    // SAFETY: the caller's contract.
    match unsafe { export_delta(s, seen, true, conv) } {
        Some((key, d)) => {
            sink.observe(&key, &d);
            true
        }
        None => false,
    }
}

/// The growth of a live or retiring slot since `seen` (which it then advances), if it
/// grew: `counters - seen`, with the interval's first packet, flags and verdict (which
/// restart). `last` (a retired slot past its grace period, or shutdown with the
/// programs detached): nothing can be added any more, so bytes alone count as growth.
///
/// # Safety
/// `s` points at a slot of the mapping.
unsafe fn export_delta(
    s: *mut FlowSlot,
    seen: &mut Seen,
    last: bool,
    conv: &MonoToEpoch,
) -> Option<(FlowKey, FlowStats)> {
    // SAFETY: the caller's contract; every word programs write is read atomically (one
    // aligned load each).
    unsafe {
        // Programs add bytes, then packets (the owner's stores in program order, the
        // others' packet add ordered): a packet count read here comes with at least its
        // packets' bytes, so the count alone says whether there is anything to export.
        // (Bytes can be ahead by a packet in flight; its count, and so the difference,
        // comes with a later export — at the latest the final one.)
        if packets(s) == seen.packets && !(last && bytes(s) != seen.bytes) {
            return None;
        }
        // Interval words first, then the counters: a packet counted after the swap
        // stamps the next interval (its stamp can only be early, never late). The
        // sampling count restarts too: a new record's first packets may be sampled.
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
        seen.packets = p;
        seen.bytes = b;
        Some((key, d))
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
    use crate::table::{FlowTable, Timeouts};

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
                (*s).state = live_tag(flow_hash(k, |i| i as u64));
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
        t.sweep(6_000, 4_000, u64::MAX, &mut |k: &FlowKey, d: &FlowStats| {
            deltas.push((*k, *d))
        });
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

    const S: u64 = 1_000_000_000;

    /// The probe's flow table with `active`/`idle` timeouts in seconds.
    fn records(active: u64, idle: u64) -> FlowTable {
        FlowTable::new(Timeouts {
            active: std::time::Duration::from_secs(active),
            idle: std::time::Duration::from_secs(idle),
        })
    }

    /// Exports what `table` has due at kernel time `mono` (give or take the jitter of
    /// sampling the clocks' offset: 1 ms more).
    fn expire(table: &mut FlowTable, mono: u64, into: &mut Vec<FlowStats>) {
        let now = MonoToEpoch::now().convert(mono + S / 1000);
        table.expire(now, |_, s, _| into.push(*s));
    }

    #[test]
    fn a_held_flow_is_handed_over_when_its_record_is_due_not_at_every_sweep() {
        let mut t = SlotTable::anonymous(64).unwrap();
        let mut table = records(10, 5);
        let mut out = Vec::new();
        let a = key(1000);
        // A packet a second from 1 s to 14 s, a sweep after each.
        let mut holds = 0;
        let mut handed = 0;
        for sec in 1..=14u64 {
            packet(&t, 3, &a, 100, sec * S, 0x10);
            let st = t.sweep(sec * S + S / 2, sec * S - S / 2, u64::MAX, &mut table);
            holds += st.held;
            handed += st.exported;
            expire(&mut table, sec * S + S / 2, &mut out);
            if sec < 11 {
                // Held since 1 s: nothing handed over, nothing exported yet.
                assert_eq!((handed, out.len()), (0, 0), "at {sec} s");
            }
        }
        // Open for 10 s at the sweep of 11.5 s: one record of 11 packets, then the
        // flow is held again from its next packet.
        assert_eq!((holds, handed), (2, 1));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].packets, out[0].bytes), (11, 1_100));
        assert_eq!(out[0].last_ns - out[0].first_ns, 10 * S);
        assert_eq!(table.len(), 1);
        t.finish(&mut table);
        table.flush(|_, s, _| out.push(*s));
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].packets, out[1].bytes), (3, 300));
        assert_eq!(out[1].last_ns - out[1].first_ns, 2 * S);
    }

    #[test]
    fn a_flow_that_leaves_the_kernel_table_and_comes_back_continues_its_record() {
        let mut t = SlotTable::anonymous(64).unwrap();
        let mut table = records(60, 5);
        let mut out = Vec::new();
        let a = key(1000);
        packet(&t, 7, &a, 100, S, 0x02);
        assert_eq!(t.sweep(S + S / 2, 0, 2 * S, &mut table).held, 1);
        // Idle 2 s in the kernel: the slot is freed and the record handed over, where it
        // stays open (idle timeout 5 s).
        let st = t.sweep(4 * S, S + S / 2, 2 * S, &mut table);
        assert_eq!((st.retired, st.exported), (1, 1));
        expire(&mut table, 4 * S, &mut out);
        assert!(out.is_empty());
        // Back within the idle timeout, in another slot: the same record continues.
        packet(&t, 20, &a, 100, 5 * S, 0x10);
        assert_eq!(t.sweep(5 * S + S / 2, 4 * S, 2 * S, &mut table).held, 1);
        // Held: its old idle deadline (1 s + 5 s) does not apply.
        expire(&mut table, 7 * S, &mut out);
        assert!(out.is_empty());
        // Idle 5 s since its last packet: released and exported, one record.
        let st = t.sweep(10 * S, 7 * S, 60 * S, &mut table);
        assert_eq!(st.exported, 1);
        expire(&mut table, 10 * S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].packets, out[0].bytes, out[0].tcp_flags),
            (2, 200, 0x12)
        );
        // First and last converted to epoch at different sweeps.
        assert!((out[0].last_ns - out[0].first_ns).abs_diff(4 * S) < S / 1000);
        t.finish(&mut table);
        table.flush(|_, s, _| out.push(*s));
        assert_eq!(out.len(), 1, "nothing twice");
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
