// SPDX-License-Identifier: GPL-2.0

//! A bounded software walk of a guest's x86-64 page tables.
//!
//! The walk reads one entry per level, top to bottom: at most five reads,
//! fixed by the structure of [`walk`] (one read before the loop over the
//! non-leaf levels would be four, plus the level-1 read after it), never by
//! data read from the guest. A hostile guest can make a table point to
//! itself or to any other page; that only changes which entries are read,
//! not how many.
//!
//! Unlike the CPU, the walk never sets accessed/dirty bits: it only reads.
//! It checks what the CPU checks for a translation (present bits, reserved
//! bits, canonical address) but not access rights, which it reports instead
//! (writable, user, nx) for the caller to judge.
//!
//! The module's walks run in atomic context on a vCPU exit; reading guest
//! memory is the caller's business ([`GuestPhysRead`]): it may say that the
//! host page is not resident now ([`ReadError::Retry`]), and the walk then
//! stops with [`Invalid::RetryLater`] so the caller can try again on a later
//! exit instead of sleeping.

use super::pte::{
    classify_not_present, Entry, Level, LinuxSwapLayout, NotPresentKind, PageSize,
    PagingFeatures, ADDR_MASK_4K,
};

/// Why a guest-physical read failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadError {
    /// No guest memory at this address (no memslot, or an MMIO region).
    OutsideGuestMemory,
    /// Guest memory, but the host page backing it cannot be read without
    /// sleeping now (swapped out on the host, not yet faulted in): retry on
    /// a later exit.
    Retry,
}

/// Read access to guest-physical memory.
pub trait GuestPhysRead {
    /// Read the 8-byte little-endian value at `gpa`. The walk only asks for
    /// 8-byte aligned addresses below 2^52.
    fn read_u64(&mut self, gpa: u64) -> Result<u64, ReadError>;
}

/// `PTI_PGTABLE_SWITCH_BIT` (= `PAGE_SHIFT`, arch/x86/include/asm/pgtable.h):
/// with page-table isolation, Linux allocates each PGD as an 8 KiB-aligned
/// pair, kernel half first; the user half (loaded into CR3 while user code
/// runs) is the kernel one with this bit set.
pub const PTI_USER_PGTABLE_BIT: u32 = 12;

/// CR3 bits 0..=11: the PCID when CR4.PCIDE is set (PWT/PCD and ignored
/// bits otherwise).
pub const CR3_PCID_MASK: u64 = 0xfff;
/// CR3 bit 61: LAM_U57 (linear-address masking for user pointers).
pub const CR3_LAM_U57: u64 = 1 << 61;
/// CR3 bit 62: LAM_U48.
pub const CR3_LAM_U48: u64 = 1 << 62;
/// Bit 63 of a value written to CR3: do not flush the PCID's TLB entries.
pub const CR3_PCID_NOFLUSH: u64 = 1 << 63;
/// The root-table address in CR3: bits 12..=51. Everything else (PCID or
/// PWT/PCD, LAM, no-flush, reserved bits) is not part of the address.
pub const CR3_ADDR_MASK: u64 = ADDR_MASK_4K;

/// The guest-physical address of the root table that `cr3` points to.
pub const fn cr3_root_gpa(cr3: u64) -> u64 {
    cr3 & CR3_ADDR_MASK
}

/// The PCID in `cr3`: bits 0..=11 when CR4.PCIDE is set, 0 otherwise (then
/// those bits are PWT, PCD and ignored bits).
pub const fn cr3_pcid(cr3: u64, pcide: bool) -> u16 {
    if pcide {
        // Twelve bits: the cast is lossless.
        (cr3 & CR3_PCID_MASK) as u16
    } else {
        0
    }
}

/// The root a target's address space is known by: [`cr3_root_gpa`], and
/// with KPTI the kernel half of the pair (bit 12 clear).
pub const fn address_space_root(cr3: u64, kpti: bool) -> u64 {
    let root = cr3_root_gpa(cr3);
    if kpti {
        root & !(1 << PTI_USER_PGTABLE_BIT)
    } else {
        root
    }
}

/// Whether two CR3 values name the same guest address space: same root
/// table, ignoring PCID, LAM and no-flush bits; with `kpti`, also ignoring
/// which half of the Linux PTI pair is loaded.
///
/// `kpti` must be true only for a guest that runs page-table isolation:
/// without it PGDs are single 4 KiB pages and two processes can own the
/// pages X and X + 4 KiB, which the KPTI rule would confuse (and a #PF
/// injected into the wrong process can kill it).
pub const fn same_address_space(a: u64, b: u64, kpti: bool) -> bool {
    address_space_root(a, kpti) == address_space_root(b, kpti)
}

/// A guest address space, as a target names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressSpace {
    root: u64,
    kpti: bool,
}

