// SPDX-License-Identifier: GPL-2.0

//! How many of the module's records hold each write-tracked guest frame, so
//! that KVM is asked to track a frame once however many records hold it.
//! KVM keeps a 16-bit count per frame, shared with its own shadow paging
//! and other users; one count per record would overflow it (64 targets of
//! 512 pages on one page-table frame are 32,768 records, and each page has
//! up to five table frames), and KVM refuses (with a warning) a count past
//! 65,535.
//!
//! An open-addressing hash table over a caller-provided slice (the module
//! allocates it and grows it with [`rehash`] when [`FrameRefs::needs_room`]
//! says so): no allocation, no recursion, every operation bounded by the
//! table's length.

/// One slot: `gfn + 1` (0: never used) and how many records hold it (0
/// with a gfn: a tombstone, reused by a later add).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    key: u64,
    count: u32,
}

/// What an add or a remove did to a frame's count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The first record: ask KVM to track it.
    First,
    /// The last record went: ask KVM to stop.
    Last,
    /// Held before and after: KVM is not asked.
    Kept,
    /// A remove of a frame no record holds: nothing to undo.
    NotHeld,
    /// No free slot (the caller grows the table first; see `needs_room`).
    Full,
}

/// The table's bookkeeping; the slots are the caller's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameRefs {
    /// Slots with a key (tombstones included).
    used: usize,
}

fn start(len: usize, gfn: u64) -> usize {
    // Fibonacci hashing; `len` is a power of two.
    let h = gfn.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 32) as usize & len.wrapping_sub(1)
}

impl FrameRefs {
    /// An empty table (all slots default).
    pub const fn new() -> Self {
        Self { used: 0 }
    }

    /// Whether the slots should be grown (to twice their length, a power of
    /// two of at least 16) before the next add: more than half are used.
    pub fn needs_room(&self, slots: &[Slot]) -> bool {
        slots.len() < 16 || !slots.len().is_power_of_two() || self.used.saturating_mul(2) >= slots.len()
    }

    /// One more record holds `gfn`.
    pub fn add(&mut self, slots: &mut [Slot], gfn: u64) -> Change {
        let Some(key) = gfn.checked_add(1) else { return Change::Full };
        let len = slots.len();
        if len == 0 || !len.is_power_of_two() {
            return Change::Full;
        }
        let mut i = start(len, gfn);
        let mut tomb = None;
        for _ in 0..len {
            let Some(s) = slots.get_mut(i) else { return Change::Full };
            if s.key == key && s.count > 0 {
                s.count = s.count.saturating_add(1);
                return Change::Kept;
            }
            if s.key == 0 {
                break;
            }
            if s.count == 0 && tomb.is_none() {
                tomb = Some(i);
            }
            i = i.wrapping_add(1) & len.wrapping_sub(1);
        }
        // Not held: the first tombstone on the way, or the empty slot.
        let at = match tomb {
            Some(t) => t,
            None => match slots.get(i) {
                Some(s) if s.key == 0 => {
                    self.used = self.used.saturating_add(1);
                    i
                }
                _ => return Change::Full,
            },
        };
        match slots.get_mut(at) {
            Some(s) => {
                *s = Slot { key, count: 1 };
                Change::First
            }
            None => Change::Full,
        }
    }

    /// One record less holds `gfn`.
    pub fn remove(&mut self, slots: &mut [Slot], gfn: u64) -> Change {
        match Self::find(slots, gfn).and_then(|i| slots.get_mut(i)) {
            Some(s) => {
                s.count = s.count.saturating_sub(1);
                if s.count == 0 {
                    Change::Last
                } else {
                    Change::Kept
                }
            }
            None => Change::NotHeld,
        }
    }

    /// How many records hold `gfn`.
    pub fn count(slots: &[Slot], gfn: u64) -> u32 {
        Self::find(slots, gfn).and_then(|i| slots.get(i)).map_or(0, |s| s.count)
    }

    fn find(slots: &[Slot], gfn: u64) -> Option<usize> {
        let key = gfn.checked_add(1)?;
        let len = slots.len();
        if len == 0 || !len.is_power_of_two() {
            return None;
        }
        let mut i = start(len, gfn);
        for _ in 0..len {
            let s = slots.get(i)?;
            if s.key == key && s.count > 0 {
                return Some(i);
            }
            if s.key == 0 {
                return None;
            }
            i = i.wrapping_add(1) & len.wrapping_sub(1);
        }
        None
    }

    /// Forgets every frame in `[first, first + n)` without a change for KVM
    /// (their memslot went away with its tracking).
    pub fn forget_range(&mut self, slots: &mut [Slot], first: u64, n: u64) {
        for s in slots.iter_mut() {
            let gfn = s.key.wrapping_sub(1);
            if s.key != 0 && gfn >= first && gfn.wrapping_sub(first) < n {
                s.count = 0;
            }
        }
    }

