// SPDX-License-Identifier: GPL-2.0

//! The probes' work on a VM's targets, bounded by a constant whatever the
//! number of targets and pages (Documentation/design.rst, "The hot path"):
//!
//! * at an entry in a target's address space: the front page of each
//!   matching target's ready queue, at most one walk (made right before
//!   injecting), for a user page of a Linux guest one VMA look-up
//!   (`vma_gate.rs`), and one #PF;
//! * at an exit of a vCPU that follows pages it injected (`owned.rs`):
//!   their delivery and timeouts, and at most one walk.
//!
//! Everything else that is due (first walks, periodic re-walks, timeouts
//! of pages whose vCPU does not exit) is the sweep's and the report
//! work's, in process context.

use crate::bindings::{
    glue,
    uapi, //
};
use crate::guest_mem::{
    Context,
    GuestMemory, //
};
use crate::pfi_core::inject::{
    EntryContext,
    FailReason,
    EntryDecision,
    ExitDelivery,
    State,
    CR4_FRED,
    CR4_SMAP, //
};
use crate::pfi_core::pte::{
    LinuxSwapLayout,
    PagingFeatures, //
};
use crate::pfi_core::vendor::CpuView;
use crate::pfi_core::walk::GuestPaging;
use crate::vendor::GuestState;

use super::owned::PageRef;
use super::page::{
    apply,
    apply_walk,
    reopen,
    settle,
    walk_page,
    TargetWalk, //
};
use super::vma_gate::{
    self,
    Check, //
};
use super::{
    Targets,
    MAX_TARGETS, //
};

pub(crate) const CR4_LA57: u64 = 1 << 12;
/// Protection keys for user pages enabled.
const CR4_PKE: u64 = 1 << 22;
pub(crate) const EFER_NXE: u64 = 1 << 11;

