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
use crate::targets::protection::{
    ProtectJob,
    ProtectedWrite, //
};
use crate::vm::AttachedVm;

const PAGE_SIZE: usize = 4096;
/// Bytes restored per lock hold (copied out of the kept page on the stack).
const RESTORE_CHUNK: usize = 64;

/// Bytes of a guest write a `write-attempt` event carries.
const WRITE_BYTES: usize = 64;

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
/// protected pages `pages`. Runs in the writing vCPU's thread, before it
/// resumes.
pub(crate) fn on_guest_write(vm: &AttachedVm, pages: &[Option<ProtectedWrite>], gpa: u64, new: &[u8]) {
    let gfn = gpa >> 12;
    let offset = (gpa & 0xfff) as usize;
    let end = offset + new.len().min(PAGE_SIZE - offset);
    let mut maps = [const { Mapping::Unknown }; SHARED_FRAME_PAGES];
    for (m, pw) in maps.iter_mut().zip(pages.iter().flatten()) {
        // The guest may have remapped the GVA and reused the frame: never
        // write our bytes into a page that is not a target's any more.
        *m = mapping(vm, pw, gfn);
    }
    let enforced = pages.iter().flatten().zip(&maps).any(|(pw, m)| pw.enforce && matches!(m, Mapping::Same));
    let restored = enforced && restore(vm, gfn, offset, end);
    let len = (end - offset) as u32;
    // The bytes the event carries; allocated before any lock (the notifier
    // may sleep). Without memory the event goes without them.
    let shown = new.len().min(WRITE_BYTES);
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
        let bytes = KVec::from_elem(0u8, shown, GFP_KERNEL).ok().map(|mut b| {
            b.copy_from_slice(&new[..shown]);
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
    let _serial = vm.tracking.lock();
    if vm.detached.load(Ordering::Relaxed) || !vm.targets.lock().wants_protection() {
        return;
    }
    if vm.tracker.load(Ordering::Acquire).is_null() {
        return;
    }
    // Ends: every page taken is tracked now, or marked as refused by KVM
    // (`protection_failed`), so no take offers it again.
    loop {
        let mut track = [None; 8];
        let mut untrack = [0u64; 8];
        let (na, nr, more) = vm.targets.lock().take_protection_changes(&mut track, &mut untrack);
        for &g in &untrack[..nr] {
            // SAFETY: the VM is referenced; process context; added before.
            unsafe { glue::kvm_pfi_track_gfn(vm.kvm, g, 0) };
        }
        for j in track[..na].iter().flatten() {
            start(vm, j);
        }
        if !more {
            return;
        }
    }
}

fn start(vm: &AttachedVm, j: &ProtectJob) {
    // SAFETY: the VM is referenced, the notifier registered; process context.
    if unsafe { glue::kvm_pfi_track_gfn(vm.kvm, j.gfn, 1) } != 0 {
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
