// SPDX-License-Identifier: MIT
/*
 * The storage device: every command and status, data integrity of
 * peer-to-peer reads (file -> another device's BAR through a dma-buf in
 * the device's IOAS) and writes (BAR -> file) with single- and multi-range
 * dma-bufs, many commands in flight, a reset of the device with commands
 * in flight, and a revoke / reset of the peer while reads into its BAR are
 * in flight.  No timing assertions: waits have a generous hang guard only.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "harness.h"
#include "sd_driver.h"

#define BLK 4096ull
#define MiB (1ull << 20)
#define HANG_MS 60000 /* a hang guard, not a timing assertion */
#define POISON 0xee

struct rig {
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct sd_drv drv;
	int file_fd; /* our own fd on a path-backed image, or -1 */
};

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

/* The pattern: byte @o of stream @seed is byte o % 8 of mix(seed, o / 8). */
static uint64_t word(uint64_t seed, uint64_t w)
{
	return mix(seed * 0x9e3779b97f4a7c15ull + w);
}

static void fill(uint8_t *p, uint64_t len, uint64_t seed, uint64_t start)
{
	uint64_t i = 0;

	for (; i < len && (start + i) % 8; i++)
		p[i] = (uint8_t)(word(seed, (start + i) / 8) >> (8 * ((start + i) % 8)));
	for (; i + 8 <= len; i += 8) {
		uint64_t w = word(seed, (start + i) / 8);

		memcpy(p + i, &w, 8);
	}
	for (; i < len; i++)
		p[i] = (uint8_t)(word(seed, (start + i) / 8) >> (8 * ((start + i) % 8)));
}

static bool all_byte(const uint8_t *p, uint64_t len, uint8_t v)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static bool file_equals(int fd, uint64_t off, const uint8_t *want, uint64_t len)
{
	uint8_t *buf = malloc(len);
	bool ok = buf && pread(fd, buf, len, (off_t)off) == (ssize_t)len &&
		  !memcmp(buf, want, len);

	free(buf);
	return ok;
}

static uint8_t *sysmem(uint64_t len)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* An image file of @size bytes filled with pattern @seed; returns an fd, @path filled. */
static int make_image(char *path, size_t pathlen, uint64_t size, uint64_t seed)
{
	const char *dir = getenv("TMPDIR");
	uint8_t *buf = malloc(MiB);
	int fd;

	snprintf(path, pathlen, "%s/p2pbuf-test-sd-XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0 || !buf) {
		free(buf);
		return -1;
	}
	for (uint64_t off = 0; off < size; off += MiB) {
		fill(buf, MiB, seed, off);
		if (pwrite(fd, buf, MiB, (off_t)off) != (ssize_t)MiB) {
			close(fd);
			free(buf);
			return -1;
		}
	}
	free(buf);
	return fd;
}

static int rig_init(struct rig *r, const char *bdf, const char *path, uint64_t size,
		    uint32_t entries)
{
	uint32_t id;
	int ret;

	memset(r, 0, sizeof(*r));
	r->file_fd = -1;
	r->drv.efd = -1;
	if ((ret = p2p_iommufd_open(&r->ctx)) || (ret = p2p_ioas_alloc(r->ctx, &id, &r->ioas)))
		return ret;
	ret = p2p_storage_create(bdf, NULL, 7, path, size, &r->pci);
	if (ret)
		return ret;
	if ((ret = p2p_vfio_device_open(r->pci, &r->vdev)) ||
	    (ret = p2p_vfio_device_attach_ioas(r->vdev, r->ioas)))
		return ret;
	return sd_drv_init(&r->drv, r->vdev, r->ioas, entries);
}

static void rig_fini(struct rig *r)
{
	sd_drv_fini(&r->drv);
	if (r->vdev)
		p2p_vfio_device_close(r->vdev);
	if (r->pci)
		p2p_pci_dev_put(r->pci);
	if (r->ioas)
		p2p_ioas_put(r->ioas);
	if (r->ctx)
		p2p_iommufd_close(r->ctx);
	if (r->file_fd >= 0)
		close(r->file_fd);
	memset(r, 0, sizeof(*r));
}

/* Map @wbuf (what WRITE commands read) and @rbuf (where READs land), @len bytes each. */
static void map_wr(struct rig *r, uint8_t *wbuf, uint8_t *rbuf, uint64_t len, uint64_t *wiova,
		   uint64_t *riova)
{
	CHECK_OK(p2p_ioas_map(r->ioas, wbuf, len, wiova, P2P_IOAS_MAP_READABLE));
	CHECK_OK(p2p_ioas_map(r->ioas, rbuf, len, riova,
			      P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE));
}

static void unmap_wr(struct rig *r, uint64_t wiova, uint64_t riova, uint64_t len)
{
	p2p_ioas_unmap(r->ioas, wiova, len, NULL);
	p2p_ioas_unmap(r->ioas, riova, len, NULL);
}

static uint64_t reg(struct rig *r, uint64_t off, size_t len)
{
	uint64_t v = 0;

	if (p2p_vfio_device_pread(r->vdev, &v, len, P2P_VFIO_REGION_OFFSET(0) + off) !=
	    (ssize_t)len)
		return ~0ull;
	return v;
}

/* One command, synchronously; the whole CQE. */
static struct p2p_sd_cqe run(struct rig *r, uint8_t op, uint64_t lba, uint32_t nblocks,
			     uint64_t data, uint32_t id)
{
	struct p2p_sd_cmd c = {
		.opcode = op, .flags = P2P_SD_CMD_IRQ, .id = id, .lba = lba, .nblocks = nblocks,
		.data = data,
	};
	struct p2p_sd_cqe cqe = { .status = P2P_SD_PENDING };

	if (sd_drv_submit(&r->drv, &c) < 0 || sd_drv_kick(&r->drv) ||
	    sd_drv_wait(&r->drv, 1, HANG_MS) < 0 || sd_drv_reap(&r->drv, &cqe, 1) != 1)
		cqe.status = P2P_SD_PENDING;
	return cqe;
}

static uint32_t run_status(struct rig *r, uint8_t op, uint64_t lba, uint32_t nblocks,
			   uint64_t data)
{
	return run(r, op, lba, nblocks, data, 1).status;
}

/* Wait for and reap exactly @n completions into @out; false on a hang. */
static bool reap_n(struct rig *r, struct p2p_sd_cqe *out, uint32_t n)
{
	uint32_t got = 0;

	while (got < n) {
		if (sd_drv_wait(&r->drv, 1, HANG_MS) < 0)
			return false;
		got += sd_drv_reap(&r->drv, out + got, n - got);
	}
	return true;
}

#define CHECK_STATUS(expr, want)                                                              \
	do {                                                                                  \
		uint32_t _s = (expr);                                                          \
		if (_s != (uint32_t)(want)) {                                                  \
			fprintf(stderr, "%s:%d: [%s] %s = %s, want %s\n", __FILE__, __LINE__,  \
				t_current, #expr, p2p_sd_status_name(_s),                      \
				p2p_sd_status_name(want));                                     \
			t_failures++;                                                          \
		}                                                                              \
	} while (0)

