// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-pfi detection tests, on the mini OS of kvm_pfi_mini_os.h: signature
 * sets (KVM_PFI_SIGS_*), scans of target pages, and protection of target
 * pages against guest writes (KVM_PFI_TARGET_PROTECT / _ENFORCE).
 *
 * Ground truth: the host plants known bytes into the guest's pages before
 * the guest fills and swaps them out, so it knows where every signature is;
 * the guest's ring-3 task writes a value the host chose and reports what it
 * read back. Signature sets are built with kvm_pfi_sigs.h's encoder.
 */
#include "kvm_pfi_mini_os.h"
#include "kvm_pfi_sigs.h"

#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/mman.h>

/* The test's rules. Rule 1 allows 0-8 bytes between its two parts. */
#define RULE_UNUSED	0
#define RULE_PLANTED	1
#define RULE_CROSS	2
static const char planted[] = "KPFI\x01\x02xyzDETECT";	/* matches RULE_PLANTED */
static const char cross[] = "KPFI-CROSS-PAGE!";		/* matches RULE_CROSS */
#define PLANTED_LEN	(sizeof(planted) - 1)
#define CROSS_LEN	(sizeof(cross) - 1)

static void test_rules(struct sigset *s)
{
	memset(s, 0, sizeof(*s));
	set_rule(s, "never_there");
	set_pattern(s, "DE AD BE EF 00 11 22 33 44");
	set_rule(s, "planted_marker");
	set_pattern(s, "4B 50 46 49 ?? ?? [0-8] 44 45 54 45 43 54");
	set_rule(s, "cross_page");
	set_pattern(s, "55 55 55 55 55 55 55 55 55 55");	/* not there */
	set_pattern(s, "4B 50 46 49 2D 43 52 4F 53 53 2D 50 41 47 45 21");
	set_encode(s);
}

/* ---- events ---- */

#define MAX_EVENTS	64
struct rec {
	struct kvm_pfi_event ev;
	uint8_t data[64];	/* the first bytes of the record's data */
};

/* Appends every record queued on the stream `fd` to r[]; returns the count. */
static int drain(int fd, struct rec *r, int n)
{
	static char buf[4 * (sizeof(struct kvm_pfi_event) + 4096)];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	while (poll(&pfd, 1, 0) == 1) {
		ssize_t len = read(fd, buf, sizeof(buf));
		struct kvm_pfi_event ev;

		TEST_ASSERT(len > 0, "read events: %s", strerror(errno));
		for (ssize_t off = 0; off < len; off += ev.size) {
			memcpy(&ev, buf + off, sizeof(ev));
			TEST_ASSERT(ev.version == KVM_PFI_EVENT_VERSION && ev.size >= sizeof(ev),
				    "record version %u size %u", ev.version, ev.size);
			TEST_ASSERT(!ev.lost, "lost %u records", ev.lost);
			if (n == MAX_EVENTS)
				continue;
			r[n].ev = ev;
			memcpy(r[n].data, buf + off + sizeof(ev),
			       ev.data_len < 64 ? ev.data_len : 64);
			n++;
		}
	}
	return n;
}

static int count_type(struct rec *r, int n, uint32_t type)
{
	int c = 0;

	for (int i = 0; i < n; i++)
		c += r[i].ev.type == type;
	return c;
}

static struct rec *find_type(struct rec *r, int n, uint32_t type)
{
	for (int i = 0; i < n; i++)
		if (r[i].ev.type == type)
			return &r[i];
	return NULL;
}

/* Waits until the module has scanned `pages` more pages than `base` (its
 * events are queued before the count moves). */
static bool wait_scanned(int pfi, uint64_t base, uint64_t pages)
{
	for (uint64_t t0 = now_ms(); now_ms() - t0 < WAIT_MS; usleep(10000))
		if (sigs_info(pfi).pages_scanned >= base + pages)
			return true;
	return false;
}

/* Runs vCPU 0 until every page of t is resident. */
static void run_until_all_resident(struct __test_metadata *_metadata, struct mini *m,
				   struct tgt *t, int npages)
{
	struct kvm_pfi_page_info pi;

	for (int i = 0; i < npages; i++) {
		ASSERT_LE(0, run_until_state(m, 0, t, i, KVM_PFI_PAGE_RESIDENT, WAIT_MS, &pi)) {
			log_page(_metadata, "not resident", &pi);
		}
	}
}

struct det {
	struct mini m;
	struct tgt t;
	int events;		/* the stream */
	gva_t gva;
	uint32_t generation;
	uint64_t scanned0;	/* pages_scanned before */
};

/*
 * A VM in ring 3 with npages consecutive test pages of `kind`, attached,
 * the test rules loaded, the stream open. plant() puts bytes in before boot.
 */
