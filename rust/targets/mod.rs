// SPDX-License-Identifier: GPL-2.0

//! Targets of an attached VM: guest virtual ranges of one address space,
//! page by page.
//!
//! The lock: everything here is one VM's `Targets`, inside that VM's
//! `AttachedVm::targets` spinlock. The probes of all its vCPUs (interrupts
//! off), the ioctls, the report work and the page-track notifier share it;
//! each holds it for bounded work (at most a few page walks in a probe, a
//! batch of bounded size elsewhere) and never across anything that sleeps:
//! whatever needs to sleep copies what it needs out and works unlocked.
//!
//! One file per concept, each adding its part of `impl Targets`:
//! `page.rs` (a page and its state machine), `probe.rs` (the work of an
//! entry and an exit: walks, injection, delivery), `tables.rs` (write
//! tracking of page-table pages), `protection.rs` (protected pages and
//! their kept bytes), `scans.rs` (scan jobs).

use kernel::prelude::*;
use kernel::sync::Arc;

use crate::bindings::uapi;
use crate::pfi_core::budget::RateBudget;
use crate::pfi_core::ready_queue::ReadyQueue;
use crate::pfi_core::inject::{
    CancelReason,
    InjectConfig,
    Injection,
    KernelRefusals,
    State,
    Target as PageTarget,
    TargetId,
    VcpuSlot, //
};
use crate::pfi_core::walk::{
    self,
    AddressSpace, //
};
use crate::probe_gate::ProbeGate;

use self::owned::{
    Owned,
    PageRef, //
};
use self::page::{
    Gfns,
    Page,
    PAGE_SIZE, //
};

pub(crate) mod frames;
pub(crate) mod owned;
pub(crate) mod page;
pub(crate) mod probe;
pub(crate) mod protection;
pub(crate) mod scans;
pub(crate) mod sweep;
pub(crate) mod tables;
pub(crate) mod vma_gate;

pub(crate) const MAX_TARGETS: usize = uapi::KVM_PFI_MAX_TARGETS as usize;
pub(crate) const MAX_PAGES: usize = uapi::KVM_PFI_MAX_TARGET_PAGES as usize;
/// vCPUs with an injection slot of their own (`KVM_PFI_MAX_VCPUS`).
const MAX_VCPUS: usize = uapi::KVM_PFI_MAX_VCPUS as usize;

/// A guest virtual range in one address space.
pub(crate) struct Target {
    pub(crate) id: u32,
    pub(crate) flags: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) len: u64,
    pub(crate) pages: KVVec<Page>,
    pub(super) space: AddressSpace,
    /// Its pages that may get a #PF now, in turn (`page::ready`).
    pub(super) ready: ReadyQueue,
    /// The guest `mm_struct` of its process, as the Linux work last found
    /// it (`vma_gate.rs`); `None`: not found (no profile, no such process).
    pub(super) process_mm: Option<u64>,
    /// The rule that made it (`linux_guest::rules`), 0: `KVM_PFI_TARGET_ADD`.
    pub(crate) rule_id: u32,
}

impl Target {
    /// Puts page `i` in the ready queue or takes it out, after anything
    /// that may have changed its state or its arming.
    fn sync_ready(&mut self, i: usize) {
        let want = self.is_ready(i);
        self.ready.set(&mut self.pages, i, want);
    }

    /// Whether page `i` may get a #PF now (`page::ready`).
    fn is_ready(&self, i: usize) -> bool {
        self.pages.get(i).is_some_and(page::ready)
    }

    /// How the probe gate knows the target: its address space, and whether
    /// it takes faults at CPL 0 (`KVM_PFI_TARGET_KERNEL`).
    pub(crate) fn gate_key(&self) -> (AddressSpace, bool) {
        (self.space, self.flags & uapi::KVM_PFI_TARGET_KERNEL != 0)
    }
}

/// A validated `KVM_PFI_TARGET_ADD` request.
pub(crate) struct TargetSpec {
    pub(crate) flags: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) len: u64,
    pub(crate) config: InjectConfig,
    /// Whether a page whose entry is empty may still be faulted in, once
    /// its VMA allows it (`vma_gate.rs`): VMA-checked pages, unless the
    /// caller knows the range holds anonymous private mappings only (a
    /// rule's piece), whose empty entries were never written.
    pub(crate) empty_may_fault: bool,
}

