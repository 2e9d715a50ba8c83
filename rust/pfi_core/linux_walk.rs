// SPDX-License-Identifier: GPL-2.0

//! Bounded walks of a Linux x86-64 guest kernel's own structures, through
//! a [`Profile`]: the task list from `init_task`, a task's `mm_struct`,
//! the VMA maple tree of an mm, and the name of a file's dentry.
//!
//! Guest memory is hostile and, for a running guest, changing under the
//! walk. Every pointer is checked against the kernel half of the address
//! space and its alignment before it is read; every walk has a bound
//! ([`Limits`]); a structure that is cyclic, truncated or garbage ends the
//! walk with a [`WalkError`] (the task list, the maple tree's shape) or is
//! counted and skipped (a leaf entry that is not a VMA of this mm). There
//! is no recursion and no allocation: the maple walk keeps its path in a
//! caller-provided [`MapleScratch`].
//!
//! These walks read kernel memory only (kernel structures are resident);
//! they run in sleepable work, never in a probe.

use super::le::le64;
use super::linux_profile::{Field, Profile, F, MAPLE_NODE_BYTES, S};
use core::ops::ControlFlow;

/// Reads guest memory at a guest virtual address of the kernel.
pub trait GuestMemory {
    /// Fills `buf` from `va`; false if any byte is unreadable.
    fn read(&mut self, va: u64, buf: &mut [u8]) -> bool;
}

/// Lowest kernel address accepted as a pointer: the kernel half with
/// 5-level paging (`0xff00...`); with 4-level paging the range up to
/// `0xffff_8000_0000_0000` is not canonical and unreadable.
pub const KERNEL_MIN: u64 = 0xff00_0000_0000_0000;

/// Bounds of the walks.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most tasks (thread-group leaders) on the task list.
    pub max_tasks: u32,
    /// Most maple nodes of one VMA tree.
    pub max_nodes: u32,
    /// Most VMAs of one mm (the kernel's default `vm.max_map_count` is
    /// 65530).
    pub max_vmas: u32,
    /// Most `d_parent` steps from a dentry to its file system's root.
    pub max_path_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tasks: 32768,
            max_nodes: 16384,
            max_vmas: 65536,
            max_path_depth: 64,
        }
    }
}

/// Why a walk ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// The pointer is not a kernel address, or is misaligned.
    BadPointer(u64),
    /// Reading at this address failed.
    Read(u64),
    /// `init_task` is not pid 0 named `swapper/0`, its own parent, with
    /// no mm: the profile does not fit this kernel (or the slide is wrong).
    NotInitTask,
    /// A list entry's `prev` does not point back at the entry before it
    /// (a cycle, a corrupt list, or a list changing under the walk).
    ListCorrupt(u64),
    /// More entries than the [`Limits`] allow.
    TooMany,
    /// A maple tree deeper than [`MAPLE_MAX_DEPTH`].
    TooDeep,
    /// A maple node of a type that has no place in a VMA tree, or a dead
    /// node (freed while walked).
    BadNode(u64),
    /// A maple node's pivots are not increasing within its range.
    BadPivots(u64),
    /// A dentry name longer than the buffer or than 255 bytes.
    NameTooLong,
    /// The mm's `pgd` is not the expected one: it was freed and reused.
    NotThisMm,
}

/// What one task-list entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// Address of the `task_struct`.
    pub addr: u64,
    /// `pid`.
    pub pid: i32,
    /// `tgid`.
    pub tgid: i32,
    /// `comm`, NUL-padded.
    pub comm: [u8; 16],
    /// `mm` (0 for a kernel thread).
    pub mm: u64,
    /// `real_parent`.
    pub real_parent: u64,
    /// `flags` (`PF_*`).
    pub flags: u32,
}

impl Task {
    /// `comm` up to its first NUL.
    pub fn comm(&self) -> &[u8] {
        let n = self.comm.iter().position(|&c| c == 0).unwrap_or(self.comm.len());
        self.comm.get(..n).unwrap_or_default()
    }
}

/// What a task's mm says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct Mm {
    pub addr: u64,
    pub pgd: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub exe_file: u64,
    /// `mm_mt.ma_root`, the maple tree's encoded root.
    pub mt_root: u64,
    /// `mm_mt.ma_flags`.
    pub mt_flags: u32,
}

/// One VMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vma {
    /// Address of the `vm_area_struct`.
    pub addr: u64,
    /// `vm_start`.
    pub start: u64,
    /// `vm_end` (exclusive).
    pub end: u64,
    /// `vm_flags` (`VM_READ` 1, `VM_WRITE` 2, `VM_EXEC` 4, `VM_SHARED` 8,
    /// `VM_MAYSHARE` 0x80, ...).
    pub flags: u64,
    /// `vm_file` (0: anonymous).
    pub file: u64,
    /// `vm_pgoff`.
    pub pgoff: u64,
}

/// What a VMA walk met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmaStats {
    /// Maple nodes read.
    pub nodes: u32,
    /// VMAs reported.
    pub vmas: u32,
    /// Leaf entries skipped: not a kernel pointer, unreadable, another
    /// mm's VMA, or a VMA whose range is not its slot's.
    pub bad_entries: u32,
}

fn check_ptr(p: u64, align: u64) -> Result<u64, WalkError> {
    if p < KERNEL_MIN || p.checked_rem(align) != Some(0) {
        return Err(WalkError::BadPointer(p));
    }
    Ok(p)
}

fn read_uint<M: GuestMemory + ?Sized>(mem: &mut M, base: u64, f: Field) -> Result<u64, WalkError> {
    let at = base.checked_add(u64::from(f.offset)).ok_or(WalkError::BadPointer(base))?;
    let mut b = [0u8; 8];
    let n = usize::try_from(f.size).unwrap_or(usize::MAX);
    let dst = b.get_mut(..n).ok_or(WalkError::Read(at))?;
    if !mem.read(at, dst) {
        return Err(WalkError::Read(at));
    }
    Ok(u64::from_le_bytes(b))
}

fn read_ptr<M: GuestMemory + ?Sized>(mem: &mut M, base: u64, f: Field) -> Result<u64, WalkError> {
    read_uint(mem, base, Field { offset: f.offset, size: 8 })
}

/// Reads the task at `addr`.
pub fn read_task<M: GuestMemory + ?Sized>(mem: &mut M, p: &Profile, addr: u64) -> Result<Task, WalkError> {
    check_ptr(addr, 8)?;
    let mut comm = [0u8; 16];
    let at = addr
        .checked_add(u64::from(p.field(F::TaskComm).offset))
        .ok_or(WalkError::BadPointer(addr))?;
    if !mem.read(at, &mut comm) {
        return Err(WalkError::Read(at));
    }
    // pid_t is a 32-bit int: truncate, then read as signed.
    let pid = read_uint(mem, addr, p.field(F::TaskPid))? as u32 as i32;
    let tgid = read_uint(mem, addr, p.field(F::TaskTgid))? as u32 as i32;
    Ok(Task {
        addr,
        pid,
        tgid,
        comm,
        mm: read_ptr(mem, addr, p.field(F::TaskMm))?,
        real_parent: read_ptr(mem, addr, p.field(F::TaskRealParent))?,
        flags: read_uint(mem, addr, p.field(F::TaskFlags))? as u32,
    })
}

