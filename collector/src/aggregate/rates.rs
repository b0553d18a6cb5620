//! Per-second rate buckets in event time.
//!
//! A record's bytes and packets are spread over the seconds its `[first, last]` span
//! covers, in proportion to the overlap, with integer arithmetic that sums exactly to the
//! record's counters (the share of second `s` is `⌊T·c(s+1)/d⌋ − ⌊T·c(s)/d⌋`, `c(x)` being
//! the part of the span before `x`). Flows are counted in the second their merged flow
//! started. A ring keeps the last `window` seconds up to the shard's event clock; older
//! seconds are dropped, so the numbers only depend on the records, never on wall time.

use serde::Serialize;

const NS: u64 = 1_000_000_000;

/// Counters of one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RateCell {
    /// IP-layer bytes in that second.
    pub bytes: u64,
    /// Packets in that second.
    pub packets: u64,
    /// Merged flows that started in that second.
    pub flows: u64,
}

impl RateCell {
    /// Adds another cell.
    pub fn add(&mut self, o: &RateCell) {
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.packets = self.packets.saturating_add(o.packets);
        self.flows = self.flows.saturating_add(o.flows);
    }
}

/// The last `window` seconds of one line and direction.
pub(crate) struct RateRing {
    /// Second each cell holds (`u64::MAX`: none).
    secs: Box<[u64]>,
    cells: Box<[RateCell]>,
}

impl RateRing {
    pub fn new(window: u64) -> RateRing {
        let n = window.max(1) as usize;
        RateRing {
            secs: vec![u64::MAX; n].into_boxed_slice(),
            cells: vec![RateCell::default(); n].into_boxed_slice(),
        }
    }

    fn window(&self) -> u64 {
        self.secs.len() as u64
    }

    /// The cell of second `sec`, or `None` when `sec` is outside the window ending at
    /// `clock_sec` (the newest second the shard has seen).
    fn cell(&mut self, sec: u64, clock_sec: u64) -> Option<&mut RateCell> {
        let i = (sec % self.window()) as usize;
        self.cell_at(i, sec, clock_sec)
    }

    /// [`cell`](Self::cell) with the slot `i == sec % window` already known.
    fn cell_at(&mut self, i: usize, sec: u64, clock_sec: u64) -> Option<&mut RateCell> {
        if sec > clock_sec || sec.saturating_add(self.window()) <= clock_sec {
            return None;
        }
        if self.secs[i] != sec {
            if self.secs[i] != u64::MAX && self.secs[i] > sec {
                return None;
            }
            self.secs[i] = sec;
            self.cells[i] = RateCell::default();
        }
        Some(&mut self.cells[i])
    }

    /// Spreads a record's bytes and packets over the seconds of `[first, last]`.
    pub fn add_span(&mut self, first: u64, last: u64, bytes: u64, packets: u64, clock_sec: u64) {
        let (a, b) = (first.min(last), first.max(last));
        let (s0, s1) = (a / NS, b / NS);
        if s0 == s1 {
            if let Some(c) = self.cell(s0, clock_sec) {
                c.bytes = c.bytes.saturating_add(bytes);
                c.packets = c.packets.saturating_add(packets);
            }
            return;
        }
        // Only seconds still inside the window matter.
        let lo = s0.max(clock_sec.saturating_sub(self.window() - 1));
        let hi = s1.min(clock_sec);
        if lo > hi {
            return;
        }
        let d = b - a;
        // Cumulative shares at second boundaries: the first one directly, then stepped
        // one second at a time with additions only.
        let (prev_b, prev_p) = if lo == s0 {
            (0, 0)
        } else {
            let x = lo * NS - a;
            (share(bytes, x, d), share(packets, x, d))
        };
        let x0 = ((lo + 1) * NS - a).min(d);
        let prev = (prev_b, prev_p);
        let fits = |t: u64| t.checked_mul(NS.max(d)).is_some();
        if fits(bytes) && fits(packets) && d < 1 << 62 {
            let steps = (Step64::new(bytes, x0, d), Step64::new(packets, x0, d));
            self.spread((lo, hi, s1), (bytes, packets), prev, steps, clock_sec);
        } else {
            let steps = (Step128::new(bytes, x0, d), Step128::new(packets, x0, d));
            self.spread((lo, hi, s1), (bytes, packets), prev, steps, clock_sec);
        }
    }

