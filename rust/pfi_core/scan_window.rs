// SPDX-License-Identifier: GPL-2.0
//! Which matches of one page's scan to report, and where they start.
//!
//! A page is scanned in a window of `[pre bytes of the previous page][the
//! page][bytes of the next page]` (the neighbours only when they were
//! scanned before, see the module's `scan.rs`). A match is this page's to
//! report when it touches the page; after guest writes, only when it also
//! touches the bytes that changed (given relative to the page's start, so
//! they may reach into a neighbour).

/// Bytes of a page.
pub const PAGE_SIZE: usize = 4096;

/// One page's scan window.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Bytes of the previous page before the page in the haystack.
    pub pre: usize,
    /// After writes: the changed bytes `[lo, hi)` relative to the page's
    /// start; `None`: the whole page is new.
    pub only: Option<(i32, i32)>,
}

/// Where a reported match starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// In the previous page (its bytes were part of the window), else in
    /// the page itself.
    pub in_prev: bool,
    /// Offset of the first matched byte in that page.
    pub offset: usize,
}

impl Window {
    /// Whether the match `[start, start + len)` of the haystack is this
    /// page's to report, and where it starts if so.
    pub fn report(&self, start: usize, len: usize) -> Option<Start> {
        let end = start.checked_add(len)?;
        let page_end = self.pre.checked_add(PAGE_SIZE)?;
        // Only matches touching this page: the rest are the neighbours'.
        if len == 0 || start >= page_end || end <= self.pre {
            return None;
        }
        if let Some((lo, hi)) = self.only {
            let rel = |x: usize| i64::try_from(x).ok().and_then(|x| x.checked_sub(self.pre as i64));
            let (s, e) = (rel(start)?, rel(end)?);
            if s >= i64::from(hi) || e <= i64::from(lo) {
                return None;
            }
        }
        Some(match self.pre.checked_sub(start) {
            Some(back) if back > 0 => Start { in_prev: true, offset: PAGE_SIZE.checked_sub(back)? },
            _ => Start { in_prev: false, offset: start.checked_sub(self.pre)? },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: usize = 1023;

    fn full(pre: usize) -> Window {
        Window { pre, only: None }
    }

    #[test]
    fn matches_touching_the_page_are_its_own() {
        let w = full(CTX);
        // Entirely in the previous page's context: the previous page's.
        assert_eq!(w.report(0, 10), None);
        assert_eq!(w.report(CTX - 10, 10), None);
        // Straddling the previous page and this one: starts there.
        assert_eq!(w.report(CTX - 7, 16), Some(Start { in_prev: true, offset: PAGE_SIZE - 7 }));
        // Inside the page.
        assert_eq!(w.report(CTX, 4), Some(Start { in_prev: false, offset: 0 }));
        assert_eq!(w.report(CTX + 100, 4), Some(Start { in_prev: false, offset: 100 }));
        // Straddling into the next page: this page's, it starts here.
        assert_eq!(w.report(CTX + PAGE_SIZE - 3, 8), Some(Start { in_prev: false, offset: PAGE_SIZE - 3 }));
        // Entirely in the next page's bytes: the next page's.
        assert_eq!(w.report(CTX + PAGE_SIZE, 8), None);
    }

    #[test]
    fn without_a_previous_page() {
        let w = full(0);
        assert_eq!(w.report(0, 8), Some(Start { in_prev: false, offset: 0 }));
        assert_eq!(w.report(PAGE_SIZE, 8), None);
    }

    #[test]
    fn after_writes_only_matches_touching_what_changed() {
        let w = Window { pre: CTX, only: Some((100, 108)) };
        assert_eq!(w.report(CTX + 90, 10), None); // ends right before
        assert_eq!(w.report(CTX + 90, 11), Some(Start { in_prev: false, offset: 90 }));
        assert_eq!(w.report(CTX + 107, 4), Some(Start { in_prev: false, offset: 107 }));
        assert_eq!(w.report(CTX + 108, 4), None); // starts right after
        assert_eq!(w.report(CTX + 2000, 4), None);
    }

    #[test]
    fn changed_bytes_may_reach_into_a_neighbour() {
        // The previous page was rescanned whole while this one waited.
        let w = Window { pre: CTX, only: Some((-(PAGE_SIZE as i32), 8)) };
        assert_eq!(w.report(CTX - 7, 16), Some(Start { in_prev: true, offset: PAGE_SIZE - 7 }));
        assert_eq!(w.report(CTX + 500, 4), None);
        // The next page changed at its start.
        let w = Window { pre: 0, only: Some((4000, PAGE_SIZE as i32 + 8)) };
        assert_eq!(w.report(PAGE_SIZE - 4, 8), Some(Start { in_prev: false, offset: PAGE_SIZE - 4 }));
    }

    #[test]
    fn empty_and_overflowing_matches_are_refused() {
        let w = full(CTX);
        assert_eq!(w.report(CTX + 1, 0), None);
        assert_eq!(w.report(usize::MAX, 2), None);
    }
}