static void det_setup(struct __test_metadata *_metadata, int pfi, struct det *d, int npages,
		      enum page_kind kind, void (*plant)(struct det *d))
{
	struct sigset s;

	memset(d, 0, sizeof(*d));
	d->t.pfi = pfi;
	mini_init(&d->m, 1);
	d->gva = mini_alloc(&d->m, npages);
	for (int i = 0; i < npages; i++)
		mini_add_page(&d->m, d->gva + i * PAGE, kind, 0, 0);
	if (plant)
		plant(d);
	mini_finish(&d->m);
	ASSERT_EQ(0, pfi_attach(pfi, d->m.vm->fd, 0, &d->t.vm_id));
	d->events = ioctl(pfi, KVM_PFI_EVENTS, 0);
	ASSERT_LE(0, d->events);
	test_rules(&s);
	ASSERT_EQ(0, sigs_load(pfi, s.blob, s.size, &d->generation));
	ASSERT_NE(0, d->generation);
	d->scanned0 = sigs_info(pfi).pages_scanned;
	mini_run_until_phase(&d->m, 0, PH_USER);
}

static void det_teardown(int pfi, struct det *d)
{
	close(d->events);
	pfi_detach(pfi, d->t.vm_id);
	mini_free(&d->m);
	pfi_ioctl(pfi, KVM_PFI_SIGS_CLEAR, NULL);
}

static void plant_page0(struct det *d)
{
	mini_plant(&d->m, 0, 100, planted, PLANTED_LEN);
}

static void plant_across(struct det *d)
{
	mini_plant(&d->m, 0, PAGE - 7, cross, 7);
	mini_plant(&d->m, 1, 0, cross + 7, CROSS_LEN - 7);
}

/* The detection record agrees with where the host planted the bytes. */
static void check_detection(struct __test_metadata *_metadata, struct det *d, struct rec *r,
			    uint32_t rule, const char *name, const char *bytes, int page,
			    uint64_t off, uint64_t len, uint32_t how)
{
	struct kvm_pfi_page_info pi;

	ASSERT_NE(NULL, r);
	ASSERT_TRUE(tgt_page(&d->t, page, &pi));
	EXPECT_EQ(d->t.vm_id, r->ev.vm_id);
	EXPECT_EQ(d->t.id, r->ev.target_id);
	EXPECT_EQ(d->m.cr3, r->ev.cr3);
	EXPECT_EQ(rule, r->ev.rule_id);
	EXPECT_STREQ(name, r->ev.rule_name);
	EXPECT_EQ(d->gva + page * PAGE + off, r->ev.gva);
	EXPECT_EQ(pi.gpa + off, r->ev.gpa);
	EXPECT_EQ(off, r->ev.offset);
	EXPECT_EQ(len, r->ev.length);
	EXPECT_EQ(d->generation, r->ev.generation);
	EXPECT_EQ(how, r->ev.how);
	/* What the guest holds there now is what the rule describes. */
	EXPECT_EQ(0, memcmp(addr_gpa2hva(d->m.vm, r->ev.gpa), bytes, 4));
}

/* Rules loaded, a two-page target of swapped-out pages added, both brought
 * back and scanned: the events are in r[], their number returned. */
static int two_swapped_pages(struct __test_metadata *_metadata, int pfi, struct det *d,
			     void (*plant)(struct det *d), struct rec *r)
{
	det_setup(_metadata, pfi, d, 2, PK_SWAPPED, plant);
	TEST_ASSERT(*vm_get_pte(d->m.vm, d->gva) == SWP_ENTRY_0_1234, "not swapped out");
	TEST_ASSERT(!pfi_target_add(pfi, d->t.vm_id, 0, d->m.cr3, d->gva, 2 * PAGE, &d->t.id),
		    "TARGET_ADD");
	run_until_all_resident(_metadata, &d->m, &d->t, 2);
	TEST_ASSERT(wait_scanned(pfi, d->scanned0, 2), "pages not scanned");
	return drain(d->events, r, 0);
}

/* The signature sits in a page that was swapped out when the rules were
 * loaded: the module brings it in and reports one detection; the clean
 * page next to it (also swapped out) gives none. */