impl Targets {
    /// At a VM entry: the #PF to inject now (`(cr2, error code)`), if a
    /// page may have one; and whether a page settled (found resident by the
    /// walk made just before injecting). The caller has checked
    /// [`entry_blocked`].
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
            // The CR4 the guest runs with (VMCB save area, GUEST_CR4):
            // KVM passes the guest's SMAP and FRED bits through.
            cr4_smap: v.cr4 & CR4_SMAP != 0,
            cr4_fred: v.cr4 & CR4_FRED != 0,
            guest_debug: st.guest_debug != 0,
            event_inj_valid: v.event_inj_valid,
            exception_pending: st.exception_pending != 0,
            interrupt_pending: st.interrupt_pending != 0,
            nmi_pending: st.nmi_pending != 0,
            interrupt_shadow: v.interrupt_shadow,
            guest_mode: st.guest_mode != 0,
            smm: st.smm != 0,
        };
        // SAFETY: `vcpu` is the running vCPU (a probe).
        let paging = unsafe { guest_paging(vcpu, v) };
        // SAFETY: `kvm` is referenced by the attachment; a probe.
        let mut mem = unsafe { GuestMemory::new(kvm, Context::Probe) };
        // At most one refusal counted per entry.
        let mut refusal_counted = false;
        if self.owned.get(vcpu_idx).is_none_or(|o| o.is_full()) {
            return (None, false);
        }
        let first = self.next_target;
        for k in 0..MAX_TARGETS {
            let ti = (first + k) % MAX_TARGETS;
            let Some(t) = self.targets[ti].as_deref_mut() else { continue };
            // All pages of a target share its address space and mode.
            if !t.space.matches_cr3(v.cr3)
                || (ctx.cpl == 0 && t.flags & uapi::KVM_PFI_TARGET_KERNEL == 0)
            {
                continue;
            }
            let Some(i) = t.ready.front() else { continue };
            // A user page whose VMAs cannot be looked up (no profile, its
            // process not found yet) waits, with no walk.
            let vma_check = match (t.vma_checked(), self.linux.as_ref(), t.process_mm) {
                (false, ..) => None,
                (true, Some(view), Some(mm)) => Some((view, mm)),
                (true, ..) => continue,
            };
            let p = &mut t.pages[i];
            // The privilege rules (kernel mode: FRED, guest debugging, IF,
            // SMAP and AC) before the walk: a guest without SMAP would
            // otherwise cost a walk at every kernel-mode entry and never
            // inject. A target's pages are all in one half, so they all
            // fail alike: on to the next target.
            if let Err(reason) = p.inj.mode_check(&ctx) {
                if !refusal_counted {
                    refusal_counted = self.kernel_refusals.count(reason);
                }
                continue;
            }
            // This target had its turn; the next entry starts after it.
            self.next_target = (ti + 1) % MAX_TARGETS;
            // The last walk may be a second old: the guest may have brought
            // the page in since. Walk again right before injecting, so a
            // present page never gets a fault; a walk that cannot read
            // disarms the page, and nothing is injected.
            walk_page(p, &mut mem, &paging, ctx.now_ns);
            if !p.inj.is_armed() {
                let settled = settle(p);
                t.sync_ready(i);
                return (None, settled);
            }
            // The fault would go to the task running now: would its kernel
            // serve it (a VMA covers the address and allows the access)?
            if let Some((view, mm)) = vma_check {
                let target = p.inj.target();
                let pkru = (v.cr4 & CR4_PKE != 0).then_some(st.pkru);
                let check = match vma_gate::check(view, &mut mem, mm, target.space.root_gpa(), target.gva, target.write, pkru) {
                    // An empty entry of an anonymous private mapping: nothing
                    // to bring back (a fault would map a new zero page).
                    Check::Serve { file: false } if p.last_walk_empty => Check::Refuse(FailReason::Unmapped),
                    c => c,
                };
                match check {
                    Check::Serve { .. } => p.from_file = p.last_walk_empty,
                    Check::Refuse(reason) => {
                        let a = p.inj.vma_refuses(reason);
                        apply(p, a);
                        let settled = settle(p);
                        t.sync_ready(i);
                        return (None, settled);
                    }
                    Check::NotNow => {
                        t.ready.rotate(&mut t.pages);
                        return (None, false);
                    }
                }
            }
            let decision = p.inj.on_entry(slot, &ctx);
            if let EntryDecision::Inject(pf) = decision {
                p.injected = true;
                t.sync_ready(i);
                let r = PageRef { slot: ti, id: t.id, index: i };
                if let Some(o) = self.owned.get_mut(vcpu_idx) {
                    o.add(r);
                }
                self.gate.set_in_flight(vcpu_idx, true);
                self.gate.set_owns(vcpu_idx, true);
                return (Some((pf.cr2, pf.error_code)), false);
            }
            // Not now (an event, a shadow, ...): the page goes to the back
            // of its queue, and one walk per entry at most.
            t.ready.rotate(&mut t.pages);
            return (None, false);
        }
        (None, false)
    }

    /// At a VM exit of a vCPU the gate says has work: the delivery of its
    /// fault in flight, the timeouts of the pages it follows, and at most
    /// one walk of one of them (the page the guest is bringing in, or one
    /// whose fault just timed out, to re-arm it). Returns whether the report
    /// work has something to do (a page settled, write tracking must follow
    /// a walk, a page waits for a walk). `now` is the exit's time.
    pub(crate) fn on_exit(
        &mut self,
        kvm: *mut glue::kvm,
        vcpu: *mut glue::kvm_vcpu,
        vcpu_idx: usize,
        gs: &GuestState,
        now: u64,
    ) -> bool {
        let st = &gs.view;
        let Some(slot) = self.slots.get_mut(vcpu_idx) else { return false };
        let delivery = slot.on_exit(&ExitDelivery { now_ns: now, exit_int_info: st.exit_int_info });
        self.gate.set_in_flight(vcpu_idx, slot.in_flight().is_some());
        let Some(mut owned) = self.owned.get(vcpu_idx).copied() else { return false };
        let me = vcpu_idx as u32;
        let mut settled = false;
        let mut stale = false;
        let mut kick = false;
        let mut walk = None;
        for r in owned.take_turn().into_iter().flatten() {
            let Some((t, i)) = Self::page_at(&mut self.targets, r) else {
                owned.release(r);
                continue;
            };
            let p = &mut t.pages[i];
            if followed_by(p.inj.state(), me) {
                if let Some(d) = delivery {
                    let a = p.inj.on_delivery(&d);
                    apply(p, a);
                }
                let a = p.inj.on_tick(now);
                apply(p, a);
            }
            let state = p.inj.state();
            // The walk: a delivered fault's page (is it back?), or a page
            // whose fault timed out (armed again for the next try).
            let wants_walk = matches!(state, State::AwaitingUpdate { vcpu, .. } if vcpu == me)
                || (state == State::WaitingForContext && p.walk_due);
            if wants_walk && walk.is_none() {
                walk = Some(r);
            } else if p.walk_due {
                kick = true;
            }
            settled |= settle(p);
            t.sync_ready(i);
            if !followed_by(state, me) && walk != Some(r) {
                owned.release(r);
            }
        }
        if let Some(r) = walk.filter(|_| st.long_mode()) {
            // SAFETY: `vcpu` is the running vCPU.
            let paging = unsafe { guest_paging(vcpu, st) };
            // SAFETY: `kvm` is referenced by the attachment; a probe.
            let mut mem = unsafe { GuestMemory::new(kvm, Context::Probe) };
            if let Some((t, i)) = Self::page_at(&mut self.targets, r) {
                let p = &mut t.pages[i];
                walk_page(p, &mut mem, &paging, now);
                settled |= settle(p);
                stale |= p.tables_wanted != p.tables_tracked;
                let still_followed = followed_by(p.inj.state(), me);
                t.sync_ready(i);
                if !still_followed {
                    owned.release(r);
                }
            }
        } else if let Some(r) = walk {
            // Not in long mode: the page's tables do not translate now.
            if Self::page_at(&mut self.targets, r).is_some_and(|(t, i)| t.pages[i].walk_due) {
                owned.release(r);
                kick = true;
            }
        }
        self.gate.set_owns(vcpu_idx, !owned.is_empty());
        if let Some(o) = self.owned.get_mut(vcpu_idx) {
            *o = owned;
        }
        self.tracking_stale |= stale;
        settled || stale || kick
    }

    /// Pages due for a walk (never walked, a table write, a memslot change,
    /// a walk that could not read), for the report work to walk outside the
    /// lock: fills `out` from `*from` (target slot, page index) on, moving
    /// it past the last page looked at; returns how many. One pass over the
    /// pages per report run, so a walk that keeps failing cannot keep the
    /// work running.
    pub(crate) fn due_walks(&self, from: &mut (usize, usize), out: &mut [DueWalk]) -> usize {
        let mut n = 0;
        while from.0 < MAX_TARGETS {
            if let Some(t) = self.targets[from.0].as_deref() {
                while from.1 < t.pages.len() {
                    if n == out.len() {
                        return n;
                    }
                    let p = &t.pages[from.1];
                    if p.walk_due {
                        out[n] = DueWalk::of(from.0, t, from.1, p);
                        n += 1;
                    }
                    from.1 += 1;
                }
            }
            *from = (from.0 + 1, 0);
        }
        n
    }

    /// Applies a walk made outside the lock, unless the page was walked
    /// since it was picked (that walk is as fresh) or is gone. A reported
    /// resident page the walk shows gone from its frame is reopened: it
    /// settles anew, a fault brings it back if it was swapped out again.
    /// Returns whether the report work has something to do.
    pub(crate) fn apply_remote_walk(&mut self, d: &DueWalk, w: &TargetWalk, now: u64) -> bool {
        let Some((t, i)) = Self::page_at(&mut self.targets, d.page) else { return false };
        let p = &mut t.pages[i];
        if p.walks != d.walks {
            return false;
        }
        if matches!(p.inj.state(), State::Resident { .. } | State::Done) && p.reported {
            if super::page::still_resident(p, w) {
                p.walks = p.walks.wrapping_add(1);
                p.next_walk_ns = now + super::page::REWALK_RESIDENT_NS;
                return false;
            }
            if !reopen(p) {
                return false;
            }
            self.gate.add_space(t.gate_key());
            self.gate.set_busy(true);
        }
        let p = &mut t.pages[i];
        apply_walk(p, w, now);
        let settled = settle(p);
        let stale = p.tables_wanted != p.tables_tracked;
        t.sync_ready(i);
        if t.is_ready(i) {
            // Armed again (a settled page swapped out, or a first walk):
            // its address space may inject.
            self.gate.add_space(t.gate_key());
            self.gate.set_busy(true);
        }
        self.tracking_stale |= stale;
        settled || stale
    }

    /// A page a walk found resident has left that frame since (`report.rs`
    /// saw it before reading its bytes): it goes back to its state machine
    /// with `w`, the walk that saw it gone, to settle and be reported anew
    /// (failed once unmapped, a fault again once swapped out again).
    pub(crate) fn resident_lost(&mut self, target_id: u32, gva: u64, w: &TargetWalk, now: u64) {
        let Some(t) = self.targets.iter_mut().flatten().find(|t| t.id == target_id) else { return };
        let Some(i) = t.pages.iter().position(|p| p.inj.target().gva == gva) else { return };
        let p = &mut t.pages[i];
        if !reopen(p) {
            return;
        }
        apply_walk(p, w, now);
        settle(p);
        if p.tables_wanted != p.tables_tracked {
            self.tracking_stale = true;
        }
        t.sync_ready(i);
        self.gate.add_space(t.gate_key());
        self.gate.set_busy(true);
    }
}

