/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the kvm-pfi selftests: the device, the ioctls, and VMM
 * processes the tests control.
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

#define KVM_PFI_DEV "/dev/" KVM_PFI_DEVICE_NAME

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

static inline int sys_pidfd_open(pid_t pid)
{
	return syscall(__NR_pidfd_open, pid, 0);
}

static inline int sys_pidfd_getfd(int pidfd, int fd)
{
	return syscall(__NR_pidfd_getfd, pidfd, fd, 0);
}

#endif /* SELFTEST_KVM_PFI_UTIL_H */
