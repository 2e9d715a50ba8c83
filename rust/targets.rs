// SPDX-License-Identifier: GPL-2.0

//! Targets of an attached VM and the probe-side work on them: walk the
//! guest's page tables at exits, inject a #PF at a safe entry, confirm the
//! delivery, notice the page come back, give up after the configured tries.
//!
//! The decisions are `pfi_core`'s (host-tested); this file feeds it guest
//! state and applies its answers. Everything here that a probe runs is
//! bounded: at most [`WALKS_PER_EXIT`] walks of at most five 8-byte reads
//! each, and one scan of the VM's targets per entry.

use kernel::prelude::*;

use crate::bindings::{
    glue,
    uapi, //
};
use crate::guest_mem::{
    Context,
    GuestMemory, //
};
use crate::pfi_core::inject::{
    Action,
    CancelReason,
    EntryContext,
    EntryDecision,
    ExitDelivery,
    FailReason,
    InjectConfig,
    Injection,
    State,
    Target as PageTarget,
    TargetId,
    VcpuSlot, //
};
use crate::pfi_core::pte::{
    LinuxSwapLayout,
    PagingFeatures, //
};
use crate::pfi_core::vendor::CpuView;
use crate::vendor::GuestState;
use crate::pfi_core::walk::{
    self,
    AddressSpace,
    GuestPaging,
    WalkOutcome, //
};

pub(crate) const MAX_TARGETS: usize = uapi::KVM_PFI_MAX_TARGETS as usize;
pub(crate) const MAX_PAGES: usize = uapi::KVM_PFI_MAX_TARGET_PAGES as usize;
const PAGE_SIZE: u64 = 4096;
/// Walks one exit may do, over all targets of the VM.
const WALKS_PER_EXIT: usize = 8;
/// Of those, periodic re-walks of pages waiting for context.
const PERIODIC_WALKS_PER_EXIT: usize = 2;
/// A page waiting for context is walked again this often, to notice the
/// guest bringing it back by itself.
const REWALK_WAITING_NS: u64 = 1_000_000_000;

const CR4_LA57: u64 = 1 << 12;
const CR4_SMAP: u64 = 1 << 21;

/// Guest frames (page-table pages) write-tracked for one page: at most one
/// per paging level.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gfns {
    gfns: [u64; 5],
    len: usize,
}

impl Gfns {
    fn from_tables(t: &walk::TablePages) -> Self {
        let mut g = Gfns::default();
        for &gpa in t.as_slice().iter().take(5) {
            g.gfns[g.len] = gpa >> 12;
            g.len += 1;
        }
        g
    }

    pub(crate) fn as_slice(&self) -> &[u64] {
        &self.gfns[..self.len]
    }

    fn contains(&self, gfn: u64) -> bool {
        self.as_slice().contains(&gfn)
    }

    /// Forgets frames in `[first, first + n)` (their memslot is gone).
    fn forget_range(&mut self, first: u64, n: u64) {
        let mut kept = Gfns::default();
        for &g in self.as_slice() {
            if g < first || g - first >= n {
                kept.gfns[kept.len] = g;
                kept.len += 1;
            }
        }
        *self = kept;
    }
}

/// One page of a target.
pub(crate) struct Page {
    inj: Injection,
    /// `enum kvm_pfi_how`, once resident.
    how: u32,
    gpa: u64,
    page_size: u32,
    fail_reason: u32,
    /// Walk at the next exit that has budget left.
    walk_due: bool,
    /// Do not walk before this (periodic re-walks of waiting pages).
    next_walk_ns: u64,
    /// Walked at least once.
    walked: bool,
    /// A walk found the page not present (swapped out).
    seen_swapped: bool,
    /// We injected a #PF for it.
    injected: bool,
    /// The settled state has been reported (event sent).
    reported: bool,
    /// Table pages of the last walk, while the page is live: to track.
    tables_wanted: Gfns,
    /// Table pages write-tracked for this page now.
    pub(crate) tables_tracked: Gfns,
    /// Generation of the signature set it was last scanned with; 0 until
    /// its first scan and again after a guest write.
    scan_gen: u32,
    /// Bytes `[lo, hi)` guest writes changed since a scan with set
    /// generation `.0`: the next scan reports only matches touching them
    /// (the others were reported already).
    written: Option<(u32, u32, u32)>,
    /// `Targets::scan_seq` when it was last taken for a scan, and when it
    /// last became due for a rescan after writes.
    scanned_seq: u64,
    pending_seq: u64,
    /// Bytes of the page its last scan reported matches for (all, or what
    /// writes had changed), for its neighbours' rescans.
    last_change: (i32, i32),
    /// Its last scan could not read it (`KVM_PFI_PAGE_SCANNED` stays off).
    scan_failed: bool,
    /// KVM refused to track its frame (no memslot there): not retried.
    protect_failed: bool,
    /// `KVM_PFI_TARGET_PROTECT`: its own frame, write-tracked now.
    pub(crate) data_tracked: Option<u64>,
    /// `KVM_PFI_TARGET_ENFORCE`: its bytes when protection began, restored
    /// after every guest write.
    shadow: Option<KVec<u8>>,
    /// A write found the page moved to another frame: `gpa` is stale, so
    /// it is neither scanned nor protected again (the report work untracks
    /// `data_tracked`).
    moved: bool,
}

