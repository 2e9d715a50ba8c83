// SPDX-License-Identifier: GPL-2.0

//! `/dev/kvm_pfi`: the misc device and its ioctls (include/uapi/linux/kvm_pfi.h).
//!
//! Mode 0600 (the misc default) and `CAP_SYS_ADMIN` at open: an opener can
//! read and steer other processes' guests. Every ioctl validates all of its
//! input before changing anything, so a refused call leaves state unchanged.

use kernel::bindings;
use kernel::fs::File;
use kernel::miscdevice::{
    MiscDevice,
    MiscDeviceRegistration, //
};
use kernel::prelude::*;
use kernel::sync::atomic::{
    Atomic,
    Relaxed, //
};
use kernel::transmute::{
    AsBytes,
    FromBytes, //
};
use kernel::uaccess::{
    UserPtr,
    UserSlice, //
};

use crate::attach::{
    self,
    DetachReason, //
};
use crate::bindings::uapi;
use crate::events;
use crate::targets::{
    self,
    TargetSpec, //
};
use crate::target_lifecycle;
use crate::vendor;
use crate::vm::{
    self,
    Owner, //
};

/// Per open file: an id that owns its non-persistent attachments, and what
/// it may control.
pub(crate) struct PfiFile {
    id: u64,
    ctl: attach::Controller,
}

static NEXT_FILE_ID: Atomic<u64> = Atomic::new(1);

fn read_arg<T: FromBytes>(arg: usize) -> Result<T> {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>()).reader().read::<T>()
}

fn write_arg<T: AsBytes>(arg: usize, val: &T) -> Result {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>()).writer().write(val)
}

/// Checks that the answer of an ioctl that changes state can be written,
/// before changing anything: a read-only or unmapped argument then fails
/// with EFAULT and no event. (Writing it back unchanged: a concurrent
/// unmap between this and the answer is still undone by the caller.)
fn check_writable<T: AsBytes>(arg: usize, val: &T) -> Result {
    write_arg(arg, val)
}

fn write_array<T: AsBytes>(addr: u64, items: &[T]) -> Result {
    let Ok(addr) = usize::try_from(addr) else { return Err(EFAULT) };
    let mut w = UserSlice::new(UserPtr::from_addr(addr), size_of_val(items)).writer();
    for item in items {
        w.write(item)?;
    }
    Ok(())
}

fn vendor_code() -> u32 {
    match vendor::host() {
        vendor::Vendor::Svm => uapi::KVM_PFI_VENDOR_SVM,
        vendor::Vendor::Vmx => uapi::KVM_PFI_VENDOR_VMX,
        vendor::Vendor::Unknown => uapi::KVM_PFI_VENDOR_UNKNOWN,
    }
}

