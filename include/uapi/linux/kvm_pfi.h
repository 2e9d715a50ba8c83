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
#include <linux/kvm_pfi_netlink.h>	/* enums shared with the events */

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
/* Alone: become a controller of vm_fd's persistent attachment (no new one). */
#define KVM_PFI_ATTACH_CLAIM		(1U << 1)
#define KVM_PFI_ATTACH_FLAGS_ALL	(KVM_PFI_ATTACH_PERSISTENT | KVM_PFI_ATTACH_CLAIM)

struct kvm_pfi_attach {
	__s32 vm_fd;		/* in: a KVM VM file descriptor (KVM_CREATE_VM, or pidfd_getfd) */
	__u32 flags;		/* in: KVM_PFI_ATTACH_* */
	__u32 vm_id;		/* out (0 on input): handle for the other ioctls, never reused while loaded */
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
	__u32 nr_vcpus;		/* highest vcpu_idx seen since attach, plus one */
	char stats_id[KVM_PFI_STATS_ID_LEN];
};

/* A short buffer is filled and nr_vms still reports the total: retry larger. */
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

/*
 * vcpus[i] describes vcpu_idx i, for i below both the capacity and the
 * returned nr_vcpus (vCPUs that never ran in between read as zero).
 * ENOENT: vm_id not attached; E2BIG: capacity above KVM_PFI_MAX_VCPUS.
 *
 * kernel_*: entries at CPL 0 on which a KVM_PFI_TARGET_KERNEL page that
 * waited for injection was refused for the guest's configuration, at most
 * one count per entry (the first rule that failed; see
 * KVM_PFI_TARGET_KERNEL). Three of what were four reserved words: the
 * structure's size and the ioctl number are unchanged, and a module
 * without these counters leaves them 0.
 */
struct kvm_pfi_vm_stats {
	__u32 vm_id;		/* in */
	__u32 nr_vcpus;		/* in: capacity of vcpus[]; out: highest vcpu_idx seen, plus one */
	__u64 vcpus;		/* in: user pointer to struct kvm_pfi_vcpu_stats[nr_vcpus], may be 0 */
	__u64 entries;		/* out (0 on input): sum over all vCPUs, including those beyond KVM_PFI_MAX_VCPUS */
	__u64 exits;		/* out (0 on input): likewise */
	__u64 kernel_no_smap;	/* out (0 on input): user-half page, guest CR4.SMAP clear */
	__u64 kernel_fred;	/* out (0 on input): guest CR4.FRED set */
	__u64 kernel_guest_debug; /* out (0 on input): the VMM set KVM_GUESTDBG_ENABLE */
	__u64 writes_unreported; /* out (0 on input): guest writes to protected pages beyond write_reports_per_sec, restored but not reported */
};

/*
 * Targets: a guest virtual range in one guest address space of an attached
 * VM. Each page of it is walked; a resident page is reported at once, a
 * swapped-out one is brought back by injecting a #PF into the guest when a
 * vCPU runs in that address space and injection is safe. See
 * Documentation/design.rst.
 */
#define KVM_PFI_MAX_TARGETS		64	/* per VM */
#define KVM_PFI_MAX_TARGET_PAGES	512	/* 4 KiB pages per target (2 MiB) */

/*
 * KVM_PFI_TARGET_KERNEL: may inject at CPL 0 too; default user mode only. At
 * CPL 0 only with RFLAGS.IF=1, guest CR4.FRED clear and no KVM_SET_GUEST_DEBUG
 * (KVM_GUESTDBG_ENABLE) on the vCPU; a user-half page moreover only with
 * guest CR4.SMAP and RFLAGS.AC both set (the guest kernel is inside a uaccess
 * region): without SMAP, never. Meant for kernel-half ranges; on a user page
 * the fault may make an unrelated system call of the guest fail with EFAULT
 * (Documentation/design.rst, "Kernel-mode injection").
 */
