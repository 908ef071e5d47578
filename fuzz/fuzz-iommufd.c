// SPDX-License-Identifier: MIT
/*
 * fuzz-iommufd: sequences of iommufd ioctls through p2p_iommufd_ioctl().
 *
 * Per input: an iommufd context, a VFIO function whose BAR2 is exported as
 * a single-range and a two-range dma-buf, a 64 KiB memfd, a heap dma-buf
 * and a 64 KiB window of process memory with canaries and guard pages
 * around it.  The input is a sequence of operations: IOAS_ALLOC, DESTROY,
 * MAP (user_va always points into the window, or into its canaries or
 * guards), MAP_FILE (fd picked from the target's own), UNMAP, COPY,
 * IOVA_RANGES, ALLOW_IOVAS (range arrays in target memory), raw commands
 * with any size and bytes (pointer and fd fields remapped the same way),
 * emulated accesses (p2p_ioas_access_rw), device domain attach/detach and
 * revocation of the BAR (COMMAND.MEM).
 *
 * Oracles after each op: ioas_check_invariants() on every IOAS (sorted,
 * non-overlapping areas, the IO page table matches them); the window's
 * canaries intact (read-only: a write faults); the window and the memfd changed only by emulated
 * writes, exactly where the area list says those writes land (a model
 * built from ioas_debug_walk()); after a successful MAP, MAP_FILE or COPY
 * the whole range asked for is mapped (and does not wrap).  Teardown per input, fd count checked.
 */
#define _GNU_SOURCE
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "iommu/ioas_debug.h"
#include "fuzz.h"

#define WIN (64u << 10)
#define CANARY 4096u
#define MEMFD_SIZE (64u << 10)
#define MAX_IDS 8
#define MAX_OPS 96
#define RW_MAX 512

struct state {
	struct p2p_iommufd *ctx;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dma_heap *heap;
	uint32_t ids[MAX_IDS]; /* every ID handed out (destroyed ones too) */
	unsigned int nids;
	unsigned int ndev[MAX_IDS]; /* device domains attached, per ids[] slot */
	struct fz_fds fds;
	int memfd, buf1, buf2, heapfd, efd;
	uint8_t *mfd_map; /* our own view of the memfd */
	uint8_t *w_shadow, *m_shadow;
};

static struct fz_win win;
static struct fz_win ranges_win; /* IOVA range arrays */
static bool trace; /* P2P_FUZZ_TRACE: the areas of each IOAS after each op */

int fz_setup(void)
{
	trace = getenv("P2P_FUZZ_TRACE");
	if (fz_win_create(&win, WIN, CANARY) ||
	    fz_win_create(&ranges_win, 16 * sizeof(struct iommu_iova_range), 64))
		return -1;
	/*
	 * The window's canaries are read-only: maps may cover them (READABLE
	 * succeeds, WRITEABLE fails to pin), and nothing may ever write them.
	 */
	return fz_win_ro_canaries(&win);
}

static uint32_t pick_id(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);

	if (k < 0xf0 && s->nids)
		return s->ids[k % s->nids];
	return k & 0xf; /* maybe never allocated */
}

static uint64_t pick_iova(struct fin *in)
{
	uint8_t k = fin_u8(in);

	switch (k % 5) {
	case 0:
		return (uint64_t)(fin_u8(in)) << 12;
	case 1:
		return ((uint64_t)(fin_u8(in)) << 12) + (fin_u16(in) & 0xfff);
	case 2:
		return fin_u64(in);
	case 3:
		return UINT64_MAX - ((uint64_t)(fin_u8(in)) << 12);
	default:
		return (uint64_t)fin_u16(in) << 21;
	}
}

static uint64_t pick_len(struct fin *in)
{
	uint8_t k = fin_u8(in);

	switch (k % 4) {
	case 0:
		return (uint64_t)(fin_u8(in) % 20) << 12;
	case 1:
		return fin_u16(in);
	case 2:
		return fin_u64(in);
	default:
		return ((uint64_t)(fin_u8(in) % 20) << 12) + (fin_u8(in) & 0x3f);
	}
}

/* A user address in the window, its canaries, or just into a guard page. */
static uint64_t pick_va(struct fin *in)
{
	long off = (long)(fin_u32(in) % (WIN + 2 * CANARY + 8192)) - (long)CANARY - 4096;

	if (fin_u8(in) & 1)
		off &= ~4095l;
	return (uint64_t)(uintptr_t)(win.base + off);
}

