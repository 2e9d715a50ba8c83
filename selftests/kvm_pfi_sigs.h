/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Signature sets for the kvm-pfi selftests, laid out as KVM_PFI_SIGS_LOAD
 * takes them by a small encoder of the UAPI layout of its own, independent
 * of the kvm-pfi tool's compiler. Static definitions, as the mini OS's.
 */
#ifndef SELFTEST_KVM_PFI_SIGS_H
#define SELFTEST_KVM_PFI_SIGS_H

#include <stdio.h>
#include <string.h>

#include "test_util.h"
#include "kvm_pfi_util.h"

struct sigset {
	struct kvm_pfi_sig_rule rule[8];
	struct kvm_pfi_sig_pattern pat[16];
	struct kvm_pfi_sig_segment seg[32];
	uint8_t str[2048];
	uint32_t nr_rules, nr_pats, nr_segs, str_len;
	/* The encoded set and where its tables start. */
	uint8_t blob[8192];
	uint32_t size, rules_off, pats_off, segs_off;
};

static uint32_t set_str(struct sigset *s, const void *p, uint32_t len)
{
	uint32_t off = s->str_len;

	TEST_ASSERT(off + len <= sizeof(s->str), "strings");
	memcpy(s->str + off, p, len);
	s->str_len += len;
	return off;
}

static void set_rule(struct sigset *s, const char *name)
{
	struct kvm_pfi_sig_rule *r = &s->rule[s->nr_rules++];

	r->name_len = strlen(name);
	r->name_off = set_str(s, name, r->name_len);
	r->nr_patterns = 0;
}

/*
 * Adds a pattern to the last rule, in the YARA hex-string notation: bytes
 * "4D", wildcards "??", jumps "[n]" / "[n-m]" between segments.
 */
static void set_pattern(struct sigset *s, const char *hex)
{
	uint8_t pairs[512];
	uint32_t n = 0, first = s->nr_segs;
	struct kvm_pfi_sig_segment *seg = NULL;
	const char *p = hex;

	s->pat[s->nr_pats++] = (struct kvm_pfi_sig_pattern){ .first_segment = first };
	s->rule[s->nr_rules - 1].nr_patterns++;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '[' || !*p) {
			unsigned int lo = 0, hi = 0;

			seg = &s->seg[s->nr_segs++];
			seg->len = n / 2;
			seg->bytes_off = set_str(s, pairs, n);
			n = 0;
			if (!*p) {
				seg->next = KVM_PFI_SIG_END;
				return;
			}
			if (sscanf(p, "[%u-%u]", &lo, &hi) != 2) {
				TEST_ASSERT(sscanf(p, "[%u]", &lo) == 1, "jump in %s", hex);
				hi = lo;
			}
			seg->jump_min = lo;
			seg->jump_max = hi;
			seg->next = s->nr_segs;
			p = strchr(p, ']') + 1;
			continue;
		}
		if (p[0] == '?' && p[1] == '?') {
			pairs[n++] = 0;
			pairs[n++] = 0;
		} else {
			unsigned int v;

			TEST_ASSERT(sscanf(p, "%2x", &v) == 1, "byte in %s", hex);
			pairs[n++] = v;
			pairs[n++] = 0xff;
		}
		p += 2;
	}
}

/* Lays the set out as KVM_PFI_SIGS_LOAD takes it. */
static void set_encode(struct sigset *s)
{
	struct kvm_pfi_sigs_header h = {
		.magic = KVM_PFI_SIGS_MAGIC, .version = KVM_PFI_SIGS_VERSION,
		.nr_rules = s->nr_rules, .nr_patterns = s->nr_pats,
		.nr_segments = s->nr_segs, .strings_len = s->str_len,
	};
	uint32_t off = sizeof(h);

	s->rules_off = off;
	memcpy(s->blob + off, s->rule, s->nr_rules * sizeof(s->rule[0]));
	off += s->nr_rules * sizeof(s->rule[0]);
	s->pats_off = off;
	memcpy(s->blob + off, s->pat, s->nr_pats * sizeof(s->pat[0]));
	off += s->nr_pats * sizeof(s->pat[0]);
	s->segs_off = off;
	memcpy(s->blob + off, s->seg, s->nr_segs * sizeof(s->seg[0]));
	off += s->nr_segs * sizeof(s->seg[0]);
	memcpy(s->blob + off, s->str, s->str_len);
	off += s->str_len;
	h.size = s->size = off;
	memcpy(s->blob, &h, sizeof(h));
}

static int sigs_load(int pfi, const void *blob, uint32_t size, uint32_t *generation)
{
	struct kvm_pfi_sigs_load l = { .data = (uintptr_t)blob, .size = size };
	int r = pfi_ioctl(pfi, KVM_PFI_SIGS_LOAD, &l);

	if (!r && generation)
		*generation = l.generation;
	return r;
}

static struct kvm_pfi_sigs_info sigs_info(int pfi)
{
	struct kvm_pfi_sigs_info i;

	TEST_ASSERT(!pfi_ioctl(pfi, KVM_PFI_SIGS_INFO, &i), "SIGS_INFO");
	return i;
}

#endif /* SELFTEST_KVM_PFI_SIGS_H */
