// SPDX-License-Identifier: MIT
/*
 * The system dma-buf heap (kernel-semantics 6, 8.4): the checks of the
 * kernel's dmabuf-heaps selftest (DMA_HEAP_IOCTL_ALLOC validation, smaller
 * and larger structs, mmap plus DMA_BUF_IOCTL_SYNC, an importer), the chunk
 * layout an importer sees, and the suggested extra check of 8.4: mmap at
 * non-zero page offsets with partial lengths gives the same bytes as a
 * page-by-page mapping.
 */
#define _GNU_SOURCE
#include <sys/uio.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ul
#define KiB 1024ul
#define MiB (1024ul * 1024ul)
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))

struct small_alloc { /* the selftest's dma_heap_allocation_data_smaller */
	uint64_t len;
	uint32_t fd;
	uint32_t fd_flags;
};

struct big_alloc { /* the selftest's dma_heap_allocation_data_bigger */
	uint64_t len;
	uint32_t fd;
	uint32_t fd_flags;
	uint64_t heap_flags;
	uint64_t garbage1, garbage2, garbage3;
};

static struct p2p_dma_heap *heap;

static long alloc_ioctl(uint64_t len, uint32_t fd, uint32_t fd_flags, uint64_t heap_flags,
			uint32_t *out_fd)
{
	struct dma_heap_allocation_data d = {
		.len = len, .fd = fd, .fd_flags = fd_flags, .heap_flags = heap_flags
	};
	long ret = p2p_dma_heap_ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d);

	*out_fd = d.fd;
	return ret;
}

static struct p2p_dmabuf *get_buf(int fd)
{
	struct p2p_dmabuf *buf = NULL;

	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	return buf;
}

static uint8_t pattern(uint64_t off, uint8_t seed)
{
	return (uint8_t)((off * 2654435761u) >> 13) ^ (uint8_t)(off >> 12) ^ seed;
}

/* Does process_vm_readv() work here?  Without it bad pointers are not caught. */
static bool user_copies_checked(void)
{
	uint64_t src = 1, dst = 0;
	struct iovec l = { &dst, sizeof(dst) }, r = { &src, sizeof(src) };

	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == sizeof(dst);
}

static void test_open(void)
{
	struct p2p_dma_heap *h = NULL;

	t_section("open");
	CHECK_ERR(p2p_dma_heap_open("cma", &h), -ENOENT);
	CHECK_ERR(p2p_dma_heap_open("", &h), -ENOENT);
	CHECK_ERR(p2p_dma_heap_open("system ", &h), -ENOENT);
	CHECK_ERR(p2p_dma_heap_open(NULL, &h), -ENOENT);
	CHECK(h == NULL);
	CHECK_OK(p2p_dma_heap_open("system", &heap));
	CHECK(heap != NULL);
}