TEST_F_TIMEOUT(pfi, swapped_out_signature_detected, 120)
{
	struct rec r[MAX_EVENTS];
	struct kvm_pfi_page_info pi;
	struct det d;
	int n;

	REQUIRE_TARGETS();
	n = two_swapped_pages(_metadata, self->pfi, &d, plant_page0, r);
	EXPECT_EQ(1, count_type(r, n, KVM_PFI_CMD_DETECTION));
	check_detection(_metadata, &d, find_type(r, n, KVM_PFI_CMD_DETECTION), RULE_PLANTED,
			"planted_marker", planted, 0, 100, PLANTED_LEN, KVM_PFI_HOW_INJECTED);
	EXPECT_EQ(1, find_type(r, n, KVM_PFI_CMD_DETECTION)->ev.injections);
	for (int i = 0; i < 2; i++) {
		ASSERT_TRUE(tgt_page(&d.t, i, &pi));
		EXPECT_TRUE(pi.flags & KVM_PFI_PAGE_SCANNED);
		EXPECT_TRUE(content_ok(&d.m, pi.gpa, i));
	}
	EXPECT_LE(1, sigs_info(self->pfi).detections);
	det_teardown(self->pfi, &d);
}

/* A signature split over two swapped-out pages of one target is found
 * once, whichever page came back last, at its first byte. */
TEST_F_TIMEOUT(pfi, signature_across_page_boundary, 120)
{
	struct rec r[MAX_EVENTS];
	struct det d;
	int n;

	REQUIRE_TARGETS();
	n = two_swapped_pages(_metadata, self->pfi, &d, plant_across, r);
	EXPECT_EQ(1, count_type(r, n, KVM_PFI_CMD_DETECTION));
	check_detection(_metadata, &d, find_type(r, n, KVM_PFI_CMD_DETECTION), RULE_CROSS,
			"cross_page", cross, 0, PAGE - 7, CROSS_LEN, KVM_PFI_HOW_INJECTED);
	det_teardown(self->pfi, &d);
}

/* Pages scanned with no set loaded are scanned when one is; a clear stops
 * scanning, and the next load scans them again (each load is a new
 * generation). */
TEST_F_TIMEOUT(pfi, load_scans_resident_pages, 120)
{
	struct rec r[MAX_EVENTS];
	struct sigset s;
	struct det d;
	uint32_t gen2;
	int n;

	REQUIRE_TARGETS();
	det_setup(_metadata, self->pfi, &d, 1, PK_RESIDENT, plant_page0);
	ASSERT_EQ(0, pfi_ioctl(self->pfi, KVM_PFI_SIGS_CLEAR, NULL));
	EXPECT_EQ(0, sigs_info(self->pfi).nr_rules);
	ASSERT_EQ(0, pfi_target_add(self->pfi, d.t.vm_id, 0, d.m.cr3, d.gva, PAGE, &d.t.id));
	run_until_all_resident(_metadata, &d.m, &d.t, 1);
	usleep(200000);
	n = drain(d.events, r, 0);
	EXPECT_EQ(0, count_type(r, n, KVM_PFI_CMD_DETECTION));
	EXPECT_EQ(d.scanned0, sigs_info(self->pfi).pages_scanned);

	test_rules(&s);
	ASSERT_EQ(0, sigs_load(self->pfi, s.blob, s.size, &gen2));
	EXPECT_LT(d.generation, gen2);
	d.generation = gen2;
	EXPECT_EQ(3, sigs_info(self->pfi).nr_rules);
	ASSERT_TRUE(wait_scanned(self->pfi, d.scanned0, 1));
	n = drain(d.events, r, 0);
	EXPECT_EQ(1, count_type(r, n, KVM_PFI_CMD_SIGS_LOADED));
	EXPECT_EQ(gen2, find_type(r, n, KVM_PFI_CMD_SIGS_LOADED)->ev.generation);
	EXPECT_EQ(3, find_type(r, n, KVM_PFI_CMD_SIGS_LOADED)->ev.nr_rules);
	EXPECT_EQ(1, count_type(r, n, KVM_PFI_CMD_DETECTION));
	check_detection(_metadata, &d, find_type(r, n, KVM_PFI_CMD_DETECTION), RULE_PLANTED,
			"planted_marker", planted, 0, 100, PLANTED_LEN, KVM_PFI_HOW_ALREADY_RESIDENT);
	det_teardown(self->pfi, &d);
}

/* Malformed sets are refused whole with their errno, and the set loaded
 * before keeps its generation and still matches. */
