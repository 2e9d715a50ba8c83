// SPDX-License-Identifier: GPL-2.0

//! Rules: targets by process and region (`KVM_PFI_RULE_ADD`,
//! Documentation/guest-linux.rst, "Targets by process and region"). After
//! each walk of the task list the Linux work reads the VMAs of the
//! processes each rule names, the region's ranges are cut into target-sized
//! pieces (`pfi_core::process_regions`), and the rule's targets are made to
//! be those pieces: a piece that is there stays (its pages keep their
//! state), one that is new is added, a target whose piece went is removed.
//! A process that exited keeps its targets one walk more, so that their
//! pending pages end with `address-space-gone` before the targets go.
//!
//! Runs in the Linux work with `vm.linux` held (lock order: `vm.linux`,
//! then what `target_lifecycle` takes), and in the rule ioctls.

use kernel::prelude::*;

use crate::bindings::uapi;
use crate::pfi_core::ids;
use crate::pfi_core::kernel_va::KernelVa;
use crate::pfi_core::linux_walk;
use crate::pfi_core::process_regions::{
    self,
    Ranges,
    Region,
    VmaFile, //
};
use crate::pfi_core::table_cache::PageSource;
use crate::pfi_core::vma_check;
use crate::pfi_core::walk::GuestPaging;
use crate::target_lifecycle;
use crate::targets::{
    TargetSpec,
    MAX_TARGETS, //
};
use crate::vm::{
    AttachedVm,
    LINUX, //
};

use super::rule_set::{
    until_nul,
    Rule,
    RuleTarget,
    Rules, //
};
use super::state::Active;
use super::{
    file_path,
    maple_scratch,
    walk_vmas,
    with_cache,
    EXE_LEN, //
};

const PAGE: u64 = 4096;
const MAX_RULES: usize = uapi::KVM_PFI_MAX_RULES as usize;
/// Processes whose VMAs one walk reads, over all rules: no more than
/// targets could be made for.
const MAX_PROCESSES: u32 = uapi::KVM_PFI_RULE_PROCESSES;
/// Walks a target of a process that exited stays (its pages end first).
const GONE_WALKS: u8 = 2;
/// VMAs of one process a rule reads at most (`vm.max_map_count`).
const MAX_VMAS: usize = uapi::KVM_PFI_MAX_VMAS as usize;

const _: () = {
    assert!(Region::Exe as u32 == uapi::KVM_PFI_REGION_EXE);
    assert!(Region::Stack as u32 == uapi::KVM_PFI_REGION_STACK);
    assert!(Region::Heap as u32 == uapi::KVM_PFI_REGION_HEAP);
    assert!(Region::File as u32 == uapi::KVM_PFI_REGION_FILE);
    assert!(Region::Anon as u32 == uapi::KVM_PFI_REGION_ANON);
    assert!(Region::All as u32 == uapi::KVM_PFI_REGION_ALL);
    // A piece of ENFORCE's size fits a target.
    assert!(uapi::KVM_PFI_MAX_ENFORCE_PAGES <= uapi::KVM_PFI_MAX_TARGET_PAGES);
};

/// A piece of a region that a rule wants a target over.
#[derive(Clone, Copy)]
struct Want {
    rule: usize,
    cr3: u64,
    mm: u64,
    gva: u64,
    len: u64,
    /// A VMA of it maps a file or shared memory (an empty entry there may
    /// be read back by a fault); else an empty entry fails at once.
    file_or_shared: bool,
    have: bool,
}

/// A checked `KVM_PFI_RULE_ADD` request.
pub(crate) struct NewRule(Rule);

/// Checks a `KVM_PFI_RULE_ADD` request (`EINVAL`); nothing is changed.
pub(crate) fn check(req: &uapi::kvm_pfi_rule) -> Result<NewRule> {
    Rule::validate(req).map(NewRule)
}

/// `KVM_PFI_RULE_ADD` after the caller's checks: adds the rule and asks the
/// Linux work for a walk now. Returns its id.
pub(crate) fn add(vm: &AttachedVm, rule: NewRule) -> Result<u32> {
    let NewRule(mut rule) = rule;
    let mut g = vm.linux.lock();
    if g.active.is_none() {
        return Err(ENODATA);
    }
    let rules = &mut g.rules;
    if rules.rules.len() >= MAX_RULES {
        return Err(ENOSPC);
    }
    rules.rules.reserve(1, GFP_KERNEL)?;
    rule.id = ids::take(&mut rules.next_id).ok_or(EOVERFLOW)?;
    let id = rule.id;
    // Reserved above: no allocation.
    rules.rules.push(rule, GFP_KERNEL)?;
    drop(g);
    vm.queue_delayed::<LINUX>(0);
    Ok(id)
}

