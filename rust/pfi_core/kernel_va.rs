// SPDX-License-Identifier: GPL-2.0

//! Reads of a guest kernel's virtual memory, for the walks of its own
//! structures (`linux_walk`): each address is translated through the
//! guest's page tables from a kernel address-space root, then read from
//! guest physical memory, both through one [`TableCache`] (a `task_struct`
//! read field by field costs one page copy, not one read per field). A
//! small translation cache keeps the last pages translated, so the many
//! reads of one structure walk the tables once.
//!
//! A read may cross pages (a `comm` at the end of one); each page is
//! translated on its own. Only resident translations are used: a kernel
//! structure that is not mapped, or whose tables cannot be read, fails the
//! read, and the walk above ends with an error. Guest memory is hostile:
//! whatever the tables say is only an address to read, never trusted
//! further.

use super::linux_walk::GuestMemory;
use super::table_cache::{
    PageSource,
    TableCache,
    PAGE, //
};
use super::walk::{
    self,
    GuestPaging,
    WalkOutcome, //
};

/// Pages whose translation is kept.
const TLB_ENTRIES: usize = 16;
const PAGE_MASK: u64 = PAGE as u64 - 1;

/// See the module documentation.
pub struct KernelVa<'c, 'p, S> {
    cache: &'c mut TableCache<'p, S>,
    paging: GuestPaging,
    root: u64,
    /// (virtual page, physical page); `u64::MAX` tags an empty entry.
    tlb: [(u64, u64); TLB_ENTRIES],
    next: usize,
    /// Page walks made (for the caller's statistics and the tests).
    pub walks: u32,
}

impl<'c, 'p, S: PageSource> KernelVa<'c, 'p, S> {
    /// A reader of the address space rooted at `root` (a CR3 value: PCID
    /// and flag bits are ignored).
    pub fn new(cache: &'c mut TableCache<'p, S>, paging: GuestPaging, root: u64) -> Self {
        KernelVa {
            cache,
            paging,
            root,
            tlb: [(u64::MAX, 0); TLB_ENTRIES],
            next: 0,
            walks: 0,
        }
    }

    /// The guest physical address of `va`, if it is mapped now.
    pub fn translate(&mut self, va: u64) -> Option<u64> {
        let page = va & !PAGE_MASK;
        if let Some(&(_, pa)) = self.tlb.iter().find(|&&(v, _)| v == page) {
            return Some(pa | (va & PAGE_MASK));
        }
        self.walks = self.walks.saturating_add(1);
        let w = walk::walk(&mut *self.cache, &self.paging, self.root, page);
        let WalkOutcome::Resident { gpa, .. } = w.outcome else { return None };
        if let Some(e) = self.tlb.get_mut(self.next) {
            *e = (page, gpa);
        }
        self.next = self.next.wrapping_add(1).checked_rem(TLB_ENTRIES).unwrap_or(0);
        Some(gpa | (va & PAGE_MASK))
    }
}

impl<S: PageSource> KernelVa<'_, '_, S> {
    /// Which pages from `va` (page-aligned) translate: `out[i]` is 1 for
    /// page `i`, 0 otherwise, as mincore(2) reports residency. Where an
    /// entry above the page table is not present, the whole range it
    /// would map is 0 after one walk: the 1 GiB kernel-image window, mostly
    /// holes, costs a walk per 2 MiB hole, not per page. Returns the pages
    /// that translate.
    pub fn present(&mut self, va: u64, out: &mut [u8]) -> usize {
        let mut i = 0usize;
        let mut found = 0usize;
        while i < out.len() {
            let at = va.wrapping_add((i as u64).wrapping_mul(PAGE as u64));
            self.walks = self.walks.saturating_add(1);
            let w = walk::walk(&mut *self.cache, &self.paging, self.root, at);
            let (here, span) = match w.outcome {
                WalkOutcome::Resident { .. } => (1u8, 1usize),
                // Pages to the end of what the missing entry would map.
                WalkOutcome::NotPresent { level, .. } => {
                    let bytes = 1u64 << level.index_shift();
                    let left = bytes.wrapping_sub(at & bytes.wrapping_sub(1));
                    (0, usize::try_from(left.checked_div(PAGE as u64).unwrap_or(1)).unwrap_or(usize::MAX).max(1))
                }
                WalkOutcome::Invalid(_) => (0, 1),
            };
            let end = i.saturating_add(span).min(out.len());
            if let Some(run) = out.get_mut(i..end) {
                run.fill(0);
                if let Some(first) = run.first_mut() {
                    *first = here;
                }
            }
            found = found.saturating_add(usize::from(here));
            i = end;
        }
        found
    }
}

