// SPDX-License-Identifier: GPL-2.0

//! Attached VMs: the state of each, and the table the probes look VMs up
//! in. Attaching and detaching (announcing, ending the report work) is
//! `attach.rs`'s; what the report work does is `report.rs`'s.
//!
//! The probes run on every vCPU entry and exit of every VM on the host, with
//! interrupts off. They find an attached VM in a fixed table of atomics,
//! without locks or allocation, and return at once when nothing is attached.
//! Writers (ioctls, file release, the reaper, module exit) serialise on
//! [`CONTROL`]; a detached [`AttachedVm`] is freed only after an RCU grace
//! period, which every probe invocation (run with preemption disabled by the
//! tracepoint) is a read-side critical section of.

use core::ptr;

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::atomic::{
    Acquire,
    Atomic,
    AtomicFlag,
    Relaxed,
    Release, //
};
use kernel::sync::{
    rcu,
    Arc,
    ArcBorrow,
    CondVar,
    Mutex,
    SpinLock, //
};
use kernel::time::Jiffies;
use kernel::workqueue::{
    self,
    impl_has_delayed_work,
    impl_has_work,
    new_delayed_work,
    new_work,
    DelayedWork,
    Work, //
};

use crate::bindings::glue;
use crate::bindings::uapi;
use crate::events::VmIdentity;
use crate::linux_guest::state::LinuxGuest;
use crate::pfi_core::ids;
use crate::pfi_core::vendor::CpuView;
use crate::pfi_core::walk::GuestPaging;
use crate::targets::frames::FrameTable;
use crate::targets::protection::Gathered;
use crate::probe_gate::ProbeGate;
use crate::targets::{
    self,
    Targets, //
};
use crate::work_end::{
    end_work_for_good,
    module_queue,
    QueuedWork, //
};

/// Attached VMs at once, over all files (`KVM_PFI_MAX_VMS`).
pub(crate) const MAX_VMS: usize = uapi::KVM_PFI_MAX_VMS as usize;
/// vCPUs per VM with their own counters (`KVM_PFI_MAX_VCPUS`); vCPUs beyond
/// are counted in the VM's totals only.
pub(crate) const MAX_VCPUS: usize = uapi::KVM_PFI_MAX_VCPUS as usize;
const STATS_ID_LEN: usize = crate::events::STATS_ID_LEN;

/// Who ends an attachment besides the VM's death and module unload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// `KVM_PFI_ATTACH_PERSISTENT`: only `KVM_PFI_DETACH` from any opener.
    Module,
    /// Closing the `/dev/kvm_pfi` file with this id detaches the VM.
    File(u64),
}

/// Counters of one vCPU. Only that vCPU's thread writes them (a vCPU runs on
/// one thread at a time), so plain load/store, no locked RMW, on the hot path.
pub(crate) struct VcpuCounters {
    entries: Atomic<u64>,
    exits: Atomic<u64>,
}

impl VcpuCounters {
    const fn new() -> Self {
        VcpuCounters { entries: Atomic::new(0), exits: Atomic::new(0) }
    }

    #[inline]
    fn bump(counter: &Atomic<u64>) {
        counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
    }

    pub(crate) fn entries(&self) -> u64 {
        self.entries.load(Relaxed)
    }

    pub(crate) fn exits(&self) -> u64 {
        self.exits.load(Relaxed)
    }
}

