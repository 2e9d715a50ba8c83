// SPDX-License-Identifier: GPL-2.0
//! `kvm-pfi profile`: the Linux guest profile (pfi_core's linux_profile)
//! built from a kernel's files, printed, and checked against the running
//! kernel by walking its task list and VMA trees (pfi_core's linux_walk)
//! through /proc/kcore. See Documentation/guest-linux.rst.

use std::collections::HashMap;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::abi;
use crate::dev::{ProcessList, ProcessVmas};
use crate::error::{Error, Result};
use crate::sigs::{path_name, read_input};
use pfi_core::linux_profile::{Profile, S};
use pfi_core::linux_walk::{self, GuestMemory, Limits, MapleScratch, WalkError};
use pfi_core::process_regions;

/// `__START_KERNEL_map`: the kernel image is mapped at or above it (and
/// below the modules area, which kcore maps higher).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
const PAGE: u64 = 4096;
/// Whole-walk attempts when the task list changes under the walk.
const TASK_LIST_TRIES: u32 = 5;
/// Attempts per process when its VMA tree changes under the walk.
const VMA_TRIES: u32 = 3;

// -- ELF -------------------------------------------------------------------

const PT_LOAD: u32 = 1;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn read_at(f: &File, name: &str, off: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off)
        .map_err(|e| Error::from_io(format!("read {name} at {off:#x}"), e))?;
    Ok(buf)
}

/// The 64-byte header of a 64-bit little-endian ELF file, or a data error.
fn elf_header(f: &File, name: &str) -> Result<Vec<u8>> {
    let h = read_at(f, name, 0, 64)
        .map_err(|_| Error::Data(format!("{name}: not an ELF file (too short)")))?;
    if h.get(..4) != Some(b"\x7fELF") || h[4] != 2 || h[5] != 1 {
        return Err(Error::Data(format!(
            "{name}: not a 64-bit little-endian ELF file"
        )));
    }
    Ok(h)
}

/// The contents of section `want` of an ELF file (a vmlinux of hundreds of
/// megabytes: only the headers and that section are read).
pub fn elf_section(path: &Path, want: &str) -> Result<Option<Vec<u8>>> {
    let name = path_name(path);
    let f = File::open(path).map_err(|e| Error::input(&name, e))?;
    let h = elf_header(&f, &name)?;
    let bad = || Error::Data(format!("{name}: malformed ELF section headers"));
    let shoff = u64_at(&h, 0x28).ok_or_else(bad)?;
    let shentsize = usize::from(u16_at(&h, 0x3a).ok_or_else(bad)?);
    let shnum = usize::from(u16_at(&h, 0x3c).ok_or_else(bad)?);
    let shstrndx = usize::from(u16_at(&h, 0x3e).ok_or_else(bad)?);
    if shoff == 0 || shnum == 0 || shentsize < 64 || shstrndx >= shnum {
        return Err(bad());
    }
    let sh = read_at(&f, &name, shoff, shentsize * shnum).map_err(|_| bad())?;
    let sect = |i: usize| -> Option<(u32, u64, u64)> {
        let b = i * shentsize;
        Some((
            u32_at(&sh, b)?,
            u64_at(&sh, b + 0x18)?,
            u64_at(&sh, b + 0x20)?,
        ))
    };
    let (_, stroff, strsize) = sect(shstrndx).ok_or_else(bad)?;
    let strtab = read_at(
        &f,
        &name,
        stroff,
        usize::try_from(strsize).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    for i in 0..shnum {
        let (n, off, size) = sect(i).ok_or_else(bad)?;
        let n = usize::try_from(n).map_err(|_| bad())?;
        let Some(rest) = strtab.get(n..) else {
            continue;
        };
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        if &rest[..end] == want.as_bytes() {
            let size = usize::try_from(size).map_err(|_| bad())?;
            return Ok(Some(read_at(&f, &name, off, size).map_err(|_| bad())?));
        }
    }
    Ok(None)
}

/// One PT_LOAD segment of an ELF core: `[vaddr, vaddr + size)` is at
/// `offset` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub size: u64,
    pub offset: u64,
}

impl Segment {
    fn contains(&self, va: u64, len: u64) -> bool {
        va >= self.vaddr
            && va
                .checked_add(len)
                .is_some_and(|e| e <= self.vaddr.saturating_add(self.size))
    }
}

fn load_segments(f: &File, name: &str) -> Result<Vec<Segment>> {
    let h = elf_header(f, name)?;
    let bad = || Error::Data(format!("{name}: malformed ELF program headers"));
    let phoff = u64_at(&h, 0x20).ok_or_else(bad)?;
    let phentsize = usize::from(u16_at(&h, 0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(&h, 0x38).ok_or_else(bad)?);
    if phentsize < 56 || phnum == 0 {
        return Err(bad());
    }
    let ph = read_at(f, name, phoff, phentsize * phnum).map_err(|_| bad())?;
    let mut out = Vec::new();
    for i in 0..phnum {
        let b = i * phentsize;
        if u32_at(&ph, b).ok_or_else(bad)? != PT_LOAD {
            continue;
        }
        out.push(Segment {
            offset: u64_at(&ph, b + 0x08).ok_or_else(bad)?,
            vaddr: u64_at(&ph, b + 0x10).ok_or_else(bad)?,
            size: u64_at(&ph, b + 0x20).ok_or_else(bad)?,
        });
    }
    out.sort_by_key(|s| s.vaddr);
    Ok(out)
}

// -- /proc/kcore as guest memory ---------------------------------------------

/// Kernel virtual memory through an ELF core (/proc/kcore), page by page;
/// each page read once per walk attempt.
pub struct Kcore {
    file: File,
    segments: Vec<Segment>,
    cache: HashMap<u64, Option<Box<[u8]>>>,
}

impl Kcore {
    pub fn open(path: &Path) -> Result<Self> {
        let name = path_name(path);
        let file = File::open(path).map_err(|e| Error::input(&name, e))?;
        let segments = load_segments(&file, &name)?;
        Ok(Kcore {
            file,
            segments,
            cache: HashMap::new(),
        })
    }

    /// Where the kernel image is mapped: the lowest segment at or above
    /// `__START_KERNEL_map` (kcore's KCORE_TEXT, `_text` to `_end`).
    pub fn text_base(&self) -> Option<u64> {
        self.segments
            .iter()
            .map(|s| s.vaddr)
            .find(|&v| v >= START_KERNEL_MAP)
    }

    /// The segment that maps the kernel image: its address and size.
    pub fn text_segment(&self) -> Option<(u64, u64)> {
        self.segments
            .iter()
            .find(|s| s.vaddr >= START_KERNEL_MAP)
            .map(|s| (s.vaddr, s.size))
    }

    /// Forget what was read (a new walk attempt reads afresh).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    fn segment(&self, va: u64, len: u64) -> Option<Segment> {
        self.segments.iter().copied().find(|s| s.contains(va, len))
    }

    fn page(&mut self, page: u64) -> Option<&[u8]> {
        if !self.cache.contains_key(&page) {
            let data = self.segment(page, PAGE).and_then(|s| {
                let mut b = vec![0u8; PAGE as usize].into_boxed_slice();
                let off = s.offset.checked_add(page - s.vaddr)?;
                self.file.read_exact_at(&mut b, off).ok().map(|_| b)
            });
            self.cache.insert(page, data);
        }
        self.cache.get(&page).and_then(|p| p.as_deref())
    }
}

impl GuestMemory for Kcore {
    fn read(&mut self, va: u64, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(at) = va.checked_add(done as u64) else {
                return false;
            };
            let page = at & !(PAGE - 1);
            let in_page = (at - page) as usize;
            let n = (buf.len() - done).min(PAGE as usize - in_page);
            let dst = &mut buf[done..done + n];
            if let Some(p) = self.page(page) {
                dst.copy_from_slice(&p[in_page..in_page + n]);
            } else {
                // A page only partly in a segment (the end of the image).
                let Some(s) = self.segment(at, n as u64) else {
                    return false;
                };
                if self
                    .file
                    .read_exact_at(dst, s.offset + (at - s.vaddr))
                    .is_err()
                {
                    return false;
                }
            }
            done += n;
        }
        true
    }
}

// -- profile build / show ----------------------------------------------------

fn profile_error(what: &str, e: pfi_core::linux_profile::ProfileError) -> Error {
    Error::Data(format!("{what}: {e}"))
}

