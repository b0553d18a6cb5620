//! The BPF atomic instructions the flow table needs. The BPF target offers no
//! `core::sync::atomic` read-modify-write methods, so these use the compiler's atomic
//! intrinsics, which LLVM lowers to `BPF_ATOMIC` (`lock xadd`/`lock or`/`cmpxchg`/`xchg`
//! when JIT-compiled on x86).

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_or, atomic_xadd, atomic_xchg};

/// `*p += v`, atomically.
///
/// # Safety
/// `p` is valid and 8-aligned (a map value field).
#[inline(always)]
pub unsafe fn add(p: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}

/// `*p += v`, atomically and fully ordered (a fetch-add: every earlier write is
/// visible before the sum).
///
/// # Safety
/// `p` is valid and 8-aligned.
#[inline(always)]
pub unsafe fn add_ordered(p: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, v) };
}

/// `*p |= v`, atomically.
///
/// # Safety
/// `p` is valid and 4-aligned.
#[inline(always)]
pub unsafe fn or(p: *mut u32, v: u32) {
    // SAFETY: the caller's contract.
    unsafe { atomic_or::<u32, u32, { AtomicOrdering::Relaxed }>(p, v) };
}

/// `*p |= v` on a 64-bit word, atomically.
///
/// # Safety
/// `p` is valid and 8-aligned.
#[inline(always)]
pub unsafe fn or64(p: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}

/// Stores `new` if `*p == old`; whether it did. A full barrier.
///
/// # Safety
/// `p` is valid and 8-aligned.
#[inline(always)]
pub unsafe fn cas(p: *mut u64, old: u64, new: u64) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(p, old, new).1
    }
}

/// Stores `v` with an atomic exchange (a full barrier: earlier writes are visible first).
///
/// # Safety
/// `p` is valid and 8-aligned.
#[inline(always)]
pub unsafe fn publish(p: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(p, v) };
}
