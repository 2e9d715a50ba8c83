// SPDX-License-Identifier: GPL-2.0

//! Guest physical memory reads, from each context the module runs in, all
//! through the glue's one reader (`kvm_pfi_read_guest`: memslot lookup
//! under `kvm->srcu`, then a copy from the VMM's mapping); the context
//! decides how it may copy.

use kernel::bindings;

use crate::bindings::glue;
use crate::pfi_core::table_cache::PageSource;
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
        let ctx = match self.ctx {
            Context::Probe => glue::KVM_PFI_GLUE_CTX_PROBE,
            Context::Kworker => glue::KVM_PFI_GLUE_CTX_KWORKER,
            Context::VcpuThread => glue::KVM_PFI_GLUE_CTX_VCPU_THREAD,
        };
        // SAFETY: `kvm` is referenced and we run in `ctx` (type invariant);
        // `buf` is writable for `len` bytes; the glue checks the page bound.
        unsafe { glue::kvm_pfi_read_guest(self.kvm, gpa, ptr, len, ctx) }
    }
}

impl GuestMemory {
    /// [`GuestMemory::read`] as the walks see its failures.
    fn read_for_walk(&mut self, gpa: u64, buf: &mut [u8]) -> core::result::Result<(), ReadError> {
        match self.read(gpa, buf) {
            0 => Ok(()),
            r if r == -(bindings::ENOENT as i32) => Err(ReadError::OutsideGuestMemory),
            _ => Err(ReadError::Retry),
        }
    }
}

impl GuestPhysRead for GuestMemory {
    fn read_u64(&mut self, gpa: u64) -> core::result::Result<u64, ReadError> {
        let mut v = [0u8; 8];
        self.read_for_walk(gpa, &mut v)?;
        Ok(u64::from_le_bytes(v))
    }
}

/// Whole table pages for the background walks' cache.
impl PageSource for &mut GuestMemory {
    fn read_page(&mut self, gpa: u64, out: &mut [u8]) -> core::result::Result<(), ReadError> {
        self.read_for_walk(gpa, out)
    }
}

/// The VMM's mm, borrowed by a kernel thread (the report work) for a run
/// of `Context::Kworker` reads, so that they do not borrow it one by one.
///
/// # Invariants
///
/// `kvm` is referenced while this lives, and this thread uses its mm.
pub(crate) struct BorrowedMm {
    kvm: *mut glue::kvm,
}

impl BorrowedMm {
    /// `None` if the VMM's address space is gone (the reads then fail).
    ///
    /// # Safety
    ///
    /// `kvm` stays referenced while the result lives, which is dropped on
    /// this thread, a kernel thread using no mm.
    pub(crate) unsafe fn new(kvm: *mut glue::kvm) -> Option<Self> {
        // SAFETY: the caller's contract.
        if unsafe { glue::kvm_pfi_mm_borrow(kvm) } != 0 {
            // Not `then_some(BorrowedMm { .. })`: its argument is built
            // either way, and dropping it unborrows an mm never borrowed.
            return None;
        }
        Some(BorrowedMm { kvm })
    }
}

impl Drop for BorrowedMm {
    fn drop(&mut self) {
        // SAFETY: borrowed by `new` on this thread (type invariant).
        unsafe { glue::kvm_pfi_mm_unborrow(self.kvm) };
    }
}
