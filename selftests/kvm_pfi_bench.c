// SPDX-License-Identifier: GPL-2.0
/*
 * Probe overhead and injection latency, for `make bench`.
 *
 *   kvm_pfi_bench none|attached|pending|pending_other_cr3|pending_10000|inject [exits]
 *
 * Runs a guest that makes `exits` port-I/O exits (default 10000) and prints
 * "time <mode> <ns>" for the loop, measured in the test VM; "ready" once
 * the loop starts (for a run in the background, see bench-in-vm.sh). Under QEMU
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

static uint64_t guest_exits;

static void guest_loop(void)
{
	asm volatile("sti; nop");
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

static int add_target(int pfi, uint32_t vm_id, uint64_t cr3, uint64_t gva, uint64_t len,
		      uint32_t flags, uint32_t *tid)
{
	struct kvm_pfi_target t = {
		.vm_id = vm_id, .flags = flags, .cr3 = cr3, .gva = gva, .len = len,
	};
	int r = pfi_ioctl(pfi, KVM_PFI_TARGET_ADD, &t);

	*tid = t.target_id;
	return r;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "none";
	uint64_t exits = argc > 2 ? strtoull(argv[2], NULL, 0) : 10000;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_loop);
	uint64_t *pte = NULL, saved = 0, t0, t1, pf_gva = 0;
	uint32_t vm_id = 0, tid = 0;
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
	if (!strncmp(mode, "pending", 7)) {
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
		for (int i = 0; i < pages / TARGET_PAGES; i++) {
			/* pending: all in the guest's own space; _other_cr3: all in
			 * the other; _10000: the first half in each. */
			bool in_other = !strcmp(mode, "pending_other_cr3") ||
					(pages == MANY_PAGES && i >= pages / TARGET_PAGES / 2);

			TEST_ASSERT(!add_target(pfi, vm_id, in_other ? other : own,
						gva + i * TARGET_PAGES * 4096ull,
						TARGET_PAGES * 4096ull, 0, &tid), "target %d", i);
		}
	}
	if (!strcmp(mode, "inject")) {
		pf_gva = vm_alloc(vm, 4096, PFI_KERNEL_HALF_GVA);
		pte = vm_get_pte(vm, pf_gva);
		saved = *pte;
		*pte = LINUX_SWAP_PTE;
		TEST_ASSERT(!add_target(pfi, vm_id, vm->mmu.pgd, pf_gva, 4096,
					KVM_PFI_TARGET_KERNEL, &tid), "target");
	}

	printf("ready\n");
	fflush(stdout);
	t0 = now_ns();
	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			if (uc.args[0] == 2) {
				TEST_ASSERT(uc.args[1] == pf_gva, "cr2 %lx", uc.args[1]);
				*pte = saved;
			} else {
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
