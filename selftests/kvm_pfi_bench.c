// SPDX-License-Identifier: GPL-2.0
/*
 * Probe overhead and injection latency, for `make bench`.
 *
 *   kvm_pfi_bench none|attached|pending|pending_other_cr3|pending_10000|
 *                 neighbour|neighbour_none|inject [exits]
 *
 * Runs a guest that makes `exits` port-I/O exits (default 10000) and prints
 * "time <mode> <ns>" for the loop, measured in the test VM, after a warm-up
 * that lasts until new targets had their first walks. Under QEMU
 * -icount shift=0 the VM's clock counts guest instructions, so the figures
 * are instruction-based and repeatable (Documentation/performance.rst).
 *   none      kvm_pfi is not loaded (the runner makes sure), or not attached
 *   attached  the VM is attached, without targets
 *   pending   attached with 1000 swapped-out target pages that stay pending
 *             (user-only targets while the guest runs at CPL 0: every entry
 *             evaluates them and waits)
 *   pending_other_cr3
 *             the same 1000 pages in an address space the guest never loads
 *             (a copy of its top-level table, so walks through it see the
 *             same swap entries)
 *   pending_10000
 *             10,000 pending pages in 20 targets of 500: 10 in the
 *             address space the guest runs in, 10 in one it never loads
 *   neighbour, neighbour_none
 *             an unattached VM beside one with 10,000 pending pages, or
 *             beside one unattached (see neighbour())
 *   inject    one kernel-mode target page (in the kernel half: this guest
 *             has no SMAP, so a user-half page would never get a
 *             kernel-mode fault): prints
 *             "count entries_context_to_delivery <n>"
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"

#include "kvm_pfi_util.h"

#define PENDING_PAGES	1000
#define MANY_PAGES	10000
#define TARGET_PAGES	500	/* KVM_PFI_MAX_TARGET_PAGES is 512 */
#define LINUX_SWAP_PTE	0x07ffffffffdb9600ull	/* __swp_entry(0, 0x1234) */

static uint64_t guest_exits, guest_go;

/* Exits until the host says go (it waits for the first walks of new
 * targets, a one-time cost of adding them), then the timed loop. */
static void guest_loop(void)
{
	asm volatile("sti; nop");
	while (!READ_ONCE(guest_go))
		GUEST_SYNC1(0);
	for (uint64_t i = 0; i < READ_ONCE(guest_exits); i++)
		GUEST_SYNC1(1);
	GUEST_DONE();
}

static void pf_handler(struct ex_regs *regs)
{
	GUEST_SYNC3(2, get_cr2(), regs->error_code);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Whether every page of the targets [first, last] has had its first walk. */
static bool all_walked(int pfi, uint32_t vm_id, uint32_t first, uint32_t last)
{
	static struct kvm_pfi_page_info info[512];

	for (uint32_t id = first; first && id <= last; id++) {
		struct kvm_pfi_target_pages tp = {
			.vm_id = vm_id, .target_id = id, .nr_pages = 512, .pages = (uintptr_t)info,
		};

		TEST_ASSERT(!pfi_ioctl(pfi, KVM_PFI_TARGET_PAGES, &tp), "pages");
		for (uint32_t i = 0; i < tp.nr_pages && i < 512; i++)
			if (info[i].state == KVM_PFI_PAGE_UNKNOWN)
				return false;
	}
	return true;
}

static int add_target(int pfi, uint32_t vm_id, uint64_t cr3, uint64_t gva, uint64_t len,
		      uint32_t flags, uint32_t *tid)
{
	struct kvm_pfi_target t = {
		.vm_id = vm_id, .flags = pfi_mini_os_flags(flags, gva), .cr3 = cr3, .gva = gva, .len = len,
	};
	int r = pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, &t);

	*tid = t.target_id;
	return r;
}

/* Swapped-out target pages that stay pending (see the modes above); the
 * targets' ids are [*first, *last]. */
