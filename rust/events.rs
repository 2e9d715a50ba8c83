// SPDX-License-Identifier: GPL-2.0

//! Event records: what the module tells user space, as plain data, and the
//! outbox that carries them from the domain code to the sinks.
//!
//! A record is the UAPI's `struct kvm_pfi_event` (every value any event
//! carries, laid out as the event stream delivers it), KVM's name of the VM
//! for VM events, and the bytes that follow (page contents, or the bytes a
//! guest wrote). Which values each event carries is the netlink spec's
//! (Documentation/netlink/specs/kvm_pfi.yaml); the constructors below are
//! the one place that says it for the module.
//!
//! Domain code builds a record and [`emit`]s it. That never sleeps and never
//! waits for a consumer: the outbox is a bounded ring allocated at load, and
//! a full ring drops the record and counts it in the next one's `lost`. The
//! sink stage (`sinks.rs`, connected at load with [`Outbox::connect`]) takes
//! records out and encodes them for each sink. Nothing here knows a sink.

use kernel::prelude::*;

use crate::bindings::{
    glue,
    uapi, //
};
use crate::pfi_core::ring::Ring;

/// Records the outbox holds before it drops; the sink stage drains it in
/// microseconds per record, so this only absorbs bursts (a target's pages
/// settling at once).
const OUTBOX_RECORDS: usize = 1024;
pub(crate) const STATS_ID_LEN: usize = uapi::KVM_PFI_STATS_ID_LEN as usize;

// One constructor per event of the netlink spec: a new event in the spec
// (a new KVM_PFI_CMD_MAX) must come with its record.
const _: () = assert!(uapi::KVM_PFI_CMD_MAX == uapi::KVM_PFI_CMD_PROCESS_EXIT);

/// One event.
pub(crate) struct Record {
    /// The values, in the event stream's layout; `size` and `data_len` are
    /// the sinks' to fill, `lost` counts records the outbox dropped just
    /// before this one.
    pub(crate) ev: uapi::kvm_pfi_event,
    /// vm-attached, vm-detached: KVM's name of the VM, NUL-padded.
    pub(crate) stats_id: [u8; STATS_ID_LEN],
    /// page-resident (targets with `KVM_PFI_TARGET_READ`): the page;
    /// write-attempt: the bytes written; process-start: the executable's
    /// path.
    pub(crate) data: Option<KVec<u8>>,
}

impl Record {
    fn new(kind: u32) -> Self {
        Record {
            ev: uapi::kvm_pfi_event {
                version: uapi::KVM_PFI_EVENT_VERSION as u16,
                type_: kind as u16,
                // SAFETY: reads the clock.
                time_ns: unsafe { glue::kvm_pfi_realtime_ns() },
                ..Default::default()
            },
            stats_id: [0; STATS_ID_LEN],
            data: None,
        }
    }

    /// The netlink command, `KVM_PFI_CMD_*`.
    pub(crate) fn kind(&self) -> u32 {
        u32::from(self.ev.type_)
    }

    /// The bytes that follow the record.
    pub(crate) fn data(&self) -> &[u8] {
        self.data.as_deref().unwrap_or(&[])
    }

    fn vm(kind: u32, vm: &VmIdentity) -> Self {
        let mut r = Record::new(kind);
        (r.ev.vm_id, r.ev.vmm_pid, r.stats_id) = (vm.vm_id, vm.vmm_pid, vm.stats_id);
        r
    }

    pub(crate) fn vm_attached(vm: &VmIdentity, attach_flags: u32) -> Self {
        let mut r = Record::vm(uapi::KVM_PFI_CMD_VM_ATTACHED, vm);
        r.ev.flags = attach_flags;
        r
    }

    /// `reason`: `enum kvm_pfi_detach_reason`; the counts are the module's
    /// over the attachment.
    pub(crate) fn vm_detached(vm: &VmIdentity, reason: u32, entries: u64, exits: u64) -> Self {
        let mut r = Record::vm(uapi::KVM_PFI_CMD_VM_DETACHED, vm);
        (r.ev.detach_reason, r.ev.entries, r.ev.exits) = (reason, entries, exits);
        r
    }

    pub(crate) fn target_added(vm_id: u32, target_id: u32, flags: u32, cr3: u64, gva: u64, len: u64) -> Self {
        let mut r = Record::new(uapi::KVM_PFI_CMD_TARGET_ADDED);
        (r.ev.vm_id, r.ev.target_id, r.ev.flags) = (vm_id, target_id, flags);
        (r.ev.cr3, r.ev.gva, r.ev.len) = (cr3, gva, len);
        r
    }

