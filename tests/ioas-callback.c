// SPDX-License-Identifier: MIT
/*
 * Callback areas of an IOAS (p2p_ioas_map_callback()): memory that is not
 * in this process (a vfio-user client's, mapped without an fd), reached by
 * calling its owner.  Covered: argument errors and overlap, translation
 * says -EREMOTE, p2p_ioas_access_rw() and p2p_pci_dev_dma_rw() call the
 * owner with the right IOVA and bytes, protection, IOAS_COPY refused, an
 * unmap waits for a call in flight and no call follows it, and the device
 * models' bounce fallback: copy-engine copies from, to and between
 * callback areas, storage READ/WRITE through them (several bounce parts, a
 * buffer half in memory and half in a callback area), and an owner error
 * seen by both devices as a translation fault.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ce_driver.h"
#include "harness.h"
#include "sd_driver.h"

#define CB_IOVA 0x100000000ull
#define CB_LEN (4ull << 20)

/* The owner: its memory, what it was asked, and how it misbehaves. */
struct owner {
	uint8_t *mem;
	uint64_t base, len;
	atomic_uint calls;
	atomic_uint bad; /* an access outside the area */
	atomic_bool in_call;
	atomic_bool fail; /* answer -EIO */
	unsigned int delay_ms;
};

static int owner_rw(void *priv, uint64_t iova, void *data, uint64_t len, bool write)
{
	struct owner *o = priv;

	atomic_store(&o->in_call, true);
	atomic_fetch_add(&o->calls, 1);
	if (o->delay_ms)
		usleep(o->delay_ms * 1000);
	if (iova < o->base || !len || iova - o->base + len > o->len) {
		atomic_fetch_add(&o->bad, 1);
		atomic_store(&o->in_call, false);
		return -EINVAL;
	}
	if (atomic_load(&o->fail)) {
		atomic_store(&o->in_call, false);
		return -EIO;
	}
	if (write)
		memcpy(o->mem + (iova - o->base), data, len);
	else
		memcpy(data, o->mem + (iova - o->base), len);
	atomic_store(&o->in_call, false);
	return 0;
}

static const struct p2p_ioas_callback_ops owner_ops = { .rw = owner_rw };

static uint8_t *anon(uint64_t len)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void fill(uint8_t *p, uint64_t len, uint32_t seed)
{
	for (uint64_t i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 2654435761u + seed) >> 7);
}

static void owner_init(struct owner *o)
{
	memset(o, 0, sizeof(*o));
	o->mem = anon(CB_LEN);
	o->base = CB_IOVA;
	o->len = CB_LEN;
	CHECK(o->mem != NULL);
}

/* ---------------------------------------------------------------------- */

struct unmap_race {
	struct p2p_ioas *ioas;
	struct owner *o;
	int ret;
};

static void *access_thread(void *arg)
{
	struct unmap_race *u = arg;
	uint8_t buf[64];

	u->ret = p2p_ioas_access_rw(u->ioas, CB_IOVA + 4096, buf, sizeof(buf), false);
	return NULL;
}