impl Page {
    fn uapi_state(&self) -> u32 {
        match self.inj.state() {
            _ if !self.walked => uapi::KVM_PFI_PAGE_UNKNOWN,
            State::WaitingForContext => uapi::KVM_PFI_PAGE_WAITING,
            State::Injected { .. } | State::AwaitingUpdate { .. } => uapi::KVM_PFI_PAGE_INJECTED,
            State::Resident { .. } | State::Done => uapi::KVM_PFI_PAGE_RESIDENT,
            State::Failed(_) | State::Cancelled(_) => uapi::KVM_PFI_PAGE_FAILED,
        }
    }

    pub(crate) fn info(&self) -> uapi::kvm_pfi_page_info {
        let stats = self.inj.stats();
        uapi::kvm_pfi_page_info {
            gva: self.inj.target().gva,
            gpa: self.gpa,
            state: self.uapi_state(),
            how: self.how,
            injections: stats.injections,
            reinjections: stats.reinjections,
            page_size: self.page_size,
            fail_reason: self.fail_reason,
            entries_to_delivery: stats.entries_to_delivery.unwrap_or(0),
            flags: self.flags(),
        }
    }

    fn flags(&self) -> u32 {
        let mut f = 0;
        if self.data_tracked.is_some() {
            f |= uapi::KVM_PFI_PAGE_PROTECTED;
        }
        if self.shadow.is_some() {
            f |= uapi::KVM_PFI_PAGE_ENFORCED;
        }
        let generation = crate::sigs::active_generation();
        if generation != 0 && self.scan_gen == generation && !self.scan_failed {
            f |= uapi::KVM_PFI_PAGE_SCANNED;
        }
        f
    }

    fn is_resident(&self) -> bool {
        !self.moved && matches!(self.inj.state(), State::Resident { .. } | State::Done)
    }
}

/// Why a page failed: the netlink `fail-reason` enum.
fn fail_code(reason: &FailReason) -> u32 {
    match reason {
        FailReason::Timeout { .. } => uapi::KVM_PFI_FAIL_REASON_TIMEOUT,
        FailReason::AddressSpaceGone => uapi::KVM_PFI_FAIL_REASON_ADDRESS_SPACE_GONE,
        FailReason::GuestMemoryInvalid(_) => uapi::KVM_PFI_FAIL_REASON_INVALID_TABLES,
        FailReason::Unmapped => uapi::KVM_PFI_FAIL_REASON_UNMAPPED,
        FailReason::NotSwapEntry(_) => uapi::KVM_PFI_FAIL_REASON_NOT_SWAPPED,
    }
}

/// A guest virtual range in one address space.
pub(crate) struct Target {
    pub(crate) id: u32,
    pub(crate) flags: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) len: u64,
    pub(crate) pages: KVVec<Page>,
    space: AddressSpace,
    /// Where the next exit's walks start (round robin).
    cursor: usize,
}

/// A validated `KVM_PFI_TARGET_ADD` request.
pub(crate) struct TargetSpec {
    pub(crate) flags: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) len: u64,
    pub(crate) config: InjectConfig,
}

impl TargetSpec {
    /// Checks a request against the limits of the UAPI; nothing is changed.
    pub(crate) fn validate(req: &uapi::kvm_pfi_target, defaults: InjectConfig) -> Result<Self> {
        if req.flags & !uapi::KVM_PFI_TARGET_FLAGS_ALL != 0 || req.reserved != 0 || req.target_id != 0 {
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
        if req.timeout_ms > 60_000 || req.max_tries > 100 {
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
        Ok(TargetSpec { flags: req.flags, cr3: req.cr3, gva: req.gva, len: req.len, config })
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
                },
                GFP_KERNEL,
            )?;
        }
        Ok(KBox::new(
            Target { id, flags: self.flags, cr3: self.cr3, gva: self.gva, len: self.len, pages, space, cursor: 0 },
            GFP_KERNEL,
        )?)
    }
}

