// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-pfi foundation tests: attach/detach and their errors, counters
 * against a guest that makes a known number of exits, reference lifetime
 * when files close or the VMM dies, and unload under a running VM.
 *
 * Each test controls its ground truth: the guest's own exit count, KVM's
 * debugfs directory of the VM (present exactly while the VM exists), the
 * errno the UAPI documents.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <linux/capability.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#include "kvm_pfi_util.h"

#define GUEST_EXITS	1000

/*
 * The stream record is version 3: version 2's fields where they were (up to
 * rule_name), the process events' fields after them.
 */
_Static_assert(KVM_PFI_EVENT_VERSION == 3, "stream record version");
_Static_assert(offsetof(struct kvm_pfi_event, rule_name) + KVM_PFI_SIG_NAME_MAX + 1 == 200 &&
	       offsetof(struct kvm_pfi_event, pid) == 200 &&
	       offsetof(struct kvm_pfi_event, task) == 216 &&
	       offsetof(struct kvm_pfi_event, comm) == 224 &&
	       sizeof(struct kvm_pfi_event) == 240, "stream record layout");

/* Exactly GUEST_EXITS port-I/O exits to userspace (one per ucall), then done. */
static void guest_sync_loop(void)
{
	for (int i = 0; i < GUEST_EXITS; i++)
		GUEST_SYNC(i);
	GUEST_DONE();
}

/* Runs the vCPU to GUEST_DONE, checking each sync; returns the syncs seen. */
static int run_to_done(struct kvm_vcpu *vcpu)
{
	struct ucall uc;
	int syncs = 0;

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			TEST_ASSERT(uc.args[1] == (uint64_t)syncs, "sync %lu, want %d",
				    uc.args[1], syncs);
			syncs++;
			break;
		case UCALL_DONE:
			return syncs;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		default:
			TEST_FAIL("unexpected ucall %lu", uc.cmd);
		}
	}
}

/* KVM names a VM's debugfs directory "<pid>-<vm fd>"; it exists exactly
 * while the VM does (created in kvm_create_vm, removed in kvm_destroy_vm). */
static bool kvm_debugfs_has_vm(pid_t pid, int vm_fd)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/kernel/debug/kvm/%d-%d", pid, vm_fd);
	return stat(path, &st) == 0;
}

static bool wait_until(bool (*cond)(void *), void *arg, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 20) {
		if (cond(arg))
			return true;
		usleep(20 * 1000);
	}
	return cond(arg);
}

/* Ground truth for the module's vendor: the svm / vmx flag in /proc/cpuinfo. */
static int cpuinfo_vendor(void)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	int vendor = KVM_PFI_VENDOR_UNKNOWN;
	char line[4096];

	if (!f)
		return -1;
	while (vendor == KVM_PFI_VENDOR_UNKNOWN && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		if (strstr(line, " svm ") || strstr(line, " svm\n"))
			vendor = KVM_PFI_VENDOR_SVM;
		else if (strstr(line, " vmx ") || strstr(line, " vmx\n"))
			vendor = KVM_PFI_VENDOR_VMX;
	}
	fclose(f);
	return vendor;
}

TEST(version_and_limits)
{
	struct kvm_pfi_version v = { 0 };
	int pfi = pfi_open();

	ASSERT_LE(0, pfi);
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_GET_VERSION, &v));
	EXPECT_EQ(KVM_PFI_ABI_VERSION, v.abi_version);
	EXPECT_EQ(KVM_PFI_MAX_VMS, v.max_vms);
	EXPECT_EQ(KVM_PFI_MAX_VCPUS, v.max_vcpus);
	/* The vendor the CPU's own flags name. */
	EXPECT_EQ(cpuinfo_vendor(), v.vendor);
	/* An ioctl number of another ABI (other size) is unknown. */
	EXPECT_EQ(-ENOTTY, pfi_ioctl(pfi, _IOR(KVM_PFI_IOC_MAGIC, 0x00, __u64), &v));
	EXPECT_EQ(-ENOTTY, pfi_ioctl(pfi, _IO(KVM_PFI_IOC_MAGIC, 0x7f), NULL));
	close(pfi);
}

TEST(device_is_root_only)
{
	struct stat st;

	ASSERT_EQ(0, stat(KVM_PFI_DEV, &st));
	EXPECT_EQ(0600, st.st_mode & 07777);
	EXPECT_EQ(0, st.st_uid);
	EXPECT_TRUE(S_ISCHR(st.st_mode));
}

/* Root without CAP_SYS_ADMIN passes the file mode but not the open check. */
TEST(open_without_cap_sys_admin_is_refused)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (!pid) {
		if (syscall(__NR_capget, &hdr, data))
			_exit(10);
		data[0].effective &= ~(1u << CAP_SYS_ADMIN);
		if (syscall(__NR_capset, &hdr, data))
			_exit(11);
		_exit(pfi_open() < 0 && errno == EPERM ? 0 : 12);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* An unprivileged user cannot even open it (mode 0600, owned by root). */
TEST(open_as_unprivileged_user_is_refused)
{
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (!pid) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(10);
		_exit(pfi_open() < 0 && errno == EACCES ? 0 : 12);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST(attach_refuses_what_is_not_a_vm)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_sync_loop);
	int pfi = pfi_open(), devnull = open("/dev/null", O_RDWR);
	int kvm_dev = open("/dev/kvm", O_RDWR);
	struct kvm_pfi_attach a;

	ASSERT_LE(0, pfi);
	EXPECT_EQ(-EBADF, pfi_attach(pfi, -1, 0, NULL));
	EXPECT_EQ(-EBADF, pfi_attach(pfi, 100000, 0, NULL));
	EXPECT_EQ(-EINVAL, pfi_attach(pfi, devnull, 0, NULL));
	EXPECT_EQ(-EINVAL, pfi_attach(pfi, kvm_dev, 0, NULL));
	EXPECT_EQ(-EINVAL, pfi_attach(pfi, vcpu->fd, 0, NULL));
	EXPECT_EQ(-EINVAL, pfi_attach(pfi, pfi, 0, NULL));
	/* Unknown flags, reserved fields, and an output field set on input. */
	EXPECT_EQ(-EINVAL, pfi_attach(pfi, vm->fd, 1u << 31, NULL));
	a = (struct kvm_pfi_attach){ .vm_fd = vm->fd, .reserved = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_ATTACH, &a));
	a = (struct kvm_pfi_attach){ .vm_fd = vm->fd, .vm_id = 7 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_ATTACH, &a));
	/* A bad pointer: EFAULT, and nothing attached. */
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_ATTACH, (void *)8));
	EXPECT_EQ(0, pfi_nr_attached(pfi));
	close(kvm_dev);
	close(devnull);
	close(pfi);
	kvm_vm_free(vm);
}

TEST(attach_twice_detach_unattached)
{
	struct kvm_vm *vm = vm_create_barebones();
	int pfi = pfi_open(), other = pfi_open();
	uint32_t id, id2;

	ASSERT_LE(0, pfi);
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	EXPECT_NE(0, id);
	/* The same VM again, from this file or another: EEXIST, unchanged. */
	EXPECT_EQ(-EEXIST, pfi_attach(pfi, vm->fd, 0, &id2));
	EXPECT_EQ(-EEXIST, pfi_attach(other, vm->fd, KVM_PFI_ATTACH_PERSISTENT, &id2));
	EXPECT_EQ(1, pfi_nr_attached(pfi));
	/* Another file cannot detach what this file owns. */
	EXPECT_EQ(-EPERM, pfi_detach(other, id));
	EXPECT_EQ(-ENOENT, pfi_detach(pfi, id + 1000));
	struct kvm_pfi_detach d = { .vm_id = id, .reserved = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_DETACH, &d));
	EXPECT_EQ(1, pfi_nr_attached(pfi));
	ASSERT_EQ(0, pfi_detach(pfi, id));
	EXPECT_EQ(-ENOENT, pfi_detach(pfi, id));
	EXPECT_EQ(0, pfi_nr_attached(pfi));
	/* Ids are not reused. */
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id2));
	EXPECT_NE(id, id2);
	close(other);
	close(pfi);
	kvm_vm_free(vm);
}