/* ---------------------------------------------------------------------- */
/* Creation and registers                                                  */

static void test_create(void)
{
	struct p2p_pci_dev *pci = NULL;
	char path[128];
	int fd;

	t_section("create");
	CHECK_ERR(p2p_storage_create("0000:30:00.0", NULL, 7, NULL, 0, &pci), -EINVAL);
	CHECK_ERR(p2p_storage_create("0000:30:00.0", NULL, 7, NULL, 4095, &pci), -EINVAL);
	CHECK_ERR(p2p_storage_create("0000:30:00.0", NULL, 7, NULL, 8192 + 512, &pci), -EINVAL);
	CHECK_ERR(p2p_storage_create("0000:30:00.0", NULL, 7, "/nonexistent/p2pbuf-image", 0,
				     &pci), -ENOENT);
	/* An image smaller than one block. */
	fd = make_image(path, sizeof(path), 0, 1);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(pwrite(fd, "x", 1, 100) == 1);
		CHECK_ERR(p2p_storage_create("0000:30:00.0", NULL, 7, path, 0, &pci), -EINVAL);
		unlink(path);
		close(fd);
	}

	CHECK(!strcmp(p2p_sd_status_name(P2P_SD_OK), "ok"));
	CHECK(!strcmp(p2p_sd_status_name(P2P_SD_BAD_LBA), "bad block address"));
	CHECK(!strcmp(p2p_sd_status_name(P2P_SD_REVOKED), "revoked"));
	for (uint32_t s = P2P_SD_PENDING; s <= P2P_SD_BAD_OPCODE; s++)
		CHECK(strcmp(p2p_sd_status_name(s), "unknown"));
	CHECK(!strcmp(p2p_sd_status_name(99), "unknown"));
}

static void test_registers(void)
{
	struct rig r;
	uint64_t v;
	uint32_t w;

	t_section("registers");
	CHECK_OK(rig_init(&r, "0000:30:00.0", NULL, 16 * MiB, 64));
	if (!r.drv.sq)
		goto out;
	CHECK(reg(&r, P2P_SD_REG_ID, 4) == P2P_SD_ID);
	CHECK(reg(&r, P2P_SD_REG_BLOCK_SIZE, 4) == P2P_SD_BLOCK);
	CHECK(reg(&r, P2P_SD_REG_CAPACITY, 8) == 16 * MiB / BLK);
	CHECK(reg(&r, P2P_SD_REG_CAPACITY, 4) == 16 * MiB / BLK);
	CHECK(reg(&r, P2P_SD_REG_CAPACITY + 4, 4) == 0);
	CHECK(r.drv.capacity == 16 * MiB / BLK);
	CHECK(reg(&r, P2P_SD_REG_SQ, 8) == r.drv.sq_iova);
	CHECK(reg(&r, P2P_SD_REG_CQ, 8) == r.drv.cq_iova);
	CHECK(reg(&r, P2P_SD_REG_QUEUE_SIZE, 4) == 64);
	CHECK(reg(&r, P2P_SD_REG_CTRL, 4) == P2P_SD_CTRL_ENABLE);
	CHECK(reg(&r, P2P_SD_REG_STATUS, 4) == 0);
	CHECK(reg(&r, 0x100, 4) == 0); /* reserved */
	/* Read-only registers ignore writes. */
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_CAPACITY, 1, 8));
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_CQ_TAIL, 5, 4));
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_ID, 5, 4));
	CHECK(reg(&r, P2P_SD_REG_CAPACITY, 8) == 16 * MiB / BLK);
	CHECK(reg(&r, P2P_SD_REG_CQ_TAIL, 4) == 0);
	CHECK(reg(&r, P2P_SD_REG_ID, 4) == P2P_SD_ID);
	/* Queue size: powers of two up to 4096 only. */
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_QUEUE_SIZE, 48, 4));
	CHECK(reg(&r, P2P_SD_REG_QUEUE_SIZE, 4) == 64);
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_QUEUE_SIZE, 8192, 4));
	CHECK(reg(&r, P2P_SD_REG_QUEUE_SIZE, 4) == 64);
	/* 64-bit registers in two halves; two u32 registers in one 8-byte access. */
	v = r.drv.sq_iova;
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_SQ + 4, 0x12345678, 4));
	CHECK(reg(&r, P2P_SD_REG_SQ, 8) == ((v & 0xffffffffull) | 0x1234567800000000ull));
	CHECK(reg(&r, P2P_SD_REG_SQ + 4, 4) == 0x12345678);
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_SQ, v, 8));
	CHECK(reg(&r, P2P_SD_REG_SQ, 8) == v);
	CHECK(reg(&r, P2P_SD_REG_QUEUE_SIZE, 8) == 64); /* QUEUE_SIZE | SQ_TAIL << 32 */
	/* Bad accesses. */
	CHECK(p2p_vfio_device_pread(r.vdev, &w, 2, P2P_VFIO_REGION_OFFSET(0)) < 0);
	CHECK(p2p_vfio_device_pread(r.vdev, &w, 4, P2P_VFIO_REGION_OFFSET(0) + 2) < 0);
	/* A doorbell more than a queue ahead of the head is ignored. */
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_SQ_TAIL, 65, 4));
	CHECK(reg(&r, P2P_SD_REG_SQ_TAIL, 4) == 0);
out:
	rig_fini(&r);
}

/* ---------------------------------------------------------------------- */
/* Commands and statuses, system memory                                    */

