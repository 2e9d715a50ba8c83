// SPDX-License-Identifier: GPL-2.0

//! Signature scans of resident target pages, in the report work: each page
//! once per signature set (again after a guest write), with up to
//! `MAX_SPAN - 1` bytes of its already-scanned neighbours in the same
//! target on either side, so a match straddling two pages is found by the
//! scan of whichever of them was scanned last, and reported once.

use kernel::prelude::*;
use kernel::sync::atomic::{
    Relaxed,
    Release, //
};

use crate::bindings::glue;

use crate::guest_mem::{
    Context,
    GuestMemory, //
};
use crate::events::{
    self,
    Detection,
    Record, //
};
use crate::pfi_core::scan_window::{
    Window,
    PAGE_SIZE, //
};
use crate::pfi_core::sigs::{
    self,
    Match,
    Matcher, //
};
use crate::sigs::{
    SigSet,
    BYTES_SCANNED,
    DETECTIONS,
    PAGES_SCANNED, //
};
use crate::targets::scans::ScanJob;
use crate::vm::AttachedVm;

/// Bytes of a neighbour page that can take part in a match with this one.
const CONTEXT: usize = sigs::MAX_SPAN - 1;
/// Detections reported per page scan; a page full of matches is reported
/// by its first ones rather than flooding the event channels.
pub(crate) const MAX_DETECTIONS_PER_PAGE: u32 = 32;

/// Pages one report run scans at most; the run queues another for the rest,
/// so a guest that keeps writing to protected pages cannot hold the worker.
const PAGES_PER_RUN: usize = 64;

/// Scans resident target pages of `vm` not yet scanned with the active set.
pub(crate) fn scan_pages(vm: &AttachedVm) {
    let Some(set) = crate::sigs::active() else { return };
    let Some(matcher) = set.matcher() else { return };
    let mut buf: Option<KVVec<u8>> = None;
    for _ in 0..PAGES_PER_RUN / 8 {
        if vm.detached.load(Relaxed) {
            return;
        }
        let mut jobs = [None; 8];
        let n = vm.targets.lock().take_unscanned(set.generation, &mut jobs);
        if n > 0 && buf.is_none() {
            buf = KVVec::from_elem(0u8, CONTEXT + PAGE_SIZE + CONTEXT, GFP_KERNEL).ok();
        }
        for j in jobs[..n].iter().flatten() {
            let ok = buf.as_mut().is_some_and(|b| scan_page(vm, &set, &matcher, j, b));
            vm.targets.lock().scan_done(j.target_id, j.index, ok);
            // A page of a large set may take a while: never hold the CPU
            // for a whole run.
            // SAFETY: the report work, a kworker: may sleep, holds no lock.
            unsafe { glue::kvm_pfi_cond_resched() };
        }
        if n < jobs.len() {
            return;
        }
    }
    vm.kick_report();
}

fn read(vm: &AttachedVm, gpa: u64, out: &mut [u8]) -> bool {
    // SAFETY: the VM is referenced (the work holds its attachment); a kworker.
    unsafe { GuestMemory::new(vm.kvm, Context::Kworker) }.read(gpa, out) == 0
}

/// `buf` holds `[CONTEXT][page][CONTEXT]`; the neighbours fill what they
/// can. Returns whether the page could be read.
fn scan_page(vm: &AttachedVm, set: &SigSet, matcher: &Matcher<'_>, j: &ScanJob, buf: &mut [u8]) -> bool {
    let (before, rest) = buf.split_at_mut(CONTEXT);
    let (page, after) = rest.split_at_mut(PAGE_SIZE);
    if !read(vm, j.gpa, page) {
        return false;
    }
    let pre = match j.prev_gpa {
        Some(g) if read(vm, g + (PAGE_SIZE - CONTEXT) as u64, before) => CONTEXT,
        _ => 0,
    };
    let post = match j.next_gpa {
        Some(g) if read(vm, g, after) => CONTEXT,
        _ => 0,
    };
    let hay = &buf[CONTEXT - pre..CONTEXT + PAGE_SIZE + post];
    let mut reported = 0u32;
    let window = Window { pre, only: j.only };
    matcher.scan(hay, &mut |m: Match| {
        let Some(start) = window.report(m.start, m.len) else { return true };
        let offset = start.offset as u64;
        let (gva, gpa) = if start.in_prev {
            (j.gva - (PAGE_SIZE as u64 - offset), j.prev_gpa.unwrap_or(0) + offset)
        } else {
            (j.gva + offset, j.gpa + offset)
        };
        events::emit(Record::detection(&Detection {
            vm_id: vm.id,
            target_id: j.target_id,
            cr3: j.cr3,
            gva,
            gpa,
            offset: offset as u32,
            length: m.len as u32,
            rule_id: m.rule,
            rule_name: matcher.rule_name(m.rule),
            generation: set.generation,
            how: j.how,
            injections: j.injections,
        }));
        DETECTIONS.fetch_add(1, Relaxed);
        reported += 1;
        reported < MAX_DETECTIONS_PER_PAGE
    });
    // Counted after its detections reached the sinks: a reader that sees
    // the count has its events (the selftests rely on it).
    events::flush();
    BYTES_SCANNED.fetch_add(hay.len() as u64, Relaxed);
    PAGES_SCANNED.fetch_add(1, Release);
    true
}
