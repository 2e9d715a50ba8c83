// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal VMM for tests and the demo: creates a VM with one vCPU whose
 * guest makes a known number of port-I/O exits, prints
 *   {"pid":P,"vm_fd":F}
 * on stdout, waits until its stdin is closed (or reaches EOF), then runs the
 * guest to the end and exits 0 if the guest made exactly that many exits.
 *
 *   kvm_pfi_vmm [exits] [pause_us] [swap]   (default 1000 exits, no pause)
 *
 * With "swap", one guest page holding a known text, with the EICAR
 * anti-virus test string at offset EICAR_OFFSET, is "swapped out" before
 * the guest starts: its PTE becomes a Linux swap entry. The guest runs at
 * CPL 0 with interrupts on; its #PF handler tells the VMM, which maps the
 * page back, as a guest OS would. After its last exit but one the guest
 * writes WRITE_TEXT at WRITE_OFFSET of the page. The hello line then also
 * carries "cr3", "gva", "eicar_offset" and "write_offset", for
 * `kvm-pfi target add --kernel` and the checks of what it reports. The page
 * is in the kernel half: this guest has no SMAP, and the module injects a
 * kernel-mode fault on a user-half page only with SMAP and RFLAGS.AC set.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"

#include "kvm_pfi_util.h"	/* PFI_KERNEL_HALF_GVA */

#define SYNC_PAGE_FAULT	0x5046	/* "PF": from the #PF handler */
/* __swp_entry(type 0, offset 0x1234), offset inverted (L1TF), as Linux writes it. */
#define LINUX_SWAP_PTE	0x07ffffffffdb9600ull
#define DEMO_TEXT	"kvm-pfi brought this page back from swap. "
/* The standard harmless test "virus" every scanner detects. */
#define EICAR		"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
#define EICAR_OFFSET	1000
#define WRITE_OFFSET	8
#define WRITE_TEXT	"WRITTEN!"	/* 8 bytes, stored as one u64: */
#define WRITE_VALUE	0x214e455454495257ull

static uint64_t guest_exits;
static uint64_t guest_write_gva;	/* 0: no write */

static void guest_pf_handler(struct ex_regs *regs)
{
	GUEST_SYNC3(SYNC_PAGE_FAULT, get_cr2(), regs->error_code);
}

static void guest_code(void)
{
	asm volatile("sti; nop");
	for (uint64_t i = 0; i < READ_ONCE(guest_exits); i++)
		GUEST_SYNC(i);
	if (READ_ONCE(guest_write_gva))
		/* One 8-byte store, so the host sees one write. */
		*(volatile uint64_t *)(guest_write_gva + WRITE_OFFSET) = WRITE_VALUE;
	GUEST_SYNC(guest_exits);
	GUEST_DONE();
}

int main(int argc, char **argv)
{
	uint64_t exits = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000;
	useconds_t pause_us = argc > 2 ? strtoul(argv[2], NULL, 0) : 0;
	bool swap = argc > 3 && !strcmp(argv[3], "swap");
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	uint64_t syncs = 0, gva = 0, saved_pte = 0, *pte = NULL;
	struct ucall uc;
	char buf[64];

	guest_exits = exits;
	sync_global_to_guest(vm, guest_exits);
	vm_install_exception_handler(vm, PF_VECTOR, guest_pf_handler);
	if (swap) {
		char *page;

		gva = vm_alloc(vm, 4096, PFI_KERNEL_HALF_GVA);
		page = kernel_half_hva(vm, gva);
		for (size_t off = 0; off + sizeof(DEMO_TEXT) - 1 <= 4096; off += sizeof(DEMO_TEXT) - 1)
			memcpy(page + off, DEMO_TEXT, sizeof(DEMO_TEXT) - 1);
		memcpy(page + EICAR_OFFSET, EICAR, sizeof(EICAR) - 1);
		pte = vm_get_pte(vm, gva);
		saved_pte = *pte;
		*pte = LINUX_SWAP_PTE;
		guest_write_gva = gva;
		sync_global_to_guest(vm, guest_write_gva);
		printf("{\"pid\":%d,\"vm_fd\":%d,\"cr3\":%lu,\"gva\":%lu,\"eicar_offset\":%d,"
		       "\"write_offset\":%d,\"write_text\":\"%s\"}\n",
		       getpid(), vm->fd, (unsigned long)vm->mmu.pgd, (unsigned long)gva,
		       EICAR_OFFSET, WRITE_OFFSET, WRITE_TEXT);
	} else {
		printf("{\"pid\":%d,\"vm_fd\":%d}\n", getpid(), vm->fd);
	}
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	for (;;) {
		vcpu_run(vcpu);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			if (uc.args[0] == SYNC_PAGE_FAULT) {
				/* The guest OS's part: swap the page back in. */
				printf("{\"guest_page_fault\":{\"cr2\":%lu,\"error_code\":%lu}}\n",
				       uc.args[1], uc.args[2]);
				fflush(stdout);
				if (pte && uc.args[1] == gva)
					*pte = saved_pte;
				break;
			}
			syncs++;
			if (pause_us)
				usleep(pause_us);
			break;
		case UCALL_DONE:
			kvm_vm_free(vm);
			/* The loop's syncs and the one after the write. */
			return syncs == exits + 1 ? 0 : 1;
		default:
			fprintf(stderr, "unexpected ucall %lu\n", uc.cmd);
			return 2;
		}
	}
}