static void test_commands(void)
{
	const uint64_t len = 4 * MiB;
	uint8_t *wbuf = sysmem(len), *rbuf = sysmem(len), *ro = sysmem(64 * 1024);
	uint64_t wiova = 0, riova = 0, roiova = 0, woiova = 0, edge = 1ull << 36, bytes = 0;
	uint8_t *wo = sysmem(64 * 1024), *edgebuf = sysmem(64 * 1024);
	struct p2p_sd_cqe cqe;
	struct rig r;
	uint64_t cap;
	eventfd_t ev;

	t_section("commands");
	CHECK(wbuf && rbuf && ro && wo && edgebuf);
	CHECK_OK(rig_init(&r, "0000:30:00.0", NULL, 16 * MiB, 64));
	if (!r.drv.sq || !wbuf || !rbuf || !ro || !wo || !edgebuf)
		goto out;
	cap = r.drv.capacity;
	map_wr(&r, wbuf, rbuf, len, &wiova, &riova);

	/* WRITE, READ back, FLUSH. */
	fill(wbuf, len, 42, 0);
	memset(rbuf, POISON, len);
	cqe = run(&r, P2P_SD_OP_WRITE, 10, 256, wiova, 0xabc);
	CHECK_STATUS(cqe.status, P2P_SD_OK);
	CHECK(cqe.id == 0xabc);
	CHECK(cqe.bytes == MiB);
	cqe = run(&r, P2P_SD_OP_READ, 10, 256, riova + 8192, 0xdef);
	CHECK_STATUS(cqe.status, P2P_SD_OK);
	CHECK(cqe.id == 0xdef);
	CHECK(cqe.bytes == MiB);
	CHECK(!memcmp(rbuf + 8192, wbuf, MiB));
	CHECK(all_byte(rbuf, 8192, POISON) && all_byte(rbuf + 8192 + MiB, 4096, POISON));
	cqe = run(&r, P2P_SD_OP_FLUSH, 0, 0, 0, 77);
	CHECK_STATUS(cqe.status, P2P_SD_OK);
	CHECK(cqe.id == 77 && cqe.bytes == 0);
	/* The whole image, in one command, ends exactly at the capacity. */
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, cap - len / BLK, len / BLK, wiova),
		     P2P_SD_OK);
	memset(rbuf, 0, len);
	CHECK_STATUS(sd_drv_run(&r.drv, &(struct p2p_sd_cmd){ .opcode = P2P_SD_OP_READ,
			.lba = cap - len / BLK, .nblocks = len / BLK, .data = riova }, &bytes),
		     P2P_SD_OK);
	CHECK(bytes == len);
	CHECK(!memcmp(rbuf, wbuf, len));
	/* Zero blocks: nothing to do, not even a translation. */
	cqe = run(&r, P2P_SD_OP_READ, 0, 0, edge, 3);
	CHECK_STATUS(cqe.status, P2P_SD_OK);
	CHECK(cqe.bytes == 0);

	/* Interrupts only for commands that ask. */
	while (eventfd_read(r.drv.efd, &ev) == 0)
		;
	CHECK(sd_drv_read(&r.drv, 0, 1, riova, 0, 4) >= 0);
	CHECK_OK(sd_drv_kick(&r.drv));
	CHECK(sd_drv_wait(&r.drv, 1, HANG_MS) == 1);
	CHECK(sd_drv_reap(&r.drv, &cqe, 1) == 1);
	CHECK(cqe.id == 4 && cqe.status == P2P_SD_OK);
	CHECK(eventfd_read(r.drv.efd, &ev) < 0 && errno == EAGAIN);
	CHECK(sd_drv_read(&r.drv, 0, 1, riova, P2P_SD_CMD_IRQ, 5) >= 0);
	CHECK_OK(sd_drv_kick(&r.drv));
	{
		struct pollfd pfd = { .fd = r.drv.efd, .events = POLLIN };

		CHECK(poll(&pfd, 1, HANG_MS) == 1);
		CHECK(eventfd_read(r.drv.efd, &ev) == 0 && ev == 1);
	}
	CHECK(sd_drv_wait(&r.drv, 1, HANG_MS) == 1);
	CHECK(sd_drv_reap(&r.drv, &cqe, 1) == 1);
	CHECK(cqe.id == 5 && cqe.status == P2P_SD_OK);

	t_section("status: bad block address");
	/* Checked before any translation: the data IOVA is not even mapped. */
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, cap, 1, edge), P2P_SD_BAD_LBA);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, cap - 1, 2, edge), P2P_SD_BAD_LBA);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, UINT64_MAX, 1, riova), P2P_SD_BAD_LBA);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, UINT64_MAX - 3, 8, riova), P2P_SD_BAD_LBA);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, 0, UINT32_MAX, wiova), P2P_SD_BAD_LBA);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, cap - 1, 1, riova), P2P_SD_OK);
	cqe = run(&r, P2P_SD_OP_READ, cap, 1, riova, 9);
	CHECK(cqe.id == 9 && cqe.bytes == 0);

	t_section("status: translation fault");
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, 0, 1, edge), P2P_SD_FAULT);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, 0, 1, edge), P2P_SD_FAULT);
	/* Mapped start, unmapped tail: the command fails, nothing is transferred. */
	CHECK_OK(p2p_ioas_map(r.ioas, edgebuf, 64 * 1024, &edge,
			      P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
				      P2P_IOAS_MAP_WRITEABLE));
	memset(edgebuf, POISON, 64 * 1024);
	cqe = run(&r, P2P_SD_OP_READ, 0, 32, edge, 10);
	CHECK_STATUS(cqe.status, P2P_SD_FAULT);
	CHECK(cqe.id == 10 && cqe.bytes == 0);
	CHECK(all_byte(edgebuf, 64 * 1024, POISON));
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, 0, 17, edge), P2P_SD_FAULT);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, 0, 16, edge), P2P_SD_OK);
	t_section("status: permission");
	CHECK_OK(p2p_ioas_map(r.ioas, ro, 64 * 1024, &roiova, P2P_IOAS_MAP_READABLE));
	CHECK_OK(p2p_ioas_map(r.ioas, wo, 64 * 1024, &woiova, P2P_IOAS_MAP_WRITEABLE));
	memset(ro, POISON, 64 * 1024);
	cqe = run(&r, P2P_SD_OP_READ, 0, 16, roiova, 12);
	CHECK_STATUS(cqe.status, P2P_SD_PERM); /* the device would write a read-only mapping */
	CHECK(cqe.id == 12 && cqe.bytes == 0);
	CHECK(all_byte(ro, 64 * 1024, POISON));
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, 0, 16, woiova), P2P_SD_PERM);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, 100, 16, roiova), P2P_SD_OK);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, 100, 16, woiova), P2P_SD_OK);
	CHECK(all_byte(wo, 64 * 1024, POISON));

	t_section("status: bad opcode");
	for (unsigned int op = 0; op < 256; op += 51) {
		if (op >= P2P_SD_OP_READ && op <= P2P_SD_OP_FLUSH)
			continue;
		cqe = run(&r, (uint8_t)op, 0, 1, riova, 100 + op);
		CHECK_STATUS(cqe.status, P2P_SD_BAD_OPCODE);
		CHECK(cqe.id == 100 + op && cqe.bytes == 0);
	}

	t_section("status: queue fault");
	/* BUSY may linger: a completion is visible before the device is done with it. */
	CHECK(!(reg(&r, P2P_SD_REG_STATUS, 4) & P2P_SD_STATUS_QUEUE_FAULT));
	/* The submission queue is unreachable: the command completes as a fault. */
	CHECK_OK(sd_drv_reg_write(&r.drv, P2P_SD_REG_SQ, 1ull << 44, 8));
	cqe = run(&r, P2P_SD_OP_READ, 0, 1, riova, 13);
	CHECK_STATUS(cqe.status, P2P_SD_FAULT);
	CHECK(cqe.id == UINT32_MAX);
	CHECK(reg(&r, P2P_SD_REG_STATUS, 4) & P2P_SD_STATUS_QUEUE_FAULT);
	/* No IOAS at all: the command cannot even be fetched, nor its completion written. */
	CHECK_OK(p2p_vfio_device_reset(r.vdev));
	sd_drv_fini(&r.drv);
	CHECK_OK(sd_drv_init(&r.drv, r.vdev, r.ioas, 64));
	CHECK(reg(&r, P2P_SD_REG_STATUS, 4) == 0);
	p2p_vfio_device_detach_ioas(r.vdev);
	CHECK(sd_drv_read(&r.drv, 0, 1, riova, P2P_SD_CMD_IRQ, 11) >= 0);
	CHECK_OK(sd_drv_kick(&r.drv));
	/* The completion is lost; CQ_TAIL still moves. */
	for (int i = 0; i < HANG_MS && reg(&r, P2P_SD_REG_CQ_TAIL, 4) == r.drv.cq_head; i++)
		usleep(1000);
	CHECK(reg(&r, P2P_SD_REG_CQ_TAIL, 4) == r.drv.cq_head + 1);
	CHECK(reg(&r, P2P_SD_REG_SQ_HEAD, 4) == r.drv.cq_head + 1);
	CHECK(reg(&r, P2P_SD_REG_STATUS, 4) & P2P_SD_STATUS_QUEUE_FAULT);
	r.drv.cq_head++;
	CHECK_OK(p2p_vfio_device_attach_ioas(r.vdev, r.ioas));
	/* Reset clears it (and every register); the driver starts over. */
	CHECK_OK(p2p_vfio_device_reset(r.vdev));
	CHECK(reg(&r, P2P_SD_REG_STATUS, 4) == 0);
	CHECK(reg(&r, P2P_SD_REG_SQ, 8) == 0 && reg(&r, P2P_SD_REG_CTRL, 4) == 0);
	sd_drv_fini(&r.drv);
	CHECK_OK(sd_drv_init(&r.drv, r.vdev, r.ioas, 64));
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, 0, 1, riova), P2P_SD_OK);

	p2p_ioas_unmap(r.ioas, edge, 64 * 1024, NULL);
	p2p_ioas_unmap(r.ioas, roiova, 64 * 1024, NULL);
	p2p_ioas_unmap(r.ioas, woiova, 64 * 1024, NULL);
	unmap_wr(&r, wiova, riova, len);