/// One attached VM. The table holds one `Arc` reference while attached
/// (as a raw pointer); a queued report work item holds another.
///
/// # Invariants
///
/// `kvm` holds one reference on the VM (taken by `kvm_pfi_vm_get_from_fd`),
/// dropped exactly once when this is freed.
#[pin_data(PinnedDrop)]
pub(crate) struct AttachedVm {
    pub(crate) kvm: *mut glue::kvm,
    pub(crate) id: u32,
    pub(crate) owner: Owner,
    pub(crate) flags: u32,
    pub(crate) vmm_pid: i32,
    pub(crate) stats_id: [u8; STATS_ID_LEN],
    vcpus: [VcpuCounters; MAX_VCPUS],
    /// vCPUs with an index of `MAX_VCPUS` or more (racy sums, stats only).
    overflow: VcpuCounters,
    /// Highest vCPU index seen, plus one.
    nr_vcpus: Atomic<u32>,
    /// Targets and per-vCPU injection slots, shared by the probes of all
    /// vCPUs and the ioctls.
    #[pin]
    pub(crate) targets: SpinLock<Targets>,
    /// What probes read of `targets` without its lock (`probe_gate.rs`);
    /// `targets` holds the same gate and writes it.
    pub(crate) gate: Arc<ProbeGate>,
    pub(crate) next_target_id: Atomic<u32>,
    /// Set once the VM left the table: reports stop.
    pub(crate) detached: Atomic<bool>,
    /// Guest writes to protected pages beyond the report budget
    /// (`write_reports_per_sec`): restored, counted, not reported.
    pub(crate) writes_unreported: Atomic<u64>,
    /// The guest's paging as the probes last saw it in long mode (see
    /// `paging`), for walks outside the probes; 0 before.
    paging_seen: Atomic<u32>,
    /// KVM page-track notifier, created by the report work on first use.
    pub(crate) tracker: Atomic<*mut glue::kvm_pfi_tracker>,
    /// Serialises write-tracking changes (the report work's, and a target
    /// removal's untracking) so that no gfn is tracked after its target
    /// went, and counts the records of each tracked frame: ordered before
    /// `targets` (see `tracking_changes::TrackingChanges`).
    #[pin]
    pub(crate) tracking: Mutex<FrameTable>,
    /// Emulated writes to a protected page gathered into one report
    /// (`protect.rs`), until the report work sends it.
    #[pin]
    pub(crate) gather: Mutex<Option<Gathered>>,
    /// Writes are gathered: the next entry probe ends the burst.
    pub(crate) gather_open: AtomicFlag,
    /// The report work: everything about this VM that may sleep or take
    /// long (walks outside the probes, events, protection, scans). Its
    /// `WorkItem` implementation is `report.rs`.
    #[pin]
    work: Work<AttachedVm>,
    /// The sweep: the periodic work on the targets that no probe does
    /// (timeouts of faults whose vCPU does not exit, re-walks of waiting
    /// and resident pages). Its `WorkItem` implementation is `sweep.rs`.
    #[pin]
    sweep: DelayedWork<AttachedVm, SWEEP>,
    /// The guest kernel's profile, the processes its last walk found, and
    /// a profile being checked (`linux_guest.rs`): the Linux work's and
    /// the ioctls', which may sleep.
    #[pin]
    pub(crate) linux: Mutex<LinuxGuest>,
    /// Signalled when the Linux work has checked a profile (or the VM
    /// went).
    #[pin]
    pub(crate) linux_answered: CondVar,
    /// The Linux work: profile checks and the periodic task-list walks.
    /// Its `WorkItem` implementation is `linux_guest.rs`.
    #[pin]
    linux_work: DelayedWork<AttachedVm, LINUX>,
    /// Set: the next probe that reads the state of a vCPU in 64-bit kernel
    /// mode records its address-space root in `kernel_root`.
    wants_kernel_root: Atomic<bool>,
    /// The root (CR3 without PCID and flag bits) of a vCPU last seen in
    /// kernel mode after `wants_kernel_root` was set; 0 until then.
    kernel_root: Atomic<u64>,
}

/// The work item id of the sweep (the report work's is 0).
pub(crate) const SWEEP: u64 = 1;
/// The work item id of the Linux work.
pub(crate) const LINUX: u64 = 2;

impl_has_work! {
    impl HasWork<Self> for AttachedVm { self.work }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, SWEEP> for AttachedVm { self.sweep }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, LINUX> for AttachedVm { self.linux_work }
}

// SAFETY: `kvm` is only passed to KVM functions that may be called from any
// thread while a reference is held; everything else is atomics or immutable.
unsafe impl Send for AttachedVm {}
// SAFETY: as above.
unsafe impl Sync for AttachedVm {}