static void test_ioas(void)
{
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas, *other;
	struct p2p_dma_seg seg;
	struct owner o;
	uint8_t buf[8192], back[8192];
	uint64_t done, iova;
	uint32_t id;
	const uint32_t rw = P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE;

	t_section("p2p_ioas_map_callback(): arguments, overlap, translation");
	owner_init(&o);
	CHECK_OK(p2p_iommufd_open(&ctx));
	CHECK_OK(p2p_ioas_alloc(ctx, &id, &ioas));
	CHECK_OK(p2p_ioas_alloc(ctx, &id, &other));
	CHECK_ERR(p2p_ioas_map_callback(ioas, CB_IOVA, CB_LEN, rw, NULL, &o), -EINVAL);
	CHECK_ERR(p2p_ioas_map_callback(ioas, CB_IOVA, 0, rw, &owner_ops, &o), -EINVAL);
	CHECK_ERR(p2p_ioas_map_callback(ioas, CB_IOVA, CB_LEN, 0, &owner_ops, &o), -EINVAL);
	CHECK_ERR(p2p_ioas_map_callback(ioas, CB_IOVA, CB_LEN, rw | P2P_IOAS_MAP_EXTENDED,
					&owner_ops, &o), -EINVAL);
	CHECK_OK(p2p_ioas_map_callback(ioas, CB_IOVA, CB_LEN, rw, &owner_ops, &o));
	CHECK_ERR(p2p_ioas_map_callback(ioas, CB_IOVA + 4096, 4096, rw, &owner_ops, &o), -EEXIST);
	CHECK_ERR(p2p_ioas_dma_begin(ioas, CB_IOVA, 64, P2P_DMA_READ, &seg), -EREMOTE);
	CHECK_ERR(p2p_ioas_dma_begin(ioas, CB_IOVA - 4096, 64, P2P_DMA_READ, &seg), -ENOENT);
	CHECK((atomic_load(&o.calls)) == (0));

	t_section("p2p_ioas_access_rw() and p2p_ioas_callback_rw() call the owner");
	fill(buf, sizeof(buf), 1);
	CHECK_OK(p2p_ioas_access_rw(ioas, CB_IOVA + 100, buf, sizeof(buf), true));
	CHECK(!memcmp(o.mem + 100, buf, sizeof(buf)));
	memset(back, 0, sizeof(back));
	CHECK_OK(p2p_ioas_access_rw(ioas, CB_IOVA + 100, back, sizeof(back), false));
	CHECK(!memcmp(back, buf, sizeof(back)));
	/* One run ends at the area's end. */
	CHECK_OK(p2p_ioas_callback_rw(ioas, CB_IOVA + CB_LEN - 10, back, 100, false, &done));
	CHECK((done) == (10));
	CHECK_ERR(p2p_ioas_access_rw(ioas, CB_IOVA + CB_LEN - 10, back, 100, false), -ENOENT);
	CHECK_ERR(p2p_ioas_callback_rw(ioas, CB_IOVA, back, 0, false, &done), -EINVAL);
	CHECK((atomic_load(&o.bad)) == (0));
	atomic_store(&o.fail, true);
	CHECK_ERR(p2p_ioas_access_rw(ioas, CB_IOVA, back, 16, false), -EIO);
	atomic_store(&o.fail, false);

	t_section("protection, IOAS_COPY, a plain area is not a callback one");
	{
		uint8_t *plain = anon(65536);

		iova = CB_IOVA + CB_LEN + 65536;
		CHECK_OK(p2p_ioas_map_callback(ioas, CB_IOVA + CB_LEN, 4096, P2P_IOAS_MAP_READABLE,
					       &owner_ops, &o));
		CHECK_ERR(p2p_ioas_access_rw(ioas, CB_IOVA + CB_LEN, buf, 16, true), -EPERM);
		CHECK_ERR(p2p_ioas_callback_rw(ioas, CB_IOVA + CB_LEN, buf, 16, true, &done), -EPERM);
		CHECK_OK(p2p_ioas_unmap(ioas, CB_IOVA + CB_LEN, 4096, NULL));
		CHECK_OK(p2p_ioas_map(ioas, plain, 65536, &iova, rw | P2P_IOAS_MAP_FIXED_IOVA));
		CHECK_ERR(p2p_ioas_callback_rw(ioas, iova, buf, 16, false, &done), -EINVAL);
		CHECK_OK(p2p_ioas_unmap(ioas, iova, 65536, NULL));
		munmap(plain, 65536);
		iova = 0;
		CHECK_ERR(p2p_ioas_copy(other, ioas, CB_IOVA, CB_LEN, &iova, rw), -EINVAL);
		CHECK((p2p_ioas_nr_areas(other)) == (0));
	}

	t_section("unmap waits for a call in flight; none after it returns");
	{
		struct unmap_race u = { .ioas = ioas, .o = &o };
		pthread_t t;
		unsigned int calls;

		o.delay_ms = 200;
		atomic_store(&o.calls, 0);
		CHECK_OK(pthread_create(&t, NULL, access_thread, &u));
		while (!atomic_load(&o.calls))
			usleep(1000);
		CHECK_OK(p2p_ioas_unmap(ioas, CB_IOVA, CB_LEN, NULL));
		/* The call was still running when the unmap started: it must be over now. */
		CHECK(!atomic_load(&o.in_call));
		pthread_join(t, NULL);
		CHECK_OK(u.ret);
		calls = atomic_load(&o.calls);
		CHECK_ERR(p2p_ioas_access_rw(ioas, CB_IOVA, buf, 16, false), -ENOENT);
		CHECK((atomic_load(&o.calls)) == (calls));
		o.delay_ms = 0;
	}
	p2p_ioas_put(other);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ctx);
	munmap(o.mem, CB_LEN);
}