/// The `tgid` of the task at `addr` (a parent's, which may be a thread
/// that is not on the task list).
pub fn read_tgid<M: GuestMemory + ?Sized>(mem: &mut M, p: &Profile, addr: u64) -> Result<i32, WalkError> {
    check_ptr(addr, 8)?;
    Ok(read_uint(mem, addr, p.field(F::TaskTgid))? as u32 as i32)
}

/// The run-time address of `init_task`: the profile's plus `slide` (the
/// KASLR slide for a profile from a System.map, 0 from kallsyms).
pub fn init_task_addr(p: &Profile, slide: u64) -> u64 {
    p.symbol(S::InitTask).unwrap_or_default().wrapping_add(slide)
}

/// The task at `init_task` plus `slide`, if it is `init_task`: pid 0
/// named `swapper/0`, its own `real_parent`, without an mm.
pub fn check_init_task<M: GuestMemory + ?Sized>(mem: &mut M, p: &Profile, slide: u64) -> Result<Task, WalkError> {
    let init = init_task_addr(p, slide);
    let t = read_task(mem, p, init).map_err(|_| WalkError::NotInitTask)?;
    if t.pid != 0 || t.comm() != b"swapper/0" || t.mm != 0 || t.real_parent != init {
        return Err(WalkError::NotInitTask);
    }
    Ok(t)
}

/// Alignment of the x86-64 kernel's KASLR slide (`CONFIG_PHYSICAL_ALIGN`,
/// 2 MiB by default; the virtual slide is a multiple of it).
pub const SLIDE_ALIGN: u64 = 0x20_0000;
/// The slide is below this (`KERNEL_IMAGE_SIZE` with KASLR: the image lives
/// in the 1 GiB from `__START_KERNEL_map`).
pub const SLIDE_LIMIT: u64 = 0x4000_0000;

/// The KASLR slide of a guest kernel without asking it: the first multiple
/// of [`SLIDE_ALIGN`] below [`SLIDE_LIMIT`], 0 first, at which
/// [`check_init_task`] passes. At most 512 tries, each a failed translation
/// or a few reads. `None`: the profile does not fit this kernel at any
/// slide.
pub fn find_slide<M: GuestMemory + ?Sized>(mem: &mut M, p: &Profile) -> Option<u64> {
    let tries = SLIDE_LIMIT.checked_div(SLIDE_ALIGN).unwrap_or(0);
    (0..tries)
        .map(|k| k.wrapping_mul(SLIDE_ALIGN))
        .find(|&slide| check_init_task(mem, p, slide).is_ok())
}

/// Calls `f` for every task on the task list (thread-group leaders),
/// starting with `init_task` itself, and checks that the list comes back
/// to `init_task`. Refuses a profile (or slide) that does not fit:
/// [`WalkError::NotInitTask`]. Returns the number of tasks visited.
pub fn for_each_task<M, C>(mem: &mut M, p: &Profile, slide: u64, lim: &Limits, mut f: C) -> Result<u32, WalkError>
where
    M: GuestMemory + ?Sized,
    C: FnMut(&Task) -> ControlFlow<()>,
{
    let first = check_init_task(mem, p, slide)?;
    let init = first.addr;
    let tasks_off = u64::from(p.field(F::TaskTasks).offset);
    let (next_f, prev_f) = (p.field(F::ListNext), p.field(F::ListPrev));
    let head = init.checked_add(tasks_off).ok_or(WalkError::NotInitTask)?;
    let mut count = 1u32;
    if f(&first).is_break() {
        return Ok(count);
    }
    let mut cur = head;
    loop {
        let next = check_ptr(read_ptr(mem, cur, next_f)?, 8)?;
        // Each entry must point back at the one before: with this check a
        // list cannot loop without passing through the head again.
        if read_ptr(mem, next, prev_f)? != cur {
            return Err(WalkError::ListCorrupt(next));
        }
        if next == head {
            return Ok(count);
        }
        if count >= lim.max_tasks {
            return Err(WalkError::TooMany);
        }
        count = count.wrapping_add(1);
        let task = read_task(mem, p, next.wrapping_sub(tasks_off))?;
        if f(&task).is_break() {
            return Ok(count);
        }
        cur = next;
    }
}

/// Reads the mm at `addr`.
pub fn read_mm<M: GuestMemory + ?Sized>(mem: &mut M, p: &Profile, addr: u64) -> Result<Mm, WalkError> {
    check_ptr(addr, 8)?;
    let mt = addr
        .checked_add(u64::from(p.field(F::MmMt).offset))
        .ok_or(WalkError::BadPointer(addr))?;
    let u = |mem: &mut M, f| read_uint(mem, addr, p.field(f));
    Ok(Mm {
        addr,
        pgd: read_ptr(mem, addr, p.field(F::MmPgd))?,
        start_code: u(mem, F::MmStartCode)?,
        end_code: u(mem, F::MmEndCode)?,
        start_brk: u(mem, F::MmStartBrk)?,
        brk: u(mem, F::MmBrk)?,
        start_stack: u(mem, F::MmStartStack)?,
        arg_start: u(mem, F::MmArgStart)?,
        exe_file: read_ptr(mem, addr, p.field(F::MmExeFile))?,
        mt_root: read_ptr(mem, mt, p.field(F::MtRoot))?,
        mt_flags: read_uint(mem, mt, p.field(F::MtFlags))? as u32,
    })
}

/// Deepest maple tree walked (the kernel's `MAPLE_HEIGHT_MAX` is 31; a
/// tree of 16 levels of minimally filled nodes holds far more VMAs than
/// any `vm.max_map_count`).
pub const MAPLE_MAX_DEPTH: usize = 16;

/// Maple node types (`enum maple_type`).
const MAPLE_DENSE: u64 = 0;
const MAPLE_LEAF_64: u64 = 1;
const MAPLE_RANGE_64: u64 = 2;
const MAPLE_ARANGE_64: u64 = 3;
/// Low byte of an encoded node: type in bits 3-6, `10` in bits 0-1.
const MAPLE_NODE_MASK: u64 = 0xff;
/// Entries below this with low bits `10` are the tree's own markers
/// (`XA_ZERO_ENTRY`, retry entries), not user data.
const MAPLE_RESERVED_RANGE: u64 = 4096;

#[derive(Clone, Copy)]
struct Frame {
    node: [u8; MAPLE_NODE_BYTES as usize],
    addr: u64,
    ty: u64,
    min: u64,
    max: u64,
    /// Next slot to visit.
    next: usize,
    /// Last slot with data.
    end: usize,
}