#define KVM_PFI_TARGET_KERNEL	(1U << 0)	/* may inject at CPL 0 too (see above) */
#define KVM_PFI_TARGET_READ	(1U << 1)	/* deliver the page contents with the page-resident event */
#define KVM_PFI_TARGET_WRITE	(1U << 2)	/* inject write faults (W=1), e.g. to break copy-on-write */
#define KVM_PFI_TARGET_KPTI	(1U << 3)	/* guest uses Linux PTI: cr3 and cr3 ^ 4 KiB are one address space */
#define KVM_PFI_TARGET_PROTECT	(1U << 4)	/* write-track resident pages: guest writes give write-attempt events */
#define KVM_PFI_TARGET_ENFORCE	(1U << 5)	/* with PROTECT: restore the page's bytes after each guest write */
/*
 * KVM_PFI_TARGET_NO_VMA_CHECK: inject user-mode faults for this target's
 * pages without looking up the guest process's VMAs. Without it, a user-half
 * page gets a fault only on a VM with a Linux profile (KVM_PFI_LINUX_PROFILE),
 * once the module has found the process whose tables cr3 names, and only if
 * right before injecting a VMA of that process covers the address and allows
 * the access (not PROT_NONE, writable for a write fault, its protection key
 * allowed by the task's PKRU); a page no VMA covers or whose VMA forbids the
 * access fails (fail-reason no-vma, vma-denies). For guests that are not Linux
 * (or have no profile) this flag is the only way to inject at user addresses,
 * and the risk is the caller's: a fault at an address the guest OS does not
 * consider mapped and accessible makes it kill the task (SIGSEGV on Linux).
 * Kernel-half pages are never VMA-checked.
 */
#define KVM_PFI_TARGET_NO_VMA_CHECK	(1U << 6)
#define KVM_PFI_TARGET_FLAGS_ALL	(KVM_PFI_TARGET_KERNEL | KVM_PFI_TARGET_READ | \
					 KVM_PFI_TARGET_WRITE | KVM_PFI_TARGET_KPTI | \
					 KVM_PFI_TARGET_PROTECT | KVM_PFI_TARGET_ENFORCE | \
					 KVM_PFI_TARGET_NO_VMA_CHECK)
/* ENFORCE keeps a copy of each page: at most this many pages per target. */
#define KVM_PFI_MAX_ENFORCE_PAGES	64

/*
 * EINVAL: gva or len not page aligned, len 0, range not canonical or
 * wrapping, a kernel-half range without KVM_PFI_TARGET_KERNEL, unknown
 * flags, ENFORCE without PROTECT, rule_id or target_id set, timeout_ms above
 * 60000 or max_tries above 100. E2BIG: more than KVM_PFI_MAX_TARGET_PAGES
 * pages, or more than KVM_PFI_MAX_ENFORCE_PAGES with ENFORCE. ENOSPC: KVM_PFI_MAX_TARGETS targets on the VM. ENOENT: vm_id.
 */
struct kvm_pfi_target {
	__u32 vm_id;		/* in */
	__u32 flags;		/* in: KVM_PFI_TARGET_* */
	__u64 cr3;		/* in: guest CR3 of the address space (PCID and flag bits ignored) */
	__u64 gva;		/* in: first byte, page aligned */
	__u64 len;		/* in: bytes, a multiple of 4096 */
	__u32 target_id;	/* out (0 on input): never reused while the VM is attached */
	__u32 timeout_ms;	/* in: re-inject after this long without the page; 0: module parameter pf_timeout_ms */
	__u32 max_tries;	/* in: #PFs per page before it fails; 0: module parameter pf_max_tries */
	__u32 rule_id;		/* in: must be 0; out (KVM_PFI_TARGET_LIST): the rule that made the target, 0: KVM_PFI_TARGET_ADD */
};

struct kvm_pfi_target_remove {
	__u32 vm_id;
	__u32 target_id;
};

/*
 * The targets of a VM: up to nr_targets struct kvm_pfi_target (as added,
 * with target_id) at the user pointer targets; nr_targets returns how many
 * the VM has. ENOENT: vm_id.
 */
struct kvm_pfi_target_list {
	__u32 vm_id;		/* in */
	__u32 nr_targets;	/* in: capacity of targets[]; out: targets of the VM */
	__u64 targets;		/* in: user pointer to struct kvm_pfi_target[nr_targets] */
};

/* State of one page of a target. */
enum kvm_pfi_page_state {
	KVM_PFI_PAGE_WAITING = 0,	/* swapped out; waiting for a safe entry in its address space */
	KVM_PFI_PAGE_INJECTED = 1,	/* #PF injected, waiting for delivery / the guest's update */
	KVM_PFI_PAGE_RESIDENT = 2,	/* resident and reported */
	KVM_PFI_PAGE_FAILED = 3,	/* given up: see enum kvm_pfi_fail_reason in the event */
	KVM_PFI_PAGE_UNKNOWN = 4,	/* not walked yet */
};

/* kvm_pfi_page_info.flags */
#define KVM_PFI_PAGE_PROTECTED	(1U << 0)	/* write-tracked now (KVM_PFI_TARGET_PROTECT) */
#define KVM_PFI_PAGE_ENFORCED	(1U << 1)	/* and its bytes are kept to be restored */
#define KVM_PFI_PAGE_SCANNED	(1U << 2)	/* scanned with the active signature set */