impl AddressSpace {
    /// The address space whose CR3 (either half of a KPTI pair when `kpti`)
    /// is `cr3`.
    pub const fn from_cr3(cr3: u64, kpti: bool) -> Self {
        AddressSpace {
            root: address_space_root(cr3, kpti),
            kpti,
        }
    }

    /// The root table to walk: with KPTI, the kernel half, which maps user
    /// and kernel addresses alike (the user half maps only user addresses
    /// and the entry trampoline). Note: Linux sets NX in the kernel half's
    /// user PGD entries, so walks from it report user pages as `nx`.
    pub const fn root_gpa(&self) -> u64 {
        self.root
    }

    /// Whether the guest uses page-table isolation.
    pub const fn kpti(&self) -> bool {
        self.kpti
    }

    /// Whether a vCPU whose CR3 is `cr3` runs in this address space.
    pub const fn matches_cr3(&self, cr3: u64) -> bool {
        address_space_root(cr3, self.kpti) == self.root
    }
}

/// Whether `va` is canonical: bits 63..47 (4-level) or 63..56 (5-level)
/// all equal. The caller strips LAM tags before asking: the guest's CPU
/// translates the untagged address.
pub const fn is_canonical(va: u64, la57: bool) -> bool {
    let top_bit = if la57 { 56 } else { 47 };
    let top = va >> top_bit;
    top == 0 || top == u64::MAX >> top_bit
}

/// How the guest translates addresses: what the walk needs besides CR3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPaging {
    /// CR4.LA57: 5-level paging.
    pub la57: bool,
    /// What decides reserved bits.
    pub features: PagingFeatures,
    /// How to read the guest kernel's not-present entries.
    pub swap_layout: LinuxSwapLayout,
}

/// The result of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkOutcome {
    /// The address translates: the page is in guest memory.
    Resident {
        /// Guest-physical address of the byte at the walked address.
        gpa: u64,
        /// Guest-physical base of the page that holds it.
        page_base_gpa: u64,
        /// Size of that page.
        page_size: PageSize,
        /// R/W set at every level (writes allowed when CR0.WP = 1).
        writable: bool,
        /// U/S set at every level (user-mode access allowed).
        user: bool,
        /// XD set at some level (no instruction fetch).
        nx: bool,
    },
    /// An entry on the way has P clear.
    NotPresent {
        /// The level of that entry: 1 (PTE) to 5 (PML5E).
        level: Level,
        /// Its raw value.
        entry: u64,
        /// Its guest-physical address (write-track it to see it change).
        entry_gpa: u64,
        /// What the guest kernel means by it.
        kind: NotPresentKind,
    },
    /// The walk could not finish.
    Invalid(Invalid),
}

/// Why a walk could not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A present entry has reserved bits set: the guest's own access would
    /// take a #PF with RSVD set.
    ReservedBits {
        /// The level of the entry.
        level: Level,
        /// Its raw value.
        entry: u64,
    },
    /// The address is not canonical for the paging mode.
    NonCanonical,
    /// A table entry is not in guest memory.
    OutsideGuestMemory {
        /// The level of the table.
        level: Level,
        /// The address of the entry that could not be read.
        gpa: u64,
    },
    /// A table entry's host page cannot be read now: walk again later.
    RetryLater {
        /// The level of the table.
        level: Level,
        /// The address of the entry that could not be read.
        gpa: u64,
    },
}

/// The page-table pages a walk read, top level first, without repeats (a
/// hostile guest may reuse one page for several levels). The module
/// write-tracks them: a write to any of them can change the translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePages {
    gpas: [u64; 5],
    len: usize,
}

impl TablePages {
    /// No pages.
    pub const fn new() -> Self {
        TablePages {
            gpas: [0; 5],
            len: 0,
        }
    }

    /// The pages, 4 KiB-aligned guest-physical addresses.
    pub fn as_slice(&self) -> &[u64] {
        self.gpas.get(..self.len).unwrap_or(&[])
    }

    /// How many pages.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none (the walk failed before its first read).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the page holding `gpa` is one of them.
    pub fn contains(&self, gpa: u64) -> bool {
        let page = gpa & !0xfff;
        self.as_slice().contains(&page)
    }

    /// Add a page unless it is there already or the list is full (five is
    /// one per level: a walk cannot fill it past that).
    fn push(&mut self, table_gpa: u64) {
        if self.contains(table_gpa) {
            return;
        }
        if let Some(slot) = self.gpas.get_mut(self.len) {
            *slot = table_gpa;
            self.len = self.len.saturating_add(1);
        }
    }
}

impl Default for TablePages {
    fn default() -> Self {
        Self::new()
    }
}

/// A finished walk: its outcome and the table pages it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// What the walk found.
    pub outcome: WalkOutcome,
    /// The tables whose entries it read (whatever the outcome).
    pub tables: TablePages,
}