    /// Forgets every frame.
    pub fn clear(&mut self, slots: &mut [Slot]) {
        slots.fill(Slot::default());
        self.used = 0;
    }

    /// Moves the held frames of `from` into the empty `to` (a power of two
    /// at least twice the held frames), dropping tombstones. Returns the
    /// table for `to`, or `None` (and `to` partly filled) if it is too
    /// small.
    pub fn rehash(from: &[Slot], to: &mut [Slot]) -> Option<FrameRefs> {
        let mut refs = FrameRefs::new();
        for s in from.iter().filter(|s| s.key != 0 && s.count > 0) {
            let gfn = s.key.wrapping_sub(1);
            if refs.add(to, gfn) != Change::First {
                return None;
            }
            let i = Self::find(to, gfn)?;
            to.get_mut(i)?.count = s.count;
        }
        Some(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn kvm_is_asked_once_per_frame() {
        let mut slots = vec![Slot::default(); 16];
        let mut r = FrameRefs::new();
        assert_eq!(Change::First, r.add(&mut slots, 7));
        for _ in 0..40_000 {
            assert_eq!(Change::Kept, r.add(&mut slots, 7));
        }
        assert_eq!(40_001, FrameRefs::count(&slots, 7));
        for _ in 0..40_000 {
            assert_eq!(Change::Kept, r.remove(&mut slots, 7));
        }
        assert_eq!(Change::Last, r.remove(&mut slots, 7));
        assert_eq!(Change::NotHeld, r.remove(&mut slots, 7));
        assert_eq!(Change::First, r.add(&mut slots, 7));
    }

    #[test]
    fn a_remove_of_what_nobody_holds_changes_nothing() {
        let mut slots = vec![Slot::default(); 16];
        let mut r = FrameRefs::new();
        assert_eq!(Change::NotHeld, r.remove(&mut slots, 3));
        assert_eq!(Change::First, r.add(&mut slots, 3));
        assert_eq!(Change::NotHeld, r.remove(&mut slots, 4));
        assert_eq!(1, FrameRefs::count(&slots, 3));
    }

    #[test]
    fn bad_tables_and_keys_are_refused() {
        let mut r = FrameRefs::new();
        assert_eq!(Change::Full, r.add(&mut [], 1));
        assert_eq!(Change::Full, r.add(&mut [Slot::default(); 3], 1));
        assert_eq!(Change::Full, r.add(&mut [Slot::default(); 4], u64::MAX));
        assert_eq!(Change::NotHeld, r.remove(&mut [Slot::default(); 3], 1));
        let mut one = [Slot::default(); 1];
        assert_eq!(Change::First, r.add(&mut one, 9));
        assert_eq!(Change::Full, r.add(&mut one, 10));
    }

    #[test]
    fn forgotten_frames_start_again() {
        let mut slots = vec![Slot::default(); 64];
        let mut r = FrameRefs::new();
        for g in 100..110 {
            assert_eq!(Change::First, r.add(&mut slots, g));
            assert_eq!(Change::Kept, r.add(&mut slots, g));
        }
        r.forget_range(&mut slots, 103, 4);
        for g in 100..110 {
            let want = if (103..107).contains(&g) { 0 } else { 2 };
            assert_eq!(want, FrameRefs::count(&slots, g), "gfn {g}");
        }
        assert_eq!(Change::First, r.add(&mut slots, 104));
        assert_eq!(Change::NotHeld, r.remove(&mut slots, 105));
    }

    /// Random adds and removes against a HashMap, with growth by rehash.
    #[allow(clippy::expect_used)]
    #[test]
    fn matches_a_reference_map() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut slots: Vec<Slot> = vec![Slot::default(); 16];
        let mut r = FrameRefs::new();
        let mut want: HashMap<u64, u32> = HashMap::new();
        for step in 0..200_000 {
            let gfn = rnd() % 3000;
            if rnd() % 3 != 0 {
                if r.needs_room(&slots) {
                    let mut bigger = vec![Slot::default(); slots.len() * 2];
                    r = FrameRefs::rehash(&slots, &mut bigger).expect("rehash");
                    slots = bigger;
                }
                let c = r.add(&mut slots, gfn);
                let e = want.entry(gfn).or_insert(0);
                *e += 1;
                assert_eq!(if *e == 1 { Change::First } else { Change::Kept }, c, "step {step}");
            } else {
                let c = r.remove(&mut slots, gfn);
                match want.get_mut(&gfn) {
                    None => assert_eq!(Change::NotHeld, c),
                    Some(n) => {
                        *n -= 1;
                        if *n == 0 {
                            want.remove(&gfn);
                            assert_eq!(Change::Last, c);
                        } else {
                            assert_eq!(Change::Kept, c);
                        }
                    }
                }
            }
        }
        for g in 0..3000 {
            assert_eq!(want.get(&g).copied().unwrap_or(0), FrameRefs::count(&slots, g));
        }
    }
}
