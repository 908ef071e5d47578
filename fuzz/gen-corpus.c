// SPDX-License-Identifier: MIT
/*
 * fuzz-gen-corpus: write the seed inputs of every fuzz target.
 *
 *	fuzz-gen-corpus <corpus dir>	writes <dir>/<target>/seed-<name>
 *
 * Each seed is a short, meaningful operation sequence in the encoding its
 * target decodes (see the comment at the top of each fuzz-*.c): a working
 * export, a map and an access, a device programmed to copy, a dma-buf
 * slot doing I/O, so fuzzing starts from deep states.  The committed
 * corpus (fuzz/corpus/) was made by this program; crash reproducers are
 * added next to the seeds as crash-<what>.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <p2pbuf/p2pbuf.h>

struct seed {
	uint8_t b[4096];
	size_t n;
};

static void put(struct seed *s, const void *p, size_t n)
{
	if (s->n + n > sizeof(s->b))
		abort();
	if (n)
		memcpy(s->b + s->n, p, n);
	s->n += n;
}
static void u8(struct seed *s, uint8_t v) { put(s, &v, 1); }
static void u16(struct seed *s, uint16_t v) { put(s, &v, 2); }
static void u32(struct seed *s, uint32_t v) { put(s, &v, 4); }
static void u64(struct seed *s, uint64_t v) { put(s, &v, 8); }

static const char *root;

static void save(const char *target, const char *name, const struct seed *s)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, target);
	if (mkdir(path, 0755) && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s/seed-%s", root, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f)) {
		perror(path);
		exit(1);
	}
}

/* ---- fuzz-vfio-ioctl: u8 selector, u16 length, payload ------------------ */

#define SEL_FEATURE_RAW 15 /* requests[15 % 8] = FEATURE, flags not steered */

static void ioctl_call(struct seed *s, uint8_t sel, const void *p, uint16_t len)
{
	u8(s, sel);
	u16(s, len);
	put(s, p, len);
}

static void feature(struct seed *s, uint32_t flags, const void *payload, uint32_t plen)
{
	uint8_t buf[256];
	struct vfio_device_feature f = { .argsz = (uint32_t)sizeof(f) + plen, .flags = flags };

	memcpy(buf, &f, sizeof(f));
	if (plen)
		memcpy(buf + sizeof(f), payload, plen);
	ioctl_call(s, SEL_FEATURE_RAW, buf, (uint16_t)(sizeof(f) + plen));
}

static void dmabuf_feature(struct seed *s, uint32_t bar, uint32_t nr, const uint64_t *r)
{
	uint8_t p[16 + 4 * 16];
	struct vfio_device_feature_dma_buf h = { .region_index = bar, .open_flags = O_CLOEXEC | O_RDWR,
						 .nr_ranges = nr };

	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), r, nr * 16);
	feature(s, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, p, 16 + nr * 16);
}

static void gen_vfio_ioctl(void)
{
	struct seed s = { .n = 0 };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = 2 };
	struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_MSI_IRQ_INDEX };
	uint8_t irq[sizeof(struct vfio_irq_set) + 8];
	struct vfio_irq_set is = { .argsz = sizeof(irq), .count = 2, .index = VFIO_PCI_MSI_IRQ_INDEX,
				   .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER };
	int32_t efds[2] = { 0, 1 }; /* the target's two eventfds */
	uint8_t hr[sizeof(struct vfio_pci_hot_reset) + 8];
	struct vfio_pci_hot_reset h = { .argsz = sizeof(hr), .count = 2 };
	int32_t groups[2] = { 1, 2 };
	uint64_t one[2] = { 0, 16384 }, two[4] = { 0, 8192, 32768, 16384 };
	int32_t revoke[1] = { 3 }; /* table: 2 eventfds, a memfd, then the first dma-buf */
	int32_t memattr[2] = { 3, 1 };

	ioctl_call(&s, 0, &info, sizeof(info));
	ioctl_call(&s, 1, &ri, sizeof(ri));
	ioctl_call(&s, 2, &ii, sizeof(ii));
	save("vfio-ioctl", "info", &s);

	s.n = 0;
	memcpy(irq, &is, sizeof(is));
	memcpy(irq + sizeof(is), efds, sizeof(efds));
	ioctl_call(&s, 3, irq, sizeof(irq));
	ioctl_call(&s, 4, NULL, 0);
	save("vfio-ioctl", "irqs-reset", &s);

	s.n = 0;
	memcpy(hr, &h, sizeof(h));
	memcpy(hr + sizeof(h), groups, sizeof(groups));
	{
		uint32_t hri[4] = { 64 }; /* argsz 64: room for the devices */

		ioctl_call(&s, 6, hri, sizeof(hri));
	}
	ioctl_call(&s, 5, hr, sizeof(hr));
	save("vfio-ioctl", "hot-reset", &s);

	s.n = 0;
	dmabuf_feature(&s, 2, 1, one);
	dmabuf_feature(&s, 2, 2, two);
	feature(&s, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, memattr, 8);
	feature(&s, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, NULL, 0);
	feature(&s, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, NULL, 0);
	feature(&s, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE, revoke, 4);
	save("vfio-ioctl", "dmabuf-features", &s);

	s.n = 0;
	feature(&s, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
		NULL, 0);
	{
		uint32_t f[4] = { 16, 2 }; /* steered: flags 2 % 5 picks feature 11 */

		ioctl_call(&s, 7, f, sizeof(f));
	}
	save("vfio-ioctl", "feature-probe", &s);
}