/// The non-leaf-capable levels above level 1, top first, per paging mode.
const UPPER_LEVELS_5: [Level; 4] = [Level::Pml5, Level::Pml4, Level::Pdpt, Level::Pd];
const UPPER_LEVELS_4: [Level; 3] = [Level::Pml4, Level::Pdpt, Level::Pd];

/// Permissions gathered on the way down.
#[derive(Clone, Copy)]
struct Rights {
    writable: bool,
    user: bool,
    nx: bool,
}

/// Walk the guest page tables rooted at `cr3` for the virtual address `va`.
///
/// With KPTI, pass the kernel half of the pair ([`AddressSpace::root_gpa`])
/// to translate kernel addresses; either half translates user addresses.
pub fn walk<M: GuestPhysRead + ?Sized>(
    mem: &mut M,
    paging: &GuestPaging,
    cr3: u64,
    va: u64,
) -> Walk {
    let mut tables = TablePages::new();
    if !is_canonical(va, paging.la57) {
        return Walk {
            outcome: WalkOutcome::Invalid(Invalid::NonCanonical),
            tables,
        };
    }
    let upper: &[Level] = if paging.la57 {
        &UPPER_LEVELS_5
    } else {
        &UPPER_LEVELS_4
    };
    let mut table = cr3_root_gpa(cr3);
    let mut rights = Rights {
        writable: true,
        user: true,
        nx: false,
    };
    for &level in upper {
        let entry = match read_entry(mem, paging, &mut tables, &mut rights, level, table, va) {
            Ok(entry) => entry,
            Err(outcome) => return Walk { outcome, tables },
        };
        if let Some(size) = entry.leaf_size(level) {
            return Walk {
                outcome: resident(entry, size, rights, va),
                tables,
            };
        }
        table = entry.table_gpa();
    }
    let outcome = match read_entry(mem, paging, &mut tables, &mut rights, Level::Pt, table, va) {
        Ok(entry) => resident(entry, PageSize::Size4K, rights, va),
        Err(outcome) => outcome,
    };
    Walk { outcome, tables }
}

/// Entries of the top-level table (PML4 or PML5) that map the lower
/// canonical half, where a Linux process's user space lives.
const USER_HALF_ENTRIES: u64 = 256;

/// Whether `w`, a walk from `cr3`, shows that address space gone: it
/// stopped at an empty top-level entry, and no entry of the top-level
/// table's lower half holds anything. Linux leaves a process's tables so
/// once `exit_mmap()` has torn them down (`free_pgtables()` clears the
/// top-level entries), while a live process always maps its program and
/// stack there. At most 256 reads, made only for such a walk; one that
/// fails counts as "not shown".
pub fn shows_address_space_gone<M: GuestPhysRead + ?Sized>(
    mem: &mut M,
    paging: &GuestPaging,
    cr3: u64,
    w: &Walk,
) -> bool {
    let top = if paging.la57 { Level::Pml5 } else { Level::Pml4 };
    let root = cr3_root_gpa(cr3);
    matches!(w.outcome, WalkOutcome::NotPresent { level, kind: NotPresentKind::Empty, .. } if level == top)
        && (0..USER_HALF_ENTRIES).all(|i| matches!(mem.read_u64(root.wrapping_add(i.wrapping_mul(8))), Ok(0)))
}

/// Read the entry of `level` that translates `va` in `table`, record the
/// table, and check the entry: present, no reserved bits. Accumulates the
/// entry's rights into `rights`. `Err` carries the walk's final outcome.
fn read_entry<M: GuestPhysRead + ?Sized>(
    mem: &mut M,
    paging: &GuestPaging,
    tables: &mut TablePages,
    rights: &mut Rights,
    level: Level,
    table: u64,
    va: u64,
) -> Result<Entry, WalkOutcome> {
    // `table` is 4 KiB-aligned and the index is below 512: the OR is the sum.
    let entry_gpa = table | (level.index(va) << 3);
    let raw = match mem.read_u64(entry_gpa) {
        Ok(raw) => raw,
        Err(ReadError::OutsideGuestMemory) => {
            return Err(WalkOutcome::Invalid(Invalid::OutsideGuestMemory {
                level,
                gpa: entry_gpa,
            }))
        }
        Err(ReadError::Retry) => {
            return Err(WalkOutcome::Invalid(Invalid::RetryLater {
                level,
                gpa: entry_gpa,
            }))
        }
    };
    tables.push(table);
    let entry = Entry(raw);
    if let Some(kind) = classify_not_present(entry, level, &paging.swap_layout) {
        return Err(WalkOutcome::NotPresent {
            level,
            entry: raw,
            entry_gpa,
            kind,
        });
    }
    if entry.reserved_bits(level, &paging.features) != 0 {
        return Err(WalkOutcome::Invalid(Invalid::ReservedBits { level, entry: raw }));
    }
    rights.writable &= entry.writable();
    rights.user &= entry.user();
    rights.nx |= entry.nx();
    Ok(entry)
}