struct kvm_pfi_page_info {
	__u64 gva;
	__u64 gpa;		/* when resident: the GVA's own 4 KiB page, also inside a 2 MiB / 1 GiB mapping */
	__u32 state;		/* enum kvm_pfi_page_state */
	__u32 how;		/* enum kvm_pfi_how (kvm_pfi_netlink.h), when resident */
	__u32 injections;	/* #PFs injected for this page */
	__u32 reinjections;	/* deliveries KVM had to re-inject (interrupted) */
	__u32 page_size;	/* bytes of the guest mapping, when resident */
	__u32 fail_reason;	/* enum kvm_pfi_fail_reason (kvm_pfi_netlink.h), when failed */
	__u32 entries_to_delivery; /* entries in the target's context until the last #PF was delivered */
	__u32 flags;		/* KVM_PFI_PAGE_* flags */
};

/* ENOENT: vm_id or target_id. A short buffer is filled; nr_pages returns the total. */
struct kvm_pfi_target_pages {
	__u32 vm_id;		/* in */
	__u32 target_id;	/* in */
	__u32 nr_pages;		/* in: capacity of pages[]; out: pages in the target */
	__u32 reserved;		/* must be 0 */
	__u64 pages;		/* in: user pointer to struct kvm_pfi_page_info[nr_pages] */
};

/*
 * Signature sets. KVM_PFI_SIGS_LOAD replaces the active set with a compiled
 * one, atomically: a set that fails validation is refused whole and the
 * active set stays. Every resident page of every target is scanned with the
 * active set (again after a load, and after a tracked write); a match is a
 * "detection" event. The kvm-pfi tool compiles the text rule format
 * (Documentation/uapi.rst) into this layout. All fields little-endian:
 *
 *   struct kvm_pfi_sigs_header  header
 *   struct kvm_pfi_sig_rule     rules[nr_rules]
 *   struct kvm_pfi_sig_pattern  patterns[nr_patterns]
 *   struct kvm_pfi_sig_segment  segments[nr_segments]
 *   __u8                        strings[strings_len]   (names, segment bytes)
 *
 * A rule matches when any of its patterns does. A pattern is a chain of
 * segments: each matches len bytes, byte i matching when
 * (b & mask[i]) == value[i]; then jump_min..jump_max bytes of anything
 * separate it from the next. Chains only go forward (next greater than the
 * segment's own index), so every pattern ends; segments may be shared.
 */
#define KVM_PFI_SIGS_MAGIC		0x5346504bU	/* "KPFS" */
#define KVM_PFI_SIGS_VERSION		1
#define KVM_PFI_SIGS_MAX_SIZE		(1U << 20)	/* bytes of a set */
#define KVM_PFI_SIGS_MAX_RULES		1024
#define KVM_PFI_SIGS_MAX_PATTERNS	1024	/* over all rules */
#define KVM_PFI_SIGS_MAX_SEGMENTS	8192
#define KVM_PFI_SIG_MAX_PATTERNS	16	/* per rule */
#define KVM_PFI_SIG_MAX_SEGMENTS	32	/* per pattern (chain length) */
#define KVM_PFI_SIG_MAX_JUMP		256	/* jump_max of one segment */
#define KVM_PFI_SIG_MAX_SPAN		1024	/* longest match of a pattern, jumps at their maximum */
#define KVM_PFI_SIG_NAME_MAX		63	/* [A-Za-z_][A-Za-z0-9_]*, not NUL-terminated in the set */
#define KVM_PFI_SIG_END			0xffff	/* segment.next: the pattern ends */

struct kvm_pfi_sigs_header {
	__u32 magic;		/* KVM_PFI_SIGS_MAGIC */
	__u32 version;		/* KVM_PFI_SIGS_VERSION */
	__u32 size;		/* bytes of the whole set, this header included */
	__u32 nr_rules;		/* at least 1 */
	__u32 nr_patterns;
	__u32 nr_segments;
	__u32 strings_len;
	__u32 reserved;		/* must be 0 */
};

struct kvm_pfi_sig_rule {
	__u32 name_off;		/* into strings */
	__u16 name_len;		/* 1..KVM_PFI_SIG_NAME_MAX */
	__u16 nr_patterns;	/* 1..KVM_PFI_SIG_MAX_PATTERNS, following the previous rule's */
};

struct kvm_pfi_sig_pattern {
	__u16 first_segment;
	__u16 reserved;		/* must be 0 */
};

struct kvm_pfi_sig_segment {
	__u32 bytes_off;	/* into strings: len (value, mask) byte pairs */
	__u16 len;		/* at least 1 */
	__u16 next;		/* following segment, or KVM_PFI_SIG_END */
	__u16 jump_min;		/* bytes skipped before next: jump_min..jump_max */
	__u16 jump_max;		/* at most KVM_PFI_SIG_MAX_JUMP; both 0 at the end */
};

