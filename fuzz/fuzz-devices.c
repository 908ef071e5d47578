// SPDX-License-Identifier: MIT
/*
 * fuzz-devices: the copy engine and the storage device driven by a hostile
 * driver.
 *
 * Per input: a copy engine and a storage device (temporary image) share
 * one IOAS, which maps a 64 KiB system-memory window read-write at
 * WIN_IOVA, a 16 KiB read-only window at RO_IOVA and a peer function's
 * BAR2 (a dma-buf) read-write at PEER_IOVA.  The input is a sequence of
 * operations: register writes and reads through BAR0 of either device at
 * any offset and size (the engine has two channels: either one's registers), arbitrary bytes (garbage descriptors, commands,
 * ring pointers into any of the mappings or nowhere) written into the
 * window, doorbells, MSI eventfds, resets, and revoking or re-enabling
 * the peer BAR (COMMAND.MEM) while the devices run.
 *
 * Oracles: the window's canaries (never mapped) are intact; the read-only
 * window never changes; while the peer BAR is revoked its memory never
 * changes (a revoke waits for DMA in flight, none starts after it); the
 * IOAS invariants hold.  The
 * devices are quiesced (waited for, then disabled) before each check and
 * at the end; teardown per input, fd count checked.
 */
#define _GNU_SOURCE
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "iommu/ioas_debug.h"
#include "fuzz.h"

#define WIN (64u << 10)
#define CANARY 4096u
#define RO_LEN (16u << 10)
#define WIN_IOVA 0x100000ull
#define RO_IOVA 0x200000ull
#define PEER_IOVA 0x400000ull
#define MAX_OPS 64
#define CE_CHANNELS 2 /* the engine's, whatever the machine: two queues racing */

struct state {
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	struct p2p_pci_dev *ce, *sd, *peer;
	struct p2p_vfio_device *cev, *sdv, *peerv;
	int peer_buf, efd;
	bool revoked;
	uint8_t *peer_snap;
	uint8_t *peer_mem; /* the device's own view of the peer's BAR2 */
};

static struct fz_win win, ro;
static uint8_t ro_shadow[RO_LEN];

int fz_setup(void)
{
	if (fz_win_create(&win, WIN, CANARY) || fz_win_create(&ro, RO_LEN, 0))
		return -1;
	for (size_t i = 0; i < RO_LEN; i++)
		ro.base[i] = ro_shadow[i] = fz_pattern(i, 3);
	return 0;
}

static uint32_t reg_read(struct p2p_vfio_device *v, uint64_t off)
{
	uint32_t val = 0;

	(void)p2p_vfio_device_pread(v, &val, 4, P2P_VFIO_REGION_OFFSET(0) | off);
	return val;
}

static void reg_write(struct p2p_vfio_device *v, uint64_t off, uint64_t val, size_t len)
{
	(void)p2p_vfio_device_pwrite(v, &val, len, P2P_VFIO_REGION_OFFSET(0) | off);
}

/* An IOVA a hostile driver might program: into a mapping, near one, or anything. */
static uint64_t pick_iova(struct fin *in)
{
	static const uint64_t bases[] = { WIN_IOVA, RO_IOVA, PEER_IOVA, 0 };
	uint8_t k = fin_u8(in);

	if (k >= 0xf0)
		return fin_u64(in);
	return bases[k % 4] + (fin_u16(in) & ~0x7u) + ((k & 0x80) ? 0x10000 - 0x100 : 0);
}

/* Let the device run until it caught up (or 5 ms), then disable it and wait until idle. */
static void quiesce_one(struct p2p_vfio_device *v, unsigned int head, unsigned int tail,
			unsigned int status, unsigned int ctrl, unsigned int busy)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Let it run for up to 5 ms, as a driver polling HEAD would. */
	for (;;) {
		uint32_t h = reg_read(v, head), tl = reg_read(v, tail);

		if (h == tl || !(reg_read(v, ctrl) & 1))
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000000000l + (t.tv_nsec - t0.tv_nsec) > 5000000l)
			break;
		usleep(100);
	}
	reg_write(v, ctrl, 0, 4);
	while (reg_read(v, status) & busy)
		usleep(50);
}

