//! Clocks: kernel timestamps are CLOCK_MONOTONIC; records carry Unix-epoch time.

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC now (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Unix-epoch time now, ns.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Converts monotonic timestamps to epoch; re-sampled at every drain so clock steps
/// (NTP) are followed.
#[derive(Clone, Copy, Debug)]
pub struct MonoToEpoch {
    offset: i128,
}

impl MonoToEpoch {
    /// Samples the current offset.
    pub fn now() -> Self {
        let m = monotonic_ns() as i128;
        let r = realtime_ns() as i128;
        MonoToEpoch { offset: r - m }
    }

    /// Converts one monotonic timestamp.
    pub fn convert(&self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.offset).max(0) as u64
    }

    /// Converts one epoch timestamp back to the monotonic clock.
    pub fn to_mono(&self, epoch_ns: u64) -> u64 {
        (epoch_ns as i128 - self.offset).max(0) as u64
    }
}