/*
 * EINVAL: flags set, size 0, no rules. EFAULT: data. E2BIG: size above
 * KVM_PFI_SIGS_MAX_SIZE, a count above its limit, a chain longer than
 * KVM_PFI_SIG_MAX_SEGMENTS or a span above KVM_PFI_SIG_MAX_SPAN. EPROTO:
 * unknown version. ELOOP: a segment chain that goes backwards. EBADMSG:
 * anything else malformed (magic, truncated, out-of-bounds offsets, empty
 * segment, a jump above KVM_PFI_SIG_MAX_JUMP or not 0 on a last segment, a
 * pattern without one fully fixed byte, a bad name, value bits outside the
 * mask). ENOMEM.
 */
struct kvm_pfi_sigs_load {
	__u64 data;		/* in: user pointer to the set */
	__u32 size;		/* in: its bytes */
	__u32 flags;		/* in: must be 0 */
	__u32 generation;	/* out (0 on input): the active set's, new */
	__u32 nr_rules;		/* out (0 on input) */
};

struct kvm_pfi_sigs_info {
	__u32 generation;	/* of the active set; bumped by every load and clear */
	__u32 nr_rules;		/* 0: no set active */
	__u32 nr_patterns;
	__u32 size;		/* bytes of the active set */
	__u64 pages_scanned;	/* since the module was loaded */
	__u64 bytes_scanned;
	__u64 detections;
	__u64 reserved[2];
};

/*
 * Linux guests (Documentation/guest-linux.rst). KVM_PFI_LINUX_PROFILE gives
 * an attached VM the profile of its guest kernel: the text form that
 * `kvm-pfi profile build` writes (the offsets of the structure members the
 * walks read, the addresses of a few symbols). The module checks it against
 * the running guest before it takes it: from init_task (at its profile
 * address plus the KASLR slide), pid 0 named "swapper/0", its own parent,
 * without an mm, the task list must come back to init_task. Without
 * KVM_PFI_LINUX_SLIDE the module finds the slide itself: the one multiple of
 * 2 MiB below 1 GiB for which that check passes (0 first). A profile that
 * passes replaces the VM's previous one (its process table starts again);
 * one that fails leaves the previous one in place.
 *
 * The check reads guest memory through the guest's page tables, from the
 * address-space root of a vCPU seen in kernel mode: the call waits up to
 * KVM_PFI_LINUX_WALK_MS + 2 s for the check (an idle guest's timer interrupts
 * give a root at once; a walk in progress may delay it).
 *
 * EINVAL: unknown flags, reserved or out fields set, slide without
 * KVM_PFI_LINUX_SLIDE or not a multiple of 4096, len 0 or above
 * KVM_PFI_LINUX_PROFILE_MAX, text that is not a profile. EFAULT: text.
 * ENOENT: vm_id. EAGAIN: no vCPU of the VM was seen in 64-bit kernel mode
 * within the wait (the guest is not up yet). ENOEXEC: the profile does not
 * fit the running guest (no slide, or not the given one, passes the check).
 * EINTR: a signal came during the wait. EBUSY: another load of this VM is
 * waiting. ENOMEM.
 */
#define KVM_PFI_LINUX_PROFILE_MAX	65536	/* bytes of profile text */
#define KVM_PFI_LINUX_SLIDE		(1U << 0)	/* slide is given; else the module finds it */
#define KVM_PFI_LINUX_FLAGS_ALL		KVM_PFI_LINUX_SLIDE

struct kvm_pfi_linux_profile {
	__u32 vm_id;		/* in */
	__u32 flags;		/* in: KVM_PFI_LINUX_* */
	__u64 text;		/* in: user pointer to the profile text */
	__u32 len;		/* in: its bytes */
	__u32 nr_processes;	/* out (0 on input): processes on the task list at the check */
	__u64 slide;		/* in with KVM_PFI_LINUX_SLIDE, else 0; out: the KASLR slide found or given */
	__u64 init_task;	/* out (0 on input): run-time address of init_task */
};

/*
 * The processes of a Linux guest as the module's last walk of its task list
 * found them (thread-group leaders, as /proc lists them, init_task first),
 * in task-list order. The walk runs every KVM_PFI_LINUX_WALK_MS in the
 * module's work, never in a probe; process-start and process-exit events
 * report what changed from one walk to the next.
 */
#define KVM_PFI_LINUX_WALK_MS		1000
#define KVM_PFI_MAX_PROCESSES		32768	/* per VM: a longer task list ends the walk */
#define KVM_PFI_COMM_LEN		16
#define KVM_PFI_EXE_LEN			256	/* path bytes kept, NUL included */

