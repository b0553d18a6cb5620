//! The pcap/pcapng reader on arbitrary files: never a panic, memory bounded by its
//! record limit, every frame within the bytes read.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidegate_probe::capture::pcap::{CaptureReader, MAX_RECORD};

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = CaptureReader::new(data) else {
        return;
    };
    for _ in 0..10_000 {
        match r.next_frame() {
            Ok(Some(f)) => assert!(f.data.len() <= MAX_RECORD as usize && f.data.len() <= data.len()),
            Ok(None) | Err(_) => break,
        }
    }
});