/* ---------------------------------------------------------------------- */

static void test_copy_engine(void)
{
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct ce_drv drv = { .efd = -1 };
	struct owner o;
	uint64_t len = 1 << 20, plain_iova = 0x40000000;
	uint8_t *plain = anon(2 * len);
	uint32_t id, idx;

	t_section("copy engine: bounce through p2p_pci_dev_dma_rw() for callback areas");
	owner_init(&o);
	CHECK(plain != NULL);
	CHECK_OK(p2p_iommufd_open(&ctx));
	CHECK_OK(p2p_ioas_alloc(ctx, &id, &ioas));
	CHECK_OK(p2p_copy_engine_create("0000:3c:00.0", NULL, 61, &pci));
	CHECK_OK(p2p_vfio_device_open(pci, &vdev));
	CHECK_OK(p2p_vfio_device_attach_ioas(vdev, ioas));
	CHECK_OK(ce_drv_init(&drv, vdev, ioas, 16));
	CHECK_OK(p2p_ioas_map(ioas, plain, 2 * len, &plain_iova,
			      P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE));
	CHECK_OK(p2p_ioas_map_callback(ioas, CB_IOVA, CB_LEN,
				       P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE, &owner_ops, &o));

	/* remote -> local */
	fill(o.mem, len, 2);
	CHECK((ce_drv_copy(&drv, CB_IOVA, plain_iova, len)) == (P2P_CE_OK));
	CHECK(!memcmp(plain, o.mem, len));
	/* local -> remote (an odd length and offset) */
	fill(plain + len, len, 3);
	CHECK((ce_drv_copy(&drv, plain_iova + len + 3, CB_IOVA + len + 5, len - 100)) == (P2P_CE_OK));
	CHECK(!memcmp(plain + len + 3, o.mem + len + 5, len - 100));
	/* remote -> remote */
	CHECK((ce_drv_copy(&drv, CB_IOVA, CB_IOVA + 2 * len, len)) == (P2P_CE_OK));
	CHECK(!memcmp(o.mem, o.mem + 2 * len, len));
	CHECK((atomic_load(&o.bad)) == (0));
	/* the owner fails: a translation fault */
	atomic_store(&o.fail, true);
	idx = ce_drv_queue(&drv, CB_IOVA, plain_iova, 65536, P2P_CE_DESC_IRQ, 9);
	CHECK_OK(ce_drv_kick(&drv));
	CHECK_OK(ce_drv_wait(&drv, idx));
	CHECK((ce_drv_compl(&drv, idx)->status) == (P2P_CE_FAULT));
	CHECK((ce_drv_compl(&drv, idx)->bytes) == (0));
	atomic_store(&o.fail, false);
	CHECK((ce_drv_copy(&drv, CB_IOVA, plain_iova, 4096)) == (P2P_CE_OK));

	ce_drv_fini(&drv);
	CHECK_OK(p2p_ioas_unmap(ioas, CB_IOVA, CB_LEN, NULL));
	CHECK_OK(p2p_ioas_unmap(ioas, plain_iova, 2 * len, NULL));
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ctx);
	munmap(plain, 2 * len);
	munmap(o.mem, CB_LEN);
}

/* ---------------------------------------------------------------------- */

static uint32_t sd_run(struct sd_drv *drv, uint8_t op, uint64_t lba, uint32_t nblocks,
		       uint64_t data, uint64_t *bytes)
{
	struct p2p_sd_cmd c = { .opcode = op, .flags = P2P_SD_CMD_IRQ, .id = 1, .lba = lba,
				.nblocks = nblocks, .data = data };

	return sd_drv_run(drv, &c, bytes);
}