out:
	rig_fini(&r);
	munmap(wbuf, len);
	munmap(rbuf, len);
	munmap(ro, 64 * 1024);
	munmap(wo, 64 * 1024);
	munmap(edgebuf, 64 * 1024);
}

/*
 * The program shrinks a memfd that the device's IOAS maps (IOAS_MAP_FILE):
 * READ and WRITE commands whose data reaches the vanished part complete as
 * translation faults; the device and the program go on.
 */
static void test_truncated(void)
{
	uint64_t iova = 0;
	struct p2p_sd_cqe cqe;
	struct rig r;
	uint8_t *va;
	int fd;

	t_section("memfd truncated under the device");
	CHECK_OK(rig_init(&r, "0000:31:00.0", NULL, 16 * MiB, 64));
	fd = memfd_create("sd-shrink", MFD_CLOEXEC);
	CHECK(fd >= 0 && ftruncate(fd, 8 * BLK) == 0);
	va = mmap(NULL, 8 * BLK, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(va != MAP_FAILED);
	if (!r.drv.sq || va == MAP_FAILED)
		goto out;
	CHECK_OK(p2p_ioas_map_file(r.ioas, fd, 0, 8 * BLK, &iova,
				   P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE));
	memset(va, 0x4d, 8 * BLK);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, 0, 8, iova), P2P_SD_OK);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, 0, 8, iova), P2P_SD_OK);

	CHECK(ftruncate(fd, 2 * BLK) == 0);
	/* Entirely in the vanished part, both directions. */
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, 0, 2, iova + 4 * BLK), P2P_SD_FAULT);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, 0, 2, iova + 4 * BLK), P2P_SD_FAULT);
	/* Across the new end: the first part moves, then the fault. */
	cqe = run(&r, P2P_SD_OP_READ, 0, 4, iova, 5);
	CHECK_STATUS(cqe.status, P2P_SD_FAULT);
	CHECK(cqe.bytes == 2 * BLK);
	/* The rest works, and nothing was flagged on the queues. */
	CHECK_STATUS(run_status(&r, P2P_SD_OP_READ, 0, 2, iova), P2P_SD_OK);
	CHECK(va[0] == 0x4d && va[2 * BLK - 1] == 0x4d);
	CHECK(!(reg(&r, P2P_SD_REG_STATUS, 4) & P2P_SD_STATUS_QUEUE_FAULT));
	p2p_ioas_unmap(r.ioas, iova, 8 * BLK, NULL);
out:
	rig_fini(&r);
	if (va != MAP_FAILED)
		munmap(va, 8 * BLK);
	if (fd >= 0)
		close(fd);
}

/* ---------------------------------------------------------------------- */
/* Many commands in flight                                                 */

static void test_many(void)
{
	enum { N = 240, ENTRIES = 256 };
	const uint64_t len = 64 * MiB;
	uint8_t *wbuf = sysmem(len), *rbuf = sysmem(len);
	static struct p2p_sd_cqe cqes[N];
	uint32_t lba[N], nb[N], seen[N];
	uint64_t wiova = 0, riova = 0, pos = 0, seed = 7;
	struct rig r;
	bool ok;

	t_section("many in flight");
	CHECK(wbuf && rbuf);
	CHECK_OK(rig_init(&r, "0000:30:00.0", NULL, 128 * MiB, ENTRIES));
	if (!r.drv.sq || !wbuf || !rbuf)
		goto out;
	map_wr(&r, wbuf, rbuf, len, &wiova, &riova);
	fill(wbuf, len, 99, 0);
	memset(rbuf, POISON, len);
	/* Disjoint extents of 1..64 blocks, buffer offset == byte offset in the image. */
	for (int i = 0; i < N; i++) {
		seed = mix(seed + (uint64_t)i);
		nb[i] = 1 + (uint32_t)(seed % 64);
		lba[i] = (uint32_t)(pos / BLK);
		pos += (nb[i] + (seed >> 32) % 3) * BLK;
	}
	CHECK(pos <= len);
	for (int pass = 0; pass < 2; pass++) {
		bool write = pass == 0;

		memset(seen, 0, sizeof(seen));
		for (int i = 0; i < N; i++) {
			uint64_t off = (uint64_t)lba[i] * BLK;
			int slot = write ? sd_drv_write(&r.drv, lba[i], nb[i], wiova + off,
							 P2P_SD_CMD_IRQ, (uint32_t)i)
					 : sd_drv_read(&r.drv, lba[i], nb[i], riova + off,
							P2P_SD_CMD_IRQ, (uint32_t)i);

			CHECK(slot >= 0);
			if (i % 60 == 59)
				CHECK_OK(sd_drv_kick(&r.drv));
		}
		CHECK(sd_drv_room(&r.drv) == ENTRIES - N);
		CHECK_OK(sd_drv_kick(&r.drv));
		ok = reap_n(&r, cqes, N);
		CHECK(ok);
		for (int i = 0; ok && i < N; i++) {
			uint32_t id = cqes[i].id;

			CHECK(id < N);
			if (id >= N)
				continue;
			CHECK(!seen[id]);
			seen[id] = 1;
			CHECK_STATUS(cqes[i].status, P2P_SD_OK);
			CHECK(cqes[i].bytes == nb[id] * BLK);
		}
		CHECK(reg(&r, P2P_SD_REG_SQ_HEAD, 4) == r.drv.sq_tail);
		if (write)
			CHECK_STATUS(run_status(&r, P2P_SD_OP_FLUSH, 0, 0, 0), P2P_SD_OK);
	}
	for (int i = 0; i < N; i++) {
		uint64_t off = (uint64_t)lba[i] * BLK;

		CHECK(!memcmp(rbuf + off, wbuf + off, nb[i] * BLK));
		if (i + 1 < N)
			CHECK(all_byte(rbuf + off + nb[i] * BLK, (uint64_t)lba[i + 1] * BLK - off -
								      nb[i] * BLK, POISON));
	}
	unmap_wr(&r, wiova, riova, len);
out:
	rig_fini(&r);
	munmap(wbuf, len);
	munmap(rbuf, len);
}

