// SPDX-License-Identifier: GPL-2.0

//! Reporting, out of the probes: a probe that sees a target page settle
//! queues the VM's report work, which sends the events (and, for
//! `KVM_PFI_TARGET_READ` targets, reads the page through the VMM's address
//! space, which may sleep).

use core::sync::atomic::Ordering;

use kernel::prelude::*;

use crate::bindings::{
    glue,
    uapi, //
};
use crate::netlink;
use crate::targets::Settled;
use crate::vm::AttachedVm;

const BATCH: usize = 8;
const PAGE: usize = 4096;

/// Sends an event for every settled, unreported page of `vm`.
pub(crate) fn settled_pages(vm: &AttachedVm) {
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
            *buf = KVVec::from_elem(0u8, PAGE, GFP_KERNEL).ok();
        }
        if let Some(b) = buf.as_mut() {
            // The 4 KiB page at gva: its base plus gva's offset in a larger
            // guest page.
            let in_page = s.info.gva & (u64::from(s.info.page_size.max(PAGE as u32)) - 1);
            let gpa = s.info.gpa + (in_page & !(PAGE as u64 - 1));
            // SAFETY: the VM is referenced (we hold an `Arc` of its
            // attachment), we run in a kworker, `b` has PAGE bytes.
            let r = unsafe { glue::kvm_pfi_read_guest_remote(vm.kvm, gpa, b.as_mut_ptr().cast(), PAGE as u32) };
            if r == 0 {
                data = Some(&b[..]);
            }
        }
    }
    netlink::page_resident(vm.id, s, data);
}

/// Announces the removal of every target of a VM that is going away.
pub(crate) fn targets_gone(vm: &AttachedVm) {
    let mut ids = [0u32; crate::targets::MAX_TARGETS];
    let n = vm.targets.lock().ids(&mut ids);
    for &id in &ids[..n] {
        netlink::target_removed(vm.id, id);
    }
}