impl TargetSpec {
    /// Checks a request against the limits of the UAPI; nothing is changed.
    pub(crate) fn validate(req: &uapi::kvm_pfi_target, defaults: InjectConfig) -> Result<Self> {
        if req.flags & !uapi::KVM_PFI_TARGET_FLAGS_ALL != 0 || req.rule_id != 0 || req.target_id != 0 {
            return Err(EINVAL);
        }
        if req.gva % PAGE_SIZE != 0 || req.len % PAGE_SIZE != 0 || req.len == 0 {
            return Err(EINVAL);
        }
        if req.flags & uapi::KVM_PFI_TARGET_ENFORCE != 0 && req.flags & uapi::KVM_PFI_TARGET_PROTECT == 0 {
            return Err(EINVAL);
        }
        if req.len / PAGE_SIZE > MAX_PAGES as u64 {
            return Err(E2BIG);
        }
        if req.flags & uapi::KVM_PFI_TARGET_ENFORCE != 0
            && req.len / PAGE_SIZE > u64::from(uapi::KVM_PFI_MAX_ENFORCE_PAGES)
        {
            return Err(E2BIG);
        }
        if req.timeout_ms > crate::pfi_core::inject::MAX_TIMEOUT_MS
            || req.max_tries > crate::pfi_core::inject::MAX_TRIES {
            return Err(EINVAL);
        }
        let last = req.gva.checked_add(req.len - 1).ok_or(EINVAL)?;
        // Canonical for 5-level paging (the wider one), and not straddling
        // the hole; a 4-level guest simply never maps the upper part.
        if !walk::is_canonical(req.gva, true) || !walk::is_canonical(last, true) {
            return Err(EINVAL);
        }
        let kernel_half = req.gva >> 63 != 0;
        if (last >> 63 != 0) != kernel_half {
            return Err(EINVAL);
        }
        if kernel_half && req.flags & uapi::KVM_PFI_TARGET_KERNEL == 0 {
            return Err(EINVAL);
        }
        let mut config = defaults;
        if req.timeout_ms != 0 {
            config.timeout_ns = u64::from(req.timeout_ms) * 1_000_000;
        }
        if req.max_tries != 0 {
            config.max_tries = req.max_tries;
        }
        let empty_may_fault = vma_gate::checks_vmas(req.flags, req.gva);
        Ok(TargetSpec { flags: req.flags, cr3: req.cr3, gva: req.gva, len: req.len, config, empty_may_fault })
    }

    /// Builds the target (allocates its pages), outside any lock.
    pub(crate) fn build(&self, id: u32) -> Result<KBox<Target>> {
        let n = (self.len / PAGE_SIZE) as usize;
        let mut pages = KVVec::with_capacity(n, GFP_KERNEL)?;
        let space = AddressSpace::from_cr3(self.cr3, self.flags & uapi::KVM_PFI_TARGET_KPTI != 0);
        for i in 0..n {
            let target = PageTarget {
                id: TargetId(id),
                space,
                gva: self.gva + i as u64 * PAGE_SIZE,
                write: self.flags & uapi::KVM_PFI_TARGET_WRITE != 0,
                allow_kernel_mode: self.flags & uapi::KVM_PFI_TARGET_KERNEL != 0,
                empty_may_fault: self.empty_may_fault,
            };
            pages.push(
                Page {
                    inj: Injection::new(target, self.config),
                    how: 0,
                    gpa: 0,
                    page_size: 0,
                    fail_reason: 0,
                    walk_due: true,
                    next_walk_ns: 0,
                    walked: false,
                    walks: 0,
                    ready: Default::default(),
                    seen_swapped: false,
                    injected: false,
                    reported: false,
                    tables_wanted: Gfns::default(),
                    tables_tracked: Gfns::default(),
                    scan_gen: 0,
                    written: None,
                    scanned_seq: 0,
                    pending_seq: 0,
                    last_change: (0, 0),
                    scan_failed: false,
                    protect_failed: false,
                    data_tracked: None,
                    shadow: None,
                    moved: false,
                    track_applied: false,
                    last_walk_empty: false,
                    from_file: false,
                },
                GFP_KERNEL,
            )?;
        }
        let mut t = KBox::new(
            Target {
                id,
                flags: self.flags,
                cr3: self.cr3,
                gva: self.gva,
                len: self.len,
                pages,
                space,
                ready: ReadyQueue::new(),
                process_mm: None,
                rule_id: 0,
            },
            GFP_KERNEL,
        )?;
        // Never walked: each may take its first walk at an entry.
        for i in 0..n {
            t.sync_ready(i);
        }
        Ok(t)
    }
}

