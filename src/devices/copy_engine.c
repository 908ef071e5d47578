// SPDX-License-Identifier: MIT
/*
 * The copy engine: an emulated PCI function that copies between IOVAs.
 *
 * One worker thread per engine fetches descriptors from the ring, copies
 * in runs (each p2p_pci_dev_dma_begin() returns the longest contiguous
 * piece of a mapping, never a page at a time), writes completion records
 * and raises MSI vector 0.
 *
 * Locking: ce->lock protects the registers and the worker's state; it is
 * taken inside the function's memory_lock (register access and reset come
 * through the VFIO layer holding it) and never held while copying.
 */
#define _GNU_SOURCE
#include <p2pbuf/devices.h>

#include "../util/private.h"

struct copy_engine {
	pthread_mutex_t lock;
	pthread_cond_t kick; /* doorbell, stop */
	pthread_cond_t idle;
	pthread_t thread;
	bool started; /* the worker runs: release stops it and frees the engine */
	bool stop, busy;
	uint64_t ring, compl;
	uint32_t ring_size, ctrl, status;
	atomic_uint tail, head;
	struct p2p_pci_dev *dev;
};

P2P_API const char *p2p_ce_status_name(uint32_t status)
{
	switch (status) {
	case P2P_CE_PENDING: return "pending";
	case P2P_CE_OK: return "ok";
	case P2P_CE_FAULT: return "translation fault";
	case P2P_CE_REVOKED: return "revoked";
	case P2P_CE_PERM: return "permission fault";
	default: return "unknown";
	}
}

static uint32_t err_status(int err)
{
	switch (err) {
	case -ENODEV: return P2P_CE_REVOKED;
	case -EPERM: return P2P_CE_PERM;
	default: return P2P_CE_FAULT;
	}
}

#define CE_BOUNCE (64u << 10)

/*
 * A run with no memory here (-EREMOTE: a callback area, e.g. a vfio-user
 * client's memory mapped without an fd): copied through a bounce buffer
 * with p2p_pci_dev_dma_rw(), which calls the area's owner.
 */
static uint32_t ce_bounce(struct p2p_pci_dev *dev, uint64_t src, uint64_t dst, uint64_t len,
			  uint64_t *n)
{
	uint8_t buf[CE_BOUNCE];
	int ret;

	*n = MIN(len, (uint64_t)CE_BOUNCE);
	ret = p2p_pci_dev_dma_rw(dev, src, buf, *n, false);
	if (!ret)
		ret = p2p_pci_dev_dma_rw(dev, dst, buf, *n, true);
	return ret ? err_status(ret) : P2P_CE_OK;
}

/* Copy @len bytes from @src to @dst IOVA, in runs. */
static uint32_t ce_copy(struct p2p_pci_dev *dev, uint64_t src, uint64_t dst, uint64_t len,
			uint64_t *done)
{
	*done = 0;
	while (*done < len) {
		struct p2p_dma_seg s, d;
		uint64_t n;
		int ret;

		ret = p2p_pci_dev_dma_begin(dev, src + *done, len - *done, P2P_DMA_READ, &s);
		if (!ret) {
			ret = p2p_pci_dev_dma_begin(dev, dst + *done, s.len, P2P_DMA_WRITE, &d);
			if (ret)
				p2p_ioas_dma_end(&s);
		}
		if (ret == -EREMOTE) {
			uint32_t st = ce_bounce(dev, src + *done, dst + *done, len - *done, &n);

			if (st != P2P_CE_OK)
				return st;
			*done += n;
			continue;
		}
		if (ret)
			return err_status(ret);
		n = MIN(s.len, d.len);
		/* Memory the program truncated under us: a translation fault. */
		ret = dma_copy(d.host, s.host, n, ioas_seg_fragile(&d) || ioas_seg_fragile(&s));
		p2p_ioas_dma_end(&d);
		p2p_ioas_dma_end(&s);
		if (ret)
			return P2P_CE_FAULT;
		*done += n;
	}
	return P2P_CE_OK;
}

