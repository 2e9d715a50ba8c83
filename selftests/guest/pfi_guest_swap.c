// SPDX-License-Identifier: GPL-2.0
/*
 * The real-guest test's program, run by the nested Linux guest's init: it
 * owns NR_PAGES anonymous pages with known contents (page i starts with the
 * marker "KVMPFI-PAGE-<i>", SIG_PAGE also holds the EICAR test string at
 * SIG_OFFSET), pushes them to swap (zram) with MADV_PAGEOUT, confirms with
 * /proc/self/pagemap that they are swapped out, and prints one JSON line of
 * ground truth. Then, until a line arrives on stdin, it alternates a busy
 * loop in user mode with poll() in the kernel, never touching the pages.
 * Last it checks every page against what it wrote (touching them brings
 * back any page kvm-pfi did not) and prints the result.
 *
 * Statically linked: the initramfs has no libc.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT	21
#endif
#define PAGE		4096
#define NR_PAGES	16
#define SIG_PAGE	5
#define SIG_OFFSET	1000
#define EICAR		"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

extern char __executable_start[], etext[];

static void fill(uint8_t *p, int i)
{
	uint64_t s = 0x9e3779b97f4a7c15ULL * (i + 1);

	for (int j = 0; j < PAGE; j++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		p[j] = s;
	}
	snprintf((char *)p, 32, "KVMPFI-PAGE-%03d", i);
	if (i == SIG_PAGE)
		memcpy(p + SIG_OFFSET, EICAR, sizeof(EICAR) - 1);
}

/* Pages of [p, p + n pages) that pagemap reports swapped (bit 62). */
static int swapped(uint8_t *p, int n)
{
	int fd = open("/proc/self/pagemap", O_RDONLY), count = 0;
	uint64_t e;

	for (int i = 0; fd >= 0 && i < n; i++) {
		if (pread(fd, &e, 8, ((uintptr_t)p / PAGE + i) * 8) == 8 && (e >> 62 & 1))
			count++;
	}
	if (fd >= 0)
		close(fd);
	return count;
}

static volatile uint64_t sink;

static void spin_us(long us)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	do {
		for (int i = 0; i < 1000; i++)
			sink += i;
		clock_gettime(CLOCK_MONOTONIC, &b);
	} while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < us);
}

int main(void)
{
	uint8_t *buf = mmap(NULL, NR_PAGES * PAGE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t want[PAGE];
	struct pollfd in = { .fd = 0, .events = POLLIN };
	int out = 0, bad = 0;

	if (buf == MAP_FAILED)
		return 1;
	for (int i = 0; i < NR_PAGES; i++)
		fill(buf + i * PAGE, i);
	for (int tries = 0; tries < 10 && (out = swapped(buf, NR_PAGES)) < NR_PAGES; tries++)
		madvise(buf, NR_PAGES * PAGE, MADV_PAGEOUT);
	printf("{\"pid\":%d,\"gva\":%lu,\"pages\":%d,\"swapped\":%d,\"sig_page\":%d,"
	       "\"sig_offset\":%d,\"text_lo\":%lu,\"text_hi\":%lu}\n",
	       getpid(), (unsigned long)buf, NR_PAGES, out, SIG_PAGE, SIG_OFFSET,
	       (unsigned long)__executable_start, (unsigned long)etext);
	fflush(stdout);
	/* User mode and system calls, until told to finish. */
	while (poll(&in, 1, 1) == 0)
		spin_us(2000);
	for (int i = 0; i < NR_PAGES; i++) {
		fill(want, i);
		bad += memcmp(buf + i * PAGE, want, PAGE) != 0;
	}
	printf("{\"verify\":\"%s\",\"bad_pages\":%d}\n", bad ? "fail" : "ok", bad);
	fflush(stdout);
	return bad != 0;
}
