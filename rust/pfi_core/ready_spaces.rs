// SPDX-License-Identifier: GPL-2.0

//! The address spaces in which some target page may get a #PF, as the entry
//! probe asks about them without the VM's lock: one lookup by the vCPU's
//! CR3, whatever the number of targets and pages.
//!
//! An open-addressing hash set of [`SLOTS`] words, twice the most address
//! spaces a VM's targets can name (one per target, `KVM_PFI_MAX_TARGETS`),
//! so it never fills and every probe sequence ends at an empty word within
//! a few steps. Each word is an address space's root table GPA (4 KiB
//! aligned) with its flags in the low bits: whether the root is a KPTI pair
//! (then either half of the pair matches), and which privilege levels its
//! targets accept a fault at. The words are the caller's ([`Words`]): the
//! module keeps them in atomics that probes read while the report work
//! rewrites them (under the VM's lock, in a seqcount), the host tests in an
//! array.
//!
//! The set may name more spaces than have a page to inject (a space whose
//! pages all settled stays until the next [`rebuild`]): a "yes" sends the
//! probe to the locked path, which decides per page as before. A "no" is
//! exact for a consistent read, and the probe skips all target work.

use super::walk::{
    address_space_root,
    AddressSpace, //
};

/// Words in the set: a power of two, twice `KVM_PFI_MAX_TARGETS` (64).
pub const SLOTS: usize = 128;
const MASK: usize = SLOTS - 1;

/// The space's targets accept a fault at CPL 3.
const USER: u64 = 1 << 0;
/// Some target of the space accepts a fault at CPL 0.
const KERNEL: u64 = 1 << 1;
/// The root names a KPTI pair.
const KPTI: u64 = 1 << 2;
/// The word is in use (a root of GPA 0 is valid).
const USED: u64 = 1 << 3;
/// What a lookup compares: the root and its KPTI flag.
const KEY_MASK: u64 = !(USER | KERNEL);

/// Where the set's words live.
pub trait Words {
    /// The word at `i` (`i < SLOTS`).
    fn get(&self, i: usize) -> u64;
    /// Sets the word at `i` (`i < SLOTS`).
    fn set(&mut self, i: usize, v: u64);
}

impl Words for [u64; SLOTS] {
    fn get(&self, i: usize) -> u64 {
        self.as_slice().get(i).copied().unwrap_or(0)
    }
    fn set(&mut self, i: usize, v: u64) {
        if let Some(w) = self.as_mut_slice().get_mut(i) {
            *w = v;
        }
    }
}

fn key(root: u64, kpti: bool) -> u64 {
    root | USED | if kpti { KPTI } else { 0 }
}

fn home(key: u64) -> usize {
    // Fibonacci hashing of the frame number.
    let h = (key >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 57) as usize & MASK
}

/// Empties the set.
pub fn clear(words: &mut impl Words) {
    for i in 0..SLOTS {
        words.set(i, 0);
    }
}

/// Adds `space`, whose targets accept faults at CPL 3 and, with
/// `kernel_mode`, at CPL 0 (`KVM_PFI_TARGET_KERNEL`). Returns `false` when
/// the set is full, which [`SLOTS`] rules out for the module's limits.
pub fn add(words: &mut impl Words, space: AddressSpace, kernel_mode: bool) -> bool {
    let k = key(space.root_gpa(), space.kpti());
    let mode = USER | if kernel_mode { KERNEL } else { 0 };
    let mut i = home(k);
    for _ in 0..SLOTS {
        let w = words.get(i);
        if w == 0 {
            words.set(i, k | mode);
            return true;
        }
        if w & KEY_MASK == k {
            words.set(i, w | mode);
            return true;
        }
        i = i.wrapping_add(1) & MASK;
    }
    false
}

/// Refills the set with `spaces` (each with whether it takes kernel-mode
/// faults); returns `false` if one did not fit.
pub fn rebuild(words: &mut impl Words, spaces: impl Iterator<Item = (AddressSpace, bool)>) -> bool {
    clear(words);
    let mut all = true;
    for (space, kernel_mode) in spaces {
        all &= add(words, space, kernel_mode);
    }
    all
}

fn find(words: &impl Words, k: u64) -> u64 {
    let mut i = home(k);
    for _ in 0..SLOTS {
        let w = words.get(i);
        if w == 0 || w & KEY_MASK == k {
            return w;
        }
        i = i.wrapping_add(1) & MASK;
    }
    0
}

