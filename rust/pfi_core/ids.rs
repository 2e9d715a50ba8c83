// SPDX-License-Identifier: GPL-2.0

//! Handles given to userspace (VM ids, target ids) that are never reused:
//! a stale handle kept by one program must not name another program's VM
//! or target later. A counter hands out 1, 2, ..., `u32::MAX`, then none;
//! 0 is never a handle (the UAPI's "none"), so the counter's 0 means
//! exhausted and wrap-around cannot happen.

/// The next handle of `*next`, advancing it; `None` once all are used.
pub const fn take(next: &mut u32) -> Option<u32> {
    match *next {
        0 => None,
        id => {
            *next = id.wrapping_add(1);
            Some(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one_and_counts_up() {
        let mut next = 1;
        assert_eq!(take(&mut next), Some(1));
        assert_eq!(take(&mut next), Some(2));
        assert_eq!(next, 3);
    }

    #[test]
    fn never_wraps_around() {
        let mut next = u32::MAX - 1;
        assert_eq!(take(&mut next), Some(u32::MAX - 1));
        assert_eq!(take(&mut next), Some(u32::MAX));
        // Exhausted: no handle 0, and never 1 again.
        assert_eq!(take(&mut next), None);
        assert_eq!(take(&mut next), None);
        assert_eq!(next, 0);
    }
}
