// SPDX-License-Identifier: GPL-2.0

//! When to inject a #PF into a vCPU so that a Linux guest swaps a target
//! page back in, and following that fault to its end.
//!
//! One [`Injection`] per target page; one [`VcpuSlot`] per vCPU, kept by the
//! caller. Everything is pure: each method takes the machine's state and one
//! input and returns the next state (in place) and what the caller must do.
//! Times come in with the inputs (`now_ns`); nothing here reads a clock.
//!
//! ```text
//!                 on_entry: safe context            on_delivery: delivered
//! WaitingForContext ---------------> Injected{vcpu} -----------> AwaitingUpdate
//!        ^   ^                         |  ^  on_delivery:               |
//!        |   |                         |  |  interrupted (KVM           |
//!        |   +--- on_tick: timeout ----+  +--- re-injects, counted) ----+
//!        |         (tries left)                                         |
//!        +------------------------------- on_tick: timeout (tries left) +
//!
//! on_walk: page resident (any live state) ---> Resident --finish()--> Done
//! on_tick: timeout, no tries left         ---> Failed(Timeout)
//! on_walk: unmapped / not swap / bad tables --> Failed(...)
//! address_space_gone()                    ---> Failed(AddressSpaceGone)
//! vma_refuses(reason): WaitingForContext  ---> Failed(NoVma | VmaDenies)
//! resident_lost(): Resident or Done, a later walk found it gone from its
//!                  frame                  ---> WaitingForContext (disarmed)
//! cancel(reason)                          ---> Cancelled(reason)
//! ```
//!
//! How the caller drives it (the module):
//!
//! 1. Walk the target ([`super::walk::walk`]); if it is swapped out, create
//!    the [`Injection`], feed it the walk ([`Injection::on_walk`]) and
//!    write-track the walk's table pages.
//! 2. Before each VM entry of a vCPU, for each live target:
//!    [`Injection::on_entry`] with the vCPU's slot; on
//!    [`EntryDecision::Inject`], queue the #PF in this entry (and stop asking
//!    other targets on this entry: the slot is now busy anyway).
//! 3. After each VM exit of a vCPU: [`VcpuSlot::on_exit`]; if it returns a
//!    [`Delivery`], pass it to the target it names ([`Injection::on_delivery`])
//!    if that target still exists.
//! 4. On a write to a tracked table page: [`Injection::on_page_table_write`],
//!    then walk and [`Injection::on_walk`] as the returned [`Action`] says.
//! 5. Periodically: [`Injection::on_tick`].
//!
//! An injected #PF cannot be taken back: once queued, KVM re-injects it
//! itself if its delivery is interrupted by an exit. That is why the
//! per-vCPU "fault in flight" guard lives in the [`VcpuSlot`], which only the
//! vCPU's exits clear, and not in the target, which may be cancelled or
//! dropped while its fault is still in flight.

use super::pte::{NotPresentKind, SoftLeaf, SoftLeafKind};
use super::walk::{AddressSpace, Invalid, WalkOutcome};

/// RFLAGS.IF (bit 9): maskable interrupts enabled.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.AC (bit 18): with CR4.SMAP, supervisor access to user pages
/// allowed (Linux's `stac` in `user_access_begin()`).
pub const RFLAGS_AC: u64 = 1 << 18;
/// CR4.SMAP (bit 21): supervisor-mode access prevention.
pub const CR4_SMAP: u64 = 1 << 21;
/// CR4.FRED (bit 32): flexible return and event delivery.
pub const CR4_FRED: u64 = 1 << 32;

/// #PF error code bit 0, P: the fault was a protection violation (clear:
/// the page was not present). Never set by this module.
pub const PF_ERROR_PROT: u32 = 1 << 0;
/// #PF error code bit 1, W: the access was a write.
pub const PF_ERROR_WRITE: u32 = 1 << 1;
/// #PF error code bit 2, U: the access was made at CPL 3.
pub const PF_ERROR_USER: u32 = 1 << 2;

/// The #PF vector.
pub const PF_VECTOR: u32 = 14;
/// Exit interrupt information, valid bit (bit 31). Same layout in VMX's
/// IDT-vectoring information field and SVM's EXITINTINFO (low 32 bits).
pub const EXIT_INT_INFO_VALID: u32 = 1 << 31;
/// Exit interrupt information, event type (bits 8..=10).
pub const EXIT_INT_INFO_TYPE_MASK: u32 = 7 << 8;
/// Event type 3: hardware exception (VMX `INTR_TYPE_HARD_EXCEPTION`, SVM
/// `SVM_EXITINTINFO_TYPE_EXEPT`).
pub const EXIT_INT_INFO_TYPE_HW_EXCEPTION: u32 = 3 << 8;
/// Exit interrupt information, vector (bits 0..=7).
pub const EXIT_INT_INFO_VECTOR_MASK: u32 = 0xff;

/// Whether an exit's interrupt information says that the delivery of a
/// #PF was interrupted by the exit. KVM then re-injects that #PF on the
/// next entry by itself (`vmx_complete_interrupts()` /
/// `svm_complete_interrupts()`).
pub const fn is_interrupted_page_fault(exit_int_info: u32) -> bool {
    exit_int_info & EXIT_INT_INFO_VALID != 0
        && exit_int_info & EXIT_INT_INFO_TYPE_MASK == EXIT_INT_INFO_TYPE_HW_EXCEPTION
        && exit_int_info & EXIT_INT_INFO_VECTOR_MASK == PF_VECTOR
}

/// The caller's name for a target page; reported back in [`Delivery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(pub u32);

/// A page to bring back into guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The caller's name for it.
    pub id: TargetId,
    /// The address space it lives in.
    pub space: AddressSpace,
    /// The virtual address to fault on (CR2 of the injected #PF). Canonical,
    /// without LAM tag bits.
    pub gva: u64,
    /// Inject a write fault (W in the error code): makes the guest break COW
    /// / mark the page dirty. Only if the guest VMA is writable: a write
    /// fault on a read-only VMA gets the task a SIGSEGV.
    pub write: bool,
    /// Also inject while the vCPU runs the guest kernel (CPL 0): with IF
    /// set, CR4.FRED clear and no guest debugging by the VMM, and for a
    /// user address only inside a uaccess region (CR4.SMAP and RFLAGS.AC
    /// both set; without SMAP a uaccess cannot be told from any other
    /// kernel code). Off by default, and risky for a Linux guest: Linux
    /// handles a kernel-mode #PF on a user address only outside atomic
    /// context (`faulthandler_disabled()`) and when it can take mmap_lock,
    /// neither of which the host can see; when it cannot, the access fails
    /// (`-EFAULT` from a uaccess with an exception-table fixup) or the
    /// guest kernel oopses. User-mode (CPL 3) injection has no such hazard.
    /// See [`Injection::mode_check`].
    pub allow_kernel_mode: bool,
    /// An empty entry (PTE none: no swap entry, nothing mapped) may still be
    /// faulted in: arm on it as on a swap entry instead of failing the page
    /// as unmapped. For a page the caller checks right before injecting
    /// against the guest's VMAs: a file-backed or shared mapping's page the
    /// guest dropped comes back from its page cache or file.
    pub empty_may_fault: bool,
}

/// Limits of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectConfig {
    /// How long after an injection to wait for the page to become resident
    /// before injecting again.
    pub timeout_ns: u64,
    /// How many #PFs to inject for the target in all before giving up
    /// (the first one is injected whatever this says).
    pub max_tries: u32,
}

/// The longest timeout a target (or the module parameter `pf_timeout_ms`)
/// may ask for, in ms.
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// The most tries a target (or the module parameter `pf_max_tries`) may
/// ask for.
pub const MAX_TRIES: u32 = 100;

impl InjectConfig {
    /// The configuration of `timeout_ms` and `max_tries`, if each is 1 to
    /// its maximum (`MAX_TIMEOUT_MS`, `MAX_TRIES`); the same limits apply to
    /// a target's values and to the module parameters.
    pub const fn checked(timeout_ms: u32, max_tries: u32) -> Option<Self> {
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS || max_tries == 0 || max_tries > MAX_TRIES {
            return None;
        }
        Some(InjectConfig {
            timeout_ns: (timeout_ms as u64).saturating_mul(1_000_000),
            max_tries,
        })
    }

    /// One second per try, three tries.
    pub const fn default_config() -> Self {
        InjectConfig {
            timeout_ns: 1_000_000_000,
            max_tries: 3,
        }
    }
}

impl Default for InjectConfig {
    fn default() -> Self {
        Self::default_config()
    }
}