TEST_F_TIMEOUT(pfi, malformed_sets_refused, 120)
{
	static uint8_t big[KVM_PFI_SIGS_MAX_SIZE + 1];
	struct rec r[MAX_EVENTS];
	struct sigset s, bad;
	struct kvm_pfi_sigs_header *h = (void *)bad.blob;
	struct kvm_pfi_sig_segment *seg;
	struct kvm_pfi_sigs_load l;
	struct det d;
	int n;

	REQUIRE_TARGETS();
	det_setup(_metadata, self->pfi, &d, 1, PK_RESIDENT, plant_page0);
	test_rules(&s);
#define REFUSED(err, blob, size)						\
	do {									\
		EXPECT_EQ(-(err), sigs_load(self->pfi, blob, size, NULL));	\
		EXPECT_EQ(d.generation, sigs_info(self->pfi).generation);	\
		EXPECT_EQ(3, sigs_info(self->pfi).nr_rules);			\
		bad = s;							\
	} while (0)
	bad = s;
	/* Truncated: every shorter length, also with the size field fixed up. */
	for (uint32_t len = 0; len < s.size; len++) {
		REFUSED(len ? EBADMSG : EINVAL, bad.blob, len);
		h->size = len;
		REFUSED(len ? EBADMSG : EINVAL, bad.blob, len);
	}
	memcpy(big, s.blob, s.size);
	REFUSED(E2BIG, big, sizeof(big));
	h->nr_rules = KVM_PFI_SIGS_MAX_RULES + 1;
	REFUSED(E2BIG, bad.blob, s.size);
	h->magic ^= 1;
	REFUSED(EBADMSG, bad.blob, s.size);
	h->version = KVM_PFI_SIGS_VERSION + 1;
	REFUSED(EPROTO, bad.blob, s.size);
	h->nr_rules = 0;
	REFUSED(EINVAL, bad.blob, s.size);
	/* Rule 1's pattern is segments 1 -> 2: point 2 back at 1, or at itself. */
	seg = (void *)(bad.blob + s.segs_off);
	seg[2].next = 1;
	seg[2].jump_max = 1;
	REFUSED(ELOOP, bad.blob, s.size);
	seg[1].next = 1;
	REFUSED(ELOOP, bad.blob, s.size);
	seg[1].len = 0;
	REFUSED(EBADMSG, bad.blob, s.size);
	seg[1].jump_max = KVM_PFI_SIG_MAX_JUMP + 1;
	REFUSED(EBADMSG, bad.blob, s.size);
	/* A value bit outside its mask (the first "??" of rule 1). */
	bad.blob[s.size - s.str_len + seg[1].bytes_off + 2 * 4] = 0x01;
	REFUSED(EBADMSG, bad.blob, s.size);
	/* A rule name with a character no identifier has. */
	bad.blob[s.size - s.str_len + s.rule[1].name_off] = '-';
	REFUSED(EBADMSG, bad.blob, s.size);
	/* Nonzero flags, a bad pointer. */
	l = (struct kvm_pfi_sigs_load){ .data = (uintptr_t)s.blob, .size = s.size, .flags = 1 };
	EXPECT_EQ(-EINVAL, pfi_ioctl(self->pfi, KVM_PFI_SIGS_LOAD, &l));
	l = (struct kvm_pfi_sigs_load){ .data = 8, .size = s.size };
	EXPECT_EQ(-EFAULT, pfi_ioctl(self->pfi, KVM_PFI_SIGS_LOAD, &l));
	EXPECT_EQ(d.generation, sigs_info(self->pfi).generation);
	/* A good set whose answer cannot be written back (the argument is
	 * read-only): EFAULT, and the set never became active. */
	struct kvm_pfi_sigs_load *ro = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, ro);
	*ro = (struct kvm_pfi_sigs_load){ .data = (uintptr_t)s.blob, .size = s.size };
	ASSERT_EQ(0, mprotect(ro, PAGE, PROT_READ));
	drain(d.events, r, 0);	/* what came before (the first set's load) */
	EXPECT_EQ(-EFAULT, pfi_ioctl(self->pfi, KVM_PFI_SIGS_LOAD, ro));
	EXPECT_EQ(d.generation, sigs_info(self->pfi).generation);
	n = drain(d.events, r, 0);
	EXPECT_EQ(0, count_type(r, n, KVM_PFI_CMD_SIGS_LOADED));
	munmap(ro, PAGE);
#undef REFUSED

	/* The set loaded first still matches. */
	ASSERT_EQ(0, pfi_target_add(self->pfi, d.t.vm_id, 0, d.m.cr3, d.gva, PAGE, &d.t.id));
	run_until_all_resident(_metadata, &d.m, &d.t, 1);
	ASSERT_TRUE(wait_scanned(self->pfi, d.scanned0, 1));
	n = drain(d.events, r, 0);
	EXPECT_EQ(1, count_type(r, n, KVM_PFI_CMD_DETECTION));
	check_detection(_metadata, &d, find_type(r, n, KVM_PFI_CMD_DETECTION), RULE_PLANTED,
			"planted_marker", planted, 0, 100, PLANTED_LEN, KVM_PFI_HOW_ALREADY_RESIDENT);
	det_teardown(self->pfi, &d);
}

/* ---- protection ---- */


