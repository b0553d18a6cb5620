//! The wall clock, as every stage reads it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the Unix epoch (0 if the clock is set before 1970; saturates in 2554).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Now, in whole seconds since the Unix epoch (0 if the clock is set before 1970).
pub fn wall_secs() -> u64 {
    wall_ns() / 1_000_000_000
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_plausible_now() {
        // After 2020-01-01 and consistent between the two forms.
        let ns = super::wall_ns();
        assert!(ns > 1_577_836_800_000_000_000);
        assert!(super::wall_secs() >= ns / 1_000_000_000);
    }
}
