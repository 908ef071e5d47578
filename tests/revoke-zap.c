// SPDX-License-Identifier: MIT
/*
 * The work a CPU revoke does, as resident pages show it (/proc/self/smaps
 * Rss), so that `p2pbuf bench revoke` compares like with like: a revoke
 * drops every page-table entry of every p2pbuf mapping of the buffer (one
 * zap per mapping, multi-range mappings included) and nothing else (the
 * device's own view of its memory stays resident); an un-revoke populates
 * nothing (the first touch faults the same data back in, as after a raw
 * MADV_DONTNEED); a revoke right after an un-revoke, with nothing touched
 * in between, leaves nothing resident either.  Holds for both CPU revoke
 * methods (make check runs it with P2PBUF_CPU_REVOKE=remap too).
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ull
#define BAR 2
#define BAR_SIZE (1ull << 20)
#define LEN (512ull << 10) /* two ranges of 256 KiB */

static struct t_dev dev;

/*
 * Resident kB of the VMAs lying inside [va, va + len), or of the one VMA
 * holding @va when @len is 0.  -1 if /proc is missing or nothing matched.
 */
static long rss_kb(const void *va, size_t len)
{
	uintptr_t a = (uintptr_t)va, s = 0, e = 0;
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	long sum = -1, kb;
	bool in = false;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long ls, le;

		if (sscanf(line, "%lx-%lx ", &ls, &le) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			s = ls;
			e = le;
			in = len ? (s >= a && e <= a + len) : (a >= s && a < e);
			continue;
		}
		if (in && sscanf(line, "Rss: %ld kB", &kb) == 1)
			sum = (sum < 0 ? 0 : sum) + kb;
	}
	fclose(f);
	return sum;
}

static bool same_as_bar(const uint8_t *va)
{
	/* The dma-buf is BAR [512K, 768K) then BAR [0, 256K). */
	return !memcmp(va, t_bar_ptr(dev.pci, BAR, 512 << 10), LEN / 2) &&
	       !memcmp(va + LEN / 2, t_bar_ptr(dev.pci, BAR, 0), LEN / 2);
}

int main(void)
{
	const struct vfio_region_dma_range r[2] = {
		{ .offset = 512 << 10, .length = LEN / 2 },
		{ .offset = 0, .length = LEN / 2 },
	};
	void *v1 = NULL, *v2 = NULL;
	long dev_rss;
	int fd;

	t_begin();
	t_dev_create_or_skip(&dev, "0000:5a:00.0", BAR_SIZE, 91);
	t_bar_fill(dev.pci, BAR, BAR_SIZE);
	if (rss_kb(t_bar_ptr(dev.pci, BAR, 0), 0) < 0)
		t_skip("no /proc/self/smaps");
	printf("CPU revoke method: %s\n",
	       p2p_cpu_revoke_method() == P2P_CPU_REVOKE_UFFD ? "userfaultfd" : "remap");

	t_section("mapped");
	fd = t_dmabuf(dev.vdev, BAR, r, 2);
	CHECK(fd >= 0);
	if (fd < 0)
		return t_end();
	CHECK_OK(t_mmap_fd(fd, LEN, MAP_SHARED, 0, &v1));
	CHECK_OK(t_mmap_fd(fd, LEN, MAP_SHARED, 0, &v2));
	if (!v1 || !v2)
		return t_end();
	/* Populated in whole runs at mmap time. */
	CHECK(rss_kb(v1, LEN) == (long)(LEN >> 10));
	CHECK(rss_kb(v2, LEN) == (long)(LEN >> 10));
	dev_rss = rss_kb(t_bar_ptr(dev.pci, BAR, 0), 0);
	CHECK(dev_rss >= (long)(BAR_SIZE >> 10));

	t_section("revoked");
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK(rss_kb(v1, LEN) == 0);
	CHECK(rss_kb(v2, LEN) == 0);
	CHECK(t_faults_everywhere(v1, LEN));
	CHECK(t_faults_everywhere(v2, LEN));
	/* A faulting access maps nothing in. */
	CHECK(rss_kb(v1, LEN) == 0);
	/* The device's own view of its memory is not zapped. */
	CHECK(rss_kb(t_bar_ptr(dev.pci, BAR, 0), 0) == dev_rss);

	t_section("un-revoked: nothing populated");
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(rss_kb(v1, LEN) == 0);
	CHECK(rss_kb(v2, LEN) == 0);

	t_section("revoked again, untouched");
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK(rss_kb(v1, LEN) == 0);
	CHECK(t_faults_everywhere(v1, LEN));
	CHECK_OK(t_mem_enable(dev.vdev, true));

	t_section("first touch after un-revoke");
	CHECK(!t_faults_anywhere(v1, LEN));
	CHECK(same_as_bar(v1));
	CHECK(rss_kb(v1, LEN) == (long)(LEN >> 10));
	CHECK(rss_kb(v2, LEN) == 0);
	CHECK(same_as_bar(v2));

	CHECK_OK(p2p_munmap(v1, LEN));
	CHECK_OK(p2p_munmap(v2, LEN));
	p2p_close(fd);
	t_dev_destroy(&dev);
	return t_end();
}