/* 6.1 validation, in order, through the full-size struct. */
static void test_validation(void)
{
	uint32_t fd = 0;

	t_section("6.1 validation");
	CHECK(sizeof(struct dma_heap_allocation_data) == 24);
	CHECK(DMA_HEAP_IOCTL_ALLOC == 0xc0184800u);

	CHECK_ERR(alloc_ioctl(0, 0, O_RDWR | O_CLOEXEC, 0, &fd), -EINVAL);
	CHECK(fd == 0);
	CHECK_ERR(alloc_ioctl(PAGE, 0, O_RDWR | O_NONBLOCK, 0, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(PAGE, 0, O_RDWR | O_TRUNC, 0, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(PAGE, 0, 1u << 31, 0, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(PAGE, 0, ~(uint32_t)(O_RDWR | O_CLOEXEC), 0, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(PAGE, 0, O_RDWR, ~0ull, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(PAGE, 0, O_RDWR, 1, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(PAGE, 0, O_RDWR, 1ull << 63, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(PAGE, 3, O_RDWR, 0, &fd), -EINVAL);
	CHECK(fd == 3); /* untouched on failure */
	/* PAGE_ALIGN() of the last page's lengths wraps to 0. */
	CHECK_ERR(alloc_ioctl(UINT64_MAX, 0, O_RDWR, 0, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(UINT64_MAX - PAGE + 2, 0, O_RDWR, 0, &fd), -EINVAL);
	/* More than the machine has: ENOMEM, but only after the argument checks. */
	CHECK_ERR(alloc_ioctl(1ull << 62, 0, O_RDWR, 0, &fd), -ENOMEM);
	CHECK(fd == 0);
	CHECK_ERR(alloc_ioctl(1ull << 62, 7, O_RDWR, 0, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(1ull << 62, 0, O_DIRECT, 0, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(1ull << 62, 0, O_RDWR, 2, &fd), -EINVAL);
	CHECK_ERR(alloc_ioctl(UINT64_MAX, 0, O_RDWR, 2, &fd), -EINVAL);

	/* The typed wrapper validates the same way. */
	CHECK_ERR(p2p_dma_heap_alloc(heap, 0, O_RDWR, 0), -EINVAL);
	CHECK_ERR(p2p_dma_heap_alloc(heap, PAGE, O_APPEND, 0), -EINVAL);
	CHECK_ERR(p2p_dma_heap_alloc(heap, PAGE, O_RDWR, 4), -EINVAL);
	CHECK_ERR(p2p_dma_heap_alloc(heap, 1ull << 62, O_RDWR, 0), -ENOMEM);

	/* Every valid fd_flags combination works; O_CLOEXEC is honoured. */
	{
		static const uint32_t ok[] = { 0,	      O_RDONLY | O_CLOEXEC, O_WRONLY,
					       O_RDWR,	      O_RDWR | O_CLOEXEC,   O_ACCMODE,
					       O_CLOEXEC | O_ACCMODE };

		for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
			int f;

			fd = 0;
			CHECK_OK(alloc_ioctl(PAGE, 0, ok[i], 0, &fd));
			CHECK(fd > 2);
			f = fcntl((int)fd, F_GETFD);
			CHECK(f >= 0 && !!(f & FD_CLOEXEC) == !!(ok[i] & O_CLOEXEC));
			CHECK_OK(p2p_close((int)fd));
		}
	}
}

/* The ioctl framing: command numbers, struct sizes, directions, faults. */
static void test_framing(void)
{
	struct dma_heap_allocation_data d;
	struct p2p_dmabuf *buf;
	long ret;

	t_section("ioctl framing");
	d = (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDWR | O_CLOEXEC };
	CHECK_ERR(p2p_dma_heap_ioctl(heap, _IOWR('H', 1, struct dma_heap_allocation_data), &d),
		  -ENOTTY);
	CHECK_ERR(p2p_dma_heap_ioctl(heap, _IOWR('H', 0xff, struct dma_heap_allocation_data), &d),
		  -ENOTTY);
	CHECK_ERR(p2p_dma_heap_ioctl(heap, _IOWR('h', 0, struct dma_heap_allocation_data), &d),
		  -ENOTTY);
	CHECK_ERR(p2p_dma_heap_ioctl(heap, DMA_BUF_IOCTL_SYNC, &d), -ENOTTY);
	CHECK_ERR(p2p_dma_heap_ioctl(heap, 0, &d), -ENOTTY);
	CHECK(d.fd == 0);

	/* Smaller (older) struct: heap_flags reads as 0 and is not written. */
	{
		struct {
			struct small_alloc s;
			uint64_t after;
		} o = { { .len = 3 * PAGE + 1, .fd_flags = O_RDWR | O_CLOEXEC }, ~0ull };

		ret = p2p_dma_heap_ioctl(heap, _IOWR('H', 0, struct small_alloc), &o.s);
		CHECK_OK(ret);
		CHECK(o.after == ~0ull); /* would be an invalid heap_flags if read */
		CHECK(o.s.fd > 2 && o.s.len == 3 * PAGE + 1 &&
		      o.s.fd_flags == (O_RDWR | O_CLOEXEC));
		if (!ret) {
			buf = get_buf((int)o.s.fd);
			CHECK(buf && p2p_dmabuf_size(buf) == 4 * PAGE);
			p2p_dmabuf_put(buf);
			CHECK_OK(p2p_close((int)o.s.fd));
		}
		/* The small struct's own fields are still validated. */
		o.s.fd = 0;
		o.s.fd_flags = O_SYNC;
		CHECK_ERR(p2p_dma_heap_ioctl(heap, _IOWR('H', 0, struct small_alloc), &o.s),
			  -EINVAL);
	}

	/* Larger (newer) struct: the tail is ignored, even non-zero, and kept. */
	{
		struct big_alloc b = {
			.len = 2 * PAGE,
			.fd_flags = O_RDWR | O_CLOEXEC,
			.garbage1 = 0xffffffff,
			.garbage2 = 0x88888888,
			.garbage3 = 0x11111111,
		};

		ret = p2p_dma_heap_ioctl(heap, _IOWR('H', 0, struct big_alloc), &b);
		CHECK_OK(ret);
		CHECK(b.garbage1 == 0xffffffff && b.garbage2 == 0x88888888 &&
		      b.garbage3 == 0x11111111);
		if (!ret) {
			CHECK(b.fd > 2);
			buf = get_buf((int)b.fd);
			CHECK(buf && p2p_dmabuf_size(buf) == 2 * PAGE);
			p2p_dmabuf_put(buf);
			CHECK_OK(p2p_close((int)b.fd));
		}
		b.fd = 0;
		b.heap_flags = 1;
		CHECK_ERR(p2p_dma_heap_ioctl(heap, _IOWR('H', 0, struct big_alloc), &b), -EINVAL);
	}

	/* A size that covers only len: the fd cannot be returned (nor leaked). */
	{
		uint64_t o[3] = { PAGE, 0x1234, 0x5678 };

		CHECK_OK(p2p_dma_heap_ioctl(heap, _IOWR('H', 0, uint64_t), o));
		CHECK(o[0] == PAGE && o[1] == 0x1234 && o[2] == 0x5678);
	}
	/* Size 0: everything reads as 0, so len 0 -> EINVAL. */
	d = (struct dma_heap_allocation_data){ .len = PAGE };
	CHECK_ERR(p2p_dma_heap_ioctl(heap, _IO('H', 0), &d), -EINVAL);
	/* _IOR: nothing is copied in. */
	CHECK_ERR(p2p_dma_heap_ioctl(heap, _IOR('H', 0, struct dma_heap_allocation_data), &d),
		  -EINVAL);
	CHECK(d.len == 0 && d.fd == 0); /* the zeroed struct is copied out */
	/* _IOW: allocated but not copied out; the fd is closed again (t_end). */
	d = (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDWR };
	CHECK_OK(p2p_dma_heap_ioctl(heap, _IOW('H', 0, struct dma_heap_allocation_data), &d));
	CHECK(d.fd == 0);

	if (!user_copies_checked()) {
		printf("note: process_vm_readv unavailable: EFAULT checks skipped\n");
		return;
	}
	/* Bad pointers: EFAULT, before allocating or (read-only) after, without a leak. */
	CHECK_ERR(p2p_dma_heap_ioctl(heap, DMA_HEAP_IOCTL_ALLOC, NULL), -EFAULT);
	{
		uint8_t *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct dma_heap_allocation_data *ro, *straddle;

		CHECK(p != MAP_FAILED);
		if (p == MAP_FAILED)
			return;
		ro = (void *)p;
		*ro = (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDWR };
		straddle = (void *)(p + 2 * PAGE - 8);
		CHECK_OK(mprotect(p, PAGE, PROT_READ));
		CHECK_OK(mprotect(p + PAGE, PAGE, PROT_NONE));
		CHECK_ERR(p2p_dma_heap_ioctl(heap, DMA_HEAP_IOCTL_ALLOC, ro), -EFAULT);
		CHECK(ro->fd == 0);
		CHECK_ERR(p2p_dma_heap_ioctl(heap, DMA_HEAP_IOCTL_ALLOC, straddle), -EFAULT);
		CHECK_ERR(p2p_dma_heap_ioctl(heap, DMA_HEAP_IOCTL_ALLOC, p + PAGE), -EFAULT);
		munmap(p, 2 * PAGE);
	}
}

/* Sizes and the chunk table an importer gets (6.1: orders 8, 4, 0). */
static void check_chunks(uint64_t len, unsigned int n1m, unsigned int n64k, unsigned int n4k)
{
	struct p2p_attach_info info = { .argsz = sizeof(info), .name = "static" };
	struct p2p_attachment *a = NULL;
	struct p2p_sgt *sgt = NULL;
	struct p2p_dmabuf *buf;
	uint64_t size = ALIGN_UP(len, PAGE), sum = 0;
	int fd = p2p_dma_heap_alloc(heap, len, O_RDWR | O_CLOEXEC, 0);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	buf = get_buf(fd);
	CHECK(p2p_dmabuf_size(buf) == size);
	CHECK(!strcmp(p2p_dmabuf_name(buf), "system"));
	/* A static importer without P2P support. */
	CHECK_OK(p2p_dmabuf_attach(buf, &info, &a));
	if (a) {
		CHECK(!p2p_attachment_is_peer2peer(a) && !p2p_attachment_is_revocable(a));
		CHECK_OK(p2p_attachment_map(a, &sgt));
	}
	if (sgt) {
		struct p2p_mem *mem = sgt->nents ? sgt->ents[0].mem : NULL;

		CHECK(sgt->nents == n1m + n64k + n4k);
		for (unsigned int i = 0; i < sgt->nents; i++) {
			uint64_t want = i < n1m ? MiB : i < n1m + n64k ? 64 * KiB : PAGE;

			CHECK(sgt->ents[i].length == want);
			CHECK(sgt->ents[i].offset == sum); /* consecutive in the memfd */
			CHECK(sgt->ents[i].mem == mem);
			sum += sgt->ents[i].length;
		}
		CHECK(sum == size);
		CHECK(mem && p2p_mem_size(mem) == size);
		p2p_attachment_unmap(a, sgt);
	}
	if (a)
		p2p_dmabuf_detach(a);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
}

static void test_chunks(void)
{
	t_section("chunks");
	check_chunks(1, 0, 0, 1);
	check_chunks(PAGE, 0, 0, 1);
	check_chunks(64 * KiB - 1, 0, 1, 0); /* rounds up to one 64 KiB chunk */
	check_chunks(64 * KiB + PAGE, 0, 1, 1);
	check_chunks(MiB - PAGE, 0, 15, 15);
	check_chunks(MiB, 1, 0, 0);
	check_chunks(2 * MiB + 15 * 64 * KiB + 15 * PAGE, 2, 15, 15);
	check_chunks(3 * MiB + 5 * 64 * KiB + 7 * PAGE + 1, 3, 5, 8);
	check_chunks(32 * MiB, 32, 0, 0);
}

/*
 * mmap at page offsets with partial lengths vs a page-by-page mapping of
 * the same buffer (8.4's suggested check), plus coherence between two
 * mappings, a private mapping and an importer's ranges.
 */
static void test_mmap(void)
{
	/* Two 1 MiB chunks, three 64 KiB, five 4 KiB: 565 pages. */
	const uint64_t size = 2 * MiB + 3 * 64 * KiB + 5 * PAGE;
	const unsigned int npages = (unsigned int)(size / PAGE);
	static const struct {
		unsigned int pgoff;
		size_t len;
	} cases[] = {
		{ 0, 565 * PAGE },     { 0, 1 },	      { 1, 100 * PAGE + 123 },
		{ 13, 552 * PAGE },    { 255, 2 * PAGE },    { 256, PAGE },
		{ 300, 250 * PAGE },   { 511, 20 * PAGE + 1 }, { 512, 16 * PAGE },
		{ 527, 33 * PAGE },    { 559, 6 * PAGE },    { 560, 5 * PAGE - 7 },
		{ 564, PAGE },	       { 564, 100 },	      { 100, 465 * PAGE },
	};
	struct t_importer imp;
	struct p2p_dmabuf *buf;
	struct p2p_mem *mem = NULL;
	uint8_t **ref, *full = NULL, *priv = NULL, *part = NULL;
	int fd;

	t_section("mmap");
	fd = p2p_dma_heap_alloc(heap, size, O_RDWR | O_CLOEXEC, 0);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	buf = get_buf(fd);

	/* A dynamic P2P importer fills the buffer through its ranges. */
	CHECK_OK(t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true));
	if (imp.attach)
		CHECK_OK(t_importer_map(&imp));
	if (imp.sgt) {
		uint64_t off = 0;

		CHECK(imp.sgt->nents == 2 + 3 + 5);
		mem = imp.sgt->ents[0].mem;
		for (unsigned int i = 0; i < imp.sgt->nents; i++) {
			uint8_t *p = p2p_mem_ptr(imp.sgt->ents[i].mem, imp.sgt->ents[i].offset);

			for (uint64_t j = 0; j < imp.sgt->ents[i].length; j++)
				p[j] = pattern(off + j, 0x5a);
			off += imp.sgt->ents[i].length;
		}
	}

	/* The reference: one 4 KiB mapping per page. */
	ref = calloc(npages, sizeof(*ref));
	if (!ref)
		abort();
	for (unsigned int i = 0; i < npages; i++) {
		CHECK_OK(p2p_dmabuf_mmap(buf, NULL, PAGE, PROT_READ, MAP_SHARED, i * PAGE,
					 (void **)&ref[i]));
		if (!ref[i])
			goto out_ref;
	}
	for (unsigned int i = 0; i < npages; i++)
		for (unsigned int j = 0; j < PAGE; j += 511)
			CHECK(ref[i][j] == pattern(i * PAGE + j, 0x5a));

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint64_t len = ALIGN_UP(cases[c].len, PAGE);
		uint8_t *va = NULL;
		int ret = p2p_dmabuf_mmap(buf, NULL, cases[c].len, PROT_READ | PROT_WRITE,
					  MAP_SHARED, (uint64_t)cases[c].pgoff * PAGE,
					  (void **)&va);

		CHECK_OK(ret);
		if (ret)
			continue;
		for (uint64_t p = 0; p < len / PAGE; p++)
			if (memcmp(va + p * PAGE, ref[cases[c].pgoff + p], PAGE)) {
				fprintf(stderr, "mmap pgoff %u len %zu: page %llu differs\n",
					cases[c].pgoff, cases[c].len, (unsigned long long)p);
				CHECK(!"same bytes as page by page");
				break;
			}
		CHECK_OK(p2p_munmap(va, cases[c].len));
	}

	/* Coherence: mapping <-> mapping <-> importer's ranges. */
	CHECK_OK(p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
				 (void **)&full));
	CHECK_OK(p2p_dmabuf_mmap(buf, NULL, 10 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
				 520 * PAGE, (void **)&part));
	CHECK_OK(p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0,
				 (void **)&priv));
	if (full && part && priv && mem) {
		uint64_t off = 525 * PAGE + 77; /* inside the second 64 KiB chunk */

		CHECK(!memcmp(full, priv, size));
		CHECK(!t_write_faults(full + off, 0xc3));
		CHECK(part[off - 520 * PAGE] == 0xc3);
		CHECK(ref[off / PAGE][off % PAGE] == 0xc3);
		CHECK(*(uint8_t *)p2p_mem_ptr(mem, off) == 0xc3);
		part[5] = 0x3c;
		CHECK(full[520 * PAGE + 5] == 0x3c);
		*(uint8_t *)p2p_mem_ptr(mem, size - 1) = 0x99; /* device write, last 4 KiB chunk */
		CHECK(full[size - 1] == 0x99 && ref[npages - 1][PAGE - 1] == 0x99);
		/* A private mapping's writes stay private. */
		priv[3 * PAGE] = (uint8_t)~pattern(3 * PAGE, 0x5a);
		CHECK(full[3 * PAGE] == pattern(3 * PAGE, 0x5a));
		CHECK(*(uint8_t *)p2p_mem_ptr(mem, 3 * PAGE) == pattern(3 * PAGE, 0x5a));
	}
	/* DMA_BUF_IOCTL_SYNC around CPU access (8.4: mmap plus sync). */
	CHECK_OK(p2p_dmabuf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW));
	if (full)
		memset(full, 0x42, 2 * PAGE);
	CHECK_OK(p2p_dmabuf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW));
	CHECK(!mem || *(uint8_t *)p2p_mem_ptr(mem, PAGE) == 0x42);
	if (priv)
		CHECK_OK(p2p_munmap(priv, size));
	if (part)
		CHECK_OK(p2p_munmap(part, 10 * PAGE));

	/* Bounds (0.4) and flags. */
	{
		void *va = NULL;

		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, PAGE, PROT_READ, MAP_SHARED, size, &va),
			  -EINVAL);
		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, size + 1, PROT_READ, MAP_SHARED, 0, &va),
			  -EINVAL);
		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, 2 * PAGE, PROT_READ, MAP_SHARED, size - PAGE,
					  &va), -EINVAL);
		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, PAGE + 1, PROT_READ, MAP_SHARED, size - PAGE,
					  &va), -EINVAL);
		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, PAGE, PROT_READ, MAP_SHARED,
					  size + 1024 * PAGE, &va), -EINVAL);
		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, PAGE, PROT_READ, MAP_SHARED, 100, &va),
			  -EINVAL);
		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, 0, PROT_READ, MAP_SHARED, 0, &va), -EINVAL);
		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, PAGE, PROT_READ, 0, 0, &va), -EINVAL);
		CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, PAGE, PROT_READ | PROT_EXEC, MAP_SHARED, 0,
					  &va), -EINVAL);
		CHECK(va == NULL);
		/* The last page, exactly. */
		CHECK_OK(p2p_dmabuf_mmap(buf, NULL, PAGE, PROT_READ, MAP_SHARED, size - PAGE, &va));
		if (va)
			CHECK_OK(p2p_munmap(va, PAGE));
	}

