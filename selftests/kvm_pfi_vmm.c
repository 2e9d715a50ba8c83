// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal VMM for tests and the demo: creates a VM with one vCPU whose
 * guest makes a known number of port-I/O exits, prints
 *   {"pid":P,"vm_fd":F}
 * on stdout, waits until its stdin is closed (or reaches EOF), then runs the
 * guest to the end and exits 0 if the guest made exactly that many exits.
 *
 *   kvm_pfi_vmm [exits] [pause_us]   (default 1000 exits, no pause)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"

static uint64_t guest_exits;

static void guest_code(void)
{
	for (uint64_t i = 0; i < READ_ONCE(guest_exits); i++)
		GUEST_SYNC(i);
	GUEST_DONE();
}

int main(int argc, char **argv)
{
	uint64_t exits = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000;
	useconds_t pause_us = argc > 2 ? strtoul(argv[2], NULL, 0) : 0;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	struct ucall uc;
	uint64_t syncs = 0;
	char buf[64];

	guest_exits = exits;
	sync_global_to_guest(vm, guest_exits);
	printf("{\"pid\":%d,\"vm_fd\":%d}\n", getpid(), vm->fd);
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	for (;;) {
		vcpu_run(vcpu);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			syncs++;
			if (pause_us)
				usleep(pause_us);
			break;
		case UCALL_DONE:
			kvm_vm_free(vm);
			return syncs == exits ? 0 : 1;
		default:
			fprintf(stderr, "unexpected ucall %lu\n", uc.cmd);
			return 2;
		}
	}
}
