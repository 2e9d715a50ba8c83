// SPDX-License-Identifier: GPL-2.0
/*
 * The real-guest test's program, run by the nested Linux guest's init
 * (selftests/real_guest.py drives it). Usage:
 *
 *	pfi_guest_swap [NPROC] <commands
 *
 * It forks NPROC (default 1) workers. Each worker owns NR_PAGES anonymous
 * pages with known contents (page i starts with the marker
 * "KVMPFI-PAGE-<i>", the rest is a xorshift stream seeded by i; SIG_PAGE
 * also holds the EICAR test string at SIG_OFFSET) and a PROT_NONE page
 * (NONE_PAGE of the same contents, swapped out, then made inaccessible),
 * and a page of a shared file mapping (FILE_PAGE's contents, written to a
 * file, mapped, read, then dropped from the page tables with MADV_DONTNEED:
 * its entry is empty, no swap entry, the page stays in the page cache),
 * pushes them to swap (zram) with MADV_PAGEOUT, confirms through
 * /proc/self/pagemap that they are swapped out, and prints one line of
 * ground truth, "PFI {json}": its PID, where the pages are, how many are
 * swapped, the GVA and physical frame of a resident anchor page (so the
 * test can tell which CR3 is this process's by walking its page tables),
 * and the guest's pswpin count. Then it alternates a busy loop in user
 * mode with poll() in the kernel, never touching its pages.
 *
 * The parent reads commands, one a line, and passes each to its worker:
 *	verify K	worker K counts which of its pages are present without
 *			touching them (pagemap), reads pswpin, then checks every
 *			page against what it wrote and exits
 *	memset K P O N	worker K writes N bytes of 0xa5 at offset O of page P
 *			with glibc's memset, reads them back, prints the result
 *	block K		worker K stops running in user mode: it waits in
 *			read() (in the kernel) for its next command
 *	exit K		worker K returns to user mode, reports how many of its
 *			pages are present (pagemap), exits without touching them
 *	kill K		the parent kills worker K with SIGKILL: blocked in read(),
 *			it dies in the kernel without running in user mode again
 * and, answered by the parent itself (K must name a worker, any):
 *	ps K		one line per process as procfs shows it: pid, ppid,
 *			comm (/proc/PID/stat), exe (/proc/PID/exe, "" for a
 *			kernel thread), then a line with the count
 *	maps K		worker K's /proc/PID/maps, one line per map line: the
 *			worker's pid, start, end, offset (decimal), perms and
 *			name (the rest of the line after the inode: a path,
 *			[heap], [vdso], ..., "" if none), then a line with the
 *			count
 *	spawn K		starts "sleep 600" (busybox), prints its pid
 *	spawnmaps K	its /proc/PID/maps, as maps K does
 *	reap K		kills and reaps what spawn started
 * Every result is a "PFI {json}" line on stdout. When all workers are gone
 * the parent prints "PFI {"done":...}" and exits (status 0 if every worker
 * did).
 *
 * Statically linked: the initramfs has no libc.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT	21
#endif
#define PAGE		4096
#define NR_PAGES	16
#define SIG_PAGE	5
#define SIG_OFFSET	1000
#define NONE_PAGE	99	/* seed of the PROT_NONE page's contents */
#define FILE_PAGE	77	/* seed of the file page's contents */
#define MAX_PROC	4
#define EICAR		"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

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

/* pagemap entries of [p, p + n pages): bit 63 present, bit 62 swapped. */
static int pagemap(const void *p, int n, uint64_t *e)
{
	int fd = open("/proc/self/pagemap", O_RDONLY), ok;

	if (fd < 0)
		return -1;
	ok = pread(fd, e, 8 * n, (uintptr_t)p / PAGE * 8) == 8 * n;
	close(fd);
	return ok ? 0 : -1;
}

static int count_bit(const void *p, int n, int bit)
{
	uint64_t e[NR_PAGES];
	int count = 0;

	if (n > NR_PAGES || pagemap(p, n, e))
		return -1;
	for (int i = 0; i < n; i++)
		count += e[i] >> bit & 1;
	return count;
}