/* ---- fuzz-vfio-ops: u8 op, then the op's fields ------------------------- */

enum { V_READ, V_WRITE, V_CONFIG, V_EXPORT, V_BARMAP, V_BUFMAP, V_MUNMAP, V_STORE, V_ATTACH,
       V_RESET, V_FEATURE, V_CLOSE, V_IOAS };

static void v_region(struct seed *s, bool write, uint8_t index, uint16_t off, uint16_t len)
{
	u8(s, write ? V_WRITE : V_READ);
	u8(s, index);
	u8(s, 0); /* offset as u16 */
	u16(s, off);
	u16(s, len);
	for (uint16_t i = 0; write && i < len; i++)
		u8(s, (uint8_t)(i * 7));
}

static void v_command(struct seed *s, uint32_t val)
{
	u8(s, V_CONFIG);
	u8(s, 4); /* 2 bytes at the hot offset 0x04 (COMMAND) */
	u32(s, val);
}

static void gen_vfio_ops(void)
{
	struct seed s = { .n = 0 };

	v_region(&s, true, 2, 100, 64);
	v_region(&s, false, 2, 64, 256);
	v_region(&s, false, 7, 0, 64);
	v_region(&s, true, 0, 16380, 16);
	save("vfio-ops", "regions", &s);

	s.n = 0;
	u8(&s, V_EXPORT); u8(&s, 9); u8(&s, 0); u8(&s, 4);		/* BAR2 [0, 16K) */
	u8(&s, V_EXPORT); u8(&s, 10); u8(&s, 1); u8(&s, 2); u8(&s, 8); u8(&s, 3);
	u8(&s, V_BARMAP); u8(&s, 2); u8(&s, 1); u8(&s, 3);		/* BAR2 mmap */
	u8(&s, V_BUFMAP); u8(&s, 1); u8(&s, 0); u8(&s, 5);
	u8(&s, V_STORE); u8(&s, 0); u16(&s, 5000); u8(&s, 0x5a);
	v_command(&s, 0x4);						/* MEM off: revoke */
	v_region(&s, false, 2, 0, 16);					/* -EIO */
	u8(&s, V_ATTACH); u8(&s, 0);
	v_command(&s, 0x6);						/* MEM on */
	u8(&s, V_ATTACH); u8(&s, 1);
	u8(&s, V_STORE); u8(&s, 1); u16(&s, 100); u8(&s, 0xa5);
	u8(&s, V_RESET); u8(&s, 0);
	u8(&s, V_RESET); u8(&s, 2);					/* FLR */
	u8(&s, V_FEATURE); u8(&s, 0);					/* low power */
	u8(&s, V_FEATURE); u8(&s, 1);
	u8(&s, V_IOAS); u8(&s, 2); u8(&s, 4); u8(&s, 0); u8(&s, 2);
	u8(&s, V_FEATURE); u8(&s, 2);					/* revoke buf 0 */
	u8(&s, V_MUNMAP); u8(&s, 0);
	u8(&s, V_CLOSE); u8(&s, 0);
	save("vfio-ops", "export-map-revoke", &s);

	s.n = 0;
	u8(&s, V_CONFIG); u8(&s, 0x72); u32(&s, 3);			/* PM_CTRL D3hot, region write */
	u8(&s, V_EXPORT); u8(&s, 9); u8(&s, 0); u8(&s, 4);
	u8(&s, V_CONFIG); u8(&s, 0x32); u32(&s, 0);			/* back to D0 */
	u8(&s, V_RESET); u8(&s, 5);					/* hot reset, group 1 */
	save("vfio-ops", "power-states", &s);
}

