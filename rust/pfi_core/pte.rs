// SPDX-License-Identifier: GPL-2.0

//! x86-64 page-table entry decoding.
//!
//! Two halves:
//!
//! - Hardware: the flags and address of a *present* entry at each level of
//!   4-level or 5-level paging, and its reserved bits exactly as KVM computes
//!   them for the guest (`__reset_rsvds_bits_mask()` in
//!   `arch/x86/kvm/mmu/mmu.c`), so that the walk faults where the guest's own
//!   walk would.
//! - Linux: what a Linux 7.3 x86-64 guest means by a *not-present* entry
//!   (`softleaf_from_pte()`/`softleaf_type()` in `include/linux/leafops.h`,
//!   the swap encoding in `arch/x86/include/asm/pgtable_64.h`). Hardware
//!   ignores every bit of a not-present entry except P; Linux stores swap,
//!   migration and marker entries in them, and keeps PROT_NONE pages resident
//!   with P clear.
//!
//! Everything here is a pure function of a `u64` read from guest memory:
//! every value is possible and none makes these functions panic.

/// A paging-structure level, numbered as the SDM does (1 = the table that
/// maps 4 KiB pages).
///
/// Linux names: `Pt` holds PTEs, `Pd` PMDs, `Pdpt` PUDs, `Pml4` P4Ds (the
/// PGD when the guest runs 4-level paging), `Pml5` the PGD of 5-level paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Level 1: page table; its entries map 4 KiB pages.
    Pt = 1,
    /// Level 2: page directory; its entries map 2 MiB pages or a page table.
    Pd = 2,
    /// Level 3: page-directory-pointer table; entries map 1 GiB pages or a
    /// page directory.
    Pdpt = 3,
    /// Level 4: PML4, the root of 4-level paging.
    Pml4 = 4,
    /// Level 5: PML5, the root of 5-level paging (CR4.LA57).
    Pml5 = 5,
}

impl Level {
    /// The level number, 1 (`Pt`) to 5 (`Pml5`).
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The level with this number, if there is one.
    pub const fn from_number(n: u8) -> Option<Level> {
        match n {
            1 => Some(Level::Pt),
            2 => Some(Level::Pd),
            3 => Some(Level::Pdpt),
            4 => Some(Level::Pml4),
            5 => Some(Level::Pml5),
            _ => None,
        }
    }

    /// The lowest virtual-address bit that indexes a table of this level:
    /// 12, 21, 30, 39 or 48.
    pub const fn index_shift(self) -> u32 {
        match self {
            Level::Pt => 12,
            Level::Pd => 21,
            Level::Pdpt => 30,
            Level::Pml4 => 39,
            Level::Pml5 => 48,
        }
    }

    /// The index (0..512) of the entry that translates `va` in a table of
    /// this level.
    pub const fn index(self, va: u64) -> u64 {
        (va >> self.index_shift()) & ENTRY_INDEX_MASK
    }
}

/// Every paging-structure table holds 512 eight-byte entries.
const ENTRY_INDEX_MASK: u64 = 0x1ff;

/// The size of a page mapped by a leaf entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB, mapped by a level-1 entry.
    Size4K,
    /// 2 MiB, mapped by a level-2 entry with PS set.
    Size2M,
    /// 1 GiB, mapped by a level-3 entry with PS set.
    Size1G,
}

impl PageSize {
    /// The page size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// `bytes() - 1`: the mask of the offset of an address within the page.
    pub const fn offset_mask(self) -> u64 {
        match self {
            PageSize::Size4K => 0xfff,
            PageSize::Size2M => 0x1f_ffff,
            PageSize::Size1G => 0x3fff_ffff,
        }
    }

    /// The address field of a leaf entry mapping a page of this size: bits
    /// 12..=51, 21..=51 or 30..=51 (bits above the guest's MAXPHYADDR are
    /// reserved, see [`Entry::reserved_bits`]).
    pub const fn frame_mask(self) -> u64 {
        match self {
            PageSize::Size4K => ADDR_MASK_4K,
            PageSize::Size2M => ADDR_MASK_2M,
            PageSize::Size1G => ADDR_MASK_1G,
        }
    }
}

/// Bits `lo..=hi` set, for `lo <= hi <= 63`. Callers here pass constants or
/// clamped values; out of that range the result is meaningless but the
/// wrapping shifts cannot panic.
const fn bits(lo: u32, hi: u32) -> u64 {
    u64::MAX.wrapping_shr(63u32.wrapping_sub(hi)) & u64::MAX.wrapping_shl(lo)
}

/// The architectural maximum physical-address width of x86-64.
pub const MAX_PHYS_ADDR_BITS: u8 = 52;

/// Address field of a 4 KiB leaf or of any non-leaf entry: bits 12..=51.
/// Also Linux's `PTE_PFN_MASK` (for a guest without memory encryption).
pub const ADDR_MASK_4K: u64 = bits(12, 51);
/// Address field of a 2 MiB leaf (Linux `PHYSICAL_PMD_PAGE_MASK`).
pub const ADDR_MASK_2M: u64 = bits(21, 51);
/// Address field of a 1 GiB leaf (Linux `PHYSICAL_PUD_PAGE_MASK`).
pub const ADDR_MASK_1G: u64 = bits(30, 51);

/// Bit 0: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Bit 1: writable.
pub const PTE_RW: u64 = 1 << 1;
/// Bit 2: user-accessible.
pub const PTE_USER: u64 = 1 << 2;
/// Bit 3: page-level write-through.
pub const PTE_PWT: u64 = 1 << 3;
/// Bit 4: page-level cache disable.
pub const PTE_PCD: u64 = 1 << 4;
/// Bit 5: accessed.
pub const PTE_ACCESSED: u64 = 1 << 5;
/// Bit 6: dirty (leaf entries only).
pub const PTE_DIRTY: u64 = 1 << 6;
/// Bit 7: page size at levels 2 and 3 (the PAT bit at level 1, reserved at
/// levels 4 and 5).
pub const PTE_PS: u64 = 1 << 7;
/// Bit 8: global (leaf entries only). In a not-present entry Linux calls it
/// `_PAGE_PROTNONE`.
pub const PTE_GLOBAL: u64 = 1 << 8;
/// Bits 59..=62: protection key of a leaf entry (when CR4.PKE/PKS is set).
pub const PTE_PKEY_MASK: u64 = bits(59, 62);
/// Bit 63: execute-disable (reserved unless EFER.NXE).
pub const PTE_NX: u64 = 1 << 63;

/// The paging features of the guest's vCPU that decide which bits of a
/// present entry are reserved. Read them from the guest's CPUID and EFER as
/// KVM sees them (`vcpu->arch.maxphyaddr`, `is_efer_nx()`,
/// `guest_cpu_cap_has(X86_FEATURE_GBPAGES)`, the vendor of the KVM module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingFeatures {
    /// The guest's MAXPHYADDR (CPUID 0x80000008 EAX bits 7..=0). Bits from this one
    /// up to bit 51 of a present entry are reserved. Values above 52 act as
    /// 52, values below 12 as 12 (no addressable memory at all).
    pub maxphyaddr: u8,
    /// EFER.NXE: when clear, bit 63 (XD) of every present entry is reserved.
    pub nx: bool,
    /// CPUID 0x80000001 EDX.Page1GB: when clear, PS in a level-3 entry is
    /// reserved.
    pub gbpages: bool,
    /// An AMD (SVM) vCPU: bit 8 of level-4 and level-5 entries is reserved.
    pub amd: bool,
}

impl PagingFeatures {
    /// What a 64-bit Linux guest on a current CPU has: NX enabled, 1 GiB
    /// pages, an Intel vCPU; only MAXPHYADDR varies.
    pub const fn new(maxphyaddr: u8) -> Self {
        PagingFeatures {
            maxphyaddr,
            nx: true,
            gbpages: true,
            amd: false,
        }
    }