/// The state of a vCPU just before a VM entry, as KVM holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryContext {
    /// KVM's vcpu index.
    pub vcpu: u32,
    /// The caller's clock (monotonic, nanoseconds).
    pub now_ns: u64,
    /// Guest CR3 (raw; normalised here).
    pub cr3: u64,
    /// Current privilege level (SS.DPL / CS.RPL), 0..=3.
    pub cpl: u8,
    /// Guest RFLAGS.
    pub rflags: u64,
    /// Guest CR4.SMAP.
    pub cr4_smap: bool,
    /// Guest CR4.FRED: events are delivered by FRED, not through the IDT.
    pub cr4_fred: bool,
    /// The VMM debugs the guest (`KVM_SET_GUEST_DEBUG` with
    /// `KVM_GUESTDBG_ENABLE`: single-step, breakpoints).
    pub guest_debug: bool,
    /// This entry already injects an event (VMX VM-entry interruption
    /// information valid, SVM EVENTINJ valid): there is room for one only.
    pub event_inj_valid: bool,
    /// KVM has an exception pending or injected (`vcpu->arch.exception`):
    /// a #PF on top would turn into a double fault.
    pub exception_pending: bool,
    /// KVM has an interrupt injected or pending for this entry.
    pub interrupt_pending: bool,
    /// KVM has an NMI injected or pending.
    pub nmi_pending: bool,
    /// The guest is in an STI or MOV SS interrupt shadow.
    pub interrupt_shadow: bool,
    /// The vCPU runs a nested (L2) guest: its CR3 and CPL are L2's.
    pub guest_mode: bool,
    /// The vCPU is in system-management mode.
    pub smm: bool,
}

/// Why the machine did not inject on an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// The vCPU is in system-management mode.
    SystemManagementMode,
    /// The vCPU runs a nested guest.
    NestedGuest,
    /// The vCPU runs another address space.
    OtherAddressSpace,
    /// No walk since the tables changed (or since creation / re-arming),
    /// or the last walk did not show a swap entry: the page may not be
    /// swapped out any more.
    WalkPending,
    /// This entry injects another event already.
    EventInjection,
    /// An exception is pending or injected.
    ExceptionPending,
    /// An interrupt is pending or injected.
    InterruptPending,
    /// An NMI is pending or injected.
    NmiPending,
    /// The guest is in an interrupt shadow.
    InterruptShadow,
    /// CPL 1 or 2; CPL 0 for a target that does not allow kernel mode; CPL 3
    /// for a kernel-half address (the guest would SIGSEGV the task).
    PrivilegeLevel,
    /// CPL 0 with interrupts disabled: Linux's fault handler would refuse it.
    InterruptsDisabled,
    /// CPL 0, user address, CR4.SMAP set and RFLAGS.AC clear: Linux treats
    /// that as a kernel bug and oopses.
    SmapUserAccess,
    /// CPL 0, user address, CR4.SMAP clear: with no RFLAGS.AC to show a
    /// uaccess region (`stac`), the access the fault would stand for cannot
    /// be told from any other kernel code, lazy-TLB kernel threads and the
    /// idle task included.
    NoSmap,
    /// CPL 0 in a guest with CR4.FRED set: FRED event delivery (stack
    /// levels, the event-data field, ERETS) is not modelled.
    Fred,
    /// CPL 0 while the VMM debugs the guest (`KVM_GUESTDBG_ENABLE`): a fault
    /// in the middle of a single-stepped or breakpointed kernel would be
    /// the debugger's surprise.
    GuestDebug,
    /// This vCPU has a fault in flight (ours or another target's).
    VcpuBusy,
}

/// A #PF to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageFault {
    /// The faulting address (the guest's CR2 on delivery).
    pub cr2: u64,
    /// The error code: P clear; W if the target asked for a write; U when
    /// injected at CPL 3.
    pub error_code: u32,
}

/// What to do with a VM entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryDecision {
    /// Inject this #PF on this entry. The vCPU's slot is now busy.
    Inject(PageFault),
    /// Not on this entry.
    Wait(WaitReason),
    /// The target is not waiting to inject (in flight, or settled).
    Idle,
}

/// What the caller must do after an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Nothing.
    None,
    /// Walk the target again now, update write-tracking from the walk's
    /// tables, and feed the result to [`Injection::on_walk`].
    Rewalk,
    /// The walk could not read guest memory now: walk again on a later exit.
    RewalkLater,
    /// The target settled (Resident, Failed or Cancelled): stop tracking
    /// its tables and report it.
    Settled,
}

/// Why a target was cancelled from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// User space asked.
    Requested,
    /// The VM is being detached (or the module unloaded).
    Detached,
}

/// Why a target failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// `tries` faults were injected and the page did not come back within
    /// the timeout of the last one.
    Timeout {
        /// Faults injected.
        tries: u32,
    },
    /// The address space went away (the caller saw the process exit).
    AddressSpaceGone,
    /// The guest's page tables could not be walked.
    GuestMemoryInvalid(Invalid),
    /// Nothing is mapped at the address any more (unmapped, or a table on
    /// the way was freed): a #PF there could kill the task.
    Unmapped,
    /// The entry became something a #PF would not swap in (hwpoison,
    /// marker, device-private, unrecognised).
    NotSwapEntry(NotPresentKind),
    /// No VMA of the process covers the address: the guest kernel would
    /// answer the fault with SIGSEGV (`vma_check`).
    NoVma,
    /// The VMA covering the address forbids the access (`PROT_NONE`, a
    /// write to a read-only mapping): SIGSEGV too.
    VmaDenies,
}

/// The state of an [`Injection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for an entry of a vCPU in the target's address space where a
    /// #PF can be injected safely.
    WaitingForContext,
    /// A #PF was injected on `vcpu`'s entry at `at_ns`; its delivery is not
    /// confirmed yet.
    Injected {
        /// The vCPU.
        vcpu: u32,
        /// When.
        at_ns: u64,
    },
    /// The #PF was delivered; waiting for the guest to update the entry.
    AwaitingUpdate {
        /// The vCPU it was delivered on.
        vcpu: u32,
        /// When it was injected (the timeout counts from there).
        at_ns: u64,
    },
    /// A walk found the page resident.
    Resident {
        /// Guest-physical base of the page.
        page_base_gpa: u64,
        /// False if resident but made inaccessible by the guest (PROT_NONE,
        /// NUMA hinting, transient huge-page invalidation).
        accessible: bool,
    },
    /// Resident, and the caller has [`finish`](Injection::finish)ed it.
    Done,
    /// Cancelled from outside.
    Cancelled(CancelReason),
    /// Given up.
    Failed(FailReason),
}

impl State {
    /// Whether the target is still working (not Resident, Done, Cancelled
    /// or Failed).
    pub const fn is_live(&self) -> bool {
        matches!(
            self,
            State::WaitingForContext | State::Injected { .. } | State::AwaitingUpdate { .. }
        )
    }
}

/// Counters of one target, for statistics and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// #PFs injected (tries).
    pub injections: u32,
    /// Deliveries interrupted by an exit and re-injected by KVM.
    pub reinjections: u32,
    /// Deliveries completed.
    pub deliveries: u32,
    /// Entries of the current try, from the first entry in the target's
    /// context (right address space, not nested, not SMM) up to now: entries
    /// waited through, the injecting entry, and the injecting vCPU's entries
    /// while KVM re-injected. Reset when the target is re-armed.
    pub entries_in_context: u32,
    /// `entries_in_context` when the last fault was delivered: 1 means it was
    /// injected on the first entry in context and delivered on it.
    pub entries_to_delivery: Option<u32>,
}

/// Entries on which a kernel-mode target was refused by one of the
/// kernel-mode rules that concern the guest's configuration rather than the
/// moment (see [`WaitReason::NoSmap`], [`WaitReason::Fred`],
/// [`WaitReason::GuestDebug`]): a target that never injects shows why here.
/// The caller counts at most one refusal per entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelRefusals {
    /// [`WaitReason::NoSmap`].
    pub no_smap: u64,
    /// [`WaitReason::Fred`].
    pub fred: u64,
    /// [`WaitReason::GuestDebug`].
    pub guest_debug: u64,
}

impl KernelRefusals {
    /// Counts `reason` if it is one of the three; returns whether it was.
    pub fn count(&mut self, reason: WaitReason) -> bool {
        let counter = match reason {
            WaitReason::NoSmap => &mut self.no_smap,
            WaitReason::Fred => &mut self.fred,
            WaitReason::GuestDebug => &mut self.guest_debug,
            _ => return false,
        };
        *counter = counter.saturating_add(1);
        true
    }
}

/// Where a fault in flight on a vCPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    target: TargetId,
    vcpu: u32,
}

/// The per-vCPU guard: at most one injected #PF in flight per vCPU. The
/// caller keeps one per vCPU, passes it to [`Injection::on_entry`] and
/// feeds it every exit ([`VcpuSlot::on_exit`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSlot {
    in_flight: Option<InFlight>,
}

/// The end of a VM exit, as far as an in-flight fault cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitDelivery {
    /// The caller's clock.
    pub now_ns: u64,
    /// The exit's interrupt information: VMX IDT-vectoring information
    /// field, or the low 32 bits of SVM's EXITINTINFO.
    pub exit_int_info: u32,
}