TEST(too_many_vms)
{
	struct kvm_vm *vms[KVM_PFI_MAX_VMS + 1];
	int pfi = pfi_open();
	uint32_t id;

	ASSERT_LE(0, pfi);
	for (int i = 0; i <= KVM_PFI_MAX_VMS; i++)
		vms[i] = vm_create_barebones();
	for (int i = 0; i < KVM_PFI_MAX_VMS; i++)
		ASSERT_EQ(0, pfi_attach(pfi, vms[i]->fd, 0, &id));
	EXPECT_EQ(-ENOSPC, pfi_attach(pfi, vms[KVM_PFI_MAX_VMS]->fd, 0, &id));
	EXPECT_EQ(KVM_PFI_MAX_VMS, pfi_nr_attached(pfi));
	/* LIST_VMS reports the total even when the buffer is short. */
	struct kvm_pfi_vm_info info[2];
	struct kvm_pfi_vm_list l = { .nr_vms = 2, .vms = (uintptr_t)info };
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_LIST_VMS, &l));
	EXPECT_EQ(KVM_PFI_MAX_VMS, l.nr_vms);
	EXPECT_EQ(getpid(), info[0].vmm_pid);
	close(pfi);
	/* Closing the file detached all of them. */
	pfi = pfi_open();
	EXPECT_EQ(0, pfi_nr_attached(pfi));
	close(pfi);
	for (int i = 0; i <= KVM_PFI_MAX_VMS; i++)
		kvm_vm_free(vms[i]);
}

TEST(stats_errors)
{
	struct kvm_vm *vm = vm_create_barebones();
	struct kvm_pfi_vm_stats st;
	int pfi = pfi_open();
	uint32_t id;

	ASSERT_LE(0, pfi);
	EXPECT_EQ(-ENOENT, pfi_stats(pfi, 12345, &st, NULL, 0));
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	EXPECT_EQ(-E2BIG, pfi_stats(pfi, id, &st, NULL, KVM_PFI_MAX_VCPUS + 1));
	/* The counters are out only, like entries. */
	st = (struct kvm_pfi_vm_stats){ .vm_id = id, .entries = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_VM_STATS, &st));
	st = (struct kvm_pfi_vm_stats){ .vm_id = id, .writes_unreported = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_VM_STATS, &st));
	st = (struct kvm_pfi_vm_stats){ .vm_id = id, .kernel_no_smap = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_VM_STATS, &st));
	st = (struct kvm_pfi_vm_stats){ .vm_id = id, .kernel_fred = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_VM_STATS, &st));
	st = (struct kvm_pfi_vm_stats){ .vm_id = id, .kernel_guest_debug = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_VM_STATS, &st));
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_VM_STATS, (void *)8));
	/* No vCPU has run: nothing counted. */
	ASSERT_EQ(0, pfi_stats(pfi, id, &st, NULL, 0));
	EXPECT_EQ(0, st.entries);
	EXPECT_EQ(0, st.exits);
	EXPECT_EQ(0, st.nr_vcpus);
	EXPECT_EQ(0, st.kernel_no_smap);
	EXPECT_EQ(0, st.kernel_fred);
	EXPECT_EQ(0, st.kernel_guest_debug);
	EXPECT_EQ(0, st.writes_unreported);
	close(pfi);
	kvm_vm_free(vm);
}

/* The guest makes exactly GUEST_EXITS exits to userspace: the module must
 * have seen at least that many, and as many entries as exits. */
TEST(counts_entries_and_exits)
{
	struct kvm_pfi_vcpu_stats vs[2];
	struct kvm_pfi_vm_stats st;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_sync_loop);
	int pfi = pfi_open();
	uint32_t id;

	ASSERT_LE(0, pfi);
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	ASSERT_EQ(GUEST_EXITS, run_to_done(vcpu));
	ASSERT_EQ(0, pfi_stats(pfi, id, &st, vs, 2));
	TH_LOG("entries %llu exits %llu", st.entries, st.exits);
	/* GUEST_EXITS syncs + GUEST_DONE, each an I/O exit. */
	EXPECT_LE(GUEST_EXITS + 1, st.exits);
	EXPECT_LE(st.exits, st.entries + 1);
	EXPECT_LE(st.entries, st.exits + 1);
	ASSERT_EQ(1, st.nr_vcpus);
	EXPECT_EQ(vcpu->id, vs[0].vcpu_idx);
	EXPECT_EQ(st.exits, vs[0].exits);
	EXPECT_EQ(st.entries, vs[0].entries);
	close(pfi);
	kvm_vm_free(vm);
}

/* A VM nobody attached is not counted (and costs one load per probe). */
TEST(unattached_vm_is_not_counted)
{
	struct kvm_vcpu *vcpu, *vcpu2;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_sync_loop);
	struct kvm_vm *watched = vm_create_with_one_vcpu(&vcpu2, guest_sync_loop);
	struct kvm_pfi_vm_stats st;
	int pfi = pfi_open();
	uint32_t id;

	ASSERT_EQ(0, pfi_attach(pfi, watched->fd, 0, &id));
	ASSERT_EQ(GUEST_EXITS, run_to_done(vcpu));
	ASSERT_EQ(0, pfi_stats(pfi, id, &st, NULL, 0));
	EXPECT_EQ(0, st.exits);
	close(pfi);
	kvm_vm_free(watched);
	kvm_vm_free(vm);
}

/* Closing the file that attached a VM drops the module's reference: once
 * the VMM frees the VM too, KVM destroys it. */
TEST(file_close_drops_reference)
{
	struct kvm_vm *vm = vm_create_barebones();
	int pfi = pfi_open(), vm_fd = vm->fd;
	uint32_t id;

	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	close(pfi);
	pfi = pfi_open();
	EXPECT_EQ(0, pfi_nr_attached(pfi));
	ASSERT_TRUE(kvm_debugfs_has_vm(getpid(), vm_fd));
	kvm_vm_free(vm);
	EXPECT_FALSE(kvm_debugfs_has_vm(getpid(), vm_fd));
	close(pfi);
}

/* A VMM in a child process: creates a VM, reports its fd, runs the guest
 * while told to, then exits. */
struct child_vmm {
	pid_t pid;
	int vm_fd;		/* the child's descriptor number */
	int report[2], go[2];
};

static void child_vmm_start(struct child_vmm *c, bool run_guest)
{
	TEST_ASSERT(!pipe(c->report) && !pipe(c->go), "pipe");
	c->pid = fork();
	TEST_ASSERT(c->pid >= 0, "fork");
	if (!c->pid) {
		struct kvm_vcpu *vcpu;
		struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_sync_loop);
		char b;
		int syncs;

		TEST_ASSERT(write(c->report[1], &vm->fd, sizeof(int)) == sizeof(int), "report");
		TEST_ASSERT(read(c->go[0], &b, 1) == 1, "go");
		syncs = run_guest ? run_to_done(vcpu) : GUEST_EXITS;
		/* Tell the parent how far the guest got. */
		TEST_ASSERT(write(c->report[1], &syncs, sizeof(int)) == sizeof(int), "report");
		_exit(syncs == GUEST_EXITS ? 0 : 1);
	}
	TEST_ASSERT(read(c->report[0], &c->vm_fd, sizeof(int)) == sizeof(int), "read fd");
}

/* What `kvm-pfi attach --pid` does: take a copy of the VMM's VM fd. */
static int child_vmm_attach(struct child_vmm *c, int pfi, uint32_t flags, uint32_t *id)
{
	int pidfd = sys_pidfd_open(c->pid), fd, r;

	TEST_ASSERT(pidfd >= 0, "pidfd_open");
	fd = sys_pidfd_getfd(pidfd, c->vm_fd);
	TEST_ASSERT(fd >= 0, "pidfd_getfd");
	r = pfi_attach(pfi, fd, flags, id);
	close(fd);
	close(pidfd);
	return r;
}

static int child_vmm_finish(struct child_vmm *c)
{
	int status, syncs = -1;

	TEST_ASSERT(write(c->go[1], "g", 1) == 1, "go");
	TEST_ASSERT(read(c->report[0], &syncs, sizeof(int)) == sizeof(int), "read syncs");
	TEST_ASSERT(waitpid(c->pid, &status, 0) == c->pid, "waitpid");
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? syncs : -1;
}

struct vm_ref { pid_t pid; int fd; int pfi; };

static bool vm_gone(void *arg)
{
	struct vm_ref *r = arg;

	return !kvm_debugfs_has_vm(r->pid, r->fd) && pfi_nr_attached(r->pfi) == 0;
}

/* The VMM exits while its VM is attached (persistently, so no file close
 * helps): the module notices it holds the last reference and lets go, and
 * KVM destroys the VM. */
TEST(vmm_exit_drops_reference)
{
	struct child_vmm c;
	int pfi = pfi_open();
	uint32_t id;

	ASSERT_LE(0, pfi);
	child_vmm_start(&c, true);
	ASSERT_EQ(0, child_vmm_attach(&c, pfi, KVM_PFI_ATTACH_PERSISTENT, &id));
	ASSERT_TRUE(kvm_debugfs_has_vm(c.pid, c.vm_fd));
	ASSERT_EQ(GUEST_EXITS, child_vmm_finish(&c));
	struct vm_ref r = { c.pid, c.vm_fd, pfi };
	/* The reaper polls every 500 ms. */
	EXPECT_TRUE(wait_until(vm_gone, &r, 5000));
	EXPECT_EQ(-ENOENT, pfi_detach(pfi, id));
	close(pfi);
}

