//! Robust per-entity baselines on event time: the level and spread of a value measured
//! once per window (packets per second towards a host, bytes a host sends to one
//! destination), learned from the entity's own history.
//!
//! The level is an exponentially weighted moving average and the spread an EWMA of the
//! absolute deviation from it (≈ 0.8 σ for normal data, but robust: every value is first
//! clipped to `level + CLIP × spread`, a Huber step, so one outlier — the attack itself —
//! moves neither by more than a bounded amount). Windows in which the entity was not
//! seen are folded in as zeros when it is next seen, so a host that normally receives
//! nothing keeps a level near zero and a small absolute rate is a large deviation.
//!
//! Memory: 32 bytes per entity; callers bound the number of entities ([`Table`]).

use std::collections::HashMap as StdHashMap;
use std::hash::Hash;

use ahash::AHashMap as HashMap;
use serde::{Deserialize, Serialize};

/// Values are clipped to `level + CLIP × spread` before they are learned.
const CLIP: f64 = 4.0;
/// Idle windows folded in one by one at most (beyond, the level is ~0 anyway).
const IDLE_FOLD_MAX: u64 = 512;

/// Level and spread of one entity's value per window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Robust {
    /// EWMA of the (clipped) value.
    pub level: f64,
    /// EWMA of |value − level|.
    pub spread: f64,
    /// Windows learned, idle ones included.
    pub windows: u64,
    /// Start (Unix ns) of the last window learned.
    pub last_w: u64,
}

impl Robust {
    /// A baseline whose history starts with the window at `w0` (the windows before the
    /// entity was first seen count as idle from there on).
    pub fn starting_at(w0: u64) -> Self {
        Robust {
            last_w: w0,
            ..Default::default()
        }
    }

    /// Learns `x` for the window starting at `w` (`len` ns long), after folding in the
    /// windows since the last one learned as zeros. Windows at or before the last one
    /// learned (late data) are ignored. `min_spread` (in the value's unit) floors the
    /// spread the clipping allows, so an entity with a flat history can still grow.
    pub fn learn(&mut self, w: u64, len: u64, x: f64, alpha: f64, min_spread: f64) {
        if self.windows > 0 && w <= self.last_w {
            return;
        }
        self.catch_up(w, len, alpha, min_spread);
        self.fold(x, alpha, min_spread);
        self.last_w = w;
    }

    /// Learns `x` for the window at `w` without folding in idle windows: the baseline of
    /// an entity's *active* windows (for sparse entities such as host→destination pairs,
    /// whose idle windows say nothing).
    pub fn learn_sparse(&mut self, w: u64, x: f64, alpha: f64, min_spread: f64) {
        if self.windows > 0 && w <= self.last_w {
            return;
        }
        self.fold(x, alpha, min_spread);
        self.last_w = w;
    }

    /// Folds in, as zeros, the windows before the one starting at `w` in which the
    /// entity was not seen (since the last window learned, or since the baseline's start).
    pub fn catch_up(&mut self, w: u64, len: u64, alpha: f64, min_spread: f64) {
        let len = len.max(1);
        let idle = if self.windows == 0 {
            w.saturating_sub(self.last_w) / len
        } else {
            (w.saturating_sub(self.last_w) / len).saturating_sub(1)
        };
        if idle == 0 {
            return;
        }
        for _ in 0..idle.min(IDLE_FOLD_MAX) {
            self.fold(0.0, alpha, min_spread);
        }
        if idle > IDLE_FOLD_MAX {
            self.windows += idle - IDLE_FOLD_MAX;
        }
        self.last_w = w.saturating_sub(len);
    }

    fn fold(&mut self, x: f64, alpha: f64, min_spread: f64) {
        if self.windows == 0 {
            self.level = x;
            self.spread = 0.0;
        } else {
            let cap = self.level + CLIP * self.spread.max(min_spread);
            let x = if self.windows >= 8 { x.min(cap) } else { x };
            let dev = (x - self.level).abs();
            self.level += alpha * (x - self.level);
            self.spread += alpha * (dev - self.spread);
        }
        self.windows += 1;
    }

    /// How many spreads `x` lies above the level (the spread floored at `min_spread`,
    /// so a perfectly flat or empty history does not make every value infinite).
    pub fn deviation(&self, x: f64, min_spread: f64) -> f64 {
        (x - self.level) / self.spread.max(min_spread).max(f64::MIN_POSITIVE)
    }

    /// The value that is `k` spreads above the level, at least `factor` × the level and
    /// at least `floor`.
    pub fn threshold(&self, k: f64, factor: f64, floor: f64, min_spread: f64) -> f64 {
        (self.level + k * self.spread.max(min_spread))
            .max(self.level * factor)
            .max(floor)
    }
}

/// The lower half (plus one) of `by`, entries of (last window learned, key, …): the
/// baselines a full table forgets. Ties in age are broken by key, so which baselines
/// are kept does not depend on the hash seed or the order `by` was collected in.
pub(super) fn oldest_half<T: Ord>(by: &mut [T]) -> &[T] {
    if by.is_empty() {
        return by;
    }
    let half = by.len() / 2;
    by.select_nth_unstable(half);
    &by[..=half]
}