/// What happened to a vCPU's in-flight fault at an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The target that injected it.
    pub target: TargetId,
    /// The vCPU.
    pub vcpu: u32,
    /// When the exit happened.
    pub now_ns: u64,
    /// The delivery was interrupted: KVM re-injects the fault on the next
    /// entry and the slot stays busy. Otherwise the fault was delivered and
    /// the slot is free again.
    pub interrupted: bool,
}

impl VcpuSlot {
    /// A free slot.
    pub const fn new() -> Self {
        VcpuSlot { in_flight: None }
    }

    /// The target whose fault is in flight on this vCPU, if any.
    pub const fn in_flight(&self) -> Option<TargetId> {
        match self.in_flight {
            Some(f) => Some(f.target),
            None => None,
        }
    }

    /// Account an exit of this vCPU. With a fault in flight, reports whether
    /// its delivery completed (freeing the slot) or was interrupted (KVM
    /// re-injects it; the slot stays busy).
    pub fn on_exit(&mut self, exit: &ExitDelivery) -> Option<Delivery> {
        let f = self.in_flight?;
        let interrupted = is_interrupted_page_fault(exit.exit_int_info);
        if !interrupted {
            self.in_flight = None;
        }
        Some(Delivery {
            target: f.target,
            vcpu: f.vcpu,
            now_ns: exit.now_ns,
            interrupted,
        })
    }
}

/// The injection state machine of one target page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    target: Target,
    config: InjectConfig,
    state: State,
    /// The last walk showed a swap entry and no table write came since.
    armed: bool,
    stats: Stats,
}

impl Injection {
    /// A target waiting for context, not armed: feed it a walk before it
    /// injects anything.
    pub const fn new(target: Target, config: InjectConfig) -> Self {
        Injection {
            target,
            config,
            state: State::WaitingForContext,
            armed: false,
            stats: Stats {
                injections: 0,
                reinjections: 0,
                deliveries: 0,
                entries_in_context: 0,
                entries_to_delivery: None,
            },
        }
    }

    /// The target.
    pub const fn target(&self) -> &Target {
        &self.target
    }

    /// Its limits.
    pub const fn config(&self) -> &InjectConfig {
        &self.config
    }

    /// The current state.
    pub const fn state(&self) -> State {
        self.state
    }

    /// The counters.
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether the last walk showed a swap entry and no table write came
    /// since (the target may inject).
    pub const fn is_armed(&self) -> bool {
        self.armed
    }

    /// Decide on a VM entry of the vCPU whose slot is `slot`.
    pub fn on_entry(&mut self, slot: &mut VcpuSlot, ctx: &EntryContext) -> EntryDecision {
        match self.state {
            State::WaitingForContext => {}
            State::Injected { vcpu, .. } => {
                if vcpu == ctx.vcpu {
                    // KVM is re-injecting our fault on this entry, or it is
                    // the entry after an exit this machine did not hear of.
                    self.count_entry();
                }
                return EntryDecision::Idle;
            }
            _ => return EntryDecision::Idle,
        }
        match self.check_entry(slot, ctx) {
            Err(reason) => EntryDecision::Wait(reason),
            Ok(user) => {
                slot.in_flight = Some(InFlight {
                    target: self.target.id,
                    vcpu: ctx.vcpu,
                });
                self.state = State::Injected {
                    vcpu: ctx.vcpu,
                    at_ns: ctx.now_ns,
                };
                self.stats.injections = self.stats.injections.saturating_add(1);
                let mut error_code = 0;
                if self.target.write {
                    error_code |= PF_ERROR_WRITE;
                }
                if user {
                    error_code |= PF_ERROR_USER;
                }
                EntryDecision::Inject(PageFault {
                    cr2: self.target.gva,
                    error_code,
                })
            }
        }
    }

    /// The safety rules, in order; `Ok(user_mode)` when all hold.
    fn check_entry(&mut self, slot: &VcpuSlot, ctx: &EntryContext) -> Result<bool, WaitReason> {
        if ctx.smm {
            return Err(WaitReason::SystemManagementMode);
        }
        if ctx.guest_mode {
            return Err(WaitReason::NestedGuest);
        }
        if !self.target.space.matches_cr3(ctx.cr3) {
            return Err(WaitReason::OtherAddressSpace);
        }
        // The target's context is reached: from here on the entry counts.
        self.count_entry();
        if !self.armed {
            return Err(WaitReason::WalkPending);
        }
        if ctx.event_inj_valid {
            return Err(WaitReason::EventInjection);
        }
        if ctx.exception_pending {
            return Err(WaitReason::ExceptionPending);
        }
        if ctx.nmi_pending {
            return Err(WaitReason::NmiPending);
        }
        if ctx.interrupt_pending {
            return Err(WaitReason::InterruptPending);
        }
        if ctx.interrupt_shadow {
            return Err(WaitReason::InterruptShadow);
        }
        let user = self.mode_check(ctx)?;
        if slot.in_flight.is_some() {
            return Err(WaitReason::VcpuBusy);
        }
        Ok(user)
    }

    /// The privilege-level rules alone, in their order; `Ok(user_mode)`
    /// when they allow this target on this entry. No side effect: the
    /// caller may ask before walking the page, and [`Injection::on_entry`]
    /// applies the same rules after the others.
    ///
    /// - CPL 3: a user address only (a kernel-half one would get the task
    ///   a SIGSEGV).
    /// - CPL 0: only for a target with `allow_kernel_mode`, and then not
    ///   with CR4.FRED ([`WaitReason::Fred`]), not while the VMM debugs
    ///   the guest ([`WaitReason::GuestDebug`]), not with IF clear
    ///   ([`WaitReason::InterruptsDisabled`]); for a user address only
    ///   with CR4.SMAP ([`WaitReason::NoSmap`]) and RFLAGS.AC
    ///   ([`WaitReason::SmapUserAccess`]) both set, i.e. inside a uaccess
    ///   region (between `stac` and `clac`).
    /// - CPL 1 and 2: never.
    pub const fn mode_check(&self, ctx: &EntryContext) -> Result<bool, WaitReason> {
        let user_address = self.target.gva >> 63 == 0;
        match ctx.cpl {
            3 if user_address => Ok(true),
            0 if self.target.allow_kernel_mode => {
                if ctx.cr4_fred {
                    return Err(WaitReason::Fred);
                }
                if ctx.guest_debug {
                    return Err(WaitReason::GuestDebug);
                }
                if ctx.rflags & RFLAGS_IF == 0 {
                    return Err(WaitReason::InterruptsDisabled);
                }
                if user_address {
                    if !ctx.cr4_smap {
                        return Err(WaitReason::NoSmap);
                    }
                    if ctx.rflags & RFLAGS_AC == 0 {
                        return Err(WaitReason::SmapUserAccess);
                    }
                }
                Ok(false)
            }
            _ => Err(WaitReason::PrivilegeLevel),
        }
    }

    fn count_entry(&mut self) {
        self.stats.entries_in_context = self.stats.entries_in_context.saturating_add(1);
    }

    /// Account what [`VcpuSlot::on_exit`] reported for this target's fault.
    /// Deliveries of other targets, other vCPUs or an earlier try are
    /// ignored.
    pub fn on_delivery(&mut self, delivery: &Delivery) -> Action {
        let State::Injected { vcpu, at_ns } = self.state else {
            return Action::None;
        };
        if delivery.target != self.target.id || delivery.vcpu != vcpu {
            return Action::None;
        }
        if delivery.interrupted {
            self.stats.reinjections = self.stats.reinjections.saturating_add(1);
        } else {
            self.stats.deliveries = self.stats.deliveries.saturating_add(1);
            self.stats.entries_to_delivery = Some(self.stats.entries_in_context);
            self.state = State::AwaitingUpdate { vcpu, at_ns };
        }
        Action::None
    }

    /// A tracked page-table page was written: the entry may have changed.
    /// Disarms the target until the next walk.
    pub fn on_page_table_write(&mut self) -> Action {
        if !self.state.is_live() {
            return Action::None;
        }
        self.armed = false;
        Action::Rewalk
    }

