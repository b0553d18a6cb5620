//! The wire batch decoder on arbitrary bytes (what a probe with a valid certificate may
//! send): never a panic, never more than the limits, and whatever decodes re-encodes
//! to a batch that decodes to the same thing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidegate_wire::{MAX_BATCH_RECORDS, decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = decode_batch(data) {
        assert!(b.records.len() <= MAX_BATCH_RECORDS);
        let again = decode_batch(&encode_batch(&b)).expect("a decoded batch re-encodes");
        assert_eq!(again.records, b.records);
        assert_eq!((again.seq, again.epoch), (b.seq, b.epoch));
    }
});
