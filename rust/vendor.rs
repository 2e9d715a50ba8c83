// SPDX-License-Identifier: GPL-2.0

//! The host's hardware virtualisation, and the vendor-specific reads and
//! writes of guest state, behind one interface for the probes.
//!
//! Both are tested by `make test`: AMD SVM under QEMU's TCG, Intel VMX
//! under Bochs (Documentation/testing.rst).

use kernel::prelude::*;

use crate::bindings::glue;
use crate::pfi_core::vendor::{
    page_fault_event,
    CpuView,
    SvmFields,
    VmxFields, //
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vendor {
    Svm,
    Vmx,
    Unknown,
}

pub(crate) fn host() -> Vendor {
    // SAFETY: reads boot CPU feature bits.
    match unsafe { glue::kvm_pfi_host_vendor() } {
        glue::KVM_PFI_GLUE_VENDOR_SVM => Vendor::Svm,
        glue::KVM_PFI_GLUE_VENDOR_VMX => Vendor::Vmx,
        glue::KVM_PFI_GLUE_VENDOR_NONE => Vendor::Unknown,
        _ => Vendor::Unknown,
    }
}

/// Whether targets (injection) may be used on this host.
pub(crate) fn injection_allowed() -> Result {
    match host() {
        Vendor::Svm | Vendor::Vmx => Ok(()),
        Vendor::Unknown => Err(EOPNOTSUPP),
    }
}

/// Guest state at an entry or exit: the decoded vendor view and KVM's own
/// event bookkeeping.
pub(crate) struct GuestState {
    pub(crate) view: CpuView,
    pub(crate) raw: glue::kvm_pfi_cpu_state,
}

/// Reads the running vCPU's state; `None` if it cannot be read.
///
/// # Safety
///
/// Only from the kvm_entry / kvm_exit probes, for the vCPU being run.
pub(crate) unsafe fn read(vcpu: *mut glue::kvm_vcpu) -> Option<GuestState> {
    let mut raw = glue::kvm_pfi_cpu_state::default();
    let vendor = host();
    match vendor {
        // SAFETY: the caller runs in a probe for `vcpu`.
        Vendor::Svm => unsafe { glue::kvm_pfi_svm_read_state(vcpu, &mut raw) },
        // SAFETY: as above; the VMCS is current on this CPU in a probe.
        Vendor::Vmx => unsafe { glue::kvm_pfi_vmx_read_state(vcpu, &mut raw) },
        Vendor::Unknown => return None,
    }
    if raw.valid == 0 {
        return None;
    }
    let view = match vendor {
        Vendor::Svm => SvmFields {
            cr0: raw.cr0,
            cr3: raw.cr3,
            cr4: raw.cr4,
            efer: raw.efer,
            rflags: raw.rflags,
            cpl: raw.cpl_field as u8,
            event_inj: raw.event_field,
            int_state: raw.shadow_field,
            exit_int_info: raw.exit_int_info,
        }
        .view(),
        _ => VmxFields {
            cr0: raw.cr0,
            cr3: raw.cr3,
            cr4: raw.cr4,
            efer: raw.efer,
            rflags: raw.rflags,
            ss_ar_bytes: raw.cpl_field,
            interruptibility: raw.shadow_field,
            entry_intr_info: raw.event_field,
            idt_vectoring_info: raw.exit_int_info,
            activity_state: raw.activity_state,
        }
        .view(),
    };
    Some(GuestState { view, raw })
}

/// Injects a #PF at `cr2` with `error_code` on this entry.
///
/// # Safety
///
/// Only from the kvm_entry probe for `vcpu`, after [`read`] showed no event
/// in this entry's injection field.
pub(crate) unsafe fn inject_page_fault(vcpu: *mut glue::kvm_vcpu, cr2: u64, error_code: u32) {
    let event = page_fault_event();
    match host() {
        // SAFETY: the caller's contract.
        Vendor::Svm => unsafe { glue::kvm_pfi_svm_inject(vcpu, cr2, event, error_code) },
        // SAFETY: the caller's contract.
        Vendor::Vmx => unsafe { glue::kvm_pfi_vmx_inject(vcpu, cr2, event, error_code) },
        Vendor::Unknown => {}
    }
}