    /// The result of walking the target.
    pub fn on_walk(&mut self, outcome: &WalkOutcome) -> Action {
        if !self.state.is_live() {
            return Action::None;
        }
        match *outcome {
            WalkOutcome::Resident { page_base_gpa, .. } => self.settle(State::Resident {
                page_base_gpa,
                accessible: true,
            }),
            WalkOutcome::NotPresent { kind, .. } => match kind {
                NotPresentKind::Resident { frame_gpa, .. } => self.settle(State::Resident {
                    page_base_gpa: frame_gpa,
                    accessible: false,
                }),
                NotPresentKind::SoftLeaf(SoftLeaf {
                    kind: SoftLeafKind::Swap,
                    ..
                }) => {
                    self.armed = true;
                    Action::None
                }
                NotPresentKind::SoftLeaf(SoftLeaf {
                    kind:
                        SoftLeafKind::MigrationRead
                        | SoftLeafKind::MigrationReadExclusive
                        | SoftLeafKind::MigrationWrite,
                    ..
                }) => {
                    // Being migrated: resident again when it ends, which
                    // writes the entry. Nothing to inject meanwhile.
                    self.armed = false;
                    Action::None
                }
                NotPresentKind::Empty if self.target.empty_may_fault => {
                    self.armed = true;
                    Action::None
                }
                NotPresentKind::Empty => self.settle(State::Failed(FailReason::Unmapped)),
                NotPresentKind::SoftLeaf(_) | NotPresentKind::Unrecognised => {
                    self.settle(State::Failed(FailReason::NotSwapEntry(kind)))
                }
            },
            WalkOutcome::Invalid(Invalid::RetryLater { .. }) => {
                // Not read: what the entry is now is unknown, so no fault
                // goes on the strength of an older walk.
                self.armed = false;
                Action::RewalkLater
            }
            WalkOutcome::Invalid(invalid) => {
                self.settle(State::Failed(FailReason::GuestMemoryInvalid(invalid)))
            }
        }
    }

    /// Time passes. After `timeout_ns` from an injection without the page
    /// becoming resident, inject again (back to waiting, disarmed until a
    /// fresh walk) or, after `max_tries` injections, fail. Waiting for
    /// context has no deadline: the caller cancels targets it gives up on.
    pub fn on_tick(&mut self, now_ns: u64) -> Action {
        let at_ns = match self.state {
            State::Injected { at_ns, .. } | State::AwaitingUpdate { at_ns, .. } => at_ns,
            _ => return Action::None,
        };
        if now_ns.saturating_sub(at_ns) < self.config.timeout_ns {
            return Action::None;
        }
        if self.stats.injections >= self.config.max_tries {
            return self.settle(State::Failed(FailReason::Timeout {
                tries: self.stats.injections,
            }));
        }
        self.state = State::WaitingForContext;
        self.armed = false;
        self.stats.entries_in_context = 0;
        Action::Rewalk
    }

    /// Cancel from outside. A live target becomes Cancelled; a settled one
    /// keeps its outcome. A fault already in flight is still delivered (KVM
    /// re-injects it if needed); its vCPU's slot frees itself on that exit.
    pub fn cancel(&mut self, reason: CancelReason) -> Action {
        if !self.state.is_live() {
            return Action::None;
        }
        self.settle(State::Cancelled(reason))
    }

    /// The caller learnt that the target's address space is gone (process
    /// exit): a live target fails.
    pub fn address_space_gone(&mut self) -> Action {
        if !self.state.is_live() {
            return Action::None;
        }
        self.settle(State::Failed(FailReason::AddressSpaceGone))
    }

    /// The caller's check of the process's VMAs, right before injecting,
    /// found that the guest kernel would not serve the fault: the page
    /// fails with `reason` ([`FailReason::NoVma`] or
    /// [`FailReason::VmaDenies`]; [`FailReason::Unmapped`] for an empty
    /// entry of an anonymous mapping) instead of a fault that would kill
    /// the task or map a zero page. Only a page waiting for context can be
    /// refused.
    pub fn vma_refuses(&mut self, reason: FailReason) -> Action {
        if self.state != State::WaitingForContext {
            return Action::None;
        }
        self.settle(State::Failed(reason))
    }

    /// The caller found a Resident or Done target gone from the frame a
    /// walk showed: before it could read its bytes, or at a later re-walk
    /// (the guest swapped it out again or unmapped it; its process exited).
    /// It is live again, disarmed until the caller feeds it a fresh walk
    /// ([`Injection::on_walk`]), which settles it anew or makes it wait for
    /// context. Its counters stay. Any other state is kept.
    pub fn resident_lost(&mut self) -> Action {
        if !matches!(self.state, State::Resident { .. } | State::Done) {
            return Action::None;
        }
        self.state = State::WaitingForContext;
        self.armed = false;
        self.stats.entries_in_context = 0;
        Action::Rewalk
    }

    /// The caller has reported a Resident target: it becomes Done. Returns
    /// whether it was Resident.
    pub fn finish(&mut self) -> bool {
        if let State::Resident { .. } = self.state {
            self.state = State::Done;
            true
        } else {
            false
        }
    }

    fn settle(&mut self, state: State) -> Action {
        self.state = state;
        self.armed = false;
        Action::Settled
    }
}

#[cfg(test)]
mod tests {
    use super::super::pte::{Inaccessible, Level, PageSize};
    use super::*;

    const USER_CR3: u64 = 0x0000_0001_2345_7000; // KPTI user half
    const KERNEL_CR3: u64 = 0x0000_0001_2345_6000;
    const GVA: u64 = 0x0000_7f00_1234_5000;
    const SEC: u64 = 1_000_000_000;

    fn target(write: bool, allow_kernel_mode: bool) -> Target {
        Target {
            id: TargetId(7),
            space: AddressSpace::from_cr3(USER_CR3, true),
            gva: GVA,
            write,
            allow_kernel_mode,
            empty_may_fault: false,
        }
    }

    /// A context where injection is allowed: CPL 3, IF set, in the target's
    /// address space (user half of the KPTI pair, PCID bits set).
    fn ctx(vcpu: u32, now_ns: u64) -> EntryContext {
        EntryContext {
            vcpu,
            now_ns,
            cr3: USER_CR3 | 0x801,
            cpl: 3,
            rflags: RFLAGS_IF | 0x2,
            cr4_smap: true,
            cr4_fred: false,
            guest_debug: false,
            event_inj_valid: false,
            exception_pending: false,
            interrupt_pending: false,
            nmi_pending: false,
            interrupt_shadow: false,
            guest_mode: false,
            smm: false,
        }
    }

    fn swap_walk() -> WalkOutcome {
        WalkOutcome::NotPresent {
            level: Level::Pt,
            entry: 0x07ff_ffff_ffdb_9600,
            entry_gpa: 0x5008,
            kind: NotPresentKind::SoftLeaf(SoftLeaf {
                kind: SoftLeafKind::Swap,
                swp_type: 0,
                offset: 0x1234,
                soft_dirty: false,
                uffd_wp: false,
                exclusive: false,
            }),
        }
    }

    fn leaf_walk(kind: SoftLeafKind) -> WalkOutcome {
        let WalkOutcome::NotPresent { level, entry, entry_gpa, kind: NotPresentKind::SoftLeaf(mut leaf) } =
            swap_walk()
        else {
            unreachable!()
        };
        leaf.kind = kind;
        WalkOutcome::NotPresent {
            level,
            entry,
            entry_gpa,
            kind: NotPresentKind::SoftLeaf(leaf),
        }
    }

    fn resident_walk() -> WalkOutcome {
        WalkOutcome::Resident {
            gpa: 0x9000,
            page_base_gpa: 0x9000,
            page_size: PageSize::Size4K,
            writable: true,
            user: true,
            nx: true,
        }
    }

    fn armed(write: bool, allow_kernel_mode: bool) -> Injection {
        let mut m = Injection::new(target(write, allow_kernel_mode), InjectConfig::default());
        assert_eq!(m.on_walk(&swap_walk()), Action::None);
        assert!(m.is_armed());
        m
    }

    /// Inject on vCPU 0 at time `now`; returns the slot.
    fn inject(m: &mut Injection, now: u64) -> VcpuSlot {
        let mut slot = VcpuSlot::new();
        assert!(matches!(m.on_entry(&mut slot, &ctx(0, now)), EntryDecision::Inject(_)));
        slot
    }

    fn delivered(now_ns: u64) -> ExitDelivery {
        ExitDelivery {
            now_ns,
            exit_int_info: 0,
        }
    }

    /// VMX/SVM exit interrupt info for an interrupted #PF with error code.
    const INTERRUPTED_PF: u32 = EXIT_INT_INFO_VALID | (1 << 11) | EXIT_INT_INFO_TYPE_HW_EXCEPTION | 14;

    // ---- happy path ----