/// Whether a page in `state` is one vCPU `vcpu` follows (`owned.rs`): its
/// fault, in flight or delivered, from that vCPU.
fn followed_by(state: State, vcpu: u32) -> bool {
    matches!(state, State::Injected { vcpu: v, .. } | State::AwaitingUpdate { vcpu: v, .. } if v == vcpu)
}

/// A page picked for a walk outside the lock, and what the walk needs.
#[derive(Clone, Copy)]
pub(crate) struct DueWalk {
    page: PageRef,
    /// `Page::walks` when it was picked.
    walks: u32,
    pub(crate) root: u64,
    pub(crate) gva: u64,
    /// The `mm_struct` of its process, for a VMA-checked page whose
    /// process is known (`vma_gate::process_gone`); 0 otherwise.
    pub(crate) mm: u64,
}

impl DueWalk {
    pub(crate) const NONE: DueWalk =
        DueWalk { page: PageRef { slot: 0, id: 0, index: 0 }, walks: 0, root: 0, gva: 0, mm: 0 };

    pub(super) fn of(slot: usize, t: &super::Target, index: usize, p: &super::page::Page) -> Self {
        DueWalk {
            page: PageRef { slot, id: t.id, index },
            walks: p.walks,
            root: p.inj.target().space.root_gpa(),
            gva: p.inj.target().gva,
            mm: t.process_mm.filter(|_| t.vma_checked()).unwrap_or(0),
        }
    }
}