/*
 * Smallest end-to-end injection: a guest at CPL 0 with interrupts enabled
 * (a KVM_PFI_TARGET_KERNEL target), one page in the kernel half (the guest
 * has no SMAP: a user-half page would never get a kernel-mode fault) whose
 * PTE the host replaced by a Linux swap entry. The guest's #PF handler reports CR2 and the error code
 * to the host, which restores the PTE, as a guest OS would after swap-in.
 * The user-mode (CPL 3) cases are in kvm_pfi_inject_test.
 */
#define SMOKE_SYNC_IDLE	1
#define SMOKE_SYNC_PF	2
/* __swp_entry(type 0, offset 0x1234) with the L1TF-inverted offset. */
#define LINUX_SWAP_PTE	0x07ffffffffdb9600ull

static void smoke_pf_handler(struct ex_regs *regs)
{
	GUEST_SYNC3(SMOKE_SYNC_PF, get_cr2(), regs->error_code);
}

static void smoke_guest(void)
{
	asm volatile("sti; nop");
	for (;;)
		GUEST_SYNC1(SMOKE_SYNC_IDLE);
}

TEST(injects_pf_for_swapped_page_kernel_mode)
{
	struct kvm_pfi_page_info info = { 0 };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, smoke_guest);
	uint64_t gva, saved, *pte, faults = 0, cr2 = 0, err = ~0ull;
	int pfi = pfi_open(), runs, pf_run = -1;
	uint32_t id, tid;
	struct ucall uc;

	/* Subscribe to the device's event stream before anything happens. */
	int events = ioctl(pfi, KVM_PFI_EVENTS, 0);

	ASSERT_LE(0, events);
	ASSERT_EQ(0, fcntl(events, F_SETFL, O_NONBLOCK));
	vm_install_exception_handler(vm, PF_VECTOR, smoke_pf_handler);
	gva = vm_alloc(vm, 4096, PFI_KERNEL_HALF_GVA);
	memset(kernel_half_hva(vm, gva), 0x5a, 4096);
	pte = vm_get_pte(vm, gva);
	saved = *pte;
	*pte = LINUX_SWAP_PTE;

	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	struct kvm_pfi_target t = {
		.vm_id = id, .flags = KVM_PFI_TARGET_KERNEL | KVM_PFI_TARGET_READ, .cr3 = vm->mmu.pgd,
		.gva = gva, .len = 4096,
	};
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, &t));
	tid = t.target_id;
	for (runs = 0; runs < 20000; runs++) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		ASSERT_EQ(UCALL_SYNC, get_ucall(vcpu, &uc));
		if (uc.args[0] == SMOKE_SYNC_PF) {
			faults++;
			pf_run = runs;
			cr2 = uc.args[1];
			err = uc.args[2];
			*pte = saved;	/* "swap in" */
		}
		struct kvm_pfi_target_pages tp = {
			.vm_id = id, .target_id = tid, .nr_pages = 1, .pages = (uintptr_t)&info,
		};
		ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_PAGES, &tp));
		if (info.state == KVM_PFI_PAGE_RESIDENT)
			break;
	}
	TH_LOG("#PF at run %d, resident at run %d; faults %lu cr2 %lx err %lx state %u",
	       pf_run, runs, faults, cr2, err, info.state);
	ASSERT_EQ(KVM_PFI_PAGE_RESIDENT, info.state);
	EXPECT_EQ(1, faults);
	EXPECT_EQ(gva, cr2);
	/* P=0 (not present), W=0, U=0 (injected at CPL 0). */
	EXPECT_EQ(0, err);
	EXPECT_EQ(1, info.injections);
	/*
	 * In a fresh VM the delivery touches the handler's code and stack for
	 * the first time: nested page faults interrupt it and KVM re-injects
	 * it from EXITINTINFO. The module must count those and not inject
	 * again, and the guest must see the fault exactly once (faults == 1
	 * above; a double fault would have killed the guest).
	 */
	EXPECT_LE(1, info.reinjections);
	EXPECT_EQ(KVM_PFI_HOW_INJECTED, info.how);
	EXPECT_EQ(kernel_half_gpa(vm, gva), info.gpa);
	EXPECT_EQ(4096, info.page_size);
	/* The stream: attached, target added, page resident with its bytes. */
	struct pollfd pfd = { .fd = events, .events = POLLIN };
	static char buf[2 * (sizeof(struct kvm_pfi_event) + 4096)];
	struct kvm_pfi_event ev;
	uint32_t types[8];
	int nev = 0, got_data = 0;

	for (int tries = 0; tries < 100 && nev < 3; tries++) {
		ssize_t n;

		if (poll(&pfd, 1, 100) != 1)
			continue;
		n = read(events, buf, sizeof(buf));
		ASSERT_LT(0, n);
		for (ssize_t off = 0; off < n; off += ev.size) {
			memcpy(&ev, buf + off, sizeof(ev));
			ASSERT_EQ(KVM_PFI_EVENT_VERSION, ev.version);
			ASSERT_LE(sizeof(ev), ev.size);
			EXPECT_EQ(id, ev.vm_id);
			EXPECT_EQ(0, ev.lost);
			/* Not process events: their fields stay zero. */
			EXPECT_EQ(0, ev.pid);
			EXPECT_EQ(0, ev.task);
			EXPECT_EQ(0, ev.comm[0]);
			if (ev.type != KVM_PFI_CMD_PAGE_RESIDENT) {
				EXPECT_EQ(sizeof(ev), ev.size);
			}
			types[nev++] = ev.type;
			if (ev.type == KVM_PFI_CMD_PAGE_RESIDENT) {
				const unsigned char *d = (const unsigned char *)buf + off + sizeof(ev);

				EXPECT_EQ(gva, ev.gva);
				EXPECT_EQ(info.gpa, ev.gpa);
				EXPECT_EQ(KVM_PFI_HOW_INJECTED, ev.how);
				ASSERT_EQ(4096, ev.data_len);
				ASSERT_EQ(sizeof(ev) + 4096, ev.size);
				got_data = d[0] == 0x5a && d[4095] == 0x5a &&
					   !memcmp(d, d + 1, 4095);
			}
		}
	}
	ASSERT_EQ(3, nev);
	EXPECT_EQ(KVM_PFI_CMD_VM_ATTACHED, types[0]);
	EXPECT_EQ(KVM_PFI_CMD_TARGET_ADDED, types[1]);
	EXPECT_EQ(KVM_PFI_CMD_PAGE_RESIDENT, types[2]);
	EXPECT_TRUE(got_data);
	/* Nothing more queued; a buffer too small for a record is refused. */
	EXPECT_EQ(-1, read(events, buf, sizeof(buf)));
	EXPECT_EQ(EAGAIN, errno);
	/* For watch_events.py, which checks the page-resident event. */
	printf("# smoke-target {\"vm_id\":%u,\"target_id\":%u,\"gva\":%lu,\"gpa\":%lu}\n",
	       id, tid, gva, (unsigned long)kernel_half_gpa(vm, gva));
	close(pfi);
	/* Closing the attaching file detached the VM: removal, detach. */
	ASSERT_EQ(1, poll(&pfd, 1, 5000));
	EXPECT_EQ(-1, read(events, buf, sizeof(ev) - 1));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(2 * sizeof(ev), read(events, buf, sizeof(buf)));
	memcpy(&ev, buf, sizeof(ev));
	EXPECT_EQ(KVM_PFI_CMD_TARGET_REMOVED, ev.type);
	memcpy(&ev, buf + sizeof(ev), sizeof(ev));
	EXPECT_EQ(KVM_PFI_CMD_VM_DETACHED, ev.type);
	EXPECT_EQ(KVM_PFI_DETACH_REASON_FILE_CLOSED, ev.detach_reason);
	close(events);
	kvm_vm_free(vm);
}

/*
 * A guest that halts without exiting (KVM_X86_DISABLE_EXITS_HLT) is entered
 * again after each exit (the host's timer ticks) still halted: on VMX in the
 * HLT activity state, in which VM entry refuses a #PF unless the injection
 * also makes the vCPU active again, as KVM's own injections do
 * (vmx_clear_hlt()). The target is added only once the guest is halted, so
 * the fault can only arrive there: the handler sees it interrupt the
 * instruction after the HLT, at CPL 0, exactly once. The page is in the
 * kernel half (no SMAP here, see the smoke test).
 */
extern char halt_resume[];

static void halt_pf_handler(struct ex_regs *regs)
{
	GUEST_SYNC5(SMOKE_SYNC_PF, get_cr2(), regs->error_code, regs->rip, regs->cs & 3);
}

