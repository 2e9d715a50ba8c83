// SPDX-License-Identifier: GPL-2.0

//! The sweep: one delayed work per VM with targets, every [`PERIOD_MS`],
//! doing what the probes no longer do at exits, so that no probe's work
//! grows with the number of pages (Documentation/design.rst, "The hot
//! path"):
//!
//! * timeouts of delivered faults whose vCPU does not exit (halted);
//! * periodic walks of pages waiting for context (every 5 s), to notice
//!   the guest bringing a page in by itself;
//! * periodic walks of reported resident pages (every 5 s), to
//!   notice the guest swapping one out again: the page is reported anew
//!   once a fault has brought it back;
//! * walks that are due and that the report work has not made yet.
//!
//! A run looks at every page under the targets lock, [`PAGES_PER_LOCK`] at
//! a time, and walks at most [`WALKS_PER_RUN`] of them through the VMM's
//! memory, outside the lock. With more due than that, the periods stretch:
//! a page waits at most `pages / (WALKS_PER_RUN * runs per second)` seconds.

use kernel::prelude::*;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::time::Jiffies;
use kernel::workqueue::WorkItem;

use crate::bindings::glue;
use crate::guest_mem::BorrowedMm;
use crate::vm::{
    AttachedVm,
    SWEEP, //
};

/// How often the sweep runs.
const PERIOD_MS: u32 = 250;
/// Walks one run makes at most (each of at most five 8-byte reads).
const WALKS_PER_RUN: usize = 1024;
/// Pages one hold of the targets lock looks at.
const PAGES_PER_LOCK: usize = 512;

fn period() -> Jiffies {
    kernel::time::msecs_to_jiffies(PERIOD_MS)
}

/// Queues the sweep's next run on `vm`, unless one is queued.
pub(crate) fn start(vm: &AttachedVm) {
    vm.queue_delayed::<SWEEP>(period());
}

// `vm.rs` declares the work item; this is what it does.
impl WorkItem<SWEEP> for AttachedVm {
    type Pointer = Arc<AttachedVm>;

    fn run(this: Arc<AttachedVm>) {
        run(&this);
        // Runs while the VM has targets; a target add starts it again.
        if !this.targets.lock().is_empty() {
            start(&this);
        }
    }
}

fn now() -> u64 {
    // SAFETY: reads the clock.
    unsafe { glue::kvm_pfi_now_ns() }
}

fn run(vm: &AttachedVm) {
    if vm.detached.load(Relaxed) {
        return;
    }
    // Before any vCPU ran in long mode there is nothing to walk or time out.
    let Some(paging) = vm.paging() else { return };
    let Ok(mut due) = KVec::with_capacity(WALKS_PER_RUN, GFP_KERNEL) else { return };
    let start = now();
    let mut from = (0, 0);
    let mut work = false;
    loop {
        let (done, settled) = vm.targets.lock().sweep_collect(start, &mut from, PAGES_PER_LOCK, &mut due);
        work |= settled;
        if done || due.len() == due.capacity() {
            break;
        }
    }
    if !due.is_empty() {
        // SAFETY: the VM is referenced (we hold an `Arc` of its
        // attachment); a kworker, which uses no mm of its own; dropped
        // right after the walks.
        let _mm = unsafe { BorrowedMm::new(vm.kvm) };
        work |= crate::remote_walks::walk_and_apply(vm, &paging, &due);
    }
    if work {
        // Pages settled or came back: report them, follow their tables,
        // republish the address spaces with pages to inject.
        vm.kick_report();
    }
}