struct kvm_pfi_process {
	__s32 pid;		/* tgid of the leader */
	__s32 ppid;		/* tgid of real_parent */
	__u64 cr3;		/* address-space root: guest physical address of mm->pgd; 0: kernel thread */
	__u64 task;		/* guest kernel address of its task_struct */
	__u64 mm;		/* guest kernel address of its mm_struct; 0: kernel thread */
	__u32 flags;		/* task_struct.flags (PF_*) */
	__u32 reserved;
	char comm[KVM_PFI_COMM_LEN];	/* NUL-padded */
	char exe[KVM_PFI_EXE_LEN];	/* mm->exe_file's path within its file system, NUL-terminated; "" if none */
};

/*
 * ENOENT: vm_id. ENODATA: the VM has no profile (KVM_PFI_LINUX_PROFILE).
 * A short buffer is filled; nr_processes returns the total.
 */
struct kvm_pfi_process_list {
	__u32 vm_id;		/* in */
	__u32 nr_processes;	/* in: capacity of processes[]; out: processes found */
	__u64 processes;	/* in: user pointer to struct kvm_pfi_process[nr_processes] */
	__u64 walks;		/* out: task-list walks since the profile was taken */
	__u64 walk_errors;	/* out: walks that ended early (a list changing under the walk, garbage) */
	__u64 walked_ns;	/* out: CLOCK_MONOTONIC of the walk the list is from */
	__s32 last_error;	/* out: the last failed walk's reason, enum kvm_pfi_walk_error; 0 none */
	__u32 reserved;		/* must be 0 */
};

/*
 * The VMAs of one process of a Linux guest, in address order, read from its
 * mm's VMA maple tree by the module's Linux work when asked (the call waits
 * for it, up to KVM_PFI_LINUX_WALK_MS + 2 s). The process is the one with
 * this pid in the last walk of the task list. A short buffer is filled;
 * nr_vmas returns the total.
 *
 * ENOENT: vm_id. ENODATA: the VM has no profile. ESRCH: no process with
 * this pid in the last walk, or a kernel thread (no mm). EAGAIN: the tree
 * changed under the walk three times, or the process is going. EINVAL:
 * reserved set, nr_vmas above KVM_PFI_MAX_VMAS. EBUSY: another such call for
 * this VM is waiting. EINTR, ENOMEM.
 */
#define KVM_PFI_MAX_VMAS		65536	/* per process (vm.max_map_count is 65530) */

struct kvm_pfi_vma {
	__u64 start;
	__u64 end;		/* exclusive */
	__u64 flags;		/* the guest's vm_flags: VM_READ 0x1, VM_WRITE 0x2, VM_EXEC 0x4, VM_MAYSHARE 0x80, ... */
	__u64 pgoff;		/* vm_pgoff: for a file, the offset in pages */
	char file[KVM_PFI_EXE_LEN];	/* vm_file's path within its file system, NUL-terminated; "" anonymous */
};

struct kvm_pfi_process_vmas {
	__u32 vm_id;		/* in */
	__s32 pid;		/* in */
	__u32 nr_vmas;		/* in: capacity of vmas[]; out: VMAs of the process */
	__u32 reserved;		/* must be 0 */
	__u64 vmas;		/* in: user pointer to struct kvm_pfi_vma[nr_vmas] */
	__u64 cr3;		/* out: the process's address-space root */
	__u64 start_code;	/* out: the mm's layout, as /proc/PID/stat has it */
	__u64 end_code;
	__u64 start_brk;	/* out: the heap is the VMA holding [start_brk, brk) */
	__u64 brk;
	__u64 start_stack;	/* out: the stack is the VMA holding start_stack */
};

/*
 * Guest kernel memory, as the guest kernel sees it: what a profile made
 * from the running guest reads (its BTF and kallsyms tables, the kernel
 * image's place; kvm-pfi profile build --vm, Documentation/guest-linux.rst).
 * Addresses in the kernel half (at or above 0xff00000000000000) are
 * translated through the guest's page tables: a root of a vCPU seen in
 * 64-bit kernel mode, fresh for each call, or swapper_pg_dir when the VM has
 * a profile. The module's Linux work does the reading, with the VMM's memory;
 * the call waits for it, up to KVM_PFI_LINUX_WALK_MS + 2 s. The VM needs no
 * profile.
 *
 * flags 0: reads len bytes at va into buf, up to the first page that does
 * not translate: done returns the bytes read (short, even 0, is no error).
 * KVM_PFI_KERNEL_PRESENT: buf receives one byte per page of [va, va + len),
 * 1 where the page translates and 0 elsewhere, as mincore(2) does; done
 * returns the pages that translate. cr3 returns the root read through.
 *
 * ENOENT: vm_id. EPERM: not the VM's owner. EINVAL: unknown flags, reserved
 * or out fields set, va below the kernel half, len 0 or above
 * KVM_PFI_KERNEL_READ_MAX (KVM_PFI_KERNEL_SPAN_MAX with PRESENT), va + len
 * past the end of the address space, PRESENT with va or len not a multiple
 * of 4096. EAGAIN: no vCPU of the VM was seen in 64-bit kernel mode within
 * the wait. EBUSY: another such call for this VM is waiting. EFAULT: buf.
 * EINTR, ENOMEM.
 */