/// `profile build`: the profile from a vmlinux's `.BTF` section (or a raw
/// BTF blob) and a System.map (or kallsyms), each of them, when not given,
/// from the kernel's memory (`image`: its BTF, its kallsyms tables).
pub fn build(
    vmlinux: Option<&Path>,
    btf: Option<&Path>,
    system_map: Option<&Path>,
    image: Option<&crate::kernel_image::Image>,
) -> Result<Profile> {
    let (blob, what) = match (btf_file(vmlinux, btf)?, image) {
        (Some(b), _) => b,
        (None, Some(img)) => (img.btf()?.to_vec(), format!("the BTF in {}", img.what)),
        (None, None) => unreachable!("clap requires --vmlinux, --btf, --vm or --kcore"),
    };
    let (syms, syms_what) = match (system_map, image) {
        (Some(m), _) => (read_input(m)?, path_name(m)),
        (None, Some(img)) => (
            crate::kernel_image::symbols_text(&img.kallsyms()?)?.into_bytes(),
            format!("the kallsyms of {}", img.what),
        ),
        (None, None) => unreachable!("clap requires --system-map, --vm or --kcore"),
    };
    Profile::resolve(&blob, &syms)
        .map_err(|e| profile_error(&format!("profile from {what} and {syms_what}"), e))
}

/// The BTF blob of `--vmlinux` or `--btf`, and its name; None if neither.
fn btf_file(vmlinux: Option<&Path>, btf: Option<&Path>) -> Result<Option<(Vec<u8>, String)>> {
    Ok(Some(match (vmlinux, btf) {
        (Some(v), _) => match elf_section(v, ".BTF")? {
            Some(b) => (b, path_name(v)),
            None => {
                return Err(Error::Data(format!(
                    "{}: no .BTF section (a kernel built without CONFIG_DEBUG_INFO_BTF); \
                     make the blob from its DWARF with `pahole --btf_encode_detached=vmlinux.btf \
                     -J {}` and pass --btf vmlinux.btf",
                    path_name(v),
                    v.display()
                )))
            }
        },
        (None, Some(b)) => (read_input(b)?, path_name(b)),
        (None, None) => return Ok(None),
    }))
}

/// Reads a profile's text form.
pub fn load(path: &Path) -> Result<Profile> {
    Profile::parse(&read_input(path)?).map_err(|e| profile_error(&path_name(path), e))
}

// -- profile load / ps: the module's Linux guest support ----------------------

/// How long `profile load` tries again while the module has seen no vCPU
/// of the VM in 64-bit kernel mode (each try waits up to 3 s, `KVM_PFI_LINUX_WALK_MS`
/// + 2 s, in the module itself).
pub const GUEST_UP_WAIT: Duration = Duration::from_secs(10);
/// Pause between those tries.
pub const GUEST_UP_PAUSE: Duration = Duration::from_millis(250);

/// The text `profile load` gives the module: the profile in `path`, checked
/// here with the module's own parser and sent in its normal form (comments
/// dropped), so that a malformed file fails like `profile show` does.
pub fn load_text(path: &Path) -> Result<Vec<u8>> {
    let text = load(path)?.to_string().into_bytes();
    if text.len() > abi::KVM_PFI_LINUX_PROFILE_MAX as usize {
        return Err(Error::Data(format!(
            "{}: {} bytes of profile, more than the module takes ({})",
            path_name(path),
            text.len(),
            abi::KVM_PFI_LINUX_PROFILE_MAX
        )));
    }
    Ok(text)
}

/// How many times `vmas` calls KVM_PFI_PROCESS_VMAS again when it fails
/// with EAGAIN (the tree changed under the module's three walks, or its
/// Linux work did not answer within its wait), before it gives up.
pub const VMAS_EAGAIN_RETRIES: u32 = 3;
/// Pause between those calls.
pub const VMAS_EAGAIN_PAUSE: Duration = Duration::from_millis(100);

/// Calls `f` until it fails with something else than EAGAIN, or `wait`
/// has passed (pausing `pause` between calls).
pub fn retry_eagain<T>(
    wait: Duration,
    pause: Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        match f() {
            Err(e) if e.errno() == Some(libc::EAGAIN) && start.elapsed() + pause < wait => {
                std::thread::sleep(pause)
            }
            r => return r,
        }
    }
}

/// Calls `f` again while it fails with EAGAIN, at most `retries` times
/// (pausing `pause` before each), and returns its last answer.
pub fn retry_eagain_times<T>(
    retries: u32,
    pause: Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut left = retries;
    loop {
        match f() {
            Err(e) if e.errno() == Some(libc::EAGAIN) && left > 0 => {
                left -= 1;
                std::thread::sleep(pause)
            }
            r => return r,
        }
    }
}

/// ENODATA of the ioctls that need a profile (`ps`, `vmas`).
fn no_profile(vm: u32) -> Error {
    Error::Msg(format!(
        "VM {vm} has no Linux profile (kvm-pfi profile load)"
    ))
}

/// An errno the Linux ioctls share, as a message; None: leave it be.
fn linux_common_errno(errno: i32, vm: u32, ioctl: &str) -> Option<Error> {
    Some(match errno {
        libc::ENOENT => Error::Msg(format!("vm {vm} is not attached ({ioctl}: ENOENT)")),
        libc::ENOTTY => Error::Msg(format!(
            "{ioctl}: the loaded kvm_pfi module has no Linux guest support (ENOTTY: an older module?)"
        )),
        _ => return None,
    })
}

/// The error for a failed KVM_PFI_LINUX_PROFILE of VM `vm` (kvm_pfi.h):
/// a profile that does not fit is bad data (status 65), like one `profile
/// walk` refuses; a guest that is not up yet is not.
pub fn load_refused(err: Error, vm: u32, slide: Option<u64>) -> Error {
    let Some(errno) = err.errno() else {
        return err;
    };
    if let Some(e) = linux_common_errno(errno, vm, "KVM_PFI_LINUX_PROFILE") {
        return e;
    }
    match errno {
        libc::ENOEXEC => Error::Data(match slide {
            Some(s) => format!(
                "vm {vm}: profile does not fit the running guest (not with slide {s:#x}; ENOEXEC)"
            ),
            None => format!(
                "vm {vm}: profile does not fit the running guest (no KASLR slide below 1 GiB \
                 passes the check; ENOEXEC)"
            ),
        }),
        libc::EAGAIN => Error::Msg(format!(
            "no vCPU of VM {vm} seen in 64-bit kernel mode yet (is the guest up?)"
        )),
        libc::EINVAL => Error::Data(format!(
            "vm {vm}: profile refused (EINVAL: not a profile, over {} bytes, or a slide \
             that is not a multiple of 4096)",
            abi::KVM_PFI_LINUX_PROFILE_MAX
        )),
        _ => err,
    }
}

/// The error for a failed KVM_PFI_KERNEL_READ of VM `vm`.
pub fn kernel_read_refused(err: Error, vm: u32) -> Error {
    let Some(errno) = err.errno() else {
        return err;
    };
    if let Some(e) = linux_common_errno(errno, vm, "KVM_PFI_KERNEL_READ") {
        return e;
    }
    match errno {
        libc::EAGAIN => Error::Msg(format!(
            "no vCPU of VM {vm} seen in 64-bit kernel mode yet (is the guest up?)"
        )),
        libc::EPERM => Error::Msg(format!(
            "vm {vm}: attached by another opener (KVM_PFI_KERNEL_READ: EPERM)"
        )),
        _ => err,
    }
}

/// The error for a failed KVM_PFI_PROCESS_LIST of VM `vm`.
pub fn ps_refused(err: Error, vm: u32) -> Error {
    let Some(errno) = err.errno() else {
        return err;
    };
    if let Some(e) = linux_common_errno(errno, vm, "KVM_PFI_PROCESS_LIST") {
        return e;
    }
    match errno {
        libc::ENODATA => no_profile(vm),
        _ => err,
    }
}

/// The error for a failed KVM_PFI_PROCESS_VMAS of process `pid` of VM
/// `vm` (EAGAIN after `VMAS_EAGAIN_RETRIES` more calls).
pub fn vmas_refused(err: Error, vm: u32, pid: i32) -> Error {
    let Some(errno) = err.errno() else {
        return err;
    };
    if let Some(e) = linux_common_errno(errno, vm, "KVM_PFI_PROCESS_VMAS") {
        return e;
    }
    match errno {
        libc::ENODATA => no_profile(vm),
        libc::ESRCH => Error::Msg(format!(
            "vm {vm}: no process with pid {pid} (or a kernel thread)"
        )),
        libc::EAGAIN => Error::Msg(format!(
            "vm {vm}: the VMAs of pid {pid} changed under the walk; try again"
        )),
        _ => err,
    }
}

