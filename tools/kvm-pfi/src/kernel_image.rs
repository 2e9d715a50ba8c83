// SPDX-License-Identifier: GPL-2.0
//! A guest kernel's image as it lies in memory, and the profile pieces
//! found in it (Documentation/guest-linux.rst, "From the running guest"):
//! its BTF (`.BTF`, in kernels built with CONFIG_DEBUG_INFO_BTF) and its
//! own kallsyms tables (run-time addresses: no slide to find). The image
//! comes from a running VM through the module (KVM_PFI_KERNEL_READ) or
//! from an ELF core of the kernel one runs on (/proc/kcore).

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::Path;

use pfi_core::btf::Btf;
use pfi_core::kallsyms_tables::Kallsyms;

use crate::abi;
use crate::dev::Device;
use crate::error::{Error, Result};
use crate::linux::{self, Kcore, START_KERNEL_MAP};

const PAGE: u64 = 4096;
/// The kernel image's window from `__START_KERNEL_map` (KERNEL_IMAGE_SIZE
/// with KASLR; the image lies in it wherever KASLR put it).
pub const WINDOW: u64 = 1 << 30;
/// Unmapped pages this long after the image's first page end it: the
/// image's own holes (the text/rodata and rodata/data gaps, freed init
/// memory) are shorter, and modules load further away.
pub const IMAGE_HOLE: u64 = 16 << 20;
/// The most of it read.
pub const MAX_IMAGE: u64 = 512 << 20;

/// A copy of the kernel image: `bytes[0]` is at virtual address `base`;
/// pages that could not be read are zeros.
pub struct Image {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Pages inside it that could not be read.
    pub missing: u64,
    /// Where it came from, for messages ("vm 3", "/proc/kcore").
    pub what: String,
}

/// The first and end page index of the image in a present-page map of the
/// window: from the first present page to the last one before an
/// [`IMAGE_HOLE`] of absent pages, at most [`MAX_IMAGE`].
pub fn image_pages(map: &[u8]) -> Option<(usize, usize)> {
    let first = map.iter().position(|&b| b != 0)?;
    let (mut end, mut hole) = (first + 1, 0u64);
    for (i, &b) in map.iter().enumerate().skip(first + 1) {
        if (i - first) as u64 * PAGE >= MAX_IMAGE {
            break;
        }
        if b != 0 {
            end = i + 1;
            hole = 0;
        } else {
            hole += PAGE;
            if hole >= IMAGE_HOLE {
                break;
            }
        }
    }
    Some((first, end))
}

/// The kernel image of VM `vm`'s guest, through the module: the window's
/// present pages first (one call), then the image's, a megabyte a call.
pub fn from_vm(dev: &Device, vm: u32) -> Result<Image> {
    let map = linux::retry_eagain(linux::GUEST_UP_WAIT, linux::GUEST_UP_PAUSE, || {
        dev.kernel_present(vm, START_KERNEL_MAP, WINDOW)
    })
    .map_err(|e| linux::kernel_read_refused(e, vm))?;
    let what = format!("vm {vm}");
    let (first, end) = image_pages(&map).ok_or_else(|| {
        Error::Data(format!(
            "{what}: nothing is mapped in the kernel image's window \
             ({START_KERNEL_MAP:#x}, 1 GiB): not a 64-bit Linux guest"
        ))
    })?;
    let base = START_KERNEL_MAP + first as u64 * PAGE;
    let mut bytes = vec![0u8; (end - first) * PAGE as usize];
    let mut missing = 0u64;
    let chunk = abi::KVM_PFI_KERNEL_READ_MAX as usize;
    let mut page = first;
    while page < end {
        if map[page] == 0 {
            missing += 1;
            page += 1;
            continue;
        }
        // A run of present pages, a chunk at a time.
        let run_end = (page..end).find(|&p| map[p] == 0).unwrap_or(end);
        let from = (page - first) * PAGE as usize;
        let to = ((run_end - first) * PAGE as usize).min(from + chunk);
        let va = base + from as u64;
        let n = linux::retry_eagain(linux::GUEST_UP_WAIT, linux::GUEST_UP_PAUSE, || {
            dev.kernel_read(vm, va, &mut bytes[from..to])
        })
        .map_err(|e| linux::kernel_read_refused(e, vm))?;
        // Unmapped since the map was taken: that page stays zeros.
        let read_pages = n / PAGE as usize;
        if from + n < to {
            missing += 1;
            page += read_pages + 1;
        } else {
            page += read_pages;
        }
    }
    Ok(Image {
        base,
        bytes,
        missing,
        what,
    })
}

