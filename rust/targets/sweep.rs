// SPDX-License-Identifier: GPL-2.0

//! What the sweep (`crate::sweep`) finds due on a VM's targets: under the
//! lock, a bounded number of pages at a time.

use kernel::prelude::*;

use crate::pfi_core::inject::State;

use super::page::{
    apply,
    settle,
    sweep_due, //
};
use super::probe::DueWalk;
use super::{
    Targets,
    MAX_TARGETS, //
};

impl Targets {
    /// Looks at up to `max_pages` pages from `*from` (target slot, page
    /// index) on, moving it past them: times out delivered faults whose
    /// guest did not bring the page in (their vCPU's exits do too, but it
    /// may be halted), and appends the pages due for a walk to `out`, as
    /// far as its capacity goes (no allocation under the lock). Returns
    /// (whether the pass is over, whether a page settled).
    pub(crate) fn sweep_collect(
        &mut self,
        now: u64,
        from: &mut (usize, usize),
        max_pages: usize,
        out: &mut KVec<DueWalk>,
    ) -> (bool, bool) {
        let mut looked = 0;
        let mut settled = false;
        while from.0 < MAX_TARGETS {
            if let Some(t) = self.targets[from.0].as_deref_mut() {
                while from.1 < t.pages.len() {
                    if looked == max_pages || out.len() == out.capacity() {
                        return (false, settled);
                    }
                    let i = from.1;
                    let p = &mut t.pages[i];
                    // Only a delivered fault: one still in flight is its
                    // vCPU's, which is running it.
                    if let State::AwaitingUpdate { .. } = p.inj.state() {
                        let a = p.inj.on_tick(now);
                        apply(p, a);
                        settled |= settle(p);
                        t.sync_ready(i);
                    }
                    let p = &t.pages[i];
                    if sweep_due(p, now) {
                        // Capacity checked: no allocation.
                        let _ = out.push(DueWalk::of(from.0, t, i, p), GFP_ATOMIC);
                    }
                    looked += 1;
                    from.1 += 1;
                }
            }
            *from = (from.0 + 1, 0);
        }
        (true, settled)
    }
}
