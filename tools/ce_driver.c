// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ce_driver.h"
#include "drv_util.h"

/* Offset of this channel's register @reg. */
static uint64_t ce_reg(const struct ce_drv *drv, uint64_t reg)
{
	return P2P_CE_CHAN_REG(drv->chan, reg);
}

/* Install @fd for MSI vectors [0, @count) (VFIO_DEVICE_SET_IRQS). */
static int ce_set_msi_vectors(struct p2p_vfio_device *vdev, uint32_t start, uint32_t count, int fd)
{
	uint8_t buf[sizeof(struct vfio_irq_set) + 8 * sizeof(int32_t)];
	struct vfio_irq_set *irq = (struct vfio_irq_set *)buf;
	int32_t fds[8];

	if (count > 8)
		return -EINVAL;
	*irq = (struct vfio_irq_set){
		.argsz = (uint32_t)(sizeof(*irq) + count * sizeof(int32_t)),
		.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
		.index = VFIO_PCI_MSI_IRQ_INDEX,
		.start = start,
		.count = count,
	};
	for (uint32_t i = 0; i < count; i++)
		fds[i] = fd;
	memcpy(irq->data, fds, count * sizeof(int32_t));
	return (int)p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_SET_IRQS, irq);
}

uint32_t ce_drv_channels(struct p2p_vfio_device *vdev)
{
	uint64_t n = drv_reg_read(vdev, P2P_CE_REG_CHANNELS, 4);

	return n == 0 ? 1 : n > P2P_CE_MAX_CHANNELS ? 0 : (uint32_t)n;
}

int ce_drv_init(struct ce_drv *drv, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		uint32_t entries)
{
	return ce_drv_init_chan(drv, vdev, ioas, entries, 0, -1);
}

int ce_drv_init_chan(struct ce_drv *drv, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		     uint32_t entries, uint32_t chan, int efd)
{
	size_t ring_sz = drv_queue_bytes(entries, sizeof(struct p2p_ce_desc));
	size_t compl_sz = drv_queue_bytes(entries, sizeof(struct p2p_ce_compl));
	int ret;

	memset(drv, 0, sizeof(*drv));
	drv->vdev = vdev;
	drv->ioas = ioas;
	drv->entries = entries;
	drv->chan = chan;
	drv->efd = efd;
	if (efd < 0) {
		drv->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (drv->efd < 0)
			return -errno;
		drv->own_efd = true;
	}
	/* The engine reads descriptors and writes completions. */
	ret = drv_queue_map(ioas, ring_sz, P2P_IOAS_MAP_READABLE, (void **)&drv->ring,
			    &drv->ring_iova, &drv->ring_mapped);
	if (ret)
		return ret;
	ret = drv_queue_map(ioas, compl_sz, P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE,
			    (void **)&drv->compl, &drv->compl_iova, &drv->compl_mapped);
	if (ret)
		return ret;
	if (drv->own_efd) {
		ret = chan ? ce_set_msi_vectors(vdev, P2P_CE_CHAN_VECTOR(chan), 1, drv->efd)
			   : drv_set_msi(vdev, drv->efd);
		if (ret)
			return ret;
	}
	if (drv_reg_read(drv->vdev, P2P_CE_REG_ID, 4) != P2P_CE_ID)
		return -ENODEV;
	if (chan >= ce_drv_channels(vdev))
		return -ENODEV;
	if ((ret = drv_reg_write(drv->vdev, ce_reg(drv, P2P_CE_REG_RING), drv->ring_iova, 8)) ||
	    (ret = drv_reg_write(drv->vdev, ce_reg(drv, P2P_CE_REG_RING_SIZE), entries, 4)) ||
	    (ret = drv_reg_write(drv->vdev, ce_reg(drv, P2P_CE_REG_COMPL), drv->compl_iova, 8)) ||
	    (ret = drv_reg_write(drv->vdev, ce_reg(drv, P2P_CE_REG_CTRL), P2P_CE_CTRL_ENABLE, 4)))
		return ret;
	drv->tail = (uint32_t)drv_reg_read(drv->vdev, ce_reg(drv, P2P_CE_REG_HEAD), 4);
	return 0;
}

uint32_t ce_drv_head(struct ce_drv *drv)
{
	return (uint32_t)drv_reg_read(drv->vdev, ce_reg(drv, P2P_CE_REG_HEAD), 4);
}

struct p2p_ce_compl *ce_drv_compl(struct ce_drv *drv, uint32_t idx)
{
	return &drv->compl[idx & (drv->entries - 1)];
}

uint32_t ce_drv_queue(struct ce_drv *drv, uint64_t src, uint64_t dst, uint64_t len,
		      uint32_t flags, uint32_t id)
{
	uint32_t idx = drv->tail;

	if (idx - ce_drv_head(drv) >= drv->entries) {
		ce_drv_kick(drv);
		ce_drv_wait(drv, idx - drv->entries);
	}
	drv->ring[idx & (drv->entries - 1)] = (struct p2p_ce_desc){
		.src = src, .dst = dst, .len = len, .flags = flags, .id = id,
	};
	memset(ce_drv_compl(drv, idx), 0, sizeof(struct p2p_ce_compl));
	drv->tail = idx + 1;
	return idx;
}