    /// Adds the shares of seconds `lo..=hi` (`s1`: the record's last second), given the
    /// cumulative shares before `lo` and steppers at the boundary after `lo`.
    fn spread<S: Step>(
        &mut self,
        (lo, hi, s1): (u64, u64, u64),
        (bytes, packets): (u64, u64),
        (mut prev_b, mut prev_p): (u64, u64),
        (mut sb, mut sp): (S, S),
        clock_sec: u64,
    ) {
        let mut slot = (lo % self.window()) as usize;
        for s in lo..=hi {
            let (nb, np) = if s == s1 {
                // The last second ends at `last`: the rest of the record.
                (bytes, packets)
            } else {
                (sb.value(), sp.value())
            };
            if let Some(c) = self.cell_at(slot, s, clock_sec) {
                c.bytes = c.bytes.saturating_add(nb - prev_b);
                c.packets = c.packets.saturating_add(np - prev_p);
            }
            (prev_b, prev_p) = (nb, np);
            slot += 1;
            if slot == self.secs.len() {
                slot = 0;
            }
            sb.advance();
            sp.advance();
        }
    }

    /// Counts a merged flow starting at `first` (Unix ns).
    pub fn flow_started(&mut self, first: u64, clock_sec: u64) {
        if let Some(c) = self.cell(first / NS, clock_sec) {
            c.flows = c.flows.saturating_add(1);
        }
    }

    /// Takes back a flow start counted at `first` (the flow turned out to start earlier).
    pub fn flow_unstarted(&mut self, first: u64, clock_sec: u64) {
        if let Some(c) = self.cell(first / NS, clock_sec) {
            c.flows = c.flows.saturating_sub(1);
        }
    }

    /// Cells of seconds `start_sec .. start_sec + len`, zero where nothing was counted.
    pub fn view(&self, start_sec: u64, len: u64) -> Vec<RateCell> {
        (start_sec..start_sec.saturating_add(len))
            .map(|s| {
                let i = (s % self.window()) as usize;
                if self.secs[i] == s {
                    self.cells[i]
                } else {
                    RateCell::default()
                }
            })
            .collect()
    }
}

/// `⌊total · part / whole⌋` without overflow (`part <= whole`, `whole > 0`).
fn share(total: u64, part: u64, whole: u64) -> u64 {
    match total.checked_mul(part) {
        Some(p) => p / whole,
        None => (u128::from(total) * u128::from(part) / u128::from(whole)) as u64,
    }
}

/// `⌊total · x / whole⌋` along `x = x0, x0 + 1 s, x0 + 2 s, …`: quotient and remainder
/// are carried, so each step costs additions only.
trait Step {
    fn value(&self) -> u64;
    fn advance(&mut self);
}

/// [`Step`] when `total · max(1 s, whole)` fits in 64 bits and `whole < 2^62` (every
/// realistic record).
struct Step64 {
    q: u64,
    r: u64,
    step_q: u64,
    step_r: u64,
    whole: u64,
}

impl Step64 {
    fn new(total: u64, x0: u64, whole: u64) -> Step64 {
        let (p, step) = (total * x0, total * NS);
        Step64 {
            q: p / whole,
            r: p % whole,
            step_q: step / whole,
            step_r: step % whole,
            whole,
        }
    }
}

impl Step for Step64 {
    fn value(&self) -> u64 {
        self.q
    }

    fn advance(&mut self) {
        self.q = self.q.wrapping_add(self.step_q);
        self.r += self.step_r;
        if self.r >= self.whole {
            self.q = self.q.wrapping_add(1);
            self.r -= self.whole;
        }
    }
}

/// [`Step`] for any counters.
struct Step128 {
    q: u128,
    r: u128,
    step_q: u128,
    step_r: u128,
    whole: u128,
}

impl Step128 {
    fn new(total: u64, x0: u64, whole: u64) -> Step128 {
        let (t, w) = (u128::from(total), u128::from(whole));
        let (p, step) = (t * u128::from(x0), t * u128::from(NS));
        Step128 {
            q: p / w,
            r: p % w,
            step_q: step / w,
            step_r: step % w,
            whole: w,
        }
    }
}

impl Step for Step128 {
    fn value(&self) -> u64 {
        self.q as u64
    }

    fn advance(&mut self) {
        self.q += self.step_q;
        self.r += self.step_r;
        if self.r >= self.whole {
            self.q += 1;
            self.r -= self.whole;
        }
    }
}