static void test_storage(void)
{
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct sd_drv drv = { .efd = -1 };
	struct owner o;
	/* 1 MiB of plain memory right below the callback area: one buffer spans both */
	uint64_t plen = 1 << 20, piova = CB_IOVA - plen, bytes = 0;
	uint8_t *plain = anon(plen), *file = anon(4 << 20);
	char path[] = "/tmp/p2pbuf-test-cb-XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);
	uint32_t id;

	t_section("storage: READ/WRITE through callback areas (bounce parts)");
	owner_init(&o);
	CHECK(fd >= 0 && plain && file);
	fill(file, 4 << 20, 4);
	CHECK(pwrite(fd, file, 4 << 20, 0) == 4 << 20);
	CHECK_OK(p2p_iommufd_open(&ctx));
	CHECK_OK(p2p_ioas_alloc(ctx, &id, &ioas));
	CHECK_OK(p2p_storage_create("0000:3d:00.0", NULL, 62, path, 0, &pci));
	CHECK_OK(p2p_vfio_device_open(pci, &vdev));
	CHECK_OK(p2p_vfio_device_attach_ioas(vdev, ioas));
	CHECK_OK(sd_drv_init(&drv, vdev, ioas, 16));
	CHECK_OK(p2p_ioas_map(ioas, plain, plen, &piova,
			      P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE));
	CHECK_OK(p2p_ioas_map_callback(ioas, CB_IOVA, CB_LEN,
				       P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE, &owner_ops, &o));

	/* READ 3 MiB of the file into the callback area: 12 bounce parts */
	CHECK((sd_run(&drv, P2P_SD_OP_READ, 0, 768, CB_IOVA, &bytes)) == (P2P_SD_OK));
	CHECK((bytes) == (3 << 20));
	CHECK(!memcmp(o.mem, file, 3 << 20));
	/* WRITE 2 MiB from the callback area to block 256 */
	fill(o.mem, 2 << 20, 5);
	CHECK((sd_run(&drv, P2P_SD_OP_WRITE, 256, 512, CB_IOVA, &bytes)) == (P2P_SD_OK));
	CHECK((bytes) == (2 << 20));
	CHECK(pread(fd, file, 2 << 20, 1 << 20) == 2 << 20);
	CHECK(!memcmp(file, o.mem, 2 << 20));
	/* A buffer half in plain memory, half in the callback area, both ways */
	fill(plain + plen / 2, plen / 2, 6);
	fill(o.mem, plen / 2, 7);
	CHECK((sd_run(&drv, P2P_SD_OP_WRITE, 0, 256, piova + plen / 2, &bytes)) == (P2P_SD_OK));
	CHECK(pread(fd, file, plen, 0) == (ssize_t)plen);
	CHECK(!memcmp(file, plain + plen / 2, plen / 2));
	CHECK(!memcmp(file + plen / 2, o.mem, plen / 2));
	memset(plain, 0, plen);
	memset(o.mem, 0, plen);
	CHECK((sd_run(&drv, P2P_SD_OP_READ, 0, 256, piova + plen / 2, &bytes)) == (P2P_SD_OK));
	CHECK(!memcmp(file, plain + plen / 2, plen / 2));
	CHECK(!memcmp(file + plen / 2, o.mem, plen / 2));
	CHECK((atomic_load(&o.bad)) == (0));
	/* the owner fails: a translation fault, both directions */
	atomic_store(&o.fail, true);
	CHECK((sd_run(&drv, P2P_SD_OP_READ, 0, 4, CB_IOVA, &bytes)) == (P2P_SD_FAULT));
	CHECK((sd_run(&drv, P2P_SD_OP_WRITE, 0, 4, CB_IOVA, &bytes)) == (P2P_SD_FAULT));
	CHECK((bytes) == (0));
	atomic_store(&o.fail, false);

	sd_drv_fini(&drv);
	CHECK_OK(p2p_ioas_unmap(ioas, CB_IOVA, CB_LEN, NULL));
	CHECK_OK(p2p_ioas_unmap(ioas, piova, plen, NULL));
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ctx);
	close(fd);
	unlink(path);
	munmap(plain, plen);
	munmap(file, 4 << 20);
	munmap(o.mem, CB_LEN);
}

int main(void)
{
	t_begin();
	test_ioas();
	test_copy_engine();
	test_storage();
	return t_end();
}
