// SPDX-License-Identifier: GPL-2.0

//! What guest writes to a protected page changed, as `write-attempt`
//! events report it: runs of changed bytes between two copies of a page (a
//! write the vCPU made natively, seen after the fact), and the merging of
//! the writes KVM emulated one by one (a string store is one write per
//! element) into one span per burst.

/// A span `[lo, hi)` of one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub lo: u32,
    /// One past the last byte.
    pub hi: u32,
}

/// The next run of bytes that differ between `old` and `new` at or after
/// `from`, or `None`. Runs are maximal: a run ends at the first equal byte.
/// Bounded by the shorter slice.
pub fn next_changed_run(old: &[u8], new: &[u8], from: usize) -> Option<Span> {
    let pairs = || old.iter().zip(new.iter()).enumerate().skip(from);
    let (lo, _) = pairs().find(|(_, (a, b))| a != b)?;
    let hi = pairs().skip_while(|&(i, _)| i < lo).find(|(_, (a, b))| a == b).map_or(old.len().min(new.len()), |(i, _)| i);
    Some(Span { lo: u32::try_from(lo).ok()?, hi: u32::try_from(hi).ok()? })
}

/// Merges a write of `[lo, hi)` into the span `acc` of writes of the same
/// page already gathered: when the two overlap or touch, the union (a
/// forward or backward string store, vector stores in any order over one
/// range). `None`: they are apart, `acc` is to be reported on its own first.
pub fn merge(acc: Span, lo: u32, hi: u32) -> Option<Span> {
    if lo > acc.hi || hi < acc.lo {
        return None;
    }
    Some(Span { lo: acc.lo.min(lo), hi: acc.hi.max(hi) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(old: &[u8], new: &[u8]) -> [Option<Span>; 4] {
        let mut out = [None; 4];
        let mut from = 0;
        for o in out.iter_mut() {
            *o = next_changed_run(old, new, from);
            match *o {
                Some(s) => from = s.hi as usize,
                None => break,
            }
        }
        out
    }

    #[test]
    fn no_change_no_run() {
        assert_eq!(runs(&[1, 2, 3], &[1, 2, 3])[0], None);
        assert_eq!(runs(&[], &[])[0], None);
    }

    #[test]
    fn runs_are_maximal_and_in_order() {
        let old = [0u8; 10];
        let new = [1, 1, 0, 0, 5, 0, 0, 0, 7, 7];
        assert_eq!(
            runs(&old, &new),
            [
                Some(Span { lo: 0, hi: 2 }),
                Some(Span { lo: 4, hi: 5 }),
                Some(Span { lo: 8, hi: 10 }),
                None
            ]
        );
    }

    #[test]
    fn whole_page_is_one_run() {
        let old = [0u8; 4096];
        let new = [0xa5u8; 4096];
        assert_eq!(runs(&old, &new)[0], Some(Span { lo: 0, hi: 4096 }));
        assert_eq!(runs(&old, &new)[1], None);
    }

    #[test]
    fn shorter_slice_bounds() {
        assert_eq!(next_changed_run(&[0, 0], &[0, 0, 1], 0), None);
        assert_eq!(next_changed_run(&[0, 0], &[0, 1], 5), None);
    }

    #[test]
    fn merge_touching_and_overlapping() {
        let acc = Span { lo: 16, hi: 32 };
        assert_eq!(merge(acc, 32, 48), Some(Span { lo: 16, hi: 48 }));
        assert_eq!(merge(acc, 8, 16), Some(Span { lo: 8, hi: 32 }));
        assert_eq!(merge(acc, 20, 24), Some(Span { lo: 16, hi: 32 }));
        assert_eq!(merge(acc, 0, 4096), Some(Span { lo: 0, hi: 4096 }));
    }

    #[test]
    fn merge_apart() {
        let acc = Span { lo: 16, hi: 32 };
        assert_eq!(merge(acc, 33, 40), None);
        assert_eq!(merge(acc, 0, 15), None);
    }
}
