// SPDX-License-Identifier: MIT
/*
 * A program written for Linux's VFIO, iommufd and dma-buf uAPI, nothing
 * else: no p2pbuf header, no p2pbuf library.  Under `p2pbuf exec` it runs
 * on the emulated GPU-like function 0000:01:00.0 and prints what it sees
 * (`make run` shows it after `p2pbuf run`):
 *
 *   build/tools/p2pbuf exec -- build/examples/door-tour
 *
 * It finds the function in sysfs, opens its VFIO cdev and /dev/iommu,
 * exports two ranges of BAR2 as one dma-buf (VFIO_DEVICE_FEATURE_DMA_BUF),
 * maps it, finds it in bufinfo, turns memory decoding off (the mapping
 * raises SIGBUS) and on again (the same mapping works), resets the device
 * and closes it (the dma-buf is dead for good: SIGBUS, ENODEV).  Exit 0 if everything behaved as the
 * kernel does, 1 if not, 77 without /dev/vfio (not under the door).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "linux_uapi.h"

#define BDF "0000:01:00.0"
#define SYSDEV "/sys/bus/pci/devices/" BDF
#define R0 (1u << 20) /* range 0: 1 MiB at BAR offset 1 MiB */
#define R1 (64u << 10) /* range 1: 64 KiB at BAR offset 0 */

static int failed;
static sigjmp_buf jb;

static void on_sigbus(int sig)
{
	siglongjmp(jb, sig);
}

static void ok(int cond, const char *what)
{
	printf("    %s: %s\n", cond ? "ok" : "FAILED", what);
	failed |= !cond;
}

/* Read a byte; 0, or SIGBUS if the access faulted. */
static int probe(volatile const uint8_t *p, uint8_t *out)
{
	int sig = sigsetjmp(jb, 1);

	if (sig)
		return sig;
	*out = *p;
	return 0;
}

static void sysfs_line(const char *name, char *out, size_t len)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), SYSDEV "/%s", name);
	out[0] = 0;
	f = fopen(path, "re");
	if (f) {
		if (fgets(out, (int)len, f))
			out[strcspn(out, "\n")] = 0;
		fclose(f);
	}
}

/* COMMAND.MEM through the config region, as a VMM toggles it. */
static void set_mem(int dev, uint64_t cfg, int on)
{
	uint16_t cmd = 0;

	if (pread(dev, &cmd, 2, (off_t)(cfg + 4)) != 2)
		ok(0, "read COMMAND");
	cmd = (uint16_t)(on ? cmd | 2 : cmd & ~2);
	if (pwrite(dev, &cmd, 2, (off_t)(cfg + 4)) != 2)
		ok(0, "write COMMAND");
}