/// `KVM_PFI_RULE_REMOVE`: removes rule `id` and its targets.
pub(crate) fn remove(vm: &AttachedVm, id: u32) -> Result {
    let mut g = vm.linux.lock();
    let i = g.rules.rules.iter().position(|r| r.id == id).ok_or(ENOENT)?;
    let rule = g.rules.rules.remove(i).map_err(|_| ENOENT)?;
    for t in rule.targets.iter() {
        drop(target_lifecycle::remove(vm, t.id));
    }
    Ok(())
}

/// `KVM_PFI_RULE_LIST`: at most `cap` rules into `out`; returns how many
/// there are.
pub(crate) fn list(vm: &AttachedVm, cap: usize, out: &mut KVVec<uapi::kvm_pfi_rule>) -> Result<usize> {
    vm.linux.lock().rules.list(vm.id, cap, out)
}

/// Brings every rule's targets in step with the processes of the last walk
/// and their VMAs (the Linux work, after a walk that held). `root` reads
/// the guest kernel.
pub(super) fn reconcile(
    vm: &AttachedVm,
    paging: &GuestPaging,
    root: u64,
    a: &Active,
    processes: &[uapi::kvm_pfi_process],
    rules: &mut Rules,
) {
    if rules.rules.is_empty() {
        return;
    }
    let Ok(mut wants) = KVVec::<Want>::with_capacity(MAX_TARGETS, GFP_KERNEL) else { return };
    // Processes whose VMAs could not be read (or were not read): their
    // targets stay as they are.
    let Ok(mut unread) = KVVec::<(usize, u64)>::with_capacity(MAX_PROCESSES as usize, GFP_KERNEL) else { return };
    let mut walked = 0u32;
    let r = with_cache(vm, |cache| -> Result {
        let mut scratch = maple_scratch()?;
        let k = &mut KernelVa::new(cache, *paging, root);
        for (ri, rule) in rules.rules.iter_mut().enumerate() {
            rule.nr_processes = 0;
            rule.pages_uncovered = 0;
            for p in processes.iter() {
                if !rule.names(p) {
                    continue;
                }
                rule.nr_processes = rule.nr_processes.saturating_add(1);
                let read = walked < MAX_PROCESSES
                    && want_regions(k, a, p, rule, ri, &mut scratch, &mut wants).is_ok();
                walked = walked.saturating_add(1);
                if !read {
                    rule.walk_errors = rule.walk_errors.saturating_add(1);
                    // Capacity `MAX_PROCESSES`; beyond, the process's
                    // targets may go (it had no walk to keep them by).
                    let _ = unread.push((ri, p.cr3), GFP_KERNEL);
                }
            }
        }
        Ok(())
    });
    if !matches!(r, Ok(Ok(()))) {
        return;
    }
    // Targets that stay, and those that go.
    for (ri, rule) in rules.rules.iter_mut().enumerate() {
        let mut i = 0;
        while let Some(t) = rule.targets.get_mut(i) {
            let exists = vm.targets.lock().get(t.id).is_some();
            let wanted = wants
                .iter_mut()
                .find(|w| !w.have && w.rule == ri && (w.cr3, w.gva, w.len) == (t.cr3, t.gva, t.len));
            let alive = processes.iter().any(|p| p.cr3 == t.cr3 && p.mm == t.mm);
            let keep = if !exists {
                // Removed by `KVM_PFI_TARGET_REMOVE`: made again if wanted.
                false
            } else if let Some(w) = wanted {
                w.have = true;
                t.gone_walks = 0;
                true
            } else if unread.iter().any(|&(r, cr3)| r == ri && cr3 == t.cr3) {
                true
            } else if alive {
                false
            } else {
                t.gone_walks = t.gone_walks.saturating_add(1);
                t.gone_walks < GONE_WALKS
            };
            if keep {
                i += 1;
                continue;
            }
            let id = t.id;
            let _ = rule.targets.remove(i);
            if exists {
                drop(target_lifecycle::remove(vm, id));
            }
        }
    }
    // New targets, in rule, process and address order.
    let mut full = false;
    for w in wants.iter().filter(|w| !w.have) {
        let Some(rule) = rules.rules.get_mut(w.rule) else { continue };
        if full || rule.targets.reserve(1, GFP_KERNEL).is_err() {
            rule.pages_uncovered = rule.pages_uncovered.saturating_add(w.len / PAGE);
            continue;
        }
        let req = uapi::kvm_pfi_target {
            vm_id: vm.id,
            flags: rule.target_flags,
            cr3: w.cr3,
            gva: w.gva,
            len: w.len,
            ..Default::default()
        };
        let added = TargetSpec::validate(&req, target_lifecycle::default_config()).and_then(|mut spec| {
            spec.empty_may_fault &= w.file_or_shared;
            target_lifecycle::add(vm, &spec, rule.id, |_| Some(w.mm))
        });
        match added {
            Ok(id) => {
                let t = RuleTarget { id, cr3: w.cr3, mm: w.mm, gva: w.gva, len: w.len, gone_walks: 0 };
                // Reserved above: no allocation.
                let _ = rule.targets.push(t, GFP_KERNEL);
            }
            Err(e) => {
                // The VM's targets are all taken (`ENOSPC`) or memory is
                // short: the rest waits for the next walk.
                full = e == ENOSPC || e == ENOMEM || e == EOVERFLOW;
                rule.pages_uncovered = rule.pages_uncovered.saturating_add(w.len / PAGE);
            }
        }
    }
    crate::events::flush();
}