/// Baselines of many entities, bounded: past `max` entities, the ones updated least
/// recently are forgotten (half of them at once, so the sweep is amortised).
#[derive(Debug)]
pub(crate) struct Table<K: Eq + Hash> {
    map: HashMap<K, Robust>,
    max: usize,
}

impl<K: Eq + Hash + Clone + Ord> Table<K> {
    pub fn new(max: usize) -> Self {
        Table {
            map: HashMap::new(),
            max: max.max(2),
        }
    }

    #[cfg(test)]
    pub fn get(&self, k: &K) -> Option<&Robust> {
        self.map.get(k)
    }

    /// `k`'s baseline, created as idle since `w0` when absent.
    pub fn entry(&mut self, k: K, w0: u64) -> &mut Robust {
        if self.map.len() >= self.max && !self.map.contains_key(&k) {
            self.forget_oldest();
        }
        self.map.entry(k).or_insert_with(|| Robust::starting_at(w0))
    }

    /// Forgets the older half (plus one) of the baselines ([`oldest_half`]).
    fn forget_oldest(&mut self) {
        let mut by: Vec<(u64, K)> = (self.map.iter())
            .map(|(k, b)| (b.last_w, k.clone()))
            .collect();
        for (_, k) in oldest_half(&mut by) {
            self.map.remove(k);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The baselines as a list sorted by key, for saving.
    pub fn snapshot(&self) -> Vec<(K, Robust)> {
        let mut v: Vec<(K, Robust)> = self.map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Replaces the baselines with saved ones (at most `max`).
    pub fn restore(&mut self, saved: Vec<(K, Robust)>) {
        let m: StdHashMap<K, Robust> = saved.into_iter().take(self.max).collect();
        self.map = m.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 10;

    #[test]
    fn a_steady_value_is_learned_and_an_outlier_does_not_move_it_much() {
        let mut b = Robust::starting_at(0);
        for i in 0..200u64 {
            b.learn(i * W, W, 100.0 + (i % 5) as f64, 0.05, 1.0);
        }
        assert!((b.level - 102.0).abs() < 2.0, "{b:?}");
        assert!(b.spread > 0.5 && b.spread < 3.0, "{b:?}");
        let before = b.level;
        b.learn(200 * W, W, 1e9, 0.05, 1.0);
        assert!(
            b.level < before * 1.2,
            "one outlier moved the level to {}",
            b.level
        );
        assert!(b.deviation(150.0, 1.0) > 10.0);
    }

    #[test]
    fn idle_windows_count_as_zero_so_a_quiet_host_keeps_a_level_near_zero() {
        let mut b = Robust::starting_at(0);
        b.learn(0, W, 5.0, 0.1, 1.0);
        // Seen again 100 windows later: the 99 windows between were idle.
        b.learn(100 * W, W, 0.0, 0.1, 1.0);
        assert_eq!(b.windows, 101);
        assert!(b.level < 0.01, "{b:?}");
        // A baseline created late starts idle from its origin.
        let mut late = Robust::starting_at(0);
        late.learn(50 * W, W, 3.0, 0.1, 1.0);
        assert_eq!(late.windows, 51);
        assert!(late.level < 0.5, "{late:?}");
    }

    #[test]
    fn late_windows_are_ignored_and_huge_gaps_are_bounded() {
        let mut b = Robust::starting_at(0);
        b.learn(10 * W, W, 1.0, 0.1, 1.0);
        let snap = b;
        b.learn(5 * W, W, 1e6, 0.1, 1.0);
        assert_eq!(b, snap);
        b.learn(u64::MAX - W, W, 1.0, 0.1, 1.0);
        assert!(b.windows > 1_000_000, "{b:?}");
    }

    #[test]
    fn thresholds_respect_floor_factor_and_spread() {
        let b = Robust {
            level: 10.0,
            spread: 2.0,
            windows: 50,
            last_w: 0,
        };
        assert_eq!(b.threshold(6.0, 1.0, 0.0, 0.0), 22.0);
        assert_eq!(b.threshold(6.0, 4.0, 0.0, 0.0), 40.0);
        assert_eq!(b.threshold(6.0, 1.0, 100.0, 0.0), 100.0);
        assert_eq!(b.threshold(6.0, 1.0, 0.0, 5.0), 40.0);
    }

    #[test]
    fn the_table_forgets_the_least_recent_half_when_full_and_round_trips() {
        let mut t: Table<u32> = Table::new(100);
        for k in 0..100u32 {
            t.entry(k, 0).learn(u64::from(k) * W, W, 1.0, 0.1, 1.0);
        }
        t.entry(1000, 0);
        assert!(t.len() <= 51, "{}", t.len());
        assert!(t.get(&99).is_some() && t.get(&0).is_none());
        let snap = t.snapshot();
        let mut u: Table<u32> = Table::new(100);
        u.restore(snap);
        assert_eq!(u.get(&99), t.get(&99));
    }
}
