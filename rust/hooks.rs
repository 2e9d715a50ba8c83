// SPDX-License-Identifier: GPL-2.0

//! Probes on KVM's exported `kvm_entry` and `kvm_exit` tracepoints.
//!
//! `kvm_entry` fires in the vCPU thread right before VMRUN/VMLAUNCH, after
//! KVM has chosen the event to inject on this entry; `kvm_exit` fires right
//! after the exit, before KVM handles it. Both run with interrupts off, on
//! every vCPU of every VM on the host: the probes allocate nothing, return
//! after one load when no VM is attached, and take the VM's targets lock
//! only when the lock-free gate (`probe_gate.rs`) says there is work.

use core::ffi::c_void;

use kernel::prelude::*;

use crate::bindings::glue;
use crate::vendor;
use crate::vm;

/// `void probe(void *data, struct kvm_vcpu *vcpu, bool force_immediate_exit)`
///
/// # Safety
///
/// Only as the kvm_entry tracepoint's probe: `vcpu` is the vCPU KVM is
/// about to run, on this CPU, with interrupts off.
unsafe extern "C" fn on_entry(_data: *mut c_void, vcpu: *mut glue::kvm_vcpu, _force_exit: bool) {
    // SAFETY: KVM passes the running vCPU, valid for the whole call.
    unsafe { handle(vcpu, false) };
}

/// `void probe(void *data, struct kvm_vcpu *vcpu, u32 isa)`
///
/// # Safety
///
/// Only as the kvm_exit tracepoint's probe: `vcpu` is the vCPU that just
/// exited, on this CPU, with interrupts off.
unsafe extern "C" fn on_exit(_data: *mut c_void, vcpu: *mut glue::kvm_vcpu, _isa: u32) {
    // SAFETY: as in `on_entry`.
    unsafe { handle(vcpu, true) };
}

/// # Safety
///
/// `vcpu` is the vCPU KVM is running, and the caller is a tracepoint probe.
#[inline(always)]
unsafe fn handle(vcpu: *mut glue::kvm_vcpu, exit: bool) {
    // SAFETY: `vcpu` is valid (caller).
    let kvm = unsafe { glue::kvm_pfi_vcpu_vm(vcpu) };
    // SAFETY: tracepoint probes run with preemption disabled, an RCU
    // read-side critical section.
    unsafe {
        vm::with_attached(kvm, |vm| {
            // SAFETY: `vcpu` is valid (caller).
            let idx = glue::kvm_pfi_vcpu_index(vcpu) as usize;
            vm.count(idx, exit);
            if !exit {
                crate::protect::seal_gathered(vm);
            }
            // Also once after attach, to learn the guest's paging mode for
            // walks made outside the probes, and when the Linux work asks
            // for a kernel-mode root (`linux_guest.rs`).
            if vm.gate.busy() || (exit && (!vm.paging_known() || vm.wants_kernel_root())) {
                introspect(vm, vcpu, idx, exit);
            }
        })
    };
}

/// The target work of one entry or exit of a VM that has targets.
///
/// # Safety
///
/// As for [`handle`].
#[inline(never)]
unsafe fn introspect(vm: &vm::AttachedVm, vcpu: *mut glue::kvm_vcpu, idx: usize, exit: bool) {
    // The lock is taken only for work: an exit of a vCPU that follows no
    // fault it injected costs a few loads, without even reading the
    // vCPU's state; an entry that cannot inject or whose address space has
    // nothing to inject, a state read and a few loads
    // (`probe_gate.rs`, Documentation/design.rst).
    let exit_work = exit && vm.gate.busy() && vm.gate.exit_has_work(idx);
    if exit && !exit_work && vm.paging_known() && !vm.wants_kernel_root() {
        return;
    }
    if !exit && (!vm.gate.busy() || vm.gate.in_flight(idx)) {
        return;
    }
    // SAFETY: a probe for the running `vcpu`.
    let Some(st) = (unsafe { vendor::read(vcpu) }) else {
        return;
    };
    // The paging mode, for the walks outside the probes: learnt at the
    // first exit, kept current by every probe that reads the state.
    if st.view.long_mode() {
        // SAFETY: a probe for the running `vcpu`.
        unsafe { vm.note_paging(vcpu, &st.view) };
        if st.view.cpl == 0 {
            vm.note_kernel_root(st.view.cr3);
        }
    }
    if exit {
        if !exit_work {
            return;
        }
        // SAFETY: reads the clock.
        let now = unsafe { glue::kvm_pfi_now_ns() };
        let work = vm.targets.lock().on_exit(vm.kvm, vcpu, idx, &st, now);
        if work {
            // Settled pages to report, write tracking to follow, a walk.
            vm.kick_report();
        }
    } else {
        if crate::targets::probe::entry_blocked(&st)
            || !vm.gate.may_inject(st.view.cr3, st.view.cpl == 0)
        {
            return;
        }
        let mut targets = vm.targets.lock();
        let (inject, settled) = targets.on_entry(vm.kvm, vcpu, idx, &st);
        if let Some((cr2, error_code)) = inject {
            // SAFETY: the kvm_entry probe, and `on_entry` saw no event in
            // this entry's injection field.
            unsafe { vendor::inject_page_fault(vcpu, cr2, error_code) };
        }
        if settled {
            drop(targets);
            vm.kick_report();
        }
    }
}

/// The registered probes. Dropping unregisters them and waits until no
/// probe is running, so nothing they use can be freed under them.
pub(crate) struct Probes {
    _private: (),
}

impl Probes {
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: `on_entry` has the kvm_entry prototype (the type says so).
        kernel::error::to_result(unsafe {
            glue::kvm_pfi_register_entry_probe(Some(on_entry), core::ptr::null_mut())
        })?;
        // SAFETY: `on_exit` has the kvm_exit prototype (the type says so).
        let r = kernel::error::to_result(unsafe {
            glue::kvm_pfi_register_exit_probe(Some(on_exit), core::ptr::null_mut())
        });
        if let Err(e) = r {
            // SAFETY: registered just above with the same arguments.
            unsafe {
                glue::kvm_pfi_unregister_entry_probe(Some(on_entry), core::ptr::null_mut());
                glue::kvm_pfi_probes_synchronize();
            }
            return Err(e);
        }
        Ok(Probes { _private: () })
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        // SAFETY: both were registered by `register` with these arguments.
        unsafe {
            glue::kvm_pfi_unregister_exit_probe(Some(on_exit), core::ptr::null_mut());
            glue::kvm_pfi_unregister_entry_probe(Some(on_entry), core::ptr::null_mut());
            glue::kvm_pfi_probes_synchronize();
        }
    }
}
