//! Spread windows for rules where most keys stay far below any threshold (volumetric
//! rates per target over 1-second windows).
//!
//! Spreading every record over every window it spans ([`Windows::add_spread_gated`])
//! costs one accumulator per (window, key): a 15-second flow touches 15 of them, at
//! scattered addresses. Here a key starts *cold*: its records are kept as compact
//! pending segments (one append), and its windows are computed only to teach the
//! baseline, in batches ([`FLUSH_BATCH_NS`] of event time, sooner when the keys hold
//! more than [`PENDING_MAX`] segments) by a tight loop over the
//! key's own segments. Each cold key also keeps an upper bound of its windows' totals:
//! first one sum of the most each pending record can put into any single window (its
//! packets × window length / duration, or all of them for a record shorter than a
//! window), and once that sum reaches the promotion level, a tighter bound per bucket of
//! [`BUCKET_WINDOWS`] windows, to which every record adds that most over the buckets it
//! overlaps, until the key's pending records are taught. While the bound stays below
//! the promotion level, no window of the key can reach it either, so a cold window can
//! never report. Once it reaches it, the key turns *hot*: its pending
//! segments are replayed into full windows (counting only: none of those windows could
//! have crossed the level) and its records from then on are spread as before; it turns
//! cold again once its last hot window has closed.
//!
//! With the promotion level at or below the rule's evidence gate, the windows that
//! report, their counters, sources and evidence are exactly those of spreading every
//! record. One difference: a cold key's record arriving after its windows were already
//! taught to the baseline (later than the lateness allows) is not counted again.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::net::IpAddr;

use ahash::AHashMap as HashMap;
use tidegate_wire::record::FlowRecord;

use super::window::{Acc, OTHER_LINES, Windows, clamped_span};

/// Event time a cold key's closed windows wait, to be taught to the baseline together.
/// Teaching a key has a fixed cost (its state and segments are cache misses)
/// whatever the records it teaches: a long batch spreads it over more of them, while
/// the key's windows stay exact (a key's windows are taught in order, and a cold one
/// cannot report). What a long batch costs is memory, which [`PENDING_MAX`] bounds.
pub(crate) const FLUSH_BATCH_NS: u64 = 64 * super::NS;
/// Pending segments held over all keys (64 bytes each) past which queued keys are taught
/// before their batch is due, earliest first, down to half of it.
const PENDING_MAX: usize = 1 << 20;
/// Windows per bucket of a cold key's upper bounds.
const BUCKET_WINDOWS: u64 = 4;
/// Most buckets a cold key's bounds cover, once it bounds by bucket: a key whose pending
/// records spread wider (records far out of order, or very long) turns hot instead.
const BOUND_BUCKETS_MAX: usize = 512;
/// Event time between sweeps of keys that are neither pending nor hot any more: those
/// that hold nothing learned are forgotten, the others let go of their buffers.
const SWEEP_EVERY_NS: u64 = 60 * super::NS;

/// A cold key's record, as much of it as the windows and a replay need.
#[derive(Clone, Debug)]
struct Segment {
    first: u64,
    last: u64,
    packets: u64,
    bytes: u64,
    src: IpAddr,
    /// Its line, as the hot windows number it: a `u16`, not a shared pointer, so
    /// appending a segment touches no reference count.
    line: u16,
    /// Number of the first window of its [`clamped_span`], and how many windows
    /// further its last one is (at most [`super::window`]'s clamp, 4096): computed
    /// when it is appended, so teaching divides nothing.
    window: u64,
    windows: u16,
}

impl Segment {
    /// Numbers of its first and last windows.
    fn window_numbers(&self) -> (u64, u64) {
        (self.window, self.window + u64::from(self.windows))
    }

    /// The most it can put into any one `len_ns` window ([`window_share`]).
    fn window_share(&self, len_ns: u64) -> (f64, f64) {
        let (first, last) = clamped_span(self.first, self.last, len_ns);
        window_share(self.packets, self.bytes, last - first, len_ns)
    }
}

/// What a rule learns per key beside its windows (a baseline), kept in the key's state:
/// teaching a cold key's windows then updates it in the cache lines the teaching just
/// read, instead of a lookup in a map of its own (one scattered cache miss per key
/// taught: 12 % of `volumetric`'s time, `detect_throughput` synthetic).
pub(crate) trait Learned: Default {
    /// Whether it holds anything: a key with nothing pending, no hot window open and
    /// nothing learned is forgotten at the next sweep. Once true it stays true (until
    /// [`Tiered::retain_learned`] resets it): [`Tiered::holding`] counts on that.
    fn holds(&self) -> bool;
}

impl Learned for () {
    fn holds(&self) -> bool {
        false
    }
}

#[derive(Debug, Default)]
struct KeyState<B> {
    /// What the rule learned of the key.
    learned: B,
    /// Pending records, in arrival order.
    segments: Vec<Segment>,
    /// While not `bucketed`: an upper bound of the packets and bytes of any one window
    /// not taught yet, the sum of what each pending record can put into one window. Most
    /// keys stay far below the promotion level with it, and it touches no memory beside
    /// the key's state.
    sum: (f64, f64),
    /// Once `sum` reached the promotion level: the bounds per bucket of
    /// [`BUCKET_WINDOWS`] windows from bucket number `bound_base` on (tighter), until
    /// the key has no pending records left.
    bucketed: bool,
    bound: std::collections::VecDeque<(f64, f64)>,
    bound_base: u64,
    /// Windows starting before this were taught to the baseline already.
    taught_to: u64,
    /// End of the last hot window (0: cold).
    hot_until: u64,
    /// Queued for a flush.
    queued: bool,
}

/// Consecutive cold windows of one key with the same totals, for the baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ColdRun {
    /// Start of the first window.
    pub start: u64,
    /// Number of windows.
    pub windows: u64,
    /// Packets and bytes of each window.
    pub packets: f64,
    pub bytes: f64,
}

