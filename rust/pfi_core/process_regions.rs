// SPDX-License-Identifier: GPL-2.0

//! Which pages of a Linux guest process a rule wants (`KVM_PFI_RULE_ADD`,
//! Documentation/guest-linux.rst, "Targets by process and region"): the
//! process's VMAs of one region, merged where they touch and cut into
//! target-sized ranges. The names follow `/proc/PID/maps`
//! (`fs/proc/task_mmu.c`, `get_vma_name`): `[heap]` and `[stack]` are
//! anonymous VMAs by the mm's layout, the executable is `mm->exe_file`.

use core::ops::ControlFlow;

use super::linux_walk::{
    Mm,
    Vma, //
};
use super::vma_check::{
    VM_EXEC,
    VM_READ,
    VM_WRITE, //
};

/// `VM_PFNMAP` and `VM_IO` (`include/linux/mm.h`): device or special
/// mappings, with no page the guest could swap.
const VM_PFNMAP: u64 = 0x400;
const VM_IO: u64 = 0x4000;

/// A region of a process (`enum kvm_pfi_region`, same numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The VMAs of the executable (`mm->exe_file`).
    Exe = 1,
    /// The anonymous VMA holding `mm->start_stack`.
    Stack = 2,
    /// The anonymous VMA over `[start_brk, brk)`.
    Heap = 3,
    /// VMAs of files whose path matches a glob.
    File = 4,
    /// Anonymous VMAs but the heap and the stack.
    Anon = 5,
    /// Every VMA.
    All = 6,
}

impl Region {
    /// The region numbered `n`.
    pub fn from_code(n: u32) -> Option<Region> {
        Some(match n {
            1 => Region::Exe,
            2 => Region::Stack,
            3 => Region::Heap,
            4 => Region::File,
            5 => Region::Anon,
            6 => Region::All,
            _ => return None,
        })
    }
}

/// Whether VMA `[start, end)` is what procfs calls `[heap]`, if anonymous
/// (`vma_is_initial_heap`).
pub fn is_initial_heap(mm_start_brk: u64, mm_brk: u64, start: u64, end: u64) -> bool {
    start < mm_brk && end > mm_start_brk
}

/// Whether VMA `[start, end)` is what procfs calls `[stack]`, if anonymous
/// (`vma_is_initial_stack`: either end included).
pub fn is_initial_stack(mm_start_stack: u64, start: u64, end: u64) -> bool {
    start <= mm_start_stack && end >= mm_start_stack
}

/// What a rule knows of one VMA besides the VMA itself.
#[derive(Debug, Clone, Copy)]
pub struct VmaFile<'a> {
    /// Whether it maps the process's executable.
    pub is_exe: bool,
    /// Its file's path ("" anonymous, or not read).
    pub path: &'a [u8],
}

/// Whether `region` (with `pattern` for [`Region::File`]) wants `vma` of
/// the process with layout `mm`. A VMA without any access (`PROT_NONE`:
/// nothing to read, a fault there would be refused) and device mappings
/// are never wanted.
pub fn wants(region: Region, pattern: &[u8], mm: &Mm, vma: &Vma, file: VmaFile<'_>) -> bool {
    if vma.flags & (VM_READ | VM_WRITE | VM_EXEC) == 0 || vma.flags & (VM_IO | VM_PFNMAP) != 0 {
        return false;
    }
    let anon = vma.file == 0;
    let heap = anon && is_initial_heap(mm.start_brk, mm.brk, vma.start, vma.end);
    let stack = anon && !heap && is_initial_stack(mm.start_stack, vma.start, vma.end);
    match region {
        Region::Exe => !anon && file.is_exe,
        Region::Stack => stack,
        Region::Heap => heap,
        Region::File => !anon && glob(pattern, file.path),
        Region::Anon => anon && !heap && !stack,
        Region::All => true,
    }
}