/// The outcome for a present leaf `entry` mapping a page of `size`.
fn resident(entry: Entry, size: PageSize, rights: Rights, va: u64) -> WalkOutcome {
    let page_base_gpa = entry.frame_gpa(size);
    WalkOutcome::Resident {
        // The base is size-aligned and the offset below the size: the OR is
        // the sum.
        gpa: page_base_gpa | (va & size.offset_mask()),
        page_base_gpa,
        page_size: size,
        writable: rights.writable,
        user: rights.user,
        nx: rights.nx,
    }
}

#[cfg(test)]
mod tests {
    use super::super::pte::{
        Inaccessible, SoftLeafKind, PTE_GLOBAL, PTE_NX, PTE_PRESENT, PTE_PS, PTE_RW, PTE_USER,
    };
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// A sparse guest memory: 8-byte words by address, with regions that
    /// read as "outside" or "retry", and a log of every read.
    #[derive(Default)]
    struct Memory {
        words: BTreeMap<u64, u64>,
        retry_pages: Vec<u64>,
        limit: u64,
        reads: Vec<u64>,
    }

    impl Memory {
        fn new() -> Self {
            Memory {
                limit: 1 << 40,
                ..Default::default()
            }
        }
        fn set(&mut self, gpa: u64, val: u64) {
            self.words.insert(gpa, val);
        }
    }

    impl GuestPhysRead for Memory {
        fn read_u64(&mut self, gpa: u64) -> Result<u64, ReadError> {
            assert_eq!(gpa % 8, 0, "unaligned read {gpa:#x}");
            assert!(gpa < 1 << 52, "read above 2^52: {gpa:#x}");
            self.reads.push(gpa);
            if gpa >= self.limit {
                return Err(ReadError::OutsideGuestMemory);
            }
            if self.retry_pages.contains(&(gpa & !0xfff)) {
                return Err(ReadError::Retry);
            }
            Ok(self.words.get(&gpa).copied().unwrap_or(0))
        }
    }

    const T: u64 = PTE_PRESENT | PTE_RW | PTE_USER; // a non-leaf entry's flags

    #[test]
    fn address_space_gone_only_with_the_whole_user_half_empty() {
        for la57 in [false, true] {
            let root = 0x10_0000;
            let mut mem = Memory::new();
            // The kernel half stays mapped in a dead process's table.
            mem.set(root + 511 * 8, 0x20_0000 | T);
            let w = walk(&mut mem, &paging(la57), root, USER_VA);
            assert!(shows_address_space_gone(&mut mem, &paging(la57), root, &w));
            // Another user entry still present: only this range is unmapped.
            mem.set(root + 8, 0x30_0000 | T);
            assert!(!shows_address_space_gone(&mut mem, &paging(la57), root, &w));
            // An unreadable table shows nothing.
            let mut mem = Memory::new();
            mem.retry_pages.push(root);
            let w = walk(&mut mem, &paging(la57), root, USER_VA);
            assert!(!shows_address_space_gone(&mut mem, &paging(la57), root, &w));
            // A walk that went further down (an empty PDPT entry) shows
            // nothing about the address space, whatever the table holds.
            let mut mem = Memory::new();
            let entries = chain(&mut mem, la57, USER_VA, root);
            let pdpt = entries[entries.len() - 3];
            mem.set(pdpt, 0);
            let w = walk(&mut mem, &paging(la57), root, USER_VA);
            assert!(matches!(w.outcome, WalkOutcome::NotPresent { level: Level::Pdpt, .. }));
            assert!(!shows_address_space_gone(&mut mem, &paging(la57), root, &w));
        }
    }

    fn paging(la57: bool) -> GuestPaging {
        GuestPaging {
            la57,
            features: PagingFeatures::new(46),
            swap_layout: LinuxSwapLayout::distro_default(),
        }
    }

    /// Builds a chain of tables for `va`, one page per level starting at
    /// `base`, and returns the GPAs of the entries, top level first.
    fn chain(mem: &mut Memory, la57: bool, va: u64, base: u64) -> Vec<u64> {
        let levels: &[Level] = if la57 {
            &[Level::Pml5, Level::Pml4, Level::Pdpt, Level::Pd, Level::Pt]
        } else {
            &[Level::Pml4, Level::Pdpt, Level::Pd, Level::Pt]
        };
        let mut out = Vec::new();
        for (i, level) in levels.iter().enumerate() {
            let table = base + 0x1000 * i as u64;
            let gpa = table + level.index(va) * 8;
            if i + 1 < levels.len() {
                mem.set(gpa, (table + 0x1000) | T);
            }
            out.push(gpa);
        }
        out
    }

    const USER_VA: u64 = 0x0000_7f12_3456_7abc;

