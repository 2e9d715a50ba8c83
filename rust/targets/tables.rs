// SPDX-License-Identifier: GPL-2.0

//! Write tracking of the page-table pages of target walks
//! (`track_page_tables`, off by default: see Documentation/design.rst): which
//! frames each page's last walk went through, and what changes when the
//! guest writes one or a memslot goes.

use super::page::apply;
use super::Targets;

impl Targets {
    /// A write-tracked guest page was written: pages whose walk went
    /// through it walk again (and may not inject before that).
    pub(crate) fn on_page_table_write(&mut self, gpa: u64) -> bool {
        let gfn = gpa >> 12;
        let mut hit = false;
        for t in self.targets.iter_mut().flatten() {
            let mut target_hit = false;
            for i in 0..t.pages.len() {
                let p = &mut t.pages[i];
                if !p.tables_tracked.contains(gfn) {
                    continue;
                }
                let a = p.inj.on_page_table_write();
                apply(p, a);
                p.walk_due = true;
                t.sync_ready(i);
                target_hit = true;
            }
            if target_hit {
                // A settled page may need a fault again after its walk.
                self.gate.add_space(t.gate_key());
                hit = true;
            }
        }
        if hit {
            self.gate.set_busy(true);
        }
        hit
    }

    /// A memslot went away, and KVM's tracking of its frames with it.
    pub(crate) fn on_region_gone(&mut self, gfn: u64, n: u64) {
        self.frames_gone.push(gfn, n);
        self.gate.set_busy(true);
        for t in self.targets.iter_mut().flatten() {
            // Every page walks again, and may need a fault after.
            self.gate.add_space(t.gate_key());
            for p in t.pages.iter_mut() {
                p.tables_tracked.forget_range(gfn, n);
                // Its tracking went with the memslot: not protected now,
                // and nothing to untrack later.
                if p.data_tracked.is_some_and(|g| g >= gfn && g - gfn < n) {
                    p.data_tracked = None;
                    p.shadow = None;
                    p.protect_failed = true;
                }
                p.walk_due = true;
            }
        }
        self.tracking_stale = true;
    }

    /// Moves up to `adds.len()` / `removes.len()` tracking changes out,
    /// recording them as done: the caller applies them outside the lock.
    /// Returns (adds, removes, whether more remain).
    pub(crate) fn take_tracking_changes(&mut self, adds: &mut [u64], removes: &mut [u64]) -> (usize, usize, bool) {
        let (mut na, mut nr) = (0, 0);
        for t in self.targets.iter_mut().flatten() {
            for p in t.pages.iter_mut() {
                if p.tables_wanted == p.tables_tracked {
                    continue;
                }
                if na + 5 > adds.len() || nr + 5 > removes.len() {
                    return (na, nr, true);
                }
                for &g in p.tables_wanted.as_slice() {
                    if !p.tables_tracked.contains(g) {
                        adds[na] = g;
                        na += 1;
                    }
                }
                for &g in p.tables_tracked.as_slice() {
                    if !p.tables_wanted.contains(g) {
                        removes[nr] = g;
                        nr += 1;
                    }
                }
                p.tables_tracked = p.tables_wanted;
            }
        }
        self.tracking_stale = false;
        (na, nr, false)
    }
}

/// Memslot removals the frame table (`tracking::FrameTable`) has not
/// forgotten yet: KVM reports them under its memslots lock, where the table
/// (behind `vm.tracking`) cannot be taken; the next tracking change, which
/// holds that lock too, applies them before anything else.
#[derive(Clone, Copy)]
pub(crate) struct FramesGone {
    ranges: [(u64, u64); 16],
    n: usize,
    /// More removals than `ranges` holds: recount from the records.
    pub(crate) overflow: bool,
}

impl FramesGone {
    pub(crate) const fn new() -> Self {
        FramesGone { ranges: [(0, 0); 16], n: 0, overflow: false }
    }

    fn push(&mut self, gfn: u64, n: u64) {
        match self.ranges.get_mut(self.n) {
            Some(r) => {
                *r = (gfn, n);
                self.n += 1;
            }
            None => self.overflow = true,
        }
    }

    /// The removals as `(first gfn, frames)`.
    pub(crate) fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.n]
    }
}

impl Targets {
    /// Takes the removals to forget (see `FramesGone`).
    pub(crate) fn take_frames_gone(&mut self) -> FramesGone {
        core::mem::replace(&mut self.frames_gone, FramesGone::new())
    }

    /// Tracking `gfn` as a page-table frame failed: no page records it.
    /// (No record held it before: a held frame's add cannot fail.)
    pub(crate) fn forget_tables_frame(&mut self, gfn: u64) {
        for t in self.targets.iter_mut().flatten() {
            for p in t.pages.iter_mut() {
                p.tables_tracked.forget_range(gfn, 1);
            }
        }
    }

    /// Calls `f` with every frame a record says is tracked, once per record.
    pub(crate) fn for_each_tracked(&self, mut f: impl FnMut(u64)) {
        for t in self.targets.iter().flatten() {
            for p in t.pages.iter() {
                p.tables_tracked.as_slice().iter().chain(p.data_tracked.as_slice()).for_each(|&g| f(g));
            }
        }
    }
}