/// A page that settled and still has to be reported, copied out of the lock.
#[derive(Clone, Copy)]
pub(crate) struct Settled {
    pub(crate) target_id: u32,
    pub(crate) flags: u32,
    pub(crate) cr3: u64,
    pub(crate) info: uapi::kvm_pfi_page_info,
}

/// A resident page to scan, with the neighbours (in its target) that were
/// scanned before it: a match straddling into one of them is reported by
/// this scan, a match straddling into a later one by that one's scan, so
/// each is reported once.
#[derive(Clone, Copy)]
pub(crate) struct ScanJob {
    pub(crate) target_id: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) gpa: u64,
    pub(crate) how: u32,
    pub(crate) injections: u32,
    pub(crate) prev_gpa: Option<u64>,
    pub(crate) next_gpa: Option<u64>,
    /// Report only matches touching these bytes, relative to the page's
    /// start (may reach into its neighbours); `None`: all touching the page.
    pub(crate) only: Option<(i32, i32)>,
    pub(crate) index: usize,
}

/// A protected page to start or stop tracking.
#[derive(Clone, Copy)]
pub(crate) struct ProtectJob {
    pub(crate) target_id: u32,
    pub(crate) index: usize,
    pub(crate) gfn: u64,
    pub(crate) enforce: bool,
}

/// A guest write to a protected page, for the `write-attempt` event.
#[derive(Clone, Copy)]
pub(crate) struct WriteRecord {
    pub(crate) target_id: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) gpa: u64,
    pub(crate) len: u32,
    pub(crate) restored: bool,
    /// The first bytes written (`WRITE_BYTES` at most).
    pub(crate) bytes: [u8; WRITE_BYTES],
}

impl WriteRecord {
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(WRITE_BYTES)]
    }
}

/// Bytes of a guest write an event carries.
pub(crate) const WRITE_BYTES: usize = 64;
/// Writes queued for events between two report runs; more are counted.
pub(crate) const WRITE_QUEUE: usize = 32;

/// What a protected page's write means to the notifier.
#[derive(Clone, Copy)]
pub(crate) struct ProtectedWrite {
    pub(crate) target_id: u32,
    pub(crate) cr3: u64,
    pub(crate) root: u64,
    pub(crate) gva: u64,
    pub(crate) enforce: bool,
}

/// The targets of one VM and the per-vCPU injection slots. Under the VM's
/// spinlock: probes of several vCPUs of one VM and the ioctls share it.
pub(crate) struct Targets {
    targets: [Option<KBox<Target>>; MAX_TARGETS],
    slots: KVVec<VcpuSlot>,
    /// Some page's tracked tables differ from its last walk's.
    pub(crate) tracking_stale: bool,
    /// No page needs an exit's attention before this time (0: the next
    /// exit scans). Keeps exits cheap while pages only wait for context.
    next_scan_ns: u64,
    /// Counts scans taken (see `Page::scanned_seq`).
    scan_seq: u64,
    /// Guest writes to protected pages, not reported yet.
    writes: [Option<WriteRecord>; WRITE_QUEUE],
    /// Writes that found the queue full.
    pub(crate) writes_lost: u32,
}

impl Targets {
    pub(crate) fn new() -> Result<Self> {
        let mut slots = KVVec::with_capacity(crate::vm::MAX_VCPUS, GFP_KERNEL)?;
        for _ in 0..crate::vm::MAX_VCPUS {
            slots.push(VcpuSlot::new(), GFP_KERNEL)?;
        }
        Ok(Targets {
            targets: [const { None }; MAX_TARGETS],
            slots,
            tracking_stale: false,
            next_scan_ns: 0,
            scan_seq: 0,
            writes: [None; WRITE_QUEUE],
            writes_lost: 0,
        })
    }