static void check_all(struct state *s)
{
	for (unsigned int i = 0; i < s->nids; i++) {
		struct p2p_ioas *ioas;
		const char *why = NULL;

		if (p2p_ioas_get(s->ctx, s->ids[i], &ioas))
			continue;
		FZ_ASSERT(!ioas_check_invariants(ioas, &why), "IOAS %u: %s", s->ids[i], why);
		p2p_ioas_put(ioas);
	}
	fz_win_check(&win, "user window");
	fz_win_check(&ranges_win, "IOVA ranges array");
	FZ_ASSERT(!memcmp(win.base, s->w_shadow, WIN), "user window changed outside any write");
	FZ_ASSERT(!memcmp(s->mfd_map, s->m_shadow, MEMFD_SIZE), "memfd changed outside any write");
}

/* --- the emulated-access model ------------------------------------------ */

struct area {
	uint64_t iova, len;
	uint32_t prot;
	uint8_t *host;
	int dmabuf;
};
struct areas {
	struct area a[256];
	unsigned int n;
};

static void walk_cb(void *priv, uint64_t iova, uint64_t length, uint32_t prot, uint8_t *host,
		    int is_dmabuf)
{
	struct areas *as = priv;

	if (as->n < 256)
		as->a[as->n++] = (struct area){ iova, length, prot, host, is_dmabuf };
}

static const struct area *area_at(const struct areas *as, uint64_t iova)
{
	for (unsigned int i = 0; i < as->n; i++)
		if (iova - as->a[i].iova < as->a[i].len)
			return &as->a[i];
	return NULL;
}

static void op_access(struct state *s, struct fin *in, bool write)
{
	uint32_t id = pick_id(s, in);
	uint64_t iova = pick_iova(in), len = fin_u16(in) % RW_MAX;
	uint8_t data[RW_MAX], got[RW_MAX];
	uint8_t *hosts[RW_MAX];
	struct p2p_ioas *ioas;
	static struct areas as;
	uint64_t n = 0;
	size_t m_changes = 0;
	int expect = 0, ret;

	if (write)
		fin_bytes(in, data, len);
	if (p2p_ioas_get(s->ctx, id, &ioas))
		return;
	as.n = 0;
	ioas_debug_walk(ioas, walk_cb, &as);
	/* Where each byte should land; stop at the first that cannot. */
	for (; n < len; n++) {
		const struct area *a = area_at(&as, iova + n);

		if (!a) {
			expect = -ENOENT;
		} else if (a->dmabuf) {
			expect = -EINVAL;
		} else if (!(a->prot & (write ? IOMMU_IOAS_MAP_WRITEABLE
					       : IOMMU_IOAS_MAP_READABLE))) {
			expect = -EPERM;
		} else {
			hosts[n] = a->host + (iova + n - a->iova);
			continue;
		}
		break;
	}
	if (as.n == 256) {
		p2p_ioas_put(ioas);
		return; /* too many areas for the model */
	}
	/* iommufd_access_rw(): a zero length is EINVAL, a range past 2^64 - 1 EOVERFLOW. */
	if (!len)
		expect = -EINVAL;
	else if (iova + (len - 1) < iova)
		expect = -EOVERFLOW;
	ret = p2p_ioas_access_rw(ioas, iova, write ? data : got, len, write);
	p2p_ioas_put(ioas);
	FZ_ASSERT(ret == expect, "access_rw %s at %#llx+%llu: %d, the area list says %d",
		  write ? "write" : "read", (unsigned long long)iova, (unsigned long long)len, ret,
		  expect);
	for (uint64_t i = 0; i < n; i++) {
		uint8_t *h = hosts[i];

		if (write) {
			bool later = false; /* areas sharing pages: the last write wins */

			for (uint64_t j = i + 1; j < n && !later; j++)
				later = hosts[j] == h;
			FZ_ASSERT(later || *h == data[i],
				  "byte %llu of the write is not where the area list says",
				  (unsigned long long)i);
			if (h >= win.base && h < win.base + WIN)
				s->w_shadow[h - win.base] = data[i];
			else
				m_changes++;
		} else if (!expect) {
			FZ_ASSERT(got[i] == *h, "byte %llu of the read is not what the area holds",
				  (unsigned long long)i);
		}
	}
	if (write) {
		/* The memfd is seen through the library's own mapping: count changes. */
		size_t diff = 0;

		for (size_t i = 0; i < MEMFD_SIZE; i++)
			diff += s->mfd_map[i] != s->m_shadow[i];
		FZ_ASSERT(diff <= m_changes, "%zu memfd bytes changed by a write of %zu to it", diff,
			  m_changes);
		memcpy(s->m_shadow, s->mfd_map, MEMFD_SIZE);
	}
}

