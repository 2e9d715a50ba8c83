// SPDX-License-Identifier: GPL-2.0
/*
 * Injection stress with the guests' own accounting: two mini-OS VMs of two
 * vCPUs each take at least KVM_PFI_STRESS_FAULTS (10,000) injected #PFs in
 * total while their vCPUs run an APIC timer each and send each other IPIs.
 * An injected #PF goes into the same event-injection field KVM uses for
 * those interrupts, so a module that injected over a pending event, or an
 * emulator that delivers an event twice (QEMU's emulated SVM did, see
 * Documentation/testing.rst), shows in the guests' counts.
 *
 * Ground truth is the guests': each vCPU counts its timer interrupts against
 * the one-shot timers it armed and the IPIs it received against those sent
 * to it (each IPI is sent only once the previous one was taken, so none may
 * be merged), and the #PF handler counts the faults at each page. A lost
 * interrupt leaves a timer armed or an IPI pending for good, a duplicated
 * one is taken with none outstanding. Each round targets the VM's eight
 * swapped-out pages with max_tries 100 and the guest does not map them, so
 * each page must fail after exactly 100 faults, every one of which its
 * guest must have taken exactly once; in the last round the guest maps
 * them and each must come back with its content. A baseline runs the same
 * guests with no module at work and must give the same clean counts.
 */
#include "kvm_pfi_mini_os.h"
#include "apic.h"

#define TIMER_VECTOR	0x40
#define IPI_VECTOR	0x41
#define SPURIOUS_VECTOR	0xff	/* the SPIV's reset value */
/* KVM's APIC bus runs at 1 GHz (divide by 1): a one-shot timer of 3 ms. */
#define TIMER_COUNT	3000000
#define STRESS_VMS	2
#define STRESS_VCPUS	2
#define STRESS_PAGES	MAX_PAGES
#define STRESS_TRIES	100	/* the limit of a target's max_tries */
#define STRESS_TIMEOUT_MS 5	/* between re-injections of an unserviced fault */
#define SETTLE_MS	3000	/* for a delivered fault or a last interrupt to be counted */

struct irq_count {
	u64 booted;		/* APIC on, first timer armed */
	u64 timer_armed;	/* a one-shot timer is counting down */
	u64 timer_arms, timer_fired;
	u64 timer_dup;		/* timer interrupts taken with none armed */
	u64 ipi_pending;	/* an IPI was sent to this vCPU and not yet taken */
	u64 ipi_sent;		/* by this vCPU, to the other */
	u64 ipi_received;
	u64 ipi_dup;		/* IPIs taken with none pending */
	u64 spurious;
};

struct stress_ctl {
	u64 quiesce;		/* host: arm no timer, send no IPI any more */
	struct irq_count v[STRESS_VCPUS];
};

static struct stress_ctl sctl __attribute__((aligned(4096)));

/* The library's wrmsr() is not general-regs-only; handlers use this. */
static GRO void x2apic_set(u32 reg, u64 val)
{
	asm volatile("wrmsr" : : "c"(APIC_BASE_MSR + (reg >> 4)), "a"((u32)val),
		     "d"((u32)(val >> 32)) : "memory");
}

static GRO void timer_arm(struct irq_count *c)
{
	VSET(c->timer_armed, 1);
	VSET(c->timer_arms, c->timer_arms + 1);
	x2apic_set(APIC_TMICT, TIMER_COUNT);
}

static GRO void stress_timer(struct ex_regs *regs)
{
	u64 i = this_vcpu(), o = i ^ 1;
	struct irq_count *c = &sctl.v[i], *other = &sctl.v[o];

	if (VGET(c->timer_armed)) {
		VSET(c->timer_armed, 0);
		VSET(c->timer_fired, c->timer_fired + 1);
	} else {
		VSET(c->timer_dup, c->timer_dup + 1);
	}
	/* One IPI in flight per direction: the receiver clears ipi_pending. */
	if (!VGET(sctl.quiesce) && VGET(other->booted) &&
	    !__atomic_load_n(&other->ipi_pending, __ATOMIC_SEQ_CST)) {
		__atomic_store_n(&other->ipi_pending, 1, __ATOMIC_SEQ_CST);
		VSET(c->ipi_sent, c->ipi_sent + 1);
		x2apic_set(APIC_ICR, o << 32 | APIC_DEST_PHYSICAL | APIC_DM_FIXED | IPI_VECTOR);
	}
	x2apic_set(APIC_EOI, 0);
	if (!VGET(sctl.quiesce))
		timer_arm(c);
}