    /// Inserts a built target; `ENOSPC` when all slots are used. On error
    /// the target comes back so the caller frees it outside the lock.
    pub(crate) fn insert(&mut self, t: KBox<Target>) -> core::result::Result<(), (Error, KBox<Target>)> {
        match self.targets.iter_mut().find(|t| t.is_none()) {
            Some(slot) => {
                *slot = Some(t);
                self.next_scan_ns = 0;
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
        Some(t)
    }

    /// Whether any page needs probe work (a walk, an injection, a timeout).
    pub(crate) fn has_work(&self) -> bool {
        self.targets
            .iter()
            .flatten()
            .any(|t| t.pages.iter().any(|p| p.walk_due || p.inj.state().is_live()))
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Target> {
        self.targets.iter().flatten().find(|t| t.id == id).map(|t| &**t)
    }

    /// At a VM entry: the #PF to inject now (`(cr2, error code)`), if a
    /// page may have one; and whether a page settled (found resident by the
    /// walk made just before injecting).
    pub(crate) fn on_entry(
        &mut self,
        kvm: *mut glue::kvm,
        vcpu: *mut glue::kvm_vcpu,
        vcpu_idx: usize,
        gs: &GuestState,
    ) -> (Option<(u64, u32)>, bool) {
        let (st, v) = (&gs.raw, &gs.view);
        let Some(slot) = self.slots.get_mut(vcpu_idx) else { return (None, false) };
        if slot.in_flight().is_some() {
            return (None, false);
        }
        let ctx = EntryContext {
            vcpu: vcpu_idx as u32,
            // SAFETY: reads the clock.
            now_ns: unsafe { glue::kvm_pfi_now_ns() },
            cr3: v.cr3,
            cpl: v.cpl,
            rflags: v.rflags,
            cr4_smap: v.cr4 & CR4_SMAP != 0,
            event_inj_valid: v.event_inj_valid,
            exception_pending: st.exception_pending != 0,
            interrupt_pending: st.interrupt_pending != 0,
            nmi_pending: st.nmi_pending != 0,
            interrupt_shadow: v.interrupt_shadow,
            guest_mode: st.guest_mode != 0,
            smm: st.smm != 0,
        };
        // What blocks every target alike is checked once, not per page.
        let blocked = ctx.event_inj_valid
            || ctx.exception_pending
            || ctx.interrupt_pending
            || ctx.nmi_pending
            || ctx.interrupt_shadow
            || ctx.guest_mode
            || ctx.smm
            || (ctx.cpl != 3 && ctx.cpl != 0);
        if blocked {
            return (None, false);
        }
        // SAFETY: `vcpu` is the running vCPU (a probe).
        let paging = unsafe { guest_paging(vcpu, v) };
        // SAFETY: `kvm` is referenced by the attachment; a probe.
        let mut mem = unsafe { GuestMemory::new(kvm, Context::Probe) };
        for t in self.targets.iter_mut().flatten() {
            // All pages of a target share its address space and mode.
            if !t.space.matches_cr3(v.cr3)
                || (ctx.cpl == 0 && t.flags & uapi::KVM_PFI_TARGET_KERNEL == 0)
            {
                continue;
            }
            for p in t.pages.iter_mut() {
                if p.inj.state() != State::WaitingForContext || !p.inj.is_armed() {
                    continue;
                }
                // The last walk may be a second old: the guest may have
                // brought the page in since. Walk again right before
                // injecting, so a present page never gets a fault.
                walk_page(p, &mut mem, &paging, ctx.now_ns);
                if !p.inj.is_armed() {
                    self.next_scan_ns = 0;
                    return (None, settle(p));
                }
                let decision = p.inj.on_entry(slot, &ctx);
                if let EntryDecision::Inject(pf) = decision {
                    p.injected = true;
                    self.next_scan_ns = 0;
                    return (Some((pf.cr2, pf.error_code)), false);
                }
                // One walk per entry at most: the other pages wait.
                return (None, false);
            }
        }
        (None, false)
    }

    /// At a VM exit: settle the vCPU's delivery, time out, walk what is due.
    /// Returns whether the report work has something to do (a page settled,
    /// or write tracking must follow a walk).
    pub(crate) fn on_exit(&mut self, kvm: *mut glue::kvm, vcpu: *mut glue::kvm_vcpu, vcpu_idx: usize, gs: &GuestState) -> bool {
        let st = &gs.view;
        // SAFETY: reads the clock.
        let now = unsafe { glue::kvm_pfi_now_ns() };
        if let Some(slot) = self.slots.get_mut(vcpu_idx) {
            if let Some(d) = slot.on_exit(&ExitDelivery { now_ns: now, exit_int_info: st.exit_int_info }) {
                for t in self.targets.iter_mut().flatten().filter(|t| t.id == d.target.0) {
                    for p in t.pages.iter_mut() {
                        if matches!(p.inj.state(), State::Injected { vcpu, .. } if vcpu == d.vcpu) {
                            let a = p.inj.on_delivery(&d);
                            apply(p, a);
                        }
                    }
                }
                self.next_scan_ns = 0;
            }
        }
        if now < self.next_scan_ns {
            return false;
        }
        // SAFETY: `vcpu` is the running vCPU.
        let paging = unsafe { guest_paging(vcpu, st) };
        let long_mode = st.long_mode();
        // SAFETY: `kvm` is referenced by the attachment; a probe.
        let mut mem = unsafe { GuestMemory::new(kvm, Context::Probe) };
        let mut budget = WALKS_PER_EXIT;
        let mut periodic_budget = PERIODIC_WALKS_PER_EXIT;
        let mut settled = false;
        let mut stale = false;
        // The earliest time a page will need an exit again.
        let mut next_scan = u64::MAX;
        for t in self.targets.iter_mut().flatten() {
            let n = t.pages.len();
            let start = t.cursor;
            let mut last_walked = None;
            for k in 0..n {
                let i = (start + k) % n;
                let p = &mut t.pages[i];
                if let State::Injected { .. } | State::AwaitingUpdate { .. } = p.inj.state() {
                    let a = p.inj.on_tick(now);
                    apply(p, a);
                }
                // After a delivered fault the guest is swapping the page in:
                // re-walk at every exit until it shows up. Pages waiting for
                // context are re-walked now and then, to notice the guest
                // bringing them back by itself.
                let periodic = !p.walk_due
                    && p.inj.state() == State::WaitingForContext
                    && now >= p.next_walk_ns;
                let due = p.walk_due || matches!(p.inj.state(), State::AwaitingUpdate { .. }) || periodic;
                if !due || budget == 0 || (periodic && periodic_budget == 0) || !long_mode {
                    settled |= settle(p);
                    stale |= p.tables_wanted != p.tables_tracked;
                    next_scan = next_scan.min(page_needs_exit_at(p, now));
                    continue;
                }
                budget -= 1;
                if periodic {
                    periodic_budget -= 1;
                }
                walk_page(p, &mut mem, &paging, now);
                settled |= settle(p);
                stale |= p.tables_wanted != p.tables_tracked;
                next_scan = next_scan.min(page_needs_exit_at(p, now));
                last_walked = Some(i);
            }
            // The next exit's walks start after the last page walked.
            if let Some(i) = last_walked {
                t.cursor = (i + 1) % n;
            }
        }
        self.next_scan_ns = next_scan;
        self.tracking_stale |= stale;
        settled || stale
    }

    /// A write-tracked guest page was written: pages whose walk went
    /// through it walk again (and may not inject before that).
    pub(crate) fn on_page_table_write(&mut self, gpa: u64) -> bool {
        let gfn = gpa >> 12;
        let mut hit = false;
        self.next_scan_ns = 0;
        for t in self.targets.iter_mut().flatten() {
            for p in t.pages.iter_mut().filter(|p| p.tables_tracked.contains(gfn)) {
                let a = p.inj.on_page_table_write();
                apply(p, a);
                p.walk_due = true;
                hit = true;
            }
        }
        hit
    }

    /// A memslot went away, and KVM's tracking of its frames with it.
    pub(crate) fn on_region_gone(&mut self, gfn: u64, n: u64) {
        self.next_scan_ns = 0;
        for t in self.targets.iter_mut().flatten() {
            for p in t.pages.iter_mut() {
                p.tables_tracked.forget_range(gfn, n);
                // Its tracking went with the memslot: not protected now,
                // and nothing to untrack later.
                if p.data_tracked.is_some_and(|g| g >= gfn && g - gfn < n) {
                    p.data_tracked = None;
                    p.shadow = None;
                    p.protect_failed = true;
                }
                p.walk_due = true;
            }
        }
        self.tracking_stale = true;
    }

    /// Moves up to `adds.len()` / `removes.len()` tracking changes out,
    /// recording them as done: the caller applies them outside the lock.
    /// Returns (adds, removes, whether more remain).
    pub(crate) fn take_tracking_changes(&mut self, adds: &mut [u64], removes: &mut [u64]) -> (usize, usize, bool) {
        let (mut na, mut nr) = (0, 0);
        for t in self.targets.iter_mut().flatten() {
            for p in t.pages.iter_mut() {
                if p.tables_wanted == p.tables_tracked {
                    continue;
                }
                if na + 5 > adds.len() || nr + 5 > removes.len() {
                    return (na, nr, true);
                }
                for &g in p.tables_wanted.as_slice() {
                    if !p.tables_tracked.contains(g) {
                        adds[na] = g;
                        na += 1;
                    }
                }
                for &g in p.tables_tracked.as_slice() {
                    if !p.tables_wanted.contains(g) {
                        removes[nr] = g;
                        nr += 1;
                    }
                }
                p.tables_tracked = p.tables_wanted;
            }
        }
        self.tracking_stale = false;
        (na, nr, false)
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
                        reserved: 0,
                    },
                    GFP_ATOMIC,
                );
            }
        }
        total
    }

    /// Pages not walked yet, for the walk at once after `KVM_PFI_TARGET_ADD`:
    /// fills `out` with (target id, page index, root GPA, GVA); returns how
    /// many.
    pub(crate) fn unwalked(&self, out: &mut [(u32, usize, u64, u64)]) -> usize {
        let mut n = 0;
        for t in self.targets.iter().flatten() {
            for (i, p) in t.pages.iter().enumerate().filter(|(_, p)| !p.walked) {
                if n == out.len() {
                    return n;
                }
                out[n] = (t.id, i, p.inj.target().space.root_gpa(), p.inj.target().gva);
                n += 1;
            }
        }
        n
    }

    /// Applies a walk made outside the lock, unless a probe walked the page
    /// meanwhile (its walk is as fresh).
    pub(crate) fn apply_remote_walk(&mut self, target_id: u32, index: usize, w: &walk::Walk, now: u64) {
        let Some(t) = self.targets.iter_mut().flatten().find(|t| t.id == target_id) else { return };
        let Some(p) = t.pages.get_mut(index) else { return };
        if !p.walked {
            apply_walk(p, w, now);
            settle(p);
            if p.tables_wanted != p.tables_tracked {
                self.tracking_stale = true;
            }
            self.next_scan_ns = 0;
        }
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
                    out[n] = Some(Settled { target_id: id, flags, cr3, info: p.info() });
                    n += 1;
                }
            }
        }
        n
    }
}