impl ColdRun {
    /// The run's windows one by one: (start, packets, bytes).
    #[cfg(test)]
    pub fn each(&self, len_ns: u64) -> impl Iterator<Item = (u64, f64, f64)> + use<> {
        let r = *self;
        (0..r.windows).map(move |i| (r.start + i * len_ns, r.packets, r.bytes))
    }
}

/// What one segment changes at one window of [`teach`]'s walk.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Its own share of a window it covers in part.
    Point(f64, f64),
    /// From this window on, the share of each window it covers whole starts (+1) or
    /// stops (-1).
    Step(f64, f64, i64),
}

/// Working lists of [`teach`], kept between calls.
#[derive(Debug, Default)]
struct Scratch {
    /// (window number, change), in segment order, then sorted by window (stable).
    changes: Vec<(u64, Change)>,
    /// The runs one key was taught, before they go to what it learned.
    runs: Vec<ColdRun>,
}

/// What closing returns ([`Tiered::drain_closed`], for tests).
#[cfg(test)]
pub(crate) struct Closed<K> {
    /// Full windows of hot keys (they may report).
    pub hot: Vec<(u64, K, Acc)>,
    /// Windows of cold keys (they cannot report), per key in window order.
    pub cold: Vec<(K, ColdRun)>,
}

/// Spread windows with cold and hot keys (see the module documentation).
pub(crate) struct Tiered<K: Eq + Hash + Clone, B: Learned = ()> {
    len_ns: u64,
    /// A key turns hot once its pending packets or bytes reach these.
    promote_packets: f64,
    promote_bytes: f64,
    keys: HashMap<K, KeyState<B>>,
    /// Keys whose learned state [`Learned::holds`] something.
    holding: usize,
    hot: Windows<K>,
    /// Cold keys to flush, by the watermark from which to flush them.
    queue: BTreeMap<u64, Vec<K>>,
    watermark: u64,
    next_sweep: u64,
    /// Scratch of [`teach`], kept between calls (no allocation per key taught).
    scratch: Scratch,
    /// Event time cold windows wait ([`FLUSH_BATCH_NS`]), and the most segments pending
    /// over all keys ([`PENDING_MAX`]).
    batch_ns: u64,
    pending_max: usize,
    /// Segments pending over all keys.
    pending: usize,
    /// Over `pending_max`: the watermark at which to teach keys early (`u64::MAX`: not
    /// over).
    early_at: u64,
}

impl<K: Eq + Hash + Clone, B: Learned> Tiered<K, B> {
    /// Windows of `len_ns`; keys turn hot at `promote_packets` or `promote_bytes`
    /// pending (0 and 0: every key is hot, i.e. plain spreading).
    pub fn new(len_ns: u64, promote_packets: f64, promote_bytes: f64) -> Self {
        Tiered {
            len_ns: len_ns.max(1),
            promote_packets,
            promote_bytes,
            keys: HashMap::new(),
            holding: 0,
            hot: Windows::new(len_ns),
            queue: BTreeMap::new(),
            watermark: 0,
            next_sweep: 0,
            scratch: Scratch::default(),
            batch_ns: FLUSH_BATCH_NS,
            pending_max: PENDING_MAX,
            pending: 0,
            early_at: u64::MAX,
        }
    }

    /// The same with another batch and bound of pending segments (for tests).
    #[cfg(test)]
    fn with_limits(mut self, batch_ns: u64, pending_max: usize) -> Self {
        (self.batch_ns, self.pending_max) = (batch_ns, pending_max);
        self
    }

    /// Adds `r` to `key` (see [`Windows::add_spread_gated`] for `gate`).
    pub fn add_spread_gated(
        &mut self,
        r: &FlowRecord,
        key: K,
        evidence_max: usize,
        gate: impl Fn(&Acc) -> bool,
    ) {
        // The record's first and last windows, by number: the only divisions here.
        let (first, last) = clamped_span(r.first, r.last, self.len_ns);
        let windows = (first / self.len_ns, last / self.len_ns);
        let end_of_last = (windows.1 * self.len_ns).saturating_add(self.len_ns);
        let st = self.keys.entry(key.clone()).or_default();
        if st.hot_until != 0 && st.hot_until <= self.watermark {
            // Every hot window of the key has closed: cold again.
            st.taught_to = st.taught_to.max(st.hot_until);
            st.hot_until = 0;
        }
        if st.hot_until != 0 {
            st.hot_until = st.hot_until.max(end_of_last);
            self.hot.add_spread_gated(r, key, evidence_max, gate);
            return;
        }
        let share = window_share(r.packets, r.bytes, last - first, self.len_ns);
        let (bp, bb) = if st.bucketed {
            bound_add(st, share, windows, self.len_ns)
        } else {
            let sum = (st.sum.0 + share.0, st.sum.1 + share.1);
            if sum.0 < self.promote_packets && sum.1 < self.promote_bytes {
                st.sum = sum;
                sum
            } else {
                // The sum reached the level: bound each bucket, from every pending
                // record, then this one, and decide by the largest bucket of all (any
                // of them may be the one at the level, not only this record's).
                st.bucketed = true;
                let mut most = (0.0f64, 0.0f64);
                for i in 0..st.segments.len() {
                    let s = &st.segments[i];
                    let (share, numbers) = (s.window_share(self.len_ns), s.window_numbers());
                    let (p, b) = bound_add(st, share, numbers, self.len_ns);
                    most = (most.0.max(p), most.1.max(b));
                }
                let (p, b) = bound_add(st, share, windows, self.len_ns);
                (most.0.max(p), most.1.max(b))
            }
        };
        let line = self.hot.lines_mut().id(&r.line);
        // A line beyond the numbered ones turns the key hot: its windows then take the
        // record itself as evidence, name and all.
        if line != OTHER_LINES && bp < self.promote_packets && bb < self.promote_bytes {
            st.segments.push(Segment {
                first: r.first,
                last: r.last,
                packets: r.packets,
                bytes: r.bytes,
                src: r.src,
                line,
                window: windows.0,
                windows: u16::try_from(windows.1 - windows.0).unwrap_or(u16::MAX),
            });
            self.pending += 1;
            if self.pending > self.pending_max && self.early_at == u64::MAX {
                // Armed once: while the segments of open windows alone are over the
                // bound, the close that finds them re-arms it for the next window.
                self.early_at = self.watermark;
            }
            if !st.queued {
                st.queued = true;
                let due = window_end(r.first.min(r.last), self.len_ns)
                    .max(st.taught_to)
                    .saturating_add(self.batch_ns);
                self.queue.entry(due).or_default().push(key);
            }
            return;
        }
        // Promotion: the pending records first (counting only), then this one.
        let from = st.taught_to;
        let pending = std::mem::take(&mut st.segments);
        self.pending -= pending.len();
        st.bound.clear();
        (st.sum, st.bucketed) = ((0.0, 0.0), false);
        st.hot_until = pending
            .iter()
            .map(|s| window_end(s.last.max(s.first), self.len_ns))
            .fold(end_of_last, u64::max);
        let mut replay = r.clone();
        for s in pending {
            replay.first = s.first;
            replay.last = s.last;
            replay.packets = s.packets;
            replay.bytes = s.bytes;
            replay.src = s.src;
            if s.line != line {
                replay.line = self.hot.line_name(s.line);
            } else {
                replay.line = r.line.clone();
            }
            self.hot
                .add_spread_gated_line(&replay, s.line, key.clone(), from, evidence_max, &gate);
        }
        self.hot
            .add_spread_gated_line(r, line, key, from, evidence_max, &gate);
    }