#define KVM_PFI_KERNEL_PRESENT		(1U << 0)
#define KVM_PFI_KERNEL_FLAGS_ALL	KVM_PFI_KERNEL_PRESENT
#define KVM_PFI_KERNEL_READ_MAX		(1U << 20)	/* bytes per read */
#define KVM_PFI_KERNEL_SPAN_MAX		(1ULL << 30)	/* bytes of address space per PRESENT call */

struct kvm_pfi_kernel_read {
	__u32 vm_id;		/* in */
	__u32 flags;		/* in: KVM_PFI_KERNEL_* */
	__u64 va;		/* in: guest kernel virtual address */
	__u64 len;		/* in: bytes (PRESENT: bytes of address space) */
	__u64 buf;		/* in: user pointer: len bytes, or len / 4096 with PRESENT */
	__u64 done;		/* out (0 on input): bytes read, or pages present */
	__u64 cr3;		/* out (0 on input): the root the read went through */
};

/*
 * Rules: targets by process and region in a Linux guest (a VM with a
 * profile). A rule names a process, by its tgid or by name (its comm, or the
 * file name of its executable), and a region of it; after each walk of the
 * task list (every KVM_PFI_LINUX_WALK_MS) the module's Linux work reads the
 * VMAs of every process the rule names, processes started after the rule
 * included, and keeps targets over the region's pages: VMAs that touch are
 * merged, the result is cut into targets of at most KVM_PFI_MAX_TARGET_PAGES
 * pages (KVM_PFI_MAX_ENFORCE_PAGES with ENFORCE). A region that grows, moves
 * or is unmapped gets new targets and loses the old ones at that walk; the
 * targets of a process that exited end their pages with address-space-gone
 * and are removed one walk later. Such targets are ordinary targets
 * (KVM_PFI_TARGET_LIST shows their rule_id; target-added, page-resident and
 * target-removed events as for any), always VMA-checked. VMAs without any
 * access (PROT_NONE) and device mappings (VM_IO, VM_PFNMAP) are in no region.
 * Targets come out of the VM's KVM_PFI_MAX_TARGETS: pages no target can be
 * made for are counted in pages_uncovered. Documentation/guest-linux.rst.
 */
#define KVM_PFI_MAX_RULES		16	/* per VM */
#define KVM_PFI_RULE_NAME_LEN		64	/* process name and file pattern, NUL included */
#define KVM_PFI_RULE_PROCESSES		64	/* processes whose VMAs one walk reads, over all rules */

enum kvm_pfi_region {
	KVM_PFI_REGION_EXE = 1,		/* the VMAs of the executable (mm->exe_file) */
	KVM_PFI_REGION_STACK = 2,	/* [stack]: the anonymous VMA holding mm->start_stack */
	KVM_PFI_REGION_HEAP = 3,	/* [heap]: the anonymous VMA over [start_brk, brk) */
	KVM_PFI_REGION_FILE = 4,	/* VMAs of files whose path matches pattern (glob: '*', '?') */
	KVM_PFI_REGION_ANON = 5,	/* anonymous VMAs but [heap] and [stack] */
	KVM_PFI_REGION_ALL = 6,		/* every VMA */
};

/* Target flags a rule may give its targets; the others are EINVAL. */
#define KVM_PFI_RULE_TARGET_FLAGS	(KVM_PFI_TARGET_READ | KVM_PFI_TARGET_WRITE | \
					 KVM_PFI_TARGET_KPTI | KVM_PFI_TARGET_PROTECT | \
					 KVM_PFI_TARGET_ENFORCE)

/*
 * KVM_PFI_RULE_ADD. EINVAL: pid negative, or 0 with an empty name, or both a
 * pid and a name; a name or pattern without its NUL; region unknown; a pattern
 * with another region, or none with KVM_PFI_REGION_FILE; target_flags outside
 * KVM_PFI_RULE_TARGET_FLAGS, ENFORCE without PROTECT; an out field set.
 * ENOENT: vm_id. ENODATA: the VM has no profile. ENOSPC: KVM_PFI_MAX_RULES
 * rules. EPERM: not the VM's owner. The rule's first targets come with the
 * next walk (within KVM_PFI_LINUX_WALK_MS; the call does not wait).
 */