impl Targets {
    /// Collects up to `out.len()` resident, reported pages not scanned with
    /// signature set `generation`, marking them scanned. Returns how many.
    pub(crate) fn take_unscanned(&mut self, generation: u32, out: &mut [Option<ScanJob>]) -> usize {
        const PAGE: i32 = PAGE_SIZE as i32;
        let mut n = 0;
        for t in self.targets.iter_mut().flatten() {
            for i in 0..t.pages.len() {
                if n == out.len() {
                    return n;
                }
                let Some(p) = t.pages.get(i) else { break };
                if !p.is_resident() || !p.reported || p.scan_gen == generation {
                    continue;
                }
                let own = p.written.filter(|w| w.0 == generation).map(|w| (w.1 as i32, w.2 as i32));
                let pending = p.pending_seq;
                fn context(q: Option<&Page>, generation: u32) -> Option<&Page> {
                    q.filter(|q| q.is_resident() && q.scan_gen == generation)
                }
                let prev = context(i.checked_sub(1).and_then(|j| t.pages.get(j)), generation);
                let next = context(t.pages.get(i + 1), generation);
                // A rescan reports only matches touching what changed; a
                // neighbour scanned while this page waited had no context
                // from it, so what the neighbour's scan covered counts as
                // changed too.
                let only = own.map(|(mut lo, mut hi)| {
                    if let Some(q) = prev.filter(|q| q.scanned_seq > pending) {
                        lo = lo.min(q.last_change.0 - PAGE);
                    }
                    if let Some(q) = next.filter(|q| q.scanned_seq > pending) {
                        hi = hi.max(q.last_change.1 + PAGE);
                    }
                    (lo, hi)
                });
                let (prev_gpa, next_gpa) = (prev.map(|q| q.gpa), next.map(|q| q.gpa));
                let (target_id, cr3) = (t.id, t.cr3);
                self.scan_seq += 1;
                let Some(p) = t.pages.get_mut(i) else { break };
                p.scan_gen = generation;
                p.written = None;
                p.scanned_seq = self.scan_seq;
                p.last_change = own.unwrap_or((0, PAGE));
                out[n] = Some(ScanJob {
                    target_id,
                    index: i,
                    cr3,
                    gva: p.inj.target().gva,
                    gpa: p.gpa,
                    how: p.how,
                    injections: p.inj.stats().injections,
                    prev_gpa,
                    next_gpa,
                    only,
                });
                n += 1;
            }
        }
        n
    }