/* The ring-3 task writes val at gva and reads it back. */
static uint64_t guest_write(struct mini *m, gva_t gva, uint64_t val)
{
	m->ctl->vcpu[0].write_val = val;
	m->ctl->vcpu[0].write_gva = gva;
	for (int i = 0; i < 10 && m->ctl->vcpu[0].write_gva; i++)
		mini_run(m->vcpu[0]);
	TEST_ASSERT(!m->ctl->vcpu[0].write_gva, "the task did not write");
	return m->ctl->vcpu[0].write_readback;
}

/* Waits for the first record of `type` (the vCPU need not run). */
static struct rec *wait_event(int fd, struct rec *r, int *n, uint32_t type)
{
	for (uint64_t t0 = now_ms(); now_ms() - t0 < WAIT_MS; usleep(10000)) {
		*n = drain(fd, r, *n);
		if (find_type(r, *n, type))
			return find_type(r, *n, type);
	}
	return NULL;
}

static void protected_write(struct __test_metadata *_metadata, int pfi, bool enforce)
{
	uint32_t flags = KVM_PFI_TARGET_PROTECT | (enforce ? KVM_PFI_TARGET_ENFORCE : 0);
	const uint64_t off = 0x208, val = 0x1122334455667788ULL;
	struct kvm_pfi_page_info pi;
	struct rec r[MAX_EVENTS], *w;
	uint64_t before, readback, now;
	struct det d;
	int n = 0;

	det_setup(_metadata, pfi, &d, 1, PK_RESIDENT, NULL);
	ASSERT_EQ(0, pfi_target_add(pfi, d.t.vm_id, flags, d.m.cr3, d.gva, PAGE, &d.t.id));
	ASSERT_TRUE(wait_page_flags(&d.t, 0, KVM_PFI_PAGE_PROTECTED |
				   (enforce ? KVM_PFI_PAGE_ENFORCED : 0)));
	ASSERT_TRUE(tgt_page(&d.t, 0, &pi));
	before = *(uint64_t *)addr_gpa2hva(d.m.vm, pi.gpa + off);
	EXPECT_EQ(pattern(d.m.ctl->seed, 0, off / 8), before);

	readback = guest_write(&d.m, d.gva + off, val);
	now = *(uint64_t *)addr_gpa2hva(d.m.vm, pi.gpa + off);
	w = wait_event(d.events, r, &n, KVM_PFI_CMD_WRITE_ATTEMPT);
	ASSERT_NE(NULL, w);
	EXPECT_EQ(d.t.vm_id, w->ev.vm_id);
	EXPECT_EQ(d.t.id, w->ev.target_id);
	EXPECT_EQ(d.m.cr3, w->ev.cr3);
	EXPECT_EQ(d.gva + off, w->ev.gva);
	EXPECT_EQ(pi.gpa + off, w->ev.gpa);
	EXPECT_EQ(off, w->ev.offset);
	EXPECT_EQ(8, w->ev.length);
	ASSERT_EQ(8, w->ev.data_len);
	EXPECT_EQ(0, memcmp(w->data, &val, 8));
	EXPECT_EQ(enforce, w->ev.restored);
	if (enforce) {
		/* The writing task never saw its write; the page is as before. */
		EXPECT_EQ(before, readback);
		EXPECT_EQ(before, now);
		EXPECT_TRUE(content_ok(&d.m, pi.gpa, 0));
	} else {
		EXPECT_EQ(val, readback);
		EXPECT_EQ(val, now);
	}
	/* The task goes on normally. */
	mini_run_n(&d.m, 0, 5, PH_USER);
	EXPECT_EQ(0, d.m.ctl->vcpu[0].nr_pf);
	det_teardown(pfi, &d);
}

/* A guest write to a protected page is reported with its bytes and lands. */
TEST_F_TIMEOUT(pfi, protected_page_write_reported, 120)
{
	REQUIRE_TARGETS();
	protected_write(_metadata, self->pfi, false);
}

/* In enforce mode the page's bytes are put back before the writer resumes. */
TEST_F_TIMEOUT(pfi, enforced_page_write_restored, 120)
{
	REQUIRE_TARGETS();
	protected_write(_metadata, self->pfi, true);
}

/* All of planted[] but its last 8 bytes, which the guest writes later. */
#define HEAD_OFF	0x300
static void plant_head(struct det *d)
{
	mini_plant(&d->m, 0, HEAD_OFF, planted, PLANTED_LEN - 8);
}

/* A write that completes a signature in a protected page is detected: the
 * page is scanned again after a tracked write. */