static void add_pending(struct kvm_vm *vm, int pfi, uint32_t vm_id, const char *mode,
			uint32_t *first, uint32_t *last)
{
	/* A memslot of their own, mapped at the same guest address. */
	uint64_t gva = 0x40000000, own = vm->mmu.pgd, other;
	int pages = strcmp(mode, "pending_10000") ? PENDING_PAGES : MANY_PAGES;

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, gva, 1, pages, 0);
	virt_map(vm, gva, gva, pages);

	for (int i = 0; i < pages; i++)
		*vm_get_pte(vm, gva + i * 4096ull) = LINUX_SWAP_PTE;
	/* Shares every lower table; the vCPU never loads it. */
	other = vm_phy_page_alloc(vm, KVM_GUEST_PAGE_TABLE_MIN_PADDR,
				  vm->memslots[MEM_REGION_PT]);
	memcpy(addr_gpa2hva(vm, other), addr_gpa2hva(vm, vm->mmu.pgd), 4096);
	*first = 0;
	for (int i = 0; i < pages / TARGET_PAGES; i++) {
		/* pending: all in the guest's own space; _other_cr3: all in
		 * the other; _10000: the first half in each. */
		bool in_other = !strcmp(mode, "pending_other_cr3") ||
				(pages == MANY_PAGES && i >= pages / TARGET_PAGES / 2);

		TEST_ASSERT(!add_target(pfi, vm_id, in_other ? other : own,
					gva + i * TARGET_PAGES * 4096ull,
					TARGET_PAGES * 4096ull, 0, last), "target %d", i);
		if (!*first)
			*first = *last;
	}
}

/* Runs the guest's warm-up exits until every page of the targets [first,
 * last] had its first walk (the guest's paging mode is known after its
 * first exit), then lets it start the timed loop. */
static void warm_up(struct kvm_vm *vm, struct kvm_vcpu *vcpu, int pfi, uint32_t vm_id,
		    uint32_t first, uint32_t last)
{
	struct ucall uc;

	for (uint64_t w0 = now_ns(); !all_walked(pfi, vm_id, first, last);) {
		TEST_ASSERT(now_ns() - w0 < 60000000000ull, "first walks not done");
		for (int k = 0; k < 50; k++) {
			vcpu_run(vcpu);
			TEST_ASSERT(get_ucall(vcpu, &uc) == UCALL_SYNC && uc.args[0] == 0,
				    "warm-up exit");
		}
	}
	guest_go = 1;
	sync_global_to_guest(vm, guest_go);
}

/*
 * neighbour, neighbour_none: two VMs in this thread, run in turn 100 exits
 * at a time; only the second VM's runs are timed, "exits" of them. With
 * "neighbour" the first is attached with 10,000 pending pages (as
 * pending_10000), the second never is; "neighbour_none" is the same pair
 * with nothing attached (the module need not be loaded). Both VMs on one
 * CPU, in one thread: the scheduler adds nothing between the runs.
 */