static void halt_guest(void)
{
	asm volatile("sti; nop");
	GUEST_SYNC1(SMOKE_SYNC_IDLE);
	asm volatile("1: hlt\n"
		     "halt_resume: jmp 1b" ::: "memory");
}

struct halt_run {
	struct kvm_vcpu *vcpu;
	volatile bool done;
};

static void *halt_run_fn(void *arg)
{
	struct halt_run *h = arg;

	vcpu_run(h->vcpu);
	h->done = true;
	return NULL;
}

TEST(injects_pf_into_halted_guest)
{
	struct kvm_pfi_page_info info = { 0 };
	struct kvm_vm *vm;
	struct halt_run h = { 0 };
	uint64_t gva, *pte;
	int pfi = pfi_open(), i;
	uint32_t id;
	pthread_t th;
	struct ucall uc;

	ASSERT_LE(0, pfi);
	if (!(kvm_check_cap(KVM_CAP_X86_DISABLE_EXITS) & KVM_X86_DISABLE_EXITS_HLT))
		SKIP(return, "KVM cannot let the guest halt without an exit");
	vm = vm_create(1);
	/* Only before vCPUs exist. */
	vm_enable_cap(vm, KVM_CAP_X86_DISABLE_EXITS, KVM_X86_DISABLE_EXITS_HLT);
	h.vcpu = vm_vcpu_add(vm, 0, halt_guest);
	vm_install_exception_handler(vm, PF_VECTOR, halt_pf_handler);
	gva = vm_alloc(vm, 4096, PFI_KERNEL_HALF_GVA);
	pte = vm_get_pte(vm, gva);
	*pte = LINUX_SWAP_PTE;
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	/* Runs in long mode: the module learns the guest's paging. */
	vcpu_run(h.vcpu);
	ASSERT_EQ(UCALL_SYNC, get_ucall(h.vcpu, &uc));
	ASSERT_EQ(SMOKE_SYNC_IDLE, uc.args[0]);
	ASSERT_EQ(0, pthread_create(&th, NULL, halt_run_fn, &h));
	/* The guest needs a few instructions to reach its HLT. */
	usleep(500 * 1000);
	ASSERT_FALSE(h.done);
	struct kvm_pfi_target t = {
		.vm_id = id, .flags = KVM_PFI_TARGET_KERNEL | KVM_PFI_TARGET_READ, .cr3 = vm->mmu.pgd,
		.gva = gva, .len = 4096,
	};
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, &t));
	for (i = 0; i < 2000 && !h.done; i++)
		usleep(10 * 1000);
	ASSERT_TRUE(h.done) {
		TH_LOG("no #PF reached the halted guest in 20 s");
	}
	pthread_join(th, NULL);
	/* Not KVM_EXIT_FAIL_ENTRY: the entry with the #PF was valid. */
	TEST_ASSERT_KVM_EXIT_REASON(h.vcpu, KVM_EXIT_IO);
	ASSERT_EQ(UCALL_SYNC, get_ucall(h.vcpu, &uc));
	ASSERT_EQ(SMOKE_SYNC_PF, uc.args[0]);
	EXPECT_EQ(gva, uc.args[1]);
	EXPECT_EQ(0, uc.args[2]);
	EXPECT_EQ((uint64_t)halt_resume, uc.args[3]);
	EXPECT_EQ(0, uc.args[4]);
	struct kvm_pfi_target_pages tp = {
		.vm_id = id, .target_id = t.target_id, .nr_pages = 1, .pages = (uintptr_t)&info,
	};
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_PAGES, &tp));
	EXPECT_EQ(1, info.injections);
	close(pfi);
	kvm_vm_free(vm);
}

/*
 * Kernel-mode injection on a user-half page happens only inside a uaccess
 * region: guest CR4.SMAP and RFLAGS.AC both set (Documentation/design.rst,
 * "Kernel-mode injection"). One KVM_PFI_TARGET_KERNEL page in the user half;
 * the guest loops at CPL 0 with interrupts on, in the target's address
 * space:
 *  1. without SMAP, KMODE_EXITS exits: no fault, the page still waits, and
 *     KVM_PFI_VM_STATS counts kernel_no_smap;
 *  2. the same under KVM_SET_GUEST_DEBUG (KVM_GUESTDBG_ENABLE alone: no
 *     breakpoint, no single-step): no fault, counted as kernel_guest_debug,
 *     which is checked first;
 *  3. debugging off, the guest sets CR4.SMAP and runs with AC set (stac):
 *     the fault comes, once, with U=0.
 * Step 3 needs SMAP in the guest's CPUID (not in Bochs's Haswell, the VMX
 * stage): without it steps 1 and 2 are the test.
 */
#define KMODE_EXITS	2000
static uint64_t kmode_smap_ac;	/* set by the host: SMAP on, AC set */

static void kmode_guest(void)
{
	bool on = false;

	asm volatile("sti; nop");
	for (;;) {
		if (!on && READ_ONCE(kmode_smap_ac)) {
			set_cr4(get_cr4() | X86_CR4_SMAP);
			on = true;
		}
		if (on)
			asm volatile("stac" ::: "memory");
		GUEST_SYNC1(SMOKE_SYNC_IDLE);
	}
}

/* Runs @n exits of kmode_guest; returns the faults its handler reported. */
static int kmode_run(struct kvm_vcpu *vcpu, int n, uint64_t *cr2, uint64_t *err)
{
	struct ucall uc;
	int faults = 0;

	for (int i = 0; i < n; i++) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		TEST_ASSERT(get_ucall(vcpu, &uc) == UCALL_SYNC, "ucall %lu", uc.cmd);
		if (uc.args[0] == SMOKE_SYNC_PF) {
			faults++;
			*cr2 = uc.args[1];
			*err = uc.args[2];
		}
	}
	return faults;
}

TEST(kernel_mode_user_page_needs_smap_and_ac)
{
	struct kvm_guest_debug debug = { .control = KVM_GUESTDBG_ENABLE };
	struct kvm_pfi_page_info info = { 0 };
	struct kvm_pfi_vm_stats st;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, kmode_guest);
	uint64_t gva, saved, *pte, cr2 = 0, err = ~0ull, no_smap;
	int pfi = pfi_open(), faults, runs;
	uint32_t id, tid;

	ASSERT_LE(0, pfi);
	vm_install_exception_handler(vm, PF_VECTOR, smoke_pf_handler);
	gva = vm_alloc_page(vm);
	ASSERT_EQ(0, gva >> 63);
	pte = vm_get_pte(vm, gva);
	saved = *pte;
	*pte = LINUX_SWAP_PTE;
	vcpu_sregs_get(vcpu, &sregs);
	ASSERT_FALSE(sregs.cr4 & X86_CR4_SMAP);
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	ASSERT_EQ(0, pfi_target_add(pfi, id, KVM_PFI_TARGET_KERNEL, vm->mmu.pgd, gva, 4096, &tid));

	/* 1: no SMAP. */
	faults = kmode_run(vcpu, KMODE_EXITS, &cr2, &err);
	EXPECT_EQ(0, faults);
	ASSERT_EQ(0, pfi_target_pages(pfi, id, tid, &info, 1, NULL));
	EXPECT_EQ(KVM_PFI_PAGE_WAITING, info.state);
	EXPECT_EQ(0, info.injections);
	ASSERT_EQ(0, pfi_stats(pfi, id, &st, NULL, 0));
	TH_LOG("no SMAP: %d exits, kernel_no_smap %llu", KMODE_EXITS, st.kernel_no_smap);
	/* Nearly every entry: all but those before the page's first walk. */
	EXPECT_LE(KMODE_EXITS / 2, st.kernel_no_smap);
	EXPECT_EQ(0, st.kernel_guest_debug);
	EXPECT_EQ(0, st.kernel_fred);
	no_smap = st.kernel_no_smap;

	/* 2: guest debugging, checked before SMAP. */
	vcpu_guest_debug_set(vcpu, &debug);
	faults = kmode_run(vcpu, KMODE_EXITS / 2, &cr2, &err);
	EXPECT_EQ(0, faults);
	ASSERT_EQ(0, pfi_target_pages(pfi, id, tid, &info, 1, NULL));
	EXPECT_EQ(KVM_PFI_PAGE_WAITING, info.state);
	EXPECT_EQ(0, info.injections);
	ASSERT_EQ(0, pfi_stats(pfi, id, &st, NULL, 0));
	TH_LOG("guest debug: kernel_guest_debug %llu, kernel_no_smap %llu",
	       st.kernel_guest_debug, st.kernel_no_smap);
	EXPECT_LE(KMODE_EXITS / 4, st.kernel_guest_debug);
	EXPECT_EQ(no_smap, st.kernel_no_smap);
	debug.control = 0;
	vcpu_guest_debug_set(vcpu, &debug);

	/* 3: SMAP and AC. */
	if (!kvm_cpu_has(X86_FEATURE_SMAP)) {
		TH_LOG("no SMAP in the guest's CPUID: the injecting half not run");
		goto out;
	}
	kmode_smap_ac = 1;
	sync_global_to_guest(vm, kmode_smap_ac);
	faults = 0;
	for (runs = 0; runs < 20000; runs++) {
		int f = kmode_run(vcpu, 1, &cr2, &err);

		if (f) {
			faults += f;
			*pte = saved;	/* "swap in" */
		}
		ASSERT_EQ(0, pfi_target_pages(pfi, id, tid, &info, 1, NULL));
		if (info.state == KVM_PFI_PAGE_RESIDENT)
			break;
	}
	vcpu_sregs_get(vcpu, &sregs);
	vcpu_regs_get(vcpu, &regs);
	TH_LOG("SMAP and AC: resident at run %d; faults %d cr2 %lx err %lx cr4 %llx rflags %llx",
	       runs, faults, cr2, err, sregs.cr4, regs.rflags);
	EXPECT_TRUE(sregs.cr4 & X86_CR4_SMAP);
	EXPECT_TRUE(regs.rflags & X86_EFLAGS_AC);
	ASSERT_EQ(KVM_PFI_PAGE_RESIDENT, info.state);
	EXPECT_EQ(1, faults);
	EXPECT_EQ(gva, cr2);
	/* P=0, W=0, U=0: injected at CPL 0. */
	EXPECT_EQ(0, err);
	EXPECT_EQ(1, info.injections);
	EXPECT_EQ(KVM_PFI_HOW_INJECTED, info.how);
