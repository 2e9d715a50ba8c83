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

use core::sync::atomic::Ordering;

use kernel::prelude::*;

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
    OpenFrames,
    ProtectJob,
    ProtectedWrite, //
};
use crate::vm::AttachedVm;

const PAGE_SIZE: usize = 4096;
/// Bytes restored per lock hold (copied out of the kept page on the stack).
const RESTORE_CHUNK: usize = 64;

/// How far from the gathered writes a write fault may be and still be
/// taken as the same burst by the probes (the widest store: 64 bytes).
const WRITE_SLACK: u64 = 64;

/// Protected pages of one frame handled per guest write; a frame shared by
/// more targets than this is reported for the first ones only.
pub(crate) const SHARED_FRAME_PAGES: usize = 4;

/// Where the page's GVA translates now.
enum Mapping {
    Same,
    Moved,
    Unknown,
}

fn mapping(vm: &AttachedVm, pw: &ProtectedWrite, gfn: u64) -> Mapping {
    let Some(paging) = vm.paging() else { return Mapping::Unknown };
    // The guest may have remapped the GVA: walk again, with reads that may
    // fault the VMM's page in (a notifier may sleep), so a table page the
    // host swapped out does not make the answer unknown.
    // SAFETY: the VM is referenced; the writing vCPU's thread, may sleep.
    let mut mem = unsafe { GuestMemory::new(vm.kvm, Context::VcpuThread) };
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
/// element) and reported when the burst ends (`flush_gathered`).
pub(crate) fn on_guest_write(vm: &AttachedVm, pages: &[Option<ProtectedWrite>], gpa: u64, new: &[u8]) {
    if pages.iter().flatten().any(|p| p.enforce) {
        report(vm, pages, gpa, new, true);
    } else {
        gather(vm, gpa, new);
    }
}

/// A write the vCPU made natively (`native_write.rs`): `bytes` changed at
/// `gpa`. Restored if its page is enforced. The writing vCPU's thread.
pub(crate) fn report_native(vm: &AttachedVm, gpa: u64, bytes: &[u8]) {
    let mut pages: [Option<ProtectedWrite>; SHARED_FRAME_PAGES] = [None; SHARED_FRAME_PAGES];
    let n = vm.targets.lock().protected_pages(gpa >> 12, &mut pages);
    if n > 0 {
        report(vm, &pages[..n], gpa, bytes, true);
    }
}

fn publish(vm: &AttachedVm, g: Option<&Gathered>) {
    let (gfn, span) = g.map_or((0, 0), |g| (g.gfn + 1, g.span.lo | g.span.hi << 16));
    vm.gather_span.store(span, Ordering::Relaxed);
    vm.gather_gfn.store(gfn, Ordering::Relaxed);
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
                publish(vm, Some(acc));
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
    publish(vm, g.as_ref());
    let unbuffered = g.is_none();
    drop(g);
    if let Some(old) = old {
        report_gathered(vm, &old);
    }
    if unbuffered {
        // No memory to gather in: reported on its own.
        report_native(vm, gpa, new);
    }
}

fn report_gathered(vm: &AttachedVm, g: &Gathered) {
    if let Some(bytes) = g.bytes.get(g.span.lo as usize..g.span.hi as usize) {
        report_native(vm, (g.gfn << 12) + u64::from(g.span.lo), bytes);
    }
}

/// Reports the gathered writes, if any. Process context (a vCPU thread's
/// deferred work, or the notifier).
pub(crate) fn flush_gathered(vm: &AttachedVm) {
    let old = {
        let mut g = vm.gather.lock();
        let old = g.take();
        publish(vm, None);
        old
    };
    if let Some(old) = old {
        report_gathered(vm, &old);
    }
}

/// Whether emulated writes are gathered, waiting to be reported. Probes.
pub(crate) fn gathering(vm: &AttachedVm) -> bool {
    vm.gather_gfn.load(Ordering::Relaxed) != 0
}

/// Whether a write fault at `gpa` may continue the gathered writes (same
/// page, next to them), so that the burst goes on; true when nothing is
/// gathered. A hint for the probes: the notifier merges exactly.
pub(crate) fn continues_gathered(vm: &AttachedVm, gpa: u64) -> bool {
    let gfn = vm.gather_gfn.load(Ordering::Relaxed);
    if gfn == 0 {
        return true;
    }
    let span = vm.gather_span.load(Ordering::Relaxed);
    let (lo, hi) = (u64::from(span & 0xffff), u64::from(span >> 16));
    let off = gpa & 0xfff;
    gfn - 1 == gpa >> 12 && off + WRITE_SLACK >= lo && off <= hi + WRITE_SLACK
}

/// Reports a write of `new` at `gpa` to the protected pages `pages` of its
/// frame; with `restore`, puts an enforced page's kept bytes back first.
/// Process context, the writing vCPU's thread.
fn report(vm: &AttachedVm, pages: &[Option<ProtectedWrite>], gpa: u64, new: &[u8], restore_ok: bool) {
    let gfn = gpa >> 12;
    let offset = (gpa & 0xfff) as usize;
    let end = offset + new.len().min(PAGE_SIZE - offset);
    let mut maps = [const { Mapping::Unknown }; SHARED_FRAME_PAGES];
    for (m, pw) in maps.iter_mut().zip(pages.iter().flatten()) {
        // The guest may have remapped the GVA and reused the frame: never
        // write our bytes into a page that is not a target's any more.
        *m = mapping(vm, pw, gfn);
    }
    let enforced =
        restore_ok && pages.iter().flatten().zip(&maps).any(|(pw, m)| pw.enforce && matches!(m, Mapping::Same));
    let restored = enforced && restore(vm, gfn, offset, end);
    let len = (end - offset) as u32;
    {
        let mut targets = vm.targets.lock();
        for (pw, m) in pages.iter().flatten().zip(&maps) {
            // Restored bytes need no new scan; changed ones do.
            let moved = matches!(m, Mapping::Moved);
            targets.on_protected_write(pw.target_id, pw.gva, moved, !restored, offset as u32, end as u32);
        }
    }
    for pw in pages.iter().flatten() {
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
    vm.kick_report();
}

/// The report side: track newly resident pages of protected targets (and
/// keep their bytes for enforce mode), untrack pages that moved. Needs the
/// VM's page-track notifier, which the report work registers first.
pub(crate) fn sync(vm: &AttachedVm) {
    let mut frames = vm.tracking.lock();
    if vm.detached.load(Ordering::Relaxed) || !vm.targets.lock().wants_protection() {
        return;
    }
    if vm.tracker.load(Ordering::Acquire).is_null() {
        return;
    }
    // The probes must look for writes KVM cannot emulate before any frame
    // can fault (the report work arms them first): without, none is
    // protected.
    if vm.native.load(Ordering::Acquire).is_null() {
        return;
    }
    // Ends: every page taken is tracked now, or marked as refused by KVM
    // (`protection_failed`), so no take offers it again.
    loop {
        let mut track = [None; 8];
        let mut untrack = [0u64; 8];
        let (na, nr, more) = vm.targets.lock().take_protection_changes(&mut track, &mut untrack);
        for &g in &untrack[..nr] {
            frames.set_tracked(vm.kvm, g, false);
        }
        for j in track[..na].iter().flatten() {
            start(vm, &mut frames, j);
        }
        if !more {
            return;
        }
    }
}

fn start(vm: &AttachedVm, frames: &mut OpenFrames, j: &ProtectJob) {
    // The notifier is registered; process context.
    if frames.set_tracked(vm.kvm, j.gfn, true) != 0 {
        vm.targets.lock().protection_failed(j.target_id, j.index);
        return;
    }
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
