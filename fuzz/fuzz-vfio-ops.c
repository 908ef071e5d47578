// SPDX-License-Identifier: MIT
/*
 * fuzz-vfio-ops: an op-stream fuzzer over one open VFIO function.
 *
 * The input is decoded as a sequence of operations (first byte of each
 * selects it): region reads and writes at any index, offset and size
 * (p2p_vfio_device_pread/pwrite), config-space writes (COMMAND.MEM, PM
 * power state, DEVCTL FLR, anything else), dma-buf export, BAR mmap,
 * dma-buf mmap, munmap, loads and stores through mappings, dynamic
 * importer attach/map/detach, IOAS import, VFIO_DEVICE_RESET, hot reset,
 * low power and dma-buf revoke features, and closing dma-buf fds.
 *
 * Oracles: a shadow copy of every BAR is the model.  Region reads return
 * exactly the model's bytes (or the kernel's errno for the access: EINVAL
 * past the end or on an empty BAR, EIO with memory disabled, EFAULT
 * outside config space), and cut accesses short at the BAR's end; every
 * CPU mapping whose dma-buf is not revoked shows exactly the model's bytes
 * after every op; every dma-buf obeys the revocation invariant; an
 * importer can map a buffer exactly when it is not revoked; IOAS
 * invariants hold after each import.  Teardown per input, fd count checked.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "iommu/ioas_debug.h"
#include "fuzz.h"

#define MAX_OPS 128
#define MAX_BUFS 16
#define MAX_MAPS 8
#define IO_MAX 9000

struct mapping {
	uint8_t *va;
	size_t len;
};

struct state {
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	uint8_t *shadow[6]; /* the model of each BAR */
	uint64_t bar_size[6];
	int bufs[MAX_BUFS];
	unsigned int nbufs;
	struct mapping maps[MAX_MAPS];
	unsigned int nmaps;
};

static uint8_t iobuf[IO_MAX];

int fz_setup(void)
{
	return 0;
}

static uint64_t pick_offset(struct fin *in)
{
	uint8_t k = fin_u8(in);

	switch (k % 4) {
	case 0:
		return fin_u16(in);
	case 1:
		return (uint64_t)fin_u8(in) << 12;
	case 2:
		return fin_u32(in);
	default:
		return fin_u64(in) & P2P_VFIO_OFFSET_MASK;
	}
}

/* The BAR a dma-buf range lives in, or -1. */
static int bar_of_mem(struct state *s, const struct p2p_mem *mem)
{
	for (int b = 0; b < 6; b++)
		if (s->bar_size[b] && p2p_pci_dev_bar_mem(s->pci, b) == mem)
			return b;
	return -1;
}

/* Every mapping whose dma-buf is not revoked shows the model's bytes. */
static void check_mappings(struct state *s)
{
	for (unsigned int i = 0; i < s->nmaps; i++) {
		const struct p2p_phys_range *r;
		struct p2p_dmabuf *buf;
		uint64_t off, pos = 0;
		unsigned int nr;

		FZ_ASSERT(p2p_va_lookup(s->maps[i].va, &buf, &off, NULL) == 0,
			  "a live mapping is not known to p2p_va_lookup");
		if (p2p_dmabuf_status(buf) != P2P_DMABUF_OK) {
			p2p_dmabuf_put(buf);
			continue;
		}
		r = p2p_dmabuf_ranges(buf, &nr);
		for (unsigned int k = 0; k < nr; k++) {
			int bar = bar_of_mem(s, r[k].mem);
			uint64_t lo = pos > off ? pos : off;
			uint64_t hi = pos + r[k].length;

			if (hi > off + s->maps[i].len)
				hi = off + s->maps[i].len;
			FZ_ASSERT(bar >= 0, "a VFIO dma-buf range outside the function's BARs");
			if (lo < hi)
				FZ_ASSERT(!memcmp(s->maps[i].va + (lo - off),
						  s->shadow[bar] + r[k].offset + (lo - pos), hi - lo),
					  "mapping %u differs from BAR%d at dma-buf offset %llu", i, bar,
					  (unsigned long long)lo);
			pos += r[k].length;
		}
		p2p_dmabuf_put(buf);
	}
}

