//! `BPF_MAP_LOOKUP_AND_DELETE_BATCH` on the per-CPU flow maps (aya 0.14 has no batch API).

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use tidegate_common::{FlowKey, FlowStats};

const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
/// Elements per syscall.
const CHUNK: usize = 8192;

/// `bpf_attr.batch`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reusable buffers for draining one map.
pub struct Drainer {
    nr_cpus: usize,
    keys: Vec<FlowKey>,
    values: Vec<FlowStats>,
}

impl Drainer {
    /// Buffers for maps whose per-CPU values span `nr_cpus` possible CPUs.
    pub fn new(nr_cpus: usize) -> Self {
        Drainer {
            nr_cpus,
            keys: vec![FlowKey::ZERO; CHUNK],
            values: vec![FlowStats::default(); CHUNK * nr_cpus],
        }
    }

    /// Looks up and deletes every element; `out` gets each key with its per-CPU values.
    /// Returns the number of keys drained. `Err(EINVAL/ENOTSUPP)` means the kernel lacks
    /// batch operations.
    pub fn drain(
        &mut self,
        fd: BorrowedFd<'_>,
        mut out: impl FnMut(&FlowKey, &[FlowStats]),
    ) -> io::Result<usize> {
        let mut token_in: u32 = 0;
        let mut token_out: u32 = 0;
        let mut first = true;
        let mut total = 0;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    &token_in as *const u32 as u64
                },
                out_batch: &mut token_out as *mut u32 as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: CHUNK as u32,
                map_fd: fd.as_raw_fd() as u32,
                ..Default::default()
            };
            // SAFETY: attr points at valid buffers of CHUNK keys and CHUNK * nr_cpus values
            // (FlowStats is 40 bytes, already a multiple of 8 as the kernel requires).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>(),
                )
            };
            let err = if r < 0 {
                Some(io::Error::last_os_error())
            } else {
                None
            };
            let n = (attr.count as usize).min(CHUNK);
            for i in 0..n {
                out(
                    &self.keys[i],
                    &self.values[i * self.nr_cpus..(i + 1) * self.nr_cpus],
                );
            }
            total += n;
            match err {
                None => {}
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(total),
                Some(e) => return Err(e),
            }
            token_in = token_out;
            first = false;
        }
    }
}
