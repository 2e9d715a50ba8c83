// SPDX-License-Identifier: GPL-2.0

//! Changes of a VM's KVM write tracking: the one way the module starts or
//! stops tracking a guest frame (`tracking.rs` for page-table frames,
//! `protect.rs` for protected pages, target removal and detach).

use kernel::prelude::*;

use crate::bindings::glue;
use crate::pfi_core::frame_refs::Change;
use crate::targets::frames::FrameTable;
use crate::vm::AttachedVm;

/// Held while a VM's write tracking changes: serialises the changes with
/// each other (`vm.tracking`) and with KVM's memslot updates (the glue's
/// memslots lock), so that `tracking::on_region_gone`, which forgets the
/// tracking a removed memslot took with it, never runs between a change and
/// its record in the targets. Otherwise a frame tracked in a memslot that went away
/// could be "untracked" later in a new memslot at the same address, taking
/// a count KVM's own shadow paging may hold. Order: `vm.tracking`, then
/// the memslots lock, then the targets lock (which `on_region_gone` takes
/// under KVM's memslots lock).
///
/// KVM is asked once per frame however many records hold it
/// (`FrameTable`): a record's start or stop goes to KVM only for the first
/// or the last record of its frame.
pub(crate) struct TrackingChanges<'a> {
    vm: &'a AttachedVm,
    frames: kernel::sync::MutexGuard<'a, FrameTable>,
}

impl<'a> TrackingChanges<'a> {
    /// Sleeps; process context.
    pub(crate) fn begin(vm: &'a AttachedVm) -> Self {
        let mut frames = vm.tracking.lock();
        // SAFETY: the VM is referenced; process context; released in drop.
        unsafe { glue::kvm_pfi_memslots_lock(vm.kvm) };
        // Memslots removed since the last change took their frames' counts
        // with them: forget those before any count changes.
        {
            let mut targets = vm.targets.lock();
            let gone = targets.take_frames_gone();
            frames.forget(&gone, &targets);
        }
        TrackingChanges { vm, frames }
    }

    /// A record starts (`add`) or stops holding `gfn`; 0, or the error that
    /// kept it from being tracked (the record must not say it is then).
    pub(crate) fn track(&mut self, gfn: u64, add: bool) -> i32 {
        let change = if add {
            match self.frames.add(gfn) {
                Ok(c) => c,
                Err(e) => return e.to_errno(),
            }
        } else {
            self.frames.remove(gfn)
        };
        match change {
            Change::First | Change::Last => {
                // SAFETY: the VM is referenced; process context; the
                // memslots lock is held (`begin`).
                let r = unsafe { glue::kvm_pfi_track_gfn(self.vm.kvm, gfn, i32::from(add)) };
                if r != 0 && add {
                    // Not tracked: the record does not hold it either.
                    let _ = self.frames.remove(gfn);
                }
                r
            }
            Change::Kept | Change::NotHeld => 0,
            Change::Full => ENOMEM.to_errno(),
        }
    }
}

impl Drop for TrackingChanges<'_> {
    fn drop(&mut self) {
        // SAFETY: taken in `begin`; `vm.tracking` is released after this.
        unsafe { glue::kvm_pfi_memslots_unlock(self.vm.kvm) };
    }
}