/// The kernel image of the kernel an ELF core shows (/proc/kcore: its
/// segment at `_text`, which runs to `_end`).
pub fn from_kcore(path: &Path) -> Result<Image> {
    let mut core = Kcore::open(path)?;
    let what = path.display().to_string();
    let (base, size) = core.text_segment().ok_or_else(|| {
        Error::Data(format!(
            "{what}: no segment maps the kernel image (at or above {START_KERNEL_MAP:#x})"
        ))
    })?;
    let size = size.min(MAX_IMAGE);
    let mut bytes = vec![0u8; size as usize];
    let mut missing = 0u64;
    for (i, page) in bytes.chunks_mut(PAGE as usize).enumerate() {
        if !pfi_core::linux_walk::GuestMemory::read(&mut core, base + i as u64 * PAGE, page) {
            page.fill(0);
            missing += 1;
        }
    }
    Ok(Image {
        base,
        bytes,
        missing,
        what,
    })
}

impl Image {
    /// The kernel's kallsyms tables in the image.
    pub fn kallsyms(&self) -> Result<Kallsyms<'_>> {
        Kallsyms::find(&self.bytes, self.base).map_err(|e| {
            Error::Data(format!(
                "{}: {e} ({}; a kernel needs CONFIG_KALLSYMS, \
                 and CONFIG_KALLSYMS_ALL for init_task: give --system-map)",
                self.what,
                self.searched()
            ))
        })
    }

    /// The kernel's BTF in the image.
    pub fn btf(&self) -> Result<&[u8]> {
        Btf::find_in_image(&self.bytes).ok_or_else(|| {
            Error::Data(format!(
                "{}: no BTF in the kernel image ({}; a kernel built without \
                 CONFIG_DEBUG_INFO_BTF): give --btf or --vmlinux",
                self.what,
                self.searched()
            ))
        })
    }

    /// What a failed search looked at: a table on an unreadable page is
    /// not found, so those pages are counted.
    fn searched(&self) -> String {
        format!(
            "{} MiB from {:#x} searched, {} pages of it unreadable",
            self.bytes.len() >> 20,
            self.base,
            self.missing
        )
    }
}

/// The symbols as `/proc/kallsyms` prints the core kernel's: `ADDRESS
/// TYPE NAME`, in the table's (address) order.
pub fn symbols_text(k: &Kallsyms<'_>) -> Result<String> {
    let mut out = String::with_capacity(k.len() as usize * 40);
    k.for_each(|s| {
        let _ = writeln!(
            out,
            "{:016x} {} {}",
            s.addr,
            s.kind as char,
            String::from_utf8_lossy(s.name)
        );
        ControlFlow::Continue(())
    })
    .map_err(|e| Error::Data(format!("kallsyms: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_the_first_run_before_a_long_hole() {
        let p = |mb: u64| (mb << 20 >> 12) as usize;
        let mut map = vec![0u8; p(1024)];
        // The image from 16 MiB to 40 MiB with a 2 MiB gap; a module at 600.
        map[p(16)..p(30)].fill(1);
        map[p(32)..p(40)].fill(1);
        map[p(600)..p(601)].fill(1);
        assert_eq!(image_pages(&map), Some((p(16), p(40))));
        assert_eq!(image_pages(&[0u8; 10]), None);
        // Never more than MAX_IMAGE.
        let full = vec![1u8; p(1024)];
        assert_eq!(image_pages(&full), Some((0, p(512))));
    }
}
