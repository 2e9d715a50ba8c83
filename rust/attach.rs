// SPDX-License-Identifier: GPL-2.0

//! Attaching and detaching VMs: the VM table's writers (`vm.rs`), the VM
//! events, and the end of a VM's reporting (`report.rs`). Detaching sleeps
//! (an RCU grace period, the report work's flush, and dropping a VM's last
//! reference destroys it).

use kernel::prelude::*;
use kernel::sync::atomic::{
    Atomic,
    Relaxed, //
};

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
        vm.end_linux();
        vm.end_sweep();
        vm.end_report();
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

/// What one open `/dev/kvm_pfi` file may control: the VMs it attached,
/// and the persistent attachments it made or claimed by presenting the VM's
/// descriptor again (`KVM_PFI_ATTACH_CLAIM`). Only a controller may add or
/// remove a VM's targets or detach it (`EPERM` otherwise).
pub(crate) struct Controller {
    file: u64,
    /// VM ids of persistent attachments this file controls; 0 is free. VM
    /// ids are never reused, so the id of a VM detached since matches no VM.
    claims: [Atomic<u32>; vm::MAX_VMS],
}

impl Controller {
    pub(crate) fn new(file: u64) -> Self {
        Controller { file, claims: [const { Atomic::new(0) }; vm::MAX_VMS] }
    }

    /// The owner of an attachment this file makes.
    pub(crate) fn owner(&self, persistent: bool) -> Owner {
        if persistent {
            Owner::Module
        } else {
            Owner::File(self.file)
        }
    }

    /// `Ok` if this file may change `vm`, `EPERM` otherwise.
    pub(crate) fn check(&self, vm: &AttachedVm) -> Result {
        let ok = match vm.owner {
            Owner::File(f) => f == self.file,
            Owner::Module => self.claims.iter().any(|c| c.load(Relaxed) == vm.id),
        };
        if ok {
            Ok(())
        } else {
            Err(EPERM)
        }
    }

    /// Records that this file controls persistent attachment `id`.
    fn record(&self, id: u32) -> Result {
        if self.claims.iter().any(|c| c.load(Relaxed) == id) {
            return Ok(());
        }
        // A free slot, or one whose VM has been detached since (at most
        // `MAX_VMS` VMs are attached, so one of the two exists unless
        // another thread of this file claims at the same time).
        for c in &self.claims {
            let old = c.load(Relaxed);
            if (old == 0 || vm::with_id(old, |_| ()).is_err()) && c.cmpxchg(old, id, Relaxed).is_ok() {
                return Ok(());
            }
        }
        Err(EBUSY)
    }
}

/// Attaches the VM behind `vm_fd` for `ctl`'s file: owned by the file, or
/// (`persistent`) by the module with the file as its first controller.
pub(crate) fn attach_for(ctl: &Controller, vm_fd: i32, flags: u32, persistent: bool) -> Result<u32> {
    let id = attach(vm_fd, flags, ctl.owner(persistent))?;
    if persistent {
        // Cannot fail: this file controls at most `MAX_VMS` attachments,
        // and those it no longer does are reusable.
        if let Err(e) = ctl.record(id) {
            detach_where(|vm| vm.id == id, DetachReason::Requested);
            return Err(e);
        }
    }
    Ok(id)
}

/// `KVM_PFI_ATTACH_CLAIM`: the caller presents the descriptor `vm_fd` of
/// a VM attached persistently and becomes one of its controllers. Returns
/// its vm id; `ENOENT` if it is not attached, `EPERM` if it is attached by
/// another file (not persistently). Changes nothing else: no event.
pub(crate) fn claim(ctl: &Controller, vm_fd: i32) -> Result<u32> {
    let (id, owner) = vm::with_fd(vm_fd, |vm| (vm.id, vm.owner))?;
    match owner {
        Owner::Module => ctl.record(id).map(|()| id),
        Owner::File(f) if f == ctl.file => Ok(id),
        Owner::File(_) => Err(EPERM),
    }
}

/// Detaches the VM with `id` on behalf of `ctl`'s file.
pub(crate) fn detach(id: u32, ctl: &Controller) -> Result {
    // Checked and detached under separate lock holds: a concurrent detach of
    // the same id simply makes ours find nothing.
    vm::with_id(id, |vm| ctl.check(vm))??;
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