out:
	close(pfi);
	kvm_vm_free(vm);
}

/* A resident page of an idle VM (no vCPU runs after TARGET_ADD) is still
 * walked and reported at once, with its bytes. */
TEST(resident_page_reported_without_exits)
{
	struct kvm_pfi_page_info info = { 0 };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, smoke_guest);
	int pfi = pfi_open(), events, i;
	uint32_t id;
	uint64_t gva;
	struct ucall uc;

	ASSERT_LE(0, pfi);
	gva = vm_alloc_page(vm);
	memset(addr_gva2hva(vm, gva), 0xa5, 4096);
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	/* One run in long mode lets the module learn the guest's paging mode. */
	vcpu_run(vcpu);
	ASSERT_EQ(UCALL_SYNC, get_ucall(vcpu, &uc));
	events = ioctl(pfi, KVM_PFI_EVENTS, 0);
	ASSERT_LE(0, events);
	struct kvm_pfi_target t = {
		.vm_id = id, .flags = pfi_mini_os_flags(KVM_PFI_TARGET_KERNEL | KVM_PFI_TARGET_READ, gva),
		.cr3 = vm->mmu.pgd, .gva = gva, .len = 4096,
	};
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, &t));
	for (i = 0; i < 100; i++) {
		struct kvm_pfi_target_pages tp = {
			.vm_id = id, .target_id = t.target_id, .nr_pages = 1,
			.pages = (uintptr_t)&info,
		};

		ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_PAGES, &tp));
		if (info.state == KVM_PFI_PAGE_RESIDENT)
			break;
		usleep(20 * 1000);
	}
	ASSERT_EQ(KVM_PFI_PAGE_RESIDENT, info.state);
	EXPECT_EQ(KVM_PFI_HOW_ALREADY_RESIDENT, info.how);
	EXPECT_EQ(0, info.injections);
	EXPECT_EQ(addr_gva2gpa(vm, gva), info.gpa);

	/* target-added, then page-resident with the bytes. */
	static char buf[2 * (sizeof(struct kvm_pfi_event) + 4096)];
	struct pollfd pfd = { .fd = events, .events = POLLIN };
	struct kvm_pfi_event ev = { 0 };
	int seen = 0;

	for (i = 0; i < 50 && !seen; i++) {
		ssize_t n;

		if (poll(&pfd, 1, 100) != 1)
			continue;
		n = read(events, buf, sizeof(buf));
		for (ssize_t off = 0; off < n; off += ev.size) {
			memcpy(&ev, buf + off, sizeof(ev));
			if (ev.type != KVM_PFI_CMD_PAGE_RESIDENT)
				continue;
			const unsigned char *d = (const unsigned char *)buf + off + sizeof(ev);

			ASSERT_EQ(4096, ev.data_len);
			EXPECT_EQ(0xa5, d[0]);
			EXPECT_EQ(0, memcmp(d, d + 1, 4095));
			seen = 1;
		}
	}
	EXPECT_TRUE(seen);
	close(events);
	close(pfi);
	kvm_vm_free(vm);
}

TEST(target_list)
{
	struct kvm_vm *vm = vm_create_barebones();
	struct kvm_pfi_target list[3], t;
	struct kvm_pfi_target_list l;
	int pfi = pfi_open();
	uint32_t id, ids[2];

	ASSERT_LE(0, pfi);
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	l = (struct kvm_pfi_target_list){ .vm_id = id + 100 };
	EXPECT_EQ(-ENOENT, pfi_ioctl(pfi, KVM_PFI_TARGET_LIST, &l));
	for (int i = 0; i < 2; i++) {
		t = (struct kvm_pfi_target){
			.vm_id = id, .flags = KVM_PFI_TARGET_READ, .cr3 = 0x1000,
			.gva = 0x400000 + i * 0x10000, .len = 8192, .timeout_ms = 250 * (i + 1),
		};
		ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, &t));
		ids[i] = t.target_id;
	}
	/* A short buffer gets the first and the total. */
	l = (struct kvm_pfi_target_list){ .vm_id = id, .nr_targets = 1, .targets = (uintptr_t)list };
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_LIST, &l));
	EXPECT_EQ(2, l.nr_targets);
	l = (struct kvm_pfi_target_list){ .vm_id = id, .nr_targets = 3, .targets = (uintptr_t)list };
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_LIST, &l));
	ASSERT_EQ(2, l.nr_targets);
	for (int i = 0; i < 2; i++) {
		EXPECT_EQ(ids[i], list[i].target_id);
		EXPECT_EQ(0x400000 + i * 0x10000, list[i].gva);
		EXPECT_EQ(8192, list[i].len);
		EXPECT_EQ(KVM_PFI_TARGET_READ, list[i].flags);
		EXPECT_EQ(250 * (i + 1), list[i].timeout_ms);
		EXPECT_EQ(3, list[i].max_tries);
	}
	struct kvm_pfi_target_remove r = { .vm_id = id, .target_id = ids[0] };
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_REMOVE, &r));
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_LIST, &l));
	ASSERT_EQ(1, l.nr_targets);
	EXPECT_EQ(ids[1], list[0].target_id);
	close(pfi);
	kvm_vm_free(vm);
}

TEST(event_readers_are_limited)
{
	int pfi = pfi_open(), fds[KVM_PFI_MAX_EVENT_READERS];

	ASSERT_LE(0, pfi);
	for (int i = 0; i < KVM_PFI_MAX_EVENT_READERS; i++) {
		fds[i] = ioctl(pfi, KVM_PFI_EVENTS, 0);
		ASSERT_LE(0, fds[i]);
		/* Close-on-exec, read-only. */
		EXPECT_EQ(FD_CLOEXEC, fcntl(fds[i], F_GETFD) & FD_CLOEXEC);
		EXPECT_EQ(O_RDONLY, fcntl(fds[i], F_GETFL) & O_ACCMODE);
	}
	EXPECT_EQ(-1, ioctl(pfi, KVM_PFI_EVENTS, 0));
	EXPECT_EQ(ENOSPC, errno);
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_EVENTS, (void *)1));
	close(fds[0]);
	fds[0] = ioctl(pfi, KVM_PFI_EVENTS, 0);
	EXPECT_LE(0, fds[0]);
	for (int i = 0; i < KVM_PFI_MAX_EVENT_READERS; i++)
		close(fds[i]);
	close(pfi);
}

/* Reads every record queued on event descriptor @fd (the events of an ioctl
 * are queued when it returns); returns how many, and how many of @type. */
static int drain_events(int fd, uint16_t type, int *of_type)
{
	static char buf[sizeof(struct kvm_pfi_event) + 4096];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = 0;

	*of_type = 0;
	while (poll(&p, 1, 0) == 1 && read(fd, buf, sizeof(buf)) > 0) {
		n++;
		*of_type += ((struct kvm_pfi_event *)buf)->type == type;
	}
	return n;
}

/* After attach, only the file that attached a VM may change it: another
 * opener's TARGET_ADD, TARGET_REMOVE, DETACH and CLAIM get EPERM and change
 * nothing (same targets, no event); it may still look. */