/* ---------------------------------------------------------------------- */
/* Reset of the storage device with commands in flight                     */

static void test_reset_inflight(void)
{
	enum { N = 256, NB = 64 };
	const uint64_t each = NB * BLK, len = N * each, image = 32 * MiB;
	uint8_t *rbuf = sysmem(len), *want = malloc(image);
	static struct p2p_sd_cqe snap[N], cqes[N];
	bool done[N] = { false };
	uint32_t ncqe = 0, nmissing = 0;
	uint64_t riova = 0;
	struct rig r;
	char path[128];
	int slot;

	t_section("reset with commands in flight");
	CHECK(rbuf && want);
	r.file_fd = -1;
	r.drv.efd = -1;
	r.vdev = NULL;
	{
		int fd = make_image(path, sizeof(path), image, 5);

		CHECK(fd >= 0);
		if (fd < 0 || !rbuf || !want) {
			if (fd >= 0)
				close(fd);
			goto out_nodev;
		}
		CHECK_OK(rig_init(&r, "0000:30:00.0", path, 0, N));
		r.file_fd = fd;
		unlink(path);
	}
	if (!r.drv.sq)
		goto out;
	CHECK(pread(r.file_fd, want, image, 0) == (ssize_t)image);
	CHECK_OK(p2p_ioas_map(r.ioas, rbuf, len, &riova,
			      P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE));
	memset(rbuf, POISON, len);
	memset(r.drv.cq, 0, N * sizeof(struct p2p_sd_cqe));
	for (uint32_t i = 0; i < N; i++) {
		uint64_t lba = (i * 37u % (image / each)) * NB;

		slot = sd_drv_read(&r.drv, lba, NB, riova + i * each, P2P_SD_CMD_IRQ, i);
		CHECK(slot >= 0);
	}
	CHECK_OK(sd_drv_kick(&r.drv));
	/* Once the device fetched something: in flight, or done, or not fetched yet. */
	for (int i = 0; i < HANG_MS * 10 && reg(&r, P2P_SD_REG_SQ_HEAD, 4) == 0; i++)
		usleep(100);
	CHECK(reg(&r, P2P_SD_REG_SQ_HEAD, 4) != 0);
	CHECK_OK(p2p_vfio_device_reset(r.vdev));
	/* Every register is clear: nothing in flight, nothing fetched. */
	CHECK(reg(&r, P2P_SD_REG_SQ_HEAD, 4) == 0 && reg(&r, P2P_SD_REG_SQ_TAIL, 4) == 0);
	CHECK(reg(&r, P2P_SD_REG_CQ_TAIL, 4) == 0 && reg(&r, P2P_SD_REG_CTRL, 4) == 0);
	CHECK(reg(&r, P2P_SD_REG_SQ, 8) == 0 && reg(&r, P2P_SD_REG_CQ, 8) == 0);
	CHECK(reg(&r, P2P_SD_REG_QUEUE_SIZE, 4) == 0 && reg(&r, P2P_SD_REG_STATUS, 4) == 0);
	CHECK(reg(&r, P2P_SD_REG_CAPACITY, 8) == image / BLK);
	memcpy(snap, r.drv.cq, sizeof(snap));
	/* Completions were written in order from slot 0: a prefix, no holes. */
	while (ncqe < N && snap[ncqe].status != P2P_SD_PENDING)
		ncqe++;
	for (uint32_t i = ncqe; i < N; i++)
		CHECK(snap[i].status == P2P_SD_PENDING);
	CHECK(ncqe >= 1);
	for (uint32_t k = 0; k < ncqe; k++) {
		uint32_t id = snap[k].id;

		CHECK(id < N);
		if (id >= N)
			continue;
		CHECK(!done[id]);
		done[id] = true;
		/* In flight at the reset: completed normally. */
		CHECK_STATUS(snap[k].status, P2P_SD_OK);
		CHECK(snap[k].bytes == each);
	}
	/* Completed commands have their data; the others never touched memory. */
	for (uint32_t i = 0; i < N; i++) {
		uint64_t lba = (i * 37u % (image / each)) * NB;

		if (done[i]) {
			CHECK(!memcmp(rbuf + i * each, want + lba * BLK, each));
		} else {
			CHECK(all_byte(rbuf + i * each, each, POISON));
			nmissing++;
		}
	}
	printf("reset: %u of %u commands completed before the reset, %u dropped unfetched\n",
	       ncqe, N, nmissing);
	/* Nothing completes after the reset returned (stragglers would show here). */
	usleep(20000);
	CHECK(!memcmp(snap, r.drv.cq, sizeof(snap)));

	/* Re-init: the driver starts over and resubmits what was dropped. */
	sd_drv_fini(&r.drv);
	CHECK_OK(sd_drv_init(&r.drv, r.vdev, r.ioas, N));
	if (!r.drv.sq)
		goto out_unmap;
	for (uint32_t i = 0; i < N; i++) {
		uint64_t lba = (i * 37u % (image / each)) * NB;

		if (!done[i])
			CHECK(sd_drv_read(&r.drv, lba, NB, riova + i * each, P2P_SD_CMD_IRQ, i) >=
			      0);
	}
	CHECK_OK(sd_drv_kick(&r.drv));
	CHECK(reap_n(&r, cqes, nmissing));
	for (uint32_t k = 0; k < nmissing; k++) {
		CHECK(cqes[k].id < N && !done[cqes[k].id]);
		CHECK_STATUS(cqes[k].status, P2P_SD_OK);
		if (cqes[k].id < N)
			done[cqes[k].id] = true;
	}
	for (uint32_t i = 0; i < N; i++) {
		uint64_t lba = (i * 37u % (image / each)) * NB;

		CHECK(done[i]);
		CHECK(!memcmp(rbuf + i * each, want + lba * BLK, each));
	}
	/* A write still works too. */
	CHECK_STATUS(run_status(&r, P2P_SD_OP_WRITE, 0, NB, riova + each), P2P_SD_OK);
	CHECK_STATUS(run_status(&r, P2P_SD_OP_FLUSH, 0, 0, 0), P2P_SD_OK);
	CHECK(file_equals(r.file_fd, 0, rbuf + each, each));

	/* Unplug with commands in flight: release finishes them. */
	for (uint32_t i = 0; i < N; i++)
		CHECK(sd_drv_read(&r.drv, (i % 8) * NB, NB, riova + i * each, 0, i) >= 0);
	CHECK_OK(sd_drv_kick(&r.drv));
out_unmap:
	p2p_ioas_unmap(r.ioas, riova, len, NULL);
out:
	rig_fini(&r);
out_nodev:
	munmap(rbuf, len);
	free(want);
}

