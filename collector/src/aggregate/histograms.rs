//! Per-line distributions of flow size, flow duration and mean packet size.
//!
//! One value per record (so each histogram's count is the line's record count; records
//! with zero packets have no mean packet size and are left out of that one). Histograms
//! auto-resize and keep 2 significant digits (a value's bucket is within 1 % of it: 256
//! sub-buckets per power of two, ~35 kB per histogram reaching an hour in nanoseconds,
//! where 3 digits took 2 048 and ~260 kB, and a record's three updates missed the CPU
//! caches); values above [`MAX_VALUE`] are recorded as [`MAX_VALUE`].

use hdrhistogram::Histogram;

use super::message::Rec;

/// Largest value an auto-resizing histogram can track (`i64::MAX / 2`).
pub const MAX_VALUE: u64 = (i64::MAX / 2) as u64;

/// Significant decimal digits kept.
const SIGFIG: u8 = 2;

/// The three distributions of one line.
#[derive(Clone, Debug)]
pub struct LineHistograms {
    /// IP-layer bytes per record.
    pub flow_bytes: Histogram<u64>,
    /// `last - first` per record, in nanoseconds.
    pub flow_duration_ns: Histogram<u64>,
    /// `bytes / packets` per record, in bytes.
    pub packet_size: Histogram<u64>,
}

impl Default for LineHistograms {
    fn default() -> Self {
        LineHistograms {
            flow_bytes: empty(),
            flow_duration_ns: empty(),
            packet_size: empty(),
        }
    }
}

fn empty() -> Histogram<u64> {
    // 2 significant digits is a valid precision; `new` only fails for sigfig > 5.
    Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable!("sigfig {SIGFIG} is valid"))
}

fn record(h: &mut Histogram<u64>, v: u64) {
    // Auto-resizing histograms accept every value up to MAX_VALUE; clamp the rest.
    if h.record(v.min(MAX_VALUE)).is_err() {
        h.saturating_record(v);
    }
}

impl LineHistograms {
    /// Records one flow record.
    pub(crate) fn record(&mut self, r: &Rec) {
        let r = &r.counters;
        record(&mut self.flow_bytes, r.bytes);
        record(&mut self.flow_duration_ns, r.last.abs_diff(r.first));
        if let Some(mean) = r.bytes.checked_div(r.packets) {
            record(&mut self.packet_size, mean);
        }
    }

    /// Adds another line's histograms (shard merge).
    pub fn add(&mut self, o: &LineHistograms) {
        for (a, b) in [
            (&mut self.flow_bytes, &o.flow_bytes),
            (&mut self.flow_duration_ns, &o.flow_duration_ns),
            (&mut self.packet_size, &o.packet_size),
        ] {
            // Auto-resizing histograms with the same precision always add; fall back to
            // value-by-value recording if that ever changes.
            if a.add(b).is_err() {
                for v in b.iter_recorded() {
                    let _ = a.record_n(v.value_iterated_to().min(MAX_VALUE), v.count_at_value());
                }
            }
        }
    }
}