TEST(only_the_attaching_file_controls_a_vm)
{
	struct kvm_vm *vm = vm_create_barebones();
	int pfi = pfi_open(), other = pfi_open();
	uint32_t id, tid, tid2, claimed;
	int events, added;

	ASSERT_LE(0, pfi);
	ASSERT_LE(0, other);
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	ASSERT_EQ(0, pfi_target_add(pfi, id, 0, 0x1000, 0x400000, 4096, &tid));
	events = ioctl(other, KVM_PFI_EVENTS, 0);
	ASSERT_LE(0, events);

	EXPECT_EQ(-EPERM, pfi_target_add(other, id, KVM_PFI_TARGET_READ, 0x1000, 0x500000,
					 4096, &tid2));
	EXPECT_EQ(-EPERM, pfi_target_remove(other, id, tid));
	EXPECT_EQ(-EPERM, pfi_detach(other, id));
	/* Presenting the VM's descriptor does not take a file's attachment. */
	EXPECT_EQ(-EPERM, pfi_attach(other, vm->fd, KVM_PFI_ATTACH_CLAIM, &claimed));
	EXPECT_EQ(-EPERM, pfi_target_add(other, id, 0, 0x1000, 0x500000, 4096, &tid2));
	EXPECT_EQ(0, drain_events(events, 0, &added));

	/* Looking is allowed, and shows the state unchanged. */
	struct kvm_pfi_target list[2];
	struct kvm_pfi_target_list l = { .vm_id = id, .nr_targets = 2, .targets = (uintptr_t)list };
	ASSERT_EQ(0, pfi_ioctl(other, KVM_PFI_TARGET_LIST, &l));
	ASSERT_EQ(1, l.nr_targets);
	EXPECT_EQ(tid, list[0].target_id);
	EXPECT_EQ(1, pfi_nr_attached(other));

	/* The attaching file still can. */
	ASSERT_EQ(0, pfi_target_add(pfi, id, 0, 0x1000, 0x500000, 4096, &tid2));
	EXPECT_EQ(1, drain_events(events, KVM_PFI_CMD_TARGET_ADDED, &added));
	EXPECT_EQ(1, added);
	EXPECT_EQ(0, pfi_target_remove(pfi, id, tid2));
	EXPECT_EQ(0, pfi_detach(pfi, id));
	close(events);
	close(other);
	close(pfi);
	kvm_vm_free(vm);
}

/* A persistent attachment outlives its file; a later opener controls it
 * only after presenting the VM's descriptor again (KVM_PFI_ATTACH_CLAIM). */
TEST(persistent_attachment_is_controlled_by_presenting_the_vm)
{
	struct kvm_vm *vm = vm_create_barebones(), *unattached = vm_create_barebones();
	int pfi = pfi_open(), other, devnull = open("/dev/null", O_RDONLY);
	uint32_t id, tid, claimed = 0;

	ASSERT_LE(0, pfi);
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, KVM_PFI_ATTACH_PERSISTENT, &id));
	/* The attaching file controls it without presenting anything. */
	ASSERT_EQ(0, pfi_target_add(pfi, id, 0, 0x1000, 0x400000, 4096, &tid));
	close(pfi);

	other = pfi_open();
	ASSERT_LE(0, other);
	EXPECT_EQ(1, pfi_nr_attached(other));
	EXPECT_EQ(-EPERM, pfi_target_remove(other, id, tid));
	EXPECT_EQ(-EPERM, pfi_target_add(other, id, 0, 0x1000, 0x500000, 4096, NULL));
	EXPECT_EQ(-EPERM, pfi_detach(other, id));
	/* Claims with what is not the attached VM change nothing. */
	EXPECT_EQ(-EINVAL, pfi_attach(other, devnull, KVM_PFI_ATTACH_CLAIM, &claimed));
	EXPECT_EQ(-EBADF, pfi_attach(other, 1000, KVM_PFI_ATTACH_CLAIM, &claimed));
	EXPECT_EQ(-ENOENT, pfi_attach(other, unattached->fd, KVM_PFI_ATTACH_CLAIM, &claimed));
	EXPECT_EQ(-EINVAL, pfi_attach(other, vm->fd,
				      KVM_PFI_ATTACH_CLAIM | KVM_PFI_ATTACH_PERSISTENT, &claimed));
	EXPECT_EQ(-EPERM, pfi_detach(other, id));
	EXPECT_EQ(1, pfi_nr_attached(other));

	/* Presenting the VM: same id, no new attachment, now in control. */
	ASSERT_EQ(0, pfi_attach(other, vm->fd, KVM_PFI_ATTACH_CLAIM, &claimed));
	EXPECT_EQ(id, claimed);
	EXPECT_EQ(1, pfi_nr_attached(other));
	EXPECT_EQ(0, pfi_target_remove(other, id, tid));
	EXPECT_EQ(0, pfi_detach(other, id));
	EXPECT_EQ(0, pfi_nr_attached(other));
	/* The claim named that attachment only: the VM attached again is new. */
	pfi = pfi_open();
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, KVM_PFI_ATTACH_PERSISTENT, &id));
	EXPECT_EQ(-EPERM, pfi_detach(other, id));
	EXPECT_EQ(0, pfi_detach(pfi, id));
	close(pfi);
	close(other);
	close(devnull);
	kvm_vm_free(unattached);
	kvm_vm_free(vm);
}

/* A state-changing ioctl whose answer cannot be written (a read-only
 * argument) fails with EFAULT and changes nothing: no attachment, no
 * target, no event (not an attach undone by a detach). */
TEST(unwritable_answer_changes_nothing)
{
	struct kvm_vm *vm = vm_create_barebones();
	int pfi = pfi_open(), events, added;
	long page = sysconf(_SC_PAGESIZE);
	void *ro = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t id;

	ASSERT_LE(0, pfi);
	ASSERT_NE(MAP_FAILED, ro);
	events = ioctl(pfi, KVM_PFI_EVENTS, 0);
	ASSERT_LE(0, events);
	*(struct kvm_pfi_attach *)ro = (struct kvm_pfi_attach){ .vm_fd = vm->fd };
	ASSERT_EQ(0, mprotect(ro, page, PROT_READ));
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_ATTACH, ro));
	EXPECT_EQ(0, pfi_nr_attached(pfi));
	EXPECT_EQ(0, drain_events(events, 0, &added));

	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	EXPECT_EQ(1, drain_events(events, KVM_PFI_CMD_VM_ATTACHED, &added));
	ASSERT_EQ(0, mprotect(ro, page, PROT_READ | PROT_WRITE));
	*(struct kvm_pfi_target *)ro = (struct kvm_pfi_target){
		.vm_id = id, .cr3 = 0x1000, .gva = 0x400000, .len = 4096,
	};
	ASSERT_EQ(0, mprotect(ro, page, PROT_READ));
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, ro));
	struct kvm_pfi_target_list l = { .vm_id = id };
	ASSERT_EQ(0, pfi_ioctl(pfi, KVM_PFI_TARGET_LIST, &l));
	EXPECT_EQ(0, l.nr_targets);
	EXPECT_EQ(0, drain_events(events, 0, &added));
	munmap(ro, page);
	close(events);
	close(pfi);
	kvm_vm_free(vm);
}

/*
 * Linux guest support (KVM_PFI_LINUX_PROFILE, KVM_PFI_PROCESS_LIST). These
 * guests are not Linux: the library's guest code runs at CPL 0 in 64-bit
 * mode from its first instruction, and nothing is mapped in the half of the
 * address space where a Linux kernel image lives (0xffffffff80000000 and
 * up). So a well-formed profile (of the fixture kernel,
 * rust/pfi_core/tests/fixtures, as `kvm-pfi profile build --btf
 * linux-7.3-btf-cut.bin --system-map linux-7.3-System.map` writes it) can
 * only be refused: with ENOEXEC once a vCPU ran (init_task reads nowhere,
 * whatever the slide), with EAGAIN while none did. Every refusal must leave
 * the VM without a profile (PROCESS_LIST: ENODATA) and make no event.
 */
