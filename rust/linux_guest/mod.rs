// SPDX-License-Identifier: GPL-2.0

//! Linux guests (Documentation/guest-linux.rst): the profile of a VM's
//! guest kernel, checked against the running guest before it is taken, and
//! the Linux work, which walks the guest's task list every
//! `KVM_PFI_LINUX_WALK_MS` and reports the processes that appeared and
//! went (`process-start`, `process-exit`).
//!
//! All of it runs in process context: the ioctls, and the Linux work (a
//! delayed work per VM, queued while the VM has a profile or one is being
//! checked). The walks are `pfi_core::linux_walk`'s, over guest kernel
//! memory read through the guest's page tables (`pfi_core::kernel_va`)
//! with the VMM's mm borrowed. No probe walks guest structures: the
//! probes' only part is to record the address-space root of a vCPU in
//! kernel mode when asked to (`AttachedVm::note_kernel_root`).
//!
//! Which root: a profile with `init_mm` gives `swapper_pg_dir` (the
//! kernel's own tables, which live as long as the guest), found once
//! through a root a probe recorded. Without `init_mm`, every walk asks the
//! probes for a fresh root: a recorded root is a process's, whose tables
//! go when it exits, so none is kept.

use core::ops::ControlFlow;

use kernel::alloc::flags::__GFP_ZERO;
use kernel::prelude::*;
use kernel::sync::atomic::Relaxed;
use kernel::sync::{
    Arc,
    CondVarTimeoutResult, //
};
use kernel::time::{
    msecs_to_jiffies,
    Jiffies, //
};
use kernel::workqueue::WorkItem;

use crate::bindings::{
    glue,
    uapi, //
};
use crate::events::{
    self,
    Record, //
};
use crate::guest_mem::{
    BorrowedMm,
    Context,
    GuestMemory, //
};
use crate::pfi_core::kernel_va::KernelVa;
use crate::pfi_core::linux_profile::{
    Profile,
    F,
    S, //
};
use crate::pfi_core::linux_walk::{
    self,
    Limits,
    MapleScratch,
    Task,
    WalkError, //
};
use crate::pfi_core::sort::heapsort;
use crate::pfi_core::table_cache::{
    PageSource,
    TableCache,
    MAX_PAGES,
    PAGE, //
};
use crate::pfi_core::walk::GuestPaging;
use crate::targets::vma_gate::{
    self,
    LinuxView, //
};
use crate::targets::MAX_TARGETS;
use crate::vm::{
    AttachedVm,
    LINUX, //
};

pub(crate) mod rule_set;
pub(crate) mod rules;
pub(crate) mod state;
use state::{
    Active,
    Checked,
    KernelRead,
    LinuxGuest,
    Pending,
    VmaQuery,
    Vmas, //
};

/// How long a profile load waits for its check: a periodic walk may be
/// queued just before it (up to `KVM_PFI_LINUX_WALK_MS`), then a kernel
/// root must come (an idle guest's timer makes one within milliseconds).
const CHECK_WAIT_MS: u32 = uapi::KVM_PFI_LINUX_WALK_MS + 2000;
/// How soon the work looks again for a kernel root it asked for.
const ROOT_RETRY_MS: u32 = 10;
/// Task-list walks a check tries: a list that changes under the walk ends
/// it, and the next try usually passes.
const CHECK_TRIES: u32 = 3;

/// Bytes of a path the ABI carries, its NUL included.
const EXE_LEN: usize = uapi::KVM_PFI_EXE_LEN as usize;

/// The walks' bounds: the task list as long as the ABI allows.
fn limits() -> Limits {
    Limits { max_tasks: uapi::KVM_PFI_MAX_PROCESSES, ..Limits::default() }
}

/// What a load reports back.
pub(crate) struct Loaded {
    pub(crate) slide: u64,
    pub(crate) init_task: u64,
    pub(crate) nr_processes: u32,
}

