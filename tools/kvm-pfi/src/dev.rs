// SPDX-License-Identifier: GPL-2.0
//! The ioctls of /dev/kvm_pfi, one safe function each.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::abi;
use crate::error::{Error, Result};

/// An open /dev/kvm_pfi. Non-persistent attachments made through it end when
/// it is dropped (closed).
pub struct Device {
    file: File,
}

/// One attached VM: LIST_VMS's entry.
#[derive(Debug, Clone)]
pub struct VmInfo {
    pub vm_id: u32,
    pub vmm_pid: i32,
    pub flags: u32,
    pub nr_vcpus: u32,
    pub stats_id: String,
}

#[derive(Debug, Clone)]
pub struct VmStats {
    pub entries: u64,
    pub exits: u64,
    /// Guest writes to protected pages beyond the module's report budget.
    pub writes_unreported: u64,
    /// Kernel-mode injections refused: no SMAP, FRED, guest debugging.
    pub kernel_refused: [u64; 3],
    /// vCPUs with state, as many as fit (at most max_vcpus of GET_VERSION).
    pub vcpus: Vec<abi::kvm_pfi_vcpu_stats>,
    /// vCPUs with state as the module counted them, maybe more than `vcpus`.
    pub nr_vcpus: u32,
}

/// KVM_PFI_PROCESS_LIST's answer: the processes of the module's last walk
/// of a Linux guest's task list, and its walk counters.
#[derive(Debug, Clone)]
pub struct ProcessList {
    pub processes: Vec<abi::kvm_pfi_process>,
    pub walks: u64,
    pub walk_errors: u64,
    /// CLOCK_MONOTONIC of the walk the list is from.
    pub walked_ns: u64,
    /// `enum kvm_pfi_walk_error` of the last failed walk; 0: none.
    pub last_error: i32,
}

/// KVM_PFI_PROCESS_VMAS's answer: the VMAs of one process of a Linux
/// guest, in address order, and its mm's layout.
#[derive(Debug, Clone)]
pub struct ProcessVmas {
    pub vmas: Vec<abi::kvm_pfi_vma>,
    /// The process's address-space root (guest physical address of mm->pgd).
    pub cr3: u64,
    pub start_code: u64,
    pub end_code: u64,
    /// The heap is the anonymous VMA holding [start_brk, brk).
    pub start_brk: u64,
    pub brk: u64,
    /// The stack is the anonymous VMA holding start_stack.
    pub start_stack: u64,
}

/// How many times a list ioctl is retried with a larger buffer before giving up.
const GROW_TRIES: usize = 4;

/// vcpu_idx marking a VM_STATS entry the module did not fill.
const UNWRITTEN: u32 = u32::MAX;