static long vmstat(const char *name)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char key[64];
	long v, found = -1;

	while (f && fscanf(f, "%63s %ld", key, &v) == 2) {
		if (!strcmp(key, name)) {
			found = v;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
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

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line: lines of several workers do not interleave. */
	if (write(1, line, n) != n)
		exit(3);
}

/* Worker k: the test's pages, then commands from fd cmd. */
static int worker(int k, int cmd)
{
	uint8_t *buf = mmap(NULL, NR_PAGES * PAGE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *none = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *anchor = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	uint8_t want[PAGE];
	uint8_t *file = MAP_FAILED;
	uint64_t e, fe = ~0ULL;
	int out = 0, none_out = 0, blocked = 0, ms_page = -1, ms_off = 0, ms_len = 0;
	char line[128], cur[128], path[64];
	int fd;

	if (buf == MAP_FAILED || none == MAP_FAILED || anchor == MAP_FAILED)
		return 1;
	/* The file page: written, mapped shared, read (mapped), then its entry
	 * cleared. */
	snprintf(path, sizeof(path), "/tmp/pfi-file-%d", k);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	fill(want, FILE_PAGE);
	if (fd >= 0 && write(fd, want, PAGE) == PAGE)
		file = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	if (file != MAP_FAILED) {
		sink += file[100];
		madvise(file, PAGE, MADV_DONTNEED);
		if (pagemap(file, 1, &fe))
			fe = ~0ULL;
	}
	memset(anchor, k + 1, PAGE);
	mlock(anchor, PAGE);
	for (int i = 0; i < NR_PAGES; i++)
		fill(buf + i * PAGE, i);
	fill(none, NONE_PAGE);
	for (int tries = 0; tries < 10; tries++) {
		out = count_bit(buf, NR_PAGES, 62);
		none_out = count_bit(none, 1, 62);
		if (out == NR_PAGES && none_out == 1)
			break;
		madvise(buf, NR_PAGES * PAGE, MADV_PAGEOUT);
		madvise(none, PAGE, MADV_PAGEOUT);
	}
	mprotect(none, PAGE, PROT_NONE);
	if (pagemap(anchor, 1, &e))
		e = 0;
	report("PFI {\"worker\":%d,\"pid\":%d,\"gva\":%lu,\"pages\":%d,\"swapped\":%d,"
	       "\"sig_page\":%d,\"sig_offset\":%d,\"none_gva\":%lu,\"none_seed\":%d,"
	       "\"none_swapped\":%d,\"anchor_gva\":%lu,\"anchor_pfn\":%lu,\"pswpin\":%ld,"
	       "\"file_gva\":%lu,\"file_seed\":%d,\"file_empty\":%d}",
	       k, getpid(), (unsigned long)buf, NR_PAGES, out, SIG_PAGE, SIG_OFFSET,
	       (unsigned long)none, NONE_PAGE, none_out, (unsigned long)anchor,
	       (unsigned long)(e >> 63 & 1 ? e & ((1ULL << 55) - 1) : 0), vmstat("pswpin"),
	       file == MAP_FAILED ? 0UL : (unsigned long)file, FILE_PAGE,
	       file != MAP_FAILED && !(fe >> 62 & 3));

	for (int have = 0;;) {
		struct pollfd in = { .fd = cmd, .events = POLLIN };
		int page, off, len, n;
		char *nl = memchr(line, '\n', have);

		if (!nl) {
			if (!blocked && poll(&in, 1, 1) == 0) {
				spin_us(2000);	/* user mode, then the kernel again */
				continue;
			}
			n = read(cmd, line + have, sizeof(line) - 1 - have);
			if (n <= 0)
				return 2;
			have += n;
			continue;
		}
		/* One command line; keep what follows it for the next round. */
		*nl = 0;
		n = nl + 1 - line;
		memcpy(cur, line, n);
		memmove(line, nl + 1, have - n);
		have -= n;
		if (!strncmp(cur, "exit", 4)) {
			/* Back in user mode for this: faults may come now. */
			report("PFI {\"worker\":%d,\"exit\":\"early\",\"present_before_exit\":%d}",
			       k, count_bit(buf, NR_PAGES, 63));
			return 0;
		}
		if (!strncmp(cur, "block", 5)) {
			blocked = 1;
			report("PFI {\"worker\":%d,\"blocked\":1}", k);
			continue;
		}
		if (sscanf(cur, "memset %d %d %d", &page, &off, &len) == 3 &&
		    page >= 0 && page < NR_PAGES && off >= 0 && len > 0 && off + len <= PAGE) {
			int bad = 0;

			memset(buf + page * PAGE + off, 0xa5, len);
			for (int j = 0; j < len; j++)
				bad += buf[page * PAGE + off + j] != 0xa5;
			report("PFI {\"worker\":%d,\"memset\":%d,\"offset\":%d,\"length\":%d,\"read_back_bad\":%d}",
			       k, page, off, len, bad);
			/* verify expects these bytes there from now on. */
			ms_page = page, ms_off = off, ms_len = len;
			continue;
		}
		if (!strncmp(cur, "verify", 6)) {
			int present = count_bit(buf, NR_PAGES, 63);
			int file_present = file == MAP_FAILED ? -1 : count_bit(file, 1, 63);
			long pswpin = vmstat("pswpin");
			int bad = 0, first_bad = -1, file_ok;

			for (int i = 0; i < NR_PAGES; i++) {
				fill(want, i);
				if (i == ms_page)
					memset(want + ms_off, 0xa5, ms_len);
				if (memcmp(buf + i * PAGE, want, PAGE)) {
					bad++;
					if (first_bad < 0)
						first_bad = i;
				}
			}
			fill(want, FILE_PAGE);
			file_ok = file != MAP_FAILED && !memcmp(file, want, PAGE);
			report("PFI {\"worker\":%d,\"verify\":\"%s\",\"bad_pages\":%d,\"first_bad\":%d,"
			       "\"present_before_touch\":%d,\"pswpin\":%ld,"
			       "\"file_present_before_touch\":%d,\"file_ok\":%d}",
			       k, bad ? "fail" : "ok", bad, first_bad, present, pswpin,
			       file_present, file_ok);
			return bad != 0;
		}
		report("PFI {\"worker\":%d,\"unknown_command\":1}", k);
	}
}

/* s, JSON-escaped into out (n bytes). */
static void json_str(char *out, size_t n, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < n; s++) {
		unsigned char c = *s;

		if (c == '"' || c == '\\')
			o += snprintf(out + o, n - o, "\\%c", c);
		else if (c < 0x20 || c > 0x7e)
			o += snprintf(out + o, n - o, "\\u%04x", c);
		else
			out[o++] = c;
	}
	out[o] = 0;
}

/* The guest's processes as procfs lists them: the ground truth of the
 * module's walk of the task list. */
static void list_processes(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int count = 0;

	while (d && (e = readdir(d))) {
		char path[64], stat[512], exe[256] = "", comm[64], ecomm[160], eexe[600];
		int pid = atoi(e->d_name), ppid = -1;
		char *open_p, *close_p;
		ssize_t n;
		FILE *f;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		n = fread(stat, 1, sizeof(stat) - 1, f);
		fclose(f);
		stat[n > 0 ? n : 0] = 0;
		/* "pid (comm) state ppid ...": comm may hold spaces and ')'. */
		open_p = strchr(stat, '(');
		close_p = strrchr(stat, ')');
		if (!open_p || !close_p || close_p < open_p)
			continue;
		*close_p = 0;
		snprintf(comm, sizeof(comm), "%s", open_p + 1);
		sscanf(close_p + 2, "%*c %d", &ppid);
		snprintf(path, sizeof(path), "/proc/%d/exe", pid);
		n = readlink(path, exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = 0;
		json_str(ecomm, sizeof(ecomm), comm);
		json_str(eexe, sizeof(eexe), exe);
		report("PFI {\"ps_pid\":%d,\"ppid\":%d,\"comm\":\"%s\",\"exe\":\"%s\"}", pid, ppid, ecomm, eexe);
		count++;
	}
	if (d)
		closedir(d);
	report("PFI {\"ps_done\":%d}", count);
}

/* Process pid's VMAs as procfs shows them: the ground truth of the
 * module's walk of its VMA tree. */
static void list_maps(pid_t pid)
{
	char path[64], line[4400], ename[360];
	int count = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f)) {
		/* "start-end perms offset dev inode   name": name may hold spaces. */
		unsigned long start, end, offset, inode;
		char perms[8], *name;
		size_t len;
		int at = -1;

		if (sscanf(line, "%lx-%lx %7s %lx %*s %lu %n", &start, &end, perms, &offset,
			   &inode, &at) != 5 || at < 0)
			continue;
		name = line + at;
		len = strlen(name);
		while (len && (name[len - 1] == '\n' || name[len - 1] == ' ' || name[len - 1] == '\t'))
			name[--len] = 0;
		json_str(ename, sizeof(ename), name);
		report("PFI {\"maps_pid\":%d,\"start\":%lu,\"end\":%lu,\"perms\":\"%s\",\"offset\":%lu,"
		       "\"name\":\"%s\"}", pid, start, end, perms, offset, ename);
		count++;
	}
	if (f)
		fclose(f);
	report("PFI {\"maps_done\":%d}", count);
}