static void check_all(struct state *s)
{
	for (unsigned int i = 0; i < s->nbufs; i++)
		fz_check_vfio_dmabuf(s->bufs[i], s->pci);
	check_mappings(s);
	if (s->ioas) {
		const char *why = NULL;

		FZ_ASSERT(!ioas_check_invariants(s->ioas, &why), "%s", why);
	}
}

static void op_region(struct state *s, struct fin *in, bool write)
{
	uint64_t index = fin_u8(in) % 9, off = pick_offset(in);
	size_t len = fin_u16(in) % IO_MAX;
	uint64_t expect_len = 0;
	long expect;
	ssize_t ret;

	if (write)
		fin_bytes(in, iobuf, len);
	if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
		expect = off >= P2P_PCI_CFG_SIZE || len > P2P_PCI_CFG_SIZE - off ? -EFAULT
										   : (long)len;
	} else if (index >= VFIO_PCI_ROM_REGION_INDEX || !s->bar_size[index] ||
		   off >= s->bar_size[index]) {
		expect = -EINVAL;
	} else if (index != VFIO_PCI_BAR4_REGION_INDEX && !p2p_pci_dev_memory_enabled(s->pci)) {
		expect = -EIO;
	} else {
		expect_len = len < s->bar_size[index] - off ? len : s->bar_size[index] - off;
		expect = (long)expect_len;
	}
	if (write)
		ret = p2p_vfio_device_pwrite(s->vdev, iobuf, len, P2P_VFIO_REGION_OFFSET(index) | off);
	else
		ret = p2p_vfio_device_pread(s->vdev, iobuf, len, P2P_VFIO_REGION_OFFSET(index) | off);
	FZ_ASSERT(ret == expect, "region %llu %s at %#llx, %zu bytes: %zd, want %ld",
		  (unsigned long long)index, write ? "write" : "read", (unsigned long long)off,
		  len, ret, expect);
	if (index >= VFIO_PCI_ROM_REGION_INDEX || ret <= 0)
		return;
	if (write)
		memcpy(s->shadow[index] + off, iobuf, expect_len);
	else
		FZ_ASSERT(!memcmp(s->shadow[index] + off, iobuf, expect_len),
			  "region %llu read at %#llx differs from what was written",
			  (unsigned long long)index, (unsigned long long)off);
}

static void op_config(struct state *s, struct fin *in)
{
	static const unsigned int hot[] = { 0x04, 0x04, 0x05, P2P_PCI_PM_CTRL, P2P_PCI_PM_CTRL,
					    P2P_PCI_EXP_DEVCTL, P2P_PCI_EXP_DEVCTL + 1 };
	uint8_t k = fin_u8(in);
	unsigned int off, size = 1u << (k % 3);
	uint32_t val = fin_u32(in);

	if ((k >> 2) % 4)
		off = hot[(k >> 4) % (sizeof(hot) / sizeof(hot[0]))];
	else
		off = fin_u16(in) % (P2P_PCI_CFG_SIZE + 8);
	if ((k >> 6) & 1) {
		/* As a region write: any size, any alignment. */
		size_t len = (k >> 7) ? size + (val & 3) : size;

		memcpy(iobuf, &val, sizeof(val));
		memset(iobuf + 4, 0, 4);
		(void)p2p_vfio_device_pwrite(s->vdev, iobuf, len,
					     P2P_VFIO_REGION_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) |
						     off);
	} else {
		int ret = p2p_vfio_config_write(s->vdev, off & ~(size - 1), size, val);

		FZ_ASSERT(ret == 0 || ret == -EFAULT, "config write: %d", ret);
	}
}

static void add_buf(struct state *s, int fd)
{
	if (s->nbufs < MAX_BUFS)
		s->bufs[s->nbufs++] = fd;
	else
		p2p_close(fd);
}