    #[test]
    fn four_level_4k_page() {
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        mem.set(entries[3], 0x8000_0000_dead_b000 | T | PTE_GLOBAL);
        let w = walk(&mut mem, &paging(false), 0x10_0000, USER_VA);
        assert_eq!(
            w.outcome,
            WalkOutcome::Resident {
                gpa: 0xdead_babc,
                page_base_gpa: 0xdead_b000,
                page_size: PageSize::Size4K,
                writable: true,
                user: true,
                nx: true,
            }
        );
        assert_eq!(mem.reads, entries);
        assert_eq!(w.tables.as_slice(), &[0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000]);
        assert_eq!(w.tables.len(), 4);
        assert!(w.tables.contains(0x10_2ff8) && !w.tables.contains(0x10_4000));
    }

    #[test]
    fn five_level_4k_page_reads_five_entries() {
        let va = 0x00ab_cdef_1234_5678;
        let mut mem = Memory::new();
        let entries = chain(&mut mem, true, va, 0x20_0000);
        mem.set(entries[4], 0x0000_0001_2345_6000 | PTE_PRESENT);
        let w = walk(&mut mem, &paging(true), 0x20_0000, va);
        assert_eq!(
            w.outcome,
            WalkOutcome::Resident {
                gpa: 0x1_2345_6678,
                page_base_gpa: 0x1_2345_6000,
                page_size: PageSize::Size4K,
                writable: false,
                user: false,
                nx: false,
            }
        );
        assert_eq!(mem.reads, entries);
        assert_eq!(w.tables.len(), 5);
        // The same address is non-canonical for 4-level paging.
        mem.reads.clear();
        let w4 = walk(&mut mem, &paging(false), 0x20_0000, va);
        assert_eq!(w4.outcome, WalkOutcome::Invalid(Invalid::NonCanonical));
        assert!(w4.tables.is_empty());
        assert!(mem.reads.is_empty());
    }

    #[test]
    fn two_mib_page() {
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        mem.set(entries[2], 0x4060_0000 | PTE_PRESENT | PTE_PS | PTE_USER | (1 << 12));
        let w = walk(&mut mem, &paging(false), 0x10_0000, USER_VA);
        assert_eq!(
            w.outcome,
            WalkOutcome::Resident {
                gpa: 0x4060_0000 | (USER_VA & 0x1f_ffff),
                page_base_gpa: 0x4060_0000,
                page_size: PageSize::Size2M,
                writable: false,
                user: true,
                nx: false,
            }
        );
        assert_eq!(mem.reads.len(), 3);
        assert_eq!(w.tables.len(), 3);
    }

    #[test]
    fn one_gib_page() {
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        mem.set(entries[1], (5 << 30) | T | PTE_PS);
        let w = walk(&mut mem, &paging(false), 0x10_0000, USER_VA);
        assert_eq!(
            w.outcome,
            WalkOutcome::Resident {
                gpa: (5 << 30) | (USER_VA & 0x3fff_ffff),
                page_base_gpa: 5 << 30,
                page_size: PageSize::Size1G,
                writable: true,
                user: true,
                nx: false,
            }
        );
        assert_eq!(mem.reads.len(), 2);
        // Without 1 GiB pages the same entry has a reserved bit.
        let mut p = paging(false);
        p.features.gbpages = false;
        let w = walk(&mut mem, &p, 0x10_0000, USER_VA);
        assert_eq!(
            w.outcome,
            WalkOutcome::Invalid(Invalid::ReservedBits {
                level: Level::Pdpt,
                entry: (5 << 30) | T | PTE_PS
            })
        );
    }

    #[test]
    fn rights_are_and_and_or_of_levels() {
        for (clear_level, flag) in [(0, PTE_RW), (1, PTE_USER), (2, PTE_RW), (3, PTE_USER)] {
            let mut mem = Memory::new();
            let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
            mem.set(entries[3], 0x5000 | T);
            let v = mem.words[&entries[clear_level]];
            mem.set(entries[clear_level], v & !flag);
            match walk(&mut mem, &paging(false), 0x10_0000, USER_VA).outcome {
                WalkOutcome::Resident {
                    writable, user, nx, ..
                } => {
                    assert_eq!(writable, flag != PTE_RW, "level {clear_level}");
                    assert_eq!(user, flag != PTE_USER, "level {clear_level}");
                    assert!(!nx);
                }
                other => panic!("{other:?}"),
            }
        }
        // NX at an upper level only.
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        mem.set(entries[3], 0x5000 | T);
        mem.set(entries[0], mem.words[&entries[0]] | PTE_NX);
        assert!(matches!(
            walk(&mut mem, &paging(false), 0x10_0000, USER_VA).outcome,
            WalkOutcome::Resident { nx: true, writable: true, user: true, .. }
        ));
    }