static GRO void stress_ipi(struct ex_regs *regs)
{
	struct irq_count *c = &sctl.v[this_vcpu()];

	if (__atomic_exchange_n(&c->ipi_pending, 0, __ATOMIC_SEQ_CST))
		VSET(c->ipi_received, c->ipi_received + 1);
	else
		VSET(c->ipi_dup, c->ipi_dup + 1);
	x2apic_set(APIC_EOI, 0);
}

static GRO void stress_spurious(struct ex_regs *regs)
{
	struct irq_count *c = &sctl.v[this_vcpu()];

	VSET(c->spurious, c->spurious + 1);
}

/* Ring 0, IF=0: interrupts start once the vCPU enters ring 3 (IF=1). */
void vcpu_boot(u64 idx)
{
	x2apic_enable();
	x2apic_write_reg(APIC_TDCR, 0xb);	/* divide by 1 */
	x2apic_write_reg(APIC_LVTT, APIC_LVT_TIMER_ONESHOT | TIMER_VECTOR);
	timer_arm(&sctl.v[idx]);
	VSET(sctl.v[idx].booted, 1);
}

struct stress_vm {
	struct mini m;
	struct runner r[STRESS_VCPUS];
	struct stress_ctl *s;	/* the guest's sctl, live */
	struct tgt t;
	int round;		/* rounds finished */
	bool in_round, done, stopped;
	uint64_t base[STRESS_PAGES];	/* the guest's fault counts at the round's start */
	uint64_t injected;	/* the module's injections, all rounds */
};

static void stress_vm_init(struct stress_vm *v)
{
	gva_t gva;

	memset(v, 0, sizeof(*v));
	mini_init(&v->m, STRESS_VCPUS);
	gva = mini_alloc(&v->m, STRESS_PAGES);
	for (int i = 0; i < STRESS_PAGES; i++)
		mini_add_page(&v->m, gva + i * PAGE, PK_SWAPPED, i % STRESS_VCPUS, 0);
	vm_install_exception_handler(v->m.vm, TIMER_VECTOR, stress_timer);
	vm_install_exception_handler(v->m.vm, IPI_VECTOR, stress_ipi);
	vm_install_exception_handler(v->m.vm, SPURIOUS_VECTOR, stress_spurious);
	mini_finish(&v->m);
	v->s = addr_gva2hva(v->m.vm, (gva_t)&sctl);
	/* Faults are logged and left until the last round. */
	v->m.ctl->may_map = 0;
	runners_start(v->r, &v->m);
}

static void stress_vm_stop(struct stress_vm *v)
{
	if (!v->stopped)
		runners_stop(v->r, &v->m);
	v->stopped = true;
}

/* Waits up to ms until each vCPU has taken at least n timer interrupts. */
static bool wait_timer_fired(struct stress_vm *v, uint64_t n, uint64_t ms)
{
	for (uint64_t t0 = now_ms(); now_ms() - t0 < ms; usleep(10000)) {
		bool all = true;

		for (int i = 0; i < STRESS_VCPUS; i++)
			all &= READ_ONCE(v->s->v[i].timer_fired) >= n;
		if (all)
			return true;
	}
	return false;
}

/* vCPUs that made no ucall for 3 s: every thread's kernel stack, taken
 * while they are stuck (the 10-s watchdog then fails the test). A thread
 * of its own that makes no ioctl. */
struct stall_watch {
	struct stress_vm *vms;
	volatile bool stop;
	pthread_t th;
};

static void *stall_watch_fn(void *arg)
{
	struct stall_watch *w = arg;
	uint64_t last[STRESS_VMS * STRESS_VCPUS] = { 0 }, since[STRESS_VMS * STRESS_VCPUS];
	bool told = false;

	for (int n = 0; n < STRESS_VMS * STRESS_VCPUS; n++)
		since[n] = now_ms();
	while (!w->stop && !told) {
		usleep(200000);
		for (int k = 0; k < STRESS_VMS; k++)
			for (int i = 0; i < STRESS_VCPUS; i++) {
				int n = k * STRESS_VCPUS + i;
				uint64_t e = w->vms[k].r[i].exits;

				if (e != last[n]) {
					last[n] = e;
					since[n] = now_ms();
				} else if (!told && now_ms() - since[n] > 3000) {
					char cmd[128];

					told = true;
					fprintf(stderr, "# vm %d vcpu %d (tid %d): no ucall for 3 s; all threads:\n",
						k, i, w->vms[k].r[i].tid);
					snprintf(cmd, sizeof(cmd),
						 "for t in /proc/%d/task/*; do echo \"# $t\"; sed 's/^/#   /' $t/stack; done >&2",
						 getpid());
					if (system(cmd))
						fprintf(stderr, "# (no stacks)\n");
				}
			}
	}
	return NULL;
}