static void op_export(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	struct vfio_region_dma_range r[3];
	uint32_t nr = 1 + k % 3, bar = (k >> 2) % 6;
	int fd;

	for (uint32_t i = 0; i < nr; i++) {
		r[i].offset = (uint64_t)(fin_u8(in) % 20) << 12;
		r[i].length = (uint64_t)(fin_u8(in) % 20) << 12;
		if (k & 0x80)
			r[i].offset |= fin_u8(in) & 0x11; /* misaligned now and then */
	}
	fd = p2p_vfio_device_get_dmabuf(s->vdev, bar, r, nr, O_CLOEXEC | O_RDWR);
	if (fd >= 0) {
		uint64_t total = 0;

		for (uint32_t i = 0; i < nr; i++) {
			FZ_ASSERT(r[i].length && r[i].offset + r[i].length <= s->bar_size[bar] &&
					  !(r[i].offset & 0xfff),
				  "exported a bad range %#llx+%#llx of BAR%u",
				  (unsigned long long)r[i].offset, (unsigned long long)r[i].length,
				  bar);
			total += r[i].length;
		}
		(void)total;
		add_buf(s, fd);
	}
}

static void add_map(struct state *s, void *va, size_t len)
{
	if (s->nmaps < MAX_MAPS) {
		s->maps[s->nmaps].va = va;
		s->maps[s->nmaps++].len = len;
	} else {
		FZ_ASSERT(p2p_munmap(va, len) == 0, "p2p_munmap of a fresh mapping");
	}
}

static void op_bar_mmap(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	uint64_t index = k % 7, off = (uint64_t)(fin_u8(in) % 20) << 12;
	size_t len = (size_t)(fin_u8(in) % 20) << 12;
	void *va;
	int ret;

	if (k & 0x80)
		len += fin_u8(in); /* rounded up to pages */
	ret = p2p_vfio_device_mmap(s->vdev, NULL, len, PROT_READ | PROT_WRITE,
				   (k & 0x40) ? MAP_PRIVATE : MAP_SHARED,
				   P2P_VFIO_REGION_OFFSET(index) | off, &va);
	if (!ret)
		add_map(s, va, (len + 4095) & ~(size_t)4095);
}

static void op_dmabuf_mmap(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	uint64_t off = (uint64_t)(fin_u8(in) % 8) << 12;
	size_t len = (size_t)(fin_u8(in) % 16) << 12;
	struct p2p_dmabuf *buf;
	void *va;

	if (!s->nbufs || p2p_dmabuf_get(s->bufs[k % s->nbufs], &buf))
		return;
	if (!p2p_dmabuf_mmap(buf, NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, off, &va))
		add_map(s, va, len);
	p2p_dmabuf_put(buf);
}

static void op_munmap(struct state *s, struct fin *in)
{
	unsigned int i;

	if (!s->nmaps)
		return;
	i = fin_u8(in) % s->nmaps;
	FZ_ASSERT(p2p_munmap(s->maps[i].va, s->maps[i].len) == 0, "p2p_munmap of mapping %u", i);
	s->maps[i] = s->maps[--s->nmaps];
}

/* A store through a mapping that is not revoked; the model follows. */
static void op_store(struct state *s, struct fin *in)
{
	const struct p2p_phys_range *r;
	struct p2p_dmabuf *buf;
	uint64_t off, at, pos = 0;
	unsigned int i, nr;
	uint8_t v;

	if (!s->nmaps)
		return;
	i = fin_u8(in) % s->nmaps;
	at = fin_u16(in) % s->maps[i].len;
	v = fin_u8(in);
	if (p2p_va_lookup(s->maps[i].va, &buf, &off, NULL))
		abort();
	if (p2p_dmabuf_status(buf) == P2P_DMABUF_OK) {
		s->maps[i].va[at] = v;
		r = p2p_dmabuf_ranges(buf, &nr);
		for (unsigned int k = 0; k < nr; pos += r[k].length, k++)
			if (off + at >= pos && off + at < pos + r[k].length)
				s->shadow[bar_of_mem(s, r[k].mem)][r[k].offset + (off + at - pos)] = v;
	}
	p2p_dmabuf_put(buf);
}