    /// The watermark at which [`Self::drain_closed`] next has work: a hot window closing,
    /// a batch of cold keys due, too many segments pending, or the sweep of forgotten
    /// keys.
    pub fn due(&self) -> u64 {
        let queued = self.queue.first_key_value().map_or(u64::MAX, |(t, _)| *t);
        self.hot
            .due()
            .min(queued)
            .min(self.next_sweep)
            .min(self.early_at)
    }

    /// Event time has reached `watermark` (see [`super::Rule::reached`]): a key whose
    /// hot windows all end by it turns cold again at its next record, exactly as if
    /// [`Self::drain_closed`] had run.
    pub fn reached(&mut self, watermark: u64) {
        self.watermark = self.watermark.max(watermark);
    }

    /// Segments pending over all keys (records of cold windows not taught yet).
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The line of a hot window's `acc` (for a report).
    pub fn line(&self, acc: &Acc) -> String {
        self.hot.line(acc)
    }

    /// [`Self::drain_closed_with`], the cold keys' runs listed per key in window order.
    #[cfg(test)]
    pub fn drain_closed(&mut self, watermark: u64) -> Closed<K> {
        let mut cold = Vec::new();
        let hot = self.drain_closed_with(watermark, |k, _, run| cold.push((k.clone(), run)));
        Closed { hot, cold }
    }

    /// Closes every window that ends at or before `watermark`: returns hot keys'
    /// windows (they may report) at once; cold keys' windows, which cannot report, are
    /// taught in batches (all of them when `watermark` is `u64::MAX`, sooner while more
    /// than `pending_max` segments are pending) to `learn(key, what it learned, run)`,
    /// per key in window order, as runs of equal windows, before this returns.
    pub fn drain_closed_with(
        &mut self,
        watermark: u64,
        mut learn: impl FnMut(&K, &mut B, ColdRun),
    ) -> Vec<(u64, K, Acc)> {
        self.watermark = self.watermark.max(watermark);
        let hot = self.hot.drain_closed(watermark);
        let due: Vec<K> = if watermark == u64::MAX {
            self.queue.clear();
            self.keys
                .iter()
                .filter(|(_, st)| !st.segments.is_empty())
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            let mut due = Vec::new();
            while let Some(entry) = self.queue.first_entry() {
                if *entry.key() > watermark {
                    break;
                }
                due.extend(entry.remove());
            }
            due
        };
        // Every due key's state and first pending segment, loaded in one pass of loads
        // that do not depend on each other (the processor overlaps their cache misses)
        // before the pass that uses them waits on each in turn.
        let mut touched = 0u64;
        for key in &due {
            if let Some(st) = self.keys.get(key) {
                touched ^= st.segments.first().map_or(0, |s| s.window);
            }
        }
        std::hint::black_box(touched);
        let upto = if watermark == u64::MAX {
            u64::MAX
        } else {
            watermark - watermark % self.len_ns
        };
        self.teach_keys(due, upto, &mut learn);
        if self.early_at != u64::MAX {
            // Too many segments pending: keys queued for later batches are taught now,
            // earliest first, until half the bound is left (each once: those left with
            // segments are queued again, behind the ones waiting).
            let mut waiting = std::mem::take(&mut self.queue);
            while self.pending > self.pending_max / 2 {
                let Some((_, keys)) = waiting.pop_first() else {
                    break;
                };
                self.teach_keys(keys, upto, &mut learn);
            }
            for (due, keys) in waiting {
                self.queue.entry(due).or_default().extend(keys);
            }
            // Still over (segments of windows not closed yet): again at the next window.
            self.early_at = if self.pending > self.pending_max {
                upto.saturating_add(self.len_ns)
            } else {
                u64::MAX
            };
        }
        if watermark >= self.next_sweep {
            let mark = self.watermark;
            self.keys.retain(|_, st| {
                if st.pending_or_hot(mark) {
                    return true;
                }
                // Kept for what it learned (as its `taught_to`: a record reaching back
                // into windows already taught is not counted again): without the room
                // its pending records and bounds grew to, which a burst of records at
                // one target could make thousands of segments.
                st.segments = Vec::new();
                st.bound = std::collections::VecDeque::new();
                st.learned.holds()
            });
            self.next_sweep = watermark.saturating_add(SWEEP_EVERY_NS);
        }
        hot
    }