    /// Bits `maxphyaddr..=51`: the physical-address bits of an entry that
    /// this guest may not use (KVM's `reserved_gpa_bits & rsvd_bits(0, 51)`).
    pub const fn phys_reserved_mask(&self) -> u64 {
        let width = if self.maxphyaddr > MAX_PHYS_ADDR_BITS {
            MAX_PHYS_ADDR_BITS
        } else if self.maxphyaddr < 12 {
            12
        } else {
            self.maxphyaddr
        };
        if width >= MAX_PHYS_ADDR_BITS {
            0
        } else {
            // 12 <= width <= 51: a valid range.
            bits(width as u32, 51)
        }
    }
}

/// One raw 64-bit paging-structure entry, as read from guest memory.
///
/// The flag accessors report the bit whatever the level and the present
/// bit; what a bit means depends on both (see each accessor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry(pub u64);

impl Entry {
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// P (bit 0): the entry is used by the hardware walk. When clear, every
    /// other bit is ignored by the CPU and free for the OS.
    pub const fn present(self) -> bool {
        self.0 & PTE_PRESENT != 0
    }

    /// R/W (bit 1): writes allowed (effective only if set at every level).
    pub const fn writable(self) -> bool {
        self.0 & PTE_RW != 0
    }

    /// U/S (bit 2): user-mode access allowed (effective only if set at every
    /// level).
    pub const fn user(self) -> bool {
        self.0 & PTE_USER != 0
    }

    /// PWT (bit 3): write-through caching for the page or the next table.
    pub const fn write_through(self) -> bool {
        self.0 & PTE_PWT != 0
    }

    /// PCD (bit 4): caching disabled for the page or the next table.
    pub const fn cache_disabled(self) -> bool {
        self.0 & PTE_PCD != 0
    }

    /// A (bit 5): the entry was used by a hardware walk.
    pub const fn accessed(self) -> bool {
        self.0 & PTE_ACCESSED != 0
    }

    /// D (bit 6): the page was written (meaningful in leaf entries only).
    pub const fn dirty(self) -> bool {
        self.0 & PTE_DIRTY != 0
    }

    /// PS (bit 7): at levels 2 and 3 the entry maps a 2 MiB / 1 GiB page. At
    /// level 1 this bit is PAT, at levels 4 and 5 it is reserved.
    pub const fn page_size(self) -> bool {
        self.0 & PTE_PS != 0
    }

    /// G (bit 8): global translation (meaningful in leaf entries only).
    pub const fn global(self) -> bool {
        self.0 & PTE_GLOBAL != 0
    }

    /// XD (bit 63): instruction fetches not allowed (effective if set at any
    /// level; reserved when EFER.NXE is clear).
    pub const fn nx(self) -> bool {
        self.0 & PTE_NX != 0
    }

    /// Protection key (bits 59..=62) of a leaf entry.
    pub const fn protection_key(self) -> u8 {
        // Four bits after the shift: the cast is lossless.
        ((self.0 & PTE_PKEY_MASK) >> 59) as u8
    }

    /// Whether a present entry at `level` maps a page (rather than pointing
    /// to the next table): always at level 1, when PS is set at levels 2
    /// and 3, never at levels 4 and 5 (where PS is a reserved bit).
    pub const fn leaf_size(self, level: Level) -> Option<PageSize> {
        match level {
            Level::Pt => Some(PageSize::Size4K),
            Level::Pd if self.page_size() => Some(PageSize::Size2M),
            Level::Pdpt if self.page_size() => Some(PageSize::Size1G),
            _ => None,
        }
    }

    /// The guest-physical address of the next-level table of a present
    /// non-leaf entry (bits 12..=51).
    pub const fn table_gpa(self) -> u64 {
        self.0 & ADDR_MASK_4K
    }

    /// The guest-physical base address of the page mapped by a present leaf
    /// entry of this size.
    pub const fn frame_gpa(self, size: PageSize) -> u64 {
        self.0 & size.frame_mask()
    }

    /// The reserved bits of this entry that are set, as a mask; zero when
    /// none is. Meaningful for present entries only (the CPU checks nothing
    /// else in a not-present one). A non-zero result means the guest's own
    /// access would take a #PF with the RSVD error-code bit.
    pub const fn reserved_bits(self, level: Level, features: &PagingFeatures) -> u64 {
        self.0 & reserved_mask(level, self.page_size(), features)
    }
}

/// The reserved bits of a present entry at `level` whose PS bit is `ps`:
/// KVM's `rsvd_bits_mask[ps][level - 1]` for 4-level and 5-level paging.
///
/// - all levels: bits `MAXPHYADDR..=51`; bit 63 unless EFER.NXE;
/// - levels 4 and 5: PS (bit 7); on AMD also bit 8;
/// - level 3: PS unless the guest has 1 GiB pages; with PS, bits 13..=29
///   (the low address bits of a 1 GiB frame; bit 12 is PAT);
/// - level 2 with PS: bits 13..=20 (low bits of a 2 MiB frame);
/// - level 1: nothing beyond the common bits (bit 7 is PAT).
pub const fn reserved_mask(level: Level, ps: bool, features: &PagingFeatures) -> u64 {
    let mut mask = features.phys_reserved_mask();
    if !features.nx {
        mask |= PTE_NX;
    }
    match level {
        Level::Pml5 | Level::Pml4 => {
            mask |= PTE_PS;
            if features.amd {
                mask |= PTE_GLOBAL;
            }
        }
        Level::Pdpt => {
            if !features.gbpages {
                mask |= PTE_PS;
            }
            if ps {
                mask |= bits(13, 29);
            }
        }
        Level::Pd => {
            if ps {
                mask |= bits(13, 20);
            }
        }
        Level::Pt => {}
    }
    mask
}

// ---------------------------------------------------------------------------
// Not-present entries of a Linux x86-64 guest.
// ---------------------------------------------------------------------------

/// `_PAGE_PROTNONE` (`_PAGE_BIT_PROTNONE` = `_PAGE_BIT_GLOBAL` = 8,
/// pgtable_types.h): in an entry with P clear, marks a resident page that
/// Linux made inaccessible (mprotect(PROT_NONE), NUMA-balancing hinting).
pub const LINUX_PAGE_PROTNONE: u64 = PTE_GLOBAL;

/// `_PAGE_KNL_ERRATUM_MASK` (`_PAGE_DIRTY | _PAGE_ACCESSED`,
/// pgtable_types.h): Knights Landing may set A and D in a not-present entry,
/// so Linux's `pte_none()`, `pmd_none()`, `pud_none()`, `p4d_none()` ignore
/// them.
pub const LINUX_KNL_ERRATUM_MASK: u64 = PTE_DIRTY | PTE_ACCESSED;

/// `_PAGE_SWP_SOFT_DIRTY` = `_PAGE_RW` (bit 1, with CONFIG_MEM_SOFT_DIRTY).
pub const LINUX_SWP_SOFT_DIRTY: u64 = PTE_RW;
/// `_PAGE_SWP_UFFD` = `_PAGE_USER` (bit 2, with
/// CONFIG_HAVE_ARCH_USERFAULTFD_WP, which x86-64 has).
pub const LINUX_SWP_UFFD_WP: u64 = PTE_USER;
/// `_PAGE_SWP_EXCLUSIVE` = `_PAGE_PWT` (bit 3, pgtable_64_types.h):
/// remembers PG_anon_exclusive.
pub const LINUX_SWP_EXCLUSIVE: u64 = PTE_PWT;

/// `SWP_TYPE_BITS` (pgtable_64.h): the type lives in bits 59..=63.
pub const LINUX_SWP_TYPE_BITS: u32 = 5;
/// `SWP_OFFSET_FIRST_BIT` = `_PAGE_BIT_PROTNONE + 1` (pgtable_64.h).
pub const LINUX_SWP_OFFSET_FIRST_BIT: u32 = 9;
/// `SWP_OFFSET_SHIFT` = `SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS`
/// (pgtable_64.h).
pub const LINUX_SWP_OFFSET_SHIFT: u32 = LINUX_SWP_OFFSET_FIRST_BIT + LINUX_SWP_TYPE_BITS;
/// The width of the offset field: bits 9..=58, 50 bits.
pub const LINUX_SWP_OFFSET_BITS: u32 = 64 - LINUX_SWP_OFFSET_SHIFT;