fn ioctl_name(request: abi::kvm_pfi_ioctl) -> &'static str {
    match request {
        abi::KVM_PFI_IOCTL_GET_VERSION => "KVM_PFI_GET_VERSION",
        abi::KVM_PFI_IOCTL_ATTACH => "KVM_PFI_ATTACH",
        abi::KVM_PFI_IOCTL_DETACH => "KVM_PFI_DETACH",
        abi::KVM_PFI_IOCTL_LIST_VMS => "KVM_PFI_LIST_VMS",
        abi::KVM_PFI_IOCTL_VM_STATS => "KVM_PFI_VM_STATS",
        abi::KVM_PFI_IOCTL_TARGET_ADD => "KVM_PFI_TARGET_ADD",
        abi::KVM_PFI_IOCTL_TARGET_REMOVE => "KVM_PFI_TARGET_REMOVE",
        abi::KVM_PFI_IOCTL_TARGET_LIST => "KVM_PFI_TARGET_LIST",
        abi::KVM_PFI_IOCTL_TARGET_PAGES => "KVM_PFI_TARGET_PAGES",
        abi::KVM_PFI_IOCTL_EVENTS => "KVM_PFI_EVENTS",
        abi::KVM_PFI_IOCTL_SIGS_LOAD => "KVM_PFI_SIGS_LOAD",
        abi::KVM_PFI_IOCTL_SIGS_INFO => "KVM_PFI_SIGS_INFO",
        abi::KVM_PFI_IOCTL_SIGS_CLEAR => "KVM_PFI_SIGS_CLEAR",
        abi::KVM_PFI_IOCTL_LINUX_PROFILE => "KVM_PFI_LINUX_PROFILE",
        abi::KVM_PFI_IOCTL_PROCESS_LIST => "KVM_PFI_PROCESS_LIST",
        abi::KVM_PFI_IOCTL_PROCESS_VMAS => "KVM_PFI_PROCESS_VMAS",
        abi::KVM_PFI_IOCTL_KERNEL_READ => "KVM_PFI_KERNEL_READ",
        abi::KVM_PFI_IOCTL_RULE_ADD => "KVM_PFI_RULE_ADD",
        abi::KVM_PFI_IOCTL_RULE_REMOVE => "KVM_PFI_RULE_REMOVE",
        abi::KVM_PFI_IOCTL_RULE_LIST => "KVM_PFI_RULE_LIST",
        _ => "ioctl",
    }
}