impl AttachedVm {
    /// Counts one entry or exit of `vcpu_idx`. Hot path.
    #[inline]
    pub(crate) fn count(&self, vcpu_idx: usize, exit: bool) {
        let counters = match self.vcpus.get(vcpu_idx) {
            Some(c) => {
                if c.entries() == 0 && c.exits() == 0 {
                    // First event of this vCPU: rare, so the RMW is fine.
                    let seen = vcpu_idx as u32 + 1;
                    let mut cur = self.nr_vcpus.load(Relaxed);
                    while cur < seen {
                        match self.nr_vcpus.cmpxchg(cur, seen, Relaxed) {
                            Ok(_) => break,
                            Err(now) => cur = now,
                        }
                    }
                }
                c
            }
            None => &self.overflow,
        };
        VcpuCounters::bump(if exit { &counters.exits } else { &counters.entries });
    }

    /// vCPUs with their own counters that have been seen.
    pub(crate) fn nr_vcpus(&self) -> usize {
        (self.nr_vcpus.load(Relaxed) as usize).min(MAX_VCPUS)
    }

    pub(crate) fn vcpu(&self, idx: usize) -> Option<&VcpuCounters> {
        self.vcpus.get(idx)
    }

    /// Sums over all vCPUs: (entries, exits).
    pub(crate) fn totals(&self) -> (u64, u64) {
        let mut sum = (self.overflow.entries(), self.overflow.exits());
        for c in &self.vcpus[..self.nr_vcpus()] {
            sum.0 = sum.0.wrapping_add(c.entries());
            sum.1 = sum.1.wrapping_add(c.exits());
        }
        sum
    }

    /// Who the VM is, for its events.
    pub(crate) fn identity(&self) -> VmIdentity {
        VmIdentity { vm_id: self.id, vmm_pid: self.vmm_pid, stats_id: self.stats_id }
    }

    pub(crate) fn info(&self) -> uapi::kvm_pfi_vm_info {
        let mut info = uapi::kvm_pfi_vm_info {
            vm_id: self.id,
            vmm_pid: self.vmm_pid,
            flags: self.flags,
            nr_vcpus: self.nr_vcpus() as u32,
            ..Default::default()
        };
        for (dst, src) in info.stats_id.iter_mut().zip(self.stats_id.iter()) {
            *dst = *src as kernel::ffi::c_char;
        }
        info
    }

    /// The VM is dead when the only references left are the ones we hold:
    /// its VMM closed the VM and every vCPU file.
    pub(crate) fn only_we_hold_it(&self) -> bool {
        // Ours: the attachment's, and the page-track notifier's.
        let ours = 1 + u32::from(!self.tracker.load(Acquire).is_null());
        // SAFETY: `self.kvm` is referenced (type invariant).
        unsafe { glue::kvm_pfi_vm_users(self.kvm) <= ours }
    }
}

#[pinned_drop]
impl PinnedDrop for AttachedVm {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: we hold one reference (type invariant), dropped once here.
        unsafe { glue::kvm_pfi_vm_put(self.kvm) };
    }
}

impl AttachedVm {
    /// Queues the report work; callable from a probe (no allocation: the
    /// `Arc` clone is a reference count).
    pub(crate) fn kick_report(&self) {
        if self.detached.load(Relaxed) {
            return;
        }
        // Already queued: the queued run will see this page too.
        let _ = module_queue().enqueue::<_, 0>(self.arc());
    }

    /// Another reference of this attachment (a reference count: no
    /// allocation, callable from a probe).
    pub(crate) fn arc(&self) -> Arc<AttachedVm> {
        // SAFETY: every `AttachedVm` lives in an `Arc` (see `attach`), and
        // `self` is borrowed from it for the duration of this call.
        unsafe { ArcBorrow::from_raw(core::ptr::from_ref(self)) }.into()
    }

    /// Queues delayed work `ID` of this VM (the sweep, the Linux work) to
    /// run after `delay`, unless the VM is detached or it is queued already
    /// (that run comes soon enough).
    pub(crate) fn queue_delayed<const ID: u64>(&self, delay: Jiffies)
    where
        Arc<AttachedVm>: workqueue::RawDelayedWorkItem<ID>,
    {
        if self.detached.load(Relaxed) {
            return;
        }
        let _ = module_queue().enqueue_delayed::<_, ID>(self.arc(), delay);
    }