/// `MAX_SWAPFILES_SHIFT` (include/linux/swap.h): 32 swap types in all, the
/// top ones taken by the special entries below.
pub const LINUX_MAX_SWAPFILES_SHIFT: u32 = 5;
/// `SWP_PTE_MARKER_NUM` (include/linux/swap.h): always one marker type.
pub const LINUX_SWP_PTE_MARKER_NUM: u8 = 1;

/// `PTE_MARKER_UFFD_WP` (swapops.h): a userfaultfd write-protected none PTE.
pub const LINUX_PTE_MARKER_UFFD_WP: u64 = 1 << 0;
/// `PTE_MARKER_POISONED` (swapops.h): future accesses raise SIGBUS.
pub const LINUX_PTE_MARKER_POISONED: u64 = 1 << 1;
/// `PTE_MARKER_GUARD` (swapops.h): a guard region; accesses raise SIGSEGV.
pub const LINUX_PTE_MARKER_GUARD: u64 = 1 << 2;

/// The three Kconfig options of the guest kernel that decide how the 32
/// swap types are split between real swap devices and special entries
/// (`include/linux/swap.h`). Types count down from 31: the PTE marker is
/// always the last, then the device-private, migration and hwpoison types
/// when configured, and what is left (`MAX_SWAPFILES`) are swap devices.
///
/// Getting this wrong misreads migration entries as swap entries or the
/// other way round, so take it from the guest kernel's config when known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxSwapLayout {
    /// CONFIG_DEVICE_PRIVATE: `SWP_DEVICE_NUM` = 3 (`SWP_DEVICE_WRITE`,
    /// `SWP_DEVICE_READ`, `SWP_DEVICE_EXCLUSIVE`: pages migrated to device
    /// memory, HMM) instead of 0.
    pub device_private: bool,
    /// CONFIG_MIGRATION: `SWP_MIGRATION_NUM` = 3 (`SWP_MIGRATION_READ`,
    /// `SWP_MIGRATION_READ_EXCLUSIVE`, `SWP_MIGRATION_WRITE`: a page being
    /// moved, compaction/NUMA) instead of 0.
    pub migration: bool,
    /// CONFIG_MEMORY_FAILURE: `SWP_HWPOISON_NUM` = 1 (`SWP_HWPOISON`: the
    /// page had an uncorrectable memory error) instead of 0.
    pub memory_failure: bool,
}

impl LinuxSwapLayout {
    /// The project's test kernel (x86_64_defconfig + virtme-ng +
    /// scripts/kernel.config) has CONFIG_MIGRATION only: `MAX_SWAPFILES` =
    /// 28; migration 28..=30; marker 31.
    pub const MIGRATION_ONLY: LinuxSwapLayout = LinuxSwapLayout {
        device_private: false,
        migration: true,
        memory_failure: false,
    };

    /// A typical x86-64 distribution kernel (Debian, Ubuntu, Fedora, RHEL all
    /// set DEVICE_PRIVATE, MIGRATION and MEMORY_FAILURE): `MAX_SWAPFILES` =
    /// 24; hwpoison 24; migration 25..=27; device 28..=30; marker 31.
    pub const fn distro_default() -> Self {
        LinuxSwapLayout {
            device_private: true,
            migration: true,
            memory_failure: true,
        }
    }

    /// `SWP_DEVICE_NUM`.
    pub const fn device_num(&self) -> u8 {
        if self.device_private {
            3
        } else {
            0
        }
    }

    /// `SWP_MIGRATION_NUM`.
    pub const fn migration_num(&self) -> u8 {
        if self.migration {
            3
        } else {
            0
        }
    }

    /// `SWP_HWPOISON_NUM`.
    pub const fn hwpoison_num(&self) -> u8 {
        if self.memory_failure {
            1
        } else {
            0
        }
    }

    /// `MAX_SWAPFILES` = `(1 << MAX_SWAPFILES_SHIFT) - SWP_DEVICE_NUM -
    /// SWP_MIGRATION_NUM - SWP_HWPOISON_NUM - SWP_PTE_MARKER_NUM`: types
    /// below it are real swap devices. Between 24 and 31.
    pub const fn max_swapfiles(&self) -> u8 {
        // 32 - (at most 3 + 3 + 1 + 1): never wraps.
        (1u8 << LINUX_MAX_SWAPFILES_SHIFT)
            .wrapping_sub(self.device_num())
            .wrapping_sub(self.migration_num())
            .wrapping_sub(self.hwpoison_num())
            .wrapping_sub(LINUX_SWP_PTE_MARKER_NUM)
    }

    /// `SWP_PTE_MARKER` = `MAX_SWAPFILES + SWP_HWPOISON_NUM +
    /// SWP_MIGRATION_NUM + SWP_DEVICE_NUM`, always 31.
    pub const fn pte_marker_type(&self) -> u8 {
        // Adds back what max_swapfiles() took away: at most 31, never wraps.
        self.max_swapfiles()
            .wrapping_add(self.hwpoison_num())
            .wrapping_add(self.migration_num())
            .wrapping_add(self.device_num())
    }

    /// What a Linux guest means by a swap entry of type `swp_type`
    /// (`softleaf_type()` in include/linux/leafops.h).
    pub const fn kind_of_type(&self, swp_type: u8) -> SoftLeafKind {
        let max = self.max_swapfiles();
        if swp_type < max {
            return SoftLeafKind::Swap;
        }
        // Upwards from MAX_SWAPFILES in the order of swap.h: hwpoison, then
        // migration, then device, then the marker. `next` starts at 24..=31
        // and grows by at most 7 more: the wrapping adds never wrap.
        let mut next = max;
        if self.memory_failure {
            if swp_type == next {
                return SoftLeafKind::HwPoison;
            }
            next = next.wrapping_add(1);
        }
        if self.migration {
            if swp_type == next {
                return SoftLeafKind::MigrationRead;
            }
            if swp_type == next.wrapping_add(1) {
                return SoftLeafKind::MigrationReadExclusive;
            }
            if swp_type == next.wrapping_add(2) {
                return SoftLeafKind::MigrationWrite;
            }
            next = next.wrapping_add(3);
        }
        if self.device_private {
            if swp_type == next {
                return SoftLeafKind::DevicePrivateWrite;
            }
            if swp_type == next.wrapping_add(1) {
                return SoftLeafKind::DevicePrivateRead;
            }
            if swp_type == next.wrapping_add(2) {
                return SoftLeafKind::DeviceExclusive;
            }
            next = next.wrapping_add(3);
        }
        if swp_type == next {
            return SoftLeafKind::Marker;
        }
        // Only types above 31 get here, which a 5-bit field cannot hold.
        SoftLeafKind::Unknown
    }
}

impl Default for LinuxSwapLayout {
    fn default() -> Self {
        Self::distro_default()
    }
}

/// What a software leaf entry stands for (`enum softleaf_type`,
/// include/linux/leafops.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoftLeafKind {
    /// The page is in a swap device (type < `MAX_SWAPFILES`): a #PF makes the
    /// guest read it back. The only kind worth injecting for.
    Swap,
    /// `SWP_MIGRATION_READ`: the page is being migrated; faults wait for it.
    MigrationRead,
    /// `SWP_MIGRATION_READ_EXCLUSIVE`: likewise, anonymous and exclusive.
    MigrationReadExclusive,
    /// `SWP_MIGRATION_WRITE`: likewise, was mapped writable.
    MigrationWrite,
    /// `SWP_DEVICE_READ`: migrated to device-private memory, read-only.
    DevicePrivateRead,
    /// `SWP_DEVICE_WRITE`: migrated to device-private memory, writable.
    DevicePrivateWrite,
    /// `SWP_DEVICE_EXCLUSIVE`: mapped exclusively by a device.
    DeviceExclusive,
    /// `SWP_HWPOISON`: memory error; a fault kills the task with SIGBUS.
    HwPoison,
    /// `SWP_PTE_MARKER`: no page; the offset holds `PTE_MARKER_*` bits.
    Marker,
    /// A type this layout does not define (Linux warns and treats it as
    /// none). Cannot happen with a 5-bit type; kept for totality.
    Unknown,
}

