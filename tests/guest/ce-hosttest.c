// SPDX-License-Identifier: MIT
/*
 * ce-hosttest: the guest's copy-engine driver (ce_guest.c, ce_regs.h)
 * against p2pbuf's real copy engine, on the host, laid out as the guest
 * will see it under QEMU: "guest RAM" mapped in the engine's IOAS at a
 * fixed IOVA (its GPA; QEMU's VFIO_IOMMU_MAP_DMA), the gpu's BAR2 mmap
 * mapped at the BAR's GPA (QEMU maps BAR mmaps for peer to peer), and the
 * registers reached through the VFIO region (QEMU's trapped BAR0 accesses
 * become pread/pwrite of region 0).  Same three copies as guest-check's
 * p2p.cetest=1: RAM->RAM, RAM->gpu BAR, gpu BAR->RAM.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <p2pbuf/p2pbuf.h>
#include <p2pbuf/devices.h>
#include <p2pbuf/iommu.h>

#include "ce_guest.h"

/* ce_regs.h mirrors include/p2pbuf/devices.h. */
_Static_assert(CE_REG_ID == P2P_CE_REG_ID && CE_REG_RING == P2P_CE_REG_RING &&
		       CE_REG_RING_SIZE == P2P_CE_REG_RING_SIZE &&
		       CE_REG_COMPL == P2P_CE_REG_COMPL && CE_REG_DOORBELL == P2P_CE_REG_DOORBELL &&
		       CE_REG_HEAD == P2P_CE_REG_HEAD && CE_REG_CTRL == P2P_CE_REG_CTRL &&
		       CE_REG_STATUS == P2P_CE_REG_STATUS && CE_BAR0_SIZE == P2P_CE_BAR0_SIZE &&
		       CE_ID == P2P_CE_ID && CE_CTRL_ENABLE == P2P_CE_CTRL_ENABLE &&
		       CE_STATUS_BUSY == P2P_CE_STATUS_BUSY &&
		       CE_STATUS_RING_FAULT == P2P_CE_STATUS_RING_FAULT &&
		       CE_DESC_IRQ == P2P_CE_DESC_IRQ,
	       "ce_regs.h registers differ from p2pbuf/devices.h");
_Static_assert(CE_ST_PENDING == P2P_CE_PENDING && CE_ST_OK == P2P_CE_OK &&
		       CE_ST_FAULT == P2P_CE_FAULT && CE_ST_REVOKED == P2P_CE_REVOKED &&
		       CE_ST_PERM == P2P_CE_PERM,
	       "ce_regs.h status codes differ from p2pbuf/devices.h");
_Static_assert(sizeof(struct ce_desc) == sizeof(struct p2p_ce_desc) &&
		       offsetof(struct ce_desc, src) == offsetof(struct p2p_ce_desc, src) &&
		       offsetof(struct ce_desc, dst) == offsetof(struct p2p_ce_desc, dst) &&
		       offsetof(struct ce_desc, len) == offsetof(struct p2p_ce_desc, len) &&
		       offsetof(struct ce_desc, flags) == offsetof(struct p2p_ce_desc, flags) &&
		       offsetof(struct ce_desc, id) == offsetof(struct p2p_ce_desc, id),
	       "descriptor layout differs");
_Static_assert(sizeof(struct ce_compl) == sizeof(struct p2p_ce_compl) &&
		       offsetof(struct ce_compl, id) == offsetof(struct p2p_ce_compl, id) &&
		       offsetof(struct ce_compl, status) == offsetof(struct p2p_ce_compl, status) &&
		       offsetof(struct ce_compl, bytes) == offsetof(struct p2p_ce_compl, bytes),
	       "completion layout differs");

#define RAM_GPA 0x8000000ull	  /* the guest's memmap= DMA region */
#define RAM_SIZE (16ull << 20)
#define BAR_GPA 0x800000000ull	  /* where a 64-bit BAR2 lands in the guest */
#define BAR_SIZE (16ull << 20)
#define LEN (64u << 10)

static int failed;

#define CHECK(cond, ...)                                   \
	do {                                               \
		if (!(cond)) {                             \
			printf("FAIL: " __VA_ARGS__);      \
			printf("\n");                      \
			exit(1);                           \
		}                                          \
	} while (0)

static uint64_t reg_read(void *ctx, uint32_t off, unsigned int len)
{
	uint64_t v = 0;

	if (p2p_vfio_device_pread(ctx, &v, len, P2P_VFIO_REGION_OFFSET(0) + off) != (ssize_t)len)
		return ~0ull;
	return v;
}

