// SPDX-License-Identifier: GPL-2.0

//! Vendor state decoding: the raw fields the C glue copies out of an AMD
//! VMCB or the current Intel VMCS, turned into one [`CpuView`], and the #PF
//! encoded for each vendor's event-injection field.
//!
//! AMD: AMD64 Architecture Programmer's Manual vol. 2, appendix B (VMCB
//! layout: CPL, EVENTINJ, INTERRUPT_SHADOW, EXITINTINFO) and 15.20 (event
//! injection). Intel: SDM vol. 3C, 25.4.1 (guest SS access rights: DPL is
//! the CPL), 25.4.2 (interruptibility state), 25.8.3 (VM-entry
//! interruption-information field), 25.9.3 (IDT-vectoring information).
//! Both event formats share the layout the state machine reads: vector in
//! bits 7:0, type in 10:8 (3 = hardware exception), error-code-valid in bit
//! 11, valid in bit 31.

use super::inject::{
    EXIT_INT_INFO_TYPE_HW_EXCEPTION,
    EXIT_INT_INFO_VALID, //
};

/// The #PF vector.
const PF_VECTOR: u32 = 14;
/// "Deliver error code" (Intel) / "EV" (AMD): bit 11 in both formats.
const EVENT_ERROR_CODE_VALID: u32 = 1 << 11;
/// VMCB INTERRUPT_SHADOW: bit 0.
pub const SVM_INTERRUPT_SHADOW: u32 = 1;
/// GUEST_INTERRUPTIBILITY_INFO: STI blocking (bit 0), MOV SS blocking (bit 1).
pub const VMX_INTERRUPT_SHADOW: u32 = 3;

/// Vendor-neutral guest state at an entry or exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuView {
    /// Guest CR0, CR3, CR4, EFER and RFLAGS.
    pub cr0: u64,
    /// Guest CR3.
    pub cr3: u64,
    /// Guest CR4.
    pub cr4: u64,
    /// Guest EFER.
    pub efer: u64,
    /// Guest RFLAGS.
    pub rflags: u64,
    /// Current privilege level, 0..=3.
    pub cpl: u8,
    /// This entry already injects an event.
    pub event_inj_valid: bool,
    /// STI or MOV SS blocking.
    pub interrupt_shadow: bool,
    /// The exit's interrupted-delivery information in the shared layout
    /// (see [`super::inject::is_interrupted_page_fault`]).
    pub exit_int_info: u32,
    /// The vCPU is in an activity state in which VM entry refuses a #PF
    /// (VMX shutdown or wait-for-SIPI). HLT is not one: the injection
    /// leaves it, as KVM's own injections do.
    pub inactive: bool,
}

impl CpuView {
    /// IA-32e paging is on (EFER.LMA and CR0.PG): the only mode whose page
    /// tables the walk understands.
    pub const fn long_mode(&self) -> bool {
        const EFER_LMA: u64 = 1 << 10;
        const CR0_PG: u64 = 1 << 31;
        self.efer & EFER_LMA != 0 && self.cr0 & CR0_PG != 0
    }
}

/// Raw AMD VMCB fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SvmFields {
    /// Save area CR0, CR3, CR4, EFER, RFLAGS.
    pub cr0: u64,
    /// Save area CR3.
    pub cr3: u64,
    /// Save area CR4.
    pub cr4: u64,
    /// Save area EFER.
    pub efer: u64,
    /// Save area RFLAGS.
    pub rflags: u64,
    /// Save area CPL.
    pub cpl: u8,
    /// Control area EVENTINJ (low 32 bits).
    pub event_inj: u32,
    /// Control area INTERRUPT_SHADOW (bit 0: shadow).
    pub int_state: u32,
    /// Control area EXITINTINFO (low 32 bits).
    pub exit_int_info: u32,
}

impl SvmFields {
    /// The vendor-neutral view.
    pub const fn view(&self) -> CpuView {
        CpuView {
            cr0: self.cr0,
            cr3: self.cr3,
            cr4: self.cr4,
            efer: self.efer,
            rflags: self.rflags,
            cpl: self.cpl & 3,
            event_inj_valid: self.event_inj & EXIT_INT_INFO_VALID != 0,
            interrupt_shadow: self.int_state & SVM_INTERRUPT_SHADOW != 0,
            exit_int_info: self.exit_int_info,
            inactive: false,
        }
    }
}

/// Raw Intel VMCS fields (and KVM's EFER, which the VMCS holds only when
/// the entry controls load it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VmxFields {
    /// GUEST_CR0.
    pub cr0: u64,
    /// GUEST_CR3.
    pub cr3: u64,
    /// GUEST_CR4.
    pub cr4: u64,
    /// KVM's `vcpu->arch.efer`.
    pub efer: u64,
    /// GUEST_RFLAGS.
    pub rflags: u64,
    /// GUEST_SS_AR_BYTES: bits 6:5 are SS.DPL, which is the CPL.
    pub ss_ar_bytes: u32,
    /// GUEST_INTERRUPTIBILITY_INFO: bit 0 STI blocking, bit 1 MOV SS blocking.
    pub interruptibility: u32,
    /// VM_ENTRY_INTR_INFO_FIELD.
    pub entry_intr_info: u32,
    /// IDT_VECTORING_INFO_FIELD.
    pub idt_vectoring_info: u32,
    /// GUEST_ACTIVITY_STATE: 0 active, 1 HLT, 2 shutdown, 3 wait-for-SIPI.
    pub activity_state: u32,
}