    #[test]
    fn full_cycle_user_read_fault() {
        let mut m = armed(false, false);
        assert_eq!(m.state(), State::WaitingForContext);
        let mut slot = VcpuSlot::new();
        let d = m.on_entry(&mut slot, &ctx(2, 100));
        assert_eq!(
            d,
            EntryDecision::Inject(PageFault {
                cr2: GVA,
                error_code: PF_ERROR_USER
            })
        );
        assert_eq!(m.state(), State::Injected { vcpu: 2, at_ns: 100 });
        assert_eq!(slot.in_flight(), Some(TargetId(7)));
        assert_eq!(m.stats().injections, 1);

        let del = slot.on_exit(&delivered(150)).unwrap();
        assert_eq!(
            del,
            Delivery {
                target: TargetId(7),
                vcpu: 2,
                now_ns: 150,
                interrupted: false
            }
        );
        assert_eq!(slot.in_flight(), None);
        assert_eq!(m.on_delivery(&del), Action::None);
        assert_eq!(m.state(), State::AwaitingUpdate { vcpu: 2, at_ns: 100 });
        assert_eq!(m.stats().deliveries, 1);
        assert_eq!(m.stats().entries_to_delivery, Some(1));

        // The guest swaps the page in: its PTE is written.
        assert_eq!(m.on_page_table_write(), Action::Rewalk);
        assert!(!m.is_armed());
        assert_eq!(m.on_walk(&swap_walk()), Action::None); // I/O still running
        assert_eq!(m.state(), State::AwaitingUpdate { vcpu: 2, at_ns: 100 });
        assert_eq!(m.on_page_table_write(), Action::Rewalk);
        assert_eq!(m.on_walk(&resident_walk()), Action::Settled);
        assert_eq!(
            m.state(),
            State::Resident {
                page_base_gpa: 0x9000,
                accessible: true
            }
        );
        assert!(m.finish());
        assert_eq!(m.state(), State::Done);
        assert!(!m.finish());
        // A settled target ignores everything.
        assert_eq!(m.on_entry(&mut slot, &ctx(0, 200)), EntryDecision::Idle);
        assert_eq!(m.on_page_table_write(), Action::None);
        assert_eq!(m.on_walk(&swap_walk()), Action::None);
        assert_eq!(m.on_tick(100 * SEC), Action::None);
        assert_eq!(m.cancel(CancelReason::Requested), Action::None);
        assert_eq!(m.address_space_gone(), Action::None);
        assert_eq!(m.state(), State::Done);
        assert_eq!(m.target().id, TargetId(7));
    }

    #[test]
    fn write_fault_error_code() {
        let mut m = armed(true, false);
        let mut slot = VcpuSlot::new();
        assert_eq!(
            m.on_entry(&mut slot, &ctx(0, 0)),
            EntryDecision::Inject(PageFault {
                cr2: GVA,
                error_code: PF_ERROR_WRITE | PF_ERROR_USER
            })
        );
    }

    #[test]
    fn kernel_mode_injection_when_allowed() {
        let mut m = armed(true, true);
        let mut slot = VcpuSlot::new();
        let mut c = ctx(0, 0);
        c.cpl = 0;
        c.cr3 = KERNEL_CR3 | 0x1;
        c.rflags = RFLAGS_IF | RFLAGS_AC;
        assert_eq!(
            m.on_entry(&mut slot, &c),
            EntryDecision::Inject(PageFault {
                cr2: GVA,
                error_code: PF_ERROR_WRITE
            })
        );
        // Without SMAP a user address is refused, AC set or not: there is
        // no telling a uaccess from other kernel code (rule 1).
        for rflags in [RFLAGS_IF, RFLAGS_IF | RFLAGS_AC] {
            let mut m = armed(false, true);
            let mut slot = VcpuSlot::new();
            c.rflags = rflags;
            c.cr4_smap = false;
            assert_eq!(m.on_entry(&mut slot, &c), EntryDecision::Wait(WaitReason::NoSmap));
            assert_eq!(slot.in_flight(), None);
            assert_eq!(m.stats().injections, 0);
        }
    }

    /// A CPL-0 entry of a kernel-mode target on a user address, inside a
    /// uaccess region (SMAP and AC set): every kernel-mode rule holds.
    fn kernel_uaccess_ctx() -> EntryContext {
        let mut c = ctx(0, 0);
        c.cpl = 0;
        c.cr3 = KERNEL_CR3 | 0x1;
        c.rflags = RFLAGS_IF | RFLAGS_AC;
        c
    }

    /// One kernel-mode rule: `broken` is refused with `reason` and leaves
    /// the machine as it was; the same entry with the rule satisfied
    /// (`kernel_uaccess_ctx`) injects a kernel-mode fault.
    fn kernel_rule(gva: u64, broken: EntryContext, reason: WaitReason) {
        let mut t = target(false, true);
        t.gva = gva;
        let mut m = Injection::new(t, InjectConfig::default());
        m.on_walk(&swap_walk());
        let mut slot = VcpuSlot::new();
        assert_eq!(m.mode_check(&broken), Err(reason));
        assert_eq!(m.on_entry(&mut slot, &broken), EntryDecision::Wait(reason));
        assert_eq!(m.state(), State::WaitingForContext);
        assert_eq!(slot.in_flight(), None);
        assert_eq!(m.stats().injections, 0);
        let good = kernel_uaccess_ctx();
        assert_eq!(m.mode_check(&good), Ok(false));
        assert_eq!(
            m.on_entry(&mut slot, &good),
            EntryDecision::Inject(PageFault { cr2: gva, error_code: 0 })
        );
    }

    #[test]
    fn kernel_mode_user_address_needs_smap() {
        let mut c = kernel_uaccess_ctx();
        c.cr4_smap = false;
        kernel_rule(GVA, c, WaitReason::NoSmap);
        // SMAP set but AC clear: a kernel access outside uaccess.
        let mut c = kernel_uaccess_ctx();
        c.rflags = RFLAGS_IF;
        kernel_rule(GVA, c, WaitReason::SmapUserAccess);
        // A kernel-half address needs neither.
        let mut t = target(false, true);
        t.gva = 0xffff_c900_0000_0000;
        let m = Injection::new(t, InjectConfig::default());
        let mut c = kernel_uaccess_ctx();
        c.cr4_smap = false;
        c.rflags = RFLAGS_IF;
        assert_eq!(m.mode_check(&c), Ok(false));
    }

    #[test]
    fn kernel_mode_refused_under_fred() {
        for gva in [GVA, 0xffff_c900_0000_0000] {
            let mut c = kernel_uaccess_ctx();
            c.cr4_fred = true;
            kernel_rule(gva, c, WaitReason::Fred);
        }
        // User mode is not concerned.
        let mut m = armed(false, true);
        let mut c = ctx(0, 0);
        c.cr4_fred = true;
        assert!(matches!(m.on_entry(&mut VcpuSlot::new(), &c), EntryDecision::Inject(_)));
    }

    #[test]
    fn kernel_mode_refused_under_guest_debug() {
        for gva in [GVA, 0xffff_c900_0000_0000] {
            let mut c = kernel_uaccess_ctx();
            c.guest_debug = true;
            kernel_rule(gva, c, WaitReason::GuestDebug);
        }
        // User mode is not concerned.
        let mut m = armed(false, true);
        let mut c = ctx(0, 0);
        c.guest_debug = true;
        assert!(matches!(m.on_entry(&mut VcpuSlot::new(), &c), EntryDecision::Inject(_)));
    }

    #[test]
    fn kernel_mode_rule_order() {
        // FRED, then guest debugging, then IF, then SMAP, then AC: the
        // first broken rule is the reason given.
        let m = armed(false, true);
        let mut c = kernel_uaccess_ctx();
        c.cr4_fred = true;
        c.guest_debug = true;
        c.cr4_smap = false;
        c.rflags = 0x2;
        assert_eq!(m.mode_check(&c), Err(WaitReason::Fred));
        c.cr4_fred = false;
        assert_eq!(m.mode_check(&c), Err(WaitReason::GuestDebug));
        c.guest_debug = false;
        assert_eq!(m.mode_check(&c), Err(WaitReason::InterruptsDisabled));
        c.rflags = RFLAGS_IF;
        assert_eq!(m.mode_check(&c), Err(WaitReason::NoSmap));
        c.cr4_smap = true;
        assert_eq!(m.mode_check(&c), Err(WaitReason::SmapUserAccess));
        c.rflags |= RFLAGS_AC;
        assert_eq!(m.mode_check(&c), Ok(false));
        // Without allow_kernel_mode none of them is reached.
        let m = armed(false, false);
        c.cr4_fred = true;
        assert_eq!(m.mode_check(&c), Err(WaitReason::PrivilegeLevel));
    }

    #[test]
    fn kernel_refusals_count_three_reasons() {
        let mut k = KernelRefusals::default();
        assert!(k.count(WaitReason::NoSmap));
        assert!(k.count(WaitReason::NoSmap));
        assert!(k.count(WaitReason::Fred));
        assert!(k.count(WaitReason::GuestDebug));
        for other in [
            WaitReason::SmapUserAccess,
            WaitReason::InterruptsDisabled,
            WaitReason::PrivilegeLevel,
            WaitReason::VcpuBusy,
        ] {
            assert!(!k.count(other));
        }
        assert_eq!(
            k,
            KernelRefusals {
                no_smap: 2,
                fred: 1,
                guest_debug: 1
            }
        );
        k.fred = u64::MAX;
        k.count(WaitReason::Fred);
        assert_eq!(k.fred, u64::MAX);
    }

    #[test]
    fn kernel_half_target_needs_kernel_mode() {
        let mut t = target(false, true);
        t.gva = 0xffff_c900_0000_0000;
        let mut m = Injection::new(t, InjectConfig::default());
        m.on_walk(&swap_walk());
        let mut slot = VcpuSlot::new();
        // CPL 3: the guest would SIGSEGV.
        assert_eq!(
            m.on_entry(&mut slot, &ctx(0, 0)),
            EntryDecision::Wait(WaitReason::PrivilegeLevel)
        );
        // CPL 0 with IF: no SMAP concern for a kernel address.
        let mut c = ctx(0, 0);
        c.cpl = 0;
        c.rflags = RFLAGS_IF;
        assert_eq!(
            m.on_entry(&mut slot, &c),
            EntryDecision::Inject(PageFault {
                cr2: 0xffff_c900_0000_0000,
                error_code: 0
            })
        );
    }