/* Run descriptor @idx; true if it asks for an interrupt. */
static bool ce_process(struct copy_engine *ce, uint32_t idx, uint64_t ring, uint64_t compl,
		       uint32_t mask)
{
	struct p2p_ce_desc d;
	struct p2p_ce_compl c = { 0 };
	int ret;

	ret = p2p_pci_dev_dma_rw(ce->dev, ring + (uint64_t)(idx & mask) * sizeof(d), &d,
				 sizeof(d), false);
	if (ret) {
		pthread_mutex_lock(&ce->lock);
		ce->status |= P2P_CE_STATUS_RING_FAULT;
		pthread_mutex_unlock(&ce->lock);
		return false;
	}
	c.id = d.id;
	c.status = ce_copy(ce->dev, d.src, d.dst, d.len, &c.bytes);
	ret = p2p_pci_dev_dma_rw(ce->dev, compl + (uint64_t)(idx & mask) * sizeof(c), &c,
				 sizeof(c), true);
	if (ret) {
		pthread_mutex_lock(&ce->lock);
		ce->status |= P2P_CE_STATUS_RING_FAULT;
		pthread_mutex_unlock(&ce->lock);
	}
	return d.flags & P2P_CE_DESC_IRQ;
}

/* Nothing to run: disabled, no ring, or caught up.  ce->lock held. */
static bool ce_idle_locked(struct copy_engine *ce)
{
	return !(ce->ctrl & P2P_CE_CTRL_ENABLE) || !ce->ring_size ||
	       atomic_load(&ce->head) == atomic_load(&ce->tail);
}

static void *ce_worker(void *arg)
{
	struct copy_engine *ce = arg;

	dma_guard_thread();
	pthread_mutex_lock(&ce->lock);
	while (!ce->stop) {
		uint32_t head = atomic_load(&ce->head);
		uint64_t ring = ce->ring, compl = ce->compl;
		uint32_t mask = ce->ring_size - 1;
		bool irq;

		if (ce_idle_locked(ce)) {
			bool enabled = (ce->ctrl & P2P_CE_CTRL_ENABLE) && ce->ring_size;

			ce->busy = false;
			pthread_cond_broadcast(&ce->idle);
			pthread_mutex_unlock(&ce->lock);
			/* Streaming drivers ring again soon: look before sleeping. */
			for (int spin = 0; enabled && spin < 2000 && head == atomic_load(&ce->tail);
			     spin++)
				__builtin_ia32_pause();
			pthread_mutex_lock(&ce->lock);
			/* Disabled with descriptors pending: sleep too, not spin. */
			if (!ce->stop && ce_idle_locked(ce))
				pthread_cond_wait(&ce->kick, &ce->lock);
			continue;
		}
		ce->busy = true;
		pthread_mutex_unlock(&ce->lock);
		irq = ce_process(ce, head, ring, compl, mask);
		pthread_mutex_lock(&ce->lock);
		atomic_store(&ce->head, head + 1);
		if (irq) {
			/* MSI only once HEAD covers the descriptor, or a woken driver misses it. */
			pthread_mutex_unlock(&ce->lock);
			p2p_pci_dev_raise_irq(ce->dev, 0);
			pthread_mutex_lock(&ce->lock);
		}
	}
	ce->busy = false;
	pthread_cond_broadcast(&ce->idle);
	pthread_mutex_unlock(&ce->lock);
	return NULL;
}