static void stall_watch_stop(struct stall_watch *w)
{
	if (!w->stop) {
		w->stop = true;
		pthread_join(w->th, NULL);
	}
}

/*
 * Stops the guests' interrupts and checks their counts: nothing lost (no
 * timer left armed, no IPI left pending after SETTLE_MS, that is a
 * thousand timer periods), nothing twice, nothing spurious; then stops
 * the vCPUs.
 */
static void quiesce_and_check(struct __test_metadata *_metadata, struct stress_vm *vms,
			      int nr_vms, struct stall_watch *watch, const char *what)
{
	/* The vCPUs stop making ucalls below: not a stall. */
	stall_watch_stop(watch);
	for (int k = 0; k < nr_vms; k++)
		WRITE_ONCE(vms[k].s->quiesce, 1);
	for (uint64_t t0 = now_ms(); now_ms() - t0 < SETTLE_MS; usleep(10000)) {
		bool settled = true;

		for (int k = 0; k < nr_vms; k++)
			for (int i = 0; i < STRESS_VCPUS; i++)
				settled &= !READ_ONCE(vms[k].s->v[i].timer_armed) &&
					   !READ_ONCE(vms[k].s->v[i].ipi_pending);
		if (settled)
			break;
	}
	for (int k = 0; k < nr_vms; k++)
		stress_vm_stop(&vms[k]);
	for (int k = 0; k < nr_vms; k++) {
		struct stress_ctl *s = vms[k].s;

		for (int i = 0; i < STRESS_VCPUS; i++) {
			struct irq_count *c = &s->v[i], *o = &s->v[i ^ 1];
			struct vcpu_ctl *vc = &vms[k].m.ctl->vcpu[i];

			TH_LOG("%s: vm %d vcpu %d: timer %lu/%lu armed %lu dup %lu, ipi in %lu/%lu dup %lu, spurious %lu, #PF %lu",
			       what, k, i, c->timer_fired, c->timer_arms, c->timer_armed,
			       c->timer_dup, c->ipi_received, o->ipi_sent, c->ipi_dup,
			       c->spurious, vc->nr_pf);
			EXPECT_EQ(0, c->timer_armed) TH_LOG("vm %d vcpu %d: timer interrupt lost", k, i);
			EXPECT_EQ(c->timer_arms, c->timer_fired);
			EXPECT_EQ(0, c->timer_dup) TH_LOG("vm %d vcpu %d: timer interrupt twice", k, i);
			EXPECT_EQ(0, c->ipi_pending) TH_LOG("vm %d vcpu %d: IPI lost", k, i);
			EXPECT_EQ(o->ipi_sent, c->ipi_received);
			EXPECT_EQ(0, c->ipi_dup) TH_LOG("vm %d vcpu %d: IPI twice", k, i);
			EXPECT_EQ(0, c->spurious);
			/* The interrupts really ran beside the faults. */
			EXPECT_LE(100, c->timer_fired);
			EXPECT_LE(50, c->ipi_received);
			EXPECT_EQ(0, vc->nr_ud);
			EXPECT_EQ(0, vc->nr_nmi);
		}
	}
}

static uint64_t stress_faults_wanted(void)
{
	const char *env = getenv("KVM_PFI_STRESS_FAULTS");

	return env ? strtoull(env, NULL, 0) : 10000;
}

/* Rounds of unserviced faults each VM takes for `want` faults in all. */
static int unserviced_rounds(uint64_t want)
{
	uint64_t per_round = (uint64_t)STRESS_VMS * STRESS_PAGES * STRESS_TRIES;

	return (want + per_round - 1) / per_round;
}

static void round_start(struct __test_metadata *_metadata, struct stress_vm *v, bool last)
{
	struct kvm_pfi_target t = {
		.vm_id = v->t.vm_id, .flags = pfi_mini_os_flags(0, v->m.ctl->page[0].gva),
		.cr3 = v->m.cr3, .gva = v->m.ctl->page[0].gva,
		.len = STRESS_PAGES * PAGE,
		.timeout_ms = last ? 0 : STRESS_TIMEOUT_MS, .max_tries = last ? 0 : STRESS_TRIES,
	};

	for (int i = 0; i < STRESS_PAGES; i++)
		v->base[i] = READ_ONCE(v->m.ctl->page[i].faults);
	if (last)
		WRITE_ONCE(v->m.ctl->may_map, 1);
	ASSERT_EQ(0, pfi_ioctl(v->t.pfi, KVM_PFI_TARGET_ADD, &t));
	v->t.id = t.target_id;
	v->in_round = true;
}

