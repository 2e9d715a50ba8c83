// SPDX-License-Identifier: GPL-2.0

//! Scan jobs: which resident pages the report work scans with the active
//! signature set, with which neighbours as context, and which of their
//! bytes changed since their last scan. The scans themselves are `scan.rs`.

use super::page::{
    Page,
    PAGE_SIZE, //
};
use super::Targets;

/// A resident page to scan, with the neighbours (in its target) that were
/// scanned before it: a match straddling into one of them is reported by
/// this scan, a match straddling into a later one by that one's scan, so
/// each is reported once.
#[derive(Clone, Copy)]
pub(crate) struct ScanJob {
    pub(crate) target_id: u32,
    pub(crate) cr3: u64,
    pub(crate) gva: u64,
    pub(crate) gpa: u64,
    pub(crate) how: u32,
    pub(crate) injections: u32,
    pub(crate) prev_gpa: Option<u64>,
    pub(crate) next_gpa: Option<u64>,
    /// Report only matches touching these bytes, relative to the page's
    /// start (may reach into its neighbours); `None`: all touching the page.
    pub(crate) only: Option<(i32, i32)>,
    pub(crate) index: usize,
}

impl Targets {
    /// Collects up to `out.len()` resident, reported pages not scanned with
    /// signature set `generation`, marking them scanned. Returns how many.
    pub(crate) fn take_unscanned(&mut self, generation: u32, out: &mut [Option<ScanJob>]) -> usize {
        const PAGE: i32 = PAGE_SIZE as i32;
        let mut n = 0;
        for t in self.targets.iter_mut().flatten() {
            for i in 0..t.pages.len() {
                if n == out.len() {
                    return n;
                }
                let Some(p) = t.pages.get(i) else { break };
                if !p.is_resident() || !p.reported || p.scan_gen == generation {
                    continue;
                }
                let own = p.written.filter(|w| w.0 == generation).map(|w| (w.1 as i32, w.2 as i32));
                let pending = p.pending_seq;
                fn context(q: Option<&Page>, generation: u32) -> Option<&Page> {
                    q.filter(|q| q.is_resident() && q.scan_gen == generation)
                }
                let prev = context(i.checked_sub(1).and_then(|j| t.pages.get(j)), generation);
                let next = context(t.pages.get(i + 1), generation);
                // A rescan reports only matches touching what changed; a
                // neighbour scanned while this page waited had no context
                // from it, so what the neighbour's scan covered counts as
                // changed too.
                let only = own.map(|(mut lo, mut hi)| {
                    if let Some(q) = prev.filter(|q| q.scanned_seq > pending) {
                        lo = lo.min(q.last_change.0 - PAGE);
                    }
                    if let Some(q) = next.filter(|q| q.scanned_seq > pending) {
                        hi = hi.max(q.last_change.1 + PAGE);
                    }
                    (lo, hi)
                });
                let (prev_gpa, next_gpa) = (prev.map(|q| q.gpa), next.map(|q| q.gpa));
                let (target_id, cr3) = (t.id, t.cr3);
                self.scan_seq += 1;
                let Some(p) = t.pages.get_mut(i) else { break };
                p.scan_gen = generation;
                p.written = None;
                p.scanned_seq = self.scan_seq;
                p.last_change = own.unwrap_or((0, PAGE));
                out[n] = Some(ScanJob {
                    target_id,
                    index: i,
                    cr3,
                    gva: p.inj.target().gva,
                    gpa: p.gpa,
                    how: p.how,
                    injections: p.inj.stats().injections,
                    prev_gpa,
                    next_gpa,
                    only,
                });
                n += 1;
            }
        }
        n
    }

    /// Records whether the scan of page `index` of target `target_id` read
    /// its page (see `KVM_PFI_PAGE_SCANNED`).
    pub(crate) fn scan_done(&mut self, target_id: u32, index: usize, ok: bool) {
        let p = self.targets.iter_mut().flatten().find(|t| t.id == target_id).and_then(|t| t.pages.get_mut(index));
        if let Some(p) = p {
            p.scan_failed = !ok;
        }
    }
}
