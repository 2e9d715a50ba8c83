// SPDX-License-Identifier: GPL-2.0
/*
 * Unloading kvm_pfi while an attached VM runs: the VM keeps running and its
 * guest finishes; the module is loaded again afterwards for later tests.
 * Needs KVM_PFI_KO (path of kvm_pfi.ko) in the environment.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#include "kvm_pfi_util.h"

#define GUEST_EXITS	20000

static void guest_long_loop(void)
{
	for (int i = 0; i < GUEST_EXITS; i++)
		GUEST_SYNC(i);
	GUEST_DONE();
}

TEST(rmmod_while_attached_vm_runs)
{
	const char *ko = getenv("KVM_PFI_KO");
	int ready[2], status, pfi;
	char cmd[512];
	uint32_t id;
	pid_t pid;

	ASSERT_NE(NULL, ko);
	ASSERT_EQ(0, pipe(ready));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct kvm_vcpu *vcpu;
		struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_long_loop);
		struct ucall uc;
		int syncs = 0;

		pfi = pfi_open();
		if (pfi < 0 || pfi_attach(pfi, vm->fd, KVM_PFI_ATTACH_PERSISTENT, &id))
			_exit(2);
		/* The module holds no file of ours: rmmod is possible. */
		close(pfi);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		for (;;) {
			vcpu_run(vcpu);
			switch (get_ucall(vcpu, &uc)) {
			case UCALL_SYNC:
				syncs++;
				continue;
			case UCALL_DONE:
				_exit(syncs == GUEST_EXITS ? 0 : 4);
			default:
				_exit(5);
			}
		}
	}
	char b;
	/* If the child dies before it is ready, read() sees EOF. */
	close(ready[1]);
	ASSERT_EQ(1, read(ready[0], &b, 1));
	/* The guest is running its loop now. */
	ASSERT_EQ(0, system("rmmod kvm_pfi"));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	snprintf(cmd, sizeof(cmd), "insmod %s", ko);
	ASSERT_EQ(0, system(cmd));
}

static bool module_loaded(void)
{
	return access("/sys/module/kvm_pfi", F_OK) == 0;
}

/* The module parameters have the limits of a target's own values (1 to
 * 60000 ms, 1 to 100 tries): the module refuses to load with others. */
TEST(parameters_outside_target_limits_are_refused)
{
	static const char *const bad[] = {
		"pf_timeout_ms=0", "pf_timeout_ms=60001", "pf_max_tries=0", "pf_max_tries=101",
	};
	const char *ko = getenv("KVM_PFI_KO");
	char cmd[512];

	ASSERT_NE(NULL, ko);
	ASSERT_EQ(0, system("rmmod kvm_pfi"));
	for (int i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(cmd, sizeof(cmd), "insmod %s %s 2>/dev/null", ko, bad[i]);
		EXPECT_NE(0, system(cmd)) TH_LOG("%s", bad[i]);
		EXPECT_FALSE(module_loaded()) TH_LOG("%s", bad[i]);
	}
	/* The limits themselves are fine. */
	snprintf(cmd, sizeof(cmd), "insmod %s pf_timeout_ms=60000 pf_max_tries=100", ko);
	EXPECT_EQ(0, system(cmd));
	EXPECT_TRUE(module_loaded());
	EXPECT_EQ(0, system("rmmod kvm_pfi"));
	snprintf(cmd, sizeof(cmd), "insmod %s pf_timeout_ms=1 pf_max_tries=1", ko);
	EXPECT_EQ(0, system(cmd));
	EXPECT_EQ(0, system("rmmod kvm_pfi"));
	snprintf(cmd, sizeof(cmd), "insmod %s", ko);
	ASSERT_EQ(0, system(cmd));
}

TEST_HARNESS_MAIN