/* The guest's count of faults at page i since the round started reaches n
 * (a fault the module saw delivered may still be on its way through the
 * guest's handler); returns the count. */
static uint64_t guest_faults_since(struct stress_vm *v, int i, uint64_t n)
{
	uint64_t t0 = now_ms(), got;

	while ((got = READ_ONCE(v->m.ctl->page[i].faults) - v->base[i]) < n &&
	       now_ms() - t0 < SETTLE_MS)
		usleep(1000);
	return got;
}

/* Ends the round once every page is final; returns whether it did. */
static bool round_poll(struct __test_metadata *_metadata, struct stress_vm *v, bool last)
{
	struct kvm_pfi_page_info pi[STRESS_PAGES];
	uint32_t total;

	if (pfi_target_pages(v->t.pfi, v->t.vm_id, v->t.id, pi, STRESS_PAGES, &total))
		return false;
	for (int i = 0; i < STRESS_PAGES; i++)
		if (pi[i].state != (last ? KVM_PFI_PAGE_RESIDENT : KVM_PFI_PAGE_FAILED))
			return false;
	for (int i = 0; i < STRESS_PAGES; i++) {
		struct gpage *p = &v->m.ctl->page[i];
		uint64_t got = guest_faults_since(v, i, pi[i].injections);

		v->injected += pi[i].injections;
		/* Exactly one delivery per injection: none lost, none twice. */
		EXPECT_EQ(pi[i].injections, got) TH_LOG("round %d page %d", v->round, i);
		if (last) {
			EXPECT_EQ(KVM_PFI_HOW_INJECTED, pi[i].how);
			EXPECT_LE(1, pi[i].injections);
			ASSERT_NE(0, p->mapped_gpa);
			EXPECT_EQ(p->mapped_gpa, pi[i].gpa);
			EXPECT_TRUE(content_ok(&v->m, pi[i].gpa, i)) TH_LOG("page %d", i);
		} else {
			EXPECT_EQ(KVM_PFI_FAIL_REASON_TIMEOUT, pi[i].fail_reason);
			EXPECT_EQ(STRESS_TRIES, pi[i].injections) TH_LOG("round %d page %d", v->round, i);
		}
	}
	EXPECT_EQ(0, pfi_target_remove(v->t.pfi, v->t.vm_id, v->t.id));
	v->in_round = false;
	v->round++;
	return true;
}

/* KVM_PFI_STRESS_TRACE=1: the state below once a second, from a thread of
 * its own (and once when a vCPU stalls). */
struct tracer {
	struct stress_vm *vms;
	volatile bool stop;
	pthread_t th;
};

static void trace_once(struct stress_vm *vms)
{
	for (int k = 0; k < STRESS_VMS; k++) {
		struct stress_vm *v = &vms[k];
		struct kvm_pfi_vcpu_stats vs[STRESS_VCPUS];
		struct kvm_pfi_page_info pi[STRESS_PAGES];
		struct kvm_pfi_vm_stats st;
		char pages[STRESS_PAGES * 24] = "", *p = pages;
		uint32_t total;

		if (pfi_stats(v->t.pfi, v->t.vm_id, &st, vs, STRESS_VCPUS))
			continue;
		if (v->in_round && !pfi_target_pages(v->t.pfi, v->t.vm_id, v->t.id, pi,
						      STRESS_PAGES, &total))
			for (int i = 0; i < STRESS_PAGES; i++)
				p += sprintf(p, " %c%u/%lu", "WIRFU"[pi[i].state % 5],
					     pi[i].injections,
					     v->m.ctl->page[i].faults - v->base[i]);
		for (int i = 0; i < STRESS_VCPUS; i++)
			fprintf(stderr, "# trace vm %d round %d vcpu %d: ucalls %lu entries %llu exits %llu timer %lu ipi %lu #PF %lu%s\n",
				k, v->round, i, v->r[i].exits, vs[i].entries, vs[i].exits,
				v->s->v[i].timer_fired, v->s->v[i].ipi_received,
				v->m.ctl->vcpu[i].nr_pf, i ? "" : pages);
		for (int i = 0; i < STRESS_VCPUS; i++)
			fprintf(stderr, "# trace vm %d vcpu %d: timer armed %lu ipi pending %lu\n",
				k, i, v->s->v[i].timer_armed, v->s->v[i].ipi_pending);
	}
}

static struct stress_vm *stall_vms;

