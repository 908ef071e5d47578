/* SPDX-License-Identifier: MIT */
/*
 * What a program written for the kernel's uAPI includes: <linux/vfio.h>,
 * <linux/dma-heap.h>, <linux/dma-buf.h>, plus the structures newer than
 * Debian 12's headers (6.1), copied from Linux 6.19's include/uapi (iommufd,
 * the VFIO cdev calls) and from the dma-buf export series (feature 11).
 * No p2pbuf header: these tests see only what a kernel user sees.
 */
#ifndef DOOR_TEST_KUAPI_H
#define DOOR_TEST_KUAPI_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/vfio.h>

#include "../../examples/linux_uapi.h"
#include "../../tools/proc_util.h"

static int failures;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                             \
			fprintf(stderr, " (errno %s)\n", strerror(errno));        \
			failures++;                                               \
		}                                                                 \
	} while (0)

/* Exit 77 when the node is not there, as a test on a kernel without the module would. */
static inline int open_or_skip(const char *path, int flags)
{
	int fd = open(path, flags);

	if (fd < 0 && (errno == ENOENT || errno == ENODEV)) {
		printf("SKIP: %s: %s\n", path, strerror(errno));
		exit(77);
	}
	return fd;
}

static inline int finish(const char *name)
{
	if (failures) {
		fprintf(stderr, "%s: %d failure(s)\n", name, failures);
		return 1;
	}
	printf("%s: ok\n", name);
	return 0;
}

/* Read a small sysfs file into @buf (NUL-terminated, newline stripped). */
static inline int read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = 0;
	return 0;
}

/* The IOMMU group of a function, as QEMU finds it: the iommu_group link's basename. */
static inline int sysfs_group(const char *bdf)
{
	char path[512], link[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%.200s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -1;
	link[n] = 0;
	return atoi(strrchr(link, '/') ? strrchr(link, '/') + 1 : link);
}

/* Open fds of the process (a plain /proc reader, no p2pbuf code). */
static inline int count_fds(void)
{
	return proc_count_fds();
}

/* The cdev index of a function, from /sys/bus/pci/devices/BDF/vfio-dev/vfioN; -1 if none. */
static inline int sysfs_cdev_index(const char *bdf)
{
	char path[512];
	struct dirent *e;
	DIR *d;
	int n = -1;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%.200s/vfio-dev", bdf);
	d = opendir(path);
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "vfio", 4))
			n = atoi(e->d_name + 4);
	if (d)
		closedir(d);
	return n;
}

/*
 * Does touching a byte fault (SIGBUS, SIGSEGV)?  probe_init() installs the
 * handler: call it first, before anything maps process memory for DMA, so
 * that a handler a library installs later chains to this one.
 */
static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probe_armed, probe_sig;

static void probe_handler(int sig)
{
	if (!probe_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	probe_sig = sig;
	siglongjmp(probe_jmp, 1);
}

static inline void probe_init(void)
{
	struct sigaction sa = { .sa_handler = probe_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

/* Read (@out) or write (@in, when @out is NULL) one byte: 0, or the signal it raised. */
static inline int probe(volatile uint8_t *p, uint8_t *out, uint8_t in)
{
	probe_sig = 0;
	if (sigsetjmp(probe_jmp, 1) == 0) {
		probe_armed = 1;
		if (out)
			*out = *p;
		else
			*p = in;
	}
	probe_armed = 0;
	return probe_sig;
}

/*
 * PCI_COMMAND through the config region of device fd @dev: with @mem >= 0
 * set (1) or clear (0) PCI_COMMAND_MEMORY first.  The register, or -1.
 */
static inline int pci_command(int dev, int mem)
{
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint16_t cmd;

	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &cfg) ||
	    pread(dev, &cmd, 2, (off_t)cfg.offset + 4) != 2)
		return -1;
	if (mem >= 0) {
		cmd = (uint16_t)(mem ? cmd | 0x2 : cmd & ~0x2);
		if (pwrite(dev, &cmd, 2, (off_t)cfg.offset + 4) != 2)
			return -1;
	}
	return cmd;
}

#endif