static int ce_bar_rw(struct p2p_pci_dev *dev, int bar, uint64_t off, void *data, size_t len,
		     bool write)
{
	struct copy_engine *ce = p2p_pci_dev_priv(dev);
	uint64_t v = 0;

	if (bar != 0 || (len != 4 && len != 8) || off % len || off + len > P2P_CE_BAR0_SIZE)
		return -EINVAL;
	if (write)
		memcpy(&v, data, len);
	pthread_mutex_lock(&ce->lock);
	switch (off) {
	case P2P_CE_REG_ID:
		v = P2P_CE_ID;
		break;
	case P2P_CE_REG_RING:
		if (write)
			ce->ring = v;
		v = ce->ring;
		break;
	case P2P_CE_REG_RING_SIZE:
		if (write && v <= 65536 && !(v & (v - 1))) {
			ce->ring_size = (uint32_t)v;
			pthread_cond_signal(&ce->kick);
		}
		v = ce->ring_size;
		break;
	case P2P_CE_REG_COMPL:
		if (write)
			ce->compl = v;
		v = ce->compl;
		break;
	case P2P_CE_REG_DOORBELL:
		if (write) {
			atomic_store(&ce->tail, (uint32_t)v);
			pthread_cond_signal(&ce->kick);
		}
		v = atomic_load(&ce->tail);
		break;
	case P2P_CE_REG_HEAD:
		v = atomic_load(&ce->head);
		break;
	case P2P_CE_REG_CTRL:
		if (write) {
			ce->ctrl = (uint32_t)v & P2P_CE_CTRL_ENABLE;
			pthread_cond_signal(&ce->kick);
		}
		v = ce->ctrl;
		break;
	case P2P_CE_REG_STATUS:
		v = ce->status | (ce->busy ? P2P_CE_STATUS_BUSY : 0);
		break;
	default:
		v = 0; /* reserved: reads 0, writes ignored */
		break;
	}
	pthread_mutex_unlock(&ce->lock);
	if (!write)
		memcpy(data, &v, len);
	return 0;
}

/* FLR / reset: finish the descriptor in flight, then clear every register. */
static void ce_reset(struct p2p_pci_dev *dev)
{
	struct copy_engine *ce = p2p_pci_dev_priv(dev);

	pthread_mutex_lock(&ce->lock);
	ce->ctrl = 0;
	while (ce->busy)
		pthread_cond_wait(&ce->idle, &ce->lock);
	ce->ring = ce->compl = 0;
	ce->ring_size = 0;
	ce->status = 0;
	atomic_store(&ce->head, 0);
	atomic_store(&ce->tail, 0);
	pthread_mutex_unlock(&ce->lock);
}

static void ce_release(struct p2p_pci_dev *dev)
{
	struct copy_engine *ce = p2p_pci_dev_priv(dev);

	if (!ce->started)
		return; /* unplugged by a failed create, which frees the engine */
	pthread_mutex_lock(&ce->lock);
	ce->stop = true;
	pthread_cond_signal(&ce->kick);
	pthread_mutex_unlock(&ce->lock);
	pthread_join(ce->thread, NULL);
	pthread_mutex_destroy(&ce->lock);
	pthread_cond_destroy(&ce->kick);
	pthread_cond_destroy(&ce->idle);
	free(ce);
}

static const struct p2p_pci_dev_ops ce_ops = {
	.reset = ce_reset,
	.bar_rw = ce_bar_rw,
	.release = ce_release,
};

P2P_API int p2p_copy_engine_create(const char *name, struct p2p_pci_devset *set, uint32_t group,
				   struct p2p_pci_dev **out)
{
	struct copy_engine *ce = calloc(1, sizeof(*ce));
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.name = name,
		.vendor_id = 0x1b36,
		.device_id = 0x0111,
		.class_code = 0x088000, /* system peripheral: DMA controller */
		.group = group,
		.devset = set,
		.bars = { [0] = { .size = P2P_CE_BAR0_SIZE, .flags = P2P_BAR_TRAP } },
		.ops = &ce_ops,
		.priv = ce,
	};
	int ret;

	if (!ce)
		return -ENOMEM;
	pthread_mutex_init(&ce->lock, NULL);
	pthread_cond_init(&ce->kick, NULL);
	pthread_cond_init(&ce->idle, NULL);
	ret = p2p_pci_dev_create(&info, &ce->dev);
	if (ret) {
		free(ce);
		return ret;
	}
	ret = -pthread_create(&ce->thread, NULL, ce_worker, ce);
	if (ret) {
		pthread_mutex_destroy(&ce->lock);
		pthread_cond_destroy(&ce->kick);
		pthread_cond_destroy(&ce->idle);
		/* Unplug: no thread to stop (the release op sees !started). */
		p2p_pci_dev_put(ce->dev);
		free(ce);
		return ret;
	}
	ce->started = true;
	*out = ce->dev;
	return 0;
}
