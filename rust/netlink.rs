// SPDX-License-Identifier: GPL-2.0

//! The `kvm_pfi` generic netlink family: events, multicast to the admin-only
//! group `events`. Every event also goes to the device's event stream
//! (`stream.rs`), built from the same values here. Documentation/netlink/specs/kvm_pfi.yaml is the source
//! of truth; the numbers come from its generated UAPI header.
//!
//! `kernel::net::netlink` registers families with multicast groups but has
//! no 64-bit attributes and no group flags (this group needs
//! `GENL_MCAST_CAP_SYS_ADMIN`), so this file carries its own small family
//! and message builder on top of the same C functions.

use core::ptr::NonNull;

use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

use crate::bindings::{
    glue,
    uapi, //
};
use crate::stream;
use crate::targets::{
    Settled,
    Target,
    WriteRecord, //
};
use crate::vm::{
    AttachedVm,
    DetachReason, //
};

/// The family's only multicast group, index 0 within the family.
const GROUP_EVENTS: u32 = 0;

/// A statically initialised `genl_family` with its group table.
#[repr(transparent)]
struct Family(Opaque<bindings::genl_family>);

// SAFETY: after registration the struct is only read and written by the
// genetlink core under its own locking.
unsafe impl Sync for Family {}

#[repr(transparent)]
struct Groups([bindings::genl_multicast_group; 1]);

// SAFETY: immutable data.
unsafe impl Sync for Groups {}

const fn copy_name<const N: usize>(src: &[u8]) -> [kernel::ffi::c_char; N] {
    let mut out = [0; N];
    let mut i = 0;
    // `src` includes its NUL; a name that does not fit fails the build.
    assert!(src.len() <= N);
    while i < src.len() {
        out[i] = src[i] as kernel::ffi::c_char;
        i += 1;
    }
    out
}

static GROUPS: Groups = Groups([bindings::genl_multicast_group {
    name: copy_name(uapi::KVM_PFI_MCGRP_EVENTS),
    flags: glue::KVM_PFI_GLUE_MCAST_CAP_SYS_ADMIN as u8,
}]);

static FAMILY: Family = Family(Opaque::new(bindings::genl_family {
    name: copy_name(uapi::KVM_PFI_FAMILY_NAME),
    version: uapi::KVM_PFI_FAMILY_VERSION,
    maxattr: uapi::KVM_PFI_A_EVENT_MAX as u32,
    module: <crate::KvmPfi as kernel::ModuleMetadata>::THIS_MODULE.as_ptr(),
    mcgrps: &raw const GROUPS.0 as *const _,
    n_mcgrps: 1,
    ..pin_init::zeroed()
}));

/// The registered family; unregistered on drop.
pub(crate) struct Registration {
    _private: (),
}