/*
 * After a successful map or copy: [iova, iova + len) is mapped, all of it,
 * by areas that lie inside it (a range that wraps past 2^64 - 1 cannot be).
 */
static void check_mapped(struct state *s, uint32_t id, uint64_t iova, uint64_t len,
			 const char *what)
{
	static struct areas as;
	struct p2p_ioas *ioas;
	uint64_t covered = 0, last = iova + (len - 1);

	FZ_ASSERT(len && last >= iova, "%s succeeded for a range that wraps: %#llx+%#llx", what,
		  (unsigned long long)iova, (unsigned long long)len);
	if (p2p_ioas_get(s->ctx, id, &ioas))
		return;
	as.n = 0;
	ioas_debug_walk(ioas, walk_cb, &as);
	p2p_ioas_put(ioas);
	if (as.n == 256)
		return;
	for (unsigned int i = 0; i < as.n; i++) {
		uint64_t alast = as.a[i].iova + (as.a[i].len - 1);

		if (as.a[i].iova >= iova && alast <= last)
			covered += as.a[i].len;
	}
	FZ_ASSERT(covered >= len, "%s of %#llx+%#llx: only %#llx bytes mapped there", what,
		  (unsigned long long)iova, (unsigned long long)len, (unsigned long long)covered);
}

static void trace_areas(struct state *s, int op)
{
	fprintf(stderr, "op %d:", op);
	for (unsigned int i = 0; i < s->nids; i++) {
		struct p2p_ioas *ioas;

		if (!p2p_ioas_get(s->ctx, s->ids[i], &ioas)) {
			fprintf(stderr, " ioas %u: %u areas", s->ids[i], p2p_ioas_nr_areas(ioas));
			p2p_ioas_put(ioas);
		}
	}
	fputc('\n', stderr);
}

/* --- ioctls ------------------------------------------------------------- */

static void add_id(struct state *s, uint32_t id)
{
	if (s->nids < MAX_IDS)
		s->ids[s->nids++] = id;
}

static void op_alloc(struct state *s)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };

	if (s->nids < MAX_IDS && !p2p_iommufd_ioctl(s->ctx, IOMMU_IOAS_ALLOC, &cmd))
		add_id(s, cmd.out_ioas_id);
}

static void op_destroy(struct state *s, struct fin *in)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = pick_id(s, in) };

	for (unsigned int i = 0; i < s->nids; i++)
		if (s->ids[i] == cmd.id && s->ndev[i])
			return; /* EBUSY; keep our attach count right */
	(void)p2p_iommufd_ioctl(s->ctx, IOMMU_DESTROY, &cmd);
}

static void op_map(struct state *s, struct fin *in)
{
	struct iommu_ioas_map cmd = { .size = sizeof(cmd) };

	cmd.ioas_id = pick_id(s, in);
	cmd.flags = fin_u8(in);
	cmd.flags = (cmd.flags & 0x80) ? cmd.flags : (cmd.flags & 7);
	cmd.user_va = pick_va(in);
	cmd.length = pick_len(in);
	cmd.iova = pick_iova(in);
	if (!p2p_iommufd_ioctl(s->ctx, IOMMU_IOAS_MAP, &cmd))
		check_mapped(s, cmd.ioas_id, cmd.iova, cmd.length, "IOAS_MAP");
}

static void op_map_file(struct state *s, struct fin *in)
{
	struct iommu_ioas_map_file cmd = { .size = sizeof(cmd) };

	cmd.ioas_id = pick_id(s, in);
	cmd.flags = fin_u8(in);
	cmd.flags = (cmd.flags & 0x80) ? cmd.flags : (cmd.flags & 7);
	cmd.fd = fz_fds_pick(&s->fds, fin_u8(in));
	cmd.start = pick_len(in);
	cmd.length = pick_len(in);
	cmd.iova = pick_iova(in);
	if (!p2p_iommufd_ioctl(s->ctx, IOMMU_IOAS_MAP_FILE, &cmd))
		check_mapped(s, cmd.ioas_id, cmd.iova, cmd.length, "IOAS_MAP_FILE");
}

static void op_unmap(struct state *s, struct fin *in)
{
	struct iommu_ioas_unmap cmd = { .size = sizeof(cmd) };
	uint8_t k;

	cmd.ioas_id = pick_id(s, in);
	k = fin_u8(in);
	if (k % 4 == 0) {
		cmd.iova = 0;
		cmd.length = UINT64_MAX;
	} else {
		cmd.iova = pick_iova(in);
		cmd.length = pick_len(in);
	}
	(void)p2p_iommufd_ioctl(s->ctx, IOMMU_IOAS_UNMAP, &cmd);
}

