// SPDX-License-Identifier: GPL-2.0

//! A VM's page-track notifier (KVM's write tracking): created on first use
//! by the report work, it tells us about guest writes to tracked frames,
//! which are either page-table pages of target walks (`track_page_tables`)
//! or protected target pages (`protect.rs`), and about memslots going away.

use core::ffi::c_void;

use kernel::sync::atomic::{
    Acquire,
    Full,
    Relaxed,
    Release, //
};

use crate::bindings::glue;
use crate::protect;
use crate::targets::protection::ProtectedWrite;
use crate::targets::Target;
use crate::tracking_changes::TrackingChanges;
use crate::vm::AttachedVm;

/// Called by KVM, in the writing vCPU's thread, after it emulated a guest
/// write of `bytes` bytes (`new`) at `gpa` to a tracked page.
///
/// # Safety
///
/// Only as the tracker's write callback (`kvm_pfi_tracker_create`):
/// `owner` is the `AttachedVm` the tracker was created for, alive until the
/// tracker is destroyed, and `new` is null or valid for `bytes` bytes.
unsafe extern "C" fn on_track_write(owner: *mut c_void, gpa: u64, new: *const u8, bytes: u32) {
    // SAFETY: `owner` is the `AttachedVm` the tracker was created for; it
    // outlives the tracker (destroyed in `destroy`, before the VM's last
    // reference can go).
    let vm = unsafe { &*owner.cast::<AttachedVm>() };
    let mut protected: [Option<ProtectedWrite>; protect::SHARED_FRAME_PAGES] = [None; protect::SHARED_FRAME_PAGES];
    let (table_write, n) = {
        let mut targets = vm.targets.lock();
        (targets.on_page_table_write(gpa), targets.protected_pages(gpa >> 12, &mut protected))
    };
    if table_write {
        // The pages whose walk went through it walk again (`report.rs`).
        vm.kick_report();
    }
    if n > 0 {
        let new = if new.is_null() {
            &[][..]
        } else {
            // SAFETY: KVM passes the `bytes` bytes it wrote.
            unsafe { core::slice::from_raw_parts(new, bytes as usize) }
        };
        protect::on_guest_write(vm, &protected[..n], gpa, new);
    }
}

/// Called by KVM when a memslot goes away, with its tracking.
///
/// # Safety
///
/// Only as the tracker's region callback: `owner` as for `on_track_write`.
unsafe extern "C" fn on_region_gone(owner: *mut c_void, gfn: u64, nr_pages: usize) {
    // SAFETY: as in `on_track_write`.
    let vm = unsafe { &*owner.cast::<AttachedVm>() };
    vm.targets.lock().on_region_gone(gfn, nr_pages as u64);
    vm.kick_report();
}

/// The VM's notifier, registered on first use (process context).
pub(crate) fn tracker(vm: &AttachedVm) -> Option<*mut glue::kvm_pfi_tracker> {
    let t = vm.tracker.load(Acquire);
    if !t.is_null() {
        return Some(t);
    }
    let mut err = 0;
    // SAFETY: the VM is referenced; we run in a kworker (the glue borrows the
    // VMM's mm to register); `vm` outlives the tracker (see `destroy`).
    let t = unsafe {
        glue::kvm_pfi_tracker_create(
            vm.kvm,
            Some(on_track_write),
            Some(on_region_gone),
            core::ptr::from_ref(vm).cast_mut().cast(),
            &mut err,
        )
    };
    if t.is_null() {
        // Without tracking, the walks at every exit still notice the update.
        return None;
    }
    vm.tracker.store(t, Release);
    Some(t)
}

/// Brings the tracking of page-table pages in line with the last walks.
pub(crate) fn sync_page_tables(vm: &AttachedVm) {
    // Off by default: with a page-table page write-tracked, KVM must emulate
    // every guest write to it, including the accessed/dirty bits the guest's
    // page walker sets; when that happens during event delivery (our #PF's,
    // for one) KVM cannot emulate it and fails the vCPU with an internal
    // error. The re-walks at exits confirm swap-in without it.
    if !crate::module_parameters::track_page_tables.value() {
        return;
    }
    if !vm.targets.lock().tracking_stale || vm.detached.load(Relaxed) {
        return;
    }
    if tracker(vm).is_none() {
        return;
    }
    let mut changes = TrackingChanges::begin(vm);
    loop {
        let mut adds = [0u64; 40];
        let mut removes = [0u64; 40];
        let (na, nr, more) = vm.targets.lock().take_tracking_changes(&mut adds, &mut removes);
        for &g in &adds[..na] {
            // Refused (a frame outside guest memory, no memory for the
            // table): no record may say it is tracked, or its later stop
            // would take another record's count.
            if changes.track(g, true) != 0 {
                vm.targets.lock().forget_tables_frame(g);
            }
        }
        // Each was added once before.
        for &g in &removes[..nr] {
            changes.track(g, false);
        }
        if !more {
            return;
        }
    }
}

/// Stops write tracking of a target's pages; the target was taken out of
/// the VM's targets under `changes`, so no memslot removal can have
/// changed what it records since.
pub(crate) fn untrack(changes: &mut TrackingChanges<'_>, t: &Target) {
    for p in t.pages.iter() {
        for &g in Iterator::chain(p.tables_tracked.as_slice().iter(), p.data_tracked.as_slice()) {
            changes.track(g, false);
        }
    }
}

/// Unregisters the notifier (the VM is being detached); waits for calls in
/// flight.
pub(crate) fn destroy(vm: &AttachedVm) {
    // Full (the LKMM's `xchg()`): the kernel's atomics have no AcqRel; it
    // is the next stronger ordering (was `AcqRel` with core atomics).
    let t = vm.tracker.xchg(core::ptr::null_mut(), Full);
    if !t.is_null() {
        // SAFETY: created for this VM by `tracker`, destroyed once here.
        unsafe { glue::kvm_pfi_tracker_destroy(vm.kvm, t) };
    }
}
