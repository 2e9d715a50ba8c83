// SPDX-License-Identifier: GPL-2.0

//! The report work, one work item per attached VM: everything about the VM
//! that may sleep or take long, out of the probes. A probe that sees a
//! target page settle (or anything else to do) queues it, and so do the
//! ioctls, the notifier and the sweep (`sweep.rs`); it walks the pages due
//! for a walk through the VMM's memory, follows write tracking (`tracking.rs`),
//! emits the page events (for `KVM_PFI_TARGET_READ` targets with the
//! page's bytes), then protects (`protect.rs`) and scans (`scan.rs`) what
//! became resident.

use kernel::prelude::*;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::workqueue::WorkItem;

use crate::bindings::{
    glue,
    uapi, //
};
use crate::events::{
    self,
    PageEvent,
    Record, //
};
use crate::guest_mem::{
    Context,
    GuestMemory, //
};
use crate::pfi_core::walk::WalkOutcome;
use crate::targets::page::{
    walk_target,
    TargetWalk, //
};
use crate::targets::probe::DueWalk;
use crate::targets::Settled;
use crate::tracking;
use crate::tracking_changes;
use crate::vm::AttachedVm;

// `vm.rs` declares the work item; this is what it does.
impl WorkItem for AttachedVm {
    type Pointer = Arc<AttachedVm>;

    fn run(this: Arc<AttachedVm>) {
        run(&this);
    }
}

const BATCH: usize = 8;
/// Bytes of page contents an event carries.
const DATA_LEN: usize = uapi::KVM_PFI_EVENT_DATA_LEN as usize;

/// The report work: follows walks with write tracking, sends an event for
/// every settled, unreported page of `vm`, then protects and scans them.
fn run(vm: &AttachedVm) {
    // Once for the whole run: every walk, read, protection and scan below
    // reads guest memory through the VMM's mm.
    // SAFETY: the VM is referenced (we hold an `Arc` of its attachment);
    // a kworker, which uses no mm of its own; dropped at the end of `run`.
    let _mm = unsafe { crate::guest_mem::BorrowedMm::new(vm.kvm) };
    // Emulated writes gathered since the last run (`protect.rs`).
    crate::protect::flush_gathered(vm);
    walk_due_pages(vm);
    tracking::sync_page_tables(vm);
    settled_pages(vm);
    let wants_protection = {
        let mut targets = vm.targets.lock();
        // Pages settled, or came back (`resident_lost`): the entry probes'
        // set of address spaces with pages to inject follows.
        targets.refresh_ready_spaces();
        targets.wants_protection()
    };
    if wants_protection {
        // Protection write-tracks through the notifier.
        let _ = tracking::tracker(vm);
    }
    crate::protect::sync(vm);
    crate::scan::scan_pages(vm);
}

// Each stage's batch is its own frame, not a slice of `run`'s.
#[inline(never)]
fn settled_pages(vm: &AttachedVm) {
    loop {
        if vm.detached.load(Relaxed) {
            return;
        }
        let mut batch = [None; BATCH];
        let n = vm.targets.lock().take_settled(&mut batch);
        for s in batch.iter().flatten() {
            report_page(vm, s);
        }
        if n < BATCH {
            return;
        }
    }
}

fn report_page(vm: &AttachedVm, s: &Settled) {
    let page = PageEvent { vm_id: vm.id, target_id: s.target_id, cr3: s.cr3, info: s.info };
    if s.info.state != uapi::KVM_PFI_PAGE_RESIDENT {
        events::emit(Record::page_failed(&page));
        return;
    }
    let mut data = None;
    if s.flags & uapi::KVM_PFI_TARGET_READ != 0 {
        if let Ok(mut b) = KVec::from_elem(0u8, DATA_LEN, GFP_KERNEL) {
            // SAFETY: the VM is referenced (we hold an `Arc` of its
            // attachment); a kworker.
            let mut mem = unsafe { GuestMemory::new(vm.kvm, Context::Kworker) };
            // `gpa` is the GVA's own 4 KiB page, also in a larger mapping.
            if mem.read(s.info.gpa, &mut b) == 0 {
                if let Some(w) = left_its_frame(vm, &mut mem, s) {
                    // SAFETY: reads the clock.
                    let now = unsafe { glue::kvm_pfi_now_ns() };
                    vm.targets.lock().resident_lost(s.target_id, s.info.gva, &w, now);
                    vm.kick_report();
                    return;
                }
                data = Some(b);
            }
        }
    }
    events::emit(Record::page_resident(&page, data));
}

/// Whether the page has left the frame its settling walk found since then,
/// with the walk that shows it. The guest runs on while the report work
/// waits its turn: it may swap the page out again or unmap it, or the
/// process may exit, and the frame then holds someone else's bytes. Bytes
/// read before a walk that still ends at that frame are the page's.
fn left_its_frame(vm: &AttachedVm, mem: &mut GuestMemory, s: &Settled) -> Option<TargetWalk> {
    let paging = vm.paging()?;
    let w = walk_target(mem, &paging, s.root, s.info.gva);
    match w.walk.outcome {
        WalkOutcome::Resident { gpa, .. } if gpa & !(DATA_LEN as u64 - 1) == s.info.gpa => None,
        _ => Some(w),
    }
}

/// Walks the pages due for a walk (never walked, a table write, a memslot
/// change, a timed-out fault its vCPU could not walk, a walk that could not
/// read), so that a target added to an idle VM is classified (and a
/// resident page reported) at once. One pass over the pages. Needs the
/// guest's paging mode, which the probes record; before any vCPU ran in
/// long mode, the next run after they have does it.
#[inline(never)]
fn walk_due_pages(vm: &AttachedVm) {
    let Some(paging) = vm.paging() else { return };
    let mut from = (0, 0);
    loop {
        let mut todo = [DueWalk::NONE; 32];
        let n = vm.targets.lock().due_walks(&mut from, &mut todo);
        crate::remote_walks::walk_and_apply(vm, &paging, &todo[..n]);
        if n < todo.len() || vm.detached.load(Relaxed) {
            return;
        }
    }
}

/// The VM is being detached: remove every target (announcing it), stop
/// tracking, unregister the notifier. The report work is flushed already.
pub(crate) fn teardown(vm: &AttachedVm) {
    let mut all = [const { None }; crate::targets::MAX_TARGETS];
    let mut changes = tracking_changes::TrackingChanges::begin(vm);
    vm.targets.lock().take_all(&mut all);
    for t in all.iter().flatten() {
        tracking::untrack(&mut changes, t);
    }
    drop(changes);
    for t in all.iter().flatten() {
        events::emit(Record::target_removed(vm.id, t.id));
    }
    tracking::destroy(vm);
}