/// The path of a maple walk, provided by the caller (about 4.6 KiB: a
/// kernel caller allocates it once, not on its stack). It holds integers
/// only: all-zero bytes are a valid `MapleScratch`, so a kernel caller may
/// allocate it zeroed instead of building it on its stack.
pub struct MapleScratch {
    frames: [Frame; MAPLE_MAX_DEPTH],
}

impl Default for MapleScratch {
    fn default() -> Self {
        MapleScratch {
            frames: [Frame {
                node: [0; MAPLE_NODE_BYTES as usize],
                addr: 0,
                ty: 0,
                min: 0,
                max: 0,
                next: 0,
                end: 0,
            }; MAPLE_MAX_DEPTH],
        }
    }
}

/// Layout of one node type: byte offsets of pivots, slots, metadata end.
struct Layout {
    pivot: usize,
    pivots: usize,
    slot: usize,
    slots: usize,
    meta_end: Option<usize>,
}

fn layout(p: &Profile, ty: u64) -> Option<Layout> {
    let us = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
    let meta_end = |m: F| us(p.field(m).offset).checked_add(us(p.field(F::MetaEnd).offset));
    match ty {
        // Dense nodes: 31 slots after the parent, one index each.
        MAPLE_DENSE => Some(Layout {
            pivot: 0,
            pivots: 0,
            slot: us(p.field(F::Mr64Parent).offset).checked_add(8)?,
            slots: us(MAPLE_NODE_BYTES / 8).checked_sub(1)?,
            meta_end: None,
        }),
        MAPLE_LEAF_64 | MAPLE_RANGE_64 => Some(Layout {
            pivot: us(p.field(F::Mr64Pivot).offset),
            pivots: us(p.field(F::Mr64Pivot).size / 8),
            slot: us(p.field(F::Mr64Slot).offset),
            slots: us(p.field(F::Mr64Slot).size / 8),
            meta_end: meta_end(F::Mr64Meta),
        }),
        MAPLE_ARANGE_64 => Some(Layout {
            pivot: us(p.field(F::Ma64Pivot).offset),
            pivots: us(p.field(F::Ma64Pivot).size / 8),
            slot: us(p.field(F::Ma64Slot).offset),
            slots: us(p.field(F::Ma64Slot).size / 8),
            meta_end: meta_end(F::Ma64Meta),
        }),
        _ => None,
    }
}

fn word(node: &[u8], base: usize, i: usize) -> Option<u64> {
    le64(node, base.checked_add(i.checked_mul(8)?)?)
}

/// The last slot with data of a node (the kernel's `ma_data_end`).
fn data_end(node: &[u8], ty: u64, l: &Layout, max: u64) -> Option<usize> {
    if ty == MAPLE_DENSE {
        return l.slots.checked_sub(1);
    }
    let meta = || l.meta_end.and_then(|o| node.get(o)).map(|&b| usize::from(b));
    if ty == MAPLE_ARANGE_64 {
        return meta();
    }
    let last = l.pivots.checked_sub(1)?;
    let piv = word(node, l.pivot, last)?;
    if piv == 0 {
        meta()
    } else if piv == max {
        Some(last)
    } else {
        Some(l.pivots)
    }
}

/// The range of slot `i` of a node: `[lo, hi]`, both inclusive, or `None`
/// when the pivots are not increasing within the node's range.
fn slot_range(f: &Frame, l: &Layout, i: usize) -> Option<(u64, u64)> {
    if f.ty == MAPLE_DENSE {
        let lo = f.min.checked_add(u64::try_from(i).ok()?)?;
        return (lo <= f.max).then_some((lo, lo));
    }
    let lo = match i.checked_sub(1) {
        None => f.min,
        Some(prev) => word(&f.node, l.pivot, prev)?.checked_add(1)?,
    };
    let hi = if i < l.pivots {
        match word(&f.node, l.pivot, i)? {
            0 if i > 0 => f.max, // an unused pivot: the node's max
            v => v,
        }
    } else {
        f.max
    };
    (lo <= hi && hi <= f.max && lo >= f.min).then_some((lo, hi))
}

/// Calls `f` for every VMA of the mm at `mm` (whose tree root is
/// `mm_info.mt_root`), in address order. Entries that are not VMAs of this
/// mm covering exactly their slot's range are counted and skipped.
pub fn for_each_vma<M, C>(
    mem: &mut M,
    p: &Profile,
    mm_info: &Mm,
    lim: &Limits,
    scratch: &mut MapleScratch,
    mut f: C,
) -> Result<VmaStats, WalkError>
where
    M: GuestMemory + ?Sized,
    C: FnMut(&Vma) -> ControlFlow<()>,
{
    let mut stats = VmaStats::default();
    let root = mm_info.mt_root;
    if root == 0 {
        return Ok(stats);
    }
    // A root that is not a node is a single entry for index 0 only: never
    // a VMA (none starts at 0 and ends at 1).
    if root & 3 != 2 || root <= MAPLE_RESERVED_RANGE {
        stats.bad_entries = 1;
        return Ok(stats);
    }
    let mut depth = 0usize;
    if let ControlFlow::Break(()) = push(mem, p, lim, scratch, &mut stats, &mut depth, root, 0, u64::MAX)? {
        return Ok(stats);
    }
    while let Some(top) = depth.checked_sub(1) {
        let frame = scratch.frames.get_mut(top).ok_or(WalkError::TooDeep)?;
        let l = layout(p, frame.ty).ok_or(WalkError::BadNode(frame.addr))?;
        if frame.next > frame.end {
            depth = top;
            continue;
        }
        let i = frame.next;
        frame.next = i.wrapping_add(1);
        let (lo, hi) = slot_range(frame, &l, i).ok_or(WalkError::BadPivots(frame.addr))?;
        let entry = word(&frame.node, l.slot, i).ok_or(WalkError::BadNode(frame.addr))?;
        let leaf = frame.ty < MAPLE_RANGE_64;
        if entry == 0 {
            continue;
        }
        if !leaf {
            if push(mem, p, lim, scratch, &mut stats, &mut depth, entry, lo, hi)?.is_break() {
                return Ok(stats);
            }
            continue;
        }
        if entry & 3 == 2 && entry < MAPLE_RESERVED_RANGE {
            continue; // the tree's own marker, not a VMA
        }
        match read_vma(mem, p, entry) {
            Ok(v) if v.fits(lo, hi, mm_info.addr) => {
                if stats.vmas >= lim.max_vmas {
                    return Err(WalkError::TooMany);
                }
                stats.vmas = stats.vmas.wrapping_add(1);
                if f(&v.vma).is_break() {
                    return Ok(stats);
                }
            }
            _ => stats.bad_entries = stats.bad_entries.saturating_add(1),
        }
    }
    Ok(stats)
}