/// First second of the window ending at event time `watermark_ns`.
pub(crate) fn window_start(watermark_ns: u64, window: u64) -> u64 {
    (watermark_ns / NS).saturating_sub(window.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_is_spread_by_overlap_and_sums_exactly() {
        let mut r = RateRing::new(10);
        // 2.5 s .. 5.5 s: 0.5 s in second 2, 1 s in 3 and 4, 0.5 s in 5.
        r.add_span(2_500_000_000, 5_500_000_000, 1000, 7, 9);
        let v = r.view(0, 10);
        assert_eq!(
            v.iter().map(|c| c.bytes).collect::<Vec<_>>(),
            vec![0, 0, 166, 334, 333, 167, 0, 0, 0, 0]
        );
        assert_eq!(v.iter().map(|c| c.bytes).sum::<u64>(), 1000);
        assert_eq!(v.iter().map(|c| c.packets).sum::<u64>(), 7);
    }

    #[test]
    fn old_seconds_leave_the_window() {
        let mut r = RateRing::new(3);
        r.add_span(1_000_000_000, 1_000_000_000, 10, 1, 1);
        r.flow_started(1_000_000_000, 1);
        assert_eq!(
            r.view(1, 1)[0],
            RateCell {
                bytes: 10,
                packets: 1,
                flows: 1
            }
        );
        // Clock at second 4: second 1 is out (window 2..=4), and a late record for it is
        // not counted; second 4 reuses the slot.
        r.add_span(4_000_000_000, 4_000_000_000, 5, 1, 4);
        r.add_span(1_200_000_000, 1_300_000_000, 99, 9, 4);
        assert_eq!(
            r.view(1, 4),
            vec![
                RateCell::default(),
                RateCell::default(),
                RateCell::default(),
                RateCell {
                    bytes: 5,
                    packets: 1,
                    flows: 0
                },
            ]
        );
        // A span reaching into the window only counts its part inside.
        r.add_span(0, 4_000_000_000, 400, 4, 4);
        let v = r.view(2, 3);
        assert_eq!(
            v.iter().map(|c| c.bytes).collect::<Vec<_>>(),
            vec![100, 100, 5]
        );
    }

    #[test]
    fn stepped_shares_equal_the_direct_formula() {
        // Spans starting and ending mid-second, on boundaries, cut by the window.
        for (first, last, total) in [
            (2_500_000_000u64, 9_100_000_000u64, 1_000_003u64),
            (3 * NS, 8 * NS, 77),
            (NS - 1, 6 * NS + 1, 5),
            (0, 9 * NS + 999_999_999, u64::MAX),
            (123_456_789, 9_876_543_210, 0),
        ] {
            for clock in [9u64, 12] {
                let mut r = RateRing::new(6);
                r.add_span(first, last, total, total / 3, clock);
                let d = last - first;
                let lo = (first / NS).max(clock - 5);
                for s in lo..=(last / NS).min(clock) {
                    let c = |x: u64| (x.clamp(first, last) - first) as u128;
                    let want = |t: u64| {
                        (u128::from(t) * c((s + 1) * NS) / u128::from(d)
                            - u128::from(t) * c(s * NS) / u128::from(d))
                            as u64
                    };
                    let got = r.view(s, 1)[0];
                    assert_eq!(got.bytes, want(total), "{first}..{last} second {s}");
                    assert_eq!(got.packets, want(total / 3), "{first}..{last} second {s}");
                }
            }
        }
    }

    #[test]
    fn huge_counters_do_not_overflow() {
        let mut r = RateRing::new(5);
        r.add_span(0, 2 * NS, u64::MAX, u64::MAX, 2);
        let v = r.view(0, 3);
        assert_eq!(v[0].bytes, u64::MAX / 2);
        assert_eq!(
            v.iter().map(|c| u128::from(c.bytes)).sum::<u128>(),
            u128::from(u64::MAX)
        );
    }

    #[test]
    fn flow_start_moves() {
        let mut r = RateRing::new(5);
        r.flow_started(3 * NS, 4);
        r.flow_unstarted(3 * NS, 4);
        r.flow_started(2 * NS, 4);
        let v = r.view(0, 5);
        assert_eq!(
            v.iter().map(|c| c.flows).collect::<Vec<_>>(),
            vec![0, 0, 1, 0, 0]
        );
        assert_eq!(window_start(4 * NS + 5, 5), 0);
        assert_eq!(window_start(10 * NS, 5), 6);
    }
}