/* ---------------------------------------------------------------------- */
/* Peer to peer: a GPU-like device's BAR through dma-bufs                  */

#define GPU_BAR (64 * MiB)
#define IMAGE (32 * MiB)
#define WIN (16 * MiB) /* single-range dma-buf: BAR2 [8 MiB, 24 MiB) */
#define WIN_OFF (8 * MiB)

struct p2p_rig {
	struct rig sd;
	struct t_dev gpu;
	uint8_t *bar; /* the device's own view of BAR2 */
	uint8_t *image; /* what the file holds */
	int fd1, fd4;	/* single-range, 4-range dma-bufs */
	uint64_t iova1, iova4;
	struct vfio_region_dma_range r4[4];
};

/* Bytes [@o, @o + @len) of the 4-range dma-buf are at BAR offsets...: copy them out. */
static void r4_read(struct p2p_rig *p, uint64_t o, uint8_t *out, uint64_t len)
{
	for (int i = 0; i < 4 && len; i++) {
		uint64_t l = p->r4[i].length;

		if (o >= l) {
			o -= l;
			continue;
		}
		uint64_t n = l - o < len ? l - o : len;

		memcpy(out, p->bar + p->r4[i].offset + o, n);
		out += n;
		len -= n;
		o = 0;
	}
}

static void r4_fill(struct p2p_rig *p, uint64_t seed)
{
	uint64_t pos = 0;

	for (int i = 0; i < 4; i++) {
		fill(p->bar + p->r4[i].offset, p->r4[i].length, seed, pos);
		pos += p->r4[i].length;
	}
}

static bool image_check(struct p2p_rig *p, uint64_t off, const uint8_t *data, uint64_t len)
{
	/* Against the file itself and against what we know it holds. */
	return file_equals(p->sd.file_fd, off, data, len) && !memcmp(p->image + off, data, len);
}

/* Submit @n reads of @nb blocks into [iova, iova + span), cycling; ids from @id0. */
static void submit_reads(struct rig *r, uint32_t n, uint32_t nb, uint64_t iova, uint64_t span,
			 uint32_t id0)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = (uint64_t)i * nb * BLK % span;

		CHECK(sd_drv_read(&r->drv, (off / BLK) % (IMAGE / BLK - nb), nb, iova + off,
				  P2P_SD_CMD_IRQ, id0 + i) >= 0);
	}
	CHECK_OK(sd_drv_kick(&r->drv));
}

