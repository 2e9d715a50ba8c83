// SPDX-License-Identifier: GPL-2.0
/*
 * The test program of selftests/linux_walk.py: a process with known
 * mappings for the Linux walkers to find. Its executable, libc.so.6 and
 * libm.so.6 (it calls cos()), page 1 of the file argv[1] (made three pages
 * long) mapped read-only at file offset 4096, two PROT_NONE pages, and its
 * stack. Prints one JSON line with the addresses, then waits for EOF on
 * stdin.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	volatile double x = 0.5;
	char page[4096], buf[16];
	void *file_map, *none;
	int fd, i;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DATA-FILE\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	for (i = 0; i < 3; i++) {
		memset(page, 'a' + i, sizeof(page));
		if (write(fd, page, sizeof(page)) != sizeof(page)) {
			perror("write");
			return 1;
		}
	}
	file_map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 4096);
	none = mmap(NULL, 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (file_map == MAP_FAILED || none == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	if (*(volatile char *)file_map != 'b')
		return 1;
	printf("{\"pid\":%d,\"file_map\":%lu,\"prot_none\":%lu,\"stack\":%lu,\"cos\":%.3f}\n",
	       getpid(), (unsigned long)file_map, (unsigned long)none,
	       (unsigned long)&x, cos(x));
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
