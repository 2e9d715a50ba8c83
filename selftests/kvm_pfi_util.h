/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the kvm-pfi selftests: the device, the ioctls (targets
 * included), and VMM processes the tests control.
 */
#ifndef SELFTEST_KVM_PFI_UTIL_H
#define SELFTEST_KVM_PFI_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/kvm_pfi.h>

#include "kvm_util.h"

#define KVM_PFI_DEV "/dev/" KVM_PFI_DEVICE_NAME

/*
 * Where the ring-0 guests of these tests keep the page of a
 * KVM_PFI_TARGET_KERNEL target that is to be injected:
 * vm_alloc(vm, 4096, PFI_KERNEL_HALF_GVA), in the kernel half. The module
 * injects a kernel-mode fault on a user-half page only with guest CR4.SMAP
 * and RFLAGS.AC both set (a uaccess region; Documentation/design.rst,
 * "Kernel-mode injection"), which the library's guests do not set.
 */
#define PFI_KERNEL_HALF_GVA	0xffff800000000000ull

/*
 * The host's view of a kernel-half guest page. The library's
 * addr_gva2gpa() keeps bits 52-63 of a kernel-half GVA in the GPA it
 * returns (its offset mask is the complement of a mask of physical address
 * bits), so addr_gva2hva() fails there: drop them first.
 */
static inline uint64_t kernel_half_gpa(struct kvm_vm *vm, uint64_t gva)
{
	return addr_gva2gpa(vm, gva) & ((1ULL << vm->pa_bits) - 1);
}

static inline void *kernel_half_hva(struct kvm_vm *vm, uint64_t gva)
{
	return addr_gpa2hva(vm, kernel_half_gpa(vm, gva));
}

static inline int pfi_open(void)
{
	return open(KVM_PFI_DEV, O_RDWR | O_CLOEXEC);
}

/* ioctl() returning 0 or -errno, so tests can compare errnos directly. */
static inline int pfi_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

static inline int pfi_attach(int pfi, int vm_fd, uint32_t flags, uint32_t *vm_id)
{
	struct kvm_pfi_attach a = { .vm_fd = vm_fd, .flags = flags };
	int r = pfi_ioctl(pfi, KVM_PFI_ATTACH, &a);

	if (!r && vm_id)
		*vm_id = a.vm_id;
	return r;
}

static inline int pfi_detach(int pfi, uint32_t vm_id)
{
	struct kvm_pfi_detach d = { .vm_id = vm_id };

	return pfi_ioctl(pfi, KVM_PFI_DETACH, &d);
}

/* Number of attached VMs (all files), or -errno. */
static inline int pfi_nr_attached(int pfi)
{
	struct kvm_pfi_vm_list l = { 0 };
	int r = pfi_ioctl(pfi, KVM_PFI_LIST_VMS, &l);

	return r ? r : (int)l.nr_vms;
}

static inline int pfi_stats(int pfi, uint32_t vm_id, struct kvm_pfi_vm_stats *st,
			    struct kvm_pfi_vcpu_stats *vcpus, uint32_t nr)
{
	*st = (struct kvm_pfi_vm_stats){
		.vm_id = vm_id, .nr_vcpus = nr, .vcpus = (uintptr_t)vcpus,
	};
	return pfi_ioctl(pfi, KVM_PFI_VM_STATS, st);
}

/* Targets (KVM_PFI_TARGET_*): every helper returns 0 or -errno. */

/* Whether the loaded module knows TARGET_ADD: an unknown ioctl is ENOTTY,
 * a known one with vm_id 0 fails with something else. */
static inline bool pfi_has_targets(int pfi)
{
	struct kvm_pfi_target t = { 0 };

	return pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, &t) != -ENOTTY;
}

/*
 * The mini OS is no Linux: it has no VMAs for the module to check, so its
 * user-half targets waive the check (KVM_PFI_TARGET_NO_VMA_CHECK). A test of
 * the check itself calls KVM_PFI_TARGET_ADD directly.
 */
static inline uint32_t pfi_mini_os_flags(uint32_t flags, uint64_t gva)
{
	return gva >> 63 ? flags : flags | KVM_PFI_TARGET_NO_VMA_CHECK;
}

static inline int pfi_target_add(int pfi, uint32_t vm_id, uint32_t flags, uint64_t cr3,
				 uint64_t gva, uint64_t len, uint32_t *target_id)
{
	struct kvm_pfi_target t = {
		.vm_id = vm_id, .flags = pfi_mini_os_flags(flags, gva), .cr3 = cr3, .gva = gva, .len = len,
	};
	int r = pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, &t);

	if (!r && target_id)
		*target_id = t.target_id;
	return r;
}

static inline int pfi_target_remove(int pfi, uint32_t vm_id, uint32_t target_id)
{
	struct kvm_pfi_target_remove t = { .vm_id = vm_id, .target_id = target_id };

	return pfi_ioctl(pfi, KVM_PFI_TARGET_REMOVE, &t);
}

/* Fills up to nr pages; *total (may be NULL) gets the target's page count. */
static inline int pfi_target_pages(int pfi, uint32_t vm_id, uint32_t target_id,
				   struct kvm_pfi_page_info *pages, uint32_t nr,
				   uint32_t *total)
{
	struct kvm_pfi_target_pages t = {
		.vm_id = vm_id, .target_id = target_id, .nr_pages = nr,
		.pages = (uintptr_t)pages,
	};
	int r = pfi_ioctl(pfi, KVM_PFI_TARGET_PAGES, &t);

	if (!r && total)
		*total = t.nr_pages;
	return r;
}

/* Linux guests (KVM_PFI_LINUX_PROFILE, KVM_PFI_PROCESS_LIST): 0 or -errno. */

/* Gives @vm_id the profile @text of @len bytes; with KVM_PFI_LINUX_SLIDE in
 * @flags, @slide is the KASLR slide. *out (may be NULL) gets the answer. */
static inline int pfi_linux_profile(int pfi, uint32_t vm_id, uint32_t flags, const void *text,
				    uint32_t len, uint64_t slide,
				    struct kvm_pfi_linux_profile *out)
{
	struct kvm_pfi_linux_profile p = {
		.vm_id = vm_id, .flags = flags, .text = (uintptr_t)text, .len = len,
		.slide = slide,
	};
	int r = pfi_ioctl(pfi, KVM_PFI_LINUX_PROFILE, &p);

	if (!r && out)
		*out = p;
	return r;
}

/* Fills up to nr processes; *total (may be NULL) gets the VM's count. */
static inline int pfi_process_list(int pfi, uint32_t vm_id, struct kvm_pfi_process *procs,
				   uint32_t nr, uint32_t *total)
{
	struct kvm_pfi_process_list l = {
		.vm_id = vm_id, .nr_processes = nr, .processes = (uintptr_t)procs,
	};
	int r = pfi_ioctl(pfi, KVM_PFI_PROCESS_LIST, &l);

	if (!r && total)
		*total = l.nr_processes;
	return r;
}

static inline int sys_pidfd_open(pid_t pid)
{
	return syscall(__NR_pidfd_open, pid, 0);
}

static inline int sys_pidfd_getfd(int pidfd, int fd)
{
	return syscall(__NR_pidfd_getfd, pidfd, fd, 0);
}

#endif /* SELFTEST_KVM_PFI_UTIL_H */