/// `profile load`'s answer.
#[derive(Debug, Serialize)]
pub struct LoadedJson {
    pub vm_id: u32,
    pub slide: u64,
    pub init_task: u64,
    pub nr_processes: u32,
}

pub fn loaded_json(vm: u32, p: &abi::kvm_pfi_linux_profile) -> LoadedJson {
    LoadedJson {
        vm_id: vm,
        slide: p.slide,
        init_task: p.init_task,
        nr_processes: p.nr_processes,
    }
}

pub fn loaded_text(l: &LoadedJson) -> String {
    format!(
        "vm {}: profile loaded: slide {:#x}, init_task {:#x}, {} process{}",
        l.vm_id,
        l.slide,
        l.init_task,
        l.nr_processes,
        if l.nr_processes == 1 { "" } else { "es" }
    )
}

/// Names of `enum kvm_pfi_walk_error` (kvm_pfi.h), as `ps` prints them.
pub const WALK_ERRORS: &[(i32, &str)] = &[
    (abi::KVM_PFI_WALK_BAD_POINTER as i32, "bad-pointer"),
    (abi::KVM_PFI_WALK_READ as i32, "read"),
    (abi::KVM_PFI_WALK_NOT_INIT_TASK as i32, "not-init-task"),
    (abi::KVM_PFI_WALK_LIST_CORRUPT as i32, "list-corrupt"),
    (abi::KVM_PFI_WALK_TOO_MANY as i32, "too-many"),
    (abi::KVM_PFI_WALK_OTHER as i32, "other"),
];

/// A walk error as JSON: null for none, its name, or the number itself if
/// this tool does not know it (a newer module).
pub fn walk_error_json(e: i32) -> serde_json::Value {
    if e == abi::KVM_PFI_WALK_OK as i32 {
        return serde_json::Value::Null;
    }
    match WALK_ERRORS.iter().find(|(v, _)| *v == e) {
        Some((_, name)) => serde_json::Value::from(*name),
        None => serde_json::Value::from(e),
    }
}

#[derive(Debug, Serialize)]
pub struct PsJson {
    pub vm_id: u32,
    pub nr_processes: usize,
    pub walks: u64,
    pub walk_errors: u64,
    /// The last failed walk's reason (a name), null if none failed.
    pub last_error: serde_json::Value,
    /// CLOCK_MONOTONIC of the walk the list is from.
    pub walked_ns: u64,
    pub processes: Vec<PsProcessJson>,
}

#[derive(Debug, Serialize)]
pub struct PsProcessJson {
    pub pid: i32,
    pub ppid: i32,
    /// Guest physical address of mm->pgd; 0: a kernel thread.
    pub cr3: u64,
    pub task: u64,
    pub mm: u64,
    /// task_struct.flags (PF_*).
    pub flags: u32,
    pub comm: String,
    /// Path of mm->exe_file within its file system; "" if none.
    pub exe: String,
}

pub fn ps_json(vm: u32, l: &ProcessList) -> PsJson {
    PsJson {
        vm_id: vm,
        nr_processes: l.processes.len(),
        walks: l.walks,
        walk_errors: l.walk_errors,
        last_error: walk_error_json(l.last_error),
        walked_ns: l.walked_ns,
        processes: l
            .processes
            .iter()
            .map(|p| PsProcessJson {
                pid: p.pid,
                ppid: p.ppid,
                cr3: p.cr3,
                task: p.task,
                mm: p.mm,
                flags: p.flags,
                comm: abi::c_string(&p.comm),
                exe: abi::c_string(&p.exe),
            })
            .collect(),
    }
}

/// `ps` for people: a header, one line per process like ps(1), and the
/// walk counters.
pub fn ps_text(j: &PsJson) -> String {
    let mut s = format!(
        "{:>7} {:>7} {:<18} {:<16} EXE\n",
        "PID", "PPID", "CR3", "COMM"
    );
    for p in &j.processes {
        let kthread = p.mm == 0;
        let cr3 = if p.cr3 == 0 {
            "-".to_string()
        } else {
            format!("{:#x}", p.cr3)
        };
        let exe = match (kthread, p.exe.as_str()) {
            (true, _) => format!("[{}]", p.comm),
            (false, "") => "-".to_string(),
            (false, e) => e.to_string(),
        };
        s += &format!(
            "{:>7} {:>7} {:<18} {:<16} {}\n",
            p.pid, p.ppid, cr3, p.comm, exe
        );
    }
    let last = match &j.last_error {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(name) => format!(", last: {name}"),
        other => format!(", last: error {other}"),
    };
    s += &format!(
        "vm {}: {} process{}; {} walk{} of the task list, {} ended early{last}",
        j.vm_id,
        j.nr_processes,
        if j.nr_processes == 1 { "" } else { "es" },
        j.walks,
        if j.walks == 1 { "" } else { "s" },
        j.walk_errors
    );
    s
}

/// Where an mm's heap and stack are: what /proc/PID/maps names `[heap]`
/// and `[stack]` by.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeapStack {
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
}

impl HeapStack {
    /// The name /proc/PID/maps gives VMA `[start, end)` whose file's path
    /// is `file` ("" anonymous), by the kernel's rules (fs/proc/task_mmu.c,
    /// get_vma_name): the path; else `[heap]` if the VMA overlaps
    /// `[start_brk, brk)` (vma_is_initial_heap), else `[stack]` if it holds
    /// `start_stack`, either end included (vma_is_initial_stack); else "".
    /// The module gives no more than the file: a special mapping (`[vdso]`,
    /// `[vvar]`: no file, named by its vm_ops) or a named anonymous one
    /// (`[anon:NAME]`) reads "" here.
    pub fn name<'a>(&self, start: u64, end: u64, file: &'a str) -> &'a str {
        if !file.is_empty() {
            file
        } else if process_regions::is_initial_heap(self.start_brk, self.brk, start, end) {
            "[heap]"
        } else if process_regions::is_initial_stack(self.start_stack, start, end) {
            "[stack]"
        } else {
            ""
        }
    }
}

/// The offset /proc/PID/maps shows: the file offset (vm_pgoff pages) of a
/// file's VMA, 0 for an anonymous one.
pub fn maps_offset(pgoff: u64, file: &str) -> u64 {
    if file.is_empty() {
        0
    } else {
        pgoff << 12
    }
}

/// `vmas`' answer.
#[derive(Debug, Serialize)]
pub struct ProcessVmasJson {
    pub vm_id: u32,
    pub pid: i32,
    /// Guest physical address of mm->pgd.
    pub cr3: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub nr_vmas: usize,
    pub vmas: Vec<ProcessVmaJson>,
}

#[derive(Debug, Serialize)]
pub struct ProcessVmaJson {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
    /// The guest's vm_flags.
    pub flags: u64,
    pub pgoff: u64,
    /// `rwxp`/`rwxs`, as /proc/PID/maps.
    pub perms: String,
    /// Path of vm_file within its file system; "" anonymous.
    pub file: String,
    /// `file`, or `[heap]`/`[stack]`, or "" (`HeapStack::name`).
    pub name: String,
}

pub fn vmas_json(vm: u32, pid: i32, v: &ProcessVmas) -> ProcessVmasJson {
    let hs = HeapStack {
        start_brk: v.start_brk,
        brk: v.brk,
        start_stack: v.start_stack,
    };
    ProcessVmasJson {
        vm_id: vm,
        pid,
        cr3: v.cr3,
        start_code: v.start_code,
        end_code: v.end_code,
        start_brk: v.start_brk,
        brk: v.brk,
        start_stack: v.start_stack,
        nr_vmas: v.vmas.len(),
        vmas: v
            .vmas
            .iter()
            .map(|e| {
                let file = abi::c_string(&e.file);
                ProcessVmaJson {
                    start: e.start,
                    end: e.end,
                    flags: e.flags,
                    pgoff: e.pgoff,
                    perms: perms(e.flags),
                    name: hs.name(e.start, e.end, &file).to_string(),
                    file,
                }
            })
            .collect(),
    }
}

