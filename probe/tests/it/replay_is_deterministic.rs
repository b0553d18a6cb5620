//! Replaying a capture twice exports the same records in the same order — flows that
//! time out together come out by first packet, then key, not in the flow table's
//! randomly seeded hash order — so everything downstream that depends on the order of
//! records (detection: a beaconing series, which of two records continues the other)
//! judges a replay the same way every time.

use std::time::Duration;

use tidegate_probe::table::Timeouts;
use tidegate_testkit::{paths::corpus_pcap, probe::replay};

#[test]
fn replaying_a_capture_twice_exports_the_same_records_in_the_same_order() {
    // Many flows ending together (a spoofed flood, a busy capture) and short timeouts:
    // many flows fall due in each sweep, and at the end.
    let timeouts = Timeouts {
        active: Duration::from_secs(5),
        idle: Duration::from_secs(2),
    };
    for name in ["stopddos-pkt.TCP.synflood.spoofed.pcap", "ndpi-1kxun.pcap"] {
        let path = corpus_pcap(name);
        let first = replay(&path, "l", timeouts);
        assert!(first.len() > 300, "{name}: {} records", first.len());
        // Each replay has its own table, with its own hash seed.
        for _ in 0..3 {
            let again = replay(&path, "l", timeouts);
            assert_eq!(again.len(), first.len(), "{name}");
            let at = again.iter().zip(&first).position(|(a, b)| a != b);
            assert_eq!(at, None, "{name}: the records differ from record {at:?} on");
        }
    }
}
