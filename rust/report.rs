// SPDX-License-Identifier: GPL-2.0

//! Reporting, out of the probes: a probe that sees a target page settle
//! queues the VM's report work, which sends the events (and, for
//! `KVM_PFI_TARGET_READ` targets, reads the page through the VMM's address
//! space, which may sleep), then protects (`protect.rs`) and scans
//! (`scan.rs`) what became resident.

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use kernel::prelude::*;

use crate::bindings::{
    glue,
    uapi, //
};
use crate::guest_mem::{
    Context,
    GuestMemory, //
};
use crate::netlink;
use crate::pfi_core::walk;
use crate::targets::{
    Settled,
    Target, //
};
use crate::vm::AttachedVm;

const BATCH: usize = 8;
/// Bytes of page contents an event carries.
const DATA_LEN: usize = uapi::KVM_PFI_EVENT_DATA_LEN as usize;

/// The report work: follows walks with write tracking, sends an event for
/// every settled, unreported page of `vm`, then protects and scans them.
pub(crate) fn run(vm: &AttachedVm) {
    walk_new_pages(vm);
    sync_tracking(vm);
    settled_pages(vm);
    crate::protect::sync(vm);
    crate::protect::report_writes(vm);
    crate::scan::scan_pages(vm);
}

fn settled_pages(vm: &AttachedVm) {
    let mut buf: Option<KVVec<u8>> = None;
    loop {
        if vm.detached.load(Ordering::Relaxed) {
            return;
        }
        let mut batch = [None; BATCH];
        let n = vm.targets.lock().take_settled(&mut batch);
        for s in batch.iter().flatten() {
            send(vm, s, &mut buf);
        }
        if n < BATCH {
            return;
        }
    }
}

fn send(vm: &AttachedVm, s: &Settled, buf: &mut Option<KVVec<u8>>) {
    if s.info.state != uapi::KVM_PFI_PAGE_RESIDENT {
        netlink::page_failed(vm.id, s);
        return;
    }
    let mut data = None;
    if s.flags & uapi::KVM_PFI_TARGET_READ != 0 {
        if buf.is_none() {
            *buf = KVVec::from_elem(0u8, DATA_LEN, GFP_KERNEL).ok();
        }
        if let Some(b) = buf.as_mut() {
            // `gpa` is the GVA's own 4 KiB page, also in a larger mapping.
            // SAFETY: the VM is referenced (we hold an `Arc` of its
            // attachment); a kworker.
            if unsafe { GuestMemory::new(vm.kvm, Context::Kworker) }.read(s.info.gpa, b) == 0 {
                data = Some(&b[..]);
            }
        }
    }
    netlink::page_resident(vm.id, s, data);
}

/// Walks pages no probe has walked yet, so a target added to an idle VM is
/// classified (and a resident page reported) at once rather than at the
/// VM's next exit. Needs the guest's paging mode, which the probes record;
/// before any vCPU ran, the probes' first walks do it.
fn walk_new_pages(vm: &AttachedVm) {
    let Some(paging) = vm.paging() else { return };
    // SAFETY: the VM is referenced (we hold its attachment); a kworker.
    let mut mem = unsafe { GuestMemory::new(vm.kvm, Context::Kworker) };
    loop {
        let mut todo = [(0u32, 0usize, 0u64, 0u64); 32];
        let n = vm.targets.lock().unwalked(&mut todo);
        for &(target_id, index, root, gva) in &todo[..n] {
            if vm.detached.load(Ordering::Relaxed) {
                return;
            }
            let w = walk::walk(&mut mem, &paging, root, gva);
            // SAFETY: reads the clock.
            let now = unsafe { glue::kvm_pfi_now_ns() };
            vm.targets.lock().apply_remote_walk(target_id, index, &w, now);
        }
        if n < todo.len() {
            return;
        }
    }
}