/// `vmas` for people: a header, then one line per VMA as /proc/PID/maps
/// has it, without the device and inode columns.
pub fn vmas_text(j: &ProcessVmasJson) -> String {
    let mut s = format!(
        "vm {} pid {}: cr3 {:#x}, {} VMA{}; code {:#x}-{:#x}, brk {:#x}-{:#x}, stack {:#x}\n",
        j.vm_id,
        j.pid,
        j.cr3,
        j.nr_vmas,
        if j.nr_vmas == 1 { "" } else { "s" },
        j.start_code,
        j.end_code,
        j.start_brk,
        j.brk,
        j.start_stack
    );
    for v in &j.vmas {
        s += &format!(
            "{:08x}-{:08x} {} {:08x}",
            v.start,
            v.end,
            v.perms,
            maps_offset(v.pgoff, &v.file)
        );
        if !v.name.is_empty() {
            s += " ";
            s += &v.name;
        }
        s += "\n";
    }
    s.pop();
    s
}

// -- walk --------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct WalkJson {
    /// Where kcore maps the kernel image (`_text` at run time).
    pub kernel_text: u64,
    /// The KASLR slide used: `kernel_text` less the profile's `_text`
    /// (unless given).
    pub slide: u64,
    /// The run-time address of `init_task`.
    pub init_task: u64,
    /// Thread-group leaders on the task list, `init_task` first.
    pub processes: Vec<ProcessJson>,
    /// Walks of the whole task list started (more than one: it changed
    /// under the walk).
    pub attempts: u32,
}

#[derive(Debug, Serialize)]
pub struct ProcessJson {
    pub pid: i32,
    pub tgid: i32,
    pub comm: String,
    /// The tgid of `real_parent` (0 for `init_task` itself).
    pub ppid: i32,
    pub task: u64,
    pub flags: u32,
    /// Path of `mm->exe_file` inside its file system.
    pub exe: Option<String>,
    pub mm: Option<MmJson>,
    pub vmas: Vec<VmaJson>,
    /// Leaf entries of the VMA tree skipped (not this mm's VMAs).
    pub bad_entries: u32,
    /// Why this process's mm or VMAs could not be walked (after retries).
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MmJson {
    pub addr: u64,
    pub pgd: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
}

#[derive(Debug, Serialize)]
pub struct VmaJson {
    pub start: u64,
    pub end: u64,
    pub flags: u64,
    pub pgoff: u64,
    /// Path of `vm_file` inside its file system; null: anonymous.
    pub file: Option<String>,
}

fn walk_error(e: WalkError) -> String {
    match e {
        WalkError::BadPointer(p) => format!("bad pointer {p:#x}"),
        WalkError::Read(a) => format!("unreadable at {a:#x}"),
        WalkError::NotInitTask => "not init_task".into(),
        WalkError::ListCorrupt(a) => format!("list corrupt at {a:#x}"),
        WalkError::TooMany => "too many entries".into(),
        WalkError::TooDeep => "too deep".into(),
        WalkError::BadNode(n) => format!("bad maple node {n:#x}"),
        WalkError::BadPivots(n) => format!("bad pivots in maple node {n:#x}"),
        WalkError::NameTooLong => "name too long".into(),
        WalkError::NotThisMm => "mm freed and reused".into(),
    }
}

fn file_path<M: GuestMemory>(
    mem: &mut M,
    p: &Profile,
    lim: &Limits,
    file: u64,
) -> std::result::Result<String, WalkError> {
    let d = linux_walk::file_dentry(mem, p, file)?;
    let mut buf = [0u8; 4096];
    let start = linux_walk::dentry_path(mem, p, d, lim, &mut buf)?;
    Ok(String::from_utf8_lossy(&buf[start..]).into_owned())
}

/// The mm, exe and VMAs of one task.
fn walk_mm<M: GuestMemory>(
    mem: &mut M,
    p: &Profile,
    lim: &Limits,
    scratch: &mut MapleScratch,
    mm_addr: u64,
    out: &mut ProcessJson,
) -> std::result::Result<(), WalkError> {
    let mm = linux_walk::read_mm(mem, p, mm_addr)?;
    let mut vmas = Vec::new();
    let stats = linux_walk::for_each_vma(mem, p, &mm, lim, scratch, |v| {
        vmas.push(*v);
        ControlFlow::Continue(())
    })?;
    let mut json = Vec::with_capacity(vmas.len());
    for v in &vmas {
        json.push(VmaJson {
            start: v.start,
            end: v.end,
            flags: v.flags,
            pgoff: v.pgoff,
            file: if v.file == 0 {
                None
            } else {
                Some(file_path(mem, p, lim, v.file)?)
            },
        });
    }
    out.exe = if mm.exe_file == 0 {
        None
    } else {
        Some(file_path(mem, p, lim, mm.exe_file)?)
    };
    out.mm = Some(MmJson {
        addr: mm.addr,
        pgd: mm.pgd,
        start_code: mm.start_code,
        end_code: mm.end_code,
        start_brk: mm.start_brk,
        brk: mm.brk,
        start_stack: mm.start_stack,
        arg_start: mm.arg_start,
    });
    out.vmas = json;
    out.bad_entries = stats.bad_entries;
    Ok(())
}

/// Walks every process of the kernel behind `mem`. `slide`: None takes
/// the kernel image's address in `mem` less the profile's `_text`.
pub fn walk<M: GuestMemory>(
    mem: &mut M,
    p: &Profile,
    kernel_text: u64,
    slide: Option<u64>,
    mut fresh: impl FnMut(&mut M),
) -> Result<WalkJson> {
    let text = p.symbol(S::Text).unwrap_or_default();
    let slide = slide.unwrap_or(kernel_text.wrapping_sub(text));
    let init = linux_walk::init_task_addr(p, slide);
    let lim = Limits::default();
    let mut scratch = Box::<MapleScratch>::default();
    let mut attempts = 0;
    let tasks = loop {
        attempts += 1;
        fresh(mem);
        let mut tasks = Vec::new();
        match linux_walk::for_each_task(mem, p, slide, &lim, |t| {
            tasks.push(*t);
            ControlFlow::Continue(())
        }) {
            Ok(_) => break tasks,
            Err(WalkError::NotInitTask) => {
                return Err(Error::Data(format!(
                    "profile does not fit the running kernel: init_task at {init:#x} (profile \
                     {:#x} + slide {slide:#x}) is not pid 0 \"swapper/0\", its own parent, \
                     without an mm (a profile of another kernel, or a wrong slide?)",
                    p.symbol(S::InitTask).unwrap_or_default()
                )))
            }
            Err(e) if attempts >= TASK_LIST_TRIES => {
                return Err(Error::Msg(format!(
                    "task list: {} ({attempts} attempts; is it changing that fast?)",
                    walk_error(e)
                )))
            }
            Err(_) => continue,
        }
    };
    let mut processes = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let ppid = if t.real_parent == t.addr {
            0
        } else {
            linux_walk::read_task(mem, p, t.real_parent).map_or(-1, |pt| pt.tgid)
        };
        let mut out = ProcessJson {
            pid: t.pid,
            tgid: t.tgid,
            comm: String::from_utf8_lossy(t.comm()).into_owned(),
            ppid,
            task: t.addr,
            flags: t.flags,
            exe: None,
            mm: None,
            vmas: Vec::new(),
            bad_entries: 0,
            error: None,
        };
        if t.mm != 0 {
            for i in 1..=VMA_TRIES {
                match walk_mm(mem, p, &lim, &mut scratch, t.mm, &mut out) {
                    Ok(()) => {
                        out.error = None;
                        break;
                    }
                    Err(e) => {
                        out.error = Some(walk_error(e));
                        if i < VMA_TRIES {
                            fresh(mem);
                        }
                    }
                }
            }
        }
        processes.push(out);
    }
    Ok(WalkJson {
        kernel_text,
        slide,
        init_task: init,
        processes,
        attempts,
    })
}

/// `profile walk`: the walk through an ELF core file.
pub fn walk_kcore(p: &Profile, kcore: &Path, slide: Option<u64>) -> Result<WalkJson> {
    let mut k = Kcore::open(kcore)?;
    let text = k.text_base().ok_or_else(|| {
        Error::Data(format!(
            "{}: no segment maps the kernel image (at or above {START_KERNEL_MAP:#x})",
            path_name(kcore)
        ))
    })?;
    walk(&mut k, p, text, slide, Kcore::clear)
}

