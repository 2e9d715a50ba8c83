// SPDX-License-Identifier: GPL-2.0

//! Walks of target pages outside the probes (the report work's and the
//! sweep's): through the VMM's mm, with a table cache
//! (`pfi_core::table_cache`: each table page copied once per batch, so
//! consecutive pages of a target cost a few page copies, not five reads
//! each), outside the targets lock; their results applied under the lock
//! [`CHUNK`] at a time, each only if no fresher walk of the page came in
//! between.

use kernel::prelude::*;
use kernel::sync::atomic::Relaxed;

use crate::bindings::glue;
use crate::guest_mem::{
    Context,
    GuestMemory, //
};
use crate::pfi_core::table_cache::{
    TableCache,
    PAGE, //
};
use crate::pfi_core::walk::GuestPaging;
use crate::targets::page::{
    walk_target,
    TargetWalk, //
};
use crate::targets::probe::DueWalk;
use crate::targets::vma_gate;
use crate::vm::AttachedVm;

/// Table pages the cache holds (a walk touches at most five).
const CACHE_PAGES: usize = 8;
/// Walks applied per hold of the targets lock.
const CHUNK: usize = 16;

/// Walks `due` and applies the walks; returns whether the report work has
/// something to do (a page settled or came back, tracking to follow). The
/// caller has borrowed the VMM's mm (`guest_mem::BorrowedMm`). Stops early
/// once the VM is detached.
pub(crate) fn walk_and_apply(vm: &AttachedVm, paging: &GuestPaging, due: &[DueWalk]) -> bool {
    if due.is_empty() {
        return false;
    }
    let Ok(mut cache_pages) = KVec::from_elem(0u8, CACHE_PAGES * PAGE, GFP_KERNEL) else { return false };
    let Ok(mut done) = KVec::<(DueWalk, TargetWalk)>::with_capacity(CHUNK, GFP_KERNEL) else { return false };
    // SAFETY: the VM is referenced (the caller holds its attachment); a
    // kworker with the VMM's mm borrowed.
    let mut mem = unsafe { GuestMemory::new(vm.kvm, Context::Kworker) };
    let view = if due.iter().any(|d| d.mm != 0) { vm.targets.lock().linux_view() } else { None };
    let mut cache = TableCache::new(&mut mem, &mut cache_pages);
    let mut work = false;
    for chunk in due.chunks(CHUNK) {
        if vm.detached.load(Relaxed) {
            return work;
        }
        done.clear();
        for d in chunk {
            let mut w = walk_target(&mut cache, paging, d.root, d.gva);
            // Its process exited under the walk: the tables it read may be
            // freed frames (Documentation/guest-linux.rst, "Processes that
            // exit").
            if let Some(view) = view.as_ref().filter(|_| d.mm != 0 && !w.space_gone) {
                w.space_gone = vma_gate::process_gone(view, &mut cache, d.mm, d.root);
            }
            // Capacity `CHUNK`: no allocation.
            let _ = done.push((*d, w), GFP_KERNEL);
        }
        // SAFETY: reads the clock.
        let now = unsafe { glue::kvm_pfi_now_ns() };
        let mut targets = vm.targets.lock();
        for (d, w) in done.iter() {
            work |= targets.apply_remote_walk(d, w, now);
        }
    }
    work
}