/// Reads, checks and enters the node `enode` covering `[min, max]`.
#[allow(clippy::too_many_arguments)]
fn push<M: GuestMemory + ?Sized>(
    mem: &mut M,
    p: &Profile,
    lim: &Limits,
    scratch: &mut MapleScratch,
    stats: &mut VmaStats,
    depth: &mut usize,
    enode: u64,
    min: u64,
    max: u64,
) -> Result<ControlFlow<()>, WalkError> {
    let (addr, ty, l) = node_of(p, enode)?;
    if stats.nodes >= lim.max_nodes {
        return Err(WalkError::TooMany);
    }
    stats.nodes = stats.nodes.wrapping_add(1);
    let frame = scratch.frames.get_mut(*depth).ok_or(WalkError::TooDeep)?;
    read_node(mem, p, frame, enode, (addr, ty, &l), min, max)?;
    *depth = depth.wrapping_add(1);
    Ok(ControlFlow::Continue(()))
}

/// The address, type and layout of the encoded node `enode`.
fn node_of(p: &Profile, enode: u64) -> Result<(u64, u64, Layout), WalkError> {
    let addr = check_ptr(enode & !MAPLE_NODE_MASK, MAPLE_NODE_BYTES.into())?;
    let ty = (enode >> 3) & 0xf;
    let l = layout(p, ty).ok_or(WalkError::BadNode(enode))?;
    Ok((addr, ty, l))
}

/// Reads and checks the node `enode` (at `addr`, of type `ty`, see
/// [`node_of`]) covering `[min, max]` into `frame`, to be visited from its
/// first slot.
fn read_node<M: GuestMemory + ?Sized>(
    mem: &mut M,
    p: &Profile,
    frame: &mut Frame,
    enode: u64,
    (addr, ty, l): (u64, u64, &Layout),
    min: u64,
    max: u64,
) -> Result<(), WalkError> {
    if !mem.read(addr, &mut frame.node) {
        return Err(WalkError::Read(addr));
    }
    // A dead node (freed, its parent pointing at itself).
    let parent = word(&frame.node, usize::try_from(p.field(F::Mr64Parent).offset).unwrap_or(usize::MAX), 0)
        .ok_or(WalkError::BadNode(enode))?;
    if parent & !MAPLE_NODE_MASK == addr {
        return Err(WalkError::BadNode(enode));
    }
    // An internal node of a leaf type below the root is fine (leaves are
    // leaves), but a dense node is never used by a range tree's internal
    // levels; the leaf type decides how the slots are read.
    let end = data_end(&frame.node, ty, l, max).ok_or(WalkError::BadNode(enode))?;
    if end >= l.slots {
        return Err(WalkError::BadNode(enode));
    }
    frame.addr = addr;
    frame.ty = ty;
    frame.min = min;
    frame.max = max;
    frame.next = 0;
    frame.end = end;
    Ok(())
}

/// The VMA of the mm at `mm` that covers `addr`, if any: one descent of
/// its maple tree (the kernel's `find_vma` without the lock), at most
/// [`MAPLE_MAX_DEPTH`] nodes and one VMA read, with a single node buffer
/// (about 300 bytes of stack), so a probe may call it. The mm's tree root
/// and its `pgd` are read fresh; `Ok(None)` means no VMA covers `addr`
/// (or a slot holds something that is not a VMA of this mm covering its
/// range: the walk cannot tell garbage from a hole, and both refuse).
/// `pgd` is the `mm->pgd` the caller expects: another one means the mm was
/// freed and reused, [`WalkError::NotThisMm`].
pub fn vma_at<M: GuestMemory + ?Sized>(
    mem: &mut M,
    p: &Profile,
    mm: u64,
    pgd: u64,
    addr: u64,
) -> Result<Option<Vma>, WalkError> {
    check_ptr(mm, 8)?;
    if read_ptr(mem, mm, p.field(F::MmPgd))? != pgd {
        return Err(WalkError::NotThisMm);
    }
    let mt = mm
        .checked_add(u64::from(p.field(F::MmMt).offset))
        .ok_or(WalkError::BadPointer(mm))?;
    let mut entry = read_ptr(mem, mt, p.field(F::MtRoot))?;
    if entry == 0 || entry & 3 != 2 || entry <= MAPLE_RESERVED_RANGE {
        return Ok(None);
    }
    let mut f = Frame { node: [0; MAPLE_NODE_BYTES as usize], addr: 0, ty: 0, min: 0, max: u64::MAX, next: 0, end: 0 };
    for _ in 0..MAPLE_MAX_DEPTH {
        let (node, ty, l) = node_of(p, entry)?;
        let (min, max) = (f.min, f.max);
        read_node(mem, p, &mut f, entry, (node, ty, &l), min, max)?;
        // The slot whose range holds `addr`: ranges are increasing and
        // cover [min, max] without holes, so the first with hi >= addr.
        let mut found = None;
        for i in 0..=f.end {
            let (lo, hi) = slot_range(&f, &l, i).ok_or(WalkError::BadPivots(node))?;
            if hi >= addr {
                found = (lo <= addr).then_some((i, lo, hi));
                break;
            }
        }
        let Some((i, lo, hi)) = found else { return Ok(None) };
        entry = word(&f.node, l.slot, i).ok_or(WalkError::BadNode(entry))?;
        if entry == 0 {
            return Ok(None);
        }
        if f.ty >= MAPLE_RANGE_64 {
            (f.min, f.max) = (lo, hi);
            continue;
        }
        if entry & 3 == 2 && entry < MAPLE_RESERVED_RANGE {
            return Ok(None);
        }
        let v = read_vma(mem, p, entry)?;
        return Ok(v.fits(lo, hi, mm).then_some(v.vma));
    }
    Err(WalkError::TooDeep)
}

struct ReadVma {
    vma: Vma,
    mm: u64,
}

impl ReadVma {
    /// Whether this is a VMA of the mm at `mm` whose range is exactly the
    /// slot's `[lo, hi]` (both inclusive).
    fn fits(&self, lo: u64, hi: u64, mm: u64) -> bool {
        self.vma.start == lo && self.vma.end.checked_sub(1) == Some(hi) && self.vma.end > self.vma.start && self.mm == mm
    }
}

fn read_vma<M: GuestMemory + ?Sized>(mem: &mut M, p: &Profile, addr: u64) -> Result<ReadVma, WalkError> {
    check_ptr(addr, 8)?;
    let u = |mem: &mut M, f| read_uint(mem, addr, p.field(f));
    Ok(ReadVma {
        vma: Vma {
            addr,
            start: u(mem, F::VmaStart)?,
            end: u(mem, F::VmaEnd)?,
            flags: u(mem, F::VmaFlags)?,
            file: read_ptr(mem, addr, p.field(F::VmaFile))?,
            pgoff: u(mem, F::VmaPgoff)?,
        },
        mm: read_ptr(mem, addr, p.field(F::VmaMm))?,
    })
}