static void op_copy(struct state *s, struct fin *in)
{
	struct iommu_ioas_copy cmd = { .size = sizeof(cmd) };

	cmd.dst_ioas_id = pick_id(s, in);
	cmd.src_ioas_id = pick_id(s, in);
	cmd.flags = fin_u8(in) & 7;
	cmd.length = pick_len(in);
	cmd.dst_iova = pick_iova(in);
	cmd.src_iova = pick_iova(in);
	if (!p2p_iommufd_ioctl(s->ctx, IOMMU_IOAS_COPY, &cmd))
		check_mapped(s, cmd.dst_ioas_id, cmd.dst_iova, cmd.length, "IOAS_COPY");
}

static void op_ranges(struct state *s, struct fin *in)
{
	struct iommu_ioas_iova_ranges cmd = { .size = sizeof(cmd) };
	int ret;

	cmd.ioas_id = pick_id(s, in);
	cmd.num_iovas = fin_u8(in) % 20; /* the array holds 16: more must not be written */
	cmd.allowed_iovas = (uintptr_t)ranges_win.base;
	if (cmd.num_iovas > 16)
		cmd.num_iovas = 16;
	ret = (int)p2p_iommufd_ioctl(s->ctx, IOMMU_IOAS_IOVA_RANGES, &cmd);
	if (!ret)
		FZ_ASSERT(cmd.out_iova_alignment && !(cmd.out_iova_alignment &
						      (cmd.out_iova_alignment - 1)),
			  "IOVA alignment %llu", (unsigned long long)cmd.out_iova_alignment);
}

static void op_allow(struct state *s, struct fin *in)
{
	struct iommu_ioas_allow_iovas cmd = { .size = sizeof(cmd) };
	struct iommu_iova_range *r = (struct iommu_iova_range *)ranges_win.base;

	cmd.ioas_id = pick_id(s, in);
	cmd.num_iovas = fin_u8(in) % 5;
	for (uint32_t i = 0; i < cmd.num_iovas; i++) {
		r[i].start = pick_iova(in);
		r[i].last = (fin_u8(in) & 1) ? pick_iova(in) : r[i].start + pick_len(in);
	}
	cmd.allowed_iovas = (uintptr_t)r;
	(void)p2p_iommufd_ioctl(s->ctx, IOMMU_IOAS_ALLOW_IOVAS, &cmd);
}

/* Any command, any size, any bytes; pointers and fds steered to ours. */
static void op_raw(struct state *s, struct fin *in)
{
	static const unsigned long cmds[] = {
		IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_ALLOW_IOVAS,
		IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_FILE, IOMMU_IOAS_UNMAP, IOMMU_IOAS_COPY,
		_IO(IOMMUFD_TYPE, 0x87),
	};
	uint8_t k = fin_u8(in);
	unsigned long req = cmds[k % (sizeof(cmds) / sizeof(cmds[0]))];
	uint64_t buf[16] = { 0 };
	uint32_t size = fin_u8(in) % sizeof(buf);

	fin_bytes(in, buf, size);
	if (req == IOMMU_IOAS_ALLOC && s->nids >= MAX_IDS)
		return;
	if (req == IOMMU_DESTROY)
		return op_destroy(s, in); /* keeps the attach counts right */
	if (req == IOMMU_IOAS_MAP)
		buf[2] = pick_va(in);
	if (req == IOMMU_IOAS_MAP_FILE)
		((int32_t *)buf)[3] = fz_fds_pick(&s->fds, fin_u8(in));
	if (req == IOMMU_IOAS_IOVA_RANGES) {
		buf[2] = (uintptr_t)ranges_win.base;
		if (((uint32_t *)buf)[2] > 16)
			((uint32_t *)buf)[2] = 16;
	}
	if (req == IOMMU_IOAS_ALLOW_IOVAS) {
		buf[2] = (uintptr_t)ranges_win.base;
		((uint32_t *)buf)[2] %= 17;
	}
	((uint32_t *)buf)[0] = size; /* the size is the bytes we really have */
	if (!p2p_iommufd_ioctl(s->ctx, req, buf) && req == IOMMU_IOAS_ALLOC)
		add_id(s, ((uint32_t *)buf)[2]);
}