    /// Ends the sweep for good, as `end_report` does the report work (the
    /// sweep kicks the report work: end it first).
    pub(crate) fn end_sweep(&self) {
        let dwork = core::ptr::from_ref(&self.sweep).cast_mut().cast::<bindings::delayed_work>();
        // SAFETY: `DelayedWork` is a transparent wrapper of `delayed_work`
        // and lives in `self`, which lives in an `Arc` whose queued runs
        // each hold a reference.
        unsafe { end_work_for_good(self, QueuedWork::Delayed(dwork)) };
    }

    /// Ends the Linux work for good, then wakes a profile load waiting
    /// for it (it sees `detached`).
    pub(crate) fn end_linux(&self) {
        let dwork = core::ptr::from_ref(&self.linux_work).cast_mut().cast::<bindings::delayed_work>();
        // SAFETY: as in `end_sweep`.
        unsafe { end_work_for_good(self, QueuedWork::Delayed(dwork)) };
        let _guard = self.linux.lock();
        self.linux_answered.notify_all();
    }

    /// Asks the probes for a fresh kernel-mode root: forgets the last one
    /// (its process may have exited, its tables freed).
    pub(crate) fn request_kernel_root(&self) {
        self.kernel_root.store(0, Relaxed);
        self.wants_kernel_root.store(true, Release);
    }

    /// Whether a probe should record a kernel-mode root. Hot path: one load.
    #[inline]
    pub(crate) fn wants_kernel_root(&self) -> bool {
        self.wants_kernel_root.load(Relaxed)
    }

    /// Records the root of a vCPU in 64-bit kernel mode, if asked to.
    #[inline]
    pub(crate) fn note_kernel_root(&self, cr3: u64) {
        if self.wants_kernel_root.load(Acquire) {
            self.kernel_root.store(crate::pfi_core::walk::cr3_root_gpa(cr3), Relaxed);
            self.wants_kernel_root.store(false, Release);
        }
    }

    /// The last kernel-mode root a probe recorded since the last request.
    pub(crate) fn kernel_root(&self) -> Option<u64> {
        Some(self.kernel_root.load(Relaxed)).filter(|&r| r != 0)
    }

    /// A new target id of this VM, never one given before (`EOVERFLOW`
    /// once all are used, see `ids`).
    pub(crate) fn take_target_id(&self) -> Result<u32> {
        let mut cur = self.next_target_id.load(Relaxed);
        loop {
            let mut next = cur;
            let id = ids::take(&mut next).ok_or(EOVERFLOW)?;
            match self.next_target_id.cmpxchg(cur, next, Relaxed) {
                Ok(_) => return Ok(id),
                Err(now) => cur = now,
            }
        }
    }

    /// Notes the paging mode of the running vCPU (a probe that has read
    /// its state, in long mode). Cheap when nothing changed: the CPUID
    /// parts (MAXPHYADDR, 1 GiB pages) are asked only when CR4.LA57 or
    /// EFER.NXE differ from what was recorded.
    ///
    /// # Safety
    ///
    /// `vcpu` is the vCPU being run (a probe).
    pub(crate) unsafe fn note_paging(&self, vcpu: *mut glue::kvm_vcpu, v: &CpuView) {
        let la57 = v.cr4 & targets::probe::CR4_LA57 != 0;
        let nx = v.efer & targets::probe::EFER_NXE != 0;
        let seen = self.paging_seen.load(Relaxed);
        if seen != 0 && (seen & (1 << 8) != 0) == la57 && (seen & (1 << 9) != 0) == nx {
            return;
        }
        // SAFETY: the caller's contract.
        self.record_paging(&unsafe { targets::probe::guest_paging(vcpu, v) });
    }

    /// Records the guest's paging mode; the first time, the report work
    /// walks what waited for it.
    fn record_paging(&self, p: &GuestPaging) {
        let f = &p.features;
        let v = 1 << 16
            | u32::from(f.gbpages) << 10
            | u32::from(f.nx) << 9
            | u32::from(p.la57) << 8
            | u32::from(f.maxphyaddr);
        let was = self.paging_seen.load(Relaxed);
        if was != v {
            self.paging_seen.store(v, Relaxed);
            if was == 0 {
                self.kick_report();
            }
        }
    }

