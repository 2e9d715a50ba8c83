// SPDX-License-Identifier: GPL-2.0

//! The probes' work on a VM's targets: at an entry, whether to inject a #PF
//! for a page of the address space the vCPU runs in; at an exit, the
//! delivery of an injected fault, timeouts, and the walks that are due. All
//! of it bounded: at most [`WALKS_PER_EXIT`] walks of at most five 8-byte
//! reads each per exit, one walk per entry.

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
    EntryContext,
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

use super::page::{
    apply,
    apply_walk,
    page_needs_exit_at,
    settle,
    walk_page,
    TargetWalk, //
};
use super::Targets;

/// Walks one exit may do, over all targets of the VM.
const WALKS_PER_EXIT: usize = 8;
/// Of those, periodic re-walks of pages waiting for context.
const PERIODIC_WALKS_PER_EXIT: usize = 2;

const CR4_LA57: u64 = 1 << 12;
const EFER_NXE: u64 = 1 << 11;

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
        'targets: for t in self.targets.iter_mut().flatten() {
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
                // The privilege rules (kernel mode: FRED, guest debugging,
                // IF, SMAP and AC) before the walk: a guest without SMAP
                // would otherwise cost a walk at every kernel-mode entry
                // and never inject. A target's pages are all in one half,
                // so they all fail alike: on to the next target.
                if let Err(reason) = p.inj.mode_check(&ctx) {
                    if !refusal_counted {
                        refusal_counted = self.kernel_refusals.count(reason);
                    }
                    continue 'targets;
                }
                // The last walk may be a second old: the guest may have
                // brought the page in since. Walk again right before
                // injecting, so a present page never gets a fault.
                walk_page(p, &mut mem, &paging, ctx.now_ns);
                if !p.inj.is_armed() {
                    self.gate.set_exit_due(0);
                    return (None, settle(p));
                }
                let decision = p.inj.on_entry(slot, &ctx);
                if let EntryDecision::Inject(pf) = decision {
                    p.injected = true;
                    self.gate.set_in_flight(vcpu_idx, true);
                    self.gate.set_exit_due(0);
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
    /// `now` is the exit's time, as the gate was asked with.
    pub(crate) fn on_exit(
        &mut self,
        kvm: *mut glue::kvm,
        vcpu: *mut glue::kvm_vcpu,
        vcpu_idx: usize,
        gs: &GuestState,
        now: u64,
    ) -> bool {
        let st = &gs.view;
        if let Some(slot) = self.slots.get_mut(vcpu_idx) {
            let delivery = slot.on_exit(&ExitDelivery { now_ns: now, exit_int_info: st.exit_int_info });
            self.gate.set_in_flight(vcpu_idx, slot.in_flight().is_some());
            if let Some(d) = delivery {
                for t in self.targets.iter_mut().flatten().filter(|t| t.id == d.target.0) {
                    for p in t.pages.iter_mut() {
                        if matches!(p.inj.state(), State::Injected { vcpu, .. } if vcpu == d.vcpu) {
                            let a = p.inj.on_delivery(&d);
                            apply(p, a);
                        }
                    }
                }
                self.gate.set_exit_due(0);
            }
        }
        if now < self.gate.exit_due() {
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
        self.gate.set_exit_due(next_scan);
        self.tracking_stale |= stale;
        settled || stale
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
    pub(crate) fn apply_remote_walk(&mut self, target_id: u32, index: usize, w: &TargetWalk, now: u64) {
        let Some(t) = self.targets.iter_mut().flatten().find(|t| t.id == target_id) else { return };
        let Some(p) = t.pages.get_mut(index) else { return };
        if !p.walked {
            apply_walk(p, w, now);
            settle(p);
            if p.tables_wanted != p.tables_tracked {
                self.tracking_stale = true;
            }
            self.gate.set_exit_due(0);
        }
    }

    /// A page a walk found resident has left that frame since (`report.rs`
    /// saw it before reading its bytes): it goes back to its state machine
    /// with `w`, the walk that saw it gone, to settle and be reported anew
    /// (failed once unmapped, a fault again once swapped out again).
    pub(crate) fn resident_lost(&mut self, target_id: u32, gva: u64, w: &TargetWalk, now: u64) {
        let Some(t) = self.targets.iter_mut().flatten().find(|t| t.id == target_id) else { return };
        let Some(p) = t.pages.iter_mut().find(|p| p.inj.target().gva == gva) else { return };
        if p.inj.resident_lost() == Action::None {
            return;
        }
        p.reported = false;
        apply_walk(p, w, now);
        settle(p);
        if p.tables_wanted != p.tables_tracked {
            self.tracking_stale = true;
        }
        self.gate.set_exit_due(0);
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
