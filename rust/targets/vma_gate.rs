// SPDX-License-Identifier: GPL-2.0

//! The VMA check of a user-mode fault, right before the entry probe
//! injects it (Documentation/guest-linux.rst, "Injection checked against
//! the VMAs"): a #PF at an address no VMA of the process covers, or whose
//! VMA forbids the access, makes the guest kernel kill the task. So on a
//! VM with a Linux profile, a user-half page of a target without
//! `KVM_PFI_TARGET_NO_VMA_CHECK` gets a fault only after one descent of
//! its process's VMA tree (`pfi_core::linux_walk::vma_at`, bounded by the
//! tree's depth) and the verdict of `pfi_core::vma_check`; on a VM without
//! one, not at all.
//!
//! The Linux work gives the probes what the descent needs, under the
//! targets lock: the profile and the guest's direct-map base
//! ([`LinuxView`]), and per target the `mm_struct` of the process whose
//! page tables it names ([`Targets::match_processes`]). Slab objects (the
//! mm, maple nodes, VMAs) and page tables live in the direct map, so the
//! probe reads them at `va - base` with no page walk; the mm's `pgd` is
//! read again and must be `base + root`, so an mm freed and reused since
//! the match is never trusted.

use crate::bindings::uapi;
use crate::guest_mem::GuestMemory;
use crate::pfi_core::inject::FailReason;
use crate::pfi_core::linux_profile::Profile;
use crate::pfi_core::table_cache::{
    PageSource,
    TableCache, //
};
use crate::pfi_core::linux_walk::{
    self,
    KERNEL_MIN, //
};
use crate::pfi_core::vma_check::{
    self,
    Verdict, //
};

use super::{
    page,
    Target,
    Targets,
    MAX_TARGETS, //
};

/// What the probes need of a VM's Linux profile.
#[derive(Clone)]
pub(crate) struct LinuxView {
    pub(crate) profile: Profile,
    /// Guest virtual address of guest physical 0 in the kernel's direct
    /// map (`page_offset_base`), PUD aligned.
    pub(crate) direct_map: u64,
}

/// Alignment of the direct map's base (the kernel randomises it in PUD
/// steps).
pub(crate) const DIRECT_MAP_ALIGN: u64 = 1 << 30;

/// The direct-map base `pgd - root` implies for a process whose `mm->pgd`
/// is `pgd` and whose tables are at guest physical `root`, if plausible.
pub(crate) fn direct_map_base(pgd: u64, root: u64) -> Option<u64> {
    let base = pgd.checked_sub(root)?;
    (base >= KERNEL_MIN && base % DIRECT_MAP_ALIGN == 0).then_some(base)
}

/// What the check says of a fault now.
pub(crate) enum Check {
    /// Inject it; `file`: the VMA maps a file or shared memory (whose page
    /// the guest can read back even when its entry is empty).
    Serve { file: bool },
    /// Never: the page fails for this reason.
    Refuse(FailReason),
    /// Not on this entry (a protection key the task's PKRU denies now, a
    /// tree that could not be read).
    NotNow,
}

/// Guest physical memory as the direct-map reads need it: the probes'
/// `GuestMemory`, or the report work's table cache over it.
pub(crate) trait PhysBytes {
    /// Fills `buf` (within one page) from `gpa`; whether it could.
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> bool;
}

impl PhysBytes for GuestMemory {
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        self.read(gpa, buf) == 0
    }
}

impl<S: PageSource> PhysBytes for TableCache<'_, S> {
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        self.read_bytes(gpa, buf).is_ok()
    }
}

/// Guest kernel memory in the direct map, read through guest physical
/// memory: no page walk, so a probe can afford the few reads of a VMA
/// look-up.
struct DirectMap<'a, M: PhysBytes + ?Sized> {
    mem: &'a mut M,
    base: u64,
}

impl<M: PhysBytes + ?Sized> linux_walk::GuestMemory for DirectMap<'_, M> {
    fn read(&mut self, va: u64, buf: &mut [u8]) -> bool {
        let Some(mut gpa) = va.checked_sub(self.base) else { return false };
        let mut done = 0;
        while done < buf.len() {
            let in_page = 4096 - (gpa & 4095) as usize;
            let n = in_page.min(buf.len() - done);
            let Some(chunk) = buf.get_mut(done..done + n) else { return false };
            if !self.mem.read_phys(gpa, chunk) {
                return false;
            }
            done += n;
            gpa += n as u64;
        }
        true
    }
}

/// Whether a target's faults wait for a VMA check: user-half pages,
/// unless the user waived it.
pub(super) fn checks_vmas(flags: u32, gva: u64) -> bool {
    gva >> 63 == 0 && flags & uapi::KVM_PFI_TARGET_NO_VMA_CHECK == 0
}

impl Target {
    /// See [`checks_vmas`].
    pub(super) fn vma_checked(&self) -> bool {
        checks_vmas(self.flags, self.gva)
    }