/// Whether `text` matches `pattern` as a whole: `*` any run of bytes (`/`
/// included), `?` any one byte, anything else itself. Iterative, at most
/// `pattern.len() * text.len()` steps.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // The last `*` seen and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    loop {
        match (pattern.get(p), text.get(t)) {
            (Some(b'*'), _) => {
                star = Some((p, t));
                p = p.saturating_add(1);
            }
            (Some(&c), Some(&b)) if c == b'?' || c == b => {
                p = p.saturating_add(1);
                t = t.saturating_add(1);
            }
            (None, None) => return true,
            _ => match star {
                // Let the last `*` take one byte more.
                Some((sp, st)) if st < text.len() => {
                    let st = st.saturating_add(1);
                    star = Some((sp, st));
                    p = sp.saturating_add(1);
                    t = st;
                }
                _ => return false,
            },
        }
    }
}

/// Merges address-ordered ranges that touch and cuts the result into
/// pieces of at most `max_len` bytes (a target's size), in order.
pub struct Ranges {
    max_len: u64,
    run: Option<(u64, u64)>,
}

impl Ranges {
    /// `max_len` a multiple of the page size, at least one page.
    pub fn new(max_len: u64) -> Self {
        Ranges { max_len: max_len.max(4096), run: None }
    }

    /// Adds `[start, end)`, at or after every range added before; gives
    /// `out` each piece that is complete. `Break` from `out` is returned.
    pub fn push(&mut self, start: u64, end: u64, out: &mut impl FnMut(u64, u64) -> ControlFlow<()>) -> ControlFlow<()> {
        if end <= start {
            return ControlFlow::Continue(());
        }
        match self.run {
            Some((s, e)) if start <= e => self.run = Some((s, e.max(end))),
            Some((s, e)) => {
                self.run = Some((start, end));
                self.cut(s, e, out)?;
            }
            None => self.run = Some((start, end)),
        }
        ControlFlow::Continue(())
    }

    /// Gives `out` the pieces of the last run.
    pub fn finish(&mut self, out: &mut impl FnMut(u64, u64) -> ControlFlow<()>) -> ControlFlow<()> {
        match self.run.take() {
            Some((s, e)) => self.cut(s, e, out),
            None => ControlFlow::Continue(()),
        }
    }

