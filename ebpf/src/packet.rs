//! Bounds-checked packet access for the shared parser.

use tidegate_common::PacketBytes;

/// Largest header offset the parser may read at; keeps every offset provably bounded for
/// the verifier (the kernel's own limit for packet pointers is 0xffff).
const MAX_OFF: usize = 0x3fff;

/// How many bytes the TC program pulls into the linear area when headers are not there.
pub const PULL_LEN: u32 = 256;

/// Packet memory between `data` and `data_end`.
pub struct Packet {
    start: usize,
    end: usize,
    len: usize,
    scratch: *mut u64,
}

impl Packet {
    /// `len` is the whole packet's length (XDP: all fragments; TC: `skb->len`).
    #[inline(always)]
    pub fn new(start: usize, end: usize, len: usize) -> Self {
        Self {
            start,
            end,
            len,
            scratch: core::ptr::null_mut(),
        }
    }

    /// Uses `scratch` (a per-CPU map word) for [`PacketBytes::opaque`].
    #[inline(always)]
    pub fn with_scratch(mut self, scratch: *mut u64) -> Self {
        self.scratch = scratch;
        self
    }
}

impl PacketBytes for Packet {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > MAX_OFF {
            return None;
        }
        let p = self.start + off;
        if p + N > self.end {
            return None;
        }
        // SAFETY: [p, p + N) was just checked to lie inside the packet.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }

    #[inline(always)]
    fn packet_len(&self) -> usize {
        self.len
    }

    /// Round-trips `off` through a per-CPU map word: the verifier then knows only its
    /// bounds (checked in `bytes`), not which constant it was, and prunes the paths
    /// that reach here with different link-layer lengths into one.
    #[inline(always)]
    fn opaque(&self, off: usize) -> usize {
        if self.scratch.is_null() {
            return off;
        }
        // SAFETY: this CPU's word of a live per-CPU map value; programs don't nest.
        unsafe {
            core::ptr::write_volatile(self.scratch, off as u64);
            core::ptr::read_volatile(self.scratch) as usize
        }
    }
}