impl PfiFile {
    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn get_version(&self, arg: usize) -> Result<isize> {
        let v = uapi::kvm_pfi_version {
            abi_version: uapi::KVM_PFI_ABI_VERSION,
            max_vms: uapi::KVM_PFI_MAX_VMS,
            max_vcpus: uapi::KVM_PFI_MAX_VCPUS,
            vendor: vendor_code(),
        };
        write_arg(arg, &v)?;
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn attach(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_attach = read_arg(arg)?;
        if req.flags & !uapi::KVM_PFI_ATTACH_FLAGS_ALL != 0 || req.reserved != 0 || req.vm_id != 0 {
            return Err(EINVAL);
        }
        if req.flags & uapi::KVM_PFI_ATTACH_CLAIM != 0 {
            if req.flags != uapi::KVM_PFI_ATTACH_CLAIM {
                return Err(EINVAL);
            }
            // A claim only adds a right this file could get again with the
            // same descriptor: a lost answer needs no undo.
            req.vm_id = attach::claim(&self.ctl, req.vm_fd)?;
            write_arg(arg, &req)?;
            return Ok(0);
        }
        check_writable(arg, &req)?;
        let persistent = req.flags & uapi::KVM_PFI_ATTACH_PERSISTENT != 0;
        let id = attach::attach_for(&self.ctl, req.vm_fd, req.flags, persistent)?;
        req.vm_id = id;
        if let Err(e) = write_arg(arg, &req) {
            // The caller cannot learn the id: undo, so a failed call changes nothing.
            attach::detach_where(|vm| vm.id == id, DetachReason::Requested);
            return Err(e);
        }
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn detach(&self, arg: usize) -> Result<isize> {
        let req: uapi::kvm_pfi_detach = read_arg(arg)?;
        if req.reserved != 0 {
            return Err(EINVAL);
        }
        attach::detach(req.vm_id, &self.ctl)?;
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn list_vms(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_vm_list = read_arg(arg)?;
        if req.reserved != 0 {
            return Err(EINVAL);
        }
        let mut infos = KVec::with_capacity(vm::MAX_VMS, GFP_KERNEL)?;
        vm::for_each(|vm| {
            // Capacity is MAX_VMS, the most there can be: cannot fail.
            let _ = infos.push(vm.info(), GFP_KERNEL);
        });
        let n = infos.len().min(req.nr_vms as usize);
        if n > 0 {
            write_array(req.vms, &infos[..n])?;
        }
        req.nr_vms = infos.len() as u32;
        write_arg(arg, &req)?;
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn vm_stats(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_vm_stats = read_arg(arg)?;
        if req.entries != 0
            || req.exits != 0
            || req.kernel_no_smap != 0
            || req.kernel_fred != 0
            || req.kernel_guest_debug != 0
            || req.writes_unreported != 0
        {
            return Err(EINVAL);
        }
        if req.nr_vcpus as usize > vm::MAX_VCPUS {
            return Err(E2BIG);
        }
        let mut vcpus = KVec::with_capacity(req.nr_vcpus as usize, GFP_KERNEL)?;
        let seen = vm::with_id(req.vm_id, |vm| {
            let seen = vm.nr_vcpus();
            for idx in 0..seen.min(vcpus.capacity()) {
                if let Some(c) = vm.vcpu(idx) {
                    let _ = vcpus.push(
                        uapi::kvm_pfi_vcpu_stats {
                            vcpu_idx: idx as u32,
                            entries: c.entries(),
                            exits: c.exits(),
                            ..Default::default()
                        },
                        GFP_KERNEL,
                    );
                }
            }
            (req.entries, req.exits) = vm.totals();
            req.writes_unreported = vm.writes_unreported.load(Relaxed);
            let k = vm.targets.lock().kernel_refusals;
            req.kernel_no_smap = k.no_smap;
            req.kernel_fred = k.fred;
            req.kernel_guest_debug = k.guest_debug;
            seen
        })?;
        if !vcpus.is_empty() {
            write_array(req.vcpus, &vcpus)?;
        }
        req.nr_vcpus = seen as u32;
        write_arg(arg, &req)?;
        Ok(0)
    }
}

/// The module parameters, checked with the limits of a target's own values
/// (`pf_timeout_ms` 1 to 60000, `pf_max_tries` 1 to 100) and
/// `write_reports_per_sec` 1 to 1,000,000: a module loaded with others
/// fails to load (`EINVAL`).
pub(crate) struct Parameters;

/// `write_reports_per_sec`'s limits.
const WRITE_REPORTS_PER_SEC: core::ops::RangeInclusive<u32> = 1..=1_000_000;

impl Parameters {
    pub(crate) fn check() -> Result<Self> {
        if !WRITE_REPORTS_PER_SEC.contains(&crate::module_parameters::write_reports_per_sec.value()) {
            return Err(EINVAL);
        }
        target_lifecycle::parameters_config().map(|_| Parameters).ok_or(EINVAL)
    }
}


impl PfiFile {
    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn target_add(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_target = read_arg(arg)?;
        let spec = TargetSpec::validate(&req, target_lifecycle::default_config())?;
        vendor::injection_allowed()?;
        check_writable(arg, &req)?;
        let id = vm::with_id(req.vm_id, |vm| -> Result<u32> {
            self.ctl.check(vm)?;
            target_lifecycle::add(vm, &spec, 0, |root| crate::linux_guest::process_mm(vm, root))
        })??;
        req.target_id = id;
        if let Err(e) = write_arg(arg, &req) {
            // The report work may have walked and protected it already.
            let _ = vm::with_id(req.vm_id, |vm| target_lifecycle::remove(vm, id));
            events::flush();
            return Err(e);
        }
        events::flush();
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn target_remove(&self, arg: usize) -> Result<isize> {
        let req: uapi::kvm_pfi_target_remove = read_arg(arg)?;
        let removed = vm::with_id(req.vm_id, |vm| -> Result<_> {
            self.ctl.check(vm)?;
            Ok(target_lifecycle::remove(vm, req.target_id))
        })??;
        events::flush();
        // Freed here, outside the spinlock.
        removed.map(|_| 0).ok_or(ENOENT)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn target_list(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_target_list = read_arg(arg)?;
        let cap = (req.nr_targets as usize).min(targets::MAX_TARGETS);
        let mut out = KVVec::with_capacity(cap, GFP_KERNEL)?;
        let total = vm::with_id(req.vm_id, |vm| vm.targets.lock().list(&mut out, vm.id))?;
        if !out.is_empty() {
            write_array(req.targets, &out)?;
        }
        req.nr_targets = total as u32;
        write_arg(arg, &req)?;
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn target_pages(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_target_pages = read_arg(arg)?;
        if req.reserved != 0 {
            return Err(EINVAL);
        }
        let cap = (req.nr_pages as usize).min(targets::MAX_PAGES);
        let mut out = KVVec::with_capacity(cap, GFP_KERNEL)?;
        let total = vm::with_id(req.vm_id, |vm| -> Result<usize> {
            let targets = vm.targets.lock();
            let t = targets.get(req.target_id).ok_or(ENOENT)?;
            for p in t.pages.iter().take(cap) {
                // Capacity reserved above: cannot fail.
                let _ = out.push(p.info(), GFP_ATOMIC);
            }
            Ok(t.pages.len())
        })??;
        if !out.is_empty() {
            write_array(req.pages, &out)?;
        }
        req.nr_pages = total as u32;
        write_arg(arg, &req)?;
        Ok(0)
    }
}

impl PfiFile {
    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn sigs_load(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_sigs_load = read_arg(arg)?;
        let set = crate::sigs::prepare(&req)?;
        // The answer is written before the set is activated: a refused
        // write (EFAULT) leaves the previous set active.
        crate::sigs::activate(set, |generation, nr_rules| {
            (req.generation, req.nr_rules) = (generation, nr_rules);
            write_arg(arg, &req)
        })?;
        sigs_changed();
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn linux_profile(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_linux_profile = read_arg(arg)?;
        let given = req.flags & uapi::KVM_PFI_LINUX_SLIDE != 0;
        if req.flags & !uapi::KVM_PFI_LINUX_FLAGS_ALL != 0
            || req.nr_processes != 0
            || req.init_task != 0
            || (!given && req.slide != 0)
            || req.slide % 4096 != 0
            || req.len == 0
            || req.len > uapi::KVM_PFI_LINUX_PROFILE_MAX
        {
            return Err(EINVAL);
        }
        let Ok(text_addr) = usize::try_from(req.text) else { return Err(EFAULT) };
        let mut text = KVec::new();
        UserSlice::new(UserPtr::from_addr(text_addr), req.len as usize).read_all(&mut text, GFP_KERNEL)?;
        let profile = crate::pfi_core::linux_profile::Profile::parse(&text).map_err(|_| EINVAL)?;
        drop(text);
        check_writable(arg, &req)?;
        let vm = vm::with_id(req.vm_id, |vm| -> Result<_> {
            self.ctl.check(vm)?;
            Ok(vm.arc())
        })??;
        let loaded = crate::linux_guest::load_profile(vm, profile, given.then_some(req.slide))?;
        (req.slide, req.init_task, req.nr_processes) = (loaded.slide, loaded.init_task, loaded.nr_processes);
        // The profile is taken: an answer that cannot be written is the
        // caller's loss (it was writable just before).
        write_arg(arg, &req)?;
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn process_list(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_process_list = read_arg(arg)?;
        if req.reserved != 0 {
            return Err(EINVAL);
        }
        let cap = (req.nr_processes as usize).min(uapi::KVM_PFI_MAX_PROCESSES as usize);
        let mut out = KVVec::with_capacity(cap, GFP_KERNEL)?;
        let (total, counts) = vm::with_id(req.vm_id, |vm| {
            crate::linux_guest::with_processes(vm, |list, counts| {
                // Capacity reserved above: no allocation.
                for p in list.iter().take(cap) {
                    let _ = out.push(*p, GFP_KERNEL);
                }
                (list.len(), counts)
            })
        })??;
        if !out.is_empty() {
            write_array(req.processes, &out)?;
        }
        req.nr_processes = u32::try_from(total).unwrap_or(u32::MAX);
        (req.walks, req.walk_errors, req.walked_ns, req.last_error) =
            (counts.walks, counts.walk_errors, counts.walked_ns, counts.last_error);
        write_arg(arg, &req)?;
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn process_vmas(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_process_vmas = read_arg(arg)?;
        if req.reserved != 0 || req.nr_vmas > uapi::KVM_PFI_MAX_VMAS {
            return Err(EINVAL);
        }
        check_writable(arg, &req)?;
        let vm = vm::with_id(req.vm_id, |vm| vm.arc())?;
        let (answer, vmas) = crate::linux_guest::vmas_of(vm, req.pid, req.nr_vmas as usize)?;
        if !vmas.is_empty() {
            write_array(req.vmas, &vmas)?;
        }
        req = uapi::kvm_pfi_process_vmas { vmas: req.vmas, ..answer };
        write_arg(arg, &req)?;
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn kernel_read(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_kernel_read = read_arg(arg)?;
        let present = req.flags & uapi::KVM_PFI_KERNEL_PRESENT != 0;
        let max = if present { u64::from(uapi::KVM_PFI_KERNEL_SPAN_MAX) } else { u64::from(uapi::KVM_PFI_KERNEL_READ_MAX) };
        if req.flags & !uapi::KVM_PFI_KERNEL_FLAGS_ALL != 0
            || req.done != 0
            || req.cr3 != 0
            || req.va < crate::pfi_core::linux_walk::KERNEL_MIN
            || req.len == 0
            || req.len > max
            || req.va.checked_add(req.len - 1).is_none()
            || (present && (req.va | req.len) % 4096 != 0)
        {
            return Err(EINVAL);
        }
        let Ok(buf_addr) = usize::try_from(req.buf) else { return Err(EFAULT) };
        let out_len = (if present { req.len / 4096 } else { req.len }) as usize;
        check_writable(arg, &req)?;
        let vm = vm::with_id(req.vm_id, |vm| -> Result<_> {
            self.ctl.check(vm)?;
            Ok(vm.arc())
        })??;
        let (buf, done, cr3) = crate::linux_guest::read_kernel_memory(vm, req.va, out_len, present)?;
        let out = if present { &buf[..] } else { buf.get(..done as usize).unwrap_or_default() };
        UserSlice::new(UserPtr::from_addr(buf_addr), out.len()).writer().write_slice(out)?;
        (req.done, req.cr3) = (done, cr3);
        write_arg(arg, &req)?;
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn rule_add(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_rule = read_arg(arg)?;
        let rule = crate::linux_guest::rules::check(&req)?;
        check_writable(arg, &req)?;
        let vm = vm::with_id(req.vm_id, |vm| -> Result<_> {
            self.ctl.check(vm)?;
            Ok(vm.arc())
        })??;
        req.rule_id = crate::linux_guest::rules::add(&vm, rule)?;
        if let Err(e) = write_arg(arg, &req) {
            // It made no target yet: the Linux work's walk takes `vm.linux`.
            let _ = crate::linux_guest::rules::remove(&vm, req.rule_id);
            events::flush();
            return Err(e);
        }
        Ok(0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn rule_remove(&self, arg: usize) -> Result<isize> {
        let req: uapi::kvm_pfi_rule_remove = read_arg(arg)?;
        let vm = vm::with_id(req.vm_id, |vm| -> Result<_> {
            self.ctl.check(vm)?;
            Ok(vm.arc())
        })??;
        let r = crate::linux_guest::rules::remove(&vm, req.rule_id);
        events::flush();
        r.map(|()| 0)
    }

    // Not inlined into `ioctl`: its frame would hold every handler's locals.
    #[inline(never)]
    fn rule_list(&self, arg: usize) -> Result<isize> {
        let mut req: uapi::kvm_pfi_rule_list = read_arg(arg)?;
        let cap = (req.nr_rules as usize).min(uapi::KVM_PFI_MAX_RULES as usize);
        let mut out = KVVec::with_capacity(cap, GFP_KERNEL)?;
        let vm = vm::with_id(req.vm_id, |vm| vm.arc())?;
        let total = crate::linux_guest::rules::list(&vm, cap, &mut out)?;
        if !out.is_empty() {
            write_array(req.rules, &out)?;
        }
        req.nr_rules = total as u32;
        write_arg(arg, &req)?;
        Ok(0)
    }

    fn sigs_clear(&self) -> Result<isize> {
        crate::sigs::clear()?;
        sigs_changed();
        Ok(0)
    }
}

/// A new set (or none) is active: rescan every resident target page (a
/// page records the generation it was scanned with).
fn sigs_changed() {
    vm::for_each(|vm| vm.kick_report());
}

#[vtable]
impl MiscDevice for PfiFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        // SAFETY: `capable` only inspects the current task's credentials.
        if !unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) } {
            return Err(EPERM);
        }
        let id = NEXT_FILE_ID.fetch_add(1, Relaxed);
        Ok(KBox::new(PfiFile { id, ctl: attach::Controller::new(id) }, GFP_KERNEL)?)
    }

    fn release(me: KBox<Self>, _file: &File) {
        attach::detach_where(|vm| vm.owner == Owner::File(me.id), DetachReason::FileClosed);
    }

    fn ioctl(me: &PfiFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // The ioctl numbers encode the argument size; a number from another
        // ABI version does not match any of these.
        match cmd {
            uapi::KVM_PFI_IOCTL_GET_VERSION => me.get_version(arg),
            uapi::KVM_PFI_IOCTL_ATTACH => me.attach(arg),
            uapi::KVM_PFI_IOCTL_DETACH => me.detach(arg),
            uapi::KVM_PFI_IOCTL_LIST_VMS => me.list_vms(arg),
            uapi::KVM_PFI_IOCTL_VM_STATS => me.vm_stats(arg),
            uapi::KVM_PFI_IOCTL_TARGET_ADD => me.target_add(arg),
            uapi::KVM_PFI_IOCTL_TARGET_REMOVE => me.target_remove(arg),
            uapi::KVM_PFI_IOCTL_TARGET_PAGES => me.target_pages(arg),
            uapi::KVM_PFI_IOCTL_TARGET_LIST => me.target_list(arg),
            uapi::KVM_PFI_IOCTL_EVENTS if arg == 0 => crate::stream::open_reader(),
            uapi::KVM_PFI_IOCTL_EVENTS => Err(EINVAL),
            uapi::KVM_PFI_IOCTL_SIGS_LOAD => me.sigs_load(arg),
            uapi::KVM_PFI_IOCTL_SIGS_INFO => write_arg(arg, &crate::sigs::info()).map(|()| 0),
            uapi::KVM_PFI_IOCTL_SIGS_CLEAR if arg == 0 => me.sigs_clear(),
            uapi::KVM_PFI_IOCTL_SIGS_CLEAR => Err(EINVAL),
            uapi::KVM_PFI_IOCTL_LINUX_PROFILE => me.linux_profile(arg),
            uapi::KVM_PFI_IOCTL_PROCESS_LIST => me.process_list(arg),
            uapi::KVM_PFI_IOCTL_PROCESS_VMAS => me.process_vmas(arg),
            uapi::KVM_PFI_IOCTL_KERNEL_READ => me.kernel_read(arg),
            uapi::KVM_PFI_IOCTL_RULE_ADD => me.rule_add(arg),
            uapi::KVM_PFI_IOCTL_RULE_REMOVE => me.rule_remove(arg),
            uapi::KVM_PFI_IOCTL_RULE_LIST => me.rule_list(arg),
            _ => Err(ENOTTY),
        }
    }
}