static void importer_invalidate(struct p2p_attachment *a)
{
	struct p2p_sgt **sgt = p2p_attachment_importer_priv(a);

	if (*sgt) {
		p2p_attachment_unmap(a, *sgt);
		*sgt = NULL;
	}
}

static const struct p2p_dmabuf_importer_ops importer_ops = {
	.invalidate_mappings = importer_invalidate,
};

static void op_attach(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	struct p2p_sgt *sgt = NULL;
	struct p2p_attach_info info = {
		.argsz = sizeof(info),
		.flags = (k & 0x40) ? 0 : P2P_ATTACH_PEER2PEER,
		.importer_ops = (k & 0x80) ? NULL : &importer_ops,
		.importer_priv = &sgt,
		.name = "fuzz",
	};
	struct p2p_attachment *a;
	struct p2p_dmabuf *buf;
	enum p2p_dmabuf_status st;
	int ret;

	if (!s->nbufs || p2p_dmabuf_get(s->bufs[k % s->nbufs], &buf))
		return;
	st = p2p_dmabuf_status(buf);
	ret = p2p_dmabuf_attach(buf, &info, &a);
	if (!ret) {
		FZ_ASSERT(!(k & 0xc0), "a VFIO dma-buf accepted a non-P2P or static importer");
		p2p_dmabuf_resv_lock(buf);
		ret = p2p_attachment_map(a, &sgt);
		FZ_ASSERT((ret == 0) == (p2p_dmabuf_status(buf) == P2P_DMABUF_OK),
			  "map gave %d with status %d", ret, p2p_dmabuf_status(buf));
		if (!ret) {
			unsigned int nr;

			p2p_dmabuf_ranges(buf, &nr);
			FZ_ASSERT(sgt->nents == nr, "sgt of %u entries for %u ranges", sgt->nents, nr);
			p2p_attachment_unmap(a, sgt);
		}
		p2p_dmabuf_resv_unlock(buf);
		p2p_dmabuf_detach(a);
	} else if (!(k & 0xc0)) {
		FZ_ASSERT(st != P2P_DMABUF_OK || ret == -ENODEV,
			  "a P2P revocable importer was refused (%d) by a live dma-buf", ret);
	}
	p2p_dmabuf_put(buf);
}

static void op_ioas(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	uint64_t iova = (uint64_t)(fin_u8(in) % 16) << 12;
	uint64_t start = (uint64_t)(fin_u8(in) % 4) << 12, len = (uint64_t)(fin_u8(in) % 8) << 12;
	uint32_t flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

	if (!s->ioas) {
		uint32_t id;

		if (p2p_iommufd_open(&s->ictx) || p2p_ioas_alloc(s->ictx, &id, &s->ioas))
			abort();
	}
	if (k & 1) {
		(void)p2p_ioas_unmap(s->ioas, iova, len, NULL);
		return;
	}
	if (!s->nbufs)
		return;
	if (k & 2)
		flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
	if (k & 4)
		flags |= P2P_IOAS_MAP_EXTENDED;
	if (!p2p_ioas_map_file(s->ioas, s->bufs[(k >> 3) % s->nbufs], start, len, &iova, flags)) {
		struct p2p_dma_seg seg;
		int ret = p2p_ioas_dma_begin(s->ioas, iova, 1, P2P_DMA_READ, &seg);

		FZ_ASSERT(ret == 0, "a fresh dma-buf area does not translate: %d", ret);
		p2p_ioas_dma_end(&seg);
	}
}

static void op_reset(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	int32_t group = (k & 4) ? 1 : 7;

	switch (k % 3) {
	case 0:
		FZ_ASSERT(p2p_vfio_device_reset(s->vdev) == 0, "VFIO_DEVICE_RESET failed");
		break;
	case 1:
		(void)p2p_vfio_device_hot_reset(s->vdev, &group, (k >> 3) & 1);
		break;
	default:
		(void)p2p_vfio_config_write(s->vdev, P2P_PCI_EXP_DEVCTL, 2, P2P_PCI_EXP_DEVCTL_BCR_FLR);
		break;
	}
}

