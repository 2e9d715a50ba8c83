// SPDX-License-Identifier: GPL-2.0

//! A VM's rules as data (`LinuxGuest::rules`): each rule as added, the
//! targets it made and what the last walk made of it; apart from
//! `rules.rs`, which keeps them in step with the guest, so that the VM's
//! state needs nothing of the VM.

use kernel::prelude::*;

use crate::bindings::uapi;
use crate::pfi_core::process_regions::Region;

const PAGE: u64 = 4096;
const NAME_LEN: usize = uapi::KVM_PFI_RULE_NAME_LEN as usize;

/// A VM's rules (in `LinuxGuest`).
pub(crate) struct Rules {
    pub(super) rules: KVVec<Rule>,
    pub(super) next_id: u32,
}

/// One rule, as added, and what the last walk made of it.
pub(super) struct Rule {
    pub(super) id: u32,
    pub(super) pid: i32,
    pub(super) region: Region,
    pub(super) target_flags: u32,
    pub(super) name: [u8; NAME_LEN],
    pub(super) pattern: [u8; NAME_LEN],
    pub(super) targets: KVVec<RuleTarget>,
    pub(super) nr_processes: u32,
    pub(super) pages_uncovered: u64,
    pub(super) walk_errors: u32,
}

/// A target a rule made.
#[derive(Clone, Copy)]
pub(super) struct RuleTarget {
    pub(super) id: u32,
    pub(super) cr3: u64,
    pub(super) mm: u64,
    pub(super) gva: u64,
    pub(super) len: u64,
    /// Walks since its process was last on the task list.
    pub(super) gone_walks: u8,
}

/// Bytes of a NUL-terminated array, up to the NUL.
pub(super) fn until_nul(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).and_then(|n| b.get(..n)).unwrap_or(b)
}

impl Rule {
    /// Checks a `KVM_PFI_RULE_ADD` request; nothing is changed.
    pub(super) fn validate(req: &uapi::kvm_pfi_rule) -> Result<Rule> {
        let outs = (req.rule_id, req.nr_targets, req.pages, req.pages_uncovered, req.nr_processes, req.walk_errors);
        if outs != (0, 0, 0, 0, 0, 0) {
            return Err(EINVAL);
        }
        // The NUL must be there: a name or pattern is never cut.
        if !req.name.contains(&0) || !req.pattern.contains(&0) {
            return Err(EINVAL);
        }
        let named = req.name.first() != Some(&0);
        if req.pid < 0 || (req.pid > 0) == named {
            return Err(EINVAL);
        }
        let region = Region::from_code(req.region).ok_or(EINVAL)?;
        if (region == Region::File) != (req.pattern.first() != Some(&0)) {
            return Err(EINVAL);
        }
        let f = req.target_flags;
        if f & !uapi::KVM_PFI_RULE_TARGET_FLAGS != 0
            || (f & uapi::KVM_PFI_TARGET_ENFORCE != 0 && f & uapi::KVM_PFI_TARGET_PROTECT == 0)
        {
            return Err(EINVAL);
        }
        Ok(Rule {
            id: 0,
            pid: req.pid,
            region,
            target_flags: f,
            name: req.name,
            pattern: req.pattern,
            targets: KVVec::new(),
            nr_processes: 0,
            pages_uncovered: 0,
            walk_errors: 0,
        })
    }

    /// Whether the rule names process `p` (a user process: it has an mm).
    pub(super) fn names(&self, p: &uapi::kvm_pfi_process) -> bool {
        if p.mm == 0 || p.cr3 == 0 {
            return false;
        }
        if self.pid != 0 {
            return p.pid == self.pid;
        }
        let name = until_nul(&self.name);
        // The kernel's comm is the first 15 bytes of the name.
        let comm = until_nul(&p.comm);
        let short = name.get(..name.len().min(uapi::KVM_PFI_COMM_LEN as usize - 1)).unwrap_or(name);
        let exe = until_nul(&p.exe);
        let base = exe.rsplit(|&c| c == b'/').next().unwrap_or(exe);
        comm == short || base == name
    }

    /// Bytes of a target piece: ENFORCE keeps a copy of each page, at most
    /// `KVM_PFI_MAX_ENFORCE_PAGES` a target.
    pub(super) fn piece_len(&self) -> u64 {
        let pages = if self.target_flags & uapi::KVM_PFI_TARGET_ENFORCE != 0 {
            uapi::KVM_PFI_MAX_ENFORCE_PAGES
        } else {
            uapi::KVM_PFI_MAX_TARGET_PAGES
        };
        u64::from(pages) * PAGE
    }

    pub(super) fn answer(&self, vm_id: u32) -> uapi::kvm_pfi_rule {
        let pages = self.targets.iter().map(|t| t.len / PAGE).sum();
        uapi::kvm_pfi_rule {
            vm_id,
            rule_id: self.id,
            pid: self.pid,
            region: self.region as u32,
            target_flags: self.target_flags,
            nr_targets: self.targets.len() as u32,
            name: self.name,
            pattern: self.pattern,
            pages,
            pages_uncovered: self.pages_uncovered,
            nr_processes: self.nr_processes,
            walk_errors: self.walk_errors,
        }
    }
}

impl Rules {
    pub(crate) fn new() -> Self {
        Rules { rules: KVVec::new(), next_id: 1 }
    }

    /// The rules as `KVM_PFI_RULE_LIST` gives them, at most `cap`; returns
    /// how many there are.
    pub(super) fn list(&self, vm_id: u32, cap: usize, out: &mut KVVec<uapi::kvm_pfi_rule>) -> Result<usize> {
        for r in self.rules.iter().take(cap) {
            out.push(r.answer(vm_id), GFP_KERNEL)?;
        }
        Ok(self.rules.len())
    }
}