/// The dentry of a `struct file`.
pub fn file_dentry<M: GuestMemory + ?Sized>(mem: &mut M, p: &Profile, file: u64) -> Result<u64, WalkError> {
    check_ptr(file, 8)?;
    let path = file
        .checked_add(u64::from(p.field(F::FilePath).offset))
        .ok_or(WalkError::BadPointer(file))?;
    check_ptr(read_ptr(mem, path, p.field(F::PathDentry))?, 8)
}

/// Copies the name of `dentry` (`d_name`) into `buf`; returns its length.
pub fn dentry_name<M: GuestMemory + ?Sized>(
    mem: &mut M,
    p: &Profile,
    dentry: u64,
    buf: &mut [u8],
) -> Result<usize, WalkError> {
    check_ptr(dentry, 8)?;
    let q = dentry
        .checked_add(u64::from(p.field(F::DentryName).offset))
        .ok_or(WalkError::BadPointer(dentry))?;
    let len = read_uint(mem, q, p.field(F::QstrLen))?;
    let name = check_ptr(read_ptr(mem, q, p.field(F::QstrName))?, 1)?;
    let n = usize::try_from(len).map_err(|_| WalkError::NameTooLong)?;
    if n > 255 {
        return Err(WalkError::NameTooLong);
    }
    let dst = buf.get_mut(..n).ok_or(WalkError::NameTooLong)?;
    if !mem.read(name, dst) {
        return Err(WalkError::Read(name));
    }
    Ok(n)
}