impl Registration {
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: `FAMILY` is a valid static family that outlives the
        // registration (unregistered in `drop`, before the module goes).
        kernel::error::to_result(unsafe { bindings::genl_register_family(FAMILY.0.get()) })?;
        Ok(Registration { _private: () })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`.
        unsafe { bindings::genl_unregister_family(FAMILY.0.get()) };
    }
}

fn has_listeners() -> bool {
    // SAFETY: the family is registered while the module is loaded, and
    // `init_net` is always valid.
    unsafe {
        bindings::genl_has_listeners(FAMILY.0.get(), &raw mut bindings::init_net, GROUP_EVENTS)
            != 0
    }
}

/// One event message under construction.
///
/// # Invariants
///
/// `skb` is an owned netlink buffer and `hdr` the genetlink header in it.
struct Event {
    skb: NonNull<bindings::sk_buff>,
    hdr: NonNull<c_void>,
}

impl Event {
    fn new(cmd: u32, payload: usize) -> Result<Self> {
        // SAFETY: plain arguments.
        let skb = unsafe { bindings::genlmsg_new(payload, bindings::GFP_KERNEL) };
        let skb = NonNull::new(skb).ok_or(ENOMEM)?;
        // SAFETY: `skb` is a fresh buffer and `FAMILY` a registered family.
        let hdr = unsafe { bindings::genlmsg_put(skb.as_ptr(), 0, 0, FAMILY.0.get(), 0, cmd as u8) };
        let Some(hdr) = NonNull::new(hdr) else {
            // SAFETY: we own `skb`.
            unsafe { bindings::nlmsg_free(skb.as_ptr()) };
            return Err(EMSGSIZE);
        };
        Ok(Event { skb, hdr })
    }

    fn put_raw(&mut self, attr: u32, data: &[u8]) -> Result<&mut Self> {
        // SAFETY: `skb` is valid (invariant); `data` is readable.
        kernel::error::to_result(unsafe {
            bindings::nla_put(self.skb.as_ptr(), attr as i32, data.len() as i32, data.as_ptr().cast())
        })?;
        Ok(self)
    }

    fn u32(&mut self, attr: u32, v: u32) -> Result<&mut Self> {
        self.put_raw(attr, &v.to_ne_bytes())
    }

    /// 64-bit values are aligned with the `pad` attribute, as ynl expects.
    fn u64(&mut self, attr: u32, v: u64) -> Result<&mut Self> {
        let bytes = v.to_ne_bytes();
        // SAFETY: `skb` is valid (invariant); `bytes` is readable.
        kernel::error::to_result(unsafe {
            bindings::nla_put_64bit(
                self.skb.as_ptr(),
                attr as i32,
                8,
                bytes.as_ptr().cast(),
                uapi::KVM_PFI_A_EVENT_PAD as i32,
            )
        })?;
        Ok(self)
    }

    /// A NUL-terminated string attribute from a NUL-padded buffer.
    fn string(&mut self, attr: u32, buf: &[u8]) -> Result<&mut Self> {
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let mut tmp = [0u8; 64];
        let len = len.min(tmp.len() - 1);
        tmp[..len].copy_from_slice(&buf[..len]);
        self.put_raw(attr, &tmp[..=len])
    }

    fn multicast(self) -> Result {
        let ev = core::mem::ManuallyDrop::new(self);
        // SAFETY: ownership of `skb` passes to `genlmsg_multicast`.
        unsafe {
            bindings::genlmsg_end(ev.skb.as_ptr(), ev.hdr.as_ptr());
            kernel::error::to_result(bindings::genlmsg_multicast(
                FAMILY.0.get(),
                ev.skb.as_ptr(),
                0,
                GROUP_EVENTS,
                bindings::GFP_KERNEL,
            ))
        }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: we still own `skb` (not multicast).
        unsafe { bindings::nlmsg_free(self.skb.as_ptr()) };
    }
}

/// Sends an event built by `fill`, if anybody listens. Event loss (no
/// memory, a full socket) is not an error of the operation that caused it.
fn send(cmd: u32, fill: impl FnOnce(&mut Event) -> Result<&mut Event>) {
    send_sized(cmd, bindings::GENLMSG_DEFAULT_SIZE, fill)
}

fn send_sized(cmd: u32, payload: usize, fill: impl FnOnce(&mut Event) -> Result<&mut Event>) {
    if !has_listeners() {
        return;
    }
    let Ok(mut ev) = Event::new(cmd, payload) else { return };
    if fill(&mut ev).is_ok() {
        // -ESRCH: the last listener left meanwhile; nothing to do.
        let _ = ev.multicast();
    }
}

fn vm_attrs<'a>(ev: &'a mut Event, vm: &AttachedVm) -> Result<&'a mut Event> {
    ev.u32(uapi::KVM_PFI_A_EVENT_VM_ID, vm.id)?
        .u32(uapi::KVM_PFI_A_EVENT_VMM_PID, vm.vmm_pid as u32)?
        .string(uapi::KVM_PFI_A_EVENT_STATS_ID, &vm.stats_id)
}

fn vm_record(kind: u32, vm: &AttachedVm) -> uapi::kvm_pfi_event {
    let mut ev = stream::record(kind);
    ev.vm_id = vm.id;
    ev.vmm_pid = vm.vmm_pid;
    ev
}

pub(crate) fn vm_attached(vm: &AttachedVm) {
    let mut ev = vm_record(uapi::KVM_PFI_CMD_VM_ATTACHED, vm);
    ev.flags = vm.flags;
    stream::publish(ev, None);
    send(uapi::KVM_PFI_CMD_VM_ATTACHED, |ev| {
        vm_attrs(ev, vm)?.u32(uapi::KVM_PFI_A_EVENT_ATTACH_FLAGS, vm.flags)
    });
}

pub(crate) fn vm_detached(vm: &AttachedVm, reason: DetachReason) {
    let (entries, exits) = vm.totals();
    let mut ev = vm_record(uapi::KVM_PFI_CMD_VM_DETACHED, vm);
    (ev.detach_reason, ev.entries, ev.exits) = (reason as u32, entries, exits);
    stream::publish(ev, None);
    send(uapi::KVM_PFI_CMD_VM_DETACHED, |ev| {
        vm_attrs(ev, vm)?
            .u32(uapi::KVM_PFI_A_EVENT_DETACH_REASON, reason as u32)?
            .u64(uapi::KVM_PFI_A_EVENT_ENTRIES, entries)?
            .u64(uapi::KVM_PFI_A_EVENT_EXITS, exits)
    });
}

pub(crate) fn target_added(vm_id: u32, t: &Target) {
    let mut ev = stream::record(uapi::KVM_PFI_CMD_TARGET_ADDED);
    (ev.vm_id, ev.target_id, ev.flags, ev.cr3, ev.gva, ev.len) = (vm_id, t.id, t.flags, t.cr3, t.gva, t.len);
    stream::publish(ev, None);
    send(uapi::KVM_PFI_CMD_TARGET_ADDED, |ev| {
        ev.u32(uapi::KVM_PFI_A_EVENT_VM_ID, vm_id)?
            .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, t.id)?
            .u32(uapi::KVM_PFI_A_EVENT_TARGET_FLAGS, t.flags)?
            .u64(uapi::KVM_PFI_A_EVENT_CR3, t.cr3)?
            .u64(uapi::KVM_PFI_A_EVENT_GVA, t.gva)?
            .u64(uapi::KVM_PFI_A_EVENT_LEN, t.len)
    });
}

pub(crate) fn target_removed(vm_id: u32, target_id: u32) {
    let mut ev = stream::record(uapi::KVM_PFI_CMD_TARGET_REMOVED);
    (ev.vm_id, ev.target_id) = (vm_id, target_id);
    stream::publish(ev, None);
    send(uapi::KVM_PFI_CMD_TARGET_REMOVED, |ev| {
        ev.u32(uapi::KVM_PFI_A_EVENT_VM_ID, vm_id)?
            .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, target_id)
    });
}

fn page_attrs<'a>(ev: &'a mut Event, vm_id: u32, s: &Settled) -> Result<&'a mut Event> {
    ev.u32(uapi::KVM_PFI_A_EVENT_VM_ID, vm_id)?
        .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, s.target_id)?
        .u64(uapi::KVM_PFI_A_EVENT_CR3, s.cr3)?
        .u64(uapi::KVM_PFI_A_EVENT_GVA, s.info.gva)?
        .u32(uapi::KVM_PFI_A_EVENT_INJECTIONS, s.info.injections)
}

/// `data`: the page contents, for targets that asked for them.
fn page_record(kind: u32, vm_id: u32, s: &Settled) -> uapi::kvm_pfi_event {
    let mut ev = stream::record(kind);
    (ev.vm_id, ev.target_id, ev.cr3, ev.gva) = (vm_id, s.target_id, s.cr3, s.info.gva);
    ev.injections = s.info.injections;
    ev
}

pub(crate) fn page_resident(vm_id: u32, s: &Settled, data: Option<&[u8]>) {
    let mut ev = page_record(uapi::KVM_PFI_CMD_PAGE_RESIDENT, vm_id, s);
    (ev.gpa, ev.page_size, ev.how, ev.reinjections) = (s.info.gpa, s.info.page_size, s.info.how, s.info.reinjections);
    stream::publish(ev, data);
    let payload = bindings::GENLMSG_DEFAULT_SIZE + data.map_or(0, |d| d.len());
    send_sized(uapi::KVM_PFI_CMD_PAGE_RESIDENT, payload, |ev| {
        let ev = page_attrs(ev, vm_id, s)?
            .u64(uapi::KVM_PFI_A_EVENT_GPA, s.info.gpa)?
            .u32(uapi::KVM_PFI_A_EVENT_PAGE_SIZE, s.info.page_size)?
            .u32(uapi::KVM_PFI_A_EVENT_HOW, s.info.how)?
            .u32(uapi::KVM_PFI_A_EVENT_REINJECTIONS, s.info.reinjections)?;
        match data {
            Some(d) => ev.put_raw(uapi::KVM_PFI_A_EVENT_DATA, d),
            None => Ok(ev),
        }
    });
}

pub(crate) fn page_failed(vm_id: u32, s: &Settled) {
    let mut ev = page_record(uapi::KVM_PFI_CMD_PAGE_FAILED, vm_id, s);
    ev.fail_reason = s.info.fail_reason;
    stream::publish(ev, None);
    send(uapi::KVM_PFI_CMD_PAGE_FAILED, |ev| {
        page_attrs(ev, vm_id, s)?.u32(uapi::KVM_PFI_A_EVENT_FAIL_REASON, s.info.fail_reason)
    });
}

/// A signature match in a target page (see `scan.rs` for the fields).
pub(crate) struct Detection<'a> {
    pub(crate) vm_id: u32,
    pub(crate) target_id: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) gpa: u64,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    pub(crate) rule_id: u32,
    pub(crate) rule_name: &'a [u8],
    pub(crate) generation: u32,
    pub(crate) how: u32,
    pub(crate) injections: u32,
}

pub(crate) fn detection(d: &Detection<'_>) {
    let mut ev = stream::record(uapi::KVM_PFI_CMD_DETECTION);
    (ev.vm_id, ev.target_id, ev.cr3, ev.gva, ev.gpa) = (d.vm_id, d.target_id, d.cr3, d.gva, d.gpa);
    (ev.offset, ev.length, ev.rule_id, ev.generation) = (d.offset, d.length, d.rule_id, d.generation);
    (ev.how, ev.injections) = (d.how, d.injections);
    // NUL-terminated: one byte of the array stays 0.
    let room = ev.rule_name.len() - 1;
    for (dst, &src) in ev.rule_name.iter_mut().zip(d.rule_name.iter().take(room)) {
        *dst = src as _;
    }
    stream::publish(ev, None);
    send(uapi::KVM_PFI_CMD_DETECTION, |ev| {
        ev.u32(uapi::KVM_PFI_A_EVENT_VM_ID, d.vm_id)?
            .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, d.target_id)?
            .u64(uapi::KVM_PFI_A_EVENT_CR3, d.cr3)?
            .u64(uapi::KVM_PFI_A_EVENT_GVA, d.gva)?
            .u64(uapi::KVM_PFI_A_EVENT_GPA, d.gpa)?
            .u32(uapi::KVM_PFI_A_EVENT_OFFSET, d.offset)?
            .u32(uapi::KVM_PFI_A_EVENT_LENGTH, d.length)?
            .u32(uapi::KVM_PFI_A_EVENT_RULE_ID, d.rule_id)?
            .string(uapi::KVM_PFI_A_EVENT_RULE_NAME, d.rule_name)?
            .u32(uapi::KVM_PFI_A_EVENT_GENERATION, d.generation)?
            .u32(uapi::KVM_PFI_A_EVENT_HOW, d.how)?
            .u32(uapi::KVM_PFI_A_EVENT_INJECTIONS, d.injections)
    });
}

pub(crate) fn write_attempt(vm_id: u32, w: &WriteRecord) {
    let mut ev = stream::record(uapi::KVM_PFI_CMD_WRITE_ATTEMPT);
    (ev.vm_id, ev.target_id, ev.cr3, ev.gva, ev.gpa) = (vm_id, w.target_id, w.cr3, w.gva, w.gpa);
    (ev.offset, ev.length, ev.restored) = ((w.gpa & 0xfff) as u32, w.len, u32::from(w.restored));
    stream::publish(ev, Some(w.data()));
    send(uapi::KVM_PFI_CMD_WRITE_ATTEMPT, |ev| {
        ev.u32(uapi::KVM_PFI_A_EVENT_VM_ID, vm_id)?
            .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, w.target_id)?
            .u64(uapi::KVM_PFI_A_EVENT_CR3, w.cr3)?
            .u64(uapi::KVM_PFI_A_EVENT_GVA, w.gva)?
            .u64(uapi::KVM_PFI_A_EVENT_GPA, w.gpa)?
            .u32(uapi::KVM_PFI_A_EVENT_OFFSET, (w.gpa & 0xfff) as u32)?
            .u32(uapi::KVM_PFI_A_EVENT_LENGTH, w.len)?
            .u32(uapi::KVM_PFI_A_EVENT_RESTORED, u32::from(w.restored))?
            .put_raw(uapi::KVM_PFI_A_EVENT_DATA, w.data())
    });
}

pub(crate) fn sigs_loaded(generation: u32, nr_rules: u32) {
    let mut ev = stream::record(uapi::KVM_PFI_CMD_SIGS_LOADED);
    (ev.generation, ev.nr_rules) = (generation, nr_rules);
    stream::publish(ev, None);
    send(uapi::KVM_PFI_CMD_SIGS_LOADED, |ev| {
        ev.u32(uapi::KVM_PFI_A_EVENT_GENERATION, generation)?
            .u32(uapi::KVM_PFI_A_EVENT_NR_RULES, nr_rules)
    });
}