static void neighbour(const char *mode, uint64_t exits)
{
	struct kvm_vcpu *va, *vb;
	struct kvm_vm *a = vm_create_with_one_vcpu(&va, guest_loop);
	struct kvm_vm *b = vm_create_with_one_vcpu(&vb, guest_loop);
	uint32_t vm_id = 0, first = 0, last = 0;
	uint64_t syncs = 0, t = 0;
	struct ucall uc;
	int pfi = -1;

	guest_exits = ~0ull;
	sync_global_to_guest(a, guest_exits);
	guest_exits = exits;
	sync_global_to_guest(b, guest_exits);
	if (!strcmp(mode, "neighbour")) {
		pfi = pfi_open();
		TEST_ASSERT(pfi >= 0, "open " KVM_PFI_DEV);
		TEST_ASSERT(!pfi_attach(pfi, a->fd, 0, &vm_id), "attach");
		add_pending(a, pfi, vm_id, "pending_10000", &first, &last);
	}
	warm_up(a, va, pfi, vm_id, first, last);
	warm_up(b, vb, -1, 0, 0, 0);
	while (syncs < exits) {
		uint64_t t0;

		for (int k = 0; k < 100; k++) {
			vcpu_run(va);
			TEST_ASSERT(get_ucall(va, &uc) == UCALL_SYNC, "neighbour exit");
		}
		t0 = now_ns();
		for (int k = 0; k < 100 && syncs < exits; k++) {
			vcpu_run(vb);
			TEST_ASSERT(get_ucall(vb, &uc) == UCALL_SYNC, "measured exit");
			syncs += uc.args[0] == 1;
		}
		t += now_ns() - t0;
	}
	vcpu_run(vb);
	TEST_ASSERT(get_ucall(vb, &uc) == UCALL_DONE, "measured VM done");
	printf("time %s %lu\n", mode, t);
	if (pfi >= 0)
		close(pfi);
	kvm_vm_free(a);
	kvm_vm_free(b);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "none";
	uint64_t exits = argc > 2 ? strtoull(argv[2], NULL, 0) : 10000;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	if (!strncmp(mode, "neighbour", 9)) {
		neighbour(mode, exits);
		return 0;
	}
	vm = vm_create_with_one_vcpu(&vcpu, guest_loop);
	uint64_t *pte = NULL, saved = 0, t0, t1, pf_gva = 0;
	uint32_t vm_id = 0, tid = 0, first_tid = 0;
	int pfi = -1, syncs = 0;
	struct ucall uc;

	guest_exits = exits;
	sync_global_to_guest(vm, guest_exits);
	vm_install_exception_handler(vm, PF_VECTOR, pf_handler);
	if (strcmp(mode, "none")) {
		pfi = pfi_open();
		TEST_ASSERT(pfi >= 0, "open " KVM_PFI_DEV);
		TEST_ASSERT(!pfi_attach(pfi, vm->fd, 0, &vm_id), "attach");
	}
	if (!strncmp(mode, "pending", 7))
		add_pending(vm, pfi, vm_id, mode, &first_tid, &tid);
	if (!strcmp(mode, "inject")) {
		pf_gva = vm_alloc(vm, 4096, PFI_KERNEL_HALF_GVA);
		pte = vm_get_pte(vm, pf_gva);
		saved = *pte;
		*pte = LINUX_SWAP_PTE;
		TEST_ASSERT(!add_target(pfi, vm_id, vm->mmu.pgd, pf_gva, 4096,
					KVM_PFI_TARGET_KERNEL, &tid), "target");
	}

	warm_up(vm, vcpu, pfi, vm_id, first_tid, tid);
	t0 = now_ns();
	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			if (uc.args[0] == 2) {
				TEST_ASSERT(uc.args[1] == pf_gva, "cr2 %lx", uc.args[1]);
				*pte = saved;
			} else if (uc.args[0] == 1) {
				syncs++;
			}
			continue;
		case UCALL_DONE:
			break;
		default:
			TEST_FAIL("ucall %lu", uc.cmd);
		}
		break;
	}
	t1 = now_ns();
	TEST_ASSERT(syncs == (int)exits, "%d syncs", syncs);
	printf("time %s %lu\n", mode, t1 - t0);
	if (!strcmp(mode, "inject")) {
		struct kvm_pfi_page_info info = { 0 };
		struct kvm_pfi_target_pages tp = {
			.vm_id = vm_id, .target_id = tid, .nr_pages = 1, .pages = (uintptr_t)&info,
		};

		TEST_ASSERT(!pfi_ioctl(pfi, KVM_PFI_TARGET_PAGES, &tp), "pages");
		TEST_ASSERT(info.state == KVM_PFI_PAGE_RESIDENT && info.injections == 1,
			    "state %u injections %u", info.state, info.injections);
		printf("count entries_context_to_delivery %u\n", info.entries_to_delivery);
	}
	if (pfi >= 0)
		close(pfi);
	kvm_vm_free(vm);
	return 0;
}