/* ---- fuzz-iommufd ------------------------------------------------------ */

enum { I_ALLOC, I_DESTROY, I_MAP, I_MAP_FILE = 4, I_UNMAP = 6, I_COPY, I_RANGES, I_ALLOW,
       I_WRITE, I_READ, I_RAW, I_ATTACH, I_MEM };

#define WIN_OFF 8192u /* pick_va(): window + 0 */

static void i_iova_page(struct seed *s, uint8_t page)
{
	u8(s, 0);
	u8(s, page);
}

static void i_len_pages(struct seed *s, uint8_t pages)
{
	u8(s, 0);
	u8(s, pages);
}

static void gen_iommufd(void)
{
	struct seed s = { .n = 0 };
	const uint8_t rw = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

	/* user map at IOVA 16 pages, 4 pages; write, read, copy, unmap */
	u8(&s, I_MAP); u8(&s, 0); u8(&s, rw | IOMMU_IOAS_MAP_FIXED_IOVA);
	u32(&s, WIN_OFF); u8(&s, 1); i_len_pages(&s, 4); i_iova_page(&s, 16);
	u8(&s, I_WRITE); u8(&s, 0); u8(&s, 1); u8(&s, 16); u16(&s, 0x800); u16(&s, 100);
	for (int i = 0; i < 100; i++)
		u8(&s, (uint8_t)i);
	u8(&s, I_READ); u8(&s, 0); u8(&s, 0); u8(&s, 16); u16(&s, 64);
	u8(&s, I_ALLOC);
	u8(&s, I_COPY); u8(&s, 1); u8(&s, 0); u8(&s, rw); i_len_pages(&s, 2);
	i_iova_page(&s, 0); i_iova_page(&s, 16);
	u8(&s, I_UNMAP); u8(&s, 0); u8(&s, 0);
	save("iommufd", "map-access-copy", &s);

	s.n = 0;
	/* memfd, single-range and multi-range dma-bufs, heap buffer */
	for (uint8_t fd = 0; fd < 4; fd++) {
		u8(&s, I_MAP_FILE); u8(&s, 0); u8(&s, rw); u8(&s, fd);
		i_len_pages(&s, 0); i_len_pages(&s, 2); i_iova_page(&s, 0);
	}
	u8(&s, I_MAP_FILE); u8(&s, 0); u8(&s, rw | IOMMU_IOAS_MAP_FIXED_IOVA); u8(&s, 0);
	u8(&s, 1); u16(&s, 100); u8(&s, 1); u16(&s, 300); u8(&s, 1); u8(&s, 64); u16(&s, 100);
	u8(&s, I_WRITE); u8(&s, 0); u8(&s, 1); u8(&s, 64); u16(&s, 90); u16(&s, 40);
	for (int i = 0; i < 40; i++)
		u8(&s, 0xee);
	u8(&s, I_MEM); u8(&s, 0);
	u8(&s, I_READ); u8(&s, 0); i_iova_page(&s, 0); u16(&s, 16);
	u8(&s, I_MEM); u8(&s, 1);
	u8(&s, I_ATTACH); u8(&s, 0);
	u8(&s, I_RANGES); u8(&s, 0); u8(&s, 4);
	save("iommufd", "map-file", &s);

	s.n = 0;
	u8(&s, I_ALLOW); u8(&s, 0); u8(&s, 2);
	i_iova_page(&s, 1); u8(&s, 0); i_len_pages(&s, 8);
	i_iova_page(&s, 32); u8(&s, 1); i_iova_page(&s, 64);
	u8(&s, I_RANGES); u8(&s, 0); u8(&s, 1);
	u8(&s, I_RANGES); u8(&s, 0); u8(&s, 4);
	u8(&s, I_MAP); u8(&s, 0); u8(&s, rw); u32(&s, WIN_OFF); u8(&s, 1); i_len_pages(&s, 2);
	i_iova_page(&s, 0);
	u8(&s, I_DESTROY); u8(&s, 0);
	save("iommufd", "allow-iovas", &s);

	s.n = 0;
	/* raw: an IOAS_MAP with a size longer than the struct (zero tail) */
	u8(&s, I_RAW); u8(&s, 4); u8(&s, 48);
	u32(&s, 48); u32(&s, rw); u32(&s, 1); u32(&s, 0); u64(&s, 0); u64(&s, 8192);
	u64(&s, 0); u64(&s, 0);
	u32(&s, WIN_OFF); u8(&s, 1);
	save("iommufd", "raw-map", &s);
}