    // ---- every wait reason ----

    #[test]
    fn each_wait_reason() {
        type Tweak = fn(&mut EntryContext);
        let cases: [(Tweak, WaitReason); 12] = [
            (|c| c.smm = true, WaitReason::SystemManagementMode),
            (|c| c.guest_mode = true, WaitReason::NestedGuest),
            (|c| c.cr3 = 0x0000_0001_2345_8000, WaitReason::OtherAddressSpace),
            (|c| c.event_inj_valid = true, WaitReason::EventInjection),
            (|c| c.exception_pending = true, WaitReason::ExceptionPending),
            (|c| c.nmi_pending = true, WaitReason::NmiPending),
            (|c| c.interrupt_pending = true, WaitReason::InterruptPending),
            (|c| c.interrupt_shadow = true, WaitReason::InterruptShadow),
            (|c| c.cpl = 0, WaitReason::PrivilegeLevel),
            (|c| c.cpl = 1, WaitReason::PrivilegeLevel),
            (|c| c.cpl = 2, WaitReason::PrivilegeLevel),
            (|c| c.cpl = 7, WaitReason::PrivilegeLevel),
        ];
        for (tweak, reason) in cases {
            let mut m = armed(false, false);
            let mut slot = VcpuSlot::new();
            let mut c = ctx(0, 0);
            tweak(&mut c);
            assert_eq!(m.on_entry(&mut slot, &c), EntryDecision::Wait(reason));
            assert_eq!(m.state(), State::WaitingForContext);
            assert_eq!(slot.in_flight(), None);
            assert_eq!(m.stats().injections, 0);
            // And the next clean entry injects.
            assert!(matches!(m.on_entry(&mut slot, &ctx(0, 1)), EntryDecision::Inject(_)));
        }
    }

    #[test]
    fn kernel_mode_wait_reasons() {
        let mut m = armed(false, true);
        let mut slot = VcpuSlot::new();
        let mut c = ctx(0, 0);
        c.cpl = 0;
        c.rflags = 0x2;
        assert_eq!(
            m.on_entry(&mut slot, &c),
            EntryDecision::Wait(WaitReason::InterruptsDisabled)
        );
        c.rflags = RFLAGS_IF;
        assert_eq!(
            m.on_entry(&mut slot, &c),
            EntryDecision::Wait(WaitReason::SmapUserAccess)
        );
        // CPL 1 and 2 never, even when kernel mode is allowed.
        c.rflags = RFLAGS_IF | RFLAGS_AC;
        for cpl in [1, 2] {
            c.cpl = cpl;
            assert_eq!(
                m.on_entry(&mut slot, &c),
                EntryDecision::Wait(WaitReason::PrivilegeLevel)
            );
        }
        assert_eq!(m.stats().injections, 0);
    }

    #[test]
    fn walk_pending_until_a_swap_walk() {
        let mut m = Injection::new(target(false, false), InjectConfig::default());
        let mut slot = VcpuSlot::new();
        assert!(!m.is_armed());
        assert_eq!(
            m.on_entry(&mut slot, &ctx(0, 0)),
            EntryDecision::Wait(WaitReason::WalkPending)
        );
        m.on_walk(&swap_walk());
        // A table write disarms until the next walk.
        assert_eq!(m.on_page_table_write(), Action::Rewalk);
        assert_eq!(
            m.on_entry(&mut slot, &ctx(0, 0)),
            EntryDecision::Wait(WaitReason::WalkPending)
        );
        m.on_walk(&swap_walk());
        assert!(matches!(m.on_entry(&mut slot, &ctx(0, 0)), EntryDecision::Inject(_)));
    }

    #[test]
    fn vcpu_busy_with_another_targets_fault() {
        let mut a = armed(false, false);
        let mut b = {
            let mut t = target(false, false);
            t.id = TargetId(8);
            t.gva = GVA + 0x1000;
            let mut m = Injection::new(t, InjectConfig::default());
            m.on_walk(&swap_walk());
            m
        };
        let mut slot0 = VcpuSlot::new();
        let mut slot1 = VcpuSlot::new();
        assert!(matches!(a.on_entry(&mut slot0, &ctx(0, 0)), EntryDecision::Inject(_)));
        assert_eq!(
            b.on_entry(&mut slot0, &ctx(0, 0)),
            EntryDecision::Wait(WaitReason::VcpuBusy)
        );
        // Another vCPU is free.
        assert!(matches!(b.on_entry(&mut slot1, &ctx(1, 0)), EntryDecision::Inject(_)));
        // Once delivered on vCPU 0, its slot is free again.
        let d = slot0.on_exit(&delivered(5)).unwrap();
        assert_eq!(d.target, TargetId(7));
        assert_eq!(b.on_delivery(&d), Action::None); // not b's fault
        assert!(matches!(b.state(), State::Injected { vcpu: 1, .. }));
        assert_eq!(a.on_delivery(&d), Action::None);
        assert!(matches!(a.state(), State::AwaitingUpdate { .. }));
        assert_eq!(slot0.in_flight(), None);
        assert_eq!(slot0.on_exit(&delivered(6)), None);
    }

    // ---- delivery ----

    #[test]
    fn interrupted_delivery_is_counted_not_reinjected() {
        let mut m = armed(false, false);
        let mut slot = inject(&mut m, 10);
        for i in 0..3 {
            let d = slot.on_exit(&ExitDelivery {
                now_ns: 20 + i,
                exit_int_info: INTERRUPTED_PF,
            });
            let d = d.unwrap();
            assert!(d.interrupted);
            assert_eq!(slot.in_flight(), Some(TargetId(7)));
            assert_eq!(m.on_delivery(&d), Action::None);
            assert_eq!(m.state(), State::Injected { vcpu: 0, at_ns: 10 });
            // KVM re-injects on the next entry; we stay idle and count it.
            assert_eq!(m.on_entry(&mut slot, &ctx(0, 30)), EntryDecision::Idle);
            // Entries of other vCPUs are not counted.
            assert_eq!(m.on_entry(&mut VcpuSlot::new(), &ctx(1, 30)), EntryDecision::Idle);
        }
        assert_eq!(m.stats().reinjections, 3);
        assert_eq!(m.stats().injections, 1);
        let d = slot.on_exit(&delivered(40)).unwrap();
        assert_eq!(m.on_delivery(&d), Action::None);
        assert_eq!(m.stats().deliveries, 1);
        // The injecting entry + three re-injecting entries.
        assert_eq!(m.stats().entries_to_delivery, Some(4));
    }

    #[test]
    fn exit_int_info_decoding() {
        assert!(is_interrupted_page_fault(INTERRUPTED_PF));
        assert!(is_interrupted_page_fault(EXIT_INT_INFO_VALID | (3 << 8) | 14));
        // Not valid.
        assert!(!is_interrupted_page_fault((3 << 8) | 14));
        // Another vector (#GP), or vector 14 as a software interrupt (INT 14)
        // or external interrupt.
        assert!(!is_interrupted_page_fault(EXIT_INT_INFO_VALID | (3 << 8) | 13));
        assert!(!is_interrupted_page_fault(EXIT_INT_INFO_VALID | (4 << 8) | 14));
        assert!(!is_interrupted_page_fault(EXIT_INT_INFO_VALID | 14));
        assert!(!is_interrupted_page_fault(0));
        // An interrupted event that is not ours means ours was delivered.
        let mut m = armed(false, false);
        let mut slot = inject(&mut m, 0);
        let d = slot
            .on_exit(&ExitDelivery {
                now_ns: 1,
                exit_int_info: EXIT_INT_INFO_VALID | (4 << 8) | 0x80,
            })
            .unwrap();
        assert!(!d.interrupted);
        m.on_delivery(&d);
        assert!(matches!(m.state(), State::AwaitingUpdate { .. }));
    }

    #[test]
    fn entries_between_context_and_delivery() {
        let mut m = armed(false, false);
        let mut slot = VcpuSlot::new();
        // Entries outside the context do not count.
        let mut other = ctx(0, 0);
        other.cr3 = 0x5000;
        m.on_entry(&mut slot, &other);
        let mut nested = ctx(0, 0);
        nested.guest_mode = true;
        m.on_entry(&mut slot, &nested);
        assert_eq!(m.stats().entries_in_context, 0);
        // Two entries in context that must wait, then the injecting one.
        let mut busy = ctx(0, 0);
        busy.interrupt_shadow = true;
        m.on_entry(&mut slot, &busy);
        let mut busy1 = ctx(1, 0);
        busy1.event_inj_valid = true;
        m.on_entry(&mut VcpuSlot::new(), &busy1);
        assert!(matches!(m.on_entry(&mut slot, &ctx(0, 0)), EntryDecision::Inject(_)));
        let d = slot.on_exit(&delivered(1)).unwrap();
        m.on_delivery(&d);
        assert_eq!(m.stats().entries_to_delivery, Some(3));
    }

