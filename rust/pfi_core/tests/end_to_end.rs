// SPDX-License-Identifier: GPL-2.0

//! The module's use of pfi_core from outside the crate, end to end: a
//! swapped-out user page of a KPTI guest is walked, a #PF injected at a safe
//! entry, its delivery interrupted once and re-injected by KVM, and the
//! guest's swap-in seen through a write to the tracked page table.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use pfi_core::inject::{
    Action, EntryContext, EntryDecision, ExitDelivery, InjectConfig, Injection, PageFault, State,
    Target, TargetId, VcpuSlot, WaitReason, EXIT_INT_INFO_TYPE_HW_EXCEPTION, EXIT_INT_INFO_VALID,
    PF_ERROR_USER, RFLAGS_IF,
};
use pfi_core::pte::{LinuxSwapLayout, PageSize, PagingFeatures};
use pfi_core::walk::{walk, AddressSpace, GuestPaging, GuestPhysRead, ReadError, WalkOutcome};
use std::collections::BTreeMap;

struct Guest {
    words: BTreeMap<u64, u64>,
}

impl GuestPhysRead for Guest {
    fn read_u64(&mut self, gpa: u64) -> Result<u64, ReadError> {
        if gpa >= 1 << 32 {
            return Err(ReadError::OutsideGuestMemory);
        }
        Ok(self.words.get(&gpa).copied().unwrap_or(0))
    }
}

/// arch/x86/include/asm/pgtable_64.h `__swp_entry(type, offset)`.
fn swp_entry(swp_type: u64, offset: u64) -> u64 {
    ((!offset) << 14 >> 5) | (swp_type << 59)
}

#[test]
fn swapped_page_is_faulted_back_in() {
    let kernel_pgd = 0x0010_0000u64; // 8 KiB-aligned KPTI pair
    let user_cr3 = kernel_pgd | 0x1000 | 0x800 | 0x5; // user half, user PCID
    let gva = 0x0000_5555_5555_4000u64;
    let va_index = |shift: u32| ((gva >> shift) & 0x1ff) * 8;

    // Tables: PGD (kernel half) -> PUD -> PMD -> PT.
    let (pud, pmd, pt) = (0x20_0000u64, 0x20_1000u64, 0x20_2000u64);
    let flags = 0x67; // P | RW | US | A | D
    let mut guest = Guest {
        words: BTreeMap::new(),
    };
    guest.words.insert(kernel_pgd + va_index(39), pud | flags);
    guest.words.insert(pud + va_index(30), pmd | flags);
    guest.words.insert(pmd + va_index(21), pt | flags);
    let pte_gpa = pt + va_index(12);
    guest
        .words
        .insert(pte_gpa, swp_entry(1, 0x4242) | 0x8 /* exclusive */);

    let paging = GuestPaging {
        la57: false,
        features: PagingFeatures::new(39),
        swap_layout: LinuxSwapLayout::distro_default(),
    };
    let space = AddressSpace::from_cr3(user_cr3, true);
    assert_eq!(space.root_gpa(), kernel_pgd);

    let first = walk(&mut guest, &paging, space.root_gpa(), gva);
    assert_eq!(first.tables.as_slice(), &[kernel_pgd, pud, pmd, pt]);
    let WalkOutcome::NotPresent {
        kind, entry_gpa, ..
    } = first.outcome
    else {
        panic!("{:?}", first.outcome);
    };
    assert!(kind.is_swapped_out());
    assert_eq!(entry_gpa, pte_gpa);

    let mut target = Injection::new(
        Target {
            id: TargetId(1),
            space,
            gva,
            write: false,
            allow_kernel_mode: false,
            empty_may_fault: false,
        },
        InjectConfig::default(),
    );
    assert_eq!(target.on_walk(&first.outcome), Action::None);

    let mut slots = [VcpuSlot::new(), VcpuSlot::new()];
    let entry = |vcpu: u32, now_ns: u64, cr3: u64, cpl: u8| EntryContext {
        vcpu,
        now_ns,
        cr3,
        cpl,
        rflags: RFLAGS_IF,
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
    };

    // vCPU 0 in the kernel half of the same process: not user mode.
    assert_eq!(
        target.on_entry(&mut slots[0], &entry(0, 10, kernel_pgd | 0x5, 0)),
        EntryDecision::Wait(WaitReason::PrivilegeLevel)
    );
    // vCPU 1 in another process.
    assert_eq!(
        target.on_entry(&mut slots[1], &entry(1, 11, 0x30_0000, 3)),
        EntryDecision::Wait(WaitReason::OtherAddressSpace)
    );
    // vCPU 1 back in user mode of the target process: inject.
    assert_eq!(
        target.on_entry(&mut slots[1], &entry(1, 12, user_cr3, 3)),
        EntryDecision::Inject(PageFault {
            cr2: gva,
            error_code: PF_ERROR_USER
        })
    );

    // The delivery is interrupted by an EPT violation on the guest's stack.
    let interrupted = ExitDelivery {
        now_ns: 13,
        exit_int_info: EXIT_INT_INFO_VALID | EXIT_INT_INFO_TYPE_HW_EXCEPTION | 14,
    };
    let d = slots[1].on_exit(&interrupted).unwrap();
    assert!(d.interrupted);
    target.on_delivery(&d);
    // KVM re-injects on the next entry of vCPU 1.
    assert_eq!(
        target.on_entry(&mut slots[1], &entry(1, 14, user_cr3, 3)),
        EntryDecision::Idle
    );
    let d = slots[1]
        .on_exit(&ExitDelivery {
            now_ns: 15,
            exit_int_info: 0,
        })
        .unwrap();
    target.on_delivery(&d);
    assert!(matches!(
        target.state(),
        State::AwaitingUpdate { vcpu: 1, at_ns: 12 }
    ));
    assert_eq!(target.stats().entries_to_delivery, Some(3));
    assert_eq!(target.stats().reinjections, 1);

    // The guest reads the page back and writes the PTE.
    guest.words.insert(pte_gpa, 0x7654_3000 | flags | (1 << 63));
    assert!(first.tables.contains(pte_gpa));
    assert_eq!(target.on_page_table_write(), Action::Rewalk);
    let again = walk(&mut guest, &paging, space.root_gpa(), gva);
    assert!(matches!(
        again.outcome,
        WalkOutcome::Resident {
            page_base_gpa: 0x7654_3000,
            page_size: PageSize::Size4K,
            user: true,
            nx: true,
            ..
        }
    ));
    assert_eq!(target.on_walk(&again.outcome), Action::Settled);
    assert!(target.finish());
    assert_eq!(target.state(), State::Done);
    assert_eq!(target.stats().injections, 1);
}