/// A page that settled and still has to be reported, copied out of the lock.
#[derive(Clone, Copy)]
pub(crate) struct Settled {
    pub(crate) target_id: u32,
    pub(crate) flags: u32,
    pub(crate) cr3: u64,
    /// Where its walks start (the address space's top-level table).
    pub(crate) root: u64,
    pub(crate) info: uapi::kvm_pfi_page_info,
}

/// The targets of one VM and the per-vCPU injection slots.
pub(crate) struct Targets {
    pub(super) targets: [Option<KBox<Target>>; MAX_TARGETS],
    pub(super) slots: KVVec<VcpuSlot>,
    /// Per vCPU, the pages its exits follow (`owned.rs`).
    pub(super) owned: KVVec<Owned>,
    /// The target slot the next entry looks at first (round robin, so that
    /// targets of one address space take turns).
    pub(super) next_target: usize,
    /// Some page's tracked tables differ from its last walk's.
    pub(crate) tracking_stale: bool,
    /// What the probes read of these targets without the lock: the
    /// address spaces with pages to inject, the vCPUs with a fault in
    /// flight, when an exit next has work. Written under the lock only.
    pub(crate) gate: Arc<ProbeGate>,
    /// Counts scans taken (see `Page::scanned_seq`).
    pub(super) scan_seq: u64,
    /// Write-attempt reports left this second (`protect.rs`).
    pub(crate) write_budget: RateBudget,
    /// Memslot removals the frame table has yet to forget.
    pub(super) frames_gone: tables::FramesGone,
    /// Entries on which a kernel-mode target was refused for the guest's
    /// configuration (no SMAP, FRED, guest debugging): `KVM_PFI_VM_STATS`.
    pub(crate) kernel_refusals: KernelRefusals,
    /// What the probes need of the VM's Linux profile to check VMAs
    /// (`vma_gate.rs`), set by the Linux work.
    pub(super) linux: Option<vma_gate::LinuxView>,
}

impl Targets {
    /// `write_reports_per_sec`: the VM's write-attempt report budget.
    pub(crate) fn new(write_reports_per_sec: u32, gate: Arc<ProbeGate>) -> Result<Self> {
        let mut slots = KVVec::with_capacity(MAX_VCPUS, GFP_KERNEL)?;
        let mut owned = KVVec::with_capacity(MAX_VCPUS, GFP_KERNEL)?;
        for _ in 0..MAX_VCPUS {
            slots.push(VcpuSlot::new(), GFP_KERNEL)?;
            owned.push(Owned::default(), GFP_KERNEL)?;
        }
        Ok(Targets {
            targets: [const { None }; MAX_TARGETS],
            slots,
            owned,
            next_target: 0,
            tracking_stale: false,
            gate,
            scan_seq: 0,
            write_budget: RateBudget::new(write_reports_per_sec),
            frames_gone: tables::FramesGone::new(),
            kernel_refusals: KernelRefusals::default(),
            linux: None,
        })
    }

    /// Inserts a built target; `ENOSPC` when all slots are used. On error
    /// the target comes back so the caller frees it outside the lock.
    pub(crate) fn insert(&mut self, t: KBox<Target>) -> core::result::Result<(), (Error, KBox<Target>)> {
        match self.targets.iter_mut().find(|t| t.is_none()) {
            Some(slot) => {
                self.gate.add_space(t.gate_key());
                self.gate.set_busy(true);
                *slot = Some(t);
                Ok(())
            }
            None => Err((ENOSPC, t)),
        }
    }

    /// Takes a target out (the caller frees it outside the lock).
    pub(crate) fn remove(&mut self, id: u32) -> Option<KBox<Target>> {
        let slot = self.targets.iter_mut().find(|t| t.as_ref().is_some_and(|t| t.id == id))?;
        let mut t = slot.take()?;
        for p in t.pages.iter_mut() {
            p.inj.cancel(CancelReason::Requested);
        }
        self.refresh_ready_spaces();
        Some(t)
    }

