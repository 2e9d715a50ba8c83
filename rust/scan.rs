// SPDX-License-Identifier: GPL-2.0

//! Signature scans of resident target pages, in the report work: each page
//! once per signature set (again after a guest write), with up to
//! `MAX_SPAN - 1` bytes of its already-scanned neighbours in the same
//! target on either side, so a match straddling two pages is found by the
//! scan of whichever of them was scanned last, and reported once.

use core::sync::atomic::Ordering;

use kernel::prelude::*;

use crate::bindings::glue;
use crate::netlink::{
    self,
    Detection, //
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
use crate::targets::ScanJob;
use crate::vm::AttachedVm;

const PAGE_SIZE: usize = 4096;
/// Bytes of a neighbour page that can take part in a match with this one.
const CONTEXT: usize = sigs::MAX_SPAN - 1;
/// Detections reported per page scan; a page full of matches is reported
/// by its first ones rather than flooding the event channels.
pub(crate) const MAX_DETECTIONS_PER_PAGE: u32 = 32;

/// Scans every resident target page of `vm` not yet scanned with the
/// active set.
pub(crate) fn scan_pages(vm: &AttachedVm) {
    let Some(set) = crate::sigs::active() else { return };
    let Some(matcher) = set.matcher() else { return };
    let mut buf: Option<KVVec<u8>> = None;
    loop {
        if vm.detached.load(Ordering::Relaxed) {
            return;
        }
        let mut jobs = [None; 8];
        let n = vm.targets.lock().take_unscanned(set.generation, &mut jobs);
        if n > 0 && buf.is_none() {
            buf = KVVec::from_elem(0u8, CONTEXT + PAGE_SIZE + CONTEXT, GFP_KERNEL).ok();
        }
        let Some(b) = buf.as_mut() else { return };
        for j in jobs[..n].iter().flatten() {
            scan_page(vm, &set, &matcher, j, b);
        }
        if n < jobs.len() {
            return;
        }
    }
}

fn read(vm: &AttachedVm, gpa: u64, out: &mut [u8]) -> bool {
    // SAFETY: the VM is referenced (the work holds its attachment); we run
    // in a kworker; `out` is writable for its length, within one page.
    unsafe { glue::kvm_pfi_read_guest_remote(vm.kvm, gpa, out.as_mut_ptr().cast(), out.len() as u32) == 0 }
}

/// `buf` holds `[CONTEXT][page][CONTEXT]`; the neighbours fill what they can.
fn scan_page(vm: &AttachedVm, set: &SigSet, matcher: &Matcher<'_>, j: &ScanJob, buf: &mut [u8]) {
    let (before, rest) = buf.split_at_mut(CONTEXT);
    let (page, after) = rest.split_at_mut(PAGE_SIZE);
    if !read(vm, j.gpa, page) {
        return;
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
    PAGES_SCANNED.fetch_add(1, Ordering::Relaxed);
    BYTES_SCANNED.fetch_add(hay.len() as u64, Ordering::Relaxed);
    let mut reported = 0u32;
    matcher.scan(hay, &mut |m: Match| {
        // Only matches touching this page: the rest are the neighbours'.
        // After writes, only those touching what they changed: new ones.
        let (lo, hi) = j.only.map_or((0, PAGE_SIZE), |(a, b)| (a as usize, b as usize));
        if m.start >= pre + hi || m.start + m.len <= pre + lo {
            return true;
        }
        // The first matched byte, in this page or the previous one.
        let (gva, gpa, offset) = if m.start < pre {
            let back = (pre - m.start) as u64;
            let prev = j.prev_gpa.unwrap_or(0);
            (j.gva - back, prev + PAGE_SIZE as u64 - back, PAGE_SIZE as u64 - back)
        } else {
            let o = (m.start - pre) as u64;
            (j.gva + o, j.gpa + o, o)
        };
        netlink::detection(&Detection {
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
        });
        DETECTIONS.fetch_add(1, Ordering::Relaxed);
        reported += 1;
        reported < MAX_DETECTIONS_PER_PAGE
    });
}