static const char linux_profile[] =
	"kvm-pfi-linux-profile 1\n"
	"field list_head.next 0 8\n"
	"field list_head.prev 8 8\n"
	"field task_struct.tasks 1328 16\n"
	"field task_struct.pid 1536 4\n"
	"field task_struct.tgid 1540 4\n"
	"field task_struct.comm 2184 16\n"
	"field task_struct.mm 1408 8\n"
	"field task_struct.real_parent 1552 8\n"
	"field task_struct.flags 44 4\n"
	"field mm_struct.pgd 184 8\n"
	"field mm_struct.mm_mt 64 80\n"
	"field mm_struct.start_code 1360 8\n"
	"field mm_struct.end_code 1368 8\n"
	"field mm_struct.start_brk 1392 8\n"
	"field mm_struct.brk 1400 8\n"
	"field mm_struct.start_stack 1408 8\n"
	"field mm_struct.arg_start 1416 8\n"
	"field mm_struct.exe_file 2728 8\n"
	"field vm_area_struct.vm_start 0 8\n"
	"field vm_area_struct.vm_end 8 8\n"
	"field vm_area_struct.vm_flags 32 8\n"
	"field vm_area_struct.vm_file 88 8\n"
	"field vm_area_struct.vm_pgoff 80 8\n"
	"field vm_area_struct.vm_mm 16 8\n"
	"field file.f_path 128 16\n"
	"field path.dentry 8 8\n"
	"field dentry.d_name 88 16\n"
	"field dentry.d_parent 80 8\n"
	"field qstr.name 8 8\n"
	"field qstr.len 4 4\n"
	"field maple_tree.ma_root 72 8\n"
	"field maple_tree.ma_flags 64 4\n"
	"field maple_range_64.parent 0 8\n"
	"field maple_range_64.pivot 8 120\n"
	"field maple_range_64.slot 128 128\n"
	"field maple_range_64.meta 248 2\n"
	"field maple_arange_64.pivot 8 72\n"
	"field maple_arange_64.slot 80 80\n"
	"field maple_arange_64.meta 240 2\n"
	"field maple_metadata.end 0 1\n"
	"symbol init_task 0xffffffff82812ac0\n"
	"symbol _text 0xffffffff81000000\n"
	"symbol init_mm 0xffffffff829a78c0\n"
	"symbol current_task 0xffffffff83217018\n"
	"symbol __per_cpu_offset 0xffffffff82581d80\n"
	"symbol entry_SYSCALL_64 0xffffffff81000080\n"
	"symbol page_offset_base 0xffffffff82579320\n";

/* A guest that runs, in a thread, until told to stop: while it does the
 * module sees a vCPU in 64-bit kernel mode at every exit. */
struct spin_run {
	struct kvm_vcpu *vcpu;
	volatile bool stop;
	volatile int runs;
};

static void *spin_run_fn(void *arg)
{
	struct spin_run *s = arg;
	struct ucall uc;

	while (!s->stop) {
		vcpu_run(s->vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(s->vcpu, KVM_EXIT_IO);
		TEST_ASSERT(get_ucall(s->vcpu, &uc) == UCALL_SYNC, "ucall %lu", uc.cmd);
		s->runs++;
	}
	return NULL;
}

static int64_t elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Nothing taken: no profile, so no process list; nothing queued on @events. */
#define EXPECT_NO_PROFILE(pfi, id, events) do {					\
	int of_type_;								\
										\
	EXPECT_EQ(-ENODATA, pfi_process_list(pfi, id, NULL, 0, NULL));		\
	EXPECT_EQ(0, drain_events(events, 0, &of_type_));			\
} while (0)

TEST(linux_profile_refusals)
{
	const uint32_t len = sizeof(linux_profile) - 1;
	struct spin_run run = { 0 };
	struct kvm_pfi_linux_profile p;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&run.vcpu, smoke_guest);
	int pfi = pfi_open(), events;
	char *big = malloc(KVM_PFI_LINUX_PROFILE_MAX + 1);
	struct timespec t0;
	pthread_t th;
	uint32_t id;
	struct ucall uc;

	ASSERT_LE(0, pfi);
	ASSERT_NE(NULL, big);
	ASSERT_GT(KVM_PFI_LINUX_PROFILE_MAX, len);
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	events = ioctl(pfi, KVM_PFI_EVENTS, 0);
	ASSERT_LE(0, events);
	/* Once in the main thread (the module sees CPL 0, long mode), then on. */
	vcpu_run(run.vcpu);
	ASSERT_EQ(UCALL_SYNC, get_ucall(run.vcpu, &uc));
	ASSERT_EQ(0, pthread_create(&th, NULL, spin_run_fn, &run));
	EXPECT_NO_PROFILE(pfi, id, events);

	/* The argument: unknown flags, a slide without its flag or unaligned,
	 * out fields set on input, a pointer to nowhere. */
	EXPECT_EQ(-EINVAL, pfi_linux_profile(pfi, id, 1u << 31, linux_profile, len, 0, NULL));
	EXPECT_EQ(-EINVAL, pfi_linux_profile(pfi, id, ~KVM_PFI_LINUX_FLAGS_ALL, linux_profile,
					     len, 0, NULL));
	EXPECT_EQ(-EINVAL, pfi_linux_profile(pfi, id, 0, linux_profile, len, 0x200000, NULL));
	EXPECT_EQ(-EINVAL, pfi_linux_profile(pfi, id, KVM_PFI_LINUX_SLIDE, linux_profile, len,
					     0x200001, NULL));
	p = (struct kvm_pfi_linux_profile){
		.vm_id = id, .text = (uintptr_t)linux_profile, .len = len, .nr_processes = 1,
	};
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_LINUX_PROFILE, &p));
	p = (struct kvm_pfi_linux_profile){
		.vm_id = id, .text = (uintptr_t)linux_profile, .len = len, .init_task = 1,
	};
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_LINUX_PROFILE, &p));
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_LINUX_PROFILE, (void *)8));
	EXPECT_NO_PROFILE(pfi, id, events);

	/* The text: none, too long (even if it is a profile padded with blank
	 * lines), not a profile, a profile cut short, unreadable. */
	EXPECT_EQ(-EINVAL, pfi_linux_profile(pfi, id, 0, linux_profile, 0, 0, NULL));
	memset(big, '\n', KVM_PFI_LINUX_PROFILE_MAX + 1);
	memcpy(big, linux_profile, len);
	EXPECT_EQ(-EINVAL, pfi_linux_profile(pfi, id, 0, big, KVM_PFI_LINUX_PROFILE_MAX + 1, 0,
					     NULL));
	EXPECT_EQ(-EINVAL, pfi_linux_profile(pfi, id, 0, "hello\n", 6, 0, NULL));
	EXPECT_EQ(-EINVAL, pfi_linux_profile(pfi, id, 0, linux_profile, len / 2, 0, NULL));
	EXPECT_EQ(-EFAULT, pfi_linux_profile(pfi, id, 0, (void *)8, len, 0, NULL));
	EXPECT_NO_PROFILE(pfi, id, events);

	/* Another VM id: ENOENT, also with a good profile. */
	EXPECT_EQ(-ENOENT, pfi_linux_profile(pfi, id + 1000, 0, linux_profile, len, 0, NULL));
	EXPECT_EQ(-ENOENT, pfi_process_list(pfi, id + 1000, NULL, 0, NULL));

	/*
	 * A good profile, the guest running: no slide passes the check, nor a
	 * given one. KVM_PFI_LINUX_PROFILE_MAX bytes are not too many (the
	 * same profile and blank lines).
	 */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	EXPECT_EQ(-ENOEXEC, pfi_linux_profile(pfi, id, 0, linux_profile, len, 0, NULL));
	TH_LOG("ENOEXEC after %lld ms, every slide tried; guest runs %d",
	       (long long)elapsed_ms(&t0), run.runs);
	EXPECT_EQ(-ENOEXEC, pfi_linux_profile(pfi, id, KVM_PFI_LINUX_SLIDE, linux_profile, len,
					      0x1e00000, NULL));
	EXPECT_EQ(-ENOEXEC, pfi_linux_profile(pfi, id, KVM_PFI_LINUX_SLIDE, linux_profile, len,
					      0, NULL));
	EXPECT_EQ(-ENOEXEC, pfi_linux_profile(pfi, id, 0, big, KVM_PFI_LINUX_PROFILE_MAX, 0,
					      NULL));
	EXPECT_NO_PROFILE(pfi, id, events);

	run.stop = true;
	pthread_join(th, NULL);
	EXPECT_LT(0, run.runs);
	free(big);
	close(events);
	close(pfi);
	kvm_vm_free(vm);
}

/* A VM whose vCPU never ran (and one without a vCPU) is not up: EAGAIN,
 * after the module's bounded wait for one. */
TEST(linux_profile_waits_for_the_guest)
{
	const uint32_t len = sizeof(linux_profile) - 1;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *idle = vm_create_with_one_vcpu(&vcpu, smoke_guest);
	struct kvm_vm *bare = vm_create_barebones();
	int pfi = pfi_open(), events;
	uint32_t id_idle, id_bare;
	struct timespec t0;
	int64_t ms;

	ASSERT_LE(0, pfi);
	ASSERT_EQ(0, pfi_attach(pfi, idle->fd, 0, &id_idle));
	ASSERT_EQ(0, pfi_attach(pfi, bare->fd, 0, &id_bare));
	events = ioctl(pfi, KVM_PFI_EVENTS, 0);
	ASSERT_LE(0, events);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	EXPECT_EQ(-EAGAIN, pfi_linux_profile(pfi, id_idle, 0, linux_profile, len, 0, NULL));
	ms = elapsed_ms(&t0);
	TH_LOG("EAGAIN after %lld ms", (long long)ms);
	/* "Up to a second": bounded, with room for a loaded host. */
	EXPECT_GT(5000, ms);
	EXPECT_EQ(-EAGAIN, pfi_linux_profile(pfi, id_bare, KVM_PFI_LINUX_SLIDE, linux_profile,
					     len, 0, NULL));
	EXPECT_NO_PROFILE(pfi, id_idle, events);
	EXPECT_NO_PROFILE(pfi, id_bare, events);
	close(events);
	close(pfi);
	kvm_vm_free(bare);
	kvm_vm_free(idle);
}

