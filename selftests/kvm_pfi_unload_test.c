// SPDX-License-Identifier: GPL-2.0
/*
 * Unloading kvm_pfi while attached VMs run: the VMs keep running and their
 * guests finish, whatever the module was doing for them; the module is
 * loaded again afterwards for later tests. Needs KVM_PFI_KO (path of
 * kvm_pfi.ko) in the environment. A report, scan or protection work item
 * that outlived the module would run freed code: the runner's kernel log
 * check (an oops, a KASAN or lockdep report) fails the suite then.
 */
#include "kvm_pfi_mini_os.h"
#include "kvm_pfi_sigs.h"

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

/*
 * rmmod while two VMs have work in flight in the module. Each VM (a child
 * process, attached persistently, so that it holds no file of the module)
 * has a page with a signature (scans) that its ring-3 task writes at every
 * exit. In one VM that page is protected (emulated writes, reports and
 * rescans in the report work); the other has swapped-out pages whose
 * faults the guest logs but does not service, so the module re-injects
 * them every pf_timeout_ms. The
 * parent unloads the module at a random moment. Ground truth is each
 * guest's: every write it made reads back, every #PF it took was at a
 * target page (the mini OS asserts that), none was a double fault, and a
 * page it did bring in holds its content.
 */
#define UNLOAD_PAGES	5	/* page 0 protected, 1..4 swapped */
#define UNLOAD_WRITES	3000	/* writes per VM and round, rmmod somewhere among them */

static const char unload_marker[] = "KPFI-UNLOAD-SCAN";

static void unload_rules(struct sigset *s)
{
	memset(s, 0, sizeof(*s));
	set_rule(s, "unload_marker");
	set_pattern(s, "4B 50 46 49 2D 55 4E 4C 4F 41 44");
	set_encode(s);
}

/*
 * One VM's part, in a child; returns its exit code (0: all as the guest
 * expected). Writes one byte to `ready` once everything is in flight. With
 * `protects` page 0 is protected and nothing is injected; without, page 0
 * is a plain target and the swapped pages are injected. One VM does each:
 * on QEMU's emulated SVM, a write to a protected page right after an
 * injected #PF makes KVM see a nested page fault on that write "during
 * event delivery", which it cannot emulate (KVM_INTERNAL_ERROR_DELIVERY_EV,
 * the write's own address in EXITINFO2, which hardware cannot report);
 * see Documentation/testing.rst.
 */
static int unload_vm(int ready, bool protects)
{
	struct mini m;
	struct tgt t = { 0 };
	struct vcpu_ctl *c;
	struct sigset s;
	uint32_t vm_id;
	uint64_t faults = 0;
	gva_t gva;

	mini_init(&m, 1);
	c = &m.ctl->vcpu[0];
	gva = mini_alloc(&m, UNLOAD_PAGES);
	mini_add_page(&m, gva, PK_RESIDENT, 0, 0);
	for (int i = 1; i < UNLOAD_PAGES; i++)
		mini_add_page(&m, gva + i * PAGE, PK_SWAPPED, 0, 0);
	mini_plant(&m, 0, 2048, unload_marker, sizeof(unload_marker) - 1);
	mini_finish(&m);
	t.pfi = pfi_open();
	if (t.pfi < 0 || pfi_attach(t.pfi, m.vm->fd, KVM_PFI_ATTACH_PERSISTENT, &vm_id))
		return 10;
	t.vm_id = vm_id;
	mini_run_until_phase(&m, 0, PH_USER);
	unload_rules(&s);
	if (sigs_load(t.pfi, s.blob, s.size, NULL) ||
	    pfi_target_add(t.pfi, vm_id, protects ? KVM_PFI_TARGET_PROTECT : 0, m.cr3, gva, PAGE,
			   &t.id))
		return 11;
	if (protects && !wait_page_flags(&t, 0, KVM_PFI_PAGE_PROTECTED))
		return 12;
	if (!protects) {
		if (pfi_target_add(t.pfi, vm_id, KVM_PFI_TARGET_READ, m.cr3, gva + PAGE,
				   (UNLOAD_PAGES - 1) * PAGE, NULL))
			return 13;
		/* Page 1 is brought in; the others' faults are logged and left. */
		for (int n = 0; !m.ctl->page[1].mapped_gpa; n++) {
			if (n > 20000)
				return 14;
			mini_run(m.vcpu[0]);
		}
		WRITE_ONCE(m.ctl->may_map, 0);
	}
	close(t.pfi);
	if (write(ready, "r", 1) != 1)
		return 15;
	for (uint64_t i = 1; i <= UNLOAD_WRITES; i++) {
		c->write_val = i;
		c->write_gva = gva + (i % (PAGE / 8)) * 8;
		for (int n = 0; c->write_gva; n++) {
			if (n > 100)
				return 16;
			TEST_ASSERT(mini_run(m.vcpu[0]) == PH_USER, "left ring 3");
		}
		if (c->write_readback != i) {
			fprintf(stderr, "# write %lu read back %lu\n", i, c->write_readback);
			return 17;
		}
	}
	for (int i = 1; i < UNLOAD_PAGES; i++) {
		if (m.ctl->page[i].faults > 100)
			return 18;
		faults += m.ctl->page[i].faults;
	}
	if (!protects && !content_ok(&m, m.ctl->page[1].mapped_gpa, 1))
		return 19;
	if (c->nr_ud || c->nr_nmi || faults != c->nr_pf)
		return 20;
	mini_free(&m);
	return 0;
}

/* KVM_PFI_UNLOAD_ROUNDS rounds (default 3): fewer where the emulator is
 * slow (Bochs). */
FIXTURE(unload) {};
FIXTURE_SETUP(unload) {}
FIXTURE_TEARDOWN(unload) {}

TEST_F_TIMEOUT(unload, rmmod_during_scans_injections_and_protected_writes, 600)
{
	const char *ko = getenv("KVM_PFI_KO"), *env = getenv("KVM_PFI_UNLOAD_ROUNDS");
	int rounds = env ? atoi(env) : 3;
	char cmd[600];

	ASSERT_NE(NULL, ko);
	srand(getpid());
	for (int round = 0; round < rounds; round++) {
		int ready[2], status;
		pid_t pid[2];
		char b;

		/* Lost faults are re-injected every 20 ms, 100 times. */
		ASSERT_EQ(0, load_module("pf_timeout_ms=20 pf_max_tries=100"));
		ASSERT_EQ(0, pipe(ready));
		fflush(NULL);
		for (int v = 0; v < 2; v++) {
			pid[v] = fork();
			ASSERT_LE(0, pid[v]);
			if (!pid[v]) {
				close(ready[0]);
				_exit(unload_vm(ready[1], v == 1));
			}
		}
		close(ready[1]);
		/* EOF if a child dies before it is ready. */
		for (int v = 0; v < 2; v++) {
			ASSERT_EQ(1, read(ready[0], &b, 1)) TH_LOG("round %d", round);
		}
		close(ready[0]);
		usleep(rand() % 100000);
		ASSERT_EQ(0, system("rmmod kvm_pfi")) TH_LOG("round %d", round);
		for (int v = 0; v < 2; v++) {
			ASSERT_EQ(pid[v], waitpid(pid[v], &status, 0));
			EXPECT_TRUE(WIFEXITED(status)) TH_LOG("round %d vm %d", round, v);
			EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("round %d vm %d", round, v);
		}
	}
	snprintf(cmd, sizeof(cmd), "insmod %s", ko);
	ASSERT_EQ(0, system(cmd));
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
