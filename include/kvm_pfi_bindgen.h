/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input of bindgen for the module (Kbuild) and the kvm-pfi tool (build.rs).
 *
 * bindgen cannot expand function-like macros such as _IOWR(), so the ioctl
 * numbers are re-exported here as enumerators, which clang evaluates. Nothing
 * else is defined here: include/uapi/linux/kvm_pfi.h stays the one source.
 */
#include <linux/kvm_pfi.h>
#include <linux/kvm_pfi_netlink.h>

enum kvm_pfi_ioctl {
	KVM_PFI_IOCTL_GET_VERSION = KVM_PFI_GET_VERSION,
	KVM_PFI_IOCTL_ATTACH = KVM_PFI_ATTACH,
	KVM_PFI_IOCTL_DETACH = KVM_PFI_DETACH,
	KVM_PFI_IOCTL_LIST_VMS = KVM_PFI_LIST_VMS,
	KVM_PFI_IOCTL_VM_STATS = KVM_PFI_VM_STATS,
	KVM_PFI_IOCTL_TARGET_ADD = KVM_PFI_TARGET_ADD,
	KVM_PFI_IOCTL_TARGET_REMOVE = KVM_PFI_TARGET_REMOVE,
	KVM_PFI_IOCTL_TARGET_PAGES = KVM_PFI_TARGET_PAGES,
	KVM_PFI_IOCTL_TARGET_LIST = KVM_PFI_TARGET_LIST,
	KVM_PFI_IOCTL_EVENTS = KVM_PFI_EVENTS,
	KVM_PFI_IOCTL_SIGS_LOAD = KVM_PFI_SIGS_LOAD,
	KVM_PFI_IOCTL_SIGS_INFO = KVM_PFI_SIGS_INFO,
	KVM_PFI_IOCTL_SIGS_CLEAR = KVM_PFI_SIGS_CLEAR,
	KVM_PFI_IOCTL_LINUX_PROFILE = KVM_PFI_LINUX_PROFILE,
	KVM_PFI_IOCTL_PROCESS_LIST = KVM_PFI_PROCESS_LIST,
	KVM_PFI_IOCTL_PROCESS_VMAS = KVM_PFI_PROCESS_VMAS,
};