static void op_feature(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	struct vfio_device_feature f = { .argsz = sizeof(f) };
	uint32_t a[8] = { 0 }; /* the feature header, then the payload */

	switch (k % 4) {
	case 0:
	case 1:
		f.flags = VFIO_DEVICE_FEATURE_SET | (k % 4 ? VFIO_DEVICE_FEATURE_LOW_POWER_EXIT
							     : VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY);
		memcpy(a, &f, sizeof(f));
		break;
	default:
		if (!s->nbufs)
			return;
		f.argsz = sizeof(f) + 8;
		f.flags = VFIO_DEVICE_FEATURE_SET | (k % 4 == 2 ? VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE
								 : VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR);
		memcpy(a, &f, sizeof(f));
		a[sizeof(f) / 4] = (uint32_t)s->bufs[(k >> 2) % s->nbufs];
		a[sizeof(f) / 4 + 1] = k >> 7;
		break;
	}
	(void)p2p_vfio_device_ioctl(s->vdev, VFIO_DEVICE_FEATURE, a);
}

static void op_close(struct state *s, struct fin *in)
{
	unsigned int i;

	if (!s->nbufs)
		return;
	i = fin_u8(in) % s->nbufs;
	FZ_ASSERT(p2p_close(s->bufs[i]) == 0, "p2p_close of a handed-out dma-buf");
	s->bufs[i] = s->bufs[--s->nbufs];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin in = { data, size };
	struct state s = { 0 };

	int fds = fz_fds_begin();

	if (fz_dev_create("0000:03:00.0", NULL, 3, &s.pci, &s.vdev))
		abort();
	s.bar_size[0] = FZ_BAR0_SIZE;
	s.bar_size[2] = FZ_BAR2_SIZE;
	s.bar_size[4] = FZ_BAR4_SIZE;
	for (int b = 0; b < 6; b++) {
		if (!s.bar_size[b])
			continue;
		s.shadow[b] = malloc(s.bar_size[b]);
		if (!s.shadow[b])
			abort();
		for (uint64_t i = 0; i < s.bar_size[b]; i++)
			s.shadow[b][i] = fz_pattern(i, (uint8_t)b);
		if (p2p_vfio_device_pwrite(s.vdev, s.shadow[b], s.bar_size[b],
					   P2P_VFIO_REGION_OFFSET(b)) != (ssize_t)s.bar_size[b])
			abort();
	}

	for (int i = 0; i < MAX_OPS && !fin_empty(&in); i++) {
		switch (fin_u8(&in) % 14) {
		case 0: op_region(&s, &in, false); break;
		case 1: op_region(&s, &in, true); break;
		case 2: op_config(&s, &in); break;
		case 3: op_export(&s, &in); break;
		case 4: op_bar_mmap(&s, &in); break;
		case 5: op_dmabuf_mmap(&s, &in); break;
		case 6: op_munmap(&s, &in); break;
		case 7: op_store(&s, &in); break;
		case 8: op_attach(&s, &in); break;
		case 9: op_reset(&s, &in); break;
		case 10: op_feature(&s, &in); break;
		case 11: op_close(&s, &in); break;
		case 12: op_ioas(&s, &in); break;
		default: op_config(&s, &in); break;
		}
		check_all(&s);
	}

	while (s.nmaps)
		op_munmap(&s, &(struct fin){ 0 });
	while (s.nbufs)
		op_close(&s, &(struct fin){ 0 });
	if (s.ioas) {
		p2p_ioas_put(s.ioas);
		p2p_iommufd_close(s.ictx);
	}
	p2p_vfio_device_close(s.vdev);
	p2p_pci_dev_put(s.pci);
	for (int b = 0; b < 6; b++)
		free(s.shadow[b]);
	fz_fds_end(fds);
	return 0;
}