struct kvm_pfi_rule {
	__u32 vm_id;		/* in */
	__u32 rule_id;		/* out (0 on input): never reused while the VM is attached */
	__s32 pid;		/* in: the process with this tgid; 0: by name */
	__u32 region;		/* in: enum kvm_pfi_region */
	__u32 target_flags;	/* in: KVM_PFI_RULE_TARGET_FLAGS */
	__u32 nr_targets;	/* out (KVM_PFI_RULE_LIST): targets the rule has */
	char name[KVM_PFI_RULE_NAME_LEN];	/* in, with pid 0: comm (its first 15 bytes) or executable file name */
	char pattern[KVM_PFI_RULE_NAME_LEN];	/* in, KVM_PFI_REGION_FILE: glob over the file's path */
	__u64 pages;		/* out (KVM_PFI_RULE_LIST): pages its targets cover */
	__u64 pages_uncovered;	/* out (KVM_PFI_RULE_LIST): pages of its regions no target covers (limits) */
	__u32 nr_processes;	/* out (KVM_PFI_RULE_LIST): processes it named at the last walk */
	__u32 walk_errors;	/* out (KVM_PFI_RULE_LIST): VMA trees it could not read (their targets were kept) */
};

/* KVM_PFI_RULE_REMOVE: removes the rule and its targets. ENOENT: vm_id, rule_id. EPERM. */
struct kvm_pfi_rule_remove {
	__u32 vm_id;
	__u32 rule_id;
};

/* KVM_PFI_RULE_LIST: a short buffer is filled; nr_rules returns the total. ENOENT: vm_id. */
struct kvm_pfi_rule_list {
	__u32 vm_id;		/* in */
	__u32 nr_rules;		/* in: capacity of rules[]; out: rules of the VM */
	__u64 rules;		/* in: user pointer to struct kvm_pfi_rule[nr_rules] */
};

/* Why a walk of a Linux guest's structures ended early. */
enum kvm_pfi_walk_error {
	KVM_PFI_WALK_OK = 0,
	KVM_PFI_WALK_BAD_POINTER = 1,	/* a pointer outside the kernel half, or misaligned */
	KVM_PFI_WALK_READ = 2,		/* guest memory could not be read there */
	KVM_PFI_WALK_NOT_INIT_TASK = 3,	/* init_task no longer checks out */
	KVM_PFI_WALK_LIST_CORRUPT = 4,	/* an entry's prev does not point back */
	KVM_PFI_WALK_TOO_MANY = 5,	/* over KVM_PFI_MAX_PROCESSES */
	KVM_PFI_WALK_OTHER = 6,		/* another walk error (a name, a tree) */
};

/*
 * The event stream: KVM_PFI_EVENTS returns a new read-only descriptor
 * (O_CLOEXEC) on which read() returns whole struct kvm_pfi_event records,
 * the same events the netlink group carries, and poll() reports POLLIN when
 * one is queued. A read whose buffer cannot hold the next record fails with
 * EINVAL; an empty queue blocks, or fails with EAGAIN under O_NONBLOCK.
 * Each descriptor queues up to KVM_PFI_EVENT_QUEUE records; more are dropped
 * and counted in the next record's "lost". At most KVM_PFI_MAX_EVENT_READERS
 * descriptors exist at once (ENOSPC).
 */
#define KVM_PFI_EVENT_VERSION		3
#define KVM_PFI_EVENT_QUEUE		256
#define KVM_PFI_MAX_EVENT_READERS	8
#define KVM_PFI_EVENT_DATA_LEN		4096

