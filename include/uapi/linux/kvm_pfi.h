/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kvm-pfi: memory introspection of KVM guests from the host.
 *
 * The one definition of the ioctl ABI of /dev/kvm_pfi. The module and the
 * kvm-pfi tool both derive their view of it from this file with bindgen.
 * See Documentation/uapi.rst.
 *
 * Versioning: the ioctl numbers encode the size of their argument, so a
 * changed structure is a new ioctl. Every "flags" and "reserved" field must be
 * zero (EINVAL otherwise); new behaviour is added behind new flag bits.
 * KVM_PFI_GET_VERSION reports KVM_PFI_ABI_VERSION and the module's limits.
 */
#ifndef _UAPI_LINUX_KVM_PFI_H
#define _UAPI_LINUX_KVM_PFI_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define KVM_PFI_ABI_VERSION	1
#define KVM_PFI_DEVICE_NAME	"kvm_pfi"

/* 0xB9 is not claimed in Documentation/userspace-api/ioctl/ioctl-number.rst. */
#define KVM_PFI_IOC_MAGIC	0xB9

/* Module limits, also reported by KVM_PFI_GET_VERSION. */
#define KVM_PFI_MAX_VMS		16	/* attached VMs at once, all files */
#define KVM_PFI_MAX_VCPUS	256	/* vCPUs with per-vCPU state per VM */
#define KVM_PFI_STATS_ID_LEN	48	/* KVM's stats id ("kvm-<pid>"), NUL-terminated */

struct kvm_pfi_version {
	__u32 abi_version;	/* out: KVM_PFI_ABI_VERSION */
	__u32 max_vms;		/* out: KVM_PFI_MAX_VMS */
	__u32 max_vcpus;	/* out: KVM_PFI_MAX_VCPUS */
	__u32 vendor;		/* out: enum kvm_pfi_vendor of the loaded KVM backend */
};

enum kvm_pfi_vendor {
	KVM_PFI_VENDOR_UNKNOWN = 0,
	KVM_PFI_VENDOR_SVM = 1,
	KVM_PFI_VENDOR_VMX = 2,
};

/*
 * Attach flags.
 * PERSISTENT: the attachment belongs to the module, not to the file that made
 * it; it ends on KVM_PFI_DETACH (from any opener), when the VM's VMM exits,
 * or on module unload. Without it, closing the file detaches the VM.
 */
#define KVM_PFI_ATTACH_PERSISTENT	(1U << 0)
#define KVM_PFI_ATTACH_FLAGS_ALL	(KVM_PFI_ATTACH_PERSISTENT)

struct kvm_pfi_attach {
	__s32 vm_fd;		/* in: a KVM VM file descriptor (KVM_CREATE_VM, or pidfd_getfd) */
	__u32 flags;		/* in: KVM_PFI_ATTACH_* */
	__u32 vm_id;		/* out: handle for the other ioctls, never reused while loaded */
	__u32 reserved;		/* must be 0 */
};

struct kvm_pfi_detach {
	__u32 vm_id;		/* in */
	__u32 reserved;		/* must be 0 */
};

struct kvm_pfi_vm_info {
	__u32 vm_id;
	__s32 vmm_pid;		/* the VM's creator, as KVM records it */
	__u32 flags;		/* KVM_PFI_ATTACH_* it was attached with */
	__u32 nr_vcpus;		/* vCPUs that have entered the guest since attach */
	char stats_id[KVM_PFI_STATS_ID_LEN];
};

struct kvm_pfi_vm_list {
	__u32 nr_vms;		/* in: capacity of vms[]; out: number of attached VMs */
	__u32 reserved;		/* must be 0 */
	__u64 vms;		/* in: user pointer to struct kvm_pfi_vm_info[nr_vms] */
};

struct kvm_pfi_vcpu_stats {
	__u32 vcpu_idx;		/* KVM's vcpu_idx */
	__u32 reserved;
	__u64 entries;		/* kvm_entry events seen since attach */
	__u64 exits;		/* kvm_exit events seen since attach */
};

struct kvm_pfi_vm_stats {
	__u32 vm_id;		/* in */
	__u32 nr_vcpus;		/* in: capacity of vcpus[]; out: vCPUs with state */
	__u64 vcpus;		/* in: user pointer to struct kvm_pfi_vcpu_stats[nr_vcpus], may be 0 */
	__u64 entries;		/* out: sum over all vCPUs, including those beyond KVM_PFI_MAX_VCPUS */
	__u64 exits;		/* out: likewise */
	__u64 reserved[4];	/* must be 0 */
};

#define KVM_PFI_GET_VERSION	_IOR(KVM_PFI_IOC_MAGIC, 0x00, struct kvm_pfi_version)
#define KVM_PFI_ATTACH		_IOWR(KVM_PFI_IOC_MAGIC, 0x01, struct kvm_pfi_attach)
#define KVM_PFI_DETACH		_IOW(KVM_PFI_IOC_MAGIC, 0x02, struct kvm_pfi_detach)
#define KVM_PFI_LIST_VMS	_IOWR(KVM_PFI_IOC_MAGIC, 0x03, struct kvm_pfi_vm_list)
#define KVM_PFI_VM_STATS	_IOWR(KVM_PFI_IOC_MAGIC, 0x04, struct kvm_pfi_vm_stats)

#endif /* _UAPI_LINUX_KVM_PFI_H */