/// `vm_flags` as procfs's `rwxp`/`rwxs`.
pub fn perms(flags: u64) -> String {
    let bit = |b: u64, c: char| if flags & b != 0 { c } else { '-' };
    [
        bit(0x1, 'r'),
        bit(0x2, 'w'),
        bit(0x4, 'x'),
        if flags & 0x80 != 0 { 's' } else { 'p' },
    ]
    .iter()
    .collect()
}

/// The walk for people: one line per process, one indented line per VMA.
pub fn walk_text(w: &WalkJson) -> String {
    let mut s = format!(
        "kernel image at {:#x}, slide {:#x}, init_task at {:#x}: {} processes\n",
        w.kernel_text,
        w.slide,
        w.init_task,
        w.processes.len()
    );
    for p in &w.processes {
        s += &format!(
            "{} {} ppid {} {}",
            p.pid,
            p.comm,
            p.ppid,
            p.exe
                .as_deref()
                .unwrap_or(if p.mm.is_some() { "-" } else { "[kernel]" })
        );
        if let Some(e) = &p.error {
            s += &format!(" (walk failed: {e})");
        }
        s += "\n";
        for v in &p.vmas {
            s += &format!(
                "  {:x}-{:x} {} {:08x} {}\n",
                v.start,
                v.end,
                perms(v.flags),
                v.pgoff << 12,
                v.file.as_deref().unwrap_or("")
            );
        }
    }
    s
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use pfi_core::linux_profile::F;

    pub const BTF: &[u8] =
        include_bytes!("../../../rust/pfi_core/tests/fixtures/linux-7.3-btf-cut.bin");
    pub const MAP: &[u8] =
        include_bytes!("../../../rust/pfi_core/tests/fixtures/linux-7.3-System.map");

    /// A little ELF file: header, program headers for `loads`
    /// (vaddr, bytes), and optionally section headers naming `sections`.
    pub fn elf(loads: &[(u64, Vec<u8>)], sections: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        let phoff = 64u64;
        let phnum = loads.len() as u16;
        f.resize(64 + 56 * loads.len(), 0);
        let data_at = f.len() as u64;
        let mut body = Vec::new();
        for (i, (va, bytes)) in loads.iter().enumerate() {
            let b = 64 + 56 * i;
            f[b..b + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            f[b + 8..b + 16].copy_from_slice(&(data_at + body.len() as u64).to_le_bytes());
            f[b + 16..b + 24].copy_from_slice(&va.to_le_bytes());
            f[b + 32..b + 40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            f[b + 40..b + 48].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            body.extend_from_slice(bytes);
        }
        f.extend_from_slice(&body);
        if !sections.is_empty() {
            let mut strtab = vec![0u8];
            let mut offs = Vec::new();
            let mut blobs = Vec::new();
            for (name, bytes) in sections {
                offs.push(strtab.len() as u32);
                strtab.extend_from_slice(name.as_bytes());
                strtab.push(0);
                blobs.push(bytes.clone());
            }
            let shstr_name = strtab.len() as u32;
            strtab.extend_from_slice(b".shstrtab\0");
            let mut placed = Vec::new();
            for b in &blobs {
                placed.push((f.len() as u64, b.len() as u64));
                f.extend_from_slice(b);
            }
            let str_at = f.len() as u64;
            f.extend_from_slice(&strtab);
            let shoff = f.len() as u64;
            let mut sh = vec![0u8; 64]; // the null section
            let mut add = |name: u32, off: u64, size: u64| {
                let mut s = vec![0u8; 64];
                s[..4].copy_from_slice(&name.to_le_bytes());
                s[0x18..0x20].copy_from_slice(&off.to_le_bytes());
                s[0x20..0x28].copy_from_slice(&size.to_le_bytes());
                sh.extend_from_slice(&s);
            };
            for (i, (off, size)) in placed.iter().enumerate() {
                add(offs[i], *off, *size);
            }
            add(shstr_name, str_at, strtab.len() as u64);
            f.extend_from_slice(&sh);
            let shnum = (sections.len() + 2) as u16;
            f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
            f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
            f[0x3c..0x3e].copy_from_slice(&shnum.to_le_bytes());
            f[0x3e..0x40].copy_from_slice(&(shnum - 1).to_le_bytes());
        }
        f[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
        f
    }

    /// A kernel of two processes in kcore form: the image (with init_task)
    /// at `text` (link-time `_text` + `slide`), a direct-map segment with
    /// one user task, its mm, a one-leaf maple tree of two VMAs (one of a
    /// file `/usr/bin/prog` at page offset 1), and the dentries.
    pub fn fake_kcore(slide: u64) -> Vec<u8> {
        let p = Profile::resolve(BTF, MAP).unwrap();
        let f = |x: F| p.field(x).offset as usize;
        let text = p.symbol(S::Text).unwrap();
        let init_link = p.symbol(S::InitTask).unwrap();
        let init = init_link + slide;
        let image_len = (init_link - text) as usize + 0x4000;
        let mut image = vec![0u8; image_len];
        let dm: u64 = 0xffff_8880_0010_0000;
        let mut ram = vec![0u8; 0x10000];
        let (task, mm, node, vma1, vma2, file) = (
            dm,
            dm + 0x2000,
            dm + 0x3000,
            dm + 0x4000,
            dm + 0x4100,
            dm + 0x4200,
        );
        let (d_root, d_usr, d_bin, d_prog, names) = (
            dm + 0x5000,
            dm + 0x5100,
            dm + 0x5200,
            dm + 0x5300,
            dm + 0x6000,
        );
        fn put(buf: &mut [u8], at: usize, v: &[u8]) {
            buf[at..at + v.len()].copy_from_slice(v);
        }
        let w64 = |buf: &mut Vec<u8>, base: u64, va: u64, off: usize, v: u64| {
            put(buf, (va - base) as usize + off, &v.to_le_bytes())
        };
        let w32 = |buf: &mut Vec<u8>, base: u64, va: u64, off: usize, v: u32| {
            put(buf, (va - base) as usize + off, &v.to_le_bytes())
        };
        let ibase = text + slide;
        // init_task: pid 0, swapper/0, its own parent, no mm; tasks list
        // init <-> task.
        let itasks = init + f(F::TaskTasks) as u64;
        let ttasks = task + f(F::TaskTasks) as u64;
        put(
            &mut image,
            (init - ibase) as usize + f(F::TaskComm),
            b"swapper/0\0",
        );
        w64(&mut image, ibase, init, f(F::TaskRealParent), init);
        w64(&mut image, ibase, itasks, f(F::ListNext), ttasks);
        w64(&mut image, ibase, itasks, f(F::ListPrev), ttasks);
        // The user task: pid 42, "prog", parent init_task.
        w32(&mut ram, dm, task, f(F::TaskPid), 42);
        w32(&mut ram, dm, task, f(F::TaskTgid), 42);
        put(&mut ram, (task - dm) as usize + f(F::TaskComm), b"prog\0");
        w64(&mut ram, dm, task, f(F::TaskMm), mm);
        w64(&mut ram, dm, task, f(F::TaskRealParent), init);
        w64(&mut ram, dm, ttasks, f(F::ListNext), itasks);
        w64(&mut ram, dm, ttasks, f(F::ListPrev), itasks);
        // The mm: a maple tree whose root is one leaf_64 node.
        let mt = mm + f(F::MmMt) as u64;
        w64(&mut ram, dm, mt, f(F::MtRoot), node | (1 << 3) | 2);
        w64(&mut ram, dm, mm, f(F::MmStartCode), 0x40_0000);
        w64(&mut ram, dm, mm, f(F::MmExeFile), file);
        // Leaf: [0, 0x3fffff] empty, [0x400000, 0x401fff] vma1,
        // [0x402000, 0x7fffff] empty, [0x800000, 0x800fff] vma2, rest empty.
        let piv = f(F::Mr64Pivot);
        let slot = f(F::Mr64Slot);
        for (i, v) in [0x3f_ffffu64, 0x40_1fff, 0x7f_ffff, 0x80_0fff, u64::MAX]
            .iter()
            .enumerate()
        {
            w64(&mut ram, dm, node, piv + 8 * i, *v);
        }
        w64(&mut ram, dm, node, slot + 8, vma1);
        w64(&mut ram, dm, node, slot + 24, vma2);
        w64(&mut ram, dm, node, f(F::Mr64Parent), mt | 1);
        // Its data end (metadata in the last slot word: the last pivot is 0).
        ram[(node - dm) as usize + f(F::Mr64Meta) + f(F::MetaEnd)] = 4;
        for (v, s, e, fl, file_, pg) in [
            (vma1, 0x40_0000u64, 0x40_2000u64, 0x5u64, file, 1u64),
            (vma2, 0x80_0000, 0x80_1000, 0x3, 0, 0),
        ] {
            w64(&mut ram, dm, v, f(F::VmaStart), s);
            w64(&mut ram, dm, v, f(F::VmaEnd), e);
            w64(&mut ram, dm, v, f(F::VmaFlags), fl);
            w64(&mut ram, dm, v, f(F::VmaFile), file_);
            w64(&mut ram, dm, v, f(F::VmaPgoff), pg);
            w64(&mut ram, dm, v, f(F::VmaMm), mm);
        }
        // file -> dentry "prog" -> "bin" -> "usr" -> root.
        let fpath = file + f(F::FilePath) as u64;
        w64(&mut ram, dm, fpath, f(F::PathDentry), d_prog);
        let mut name_at = names;
        for (d, parent, name) in [
            (d_root, d_root, "/"),
            (d_usr, d_root, "usr"),
            (d_bin, d_usr, "bin"),
            (d_prog, d_bin, "prog"),
        ] {
            w64(&mut ram, dm, d, f(F::DentryParent), parent);
            let q = d + f(F::DentryName) as u64;
            w32(&mut ram, dm, q, f(F::QstrLen), name.len() as u32);
            w64(&mut ram, dm, q, f(F::QstrName), name_at);
            put(&mut ram, (name_at - dm) as usize, name.as_bytes());
            name_at += 64;
        }
        elf(
            &[
                (dm, ram),
                (ibase, image),
                (0xffff_ffff_ff60_0000, vec![0; 4096]),
            ],
            &[],
        )
    }

    #[test]
    fn elf_sections_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinux");
        std::fs::write(
            &path,
            elf(&[], &[(".text", vec![0x90; 10]), (".BTF", BTF.to_vec())]),
        )
        .unwrap();
        assert_eq!(elf_section(&path, ".BTF").unwrap().as_deref(), Some(BTF));
        assert_eq!(elf_section(&path, ".BTF.ext").unwrap(), None);
        let p = build(Some(&path), None, Some(Path::new("/nonexistent")), None).unwrap_err();
        assert_eq!(p.exit_code(), 66, "{p}");
        let nob = dir.path().join("nobtf");
        std::fs::write(&nob, elf(&[], &[(".text", vec![0x90; 10])])).unwrap();
        let e = build(Some(&nob), None, Some(&path), None).unwrap_err();
        assert!(
            e.to_string().contains("no .BTF section") && e.to_string().contains("pahole"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 65);
        std::fs::write(
            &nob,
            b"not an elf file at all, but long enough to have a header of sixty-four",
        )
        .unwrap();
        let e = elf_section(&nob, ".BTF").unwrap_err();
        assert!(
            e.to_string().contains("not a 64-bit little-endian ELF"),
            "{e}"
        );
        std::fs::write(&nob, b"\x7fELF").unwrap();
        assert_eq!(elf_section(&nob, ".BTF").unwrap_err().exit_code(), 65);
    }

    #[test]
    fn kcore_reads_across_pages_and_finds_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kcore");
        let ram: Vec<u8> = (0..0x3000u32).map(|i| (i % 251) as u8).collect();
        let base = 0xffff_8880_0000_0000u64;
        std::fs::write(
            &path,
            elf(
                &[(0xffff_ffff_8200_0000, vec![7; 100]), (base, ram.clone())],
                &[],
            ),
        )
        .unwrap();
        let mut k = Kcore::open(&path).unwrap();
        assert_eq!(k.text_base(), Some(0xffff_ffff_8200_0000));
        let mut b = [0u8; 200];
        assert!(k.read(base + 0xf80, &mut b));
        assert_eq!(&b[..], &ram[0xf80..0xf80 + 200]);
        let mut b = [0u8; 8];
        assert!(k.read(0xffff_ffff_8200_0000 + 92, &mut b));
        assert_eq!(b, [7; 8]);
        assert!(
            !k.read(0xffff_ffff_8200_0000 + 93, &mut b),
            "past the segment's end"
        );
        assert!(!k.read(base + 0x2ffc, &mut b));
        assert!(!k.read(u64::MAX - 3, &mut b));
    }

    #[test]
    fn walk_of_a_fake_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kcore");
        let slide = 0x1e0_0000;
        std::fs::write(&path, fake_kcore(slide)).unwrap();
        let p = Profile::resolve(BTF, MAP).unwrap();
        let w = walk_kcore(&p, &path, None).unwrap();
        assert_eq!(w.slide, slide);
        assert_eq!(w.init_task, p.symbol(S::InitTask).unwrap() + slide);
        assert_eq!(w.processes.len(), 2);
        let (i, u) = (&w.processes[0], &w.processes[1]);
        assert_eq!(
            (i.pid, i.comm.as_str(), i.ppid, i.mm.is_none()),
            (0, "swapper/0", 0, true)
        );
        assert_eq!(
            (u.pid, u.tgid, u.comm.as_str(), u.ppid),
            (42, 42, "prog", 0)
        );
        assert_eq!(u.error, None);
        assert_eq!(u.exe.as_deref(), Some("/usr/bin/prog"));
        assert_eq!(u.mm.as_ref().unwrap().start_code, 0x40_0000);
        let v: Vec<_> = u
            .vmas
            .iter()
            .map(|v| (v.start, v.end, perms(v.flags), v.pgoff, v.file.as_deref()))
            .collect();
        assert_eq!(
            v,
            [
                (
                    0x40_0000,
                    0x40_2000,
                    "r-xp".to_string(),
                    1,
                    Some("/usr/bin/prog")
                ),
                (0x80_0000, 0x80_1000, "rw-p".to_string(), 0, None)
            ]
        );
        let text = walk_text(&w);
        assert!(
            text.contains(
                "42 prog ppid 0 /usr/bin/prog\n  400000-402000 r-xp 00001000 /usr/bin/prog\n"
            ),
            "{text}"
        );
        // A wrong slide, and a profile whose comm offset is wrong, are refused.
        let e = walk_kcore(&p, &path, Some(slide + 0x1000)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("profile does not fit the running kernel"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 65);
        let f = p.field(F::TaskComm);
        let bad = p.to_string().replace(
            &format!("field task_struct.comm {} 16", f.offset),
            &format!("field task_struct.comm {} 16", f.offset + 8),
        );
        let bad = Profile::parse(bad.as_bytes()).unwrap();
        let e = walk_kcore(&bad, &path, None).unwrap_err();
        assert!(e.to_string().contains("is not pid 0 \"swapper/0\""), "{e}");
    }

    #[test]
    fn load_text_is_the_normal_form() {
        let dir = tempfile::tempdir().unwrap();
        let p = Profile::resolve(BTF, MAP).unwrap();
        let path = dir.path().join("guest.profile");
        std::fs::write(&path, format!("# by hand\n{}# end\n", p)).unwrap();
        let text = load_text(&path).unwrap();
        assert_eq!(text, p.to_string().into_bytes());
        assert!(text.len() < abi::KVM_PFI_LINUX_PROFILE_MAX as usize);
        std::fs::write(&path, "hello\n").unwrap();
        let e = load_text(&path).unwrap_err();
        assert_eq!(e.exit_code(), 65);
        assert_eq!(
            e.to_string(),
            format!(
                "{}: not a profile: the first line must be `kvm-pfi-linux-profile 1`",
                path.display()
            )
        );
        let e = load_text(&dir.path().join("none")).unwrap_err();
        assert_eq!(e.exit_code(), 66);
    }

    #[test]
    fn load_errnos_read_as_what_they_mean() {
        let os = |errno| Error::os("KVM_PFI_LINUX_PROFILE vm 3", errno);
        let e = load_refused(os(libc::ENOEXEC), 3, None);
        assert_eq!(e.exit_code(), 65);
        assert!(
            e.to_string()
                .starts_with("vm 3: profile does not fit the running guest (no KASLR slide"),
            "{e}"
        );
        let e = load_refused(os(libc::ENOEXEC), 3, Some(0x200000));
        assert_eq!(
            e.to_string(),
            "vm 3: profile does not fit the running guest (not with slide 0x200000; ENOEXEC)"
        );
        let e = load_refused(os(libc::EAGAIN), 3, None);
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (
                1,
                "no vCPU of VM 3 seen in 64-bit kernel mode yet (is the guest up?)"
            )
        );
        let e = load_refused(os(libc::ENOENT), 3, None);
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (1, "vm 3 is not attached (KVM_PFI_LINUX_PROFILE: ENOENT)")
        );
        let e = load_refused(os(libc::EINVAL), 3, None);
        assert_eq!(e.exit_code(), 65);
        assert!(
            e.to_string().starts_with("vm 3: profile refused (EINVAL: "),
            "{e}"
        );
        assert!(load_refused(os(libc::ENOTTY), 3, None)
            .to_string()
            .contains("no Linux guest support"));
        // Others as any ioctl error: EPERM 77, ENOMEM 1.
        assert_eq!(load_refused(os(libc::EPERM), 3, None).exit_code(), 77);
        assert_eq!(
            load_refused(os(libc::ENOMEM), 3, None).to_string(),
            "KVM_PFI_LINUX_PROFILE vm 3: Cannot allocate memory"
        );

        let os = |errno| Error::os("KVM_PFI_PROCESS_LIST vm 4", errno);
        assert_eq!(
            ps_refused(os(libc::ENODATA), 4).to_string(),
            "VM 4 has no Linux profile (kvm-pfi profile load)"
        );
        assert_eq!(
            ps_refused(os(libc::ENOENT), 4).to_string(),
            "vm 4 is not attached (KVM_PFI_PROCESS_LIST: ENOENT)"
        );
        assert_eq!(
            ps_refused(os(libc::EINVAL), 4).to_string(),
            "KVM_PFI_PROCESS_LIST vm 4: Invalid argument"
        );
    }

    #[test]
    fn eagain_is_retried_for_a_while_only() {
        let pause = Duration::from_millis(1);
        let mut calls = 0;
        let r = retry_eagain(Duration::from_secs(5), pause, || {
            calls += 1;
            if calls < 4 {
                Err(Error::os("x", libc::EAGAIN))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 4);
        // Other errors at once.
        let mut calls = 0;
        let r: Result<()> = retry_eagain(Duration::from_secs(5), pause, || {
            calls += 1;
            Err(Error::os("x", libc::ENOEXEC))
        });
        assert_eq!((r.unwrap_err().errno(), calls), (Some(libc::ENOEXEC), 1));
        // EAGAIN for good: given up after the wait, with EAGAIN.
        let start = Instant::now();
        let r: Result<()> = retry_eagain(Duration::from_millis(50), pause, || {
            Err(Error::os("x", libc::EAGAIN))
        });
        assert_eq!(r.unwrap_err().errno(), Some(libc::EAGAIN));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(45) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    fn process(
        pid: i32,
        ppid: i32,
        cr3: u64,
        mm: u64,
        comm: &str,
        exe: &str,
    ) -> abi::kvm_pfi_process {
        let mut p = abi::kvm_pfi_process {
            pid,
            ppid,
            cr3,
            mm,
            task: 0xffff_8880_0100_0000 + pid as u64 * 0x1000,
            flags: if mm == 0 { 0x20_8040 } else { 0x40_0100 },
            ..Default::default()
        };
        for (d, c) in p.comm.iter_mut().zip(comm.bytes()) {
            *d = c as std::os::raw::c_char;
        }
        for (d, c) in p.exe.iter_mut().zip(exe.bytes()) {
            *d = c as std::os::raw::c_char;
        }
        p
    }

    fn list(last_error: i32) -> ProcessList {
        ProcessList {
            processes: vec![
                process(0, 0, 0, 0, "swapper/0", ""),
                process(1, 0, 0x1234000, 0xffff_8880_0200_0000, "init", "/sbin/init"),
                process(2, 0, 0, 0, "kthreadd", ""),
                process(57, 1, 0x5678000, 0xffff_8880_0300_0000, "sh", ""),
            ],
            walks: 12,
            walk_errors: 1,
            walked_ns: 5_000_000_000,
            last_error,
        }
    }

    #[test]
    fn ps_json_and_text() {
        let j = ps_json(3, &list(abi::KVM_PFI_WALK_LIST_CORRUPT as i32));
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(v["vm_id"], 3);
        assert_eq!(v["nr_processes"], 4);
        assert_eq!(v["walks"], 12);
        assert_eq!(v["walk_errors"], 1);
        assert_eq!(v["last_error"], "list-corrupt");
        assert_eq!(v["walked_ns"], 5_000_000_000u64);
        let init = &v["processes"][1];
        let mut keys: Vec<&str> = init
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        let mut want = ["pid", "ppid", "cr3", "task", "mm", "flags", "comm", "exe"];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(
            (
                init["pid"].as_i64(),
                init["comm"].as_str(),
                init["exe"].as_str()
            ),
            (Some(1), Some("init"), Some("/sbin/init"))
        );
        assert_eq!(init["cr3"], 0x1234000);
        assert_eq!(init["flags"], 0x40_0100);
        assert_eq!(v["processes"][0]["exe"], "");
        assert_eq!(v["processes"][0]["cr3"], 0);
        assert_eq!(
            ps_text(&j),
            concat!(
                "    PID    PPID CR3                COMM             EXE\n",
                "      0       0 -                  swapper/0        [swapper/0]\n",
                "      1       0 0x1234000          init             /sbin/init\n",
                "      2       0 -                  kthreadd         [kthreadd]\n",
                "     57       1 0x5678000          sh               -\n",
                "vm 3: 4 processes; 12 walks of the task list, 1 ended early, last: list-corrupt"
            )
        );
        // No failed walk: null; a reason from a newer module: its number.
        let v = serde_json::to_value(ps_json(3, &list(0))).unwrap();
        assert_eq!(v["last_error"], serde_json::Value::Null);
        assert!(ps_text(&ps_json(3, &list(0))).ends_with("1 ended early"));
        let j = ps_json(3, &list(42));
        assert_eq!(serde_json::to_value(&j).unwrap()["last_error"], 42);
        assert!(ps_text(&j).ends_with(", last: error 42"));
        // Every reason of the header has a name.
        for e in 1..=abi::KVM_PFI_WALK_OTHER as i32 {
            assert!(walk_error_json(e).is_string(), "walk error {e}");
        }
    }

    #[test]
    fn vmas_errnos_read_as_what_they_mean() {
        let os = |errno| Error::os("KVM_PFI_PROCESS_VMAS vm 4 pid 57", errno);
        for (errno, want) in [
            (
                libc::ENODATA,
                "VM 4 has no Linux profile (kvm-pfi profile load)",
            ),
            (
                libc::ESRCH,
                "vm 4: no process with pid 57 (or a kernel thread)",
            ),
            (
                libc::EAGAIN,
                "vm 4: the VMAs of pid 57 changed under the walk; try again",
            ),
            (
                libc::ENOENT,
                "vm 4 is not attached (KVM_PFI_PROCESS_VMAS: ENOENT)",
            ),
            (
                libc::EINVAL,
                "KVM_PFI_PROCESS_VMAS vm 4 pid 57: Invalid argument",
            ),
        ] {
            let e = vmas_refused(os(errno), 4, 57);
            assert_eq!((e.exit_code(), e.to_string().as_str()), (1, want));
        }
        assert!(vmas_refused(os(libc::ENOTTY), 4, 57)
            .to_string()
            .starts_with("KVM_PFI_PROCESS_VMAS: the loaded kvm_pfi module has no Linux guest"));
        assert_eq!(vmas_refused(os(libc::EPERM), 4, 57).exit_code(), 77);
        // Not an errno: as it is.
        assert_eq!(
            vmas_refused(Error::Msg("x: y".into()), 4, 57).to_string(),
            "x: y"
        );
    }

    #[test]
    fn eagain_is_retried_so_many_times() {
        let pause = Duration::from_millis(1);
        let mut calls = 0;
        let r = retry_eagain_times(VMAS_EAGAIN_RETRIES, pause, || {
            calls += 1;
            if calls <= 3 {
                Err(Error::os("x", libc::EAGAIN))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 4, "three retries after the first call");
        let mut calls = 0;
        let r: Result<()> = retry_eagain_times(VMAS_EAGAIN_RETRIES, pause, || {
            calls += 1;
            Err(Error::os("x", libc::EAGAIN))
        });
        assert_eq!((r.unwrap_err().errno(), calls), (Some(libc::EAGAIN), 4));
        let mut calls = 0;
        let r: Result<()> = retry_eagain_times(VMAS_EAGAIN_RETRIES, pause, || {
            calls += 1;
            Err(Error::os("x", libc::ESRCH))
        });
        assert_eq!((r.unwrap_err().errno(), calls), (Some(libc::ESRCH), 1));
    }

    fn vma(start: u64, end: u64, flags: u64, pgoff: u64, file: &str) -> abi::kvm_pfi_vma {
        let mut v = abi::kvm_pfi_vma {
            start,
            end,
            flags,
            pgoff,
            ..Default::default()
        };
        for (d, c) in v.file.iter_mut().zip(file.bytes()) {
            *d = c as std::os::raw::c_char;
        }
        v
    }

    /// A static program's VMAs as the module gives them: its file (text
    /// at page 1), a PROT_NONE gap, the heap, a shared mapping, a special
    /// mapping ([vdso], no file), the stack.
    fn process_vmas() -> ProcessVmas {
        ProcessVmas {
            vmas: vec![
                vma(0x40_0000, 0x40_1000, 0x71, 0, "/pfi_guest_swap"),
                vma(0x40_1000, 0x4a_1000, 0x75, 1, "/pfi_guest_swap"),
                vma(0x4c_5000, 0x4c_b000, 0x8_0073, 0x4c5, ""),
                vma(0x4c_b000, 0x4c_c000, 0x70, 0x4cb, ""),
                vma(0x1b5_c000, 0x1b7_e000, 0x10_0073, 0x1b5c, ""),
                vma(0x7f00_0000_0000, 0x7f00_0000_2000, 0xff, 2, "/dev/shm/x y"),
                vma(
                    0x7ffd_8a9a_0000,
                    0x7ffd_8a9c_2000,
                    0x10_0173,
                    0x7_ffff_fffd,
                    "",
                ),
                vma(0x7ffd_8a9f_0000, 0x7ffd_8a9f_2000, 0x400_0075, 0, ""),
            ],
            cr3: 0x567_8000,
            start_code: 0x40_1000,
            end_code: 0x4a_0d35,
            start_brk: 0x1b5_c000,
            brk: 0x1b7_e000,
            start_stack: 0x7ffd_8a9c_1e30,
        }
    }

    #[test]
    fn vmas_json_and_text() {
        let j = vmas_json(3, 57, &process_vmas());
        let v = serde_json::to_value(&j).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        let mut want = [
            "vm_id",
            "pid",
            "cr3",
            "start_code",
            "end_code",
            "start_brk",
            "brk",
            "start_stack",
            "nr_vmas",
            "vmas",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(
            (&v["vm_id"], &v["pid"], &v["cr3"], &v["nr_vmas"]),
            (
                &serde_json::json!(3),
                &serde_json::json!(57),
                &serde_json::json!(0x567_8000),
                &serde_json::json!(8)
            )
        );
        assert_eq!(v["start_stack"], 0x7ffd_8a9c_1e30u64);
        assert_eq!(
            v["vmas"][1],
            serde_json::json!({"start": 0x40_1000, "end": 0x4a_1000, "flags": 0x75, "pgoff": 1,
                "perms": "r-xp", "file": "/pfi_guest_swap", "name": "/pfi_guest_swap"})
        );
        let names: Vec<(&str, &str)> = j
            .vmas
            .iter()
            .map(|v| (v.perms.as_str(), v.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("r--p", "/pfi_guest_swap"),
                ("r-xp", "/pfi_guest_swap"),
                ("rw-p", ""),
                ("---p", ""),
                ("rw-p", "[heap]"),
                ("rwxs", "/dev/shm/x y"),
                ("rw-p", "[stack]"),
                ("r-xp", "")
            ]
        );
        assert_eq!(j.vmas[4].file, "");
        // The output starts with the struct's order.
        assert!(serde_json::to_string(&j)
            .unwrap()
            .starts_with(r#"{"vm_id":3,"pid":57,"cr3":90669056,"start_code":4198400,"#));
        assert_eq!(
            vmas_text(&j),
            concat!(
                "vm 3 pid 57: cr3 0x5678000, 8 VMAs; code 0x401000-0x4a0d35, ",
                "brk 0x1b5c000-0x1b7e000, stack 0x7ffd8a9c1e30\n",
                "00400000-00401000 r--p 00000000 /pfi_guest_swap\n",
                "00401000-004a1000 r-xp 00001000 /pfi_guest_swap\n",
                "004c5000-004cb000 rw-p 00000000\n",
                "004cb000-004cc000 ---p 00000000\n",
                "01b5c000-01b7e000 rw-p 00000000 [heap]\n",
                "7f0000000000-7f0000002000 rwxs 00002000 /dev/shm/x y\n",
                "7ffd8a9a0000-7ffd8a9c2000 rw-p 00000000 [stack]\n",
                "7ffd8a9f0000-7ffd8a9f2000 r-xp 00000000"
            )
        );
        let one = ProcessVmas {
            vmas: vec![vma(0x1000, 0x2000, 0x1, 0, "")],
            ..process_vmas()
        };
        assert!(vmas_text(&vmas_json(3, 9, &one)).contains(", 1 VMA; "));
        let none = ProcessVmas {
            vmas: vec![],
            ..process_vmas()
        };
        let t = vmas_text(&vmas_json(3, 9, &none));
        assert!(t.starts_with("vm 3 pid 9: cr3 0x5678000, 0 VMAs;") && !t.contains('\n'));
    }

    #[test]
    fn heap_and_stack_by_the_kernel_rules() {
        let hs = HeapStack {
            start_brk: 0x10_0000,
            brk: 0x12_0000,
            start_stack: 0x7fff_0000,
        };
        // The heap overlaps [start_brk, brk); touching it is not enough.
        assert_eq!(hs.name(0x10_0000, 0x12_0000, ""), "[heap]");
        assert_eq!(hs.name(0x11_0000, 0x11_1000, ""), "[heap]");
        assert_eq!(hs.name(0xf_0000, 0x10_0000, ""), "");
        assert_eq!(hs.name(0x12_0000, 0x13_0000, ""), "");
        // The stack holds start_stack, either end included.
        assert_eq!(hs.name(0x7ffe_0000, 0x7fff_0000, ""), "[stack]");
        assert_eq!(hs.name(0x7fff_0000, 0x8000_0000, ""), "[stack]");
        assert_eq!(hs.name(0x7ffe_0000, 0x7ffe_f000, ""), "");
        // A file's VMA is its path, wherever it is.
        assert_eq!(hs.name(0x10_0000, 0x12_0000, "/a"), "/a");
        assert_eq!(hs.name(0x7ffe_0000, 0x7fff_0000, "/b"), "/b");
        // No heap yet (brk == start_brk): nothing is the heap but a VMA
        // strictly around it; the heap wins over the stack.
        let empty = HeapStack {
            brk: 0x10_0000,
            ..hs
        };
        assert_eq!(empty.name(0xf_0000, 0x10_0000, ""), "");
        assert_eq!(empty.name(0x10_0000, 0x11_0000, ""), "");
        assert_eq!(empty.name(0xf_0000, 0x11_0000, ""), "[heap]");
        let both = HeapStack {
            start_stack: 0x11_0000,
            ..hs
        };
        assert_eq!(both.name(0x10_0000, 0x12_0000, ""), "[heap]");
        assert_eq!(maps_offset(3, "/a"), 0x3000);
        assert_eq!(maps_offset(3, ""), 0);
    }

    #[test]
    fn loaded_line_and_json() {
        let p = abi::kvm_pfi_linux_profile {
            vm_id: 3,
            slide: 0x1e0_0000,
            init_task: 0xffff_ffff_8461_2ac0,
            nr_processes: 57,
            ..Default::default()
        };
        let j = loaded_json(3, &p);
        assert_eq!(
            loaded_text(&j),
            "vm 3: profile loaded: slide 0x1e00000, init_task 0xffffffff84612ac0, 57 processes"
        );
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            r#"{"vm_id":3,"slide":31457280,"init_task":18446744071635544768,"nr_processes":57}"#
        );
    }
}