/// Writes the path of `dentry` from its file system's root (`d_parent`
/// until a dentry that is its own parent) at the end of `buf`, components
/// separated by `/`, and returns where it starts: `&buf[start..]` is the
/// path (`/` alone for the root). Mount points are not crossed: this is the
/// path inside the file's own file system.
pub fn dentry_path<M: GuestMemory + ?Sized>(
    mem: &mut M,
    p: &Profile,
    dentry: u64,
    lim: &Limits,
    buf: &mut [u8],
) -> Result<usize, WalkError> {
    let mut end = buf.len();
    let mut d = dentry;
    let mut name = [0u8; 255];
    for _ in 0..lim.max_path_depth {
        let parent = check_ptr(read_ptr(mem, d, p.field(F::DentryParent))?, 8)?;
        if parent == d {
            if end == buf.len() {
                let at = end.checked_sub(1).ok_or(WalkError::NameTooLong)?;
                *buf.get_mut(at).ok_or(WalkError::NameTooLong)? = b'/';
                end = at;
            }
            return Ok(end);
        }
        let n = dentry_name(mem, p, d, &mut name)?;
        let start = end.checked_sub(n.wrapping_add(1)).ok_or(WalkError::NameTooLong)?;
        let (slash, rest) = buf
            .get_mut(start..end)
            .ok_or(WalkError::NameTooLong)?
            .split_first_mut()
            .ok_or(WalkError::NameTooLong)?;
        *slash = b'/';
        rest.copy_from_slice(name.get(..n).ok_or(WalkError::NameTooLong)?);
        end = start;
        d = parent;
    }
    Err(WalkError::TooDeep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux_profile::tests::BTF;
    use std::string::ToString;
    use std::vec::Vec;

    const MAP: &[u8] = include_bytes!("tests/fixtures/linux-7.3-System.map");
    const BASE: u64 = 0xffff_8880_0000_0000;
    const INIT_TASK: u64 = 0xffffffff82812ac0;

    /// Guest memory: the direct-map region at BASE, plus init_task's page.
    struct Mem {
        bytes: Vec<u8>,
        init: Vec<u8>,
        next: u64,
        reads: u64,
    }

    impl GuestMemory for Mem {
        fn read(&mut self, va: u64, buf: &mut [u8]) -> bool {
            self.reads += 1;
            let (region, base) = if ((INIT_TASK & !0xfff)..(INIT_TASK & !0xfff) + 0x4000).contains(&va) {
                (&self.init, INIT_TASK & !0xfff)
            } else {
                (&self.bytes, BASE)
            };
            let Some(off) = va.checked_sub(base) else { return false };
            match region.get(off as usize..off as usize + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    impl Mem {
        fn new() -> Self {
            Mem { bytes: std::vec![0; 1 << 20], init: std::vec![0; 0x4000], next: BASE + 0x1000, reads: 0 }
        }
        fn alloc(&mut self, size: u64, align: u64) -> u64 {
            let a = self.next.next_multiple_of(align);
            self.next = a + size;
            a
        }
        fn put(&mut self, va: u64, b: &[u8]) {
            let (region, base) = if ((INIT_TASK & !0xfff)..(INIT_TASK & !0xfff) + 0x4000).contains(&va) {
                (&mut self.init, INIT_TASK & !0xfff)
            } else {
                (&mut self.bytes, BASE)
            };
            let off = (va - base) as usize;
            region[off..off + b.len()].copy_from_slice(b);
        }
        fn p64(&mut self, va: u64, v: u64) {
            self.put(va, &v.to_le_bytes());
        }
        fn p32(&mut self, va: u64, v: u32) {
            self.put(va, &v.to_le_bytes());
        }
    }

    fn profile() -> Profile {
        Profile::resolve(BTF, MAP).unwrap()
    }

    fn at(p: &Profile, base: u64, f: F) -> u64 {
        base + u64::from(p.field(f).offset)
    }

    /// Writes a task; links are made by `link`.
    fn task(m: &mut Mem, p: &Profile, addr: u64, pid: u32, comm: &str, mm: u64, parent: u64) {
        m.p32(at(p, addr, F::TaskPid), pid);
        m.p32(at(p, addr, F::TaskTgid), pid);
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        m.put(at(p, addr, F::TaskComm), &c);
        m.p64(at(p, addr, F::TaskMm), mm);
        m.p64(at(p, addr, F::TaskRealParent), parent);
    }

    /// Links tasks into a circular list in this order.
    fn link(m: &mut Mem, p: &Profile, tasks: &[u64]) {
        let node = |t: u64| at(p, t, F::TaskTasks);
        for (i, &t) in tasks.iter().enumerate() {
            let next = tasks[(i + 1) % tasks.len()];
            let prev = tasks[(i + tasks.len() - 1) % tasks.len()];
            m.p64(node(t), node(next));
            m.p64(node(t) + 8, node(prev));
        }
    }

    fn three_tasks(m: &mut Mem, p: &Profile) -> [u64; 4] {
        task(m, p, INIT_TASK, 0, "swapper/0", 0, INIT_TASK);
        let t: Vec<u64> = (0..3).map(|_| m.alloc(6080, 64)).collect();
        task(m, p, t[0], 1, "init", 0, INIT_TASK);
        task(m, p, t[1], 2, "kthreadd", 0, INIT_TASK);
        task(m, p, t[2], 77, "prog", 0, t[0]);
        let all = [INIT_TASK, t[0], t[1], t[2]];
        link(m, p, &all);
        all
    }

    /// The tasks a walk saw: pid and comm.
    type Seen = Vec<(i32, Vec<u8>)>;

    fn walk(m: &mut Mem, p: &Profile, slide: u64, lim: &Limits) -> (Result<u32, WalkError>, Seen) {
        let mut seen = Vec::new();
        let r = for_each_task(m, p, slide, lim, |t| {
            seen.push((t.pid, t.comm().to_vec()));
            ControlFlow::Continue(())
        });
        (r, seen)
    }

    #[test]
    fn task_list_from_init_task_comes_back() {
        let p = profile();
        let mut m = Mem::new();
        three_tasks(&mut m, &p);
        let (r, seen) = walk(&mut m, &p, 0, &Limits::default());
        assert_eq!(r, Ok(4));
        let names: Vec<(i32, &[u8])> = seen.iter().map(|(p, c)| (*p, c.as_slice())).collect();
        assert_eq!(names, [(0, &b"swapper/0"[..]), (1, b"init"), (2, b"kthreadd"), (77, b"prog")]);
        // Bounded: four tasks do not fit in a limit of three.
        let lim = Limits { max_tasks: 3, ..Limits::default() };
        assert_eq!(walk(&mut m, &p, 0, &lim).0, Err(WalkError::TooMany));
    }

    #[test]
    fn a_profile_that_does_not_fit_is_refused() {
        let p = profile();
        let mut m = Mem::new();
        three_tasks(&mut m, &p);
        // A wrong slide, a wrong comm, a wrong pid.
        assert_eq!(walk(&mut m, &p, 0x1000, &Limits::default()).0, Err(WalkError::NotInitTask));
        assert_eq!(walk(&mut m, &p, 0x200000, &Limits::default()).0, Err(WalkError::NotInitTask));
        m.put(at(&p, INIT_TASK, F::TaskComm), b"swapper/1\0");
        assert_eq!(walk(&mut m, &p, 0, &Limits::default()).0, Err(WalkError::NotInitTask));
        m.put(at(&p, INIT_TASK, F::TaskComm), b"swapper/0\0");
        m.p32(at(&p, INIT_TASK, F::TaskPid), 1);
        assert_eq!(walk(&mut m, &p, 0, &Limits::default()).0, Err(WalkError::NotInitTask));
        // Offsets of another kernel: pid read where comm is.
        m.p32(at(&p, INIT_TASK, F::TaskPid), 0);
        let text = p.to_string().replace("field task_struct.pid 1536 4", "field task_struct.pid 1540 4");
        let other = Profile::parse(text.as_bytes()).unwrap();
        m.p32(at(&p, INIT_TASK, F::TaskTgid), 9);
        assert_eq!(walk(&mut m, &other, 0, &Limits::default()).0, Err(WalkError::NotInitTask));
    }

    /// `Mem` seen with the kernel image moved up by `slide`: reads of the
    /// image range (where `init_task` is) below the slide fail.
    struct Slid<'a>(&'a mut Mem, u64);

    impl GuestMemory for Slid<'_> {
        fn read(&mut self, va: u64, buf: &mut [u8]) -> bool {
            if va >= 0xffff_ffff_8000_0000 {
                return va.checked_sub(self.1).is_some_and(|v| v >= 0xffff_ffff_8000_0000 && self.0.read(v, buf));
            }
            self.0.read(va, buf)
        }
    }

    #[test]
    fn the_slide_is_found_by_init_task() {
        let p = profile();
        let mut m = Mem::new();
        three_tasks(&mut m, &p);
        assert_eq!(find_slide(&mut m, &p), Some(0));
        // The image at another 2 MiB multiple: init_task's real_parent is
        // where that kernel has it.
        let slide = 0x1de0_0000;
        let init = INIT_TASK + slide;
        m.p64(at(&p, INIT_TASK, F::TaskRealParent), init);
        let mut slid = Slid(&mut m, slide);
        assert_eq!(find_slide(&mut slid, &p), Some(slide));
        assert_eq!(check_init_task(&mut slid, &p, slide).map(|t| t.addr), Ok(init));
        assert_eq!(check_init_task(&mut slid, &p, 0), Err(WalkError::NotInitTask));
        // Nothing that looks like init_task anywhere: no slide.
        m.put(at(&p, INIT_TASK, F::TaskComm), b"swapper/1\0");
        assert_eq!(find_slide(&mut Slid(&mut m, slide), &p), None);
    }

    #[test]
    fn corrupt_and_cyclic_task_lists_end_with_an_error() {
        let p = profile();
        let mut m = Mem::new();
        let t = three_tasks(&mut m, &p);
        let node = |x: u64| at(&p, x, F::TaskTasks);
        // t[2] -> t[1]: a cycle that never returns to init_task.
        m.p64(node(t[2]), node(t[1]));
        assert_eq!(walk(&mut m, &p, 0, &Limits::default()).0, Err(WalkError::ListCorrupt(node(t[1]))));
        // Even with the prev pointers made consistent for the back edge.
        m.p64(node(t[1]) + 8, node(t[2]));
        assert!(matches!(walk(&mut m, &p, 0, &Limits::default()).0, Err(WalkError::ListCorrupt(_))));
        // A self loop.
        link(&mut m, &p, &t);
        m.p64(node(t[1]), node(t[1]));
        assert!(matches!(walk(&mut m, &p, 0, &Limits::default()).0, Err(WalkError::ListCorrupt(_))));
        // A user address, a misaligned pointer, an unreadable one.
        for bad in [0x7fff_0000_1000u64, node(t[1]) + 1, 0xffff_ffff_ffff_0000] {
            link(&mut m, &p, &t);
            m.p64(node(t[0]), bad);
            let r = walk(&mut m, &p, 0, &Limits::default()).0;
            assert!(matches!(r, Err(WalkError::BadPointer(_)) | Err(WalkError::Read(_))), "{:#x}: {:?}", bad, r);
        }
    }

    /// An mm with a maple tree: an arange_64 root over two leaf_64 nodes.
    struct Tree {
        mm: u64,
        vmas: Vec<(u64, u64)>,
        leaves: [u64; 2],
        root: u64,
    }

    const ENC_LEAF: u64 = (1 << 3) | 2;
    const ENC_ARANGE: u64 = (3 << 3) | 2;

    fn vma(m: &mut Mem, p: &Profile, mm: u64, start: u64, end: u64, flags: u64) -> u64 {
        let v = m.alloc(256, 64);
        m.p64(at(p, v, F::VmaStart), start);
        m.p64(at(p, v, F::VmaEnd), end);
        m.p64(at(p, v, F::VmaMm), mm);
        m.p64(at(p, v, F::VmaFlags), flags);
        v
    }

    /// A leaf over [min, max] holding `vmas` with gaps between them.
    fn leaf(m: &mut Mem, p: &Profile, parent: u64, min: u64, max: u64, vmas: &[(u64, u64, u64)]) -> u64 {
        let n = m.alloc(256, 256);
        m.p64(n, parent);
        let piv = u64::from(p.field(F::Mr64Pivot).offset);
        let slot = u64::from(p.field(F::Mr64Slot).offset);
        let mut i = 0u64;
        let mut cur = min;
        for &(s, e, addr) in vmas {
            if s > cur {
                m.p64(n + piv + 8 * i, s - 1); // a gap: NULL slot
                i += 1;
            }
            m.p64(n + slot + 8 * i, addr);
            m.p64(n + piv + 8 * i, e - 1);
            i += 1;
            cur = e;
        }
        if cur <= max {
            m.p64(n + piv + 8 * i, max);
        }
        // Metadata end: the last slot used.
        let meta = u64::from(p.field(F::Mr64Meta).offset + p.field(F::MetaEnd).offset);
        m.put(n + meta, &[i as u8]);
        n
    }

    fn tree(m: &mut Mem, p: &Profile) -> Tree {
        let mm = m.alloc(2880, 64);
        let mut vmas = Vec::new();
        let mut a = Vec::new();
        for k in 0..6u64 {
            let (s, e) = (0x400000 + k * 0x10000, 0x400000 + k * 0x10000 + 0x3000);
            a.push((s, e, vma(m, p, mm, s, e, 3)));
            vmas.push((s, e));
        }
        let root = m.alloc(256, 256);
        let split = 0x430000 - 1;
        let l0 = leaf(m, p, root, 0, split, &a[..3]);
        let l1 = leaf(m, p, root, split + 1, u64::MAX, &a[3..]);
        m.p64(root, (mm + u64::from(p.field(F::MmMt).offset)) | 1); // MA_ROOT_PARENT
        let piv = u64::from(p.field(F::Ma64Pivot).offset);
        let slot = u64::from(p.field(F::Ma64Slot).offset);
        m.p64(root + slot, l0 | ENC_LEAF);
        m.p64(root + piv, split);
        m.p64(root + slot + 8, l1 | ENC_LEAF);
        let meta = u64::from(p.field(F::Ma64Meta).offset + p.field(F::MetaEnd).offset);
        m.put(root + meta, &[1]);
        let mt = at(p, mm, F::MmMt);
        m.p64(at(p, mt, F::MtRoot), root | ENC_ARANGE);
        Tree { mm, vmas, leaves: [l0, l1], root }
    }

    fn vmas_of(m: &mut Mem, p: &Profile, mm: u64, lim: &Limits) -> (Result<VmaStats, WalkError>, Vec<(u64, u64)>) {
        let info = read_mm(m, p, mm).unwrap();
        let mut scratch = std::boxed::Box::new(MapleScratch::default());
        let mut out = Vec::new();
        let r = for_each_vma(m, p, &info, lim, &mut scratch, |v| {
            out.push((v.start, v.end));
            ControlFlow::Continue(())
        });
        (r, out)
    }

    #[test]
    fn maple_tree_vmas_in_order() {
        let p = profile();
        let mut m = Mem::new();
        let t = tree(&mut m, &p);
        let (r, got) = vmas_of(&mut m, &p, t.mm, &Limits::default());
        assert_eq!(r, Ok(VmaStats { nodes: 3, vmas: 6, bad_entries: 0 }));
        assert_eq!(got, t.vmas);
        // Bounded by node count and VMA count.
        let lim = Limits { max_nodes: 2, ..Limits::default() };
        assert_eq!(vmas_of(&mut m, &p, t.mm, &lim).0, Err(WalkError::TooMany));
        let lim = Limits { max_vmas: 5, ..Limits::default() };
        assert_eq!(vmas_of(&mut m, &p, t.mm, &lim).0, Err(WalkError::TooMany));
        // An empty tree.
        let mt = at(&p, t.mm, F::MmMt);
        m.p64(at(&p, mt, F::MtRoot), 0);
        assert_eq!(vmas_of(&mut m, &p, t.mm, &Limits::default()), (Ok(VmaStats::default()), Vec::new()));
    }

    #[test]
    fn entries_that_are_not_this_mms_vmas_are_counted_and_skipped() {
        let p = profile();
        let mut m = Mem::new();
        let t = tree(&mut m, &p);
        let slot = u64::from(p.field(F::Mr64Slot).offset);
        // Leaf 0 holds gap, vma0, gap, vma1, gap, vma2; leaf 1 vma3, gap,
        // vma4, ... Make vma0 another mm's, vma2's range another than its
        // slot's, and vma4's slot a user pointer.
        let get = |m: &Mem, va: u64| u64::from_le_bytes(m.bytes[(va - BASE) as usize..][..8].try_into().unwrap());
        let vma0 = get(&m, t.leaves[0] + slot + 8);
        m.p64(at(&p, vma0, F::VmaMm), t.mm + 64);
        let vma2 = get(&m, t.leaves[0] + slot + 8 * 5);
        m.p64(at(&p, vma2, F::VmaEnd), 0x999000);
        m.p64(t.leaves[1] + slot + 8 * 2, 0x7fff_0000);
        let (r, got) = vmas_of(&mut m, &p, t.mm, &Limits::default());
        assert_eq!(r.unwrap().bad_entries, 3);
        assert_eq!(got, [t.vmas[1], t.vmas[3], t.vmas[5]]);
    }

    #[test]
    fn the_vma_at_an_address_by_one_descent() {
        let p = profile();
        let mut m = Mem::new();
        let t = tree(&mut m, &p);
        let pgd = 0xffff_8880_0123_4000;
        m.p64(at(&p, t.mm, F::MmPgd), pgd);
        for &(s, e) in &t.vmas {
            for a in [s, s + 0x1234, e - 1] {
                let v = vma_at(&mut m, &p, t.mm, pgd, a).unwrap().unwrap();
                assert_eq!((v.start, v.end, v.flags), (s, e, 3), "{:#x}", a);
            }
            // The holes between VMAs, below the first and above the last.
            assert_eq!(vma_at(&mut m, &p, t.mm, pgd, e), Ok(None));
            assert_eq!(vma_at(&mut m, &p, t.mm, pgd, s - 1), Ok(None));
        }
        assert_eq!(vma_at(&mut m, &p, t.mm, pgd, 0), Ok(None));
        assert_eq!(vma_at(&mut m, &p, t.mm, pgd, u64::MAX), Ok(None));
        // At most the tree's depth in node reads, and one VMA.
        let before = m.reads;
        vma_at(&mut m, &p, t.mm, pgd, t.vmas[4].0).unwrap().unwrap();
        assert!(m.reads - before <= 2 + 2 + 6, "{} reads", m.reads - before);
        // Another mm's pgd: the mm was freed and reused.
        assert_eq!(vma_at(&mut m, &p, t.mm, pgd + 0x1000, t.vmas[0].0), Err(WalkError::NotThisMm));
        // A VMA of another mm in the slot is no VMA of this one.
        let slot = u64::from(p.field(F::Mr64Slot).offset);
        let get = |m: &Mem, va: u64| u64::from_le_bytes(m.bytes[(va - BASE) as usize..][..8].try_into().unwrap());
        let vma0 = get(&m, t.leaves[0] + slot + 8);
        m.p64(at(&p, vma0, F::VmaMm), t.mm + 64);
        assert_eq!(vma_at(&mut m, &p, t.mm, pgd, t.vmas[0].0), Ok(None));
        // A node that is its own child ends at the depth bound.
        let aslot = u64::from(p.field(F::Ma64Slot).offset);
        m.p64(t.root + aslot, t.root | ENC_ARANGE);
        assert_eq!(vma_at(&mut m, &p, t.mm, pgd, t.vmas[0].0), Err(WalkError::TooDeep));
        // An empty tree, a user-space mm pointer.
        m.p64(at(&p, at(&p, t.mm, F::MmMt), F::MtRoot), 0);
        assert_eq!(vma_at(&mut m, &p, t.mm, pgd, t.vmas[0].0), Ok(None));
        assert_eq!(vma_at(&mut m, &p, 0x7fff_0000, pgd, 0x1000), Err(WalkError::BadPointer(0x7fff_0000)));
    }

    #[test]
    fn garbage_and_cyclic_maple_trees_end_with_an_error() {
        let p = profile();
        let slot = u64::from(p.field(F::Ma64Slot).offset);
        let piv = u64::from(p.field(F::Ma64Pivot).offset);
        let lim = Limits::default();
        // A node that is its own child: ends at the depth bound.
        let mut m = Mem::new();
        let t = tree(&mut m, &p);
        m.p64(t.root + slot, t.root | ENC_ARANGE);
        assert_eq!(vmas_of(&mut m, &p, t.mm, &lim).0, Err(WalkError::TooDeep));
        // Decreasing pivots.
        let mut m = Mem::new();
        let t = tree(&mut m, &p);
        m.p64(t.root + piv, 5);
        m.p64(t.leaves[0] + u64::from(p.field(F::Mr64Pivot).offset), 0x500000);
        assert!(matches!(vmas_of(&mut m, &p, t.mm, &lim).0, Err(WalkError::BadPivots(_))));
        // A node type with no place here (maple_copy), a dead node, a
        // metadata end past the slots, a type number past the enum.
        for case in 0..4 {
            let mut m = Mem::new();
            let t = tree(&mut m, &p);
            match case {
                0 => m.p64(t.root + slot, t.leaves[0] | (4 << 3) | 2),
                1 => m.p64(t.leaves[0], t.leaves[0]),
                2 => {
                    let meta = u64::from(p.field(F::Ma64Meta).offset + p.field(F::MetaEnd).offset);
                    m.put(t.root + meta, &[40]);
                }
                _ => m.p64(t.root + slot, (t.leaves[0] + 0x40) | ENC_LEAF),
            }
            let r = vmas_of(&mut m, &p, t.mm, &lim).0;
            assert!(matches!(r, Err(WalkError::BadNode(_)) | Err(WalkError::BadPointer(_))), "case {}: {:?}", case, r);
        }
    }

    #[test]
    fn random_memory_never_hangs_or_panics() {
        let p = profile();
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..40 {
            let mut m = Mem::new();
            let t = tree(&mut m, &p);
            three_tasks(&mut m, &p);
            // Overwrite words with random values, pointers into the region
            // and small integers.
            for _ in 0..(200 * (round + 1)) {
                let off = (rnd() % ((1 << 20) - 8)) & !7;
                let v = match rnd() % 3 {
                    0 => rnd(),
                    1 => (BASE + (rnd() % (1 << 20))) | (rnd() & 0xff),
                    _ => rnd() % 64,
                };
                m.bytes[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
            }
            let lim = Limits { max_tasks: 1000, max_nodes: 1000, max_vmas: 5000, max_path_depth: 64 };
            let _ = walk(&mut m, &p, 0, &lim);
            if read_mm(&mut m, &p, t.mm).is_ok() {
                let _ = vmas_of(&mut m, &p, t.mm, &lim);
                for a in [0u64, 0x400000, 0x431000, u64::MAX] {
                    let _ = vma_at(&mut m, &p, t.mm, 0, a);
                }
            }
            assert!(m.reads < 100_000, "round {}: {} reads", round, m.reads);
        }
    }

    fn dentry(m: &mut Mem, p: &Profile, name: &str, parent: Option<u64>) -> u64 {
        let d = m.alloc(320, 64);
        let s = m.alloc(name.len() as u64 + 1, 8);
        m.put(s, name.as_bytes());
        let q = at(p, d, F::DentryName);
        m.p64(at(p, q, F::QstrName), s);
        m.p32(at(p, q, F::QstrLen), name.len() as u32);
        m.p64(at(p, d, F::DentryParent), parent.unwrap_or(d));
        d
    }

    #[test]
    fn dentry_names_and_paths() {
        let p = profile();
        let mut m = Mem::new();
        let root = dentry(&mut m, &p, "/", None);
        let usr = dentry(&mut m, &p, "usr", Some(root));
        let lib = dentry(&mut m, &p, "lib", Some(usr));
        let so = dentry(&mut m, &p, "libc.so.6", Some(lib));
        let file = m.alloc(256, 64);
        m.p64(at(&p, at(&p, file, F::FilePath), F::PathDentry), so);
        assert_eq!(file_dentry(&mut m, &p, file), Ok(so));
        let mut buf = [0u8; 64];
        let n = dentry_name(&mut m, &p, so, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"libc.so.6");
        let lim = Limits::default();
        let start = dentry_path(&mut m, &p, so, &lim, &mut buf).unwrap();
        assert_eq!(&buf[start..], b"/usr/lib/libc.so.6");
        let start = dentry_path(&mut m, &p, root, &lim, &mut buf).unwrap();
        assert_eq!(&buf[start..], b"/");
        // Too small a buffer, a name too long, a d_parent cycle.
        assert_eq!(dentry_path(&mut m, &p, so, &lim, &mut [0u8; 10]), Err(WalkError::NameTooLong));
        m.p32(at(&p, at(&p, so, F::DentryName), F::QstrLen), 300);
        assert_eq!(dentry_name(&mut m, &p, so, &mut buf), Err(WalkError::NameTooLong));
        m.p64(at(&p, usr, F::DentryParent), lib);
        assert_eq!(dentry_path(&mut m, &p, lib, &lim, &mut [0u8; 4096]), Err(WalkError::TooDeep));
    }
}