    /// Teaches each of `keys` its windows before `upto` (see [`teach`]) to `learn`, and
    /// queues those with segments left for their next batch.
    fn teach_keys(&mut self, keys: Vec<K>, upto: u64, learn: &mut impl FnMut(&K, &mut B, ColdRun)) {
        for key in keys {
            let Some(st) = self.keys.get_mut(&key) else {
                continue;
            };
            st.queued = false;
            if st.hot_until != 0 {
                continue; // promoted meanwhile: its windows close as hot ones
            }
            let held = st.segments.len();
            let mut runs = std::mem::take(&mut self.scratch.runs);
            runs.clear();
            teach(st, self.len_ns, upto, &mut self.scratch, |run| {
                runs.push(run)
            });
            let had = st.learned.holds();
            for run in runs.drain(..) {
                learn(&key, &mut st.learned, run);
            }
            self.holding += usize::from(!had && st.learned.holds());
            self.scratch.runs = runs;
            self.pending -= held - st.segments.len();
            if !st.segments.is_empty() {
                st.queued = true;
                let due = st.taught_to.saturating_add(self.batch_ns);
                self.queue.entry(due).or_default().push(key);
            }
        }
    }

    /// `f` of what `key` learned, for a hot window of it that closed (a key whose state
    /// was forgotten meanwhile starts again).
    pub fn learn<R>(&mut self, key: &K, f: impl FnOnce(&mut B) -> R) -> R {
        let st = self.keys.entry(key.clone()).or_default();
        let had = st.learned.holds();
        let r = f(&mut st.learned);
        self.holding += usize::from(!had && st.learned.holds());
        r
    }

    /// Keys whose learned state holds something.
    pub fn holding(&self) -> usize {
        self.holding
    }

    /// What the keys learned, of those that hold something.
    pub fn learned_all(&self) -> impl Iterator<Item = &B> {
        self.keys
            .values()
            .map(|st| &st.learned)
            .filter(|b| b.holds())
    }

    /// Forgets what `keep` rejects of what keys learned: a key with nothing pending and
    /// no hot window goes, the others start learning again.
    pub fn retain_learned(&mut self, mut keep: impl FnMut(&B) -> bool) {
        let mark = self.watermark;
        let mut holding = 0;
        self.keys.retain(|_, st| {
            let kept = !st.learned.holds() || keep(&st.learned);
            if !kept {
                st.learned = B::default();
            }
            holding += usize::from(st.learned.holds());
            kept || st.pending_or_hot(mark)
        });
        // Counted in the same pass (a key reset or removed holds nothing).
        self.holding = holding;
    }

    /// What the keys learned (for tests).
    #[cfg(test)]
    fn learned(&self, key: &K) -> Option<&B> {
        self.keys.get(key).map(|st| &st.learned)
    }
}

impl<B> KeyState<B> {
    /// Whether the key has records pending, is queued to be taught, or has a hot window
    /// still open at `watermark`.
    fn pending_or_hot(&self, watermark: u64) -> bool {
        !self.segments.is_empty()
            || self.queued
            || (self.hot_until != 0 && self.hot_until > watermark)
    }
}

/// End of the `len_ns` window holding `ts`.
fn window_end(ts: u64, len_ns: u64) -> u64 {
    (ts - ts % len_ns).saturating_add(len_ns)
}

/// The most packets and bytes a record of `packets` and `bytes` over a [`clamped_span`]
/// of `span` ns can put into any one `len_ns` window.
fn window_share(packets: u64, bytes: u64, span: u64, len_ns: u64) -> (f64, f64) {
    let share = if span <= len_ns {
        1.0
    } else {
        len_ns as f64 / span as f64
    };
    (packets as f64 * share, bytes as f64 * share)
}

/// Adds a record's [`window_share`] `(p, b)` to the upper bounds of `st`'s buckets
/// over its windows (by number); returns the largest bound of a bucket it touched
/// (infinite when the bounds would cover more than [`BOUND_BUCKETS_MAX`] buckets).
fn bound_add<B>(
    st: &mut KeyState<B>,
    (p, b): (f64, f64),
    windows: (u64, u64),
    len_ns: u64,
) -> (f64, f64) {
    let (lo, hi) = (windows.0 / BUCKET_WINDOWS, windows.1 / BUCKET_WINDOWS);
    // Windows before `taught_to` were taught already: a late record's share there is
    // not counted (see the module documentation); only the rest is bounded. (Not the
    // buckets before the first record's: a record that comes later but lies earlier,
    // from a lagging probe, still counts in windows not taught yet.)
    let lo = lo.max(st.taught_to / len_ns / BUCKET_WINDOWS);
    if hi < lo {
        return (0.0, 0.0);
    }
    if st.bound.is_empty() {
        st.bound_base = lo;
    }
    // Buckets added before the base and after the end.
    let front = st.bound_base.saturating_sub(lo);
    let start = st.bound_base - front;
    let len = (st.bound.len() as u64 + front).max(hi - start + 1);
    if len > BOUND_BUCKETS_MAX as u64 {
        return (f64::INFINITY, f64::INFINITY);
    }
    for _ in 0..front {
        st.bound.push_front((0.0, 0.0));
    }
    st.bound_base = start;
    st.bound.resize(len as usize, (0.0, 0.0));
    let (mut mp, mut mb) = (0.0f64, 0.0f64);
    for i in (lo - st.bound_base)..=(hi - st.bound_base) {
        let e = &mut st.bound[i as usize];
        e.0 += p;
        e.1 += b;
        mp = mp.max(e.0);
        mb = mb.max(e.1);
    }
    (mp, mb)
}