    /// The root of its tables, if its faults wait for a VMA check.
    pub(crate) fn checked_root(&self) -> Option<u64> {
        self.vma_checked().then(|| self.space.root_gpa())
    }

    /// Its process's `mm_struct`, found by the caller for a new target.
    pub(crate) fn set_process_mm(&mut self, mm: Option<u64>) {
        self.process_mm = mm;
    }
}

/// The check of a fault at `gva` (a write fault if `write`) in the process
/// whose `mm_struct` is at `mm` and whose tables are at `root`. `pkru`: the
/// task's PKRU, `None` with protection keys off.
pub(super) fn check(
    view: &LinuxView,
    mem: &mut GuestMemory,
    mm: u64,
    root: u64,
    gva: u64,
    write: bool,
    pkru: Option<u32>,
) -> Check {
    let pgd = view.direct_map.wrapping_add(root);
    let mut dm = DirectMap { mem, base: view.direct_map };
    match linux_walk::vma_at(&mut dm, &view.profile, mm, pgd, gva) {
        Ok(vma) => match vma_check::user_fault(vma.as_ref(), write, pkru) {
            Verdict::Serve => Check::Serve { file: vma.is_some_and(|v| vma_check::file_or_shared(&v)) },
            Verdict::NoVma => Check::Refuse(FailReason::NoVma),
            Verdict::Denied => Check::Refuse(FailReason::VmaDenies),
            Verdict::KeyDenied(_) => Check::NotNow,
        },
        Err(_) => Check::NotNow,
    }
}

/// Whether the process whose `mm_struct` is at `mm` and whose tables were
/// at `root` is gone: its mm no longer names those tables (freed and
/// reused), or its VMA tree is destroyed (`exit_mmap` empties it before the
/// mm and its tables are freed, and a live process always has VMAs). A walk
/// of its tables may then have read freed, reused frames: its outcome is
/// not the page's. An mm that cannot be read is not taken for gone.
pub(crate) fn process_gone<M: PhysBytes + ?Sized>(view: &LinuxView, mem: &mut M, mm: u64, root: u64) -> bool {
    let mut dm = DirectMap { mem, base: view.direct_map };
    match linux_walk::read_mm(&mut dm, &view.profile, mm) {
        Ok(m) => m.pgd != view.direct_map.wrapping_add(root) || m.mt_root == 0,
        Err(_) => false,
    }
}

impl Targets {
    /// The Linux work's view of the VM's profile (`None`: none, or it is
    /// not usable yet); the probes check VMAs through it.
    pub(crate) fn set_linux_view(&mut self, view: Option<LinuxView>) {
        self.linux = view;
    }

    /// A copy of the view, for walks outside the lock.
    pub(crate) fn linux_view(&self) -> Option<LinuxView> {
        self.linux.clone()
    }

    /// The address-space roots of the targets whose faults wait for a VMA
    /// check, by target slot, with the `mm_struct` each was matched to,
    /// for the Linux work to look up outside the lock.
    pub(crate) fn checked_roots(&self) -> [Option<(u64, Option<u64>)>; MAX_TARGETS] {
        let mut out = [None; MAX_TARGETS];
        for (o, t) in out.iter_mut().zip(self.targets.iter()) {
            *o = t.as_deref().and_then(|t| Some((t.checked_root()?, t.process_mm)));
        }
        out
    }

    /// Records, per target slot, the `mm_struct` of the process whose
    /// tables are at the root `checked_roots` gave (`None`: no process has
    /// them). A target whose root changed since (another target in that
    /// slot) is left alone. Where `gone` is set, the process the target
    /// was matched to has exited (its mm is on no task of a complete walk
    /// of the task list): its live pages fail with `address-space-gone` at
    /// once, without waiting for a walk to find its tables freed. Returns
    /// whether a page settled (the report work has events to send).
    pub(crate) fn match_processes(
        &mut self,
        roots: &[Option<(u64, Option<u64>)>; MAX_TARGETS],
        mms: &[Option<u64>; MAX_TARGETS],
        gone: &[bool; MAX_TARGETS],
    ) -> bool {
        let mut settled = false;
        for (((slot, seen), mm), &gone) in self.targets.iter_mut().zip(roots.iter()).zip(mms.iter()).zip(gone.iter()) {
            let Some(t) = slot.as_deref_mut() else { continue };
            if seen.map(|s| s.0) != t.checked_root() {
                continue;
            }
            if gone && t.process_mm.is_some() && seen.and_then(|s| s.1) == t.process_mm {
                for i in 0..t.pages.len() {
                    if let Some(p) = t.pages.get_mut(i) {
                        let a = p.inj.address_space_gone();
                        page::apply(p, a);
                        settled |= page::settle(p);
                    }
                    t.sync_ready(i);
                }
            }
            t.process_mm = *mm;
        }
        if settled {
            self.refresh_ready_spaces();
        }
        settled
    }
}