int ce_drv_kick(struct ce_drv *drv)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	return drv_reg_write(drv->vdev, ce_reg(drv, P2P_CE_REG_DOORBELL), drv->tail, 4);
}

int ce_drv_wait(struct ce_drv *drv, uint32_t idx)
{
	struct pollfd pfd = { .fd = drv->efd, .events = POLLIN };

	while ((int32_t)(ce_drv_head(drv) - idx) <= 0) {
		eventfd_t v;

		if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
			return -errno;
		(void)eventfd_read(drv->efd, &v);
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return 0;
}

uint32_t ce_drv_copy(struct ce_drv *drv, uint64_t src, uint64_t dst, uint64_t len)
{
	uint32_t idx = ce_drv_queue(drv, src, dst, len, P2P_CE_DESC_IRQ, drv->tail);

	ce_drv_kick(drv);
	ce_drv_wait(drv, idx);
	return ce_drv_compl(drv, idx)->status;
}

void ce_drv_fini(struct ce_drv *drv)
{
	size_t ring_sz = drv_queue_bytes(drv->entries, sizeof(struct p2p_ce_desc));
	size_t compl_sz = drv_queue_bytes(drv->entries, sizeof(struct p2p_ce_compl));

	if (drv->vdev)
		drv_reg_write(drv->vdev, ce_reg(drv, P2P_CE_REG_CTRL), 0, 4);
	drv_queue_unmap(drv->ioas, ring_sz, drv->ring, drv->ring_iova, drv->ring_mapped);
	drv_queue_unmap(drv->ioas, compl_sz, drv->compl, drv->compl_iova, drv->compl_mapped);
	if (drv->own_efd && drv->efd >= 0)
		close(drv->efd);
	memset(drv, 0, sizeof(*drv));
	drv->efd = -1;
}

int ce_multi_init(struct ce_multi *m, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		  uint32_t entries, uint32_t nchan)
{
	uint32_t have = ce_drv_channels(vdev);
	int ret;

	memset(m, 0, sizeof(*m));
	m->vdev = vdev;
	m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->efd < 0)
		return -errno;
	if (!have || nchan > have)
		return -ENODEV;
	nchan = nchan ? nchan : have;
	ret = ce_set_msi_vectors(vdev, 0, nchan < 8 ? nchan : 8, m->efd);
	if (ret)
		return ret;
	for (; m->nchan < nchan; m->nchan++) {
		ret = ce_drv_init_chan(&m->ch[m->nchan], vdev, ioas, entries, m->nchan, m->efd);
		if (ret) {
			m->nchan++; /* ce_multi_fini() undoes the part done */
			return ret;
		}
	}
	return 0;
}

uint32_t ce_multi_queue(struct ce_multi *m, uint32_t k, uint64_t src, uint64_t dst, uint64_t len,
			uint64_t min_piece, uint32_t flags, uint32_t id, uint32_t *last)
{
	uint64_t piece, off = 0;
	uint32_t used = 0;

	if (!k || k > m->nchan)
		k = m->nchan;
	if (min_piece < 4096)
		min_piece = 4096;
	if (len / min_piece < k)
		k = (uint32_t)(len / min_piece) ? (uint32_t)(len / min_piece) : 1;
	piece = (len / k + 4095) & ~4095ull;
	do {
		uint64_t n = len - off < piece ? len - off : piece;

		last[used] = ce_drv_queue(&m->ch[used], src + off, dst + off, n, flags, id);
		off += n;
		used++;
	} while (off < len && used < k);
	return used;
}

int ce_multi_kick(struct ce_multi *m)
{
	int ret = 0;

	for (uint32_t c = 0; c < m->nchan; c++) {
		struct ce_drv *d = &m->ch[c];
		int r;

		/* Only the doorbells that move: a register write is a syscall's worth. */
		if (d->tail == (uint32_t)drv_reg_read(d->vdev, ce_reg(d, P2P_CE_REG_DOORBELL), 4))
			continue;
		r = ce_drv_kick(d);
		if (r && !ret)
			ret = r;
	}
	return ret;
}

uint32_t ce_multi_copy(struct ce_multi *m, uint64_t src, uint64_t dst, uint64_t len,
		       uint64_t *bytes)
{
	uint32_t last[P2P_CE_MAX_CHANNELS], used, status = P2P_CE_OK;
	uint64_t done = 0;

	used = ce_multi_queue(m, 0, src, dst, len, 1u << 20, P2P_CE_DESC_IRQ, 0, last);
	for (uint32_t c = 0; c < used; c++)
		ce_drv_kick(&m->ch[c]);
	for (uint32_t c = 0; c < used; c++) {
		const struct p2p_ce_compl *r;

		ce_drv_wait(&m->ch[c], last[c]);
		r = ce_drv_compl(&m->ch[c], last[c]);
		if (status == P2P_CE_OK)
			status = r->status;
		done += r->bytes;
	}
	if (bytes)
		*bytes = done;
	return status;
}

void ce_multi_fini(struct ce_multi *m)
{
	for (uint32_t c = 0; c < m->nchan; c++)
		ce_drv_fini(&m->ch[c]);
	if (m->vdev && m->efd >= 0)
		drv_set_msi(m->vdev, -1);
	if (m->efd >= 0)
		close(m->efd);
	memset(m, 0, sizeof(*m));
	m->efd = -1;
}