TEST_F_TIMEOUT(pfi, write_completing_signature_detected, 120)
{
	const uint64_t off = HEAD_OFF;
	struct rec r[MAX_EVENTS], *det;
	uint64_t tail;
	struct det d;
	int n = 0;

	REQUIRE_TARGETS();
	det_setup(_metadata, self->pfi, &d, 1, PK_RESIDENT, plant_head);
	ASSERT_EQ(0, pfi_target_add(self->pfi, d.t.vm_id, KVM_PFI_TARGET_PROTECT, d.m.cr3,
				    d.gva, PAGE, &d.t.id));
	ASSERT_TRUE(wait_page_flags(&d.t, 0, KVM_PFI_PAGE_PROTECTED | KVM_PFI_PAGE_SCANNED));
	ASSERT_TRUE(wait_scanned(self->pfi, d.scanned0, 1));
	n = drain(d.events, r, 0);
	EXPECT_EQ(0, count_type(r, n, KVM_PFI_CMD_DETECTION));

	memcpy(&tail, planted + PLANTED_LEN - 8, 8);
	EXPECT_EQ(tail, guest_write(&d.m, d.gva + off + PLANTED_LEN - 8, tail));
	det = wait_event(d.events, r, &n, KVM_PFI_CMD_DETECTION);
	ASSERT_NE(NULL, det);
	EXPECT_EQ(RULE_PLANTED, det->ev.rule_id);
	EXPECT_EQ(d.gva + off, det->ev.gva);
	EXPECT_EQ(off, det->ev.offset);
	EXPECT_EQ(PLANTED_LEN, det->ev.length);
	EXPECT_NE(NULL, find_type(r, n, KVM_PFI_CMD_WRITE_ATTEMPT));
	det_teardown(self->pfi, &d);
}

/* The second half of cross[] at the start of page 1; the guest writes the
 * first half at the end of page 0 later. */
static void plant_second_half(struct det *d)
{
	mini_plant(&d->m, 1, 0, cross + 8, CROSS_LEN - 8);
}

/* Two protected pages, both scanned; the guest completes a pattern that
 * straddles them by writing the end of page 0, and writes elsewhere in
 * page 1 too: whichever order the rescans run in, the match is reported,
 * once. */
TEST_F_TIMEOUT(pfi, write_completing_straddling_signature_detected_once, 120)
{
	struct rec r[MAX_EVENTS], *det;
	uint64_t head, other = 0x0123456789abcdefULL;
	struct det d;
	int n = 0;

	REQUIRE_TARGETS();
	det_setup(_metadata, self->pfi, &d, 2, PK_RESIDENT, plant_second_half);
	ASSERT_EQ(0, pfi_target_add(self->pfi, d.t.vm_id, KVM_PFI_TARGET_PROTECT, d.m.cr3, d.gva,
				    2 * PAGE, &d.t.id));
	for (int i = 0; i < 2; i++)
		ASSERT_TRUE(wait_page_flags(&d.t, i, KVM_PFI_PAGE_PROTECTED | KVM_PFI_PAGE_SCANNED));
	ASSERT_TRUE(wait_scanned(self->pfi, d.scanned0, 2));
	n = drain(d.events, r, 0);
	EXPECT_EQ(0, count_type(r, n, KVM_PFI_CMD_DETECTION));

	memcpy(&head, cross, 8);
	EXPECT_EQ(head, guest_write(&d.m, d.gva + PAGE - 8, head));
	EXPECT_EQ(other, guest_write(&d.m, d.gva + PAGE + 0x800, other));
	det = wait_event(d.events, r, &n, KVM_PFI_CMD_DETECTION);
	ASSERT_NE(NULL, det);
	EXPECT_EQ(RULE_CROSS, det->ev.rule_id);
	EXPECT_EQ(d.gva + PAGE - 8, det->ev.gva);
	EXPECT_EQ(PAGE - 8, det->ev.offset);
	/* Both rescans done (two writes, one rescan each at least). */
	ASSERT_TRUE(wait_scanned(self->pfi, d.scanned0, 4));
	usleep(200000);
	n = drain(d.events, r, n);
	EXPECT_EQ(1, count_type(r, n, KVM_PFI_CMD_DETECTION));
	EXPECT_EQ(2, count_type(r, n, KVM_PFI_CMD_WRITE_ATTEMPT));
	det_teardown(self->pfi, &d);
}

