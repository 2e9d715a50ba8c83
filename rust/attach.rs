// SPDX-License-Identifier: GPL-2.0

//! Attaching and detaching VMs: the VM table's writers (`vm.rs`), the VM
//! events, and the end of a VM's reporting (`report.rs`). Detaching sleeps
//! (an RCU grace period, the report work's flush, and dropping a VM's last
//! reference destroys it).

use kernel::prelude::*;

use crate::bindings::uapi;
use crate::events::{
    self,
    Record, //
};
use crate::report;
use crate::vm::{
    self,
    AttachedVm,
    Owner, //
};

/// Why a VM is detached: the netlink `detach-reason` enum.
#[derive(Clone, Copy)]
pub(crate) enum DetachReason {
    Requested = uapi::KVM_PFI_DETACH_REASON_REQUESTED as isize,
    FileClosed = uapi::KVM_PFI_DETACH_REASON_FILE_CLOSED as isize,
    VmExited = uapi::KVM_PFI_DETACH_REASON_VM_EXITED as isize,
    Unload = uapi::KVM_PFI_DETACH_REASON_UNLOAD as isize,
}

/// Attaches the VM behind `vm_fd` of the calling process; its `vm-attached`
/// event is on the event stream when this returns.
pub(crate) fn attach(vm_fd: i32, flags: u32, owner: Owner) -> Result<u32> {
    let id = vm::attach(vm_fd, flags, owner, |vm| {
        events::emit(Record::vm_attached(&vm.identity(), vm.flags));
    })?;
    events::flush();
    Ok(id)
}

/// Detaches every VM `select` picks; returns how many. Their last events
/// (`target-removed` for each target, then `vm-detached`) are on the event
/// stream when this returns.
pub(crate) fn detach_where(select: impl Fn(&AttachedVm) -> bool, reason: DetachReason) -> usize {
    let mut n = 0;
    for vm in vm::take_where(select).into_iter() {
        vm.flush_report();
        report::teardown(&vm);
        let (entries, exits) = vm.totals();
        events::emit(Record::vm_detached(&vm.identity(), reason as u32, entries, exits));
        drop(vm); // drops the VM reference, possibly destroying the VM
        n += 1;
    }
    if n > 0 {
        events::flush();
    }
    n
}

/// Detaches the VM with `id` on behalf of the file `caller`.
pub(crate) fn detach(id: u32, caller: u64) -> Result {
    // Checked and detached under separate lock holds: a concurrent detach of
    // the same id simply makes ours find nothing.
    let owner = vm::with_id(id, |vm| vm.owner)?;
    if let Owner::File(f) = owner {
        if f != caller {
            return Err(EPERM);
        }
    }
    match detach_where(|vm| vm.id == id, DetachReason::Requested) {
        0 => Err(ENOENT),
        _ => Ok(()),
    }
}

/// Detaches VMs whose VMM is gone (we hold the last reference).
pub(crate) fn reap_exited() -> usize {
    detach_where(AttachedVm::only_we_hold_it, DetachReason::VmExited)
}

/// Ownership of the VM table for the module's lifetime: initialises it, and
/// detaches everything left (persistent attachments) on unload.
pub(crate) struct Attachments;

impl Attachments {
    pub(crate) fn new() -> Self {
        vm::init();
        Attachments
    }
}

impl Drop for Attachments {
    fn drop(&mut self) {
        detach_where(|_| true, DetachReason::Unload);
    }
}