static int p2p_rig_init(struct p2p_rig *p)
{
	struct vfio_region_dma_range one = { WIN_OFF, WIN };
	char path[128];
	int fd, ret;

	memset(p, 0, sizeof(*p));
	p->fd1 = p->fd4 = -1;
	p->sd.file_fd = -1;
	p->sd.drv.efd = -1;
	/* Four 3 MiB runs, scattered over the top of the BAR, in reverse. */
	for (int i = 0; i < 4; i++)
		p->r4[i] = (struct vfio_region_dma_range){ 60 * MiB - (uint64_t)(i + 1) * 4 * MiB +
								   (uint64_t)i * 4096,
							   3 * MiB };
	p->image = malloc(IMAGE);
	fd = make_image(path, sizeof(path), IMAGE, 11);
	if (fd < 0 || !p->image) {
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	ret = rig_init(&p->sd, "0000:31:00.0", path, 0, 256);
	p->sd.file_fd = fd;
	unlink(path);
	if (ret)
		return ret;
	if (pread(fd, p->image, IMAGE, 0) != (ssize_t)IMAGE)
		return -EIO;
	ret = t_dev_create(&p->gpu, "0000:32:00.0", GPU_BAR, 0, NULL, 8);
	if (ret)
		return ret;
	if ((ret = t_mem_enable(p->gpu.vdev, true)))
		return ret;
	p->bar = t_bar_ptr(p->gpu.pci, 2, 0);
	p->fd1 = t_dmabuf(p->gpu.vdev, 2, &one, 1);
	p->fd4 = t_dmabuf(p->gpu.vdev, 2, p->r4, 4);
	if (p->fd1 < 0 || p->fd4 < 0)
		return p->fd1 < 0 ? p->fd1 : p->fd4;
	p->iova1 = 1ull << 39;
	ret = p2p_ioas_map_file(p->sd.ioas, p->fd1, 0, WIN, &p->iova1,
				P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					P2P_IOAS_MAP_WRITEABLE);
	if (ret)
		return ret;
	/* Far from everything else: nothing is mapped right after either window. */
	p->iova4 = 1ull << 40;
	return p2p_ioas_map_file(p->sd.ioas, p->fd4, 0, 12 * MiB, &p->iova4,
				 P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					 P2P_IOAS_MAP_WRITEABLE | P2P_IOAS_MAP_EXTENDED);
}

static void p2p_rig_fini(struct p2p_rig *p)
{
	sd_drv_fini(&p->sd.drv);
	if (p->sd.ioas)
		p2p_ioas_unmap(p->sd.ioas, 0, 0, NULL);
	if (p->fd1 >= 0)
		p2p_close(p->fd1);
	if (p->fd4 >= 0)
		p2p_close(p->fd4);
	if (p->gpu.vdev)
		t_dev_destroy(&p->gpu);
	rig_fini(&p->sd);
	free(p->image);
}

static void test_p2p_data(struct p2p_rig *p)
{
	enum { N = 16 };
	static struct p2p_sd_cqe cqes[64];
	uint8_t *tmp = malloc(12 * MiB);
	uint64_t pos;
	uint32_t n;

	t_section("p2p read, single range");
	CHECK(tmp);
	if (!tmp)
		return;
	memset(p->bar, POISON, GPU_BAR);
	/* File [0, 16 MiB) -> BAR [8, 24 MiB) in 1 MiB commands, all in flight together. */
	for (uint32_t i = 0; i < N; i++)
		CHECK(sd_drv_read(&p->sd.drv, i * 256, 256, p->iova1 + i * MiB, P2P_SD_CMD_IRQ, i) >=
		      0);
	CHECK_OK(sd_drv_kick(&p->sd.drv));
	CHECK(reap_n(&p->sd, cqes, N));
	for (uint32_t i = 0; i < N; i++) {
		CHECK_STATUS(cqes[i].status, P2P_SD_OK);
		CHECK(cqes[i].bytes == MiB);
	}
	CHECK(image_check(p, 0, p->bar + WIN_OFF, WIN));
	CHECK(!memcmp(t_bar_ptr(p->gpu.pci, 2, WIN_OFF), p->image, WIN));
	CHECK(all_byte(p->bar, WIN_OFF, POISON));
	CHECK(all_byte(p->bar + WIN_OFF + WIN, GPU_BAR - WIN_OFF - WIN, POISON));
	/* Odd sizes and offsets inside the dma-buf. */
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 7000, 5, p->iova1 + 12288), P2P_SD_OK);
	CHECK(image_check(p, 7000 * BLK, p->bar + WIN_OFF + 12288, 5 * BLK));
	/* The last block of the dma-buf, and one past it. */
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 3, 1, p->iova1 + WIN - BLK), P2P_SD_OK);
	CHECK(image_check(p, 3 * BLK, p->bar + WIN_OFF + WIN - BLK, BLK));
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 3, 2, p->iova1 + WIN - BLK),
		     P2P_SD_FAULT);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_WRITE, 3, 2, p->iova4 + 12 * MiB - BLK),
		     P2P_SD_FAULT);

	t_section("p2p write, single range");
	fill(p->bar + WIN_OFF, WIN, 23, 0);
	for (uint32_t i = 0; i < 8; i++)
		CHECK(sd_drv_write(&p->sd.drv, IMAGE / BLK / 2 + i * 512, 512, p->iova1 + i * 2 * MiB,
				   P2P_SD_CMD_IRQ, i) >= 0);
	CHECK(sd_drv_flush(&p->sd.drv, P2P_SD_CMD_IRQ, 8) >= 0);
	CHECK_OK(sd_drv_kick(&p->sd.drv));
	CHECK(reap_n(&p->sd, cqes, 9));
	for (uint32_t i = 0; i < 9; i++)
		CHECK_STATUS(cqes[i].status, P2P_SD_OK);
	/*
	 * The flush may complete before the writes (completion order): flush again,
	 * then compare with the file.
	 */
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_FLUSH, 0, 0, 0), P2P_SD_OK);
	memcpy(p->image + IMAGE / 2, p->bar + WIN_OFF, WIN);
	CHECK(image_check(p, IMAGE / 2, p->bar + WIN_OFF, WIN));

	t_section("p2p read, multi range");
	/* 12 MiB of file -> the 4-range dma-buf in 197-block commands crossing the runs. */
	memset(p->bar, POISON, GPU_BAR);
	n = 0;
	for (pos = 0; pos < 12 * MiB; n++) {
		uint32_t nb = (uint32_t)((12 * MiB - pos) / BLK < 197 ? (12 * MiB - pos) / BLK : 197);

		CHECK(sd_drv_read(&p->sd.drv, 1000 + pos / BLK, nb, p->iova4 + pos, P2P_SD_CMD_IRQ,
				  n) >= 0);
		pos += nb * BLK;
	}
	CHECK(n <= 64);
	CHECK_OK(sd_drv_kick(&p->sd.drv));
	CHECK(reap_n(&p->sd, cqes, n));
	for (uint32_t i = 0; i < n; i++)
		CHECK_STATUS(cqes[i].status, P2P_SD_OK);
	r4_read(p, 0, tmp, 12 * MiB);
	CHECK(image_check(p, 1000 * BLK, tmp, 12 * MiB));
	/* Nothing outside the four runs was touched. */
	{
		uint64_t lo = p->r4[3].offset, covered = 0;

		for (int i = 0; i < 4; i++)
			covered += p->r4[i].length;
		CHECK(covered == 12 * MiB);
		CHECK(all_byte(p->bar, lo, POISON));
		for (int i = 3; i > 0; i--) {
			uint64_t end = p->r4[i].offset + p->r4[i].length;

			CHECK(all_byte(p->bar + end, p->r4[i - 1].offset - end, POISON));
		}
		CHECK(all_byte(p->bar + p->r4[0].offset + p->r4[0].length,
			       GPU_BAR - p->r4[0].offset - p->r4[0].length, POISON));
	}
	/* One command over the whole dma-buf: one readv of four runs. */
	memset(p->bar, POISON, GPU_BAR);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 77, 3072, p->iova4), P2P_SD_OK);
	r4_read(p, 0, tmp, 12 * MiB);
	CHECK(image_check(p, 77 * BLK, tmp, 12 * MiB));

	t_section("p2p write, multi range");
	r4_fill(p, 31);
	n = 0;
	for (pos = 0; pos < 12 * MiB; n++) {
		uint32_t nb = (uint32_t)((12 * MiB - pos) / BLK < 300 ? (12 * MiB - pos) / BLK : 300);

		CHECK(sd_drv_write(&p->sd.drv, 2 * MiB / BLK + pos / BLK, nb, p->iova4 + pos,
				   P2P_SD_CMD_IRQ, n) >= 0);
		pos += nb * BLK;
	}
	CHECK_OK(sd_drv_kick(&p->sd.drv));
	CHECK(reap_n(&p->sd, cqes, n));
	for (uint32_t i = 0; i < n; i++)
		CHECK_STATUS(cqes[i].status, P2P_SD_OK);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_FLUSH, 0, 0, 0), P2P_SD_OK);
	r4_read(p, 0, tmp, 12 * MiB);
	memcpy(p->image + 2 * MiB, tmp, 12 * MiB);
	CHECK(image_check(p, 2 * MiB, tmp, 12 * MiB));
	free(tmp);
}

/* More runs than one readv takes: 80 scattered pages in one command. */
static void test_p2p_many_runs(struct p2p_rig *p)
{
	struct vfio_region_dma_range rg[80];
	uint8_t *tmp = malloc(80 * BLK);
	uint64_t iova = 0;
	int fd;

	t_section("p2p, 80 runs in one command");
	CHECK(tmp);
	if (!tmp)
		return;
	for (int i = 0; i < 80; i++)
		rg[i] = (struct vfio_region_dma_range){ 30 * MiB - (uint64_t)i * 2 * BLK, BLK };
	fd = t_dmabuf(p->gpu.vdev, 2, rg, 80);
	CHECK(fd >= 0);
	if (fd < 0) {
		free(tmp);
		return;
	}
	CHECK_OK(p2p_ioas_map_file(p->sd.ioas, fd, 0, 80 * BLK, &iova,
				   P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE |
					   P2P_IOAS_MAP_EXTENDED));
	memset(p->bar, POISON, GPU_BAR);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 500, 80, iova), P2P_SD_OK);
	for (int i = 0; i < 80; i++)
		memcpy(tmp + i * BLK, p->bar + rg[i].offset, BLK);
	CHECK(image_check(p, 500 * BLK, tmp, 80 * BLK));
	/* And back: BAR pages -> file. */
	for (int i = 0; i < 80; i++)
		fill(p->bar + rg[i].offset, BLK, 57, (uint64_t)i * BLK);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_WRITE, 900, 80, iova), P2P_SD_OK);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_FLUSH, 0, 0, 0), P2P_SD_OK);
	for (int i = 0; i < 80; i++)
		memcpy(tmp + i * BLK, p->bar + rg[i].offset, BLK);
	memcpy(p->image + 900 * BLK, tmp, 80 * BLK);
	CHECK(image_check(p, 900 * BLK, tmp, 80 * BLK));
	CHECK_OK(p2p_ioas_unmap(p->sd.ioas, iova, 80 * BLK, NULL));
	p2p_close(fd);
	free(tmp);
}

