// SPDX-License-Identifier: GPL-2.0

//! Protection of target pages (`KVM_PFI_TARGET_PROTECT`): their frames are
//! write-tracked through KVM's page-track notifier, so every guest write to
//! them exits and is emulated by KVM, which then calls us with the bytes
//! written. We report the write (`write-attempt`) and, with
//! `KVM_PFI_TARGET_ENFORCE`, put the page's kept bytes back before the
//! writing vCPU resumes.
//!
//! The window (Documentation/design.rst): KVM stores the guest's bytes
//! before it notifies us, so another vCPU reading the page in between sees
//! them for the few microseconds until the restore; the writing vCPU never
//! does. Writes that are not guest CPU writes (device DMA, the VMM) are not
//! tracked by KVM and not seen.

use kernel::prelude::*;
use kernel::sync::atomic::{
    Acquire,
    Relaxed, //
};

use crate::bindings::glue;
use crate::events::{
    self,
    Record,
    WriteAttempt, //
};
use crate::guest_mem::{
    Context,
    GuestMemory, //
};
use crate::pfi_core::walk::{
    self,
    WalkOutcome, //
};
use crate::pfi_core::writes::{
    self as writes,
    Span, //
};
use crate::targets::protection::{
    Gathered,
    ProtectJob,
    ProtectedWrite, //
};
use crate::tracking_changes::TrackingChanges;
use crate::vm::AttachedVm;

const PAGE_SIZE: usize = 4096;
/// Bytes restored per lock hold (copied out of the kept page on the stack).
const RESTORE_CHUNK: usize = 64;


/// Protected pages of one frame handled per guest write; a frame shared by
/// more targets than this is reported for the first ones only.
pub(crate) const SHARED_FRAME_PAGES: usize = 4;

/// Where the page's GVA translates now.
enum Mapping {
    Same,
    Moved,
    Unknown,
}

fn mapping(vm: &AttachedVm, pw: &ProtectedWrite, gfn: u64, ctx: Context) -> Mapping {
    let Some(paging) = vm.paging() else { return Mapping::Unknown };
    // The guest may have remapped the GVA: walk again, with reads that may
    // fault the VMM's page in (a notifier or the report work may sleep), so
    // a table page the host swapped out does not make the answer unknown.
    // SAFETY: the VM is referenced; the caller runs in `ctx`.
    let mut mem = unsafe { GuestMemory::new(vm.kvm, ctx) };
    let w = walk::walk(&mut mem, &paging, pw.root, pw.gva);
    match w.outcome {
        WalkOutcome::Resident { gpa, .. } if gpa >> 12 == gfn => Mapping::Same,
        WalkOutcome::Resident { .. } | WalkOutcome::NotPresent { .. } => Mapping::Moved,
        WalkOutcome::Invalid(_) => Mapping::Unknown,
    }
}

/// Puts the kept bytes of `[offset, end)` of frame `gfn` back.
fn restore(vm: &AttachedVm, gfn: u64, offset: usize, end: usize) -> bool {
    let mut off = offset;
    while off < end {
        let n = (end - off).min(RESTORE_CHUNK);
        let mut buf = [0u8; RESTORE_CHUNK];
        if !vm.targets.lock().shadow_bytes(gfn, off, &mut buf[..n]) {
            return false;
        }
        let gpa = (gfn << 12) + off as u64;
        // SAFETY: we run in a thread of the VM's VMM (the notifier is called
        // by the writing vCPU), may sleep, and `buf` holds `n` bytes.
        if unsafe { glue::kvm_pfi_write_guest_vcpu_thread(vm.kvm, gpa, buf.as_ptr().cast(), n as u32) } != 0 {
            return false;
        }
        off += n;
    }
    true
}

/// The notifier side: the guest wrote `new` at `gpa`, a frame of the
/// protected pages `pages`, and KVM emulated it. Runs in the writing vCPU's
/// thread, before it resumes. Enforced pages are restored and reported at
/// once; other writes are gathered (a string store is one call per
/// element) and reported when the burst ends (`seal_gathered`,
/// `flush_gathered`).
pub(crate) fn on_guest_write(vm: &AttachedVm, pages: &[Option<ProtectedWrite>], gpa: u64, new: &[u8]) {
    if pages.iter().flatten().any(|p| p.enforce) {
        report(vm, pages, gpa, new, Context::VcpuThread, true);
    } else {
        gather(vm, gpa, new);
    }
}

