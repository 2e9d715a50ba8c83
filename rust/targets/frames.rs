// SPDX-License-Identifier: GPL-2.0

//! The frame table of a VM: how many of its records (page-table frames of
//! target walks, protected pages) hold each write-tracked guest frame, so
//! that KVM's 16-bit count per frame is taken once per frame
//! (`pfi_core::frame_refs`). Behind `vm.tracking`; changed only through
//! `tracking_changes::TrackingChanges`.

use kernel::prelude::*;

use crate::pfi_core::frame_refs::{
    Change,
    FrameRefs,
    Slot, //
};
use crate::targets::tables::FramesGone;
use crate::targets::Targets;

pub(crate) struct FrameTable {
    refs: FrameRefs,
    slots: KVVec<Slot>,
}

impl FrameTable {
    pub(crate) const fn new() -> Self {
        FrameTable { refs: FrameRefs::new(), slots: KVVec::new() }
    }

    /// One more record holds `gfn`; `Change::First` asks KVM to track it.
    /// `ENOMEM` if the table could not grow.
    /// A frame held already never fails: it takes no new slot.
    pub(crate) fn add(&mut self, gfn: u64) -> Result<Change> {
        if FrameRefs::count(&self.slots, gfn) == 0 && self.refs.needs_room(&self.slots) {
            let len = self.slots.len().saturating_mul(2).max(64);
            let mut bigger = KVVec::from_elem(Slot::default(), len, GFP_KERNEL)?;
            // Twice the old length is at least twice what it holds.
            self.refs = FrameRefs::rehash(&self.slots, &mut bigger).ok_or(ENOMEM)?;
            self.slots = bigger;
        }
        Ok(self.refs.add(&mut self.slots, gfn))
    }

    /// One record less holds `gfn`; `Change::Last` asks KVM to stop.
    pub(crate) fn remove(&mut self, gfn: u64) -> Change {
        self.refs.remove(&mut self.slots, gfn)
    }

    /// Forgets the frames of removed memslots. When more were removed than
    /// `FramesGone` keeps, the counts are made again from the records
    /// (which the removals only shrank, so the table has room): rare, and
    /// it holds the targets lock for one pass over every page.
    pub(crate) fn forget(&mut self, gone: &FramesGone, targets: &Targets) {
        if gone.overflow {
            self.refs.clear(&mut self.slots);
            let (refs, slots) = (&mut self.refs, &mut self.slots);
            targets.for_each_tracked(|g| {
                let _ = refs.add(slots, g);
            });
            return;
        }
        for &(first, n) in gone.ranges() {
            self.refs.forget_range(&mut self.slots, first, n);
        }
    }
}