/// A Linux swap-format entry (`swp_entry_t` plus the three flag bits the
/// arch keeps beside it), decoded from a not-present entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SoftLeaf {
    /// What the type number means under the layout used to decode it.
    pub kind: SoftLeafKind,
    /// `__swp_type()`: bits 59..=63.
    pub swp_type: u8,
    /// `__swp_offset()`: bits 9..=58, stored inverted (L1TF mitigation). For
    /// swap: the slot in the device; for migration, device and hwpoison: the
    /// PFN (plus flags above it, see [`SoftLeaf::pfn`]); for markers: the
    /// `PTE_MARKER_*` bits.
    pub offset: u64,
    /// `_PAGE_SWP_SOFT_DIRTY` (bit 1).
    pub soft_dirty: bool,
    /// `_PAGE_SWP_UFFD` (bit 2): userfaultfd write-protected.
    pub uffd_wp: bool,
    /// `_PAGE_SWP_EXCLUSIVE` (bit 3): the anonymous page was exclusive.
    pub exclusive: bool,
}

impl SoftLeaf {
    /// The page frame number carried by migration, device-private and
    /// hwpoison entries, `None` for the other kinds. `la57` is whether the
    /// guest kernel runs 5-level paging: the PFN field is `SWP_PFN_BITS` =
    /// `MAX_PHYSMEM_BITS - PAGE_SHIFT` wide (swapops.h), and x86-64's
    /// `MAX_PHYSMEM_BITS` is 52 with 5-level paging, 46 without
    /// (asm/sparsemem.h). Migration entries may keep young/dirty flags just
    /// above the field (`SWP_MIG_YOUNG_BIT`), which this drops.
    pub const fn pfn(&self, la57: bool) -> Option<u64> {
        match self.kind {
            SoftLeafKind::MigrationRead
            | SoftLeafKind::MigrationReadExclusive
            | SoftLeafKind::MigrationWrite
            | SoftLeafKind::DevicePrivateRead
            | SoftLeafKind::DevicePrivateWrite
            | SoftLeafKind::DeviceExclusive
            | SoftLeafKind::HwPoison => {
                // SWP_PFN_BITS = 52 - 12 = 40 or 46 - 12 = 34.
                let pfn_mask = if la57 { bits(0, 39) } else { bits(0, 33) };
                Some(self.offset & pfn_mask)
            }
            SoftLeafKind::Swap | SoftLeafKind::Marker | SoftLeafKind::Unknown => None,
        }
    }

    /// The `PTE_MARKER_*` bits of a marker entry, `None` for other kinds.
    pub const fn marker(&self) -> Option<PteMarker> {
        match self.kind {
            SoftLeafKind::Marker => Some(PteMarker {
                uffd_wp: self.offset & LINUX_PTE_MARKER_UFFD_WP != 0,
                poisoned: self.offset & LINUX_PTE_MARKER_POISONED != 0,
                guard: self.offset & LINUX_PTE_MARKER_GUARD != 0,
            }),
            _ => None,
        }
    }
}

/// The meaning of a PTE marker (swapops.h). None of them has a page behind
/// it: a fault on a guard or poisoned marker kills the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PteMarker {
    /// `PTE_MARKER_UFFD_WP`: userfaultfd write-protection of an empty PTE.
    pub uffd_wp: bool,
    /// `PTE_MARKER_POISONED`: accesses raise SIGBUS.
    pub poisoned: bool,
    /// `PTE_MARKER_GUARD`: a guard region (MADV_GUARD_INSTALL): SIGSEGV.
    pub guard: bool,
}

/// Why a not-present entry of a Linux guest maps a page that is still in
/// guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Inaccessible {
    /// P clear, `_PAGE_PROTNONE` set (`pte_protnone()`): mprotect(PROT_NONE)
    /// or a NUMA-balancing hinting fault armed on the page.
    ProtNone,
    /// Level 2 or 3, P and `_PAGE_PROTNONE` clear, PS set: a huge page
    /// transiently invalidated by `pmdp_invalidate()`/`pudp_invalidate()`
    /// (THP split, mprotect) under the page-table lock (`pmd_present()`
    /// still calls it present).
    HugeInvalidated,
}

/// The classification of a not-present entry written by a Linux x86-64
/// guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotPresentKind {
    /// `pte_none()` and friends: zero apart from A/D (see
    /// [`LINUX_KNL_ERRATUM_MASK`]). Nothing is mapped: never touched, or a
    /// clean file page that was dropped, or no lower table. A #PF here makes
    /// Linux allocate or read a page if a VMA covers the address and sends
    /// SIGSEGV otherwise: not something to inject for.
    Empty,
    /// The page is resident; the guest made it inaccessible.
    Resident {
        /// Why the entry is not present.
        why: Inaccessible,
        /// The guest-physical base of the page. Linux stores the PFN of
        /// such entries inverted (`protnone_mask()`, pgtable-invert.h), so
        /// this is `!entry` under the frame mask of the level and PS bit.
        frame_gpa: u64,
    },
    /// A swap-format entry: swap, migration, device, hwpoison or marker.
    SoftLeaf(SoftLeaf),
    /// Not a format Linux 7.3 writes at this level: a not-present entry at
    /// level 4 or 5 that is not empty (Linux only clears those).
    Unrecognised,
}

impl NotPresentKind {
    /// Whether the page is in a swap device, so that a #PF injected into the
    /// guest makes it read the page back in. False for every other kind,
    /// including migration (resolves by itself) and markers/hwpoison (a
    /// fault would kill the task).
    pub const fn is_swapped_out(&self) -> bool {
        matches!(
            self,
            NotPresentKind::SoftLeaf(SoftLeaf {
                kind: SoftLeafKind::Swap,
                ..
            })
        )
    }
}

/// Decode the swap-format fields of a not-present entry, as Linux 7.3's
/// `softleaf_from_pte()` does after `pte_swp_clear_flags()`:
/// `__swp_type(x)` = `x >> (64 - SWP_TYPE_BITS)` and `__swp_offset(x)` =
/// `~x << SWP_TYPE_BITS >> SWP_OFFSET_SHIFT` (pgtable_64.h). The caller has
/// checked that the entry is neither present nor none.
pub const fn decode_soft_leaf(raw: u64, layout: &LinuxSwapLayout) -> SoftLeaf {
    // Five bits after the shift: the cast is lossless.
    let swp_type = (raw >> (64 - LINUX_SWP_TYPE_BITS)) as u8;
    let offset = (!raw << LINUX_SWP_TYPE_BITS) >> LINUX_SWP_OFFSET_SHIFT;
    SoftLeaf {
        kind: layout.kind_of_type(swp_type),
        swp_type,
        offset,
        soft_dirty: raw & LINUX_SWP_SOFT_DIRTY != 0,
        uffd_wp: raw & LINUX_SWP_UFFD_WP != 0,
        exclusive: raw & LINUX_SWP_EXCLUSIVE != 0,
    }
}

/// Classify an entry of a Linux x86-64 guest at `level` that has P clear;
/// `None` if P is set (the hardware walk uses it: see [`Entry`]).
///
/// The order follows Linux's own tests:
/// 1. Zero apart from A/D: empty (`pte_none()`, `pmd_none()`, ...).
/// 2. Level 4 or 5: unrecognised. Linux only ever clears P4D/PGD entries;
///    whatever else a guest puts there means nothing to its kernel.
/// 3. `_PAGE_PROTNONE` set: resident (`pte_present()`/`pmd_present()`).
/// 4. Levels 2 and 3 with PS set: a transiently invalidated huge page
///    (`pmd_present()` counts PS; Linux keeps bit 7 clear in every swap
///    entry for exactly this reason, see the comment above `SWP_TYPE_BITS`).
/// 5. Otherwise a swap-format entry (`softleaf_from_pte()`), at levels 1 to
///    3: PTE, THP-migration PMD, hugetlb PMD/PUD.
pub const fn classify_not_present(
    entry: Entry,
    level: Level,
    layout: &LinuxSwapLayout,
) -> Option<NotPresentKind> {
    let raw = entry.0;
    if entry.present() {
        return None;
    }
    if raw & !LINUX_KNL_ERRATUM_MASK == 0 {
        return Some(NotPresentKind::Empty);
    }
    match level {
        Level::Pml5 | Level::Pml4 => Some(NotPresentKind::Unrecognised),
        Level::Pdpt | Level::Pd | Level::Pt => {
            if raw & LINUX_PAGE_PROTNONE != 0 {
                Some(NotPresentKind::Resident {
                    why: Inaccessible::ProtNone,
                    frame_gpa: inverted_frame(raw, level),
                })
            } else if entry.page_size() && !matches!(level, Level::Pt) {
                Some(NotPresentKind::Resident {
                    why: Inaccessible::HugeInvalidated,
                    frame_gpa: inverted_frame(raw, level),
                })
            } else {
                Some(NotPresentKind::SoftLeaf(decode_soft_leaf(raw, layout)))
            }
        }
    }
}