static void stress_stall(struct kvm_vcpu *vcpu)
{
	for (int k = 0; k < STRESS_VMS; k++)
		for (int i = 0; i < STRESS_VCPUS; i++)
			if (stall_vms[k].m.vcpu[i] == vcpu)
				fprintf(stderr, "# stall of vm %d vcpu %d\n", k, i);
	trace_once(stall_vms);
}

static void *tracer_fn(void *arg)
{
	struct tracer *tr = arg;

	while (!tr->stop) {
		trace_once(tr->vms);
		sleep(1);
	}
	return NULL;
}

FIXTURE(stress) {
	struct stress_vm vm[STRESS_VMS];
	struct stall_watch sw;
};

/* Both cases run with the stall watcher: see Documentation/testing.rst. */
FIXTURE_SETUP(stress)
{
	for (int k = 0; k < STRESS_VMS; k++)
		stress_vm_init(&self->vm[k]);
	stall_vms = self->vm;
	mini_stall_hook = stress_stall;
	self->sw = (struct stall_watch){ .vms = self->vm };
	ASSERT_EQ(0, pthread_create(&self->sw.th, NULL, stall_watch_fn, &self->sw));
}

FIXTURE_TEARDOWN(stress)
{
	stall_watch_stop(&self->sw);
	for (int k = 0; k < STRESS_VMS; k++) {
		stress_vm_stop(&self->vm[k]);
		mini_free(&self->vm[k].m);
	}
}

TEST_F_TIMEOUT(stress, injections_lose_and_double_no_interrupt, 900)
{
	uint64_t want = stress_faults_wanted(), total = 0;
	int rounds = unserviced_rounds(want), pfi = pfi_open();
	const char *trace = getenv("KVM_PFI_STRESS_TRACE");
	struct tracer tr = { .vms = self->vm };

	ASSERT_LE(0, pfi);
	if (!pfi_has_targets(pfi))
		SKIP(return, "module lacks TARGET_ADD (ENOTTY)");
	for (int k = 0; k < STRESS_VMS; k++) {
		self->vm[k].t.pfi = pfi;
		ASSERT_EQ(0, pfi_attach(pfi, self->vm[k].m.vm->fd, 0, &self->vm[k].t.vm_id));
		ASSERT_TRUE(wait_timer_fired(&self->vm[k], 1, WAIT_MS));
	}
	if (trace && *trace)
		ASSERT_EQ(0, pthread_create(&tr.th, NULL, tracer_fn, &tr));
	for (uint64_t t0 = now_ms(); now_ms() - t0 < 800 * 1000ULL; usleep(5000)) {
		bool all_done = true;

		for (int k = 0; k < STRESS_VMS; k++) {
			struct stress_vm *v = &self->vm[k];
			bool last = v->round == rounds;

			if (v->done)
				continue;
			all_done = false;
			if (!v->in_round)
				round_start(_metadata, v, last);
			else if (round_poll(_metadata, v, last) && last)
				v->done = true;
		}
		if (all_done)
			break;
	}
	for (int k = 0; k < STRESS_VMS; k++) {
		EXPECT_TRUE(self->vm[k].done) TH_LOG("vm %d: %d of %d rounds", k,
						      self->vm[k].round, rounds + 1);
		total += self->vm[k].injected;
	}
	if (trace && *trace) {
		tr.stop = true;
		pthread_join(tr.th, NULL);
	}
	quiesce_and_check(_metadata, self->vm, STRESS_VMS, &self->sw, "injecting");
	TH_LOG("%lu faults injected and taken once each (%lu wanted)", total, want);
	EXPECT_LE(want, total);
	close(pfi);
}

/* The same guests with kvm_pfi loaded but not at work (no VM attached), for
 * KVM_PFI_STRESS_BASELINE_TIMERS (5,000) timer interrupts per vCPU, about
 * half of what the first case takes: the counts must be as clean. */
TEST_F_TIMEOUT(stress, baseline_without_injection_is_clean, 900)
{
	const char *env = getenv("KVM_PFI_STRESS_BASELINE_TIMERS");
	uint64_t timers = env ? strtoull(env, NULL, 0) : 5000;

	for (int k = 0; k < STRESS_VMS; k++)
		ASSERT_TRUE(wait_timer_fired(&self->vm[k], timers, 800 * 1000));
	quiesce_and_check(_metadata, self->vm, STRESS_VMS, &self->sw, "baseline");
	for (int k = 0; k < STRESS_VMS; k++)
		for (int i = 0; i < STRESS_PAGES; i++)
			EXPECT_EQ(0, self->vm[k].m.ctl->page[i].faults);
}

TEST_HARNESS_MAIN
