// SPDX-License-Identifier: GPL-2.0

//! One target page: what the module knows of it, and the state machine
//! (`pfi_core::inject`) fed with walks of it. The fields are grouped by the
//! concept that changes them: walking and injection here and in
//! `probe.rs`, page-table tracking in `tables.rs`, scans in `scans.rs`,
//! protection in `protection.rs`. Guarded by the VM's targets lock
//! (`mod.rs`).

use kernel::prelude::*;

use crate::bindings::uapi;
use crate::guest_mem::GuestMemory;
use crate::pfi_core::inject::{
    Action,
    FailReason,
    Injection,
    State, //
};
use crate::pfi_core::ready_queue::{
    Links,
    Queued, //
};
use crate::pfi_core::pte::NotPresentKind;
use crate::pfi_core::walk::{
    self,
    GuestPaging,
    GuestPhysRead,
    WalkOutcome, //
};

pub(crate) const PAGE_SIZE: u64 = 4096;
/// A page waiting for context is walked again this often (by the sweep,
/// `sweep.rs`), to notice the guest bringing it back by itself.
const REWALK_WAITING_NS: u64 = 5_000_000_000;
/// A reported resident page is walked again this often (by the sweep), to
/// notice the guest swapping it out again.
pub(crate) const REWALK_RESIDENT_NS: u64 = 5_000_000_000;

/// Guest frames (page-table pages) write-tracked for one page: at most one
/// per paging level.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gfns {
    gfns: [u64; 5],
    len: usize,
}