static void quiesce(struct state *s)
{
	for (unsigned int c = 0; c < CE_CHANNELS; c++)
		quiesce_one(s->cev, P2P_CE_CHAN_REG(c, P2P_CE_REG_HEAD),
			    P2P_CE_CHAN_REG(c, P2P_CE_REG_DOORBELL),
			    P2P_CE_CHAN_REG(c, P2P_CE_REG_STATUS), P2P_CE_CHAN_REG(c, P2P_CE_REG_CTRL),
			    P2P_CE_STATUS_BUSY);
	quiesce_one(s->sdv, P2P_SD_REG_SQ_HEAD, P2P_SD_REG_SQ_TAIL, P2P_SD_REG_STATUS,
		    P2P_SD_REG_CTRL, P2P_SD_STATUS_BUSY);
	/* The storage device completes what it fetched on its own: wait for it. */
	for (int i = 0; i < 2000 && (reg_read(s->sdv, P2P_SD_REG_STATUS) & P2P_SD_STATUS_BUSY);
	     i++)
		usleep(100);
}

static void check_all(struct state *s)
{
	const char *why = NULL;

	fz_win_check(&win, "system window");
	FZ_ASSERT(!memcmp(ro.base, ro_shadow, RO_LEN), "the read-only window was written");
	if (s->revoked)
		FZ_ASSERT(!memcmp(s->peer_mem, s->peer_snap, 64u << 10),
			  "the peer BAR changed while revoked");
	FZ_ASSERT(!ioas_check_invariants(s->ioas, &why), "%s", why);
}

static void set_revoked(struct state *s, bool revoke)
{
	FZ_ASSERT(!p2p_vfio_config_write(s->peerv, 0x04, 2, revoke ? 0x4 : 0x6),
		  "COMMAND write");
	s->revoked = revoke;
	if (revoke)
		memcpy(s->peer_snap, s->peer_mem, 64u << 10);
}

static void op_reg(struct state *s, struct fin *in, bool storage)
{
	static const uint8_t ce_regs[] = { P2P_CE_REG_RING, P2P_CE_REG_RING_SIZE, P2P_CE_REG_COMPL,
					   P2P_CE_REG_DOORBELL, P2P_CE_REG_CTRL, 0x30 };
	static const uint8_t sd_regs[] = { P2P_SD_REG_SQ, P2P_SD_REG_CQ, P2P_SD_REG_QUEUE_SIZE,
					   P2P_SD_REG_SQ_TAIL, P2P_SD_REG_CTRL, P2P_SD_REG_SQ + 4 };
	struct p2p_vfio_device *v = storage ? s->sdv : s->cev;
	uint8_t k = fin_u8(in);
	uint64_t off, val;
	size_t len = (k & 1) ? 8 : 4;

	if (k & 0x80) {
		off = fin_u16(in) % 4200; /* anywhere, misaligned, past the end */
		len = 1 + fin_u8(in) % 9;
	} else {
		off = (storage ? sd_regs : ce_regs)[(k >> 1) % 6];
		if (!storage) /* bit 6: channel 1's copy of the register */
			off = P2P_CE_CHAN_REG((k >> 6) & 1, off);
		if (len == 8 && off % 8)
			len = 4;
	}
	switch ((k >> 4) & 3) {
	case 0:
		val = pick_iova(in);
		break;
	case 1:
		val = 1u << (fin_u8(in) % 18);
		break;
	case 2:
		val = fin_u8(in);
		break;
	default:
		val = fin_u64(in);
		break;
	}
	if (k & 0x40) {
		uint8_t buf[16];

		(void)p2p_vfio_device_pread(v, buf, len, P2P_VFIO_REGION_OFFSET(0) | off);
	} else {
		reg_write(v, off, val, len);
	}
}

/* Garbage descriptors / commands / anything into the window (ring memory). */
static void op_fill(struct fin *in)
{
	uint8_t k = fin_u8(in);
	size_t off = (size_t)fin_u16(in) % WIN & ~(size_t)7;
	size_t n = 32u * (1 + k % 4);

	if (off + n > WIN)
		off = WIN - n;
	if (k & 0x80) {
		fin_bytes(in, win.base + off, n);
		return;
	}
	/* A plausible record: two IOVAs, a length, flags/ids. */
	for (size_t i = 0; i < n; i += 32) {
		uint64_t a = pick_iova(in), b = pick_iova(in), len = fin_u16(in);
		uint64_t tail = fin_u64(in);

		if (k & 0x40) {
			/* storage command: opcode, flags, id / lba / nblocks / data */
			uint64_t w0 = (uint64_t)(1 + k % 3) | ((uint64_t)(tail & 1) << 8) |
				      ((tail >> 8) << 32);

			memcpy(win.base + off + i, &w0, 8);
			memcpy(win.base + off + i + 8, &len, 8);
			memcpy(win.base + off + i + 16, &tail, 8);
			memcpy(win.base + off + i + 24, &a, 8);
			win.base[off + i + 16] %= 5; /* small block counts mostly */
			(void)b;
		} else {
			memcpy(win.base + off + i, &a, 8);
			memcpy(win.base + off + i + 8, &b, 8);
			memcpy(win.base + off + i + 16, &len, 8);
			memcpy(win.base + off + i + 24, &tail, 8);
		}
	}
}