/* ---- fuzz-heap ----------------------------------------------------------- */

static void gen_heap(void)
{
	struct seed s = { .n = 0 };
	struct dma_heap_allocation_data d = { .len = 8192 };

	u8(&s, 0x33); u16(&s, sizeof(d)); put(&s, &d, sizeof(d)); u8(&s, 1); u8(&s, 2); u8(&s, 3);
	d.len = (1u << 20) + (64u << 10) + 4096 + 1;
	u8(&s, 0x33); u16(&s, sizeof(d)); put(&s, &d, sizeof(d)); u8(&s, 0); u8(&s, 0); u8(&s, 7);
	save("heap", "alloc", &s);

	s.n = 0;
	d.len = 4096;
	u8(&s, 0x03); u16(&s, 32); put(&s, &d, sizeof(d)); u64(&s, 0); u8(&s, 4);	/* bigger */
	u8(&s, 0x03); u16(&s, 16); put(&s, &d, 16); u8(&s, 0x0);			/* smaller */
	u8(&s, 0x02); u16(&s, 24); put(&s, &d, sizeof(d)); u8(&s, 1);			/* write only */
	save("heap", "sizes", &s);
}

/* ---- fuzz-devices -------------------------------------------------------- */

enum { D_CE = 0, D_SD = 2, D_FILL = 4, D_REVOKE = 6, D_IRQ, D_RESET, D_QUIESCE };

static void d_reg_iova(struct seed *s, uint8_t op, uint8_t k, uint8_t base, uint16_t off)
{
	u8(s, op); u8(s, k); u8(s, base); u16(s, off);
}

static void d_reg_u8(struct seed *s, uint8_t op, uint8_t k, uint8_t v)
{
	u8(s, op); u8(s, k); u8(s, v);
}

static void gen_devices(void)
{
	struct seed s = { .n = 0 };

	/* copy engine: ring at WIN+0, completions at WIN+0x1000, 4 entries */
	u8(&s, D_IRQ); u8(&s, 0);
	d_reg_iova(&s, D_CE, 0x01, 0, 0);
	u8(&s, D_CE); u8(&s, 0x12); u8(&s, 2);
	d_reg_iova(&s, D_CE, 0x05, 0, 0x1000);
	d_reg_u8(&s, D_CE, 0x28, 1);
	/* descriptor 0: peer BAR -> window + 0x2000, 4 KiB, IRQ */
	u8(&s, D_FILL); u8(&s, 0); u16(&s, 0);
	u8(&s, 2); u16(&s, 0); u8(&s, 0); u16(&s, 0x2000); u16(&s, 4096);
	u64(&s, 1 | (7ull << 32));
	d_reg_u8(&s, D_CE, 0x26, 1);
	u8(&s, D_QUIESCE);
	/* descriptor 1: window -> peer BAR, then revoke the peer while it runs */
	u8(&s, D_FILL); u8(&s, 0); u16(&s, 32);
	u8(&s, 0); u16(&s, 0x2000); u8(&s, 2); u16(&s, 0x100); u16(&s, 8192);
	u64(&s, 8ull << 32);
	d_reg_u8(&s, D_CE, 0x28, 1);
	d_reg_u8(&s, D_CE, 0x26, 2);
	u8(&s, D_REVOKE);
	u8(&s, D_QUIESCE);
	u8(&s, D_REVOKE);
	save("devices", "copy-engine", &s);

	s.n = 0;
	/* storage: SQ at WIN+0x4000, CQ at WIN+0x5000, 4 entries */
	u8(&s, D_IRQ); u8(&s, 1);
	d_reg_iova(&s, D_SD, 0x01, 0, 0x4000);
	d_reg_iova(&s, D_SD, 0x03, 0, 0x5000);
	d_reg_u8(&s, D_SD, 0x14, 2);
	d_reg_u8(&s, D_SD, 0x28, 1);
	/* a READ of one block into the window at +0x8000 (command at SQ[0]) */
	u8(&s, D_FILL); u8(&s, 0x48); u16(&s, 0x4000);
	u8(&s, 0); u16(&s, 0x8000); u8(&s, 0); u16(&s, 0); u16(&s, 0); u64(&s, 0x0101);
	d_reg_u8(&s, D_SD, 0x26, 1);
	u8(&s, D_QUIESCE);
	/* a WRITE from the peer BAR (command at SQ[1]), then a reset */
	u8(&s, D_FILL); u8(&s, 0x40); u16(&s, 0x4020);
	u8(&s, 2); u16(&s, 0); u8(&s, 0); u16(&s, 0); u16(&s, 1); u64(&s, 0x0201);
	d_reg_u8(&s, D_SD, 0x28, 1);
	d_reg_u8(&s, D_SD, 0x26, 2);
	u8(&s, D_RESET); u8(&s, 3);
	u8(&s, D_QUIESCE);
	save("devices", "storage", &s);
}