    #[test]
    fn reserved_bits_at_each_level() {
        for la57 in [false, true] {
            let n = if la57 { 5 } else { 4 };
            for i in 0..n {
                let mut mem = Memory::new();
                let entries = chain(&mut mem, la57, USER_VA, 0x10_0000);
                mem.set(entries[n - 1], 0x5000 | T);
                // Bit 46 is above MAXPHYADDR (46): reserved at every level.
                let bad = mem.words[&entries[i]] | (1 << 46);
                mem.set(entries[i], bad);
                let w = walk(&mut mem, &paging(la57), 0x10_0000, USER_VA);
                let level = Level::from_number(u8::try_from(n - i).unwrap()).unwrap();
                assert_eq!(
                    w.outcome,
                    WalkOutcome::Invalid(Invalid::ReservedBits { level, entry: bad })
                );
                assert_eq!(mem.reads.len(), i + 1);
                assert_eq!(w.tables.len(), i + 1);
            }
        }
    }

    #[test]
    fn ps_in_pml4_and_pml5_is_reserved() {
        for la57 in [false, true] {
            let mut mem = Memory::new();
            let entries = chain(&mut mem, la57, USER_VA, 0x10_0000);
            let bad = mem.words[&entries[0]] | PTE_PS;
            mem.set(entries[0], bad);
            let level = if la57 { Level::Pml5 } else { Level::Pml4 };
            assert_eq!(
                walk(&mut mem, &paging(la57), 0x10_0000, USER_VA).outcome,
                WalkOutcome::Invalid(Invalid::ReservedBits { level, entry: bad })
            );
        }
        // Level 4 under 5-level paging too.
        let mut mem = Memory::new();
        let entries = chain(&mut mem, true, USER_VA, 0x10_0000);
        let bad = mem.words[&entries[1]] | PTE_PS;
        mem.set(entries[1], bad);
        assert_eq!(
            walk(&mut mem, &paging(true), 0x10_0000, USER_VA).outcome,
            WalkOutcome::Invalid(Invalid::ReservedBits { level: Level::Pml4, entry: bad })
        );
    }

    #[test]
    fn misaligned_large_frames_are_reserved() {
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        let bad = 0x4060_0000 | (1 << 16) | PTE_PRESENT | PTE_PS;
        mem.set(entries[2], bad);
        assert_eq!(
            walk(&mut mem, &paging(false), 0x10_0000, USER_VA).outcome,
            WalkOutcome::Invalid(Invalid::ReservedBits { level: Level::Pd, entry: bad })
        );
        let bad = (1 << 30) | (1 << 21) | T | PTE_PS;
        mem.set(entries[1], bad);
        assert_eq!(
            walk(&mut mem, &paging(false), 0x10_0000, USER_VA).outcome,
            WalkOutcome::Invalid(Invalid::ReservedBits { level: Level::Pdpt, entry: bad })
        );
    }

