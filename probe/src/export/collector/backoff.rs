//! Exponential reconnect backoff with jitter.

use std::time::Duration;

/// Delays doubling from `min` up to `max`; each delay is drawn uniformly from
/// `[d/2, d]` so probes that lost the collector together do not reconnect in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `min`, capped at `max`; `seed` varies the jitter.
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
            rng: seed | 1,
        }
    }

    /// Back to `min` (after a connection made progress).
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        let span = (d - half).as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { self.rng % (span + 1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let mut b = Backoff::new(min, max, 12345);
        let mut ceiling = min;
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(max);
        }
        assert!(b.next_delay() >= max / 2);
        b.reset();
        assert!(b.next_delay() <= min);
        // Jitter actually varies.
        let mut b = Backoff::new(max, max, 7);
        let v: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(v.iter().any(|d| *d != v[0]), "{v:?}");
    }
}