    /// Whether a probe has seen the guest in long mode.
    pub(crate) fn paging_known(&self) -> bool {
        self.paging_seen.load(Relaxed) != 0
    }

    /// The guest's paging mode, once a probe has seen it in long mode.
    pub(crate) fn paging(&self) -> Option<GuestPaging> {
        let v = self.paging_seen.load(Relaxed);
        if v == 0 {
            return None;
        }
        let bit = |n: u32| v & (1 << n) != 0;
        Some(targets::probe::paging(bit(8), bit(9), bit(10), v as u8))
    }

    /// Ends the report work for good: no run is queued or running when
    /// this returns, and no later kick can queue one. `flush_work` would
    /// not do: it waits only for the instance queued when it is called,
    /// while the report work re-kicks itself and probes, notifiers and
    /// ioctls may kick it until they see `detached`.
    pub(crate) fn end_report(&self) {
        let work = core::ptr::from_ref(&self.work).cast_mut().cast::<bindings::work_struct>();
        // SAFETY: `Work` is a transparent wrapper of `work_struct` and lives
        // in `self`, which lives in an `Arc` (see `attach`) whose queued
        // runs each hold a reference (`Workqueue::enqueue`).
        unsafe { end_work_for_good(self, QueuedWork::Work(work)) };
    }
}

/// A table entry: `kvm` is the lookup key, `vm` the state (from
/// `Arc::into_raw`). Both are null when free. Writers publish `vm` before
/// `kvm` and clear `kvm` first.
struct Slot {
    kvm: Atomic<*mut glue::kvm>,
    vm: Atomic<*mut AttachedVm>,
}

struct VmTable {
    slots: [Slot; MAX_VMS],
    /// Attached VMs; zero makes every probe return after one load.
    attached: Atomic<usize>,
}

static TABLE: VmTable = VmTable {
    slots: [const {
        Slot {
            kvm: Atomic::new(ptr::null_mut()),
            vm: Atomic::new(ptr::null_mut()),
        }
    }; MAX_VMS],
    attached: Atomic::new(0),
};

/// State only writers touch.
pub(crate) struct Control {
    next_id: u32,
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `init` in module init before anything can use it.
    unsafe(uninit) static CONTROL: Mutex<Control> = Control { next_id: 1 };
}

/// Runs `f` on the attached VM of `kvm`, if any. Hot path: one relaxed load
/// when nothing is attached, then a scan of `MAX_VMS` pointers.
///
/// # Safety
///
/// Must be called from an RCU read-side critical section (a tracepoint probe
/// runs with preemption disabled, which is one), so that the `AttachedVm`
/// cannot be freed while `f` runs.
#[inline]
pub(crate) unsafe fn with_attached<R>(
    kvm: *mut glue::kvm,
    f: impl FnOnce(&AttachedVm) -> R,
) -> Option<R> {
    if TABLE.attached.load(Relaxed) == 0 {
        return None;
    }
    for slot in &TABLE.slots {
        if slot.kvm.load(Acquire) != kvm {
            continue;
        }
        let vm = slot.vm.load(Acquire);
        // SAFETY: a non-null `vm` was published by `attach` and is freed only
        // after a grace period that started after it left the table; the
        // caller is inside a read-side critical section.
        let vm = unsafe { vm.as_ref() }?;
        // The slot may have been reused between the two loads.
        return if vm.kvm == kvm { Some(f(vm)) } else { None };
    }
    None
}

/// Runs `f` on every attached VM, with writers excluded.
pub(crate) fn for_each(mut f: impl FnMut(&AttachedVm)) {
    let _guard = CONTROL.lock();
    for slot in &TABLE.slots {
        // SAFETY: only writers free `AttachedVm`s, and they hold `CONTROL`.
        if let Some(vm) = unsafe { slot.vm.load(Acquire).as_ref() } {
            f(vm);
        }
    }
}

/// Runs `f` on the attached VM with `id`, with writers excluded.
pub(crate) fn with_id<R>(id: u32, f: impl FnOnce(&AttachedVm) -> R) -> Result<R> {
    let _guard = CONTROL.lock();
    for slot in &TABLE.slots {
        // SAFETY: as in `for_each`.
        if let Some(vm) = unsafe { slot.vm.load(Acquire).as_ref() } {
            if vm.id == id {
                return Ok(f(vm));
            }
        }
    }
    Err(ENOENT)
}