    /// Records whether the scan of page `index` of target `target_id` read
    /// its page (see `KVM_PFI_PAGE_SCANNED`).
    pub(crate) fn scan_done(&mut self, target_id: u32, index: usize, ok: bool) {
        let p = self.targets.iter_mut().flatten().find(|t| t.id == target_id).and_then(|t| t.pages.get_mut(index));
        if let Some(p) = p {
            p.scan_failed = !ok;
        }
    }

    /// Protection work for the report: pages of `KVM_PFI_TARGET_PROTECT`
    /// targets that are resident and not tracked (recorded as tracked now),
    /// and tracked pages gone stale (recorded as untracked). Returns (to
    /// track, to untrack, whether more remain).
    pub(crate) fn take_protection_changes(
        &mut self,
        track: &mut [Option<ProtectJob>],
        untrack: &mut [u64],
    ) -> (usize, usize, bool) {
        let (mut na, mut nr) = (0, 0);
        for t in self.targets.iter_mut().flatten() {
            if t.flags & uapi::KVM_PFI_TARGET_PROTECT == 0 {
                continue;
            }
            let enforce = t.flags & uapi::KVM_PFI_TARGET_ENFORCE != 0;
            let target_id = t.id;
            for (index, p) in t.pages.iter_mut().enumerate() {
                if p.moved {
                    let Some(g) = p.data_tracked else { continue };
                    if nr == untrack.len() {
                        return (na, nr, true);
                    }
                    untrack[nr] = g;
                    nr += 1;
                    p.data_tracked = None;
                    p.shadow = None;
                    continue;
                }
                if p.data_tracked.is_none() && p.is_resident() && p.reported && !p.protect_failed {
                    if na == track.len() {
                        return (na, nr, true);
                    }
                    let gfn = p.gpa >> 12;
                    p.data_tracked = Some(gfn);
                    track[na] = Some(ProtectJob { target_id, index, gfn, enforce });
                    na += 1;
                }
            }
        }
        (na, nr, false)
    }

