// SPDX-License-Identifier: MIT
/*
 * Pass-through cost of the door: calls on fds and paths it does not own.
 * Run it bare and under `p2pbuf exec` and compare (tests/door/passbench.sh
 * does both and prints the ratios).  Prints "name ns/call" lines.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define BENCH(name, n, body)                                                      \
	do {                                                                      \
		double best = 1e30;                                               \
		for (int rep = 0; rep < 5; rep++) {                               \
			double t = now();                                         \
			for (int i = 0; i < (n); i++) {                           \
				body;                                             \
			}                                                         \
			t = (now() - t) / (n);                                    \
			best = t < best ? t : best;                               \
		}                                                                 \
		printf("%-28s %8.1f\n", name, best);                              \
	} while (0)

int main(void)
{
	char buf[4096];
	int p[2], avail, mfd = memfd_create("bench", MFD_CLOEXEC);
	int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);

	if (pipe(p) || mfd < 0 || fd < 0 || ftruncate(mfd, 1 << 20))
		return 1;
	BENCH("open+close /etc/passwd", 20000, {
		int f = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
		close(f);
	});
	BENCH("pread 4K /etc/passwd", 100000, {
		if (pread(fd, buf, sizeof(buf), 0) < 0)
			return 1;
	});
	BENCH("ioctl FIONREAD pipe", 100000, {
		if (ioctl(p[0], FIONREAD, &avail))
			return 1;
	});
	BENCH("mmap+munmap memfd 1M", 20000, {
		void *m = mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED, mfd, 0);
		munmap(m, 1 << 20);
	});
	BENCH("stat /dev/null", 100000, {
		struct stat st;
		if (stat("/dev/null", &st))
			return 1;
	});
	return 0;
}