/// Reports gathered writes of `bytes` at `gpa` to the protected pages of
/// its frame (none enforced: enforced pages are reported at once). Runs in
/// `ctx`.
fn report_write(vm: &AttachedVm, gpa: u64, bytes: &[u8], ctx: Context) {
    let mut pages: [Option<ProtectedWrite>; SHARED_FRAME_PAGES] = [None; SHARED_FRAME_PAGES];
    let n = vm.targets.lock().protected_pages(gpa >> 12, &mut pages);
    if n > 0 {
        report(vm, &pages[..n], gpa, bytes, ctx, false);
    }
}

fn gather(vm: &AttachedVm, gpa: u64, new: &[u8]) {
    let gfn = gpa >> 12;
    let lo = (gpa & 0xfff) as usize;
    let hi = lo + new.len().min(PAGE_SIZE - lo);
    let Some(new) = new.get(..hi - lo) else { return };
    let mut g = vm.gather.lock();
    if let Some(acc) = (*g).as_mut().filter(|a| a.gfn == gfn) {
        if let Some(span) = writes::merge(acc.span, lo as u32, hi as u32) {
            if let Some(dst) = acc.bytes.get_mut(lo..hi) {
                dst.copy_from_slice(new);
                acc.span = span;
                return;
            }
        }
    }
    // A write apart from the gathered ones: they are reported first.
    let old = g.take();
    let bytes = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL).ok().map(|mut b| {
        if let Some(dst) = b.get_mut(lo..hi) {
            dst.copy_from_slice(new);
        }
        b
    });
    match bytes {
        Some(bytes) => *g = Some(Gathered { gfn, span: Span { lo: lo as u32, hi: hi as u32 }, bytes }),
        None => *g = None,
    }
    let unbuffered = g.is_none();
    if !unbuffered {
        // The burst ends when the writing vCPU enters the guest again: the
        // entry probe kicks the report work then (`seal_gathered`).
        vm.gather_open.store(true, Relaxed);
    }
    drop(g);
    if let Some(old) = old {
        report_gathered(vm, &old, Context::VcpuThread);
    }
    if unbuffered {
        // No memory to gather in: reported on its own.
        report_write(vm, gpa, new, Context::VcpuThread);
    }
}

/// At a vCPU's entry into the guest: KVM has finished emulating the writes
/// of the instruction (a string store: up to 1024 elements, after which
/// KVM lets the guest run before it goes on), so the gathered burst is
/// complete and the report work sends it. Kicking at every gathered write
/// instead makes a store into hundreds of reports, more than an event
/// reader's queue holds. A probe: one load when nothing is gathered.
pub(crate) fn seal_gathered(vm: &AttachedVm) {
    if vm.gather_open.load(Relaxed) && vm.gather_open.xchg(false, Relaxed) {
        vm.kick_report();
    }
}

fn report_gathered(vm: &AttachedVm, g: &Gathered, ctx: Context) {
    if let Some(bytes) = g.bytes.get(g.span.lo as usize..g.span.hi as usize) {
        report_write(vm, (g.gfn << 12) + u64::from(g.span.lo), bytes, ctx);
    }
}

/// Reports the gathered writes, if any. The report work.
pub(crate) fn flush_gathered(vm: &AttachedVm) {
    let old = vm.gather.lock().take();
    if let Some(old) = old {
        report_gathered(vm, &old, Context::Kworker);
    }
}

