// SPDX-License-Identifier: GPL-2.0

//! An in-place heapsort: O(n log n) whatever the input, no allocation, no
//! recursion. The module sorts with it rather than with `core`'s
//! `sort_unstable`, whose panic on an inconsistent order is a function the
//! kernel's objtool does not know as one that never returns.

/// Sorts `v` ascending.
pub fn heapsort<T: Ord>(v: &mut [T]) {
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down(v, start, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// Moves `v[root]` down the max-heap `v[..end]` to its place.
fn sift_down<T: Ord>(v: &mut [T], mut root: usize, end: usize) {
    loop {
        let Some(left) = root.checked_mul(2).and_then(|c| c.checked_add(1)) else { return };
        if left >= end {
            return;
        }
        let right = left.saturating_add(1);
        let child = if right < end && v.get(right) > v.get(left) { right } else { left };
        if v.get(child) <= v.get(root) {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn sorts_like_the_standard_sort() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in [0usize, 1, 2, 3, 7, 64, 1000, 4097] {
            let mut v: Vec<(u64, i32)> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Few distinct keys: many equal elements.
                    (x % 97, (x >> 32) as i32 % 5)
                })
                .collect();
            let mut want = v.clone();
            want.sort();
            heapsort(&mut v);
            assert_eq!(v, want, "n = {n}");
        }
        let mut sorted: Vec<u32> = (0..100).collect();
        heapsort(&mut sorted);
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
        let mut rev: Vec<u32> = (0..100).rev().collect();
        heapsort(&mut rev);
        assert_eq!(rev, sorted);
    }
}