    #[test]
    fn stale_and_foreign_deliveries_are_ignored() {
        let mut m = armed(false, false);
        let foreign = Delivery {
            target: TargetId(99),
            vcpu: 0,
            now_ns: 0,
            interrupted: false,
        };
        // While waiting: nothing in flight.
        assert_eq!(m.on_delivery(&foreign), Action::None);
        assert_eq!(m.state(), State::WaitingForContext);
        let _slot = inject(&mut m, 0);
        // Wrong target, wrong vCPU.
        assert_eq!(m.on_delivery(&foreign), Action::None);
        let wrong_vcpu = Delivery {
            target: TargetId(7),
            vcpu: 5,
            ..foreign
        };
        assert_eq!(m.on_delivery(&wrong_vcpu), Action::None);
        assert_eq!(m.state(), State::Injected { vcpu: 0, at_ns: 0 });
        assert_eq!(m.stats().deliveries, 0);
    }

    // ---- timeouts and tries ----

    #[test]
    fn config_limits() {
        assert_eq!(InjectConfig::checked(1000, 3), Some(InjectConfig::default_config()));
        assert!(InjectConfig::checked(MAX_TIMEOUT_MS, MAX_TRIES).is_some());
        assert!(InjectConfig::checked(1, 1).is_some());
        for (t, n) in [(0, 3), (MAX_TIMEOUT_MS + 1, 3), (1000, 0), (1000, MAX_TRIES + 1)] {
            assert_eq!(InjectConfig::checked(t, n), None, "{t} {n}");
        }
    }

    #[test]
    fn timeout_rearms_then_fails_after_max_tries() {
        let config = InjectConfig {
            timeout_ns: 1000,
            max_tries: 2,
        };
        let mut m = Injection::new(target(false, false), config);
        m.on_walk(&swap_walk());
        let mut slot = VcpuSlot::new();
        assert_eq!(m.on_tick(1_000_000), Action::None); // waiting: no timeout
        assert!(matches!(m.on_entry(&mut slot, &ctx(0, 100)), EntryDecision::Inject(_)));
        let d = slot.on_exit(&delivered(150)).unwrap();
        m.on_delivery(&d);
        assert_eq!(m.on_tick(1099), Action::None);
        assert!(matches!(m.state(), State::AwaitingUpdate { .. }));
        // Timeout: back to waiting, disarmed, entry count reset.
        assert_eq!(m.on_tick(1100), Action::Rewalk);
        assert_eq!(m.state(), State::WaitingForContext);
        assert!(!m.is_armed());
        assert_eq!(m.stats().entries_in_context, 0);
        assert_eq!(
            m.on_entry(&mut slot, &ctx(0, 1200)),
            EntryDecision::Wait(WaitReason::WalkPending)
        );
        m.on_walk(&swap_walk());
        assert!(matches!(m.on_entry(&mut slot, &ctx(0, 1300)), EntryDecision::Inject(_)));
        assert_eq!(m.stats().injections, 2);
        // Timeout while still Injected (no delivery heard): no tries left.
        assert_eq!(m.on_tick(2299), Action::None);
        assert_eq!(m.on_tick(2300), Action::Settled);
        assert_eq!(m.state(), State::Failed(FailReason::Timeout { tries: 2 }));
        // The slot is still busy until the vCPU's exit, whatever the target.
        assert_eq!(slot.in_flight(), Some(TargetId(7)));
        let d = slot.on_exit(&delivered(2400)).unwrap();
        assert_eq!(m.on_delivery(&d), Action::None);
        assert_eq!(slot.in_flight(), None);
        assert_eq!(m.state(), State::Failed(FailReason::Timeout { tries: 2 }));
    }

    #[test]
    fn timeout_from_injected_rearms() {
        let mut m = armed(false, false);
        let _slot = inject(&mut m, 0);
        assert_eq!(m.on_tick(SEC - 1), Action::None);
        assert_eq!(m.on_tick(SEC), Action::Rewalk);
        assert_eq!(m.state(), State::WaitingForContext);
    }

    #[test]
    fn clock_going_backwards_does_not_time_out() {
        let mut m = armed(false, false);
        let _slot = inject(&mut m, 5 * SEC);
        assert_eq!(m.on_tick(0), Action::None);
        assert!(matches!(m.state(), State::Injected { .. }));
    }

    #[test]
    fn default_config() {
        assert_eq!(
            InjectConfig::default(),
            InjectConfig {
                timeout_ns: SEC,
                max_tries: 3
            }
        );
        let mut m = armed(false, false);
        for t in 0..3u64 {
            let mut slot = inject(&mut m, t * 10 * SEC);
            m.on_delivery(&slot.on_exit(&delivered(t * 10 * SEC + 1)).unwrap());
            let action = m.on_tick(t * 10 * SEC + SEC);
            if t < 2 {
                assert_eq!(action, Action::Rewalk);
                m.on_walk(&swap_walk());
            } else {
                assert_eq!(action, Action::Settled);
            }
        }
        assert_eq!(m.state(), State::Failed(FailReason::Timeout { tries: 3 }));
    }

    // ---- walk results ----

    #[test]
    fn resident_walk_settles_from_every_live_state() {
        // Waiting: the page came back by itself.
        let mut m = armed(false, false);
        assert_eq!(m.on_walk(&resident_walk()), Action::Settled);
        assert!(matches!(m.state(), State::Resident { accessible: true, .. }));
        // Injected, delivery not yet confirmed.
        let mut m = armed(false, false);
        let mut slot = inject(&mut m, 0);
        assert_eq!(m.on_walk(&resident_walk()), Action::Settled);
        assert!(matches!(m.state(), State::Resident { .. }));
        // The late delivery still frees the slot and does not disturb it.
        let d = slot.on_exit(&delivered(1)).unwrap();
        assert_eq!(m.on_delivery(&d), Action::None);
        assert_eq!(slot.in_flight(), None);
        assert!(matches!(m.state(), State::Resident { .. }));
    }

    #[test]
    fn prot_none_counts_as_resident() {
        let mut m = armed(false, false);
        let walk = WalkOutcome::NotPresent {
            level: Level::Pt,
            entry: 0,
            entry_gpa: 0,
            kind: NotPresentKind::Resident {
                why: Inaccessible::ProtNone,
                frame_gpa: 0x7000,
            },
        };
        assert_eq!(m.on_walk(&walk), Action::Settled);
        assert_eq!(
            m.state(),
            State::Resident {
                page_base_gpa: 0x7000,
                accessible: false
            }
        );
    }

    #[test]
    fn migration_disarms_without_failing() {
        for kind in [
            SoftLeafKind::MigrationRead,
            SoftLeafKind::MigrationReadExclusive,
            SoftLeafKind::MigrationWrite,
        ] {
            let mut m = armed(false, false);
            assert_eq!(m.on_walk(&leaf_walk(kind)), Action::None);
            assert!(!m.is_armed());
            assert_eq!(m.state(), State::WaitingForContext);
        }
    }

    #[test]
    fn non_swap_entries_fail() {
        for kind in [
            SoftLeafKind::HwPoison,
            SoftLeafKind::Marker,
            SoftLeafKind::DevicePrivateRead,
            SoftLeafKind::DevicePrivateWrite,
            SoftLeafKind::DeviceExclusive,
            SoftLeafKind::Unknown,
        ] {
            let mut m = armed(false, false);
            let walk = leaf_walk(kind);
            assert_eq!(m.on_walk(&walk), Action::Settled);
            let WalkOutcome::NotPresent { kind: k, .. } = walk else {
                unreachable!()
            };
            assert_eq!(m.state(), State::Failed(FailReason::NotSwapEntry(k)));
        }
        let mut m = armed(false, false);
        let unrecognised = WalkOutcome::NotPresent {
            level: Level::Pml4,
            entry: 2,
            entry_gpa: 0,
            kind: NotPresentKind::Unrecognised,
        };
        assert_eq!(m.on_walk(&unrecognised), Action::Settled);
        assert_eq!(
            m.state(),
            State::Failed(FailReason::NotSwapEntry(NotPresentKind::Unrecognised))
        );
    }

    #[test]
    fn unmapped_fails() {
        let mut m = armed(false, false);
        let _slot = inject(&mut m, 0);
        let walk = WalkOutcome::NotPresent {
            level: Level::Pd,
            entry: 0,
            entry_gpa: 0,
            kind: NotPresentKind::Empty,
        };
        assert_eq!(m.on_walk(&walk), Action::Settled);
        assert_eq!(m.state(), State::Failed(FailReason::Unmapped));
    }

