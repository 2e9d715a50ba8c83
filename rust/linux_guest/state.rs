// SPDX-License-Identifier: GPL-2.0

//! What a VM knows of its Linux guest (`AttachedVm::linux`): the profile in
//! use, one being checked, and the processes the last walk found. Plain
//! data, apart from `vm.rs` so that it needs nothing of the VM; the work
//! and the ioctls on it are `mod.rs`'s.

use kernel::prelude::*;

use crate::bindings::uapi;
use crate::pfi_core::linux_profile::Profile;

use super::rule_set::Rules;

/// A VM's Linux guest state (in `AttachedVm::linux`).
pub(crate) struct LinuxGuest {
    pub(super) active: Option<KBox<Active>>,
    /// A profile a `KVM_PFI_LINUX_PROFILE` call waits on.
    pub(super) pending: Option<KBox<Pending>>,
    /// A `KVM_PFI_PROCESS_VMAS` call waiting on the work.
    pub(super) vma_query: Option<KBox<VmaQuery>>,
    /// A `KVM_PFI_KERNEL_READ` call waiting on the work.
    pub(super) kernel_read: Option<KBox<KernelRead>>,
    /// What the last walk found, in task-list order.
    pub(super) processes: KVVec<uapi::kvm_pfi_process>,
    pub(super) walks: u64,
    pub(super) walk_errors: u64,
    pub(super) walked_ns: u64,
    pub(super) last_error: i32,
    /// Targets by process and region (`rules.rs`).
    pub(super) rules: Rules,
}

/// The profile in use.
pub(super) struct Active {
    pub(super) profile: Profile,
    pub(super) slide: u64,
    /// `swapper_pg_dir`, or 0 (see `mod.rs`).
    pub(super) root: u64,
    /// The direct map's base (`targets::vma_gate`), once a walk found it.
    pub(super) direct_map: Option<u64>,
}

/// A profile being checked.
pub(super) struct Pending {
    pub(super) profile: Profile,
    pub(super) slide: Option<u64>,
    pub(super) outcome: Option<Result<Checked>>,
}

/// A profile that fits, and what its check found.
pub(super) struct Checked {
    pub(super) slide: u64,
    pub(super) init_task: u64,
    pub(super) root: u64,
    pub(super) processes: KVVec<uapi::kvm_pfi_process>,
    pub(super) direct_map: Option<u64>,
}

/// The VMAs of one process, asked for.
pub(super) struct VmaQuery {
    pub(super) pid: i32,
    /// VMAs to keep at most (the caller's capacity).
    pub(super) cap: usize,
    pub(super) outcome: Option<Result<Vmas>>,
}

/// Guest kernel memory, asked for.
pub(super) struct KernelRead {
    pub(super) va: u64,
    /// One byte per page translated or not (`KVM_PFI_KERNEL_PRESENT`),
    /// rather than the bytes.
    pub(super) present: bool,
    /// Zeroed, as long as the answer can be: bytes, or one byte a page.
    pub(super) buf: KVVec<u8>,
    /// Bytes read or pages present, and the root read through.
    pub(super) outcome: Option<Result<(u64, u64)>>,
}

/// The VMAs of a process and its mm's layout.
pub(super) struct Vmas {
    pub(super) answer: uapi::kvm_pfi_process_vmas,
    pub(super) vmas: KVVec<uapi::kvm_pfi_vma>,
}

impl LinuxGuest {
    pub(crate) fn new() -> Self {
        LinuxGuest {
            active: None,
            pending: None,
            vma_query: None,
            kernel_read: None,
            processes: KVVec::new(),
            walks: 0,
            walk_errors: 0,
            walked_ns: 0,
            last_error: uapi::KVM_PFI_WALK_OK as i32,
            rules: Rules::new(),
        }
    }
}

