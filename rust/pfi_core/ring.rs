// SPDX-License-Identifier: GPL-2.0
//! A bounded first-in first-out queue over slots the caller allocated.
//!
//! The module's event records pass through two of these (the outbox every
//! producer hands records to, and each event reader's queue). Producers run
//! under spinlocks where nothing may be allocated, so the storage is made
//! once, up front, and a full queue refuses the value instead of growing:
//! the caller counts it as lost.

use core::ops::DerefMut;

/// A FIFO of at most `slots.len()` values. `S` is the storage: a kernel
/// `KVVec<Option<T>>` in the module, a `Vec` or an array in tests.
///
/// Invariant: the `len` slots from `head` on (wrapping) are `Some`, the
/// others `None`.
pub struct Ring<S> {
    slots: S,
    head: usize,
    len: usize,
}

impl<T, S: DerefMut<Target = [Option<T>]>> Ring<S> {
    /// A ring over `slots`, which must all be `None`; any that are not are
    /// dropped.
    pub fn new(mut slots: S) -> Self {
        for s in slots.iter_mut() {
            *s = None;
        }
        Ring { slots, head: 0, len: 0 }
    }

    /// How many values it holds at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether another value would be refused.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity()
    }

    /// Slot index `k` places after the head.
    fn index(&self, k: usize) -> Option<usize> {
        self.head.wrapping_add(k).checked_rem(self.capacity())
    }

    /// Appends `v`; gives it back when full.
    pub fn push_back(&mut self, v: T) -> Result<(), T> {
        if self.is_full() {
            return Err(v);
        }
        let Some(i) = self.index(self.len) else { return Err(v) };
        match self.slots.get_mut(i) {
            Some(slot) => {
                *slot = Some(v);
                self.len = self.len.wrapping_add(1);
                Ok(())
            }
            None => Err(v),
        }
    }

    /// Puts `v` back in front (a consumer that took it could not use it);
    /// gives it back when full.
    pub fn push_front(&mut self, v: T) -> Result<(), T> {
        if self.is_full() {
            return Err(v);
        }
        let Some(i) = self.index(self.capacity().wrapping_sub(1)) else { return Err(v) };
        match self.slots.get_mut(i) {
            Some(slot) => {
                *slot = Some(v);
                self.head = i;
                self.len = self.len.wrapping_add(1);
                Ok(())
            }
            None => Err(v),
        }
    }

    /// Takes the oldest value.
    pub fn pop_front(&mut self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        let v = self.slots.get_mut(self.head)?.take();
        self.head = self.index(1).unwrap_or(0);
        self.len = self.len.wrapping_sub(1);
        v
    }

    /// The oldest value, left in place.
    pub fn front(&self) -> Option<&T> {
        if self.is_empty() {
            return None;
        }
        self.slots.get(self.head)?.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn ring(n: usize) -> Ring<Vec<Option<u32>>> {
        Ring::new((0..n).map(|_| None).collect())
    }

    #[test]
    fn fifo_order_and_full() {
        let mut r = ring(3);
        assert!(r.is_empty());
        assert_eq!(r.pop_front(), None);
        for v in 1..=3 {
            assert_eq!(r.push_back(v), Ok(()));
        }
        assert!(r.is_full());
        assert_eq!(r.push_back(4), Err(4));
        assert_eq!(r.front(), Some(&1));
        assert_eq!(r.pop_front(), Some(1));
        assert_eq!(r.push_back(4), Ok(()));
        assert_eq!([r.pop_front(), r.pop_front(), r.pop_front(), r.pop_front()], [Some(2), Some(3), Some(4), None]);
    }

    #[test]
    fn wraps_many_times() {
        let mut r = ring(5);
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        for round in 0..100u32 {
            for _ in 0..(round % 5 + 1) {
                if r.push_back(next_in).is_ok() {
                    next_in += 1;
                }
            }
            for _ in 0..(round % 3 + 1) {
                if let Some(v) = r.pop_front() {
                    assert_eq!(v, next_out);
                    next_out += 1;
                }
            }
            assert_eq!(r.len() as u32, next_in - next_out);
        }
    }

    #[test]
    fn push_front_is_next_out() {
        let mut r = ring(3);
        r.push_back(1).unwrap();
        r.push_back(2).unwrap();
        let v = r.pop_front().unwrap();
        r.push_front(v).unwrap();
        r.push_front(0).unwrap();
        assert_eq!(r.push_front(9), Err(9));
        assert_eq!([r.pop_front(), r.pop_front(), r.pop_front()], [Some(0), Some(1), Some(2)]);
        assert!(r.is_empty());
    }

    #[test]
    fn zero_capacity_refuses() {
        let mut r = ring(0);
        assert_eq!(r.push_back(1), Err(1));
        assert_eq!(r.push_front(1), Err(1));
        assert_eq!(r.pop_front(), None);
        assert_eq!(r.front(), None);
    }

    #[test]
    fn new_clears_slots() {
        let r: Ring<Vec<Option<u32>>> = Ring::new(vec![Some(1), None]);
        assert!(r.is_empty());
    }
}
