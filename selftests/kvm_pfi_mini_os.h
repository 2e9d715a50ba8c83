/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The guest "mini OS" of the kvm-pfi tests that need one: it swaps out pages
 * of its own user address space Linux-style, runs a ring-3 task, and services
 * page faults in ring 0; the host checks what kvm_pfi reports against what
 * the guest saw. Included by one test program each (static definitions).
 *
 * The guest (ring 0 at boot, vCPU i starts in guest_main(i)):
 *  - fills each test page with a known pattern; for a "swapped" page it
 *    copies the pattern to a swap slot, poisons the old frame, and writes a
 *    Linux x86-64 swap entry (type 0, offset = slot) into the leaf PTE;
 *  - optionally loops in ring 0 making exits, then enters ring 3 with IRETQ
 *    (user segments and a per-vCPU TSS are added to the library's GDT);
 *  - the ring-3 task only makes exits (ucalls: the task runs with IOPL=3 so
 *    port I/O works from ring 3) and, on the host's request, reads a page
 *    (a real fault) or asks ring 0 to load another CR3 (int $0x80, the one
 *    IDT gate with DPL 3). It never touches target pages by itself: an
 *    injected #PF returns to wherever the task was, so if the handler does
 *    not map the page the task just goes on;
 *  - the #PF handler logs CR2, error code and CPL of origin per vCPU, and,
 *    when allowed, decodes the swap entry, copies the slot into a frame of a
 *    reserved pool and maps it present|user|writable.
 * All guest state the host checks lives in one page-aligned global, `ctl`,
 * which the host reads live through addr_gva2hva() between exits.
 *
 * Tests named fixture_* need no kvm_pfi target support: they prove the
 * guest mechanics with real faults. The others need KVM_PFI_TARGET_ADD and
 * SKIP while the loaded module lacks it. Environment: KVM_PFI_KO, the module
 * to reload (module parameters can only be set at load time, and one test
 * unloads it); KVM_PFI_TEST_TRACKING=1 runs tracked_page_tables, which
 * exercises a documented limitation and is skipped otherwise.
 */
#ifndef SELFTEST_KVM_PFI_MINI_OS_H
#define SELFTEST_KVM_PFI_MINI_OS_H

#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"
#include "kselftest_harness.h"

#include "kvm_pfi_util.h"

/* Shared by several test programs, each of which uses a subset. */
#pragma GCC diagnostic ignored "-Wunused-function"

#define PAGE		4096ULL
#define SZ_2M		(2ULL << 20)
#define MAX_VCPUS	2
#define MAX_PAGES	8
#define POOL_PAGES	16
#define LOG_LEN		24
#define EXTRA_PAGES	512
#define PLANT_MAX	48

/* Page 0 goes to swap slot 0x1234: __swp_entry(0, 0x1234) is the vector
 * rust/pfi_core/pte.rs checks, 0x07ff_ffff_ffdb_9600. */
#define SWAP_SLOT0	0x1234ULL
#define SWP_ENTRY_0_1234 0x07ffffffffdb9600ULL
#define SWP_EXCLUSIVE	(1ULL << 3)	/* _PAGE_SWP_EXCLUSIVE */
#define SWP_TYPE_MARKER	31ULL		/* SWP_PTE_MARKER in every config */
#define PTE_MARKER_GUARD (1ULL << 2)
#define POISON		0xdeaddeaddeaddeadULL

#define PTE_P		(1ULL << 0)
#define PTE_W		(1ULL << 1)
#define PTE_U		(1ULL << 2)
#define PTE_A		(1ULL << 5)
#define PTE_D		(1ULL << 6)
#define PTE_PS		(1ULL << 7)
#define PF_ERR_W	(1ULL << 1)
#define PF_ERR_U	(1ULL << 2)

/* The library's GDT (lib/x86/processor.c): 0x8 code, 0x10 data, 0x18 TSS
 * (16 bytes). Ours follow: user data and code, then vCPU 1's TSS, so that
 * no two vCPUs in ring 3 share one RSP0. */
#define LIB_KERNEL_TSS	0x18
#define USER_DS		(0x28 | 3)
#define USER_CS		(0x30 | 3)
#define TSS1_SEL	0x38
#define SYSCALL_VECTOR	0x80
#define SYS_SET_CR3	1
/* IOPL=3 lets the ring-3 task make ucalls (port I/O); IF=1 as for any user
 * task (only kvm_pfi_stress_test's guests raise interrupts). */
#define USER_RFLAGS	(X86_EFLAGS_FIXED | X86_EFLAGS_IF | (3ULL << 12))

#define WAIT_MS		20000	/* generous: nested KVM under TCG is slow */

enum page_kind {
	PK_RESIDENT,	/* left mapped */
	PK_SWAPPED,	/* content in a swap slot, leaf PTE a swap entry */
	PK_NONE,	/* leaf PTE zero: nothing mapped */
	PK_MARKER,	/* leaf PTE a guard-region PTE marker */
};

enum phase { PH_SWAPPED = 1, PH_KERNEL, PH_USER };

struct gevent { u64 vector, cr2, error_code, cpl, rip, tsc; };

struct vcpu_ctl {
	/* Written by the host. */
	u64 ustack_top;
	u64 enter_user;		/* leave the ring-0 loop for ring 3 */
	u64 start_cr3;		/* CR3 for the ring-3 task (0: the boot CR3) */
	u64 want_cr3;		/* ring-3 task: have ring 0 load this CR3 */
	u64 touch_gva;		/* ring-3 task: read this address once */
	u64 write_gva;		/* ring-3 task: write write_val here once, read it back */
	u64 write_val;
	/* A store of kvm_pfi_protect_test.c (struct store, store_op()): run
	 * once by the ring-3 task, or by the ring-0 loop before ring 3. */
	u64 store_op, store_gva, store_len, store_val;
	/* Ring 0: map page store_val (ctl.page[]) by hand, then run with
	 * PKRU = store_len until the host says stop (blind_loop()). */
	u64 blind_page;
	/* Written by the guest. */
	u64 store_done;		/* stores run */
	u64 store_bad;		/* bytes of the last store read back wrong */
	u64 blind_pkru;		/* PKRU as read back inside the blind loop */
	u64 ud_resume;		/* #UD handler: resume here instead (0: none) */
	u64 cur_cr3;
	u64 touched_value;
	u64 write_readback;	/* what the task read right after its write */
	u64 nr_pf, nr_nmi, nr_ud, nr_syscalls;
	u64 nr_events;
	struct gevent ev[LOG_LEN];
};

struct gpage {
	/* Written by the host. */
	u64 gva, pte_gva, kind, owner, extra_bits;
	u64 plant_off, plant_len;	/* bytes of plant[] put over the pattern */
	u8 plant[PLANT_MAX];
	/* Written by the guest. */
	u64 pte_written;	/* leaf PTE after boot */
	u64 faults;		/* #PFs with CR2 in this page, all vCPUs */
	u64 mapped_gpa;		/* frame the #PF handler brought it into */
	u64 mapped_by;		/* vCPU index + 1 */
};

struct guest_ctl {
	u64 seed, may_map, nr_pages;
	u64 swap_gva;		/* MAX_PAGES slots, slot SWAP_SLOT0 + i at i */
	u64 pool_next;
	u64 pool_gva[POOL_PAGES], pool_gpa[POOL_PAGES];
	struct gpage page[MAX_PAGES];
	struct vcpu_ctl vcpu[MAX_VCPUS];
};

/* One page, so the host's view through addr_gva2hva() is contiguous. */
static struct guest_ctl ctl __attribute__((aligned(4096)));
_Static_assert(sizeof(struct guest_ctl) <= 4096, "ctl must fit one page");

static inline u64 pattern(u64 seed, u64 page, u64 i)
{
	return seed ^ (page << 40) ^ (i * 0x9e3779b97f4a7c15ULL);
}

/* arch/x86/include/asm/pgtable_64.h: SWP_TYPE_BITS 5, SWP_OFFSET_SHIFT 14,
 * the offset stored inverted. */
static inline u64 swp_entry(u64 type, u64 offset)
{
	return (~offset << 14 >> 5) | (type << 59);
}

static inline u64 swp_offset(u64 pte)
{
	return ~pte << 5 >> 14;
}

/* ---- guest: ring 0 ---- */

/* Code that runs in exception handlers keeps to general registers: the
 * library's entry stub saves no FPU/SSE state of the interrupted task. */
#define GRO __attribute__((target("general-regs-only")))
/* READ_ONCE/WRITE_ONCE are always_inline with the default target. */
#define VGET(x)		(*(volatile __typeof__(x) *)&(x))
#define VSET(x, v)	(*(volatile __typeof__(x) *)&(x) = (v))

static GRO void copy_page(void *dst, const void *src)
{
	u64 n = PAGE / 8;

	asm volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* vCPU index from the TSS selector: every vCPU has its own. */
static GRO u64 this_vcpu(void)
{
	u16 sel;

	asm volatile("str %0" : "=r"(sel));
	return sel == LIB_KERNEL_TSS ? 0 : 1 + (sel - TSS1_SEL) / 16;
}

static GRO u64 gro_rdtsc(void)
{
	u32 lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (u64)hi << 32 | lo;
}

static GRO void log_event(struct vcpu_ctl *c, struct ex_regs *regs, u64 cr2)
{
	u64 n = c->nr_events;

	if (n < LOG_LEN) {
		c->ev[n].vector = regs->vector;
		c->ev[n].cr2 = cr2;
		c->ev[n].error_code = regs->error_code;
		c->ev[n].cpl = regs->cs & 3;
		c->ev[n].rip = regs->rip;
		c->ev[n].tsc = gro_rdtsc();
	}
	VSET(c->nr_events, n + 1);
}

static GRO void guest_pf(struct ex_regs *regs)
{
	u64 cr2 = get_cr2(), idx = this_vcpu(), pte, slot, f;
	struct vcpu_ctl *c = &ctl.vcpu[idx];
	struct gpage *p = NULL;

	log_event(c, regs, cr2);
	VSET(c->nr_pf, c->nr_pf + 1);
	for (u64 i = 0; i < ctl.nr_pages; i++)
		if (ctl.page[i].gva == (cr2 & ~(PAGE - 1)))
			p = &ctl.page[i];
	/* Not a test page: a bug in the guest, or a bogus CR2 injected. */
	__GUEST_ASSERT(p, "#PF at %lx (rip %lx err %lx cpl %lu)",
		       cr2, regs->rip, regs->error_code, regs->cs & 3);
	__atomic_fetch_add(&p->faults, 1, __ATOMIC_SEQ_CST);
	if (!VGET(ctl.may_map))
		return;
	pte = VGET(*(u64 *)p->pte_gva);
	/* Present already (another vCPU won), or not ours to bring in. */
	if ((pte & PTE_P) || p->kind != PK_SWAPPED)
		return;
	/* Like Linux: the swap entry in the PTE says where the content is. */
	slot = swp_offset(pte);
	__GUEST_ASSERT(pte >> 59 == 0 && slot - SWAP_SLOT0 < MAX_PAGES,
		       "bad swap entry %lx", pte);
	f = __atomic_fetch_add(&ctl.pool_next, 1, __ATOMIC_SEQ_CST);
	__GUEST_ASSERT(f < POOL_PAGES, "frame pool exhausted");
	copy_page((void *)ctl.pool_gva[f], (void *)(ctl.swap_gva + (slot - SWAP_SLOT0) * PAGE));
	if (__atomic_compare_exchange_n((u64 *)p->pte_gva, &pte,
					ctl.pool_gpa[f] | PTE_P | PTE_W | PTE_U | PTE_A | PTE_D,
					false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
		VSET(p->mapped_gpa, ctl.pool_gpa[f]);
		VSET(p->mapped_by, idx + 1);
		invlpg(p->gva);
	}
}

static GRO void guest_df(struct ex_regs *regs)
{
	GUEST_FAIL("double fault, rip %lx cpl %lu", regs->rip, regs->cs & 3);
}

static GRO void guest_nmi(struct ex_regs *regs)
{
	struct vcpu_ctl *c = &ctl.vcpu[this_vcpu()];

	log_event(c, regs, 0);
	VSET(c->nr_nmi, c->nr_nmi + 1);
}

static GRO void guest_ud(struct ex_regs *regs)
{
	struct vcpu_ctl *c = &ctl.vcpu[this_vcpu()];

	log_event(c, regs, 0);
	VSET(c->nr_ud, c->nr_ud + 1);
	/* A store that may #UD set where to go on (see store_op()). */
	if (VGET(c->ud_resume)) {
		regs->rip = VGET(c->ud_resume);
		VSET(c->ud_resume, 0);
	}
}

/* int $0x80 from ring 3: rax = call, rdi = argument. */
static GRO void guest_syscall(struct ex_regs *regs)
{
	struct vcpu_ctl *c = &ctl.vcpu[this_vcpu()];

	log_event(c, regs, regs->rdi);
	VSET(c->nr_syscalls, c->nr_syscalls + 1);
	__GUEST_ASSERT(regs->rax == SYS_SET_CR3, "unknown syscall %lu", regs->rax);
	set_cr3(regs->rdi);
	VSET(c->cur_cr3, regs->rdi);
}

static void prepare_page(u64 i)
{
	struct gpage *p = &ctl.page[i];
	u64 *va = (u64 *)p->gva, pte = 0;

	for (u64 j = 0; j < PAGE / 8; j++)
		va[j] = pattern(ctl.seed, i, j);
	for (u64 k = 0; k < p->plant_len; k++)
		((u8 *)va)[p->plant_off + k] = p->plant[k];
	switch (p->kind) {
	case PK_RESIDENT:
		p->pte_written = 0;
		return;
	case PK_SWAPPED:
		copy_page((void *)(ctl.swap_gva + i * PAGE), va);
		/* The old frame is reused: a report of its GPA would show poison. */
		for (u64 j = 0; j < PAGE / 8; j++)
			va[j] = POISON;
		pte = swp_entry(0, SWAP_SLOT0 + i) | p->extra_bits;
		break;
	case PK_NONE:
		pte = 0;
		break;
	case PK_MARKER:
		pte = swp_entry(SWP_TYPE_MARKER, PTE_MARKER_GUARD);
		break;
	default:
		GUEST_FAIL("page kind %lu", p->kind);
	}
	WRITE_ONCE(*(u64 *)p->pte_gva, pte);
	invlpg(p->gva);
	p->pte_written = pte;
}

static void user_task(u64 idx);
/* Defined by the test program that uses them (kvm_pfi_protect_test.c). */
void store_op(struct vcpu_ctl *c) __attribute__((weak));
void blind_loop(struct vcpu_ctl *c) __attribute__((weak));
/* Ring 0 at boot, interrupts still off (kvm_pfi_stress_test.c: the APIC). */
void vcpu_boot(u64 idx) __attribute__((weak));

static void __attribute__((noreturn)) enter_user(u64 idx, u64 rsp)
{
	asm volatile("push %[ss]\n\t"
		     "push %[rsp]\n\t"
		     "push %[fl]\n\t"
		     "push %[cs]\n\t"
		     "push %[rip]\n\t"
		     "iretq"
		     : : [ss] "i"(USER_DS), [rsp] "r"(rsp), [fl] "r"(USER_RFLAGS),
		       [cs] "i"(USER_CS), [rip] "r"((u64)user_task), "D"(idx)
		     : "memory");
	__builtin_unreachable();
}

static void guest_main(u64 idx)
{
	struct vcpu_ctl *c = &ctl.vcpu[idx];

	for (u64 i = 0; i < ctl.nr_pages; i++)
		if (ctl.page[i].owner == idx)
			prepare_page(i);
	c->cur_cr3 = get_cr3();
	if (vcpu_boot)
		vcpu_boot(idx);
	GUEST_SYNC3(PH_SWAPPED, idx, 0);
	for (u64 n = 1; !READ_ONCE(c->enter_user); n++) {
		if (READ_ONCE(c->store_op) && store_op)
			store_op(c);
		if (READ_ONCE(c->blind_page) && blind_loop)
			blind_loop(c);
		GUEST_SYNC3(PH_KERNEL, idx, n);
	}
	if (c->start_cr3) {
		set_cr3(c->start_cr3);
		c->cur_cr3 = c->start_cr3;
	}
	/* Align as at a call: (rsp + 8) % 16 == 0. */
	enter_user(idx, c->ustack_top - 8);
}

/* ---- guest: ring 3 ---- */

static void user_task(u64 idx)
{
	struct vcpu_ctl *c = &ctl.vcpu[idx];

	for (u64 n = 0;; n++) {
		u64 t = READ_ONCE(c->touch_gva), w = READ_ONCE(c->want_cr3);

		if (t) {
			WRITE_ONCE(c->touched_value, *(volatile u64 *)t);
			WRITE_ONCE(c->touch_gva, 0);
		}
		t = READ_ONCE(c->write_gva);
		if (t) {
			*(volatile u64 *)t = READ_ONCE(c->write_val);
			WRITE_ONCE(c->write_readback, *(volatile u64 *)t);
			WRITE_ONCE(c->write_gva, 0);
		}
		if (READ_ONCE(c->store_op) && store_op)
			store_op(c);
		if (w && w != READ_ONCE(c->cur_cr3))
			asm volatile("int $0x80" : : "a"((u64)SYS_SET_CR3), "D"(w) : "memory");
		GUEST_SYNC3(PH_USER, idx, n);
	}
}

/* ---- host: building the mini OS ---- */

struct mini {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu[MAX_VCPUS];
	int nr_vcpus;
	uint64_t cr3;		/* boot root: the address space of the targets */
	uint64_t alt_cr3;	/* another root sharing every lower table */
	uint64_t orig_gpa[MAX_PAGES];
	struct guest_ctl *ctl;	/* the guest's ctl, live */
};

static uint64_t seed_counter;

/* A flat 64-bit code or data segment (base 0, limit 4 GiB, G=1, S=1, P=1). */
static uint64_t seg_desc(uint64_t type, uint64_t dpl, bool code)
{
	return 0xffffULL | type << 40 | 1ULL << 44 | dpl << 45 | 1ULL << 47 |
	       0xfULL << 48 | (code ? 1ULL << 53 : 1ULL << 54) | 1ULL << 55;
}

static void set_tss_rsp0(struct kvm_vm *vm, gva_t tss, uint64_t rsp0)
{
	/* x86-64 TSS: u32 reserved, then RSP0 at offset 4. */
	memcpy((char *)addr_gva2hva(vm, tss) + 4, &rsp0, 8);
}

static void mini_init(struct mini *m, int nr_vcpus)
{
	struct kvm_vm *vm;
	uint64_t *gdt;
	struct idt_entry *idt;
	gva_t pool;

	TEST_ASSERT(nr_vcpus <= MAX_VCPUS, "vcpus");
	memset(m, 0, sizeof(*m));
	m->nr_vcpus = nr_vcpus;
	m->vm = vm = __vm_create_with_vcpus(VM_SHAPE_DEFAULT, nr_vcpus, EXTRA_PAGES,
					    guest_main, m->vcpu);
	m->ctl = addr_gva2hva(vm, (gva_t)&ctl);
	m->ctl->seed = 0x5eed000000000000ULL + (++seed_counter << 20) + getpid();
	m->ctl->may_map = 1;

	vm_install_exception_handler(vm, PF_VECTOR, guest_pf);
	vm_install_exception_handler(vm, DF_VECTOR, guest_df);
	vm_install_exception_handler(vm, NMI_VECTOR, guest_nmi);
	vm_install_exception_handler(vm, UD_VECTOR, guest_ud);
	vm_install_exception_handler(vm, SYSCALL_VECTOR, guest_syscall);
	idt = addr_gva2hva(vm, vm->arch.idt);
	idt[SYSCALL_VECTOR].dpl = 3;

	gdt = addr_gva2hva(vm, vm->arch.gdt);
	gdt[USER_DS >> 3] = seg_desc(0x3, 3, false);	/* data, read/write, accessed */
	gdt[USER_CS >> 3] = seg_desc(0xb, 3, true);	/* code, exec/read, accessed, L */

	for (int i = 0; i < nr_vcpus; i++) {
		gva_t kstack = vm_alloc(vm, 2 * PAGE, KVM_UTIL_MIN_VADDR);
		gva_t ustack = vm_alloc(vm, 4 * PAGE, KVM_UTIL_MIN_VADDR);
		gva_t tss = vm->arch.tss;

		if (i) {
			struct kvm_sregs sregs;
			struct desc64 *d;

			tss = vm_alloc(vm, PAGE, KVM_UTIL_MIN_VADDR);
			d = (void *)((char *)gdt + TSS1_SEL + 16 * (i - 1));
			memset(d, 0, sizeof(*d));
			d->limit0 = 0x67;
			d->base0 = tss & 0xffff;
			d->base1 = (tss >> 16) & 0xff;
			d->type = 0xb;	/* busy 64-bit TSS, as TR is loaded */
			d->p = 1;
			d->base2 = (tss >> 24) & 0xff;
			d->base3 = tss >> 32;
			vcpu_sregs_get(m->vcpu[i], &sregs);
			sregs.tr.base = tss;
			sregs.tr.selector = TSS1_SEL + 16 * (i - 1);
			vcpu_sregs_set(m->vcpu[i], &sregs);
		}
		set_tss_rsp0(vm, tss, kstack + 2 * PAGE);
		m->ctl->vcpu[i].ustack_top = ustack + 4 * PAGE;
		m->ctl->vcpu[i].enter_user = 1;
		vcpu_args_set(m->vcpu[i], 1, (uint64_t)i);
	}

	m->ctl->swap_gva = vm_alloc(vm, MAX_PAGES * PAGE, KVM_UTIL_MIN_VADDR);
	pool = vm_alloc(vm, POOL_PAGES * PAGE, KVM_UTIL_MIN_VADDR);
	for (int i = 0; i < POOL_PAGES; i++) {
		m->ctl->pool_gva[i] = pool + i * PAGE;
		m->ctl->pool_gpa[i] = addr_gva2gpa(vm, pool + i * PAGE);
	}
}

/* npages of fresh, contiguous guest virtual memory for test pages. */
static gva_t mini_alloc(struct mini *m, int npages)
{
	return vm_alloc(m->vm, npages * PAGE, KVM_UTIL_MIN_VADDR);
}

/* Declares a test page (ctl.page[n]); vCPU owner prepares it at boot. */
static int mini_add_page(struct mini *m, gva_t gva, enum page_kind kind, int owner,
			 uint64_t extra_bits)
{
	struct guest_ctl *g = m->ctl;
	int n = g->nr_pages++;
	struct gpage *p = &g->page[n];

	TEST_ASSERT(n < MAX_PAGES, "too many pages");
	p->gva = gva;
	p->kind = kind;
	p->owner = owner;
	p->extra_bits = extra_bits;
	m->orig_gpa[n] = addr_gva2gpa(m->vm, gva);
	if (kind != PK_RESIDENT) {
		/* The guest has no mapping of its page tables: give it one of
		 * the page holding this leaf PTE. */
		uint64_t *pte = vm_get_pte(m->vm, gva);
		gpa_t pte_gpa = addr_hva2gpa(m->vm, pte);
		gva_t w = vm_unused_gva_gap(m->vm, PAGE, KVM_UTIL_MIN_VADDR);

		virt_pg_map(m->vm, w, pte_gpa & ~(PAGE - 1));
		p->pte_gva = w | (pte_gpa & (PAGE - 1));
	}
	return n;
}

/* Every present entry user-accessible, at every level: the ring-3 task runs
 * the test binary's code and uses the library's ucall pool. (CR4 has no
 * SMEP/SMAP here, so ring 0 is not hindered.) Accessed and dirty set too,
 * as Linux creates its table entries (_PAGE_TABLE) and kernel mappings:
 * the CPU then has no A/D bits to write in a walk. */
static void set_user_bits(struct kvm_vm *vm, gpa_t table, int level)
{
	uint64_t *t = addr_gpa2hva(vm, table);

	for (int i = 0; i < 512; i++) {
		if (!(t[i] & PTE_P))
			continue;
		t[i] |= PTE_U | PTE_A | PTE_D;
		if (level > 1 && !(t[i] & PTE_PS))
			set_user_bits(vm, PTE_GET_PA(t[i]), level - 1);
	}
}

/* After all mappings are made. */
static void mini_finish(struct mini *m)
{
	struct kvm_vm *vm = m->vm;

	set_user_bits(vm, vm->mmu.pgd, vm->mmu.pgtable_levels);
	m->cr3 = vm->mmu.pgd;
	/* A second address space: a copy of the root, same lower tables. */
	m->alt_cr3 = vm_alloc_page_table(vm);
	memcpy(addr_gpa2hva(vm, m->alt_cr3), addr_gpa2hva(vm, m->cr3), PAGE);
}

/* The most common guest: one vCPU, one user page of `kind`. Returns its GVA. */
static gva_t mini_one_page(struct mini *m, enum page_kind kind)
{
	gva_t gva;

	mini_init(m, 1);
	gva = mini_alloc(m, 1);
	mini_add_page(m, gva, kind, 0, 0);
	mini_finish(m);
	return gva;
}

static void mini_free(struct mini *m)
{
	kvm_vm_free(m->vm);
}

/* A guest that stops exiting (e.g. KVM retrying a fault forever) would
 * otherwise hang its test until the harness timeout: every KVM_RUN gets a
 * per-thread watchdog that interrupts it after RUN_TIMEOUT_S. */
#define RUN_TIMEOUT_S	10
#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif
/* A test's report of its own state when a vCPU stalls (before the failure). */
static void (*mini_stall_hook)(struct kvm_vcpu *vcpu);
static __thread timer_t run_timer;
static __thread bool run_timer_made;
static __thread volatile sig_atomic_t run_timer_fired;

static void run_timer_handler(int sig)
{
	run_timer_fired = 1;
}

static void run_timer_arm(int secs)
{
	struct itimerspec its = { .it_value.tv_sec = secs };

	if (!run_timer_made) {
		struct sigevent sev = {
			.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR2,
		};
		/* No SA_RESTART: KVM_RUN returns EINTR. */
		struct sigaction sa = { .sa_handler = run_timer_handler };

		sev.sigev_notify_thread_id = gettid();
		TEST_ASSERT(!sigaction(SIGUSR2, &sa, NULL), "sigaction");
		TEST_ASSERT(!timer_create(CLOCK_MONOTONIC, &sev, &run_timer), "timer_create");
		run_timer_made = true;
	}
	run_timer_fired = 0;
	TEST_ASSERT(!timer_settime(run_timer, 0, &its, NULL), "timer_settime");
}

/* One KVM_RUN to the next ucall; returns the sync's phase. */
static uint64_t mini_run(struct kvm_vcpu *vcpu)
{
	struct ucall uc;
	int rc;

	run_timer_arm(RUN_TIMEOUT_S);
	do {
		rc = __vcpu_run(vcpu);
	} while (rc == -1 && errno == EINTR && !run_timer_fired);
	run_timer_arm(0);
	if (rc == -1 && errno == EINTR) {
		struct kvm_regs regs;

		if (mini_stall_hook)
			mini_stall_hook(vcpu);
		vcpu_regs_get(vcpu, &regs);
		TEST_FAIL("vCPU %u made no exit to userspace in %d s (rip %llx)",
			  vcpu->id, RUN_TIMEOUT_S, regs.rip);
	}
	TEST_ASSERT(!rc, "KVM_RUN: %s", strerror(errno));
	if (vcpu->run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		struct kvm_run *run = vcpu->run;
		struct kvm_regs regs;
		struct kvm_sregs sregs;

		vcpu_regs_get(vcpu, &regs);
		vcpu_sregs_get(vcpu, &sregs);
		TEST_FAIL("vCPU %u: KVM internal error, suberror %u, ndata %u: %llx %llx %llx %llx; rip %llx cs %x cr2 %llx cr3 %llx",
			  vcpu->id, run->internal.suberror, run->internal.ndata,
			  run->internal.data[0], run->internal.data[1], run->internal.data[2],
			  run->internal.data[3], regs.rip, sregs.cs.selector, sregs.cr2, sregs.cr3);
	}
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		return uc.args[0];
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected ucall %lu", uc.cmd);
	}
	return 0;
}

static void mini_run_until_phase(struct mini *m, int v, uint64_t phase)
{
	for (int n = 0; n < 100; n++)
		if (mini_run(m->vcpu[v]) == phase)
			return;
	TEST_FAIL("vCPU %d never reached phase %lu", v, phase);
}

/* n more exits, each in the given phase. */
static void mini_run_n(struct mini *m, int v, int n, uint64_t phase)
{
	for (int i = 0; i < n; i++) {
		uint64_t ph = mini_run(m->vcpu[v]);

		TEST_ASSERT(ph == phase, "exit %d: phase %lu, want %lu", i, ph, phase);
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static uint64_t vcpu_cr3(struct kvm_vcpu *vcpu)
{
	struct kvm_sregs sregs;

	vcpu_sregs_get(vcpu, &sregs);
	return sregs.cr3;
}

/* Number of events of this vector in vCPU v's log; *first gets the first. */
static int events_of(struct mini *m, int v, uint64_t vector, struct gevent *first)
{
	struct vcpu_ctl *c = &m->ctl->vcpu[v];
	int n = 0;

	for (uint64_t i = 0; i < c->nr_events && i < LOG_LEN; i++) {
		if (c->ev[i].vector != vector)
			continue;
		if (!n++ && first)
			*first = c->ev[i];
	}
	return n;
}

static void log_events(struct __test_metadata *_metadata, struct mini *m, int v)
{
	struct vcpu_ctl *c = &m->ctl->vcpu[v];

	for (uint64_t i = 0; i < c->nr_events && i < LOG_LEN; i++)
		TH_LOG("vCPU %d event %lu: vector %lu cr2 %lx error %lx cpl %lu rip %lx", v, i,
		       c->ev[i].vector, c->ev[i].cr2, c->ev[i].error_code, c->ev[i].cpl,
		       c->ev[i].rip);
}

/* ---- host: kvm_pfi targets ---- */

struct tgt {
	int pfi;
	uint32_t vm_id, id;
};

static bool tgt_page(struct tgt *t, int pg, struct kvm_pfi_page_info *out)
{
	struct kvm_pfi_page_info pages[MAX_PAGES];
	uint32_t total;

	if (pfi_target_pages(t->pfi, t->vm_id, t->id, pages, MAX_PAGES, &total) ||
	    pg >= (int)total || pg >= MAX_PAGES)
		return false;
	*out = pages[pg];
	return true;
}

/* Waits until page pg of t has all of `flags`. */
static bool wait_page_flags(struct tgt *t, int pg, uint32_t flags)
{
	struct kvm_pfi_page_info pi;

	for (uint64_t t0 = now_ms(); now_ms() - t0 < WAIT_MS; usleep(10000))
		if (tgt_page(t, pg, &pi) && (pi.flags & flags) == flags)
			return true;
	return false;
}

static const char *state_str(uint32_t s)
{
	static const char *const names[] = {
		"WAITING", "INJECTED", "RESIDENT", "FAILED", "UNKNOWN",
	};

	return s < 5 ? names[s] : "?";
}

/* Runs vCPU v exit by exit until page pg of t is in state want; returns the
 * exits it took, or -1 after timeout_ms (*pi then holds the last state). */
static int run_until_state(struct mini *m, int v, struct tgt *t, int pg, uint32_t want,
			   int timeout_ms, struct kvm_pfi_page_info *pi)
{
	uint64_t t0 = now_ms();

	memset(pi, 0xff, sizeof(*pi));
	for (int n = 0;; n++) {
		if (tgt_page(t, pg, pi) && pi->state == want)
			return n;
		if (now_ms() - t0 > (uint64_t)timeout_ms)
			return -1;
		mini_run(m->vcpu[v]);
	}
}

static void log_page(struct __test_metadata *_metadata, const char *what,
		     struct kvm_pfi_page_info *pi)
{
	TH_LOG("%s: gva %llx state %s how %u injections %u reinjections %u gpa %llx size %u fail %u",
	       what, pi->gva, state_str(pi->state), pi->how, pi->injections,
	       pi->reinjections, pi->gpa, pi->page_size, pi->fail_reason);
}

/* Puts bytes over the pattern of page n (before the guest boots). */
static void mini_plant(struct mini *m, int n, uint64_t off, const void *bytes, uint64_t len)
{
	struct gpage *p = &m->ctl->page[n];

	TEST_ASSERT(len <= PLANT_MAX && off + len <= PAGE, "plant");
	memcpy(p->plant, bytes, len);
	p->plant_off = off;
	p->plant_len = len;
}

/* The content the guest wrote to page n (before swapping it out). */
static void expected_content(struct mini *m, int n, void *out)
{
	struct gpage *p = &m->ctl->page[n];
	uint64_t *q = out;

	for (uint64_t j = 0; j < PAGE / 8; j++)
		q[j] = pattern(m->ctl->seed, n, j);
	memcpy((char *)out + p->plant_off, p->plant, p->plant_len);
}

static bool content_ok(struct mini *m, gpa_t gpa, int n)
{
	static char want[PAGE];

	expected_content(m, n, want);
	return !memcmp(addr_gpa2hva(m->vm, gpa), want, PAGE);
}

/* Page n was brought in after exactly one #PF injected on vCPU v: the
 * module's report agrees with the guest's handler. */
static void check_injected(struct __test_metadata *_metadata, struct mini *m, int v, int n,
			   struct kvm_pfi_page_info *pi, uint64_t err)
{
	struct gpage *p = &m->ctl->page[n];
	struct gevent ev = { 0 };

	EXPECT_EQ(p->gva, pi->gva);
	EXPECT_EQ(KVM_PFI_PAGE_RESIDENT, pi->state);
	EXPECT_EQ(KVM_PFI_HOW_INJECTED, pi->how);
	EXPECT_EQ(1, pi->injections);
	EXPECT_EQ(PAGE, pi->page_size);
	/* The guest chose the frame; the module must report that one. */
	ASSERT_NE(0, p->mapped_gpa);
	EXPECT_EQ(p->mapped_gpa, pi->gpa);
	EXPECT_NE(m->orig_gpa[n], pi->gpa);
	EXPECT_EQ(v + 1, p->mapped_by);
	EXPECT_EQ(1, p->faults);
	EXPECT_TRUE(content_ok(m, pi->gpa, n));
	/* The handler saw: CR2 = the page, P=0 U=1 (W as asked), from ring 3. */
	ASSERT_EQ(1, events_of(m, v, PF_VECTOR, &ev));
	EXPECT_EQ(p->gva, ev.cr2);
	EXPECT_EQ(err, ev.error_code);
	EXPECT_EQ(3, ev.cpl);
}

FIXTURE(pfi) {
	int pfi;
	bool targets;
	bool reloaded;		/* module loaded with parameters: reload plain */
};

/* (Re)loads kvm_pfi from KVM_PFI_KO with these parameters. */
static int load_module(const char *params)
{
	const char *ko = getenv("KVM_PFI_KO");
	char cmd[600];

	if (!ko)
		return -1;
	snprintf(cmd, sizeof(cmd), "(! [ -e /sys/module/kvm_pfi ] || rmmod kvm_pfi) && insmod %s %s",
		 ko, params);
	return system(cmd) ? -1 : 0;
}

/* Rust module parameters have no sysfs files (perm 0): they are set by
 * loading the module with them. No file of ours may hold it meanwhile. */
static int module_reload(FIXTURE_DATA(pfi) *self, const char *params)
{
	if (self->pfi >= 0)
		close(self->pfi);
	self->pfi = -1;
	if (load_module(params))
		return -1;
	self->pfi = pfi_open();
	return self->pfi >= 0 ? 0 : -1;
}

FIXTURE_SETUP(pfi)
{
	self->pfi = pfi_open();
	ASSERT_LE(0, self->pfi);
	self->targets = pfi_has_targets(self->pfi);
	self->reloaded = false;
}

/* In the parent, so that it also runs when the test process died in a
 * library assertion (exit()), and after all of that process's files and
 * VMs are gone: the next test gets the module with its defaults. */
FIXTURE_TEARDOWN_PARENT(pfi)
{
	if ((self->reloaded || access("/sys/module/kvm_pfi", F_OK)) && load_module(""))
		fprintf(stderr, "# could not load kvm_pfi with its defaults\n");
}

/* The module-dependent tests. */
#define REQUIRE_TARGETS()						\
	do {								\
		if (!self->targets)					\
			SKIP(return, "module lacks TARGET_ADD (ENOTTY)"); \
	} while (0)

/* Reloads the module with these parameters (needs KVM_PFI_KO); the
 * teardown loads it again with its defaults. */
static void set_params(struct __test_metadata *_metadata, FIXTURE_DATA(pfi) *self,
		       const char *params)
{
	ASSERT_NE(NULL, getenv("KVM_PFI_KO"));
	self->reloaded = true;
	ASSERT_EQ(0, module_reload(self, params)) {
		TH_LOG("could not reload kvm_pfi with %s", params);
	}
}

/* A vCPU runner thread: the vCPU runs exit after exit until told to stop. */
struct runner {
	struct kvm_vcpu *vcpu;
	volatile bool stop;
	volatile uint64_t exits;
	volatile pid_t tid;
	pthread_t th;
};

static void *runner_fn(void *arg)
{
	struct runner *r = arg;

	r->tid = gettid();
	while (!r->stop) {
		mini_run(r->vcpu);
		r->exits++;
	}
	return NULL;
}

static void runners_start(struct runner *r, struct mini *m)
{
	for (int i = 0; i < m->nr_vcpus; i++) {
		r[i] = (struct runner){ .vcpu = m->vcpu[i] };
		TEST_ASSERT(!pthread_create(&r[i].th, NULL, runner_fn, &r[i]), "pthread_create");
	}
}

static void runners_stop(struct runner *r, struct mini *m)
{
	for (int i = 0; i < m->nr_vcpus; i++)
		r[i].stop = true;
	for (int i = 0; i < m->nr_vcpus; i++)
		pthread_join(r[i].th, NULL);
}

#endif /* SELFTEST_KVM_PFI_MINI_OS_H */