/* The protect flags' own errors, which change nothing. */
TEST_F(pfi, protect_flag_errors)
{
	struct mini m;
	uint32_t vm_id;
	gva_t gva;

	REQUIRE_TARGETS();
	mini_init(&m, 1);
	gva = mini_alloc(&m, 1);
	mini_finish(&m);
	ASSERT_EQ(0, pfi_attach(self->pfi, m.vm->fd, 0, &vm_id));
	EXPECT_EQ(-EINVAL, pfi_target_add(self->pfi, vm_id, KVM_PFI_TARGET_ENFORCE, m.cr3, gva,
					  PAGE, NULL));
	EXPECT_EQ(-E2BIG, pfi_target_add(self->pfi, vm_id,
					 KVM_PFI_TARGET_PROTECT | KVM_PFI_TARGET_ENFORCE, m.cr3,
					 gva, (KVM_PFI_MAX_ENFORCE_PAGES + 1) * PAGE, NULL));
	EXPECT_EQ(0, pfi_target_add(self->pfi, vm_id,
				    KVM_PFI_TARGET_PROTECT | KVM_PFI_TARGET_ENFORCE, m.cr3, gva,
				    KVM_PFI_MAX_ENFORCE_PAGES * PAGE, NULL));
	EXPECT_EQ(0, pfi_detach(self->pfi, vm_id));
	mini_free(&m);
}

/* ---- a stuck event reader ---- */

#define STUCK_LEN	(3 * PAGE)	/* room for a record with a page of data */

struct stuck_reader {
	int fd;			/* the stream */
	uint8_t *buf;		/* a userfaultfd-registered region, never populated */
	ssize_t got;		/* what read() returned, once it did */
	volatile int done;
};

static void *stuck_read(void *arg)
{
	struct stuck_reader *s = arg;

	s->got = read(s->fd, s->buf, STUCK_LEN);
	s->done = 1;
	return NULL;
}

/* Reads every record queued on `fd` into types[] (up to max); returns how
 * many, and adds up their `lost` in *lost. */
static int read_all(int fd, uint8_t *buf, size_t len, uint16_t *types, int max, uint64_t *lost)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int n = 0;

	while (poll(&pfd, 1, 0) == 1) {
		ssize_t got = read(fd, buf, len);
		struct kvm_pfi_event ev;

		TEST_ASSERT(got > 0, "read events: %s", strerror(errno));
		for (ssize_t off = 0; off < got; off += ev.size) {
			memcpy(&ev, buf + off, sizeof(ev));
			TEST_ASSERT(ev.size >= sizeof(ev), "record size %u", ev.size);
			*lost += ev.lost;
			if (n < max)
				types[n] = ev.type;
			n++;
		}
	}
	return n;
}

/*
 * An event reader whose buffer faults for ever (a userfaultfd page nobody
 * serves) blocks nobody: while its read() sleeps in the copy to user space,
 * a second VM is attached, targets come and go, a page is scanned and its
 * signature detected, and another reader receives every event. Released,
 * the stuck reader gets the events its queue held, and the `lost` of its
 * records accounts exactly for the ones it dropped meanwhile.
 */