impl<S: PageSource> GuestMemory for KernelVa<'_, '_, S> {
    fn read(&mut self, va: u64, buf: &mut [u8]) -> bool {
        let mut at = va;
        let mut rest = buf;
        while !rest.is_empty() {
            let in_page = PAGE.saturating_sub((at & PAGE_MASK) as usize).min(rest.len());
            let (head, tail) = rest.split_at_mut(in_page);
            let Some(pa) = self.translate(at) else { return false };
            if self.cache.read_bytes(pa, head).is_err() {
                return false;
            }
            let Some(next) = at.checked_add(in_page as u64) else { return tail.is_empty() };
            at = next;
            rest = tail;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pte::{
        LinuxSwapLayout,
        PagingFeatures, //
    };
    use crate::walk::ReadError;
    use std::collections::HashMap;
    use std::vec;
    use std::vec::Vec;

    /// Guest physical memory: pages by address.
    #[derive(Default)]
    struct Phys {
        pages: HashMap<u64, Vec<u8>>,
        next_table: u64,
    }

    impl PageSource for &mut Phys {
        fn read_page(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), ReadError> {
            out.copy_from_slice(self.pages.get(&gpa).ok_or(ReadError::OutsideGuestMemory)?);
            Ok(())
        }
    }

    const P: u64 = 1;
    const RW: u64 = 2;

    impl Phys {
        fn page(&mut self, gpa: u64) -> &mut Vec<u8> {
            self.pages.entry(gpa).or_insert_with(|| vec![0u8; PAGE])
        }
        fn entry(&mut self, table: u64, idx: u64) -> u64 {
            let p = self.page(table);
            u64::from_le_bytes(p[idx as usize * 8..idx as usize * 8 + 8].try_into().unwrap())
        }
        fn set_entry(&mut self, table: u64, idx: u64, v: u64) {
            self.page(table)[idx as usize * 8..idx as usize * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        /// Maps the 4 KiB page at `va` to `pa` in the 4-level tables at `root`.
        fn map(&mut self, root: u64, va: u64, pa: u64) {
            let mut table = root;
            for shift in [39u32, 30, 21] {
                let idx = (va >> shift) & 511;
                let e = self.entry(table, idx);
                table = if e & P != 0 {
                    e & 0x000f_ffff_ffff_f000
                } else {
                    self.next_table += PAGE as u64;
                    let t = self.next_table;
                    self.page(t);
                    self.set_entry(table, idx, t | P | RW);
                    t
                };
            }
            self.set_entry(table, (va >> 12) & 511, pa | P | RW);
        }
    }

    fn paging() -> GuestPaging {
        GuestPaging {
            la57: false,
            features: PagingFeatures {
                maxphyaddr: 46,
                nx: true,
                gbpages: true,
                amd: true,
            },
            swap_layout: LinuxSwapLayout::MIGRATION_ONLY,
        }
    }

    const ROOT: u64 = 0x10_0000;
    const VA: u64 = 0xffff_8880_0123_4000;

    fn phys() -> Phys {
        let mut m = Phys {
            next_table: 0x20_0000,
            ..Default::default()
        };
        m.page(ROOT);
        // Two virtually adjacent pages in physically distant frames.
        m.map(ROOT, VA, 0x50_0000);
        m.map(ROOT, VA + 0x1000, 0x30_0000);
        for (i, b) in m.page(0x50_0000).iter_mut().enumerate() {
            *b = i as u8;
        }
        for b in m.page(0x30_0000).iter_mut() {
            *b = 0xee;
        }
        m
    }

    #[test]
    fn reads_across_pages_from_their_own_frames() {
        let mut m = phys();
        let mut bufs = vec![0u8; 8 * PAGE];
        let mut cache = TableCache::new(&mut m, &mut bufs);
        let mut k = KernelVa::new(&mut cache, paging(), ROOT);
        let mut b = [0u8; 8];
        assert!(k.read(VA + 0xffc, &mut b));
        assert_eq!(b, [0xfc, 0xfd, 0xfe, 0xff, 0xee, 0xee, 0xee, 0xee]);
        assert_eq!(k.translate(VA + 0x10), Some(0x50_0010));
        assert_eq!(k.translate(VA + 0x1010), Some(0x30_1010 - 0x1000));
        // Both pages were walked once; later reads hit the kept translations.
        assert_eq!(k.walks, 2);
        assert!(k.read(VA + 8, &mut b));
        assert_eq!(k.walks, 2);
    }

    #[test]
    fn unmapped_and_unreadable_fail() {
        let mut m = phys();
        // A table entry that points outside guest memory.
        let pd_of = |m: &mut Phys| {
            let l4 = m.entry(ROOT, (VA >> 39) & 511) & 0x000f_ffff_ffff_f000;
            m.entry(l4, (VA >> 30) & 511) & 0x000f_ffff_ffff_f000
        };
        let pd = pd_of(&mut m);
        m.set_entry(pd, ((VA + 0x20_0000) >> 21) & 511, 0x7000_0000 | P | RW);
        let mut bufs = vec![0u8; 8 * PAGE];
        let mut cache = TableCache::new(&mut m, &mut bufs);
        let mut k = KernelVa::new(&mut cache, paging(), ROOT);
        let mut b = [0u8; 16];
        assert!(!k.read(VA + 0x2000, &mut b), "not mapped");
        assert!(!k.read(VA + 0x20_0000, &mut b), "table outside memory");
        assert!(!k.read(VA + 0x1ff8, &mut b), "second page unmapped");
        assert!(!k.read(0x0000_8000_0000_0000, &mut b), "not canonical");
        assert!(k.read(VA, &mut b));
        // Failures are not kept as translations.
        assert_eq!(k.translate(VA + 0x2000), None);
    }

    #[test]
    fn present_pages_as_mincore_one_walk_per_hole() {
        let mut m = phys();
        // VA and VA + 4 KiB are mapped; so is a page 3 MiB further, in
        // another page table.
        m.map(ROOT, VA + 0x30_0000, 0x70_0000);
        let mut bufs = vec![0u8; 8 * PAGE];
        let mut cache = TableCache::new(&mut m, &mut bufs);
        let mut k = KernelVa::new(&mut cache, paging(), ROOT);
        // From 2 MiB before VA (a hole at PMD level) over 6 MiB.
        let from = VA - 0x20_0000 - (VA & 0x1f_ffff);
        let mut out = vec![0xffu8; 0x60_0000 / PAGE];
        assert_eq!(k.present(from, &mut out), 3);
        let pages: Vec<usize> = out.iter().enumerate().filter(|(_, &b)| b == 1).map(|(i, _)| i).collect();
        let page = |va: u64| ((va - from) / PAGE as u64) as usize;
        assert_eq!(pages, vec![page(VA), page(VA + 0x1000), page(VA + 0x30_0000)]);
        assert!(out.iter().all(|&b| b <= 1));
        // The first 2 MiB hole took one walk; each page of the two mapped
        // page tables one.
        assert!(k.walks <= 1 + 2 * 512 + 1, "{} walks", k.walks);
        // An unmapped PML4 slot: one walk for the whole range.
        let mut k = KernelVa::new(&mut cache, paging(), ROOT);
        let mut out = vec![1u8; 1024];
        assert_eq!(k.present(0xffff_ff00_0000_0000, &mut out), 0);
        assert!(out.iter().all(|&b| b == 0));
        assert_eq!(k.walks, 1);
    }

    #[test]
    fn translations_are_replaced_in_turn() {
        let mut m = phys();
        for i in 0..40u64 {
            m.map(ROOT, VA + 0x10_0000 + i * 0x1000, 0x60_0000 + i * 0x1000);
            m.page(0x60_0000 + i * 0x1000)[0] = i as u8;
        }
        let mut bufs = vec![0u8; 8 * PAGE];
        let mut cache = TableCache::new(&mut m, &mut bufs);
        let mut k = KernelVa::new(&mut cache, paging(), ROOT);
        for round in 0..2 {
            for i in 0..40u64 {
                let mut b = [0u8; 1];
                assert!(k.read(VA + 0x10_0000 + i * 0x1000, &mut b), "round {round} page {i}");
                assert_eq!(b[0], i as u8);
            }
        }
        assert_eq!(k.walks, 80);
    }
}