/// Computes the totals of `st`'s windows in [`taught_to`, `upto`) from its pending
/// segments, in window order as runs of windows with equal totals, and drops the
/// segments that end before `upto`. `scratch` is reused between calls.
///
/// A segment puts the same share (window length / span) into every window it covers
/// whole, and its own share into the (at most two) windows it covers in part: it
/// changes the totals at no more than four windows (where its partial shares fall,
/// where its whole-window share starts and stops). The changes, sorted by window, are
/// walked once: between two of them every window has the same totals, one run. The
/// cost follows the key's segments, not the windows they span.
fn teach<B>(
    st: &mut KeyState<B>,
    len_ns: u64,
    upto: u64,
    scratch: &mut Scratch,
    mut out: impl FnMut(ColdRun),
) {
    let from = st.taught_to;
    if upto <= from {
        return;
    }
    // Windows by number (start / len_ns), as each segment carries them.
    let (from_ix, last_ix) = (from / len_ns, (upto - 1) / len_ns);
    let changes = &mut scratch.changes;
    changes.clear();
    for s in &st.segments {
        let (ia, ib) = s.window_numbers();
        let (first, last) = clamped_span(s.first, s.last, len_ns);
        let (a, b) = (ia.max(from_ix), ib.min(last_ix));
        if a > b {
            continue;
        }
        let span = last - first;
        let (p, by) = (s.packets as f64, s.bytes as f64);
        // The share of window number `ix`, as `spread` computes it.
        let share = |ix: u64| {
            if span == 0 {
                1.0
            } else {
                let w = ix * len_ns;
                (w.saturating_add(len_ns).min(last) - first.max(w)) as f64 / span as f64
            }
        };
        let mut point = |ix: u64| {
            let f = share(ix);
            if f > 0.0 || span == 0 {
                changes.push((ix, Change::Point(p * f, by * f)));
            }
        };
        point(a);
        if b > a {
            point(b);
        }
        if b > a + 1 {
            // The windows strictly between are covered whole: the same share each.
            let f = len_ns as f64 / span as f64;
            changes.push((a + 1, Change::Step(p * f, by * f, 1)));
            changes.push((b, Change::Step(-(p * f), -(by * f), -1)));
        }
    }
    // Stable: at one window, the changes add up in segment order.
    changes.sort_by_key(|(ix, _)| *ix);
    let (mut cp, mut cb, mut cover) = (0.0f64, 0.0f64, 0i64);
    let mut run: Option<ColdRun> = None;
    // Extends the run by `windows` windows of these totals, or starts another.
    fn emit(
        run: &mut Option<ColdRun>,
        out: &mut impl FnMut(ColdRun),
        (start, windows): (u64, u64),
        (packets, bytes): (f64, f64),
    ) {
        match run {
            Some(r) if r.packets == packets && r.bytes == bytes => r.windows += windows,
            _ => {
                if let Some(r) = run.replace(ColdRun {
                    start,
                    windows,
                    packets,
                    bytes,
                }) {
                    out(r);
                }
            }
        }
    }
    let mut k = 0;
    while k < changes.len() {
        let ix = changes[k].0;
        let (mut dp, mut db, mut dc) = (0.0f64, 0.0f64, 0i64);
        let (mut pp, mut pb, mut touched) = (0.0f64, 0.0f64, false);
        while let Some(&(j, change)) = changes.get(k)
            && j == ix
        {
            match change {
                Change::Point(p, b) => (pp, pb, touched) = (pp + p, pb + b, true),
                Change::Step(p, b, c) => (dp, db, dc) = (dp + p, db + b, dc + c),
            }
            k += 1;
        }
        cover += dc;
        if cover == 0 {
            // No segment covers whole windows from here: no rounding carried over.
            (cp, cb) = (0.0, 0.0);
        } else {
            (cp, cb) = (cp + dp, cb + db);
        }
        if cover == 0 && !touched {
            if let Some(r) = run.take() {
                out(r);
            }
        } else {
            emit(&mut run, &mut out, (ix * len_ns, 1), (cp + pp, cb + pb));
        }
        // The windows up to the next change: whole shares only, unchanged.
        let next = changes.get(k).map_or(ix + 1, |(j, _)| *j);
        if next > ix + 1 {
            if cover == 0 {
                if let Some(r) = run.take() {
                    out(r);
                }
            } else {
                let gap = ((ix + 1) * len_ns, next - ix - 1);
                emit(&mut run, &mut out, gap, (cp, cb));
            }
        }
    }
    if let Some(r) = run {
        out(r);
    }
    st.taught_to = upto;
    // A segment stays while its last window is not taught.
    st.segments
        .retain(|s| s.window_numbers().1 * len_ns >= upto);
    // Buckets that end by `upto` hold only taught windows.
    let bucket_ns = len_ns.saturating_mul(BUCKET_WINDOWS);
    while !st.bound.is_empty() && (st.bound_base + 1).saturating_mul(bucket_ns) <= upto {
        st.bound.pop_front();
        st.bound_base += 1;
    }
    if st.segments.is_empty() {
        st.bound.clear();
        (st.sum, st.bucketed) = ((0.0, 0.0), false);
    } else if !st.bucketed {
        st.sum = (st.segments.iter()).fold((0.0, 0.0), |(sp, sb), s| {
            let (p, b) = s.window_share(len_ns);
            (sp + p, sb + b)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::Lines;
    use super::super::window::tests::{rec, xorshift};
    use super::*;
    use std::collections::BTreeMap;

    const LEN: u64 = 10;
    const LATENESS: u64 = 200;

    /// Records for 6 keys, ordered by `last` give or take a jitter, spans well within
    /// the lateness; key 0 floods in bursts.
    fn workload() -> Vec<(u8, FlowRecord)> {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        (0..6_000u64)
            .map(|i| {
                let (a, b, c) = (next(), next(), next());
                let key = (a % 6) as u8;
                let burst = key == 0 && (i / 500) % 3 == 1;
                let last = 1_000 + i * 2 + b % 20;
                let first = last - if burst { c % 25 } else { c % 120 };
                let packets = if burst { 50 + a % 300 } else { 1 + a % 5 };
                let mut r = rec(first, last, packets);
                r.src = IpAddr::from([198, 51, 100, (b % 9) as u8]);
                r.dst = IpAddr::from([192, 0, 2, key]);
                r.line = format!("line-{}", c % 2).into();
                (key, r)
            })
            .collect()
    }

    type Summary = (
        u64,
        f64,
        f64,
        u64,
        u64,
        u64,
        usize,
        bool,
        Option<IpAddr>,
        Vec<FlowRecord>,
    );

    fn summary(w: u64, a: &Acc) -> Summary {
        let s = a.sources();
        (
            w,
            a.packets,
            a.bytes,
            a.flows,
            a.first_ns,
            a.last_ns,
            s.n,
            s.exact,
            a.single_source(),
            a.evidence().to_vec(),
        )
    }

    #[test]
    fn cold_and_hot_keys_give_the_windows_plain_spreading_gives() {
        spreads_like_plain(|gate_packets| Tiered::new(LEN, gate_packets, f64::INFINITY));
    }

    #[test]
    fn cold_keys_taught_early_past_the_pending_bound_still_give_the_same_windows() {
        // Batches of 3 windows, and at most 12 segments pending: keys are taught at
        // every close, many of them before their batch is due.
        spreads_like_plain(|gate_packets| {
            Tiered::new(LEN, gate_packets, f64::INFINITY).with_limits(3 * LEN, 12)
        });
        // The bound holds: after a close, more are pending only while they wait for
        // windows that are still open, and the next window's close tries again.
        let mut t: Tiered<u8> = Tiered::new(LEN, 1e12, f64::INFINITY).with_limits(1 << 40, 12);
        let (mut newest, mut most, mut closes) = (0, 0, 0);
        for (i, (key, r)) in workload().into_iter().enumerate() {
            t.add_spread_gated(&r, key, 3, |_| false);
            newest = newest.max(r.last);
            let mark = newest.saturating_sub(LATENESS);
            if mark >= t.due() {
                closes += 1;
                t.drain_closed(mark);
                let held: usize = t.keys.values().map(|st| st.segments.len()).sum();
                assert_eq!(held, t.pending, "record {i}");
                let open = t
                    .keys
                    .values()
                    .flat_map(|st| &st.segments)
                    .filter(|s| s.window_numbers().1 * LEN >= mark - mark % LEN)
                    .count();
                assert!(held <= 12 || held == open, "record {i}: {held} pending");
                most = most.max(held);
            } else {
                t.reached(mark);
            }
        }
        // Without the bound, the batch of 2^40 would have held every record.
        assert!(most < 200, "{most} pending at most");
        // Over the bound with segments of open windows only, keys are taught once per
        // window, not at every record.
        let windows = newest / LEN;
        assert!(
            closes <= windows + 2,
            "{closes} closes over {windows} windows"
        );
    }

    /// Feeds [`workload`] to plain spreading and to `tiered(gate)`, closing both now and
    /// then, and checks every window of every key and every hot window's summary.
    fn spreads_like_plain(tiered: impl Fn(f64) -> Tiered<u8>) {
        let gate_packets = 150.0;
        let gate = |a: &Acc| a.packets >= gate_packets;
        let mut plain: Windows<u8> = Windows::new(LEN);
        let mut tiered = tiered(gate_packets);
        // Per key, in window order: (window, packets, bytes) of every window.
        let mut want: BTreeMap<u8, Vec<(u64, f64, f64)>> = BTreeMap::new();
        let mut got: BTreeMap<u8, Vec<(u64, f64, f64)>> = BTreeMap::new();
        let mut want_hot: BTreeMap<(u8, u64), Summary> = BTreeMap::new();
        let mut got_hot: BTreeMap<(u8, u64), Summary> = BTreeMap::new();
        let mut newest = 0;
        let mut close = |mark: u64,
                         plain: &mut Windows<u8>,
                         tiered: &mut Tiered<u8>,
                         want: &mut BTreeMap<u8, Vec<(u64, f64, f64)>>,
                         got: &mut BTreeMap<u8, Vec<(u64, f64, f64)>>| {
            let mut p = plain.drain_closed(mark);
            p.sort_by_key(|(w, k, _)| (*k, *w));
            for (w, k, a) in p {
                want.entry(k).or_default().push((w, a.packets, a.bytes));
                if a.packets >= gate_packets {
                    want_hot.insert((k, w), summary(w, &a));
                }
            }
            let t = tiered.drain_closed(mark);
            for (k, run) in t.cold {
                assert!(run.windows >= 1);
                for (w, packets, bytes) in run.each(LEN) {
                    assert!(packets < gate_packets, "a cold window crossed the gate");
                    got.entry(k).or_default().push((w, packets, bytes));
                }
            }
            let mut hot = t.hot;
            hot.sort_by_key(|(w, k, _)| (*k, *w));
            for (w, k, a) in hot {
                got.entry(k).or_default().push((w, a.packets, a.bytes));
                if a.packets >= gate_packets {
                    got_hot.insert((k, w), summary(w, &a));
                }
            }
        };
        for (i, (key, r)) in workload().into_iter().enumerate() {
            plain.add_spread_gated(&r, key, 3, gate);
            tiered.add_spread_gated(&r, key, 3, gate);
            newest = newest.max(r.last);
            if i % 7 == 0 {
                let mark = newest.saturating_sub(LATENESS);
                close(mark, &mut plain, &mut tiered, &mut want, &mut got);
            }
        }
        close(u64::MAX, &mut plain, &mut tiered, &mut want, &mut got);
        assert!(want_hot.len() >= 20, "{} hot windows", want_hot.len());
        assert_eq!(
            got_hot.keys().collect::<Vec<_>>(),
            want_hot.keys().collect::<Vec<_>>()
        );
        for (k, w) in &want_hot {
            let g = &got_hot[k];
            assert_eq!(
                (g.0, g.3, g.4, g.5, g.6, g.7, g.8),
                (w.0, w.3, w.4, w.5, w.6, w.7, w.8),
                "{k:?}"
            );
            assert_eq!(g.9, w.9, "{k:?} evidence");
            assert!(
                (g.1 - w.1).abs() < 1e-6 && (g.2 - w.2).abs() < 1e-4,
                "{k:?}"
            );
        }
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (k, w) in &want {
            let g = &got[k];
            assert_eq!(g.len(), w.len(), "key {k}: windows");
            for (a, b) in g.iter().zip(w) {
                assert_eq!(a.0, b.0, "key {k}: windows out of order");
                assert!(
                    (a.1 - b.1).abs() < 1e-6 && (a.2 - b.2).abs() < 1e-4,
                    "key {k}: {a:?} {b:?}"
                );
            }
        }
        assert!(tiered.queue.is_empty());
        assert_eq!(tiered.pending, 0);
    }

    /// Windows at or over the gate, (start, packets) by start.
    type OverGate = Vec<(u64, f64)>;

    /// Feeds `records` (one key) to plain spreading and to `Tiered` promoting at the
    /// gate (150 packets), then closes every window: each one's windows at or over the
    /// gate, (start, packets) by start, and `Tiered`'s cold runs.
    fn over_the_gate(records: &[FlowRecord]) -> (OverGate, OverGate, Vec<ColdRun>) {
        let gate_packets = 150.0;
        let gate = |a: &Acc| a.packets >= gate_packets;
        let mut plain: Windows<u8> = Windows::new(LEN);
        let mut tiered: Tiered<u8> = Tiered::new(LEN, gate_packets, f64::INFINITY);
        for r in records {
            plain.add_spread_gated(r, 7, 3, gate);
            tiered.add_spread_gated(r, 7, 3, gate);
        }
        let over = |v: Vec<(u64, u8, Acc)>| -> OverGate {
            let mut v: OverGate = v
                .into_iter()
                .filter(|(_, _, a)| gate(a))
                .map(|(w, _, a)| (w, a.packets))
                .collect();
            v.sort_by_key(|(w, _)| *w);
            v
        };
        let closed = tiered.drain_closed(u64::MAX);
        let cold = closed.cold.into_iter().map(|(_, run)| run).collect();
        (over(plain.drain_closed(u64::MAX)), over(closed.hot), cold)
    }

    #[test]
    fn small_records_that_together_reach_the_level_turn_their_key_hot() {
        // Each record alone is far below the level; four in one window reach it. Some
        // of them span several windows (a share of their packets each), the key's other
        // windows stay cold.
        let (want, got, cold) = over_the_gate(&[
            rec(100, 100, 50),
            rec(95, 135, 50),
            rec(101, 103, 50),
            rec(60, 104, 50),
            rec(105, 109, 50),
            rec(300, 300, 5),
        ]);
        assert_eq!(want.len(), 1, "{want:?}");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, want[0].0);
        assert!((got[0].1 - want[0].1).abs() < 1e-6, "{got:?} {want:?}");
        assert!(cold.iter().all(|run| run.packets < 150.0), "{cold:?}");
    }

    #[test]
    fn a_flood_reported_late_behind_a_later_small_record_turns_its_key_hot() {
        // A lagging probe reports a flood on a target after another probe reported a
        // small flow to it from later on: the flood's windows lie before the first
        // record's, and were never taught.
        let mut records = vec![rec(1_000, 1_000, 1)];
        records.extend((0..5).map(|i| rec(880 + i, 885 + i, 100)));
        let (want, got, _) = over_the_gate(&records);
        assert_eq!(want, vec![(880, 500.0)]);
        assert_eq!(got, want);
    }

    #[test]
    fn records_of_more_lines_than_are_numbered_are_still_counted_once() {
        let mut plain: Windows<u8> = Windows::new(LEN);
        let mut tiered: Tiered<u8> = Tiered::new(LEN, 1e12, f64::INFINITY);
        const NUMBERED: usize = 16;
        *tiered.hot.lines_mut() = Lines::with_max(NUMBERED);
        let (_, base) = workload().remove(0);
        let lines = NUMBERED as u64 + 40;
        for i in 0..lines * 2 {
            let mut r = base.clone();
            (r.first, r.last, r.packets) = (1_000 + i * 3, 1_000 + i * 3 + 25, 1 + i % 7);
            r.line = format!("line-{}", i % lines).into();
            plain.add_spread_gated(&r, (i % 3) as u8, 1, |_| false);
            tiered.add_spread_gated(&r, (i % 3) as u8, 1, |_| false);
        }
        let total = |w: Vec<(u64, u8, f64)>| {
            let mut by: BTreeMap<(u8, u64), f64> = BTreeMap::new();
            for (w, k, p) in w {
                *by.entry((k, w)).or_default() += p;
            }
            by
        };
        let want = total(
            plain
                .drain_closed(u64::MAX)
                .into_iter()
                .map(|(w, k, a)| (w, k, a.packets))
                .collect(),
        );
        let c = tiered.drain_closed(u64::MAX);
        let got = total(
            c.cold
                .into_iter()
                .flat_map(|(k, run)| run.each(LEN).map(move |(w, p, _)| (w, k, p)))
                .chain(c.hot.into_iter().map(|(w, k, a)| (w, k, a.packets)))
                .collect(),
        );
        assert_eq!(tiered.hot.lines_mut().len(), NUMBERED);
        assert_eq!(got.len(), want.len());
        for ((k, w), p) in &want {
            assert!((got[&(*k, *w)] - p).abs() < 1e-6, "key {k} window {w}");
        }
    }

    #[test]
    fn quiet_keys_are_forgotten_and_cold_windows_wait_for_their_batch() {
        let mut t: Tiered<u8> = Tiered::new(LEN, 1_000.0, f64::INFINITY);
        let (_, mut r) = workload().remove(1);
        (r.first, r.last, r.packets) = (5, 5, 3);
        t.add_spread_gated(&r, 1, 1, |_| true);
        // Its window closed at 10, but is taught with the batch.
        let c = t.drain_closed(10);
        assert!(c.cold.is_empty() && c.hot.is_empty());
        let c = t.drain_closed(10 + FLUSH_BATCH_NS);
        assert_eq!(
            c.cold,
            vec![(
                1,
                ColdRun {
                    start: 0,
                    windows: 1,
                    packets: 3.0,
                    bytes: r.bytes as f64
                }
            )]
        );
        t.drain_closed(SWEEP_EVERY_NS * 2);
        assert!(t.keys.is_empty());
    }

    /// Windows a key was taught (what a baseline would learn from).
    #[derive(Debug, Default, PartialEq)]
    struct Taught(u64);

    impl Learned for Taught {
        fn holds(&self) -> bool {
            self.0 > 0
        }
    }

    #[test]
    fn what_a_key_learned_stays_with_it_until_the_rule_forgets_it() {
        let mut t: Tiered<u8, Taught> = Tiered::new(LEN, 1_000.0, f64::INFINITY);
        let (_, mut r) = workload().remove(1);
        (r.first, r.last, r.packets) = (5, 25, 3);
        t.add_spread_gated(&r, 1, 1, |_| true);
        (r.first, r.last) = (5, 5);
        t.add_spread_gated(&r, 2, 1, |_| true);
        assert!(t.keys[&1].segments.capacity() > 0);
        let mut runs = Vec::new();
        let hot = t.drain_closed_with(30 + FLUSH_BATCH_NS, |k, b, run| {
            b.0 += run.windows;
            runs.push((*k, run.windows));
        });
        assert!(hot.is_empty());
        // Key 1's record covers three windows in part or whole, key 2's one.
        let windows = |k: u8| runs.iter().filter(|(j, _)| *j == k).map(|(_, n)| n).sum();
        assert_eq!((windows(1), windows(2)), (3, 1));
        assert_eq!(
            (t.learned(&1), t.learned(&2)),
            (Some(&Taught(3)), Some(&Taught(1)))
        );
        assert_eq!(t.holding(), 2);
        // Nothing pending any more: the sweeps (the first ran with that close) keep them
        // for what they learned, without the room their pending records took.
        assert_eq!(t.keys[&1].segments.capacity(), 0);
        t.drain_closed_with(SWEEP_EVERY_NS * 4, |_, _, _| unreachable!());
        assert_eq!(t.keys.len(), 2);
        // What a hot window's close calls (`learn`) learns into the same state.
        assert_eq!(
            t.learn(&1, |b| {
                b.0 += 1;
                b.0
            }),
            4
        );
        assert_eq!(t.holding(), 2);
        // Forgotten: a key without anything else held goes; one with records pending
        // stays and starts learning again.
        (r.first, r.last) = (SWEEP_EVERY_NS * 5, SWEEP_EVERY_NS * 5);
        t.add_spread_gated(&r, 2, 1, |_| true);
        t.retain_learned(|b| b.0 > 3);
        assert_eq!(t.learned(&1), Some(&Taught(4)));
        assert_eq!(t.learned(&2), Some(&Taught(0)));
        assert_eq!(t.holding(), 1);
        t.retain_learned(|_| false);
        assert_eq!(t.learned(&1), None);
        assert_eq!((t.keys.len(), t.holding()), (1, 0));
        // A key learning again after being forgotten counts again.
        t.learn(&1, |b| b.0 = 1);
        assert_eq!(t.holding(), 1);
    }

    #[test]
    fn a_hot_key_turns_cold_once_event_time_passes_its_windows_closed_or_not() {
        let (_, base) = workload().remove(1);
        let record = |first: u64, last: u64, packets: u64| {
            let mut r = base.clone();
            (r.first, r.last, r.packets, r.bytes) = (first, last, packets, packets * 100);
            r
        };
        for closed_by_drain in [true, false] {
            let mut t: Tiered<u8> = Tiered::new(LEN, 100.0, f64::INFINITY);
            // Hot: its windows [0, 10) and [10, 20); the record ends on a boundary, so
            // the key counts as hot until 30.
            t.add_spread_gated(&record(5, 20, 500), 1, 1, |_| true);
            assert!(t.keys[&1].hot_until >= 20);
            let hot = t.drain_closed(20).hot;
            assert_eq!(hot.len(), 2);
            // Nothing is due until a later window: the detector skips the close and
            // only tells the rule how far event time got.
            if closed_by_drain {
                t.drain_closed(40);
            } else {
                assert!(t.due() > 40, "due at {}", t.due());
                t.reached(40);
            }
            // A small record now is pending on a cold key, not counted in a hot window.
            t.add_spread_gated(&record(45, 46, 1), 1, 1, |_| true);
            let st = &t.keys[&1];
            assert_eq!(
                (st.hot_until, st.segments.len()),
                (0, 1),
                "{closed_by_drain}"
            );
        }
    }
}