    /// Installs the copy of a page taken after its tracking began, unless
    /// the page changed meanwhile.
    pub(crate) fn set_shadow(&mut self, target_id: u32, index: usize, gfn: u64, shadow: KVec<u8>) -> Option<KVec<u8>> {
        let p = self
            .targets
            .iter_mut()
            .flatten()
            .find(|t| t.id == target_id)
            .and_then(|t| t.pages.get_mut(index));
        match p {
            Some(p) if p.data_tracked == Some(gfn) && p.shadow.is_none() => {
                p.shadow = Some(shadow);
                None
            }
            // Freed by the caller, outside the lock.
            _ => Some(shadow),
        }
    }

    /// The protected pages whose frame `gfn` is (targets may share a
    /// frame), up to `out.len()`; returns how many.
    pub(crate) fn protected_pages(&self, gfn: u64, out: &mut [Option<ProtectedWrite>]) -> usize {
        let mut n = 0;
        for t in self.targets.iter().flatten() {
            for p in t.pages.iter().filter(|p| p.data_tracked == Some(gfn) && !p.moved) {
                if n == out.len() {
                    return n;
                }
                out[n] = Some(ProtectedWrite {
                    target_id: t.id,
                    cr3: t.cr3,
                    root: p.inj.target().space.root_gpa(),
                    gva: p.inj.target().gva,
                    enforce: p.shadow.is_some(),
                });
                n += 1;
            }
        }
        n
    }

    /// Copies the kept bytes `[offset, offset + out.len())` of the
    /// protected page at `gfn` into `out`; false if there are none.
    pub(crate) fn shadow_bytes(&self, gfn: u64, offset: usize, out: &mut [u8]) -> bool {
        for t in self.targets.iter().flatten() {
            for p in t.pages.iter().filter(|p| p.data_tracked == Some(gfn)) {
                let src = p.shadow.as_ref().and_then(|s| s.get(offset..offset + out.len()));
                if let Some(src) = src {
                    out.copy_from_slice(src);
                    return true;
                }
            }
        }
        false
    }

    /// After a guest write of `[lo, hi)` to the protected page `gva` of
    /// target `target_id`: if it no longer maps that frame (`moved`), stop
    /// protecting it; else scan it again if its bytes changed (`rescan`).
    pub(crate) fn on_protected_write(&mut self, target_id: u32, gva: u64, moved: bool, rescan: bool, lo: u32, hi: u32) {
        let seq = self.scan_seq;
        for t in self.targets.iter_mut().flatten().filter(|t| t.id == target_id) {
            for p in t.pages.iter_mut().filter(|p| p.inj.target().gva == gva && p.data_tracked.is_some()) {
                if moved {
                    p.moved = true;
                } else if rescan {
                    p.written = match (p.written, p.scan_gen) {
                        // A rescan is pending already: widen it.
                        (Some((g, a, b)), 0) => Some((g, a.min(lo), b.max(hi))),
                        // Never scanned: the pending scan is a full one.
                        (None, 0) => None,
                        (_, g) => Some((g, lo, hi)),
                    };
                    if p.scan_gen != 0 {
                        p.pending_seq = seq;
                    }
                    p.scan_gen = 0;
                }
            }
        }
    }

    /// Whether a target asks for protection.
    pub(crate) fn wants_protection(&self) -> bool {
        self.targets.iter().flatten().any(|t| t.flags & uapi::KVM_PFI_TARGET_PROTECT != 0)
    }

    /// KVM refused to track the page's frame (a guest mapping outside its
    /// memory): it is not protected, and not tried again.
    pub(crate) fn protection_failed(&mut self, target_id: u32, index: usize) {
        let p = self.targets.iter_mut().flatten().find(|t| t.id == target_id).and_then(|t| t.pages.get_mut(index));
        if let Some(p) = p {
            p.data_tracked = None;
            p.protect_failed = true;
        }
    }