/// The frame of a PROT_NONE or invalidated entry: Linux's
/// `pte_pfn()`/`pmd_pfn()`/`pud_pfn()` XOR the value with all ones when P
/// is clear and the value is non-zero, then apply the frame mask of the
/// entry (2 MiB / 1 GiB when PS is set at level 2 / 3).
const fn inverted_frame(raw: u64, level: Level) -> u64 {
    let mask = match level {
        Level::Pd if raw & PTE_PS != 0 => ADDR_MASK_2M,
        Level::Pdpt if raw & PTE_PS != 0 => ADDR_MASK_1G,
        _ => ADDR_MASK_4K,
    };
    !raw & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- mirrors of the C macros, to build test vectors from their
    // definitions rather than from this file's constants ----

    /// arch/x86/include/asm/pgtable_64.h, `__swp_entry(type, offset)`:
    /// `(~(unsigned long)(offset) << SWP_OFFSET_SHIFT >> SWP_TYPE_BITS) |
    /// ((unsigned long)(type) << (64-SWP_TYPE_BITS))` with SWP_TYPE_BITS 5,
    /// SWP_OFFSET_SHIFT (8 + 1) + 5 = 14.
    fn c_swp_entry(swp_type: u64, offset: u64) -> u64 {
        ((!offset) << 14 >> 5) | (swp_type << (64 - 5))
    }

    /// arch/x86/include/asm/pgtable_64.h, `__swp_type(x)`:
    /// `(x).val >> (64 - SWP_TYPE_BITS)`.
    fn c_swp_type(x: u64) -> u64 {
        x >> (64 - 5)
    }

    /// arch/x86/include/asm/pgtable_64.h, `__swp_offset(x)`:
    /// `~(x).val << SWP_TYPE_BITS >> SWP_OFFSET_SHIFT`.
    fn c_swp_offset(x: u64) -> u64 {
        (!x) << 5 >> 14
    }

    /// arch/x86/include/asm/pgtable.h `pte_mkinvalid`-style encoding used by
    /// `pfn_pte()`/`pfn_pmd()`/`pfn_pud()`: `pfn ^= protnone_mask(prot);
    /// pfn &= mask; return pfn | prot` where `protnone_mask()`
    /// (pgtable-invert.h) is all ones when `prot` is non-zero with P clear.
    fn c_pfn_entry(pfn: u64, prot: u64, mask: u64) -> u64 {
        let mut val = pfn << 12;
        if prot != 0 && prot & 1 == 0 {
            val ^= !0;
        }
        (val & mask) | prot
    }

    /// include/linux/swap.h: `MAX_SWAPFILES` and the special types, from the
    /// three Kconfig switches, written the way the header does.
    struct CSwapTypes {
        max_swapfiles: u64,
        hwpoison: Option<u64>,
        migration_read: Option<u64>,
        migration_read_exclusive: Option<u64>,
        migration_write: Option<u64>,
        device_write: Option<u64>,
        device_read: Option<u64>,
        device_exclusive: Option<u64>,
        pte_marker: u64,
    }

    fn c_swap_types(device_private: bool, migration: bool, memory_failure: bool) -> CSwapTypes {
        let max_swapfiles_shift = 5;
        let swp_device_num = if device_private { 3 } else { 0 };
        let swp_migration_num = if migration { 3 } else { 0 };
        let swp_hwpoison_num = if memory_failure { 1 } else { 0 };
        let swp_pte_marker_num = 1;
        let max_swapfiles = (1 << max_swapfiles_shift)
            - swp_device_num
            - swp_migration_num
            - swp_hwpoison_num
            - swp_pte_marker_num;
        CSwapTypes {
            max_swapfiles,
            hwpoison: memory_failure.then_some(max_swapfiles),
            migration_read: migration.then_some(max_swapfiles + swp_hwpoison_num),
            migration_read_exclusive: migration.then_some(max_swapfiles + swp_hwpoison_num + 1),
            migration_write: migration.then_some(max_swapfiles + swp_hwpoison_num + 2),
            device_write: device_private
                .then_some(max_swapfiles + swp_hwpoison_num + swp_migration_num),
            device_read: device_private
                .then_some(max_swapfiles + swp_hwpoison_num + swp_migration_num + 1),
            device_exclusive: device_private
                .then_some(max_swapfiles + swp_hwpoison_num + swp_migration_num + 2),
            pte_marker: max_swapfiles + swp_hwpoison_num + swp_migration_num + swp_device_num,
        }
    }

    const DISTRO: LinuxSwapLayout = LinuxSwapLayout::distro_default();
    const MIGRATION_ONLY: LinuxSwapLayout = LinuxSwapLayout::MIGRATION_ONLY;

    fn soft_leaf(raw: u64, level: Level, layout: &LinuxSwapLayout) -> SoftLeaf {
        match classify_not_present(Entry(raw), level, layout) {
            Some(NotPresentKind::SoftLeaf(leaf)) => leaf,
            other => panic!("{raw:#x} at {level:?}: expected a soft leaf, got {other:?}"),
        }
    }

    // ---- levels and sizes ----

    #[test]
    fn level_numbers_and_shifts() {
        let all = [Level::Pt, Level::Pd, Level::Pdpt, Level::Pml4, Level::Pml5];
        for (i, level) in all.iter().enumerate() {
            let n = u8::try_from(i + 1).unwrap();
            assert_eq!(level.number(), n);
            assert_eq!(Level::from_number(n), Some(*level));
            assert_eq!(level.index_shift(), 12 + 9 * (u32::from(n) - 1));
        }
        assert_eq!(Level::from_number(0), None);
        assert_eq!(Level::from_number(6), None);
        let va = (0x1a5u64 << 48) | (0x0f0 << 39) | (0x123 << 30) | (0x1ff << 21) | (0x001 << 12) | 0xabc;
        assert_eq!(Level::Pml5.index(va), 0x1a5);
        assert_eq!(Level::Pml4.index(va), 0x0f0);
        assert_eq!(Level::Pdpt.index(va), 0x123);
        assert_eq!(Level::Pd.index(va), 0x1ff);
        assert_eq!(Level::Pt.index(va), 0x001);
        assert_eq!(Level::Pml5.index(u64::MAX), 0x1ff);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(PageSize::Size4K.bytes(), 4096);
        assert_eq!(PageSize::Size2M.bytes(), 2 << 20);
        assert_eq!(PageSize::Size1G.bytes(), 1 << 30);
        assert_eq!(PageSize::Size2M.offset_mask(), 0x1f_ffff);
        assert_eq!(PageSize::Size4K.frame_mask(), 0x000f_ffff_ffff_f000);
        assert_eq!(PageSize::Size2M.frame_mask(), 0x000f_ffff_ffe0_0000);
        assert_eq!(PageSize::Size1G.frame_mask(), 0x000f_ffff_c000_0000);
        assert_eq!(bits(0, 63), u64::MAX);
        assert_eq!(bits(63, 63), 1 << 63);
        assert_eq!(bits(0, 0), 1);
    }

    // ---- present entries ----

    #[test]
    fn flag_accessors() {
        let none = Entry(0);
        assert!(!none.present() && !none.writable() && !none.user());
        assert!(!none.write_through() && !none.cache_disabled() && !none.accessed());
        assert!(!none.dirty() && !none.page_size() && !none.global() && !none.nx());
        assert_eq!(none.protection_key(), 0);
        assert_eq!(none.raw(), 0);

        let all = Entry(u64::MAX);
        assert!(all.present() && all.writable() && all.user());
        assert!(all.write_through() && all.cache_disabled() && all.accessed());
        assert!(all.dirty() && all.page_size() && all.global() && all.nx());
        assert_eq!(all.protection_key(), 0xf);

        for (bit, get) in [
            (0, Entry::present as fn(Entry) -> bool),
            (1, Entry::writable),
            (2, Entry::user),
            (3, Entry::write_through),
            (4, Entry::cache_disabled),
            (5, Entry::accessed),
            (6, Entry::dirty),
            (7, Entry::page_size),
            (8, Entry::global),
            (63, Entry::nx),
        ] {
            assert!(get(Entry(1 << bit)), "bit {bit}");
            assert!(!get(Entry(!(1u64 << bit))), "bit {bit} clear");
        }
        assert_eq!(Entry(0b1010 << 59).protection_key(), 0b1010);
    }

    #[test]
    fn addresses_and_leaf_sizes() {
        let e = Entry(0x8000_0012_3456_7867 | (0xf << 59));
        assert_eq!(e.table_gpa(), 0x0000_0012_3456_7000);
        assert_eq!(e.frame_gpa(PageSize::Size4K), 0x0000_0012_3456_7000);
        assert_eq!(e.frame_gpa(PageSize::Size2M), 0x0000_0012_3440_0000);
        assert_eq!(e.frame_gpa(PageSize::Size1G), 0x0000_0012_0000_0000);

        let ps = Entry(PTE_PRESENT | PTE_PS);
        let no_ps = Entry(PTE_PRESENT);
        assert_eq!(ps.leaf_size(Level::Pt), Some(PageSize::Size4K));
        assert_eq!(no_ps.leaf_size(Level::Pt), Some(PageSize::Size4K));
        assert_eq!(ps.leaf_size(Level::Pd), Some(PageSize::Size2M));
        assert_eq!(no_ps.leaf_size(Level::Pd), None);
        assert_eq!(ps.leaf_size(Level::Pdpt), Some(PageSize::Size1G));
        assert_eq!(no_ps.leaf_size(Level::Pdpt), None);
        assert_eq!(ps.leaf_size(Level::Pml4), None);
        assert_eq!(ps.leaf_size(Level::Pml5), None);
    }

    #[test]
    fn phys_reserved_mask_by_maxphyaddr() {
        assert_eq!(PagingFeatures::new(52).phys_reserved_mask(), 0);
        assert_eq!(PagingFeatures::new(255).phys_reserved_mask(), 0);
        assert_eq!(PagingFeatures::new(46).phys_reserved_mask(), 0x000f_c000_0000_0000);
        assert_eq!(PagingFeatures::new(39).phys_reserved_mask(), 0x000f_ff80_0000_0000);
        assert_eq!(PagingFeatures::new(51).phys_reserved_mask(), 1 << 51);
        assert_eq!(PagingFeatures::new(12).phys_reserved_mask(), ADDR_MASK_4K);
        assert_eq!(PagingFeatures::new(0).phys_reserved_mask(), ADDR_MASK_4K);
        let f = PagingFeatures::new(40);
        assert!(f.nx && f.gbpages && !f.amd);
    }

    /// Every level: the address bits from MAXPHYADDR to 51 are reserved, 52
    /// to 62 are not (ignored / protection keys), 63 only without NXE.
    #[test]
    fn reserved_address_and_nx_bits_at_every_level() {
        let f = PagingFeatures::new(40);
        let no_nx = PagingFeatures { nx: false, ..f };
        for level in [Level::Pt, Level::Pd, Level::Pdpt, Level::Pml4, Level::Pml5] {
            let ok = Entry(PTE_PRESENT | PTE_RW | PTE_USER | (1 << 39) | (1 << 12));
            assert_eq!(ok.reserved_bits(level, &f), 0, "{level:?}");
            let high = Entry(ok.0 | (1 << 40));
            assert_eq!(high.reserved_bits(level, &f), 1 << 40, "{level:?}");
            let top = Entry(ok.0 | (1 << 51));
            assert_eq!(top.reserved_bits(level, &f), 1 << 51, "{level:?}");
            let ignored = Entry(ok.0 | bits(52, 62));
            assert_eq!(ignored.reserved_bits(level, &f), 0, "{level:?}");
            let nx = Entry(ok.0 | PTE_NX);
            assert_eq!(nx.reserved_bits(level, &f), 0, "{level:?}");
            assert_eq!(nx.reserved_bits(level, &no_nx), PTE_NX, "{level:?}");
            // Full 52-bit guests: nothing reserved in the address.
            let full = PagingFeatures::new(52);
            assert_eq!(Entry(ok.0 | (1 << 51)).reserved_bits(level, &full), 0);
        }
    }

    #[test]
    fn reserved_ps_at_pml4_and_pml5() {
        let f = PagingFeatures::new(46);
        for level in [Level::Pml4, Level::Pml5] {
            assert_eq!(Entry(PTE_PRESENT | PTE_PS).reserved_bits(level, &f), PTE_PS);
            // Bit 8 is ignored on Intel, reserved on AMD.
            let g = Entry(PTE_PRESENT | PTE_GLOBAL);
            assert_eq!(g.reserved_bits(level, &f), 0);
            let amd = PagingFeatures { amd: true, ..f };
            assert_eq!(g.reserved_bits(level, &amd), PTE_GLOBAL);
        }
        // Bit 8 is never reserved below level 4, even on AMD.
        let amd = PagingFeatures { amd: true, ..f };
        for level in [Level::Pt, Level::Pd, Level::Pdpt] {
            assert_eq!(Entry(PTE_PRESENT | PTE_GLOBAL).reserved_bits(level, &amd), 0);
        }
    }

    #[test]
    fn reserved_bits_of_1g_leaf() {
        let f = PagingFeatures::new(46);
        let leaf = PTE_PRESENT | PTE_PS | (3 << 30);
        assert_eq!(Entry(leaf).reserved_bits(Level::Pdpt, &f), 0);
        // Bit 12 is PAT in a 1 GiB leaf, bits 13..=29 are reserved.
        assert_eq!(Entry(leaf | (1 << 12)).reserved_bits(Level::Pdpt, &f), 0);
        assert_eq!(Entry(leaf | (1 << 13)).reserved_bits(Level::Pdpt, &f), 1 << 13);
        assert_eq!(Entry(leaf | (1 << 29)).reserved_bits(Level::Pdpt, &f), 1 << 29);
        assert_eq!(Entry(leaf | bits(12, 29)).reserved_bits(Level::Pdpt, &f), bits(13, 29));
        // The same bits are address bits of a non-leaf level-3 entry.
        assert_eq!(Entry(PTE_PRESENT | bits(12, 29)).reserved_bits(Level::Pdpt, &f), 0);
        // Without 1 GiB pages, PS itself is reserved.
        let no_gb = PagingFeatures { gbpages: false, ..f };
        assert_eq!(Entry(leaf).reserved_bits(Level::Pdpt, &no_gb), PTE_PS);
        assert_eq!(Entry(PTE_PRESENT).reserved_bits(Level::Pdpt, &no_gb), 0);
    }

    #[test]
    fn reserved_bits_of_2m_leaf() {
        let f = PagingFeatures::new(46);
        let leaf = PTE_PRESENT | PTE_PS | (5 << 21);
        assert_eq!(Entry(leaf).reserved_bits(Level::Pd, &f), 0);
        assert_eq!(Entry(leaf | (1 << 12)).reserved_bits(Level::Pd, &f), 0);
        assert_eq!(Entry(leaf | (1 << 13)).reserved_bits(Level::Pd, &f), 1 << 13);
        assert_eq!(Entry(leaf | (1 << 20)).reserved_bits(Level::Pd, &f), 1 << 20);
        assert_eq!(Entry(leaf | (1 << 21)).reserved_bits(Level::Pd, &f), 0);
        assert_eq!(Entry(PTE_PRESENT | bits(12, 20)).reserved_bits(Level::Pd, &f), 0);
    }

    #[test]
    fn level1_bit7_is_pat_not_reserved() {
        let f = PagingFeatures::new(46);
        assert_eq!(Entry(PTE_PRESENT | PTE_PS | PTE_GLOBAL | bits(9, 11)).reserved_bits(Level::Pt, &f), 0);
        assert_eq!(reserved_mask(Level::Pt, true, &f), reserved_mask(Level::Pt, false, &f));
    }

    // ---- not-present entries ----

    #[test]
    fn present_entries_are_not_classified() {
        for level in [Level::Pt, Level::Pd, Level::Pdpt, Level::Pml4, Level::Pml5] {
            assert_eq!(classify_not_present(Entry(1), level, &DISTRO), None);
            assert_eq!(classify_not_present(Entry(u64::MAX), level, &DISTRO), None);
        }
    }

    #[test]
    fn empty_entries_ignore_accessed_and_dirty() {
        for level in [Level::Pt, Level::Pd, Level::Pdpt, Level::Pml4, Level::Pml5] {
            for raw in [0, PTE_ACCESSED, PTE_DIRTY, PTE_ACCESSED | PTE_DIRTY] {
                assert_eq!(
                    classify_not_present(Entry(raw), level, &DISTRO),
                    Some(NotPresentKind::Empty),
                    "{raw:#x} at {level:?}"
                );
            }
        }
        assert!(!NotPresentKind::Empty.is_swapped_out());
    }

    /// The vector the issue asks for: `__swp_entry(0, 0x1234)`.
    #[test]
    fn swap_entry_type0_offset_0x1234() {
        let raw = c_swp_entry(0, 0x1234);
        // The offset is stored inverted: its unused high bits are ones, which
        // puts the "address" above any real RAM (L1TF).
        assert_eq!(raw, 0x07ff_ffff_ffdb_9600);
        assert_eq!(c_swp_type(raw), 0);
        assert_eq!(c_swp_offset(raw), 0x1234);
        let leaf = soft_leaf(raw, Level::Pt, &DISTRO);
        assert_eq!(leaf.kind, SoftLeafKind::Swap);
        assert_eq!(leaf.swp_type, 0);
        assert_eq!(leaf.offset, 0x1234);
        assert!(!leaf.soft_dirty && !leaf.uffd_wp && !leaf.exclusive);
        assert_eq!(leaf.pfn(false), None);
        assert_eq!(leaf.marker(), None);
        assert!(classify_not_present(Entry(raw), Level::Pt, &DISTRO)
            .is_some_and(|k| k.is_swapped_out()));
    }

    #[test]
    fn swap_entries_round_trip_through_the_c_macros() {
        let offsets = [0, 1, 0x1234, 0xdead_beef, (1 << 50) - 2, (1 << 49) | 0x5555];
        for swp_type in 0..24u64 {
            for &offset in &offsets {
                let raw = c_swp_entry(swp_type, offset);
                let leaf = soft_leaf(raw, Level::Pt, &DISTRO);
                assert_eq!(u64::from(leaf.swp_type), c_swp_type(raw));
                assert_eq!(leaf.offset, c_swp_offset(raw));
                assert_eq!(u64::from(leaf.swp_type), swp_type);
                assert_eq!(leaf.offset, offset);
                assert_eq!(leaf.kind, SoftLeafKind::Swap);
                // Bits 1..=8 are never part of the encoding.
                assert_eq!(raw & bits(0, 8), 0);
            }
        }
        // The widest offset: 50 bits.
        assert_eq!(LINUX_SWP_OFFSET_BITS, 50);
        let raw = c_swp_entry(3, 1 << 49);
        assert_eq!(soft_leaf(raw, Level::Pt, &DISTRO).offset, 1 << 49);
    }

    #[test]
    fn swap_flag_bits() {
        let base = c_swp_entry(1, 0x42);
        for (flag, check) in [
            (LINUX_SWP_SOFT_DIRTY, (true, false, false)),
            (LINUX_SWP_UFFD_WP, (false, true, false)),
            (LINUX_SWP_EXCLUSIVE, (false, false, true)),
        ] {
            let leaf = soft_leaf(base | flag, Level::Pt, &DISTRO);
            assert_eq!((leaf.soft_dirty, leaf.uffd_wp, leaf.exclusive), check);
            assert_eq!((leaf.swp_type, leaf.offset), (1, 0x42));
        }
        // A/D set by the KNL erratum do not change the entry.
        let leaf = soft_leaf(base | PTE_ACCESSED | PTE_DIRTY, Level::Pt, &DISTRO);
        assert_eq!((leaf.swp_type, leaf.offset), (1, 0x42));
    }

    /// Only the flag bits set, everything else zero, would be `__swp_entry`
    /// of type 0 and offset 2^50 - 1: not none, so a (nonsensical) swap entry,
    /// exactly as `softleaf_from_pte()` would read it.
    #[test]
    fn flags_only_entry_is_a_soft_leaf() {
        let leaf = soft_leaf(LINUX_SWP_EXCLUSIVE, Level::Pt, &DISTRO);
        assert_eq!(leaf.swp_type, 0);
        assert_eq!(leaf.offset, (1 << 50) - 1);
        assert!(leaf.exclusive);
    }

    fn check_layout(device_private: bool, migration: bool, memory_failure: bool) {
        let layout = LinuxSwapLayout {
            device_private,
            migration,
            memory_failure,
        };
        let c = c_swap_types(device_private, migration, memory_failure);
        assert_eq!(u64::from(layout.max_swapfiles()), c.max_swapfiles);
        assert_eq!(u64::from(layout.pte_marker_type()), c.pte_marker);
        assert_eq!(c.pte_marker, 31);
        let expected = |t: u64| -> SoftLeafKind {
            if t < c.max_swapfiles {
                return SoftLeafKind::Swap;
            }
            let table = [
                (c.hwpoison, SoftLeafKind::HwPoison),
                (c.migration_read, SoftLeafKind::MigrationRead),
                (c.migration_read_exclusive, SoftLeafKind::MigrationReadExclusive),
                (c.migration_write, SoftLeafKind::MigrationWrite),
                (c.device_write, SoftLeafKind::DevicePrivateWrite),
                (c.device_read, SoftLeafKind::DevicePrivateRead),
                (c.device_exclusive, SoftLeafKind::DeviceExclusive),
                (Some(c.pte_marker), SoftLeafKind::Marker),
            ];
            table
                .iter()
                .find(|(ty, _)| *ty == Some(t))
                .map(|(_, k)| *k)
                .unwrap_or(SoftLeafKind::Unknown)
        };
        for t in 0..32u64 {
            let raw = c_swp_entry(t, 0x777);
            let leaf = soft_leaf(raw, Level::Pt, &layout);
            assert_eq!(leaf.kind, expected(t), "type {t} in {layout:?}");
            assert_ne!(leaf.kind, SoftLeafKind::Unknown, "type {t} in {layout:?}");
            assert_eq!(layout.kind_of_type(u8::try_from(t).unwrap()), leaf.kind);
        }
        assert_eq!(layout.kind_of_type(32), SoftLeafKind::Unknown);
        assert_eq!(layout.kind_of_type(u8::MAX), SoftLeafKind::Unknown);
    }

    #[test]
    fn every_kconfig_combination_matches_swap_h() {
        for bits in 0..8u8 {
            check_layout(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
        }
    }

    #[test]
    fn distro_and_test_kernel_layouts() {
        assert_eq!(LinuxSwapLayout::default(), DISTRO);
        assert_eq!(DISTRO.max_swapfiles(), 24);
        assert_eq!((DISTRO.device_num(), DISTRO.migration_num(), DISTRO.hwpoison_num()), (3, 3, 1));
        assert_eq!(DISTRO.kind_of_type(24), SoftLeafKind::HwPoison);
        assert_eq!(DISTRO.kind_of_type(25), SoftLeafKind::MigrationRead);
        assert_eq!(DISTRO.kind_of_type(27), SoftLeafKind::MigrationWrite);
        assert_eq!(DISTRO.kind_of_type(28), SoftLeafKind::DevicePrivateWrite);
        assert_eq!(DISTRO.kind_of_type(30), SoftLeafKind::DeviceExclusive);
        assert_eq!(DISTRO.kind_of_type(31), SoftLeafKind::Marker);
        // Type 25 is a swap device on the test kernel but a migration entry
        // on a distro kernel: the layout matters.
        assert_eq!(MIGRATION_ONLY.max_swapfiles(), 28);
        assert_eq!(MIGRATION_ONLY.kind_of_type(25), SoftLeafKind::Swap);
        assert_eq!(MIGRATION_ONLY.kind_of_type(28), SoftLeafKind::MigrationRead);
        let none = LinuxSwapLayout {
            device_private: false,
            migration: false,
            memory_failure: false,
        };
        assert_eq!(none.max_swapfiles(), 31);
        assert_eq!((none.device_num(), none.migration_num(), none.hwpoison_num()), (0, 0, 0));
    }

    #[test]
    fn migration_device_and_hwpoison_pfns() {
        // include/linux/swapops.h: make_*_migration_entry(pfn) =
        // swp_entry(SWP_MIGRATION_*, pfn); A/D live at SWP_PFN_BITS and +1.
        let pfn = 0x12_3456u64;
        let young_4l = 1u64 << (46 - 12);
        let raw = c_swp_entry(27, pfn | young_4l);
        let leaf = soft_leaf(raw, Level::Pt, &DISTRO);
        assert_eq!(leaf.kind, SoftLeafKind::MigrationWrite);
        assert_eq!(leaf.pfn(false), Some(pfn));
        // With 5-level paging the PFN field is 40 bits wide, so the same bit
        // is part of the PFN.
        assert_eq!(leaf.pfn(true), Some(pfn | young_4l));
        for (t, kind) in [
            (24, SoftLeafKind::HwPoison),
            (25, SoftLeafKind::MigrationRead),
            (26, SoftLeafKind::MigrationReadExclusive),
            (28, SoftLeafKind::DevicePrivateWrite),
            (29, SoftLeafKind::DevicePrivateRead),
            (30, SoftLeafKind::DeviceExclusive),
        ] {
            let leaf = soft_leaf(c_swp_entry(t, pfn), Level::Pt, &DISTRO);
            assert_eq!(leaf.kind, kind);
            assert_eq!(leaf.pfn(false), Some(pfn));
            assert_eq!(leaf.marker(), None);
            assert!(!NotPresentKind::SoftLeaf(leaf).is_swapped_out());
        }
        let unknown = SoftLeaf {
            kind: SoftLeafKind::Unknown,
            swp_type: 40,
            offset: 1,
            soft_dirty: false,
            uffd_wp: false,
            exclusive: false,
        };
        assert_eq!(unknown.pfn(true), None);
        assert_eq!(unknown.marker(), None);
    }

    #[test]
    fn pte_markers() {
        // make_pte_marker(marker) = swp_entry_to_pte(swp_entry(SWP_PTE_MARKER, marker)).
        for (bits, expected) in [
            (1, (true, false, false)),
            (2, (false, true, false)),
            (4, (false, false, true)),
            (7, (true, true, true)),
        ] {
            let leaf = soft_leaf(c_swp_entry(31, bits), Level::Pt, &DISTRO);
            assert_eq!(leaf.kind, SoftLeafKind::Marker);
            let m = leaf.marker().unwrap();
            assert_eq!((m.uffd_wp, m.poisoned, m.guard), expected);
            assert_eq!(leaf.pfn(false), None);
            assert!(!NotPresentKind::SoftLeaf(leaf).is_swapped_out());
        }
    }

    #[test]
    fn prot_none_pte_is_resident_with_inverted_pfn() {
        // PAGE_NONE = _PAGE_PROTNONE | _PAGE_ACCESSED (pgtable_types.h), PFN
        // inverted by pfn_pte().
        let prot = LINUX_PAGE_PROTNONE | PTE_ACCESSED;
        let raw = c_pfn_entry(0x1_2345, prot, ADDR_MASK_4K);
        assert_eq!(raw & PTE_PRESENT, 0);
        for level in [Level::Pt, Level::Pd, Level::Pdpt] {
            // Without PS the 4 KiB mask applies at every level.
            assert_eq!(
                classify_not_present(Entry(raw), level, &DISTRO),
                Some(NotPresentKind::Resident {
                    why: Inaccessible::ProtNone,
                    frame_gpa: 0x1234_5000
                })
            );
        }
        // Linux never writes PROT_NONE at levels 4 and 5: bit 8 there means
        // nothing, and must not make a hostile entry look resident.
        for level in [Level::Pml4, Level::Pml5] {
            assert_eq!(
                classify_not_present(Entry(raw), level, &DISTRO),
                Some(NotPresentKind::Unrecognised)
            );
        }
        assert!(!classify_not_present(Entry(raw), Level::Pt, &DISTRO)
            .is_some_and(|k| k.is_swapped_out()));
    }

    #[test]
    fn prot_none_huge_pages() {
        // A PROT_NONE THP: pfn_pmd() with _PAGE_PSE | _PAGE_PROTNONE.
        let prot = LINUX_PAGE_PROTNONE | PTE_PS | PTE_ACCESSED;
        let raw = c_pfn_entry(0x400, prot, ADDR_MASK_2M);
        assert_eq!(
            classify_not_present(Entry(raw), Level::Pd, &DISTRO),
            Some(NotPresentKind::Resident {
                why: Inaccessible::ProtNone,
                frame_gpa: 0x40_0000
            })
        );
        // hugetlb uses pfn_pte() (4 KiB mask) then sets PS: bits 12..=20
        // come out as ones, which the 2 MiB mask drops.
        let hugetlb = c_pfn_entry(0x400, LINUX_PAGE_PROTNONE, ADDR_MASK_4K) | PTE_PS;
        assert_eq!(
            classify_not_present(Entry(hugetlb), Level::Pd, &DISTRO),
            Some(NotPresentKind::Resident {
                why: Inaccessible::ProtNone,
                frame_gpa: 0x40_0000
            })
        );
        let raw = c_pfn_entry(0x40000, prot, ADDR_MASK_1G);
        assert_eq!(
            classify_not_present(Entry(raw), Level::Pdpt, &DISTRO),
            Some(NotPresentKind::Resident {
                why: Inaccessible::ProtNone,
                frame_gpa: 0x4000_0000
            })
        );
    }

    #[test]
    fn invalidated_huge_pages_are_resident() {
        // pmd_mkinvalid(): pfn_pmd(pmd_pfn(pmd), flags & ~(P | PROTNONE)).
        let flags = PTE_PS | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_DIRTY;
        let pmd = c_pfn_entry(0x1234 << 9, flags, ADDR_MASK_2M);
        assert_eq!(
            classify_not_present(Entry(pmd), Level::Pd, &DISTRO),
            Some(NotPresentKind::Resident {
                why: Inaccessible::HugeInvalidated,
                frame_gpa: 0x1234 << 21
            })
        );
        let pud = c_pfn_entry(7 << 18, flags, ADDR_MASK_1G);
        assert_eq!(
            classify_not_present(Entry(pud), Level::Pdpt, &DISTRO),
            Some(NotPresentKind::Resident {
                why: Inaccessible::HugeInvalidated,
                frame_gpa: 7 << 30
            })
        );
        // At level 1 bit 7 is PAT, not PS: the same value is a soft leaf.
        assert!(matches!(
            classify_not_present(Entry(pmd), Level::Pt, &DISTRO),
            Some(NotPresentKind::SoftLeaf(_))
        ));
        // And at levels 4/5 PS means nothing to Linux.
        assert_eq!(
            classify_not_present(Entry(pmd), Level::Pml4, &DISTRO),
            Some(NotPresentKind::Unrecognised)
        );
    }

    #[test]
    fn pmd_and_pud_soft_leaves() {
        // THP migration entries at level 2 and hugetlb entries at level 3 use
        // the same encoding, with bit 7 clear.
        let raw = c_swp_entry(25, 0x200);
        for level in [Level::Pd, Level::Pdpt] {
            let leaf = soft_leaf(raw, level, &DISTRO);
            assert_eq!(leaf.kind, SoftLeafKind::MigrationRead);
            assert_eq!(leaf.pfn(false), Some(0x200));
        }
    }

    #[test]
    fn nonzero_not_present_pml4_and_pml5_are_unrecognised() {
        let raw = c_swp_entry(0, 0x1234);
        for level in [Level::Pml4, Level::Pml5] {
            assert_eq!(
                classify_not_present(Entry(raw), level, &DISTRO),
                Some(NotPresentKind::Unrecognised)
            );
        }
        assert!(!NotPresentKind::Unrecognised.is_swapped_out());
    }
}
