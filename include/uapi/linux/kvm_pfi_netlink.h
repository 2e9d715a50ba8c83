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

/**
 * enum kvm_pfi_how - How a target page became resident.
 * @KVM_PFI_HOW_ALREADY_RESIDENT: It was resident when first walked; nothing
 *   was injected.
 * @KVM_PFI_HOW_INJECTED: The guest brought it in after kvm-pfi injected a page
 *   fault.
 * @KVM_PFI_HOW_GUEST: The guest brought it in by itself.
 * @KVM_PFI_HOW_INJECTED_FILE: The guest brought it in from its file or shared
 *   memory after kvm-pfi injected a page fault: its entry was empty (the guest
 *   had dropped the page; no swap entry) and the VMA check found a file-backed
 *   or shared mapping.
 */
enum kvm_pfi_how {
	KVM_PFI_HOW_ALREADY_RESIDENT,
	KVM_PFI_HOW_INJECTED,
	KVM_PFI_HOW_GUEST,
	KVM_PFI_HOW_INJECTED_FILE,
};

/**
 * enum kvm_pfi_fail_reason - Why kvm-pfi gave up on a target page.
 * @KVM_PFI_FAIL_REASON_TIMEOUT: The page did not come back after the
 *   configured number of faults.
 * @KVM_PFI_FAIL_REASON_ADDRESS_SPACE_GONE: The address space (process) went
 *   away.
 * @KVM_PFI_FAIL_REASON_INVALID_TABLES: The guest page tables could not be
 *   walked (reserved bits, outside guest memory).
 * @KVM_PFI_FAIL_REASON_UNMAPPED: Nothing is mapped there; a fault would kill
 *   the task.
 * @KVM_PFI_FAIL_REASON_NOT_SWAPPED: The entry is not a swap entry (hwpoison,
 *   device-private, marker, unknown).
 * @KVM_PFI_FAIL_REASON_NO_VMA: No VMA of the process covers the address
 *   (checked through the Linux profile right before injecting); a fault would
 *   kill the task.
 * @KVM_PFI_FAIL_REASON_VMA_DENIES: The VMA covering the address forbids the
 *   access (PROT_NONE, a write to a read-only mapping); a fault would kill the
 *   task.
 */
enum kvm_pfi_fail_reason {
	KVM_PFI_FAIL_REASON_TIMEOUT,
	KVM_PFI_FAIL_REASON_ADDRESS_SPACE_GONE,
	KVM_PFI_FAIL_REASON_INVALID_TABLES,
	KVM_PFI_FAIL_REASON_UNMAPPED,
	KVM_PFI_FAIL_REASON_NOT_SWAPPED,
	KVM_PFI_FAIL_REASON_NO_VMA,
	KVM_PFI_FAIL_REASON_VMA_DENIES,
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
	KVM_PFI_A_EVENT_TARGET_ID,
	KVM_PFI_A_EVENT_TARGET_FLAGS,
	KVM_PFI_A_EVENT_CR3,
	KVM_PFI_A_EVENT_GVA,
	KVM_PFI_A_EVENT_LEN,
	KVM_PFI_A_EVENT_GPA,
	KVM_PFI_A_EVENT_PAGE_SIZE,
	KVM_PFI_A_EVENT_HOW,
	KVM_PFI_A_EVENT_INJECTIONS,
	KVM_PFI_A_EVENT_REINJECTIONS,
	KVM_PFI_A_EVENT_FAIL_REASON,
	KVM_PFI_A_EVENT_DATA,
	KVM_PFI_A_EVENT_RULE_ID,
	KVM_PFI_A_EVENT_RULE_NAME,
	KVM_PFI_A_EVENT_OFFSET,
	KVM_PFI_A_EVENT_LENGTH,
	KVM_PFI_A_EVENT_GENERATION,
	KVM_PFI_A_EVENT_RESTORED,
	KVM_PFI_A_EVENT_NR_RULES,
	KVM_PFI_A_EVENT_LOST,
	KVM_PFI_A_EVENT_PID,
	KVM_PFI_A_EVENT_PPID,
	KVM_PFI_A_EVENT_COMM,
	KVM_PFI_A_EVENT_TASK,
	KVM_PFI_A_EVENT_TASK_FLAGS,
	KVM_PFI_A_EVENT_EXE,

	__KVM_PFI_A_EVENT_MAX,
	KVM_PFI_A_EVENT_MAX = (__KVM_PFI_A_EVENT_MAX - 1)
};

enum {
	KVM_PFI_CMD_VM_ATTACHED = 1,
	KVM_PFI_CMD_VM_DETACHED,
	KVM_PFI_CMD_TARGET_ADDED,
	KVM_PFI_CMD_TARGET_REMOVED,
	KVM_PFI_CMD_PAGE_RESIDENT,
	KVM_PFI_CMD_PAGE_FAILED,
	KVM_PFI_CMD_DETECTION,
	KVM_PFI_CMD_WRITE_ATTEMPT,
	KVM_PFI_CMD_SIGS_LOADED,
	KVM_PFI_CMD_PROCESS_START,
	KVM_PFI_CMD_PROCESS_EXIT,

	__KVM_PFI_CMD_MAX,
	KVM_PFI_CMD_MAX = (__KVM_PFI_CMD_MAX - 1)
};

#define KVM_PFI_MCGRP_EVENTS	"events"

#endif /* _UAPI_LINUX_KVM_PFI_NETLINK_H */
