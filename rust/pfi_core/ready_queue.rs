// SPDX-License-Identifier: GPL-2.0

//! The pages of one target that may get a #PF now (waiting for context and
//! armed by a walk that saw a swap entry), in the order they became so: an
//! intrusive FIFO of indices into the target's page array. The entry probe
//! takes the front page of a target in O(1) instead of searching the array
//! for one, and a page that had its turn without injecting goes to the back
//! ([`ReadyQueue::rotate`]), so no page holds back the others.
//!
//! The links live in the items ([`Queued`]); the queue holds the ends and
//! its length. Every operation is O(1), allocation-free, and total: an
//! index out of range or an inconsistent link is ignored, never a panic.

/// No item.
const NIL: u32 = u32::MAX;

/// An item's place in its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Links {
    prev: u32,
    next: u32,
    queued: bool,
}

impl Links {
    /// Not queued.
    pub const fn new() -> Self {
        Links {
            prev: NIL,
            next: NIL,
            queued: false,
        }
    }

    /// Whether the item is in the queue.
    pub const fn is_queued(&self) -> bool {
        self.queued
    }
}

impl Default for Links {
    fn default() -> Self {
        Self::new()
    }
}

/// What the queue needs of its items.
pub trait Queued {
    /// The item's links.
    fn links(&self) -> &Links;
    /// The same, to change.
    fn links_mut(&mut self) -> &mut Links;
}

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyQueue {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for ReadyQueue {
    fn default() -> Self {
        Self::new()
    }
}

fn links_at<T: Queued>(items: &mut [T], i: u32) -> Option<&mut Links> {
    items.get_mut(i as usize).map(Queued::links_mut)
}

impl ReadyQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        ReadyQueue {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// The front item's index.
    pub const fn front(&self) -> Option<usize> {
        if self.head == NIL {
            None
        } else {
            Some(self.head as usize)
        }
    }

    /// Items queued.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether none is queued.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues item `i` at the back, unless it is queued already.
    pub fn push_back<T: Queued>(&mut self, items: &mut [T], i: usize) {
        let Ok(idx) = u32::try_from(i) else { return };
        if idx == NIL {
            return;
        }
        match items.get(i) {
            Some(it) if !it.links().queued => {}
            _ => return,
        }
        let tail = self.tail;
        if let Some(l) = links_at(items, idx) {
            *l = Links {
                prev: tail,
                next: NIL,
                queued: true,
            };
        }
        match links_at(items, tail) {
            Some(t) => t.next = idx,
            None => self.head = idx,
        }
        self.tail = idx;
        self.len = self.len.saturating_add(1);
    }

    /// Takes item `i` out, if it is queued.
    pub fn remove<T: Queued>(&mut self, items: &mut [T], i: usize) {
        let Some(it) = items.get(i) else { return };
        let l = *it.links();
        if !l.queued {
            return;
        }
        match links_at(items, l.prev) {
            Some(p) => p.next = l.next,
            None => self.head = l.next,
        }
        match links_at(items, l.next) {
            Some(n) => n.prev = l.prev,
            None => self.tail = l.prev,
        }
        if let Some(me) = items.get_mut(i) {
            *me.links_mut() = Links::new();
        }
        self.len = self.len.saturating_sub(1);
    }

    /// Queues or takes out item `i` so that it is queued exactly when
    /// `ready`. A queued item keeps its place.
    pub fn set<T: Queued>(&mut self, items: &mut [T], i: usize, ready: bool) {
        if ready {
            self.push_back(items, i);
        } else {
            self.remove(items, i);
        }
    }

    /// Moves the front item to the back: it had its turn.
    pub fn rotate<T: Queued>(&mut self, items: &mut [T]) {
        if let Some(i) = self.front() {
            if self.len > 1 {
                self.remove(items, i);
                self.push_back(items, i);
            }
        }
    }

    /// Empties the queue (the items' links are reset by the caller, or the
    /// items are dropped).
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[derive(Default, Clone, Copy)]
    struct Item(Links);

    impl Queued for Item {
        fn links(&self) -> &Links {
            &self.0
        }
        fn links_mut(&mut self) -> &mut Links {
            &mut self.0
        }
    }

    fn order(q: &ReadyQueue, items: &[Item]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut i = q.head;
        while i != NIL {
            out.push(i as usize);
            assert!(out.len() <= items.len(), "cycle");
            i = items[i as usize].0.next;
        }
        // And backwards, the same.
        let mut back = Vec::new();
        let mut i = q.tail;
        while i != NIL {
            back.push(i as usize);
            assert!(back.len() <= items.len(), "cycle");
            i = items[i as usize].0.prev;
        }
        back.reverse();
        assert_eq!(out, back);
        assert_eq!(out.len(), q.len());
        out
    }

    #[test]
    fn fifo_order_and_removal_anywhere() {
        let mut items = [Item::default(); 6];
        let mut q = ReadyQueue::new();
        for i in [3, 1, 4, 0] {
            q.push_back(&mut items, i);
        }
        // Queued twice: keeps its place.
        q.push_back(&mut items, 1);
        assert_eq!(order(&q, &items), [3, 1, 4, 0]);
        q.remove(&mut items, 1);
        assert_eq!(order(&q, &items), [3, 4, 0]);
        q.remove(&mut items, 3);
        q.remove(&mut items, 0);
        assert_eq!(order(&q, &items), [4]);
        assert_eq!(q.front(), Some(4));
        // Not queued: nothing changes.
        q.remove(&mut items, 2);
        q.remove(&mut items, 99);
        q.push_back(&mut items, 99);
        assert_eq!(order(&q, &items), [4]);
        q.remove(&mut items, 4);
        assert!(q.is_empty());
        assert_eq!(q.front(), None);
        assert!(items.iter().all(|it| !it.0.is_queued()));
    }

    #[test]
    fn rotate_gives_every_page_a_turn() {
        let mut items = [Item::default(); 4];
        let mut q = ReadyQueue::new();
        for i in 0..4 {
            q.set(&mut items, i, true);
        }
        let mut fronts = Vec::new();
        for _ in 0..8 {
            fronts.push(q.front().unwrap());
            q.rotate(&mut items);
        }
        assert_eq!(fronts, [0, 1, 2, 3, 0, 1, 2, 3]);
        q.set(&mut items, 2, false);
        assert_eq!(order(&q, &items), [0, 1, 3]);
    }

    #[test]
    fn random_operations_keep_the_list_consistent() {
        let mut items = [Item::default(); 17];
        let mut q = ReadyQueue::new();
        let mut model: Vec<usize> = Vec::new();
        let mut s = 0x1234_5678_u64;
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let i = (s % 17) as usize;
            match (s >> 8) % 3 {
                0 => {
                    q.push_back(&mut items, i);
                    if !model.contains(&i) {
                        model.push(i);
                    }
                }
                1 => {
                    q.remove(&mut items, i);
                    model.retain(|&m| m != i);
                }
                _ => {
                    q.rotate(&mut items);
                    if model.len() > 1 {
                        let f = model.remove(0);
                        model.push(f);
                    }
                }
            }
            assert_eq!(order(&q, &items), model);
        }
    }
}
