// SPDX-License-Identifier: GPL-2.0

//! Whether a user-mode #PF that kvm-pfi would inject is one a Linux guest
//! kernel serves (swaps the page in) rather than one it answers with
//! SIGSEGV to the running task. The rules are those of the x86 fault
//! handler (`arch/x86/mm/fault.c`, `do_user_addr_fault`): a VMA must cover
//! the address (`lock_mm_and_find_vma`; a stack that would grow is not
//! asked for: no target lies below its stack), the protection key of the
//! VMA must allow the access under the task's PKRU
//! (`arch_vma_access_permitted`, checked for key 0 too), and the VMA's
//! flags must allow it (`access_error`: a write needs `VM_WRITE` and no
//! shadow stack, a read any of read, write or exec, so not `PROT_NONE`).

use super::linux_walk::Vma;

/// `VM_READ`, `VM_WRITE`, `VM_EXEC` (`include/linux/mm.h`).
pub const VM_READ: u64 = 0x1;
/// See [`VM_READ`].
pub const VM_WRITE: u64 = 0x2;
/// See [`VM_READ`].
pub const VM_EXEC: u64 = 0x4;
/// `VM_SHADOW_STACK` on x86 (`VM_HIGH_ARCH_5`).
pub const VM_SHADOW_STACK: u64 = 1 << 37;
/// x86's protection key: `VM_PKEY_BIT0..3`, `VM_HIGH_ARCH_0..3`.
const VM_PKEY_SHIFT: u32 = 32;
const VM_PKEY_MASK: u64 = 0xf;

/// What the guest kernel would do with the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it: swap the page in (or find it in the page cache).
    Serve,
    /// No VMA covers the address: SIGSEGV (`SEGV_MAPERR`).
    NoVma,
    /// The VMA's flags forbid the access (`PROT_NONE`, a write to a
    /// read-only or shadow-stack mapping): SIGSEGV (`SEGV_ACCERR`).
    Denied,
    /// The VMA's protection key (`.0`) forbids the access under the PKRU
    /// now: SIGSEGV (`SEGV_PKUERR`). The task may change its PKRU: this
    /// refusal is for now only.
    KeyDenied(u8),
}

/// `VM_SHARED` (`MAP_SHARED`: shmem or a shared file mapping).
pub const VM_SHARED: u64 = 0x8;

/// Whether the VMA maps a file or shared memory: a page of it whose entry
/// is empty (dropped by the guest, no swap entry) is read back by a fault
/// from the page cache, the file or shmem. An empty entry of an anonymous
/// private mapping was never written: a fault would map a new zero page.
pub fn file_or_shared(vma: &Vma) -> bool {
    vma.file != 0 || vma.flags & VM_SHARED != 0
}

/// The protection key of a VMA.
pub fn pkey(vma: &Vma) -> u8 {
    ((vma.flags >> VM_PKEY_SHIFT) & VM_PKEY_MASK) as u8
}

/// The verdict on a user-mode #PF at an address `vma` covers (`None`: no
/// VMA does), a write fault if `write`. `pkru` is the PKRU the task runs
/// with, `None` when the guest has protection keys off (CR4.PKE clear).
pub fn user_fault(vma: Option<&Vma>, write: bool, pkru: Option<u32>) -> Verdict {
    let Some(v) = vma else { return Verdict::NoVma };
    if let Some(pkru) = pkru {
        let key = pkey(v);
        let bits = pkru.checked_shr(2 * u32::from(key)).unwrap_or(0);
        // AD (access disable) then WD (write disable), two bits per key.
        if bits & 1 != 0 || (write && bits & 2 != 0) {
            return Verdict::KeyDenied(key);
        }
    }
    let allowed = if write {
        v.flags & VM_WRITE != 0 && v.flags & VM_SHADOW_STACK == 0
    } else {
        v.flags & (VM_READ | VM_WRITE | VM_EXEC) != 0
    };
    if allowed {
        Verdict::Serve
    } else {
        Verdict::Denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(flags: u64) -> Vma {
        Vma { addr: 0xffff_8880_0000_1000, start: 0x1000, end: 0x3000, flags, file: 0, pgoff: 0 }
    }

    #[test]
    fn flags_decide_like_the_x86_fault_handler() {
        let rw = vma(VM_READ | VM_WRITE);
        assert_eq!(user_fault(Some(&rw), false, None), Verdict::Serve);
        assert_eq!(user_fault(Some(&rw), true, None), Verdict::Serve);
        let ro = vma(VM_READ);
        assert_eq!(user_fault(Some(&ro), false, None), Verdict::Serve);
        assert_eq!(user_fault(Some(&ro), true, None), Verdict::Denied);
        // Exec-only and write-only mappings are readable by a fault.
        assert_eq!(user_fault(Some(&vma(VM_EXEC)), false, None), Verdict::Serve);
        assert_eq!(user_fault(Some(&vma(VM_WRITE)), false, None), Verdict::Serve);
        // PROT_NONE (VM_MAYREAD etc. set, no access bit).
        let none = vma(0x70);
        assert_eq!(user_fault(Some(&none), false, None), Verdict::Denied);
        assert_eq!(user_fault(Some(&none), true, None), Verdict::Denied);
        // A shadow stack takes no ordinary write.
        let ss = vma(VM_READ | VM_WRITE | VM_SHADOW_STACK);
        assert_eq!(user_fault(Some(&ss), false, None), Verdict::Serve);
        assert_eq!(user_fault(Some(&ss), true, None), Verdict::Denied);
        assert_eq!(user_fault(None, false, None), Verdict::NoVma);
    }

    #[test]
    fn file_backed_or_shared_mappings() {
        assert!(!file_or_shared(&vma(VM_READ | VM_WRITE)));
        assert!(file_or_shared(&vma(VM_READ | VM_SHARED)));
        let file = Vma { file: 0xffff_8880_0000_2000, ..vma(VM_READ) };
        assert!(file_or_shared(&file));
    }

    #[test]
    fn protection_keys_under_the_tasks_pkru() {
        let key5 = vma(VM_READ | VM_WRITE | (5 << 32));
        assert_eq!(pkey(&key5), 5);
        // Linux's default PKRU 0x55555554: every key but 0 access-disabled.
        assert_eq!(user_fault(Some(&key5), false, Some(0x5555_5554)), Verdict::KeyDenied(5));
        assert_eq!(user_fault(Some(&key5), false, Some(0)), Verdict::Serve);
        // Write-disabled only: reads are served, writes are not.
        let wd = 2 << 10;
        assert_eq!(user_fault(Some(&key5), false, Some(wd)), Verdict::Serve);
        assert_eq!(user_fault(Some(&key5), true, Some(wd)), Verdict::KeyDenied(5));
        // Key 0 is checked too, and pkeys off means no check.
        let key0 = vma(VM_READ | VM_WRITE);
        assert_eq!(user_fault(Some(&key0), false, Some(u32::MAX)), Verdict::KeyDenied(0));
        assert_eq!(user_fault(Some(&key0), false, None), Verdict::Serve);
        // Key 15, the last.
        let key15 = vma(VM_READ | (15 << 32));
        assert_eq!(user_fault(Some(&key15), false, Some(1 << 30)), Verdict::KeyDenied(15));
        // The key check comes before the flags (the kernel's order).
        let none5 = vma(5 << 32);
        assert_eq!(user_fault(Some(&none5), false, Some(0x5555_5554)), Verdict::KeyDenied(5));
    }
}
