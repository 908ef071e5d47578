// SPDX-License-Identifier: MIT
/*
 * fuzz-vfio-ioctl: the VFIO device file's ioctls with arbitrary payloads,
 * through p2p_vfio_device_ioctl().
 *
 * Per input: a device set of two functions (groups 1 and 2), both open,
 * two eventfds.  The input is a sequence of calls:
 *	u8 request selector, u16 payload length, payload bytes
 * The selector picks GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS,
 * RESET, PCI_HOT_RESET, GET_PCI_HOT_RESET_INFO, FEATURE (the payload's
 * flags word is steered to features 3, 5, 11, 13, 14 or left as is) or a
 * raw request number, on either function.  fds inside payloads (SET_IRQS
 * eventfds, the dma-buf fd of features 13 and 14) are remapped onto the
 * target's own fds, so no call can reach a file the target did not create.
 *
 * Oracles after each call: nothing written past max(payload, argsz) of the
 * argument (canary after it, guard page beyond); a new dma-buf fd is a
 * dma-buf of the size of the ranges asked for; every exported dma-buf obeys
 * the revocation invariant (fz_check_vfio_dmabuf()).  After the input:
 * everything closed, fd count back to its baseline.
 */
#define _GNU_SOURCE
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "fuzz.h"

#define ARG_LEN 4096
#define CANARY 256
#define MAX_CALLS 64

#ifndef VFIO_DEVICE_GET_PCI_HOT_RESET_INFO
#define VFIO_DEVICE_GET_PCI_HOT_RESET_INFO _IO(VFIO_TYPE, VFIO_BASE + 12)
#endif

static struct fz_win arg;

int fz_setup(void)
{
	return fz_win_create(&arg, ARG_LEN, CANARY);
}

static const unsigned long requests[] = {
	VFIO_DEVICE_GET_INFO,	    VFIO_DEVICE_GET_REGION_INFO,	VFIO_DEVICE_GET_IRQ_INFO,
	VFIO_DEVICE_SET_IRQS,	    VFIO_DEVICE_RESET,			VFIO_DEVICE_PCI_HOT_RESET,
	VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_FEATURE,
};
static const uint32_t features[] = { 3, 5, 11, 13, 14 };

struct state {
	struct p2p_pci_devset *set;
	struct p2p_pci_dev *pci[2];
	struct p2p_vfio_device *vdev[2];
	struct fz_fds fds; /* what payload fds may name: eventfds, dma-bufs, a memfd */
	int bufs[64];	   /* dma-bufs handed out, closed with p2p_close() at the end */
	int owner[64];	   /* which function exported each */
	unsigned int nbufs;
};

/* Rewrite every fd a payload carries so that it names one of ours. */
static void remap_fds(struct state *s, unsigned long req, uint8_t *p, size_t len)
{
	if (req == VFIO_DEVICE_SET_IRQS && len >= sizeof(struct vfio_irq_set)) {
		for (size_t off = sizeof(struct vfio_irq_set); off + 4 <= len; off += 4) {
			int32_t v;

			memcpy(&v, p + off, 4);
			v = fz_fds_pick(&s->fds, (uint32_t)v);
			memcpy(p + off, &v, 4);
		}
	} else if (req == VFIO_DEVICE_FEATURE && len >= sizeof(struct vfio_device_feature) + 4) {
		struct vfio_device_feature f;
		uint32_t feat;

		memcpy(&f, p, sizeof(f));
		feat = f.flags & VFIO_DEVICE_FEATURE_MASK;
		if (feat == VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE ||
		    feat == VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR) {
			int32_t v;

			memcpy(&v, p + sizeof(f), 4);
			v = fz_fds_pick(&s->fds, (uint32_t)v);
			memcpy(p + sizeof(f), &v, 4);
		}
	}
}

static void check_new_dmabuf(struct state *s, int owner, int fd, const uint8_t *p, size_t len)
{
	struct vfio_device_feature_dma_buf h;
	struct p2p_dmabuf *buf;
	uint64_t total = 0;

	FZ_ASSERT(p2p_dmabuf_get(fd, &buf) == 0, "feature DMA_BUF returned %d, not a dma-buf", fd);
	memcpy(&h, p + sizeof(struct vfio_device_feature), sizeof(h));
	FZ_ASSERT(len >= sizeof(struct vfio_device_feature) + sizeof(h) +
				 (size_t)h.nr_ranges * sizeof(struct vfio_region_dma_range),
		  "a dma-buf from ranges the caller never gave (%u ranges, %zu bytes)",
		  h.nr_ranges, len);
	for (uint32_t i = 0; i < h.nr_ranges; i++) {
		struct vfio_region_dma_range r;

		memcpy(&r, p + sizeof(struct vfio_device_feature) + sizeof(h) + i * sizeof(r),
		       sizeof(r));
		total += r.length;
	}
	FZ_ASSERT(p2p_dmabuf_size(buf) == total, "dma-buf of %llu bytes for ranges of %llu",
		  (unsigned long long)p2p_dmabuf_size(buf), (unsigned long long)total);
	p2p_dmabuf_put(buf);
	if (s->nbufs < sizeof(s->bufs) / sizeof(s->bufs[0])) {
		s->owner[s->nbufs] = owner;
		s->bufs[s->nbufs++] = fd;
		fz_fds_add(&s->fds, fd);
	} else {
		p2p_close(fd);
	}
}