    /// Republishes the address spaces that may have a page to inject: those
    /// of targets with a page still live or due for a walk. Between two
    /// refreshes the set may name spaces whose pages all settled since (the
    /// probes then take the locked path for nothing), never miss one: a
    /// settled page becomes live again only through a table write or a
    /// memslot change (which add their space), or in the report work or
    /// the sweep, which refresh at the end of each run. Also whether the
    /// probes have anything to do at all (`ProbeGate::busy`). O(pages):
    /// process context only.
    pub(crate) fn refresh_ready_spaces(&mut self) {
        self.gate.set_busy(self.has_work());
        let live = |t: &&KBox<Target>| t.pages.iter().any(|p| p.walk_due || p.inj.state().is_live());
        self.gate.set_spaces(
            self.targets
                .iter()
                .flatten()
                .filter(live)
                .map(|t| t.gate_key()),
        );
    }

    /// Whether any page needs probe work (a walk, an injection, a timeout),
    /// or a vCPU has a fault in flight (its exit must free its slot, also
    /// after the page's target went).
    fn has_work(&self) -> bool {
        self.slots.iter().any(|s| s.in_flight().is_some())
            || self
                .targets
                .iter()
                .flatten()
                .any(|t| t.pages.iter().any(|p| p.walk_due || p.inj.state().is_live()))
    }

    /// The page `r` names in `targets`, if its target is still there (a
    /// function of the array alone, so that the other fields stay free to
    /// borrow).
    fn page_at(targets: &mut [Option<KBox<Target>>; MAX_TARGETS], r: PageRef) -> Option<(&mut Target, usize)> {
        let t = targets.get_mut(r.slot)?.as_mut().filter(|t| t.id == r.id)?;
        (r.index < t.pages.len()).then_some((&mut **t, r.index))
    }

    /// Whether any target is left (the sweep runs while there is one).
    pub(crate) fn is_empty(&self) -> bool {
        self.targets.iter().all(Option::is_none)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Target> {
        self.targets.iter().flatten().find(|t| t.id == id).map(|t| &**t)
    }

    /// Fills `out` with the targets as added; returns how many there are.
    pub(crate) fn list(&self, out: &mut KVVec<uapi::kvm_pfi_target>, vm_id: u32) -> usize {
        let mut total = 0;
        for t in self.targets.iter().flatten() {
            total += 1;
            if out.len() < out.capacity() {
                let cfg = t.pages.first().map(|p| p.inj.config());
                // Capacity checked: no allocation under the lock.
                let _ = out.push(
                    uapi::kvm_pfi_target {
                        vm_id,
                        flags: t.flags,
                        cr3: t.cr3,
                        gva: t.gva,
                        len: t.len,
                        target_id: t.id,
                        timeout_ms: cfg.map_or(0, |c| (c.timeout_ns / 1_000_000) as u32),
                        max_tries: cfg.map_or(0, |c| c.max_tries),
                        rule_id: t.rule_id,
                    },
                    GFP_ATOMIC,
                );
            }
        }
        total
    }

    /// Takes every target out (the VM is going away).
    pub(crate) fn take_all(&mut self, out: &mut [Option<KBox<Target>>; MAX_TARGETS]) {
        for (slot, o) in self.targets.iter_mut().zip(out.iter_mut()) {
            *o = slot.take();
        }
    }

    /// Collects up to `out.len()` settled, unreported pages, marking them
    /// reported. Returns how many.
    pub(crate) fn take_settled(&mut self, out: &mut [Option<Settled>]) -> usize {
        let mut n = 0;
        for t in self.targets.iter_mut().flatten() {
            let (id, flags, cr3) = (t.id, t.flags, t.cr3);
            for p in t.pages.iter_mut() {
                if n == out.len() {
                    return n;
                }
                let done = matches!(p.inj.state(), State::Resident { .. } | State::Failed(_));
                if done && !p.reported {
                    p.reported = true;
                    let root = p.inj.target().space.root_gpa();
                    out[n] = Some(Settled { target_id: id, flags, cr3, root, info: p.info() });
                    n += 1;
                }
            }
        }
        n
    }
}
