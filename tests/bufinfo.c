// SPDX-License-Identifier: MIT
/*
 * p2p_dmabuf_bufinfo(): the text of /sys/kernel/debug/dma_buf/bufinfo in
 * the format of the kernel's dma_buf_debug_show() (v6.19), for every live
 * dma-buf, and DMA_BUF_SET_NAME, whose name it shows:
 *
 *   - the header lines, one line per buffer "size flags mode count exp_name
 *     ino name" with the kernel's field widths, newest first, then
 *     "\tAttached Devices:", one "\t<importer>" line each, "Total N devices
 *     attached", and at the end "Total N objects, M bytes";
 *   - count follows the file's references (fds, mappings), ino is what
 *     fstat(2) says for the fds, flags/mode follow the open mode;
 *   - snprintf() semantics: the full length is returned, a short buffer is
 *     truncated and NUL-terminated, NULL/0 only measures;
 *   - a released buffer disappears;
 *   - DMA_BUF_SET_NAME_A/B: "<none>" until set, -EBUSY while attached,
 *     -EINVAL for 32 characters or more, -EFAULT for a bad pointer; other
 *     dma-buf ioctls are -ENOTTY.
 */
#define _GNU_SOURCE
#include <linux/dma-buf.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ul
#define BAR2_SIZE (256 * 1024ul)

static struct t_dev dev;

static char *bufinfo(void)
{
	ssize_t n = p2p_dmabuf_bufinfo(NULL, 0);
	char *s;

	CHECK(n > 0);
	s = calloc(1, (size_t)n + 1);
	if (s)
		CHECK(p2p_dmabuf_bufinfo(s, (size_t)n + 1) == n && strlen(s) == (size_t)n);
	return s;
}

/* The line of the buffer with inode @ino, copied into @line; false if absent. */
static bool find_line(const char *text, unsigned long ino, char *line, size_t len)
{
	char want[32];
	const char *p;

	snprintf(want, sizeof(want), "\t%08lu\t", ino);
	p = strstr(text, want);
	if (!p)
		return false;
	while (p > text && p[-1] != '\n')
		p--;
	snprintf(line, len, "%.*s", (int)(strchr(p, '\n') - p), p);
	return true;
}

static unsigned long ino_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : (unsigned long)st.st_ino;
}