out_ref:
	for (unsigned int i = 0; i < npages && ref[i]; i++)
		CHECK_OK(p2p_munmap(ref[i], PAGE));
	free(ref);
	t_importer_detach(&imp);
	p2p_dmabuf_put(buf);
	/* The mapping outlives the fd (the mapping holds the buffer). */
	CHECK_OK(p2p_close(fd));
	if (full) {
		CHECK(full[PAGE] == 0x42 && full[size - 1] == 0x99);
		CHECK_OK(p2p_munmap(full, size));
	}
}

/* DMA_BUF_IOCTL_SYNC: validation and what it calls, on a counting exporter. */
struct sync_rec {
	int begins, ends;
	enum p2p_dma_dir dir;
	bool released;
};

static int rec_map(struct p2p_attachment *a, struct p2p_sgt **out)
{
	(void)a;
	(void)out;
	return -ENOMEM;
}

static void rec_unmap(struct p2p_attachment *a, struct p2p_sgt *sgt)
{
	(void)a;
	(void)sgt;
}

static int rec_begin(struct p2p_dmabuf *buf, enum p2p_dma_dir dir)
{
	struct sync_rec *r = p2p_dmabuf_priv(buf);

	r->begins++;
	r->dir = dir;
	return 0;
}

static int rec_end(struct p2p_dmabuf *buf, enum p2p_dma_dir dir)
{
	struct sync_rec *r = p2p_dmabuf_priv(buf);

	r->ends++;
	r->dir = dir;
	return 0;
}