static void op_attach(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	struct p2p_ioas *ioas;
	unsigned int i;

	if (!s->nids)
		return;
	i = k % s->nids;
	if (p2p_ioas_get(s->ctx, s->ids[i], &ioas))
		return;
	if (k & 0x80) {
		if (s->ndev[i]) {
			p2p_ioas_detach_device(ioas);
			s->ndev[i]--;
		}
	} else if (!p2p_ioas_attach_device(ioas)) {
		s->ndev[i]++;
	}
	p2p_ioas_put(ioas);
}

static void op_mem(struct state *s, struct fin *in)
{
	(void)p2p_vfio_config_write(s->vdev, 0x04, 2, (fin_u8(in) & 1) ? 0x6 : 0x4);
}

static int export(struct state *s, unsigned int nr)
{
	struct vfio_region_dma_range r[2] = { { 0, 32 << 10 }, { 48 << 10, 16 << 10 } };

	return p2p_vfio_device_get_dmabuf(s->vdev, 2, r, nr, O_CLOEXEC | O_RDWR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin in = { data, size };
	struct state s = { 0 };
	int fds = fz_fds_begin();

	if (p2p_iommufd_open(&s.ctx) ||
	    fz_dev_create("0000:04:00.0", NULL, 4, &s.pci, &s.vdev) ||
	    p2p_dma_heap_open("system", &s.heap))
		abort();
	s.memfd = memfd_create("fuzz-iommufd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s.memfd < 0 || ftruncate(s.memfd, MEMFD_SIZE))
		abort();
	s.mfd_map = mmap(NULL, MEMFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s.memfd, 0);
	s.buf1 = export(&s, 1);
	s.buf2 = export(&s, 2);
	s.heapfd = p2p_dma_heap_alloc(s.heap, 16 << 10, O_CLOEXEC | O_RDWR, 0);
	s.efd = eventfd(0, EFD_CLOEXEC);
	s.w_shadow = malloc(WIN);
	s.m_shadow = malloc(MEMFD_SIZE);
	if (s.mfd_map == MAP_FAILED || s.buf1 < 0 || s.buf2 < 0 || s.heapfd < 0 || s.efd < 0 ||
	    !s.w_shadow || !s.m_shadow)
		abort();
	for (size_t i = 0; i < WIN; i++)
		win.base[i] = s.w_shadow[i] = fz_pattern(i, 1);
	for (size_t i = 0; i < MEMFD_SIZE; i++)
		s.mfd_map[i] = s.m_shadow[i] = fz_pattern(i, 2);
	fz_fds_add(&s.fds, s.memfd);
	fz_fds_add(&s.fds, s.buf1);
	fz_fds_add(&s.fds, s.buf2);
	fz_fds_add(&s.fds, s.heapfd);
	fz_fds_add(&s.fds, s.efd);
	op_alloc(&s);

	for (int i = 0; i < MAX_OPS && !fin_empty(&in); i++) {
		switch (fin_u8(&in) % 16) {
		case 0: op_alloc(&s); break;
		case 1: op_destroy(&s, &in); break;
		case 2: case 3: op_map(&s, &in); break;
		case 4: case 5: op_map_file(&s, &in); break;
		case 6: op_unmap(&s, &in); break;
		case 7: op_copy(&s, &in); break;
		case 8: op_ranges(&s, &in); break;
		case 9: op_allow(&s, &in); break;
		case 10: op_access(&s, &in, true); break;
		case 11: op_access(&s, &in, false); break;
		case 12: op_raw(&s, &in); break;
		case 13: op_attach(&s, &in); break;
		case 14: op_mem(&s, &in); break;
		default: op_raw(&s, &in); break;
		}
		check_all(&s);
		if (trace)
			trace_areas(&s, i);
	}

	for (unsigned int i = 0; i < s.nids; i++) {
		struct p2p_ioas *ioas;

		if (!s.ndev[i] || p2p_ioas_get(s.ctx, s.ids[i], &ioas))
			continue;
		while (s.ndev[i]--)
			p2p_ioas_detach_device(ioas);
		p2p_ioas_put(ioas);
	}
	p2p_iommufd_close(s.ctx);
	p2p_close(s.buf1);
	p2p_close(s.buf2);
	p2p_close(s.heapfd);
	close(s.efd);
	munmap(s.mfd_map, MEMFD_SIZE);
	close(s.memfd);
	p2p_dma_heap_close(s.heap);
	p2p_vfio_device_close(s.vdev);
	p2p_pci_dev_put(s.pci);
	free(s.w_shadow);
	free(s.m_shadow);
	fz_win_arm(&ranges_win);
	fz_fds_end(fds);
	return 0;
}