/// What `KVM_PFI_PROCESS_LIST` reports besides the list.
pub(crate) struct WalkCounts {
    pub(crate) walks: u64,
    pub(crate) walk_errors: u64,
    pub(crate) walked_ns: u64,
    pub(crate) last_error: i32,
}

fn now() -> u64 {
    // SAFETY: reads the clock.
    unsafe { glue::kvm_pfi_now_ns() }
}

/// Why a walk of the task list ended early.
enum Failure {
    Walk(WalkError),
    NoMemory,
}

impl Failure {
    /// As `enum kvm_pfi_walk_error`.
    fn code(&self) -> i32 {
        (match self {
            Failure::Walk(WalkError::BadPointer(_)) => uapi::KVM_PFI_WALK_BAD_POINTER,
            Failure::Walk(WalkError::Read(_)) => uapi::KVM_PFI_WALK_READ,
            Failure::Walk(WalkError::NotInitTask) => uapi::KVM_PFI_WALK_NOT_INIT_TASK,
            Failure::Walk(WalkError::ListCorrupt(_)) => uapi::KVM_PFI_WALK_LIST_CORRUPT,
            Failure::Walk(WalkError::TooMany) => uapi::KVM_PFI_WALK_TOO_MANY,
            Failure::Walk(_) | Failure::NoMemory => uapi::KVM_PFI_WALK_OTHER,
        }) as i32
    }
}

/// One run's reads of guest kernel memory: a table cache over the VM's
/// guest memory, which the caller wraps in `KernelVa` per root.
fn with_cache<R>(vm: &AttachedVm, f: impl FnOnce(&mut TableCache<'_, &mut GuestMemory>) -> R) -> Result<R> {
    let mut pages = KVec::from_elem(0u8, MAX_PAGES * PAGE, GFP_KERNEL)?;
    // SAFETY: the VM is referenced (the caller holds its attachment); the
    // Linux work, a kworker with the VMM's mm borrowed.
    let mut mem = unsafe { GuestMemory::new(vm.kvm, Context::Kworker) };
    let mut cache = TableCache::new(&mut mem, &mut pages);
    Ok(f(&mut cache))
}

/// `b`, NUL-padded into a uapi `char` array (`c_char` is `u8` in the
/// kernel, built with `-funsigned-char`).
fn c_chars<const N: usize>(b: &[u8]) -> [kernel::ffi::c_char; N] {
    let mut out = [0; N];
    for (d, &s) in out.iter_mut().zip(b) {
        *d = s;
    }
    out
}

/// Bytes of a NUL-terminated uapi `char` array, up to the NUL.
fn c_str_bytes(s: &[kernel::ffi::c_char]) -> impl Iterator<Item = u8> + '_ {
    s.iter().copied().take_while(|&c| c != 0)
}

/// What is read once per process: its mm's root and its executable's
/// path. A part that cannot be read stays 0 or empty (a process being torn
/// down); the task list itself decides whether the walk holds.
fn describe<Src: PageSource>(k: &mut KernelVa<'_, '_, Src>, p: &Profile, t: &Task) -> uapi::kvm_pfi_process {
    let mut e = uapi::kvm_pfi_process { pid: t.tgid, task: t.addr, mm: t.mm, ..Default::default() };
    if t.mm == 0 {
        return e;
    }
    let Ok(mm) = linux_walk::read_mm(k, p, t.mm) else { return e };
    e.cr3 = k.translate(mm.pgd).unwrap_or(0);
    if mm.exe_file == 0 {
        return e;
    }
    file_path(k, p, mm.exe_file, &mut e.exe);
    e
}