int main(void)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR2_REGION_INDEX };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint64_t raw[(sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_dma_buf) +
		      2 * sizeof(struct vfio_region_dma_range)) / 8] = { 0 };
	struct vfio_device_feature *feat = (void *)raw;
	struct vfio_device_feature_dma_buf *db = (void *)feat->data;
	char vendor[32], device[32], class[32], link[PATH_MAX], path[PATH_MAX], line[256];
	int dev, iommufd, buf, idx = -1;
	struct sigaction sa = { .sa_handler = on_sigbus };
	uint8_t *va, byte = 0;
	char text[64] = { 0 };
	DIR *d;
	FILE *f;
	ssize_t n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access("/dev/vfio", F_OK)) {
		printf("SKIP: no /dev/vfio: run me under the door, p2pbuf exec -- %s\n", "door-tour");
		return 77;
	}
	sigaction(SIGBUS, &sa, NULL);

	printf("[1] sysfs, as a VMM looks for its device\n");
	sysfs_line("vendor", vendor, sizeof(vendor));
	sysfs_line("device", device, sizeof(device));
	sysfs_line("class", class, sizeof(class));
	n = readlink(SYSDEV "/iommu_group", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	d = opendir(SYSDEV "/vfio-dev");
	for (struct dirent *e; d && (e = readdir(d));)
		if (!strncmp(e->d_name, "vfio", 4))
			idx = atoi(e->d_name + 4);
	if (d)
		closedir(d);
	printf("    %s: vendor %s device %s class %s, iommu_group %s, vfio-dev/vfio%d\n", BDF,
	       vendor, device, class, strrchr(link, '/') ? strrchr(link, '/') + 1 : "?", idx);
	ok(idx >= 0 && !strcmp(vendor, "0x1b36"), "the function is there, bound to vfio-pci");
	if (idx < 0)
		return 1;

	printf("[2] /dev/vfio/devices/vfio%d and /dev/iommu\n", idx);
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", idx);
	dev = open(path, O_RDWR | O_CLOEXEC);
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	ok(dev >= 0 && iommufd >= 0, "both open");
	if (dev < 0 || iommufd < 0)
		return 1;
	ok(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &bar) < 0 && errno == EINVAL,
	   "before VFIO_DEVICE_BIND_IOMMUFD the cdev refuses ioctls (EINVAL)");
	bind.iommufd = iommufd;
	ok(ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind) == 0, "VFIO_DEVICE_BIND_IOMMUFD");
	ok(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &bar) == 0 &&
		   ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &cfg) == 0,
	   "VFIO_DEVICE_GET_REGION_INFO");
	printf("    BAR2: %llu MiB at region offset %#llx, flags %#x (read, write, mmap)\n",
	       (unsigned long long)(bar.size >> 20), (unsigned long long)bar.offset, bar.flags);

	printf("[3] VFIO_DEVICE_FEATURE_DMA_BUF: 1 MiB at 1 MiB + 64 KiB at 0, one dma-buf\n");
	feat->argsz = sizeof(raw);
	feat->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	db->region_index = VFIO_PCI_BAR2_REGION_INDEX;
	db->open_flags = O_RDWR | O_CLOEXEC;
	db->nr_ranges = 2;
	db->dma_ranges[0] = (struct vfio_region_dma_range){ R0, R0 };
	db->dma_ranges[1] = (struct vfio_region_dma_range){ 0, R1 };
	buf = ioctl(dev, VFIO_DEVICE_FEATURE, feat);
	ok(buf >= 0, "exported: a dma-buf fd");
	if (buf < 0)
		return 1;
	va = mmap(NULL, R0 + R1, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	ok(va != MAP_FAILED, "mmap of the dma-buf: the two ranges are contiguous in VA");
	if (va == MAP_FAILED)
		return 1;
	strcpy((char *)va + R0, "written through the dma-buf");
	n = pread(dev, text, sizeof(text) - 1, (off_t)bar.offset);
	printf("    BAR2 offset 0, read through the device fd: \"%s\"\n", n > 0 ? text : "?");
	ok(!strcmp(text, "written through the dma-buf"), "the second range is BAR2 offset 0");

	printf("[4] /sys/kernel/debug/dma_buf/bufinfo\n");
	f = fopen("/sys/kernel/debug/dma_buf/bufinfo", "re");
	n = 0;
	{
		int seen = 0;

		while (f && fgets(line, sizeof(line), f)) {
			if (line[0] != '\n' && n++ < 3)
				printf("    | %s", line);
			seen |= strstr(line, BDF "/bar2") && strtoul(line, NULL, 10) == R0 + R1;
		}
		ok(seen, "it lists the dma-buf: its size and exporter");
	}
	if (f)
		fclose(f);

	printf("[5] memory decoding off (COMMAND.MEM through the config region): revoked\n");
	set_mem(dev, cfg.offset, 0);
	ok(probe(va, &byte) == SIGBUS, "touching the mapping raises SIGBUS");
	ok(pread(dev, text, 4, (off_t)bar.offset) < 0 && errno == EIO,
	   "reading BAR2 through the device fd fails with EIO");
	set_mem(dev, cfg.offset, 1);
	ok(probe(va + R0, &byte) == 0 && !strcmp((char *)va + R0, "written through the dma-buf"),
	   "memory decoding on: the same mapping works again, the data is there");

	printf("[6] VFIO_DEVICE_RESET: revoked during the reset, back after it\n");
	ok(ioctl(dev, VFIO_DEVICE_RESET) == 0, "reset (config space restored: decoding stays on)");
	ok(probe(va + R0, &byte) == 0, "the mapping works after the reset");

	printf("[7] close the device: its dma-bufs are dead for good\n");
	close(dev);
	ok(probe(va, &byte) == SIGBUS, "the mapping raises SIGBUS");
	ok(mmap(NULL, 4096, PROT_READ, MAP_SHARED, buf, 0) == MAP_FAILED && errno == ENODEV,
	   "a new mmap of the dma-buf fails with ENODEV");
	ok(munmap(va, R0 + R1) == 0 && close(buf) == 0 && close(iommufd) == 0,
	   "munmap and close as usual");

	printf("\ndoor-tour: %s\n", failed ? "FAILED" : "a kernel-uAPI program ran unmodified on p2pbuf");
	return failed ? 1 : 0;
}