    fn cut(&self, mut s: u64, e: u64, out: &mut impl FnMut(u64, u64) -> ControlFlow<()>) -> ControlFlow<()> {
        while s < e {
            let next = s.saturating_add(self.max_len).min(e);
            out(s, next)?;
            s = next;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn vma(start: u64, end: u64, flags: u64, file: u64) -> Vma {
        Vma { start, end, flags, file, ..Default::default() }
    }

    fn mm() -> Mm {
        Mm { start_brk: 0x55_0000_0000, brk: 0x55_0002_1000, start_stack: 0x7ffd_0000_1234, ..Default::default() }
    }

    const NONE: VmaFile<'static> = VmaFile { is_exe: false, path: b"" };

    #[test]
    fn glob_matches_as_the_shell_does() {
        assert!(glob(b"*libc.so*", b"/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(glob(b"/tmp/pfi-file-?", b"/tmp/pfi-file-3"));
        assert!(!glob(b"/tmp/pfi-file-?", b"/tmp/pfi-file-33"));
        assert!(glob(b"*", b""));
        assert!(glob(b"", b""));
        assert!(!glob(b"", b"a"));
        assert!(!glob(b"a*b", b"acbd"));
        assert!(glob(b"a*b*c", b"axxbyybzzc"));
        assert!(!glob(b"/usr/*.so", b"/usr/lib/libm.so.6"));
        // Backtracking stays bounded on a pattern made to explode.
        let text = [b'a'; 255];
        assert!(!glob(b"*a*a*a*a*a*a*a*a*b", &text));
    }

    #[test]
    fn regions_name_vmas_as_procfs_does() {
        let m = mm();
        let heap = vma(0x55_0000_0000, 0x55_0002_1000, VM_READ | VM_WRITE, 0);
        let stack = vma(0x7ffd_0000_0000, 0x7ffd_0002_1000, VM_READ | VM_WRITE, 0);
        let anon = vma(0x7f00_0000_0000, 0x7f00_0001_0000, VM_READ | VM_WRITE, 0);
        let libc = vma(0x7f10_0000_0000, 0x7f10_0002_0000, VM_READ | VM_EXEC, 0xffff_8880_0000_1000);
        let exe = vma(0x56_0000_0000, 0x56_0000_1000, VM_READ | VM_EXEC, 0xffff_8880_0000_2000);
        let libc_f = VmaFile { is_exe: false, path: b"/usr/lib/x86_64-linux-gnu/libc.so.6" };
        let exe_f = VmaFile { is_exe: true, path: b"/usr/bin/sleep" };
        assert!(wants(Region::Heap, b"", &m, &heap, NONE));
        assert!(!wants(Region::Heap, b"", &m, &stack, NONE));
        assert!(wants(Region::Stack, b"", &m, &stack, NONE));
        assert!(!wants(Region::Stack, b"", &m, &anon, NONE));
        assert!(wants(Region::Anon, b"", &m, &anon, NONE));
        assert!(!wants(Region::Anon, b"", &m, &heap, NONE));
        assert!(!wants(Region::Anon, b"", &m, &stack, NONE));
        assert!(wants(Region::File, b"*/libc.so*", &m, &libc, libc_f));
        assert!(!wants(Region::File, b"*/libm.so*", &m, &libc, libc_f));
        assert!(!wants(Region::File, b"*", &m, &anon, NONE));
        assert!(wants(Region::Exe, b"", &m, &exe, exe_f));
        assert!(!wants(Region::Exe, b"", &m, &libc, libc_f));
        for v in [&heap, &stack, &anon, &libc, &exe] {
            assert!(wants(Region::All, b"", &m, v, NONE));
        }
        // A file VMA over the brk range is not the heap.
        let over = vma(0x55_0000_0000, 0x55_0000_1000, VM_READ, 0xffff_8880_0000_3000);
        assert!(!wants(Region::Heap, b"", &m, &over, NONE));
    }

    #[test]
    fn no_access_and_device_mappings_are_never_wanted() {
        let m = mm();
        let none = vma(0x7f00_0000_0000, 0x7f00_0001_0000, 0, 0);
        let io = vma(0x7f00_0000_0000, 0x7f00_0001_0000, VM_READ | VM_IO, 0);
        let pfn = vma(0x7f00_0000_0000, 0x7f00_0001_0000, VM_READ | VM_PFNMAP, 0);
        for v in [&none, &io, &pfn] {
            assert!(!wants(Region::All, b"", &m, v, NONE));
        }
    }

    #[test]
    fn region_codes_round_trip() {
        for r in [Region::Exe, Region::Stack, Region::Heap, Region::File, Region::Anon, Region::All] {
            assert_eq!(Region::from_code(r as u32), Some(r));
        }
        assert_eq!(Region::from_code(0), None);
        assert_eq!(Region::from_code(7), None);
    }

    fn pieces(max: u64, ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut r = Ranges::new(max);
        let mut f = |s, e| {
            out.push((s, e));
            ControlFlow::Continue(())
        };
        for &(s, e) in ranges {
            let _ = r.push(s, e, &mut f);
        }
        let _ = r.finish(&mut f);
        out
    }

    #[test]
    fn ranges_merge_where_they_touch_and_cut_to_size() {
        assert_eq!(pieces(0x4000, &[(0x1000, 0x2000), (0x2000, 0x3000), (0x5000, 0x6000)]), [
            (0x1000, 0x3000),
            (0x5000, 0x6000)
        ]);
        assert_eq!(pieces(0x2000, &[(0x0, 0x5000)]), [(0x0, 0x2000), (0x2000, 0x4000), (0x4000, 0x5000)]);
        assert_eq!(pieces(0x2000, &[(0x3000, 0x3000)]), []);
        // Break stops at once.
        let mut n = 0;
        let mut r = Ranges::new(0x1000);
        let stop = r.push(0, 0x1000, &mut |_, _| ControlFlow::Break(()));
        assert_eq!(stop, ControlFlow::Continue(()));
        let stop = r.finish(&mut |_, _| {
            n += 1;
            ControlFlow::Break(())
        });
        assert_eq!((stop, n), (ControlFlow::Break(()), 1));
    }
}