struct kvm_pfi_event {
	__u16 version;		/* KVM_PFI_EVENT_VERSION */
	__u16 type;		/* the netlink command: KVM_PFI_CMD_VM_ATTACHED, ... */
	__u32 size;		/* bytes of this record, data included */
	__u64 time_ns;		/* CLOCK_REALTIME when the event was made */
	__u32 vm_id;
	__u32 target_id;	/* target events */
	__u64 cr3;		/* target and page events */
	__u64 gva;
	__u64 gpa;		/* page-resident */
	__u64 len;		/* target-added */
	__u32 page_size;	/* page-resident */
	__u32 how;		/* page-resident: enum kvm_pfi_how */
	__u32 injections;	/* page events */
	__u32 reinjections;	/* page-resident */
	__u32 fail_reason;	/* page-failed: enum kvm_pfi_fail_reason */
	__u32 detach_reason;	/* vm-detached: enum kvm_pfi_detach_reason */
	__u32 flags;		/* vm-attached: attach flags; target-added: target flags */
	__s32 vmm_pid;		/* VM events */
	__u64 entries;		/* vm-detached */
	__u64 exits;		/* vm-detached */
	__u32 lost;		/* records this reader lost before this one */
	__u32 data_len;		/* bytes that follow: page contents, a write's new bytes, or process-start's exe path */
	__u32 rule_id;		/* detection: index of the rule in its set */
	__u32 offset;		/* detection: of the match in its page; write-attempt: of the write */
	__u32 length;		/* detection: bytes matched; write-attempt: bytes written */
	__u32 generation;	/* detection, sigs-loaded: the signature set's */
	__u32 restored;		/* write-attempt: 1 if the old bytes were put back */
	__u32 nr_rules;		/* sigs-loaded */
	char rule_name[KVM_PFI_SIG_NAME_MAX + 1];	/* detection, NUL-terminated */
	__s32 pid;		/* process events: the process (its tgid) */
	__s32 ppid;		/* process-start: its parent's tgid */
	__u32 task_flags;	/* process events: task_struct.flags (PF_*) */
	__u32 reserved2;
	__u64 task;		/* process events: guest kernel address of its task_struct */
	char comm[KVM_PFI_COMM_LEN];	/* process events, NUL-padded */
	/* followed by data_len bytes */
};

#define KVM_PFI_GET_VERSION	_IOR(KVM_PFI_IOC_MAGIC, 0x00, struct kvm_pfi_version)
#define KVM_PFI_ATTACH		_IOWR(KVM_PFI_IOC_MAGIC, 0x01, struct kvm_pfi_attach)
#define KVM_PFI_DETACH		_IOW(KVM_PFI_IOC_MAGIC, 0x02, struct kvm_pfi_detach)
#define KVM_PFI_LIST_VMS	_IOWR(KVM_PFI_IOC_MAGIC, 0x03, struct kvm_pfi_vm_list)
#define KVM_PFI_VM_STATS	_IOWR(KVM_PFI_IOC_MAGIC, 0x04, struct kvm_pfi_vm_stats)
#define KVM_PFI_TARGET_ADD	_IOWR(KVM_PFI_IOC_MAGIC, 0x10, struct kvm_pfi_target)
#define KVM_PFI_TARGET_REMOVE	_IOW(KVM_PFI_IOC_MAGIC, 0x11, struct kvm_pfi_target_remove)
#define KVM_PFI_TARGET_PAGES	_IOWR(KVM_PFI_IOC_MAGIC, 0x12, struct kvm_pfi_target_pages)
#define KVM_PFI_TARGET_LIST	_IOWR(KVM_PFI_IOC_MAGIC, 0x13, struct kvm_pfi_target_list)
#define KVM_PFI_EVENTS		_IO(KVM_PFI_IOC_MAGIC, 0x20)
#define KVM_PFI_SIGS_LOAD	_IOWR(KVM_PFI_IOC_MAGIC, 0x30, struct kvm_pfi_sigs_load)
#define KVM_PFI_SIGS_INFO	_IOR(KVM_PFI_IOC_MAGIC, 0x31, struct kvm_pfi_sigs_info)
#define KVM_PFI_SIGS_CLEAR	_IO(KVM_PFI_IOC_MAGIC, 0x32)
#define KVM_PFI_LINUX_PROFILE	_IOWR(KVM_PFI_IOC_MAGIC, 0x40, struct kvm_pfi_linux_profile)
#define KVM_PFI_PROCESS_LIST	_IOWR(KVM_PFI_IOC_MAGIC, 0x41, struct kvm_pfi_process_list)
#define KVM_PFI_PROCESS_VMAS	_IOWR(KVM_PFI_IOC_MAGIC, 0x42, struct kvm_pfi_process_vmas)
#define KVM_PFI_KERNEL_READ	_IOWR(KVM_PFI_IOC_MAGIC, 0x43, struct kvm_pfi_kernel_read)
#define KVM_PFI_RULE_ADD	_IOWR(KVM_PFI_IOC_MAGIC, 0x50, struct kvm_pfi_rule)
#define KVM_PFI_RULE_REMOVE	_IOW(KVM_PFI_IOC_MAGIC, 0x51, struct kvm_pfi_rule_remove)
#define KVM_PFI_RULE_LIST	_IOWR(KVM_PFI_IOC_MAGIC, 0x52, struct kvm_pfi_rule_list)

#endif /* _UAPI_LINUX_KVM_PFI_H */