/// Whether a vCPU running with `cr3` at CPL 0 (`kernel_mode`) or 3 may
/// have a page to inject: its address space (either KPTI reading of the
/// CR3) is in the set, with a target for that privilege level.
pub fn may_inject(words: &impl Words, cr3: u64, kernel_mode: bool) -> bool {
    let want = if kernel_mode { KERNEL } else { USER };
    [false, true]
        .into_iter()
        .any(|kpti| find(words, key(address_space_root(cr3, kpti), kpti)) & want != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCID: u64 = 0x5;
    const NOFLUSH: u64 = 1 << 63;

    fn set() -> [u64; SLOTS] {
        [0; SLOTS]
    }

    #[test]
    fn empty_set_refuses_every_cr3() {
        let w = set();
        assert!(!may_inject(&w, 0x1000, false));
        assert!(!may_inject(&w, 0, true));
    }

    #[test]
    fn a_space_matches_its_cr3_with_pcid_and_noflush_bits() {
        let mut w = set();
        assert!(add(&mut w, AddressSpace::from_cr3(0x12_3000, false), false));
        assert!(may_inject(&w, 0x12_3000 | PCID | NOFLUSH, false));
        assert!(!may_inject(&w, 0x12_4000, false));
    }

    #[test]
    fn user_only_targets_do_not_open_cpl0_entries() {
        let mut w = set();
        add(&mut w, AddressSpace::from_cr3(0x8000, false), false);
        assert!(!may_inject(&w, 0x8000, true));
        add(&mut w, AddressSpace::from_cr3(0x9000, false), true);
        assert!(may_inject(&w, 0x9000, true));
        assert!(may_inject(&w, 0x9000, false));
    }

    #[test]
    fn a_kernel_target_of_a_space_adds_cpl0_to_its_user_targets() {
        let mut w = set();
        let s = AddressSpace::from_cr3(0xa000, false);
        add(&mut w, s, false);
        add(&mut w, s, true);
        assert!(may_inject(&w, 0xa000, true));
        assert_eq!(w.iter().filter(|&&x| x != 0).count(), 1);
    }

    #[test]
    fn kpti_pair_matches_both_halves_and_plain_root_only_itself() {
        let mut w = set();
        // Linux PTI: the user half is the kernel half with bit 12 set.
        add(&mut w, AddressSpace::from_cr3(0x20_0000, true), false);
        assert!(may_inject(&w, 0x20_0000, false));
        assert!(may_inject(&w, 0x20_1000, false));
        let mut w = set();
        add(&mut w, AddressSpace::from_cr3(0x20_0000, false), false);
        assert!(!may_inject(&w, 0x20_1000, false));
    }

    #[test]
    fn root_zero_is_a_space_like_any_other() {
        let mut w = set();
        add(&mut w, AddressSpace::from_cr3(0, false), false);
        assert!(may_inject(&w, 0, false));
        assert!(!may_inject(&w, 0x1000, false));
    }

    #[test]
    fn sixty_four_colliding_spaces_all_found_and_others_refused() {
        // Roots 128 frames apart share their low frame bits: a worst case
        // for a weak hash; all 64 (KVM_PFI_MAX_TARGETS) must fit and be found.
        let mut w = set();
        let roots: std::vec::Vec<u64> = (0..64u64).map(|i| (i << 19) | 0x1000).collect();
        assert!(rebuild(
            &mut w,
            roots
                .iter()
                .map(|&r| (AddressSpace::from_cr3(r, false), false))
        ));
        for &r in &roots {
            assert!(may_inject(&w, r, false), "{r:#x}");
        }
        for i in 0..1000u64 {
            let other = (i << 19) | 0x2000;
            assert!(!may_inject(&w, other, false), "{other:#x}");
        }
    }

    #[test]
    fn rebuild_forgets_spaces_left_out() {
        let mut w = set();
        add(&mut w, AddressSpace::from_cr3(0x3000, false), false);
        rebuild(
            &mut w,
            [(AddressSpace::from_cr3(0x4000, false), false)].into_iter(),
        );
        assert!(!may_inject(&w, 0x3000, false));
        assert!(may_inject(&w, 0x4000, false));
    }

    #[test]
    fn a_full_set_says_so_and_still_answers() {
        let mut w = set();
        for i in 0..SLOTS as u64 {
            assert!(add(
                &mut w,
                AddressSpace::from_cr3((i + 1) << 12, false),
                false
            ));
        }
        assert!(!add(
            &mut w,
            AddressSpace::from_cr3(0x7777_7000, false),
            false
        ));
        assert!(may_inject(&w, 5 << 12, false));
        assert!(!may_inject(&w, 0x7777_7000, false));
    }
}
