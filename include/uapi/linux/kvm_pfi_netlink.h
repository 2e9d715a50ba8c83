/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/* Do not edit directly, auto-generated from: */
/*	Documentation/netlink/specs/kvm_pfi.yaml */
/* YNL-GEN uapi header */
/* To regenerate run: scripts/ynl-regen.sh */

#ifndef _UAPI_LINUX_KVM_PFI_NETLINK_H
#define _UAPI_LINUX_KVM_PFI_NETLINK_H

#define KVM_PFI_FAMILY_NAME	"kvm_pfi"
#define KVM_PFI_FAMILY_VERSION	1

/**
 * enum kvm_pfi_detach_reason - Why an attached VM stopped being attached.
 * @KVM_PFI_DETACH_REASON_REQUESTED: KVM_PFI_DETACH.
 * @KVM_PFI_DETACH_REASON_FILE_CLOSED: The /dev/kvm_pfi file that attached it
 *   was closed.
 * @KVM_PFI_DETACH_REASON_VM_EXITED: The module held the last reference; the
 *   VMM had closed the VM.
 * @KVM_PFI_DETACH_REASON_UNLOAD: The module was unloaded.
 */
enum kvm_pfi_detach_reason {
	KVM_PFI_DETACH_REASON_REQUESTED,
	KVM_PFI_DETACH_REASON_FILE_CLOSED,
	KVM_PFI_DETACH_REASON_VM_EXITED,
	KVM_PFI_DETACH_REASON_UNLOAD,
};

enum {
	KVM_PFI_A_EVENT_PAD = 1,
	KVM_PFI_A_EVENT_VM_ID,
	KVM_PFI_A_EVENT_VMM_PID,
	KVM_PFI_A_EVENT_STATS_ID,
	KVM_PFI_A_EVENT_ATTACH_FLAGS,
	KVM_PFI_A_EVENT_DETACH_REASON,
	KVM_PFI_A_EVENT_ENTRIES,
	KVM_PFI_A_EVENT_EXITS,

	__KVM_PFI_A_EVENT_MAX,
	KVM_PFI_A_EVENT_MAX = (__KVM_PFI_A_EVENT_MAX - 1)
};

enum {
	KVM_PFI_CMD_VM_ATTACHED = 1,
	KVM_PFI_CMD_VM_DETACHED,

	__KVM_PFI_CMD_MAX,
	KVM_PFI_CMD_MAX = (__KVM_PFI_CMD_MAX - 1)
};

#define KVM_PFI_MCGRP_EVENTS	"events"

#endif /* _UAPI_LINUX_KVM_PFI_NETLINK_H */