    #[test]
    fn not_present_at_each_level_reports_entry_and_kind() {
        // __swp_entry(0, 0x1234), as in pte.rs's tests.
        let swap = ((!0x1234u64) << 14) >> 5;
        for la57 in [false, true] {
            let n = if la57 { 5 } else { 4 };
            for i in 0..n {
                let mut mem = Memory::new();
                let entries = chain(&mut mem, la57, USER_VA, 0x10_0000);
                mem.set(entries[i], swap);
                let w = walk(&mut mem, &paging(la57), 0x10_0000, USER_VA);
                let level = Level::from_number(u8::try_from(n - i).unwrap()).unwrap();
                match w.outcome {
                    WalkOutcome::NotPresent {
                        level: l,
                        entry,
                        entry_gpa,
                        kind,
                    } => {
                        assert_eq!(l, level);
                        assert_eq!(entry, swap);
                        assert_eq!(entry_gpa, entries[i]);
                        // Linux swap entries live at levels 1 to 3 only.
                        if level.number() <= 3 {
                            assert!(kind.is_swapped_out());
                        } else {
                            assert_eq!(kind, NotPresentKind::Unrecognised);
                        }
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(w.tables.len(), i + 1);
            }
        }
    }

    #[test]
    fn not_present_classes_reach_the_walker() {
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        let cases = [
            (0u64, NotPresentKind::Empty),
            (0x60, NotPresentKind::Empty),
        ];
        for (raw, kind) in cases {
            mem.set(entries[3], raw);
            assert!(matches!(
                walk(&mut mem, &paging(false), 0x10_0000, USER_VA).outcome,
                WalkOutcome::NotPresent { kind: k, level: Level::Pt, .. } if k == kind
            ));
        }
        // PROT_NONE: resident, frame decoded from the inverted PFN.
        mem.set(entries[3], (!0x77_7000u64 & ADDR_MASK_4K) | PTE_GLOBAL | 0x20);
        assert!(matches!(
            walk(&mut mem, &paging(false), 0x10_0000, USER_VA).outcome,
            WalkOutcome::NotPresent {
                kind: NotPresentKind::Resident { why: Inaccessible::ProtNone, frame_gpa: 0x77_7000 },
                ..
            }
        ));
        // A migration entry (type 25 in the distro layout).
        mem.set(entries[3], (((!0x99u64) << 14) >> 5) | (25 << 59));
        match walk(&mut mem, &paging(false), 0x10_0000, USER_VA).outcome {
            WalkOutcome::NotPresent {
                kind: NotPresentKind::SoftLeaf(leaf),
                ..
            } => {
                assert_eq!(leaf.kind, SoftLeafKind::MigrationRead);
                assert_eq!(leaf.pfn(false), Some(0x99));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_present_entries_skip_reserved_bit_checks() {
        // A not-present entry full of "reserved" bits is a soft leaf, not
        // a reserved-bit fault: the CPU ignores all its other bits.
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        mem.set(entries[2], !(PTE_PRESENT | PTE_PS | PTE_GLOBAL));
        assert!(matches!(
            walk(&mut mem, &paging(false), 0x10_0000, USER_VA).outcome,
            WalkOutcome::NotPresent { level: Level::Pd, kind: NotPresentKind::SoftLeaf(_), .. }
        ));
    }

    #[test]
    fn outside_guest_memory_at_root_and_below() {
        let mut mem = Memory::new();
        let root = 1 << 41; // beyond mem.limit
        let w = walk(&mut mem, &paging(false), root, USER_VA);
        assert_eq!(
            w.outcome,
            WalkOutcome::Invalid(Invalid::OutsideGuestMemory {
                level: Level::Pml4,
                gpa: root + Level::Pml4.index(USER_VA) * 8
            })
        );
        assert!(w.tables.is_empty());

        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        mem.set(entries[1], (1 << 42) | T);
        let w = walk(&mut mem, &paging(false), 0x10_0000, USER_VA);
        assert_eq!(
            w.outcome,
            WalkOutcome::Invalid(Invalid::OutsideGuestMemory {
                level: Level::Pd,
                gpa: (1 << 42) + Level::Pd.index(USER_VA) * 8
            })
        );
        assert_eq!(w.tables.len(), 2);
    }

    #[test]
    fn retry_later() {
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        mem.set(entries[3], 0x5000 | T);
        mem.retry_pages.push(0x10_3000);
        let w = walk(&mut mem, &paging(false), 0x10_0000, USER_VA);
        assert_eq!(
            w.outcome,
            WalkOutcome::Invalid(Invalid::RetryLater {
                level: Level::Pt,
                gpa: entries[3]
            })
        );
        assert_eq!(w.tables.as_slice(), &[0x10_0000, 0x10_1000, 0x10_2000]);
    }

    #[test]
    fn self_referencing_tables_are_bounded_and_deduplicated() {
        // Every entry points back to the root: four reads of the same page,
        // one tracked page, and the level-1 "leaf" is the root page itself.
        let va = 0; // index 0 at every level
        for la57 in [false, true] {
            let mut mem = Memory::new();
            mem.set(0x10_0000, 0x10_0000 | T);
            let w = walk(&mut mem, &paging(la57), 0x10_0000, va);
            assert_eq!(mem.reads.len(), if la57 { 5 } else { 4 });
            assert_eq!(w.tables.as_slice(), &[0x10_0000]);
            assert!(matches!(w.outcome, WalkOutcome::Resident { page_base_gpa: 0x10_0000, .. }));
        }
    }

    #[test]
    fn at_most_five_reads_for_any_memory() {
        // Every word of memory is the same value: every value of a small
        // sample of entry shapes, in both paging modes.
        let shapes = [
            0,
            T,
            T | PTE_PS,
            T | PTE_NX,
            u64::MAX,
            0x8000_0000_0000_0fff,
            0x000f_ffff_ffff_f001,
            0x0000_0000_0010_0067,
            0x7fff_ffff_ffff_fffe,
        ];
        struct Constant(u64, usize);
        impl GuestPhysRead for Constant {
            fn read_u64(&mut self, _gpa: u64) -> Result<u64, ReadError> {
                self.1 += 1;
                Ok(self.0)
            }
        }
        for la57 in [false, true] {
            for &shape in &shapes {
                for va in [0, USER_VA, u64::MAX, 0xffff_8000_0000_0000] {
                    let mut mem = Constant(shape, 0);
                    let w = walk(&mut mem, &paging(la57), shape, va);
                    assert!(mem.1 <= 5);
                    assert!(w.tables.len() <= mem.1);
                }
            }
        }
    }

    #[test]
    fn canonical_addresses() {
        for (va, four, five) in [
            (0, true, true),
            (0x0000_7fff_ffff_ffff, true, true),
            (0x0000_8000_0000_0000, false, true),
            (0xffff_8000_0000_0000, true, true),
            (0xffff_7fff_ffff_ffff, false, true),
            (0x00ff_ffff_ffff_ffff, false, true),
            (0x0100_0000_0000_0000, false, false),
            (0xff00_0000_0000_0000, false, true),
            (0xfeff_ffff_ffff_ffff, false, false),
            (u64::MAX, true, true),
            (1 << 63, false, false),
        ] {
            assert_eq!(is_canonical(va, false), four, "{va:#x} 4-level");
            assert_eq!(is_canonical(va, true), five, "{va:#x} 5-level");
        }
        let mut mem = Memory::new();
        let w = walk(&mut mem, &paging(true), 0x10_0000, 1 << 63);
        assert_eq!(w.outcome, WalkOutcome::Invalid(Invalid::NonCanonical));
        assert!(mem.reads.is_empty());
    }

    #[test]
    fn kernel_half_addresses_walk_the_upper_indices() {
        let va = 0xffff_8880_0123_4567u64;
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, va, 0x10_0000);
        mem.set(entries[3], 0x9000 | PTE_PRESENT | PTE_RW);
        let w = walk(&mut mem, &paging(false), 0x10_0000, va);
        assert!(matches!(
            w.outcome,
            WalkOutcome::Resident { gpa: 0x9567, user: false, writable: true, .. }
        ));
        assert_eq!(mem.reads[0], 0x10_0000 + 0x111 * 8);
    }

    #[test]
    fn cr3_bits_outside_the_address_are_ignored() {
        let mut mem = Memory::new();
        let entries = chain(&mut mem, false, USER_VA, 0x10_0000);
        mem.set(entries[3], 0x5000 | T);
        let noisy = 0x10_0000 | 0xfff | CR3_LAM_U48 | CR3_LAM_U57 | CR3_PCID_NOFLUSH | (0x1ff << 52);
        assert_eq!(cr3_root_gpa(noisy), 0x10_0000);
        let w = walk(&mut mem, &paging(false), noisy, USER_VA);
        assert!(matches!(w.outcome, WalkOutcome::Resident { page_base_gpa: 0x5000, .. }));
        assert_eq!(mem.reads[0], entries[0]);
    }

    #[test]
    fn pcid() {
        assert_eq!(cr3_pcid(0x1234_5abc, true), 0xabc);
        assert_eq!(cr3_pcid(0x1234_5abc | CR3_PCID_NOFLUSH, true), 0xabc);
        assert_eq!(cr3_pcid(0x1234_5abc, false), 0);
    }

    #[test]
    fn kpti_pairs() {
        let kernel = 0x0000_0001_2345_6000u64; // 8 KiB aligned
        let user = kernel | (1 << PTI_USER_PGTABLE_BIT);
        // Linux PTI with PCID: kernel ASID n, user ASID n | bit 11
        // (X86_CR3_PTI_PCID_USER_BIT), user CR3 also has bit 12.
        let kernel_cr3 = kernel | 0x3;
        let user_cr3 = user | 0x3 | (1 << 11) | CR3_PCID_NOFLUSH;
        assert!(same_address_space(kernel_cr3, user_cr3, true));
        assert!(same_address_space(user_cr3, kernel_cr3, true));
        assert!(same_address_space(user_cr3, user_cr3, false));
        // Without KPTI the two are different processes' PGDs.
        assert!(!same_address_space(kernel_cr3, user_cr3, false));
        // A different pair never matches.
        assert!(!same_address_space(kernel, kernel + 0x2000, true));
        assert!(same_address_space(kernel | CR3_LAM_U57, kernel | CR3_LAM_U48, false));

        let space = AddressSpace::from_cr3(user_cr3, true);
        assert_eq!(space.root_gpa(), kernel);
        assert!(space.kpti());
        assert!(space.matches_cr3(kernel_cr3) && space.matches_cr3(user_cr3));
        assert!(!space.matches_cr3(kernel + 0x2000));
        let plain = AddressSpace::from_cr3(user_cr3, false);
        assert_eq!(plain.root_gpa(), user);
        assert!(!plain.kpti());
        assert!(plain.matches_cr3(user | 0x7));
        assert!(!plain.matches_cr3(kernel_cr3));
        assert_eq!(address_space_root(user_cr3, true), kernel);
        assert_eq!(address_space_root(user_cr3, false), user);
    }

    #[test]
    fn table_pages_capacity_and_default() {
        let mut t = TablePages::default();
        assert!(t.is_empty());
        for i in 0..7u64 {
            t.push(i << 12);
            t.push(i << 12); // repeats are ignored
        }
        assert_eq!(t.as_slice(), &[0, 0x1000, 0x2000, 0x3000, 0x4000]);
        assert!(!t.contains(0x5000));
    }
}
