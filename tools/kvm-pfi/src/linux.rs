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

use serde::Serialize;

use crate::error::{Error, Result};
use crate::sigs::{path_name, read_input};
use pfi_core::linux_profile::{Profile, S};
use pfi_core::linux_walk::{self, GuestMemory, Limits, MapleScratch, WalkError};

/// `__START_KERNEL_map`: the kernel image is mapped at or above it (and
/// below the modules area, which kcore maps higher).
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
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
/// BTF blob) and a System.map (or kallsyms).
pub fn build(vmlinux: Option<&Path>, btf: Option<&Path>, system_map: &Path) -> Result<Profile> {
    let (blob, what) = match (vmlinux, btf) {
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
        (None, None) => unreachable!("clap requires --vmlinux or --btf"),
    };
    let syms = read_input(system_map)?;
    Profile::resolve(&blob, &syms).map_err(|e| {
        profile_error(
            &format!("profile from {what} and {}", path_name(system_map)),
            e,
        )
    })
}

/// Reads a profile's text form.
pub fn load(path: &Path) -> Result<Profile> {
    Profile::parse(&read_input(path)?).map_err(|e| profile_error(&path_name(path), e))
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
        let p = build(Some(&path), None, Path::new("/nonexistent")).unwrap_err();
        assert_eq!(p.exit_code(), 66, "{p}");
        let nob = dir.path().join("nobtf");
        std::fs::write(&nob, elf(&[], &[(".text", vec![0x90; 10])])).unwrap();
        let e = build(Some(&nob), None, &path).unwrap_err();
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
}