/// Walks the task list; keeps what `old` knows of a process that is still
/// there (same `task_struct`, pid and mm: an exec is a new mm), reads the
/// rest.
fn walk_processes<Src: PageSource>(
    k: &mut KernelVa<'_, '_, Src>,
    p: &Profile,
    slide: u64,
    old: &[uapi::kvm_pfi_process],
) -> core::result::Result<KVVec<uapi::kvm_pfi_process>, Failure> {
    let mut tasks = KVVec::<Task>::new();
    let mut oom = false;
    linux_walk::for_each_task(k, p, slide, &limits(), |t| {
        if tasks.push(*t, GFP_KERNEL).is_err() {
            oom = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .map_err(Failure::Walk)?;
    if oom {
        return Err(Failure::NoMemory);
    }
    let index = identities(old).map_err(|_| Failure::NoMemory)?;
    let mut out = KVVec::with_capacity(tasks.len(), GFP_KERNEL).map_err(|_| Failure::NoMemory)?;
    for t in tasks.iter() {
        let known = index
            .binary_search(&(t.addr, t.tgid, t.mm, 0))
            .map_or_else(|i| index.get(i), |i| index.get(i))
            .filter(|e| (e.0, e.1, e.2) == (t.addr, t.tgid, t.mm))
            .and_then(|e| old.get(e.3));
        let mut e = match known {
            Some(o) => *o,
            None => describe(k, p, t),
        };
        // These change during a process's life: reparenting, prctl.
        e.ppid = linux_walk::read_tgid(k, p, t.real_parent).unwrap_or(-1);
        e.flags = t.flags;
        e.comm = c_chars(t.comm());
        // Capacity `tasks.len()`: no allocation.
        out.push(e, GFP_KERNEL).map_err(|_| Failure::NoMemory)?;
    }
    Ok(out)
}

/// `(task, pid, mm, index)` of each process, sorted.
fn identities(list: &[uapi::kvm_pfi_process]) -> Result<KVVec<(u64, i32, u64, usize)>> {
    let mut v = KVVec::with_capacity(list.len(), GFP_KERNEL)?;
    for (i, e) in list.iter().enumerate() {
        v.push((e.task, e.pid, e.mm, i), GFP_KERNEL)?;
    }
    heapsort(&mut v);
    Ok(v)
}

/// Emits `process-start` for each process of `new` not in `old`, and
/// `process-exit` for each of `old` not in `new`.
fn report_changes(vm_id: u32, old: &[uapi::kvm_pfi_process], new: &[uapi::kvm_pfi_process]) -> Result {
    let (a, b) = (identities(old)?, identities(new)?);
    let key = |e: &(u64, i32, u64, usize)| (e.0, e.1, e.2);
    let contains = |set: &[(u64, i32, u64, usize)], e: &(u64, i32, u64, usize)| {
        set.binary_search_by(|x| key(x).cmp(&key(e))).is_ok()
    };
    for e in a.iter().filter(|e| !contains(&b, e)) {
        if let Some(p) = old.get(e.3) {
            events::emit(Record::process_exit(vm_id, p));
        }
    }
    // Starts in task-list order (oldest first).
    for p in new.iter().filter(|p| !contains(&a, &(p.task, p.pid, p.mm, 0))) {
        let mut exe = KVec::new();
        for c in c_str_bytes(&p.exe) {
            // Short of memory: the event goes without its path.
            if exe.push(c, GFP_KERNEL).is_err() {
                exe.clear();
                break;
            }
        }
        events::emit(Record::process_start(vm_id, p, Some(exe)));
    }
    Ok(())
}

/// `init_mm.pgd` as a guest physical address, if it translates and reads
/// `init_task` as `k` does.
fn swapper_root<Src: PageSource>(k: &mut KernelVa<'_, '_, Src>, p: &Profile, slide: u64) -> Option<u64> {
    let init_mm = p.symbol(S::InitMm)?.wrapping_add(slide);
    let at = init_mm.checked_add(u64::from(p.field(F::MmPgd).offset))?;
    let mut b = [0u8; 8];
    if !linux_walk::GuestMemory::read(k, at, &mut b) {
        return None;
    }
    k.translate(u64::from_le_bytes(b))
}

/// Checks `profile` against the guest, from `sampled`, a kernel-mode root
/// a probe recorded.
fn check(vm: &AttachedVm, paging: &GuestPaging, sampled: u64, profile: &Profile, slide: Option<u64>) -> Result<Checked> {
    with_cache(vm, |cache| {
        let (slide, swapper) = {
            let mut k = KernelVa::new(cache, *paging, sampled);
            let slide = match slide {
                Some(s) => linux_walk::check_init_task(&mut k, profile, s).ok().map(|_| s),
                None => linux_walk::find_slide(&mut k, profile),
            };
            let slide = slide.ok_or(ENOEXEC)?;
            (slide, swapper_root(&mut k, profile, slide))
        };
        // `swapper_pg_dir` only if it reads the same `init_task`.
        let root = swapper
            .filter(|&s| linux_walk::check_init_task(&mut KernelVa::new(cache, *paging, s), profile, slide).is_ok())
            .unwrap_or(0);
        let mut k = KernelVa::new(cache, *paging, if root != 0 { root } else { sampled });
        for _ in 0..CHECK_TRIES {
            match walk_processes(&mut k, profile, slide, &[]) {
                Ok(processes) => {
                    let init_task = linux_walk::init_task_addr(profile, slide);
                    let direct_map = direct_map(&mut k, profile, &processes);
                    return Ok(Checked { slide, init_task, root, processes, direct_map });
                }
                Err(Failure::NoMemory) => return Err(ENOMEM),
                // The task list must come back to `init_task`.
                Err(Failure::Walk(_)) => {}
            }
        }
        Err(ENOEXEC)
    })?
}

// `vm.rs` declares the work item; this is what it does.
impl WorkItem<LINUX> for AttachedVm {
    type Pointer = Arc<AttachedVm>;

    fn run(this: Arc<AttachedVm>) {
        if let Some(delay) = run(&this) {
            this.queue_delayed::<LINUX>(delay);
        }
    }
}

/// One run of the Linux work: checks a pending profile, walks the task list
/// with the active one. Returns when to run again.
fn run(vm: &AttachedVm) -> Option<Jiffies> {
    if vm.detached.load(Relaxed) {
        return None;
    }
    // SAFETY: the VM is referenced (we hold an `Arc` of its attachment); a
    // kworker, which uses no mm of its own; dropped at the end of `run`.
    let _mm = unsafe { BorrowedMm::new(vm.kvm) };
    let mut guard = vm.linux.lock();
    let LinuxGuest { active, pending, vma_query, kernel_read, processes, walks, walk_errors, walked_ns, last_error, rules } =
        &mut *guard;
    let mut again = None;
    if let Some(r) = kernel_read.as_mut().filter(|r| r.outcome.is_none()) {
        // `swapper_pg_dir` if a profile found it, else the root the call
        // asked the probes for.
        let root = active.as_ref().map(|a| a.root).filter(|&r| r != 0).or_else(|| vm.kernel_root());
        match (vm.paging(), root) {
            (Some(paging), Some(root)) => {
                r.outcome = Some(with_cache(vm, |cache| read_kernel(&mut KernelVa::new(cache, paging, root), r)).map(|n| (n, root)));
                vm.linux_answered.notify_all();
            }
            _ => again = Some(msecs_to_jiffies(ROOT_RETRY_MS)),
        }
    }
    if let Some(p) = pending.as_mut().filter(|p| p.outcome.is_none()) {
        match (vm.paging(), vm.kernel_root()) {
            (Some(paging), Some(root)) => {
                p.outcome = Some(check(vm, &paging, root, &p.profile, p.slide));
                vm.linux_answered.notify_all();
            }
            // The load asked the probes for a root; look again soon.
            _ => again = Some(msecs_to_jiffies(ROOT_RETRY_MS)),
        }
    }
    let Some(a) = active.as_ref() else {
        if let Some(q) = vma_query.as_mut().filter(|q| q.outcome.is_none()) {
            q.outcome = Some(Err(ENODATA));
            vm.linux_answered.notify_all();
        }
        return again;
    };
    let root = if a.root != 0 { Some(a.root) } else { vm.kernel_root() };
    let (Some(paging), Some(root)) = (vm.paging(), root) else {
        vm.request_kernel_root();
        return Some(msecs_to_jiffies(ROOT_RETRY_MS));
    };
    let r = with_cache(vm, |cache| walk_processes(&mut KernelVa::new(cache, paging, root), &a.profile, a.slide, processes));
    *walks = walks.wrapping_add(1);
    let mut fresh = false;
    match r {
        Ok(Ok(new)) => {
            // Short of memory for the comparison: this walk's changes go
            // unreported, the list is still the new one.
            let _ = report_changes(vm.id, processes, &new);
            *processes = new;
            *walked_ns = now();
            fresh = true;
        }
        Ok(Err(f)) => {
            *walk_errors = walk_errors.wrapping_add(1);
            *last_error = f.code();
        }
        Err(_) => {
            *walk_errors = walk_errors.wrapping_add(1);
            *last_error = Failure::NoMemory.code();
        }
    }
    // After the walk: the pid is looked up in the fresh list.
    if let Some(q) = vma_query.as_mut().filter(|q| q.outcome.is_none()) {
        q.outcome = Some(process_vmas(vm, &paging, root, a, processes, q.pid, q.cap));
        vm.linux_answered.notify_all();
    }
    if a.root == 0 {
        // A fresh root for the next walk.
        vm.request_kernel_root();
    }
    if fresh {
        let direct_map = a.direct_map.or_else(|| {
            with_cache(vm, |cache| direct_map(&mut KernelVa::new(cache, paging, root), &a.profile, processes))
                .ok()
                .flatten()
        });
        if let Some(a) = active.as_mut() {
            a.direct_map = direct_map;
            share_with_targets(vm, a, processes);
            rules::reconcile(vm, &paging, root, a, processes, rules);
        }
    }
    again.or(Some(msecs_to_jiffies(uapi::KVM_PFI_LINUX_WALK_MS)))
}

/// The base of the guest kernel's direct map (`targets::vma_gate`), from
/// the first process with an mm: `mm->pgd` is a direct-map address whose
/// guest physical address the walk read as the process's root.
fn direct_map<Src: PageSource>(k: &mut KernelVa<'_, '_, Src>, p: &Profile, processes: &[uapi::kvm_pfi_process]) -> Option<u64> {
    let proc = processes.iter().find(|e| e.mm != 0 && e.cr3 != 0)?;
    let mm = linux_walk::read_mm(k, p, proc.mm).ok()?;
    vma_gate::direct_map_base(mm.pgd, proc.cr3)
}

/// Gives the probes what the VMA checks of user faults need: the profile
/// and direct map, and the `mm_struct` of each checked target's process.
/// The look-up runs outside the targets lock (up to `KVM_PFI_MAX_TARGETS`
/// roots against the process list).
fn share_with_targets(vm: &AttachedVm, a: &Active, processes: &[uapi::kvm_pfi_process]) {
    let view = a.direct_map.map(|direct_map| LinuxView { profile: a.profile.clone(), direct_map });
    let roots = {
        let mut t = vm.targets.lock();
        t.set_linux_view(view);
        t.checked_roots()
    };
    let mut mms = [None; MAX_TARGETS];
    let mut gone = [false; MAX_TARGETS];
    for ((mm, gone), root) in mms.iter_mut().zip(gone.iter_mut()).zip(roots.iter()) {
        let Some((root, old)) = *root else { continue };
        *mm = mm_of(processes, root);
        // Its process's mm is on no task any more (not merely unreadable:
        // a task whose tables could not be translated keeps its mm), also
        // when another process has its tables now.
        *gone = old.is_some_and(|old| *mm != Some(old) && !processes.iter().any(|p| p.mm == old));
    }
    if vm.targets.lock().match_processes(&roots, &mms, &gone) {
        vm.kick_report();
    }
}

/// The `mm_struct` of the process whose tables are at `root`.
fn mm_of(processes: &[uapi::kvm_pfi_process], root: u64) -> Option<u64> {
    processes.iter().find(|p| p.cr3 == root && p.mm != 0).map(|p| p.mm)
}

/// The `mm_struct` of the process of the VM's Linux guest whose tables are
/// at `root`, in the last walk (for a new target).
pub(crate) fn process_mm(vm: &AttachedVm, root: u64) -> Option<u64> {
    let g = vm.linux.lock();
    g.active.as_ref()?;
    mm_of(&g.processes, root)
}

/// The VMAs of process `pid` of `processes`, at most `cap` of them kept
/// (all counted), with the paths of their files.
fn process_vmas(
    vm: &AttachedVm,
    paging: &GuestPaging,
    root: u64,
    a: &Active,
    processes: &[uapi::kvm_pfi_process],
    pid: i32,
    cap: usize,
) -> Result<Vmas> {
    let proc = processes.iter().find(|p| p.pid == pid && p.mm != 0).ok_or(ESRCH)?;
    let mut scratch = maple_scratch()?;
    with_cache(vm, |cache| -> Result<Vmas> {
        let k = &mut KernelVa::new(cache, *paging, root);
        let mm = linux_walk::read_mm(k, &a.profile, proc.mm).map_err(|_| EAGAIN)?;
        let (found, total) = walk_vmas(k, &a.profile, &mm, &mut scratch, cap)?;
        let mut vmas = KVVec::<uapi::kvm_pfi_vma>::with_capacity(found.len(), GFP_KERNEL)?;
        let mut last_file = 0;
        for v in found.iter() {
            let mut e = uapi::kvm_pfi_vma { start: v.start, end: v.end, flags: v.flags, pgoff: v.pgoff, ..Default::default() };
            // Consecutive VMAs often map one file: its path is read once.
            match vmas.last() {
                Some(prev) if v.file != 0 && v.file == last_file => e.file = prev.file,
                _ if v.file != 0 => file_path(k, &a.profile, v.file, &mut e.file),
                _ => {}
            }
            last_file = v.file;
            // Capacity `found.len()`: no allocation.
            vmas.push(e, GFP_KERNEL)?;
        }
        let answer = uapi::kvm_pfi_process_vmas {
            vm_id: vm.id,
            pid,
            nr_vmas: u32::try_from(total).unwrap_or(u32::MAX),
            cr3: proc.cr3,
            start_code: mm.start_code,
            end_code: mm.end_code,
            start_brk: mm.start_brk,
            brk: mm.brk,
            start_stack: mm.start_stack,
            ..Default::default()
        };
        Ok(Vmas { answer, vmas })
    })?
}

/// The path of a maple walk, 4.6 KiB: not on the stack.
fn maple_scratch() -> Result<KBox<MapleScratch>> {
    let scratch = KBox::<MapleScratch>::new_uninit(GFP_KERNEL | __GFP_ZERO)?;
    // SAFETY: zeroed, and all-zero bytes are a valid `MapleScratch` (its
    // documentation).
    Ok(unsafe { scratch.assume_init() })
}

/// The VMAs of `mm`, at most `cap` of them kept, and how many it has;
/// [`CHECK_TRIES`] walks when the tree changes under one, then `EAGAIN`.
fn walk_vmas<Src: PageSource>(
    k: &mut KernelVa<'_, '_, Src>,
    p: &Profile,
    mm: &linux_walk::Mm,
    scratch: &mut MapleScratch,
    cap: usize,
) -> Result<(KVVec<linux_walk::Vma>, usize)> {
    let mut found = KVVec::<linux_walk::Vma>::new();
    for _ in 0..CHECK_TRIES {
        found.clear();
        let mut total = 0usize;
        let mut oom = false;
        let r = linux_walk::for_each_vma(k, p, mm, &limits(), scratch, |v| {
            total = total.saturating_add(1);
            if found.len() < cap && found.push(*v, GFP_KERNEL).is_err() {
                oom = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        if oom {
            return Err(ENOMEM);
        }
        if r.is_ok() {
            return Ok((found, total));
        }
    }
    Err(EAGAIN)
}

/// Writes the path of `struct file` `file` within its file system into
/// `out`, NUL-padded; leaves `out` alone if it cannot be read.
fn file_path<Src: PageSource>(k: &mut KernelVa<'_, '_, Src>, p: &Profile, file: u64, out: &mut [kernel::ffi::c_char; EXE_LEN]) {
    // One byte of `out` stays NUL.
    let mut path = [0u8; EXE_LEN - 1];
    let start = linux_walk::file_dentry(k, p, file).and_then(|d| linux_walk::dentry_path(k, p, d, &limits(), &mut path));
    if let Ok(start) = start {
        *out = c_chars(path.get(start..).unwrap_or_default());
    }
}

/// Fills `r.buf` from guest kernel memory: the bytes at `r.va` up to the
/// first page that does not translate, or a byte per page present. Returns
/// bytes read or pages present.
fn read_kernel<Src: PageSource>(k: &mut KernelVa<'_, '_, Src>, r: &mut KernelRead) -> u64 {
    if r.present {
        let mut found = 0u64;
        // A chunk at a time, with a chance to reschedule between: the
        // 1 GiB window is 256 chunks.
        for (i, chunk) in r.buf.chunks_mut(1024).enumerate() {
            let va = r.va.wrapping_add((i as u64).wrapping_mul(1024 * PAGE as u64));
            found = found.wrapping_add(k.present(va, chunk) as u64);
            // SAFETY: process context (the Linux work), no spinlock held.
            unsafe { glue::kvm_pfi_cond_resched() };
        }
        return found;
    }
    let mut done = 0usize;
    let mut va = r.va;
    while done < r.buf.len() {
        let in_page = (PAGE - (va as usize & (PAGE - 1))).min(r.buf.len() - done);
        let Some(dst) = r.buf.get_mut(done..done + in_page) else { break };
        if !linux_walk::GuestMemory::read(k, va, dst) {
            dst.fill(0);
            break;
        }
        done += in_page;
        va = va.wrapping_add(in_page as u64);
    }
    done as u64
}

/// `KVM_PFI_KERNEL_READ`: asks the Linux work for `len` bytes at `va`
/// (`present`: one byte per page of them) and waits for them. Returns the
/// buffer, the bytes read or pages present, and the root read through.
pub(crate) fn read_kernel_memory(vm: Arc<AttachedVm>, va: u64, len: usize, present: bool) -> Result<(KVVec<u8>, u64, u64)> {
    let buf = KVVec::from_elem(0u8, len, GFP_KERNEL)?;
    {
        let mut g = vm.linux.lock();
        if g.kernel_read.is_some() {
            return Err(EBUSY);
        }
        let swapper = g.active.as_ref().is_some_and(|a| a.root != 0);
        g.kernel_read = Some(KBox::new(KernelRead { va, present, buf, outcome: None }, GFP_KERNEL)?);
        if !swapper {
            // A root recorded for this call: a process's tables go when
            // it exits, so an older one is not used.
            vm.request_kernel_root();
        }
    }
    vm.queue_delayed::<LINUX>(0);
    let mut g = vm.linux.lock();
    let r = wait_answer(&vm, &mut g, |g| g.kernel_read.as_mut().and_then(|r| r.outcome.take()));
    let asked = g.kernel_read.take();
    drop(g);
    let (done, root) = r?;
    let asked = asked.ok_or(EAGAIN)?;
    Ok((KBox::into_inner(asked).buf, done, root))
}

/// Waits, with `g` held in between, until `take` finds the Linux work's
/// answer, the VM goes (`ENOENT`), [`CHECK_WAIT_MS`] pass (`EAGAIN`) or a
/// signal comes (`EINTR`).
fn wait_answer<T>(
    vm: &AttachedVm,
    g: &mut kernel::sync::MutexGuard<'_, LinuxGuest>,
    mut take: impl FnMut(&mut LinuxGuest) -> Option<Result<T>>,
) -> Result<T> {
    let mut left = msecs_to_jiffies(CHECK_WAIT_MS);
    loop {
        if let Some(o) = take(g) {
            return o;
        }
        if vm.detached.load(Relaxed) {
            return Err(ENOENT);
        }
        match vm.linux_answered.wait_interruptible_timeout(g, left) {
            CondVarTimeoutResult::Timeout => return Err(EAGAIN),
            CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
            CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
        }
    }
}

/// `KVM_PFI_PROCESS_VMAS`: asks the Linux work for the VMAs of `pid`, at
/// most `cap` of them, and waits for them.
pub(crate) fn vmas_of(vm: Arc<AttachedVm>, pid: i32, cap: usize) -> Result<(uapi::kvm_pfi_process_vmas, KVVec<uapi::kvm_pfi_vma>)> {
    {
        let mut g = vm.linux.lock();
        if g.active.is_none() {
            return Err(ENODATA);
        }
        if g.vma_query.is_some() {
            return Err(EBUSY);
        }
        g.vma_query = Some(KBox::new(VmaQuery { pid, cap, outcome: None }, GFP_KERNEL)?);
    }
    vm.queue_delayed::<LINUX>(0);
    let mut g = vm.linux.lock();
    let r = wait_answer(&vm, &mut g, |g| g.vma_query.as_mut().and_then(|q| q.outcome.take()));
    g.vma_query = None;
    r.map(|v| (v.answer, v.vmas))
}

/// `KVM_PFI_LINUX_PROFILE` after its input was checked: hands `profile`
/// to the Linux work, waits for its check, and on success makes it the
/// VM's profile, with the processes the check found as the list's start
/// (no events for them).
pub(crate) fn load_profile(vm: Arc<AttachedVm>, profile: Profile, slide: Option<u64>) -> Result<Loaded> {
    {
        let mut g = vm.linux.lock();
        if g.pending.is_some() {
            return Err(EBUSY);
        }
        g.pending = Some(KBox::new(Pending { profile, slide, outcome: None }, GFP_KERNEL)?);
    }
    vm.request_kernel_root();
    vm.queue_delayed::<LINUX>(0);
    let mut g = vm.linux.lock();
    let outcome = wait_answer(&vm, &mut g, |g| g.pending.as_mut().and_then(|p| p.outcome.take()));
    let pending = g.pending.take();
    let checked = outcome?;
    let Some(pending) = pending else { return Err(EAGAIN) };
    let profile = KBox::into_inner(pending).profile;
    let active = KBox::new(
        Active { profile, slide: checked.slide, root: checked.root, direct_map: checked.direct_map },
        GFP_KERNEL,
    )?;
    let loaded = Loaded {
        slide: checked.slide,
        init_task: checked.init_task,
        nr_processes: u32::try_from(checked.processes.len()).unwrap_or(u32::MAX),
    };
    g.active = Some(active);
    g.processes = checked.processes;
    if let Some(a) = g.active.as_ref() {
        share_with_targets(&vm, a, &g.processes);
    }
    (g.walks, g.walk_errors, g.walked_ns, g.last_error) = (1, 0, now(), uapi::KVM_PFI_WALK_OK as i32);
    drop(g);
    vm.queue_delayed::<LINUX>(msecs_to_jiffies(uapi::KVM_PFI_LINUX_WALK_MS));
    Ok(loaded)
}

/// Calls `f` with the VM's processes and walk counts; `ENODATA` without a
/// profile.
pub(crate) fn with_processes<R>(vm: &AttachedVm, f: impl FnOnce(&[uapi::kvm_pfi_process], WalkCounts) -> R) -> Result<R> {
    let g = vm.linux.lock();
    if g.active.is_none() {
        return Err(ENODATA);
    }
    let counts = WalkCounts {
        walks: g.walks,
        walk_errors: g.walk_errors,
        walked_ns: g.walked_ns,
        last_error: g.last_error,
    };
    Ok(f(&g.processes, counts))
}
