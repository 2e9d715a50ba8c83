// SPDX-License-Identifier: GPL-2.0

//! Protected pages (`KVM_PFI_TARGET_PROTECT`, `_ENFORCE`): which frames are
//! write-tracked for which pages, their kept bytes, and what a guest write
//! to one means. The tracking itself and the restore are `protect.rs`'s.

use kernel::prelude::*;

use crate::bindings::uapi;
use crate::pfi_core::writes::Span;

use super::Targets;

/// A protected page to start or stop tracking.
#[derive(Clone, Copy)]
pub(crate) struct ProtectJob {
    pub(crate) target_id: u32,
    pub(crate) index: usize,
    pub(crate) gfn: u64,
    pub(crate) enforce: bool,
}

/// What a protected page's write means to the notifier.
#[derive(Clone, Copy)]
pub(crate) struct ProtectedWrite {
    pub(crate) target_id: u32,
    pub(crate) cr3: u64,
    pub(crate) root: u64,
    pub(crate) gva: u64,
    pub(crate) enforce: bool,
}

impl Targets {
    /// Protection work for the report: pages of `KVM_PFI_TARGET_PROTECT`
    /// targets that are resident and not tracked (recorded as tracked now),
    /// and tracked pages gone stale (recorded as untracked). Returns (to
    /// track, to untrack, whether more remain).
    pub(crate) fn take_protection_changes(
        &mut self,
        track: &mut [Option<ProtectJob>],
        untrack: &mut [u64],
    ) -> (usize, usize, bool) {
        let (mut na, mut nr) = (0, 0);
        for t in self.targets.iter_mut().flatten() {
            if t.flags & uapi::KVM_PFI_TARGET_PROTECT == 0 {
                continue;
            }
            let enforce = t.flags & uapi::KVM_PFI_TARGET_ENFORCE != 0;
            let target_id = t.id;
            for (index, p) in t.pages.iter_mut().enumerate() {
                if p.moved {
                    let Some(g) = p.data_tracked else { continue };
                    if nr == untrack.len() {
                        return (na, nr, true);
                    }
                    untrack[nr] = g;
                    nr += 1;
                    p.data_tracked = None;
                    p.shadow = None;
                    continue;
                }
                if p.data_tracked.is_none() && p.is_resident() && p.reported && !p.protect_failed {
                    if na == track.len() {
                        return (na, nr, true);
                    }
                    let gfn = p.gpa >> 12;
                    p.data_tracked = Some(gfn);
                    p.track_applied = false;
                    track[na] = Some(ProtectJob { target_id, index, gfn, enforce });
                    na += 1;
                }
            }
        }
        (na, nr, false)
    }

    /// KVM write-tracks the page's frame `gfn` now (`ProtectJob`).
    pub(crate) fn protection_started(&mut self, target_id: u32, index: usize, gfn: u64) {
        let p = self.targets.iter_mut().flatten().find(|t| t.id == target_id).and_then(|t| t.pages.get_mut(index));
        if let Some(p) = p.filter(|p| p.data_tracked == Some(gfn)) {
            p.track_applied = true;
        }
    }

    /// Installs the copy of a page taken after its tracking began, unless
    /// the page changed meanwhile.
    pub(crate) fn set_shadow(&mut self, target_id: u32, index: usize, gfn: u64, shadow: KVec<u8>) -> Option<KVec<u8>> {
        let p = self
            .targets
            .iter_mut()
            .flatten()
            .find(|t| t.id == target_id)
            .and_then(|t| t.pages.get_mut(index));
        match p {
            Some(p) if p.data_tracked == Some(gfn) && p.shadow.is_none() => {
                p.shadow = Some(shadow);
                None
            }
            // Freed by the caller, outside the lock.
            _ => Some(shadow),
        }
    }

    /// The protected pages whose frame `gfn` is (targets may share a
    /// frame), up to `out.len()`; returns how many.
    pub(crate) fn protected_pages(&self, gfn: u64, out: &mut [Option<ProtectedWrite>]) -> usize {
        let mut n = 0;
        for t in self.targets.iter().flatten() {
            for p in t.pages.iter().filter(|p| p.data_tracked == Some(gfn) && !p.moved) {
                if n == out.len() {
                    return n;
                }
                out[n] = Some(ProtectedWrite {
                    target_id: t.id,
                    cr3: t.cr3,
                    root: p.inj.target().space.root_gpa(),
                    gva: p.inj.target().gva,
                    enforce: p.shadow.is_some(),
                });
                n += 1;
            }
        }
        n
    }

    /// Copies the kept bytes `[offset, offset + out.len())` of the
    /// protected page at `gfn` into `out`; false if there are none.
    pub(crate) fn shadow_bytes(&self, gfn: u64, offset: usize, out: &mut [u8]) -> bool {
        for t in self.targets.iter().flatten() {
            for p in t.pages.iter().filter(|p| p.data_tracked == Some(gfn)) {
                let src = p.shadow.as_ref().and_then(|s| s.get(offset..offset + out.len()));
                if let Some(src) = src {
                    out.copy_from_slice(src);
                    return true;
                }
            }
        }
        false
    }

    /// After a guest write of `[lo, hi)` to the protected page `gva` of
    /// target `target_id`: if it no longer maps that frame (`moved`), stop
    /// protecting it; else scan it again if its bytes changed (`rescan`).
    pub(crate) fn on_protected_write(&mut self, target_id: u32, gva: u64, moved: bool, rescan: bool, lo: u32, hi: u32) {
        let seq = self.scan_seq;
        for t in self.targets.iter_mut().flatten().filter(|t| t.id == target_id) {
            for p in t.pages.iter_mut().filter(|p| p.inj.target().gva == gva && p.data_tracked.is_some()) {
                if moved {
                    p.moved = true;
                } else if rescan {
                    p.written = match (p.written, p.scan_gen) {
                        // A rescan is pending already: widen it.
                        (Some((g, a, b)), 0) => Some((g, a.min(lo), b.max(hi))),
                        // Never scanned: the pending scan is a full one.
                        (None, 0) => None,
                        (_, g) => Some((g, lo, hi)),
                    };
                    if p.scan_gen != 0 {
                        p.pending_seq = seq;
                    }
                    p.scan_gen = 0;
                }
            }
        }
    }

    /// Whether a target asks for protection.
    pub(crate) fn wants_protection(&self) -> bool {
        self.targets.iter().flatten().any(|t| t.flags & uapi::KVM_PFI_TARGET_PROTECT != 0)
    }

    /// KVM refused to track the page's frame (a guest mapping outside its
    /// memory): it is not protected, and not tried again.
    pub(crate) fn protection_failed(&mut self, target_id: u32, index: usize) {
        let p = self.targets.iter_mut().flatten().find(|t| t.id == target_id).and_then(|t| t.pages.get_mut(index));
        if let Some(p) = p {
            p.data_tracked = None;
            p.protect_failed = true;
        }
    }
}

/// Emulated writes of one page gathered into one report (`protect.rs`):
/// the span written and the page's bytes there.
pub(crate) struct Gathered {
    pub(crate) gfn: u64,
    pub(crate) span: Span,
    pub(crate) bytes: KVec<u8>,
}