static void rec_release(struct p2p_dmabuf *buf)
{
	((struct sync_rec *)p2p_dmabuf_priv(buf))->released = true;
}

static const struct p2p_dmabuf_ops rec_ops = {
	.map = rec_map,
	.unmap = rec_unmap,
	.begin_cpu_access = rec_begin,
	.end_cpu_access = rec_end,
	.release = rec_release,
};

static void test_sync(void)
{
	static const uint64_t bad[] = {
		0,
		DMA_BUF_SYNC_START,
		DMA_BUF_SYNC_END,
		1u << 3,
		DMA_BUF_SYNC_READ | (1u << 3),
		DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END | (1ull << 63),
		DMA_BUF_SYNC_WRITE | (1ull << 32),
	};
	struct sync_rec rec = { 0 };
	struct p2p_mem *mem;
	struct p2p_phys_range r = { .offset = 0, .length = PAGE };
	struct p2p_dmabuf_export_info info = {
		.argsz = sizeof(info), .name = "rec", .ops = &rec_ops, .priv = &rec,
		.nr_ranges = 1, .ranges = &r,
	};
	struct p2p_dmabuf *buf = NULL;
	int fd;

	t_section("DMA_BUF_SYNC");
	fd = p2p_dma_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC, 0);
	CHECK(fd >= 0);
	if (fd >= 0) {
		struct p2p_dmabuf *hb = get_buf(fd);

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			CHECK_ERR(p2p_dmabuf_sync(hb, bad[i]), -EINVAL);
		/* Nested brackets, and an END without START, are fine. */
		CHECK_OK(p2p_dmabuf_sync(hb, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ));
		CHECK_OK(p2p_dmabuf_sync(hb, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE));
		CHECK_OK(p2p_dmabuf_sync(hb, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE));
		CHECK_OK(p2p_dmabuf_sync(hb, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ));
		CHECK_OK(p2p_dmabuf_sync(hb, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW));
		p2p_dmabuf_put(hb);
		CHECK_OK(p2p_close(fd));
	}

	CHECK_OK(p2p_mem_create("sync-rec", PAGE, 0, &mem));
	r.mem = mem;
	CHECK_OK(p2p_dmabuf_export(&info, &buf));
	p2p_mem_put(mem);
	if (!buf)
		return;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_ERR(p2p_dmabuf_sync(buf, bad[i]), -EINVAL);
	CHECK(rec.begins == 0 && rec.ends == 0);
	CHECK_OK(p2p_dmabuf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ));
	CHECK(rec.begins == 1 && rec.ends == 0 && rec.dir == P2P_DMA_FROM_DEVICE);
	CHECK_OK(p2p_dmabuf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE));
	CHECK(rec.begins == 1 && rec.ends == 1 && rec.dir == P2P_DMA_TO_DEVICE);
	CHECK_OK(p2p_dmabuf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW));
	CHECK(rec.begins == 2 && rec.ends == 1 && rec.dir == P2P_DMA_BIDIRECTIONAL);
	CHECK_OK(p2p_dmabuf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ));
	CHECK(rec.begins == 2 && rec.ends == 2 && rec.dir == P2P_DMA_FROM_DEVICE);
	p2p_dmabuf_put(buf);
	CHECK(rec.released);
}

int main(void)
{
	int fd;

	t_begin();
	test_open();
	if (!heap)
		return t_end();
	test_validation();
	test_framing();
	test_chunks();
	test_mmap();
	test_sync();

	/* Buffers outlive the heap. */
	fd = p2p_dma_heap_alloc(heap, 3 * MiB, O_RDWR | O_CLOEXEC, 0);
	p2p_dma_heap_close(heap);
	t_section("buffer after heap close");
	CHECK(fd >= 0);
	if (fd >= 0) {
		struct p2p_dmabuf *buf = get_buf(fd);
		uint8_t *va = NULL;

		CHECK(p2p_dmabuf_size(buf) == 3 * MiB);
		CHECK_OK(p2p_dmabuf_mmap(buf, NULL, 3 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
					 (void **)&va));
		if (va) {
			CHECK(!t_fill_faults(va, 0x17, 3 * MiB));
			CHECK_OK(p2p_munmap(va, 3 * MiB));
		}
		p2p_dmabuf_put(buf);
		CHECK_OK(p2p_close(fd));
	}
	return t_end();
}