TEST_F_TIMEOUT(pfi, stuck_reader_blocks_nobody, 180)
{
	static uint8_t rbuf[4 * (sizeof(struct kvm_pfi_event) + 4096)];
	static uint16_t good[4096], stuck[4096];
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { 0 };
	struct stuck_reader sr = { 0 };
	struct kvm_vm *vm1 = vm_create_barebones();
	struct pollfd up;
	struct uffd_msg msg;
	uint64_t good_lost = 0, stuck_lost = 0;
	int uffd, good_fd, n_good = 0, n_stuck, n;
	uint32_t vm1_id, tid;
	pthread_t thread;
	struct det d;

	REQUIRE_TARGETS();
	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	ASSERT_LE(0, uffd) TH_LOG("userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	sr.buf = mmap(NULL, STUCK_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, sr.buf);
	reg.range = (struct uffdio_range){ .start = (uintptr_t)sr.buf, .len = STUCK_LEN };
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));

	sr.fd = ioctl(self->pfi, KVM_PFI_EVENTS, 0);
	good_fd = ioctl(self->pfi, KVM_PFI_EVENTS, 0);
	ASSERT_LE(0, sr.fd);
	ASSERT_LE(0, good_fd);
	ASSERT_EQ(0, pthread_create(&thread, NULL, stuck_read, &sr));

	/* The first event wakes the stuck reader, whose copy then faults on
	 * the region: the fault reaching userfaultfd is the proof it is stuck
	 * inside read(), with the record taken off its queue. */
	ASSERT_EQ(0, pfi_attach(self->pfi, vm1->fd, 0, &vm1_id));
	up = (struct pollfd){ .fd = uffd, .events = POLLIN };
	ASSERT_EQ(1, poll(&up, 1, 10000));
	ASSERT_EQ(sizeof(msg), read(uffd, &msg, sizeof(msg)));
	ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg.event);
	ASSERT_EQ((uintptr_t)sr.buf, msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1));

	/* A second VM with a planted signature: attach, load rules, target,
	 * scan, detection. Each step returns while the reader is stuck. */
	det_setup(_metadata, self->pfi, &d, 1, PK_RESIDENT, plant_page0);
	ASSERT_EQ(0, pfi_target_add(self->pfi, d.t.vm_id, 0, d.m.cr3, d.gva, PAGE, &d.t.id));
	run_until_all_resident(_metadata, &d.m, &d.t, 1);
	ASSERT_TRUE(wait_scanned(self->pfi, d.scanned0, 1));
	n_good += read_all(good_fd, rbuf, sizeof(rbuf), good + n_good, 4096 - n_good, &good_lost);
	/* More events than the stuck reader's queue holds, the good reader
	 * keeping up with them. */
	for (int i = 0; i < KVM_PFI_EVENT_QUEUE; i++) {
		ASSERT_EQ(0, pfi_target_add(self->pfi, vm1_id, KVM_PFI_TARGET_READ, 0x1000,
					    0x400000, PAGE, &tid));
		ASSERT_EQ(0, pfi_target_remove(self->pfi, vm1_id, tid));
		n_good += read_all(good_fd, rbuf, sizeof(rbuf), good + n_good, 4096 - n_good,
				   &good_lost);
	}
	ASSERT_EQ(0, pfi_detach(self->pfi, vm1_id));
	n_good += read_all(good_fd, rbuf, sizeof(rbuf), good + n_good, 4096 - n_good, &good_lost);
	EXPECT_FALSE(sr.done);

	/* The good reader got everything, in order, and lost nothing. */
	EXPECT_EQ(0, good_lost);
	ASSERT_LE(n_good, 4096);
	EXPECT_EQ(KVM_PFI_CMD_VM_ATTACHED, good[0]);
	EXPECT_EQ(KVM_PFI_CMD_VM_DETACHED, good[n_good - 1]);
	n = 0;
	for (int i = 0; i < n_good; i++)
		n += good[i] == KVM_PFI_CMD_DETECTION;
	EXPECT_EQ(1, n);
	n = 0;
	for (int i = 0; i < n_good; i++)
		n += good[i] == KVM_PFI_CMD_TARGET_ADDED;
	EXPECT_EQ(KVM_PFI_EVENT_QUEUE + 1, n);

	/* Released, the stuck read returns the record it held ... */
	struct uffdio_zeropage zp = {
		.range = { .start = (uintptr_t)sr.buf, .len = STUCK_LEN },
	};
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_ZEROPAGE, &zp));
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_LT(0, sr.got);
	struct kvm_pfi_event first;

	memcpy(&first, sr.buf, sizeof(first));
	EXPECT_EQ(KVM_PFI_CMD_VM_ATTACHED, first.type);
	EXPECT_EQ(vm1_id, first.vm_id);
	EXPECT_EQ(0, first.lost);
	/* ... and the rest: what it kept plus what it lost is what the good
	 * reader got, and it did lose some. The region is populated now. */
	stuck[0] = first.type;
	n_stuck = 1;
	for (ssize_t off = first.size; off < sr.got; off += first.size) {
		memcpy(&first, sr.buf + off, sizeof(first));
		stuck[n_stuck++] = first.type;
		stuck_lost += first.lost;
	}
	n_stuck += read_all(sr.fd, sr.buf, STUCK_LEN, stuck + n_stuck, 4096 - n_stuck, &stuck_lost);
	/* The count of what it dropped arrives with its next record. */
	ASSERT_EQ(0, pfi_ioctl(self->pfi, KVM_PFI_SIGS_CLEAR, NULL));
	n_good += read_all(good_fd, rbuf, sizeof(rbuf), good + n_good, 4096 - n_good, &good_lost);
	n_stuck += read_all(sr.fd, sr.buf, STUCK_LEN, stuck + n_stuck, 4096 - n_stuck, &stuck_lost);
	EXPECT_EQ(KVM_PFI_CMD_SIGS_LOADED, stuck[n_stuck - 1]);
	TH_LOG("good reader %d records; stuck reader %d records, %lu lost", n_good, n_stuck,
	       (unsigned long)stuck_lost);
	EXPECT_LT(0, stuck_lost);
	EXPECT_EQ(n_good, n_stuck + stuck_lost);
	/* At most: the record it held, a full queue, the one after release. */
	EXPECT_GE(KVM_PFI_EVENT_QUEUE + 2, n_stuck);
	/* Its first records are the good reader's first ones. */
	for (int i = 0; i < n_stuck && i < 8; i++)
		EXPECT_EQ(good[i], stuck[i]);

	close(sr.fd);
	close(good_fd);
	close(uffd);
	munmap(sr.buf, STUCK_LEN);
	det_teardown(self->pfi, &d);
	kvm_vm_free(vm1);
}

TEST_HARNESS_MAIN