/// Reports a write of `new` at `gpa` to the protected pages `pages` of its
/// frame; with `restore_ok` (the writing vCPU's thread), puts an enforced
/// page's kept bytes back first. Runs in `ctx`.
fn report(vm: &AttachedVm, pages: &[Option<ProtectedWrite>], gpa: u64, new: &[u8], ctx: Context, restore_ok: bool) {
    let gfn = gpa >> 12;
    let offset = (gpa & 0xfff) as usize;
    let end = offset + new.len().min(PAGE_SIZE - offset);
    let mut maps = [const { Mapping::Unknown }; SHARED_FRAME_PAGES];
    for (m, pw) in maps.iter_mut().zip(pages.iter().flatten()) {
        // The guest may have remapped the GVA and reused the frame: never
        // write our bytes into a page that is not a target's any more.
        *m = mapping(vm, pw, gfn, ctx);
    }
    let enforced =
        restore_ok && pages.iter().flatten().zip(&maps).any(|(pw, m)| pw.enforce && matches!(m, Mapping::Same));
    let restored = enforced && restore(vm, gfn, offset, end);
    let len = (end - offset) as u32;
    // SAFETY: reads the clock.
    let now = unsafe { glue::kvm_pfi_now_ns() };
    let within_budget = {
        let mut targets = vm.targets.lock();
        for (pw, m) in pages.iter().flatten().zip(&maps) {
            // Restored bytes need no new scan; changed ones do.
            let moved = matches!(m, Mapping::Moved);
            targets.on_protected_write(pw.target_id, pw.gva, moved, !restored, offset as u32, end as u32);
        }
        targets.write_budget.take(now)
    };
    if !within_budget {
        // Restored (if enforced) and rescanned like any other: only the
        // event, and the sinks' work for it, is not spent.
        vm.writes_unreported.fetch_add(pages.iter().flatten().count() as u64, Relaxed);
    }
    for pw in pages.iter().flatten().filter(|_| within_budget) {
        let attempt = WriteAttempt {
            vm_id: vm.id,
            target_id: pw.target_id,
            cr3: pw.cr3,
            gva: pw.gva + offset as u64,
            gpa,
            len,
            restored,
        };
        // Every byte written (at most a page). Without memory the event
        // goes without them.
        let bytes = KVec::from_elem(0u8, len as usize, GFP_KERNEL).ok().map(|mut b| {
            if let Some(src) = new.get(..len as usize) {
                b.copy_from_slice(src);
            }
            b
        });
        events::emit(Record::write_attempt(&attempt, bytes));
    }
    // The report work rescans changed bytes and untracks moved pages. It
    // is running already when it flushed these writes, and goes on to do
    // that: kicking it again would make it flush a burst still being
    // written, one piece per run.
    if !matches!(ctx, Context::Kworker) {
        vm.kick_report();
    }
}

/// The report side: track newly resident pages of protected targets (and
/// keep their bytes for enforce mode), untrack pages that moved. Needs the
/// VM's page-track notifier, which the report work registers first.
pub(crate) fn sync(vm: &AttachedVm) {
    if vm.detached.load(Relaxed) || !vm.targets.lock().wants_protection() {
        return;
    }
    if vm.tracker.load(Acquire).is_null() {
        return;
    }
    let mut changes = TrackingChanges::begin(vm);

    // Ends: every page taken is tracked now, or marked as refused by KVM
    // (`protection_failed`), so no take offers it again.
    loop {
        let mut track = [None; 8];
        let mut untrack = [0u64; 8];
        let (na, nr, more) = vm.targets.lock().take_protection_changes(&mut track, &mut untrack);
        // Each was added before.
        for &g in &untrack[..nr] {
            changes.track(g, false);
        }
        for j in track[..na].iter().flatten() {
            start(vm, &mut changes, j);
        }
        if !more {
            return;
        }
    }
}

fn start(vm: &AttachedVm, changes: &mut TrackingChanges<'_>, j: &ProtectJob) {
    if changes.track(j.gfn, true) != 0 {
        vm.targets.lock().protection_failed(j.target_id, j.index);
        return;
    }
    vm.targets.lock().protection_started(j.target_id, j.index, j.gfn);
    if !j.enforce {
        return;
    }
    // Kept after tracking began: a write in between is reported (without a
    // restore) and is part of the kept bytes.
    let Ok(mut shadow) = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL) else { return };
    // SAFETY: the VM is referenced; a kworker.
    if unsafe { GuestMemory::new(vm.kvm, Context::Kworker) }.read(j.gfn << 12, &mut shadow) != 0 {
        return;
    }
    let unused = vm.targets.lock().set_shadow(j.target_id, j.index, j.gfn, shadow);
    drop(unused);
}
