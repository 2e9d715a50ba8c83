// SPDX-License-Identifier: GPL-2.0

//! Guest physical memory reads, from each context the module runs in. All
//! go through the VMM's mapping of guest memory (memslot lookup under
//! `kvm->srcu` in the glue); they differ in how they may touch it.

use kernel::bindings;

use crate::bindings::glue;
use crate::pfi_core::walk::{
    GuestPhysRead,
    ReadError, //
};

/// Where the reader runs, which decides how it may read.
#[derive(Clone, Copy)]
pub(crate) enum Context {
    /// A probe (a vCPU thread of the VMM, interrupts off): nofault reads; a
    /// host page that is not resident fails (`ReadError::Retry`).
    Probe,
    /// The report work (a kworker): borrows the VMM's mm, may sleep.
    Kworker,
    /// A vCPU thread of the VMM that may sleep (the page-track notifier):
    /// may fault the VMM's page in.
    VcpuThread,
}

/// Reads guest memory of one VM.
///
/// # Invariants
///
/// `kvm` is referenced for the reader's lifetime, and the reader is only
/// used in its `Context`.
pub(crate) struct GuestMemory {
    kvm: *mut glue::kvm,
    ctx: Context,
}

impl GuestMemory {
    /// # Safety
    ///
    /// `kvm` stays referenced while the reader lives, and the caller runs in
    /// `ctx` whenever it reads.
    pub(crate) unsafe fn new(kvm: *mut glue::kvm, ctx: Context) -> Self {
        GuestMemory { kvm, ctx }
    }

    /// Fills `buf` (within one page) from `gpa`: 0 or -errno, -ENOENT when
    /// no memslot holds `gpa`.
    pub(crate) fn read(&mut self, gpa: u64, buf: &mut [u8]) -> i32 {
        let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len() as u32);
        // SAFETY: `kvm` is referenced and we run in `ctx` (type invariant);
        // `buf` is writable for `len` bytes; the glue checks the page bound.
        unsafe {
            match self.ctx {
                Context::Probe => glue::kvm_pfi_read_guest_atomic(self.kvm, gpa, ptr, len),
                Context::Kworker => glue::kvm_pfi_read_guest_remote(self.kvm, gpa, ptr, len),
                Context::VcpuThread => glue::kvm_pfi_read_guest_vcpu_thread(self.kvm, gpa, ptr, len),
            }
        }
    }
}

impl GuestPhysRead for GuestMemory {
    fn read_u64(&mut self, gpa: u64) -> core::result::Result<u64, ReadError> {
        let mut v = [0u8; 8];
        match self.read(gpa, &mut v) {
            0 => Ok(u64::from_le_bytes(v)),
            r if r == -(bindings::ENOENT as i32) => Err(ReadError::OutsideGuestMemory),
            _ => Err(ReadError::Retry),
        }
    }
}