impl Device {
    pub fn open(path: &str) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                // No device node, or one whose driver is gone: not loaded.
                Some(errno @ (libc::ENOENT | libc::ENODEV | libc::ENXIO)) => Error::NoDevice {
                    path: path.to_string(),
                    errno,
                },
                _ => Error::from_io(format!("open {path}"), e),
            })?;
        Ok(Device { file })
    }

    fn fail(request: abi::kvm_pfi_ioctl, ctx: &str) -> Error {
        let name = ioctl_name(request);
        let what = if ctx.is_empty() {
            name.to_string()
        } else {
            format!("{name} {ctx}")
        };
        Error::last_os(what)
    }

    /// # Safety
    /// `arg` must be the argument struct the ioctl number encodes, and every
    /// user pointer inside it must be valid for the size it announces.
    unsafe fn ioctl<T>(&self, request: abi::kvm_pfi_ioctl, arg: &mut T, ctx: &str) -> Result<()> {
        // The ioctl numbers are u32 enumerators (bindgen cannot expand _IOWR);
        // the request argument of ioctl(2) is unsigned long on glibc.
        let rc = libc::ioctl(self.file.as_raw_fd(), request as libc::Ioctl, arg as *mut T);
        if rc < 0 {
            return Err(Self::fail(request, ctx));
        }
        Ok(())
    }

    pub fn version(&self) -> Result<abi::kvm_pfi_version> {
        let mut v = abi::kvm_pfi_version::default();
        // SAFETY: GET_VERSION takes a struct kvm_pfi_version, no pointers.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_GET_VERSION, &mut v, "")? };
        Ok(v)
    }

    /// Attaches the VM behind `vm_fd` (our own descriptor of it) and returns
    /// its vm id. `origin` names the VM for error messages ("pid 12 fd 4").
    pub fn attach(&self, vm_fd: BorrowedFd<'_>, flags: u32, origin: &str) -> Result<u32> {
        let mut a = abi::kvm_pfi_attach {
            vm_fd: vm_fd.as_raw_fd(),
            flags,
            ..Default::default()
        };
        // SAFETY: ATTACH takes a struct kvm_pfi_attach, no pointers.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_ATTACH, &mut a, origin)? };
        Ok(a.vm_id)
    }

    /// Presents `vm_fd` (our own descriptor of a persistently attached VM)
    /// to become one of its controllers (KVM_PFI_ATTACH_CLAIM); returns its
    /// vm id. ENOENT: that VM is not attached.
    pub fn claim(&self, vm_fd: BorrowedFd<'_>, origin: &str) -> Result<u32> {
        self.attach(vm_fd, abi::KVM_PFI_ATTACH_CLAIM, origin)
    }

    pub fn detach(&self, vm_id: u32) -> Result<()> {
        let mut d = abi::kvm_pfi_detach {
            vm_id,
            ..Default::default()
        };
        // SAFETY: DETACH takes a struct kvm_pfi_detach, no pointers.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_DETACH, &mut d, &format!("vm {vm_id}")) }
    }

    /// All attached VMs. `capacity` is a first guess (GET_VERSION's max_vms);
    /// if the module reports more VMs than that, ask again with room for all.
    pub fn list_vms(&self, capacity: u32) -> Result<Vec<VmInfo>> {
        let mut cap = capacity.max(1);
        for _ in 0..GROW_TRIES {
            let mut buf = vec![abi::kvm_pfi_vm_info::default(); cap as usize];
            let mut l = abi::kvm_pfi_vm_list {
                nr_vms: cap,
                vms: buf.as_mut_ptr() as u64,
                ..Default::default()
            };
            // SAFETY: l.vms points at `cap` writable kvm_pfi_vm_info entries.
            unsafe { self.ioctl(abi::KVM_PFI_IOCTL_LIST_VMS, &mut l, "")? };
            if l.nr_vms > cap {
                cap = l.nr_vms;
                continue;
            }
            buf.truncate(l.nr_vms as usize);
            return Ok(buf
                .iter()
                .map(|i| VmInfo {
                    vm_id: i.vm_id,
                    vmm_pid: i.vmm_pid,
                    flags: i.flags,
                    nr_vcpus: i.nr_vcpus,
                    stats_id: abi::stats_id(&i.stats_id),
                })
                .collect());
        }
        Err(Error::Msg(
            "KVM_PFI_LIST_VMS: the number of VMs keeps growing".into(),
        ))
    }

    /// Counters of one VM, with up to `max_vcpus` per-vCPU entries; `hint` is
    /// the vCPU count LIST_VMS reported, used as the first buffer size.
    pub fn vm_stats(&self, vm_id: u32, hint: u32, max_vcpus: u32) -> Result<VmStats> {
        let mut cap = hint.min(max_vcpus);
        loop {
            // The module reports how many vCPUs have state, not how many
            // entries it wrote (it skips vCPUs without state), so unwritten
            // entries are recognised by an index no vCPU can have.
            let unwritten = abi::kvm_pfi_vcpu_stats {
                vcpu_idx: UNWRITTEN,
                ..Default::default()
            };
            let mut buf = vec![unwritten; cap as usize];
            let mut s = abi::kvm_pfi_vm_stats {
                vm_id,
                nr_vcpus: cap,
                // A null pointer with capacity 0 asks for the sums only.
                vcpus: if cap == 0 { 0 } else { buf.as_mut_ptr() as u64 },
                ..Default::default()
            };
            // SAFETY: s.vcpus is null or points at `cap` writable entries.
            unsafe { self.ioctl(abi::KVM_PFI_IOCTL_VM_STATS, &mut s, &format!("vm {vm_id}"))? };
            // vCPUs may have entered the guest since LIST_VMS: grow once more,
            // but never past what the module keeps per-vCPU state for.
            let wanted = s.nr_vcpus.min(max_vcpus);
            if wanted > cap {
                cap = wanted;
                continue;
            }
            buf.truncate(s.nr_vcpus.min(cap) as usize);
            buf.retain(|c| c.vcpu_idx != UNWRITTEN);
            return Ok(VmStats {
                entries: s.entries,
                exits: s.exits,
                writes_unreported: s.writes_unreported,
                kernel_refused: [s.kernel_no_smap, s.kernel_fred, s.kernel_guest_debug],
                vcpus: buf,
                nr_vcpus: s.nr_vcpus,
            });
        }
    }

    /// Adds a target (`t.target_id` must be 0) and returns its target id.
    pub fn target_add(&self, t: &abi::kvm_pfi_target) -> Result<u32> {
        let mut t = *t;
        let ctx = format!("vm {}", t.vm_id);
        // SAFETY: TARGET_ADD takes a struct kvm_pfi_target, no pointers.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_TARGET_ADD, &mut t, &ctx)? };
        Ok(t.target_id)
    }

    /// Adds a rule (KVM_PFI_RULE_ADD); returns its id.
    pub fn rule_add(&self, r: &abi::kvm_pfi_rule) -> Result<u32> {
        let mut r = *r;
        let ctx = format!("vm {}", r.vm_id);
        // SAFETY: RULE_ADD takes a struct kvm_pfi_rule, no pointers.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_RULE_ADD, &mut r, &ctx)? };
        Ok(r.rule_id)
    }

    pub fn rule_remove(&self, vm_id: u32, rule_id: u32) -> Result<()> {
        let mut r = abi::kvm_pfi_rule_remove { vm_id, rule_id };
        let ctx = format!("vm {vm_id} rule {rule_id}");
        // SAFETY: RULE_REMOVE takes a struct kvm_pfi_rule_remove, no pointers.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_RULE_REMOVE, &mut r, &ctx) }
    }

    /// The rules of a VM (at most KVM_PFI_MAX_RULES: one call).
    pub fn rule_list(&self, vm_id: u32) -> Result<Vec<abi::kvm_pfi_rule>> {
        let cap = abi::KVM_PFI_MAX_RULES;
        let mut buf = vec![abi::kvm_pfi_rule::default(); cap as usize];
        let mut l = abi::kvm_pfi_rule_list { vm_id, nr_rules: cap, rules: buf.as_mut_ptr() as u64 };
        // SAFETY: l.rules points at `cap` writable kvm_pfi_rule entries.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_RULE_LIST, &mut l, &format!("vm {vm_id}"))? };
        buf.truncate(l.nr_rules.min(cap) as usize);
        Ok(buf)
    }

    pub fn target_remove(&self, vm_id: u32, target_id: u32) -> Result<()> {
        let mut r = abi::kvm_pfi_target_remove { vm_id, target_id };
        let ctx = format!("vm {vm_id} target {target_id}");
        // SAFETY: TARGET_REMOVE takes a struct kvm_pfi_target_remove, no pointers.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_TARGET_REMOVE, &mut r, &ctx) }
    }

    /// The targets of a VM. `capacity` is a first guess; if the module
    /// reports more targets, ask again with room for all.
    pub fn target_list(&self, vm_id: u32, capacity: u32) -> Result<Vec<abi::kvm_pfi_target>> {
        let mut cap = capacity.max(1);
        for _ in 0..GROW_TRIES {
            let mut buf = vec![abi::kvm_pfi_target::default(); cap as usize];
            let mut l = abi::kvm_pfi_target_list {
                vm_id,
                nr_targets: cap,
                targets: buf.as_mut_ptr() as u64,
            };
            // SAFETY: l.targets points at `cap` writable kvm_pfi_target entries.
            unsafe {
                self.ioctl(
                    abi::KVM_PFI_IOCTL_TARGET_LIST,
                    &mut l,
                    &format!("vm {vm_id}"),
                )?
            };
            if l.nr_targets > cap {
                cap = l.nr_targets;
                continue;
            }
            buf.truncate(l.nr_targets as usize);
            return Ok(buf);
        }
        Err(Error::Msg(format!(
            "KVM_PFI_TARGET_LIST vm {vm_id}: the number of targets keeps growing"
        )))
    }

    /// The pages of a target. `capacity` is a first guess; the buffer grows
    /// to the number of pages the module reports.
    pub fn target_pages(
        &self,
        vm_id: u32,
        target_id: u32,
        capacity: u32,
    ) -> Result<Vec<abi::kvm_pfi_page_info>> {
        let mut cap = capacity.max(1);
        let ctx = format!("vm {vm_id} target {target_id}");
        for _ in 0..GROW_TRIES {
            let mut buf = vec![abi::kvm_pfi_page_info::default(); cap as usize];
            let mut p = abi::kvm_pfi_target_pages {
                vm_id,
                target_id,
                nr_pages: cap,
                pages: buf.as_mut_ptr() as u64,
                ..Default::default()
            };
            // SAFETY: p.pages points at `cap` writable kvm_pfi_page_info entries.
            unsafe { self.ioctl(abi::KVM_PFI_IOCTL_TARGET_PAGES, &mut p, &ctx)? };
            if p.nr_pages > cap {
                cap = p.nr_pages;
                continue;
            }
            buf.truncate(p.nr_pages as usize);
            return Ok(buf);
        }
        Err(Error::Msg(format!(
            "KVM_PFI_TARGET_PAGES {ctx}: the number of pages keeps growing"
        )))
    }

    /// Makes `set` (a compiled signature set) the active one; returns the
    /// module's answer (new generation, rule count). The module validates
    /// the set: see `sigs::refused` for what its errnos mean.
    pub fn sigs_load(&self, set: &[u8]) -> Result<abi::kvm_pfi_sigs_load> {
        let size = u32::try_from(set.len()).map_err(|_| {
            Error::Data(format!(
                "signature set of {} bytes: the ABI's size is 32 bits",
                set.len()
            ))
        })?;
        let mut l = abi::kvm_pfi_sigs_load {
            data: set.as_ptr() as u64,
            size,
            ..Default::default()
        };
        // SAFETY: l.data points at `size` readable bytes, alive for the call.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_SIGS_LOAD, &mut l, "")? };
        Ok(l)
    }

    /// Gives VM `vm_id` the Linux profile `text` (KVM_PFI_LINUX_PROFILE),
    /// with the KASLR slide if given; returns the module's answer (slide,
    /// init_task, processes). See `linux::load_refused` for its errnos.
    pub fn linux_profile(
        &self,
        vm_id: u32,
        text: &[u8],
        slide: Option<u64>,
    ) -> Result<abi::kvm_pfi_linux_profile> {
        let len = u32::try_from(text.len()).map_err(|_| {
            Error::Data(format!(
                "profile of {} bytes: the ABI's length is 32 bits",
                text.len()
            ))
        })?;
        let mut p = abi::kvm_pfi_linux_profile {
            vm_id,
            flags: if slide.is_some() {
                abi::KVM_PFI_LINUX_SLIDE
            } else {
                0
            },
            text: text.as_ptr() as u64,
            len,
            slide: slide.unwrap_or(0),
            ..Default::default()
        };
        // SAFETY: p.text points at `len` readable bytes, alive for the call.
        unsafe {
            self.ioctl(
                abi::KVM_PFI_IOCTL_LINUX_PROFILE,
                &mut p,
                &format!("vm {vm_id}"),
            )?
        };
        Ok(p)
    }

    /// Guest kernel memory of VM `vm_id` at `va` into `buf`
    /// (KVM_PFI_KERNEL_READ), up to the first page that does not
    /// translate; returns the bytes read.
    pub fn kernel_read(&self, vm_id: u32, va: u64, buf: &mut [u8]) -> Result<usize> {
        let done = self.kernel_read_ioctl(vm_id, 0, va, buf.len() as u64, buf)?;
        Ok(done as usize)
    }

    /// Which pages of `len` bytes of VM `vm_id`'s kernel address space from
    /// `va` translate (KVM_PFI_KERNEL_READ with KVM_PFI_KERNEL_PRESENT):
    /// one byte per page, 1 where it does.
    pub fn kernel_present(&self, vm_id: u32, va: u64, len: u64) -> Result<Vec<u8>> {
        let mut map = vec![0u8; (len / 4096) as usize];
        self.kernel_read_ioctl(vm_id, abi::KVM_PFI_KERNEL_PRESENT, va, len, &mut map)?;
        Ok(map)
    }

    /// KVM_PFI_KERNEL_READ of `len` bytes of address space at `va` into
    /// `out` (as long as the module writes for `flags`); returns `done`.
    fn kernel_read_ioctl(&self, vm_id: u32, flags: u32, va: u64, len: u64, out: &mut [u8]) -> Result<u64> {
        let mut r = abi::kvm_pfi_kernel_read {
            vm_id,
            flags,
            va,
            len,
            buf: out.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: r.buf points at `out`, writable and alive for the call,
        // as long as the module writes for these flags (callers size it).
        unsafe {
            self.ioctl(
                abi::KVM_PFI_IOCTL_KERNEL_READ,
                &mut r,
                &format!("vm {vm_id} at {va:#x}"),
            )?
        };
        Ok(r.done)
    }

    /// The processes of VM `vm_id` (KVM_PFI_PROCESS_LIST): asks for the
    /// count first (capacity 0), then for the list, again if it grew.
    pub fn process_list(&self, vm_id: u32) -> Result<ProcessList> {
        let ctx = format!("vm {vm_id}");
        let mut buf: Vec<abi::kvm_pfi_process> = Vec::new();
        let mut l = abi::kvm_pfi_process_list {
            vm_id,
            ..Default::default()
        };
        for _ in 0..=GROW_TRIES {
            // SAFETY: l.processes is null with capacity 0, or points at
            // `buf.len()` writable kvm_pfi_process entries.
            unsafe { self.ioctl(abi::KVM_PFI_IOCTL_PROCESS_LIST, &mut l, &ctx)? };
            let n = l.nr_processes as usize;
            if n <= buf.len() {
                buf.truncate(n);
                return Ok(ProcessList {
                    processes: buf,
                    walks: l.walks,
                    walk_errors: l.walk_errors,
                    walked_ns: l.walked_ns,
                    last_error: l.last_error,
                });
            }
            // Room for a few more: processes start between the calls.
            let cap = l.nr_processes.saturating_add(l.nr_processes / 8 + 8);
            buf = vec![abi::kvm_pfi_process::default(); cap as usize];
            l = abi::kvm_pfi_process_list {
                vm_id,
                nr_processes: cap,
                processes: buf.as_mut_ptr() as u64,
                ..Default::default()
            };
        }
        Err(Error::Msg(format!(
            "KVM_PFI_PROCESS_LIST {ctx}: the number of processes keeps growing"
        )))
    }

    /// The VMAs of process `pid` of VM `vm_id` (KVM_PFI_PROCESS_VMAS): asks
    /// for the count first (capacity 0), then for the VMAs, again if there
    /// are more by then. Each call is a fresh walk of the process's VMA
    /// tree in the module (see `linux::vmas_refused` for its errnos).
    pub fn process_vmas(&self, vm_id: u32, pid: i32) -> Result<ProcessVmas> {
        let ctx = format!("vm {vm_id} pid {pid}");
        let mut buf: Vec<abi::kvm_pfi_vma> = Vec::new();
        let mut v = abi::kvm_pfi_process_vmas {
            vm_id,
            pid,
            ..Default::default()
        };
        for _ in 0..=GROW_TRIES {
            // SAFETY: v.vmas is null with capacity 0, or points at
            // `buf.len()` writable kvm_pfi_vma entries.
            unsafe { self.ioctl(abi::KVM_PFI_IOCTL_PROCESS_VMAS, &mut v, &ctx)? };
            let n = v.nr_vmas as usize;
            if n <= buf.len() {
                buf.truncate(n);
                return Ok(ProcessVmas {
                    vmas: buf,
                    cr3: v.cr3,
                    start_code: v.start_code,
                    end_code: v.end_code,
                    start_brk: v.start_brk,
                    brk: v.brk,
                    start_stack: v.start_stack,
                });
            }
            // Room for a few more (the process maps more between the
            // calls), within what the module takes (EINVAL above it).
            let cap = v
                .nr_vmas
                .saturating_add(v.nr_vmas / 8 + 8)
                .min(abi::KVM_PFI_MAX_VMAS);
            buf = vec![abi::kvm_pfi_vma::default(); cap as usize];
            v = abi::kvm_pfi_process_vmas {
                vm_id,
                pid,
                nr_vmas: cap,
                vmas: buf.as_mut_ptr() as u64,
                ..Default::default()
            };
        }
        Err(Error::Msg(format!(
            "KVM_PFI_PROCESS_VMAS {ctx}: the number of VMAs keeps growing"
        )))
    }

    pub fn sigs_info(&self) -> Result<abi::kvm_pfi_sigs_info> {
        let mut i = abi::kvm_pfi_sigs_info::default();
        // SAFETY: SIGS_INFO takes a struct kvm_pfi_sigs_info, no pointers.
        unsafe { self.ioctl(abi::KVM_PFI_IOCTL_SIGS_INFO, &mut i, "")? };
        Ok(i)
    }

    pub fn sigs_clear(&self) -> Result<()> {
        let request = abi::KVM_PFI_IOCTL_SIGS_CLEAR;
        // SAFETY: SIGS_CLEAR takes no argument (_IO); 0 is passed for it.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), request as libc::Ioctl, 0usize) };
        if rc < 0 {
            return Err(Self::fail(request, ""));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_means_module_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvm_pfi");
        let err = Device::open(path.to_str().unwrap()).err().unwrap();
        assert_eq!(err.exit_code(), crate::error::exit::UNAVAILABLE);
        assert!(
            err.to_string()
                .ends_with("No such file or directory (is the kvm_pfi module loaded?)"),
            "{err}"
        );
        // Something that is there but cannot be opened is not "not loaded".
        let err = Device::open(dir.path().to_str().unwrap()).err().unwrap();
        assert_eq!(err.exit_code(), crate::error::exit::FAILURE, "{err}");
    }

    #[test]
    fn ioctl_names() {
        assert_eq!(
            ioctl_name(abi::KVM_PFI_IOCTL_SIGS_LOAD),
            "KVM_PFI_SIGS_LOAD"
        );
        assert_eq!(
            ioctl_name(abi::KVM_PFI_IOCTL_SIGS_INFO),
            "KVM_PFI_SIGS_INFO"
        );
        assert_eq!(
            ioctl_name(abi::KVM_PFI_IOCTL_SIGS_CLEAR),
            "KVM_PFI_SIGS_CLEAR"
        );
        // A not-a-device file gets the ioctl's name in the error (ENOTTY).
        let f = tempfile::NamedTempFile::new().unwrap();
        let dev = Device::open(f.path().to_str().unwrap()).unwrap();
        let err = dev.sigs_clear().unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOTTY));
        assert!(err.to_string().starts_with("KVM_PFI_SIGS_CLEAR: "), "{err}");
        let err = dev.sigs_info().unwrap_err();
        assert!(err.to_string().starts_with("KVM_PFI_SIGS_INFO: "), "{err}");
        let err = dev.sigs_load(b"x").unwrap_err();
        assert!(err.to_string().starts_with("KVM_PFI_SIGS_LOAD: "), "{err}");
        let err = dev.linux_profile(3, b"x", None).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOTTY));
        assert!(
            err.to_string().starts_with("KVM_PFI_LINUX_PROFILE vm 3: "),
            "{err}"
        );
        let err = dev.process_list(4).unwrap_err();
        assert!(
            err.to_string().starts_with("KVM_PFI_PROCESS_LIST vm 4: "),
            "{err}"
        );
        let err = dev.process_vmas(5, 42).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOTTY));
        assert!(
            err.to_string()
                .starts_with("KVM_PFI_PROCESS_VMAS vm 5 pid 42: "),
            "{err}"
        );
    }
}
