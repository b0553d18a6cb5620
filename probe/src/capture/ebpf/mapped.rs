//! A `BPF_F_MMAPABLE` array map's values mapped into the probe (or anonymous memory of
//! the same shape, for tests): the flow table and the packet clock are read and written
//! in place, without a syscall per access.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
};

/// `len` values of `T`, mapped read-write; unmapped on drop.
pub struct Mapped<T> {
    base: NonNull<T>,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is owned by this value; the memory it points at is shared with
// the kernel programs, which every user accesses through atomics or benign word stores.
unsafe impl<T> Send for Mapped<T> {}

impl<T> Mapped<T> {
    /// Maps the values of the array map behind `fd` (`len` entries of `T`, `T` sized as
    /// the map's value), or anonymous zeroed memory when `fd` is `None`.
    pub fn new(fd: Option<BorrowedFd<'_>>, len: usize) -> io::Result<Self> {
        // SAFETY: sysconf with a valid name.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = (len * size_of::<T>()).max(1).div_ceil(page) * page;
        // SAFETY: a mapping of the array map's values (BPF_F_MMAPABLE), of its size
        // rounded to pages, or of anonymous memory; released in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                match fd {
                    Some(_) => libc::MAP_SHARED,
                    None => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                },
                fd.map_or(-1, |f| f.as_raw_fd()),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped {
            base: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
            bytes,
        })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The `i`-th value (`i < len`).
    pub fn at(&self, i: usize) -> *mut T {
        assert!(i < self.len, "index {i} beyond {} mapped values", self.len);
        // SAFETY: i < len, inside the mapping.
        unsafe { self.base.as_ptr().add(i) }
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}