    /// Queues a write for its event; false if the queue was full.
    pub(crate) fn queue_write(&mut self, w: WriteRecord) -> bool {
        match self.writes.iter_mut().find(|w| w.is_none()) {
            Some(slot) => {
                *slot = Some(w);
                true
            }
            None => {
                self.writes_lost = self.writes_lost.saturating_add(1);
                false
            }
        }
    }

    /// Moves the queued writes out, oldest first (the queue is emptied
    /// whole, so it fills from its start). Returns how many.
    /// Also returns, and resets, how many found the queue full.
    pub(crate) fn take_writes(&mut self, out: &mut [Option<WriteRecord>; WRITE_QUEUE]) -> (usize, u32) {
        let mut n = 0;
        for w in self.writes.iter_mut() {
            if let Some(w) = w.take() {
                out[n] = Some(w);
                n += 1;
            }
        }
        (n, core::mem::take(&mut self.writes_lost))
    }
}

/// How the running vCPU translates addresses.
///
/// # Safety
///
/// `vcpu` is the vCPU being run (a probe).
pub(crate) unsafe fn guest_paging(vcpu: *mut glue::kvm_vcpu, v: &CpuView) -> GuestPaging {
    // SAFETY: the caller's contract.
    let maxphyaddr = unsafe { glue::kvm_pfi_vcpu_maxphyaddr(vcpu) } as u8;
    paging(v.cr4 & CR4_LA57 != 0, maxphyaddr)
}

/// A Linux x86-64 guest's paging with 5-level paging on or off and the
/// given MAXPHYADDR; the rest is what every such guest has.
pub(crate) fn paging(la57: bool, maxphyaddr: u8) -> GuestPaging {
    GuestPaging {
        la57,
        features: PagingFeatures {
            maxphyaddr,
            nx: true,
            gbpages: true,
            amd: crate::vendor::host() == crate::vendor::Vendor::Svm,
        },
        swap_layout: LinuxSwapLayout::distro_default(),
    }
}

/// Walks the page now and feeds the result to its state machine.
fn walk_page(p: &mut Page, mem: &mut GuestMemory, paging: &GuestPaging, now: u64) {
    let root = p.inj.target().space.root_gpa();
    let w = walk::walk(mem, paging, root, p.inj.target().gva);
    apply_walk(p, &w, now);
}

/// Feeds a finished walk of the page to its state machine.
fn apply_walk(p: &mut Page, w: &walk::Walk, now: u64) {
    p.walk_due = false;
    p.next_walk_ns = now + REWALK_WAITING_NS;
    p.walked = true;
    match w.outcome {
        WalkOutcome::Resident { gpa, page_size, .. } => {
            // The GVA is 4 KiB aligned: `gpa` is its own 4 KiB page, also
            // inside a larger guest mapping.
            p.gpa = gpa & !(PAGE_SIZE - 1);
            p.page_size = page_size.bytes() as u32;
            p.how = if p.injected {
                uapi::KVM_PFI_HOW_INJECTED
            } else if p.seen_swapped {
                uapi::KVM_PFI_HOW_GUEST
            } else {
                uapi::KVM_PFI_HOW_ALREADY_RESIDENT
            };
        }
        WalkOutcome::NotPresent { .. } => p.seen_swapped = true,
        WalkOutcome::Invalid(_) => {}
    }
    let a = p.inj.on_walk(&w.outcome);
    apply(p, a);
    p.tables_wanted = if p.inj.state().is_live() { Gfns::from_tables(&w.tables) } else { Gfns::default() };
}

/// Applies the machine's requested action to the page.
fn apply(p: &mut Page, a: Action) {
    match a {
        Action::Rewalk | Action::RewalkLater => p.walk_due = true,
        Action::None | Action::Settled => {}
    }
}

/// When the page next needs an exit's attention: now while a walk is due or
/// a fault is in flight (its delivery, re-walks and timeout), at its next
/// periodic walk while it waits for context, never once settled.
fn page_needs_exit_at(p: &Page, now: u64) -> u64 {
    match p.inj.state() {
        _ if p.walk_due => now,
        State::Injected { .. } | State::AwaitingUpdate { .. } => now,
        State::WaitingForContext => p.next_walk_ns,
        _ => u64::MAX,
    }
}

/// Records how a page settled; returns whether it is newly reportable.
fn settle(p: &mut Page) -> bool {
    if !p.inj.state().is_live() {
        p.tables_wanted = Gfns::default();
    }
    match p.inj.state() {
        State::Resident { .. } => !p.reported,
        State::Failed(reason) => {
            p.fail_reason = fail_code(&reason);
            !p.reported
        }
        _ => false,
    }
}