static void reg_write(void *ctx, uint32_t off, uint64_t v, unsigned int len)
{
	if (p2p_vfio_device_pwrite(ctx, &v, len, P2P_VFIO_REGION_OFFSET(0) + off) != (ssize_t)len)
		failed = 1;
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

static void copy(struct ce_guest *ce, const char *what, uint64_t src, uint64_t dst,
		 uint8_t *src_va, uint8_t *dst_va, uint8_t seed)
{
	struct ce_compl c;
	int ret;

	fill(src_va, LEN, seed);
	memset(dst_va, 0, LEN);
	ret = ce_guest_copy(ce, src, dst, LEN, 5000, &c);
	CHECK(ret == 0, "%s: ce_guest_copy %d", what, ret);
	CHECK(c.status == CE_ST_OK && c.bytes == LEN, "%s: status %s bytes %" PRIu64, what,
	      ce_status_name(c.status), c.bytes);
	CHECK(!memcmp(src_va, dst_va, LEN), "%s: data differ", what);
	printf("ok: %s 0x%" PRIx64 " -> 0x%" PRIx64 " %u bytes\n", what, src, dst, LEN);
}

int main(void)
{
	struct p2p_pci_dev_info gi = {
		.argsz = sizeof(gi), .name = "0000:01:00.0", .vendor_id = 0x1b36,
		.device_id = 0x0110, .class_code = 0x030200, .group = 1,
		.bars = { [2] = { .size = BAR_SIZE, .flags = P2P_BAR_MEM64 | P2P_BAR_PREFETCH } },
	};
	struct p2p_vfio_device *gv, *cv;
	struct p2p_pci_dev *gpu, *cedev;
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	struct ce_io io = { .read = reg_read, .write = reg_write };
	struct ce_guest ce;
	uint64_t iova = RAM_GPA;
	uint32_t ioas_id, id;
	uint16_t vendor = 0, device = 0;
	uint8_t *ram, *bar;
	int ret;

	CHECK(!p2p_iommufd_open(&ctx) && !p2p_ioas_alloc(ctx, &ioas_id, &ioas), "ioas");
	CHECK(!p2p_pci_dev_create(&gi, &gpu) && !p2p_vfio_device_open(gpu, &gv), "gpu");
	CHECK(!p2p_copy_engine_create("0000:01:00.1", NULL, 2, &cedev) &&
		      !p2p_vfio_device_open(cedev, &cv) && !p2p_vfio_device_attach_ioas(cv, ioas),
	      "copy engine");
	/* The guest finds the engine by ce_regs.h's IDs: the ones the library gives it. */
	CHECK(!p2p_pci_dev_config_read(cedev, 0, &vendor, 2) &&
		      !p2p_pci_dev_config_read(cedev, 2, &device, 2) && vendor == CE_PCI_VENDOR &&
		      device == CE_PCI_DEVICE,
	      "copy engine is %04x:%04x, ce_regs.h says %04x:%04x", vendor, device, CE_PCI_VENDOR,
	      CE_PCI_DEVICE);

	/* Guest RAM at its GPA, the gpu's BAR2 mmap at the BAR's GPA. */
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(ram != MAP_FAILED, "ram");
	ret = p2p_ioas_map(ioas, ram, RAM_SIZE, &iova,
			   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE);
	CHECK(!ret, "map ram at 0x%llx: %d", RAM_GPA, ret);
	ret = p2p_vfio_device_mmap(gv, NULL, BAR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
				   P2P_VFIO_REGION_OFFSET(2), (void **)&bar);
	CHECK(!ret, "bar2 mmap %d", ret);
	ret = p2p_ioas_map_dma(ioas, bar, BAR_SIZE, BAR_GPA,
			       P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE);
	CHECK(!ret, "map bar2 at 0x%llx: %d", BAR_GPA, ret);

	io.ctx = cv;
	ret = ce_guest_init(&ce, &io, ram, RAM_GPA, ram + 0x1000, RAM_GPA + 0x1000, 16, &id);
	CHECK(!ret && !failed, "ce_guest_init %d id 0x%08x", ret, id);
	printf("ok: engine id 0x%08x, ring 0x%llx, completions 0x%llx\n", id, RAM_GPA,
	       RAM_GPA + 0x1000);
	copy(&ce, "ram-ram", RAM_GPA + 0x10000, RAM_GPA + 0x20000, ram + 0x10000, ram + 0x20000, 1);
	copy(&ce, "ram-gpu", RAM_GPA + 0x10000, BAR_GPA + BAR_SIZE / 2, ram + 0x10000,
	     bar + BAR_SIZE / 2, 2);
	copy(&ce, "gpu-ram", BAR_GPA + BAR_SIZE / 2, RAM_GPA + 0x20000, bar + BAR_SIZE / 2,
	     ram + 0x20000, 3);
	/* More copies than ring entries: the free-running indices wrap the ring. */
	for (int i = 0; i < 40; i++) {
		struct ce_compl c;

		ret = ce_guest_copy(&ce, RAM_GPA + 0x10000, RAM_GPA + 0x20000, 4096, 5000, &c);
		CHECK(!ret && c.status == CE_ST_OK, "copy %d: %d %s", i, ret,
		      ce_status_name(c.status));
	}
	printf("ok: 40 more copies through a 16-entry ring\n");
	/* Nothing mapped there: the engine reports a translation fault. */
	{
		struct ce_compl c;

		ret = ce_guest_copy(&ce, RAM_GPA + RAM_SIZE, RAM_GPA, 4096, 5000, &c);
		CHECK(!ret && c.status == CE_ST_FAULT, "unmapped source: %d %s", ret,
		      ce_status_name(c.status));
		printf("ok: unmapped source gives status %s\n", ce_status_name(c.status));
	}
	ce_guest_fini(&ce);
	CHECK(!failed, "a register write failed");

	p2p_ioas_unmap(ioas, 0, 0, NULL);
	p2p_munmap(bar, BAR_SIZE);
	munmap(ram, RAM_SIZE);
	p2p_vfio_device_close(cv);
	p2p_vfio_device_close(gv);
	p2p_pci_dev_put(cedev);
	p2p_pci_dev_put(gpu);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ctx);
	printf("ce-hosttest: 1 passed, 0 failed\n");
	return 0;
}