impl Gfns {
    pub(super) fn from_tables(t: &walk::TablePages) -> Self {
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

    pub(super) fn contains(&self, gfn: u64) -> bool {
        self.as_slice().contains(&gfn)
    }

    /// Forgets frames in `[first, first + n)` (their memslot is gone).
    pub(super) fn forget_range(&mut self, first: u64, n: u64) {
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
    pub(super) inj: Injection,
    /// `enum kvm_pfi_how`, once resident.
    pub(super) how: u32,
    pub(super) gpa: u64,
    pub(super) page_size: u32,
    pub(super) fail_reason: u32,
    /// Walk soon (the report work and the sweep walk such pages): never
    /// walked, a table write, a memslot change, a timed-out fault, a walk
    /// that could not read.
    pub(super) walk_due: bool,
    /// The sweep's next periodic walk (waiting and reported resident
    /// pages).
    pub(super) next_walk_ns: u64,
    /// Walked at least once.
    pub(super) walked: bool,
    /// Walks applied so far: a walk made outside the lock is applied only
    /// if none came in between (a fresher one).
    pub(super) walks: u32,
    /// Its place in its target's ready queue (`pfi_core::ready_queue`):
    /// queued exactly while [`ready`] holds.
    pub(super) ready: Links,
    /// A walk found the page not present (swapped out).
    pub(super) seen_swapped: bool,
    /// We injected a #PF for it.
    pub(super) injected: bool,
    /// The last walk ended at an empty entry (no swap entry): only a
    /// file-backed or shared mapping's page can come back (`vma_gate.rs`).
    pub(super) last_walk_empty: bool,
    /// Its fault was injected after an empty entry: it comes from its file
    /// or shared memory (`KVM_PFI_HOW_INJECTED_FILE`).
    pub(super) from_file: bool,
    /// The settled state has been reported (event sent).
    pub(super) reported: bool,
    /// Table pages of the last walk, while the page is live: to track.
    pub(super) tables_wanted: Gfns,
    /// Table pages write-tracked for this page now.
    pub(crate) tables_tracked: Gfns,
    /// Generation of the signature set it was last scanned with; 0 until
    /// its first scan and again after a guest write.
    pub(super) scan_gen: u32,
    /// Bytes `[lo, hi)` guest writes changed since a scan with set
    /// generation `.0`: the next scan reports only matches touching them
    /// (the others were reported already).
    pub(super) written: Option<(u32, u32, u32)>,
    /// `Targets::scan_seq` when it was last taken for a scan, and when it
    /// last became due for a rescan after writes.
    pub(super) scanned_seq: u64,
    pub(super) pending_seq: u64,
    /// Bytes of the page its last scan reported matches for (all, or what
    /// writes had changed), for its neighbours' rescans.
    pub(super) last_change: (i32, i32),
    /// Its last scan could not read it (`KVM_PFI_PAGE_SCANNED` stays off).
    pub(super) scan_failed: bool,
    /// KVM refused to track its frame (no memslot there): not retried.
    pub(super) protect_failed: bool,
    /// `KVM_PFI_TARGET_PROTECT`: its own frame, write-tracked now.
    pub(crate) data_tracked: Option<u64>,
    /// KVM write-tracks `data_tracked` now: set once the report work's
    /// tracking call returned, so `KVM_PFI_PAGE_PROTECTED` is never shown
    /// for a page whose writes would not yet be seen.
    pub(super) track_applied: bool,
    /// `KVM_PFI_TARGET_ENFORCE`: its bytes when protection began, restored
    /// after every guest write.
    pub(super) shadow: Option<KVec<u8>>,
    /// A write found the page moved to another frame: `gpa` is stale, so
    /// it is neither scanned nor protected again (the report work untracks
    /// `data_tracked`).
    pub(super) moved: bool,
}

impl Queued for Page {
    fn links(&self) -> &Links {
        &self.ready
    }
    fn links_mut(&mut self) -> &mut Links {
        &mut self.ready
    }
}

/// Whether the page may get a #PF now: waiting for context, armed by a walk
/// that saw a swap entry, or never walked yet (the entry's walk right
/// before injecting is then its first: a target added before the guest
/// ran gets its fault on the first entry in its context, not after the
/// report work's walk).
pub(super) fn ready(p: &Page) -> bool {
    p.inj.state() == State::WaitingForContext && (p.inj.is_armed() || !p.walked)
}

/// Whether the sweep walks the page at `now`: a walk is due; a delivered
/// fault waits for the guest (its vCPU's exits walk it too, but that vCPU
/// may be halted); a waiting page's or a reported resident page's period
/// has come. Protected pages are followed by their write tracking instead.
pub(super) fn sweep_due(p: &Page, now: u64) -> bool {
    match p.inj.state() {
        _ if p.walk_due => true,
        State::AwaitingUpdate { .. } => true,
        State::WaitingForContext => now >= p.next_walk_ns,
        State::Resident { .. } if !p.reported => false,
        State::Resident { .. } | State::Done => {
            now >= p.next_walk_ns && p.data_tracked.is_none() && !p.moved
        }
        _ => false,
    }
}

/// Whether a walk shows a reported resident page still at its frame.
pub(super) fn still_resident(p: &Page, tw: &TargetWalk) -> bool {
    match tw.walk.outcome {
        WalkOutcome::Resident { gpa, .. } => !tw.space_gone && gpa & !(PAGE_SIZE - 1) == p.gpa,
        _ => false,
    }
}

/// A resident page was found gone from its frame: it is live again, to be
/// reported anew (a fault again once swapped out, failed once unmapped) and
/// scanned again once back. Returns whether it was resident.
pub(super) fn reopen(p: &mut Page) -> bool {
    if p.inj.resident_lost() == Action::None {
        return false;
    }
    p.reported = false;
    p.injected = false;
    p.from_file = false;
    p.seen_swapped = false;
    p.scan_gen = 0;
    true
}

impl Page {
    pub(super) fn uapi_state(&self) -> u32 {
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

    pub(super) fn flags(&self) -> u32 {
        let mut f = 0;
        if self.data_tracked.is_some() && self.track_applied {
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

    pub(super) fn is_resident(&self) -> bool {
        !self.moved && matches!(self.inj.state(), State::Resident { .. } | State::Done)
    }
}

/// Why a page failed: the netlink `fail-reason` enum.
pub(super) fn fail_code(reason: &FailReason) -> u32 {
    match reason {
        FailReason::Timeout { .. } => uapi::KVM_PFI_FAIL_REASON_TIMEOUT,
        FailReason::AddressSpaceGone => uapi::KVM_PFI_FAIL_REASON_ADDRESS_SPACE_GONE,
        FailReason::GuestMemoryInvalid(_) => uapi::KVM_PFI_FAIL_REASON_INVALID_TABLES,
        FailReason::Unmapped => uapi::KVM_PFI_FAIL_REASON_UNMAPPED,
        FailReason::NotSwapEntry(_) => uapi::KVM_PFI_FAIL_REASON_NOT_SWAPPED,
        FailReason::NoVma => uapi::KVM_PFI_FAIL_REASON_NO_VMA,
        FailReason::VmaDenies => uapi::KVM_PFI_FAIL_REASON_VMA_DENIES,
    }
}

/// Walks the page now and feeds the result to its state machine.
pub(super) fn walk_page(p: &mut Page, mem: &mut GuestMemory, paging: &GuestPaging, now: u64) {
    let w = walk_target(mem, paging, p.inj.target().space.root_gpa(), p.inj.target().gva);
    apply_walk(p, &w, now);
}

/// A walk of a target page, and whether it shows the page's address space
/// gone (its process exited: `walk::shows_address_space_gone`).
pub(crate) struct TargetWalk {
    pub(crate) walk: walk::Walk,
    pub(crate) space_gone: bool,
}

/// Walks `gva` from `root` (every walk of a target page goes through here):
/// through `GuestMemory` in the probes, through a `TableCache` over it in
/// the background walks.
pub(crate) fn walk_target<M: GuestPhysRead>(mem: &mut M, paging: &GuestPaging, root: u64, gva: u64) -> TargetWalk {
    let w = walk::walk(mem, paging, root, gva);
    let space_gone = walk::shows_address_space_gone(mem, paging, root, &w);
    TargetWalk { walk: w, space_gone }
}

/// Feeds a finished walk of the page to its state machine.
pub(super) fn apply_walk(p: &mut Page, tw: &TargetWalk, now: u64) {
    let w = &tw.walk;
    p.walk_due = false;
    p.walked = true;
    p.walks = p.walks.wrapping_add(1);
    match w.outcome {
        WalkOutcome::Resident { gpa, page_size, .. } => {
            // The GVA is 4 KiB aligned: `gpa` is its own 4 KiB page, also
            // inside a larger guest mapping.
            p.gpa = gpa & !(PAGE_SIZE - 1);
            p.page_size = page_size.bytes() as u32;
            p.how = if p.injected && p.from_file {
                uapi::KVM_PFI_HOW_INJECTED_FILE
            } else if p.injected {
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
    p.last_walk_empty = matches!(w.outcome, WalkOutcome::NotPresent { kind: NotPresentKind::Empty, .. });
    // Its process exited: no fault can bring the page back, and none may
    // go to whatever reuses the address space's frames.
    let a = if tw.space_gone { p.inj.address_space_gone() } else { p.inj.on_walk(&w.outcome) };
    apply(p, a);
    p.next_walk_ns = now
        + if p.inj.state().is_live() {
            REWALK_WAITING_NS
        } else {
            REWALK_RESIDENT_NS
        };
    p.tables_wanted = if p.inj.state().is_live() { Gfns::from_tables(&w.tables) } else { Gfns::default() };
}

/// Applies the machine's requested action to the page.
pub(super) fn apply(p: &mut Page, a: Action) {
    match a {
        Action::Rewalk | Action::RewalkLater => p.walk_due = true,
        Action::None | Action::Settled => {}
    }
}

/// Records how a page settled; returns whether it is newly reportable.
pub(super) fn settle(p: &mut Page) -> bool {
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