/// GUEST_ACTIVITY_STATE values (SDM vol. 3C, 25.4.2).
const VMX_ACTIVITY_ACTIVE: u32 = 0;
const VMX_ACTIVITY_HLT: u32 = 1;

impl VmxFields {
    /// The vendor-neutral view.
    pub const fn view(&self) -> CpuView {
        CpuView {
            cr0: self.cr0,
            cr3: self.cr3,
            cr4: self.cr4,
            efer: self.efer,
            rflags: self.rflags,
            cpl: ((self.ss_ar_bytes >> 5) & 3) as u8,
            event_inj_valid: self.entry_intr_info & EXIT_INT_INFO_VALID != 0,
            interrupt_shadow: self.interruptibility & VMX_INTERRUPT_SHADOW != 0,
            exit_int_info: self.idt_vectoring_info,
            inactive: !matches!(self.activity_state, VMX_ACTIVITY_ACTIVE | VMX_ACTIVITY_HLT),
        }
    }
}

/// The #PF with an error code in the shared event layout: what goes into
/// SVM EVENTINJ (with the error code in EVENTINJ.ERRORCODE) and into VMX
/// VM_ENTRY_INTR_INFO_FIELD (with VM_ENTRY_EXCEPTION_ERROR_CODE).
pub const fn page_fault_event() -> u32 {
    EXIT_INT_INFO_VALID | EVENT_ERROR_CODE_VALID | EXIT_INT_INFO_TYPE_HW_EXCEPTION | PF_VECTOR
}

#[cfg(test)]
mod tests {
    use super::super::inject::is_interrupted_page_fault;
    use super::*;

    #[test]
    fn page_fault_event_matches_both_manuals() {
        // AMD: SVM_EVTINJ_VALID | SVM_EVTINJ_VALID_ERR | SVM_EVTINJ_TYPE_EXEPT | 14.
        let amd = (1u32 << 31) | (1 << 11) | (3 << 8) | 14;
        // Intel: INTR_INFO_VALID_MASK | INTR_INFO_DELIVER_CODE_MASK |
        // INTR_TYPE_HARD_EXCEPTION | PF_VECTOR.
        let intel = 0x8000_0000u32 | 0x800 | (3 << 8) | 14;
        assert_eq!(page_fault_event(), amd);
        assert_eq!(page_fault_event(), intel);
        // An interrupted delivery of it reads back as one.
        assert!(is_interrupted_page_fault(page_fault_event()));
    }

    #[test]
    fn svm_view() {
        let f = SvmFields {
            cr3: 0x1234_5000,
            cpl: 3,
            event_inj: 0,
            int_state: 0,
            ..Default::default()
        };
        let v = f.view();
        assert_eq!((v.cpl, v.event_inj_valid, v.interrupt_shadow), (3, false, false));
        assert_eq!(v.cr3, 0x1234_5000);
        let busy = SvmFields {
            event_inj: 0x8000_0020,
            int_state: 1,
            ..f
        };
        let v = busy.view();
        assert!(v.event_inj_valid && v.interrupt_shadow);
        // A CPL byte with stray bits still yields a ring number.
        assert_eq!(SvmFields { cpl: 0xff, ..f }.view().cpl, 3);
    }

    #[test]
    fn vmx_activity_states() {
        let v = |activity_state| VmxFields { activity_state, ..Default::default() }.view().inactive;
        // Active, and HLT (which the injection leaves, as KVM does).
        assert!(!v(0) && !v(1));
        // Shutdown and wait-for-SIPI take no #PF.
        assert!(v(2) && v(3));
        assert!(!SvmFields::default().view().inactive);
    }

    #[test]
    fn long_mode_needs_lma_and_paging() {
        let v = |efer: u64, cr0: u64| CpuView { efer, cr0, ..Default::default() }.long_mode();
        assert!(v(1 << 10, 1 << 31));
        assert!(!v(1 << 10, 0));
        assert!(!v(0, 1 << 31));
        // LME without LMA: long mode enabled but not active yet.
        assert!(!v(1 << 8, 1 << 31));
    }

    #[test]
    fn vmx_view_cpl_from_ss_dpl() {
        // 64-bit user data segment: type 3, S, DPL 3, P => 0xf3.
        let user = VmxFields {
            ss_ar_bytes: 0xf3,
            ..Default::default()
        };
        assert_eq!(user.view().cpl, 3);
        // Kernel data segment: DPL 0 => 0x93.
        assert_eq!(VmxFields { ss_ar_bytes: 0x93, ..user }.view().cpl, 0);
        // Unusable bit (16) does not disturb the DPL.
        assert_eq!(VmxFields { ss_ar_bytes: 0x1_00f3, ..user }.view().cpl, 3);
    }

    #[test]
    fn vmx_view_shadow_and_events() {
        let base = VmxFields::default();
        assert!(!base.view().interrupt_shadow);
        for blocking in [1u32, 2, 3] {
            let f = VmxFields {
                interruptibility: blocking,
                ..base
            };
            assert!(f.view().interrupt_shadow);
        }
        // SMI / NMI blocking (bits 2, 3) is not an interrupt shadow.
        assert!(!VmxFields { interruptibility: 0xc, ..base }.view().interrupt_shadow);
        let f = VmxFields {
            entry_intr_info: 0x8000_0b0e,
            idt_vectoring_info: 0x8000_0b0e,
            ..base
        };
        assert!(f.view().event_inj_valid);
        assert!(is_interrupted_page_fault(f.view().exit_int_info));
        // Valid bit clear: nothing in flight.
        assert!(!VmxFields { entry_intr_info: 0x0b0e, ..base }.view().event_inj_valid);
    }
}