static void one_call(struct state *s, struct fin *in)
{
	uint8_t sel = fin_u8(in);
	size_t len = fin_u16(in) % (ARG_LEN + 1);
	struct p2p_vfio_device *vdev = s->vdev[(sel >> 7) & 1];
	unsigned long req;
	uint8_t *p = arg.base;
	size_t allowed;
	uint32_t argsz;
	long ret;

	len = fin_bytes(in, p, len);
	if ((sel & 0x7f) < 100) {
		req = requests[(sel & 0x7f) % (sizeof(requests) / sizeof(requests[0]))];
	} else {
		/* A raw request: VFIO's type and a number near the real ones. */
		req = _IO(VFIO_TYPE, VFIO_BASE + (sel & 0x1f));
	}
	if (req == VFIO_DEVICE_FEATURE && len >= sizeof(struct vfio_device_feature) &&
	    (sel & 0x7f) % 3) {
		struct vfio_device_feature f;

		memcpy(&f, p, sizeof(f));
		f.flags = (f.flags & ~VFIO_DEVICE_FEATURE_MASK) |
			  features[f.flags % (sizeof(features) / sizeof(features[0]))];
		memcpy(p, &f, sizeof(f));
	}
	remap_fds(s, req, p, len);
	/* Fill the rest of the window with canary bytes. */
	for (size_t i = len; i < ARG_LEN + CANARY; i++)
		p[i] = fz_canary_byte((long)i);
	/* What the library sees as argsz (canary bytes past a short payload). */
	memcpy(&argsz, p, sizeof(argsz));

	ret = p2p_vfio_device_ioctl(vdev, req, p);

	allowed = len > argsz ? len : argsz;
	for (size_t i = allowed; i < ARG_LEN + CANARY; i++)
		FZ_ASSERT(p[i] == fz_canary_byte((long)i),
			  "ioctl %#lx wrote byte %zu of its argument (payload %zu, argsz %u)", req,
			  i, len, argsz);
	fz_win_check(&arg, "ioctl argument");
	if (req == VFIO_DEVICE_FEATURE && ret > 0)
		check_new_dmabuf(s, (sel >> 7) & 1, (int)ret, p, len);
	else
		FZ_ASSERT(ret <= 0, "ioctl %#lx returned %ld", req, ret);
	for (unsigned int i = 0; i < s->nbufs; i++)
		fz_check_vfio_dmabuf(s->bufs[i], s->pci[s->owner[i]]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin in = { data, size };
	struct state s = { 0 };
	int efd[2] = { -1, -1 }, mfd;

	int fds = fz_fds_begin();

	if (p2p_pci_devset_create(&s.set))
		abort();
	if (fz_dev_create("0000:01:00.0", s.set, 1, &s.pci[0], &s.vdev[0]) ||
	    fz_dev_create("0000:01:00.1", s.set, 2, &s.pci[1], &s.vdev[1]))
		abort();
	efd[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	efd[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	mfd = memfd_create("fuzz-not-a-dmabuf", MFD_CLOEXEC);
	fz_fds_add(&s.fds, efd[0]);
	fz_fds_add(&s.fds, efd[1]);
	fz_fds_add(&s.fds, mfd);

	for (int i = 0; i < MAX_CALLS && !fin_empty(&in); i++)
		one_call(&s, &in);

	for (unsigned int i = 0; i < s.nbufs; i++)
		FZ_ASSERT(p2p_close(s.bufs[i]) == 0, "p2p_close of a handed-out dma-buf");
	p2p_vfio_device_close(s.vdev[1]);
	p2p_vfio_device_close(s.vdev[0]);
	p2p_pci_dev_put(s.pci[1]);
	p2p_pci_dev_put(s.pci[0]);
	p2p_pci_devset_put(s.set);
	close(efd[0]);
	close(efd[1]);
	close(mfd);
	fz_fds_end(fds);
	return 0;
}
