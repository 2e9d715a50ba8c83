// SPDX-License-Identifier: GPL-2.0

//! The host's hardware virtualisation. AMD SVM is implemented and tested
//! (QEMU TCG emulates it); Intel VMX is not implemented yet, so targets
//! are refused there (`EOPNOTSUPP`) rather than injected blindly.

use crate::bindings::glue;

/// Whether KVM runs on AMD SVM here.
pub(crate) fn is_svm() -> bool {
    // SAFETY: reads boot CPU feature bits.
    unsafe { glue::kvm_pfi_host_vendor() == glue::KVM_PFI_GLUE_VENDOR_SVM }
}
