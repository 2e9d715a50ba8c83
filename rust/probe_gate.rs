// SPDX-License-Identifier: GPL-2.0

//! What a VM's probes know of its targets without taking the VM's targets
//! lock, so that an entry or exit with nothing to do for them costs a few
//! loads whatever the number of targets and pages:
//!
//! * the address spaces that may have a page to inject, looked up by the
//!   entering vCPU's CR3 (`pfi_core::ready_spaces`), read in a seqcount: a
//!   read that overlaps a rewrite answers "maybe", and the probe takes the
//!   locked path, which decides per page;
//! * per vCPU, whether a fault it was given is in flight (its entries
//!   inject nothing else), and whether it follows pages it injected
//!   (`targets/owned.rs`): only then has its exit target work;
//! * whether the VM has any page that needs probe work at all, the first
//!   check of every probe.
//!
//! Nothing else comes to an exit: timeouts of pages whose vCPU does not
//! exit, periodic re-walks and first walks are the sweep's and the report
//! work's (`sweep.rs`, `report.rs`).
//!
//! Every writer holds the VM's targets lock (the gate belongs to one
//! `Targets`), so writes never race each other; probes only read, except
//! that the locked probe paths are writers too.

use kernel::prelude::*;
use kernel::sync::atomic::{
    Acquire,
    Atomic,
    Relaxed,
    Release, //
};
use kernel::sync::barrier::{
    smp_mb,
    Read,
    Write, //
};
use kernel::sync::Arc;

use crate::bindings::uapi;
use crate::pfi_core::ready_spaces::{
    self,
    Words,
    SLOTS, //
};
use crate::pfi_core::walk::AddressSpace;

const MAX_VCPUS: usize = uapi::KVM_PFI_MAX_VCPUS as usize;

/// See the module documentation.
pub(crate) struct ProbeGate {
    /// Odd while the set is being rewritten.
    seq: Atomic<u32>,
    spaces: [Atomic<u64>; SLOTS],
    in_flight: [Atomic<bool>; MAX_VCPUS],
    owns: [Atomic<bool>; MAX_VCPUS],
    busy: Atomic<bool>,
}

/// The set's words as `ready_spaces` sees them.
struct AtomicWords<'a>(&'a [Atomic<u64>; SLOTS]);

impl Words for AtomicWords<'_> {
    fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |w| w.load(Relaxed))
    }
    fn set(&mut self, i: usize, v: u64) {
        if let Some(w) = self.0.get(i) {
            w.store(v, Relaxed);
        }
    }
}

impl ProbeGate {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(
            ProbeGate {
                seq: Atomic::new(0),
                spaces: [const { Atomic::new(0) }; SLOTS],
                in_flight: [const { Atomic::new(false) }; MAX_VCPUS],
                owns: [const { Atomic::new(false) }; MAX_VCPUS],
                busy: Atomic::new(false),
            },
            GFP_KERNEL,
        )?)
    }

    /// Rewrites the set under the seqcount (a writer: the targets lock is
    /// held).
    fn write(&self, f: impl FnOnce(&mut AtomicWords<'_>)) {
        let s = self.seq.load(Relaxed);
        self.seq.store(s.wrapping_add(1), Relaxed);
        smp_mb(Write);
        f(&mut AtomicWords(&self.spaces));
        self.seq.store(s.wrapping_add(2), Release);
    }

    /// Adds an address space whose targets take faults at CPL 3 and, with
    /// `kernel_mode`, at CPL 0. A writer.
    pub(crate) fn add_space(&self, (space, kernel_mode): (AddressSpace, bool)) {
        self.write(|w| {
            // Cannot fail: `SLOTS` is twice `KVM_PFI_MAX_TARGETS`.
            let _ = ready_spaces::add(w, space, kernel_mode);
        });
    }

    /// Refills the set with `spaces`. A writer.
    pub(crate) fn set_spaces(&self, spaces: impl Iterator<Item = (AddressSpace, bool)>) {
        self.write(|w| {
            let _ = ready_spaces::rebuild(w, spaces);
        });
    }

    /// Whether an entry with `cr3` at CPL 0 (`kernel_mode`) or 3 may have a
    /// page to inject: `false` only for a consistent read of the set that
    /// has no such space. A probe.
    #[inline]
    pub(crate) fn may_inject(&self, cr3: u64, kernel_mode: bool) -> bool {
        let s = self.seq.load(Acquire);
        if s & 1 != 0 {
            return true;
        }
        let found = ready_spaces::may_inject(&AtomicWords(&self.spaces), cr3, kernel_mode);
        smp_mb(Read);
        found || self.seq.load(Relaxed) != s
    }

    /// Whether `vcpu` has a fault in flight.
    #[inline]
    pub(crate) fn in_flight(&self, vcpu: usize) -> bool {
        self.in_flight.get(vcpu).is_some_and(|f| f.load(Relaxed))
    }

    /// Records whether `vcpu` has a fault in flight. A writer.
    pub(crate) fn set_in_flight(&self, vcpu: usize, yes: bool) {
        if let Some(f) = self.in_flight.get(vcpu) {
            f.store(yes, Relaxed);
        }
    }

    /// Records whether `vcpu` follows pages it injected. A writer.
    pub(crate) fn set_owns(&self, vcpu: usize, yes: bool) {
        if let Some(f) = self.owns.get(vcpu) {
            f.store(yes, Relaxed);
        }
    }

    /// Whether an exit of `vcpu` has target work: a delivery to follow, or
    /// pages it injected to see resolved.
    #[inline]
    pub(crate) fn exit_has_work(&self, vcpu: usize) -> bool {
        self.in_flight(vcpu) || self.owns.get(vcpu).is_some_and(|f| f.load(Relaxed))
    }

    /// Whether some page of the VM needs probe work (a walk, a fault, a
    /// delivery): probes of a VM with none return at once.
    #[inline]
    pub(crate) fn busy(&self) -> bool {
        self.busy.load(Relaxed)
    }

    /// Sets it. A writer; only process context clears it (an exact answer
    /// is O(pages)).
    pub(crate) fn set_busy(&self, yes: bool) {
        self.busy.store(yes, Relaxed);
    }
}