    #[test]
    fn empty_entry_arms_where_it_may_fault() {
        let empty = WalkOutcome::NotPresent {
            level: Level::Pt,
            entry: 0,
            entry_gpa: 0x5000,
            kind: NotPresentKind::Empty,
        };
        let mut t = target(false, false);
        t.empty_may_fault = true;
        let mut m = Injection::new(t, InjectConfig::default());
        // Waiting: armed like a swap entry, nothing settles.
        assert_eq!(m.on_walk(&empty), Action::None);
        assert_eq!(m.state(), State::WaitingForContext);
        assert!(m.is_armed());
        // Injected and still empty: the guest has not mapped it yet.
        let _slot = inject(&mut m, 0);
        assert_eq!(m.on_walk(&empty), Action::None);
        assert!(m.state().is_live());
        // Then mapped: resident.
        assert_eq!(m.on_walk(&resident_walk()), Action::Settled);
        assert!(matches!(m.state(), State::Resident { .. }));
    }

    #[test]
    fn invalid_walks() {
        for invalid in [
            Invalid::NonCanonical,
            Invalid::ReservedBits {
                level: Level::Pd,
                entry: 1 << 51,
            },
            Invalid::OutsideGuestMemory {
                level: Level::Pt,
                gpa: 1 << 45,
            },
        ] {
            let mut m = armed(false, false);
            assert_eq!(m.on_walk(&WalkOutcome::Invalid(invalid)), Action::Settled);
            assert_eq!(m.state(), State::Failed(FailReason::GuestMemoryInvalid(invalid)));
        }
        // A walk that could not read: disarmed, so no fault goes on the
        // strength of the walk before it.
        let mut m = armed(false, false);
        assert!(m.is_armed());
        let retry = WalkOutcome::Invalid(Invalid::RetryLater {
            level: Level::Pt,
            gpa: 0,
        });
        assert_eq!(m.on_walk(&retry), Action::RewalkLater);
        assert_eq!(m.state(), State::WaitingForContext);
        assert!(!m.is_armed());
    }

    // ---- cancel, address space gone, finish ----

    fn in_each_state() -> [Injection; 7] {
        let waiting = armed(false, false);
        let mut injected = armed(false, false);
        let mut slot = inject(&mut injected, 0);
        let mut awaiting = injected;
        awaiting.on_delivery(&slot.on_exit(&delivered(1)).unwrap());
        let mut resident = armed(false, false);
        resident.on_walk(&resident_walk());
        let mut done = resident;
        done.finish();
        let mut cancelled = armed(false, false);
        cancelled.cancel(CancelReason::Detached);
        let mut failed = armed(false, false);
        failed.address_space_gone();
        [waiting, injected, awaiting, resident, done, cancelled, failed]
    }

    #[test]
    fn cancel_in_each_state() {
        let expected = [
            State::Cancelled(CancelReason::Requested),
            State::Cancelled(CancelReason::Requested),
            State::Cancelled(CancelReason::Requested),
            State::Resident {
                page_base_gpa: 0x9000,
                accessible: true,
            },
            State::Done,
            State::Cancelled(CancelReason::Detached),
            State::Failed(FailReason::AddressSpaceGone),
        ];
        for (mut m, want) in in_each_state().into_iter().zip(expected) {
            let was_live = m.state().is_live();
            let action = m.cancel(CancelReason::Requested);
            assert_eq!(action, if was_live { Action::Settled } else { Action::None });
            assert_eq!(m.state(), want);
            assert!(!m.is_armed());
            assert!(!m.state().is_live());
        }
    }

    #[test]
    fn address_space_gone_in_each_state() {
        for mut m in in_each_state() {
            let before = m.state();
            let action = m.address_space_gone();
            if before.is_live() {
                assert_eq!(action, Action::Settled);
                assert_eq!(m.state(), State::Failed(FailReason::AddressSpaceGone));
            } else {
                assert_eq!(action, Action::None);
                assert_eq!(m.state(), before);
            }
        }
    }

    #[test]
    fn vma_refusal_only_while_waiting_for_context() {
        for reason in [FailReason::NoVma, FailReason::VmaDenies] {
            for mut m in in_each_state() {
                let before = m.state();
                let action = m.vma_refuses(reason);
                if before == State::WaitingForContext {
                    assert_eq!(action, Action::Settled);
                    assert_eq!(m.state(), State::Failed(reason));
                    assert!(!m.is_armed());
                } else {
                    // A fault in flight or a settled page is not undone.
                    assert_eq!(action, Action::None);
                    assert_eq!(m.state(), before);
                }
            }
        }
    }

    #[test]
    fn resident_lost_only_from_resident_or_done() {
        for mut m in in_each_state() {
            let before = m.state();
            let was_resident = matches!(before, State::Resident { .. } | State::Done);
            let action = m.resident_lost();
            if was_resident {
                assert_eq!(action, Action::Rewalk);
                assert_eq!(m.state(), State::WaitingForContext);
                assert!(!m.is_armed());
            } else {
                assert_eq!(action, Action::None);
                assert_eq!(m.state(), before);
            }
        }
    }

    #[test]
    fn resident_lost_then_fresh_walk_settles_or_waits() {
        // Swapped out again: armed for a new fault, counters kept.
        let mut m = armed(false, false);
        let mut slot = inject(&mut m, 0);
        m.on_delivery(&slot.on_exit(&delivered(1)).unwrap());
        m.on_walk(&resident_walk());
        let injections = m.stats().injections;
        m.resident_lost();
        assert_eq!(m.on_walk(&swap_walk()), Action::None);
        assert_eq!(m.state(), State::WaitingForContext);
        assert!(m.is_armed());
        assert_eq!(m.stats().injections, injections);
        // Unmapped meanwhile (the process exited): fails.
        m.on_walk(&resident_walk());
        m.resident_lost();
        let empty = WalkOutcome::NotPresent {
            level: Level::Pt,
            entry: 0,
            entry_gpa: 0x5008,
            kind: NotPresentKind::Empty,
        };
        assert_eq!(m.on_walk(&empty), Action::Settled);
        assert_eq!(m.state(), State::Failed(FailReason::Unmapped));
    }

    #[test]
    fn finish_only_from_resident() {
        for mut m in in_each_state() {
            let before = m.state();
            let is_resident = matches!(before, State::Resident { .. });
            assert_eq!(m.finish(), is_resident);
            assert_eq!(m.state(), if is_resident { State::Done } else { before });
        }
    }

    #[test]
    fn cancelled_in_flight_fault_still_frees_its_slot() {
        let mut m = armed(false, false);
        let mut slot = inject(&mut m, 0);
        assert_eq!(m.cancel(CancelReason::Requested), Action::Settled);
        // KVM still re-injects an interrupted delivery: the slot stays busy.
        let d = slot
            .on_exit(&ExitDelivery {
                now_ns: 1,
                exit_int_info: INTERRUPTED_PF,
            })
            .unwrap();
        assert!(d.interrupted);
        assert_eq!(slot.in_flight(), Some(TargetId(7)));
        // The caller may have dropped the target; the slot frees itself.
        assert!(!slot.on_exit(&delivered(2)).unwrap().interrupted);
        assert_eq!(slot.in_flight(), None);
        assert_eq!(m.on_delivery(&d), Action::None);
        assert_eq!(m.state(), State::Cancelled(CancelReason::Requested));
    }

    #[test]
    fn idle_in_non_waiting_states() {
        for mut m in in_each_state() {
            if m.state() == State::WaitingForContext {
                continue;
            }
            let mut slot = VcpuSlot::new();
            assert_eq!(m.on_entry(&mut slot, &ctx(3, 0)), EntryDecision::Idle);
            assert_eq!(slot, VcpuSlot::default());
        }
    }

    #[test]
    fn table_writes_in_each_state() {
        for mut m in in_each_state() {
            let live = m.state().is_live();
            assert_eq!(
                m.on_page_table_write(),
                if live { Action::Rewalk } else { Action::None }
            );
            assert!(!m.is_armed());
        }
    }

    #[test]
    fn ticks_in_each_state() {
        for mut m in in_each_state() {
            let before = m.state();
            let action = m.on_tick(10 * SEC);
            match before {
                State::Injected { .. } | State::AwaitingUpdate { .. } => {
                    assert_eq!(action, Action::Rewalk);
                    assert_eq!(m.state(), State::WaitingForContext);
                }
                _ => {
                    assert_eq!(action, Action::None);
                    assert_eq!(m.state(), before);
                }
            }
        }
    }

    #[test]
    fn counters_saturate() {
        let mut m = armed(false, false);
        m.stats.entries_in_context = u32::MAX;
        let mut c = ctx(0, 0);
        c.interrupt_shadow = true;
        m.on_entry(&mut VcpuSlot::new(), &c);
        assert_eq!(m.stats().entries_in_context, u32::MAX);
        m.stats.injections = u32::MAX;
        let mut slot = VcpuSlot::new();
        m.on_entry(&mut slot, &ctx(0, 0));
        assert_eq!(m.stats().injections, u32::MAX);
    }
}