/// Adds the pieces of `rule`'s region in process `p` to `wants` (beyond
/// their capacity, counted as uncovered).
fn want_regions<Src: PageSource>(
    k: &mut KernelVa<'_, '_, Src>,
    a: &Active,
    p: &uapi::kvm_pfi_process,
    rule: &mut Rule,
    ri: usize,
    scratch: &mut linux_walk::MapleScratch,
    wants: &mut KVVec<Want>,
) -> Result {
    let mm = linux_walk::read_mm(k, &a.profile, p.mm).map_err(|_| EAGAIN)?;
    // The tables must still be the process's (an exec replaced them).
    if k.translate(mm.pgd) != Some(p.cr3) {
        return Err(EAGAIN);
    }
    let (vmas, _) = walk_vmas(k, &a.profile, &mm, scratch, MAX_VMAS)?;
    let exe = until_nul(&p.exe);
    let mut ranges = Ranges::new(rule.piece_len());
    let mut path = [0u8; EXE_LEN];
    let mut path_of = 0u64;
    let mut uncovered = 0u64;
    // File-backed or shared VMAs pushed so far (address order), to flag
    // the pieces that overlap one.
    let mut shared = KVVec::<(u64, u64)>::new();
    let mut out = |gva: u64, end: u64, shared: &[(u64, u64)]| {
        let len = end.saturating_sub(gva);
        let file_or_shared = shared.iter().any(|&(s, e)| s < end && e > gva);
        if wants.len() < wants.capacity() {
            // Capacity checked: no allocation.
            let w = Want { rule: ri, cr3: p.cr3, mm: p.mm, gva, len, file_or_shared, have: false };
            let _ = wants.push(w, GFP_KERNEL);
        } else {
            uncovered = uncovered.saturating_add(len / PAGE);
        }
        core::ops::ControlFlow::Continue(())
    };
    let needs_path = matches!(rule.region, Region::Exe | Region::File);
    for v in vmas.iter() {
        if needs_path && v.file != 0 && v.file != path_of {
            path = [0; EXE_LEN];
            file_path(k, &a.profile, v.file, &mut path);
            path_of = v.file;
        }
        let file_path = if v.file != 0 && needs_path { until_nul(&path) } else { &[] };
        let file = VmaFile {
            // The executable's mappings share `mm->exe_file`; a backing
            // file (overlayfs) has the executable's path.
            is_exe: v.file != 0 && (v.file == mm.exe_file || (!exe.is_empty() && file_path == exe)),
            path: file_path,
        };
        if process_regions::wants(rule.region, until_nul(&rule.pattern), &mm, v, file) {
            let _ = ranges.push(v.start, v.end, &mut |s, e| out(s, e, &shared));
            // Short of memory: the piece is taken as anonymous, whose
            // empty entries fail rather than fault.
            if vma_check::file_or_shared(v) {
                let _ = shared.push((v.start, v.end), GFP_KERNEL);
            }
        }
    }
    let _ = ranges.finish(&mut |s, e| out(s, e, &shared));
    rule.pages_uncovered = rule.pages_uncovered.saturating_add(uncovered);
    Ok(())
}