int main(int argc, char **argv)
{
	int nproc = argc > 1 ? atoi(argv[1]) : 1, pipes[MAX_PROC][2], alive, failed = 0;
	pid_t pids[MAX_PROC], spawned = 0;
	char line[128];
	FILE *in = fdopen(0, "r");

	if (nproc < 1 || nproc > MAX_PROC || !in)
		return 1;
	/* A worker killed by a signal is reported, not fatal to the parent. */
	signal(SIGPIPE, SIG_IGN);
	for (int k = 0; k < nproc; k++) {
		if (pipe(pipes[k]))
			return 1;
		pids[k] = fork();
		if (pids[k] < 0)
			return 1;
		if (pids[k] == 0) {
			close(pipes[k][1]);
			_exit(worker(k, pipes[k][0]));
		}
		close(pipes[k][0]);
	}
	alive = nproc;
	while (alive > 0 && fgets(line, sizeof(line), in)) {
		char *sp = strchr(line, ' '), *rest = NULL;
		long k = sp ? strtol(sp + 1, &rest, 10) : -1;
		int status;

		if (!sp || rest == sp + 1 || k < 0 || k >= nproc || pids[k] <= 0) {
			report("PFI {\"bad_command\":1}");
			continue;
		}
		/* "verb K rest" goes to worker K as "verb rest". */
		*sp = 0;
		if (!strcmp(line, "ps")) {
			list_processes();
			continue;
		}
		if (!strcmp(line, "maps")) {
			list_maps(pids[k]);
			continue;
		}
		if (!strcmp(line, "spawn") && !spawned) {
			spawned = fork();
			if (spawned == 0) {
				execl("/bin/sleep", "sleep", "600", (char *)NULL);
				_exit(127);
			}
			report("PFI {\"spawned\":%d}", spawned);
			continue;
		}
		if (!strcmp(line, "spawnmaps") && spawned > 0) {
			list_maps(spawned);
			continue;
		}
		if (!strcmp(line, "reap") && spawned > 0) {
			kill(spawned, SIGKILL);
			waitpid(spawned, &status, 0);
			report("PFI {\"reaped\":%d}", spawned);
			spawned = 0;
			continue;
		}
		if (!strcmp(line, "kill"))
			kill(pids[k], SIGKILL);
		else
			dprintf(pipes[k][1], "%s%s", line, rest);
		if (!strcmp(line, "verify") || !strcmp(line, "exit") || !strcmp(line, "kill")) {
			waitpid(pids[k], &status, 0);
			/* A worker killed on request ended as it should. */
			if (!strcmp(line, "kill"))
				failed += !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL;
			else
				failed += !WIFEXITED(status) || WEXITSTATUS(status);
			report("PFI {\"worker\":%ld,\"exited\":%d,\"signal\":%d}", k,
			       WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			       WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			pids[k] = 0;
			alive--;
		}
	}
	report("PFI {\"done\":%d,\"failed\":%d}", nproc - alive, failed);
	return failed != 0;
}