/* After a revoke: re-import the single-range dma-buf at the same IOVA, reads work. */
static void remap_and_check(struct p2p_rig *p)
{
	uint64_t iova = p->iova1;

	/* A revoked area is never remapped by itself, even with memory back on. */
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 0, 1, p->iova1), P2P_SD_REVOKED);
	CHECK_OK(p2p_ioas_unmap(p->sd.ioas, p->iova1, WIN, NULL));
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 0, 1, p->iova1), P2P_SD_FAULT);
	CHECK_OK(p2p_ioas_map_file(p->sd.ioas, p->fd1, 0, WIN, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	CHECK(iova == p->iova1);
	memset(p->bar + WIN_OFF, POISON, WIN);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 40, 1024, p->iova1 + MiB), P2P_SD_OK);
	CHECK(image_check(p, 40 * BLK, p->bar + WIN_OFF + MiB, 4 * MiB));
}

static void test_p2p_revoked(struct p2p_rig *p)
{
	struct p2p_sd_cqe cqe;

	t_section("status: revoked");
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 0, 1, p->iova1), P2P_SD_OK);
	CHECK_OK(t_mem_enable(p->gpu.vdev, false));
	memset(p->bar + WIN_OFF, POISON, WIN);
	cqe = run(&p->sd, P2P_SD_OP_READ, 0, 16, p->iova1, 21);
	CHECK_STATUS(cqe.status, P2P_SD_REVOKED);
	CHECK(cqe.id == 21 && cqe.bytes == 0);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_WRITE, 0, 16, p->iova1), P2P_SD_REVOKED);
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, 0, 16, p->iova4), P2P_SD_REVOKED);
	CHECK(all_byte(p->bar + WIN_OFF, WIN, POISON));
	/* Bad block address still comes first. */
	CHECK_STATUS(run_status(&p->sd, P2P_SD_OP_READ, IMAGE / BLK, 1, p->iova1),
		     P2P_SD_BAD_LBA);
	CHECK_OK(t_mem_enable(p->gpu.vdev, true));
	remap_and_check(p);
}

/*
 * Revoke the GPU's memory (COMMAND.MEM off, or a reset) while reads into
 * its BAR are in flight.  Once the revoke returns not one byte lands in
 * the BAR, and every command submitted after it reports REVOKED.
 */
static void revoke_inflight(struct p2p_rig *p, bool reset)
{
	enum { BEFORE = 160, AFTER = 64, NB = 512 };
	static struct p2p_sd_cqe cqes[BEFORE + AFTER];
	uint8_t *snap = malloc(GPU_BAR);
	uint32_t ok = 0, revoked = 0;

	CHECK(snap);
	if (!snap)
		return;
	memset(p->bar, POISON, GPU_BAR);
	submit_reads(&p->sd, BEFORE, NB, p->iova1, WIN, 0);
	/* Wait for one to be sure I/O is streaming, then pull the memory. */
	CHECK(sd_drv_wait(&p->sd.drv, 1, HANG_MS) >= 1);
	if (reset)
		CHECK_OK(p2p_vfio_device_reset(p->gpu.vdev));
	else
		CHECK_OK(t_mem_enable(p->gpu.vdev, false));
	memcpy(snap, p->bar, GPU_BAR);
	/* Keep reading into it. */
	submit_reads(&p->sd, AFTER, NB, p->iova1, WIN, 1000);
	CHECK(reap_n(&p->sd, cqes, BEFORE + AFTER));
	for (uint32_t i = 0; i < BEFORE + AFTER; i++) {
		if (cqes[i].id >= 1000) {
			CHECK_STATUS(cqes[i].status, P2P_SD_REVOKED);
			CHECK(cqes[i].bytes == 0);
		} else if (cqes[i].status == P2P_SD_OK) {
			ok++;
		} else {
			CHECK_STATUS(cqes[i].status, P2P_SD_REVOKED);
			revoked++;
		}
	}
	CHECK(ok + revoked == BEFORE);
	/* A straggler, if any, has had every chance to land by now. */
	usleep(20000);
	CHECK(!memcmp(snap, p->bar, GPU_BAR));
	printf("%s: %u reads completed before it, %u revoked, %u after it all revoked\n",
	       reset ? "GPU reset" : "COMMAND.MEM off", ok, revoked, AFTER);
	free(snap);
}

static void test_p2p_revoke_inflight(struct p2p_rig *p)
{
	t_section("p2p: COMMAND.MEM off with reads in flight");
	revoke_inflight(p, false);
	CHECK_OK(t_mem_enable(p->gpu.vdev, true));
	remap_and_check(p);

	t_section("p2p: GPU reset with reads in flight");
	revoke_inflight(p, true);
	/* The reset un-revoked the dma-buf (memory is on); the IOAS area stays revoked. */
	remap_and_check(p);
}

static void *revoker(void *arg)
{
	struct p2p_rig *p = arg;

	CHECK_OK(t_mem_enable(p->gpu.vdev, false));
	return NULL;
}

/*
 * The driver unmaps the dma-buf area while a revoke waits for the reads in
 * flight into it: the device's last p2p_ioas_dma_end() then frees the
 * area's pages, and must not wait for the revoke that waits for it.
 */
static void test_p2p_revoke_vs_unmap(struct p2p_rig *p)
{
	enum { N = 64, NB = 512 };
	static struct p2p_sd_cqe cqes[N];
	struct vfio_region_dma_range one = { WIN_OFF, WIN };

	t_section("p2p: revoke racing an unmap, reads in flight");
	for (int it = 0; it < 40; it++) {
		uint64_t iova = 1ull << 41;
		pthread_t th;
		int fd;

		CHECK_OK(t_mem_enable(p->gpu.vdev, true));
		fd = t_dmabuf(p->gpu.vdev, 2, &one, 1);
		CHECK(fd >= 0);
		if (fd < 0)
			return;
		CHECK_OK(p2p_ioas_map_file(p->sd.ioas, fd, 0, WIN, &iova,
					   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
						   P2P_IOAS_MAP_WRITEABLE));
		submit_reads(&p->sd, N, NB, iova, WIN, 0);
		CHECK(sd_drv_wait(&p->sd.drv, 1, HANG_MS) >= 1);
		CHECK(!pthread_create(&th, NULL, revoker, p));
		usleep((useconds_t)(it % 8) * 150);
		CHECK_OK(p2p_ioas_unmap(p->sd.ioas, iova, WIN, NULL));
		pthread_join(th, NULL);
		CHECK(reap_n(&p->sd, cqes, N));
		for (int i = 0; i < N; i++)
			CHECK(cqes[i].status == P2P_SD_OK || cqes[i].status == P2P_SD_REVOKED ||
			      cqes[i].status == P2P_SD_FAULT);
		p2p_close(fd);
	}
	CHECK_OK(t_mem_enable(p->gpu.vdev, true));
}

static void test_p2p(void)
{
	struct p2p_rig p;
	int ret;

	t_section("p2p setup");
	ret = p2p_rig_init(&p);
	CHECK_OK(ret);
	if (!ret) {
		test_p2p_data(&p);
		test_p2p_many_runs(&p);
		test_p2p_revoked(&p);
		test_p2p_revoke_inflight(&p);
		test_p2p_revoke_vs_unmap(&p);
	}
	p2p_rig_fini(&p);
}

int main(void)
{
	t_begin();
	test_create();
	test_registers();
	test_commands();
	test_truncated();
	test_many();
	test_reset_inflight();
	test_p2p();
	return t_end();
}