int main(void)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = 4 * PAGE };
	struct t_importer imp = { 0 };
	struct p2p_dmabuf *buf;
	char line[256], want[256], small[16], *text;
	unsigned long ino_a, ino_b;
	int a, b, d;
	void *va;

	t_begin();
	t_dev_create_or_skip(&dev, "bufinfo", BAR2_SIZE, 32);

	t_section("format");
	a = p2p_vfio_device_get_dmabuf(dev.vdev, 2, &r, 1, O_RDWR | O_CLOEXEC);
	r.length = PAGE;
	b = p2p_vfio_device_get_dmabuf(dev.vdev, 2, &r, 1, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	CHECK(a >= 0 && b >= 0);
	ino_a = ino_of(a);
	ino_b = ino_of(b);
	text = bufinfo();
	if (text) {
		CHECK(!strncmp(text, "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   "
				     "\texp_name\tino     \tname\n", 75));
		CHECK(find_line(text, ino_a, line, sizeof(line)));
		snprintf(want, sizeof(want), "%08lu\t%08x\t%08x\t%08d\tbufinfo/bar2\t%08lu\t<none>",
			 4 * PAGE, O_RDWR, 0x80007, 1, ino_a);
		CHECK(!strcmp(line, want));
		CHECK(find_line(text, ino_b, line, sizeof(line)));
		snprintf(want, sizeof(want), "%08lu\t%08x\t%08x\t%08d\tbufinfo/bar2\t%08lu\t<none>",
			 PAGE, O_RDONLY | O_NONBLOCK, 0x80005, 1, ino_b);
		CHECK(!strcmp(line, want));
		/* Newest first, each with its (empty) attachment list. */
		CHECK(strstr(text, "\tAttached Devices:\nTotal 0 devices attached\n\n"));
		CHECK(strstr(text, "\n\nTotal "));
		CHECK(strstr(text, "objects, ") && text[strlen(text) - 1] == '\n');
		{
			char *pa, *pb;

			snprintf(want, sizeof(want), "\t%08lu\t", ino_a);
			pa = strstr(text, want);
			snprintf(want, sizeof(want), "\t%08lu\t", ino_b);
			pb = strstr(text, want);
			CHECK(pa && pb && pb < pa);
		}
		free(text);
	}

	t_section("totals");
	{
		/* Only our two buffers are alive: the totals are exact. */
		text = bufinfo();
		snprintf(want, sizeof(want), "\nTotal 2 objects, %lu bytes\n", 5 * PAGE);
		CHECK(text && strlen(text) > strlen(want) &&
		      !strcmp(text + strlen(text) - strlen(want), want));
		free(text);
	}

	t_section("snprintf semantics");
	{
		ssize_t n = p2p_dmabuf_bufinfo(NULL, 0);

		memset(small, 'x', sizeof(small));
		CHECK(p2p_dmabuf_bufinfo(small, sizeof(small)) == n);
		CHECK(small[sizeof(small) - 1] == 0 && !strcmp(small, "\nDma-buf Object"));
		CHECK(p2p_dmabuf_bufinfo(small, 0) == n && small[0] == '\n');
	}

	t_section("count, name, attachments");
	d = p2p_fd_dup(a);
	CHECK_OK(p2p_fd_mmap(a, NULL, PAGE, PROT_READ, MAP_SHARED, 0, &va));
	CHECK_ERR(p2p_fd_ioctl(a, DMA_BUF_SET_NAME_A, "frame-0"), 0);
	CHECK_ERR(p2p_fd_ioctl(b, DMA_BUF_SET_NAME_B, "0123456789012345678901234567890"), 0);
	CHECK_ERR(p2p_fd_ioctl(b, DMA_BUF_SET_NAME, "01234567890123456789012345678901"), -EINVAL);
	CHECK_ERR(p2p_fd_ioctl(b, DMA_BUF_SET_NAME, (void *)8), -EFAULT);
	CHECK_ERR(p2p_fd_ioctl(b, DMA_BUF_IOCTL_SYNC, (void *)8), -EFAULT);
	CHECK_ERR(p2p_fd_ioctl(b, _IOW('b', 9, int), NULL), -ENOTTY);
	CHECK_OK(p2p_dmabuf_get(a, &buf));
	CHECK_OK(t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true));
	CHECK_ERR(p2p_fd_ioctl(a, DMA_BUF_SET_NAME_A, "frame-1"), -EBUSY);
	text = bufinfo();
	if (text) {
		/* count: two fds, the mapping, the attachment and our get. */
		CHECK(find_line(text, ino_a, line, sizeof(line)));
		snprintf(want, sizeof(want), "%08lu\t%08x\t%08x\t%08d\tbufinfo/bar2\t%08lu\tframe-0",
			 4 * PAGE, O_RDWR, 0x80007, 5, ino_a);
		CHECK(!strcmp(line, want));
		CHECK(strstr(text, "frame-0\n\tAttached Devices:\n\ttest\nTotal 1 devices "
				   "attached\n\n"));
		CHECK(find_line(text, ino_b, line, sizeof(line)) &&
		      strstr(line, "\t0123456789012345678901234567890"));
		free(text);
	}
	t_importer_detach(&imp);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_munmap(va, PAGE));
	CHECK_OK(p2p_close(d));

	t_section("released buffers disappear");
	CHECK_OK(p2p_close(b));
	text = bufinfo();
	CHECK(text && !find_line(text, ino_b, line, sizeof(line)) &&
	      find_line(text, ino_a, line, sizeof(line)));
	free(text);
	CHECK_OK(p2p_close(a));
	text = bufinfo();
	CHECK(text && !strcmp(text, "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   "
				    "\texp_name\tino     \tname\n\nTotal 0 objects, 0 bytes\n"));
	free(text);

	t_dev_destroy(&dev);
	return t_end();
}