/// Runs `f` on the attached VM behind `vm_fd` of the calling process, with
/// writers excluded: `ENOENT` if that VM is not attached, `EBADF`/`EINVAL`
/// if `vm_fd` is no VM (as for `attach`).
pub(crate) fn with_fd<R>(vm_fd: i32, f: impl FnOnce(&AttachedVm) -> R) -> Result<R> {
    let mut err = 0;
    // SAFETY: `err` is a valid out-pointer; the function validates `vm_fd`.
    let kvm = unsafe { glue::kvm_pfi_vm_get_from_fd(vm_fd, &mut err) };
    if kvm.is_null() {
        return Err(Error::from_errno(err));
    }
    let r = {
        let _guard = CONTROL.lock();
        // SAFETY: as in `for_each`.
        let vm = TABLE.slots.iter().find_map(|slot| unsafe { slot.vm.load(Acquire).as_ref() }.filter(|vm| vm.kvm == kvm));
        vm.map(f).ok_or(ENOENT)
    };
    // SAFETY: the reference taken above; the caller's descriptor (or our
    // attachment) keeps the VM alive, so this is not the last one.
    unsafe { glue::kvm_pfi_vm_put(kvm) };
    r
}

/// Attaches the VM behind `vm_fd` of the calling process and calls
/// `announce` on it while no writer can detach it yet. Errors leave nothing
/// attached and no reference held.
#[inline(never)]
pub(crate) fn attach(vm_fd: i32, flags: u32, owner: Owner, announce: impl FnOnce(&AttachedVm)) -> Result<u32> {
    let mut err = 0;
    // SAFETY: `err` is a valid out-pointer; the function validates `vm_fd`.
    let kvm = unsafe { glue::kvm_pfi_vm_get_from_fd(vm_fd, &mut err) };
    if kvm.is_null() {
        return Err(Error::from_errno(err));
    }
    // SAFETY: `kvm` is referenced; the glue returns a NUL-terminated array
    // inside it.
    let stats_id = unsafe { kernel::str::CStr::from_char_ptr(glue::kvm_pfi_vm_stats_id(kvm)) };
    let mut id_bytes = [0u8; STATS_ID_LEN];
    let stats_id = stats_id.to_bytes();
    let n = stats_id.len().min(STATS_ID_LEN - 1);
    id_bytes[..n].copy_from_slice(&stats_id[..n]);

    // Within its limits: the module loaded (`control::Parameters`).
    let gate_and_targets = ProbeGate::new().and_then(|gate| {
        Targets::new(crate::module_parameters::write_reports_per_sec.value(), gate.clone()).map(|t| (gate, t))
    });
    let (gate, targets) = match gate_and_targets {
        Ok(t) => t,
        Err(e) => {
            // SAFETY: drop the reference taken above; nothing else has it.
            unsafe { glue::kvm_pfi_vm_put(kvm) };
            return Err(e);
        }
    };
    // SAFETY: `kvm` is referenced.
    let vmm_pid = unsafe { glue::kvm_pfi_vm_creator_pid(kvm) };
    let mut control = CONTROL.lock();
    // Taken only once the VM is in the table (below): a refused attach uses
    // no id.
    if control.next_id == 0 {
        drop(control);
        // SAFETY: drop the reference taken above; nothing else has it.
        unsafe { glue::kvm_pfi_vm_put(kvm) };
        return Err(EOVERFLOW);
    }
    let id = control.next_id;
    let vm = Arc::pin_init(
        pin_init!(AttachedVm {
            kvm,
            id,
            owner,
            flags,
            vmm_pid,
            stats_id: id_bytes,
            vcpus: [const { VcpuCounters::new() }; MAX_VCPUS],
            overflow: VcpuCounters::new(),
            nr_vcpus: Atomic::new(0),
            targets <- kernel::new_spinlock!(targets, "kvm_pfi::targets"),
            gate,
            next_target_id: Atomic::new(1),
            detached: Atomic::new(false),
            writes_unreported: Atomic::new(0),
            paging_seen: Atomic::new(0),
            tracker: Atomic::new(ptr::null_mut()),
            tracking <- kernel::new_mutex!(FrameTable::new(), "kvm_pfi::tracking"),
            gather <- kernel::new_mutex!(None, "kvm_pfi::gather"),
            gather_open: AtomicFlag::new(false),
            work <- new_work!("kvm_pfi::report"),
            sweep <- new_delayed_work!("kvm_pfi::sweep"),
            linux <- kernel::new_mutex!(LinuxGuest::new(), "kvm_pfi::linux"),
            linux_answered <- kernel::new_condvar!("kvm_pfi::linux_answered"),
            linux_work <- new_delayed_work!("kvm_pfi::linux"),
            wants_kernel_root: Atomic::new(false),
            kernel_root: Atomic::new(0),
        }),
        GFP_KERNEL,
    );
    // `AttachedVm` was never built, so the reference is still ours to drop.
    let vm = match vm {
        Ok(vm) => vm,
        Err(e) => {
            drop(control);
            // SAFETY: drop the reference taken above; nothing else has it.
            unsafe { glue::kvm_pfi_vm_put(kvm) };
            return Err(e);
        }
    };

    let mut free = None;
    for (i, slot) in TABLE.slots.iter().enumerate() {
        let key = slot.kvm.load(Relaxed);
        if key == kvm {
            drop(control);
            return Err(EEXIST); // `vm` drops our reference
        }
        if key.is_null() && free.is_none() {
            free = Some(i);
        }
    }
    let Some(i) = free else {
        drop(control);
        return Err(ENOSPC); // `vm` drops our reference
    };
    // Never reused: after u32::MAX attaches, EOVERFLOW (see `ids`).
    let _ = ids::take(&mut control.next_id);
    let slot = &TABLE.slots[i];
    slot.vm.store(Arc::into_raw(vm).cast_mut(), Release);
    slot.kvm.store(kvm, Release);
    TABLE.attached.fetch_add(1, Relaxed);
    // SAFETY: just published, and `CONTROL` keeps writers from freeing it.
    announce(unsafe { &*slot.vm.load(Relaxed) });
    Ok(id)
}