static void op_irq(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);
	struct vfio_irq_set h = {
		.argsz = sizeof(h) + 4,
		.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
		.index = VFIO_PCI_MSI_IRQ_INDEX,
		.count = 1,
	};
	int32_t fd = (k & 2) ? -1 : s->efd;
	uint8_t set[sizeof(h) + 4];

	memcpy(set, &h, sizeof(h));
	memcpy(set + sizeof(h), &fd, 4);
	(void)p2p_vfio_device_ioctl((k & 1) ? s->sdv : s->cev, VFIO_DEVICE_SET_IRQS, set);
}

static void op_reset(struct state *s, struct fin *in)
{
	uint8_t k = fin_u8(in);

	if (k & 1)
		(void)p2p_vfio_device_reset((k & 2) ? s->sdv : s->cev);
	else
		(void)p2p_vfio_config_write((k & 2) ? s->sdv : s->cev, P2P_PCI_EXP_DEVCTL, 2,
					    P2P_PCI_EXP_DEVCTL_BCR_FLR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct p2p_copy_engine_opts ce_opts = { .argsz = sizeof(ce_opts),
							     .channels = CE_CHANNELS };
	struct fin in = { data, size };
	struct state s = { 0 };
	uint64_t iova;
	uint32_t id;
	int fds = fz_fds_begin();

	if (p2p_iommufd_open(&s.ictx) || p2p_ioas_alloc(s.ictx, &id, &s.ioas) ||
	    p2p_copy_engine_create_opts("0000:05:00.0", NULL, 5, &ce_opts, &s.ce) ||
	    p2p_storage_create("0000:06:00.0", NULL, 6, NULL, 64u << 10, &s.sd) ||
	    fz_dev_create("0000:07:00.0", NULL, 7, &s.peer, &s.peerv) ||
	    p2p_vfio_device_open(s.ce, &s.cev) || p2p_vfio_device_open(s.sd, &s.sdv) ||
	    p2p_vfio_device_attach_ioas(s.cev, s.ioas) ||
	    p2p_vfio_device_attach_ioas(s.sdv, s.ioas))
		abort();
	s.peer_mem = p2p_mem_ptr(p2p_pci_dev_bar_mem(s.peer, 2), 0);
	s.peer_snap = malloc(64u << 10);
	s.peer_buf = p2p_vfio_device_get_dmabuf(s.peerv, 2,
						&(struct vfio_region_dma_range){ 0, 64u << 10 }, 1,
						O_CLOEXEC | O_RDWR);
	s.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s.peer_mem || !s.peer_snap || s.peer_buf < 0 || s.efd < 0)
		abort();
	memset(win.base, 0, WIN);
	iova = WIN_IOVA;
	if (p2p_ioas_map(s.ioas, win.base, WIN, &iova,
			 P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE))
		abort();
	iova = RO_IOVA;
	if (p2p_ioas_map(s.ioas, ro.base, RO_LEN, &iova,
			 P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE))
		abort();
	iova = PEER_IOVA;
	if (p2p_ioas_map_file(s.ioas, s.peer_buf, 0, 64u << 10, &iova,
			      P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
				      P2P_IOAS_MAP_WRITEABLE))
		abort();

	for (int i = 0; i < MAX_OPS && !fin_empty(&in); i++) {
		switch (fin_u8(&in) % 10) {
		case 0: case 1: op_reg(&s, &in, false); break;
		case 2: case 3: op_reg(&s, &in, true); break;
		case 4: case 5: op_fill(&in); break;
		case 6: set_revoked(&s, !s.revoked); break;
		case 7: op_irq(&s, &in); break;
		case 8: op_reset(&s, &in); break;
		default: quiesce(&s); check_all(&s); break;
		}
	}
	quiesce(&s);
	check_all(&s);

	p2p_vfio_device_detach_ioas(s.cev);
	p2p_vfio_device_detach_ioas(s.sdv);
	p2p_vfio_device_close(s.cev);
	p2p_vfio_device_close(s.sdv);
	p2p_pci_dev_put(s.ce);
	p2p_pci_dev_put(s.sd);
	p2p_ioas_put(s.ioas);
	p2p_iommufd_close(s.ictx);
	p2p_close(s.peer_buf);
	p2p_vfio_device_close(s.peerv);
	p2p_pci_dev_put(s.peer);
	close(s.efd);
	free(s.peer_snap);
	fz_fds_end(fds);
	return 0;
}
