// SPDX-License-Identifier: GPL-2.0

//! The `kvm_pfi` generic netlink family, a sink: each event record
//! (`events.rs`) becomes one message multicast to the admin-only group
//! `events`, built only when somebody listens.
//! Documentation/netlink/specs/kvm_pfi.yaml is the source of truth: which
//! attributes each event carries, and their numbers (its generated UAPI
//! header).
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
use crate::events::Record;

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
    maxattr: uapi::KVM_PFI_A_EVENT_MAX,
    module: <crate::KvmPfi as kernel::ModuleMetadata>::THIS_MODULE.as_ptr(),
    mcgrps: (&raw const GROUPS.0).cast(),
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

/// Bytes of the longest string attribute, its NUL included: process-start's
/// `exe` (rule-name, stats-id and comm are shorter).
const STRING_MAX: usize = uapi::KVM_PFI_EXE_LEN as usize;
const _: () = assert!(
    STRING_MAX > uapi::KVM_PFI_SIG_NAME_MAX as usize
        && STRING_MAX >= uapi::KVM_PFI_STATS_ID_LEN as usize
        && STRING_MAX >= uapi::KVM_PFI_COMM_LEN as usize
);

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

    /// A NUL-terminated string attribute from a NUL-padded buffer, or from
    /// bytes without a NUL (up to `STRING_MAX - 1` of them are sent).
    fn string(&mut self, attr: u32, buf: &[u8]) -> Result<&mut Self> {
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let mut tmp = [0u8; STRING_MAX];
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

/// Multicasts `rec` if anybody listens. Event loss (no memory, a full
/// socket) is not an error of the operation that caused it.
pub(crate) fn send(rec: &Record) {
    if !has_listeners() {
        return;
    }
    let payload = bindings::GENLMSG_DEFAULT_SIZE + rec.data().len();
    let Ok(mut msg) = Event::new(rec.kind(), payload) else { return };
    if encode(&mut msg, rec).is_ok() {
        // -ESRCH: the last listener left meanwhile; nothing to do.
        let _ = msg.multicast();
    }
}

/// The attributes of `rec`'s event, as the spec lists them.
fn encode<'a>(m: &'a mut Event, rec: &Record) -> Result<&'a mut Event> {
    let e = &rec.ev;
    let m = match rec.kind() {
        uapi::KVM_PFI_CMD_VM_ATTACHED => vm_attrs(m, rec)?.u32(uapi::KVM_PFI_A_EVENT_ATTACH_FLAGS, e.flags)?,
        uapi::KVM_PFI_CMD_VM_DETACHED => vm_attrs(m, rec)?
            .u32(uapi::KVM_PFI_A_EVENT_DETACH_REASON, e.detach_reason)?
            .u64(uapi::KVM_PFI_A_EVENT_ENTRIES, e.entries)?
            .u64(uapi::KVM_PFI_A_EVENT_EXITS, e.exits)?,
        uapi::KVM_PFI_CMD_TARGET_ADDED => m
            .u32(uapi::KVM_PFI_A_EVENT_VM_ID, e.vm_id)?
            .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, e.target_id)?
            .u32(uapi::KVM_PFI_A_EVENT_TARGET_FLAGS, e.flags)?
            .u64(uapi::KVM_PFI_A_EVENT_CR3, e.cr3)?
            .u64(uapi::KVM_PFI_A_EVENT_GVA, e.gva)?
            .u64(uapi::KVM_PFI_A_EVENT_LEN, e.len)?,
        uapi::KVM_PFI_CMD_TARGET_REMOVED => m
            .u32(uapi::KVM_PFI_A_EVENT_VM_ID, e.vm_id)?
            .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, e.target_id)?,
        uapi::KVM_PFI_CMD_PAGE_RESIDENT => {
            let m = page_attrs(m, rec)?
                .u64(uapi::KVM_PFI_A_EVENT_GPA, e.gpa)?
                .u32(uapi::KVM_PFI_A_EVENT_PAGE_SIZE, e.page_size)?
                .u32(uapi::KVM_PFI_A_EVENT_HOW, e.how)?
                .u32(uapi::KVM_PFI_A_EVENT_REINJECTIONS, e.reinjections)?;
            match &rec.data {
                Some(d) => m.put_raw(uapi::KVM_PFI_A_EVENT_DATA, d)?,
                None => m,
            }
        }
        uapi::KVM_PFI_CMD_PAGE_FAILED => page_attrs(m, rec)?.u32(uapi::KVM_PFI_A_EVENT_FAIL_REASON, e.fail_reason)?,
        uapi::KVM_PFI_CMD_DETECTION => span_attrs(m, rec)?
            .u32(uapi::KVM_PFI_A_EVENT_RULE_ID, e.rule_id)?
            .string(uapi::KVM_PFI_A_EVENT_RULE_NAME, &e.rule_name[..])?
            .u32(uapi::KVM_PFI_A_EVENT_GENERATION, e.generation)?
            .u32(uapi::KVM_PFI_A_EVENT_HOW, e.how)?
            .u32(uapi::KVM_PFI_A_EVENT_INJECTIONS, e.injections)?,
        uapi::KVM_PFI_CMD_WRITE_ATTEMPT => span_attrs(m, rec)?
            .u32(uapi::KVM_PFI_A_EVENT_RESTORED, e.restored)?
            .put_raw(uapi::KVM_PFI_A_EVENT_DATA, rec.data())?,
        uapi::KVM_PFI_CMD_SIGS_LOADED => m
            .u32(uapi::KVM_PFI_A_EVENT_GENERATION, e.generation)?
            .u32(uapi::KVM_PFI_A_EVENT_NR_RULES, e.nr_rules)?,
        uapi::KVM_PFI_CMD_PROCESS_START => m
            .u32(uapi::KVM_PFI_A_EVENT_VM_ID, e.vm_id)?
            .u32(uapi::KVM_PFI_A_EVENT_PID, e.pid as u32)?
            .u32(uapi::KVM_PFI_A_EVENT_PPID, e.ppid as u32)?
            .string(uapi::KVM_PFI_A_EVENT_COMM, &e.comm[..])?
            .u64(uapi::KVM_PFI_A_EVENT_CR3, e.cr3)?
            .u64(uapi::KVM_PFI_A_EVENT_TASK, e.task)?
            .u32(uapi::KVM_PFI_A_EVENT_TASK_FLAGS, e.task_flags)?
            // The path follows the record without a NUL; "" for none.
            .string(uapi::KVM_PFI_A_EVENT_EXE, rec.data())?,
        uapi::KVM_PFI_CMD_PROCESS_EXIT => m
            .u32(uapi::KVM_PFI_A_EVENT_VM_ID, e.vm_id)?
            .u32(uapi::KVM_PFI_A_EVENT_PID, e.pid as u32)?
            .string(uapi::KVM_PFI_A_EVENT_COMM, &e.comm[..])?
            .u64(uapi::KVM_PFI_A_EVENT_CR3, e.cr3)?
            .u64(uapi::KVM_PFI_A_EVENT_TASK, e.task)?,
        _ => return Err(EINVAL),
    };
    if e.lost != 0 {
        m.u32(uapi::KVM_PFI_A_EVENT_LOST, e.lost)
    } else {
        Ok(m)
    }
}