/// VMs taken out of the table, no longer reachable by any probe; the
/// caller must consume it (`into_iter`), which gives it their references.
#[must_use]
pub(crate) struct Taken {
    vms: [*mut AttachedVm; MAX_VMS],
    n: usize,
}

impl Taken {
    /// The taken VMs, each with the table's reference, marked detached.
    pub(crate) fn into_iter(self) -> impl Iterator<Item = Arc<AttachedVm>> {
        self.vms.into_iter().take(self.n).map(|vm| {
            // SAFETY: came from `Arc::into_raw` in `attach`, and left the
            // table (and every probe) in `take_where`: the reference is ours.
            let vm = unsafe { Arc::from_raw(vm) };
            vm.detached.store(true, Relaxed);
            vm
        })
    }
}

/// Takes every VM `select` picks out of the table, then waits until no
/// probe can still see them. Sleeps.
pub(crate) fn take_where(select: impl Fn(&AttachedVm) -> bool) -> Taken {
    let mut taken = Taken { vms: [ptr::null_mut(); MAX_VMS], n: 0 };
    {
        let _guard = CONTROL.lock();
        for slot in &TABLE.slots {
            let vm = slot.vm.load(Relaxed);
            // SAFETY: writers hold `CONTROL`, so `vm` is alive.
            match unsafe { vm.as_ref() } {
                Some(v) if select(v) => {
                    slot.kvm.store(ptr::null_mut(), Release);
                    slot.vm.store(ptr::null_mut(), Release);
                    TABLE.attached.fetch_sub(1, Relaxed);
                    taken.vms[taken.n] = vm;
                    taken.n += 1;
                }
                _ => {}
            }
        }
    }
    if taken.n > 0 {
        // No probe can still be looking at what left the table.
        rcu::synchronize_rcu();
    }
    taken
}

/// Initialises the table's writer lock; called once from module init.
pub(crate) fn init() {
    // SAFETY: called once, from module init, before any user of CONTROL.
    unsafe { CONTROL.init() };
}