TEST(process_list_refusals)
{
	struct kvm_vm *vm = vm_create_barebones();
	struct kvm_pfi_process procs[2];
	struct kvm_pfi_process_list l;
	int pfi = pfi_open();
	uint32_t id;

	ASSERT_LE(0, pfi);
	EXPECT_EQ(-ENOENT, pfi_process_list(pfi, 12345, NULL, 0, NULL));
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	/* No profile: no list, with or without a buffer. */
	EXPECT_EQ(-ENODATA, pfi_process_list(pfi, id, NULL, 0, NULL));
	EXPECT_EQ(-ENODATA, pfi_process_list(pfi, id, procs, 2, NULL));
	l = (struct kvm_pfi_process_list){ .vm_id = id, .reserved = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_PROCESS_LIST, &l));
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_PROCESS_LIST, (void *)8));
	/* Still attached, still no profile. */
	EXPECT_EQ(1, pfi_nr_attached(pfi));
	EXPECT_EQ(-ENODATA, pfi_process_list(pfi, id, NULL, 0, NULL));
	ASSERT_EQ(0, pfi_detach(pfi, id));
	EXPECT_EQ(-ENOENT, pfi_process_list(pfi, id, NULL, 0, NULL));
	close(pfi);
	kvm_vm_free(vm);
}

/* KVM_PFI_PROCESS_VMAS: the same order of refusals as the process list. */
TEST(process_vmas_refusals)
{
	struct kvm_vm *vm = vm_create_barebones();
	struct kvm_pfi_process_vmas q;
	int pfi = pfi_open();
	uint32_t id;

	ASSERT_LE(0, pfi);
	q = (struct kvm_pfi_process_vmas){ .vm_id = 12345, .pid = 1 };
	EXPECT_EQ(-ENOENT, pfi_ioctl(pfi, KVM_PFI_PROCESS_VMAS, &q));
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	/* Bad values before anything else; then no profile. */
	q = (struct kvm_pfi_process_vmas){ .vm_id = id, .pid = 1, .reserved = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_PROCESS_VMAS, &q));
	q = (struct kvm_pfi_process_vmas){ .vm_id = id, .pid = 1, .nr_vmas = KVM_PFI_MAX_VMAS + 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_PROCESS_VMAS, &q));
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_PROCESS_VMAS, (void *)8));
	q = (struct kvm_pfi_process_vmas){ .vm_id = id, .pid = 1 };
	EXPECT_EQ(-ENODATA, pfi_ioctl(pfi, KVM_PFI_PROCESS_VMAS, &q));
	/* Nothing written back on a refusal. */
	EXPECT_EQ(0, q.nr_vmas);
	EXPECT_EQ(0, q.cr3);
	EXPECT_EQ(1, pfi_nr_attached(pfi));
	ASSERT_EQ(0, pfi_detach(pfi, id));
	EXPECT_EQ(-ENOENT, pfi_ioctl(pfi, KVM_PFI_PROCESS_VMAS, &q));
	close(pfi);
	kvm_vm_free(vm);
}

/*
 * KVM_PFI_RULE_ADD, _REMOVE, _LIST: bad values before anything else, then
 * the VM's owner, then no profile; a refusal adds nothing and writes
 * nothing back.
 */
TEST(rule_refusals)
{
	struct kvm_vm *vm = vm_create_barebones();
	struct kvm_pfi_rule r = {}, good, out[2];
	struct kvm_pfi_rule_remove rm;
	struct kvm_pfi_rule_list l;
	int pfi = pfi_open(), other = pfi_open();
	uint32_t id;

	ASSERT_LE(0, pfi);
	ASSERT_LE(0, other);
	good = (struct kvm_pfi_rule){ .vm_id = 12345, .region = KVM_PFI_REGION_STACK };
	strcpy(good.name, "sleep");
	r = good;
	EXPECT_EQ(-ENOENT, pfi_ioctl(pfi, KVM_PFI_RULE_ADD, &r));
	ASSERT_EQ(0, pfi_attach(pfi, vm->fd, 0, &id));
	good.vm_id = id;

#define RULE_EINVAL(change) do {					\
		struct kvm_pfi_rule sent;				\
		r = good;						\
		change;							\
		sent = r;						\
		EXPECT_EQ(-EINVAL, pfi_ioctl(pfi, KVM_PFI_RULE_ADD, &r)); \
		EXPECT_EQ(0, memcmp(&sent, &r, sizeof(r)));		\
	} while (0)
	RULE_EINVAL(r.rule_id = 1);
	RULE_EINVAL(r.nr_targets = 1);
	RULE_EINVAL(r.pages = 1);
	RULE_EINVAL(r.pages_uncovered = 1);
	RULE_EINVAL(r.nr_processes = 1);
	RULE_EINVAL(r.walk_errors = 1);
	RULE_EINVAL(r.pid = -1);
	RULE_EINVAL(r.pid = 5);					/* a pid and a name */
	RULE_EINVAL(memset(r.name, 0, sizeof(r.name)));		/* neither */
	RULE_EINVAL(memset(r.name, 'a', sizeof(r.name)));	/* no NUL */
	RULE_EINVAL(r.region = 0);
	RULE_EINVAL(r.region = KVM_PFI_REGION_ALL + 1);
	RULE_EINVAL(strcpy(r.pattern, "*"));			/* a pattern, not file */
	RULE_EINVAL(r.region = KVM_PFI_REGION_FILE);		/* file, no pattern */
	RULE_EINVAL((r.region = KVM_PFI_REGION_FILE, memset(r.pattern, '*', sizeof(r.pattern))));
	RULE_EINVAL(r.target_flags = KVM_PFI_TARGET_KERNEL);
	RULE_EINVAL(r.target_flags = KVM_PFI_TARGET_NO_VMA_CHECK);
	RULE_EINVAL(r.target_flags = KVM_PFI_TARGET_ENFORCE);	/* without PROTECT */
	RULE_EINVAL(r.target_flags = 1U << 31);
#undef RULE_EINVAL
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_RULE_ADD, (void *)8));
	/* Only the owner adds or removes rules. */
	r = good;
	EXPECT_EQ(-EPERM, pfi_ioctl(other, KVM_PFI_RULE_ADD, &r));
	/* A good rule, but the VM has no Linux profile. */
	r = good;
	EXPECT_EQ(-ENODATA, pfi_ioctl(pfi, KVM_PFI_RULE_ADD, &r));
	EXPECT_EQ(0, r.rule_id);
	r = (struct kvm_pfi_rule){ .vm_id = id, .pid = 1, .region = KVM_PFI_REGION_FILE,
				   .target_flags = KVM_PFI_TARGET_READ };
	strcpy(r.pattern, "*/libc.so*");
	EXPECT_EQ(-ENODATA, pfi_ioctl(pfi, KVM_PFI_RULE_ADD, &r));
	/* Nothing was added. */
	l = (struct kvm_pfi_rule_list){ .vm_id = id, .nr_rules = 2, .rules = (uintptr_t)out };
	EXPECT_EQ(0, pfi_ioctl(pfi, KVM_PFI_RULE_LIST, &l));
	EXPECT_EQ(0, l.nr_rules);
	EXPECT_EQ(-EFAULT, pfi_ioctl(pfi, KVM_PFI_RULE_LIST, (void *)8));
	rm = (struct kvm_pfi_rule_remove){ .vm_id = id, .rule_id = 1 };
	EXPECT_EQ(-EPERM, pfi_ioctl(other, KVM_PFI_RULE_REMOVE, &rm));
	EXPECT_EQ(-ENOENT, pfi_ioctl(pfi, KVM_PFI_RULE_REMOVE, &rm));
	EXPECT_EQ(1, pfi_nr_attached(pfi));
	ASSERT_EQ(0, pfi_detach(pfi, id));
	EXPECT_EQ(-ENOENT, pfi_ioctl(pfi, KVM_PFI_RULE_LIST, &l));
	EXPECT_EQ(-ENOENT, pfi_ioctl(pfi, KVM_PFI_RULE_REMOVE, &rm));
	close(other);
	close(pfi);
	kvm_vm_free(vm);
}

TEST_HARNESS_MAIN