/// What keeps every target from a #PF on this entry, checked once, by the
/// entry probe before it takes the VM's lock and calls `on_entry`: an event already being injected or
/// pending, an interrupt shadow, nested guest mode, SMM, a CPL other than
/// 0 and 3, a vCPU out of IA-32e paging (real mode, vm86, protected mode
/// without paging: the target's tables do not translate there, and KVM
/// would have to inject through its real-mode path), and a VMX activity
/// state that takes no #PF.
pub(crate) fn entry_blocked(gs: &GuestState) -> bool {
    let (st, v) = (&gs.raw, &gs.view);
    !v.long_mode()
        || v.inactive
        || v.event_inj_valid
        || st.exception_pending != 0
        || st.interrupt_pending != 0
        || st.nmi_pending != 0
        || v.interrupt_shadow
        || st.guest_mode != 0
        || st.smm != 0
        || (v.cpl != 3 && v.cpl != 0)
}

/// How the running vCPU translates addresses.
///
/// # Safety
///
/// `vcpu` is the vCPU being run (a probe).
pub(crate) unsafe fn guest_paging(vcpu: *mut glue::kvm_vcpu, v: &CpuView) -> GuestPaging {
    // SAFETY: the caller's contract.
    let maxphyaddr = unsafe { glue::kvm_pfi_vcpu_maxphyaddr(vcpu) } as u8;
    // SAFETY: the caller's contract.
    let gbpages = unsafe { glue::kvm_pfi_vcpu_has_gbpages(vcpu) } != 0;
    paging(v.cr4 & CR4_LA57 != 0, v.efer & EFER_NXE != 0, gbpages, maxphyaddr)
}

/// A Linux x86-64 guest's paging: 5-level paging on or off, EFER.NXE, 1 GiB
/// pages in its CPUID, and its MAXPHYADDR.
pub(crate) fn paging(la57: bool, nx: bool, gbpages: bool, maxphyaddr: u8) -> GuestPaging {
    GuestPaging {
        la57,
        features: PagingFeatures {
            maxphyaddr,
            nx,
            gbpages,
            amd: crate::vendor::host() == crate::vendor::Vendor::Svm,
        },
        swap_layout: LinuxSwapLayout::distro_default(),
    }
}
