// SPDX-License-Identifier: GPL-2.0

//! A reader of guest memory for many walks in a row: it copies each table
//! page a walk touches once, whole, and serves the walk's later 8-byte reads
//! of that page from the copy. Consecutive pages of a target share all
//! their tables, so walking 512 of them costs four page copies instead of
//! 2,048 reads, each with its own memslot lookup and user copy.
//!
//! The copies are as old as the batch of walks: for the background walks
//! (the report work's and the sweep's), whose results are hints that the
//! walk right before injecting checks, that is fine. The probes never use
//! it. Read failures are not cached. A read never crosses a page: the walk
//! reads aligned 8-byte entries.

use super::walk::{
    GuestPhysRead,
    ReadError, //
};

/// Bytes of a guest page.
pub const PAGE: usize = 4096;

/// Where whole pages come from.
pub trait PageSource {
    /// Fills `out` ([`PAGE`] bytes) with the guest page at `gpa` (4 KiB
    /// aligned).
    fn read_page(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), ReadError>;
}

/// See the module documentation. `pages` is the caller's buffer (the
/// module allocates it once per batch), [`PAGE`] bytes per cached page;
/// the cache replaces them in turn.
pub struct TableCache<'a, S> {
    src: S,
    pages: &'a mut [u8],
    /// Which page each buffer holds (`u64::MAX`: none).
    tags: [u64; MAX_PAGES],
    next: usize,
    /// Page copies made (for the caller's statistics and the tests).
    pub copies: u32,
}

/// Buffers used at most (a walk touches five tables).
pub const MAX_PAGES: usize = 16;

impl<'a, S: PageSource> TableCache<'a, S> {
    /// A cache over `src` with `pages` (at most [`MAX_PAGES`] of them are
    /// used).
    pub fn new(src: S, pages: &'a mut [u8]) -> Self {
        TableCache {
            src,
            pages,
            tags: [u64::MAX; MAX_PAGES],
            next: 0,
            copies: 0,
        }
    }

    fn slots(&self) -> usize {
        (self.pages.len() / PAGE).min(MAX_PAGES)
    }
}

impl<S: PageSource> TableCache<'_, S> {
    /// Fills `buf` from `gpa` through the cache; the range must lie within
    /// one page. Also for data (the kernel-memory reads of
    /// `kernel_va`), not only table entries.
    pub fn read_bytes(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        const PAGE_MASK: u64 = PAGE as u64 - 1;
        let base = gpa & !PAGE_MASK;
        let off = (gpa & PAGE_MASK) as usize;
        if off.saturating_add(buf.len()) > PAGE {
            return Err(ReadError::OutsideGuestMemory);
        }
        let n = self.slots();
        let hit = self.tags.iter().take(n).position(|&t| t == base);
        let slot = match hit {
            Some(s) => s,
            // No buffers: nothing can be read (the caller failed to
            // allocate them); walks end as "retry later".
            None if n == 0 => return Err(ReadError::Retry),
            None => {
                let s = self.next.checked_rem(n).unwrap_or(0);
                let start = s.saturating_mul(PAGE);
                let page = self
                    .pages
                    .get_mut(start..start.saturating_add(PAGE))
                    .ok_or(ReadError::Retry)?;
                // Not cached on failure: the tag says "none" until it works.
                if let Some(t) = self.tags.get_mut(s) {
                    *t = u64::MAX;
                }
                self.src.read_page(base, page)?;
                self.copies = self.copies.saturating_add(1);
                if let Some(t) = self.tags.get_mut(s) {
                    *t = base;
                }
                self.next = s.saturating_add(1).checked_rem(n).unwrap_or(0);
                s
            }
        };
        let at = slot.saturating_mul(PAGE).saturating_add(off);
        let bytes = self
            .pages
            .get(at..at.saturating_add(buf.len()))
            .ok_or(ReadError::OutsideGuestMemory)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

impl<S: PageSource> GuestPhysRead for TableCache<'_, S> {
    fn read_u64(&mut self, gpa: u64) -> Result<u64, ReadError> {
        let mut v = [0u8; 8];
        self.read_bytes(gpa, &mut v)?;
        Ok(u64::from_le_bytes(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::vec;
    use std::vec::Vec;

    struct Mem {
        pages: HashMap<u64, Vec<u8>>,
        reads: u32,
        fail_once: Option<u64>,
    }

    impl PageSource for &mut Mem {
        fn read_page(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), ReadError> {
            self.reads += 1;
            if self.fail_once == Some(gpa) {
                self.fail_once = None;
                return Err(ReadError::Retry);
            }
            let p = self.pages.get(&gpa).ok_or(ReadError::OutsideGuestMemory)?;
            out.copy_from_slice(p);
            Ok(())
        }
    }

    fn mem() -> Mem {
        let mut pages = HashMap::new();
        for base in [0x1000u64, 0x2000, 0x3000] {
            let mut p = vec![0u8; PAGE];
            for i in 0..PAGE / 8 {
                p[i * 8..i * 8 + 8].copy_from_slice(&(base + i as u64).to_le_bytes());
            }
            pages.insert(base, p);
        }
        Mem {
            pages,
            reads: 0,
            fail_once: None,
        }
    }

    #[test]
    fn one_copy_per_page_then_hits() {
        let mut m = mem();
        let mut bufs = vec![0u8; 2 * PAGE];
        let mut c = TableCache::new(&mut m, &mut bufs);
        for i in 0..512u64 {
            assert_eq!(c.read_u64(0x1000 + i * 8), Ok(0x1000 + i));
        }
        assert_eq!(c.read_u64(0x2ff8), Ok(0x2000 + 511));
        assert_eq!(c.read_u64(0x1008), Ok(0x1001));
        assert_eq!(c.copies, 2);
        // A third page replaces one in turn; the values stay right.
        assert_eq!(c.read_u64(0x3010), Ok(0x3002));
        assert_eq!(c.read_u64(0x1010), Ok(0x1002));
        assert_eq!(c.read_u64(0x2010), Ok(0x2002));
        assert_eq!(m.reads, 5);
    }

    #[test]
    fn failures_are_not_cached() {
        let mut m = mem();
        m.fail_once = Some(0x2000);
        let mut bufs = vec![0u8; 4 * PAGE];
        let mut c = TableCache::new(&mut m, &mut bufs);
        assert_eq!(c.read_u64(0x2000), Err(ReadError::Retry));
        assert_eq!(c.read_u64(0x2000), Ok(0x2000));
        assert_eq!(c.read_u64(0x9000), Err(ReadError::OutsideGuestMemory));
        assert_eq!(c.read_u64(0x9000), Err(ReadError::OutsideGuestMemory));
        assert_eq!(c.read_u64(0x2008), Ok(0x2001));
        assert_eq!(c.copies, 1);
    }

    #[test]
    fn no_buffers_reads_nothing() {
        let mut m = mem();
        let mut bufs = vec![0u8; PAGE - 1];
        let mut c = TableCache::new(&mut m, &mut bufs);
        assert_eq!(c.read_u64(0x3ff8), Err(ReadError::Retry));
        assert_eq!(m.reads, 0);
    }
}