    pub(crate) fn target_removed(vm_id: u32, target_id: u32) -> Self {
        let mut r = Record::new(uapi::KVM_PFI_CMD_TARGET_REMOVED);
        (r.ev.vm_id, r.ev.target_id) = (vm_id, target_id);
        r
    }

    fn page(kind: u32, p: &PageEvent) -> Self {
        let mut r = Record::new(kind);
        (r.ev.vm_id, r.ev.target_id, r.ev.cr3) = (p.vm_id, p.target_id, p.cr3);
        (r.ev.gva, r.ev.injections) = (p.info.gva, p.info.injections);
        r
    }

    /// `data`: the page's bytes, for targets that asked for them.
    pub(crate) fn page_resident(p: &PageEvent, data: Option<KVec<u8>>) -> Self {
        let mut r = Record::page(uapi::KVM_PFI_CMD_PAGE_RESIDENT, p);
        (r.ev.gpa, r.ev.page_size) = (p.info.gpa, p.info.page_size);
        (r.ev.how, r.ev.reinjections) = (p.info.how, p.info.reinjections);
        r.data = data;
        r
    }

    pub(crate) fn page_failed(p: &PageEvent) -> Self {
        let mut r = Record::page(uapi::KVM_PFI_CMD_PAGE_FAILED, p);
        r.ev.fail_reason = p.info.fail_reason;
        r
    }

    pub(crate) fn detection(d: &Detection<'_>) -> Self {
        let mut r = Record::new(uapi::KVM_PFI_CMD_DETECTION);
        (r.ev.vm_id, r.ev.target_id, r.ev.cr3, r.ev.gva, r.ev.gpa) = (d.vm_id, d.target_id, d.cr3, d.gva, d.gpa);
        (r.ev.offset, r.ev.length, r.ev.rule_id, r.ev.generation) = (d.offset, d.length, d.rule_id, d.generation);
        (r.ev.how, r.ev.injections) = (d.how, d.injections);
        // NUL-terminated: one byte of the array stays 0.
        let room = r.ev.rule_name.len() - 1;
        for (dst, &src) in r.ev.rule_name.iter_mut().zip(d.rule_name.iter().take(room)) {
            *dst = src as kernel::ffi::c_char;
        }
        r
    }

    /// `bytes`: the bytes written (all of them, at most a page).
    pub(crate) fn write_attempt(w: &WriteAttempt, bytes: Option<KVec<u8>>) -> Self {
        let mut r = Record::new(uapi::KVM_PFI_CMD_WRITE_ATTEMPT);
        (r.ev.vm_id, r.ev.target_id, r.ev.cr3, r.ev.gva, r.ev.gpa) = (w.vm_id, w.target_id, w.cr3, w.gva, w.gpa);
        (r.ev.offset, r.ev.length, r.ev.restored) = ((w.gpa & 0xfff) as u32, w.len, u32::from(w.restored));
        r.data = bytes;
        r
    }

    pub(crate) fn sigs_loaded(generation: u32, nr_rules: u32) -> Self {
        let mut r = Record::new(uapi::KVM_PFI_CMD_SIGS_LOADED);
        (r.ev.generation, r.ev.nr_rules) = (generation, nr_rules);
        r
    }

    fn process(kind: u32, vm_id: u32, p: &uapi::kvm_pfi_process) -> Self {
        let mut r = Record::new(kind);
        (r.ev.vm_id, r.ev.pid, r.ev.cr3, r.ev.task) = (vm_id, p.pid, p.cr3, p.task);
        r.ev.task_flags = p.flags;
        r.ev.comm = p.comm;
        r
    }

    /// `exe`: the path of its executable (may be empty).
    pub(crate) fn process_start(vm_id: u32, p: &uapi::kvm_pfi_process, exe: Option<KVec<u8>>) -> Self {
        let mut r = Record::process(uapi::KVM_PFI_CMD_PROCESS_START, vm_id, p);
        r.ev.ppid = p.ppid;
        r.data = exe;
        r
    }

    pub(crate) fn process_exit(vm_id: u32, p: &uapi::kvm_pfi_process) -> Self {
        Record::process(uapi::KVM_PFI_CMD_PROCESS_EXIT, vm_id, p)
    }
}

/// Who a VM event is about.
pub(crate) struct VmIdentity {
    pub(crate) vm_id: u32,
    pub(crate) vmm_pid: i32,
    pub(crate) stats_id: [u8; STATS_ID_LEN],
}