fn vm_attrs<'a>(m: &'a mut Event, rec: &Record) -> Result<&'a mut Event> {
    m.u32(uapi::KVM_PFI_A_EVENT_VM_ID, rec.ev.vm_id)?
        .u32(uapi::KVM_PFI_A_EVENT_VMM_PID, rec.ev.vmm_pid as u32)?
        .string(uapi::KVM_PFI_A_EVENT_STATS_ID, &rec.stats_id)
}

fn page_attrs<'a>(m: &'a mut Event, rec: &Record) -> Result<&'a mut Event> {
    m.u32(uapi::KVM_PFI_A_EVENT_VM_ID, rec.ev.vm_id)?
        .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, rec.ev.target_id)?
        .u64(uapi::KVM_PFI_A_EVENT_CR3, rec.ev.cr3)?
        .u64(uapi::KVM_PFI_A_EVENT_GVA, rec.ev.gva)?
        .u32(uapi::KVM_PFI_A_EVENT_INJECTIONS, rec.ev.injections)
}

/// Where in a target page the bytes of a detection or a write are.
fn span_attrs<'a>(m: &'a mut Event, rec: &Record) -> Result<&'a mut Event> {
    m.u32(uapi::KVM_PFI_A_EVENT_VM_ID, rec.ev.vm_id)?
        .u32(uapi::KVM_PFI_A_EVENT_TARGET_ID, rec.ev.target_id)?
        .u64(uapi::KVM_PFI_A_EVENT_CR3, rec.ev.cr3)?
        .u64(uapi::KVM_PFI_A_EVENT_GVA, rec.ev.gva)?
        .u64(uapi::KVM_PFI_A_EVENT_GPA, rec.ev.gpa)?
        .u32(uapi::KVM_PFI_A_EVENT_OFFSET, rec.ev.offset)?
        .u32(uapi::KVM_PFI_A_EVENT_LENGTH, rec.ev.length)
}