/// Called by KVM, in the writing vCPU's thread, after it emulated a guest
/// write of `bytes` bytes (`new`) at `gpa` to a tracked page.
unsafe extern "C" fn on_track_write(owner: *mut c_void, gpa: u64, new: *const u8, bytes: u32) {
    // SAFETY: `owner` is the `AttachedVm` the tracker was created for; it
    // outlives the tracker (destroyed in `teardown`, before the VM's last
    // reference can go).
    let vm = unsafe { &*owner.cast::<AttachedVm>() };
    let mut protected = [None; crate::protect::SHARED_FRAME_PAGES];
    let (table_write, n) = {
        let mut targets = vm.targets.lock();
        (targets.on_page_table_write(gpa), targets.protected_pages(gpa >> 12, &mut protected))
    };
    if table_write {
        vm.busy.store(true, Ordering::Relaxed);
    }
    if n > 0 {
        let new = if new.is_null() {
            &[][..]
        } else {
            // SAFETY: KVM passes the `bytes` bytes it wrote.
            unsafe { core::slice::from_raw_parts(new, bytes as usize) }
        };
        crate::protect::on_guest_write(vm, &protected[..n], gpa, new);
    }
}

/// Called by KVM when a memslot goes away, with its tracking.
unsafe extern "C" fn on_region_gone(owner: *mut c_void, gfn: u64, nr_pages: usize) {
    // SAFETY: as in `on_track_write`.
    let vm = unsafe { &*owner.cast::<AttachedVm>() };
    vm.targets.lock().on_region_gone(gfn, nr_pages as u64);
    vm.busy.store(true, Ordering::Relaxed);
}

/// The VM's page-track notifier, registered on first use (process context).
pub(crate) fn tracker(vm: &AttachedVm) -> Option<*mut glue::kvm_pfi_tracker> {
    let t = vm.tracker.load(Ordering::Acquire);
    if !t.is_null() {
        return Some(t);
    }
    let mut err = 0;
    // SAFETY: the VM is referenced; we run in a kworker (the glue borrows the
    // VMM's mm to register); `vm` outlives the tracker (see `teardown`).
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
    vm.tracker.store(t, Ordering::Release);
    Some(t)
}

/// Brings KVM's write tracking in line with the last walks.
fn sync_tracking(vm: &AttachedVm) {
    // Off by default: with a page-table page write-tracked, KVM must emulate
    // every guest write to it, including the accessed/dirty bits the guest's
    // page walker sets; when that happens during event delivery (our #PF's,
    // for one) KVM cannot emulate it and fails the vCPU with an internal
    // error. The re-walks at exits confirm swap-in without it.
    if !crate::module_parameters::track_page_tables.value() {
        return;
    }
    if !vm.targets.lock().tracking_stale || vm.detached.load(Ordering::Relaxed) {
        return;
    }
    let _serial = vm.tracking.lock();
    if tracker(vm).is_none() {
        return;
    }
    loop {
        let mut adds = [0u64; 40];
        let mut removes = [0u64; 40];
        let (na, nr, more) = vm.targets.lock().take_tracking_changes(&mut adds, &mut removes);
        for &g in &adds[..na] {
            // SAFETY: the VM is referenced; process context.
            unsafe { glue::kvm_pfi_track_gfn(vm.kvm, g, 1) };
        }
        for &g in &removes[..nr] {
            // SAFETY: as above; each gfn was added once before.
            unsafe { glue::kvm_pfi_track_gfn(vm.kvm, g, 0) };
        }
        if !more {
            return;
        }
    }
}

/// Stops write tracking of a removed target's pages. The caller holds
/// `vm.tracking`, or the report work can no longer run.
pub(crate) fn untrack(vm: &AttachedVm, t: &Target) {
    for p in t.pages.iter() {
        for &g in Iterator::chain(p.tables_tracked.as_slice().iter(), p.data_tracked.as_slice()) {
            // SAFETY: the VM is referenced; process context; added before.
            unsafe { glue::kvm_pfi_track_gfn(vm.kvm, g, 0) };
        }
    }
}

/// The VM is being detached: remove every target (announcing it), stop
/// tracking, unregister the notifier. The report work is flushed already.
pub(crate) fn teardown(vm: &AttachedVm) {
    let mut all = [const { None }; crate::targets::MAX_TARGETS];
    vm.targets.lock().take_all(&mut all);
    for t in all.iter().flatten() {
        untrack(vm, t);
        netlink::target_removed(vm.id, t.id);
    }
    let t = vm.tracker.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !t.is_null() {
        // SAFETY: created for this VM by `tracker`, destroyed once here;
        // waits for notifier calls in flight.
        unsafe { glue::kvm_pfi_tracker_destroy(vm.kvm, t) };
    }
}