/// A page event's subject: the page as `KVM_PFI_TARGET_PAGES` reports it.
pub(crate) struct PageEvent {
    pub(crate) vm_id: u32,
    pub(crate) target_id: u32,
    pub(crate) cr3: u64,
    pub(crate) info: uapi::kvm_pfi_page_info,
}

/// A signature match in a target page (`scan.rs` says what each means).
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

/// A guest write to a protected page.
pub(crate) struct WriteAttempt {
    pub(crate) vm_id: u32,
    pub(crate) target_id: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) gpa: u64,
    /// Bytes written (the event carries the first ones).
    pub(crate) len: u32,
    pub(crate) restored: bool,
}

/// The consumer of the outbox (the sink stage), connected at load.
#[derive(Clone, Copy)]
pub(crate) struct Consumer {
    /// Makes the consumer take records soon; called after each emit, with
    /// no lock held; must not sleep.
    pub(crate) wake: fn(),
    /// Returns once every record emitted before the call was taken and
    /// handed to the sinks; may sleep, never for a consumer outside the
    /// module (the sinks do not block).
    pub(crate) flush: fn(),
}

struct OutboxState {
    ring: Option<Ring<KVVec<Option<Record>>>>,
    /// Records dropped since the last one queued.
    dropped: u32,
    /// Records queued and not yet reported `delivered` by the consumer.
    undelivered: usize,
    consumer: Option<Consumer>,
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `Outbox::new` in module init before any use.
    unsafe(uninit) static OUTBOX: SpinLock<OutboxState> = OutboxState { ring: None, dropped: 0, undelivered: 0, consumer: None };
}

/// Module-lifetime owner of the outbox; frees what is left on unload.
pub(crate) struct Outbox;

impl Outbox {
    pub(crate) fn new() -> Result<Self> {
        let mut slots = KVVec::with_capacity(OUTBOX_RECORDS, GFP_KERNEL)?;
        for _ in 0..OUTBOX_RECORDS {
            // Capacity reserved: cannot fail.
            slots.push(None, GFP_KERNEL)?;
        }
        // SAFETY: called once, from module init, before any emit.
        unsafe { OUTBOX.init() };
        OUTBOX.lock().ring = Some(Ring::new(slots));
        Ok(Outbox)
    }

    /// Connects the consumer (`None`: disconnects it; records then wait).
    pub(crate) fn connect(consumer: Option<Consumer>) {
        OUTBOX.lock().consumer = consumer;
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let ring = OUTBOX.lock().ring.take();
        // Freed outside the lock (payloads, and the slots are vmalloc'ed).
        drop(ring);
    }
}

/// Hands `rec` to the sinks. Never sleeps; callable under spinlocks.
pub(crate) fn emit(mut rec: Record) {
    let (wake, refused) = {
        let mut outbox = OUTBOX.lock();
        let o = &mut *outbox;
        match o.ring.as_mut() {
            None => (None, Some(rec)),
            Some(ring) => {
                rec.ev.lost = o.dropped;
                match ring.push_back(rec) {
                    Ok(()) => {
                        o.dropped = 0;
                        o.undelivered += 1;
                        (o.consumer.map(|c| c.wake), None)
                    }
                    Err(rec) => {
                        o.dropped = o.dropped.saturating_add(1);
                        (None, Some(rec))
                    }
                }
            }
        }
    };
    // A refused record's bytes are freed outside the lock.
    drop(refused);
    if let Some(wake) = wake {
        wake();
    }
}

/// The consumer's side: the oldest record. Report it [`delivered`] once
/// the sinks have it.
pub(crate) fn take() -> Option<Record> {
    OUTBOX.lock().ring.as_mut()?.pop_front()
}

/// The consumer's side: a record taken has reached the sinks.
pub(crate) fn delivered() {
    let mut o = OUTBOX.lock();
    o.undelivered = o.undelivered.saturating_sub(1);
}

/// Waits until the records emitted so far reached the sinks, so that an
/// ioctl's events are on the event stream when it returns, and a counter
/// bumped after a flush is never ahead of the events. Process context.
pub(crate) fn flush() {
    let consumer = {
        let o = OUTBOX.lock();
        // Nothing on its way: no need to wait for the consumer.
        if o.undelivered == 0 {
            return;
        }
        o.consumer
    };
    if let Some(c) = consumer {
        (c.flush)();
    }
}