/* ---- fuzz-uring ---------------------------------------------------------- */

enum { U_REG, U_SQE = 2, U_SUBMIT = 5, U_REVOKE, U_REAP };

static void u_reg_dmabuf(struct seed *s, uint8_t slot, uint8_t buf_fd, uint8_t target_fd)
{
	u8(s, U_REG);
	u8(s, (uint8_t)(slot << 1));	/* one extended descriptor at @slot */
	u8(s, 0x0a); u8(s, 0); u8(s, buf_fd); u8(s, target_fd);	/* DMABUF, size 0 */
	u8(s, 0); u8(s, 0); u8(s, 0); u8(s, 0);			/* second, unused */
}

static void u_sqe(struct seed *s, uint8_t opcode_idx, uint64_t addr, uint32_t len, uint16_t slot,
		  uint64_t off)
{
	struct io_uring_sqe q = { 0 };

	q.opcode = opcode_idx; /* index into the target's allowed list */
	q.fd = 0;	       /* the data file */
	q.off = off;
	q.addr = addr;
	q.len = len;
	q.buf_index = slot;
	q.user_data = 42;
	u8(s, U_SQE);
	put(s, &q, sizeof(q));
}

static void gen_uring(void)
{
	struct seed s = { .n = 0 };

	/* fd table: data file, read-only file, memfd, dma-buf, 2-range dma-buf, heap */
	u_reg_dmabuf(&s, 0, 3, 0);
	u_reg_dmabuf(&s, 1, 4, 0);
	u_reg_dmabuf(&s, 2, 5, 0);
	u_sqe(&s, 2, 0, 8192, 0, 0);		/* WRITE_FIXED from dma-buf */
	u_sqe(&s, 1, 4096, 16384, 1, 8192);	/* READ_FIXED across ranges */
	u_sqe(&s, 1, 0, 4096, 2, 0);		/* heap slot */
	u8(&s, U_REAP);
	u8(&s, U_REVOKE);
	u_sqe(&s, 1, 0, 4096, 0, 0);		/* must not land */
	u8(&s, U_REAP);
	u8(&s, U_REVOKE);
	u_sqe(&s, 1, 0, 4096, 0, 0);
	u8(&s, U_REAP);
	save("uring", "dmabuf-io", &s);

	s.n = 0;
	/* a plain user buffer slot (iovec form) and non-fixed I/O */
	u8(&s, U_REG); u8(&s, 0x24); u32(&s, 0);	/* slot 3, raw flags 0: iovecs */
	u8(&s, 0x21); u32(&s, 0);			/* window + 0, 8 KiB */
	u8(&s, 0);					/* second, unused */
	u_sqe(&s, 5, 0, 4096, 0, 0);		/* READ into the window */
	u_sqe(&s, 1, 0x100, 4096, 3, 0);	/* READ_FIXED on the UADDR slot */
	u_sqe(&s, 7, 0, 0, 0, 0);		/* FSYNC */
	u_sqe(&s, 8, 0, 4096, 0, 0);		/* READV_FIXED */
	u8(&s, U_SUBMIT);
	u8(&s, U_REAP);
	save("uring", "uaddr-io", &s);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
		return 2;
	}
	root = argv[1];
	if (mkdir(root, 0755) && errno != EEXIST) {
		perror(root);
		return 1;
	}
	gen_vfio_ioctl();
	gen_vfio_ops();
	gen_iommufd();
	gen_heap();
	gen_devices();
	gen_uring();
	return 0;
}
