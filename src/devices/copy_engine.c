// SPDX-License-Identifier: MIT
/*
 * The copy engine: an emulated PCI function that copies between IOVAs.
 *
 * Several channels, as DMA engines have: each channel has its own
 * registers (ring, completion array, doorbell, ...), its own worker
 * thread and its own MSI vector.  A worker fetches its channel's
 * descriptors in order, copies in runs (each p2p_pci_dev_dma_begin()
 * returns the longest contiguous piece of a mapping, never a page at a
 * time), writes completion records and raises the channel's vector.
 * Channels share nothing but the function: they run in parallel.
 *
 * Locking: each channel's ch->lock protects its registers and its
 * worker's state; it is taken inside the function's memory_lock (register
 * access and reset come through the VFIO layer holding it), one channel's
 * at a time, and never held while copying.
 */
#define _GNU_SOURCE
#include <p2pbuf/devices.h>
#include <unistd.h>

#include "../util/private.h"

struct ce_chan {
	pthread_mutex_t lock;
	pthread_cond_t kick; /* doorbell, stop */
	pthread_cond_t idle;
	pthread_t thread;
	bool stop, busy;
	uint64_t ring, compl;
	uint32_t ring_size, ctrl, status;
	atomic_uint tail, head;
	unsigned int idx;
	struct p2p_pci_dev *dev;
};

struct copy_engine {
	bool started; /* the workers run: release stops them and frees the engine */
	unsigned int nchan;
	struct p2p_pci_dev *dev;
	struct ce_chan chan[];
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
static bool ce_process(struct ce_chan *ch, uint32_t idx, uint64_t ring, uint64_t compl,
		       uint32_t mask)
{
	struct p2p_ce_desc d;
	struct p2p_ce_compl c = { 0 };
	int ret;

	ret = p2p_pci_dev_dma_rw(ch->dev, ring + (uint64_t)(idx & mask) * sizeof(d), &d,
				 sizeof(d), false);
	if (ret) {
		pthread_mutex_lock(&ch->lock);
		ch->status |= P2P_CE_STATUS_RING_FAULT;
		pthread_mutex_unlock(&ch->lock);
		return false;
	}
	c.id = d.id;
	c.status = ce_copy(ch->dev, d.src, d.dst, d.len, &c.bytes);
	ret = p2p_pci_dev_dma_rw(ch->dev, compl + (uint64_t)(idx & mask) * sizeof(c), &c,
				 sizeof(c), true);
	if (ret) {
		pthread_mutex_lock(&ch->lock);
		ch->status |= P2P_CE_STATUS_RING_FAULT;
		pthread_mutex_unlock(&ch->lock);
	}
	return d.flags & P2P_CE_DESC_IRQ;
}

/* Nothing to run: disabled, no ring, or caught up.  ch->lock held. */
static bool ce_idle_locked(struct ce_chan *ch)
{
	return !(ch->ctrl & P2P_CE_CTRL_ENABLE) || !ch->ring_size ||
	       atomic_load(&ch->head) == atomic_load(&ch->tail);
}

/* One channel's worker. */
static void *ce_worker(void *arg)
{
	struct ce_chan *ch = arg;

	dma_guard_thread();
	pthread_mutex_lock(&ch->lock);
	while (!ch->stop) {
		uint32_t head = atomic_load(&ch->head);
		uint64_t ring = ch->ring, compl = ch->compl;
		uint32_t mask = ch->ring_size - 1;
		bool irq;

		if (ce_idle_locked(ch)) {
			bool enabled = (ch->ctrl & P2P_CE_CTRL_ENABLE) && ch->ring_size;

			ch->busy = false;
			pthread_cond_broadcast(&ch->idle);
			pthread_mutex_unlock(&ch->lock);
			/* Streaming drivers ring again soon: look before sleeping. */
			for (int spin = 0; enabled && spin < 2000 && head == atomic_load(&ch->tail);
			     spin++)
				__builtin_ia32_pause();
			pthread_mutex_lock(&ch->lock);
			/* Disabled with descriptors pending: sleep too, not spin. */
			if (!ch->stop && ce_idle_locked(ch))
				pthread_cond_wait(&ch->kick, &ch->lock);
			continue;
		}
		ch->busy = true;
		pthread_mutex_unlock(&ch->lock);
		irq = ce_process(ch, head, ring, compl, mask);
		pthread_mutex_lock(&ch->lock);
		atomic_store(&ch->head, head + 1);
		if (irq) {
			/* MSI only once HEAD covers the descriptor, or a woken driver misses it. */
			pthread_mutex_unlock(&ch->lock);
			p2p_pci_dev_raise_irq(ch->dev, P2P_CE_CHAN_VECTOR(ch->idx));
			pthread_mutex_lock(&ch->lock);
		}
	}
	ch->busy = false;
	pthread_cond_broadcast(&ch->idle);
	pthread_mutex_unlock(&ch->lock);
	return NULL;
}

/* A channel register at @reg (its offset within the channel's block). */
static uint64_t ce_chan_rw(struct ce_chan *ch, uint64_t reg, uint64_t v, bool write)
{
	pthread_mutex_lock(&ch->lock);
	switch (reg) {
	case P2P_CE_REG_RING:
		if (write)
			ch->ring = v;
		v = ch->ring;
		break;
	case P2P_CE_REG_RING_SIZE:
		if (write && v <= 65536 && !(v & (v - 1))) {
			ch->ring_size = (uint32_t)v;
			pthread_cond_signal(&ch->kick);
		}
		v = ch->ring_size;
		break;
	case P2P_CE_REG_COMPL:
		if (write)
			ch->compl = v;
		v = ch->compl;
		break;
	case P2P_CE_REG_DOORBELL:
		if (write) {
			atomic_store(&ch->tail, (uint32_t)v);
			pthread_cond_signal(&ch->kick);
		}
		v = atomic_load(&ch->tail);
		break;
	case P2P_CE_REG_HEAD:
		v = atomic_load(&ch->head);
		break;
	case P2P_CE_REG_CTRL:
		if (write) {
			ch->ctrl = (uint32_t)v & P2P_CE_CTRL_ENABLE;
			pthread_cond_signal(&ch->kick);
		}
		v = ch->ctrl;
		break;
	case P2P_CE_REG_STATUS:
		v = ch->status | (ch->busy ? P2P_CE_STATUS_BUSY : 0);
		break;
	default:
		v = 0; /* reserved: reads 0, writes ignored */
		break;
	}
	pthread_mutex_unlock(&ch->lock);
	return v;
}

static int ce_bar_rw(struct p2p_pci_dev *dev, int bar, uint64_t off, void *data, size_t len,
		     bool write)
{
	struct copy_engine *ce = p2p_pci_dev_priv(dev);
	uint64_t v = 0, c = off / P2P_CE_CHAN_STRIDE, reg = off % P2P_CE_CHAN_STRIDE;

	if (bar != 0 || (len != 4 && len != 8) || off % len || off + len > P2P_CE_BAR0_SIZE)
		return -EINVAL;
	if (write)
		memcpy(&v, data, len);
	if (off == P2P_CE_REG_ID)
		v = P2P_CE_ID | (len == 8 ? (uint64_t)ce->nchan << 32 : 0);
	else if (off == P2P_CE_REG_CHANNELS)
		v = ce->nchan;
	else if (c < ce->nchan && reg >= P2P_CE_REG_RING)
		v = ce_chan_rw(&ce->chan[c], reg, v, write);
	else
		v = 0; /* reserved: reads 0, writes ignored */
	if (!write)
		memcpy(data, &v, len);
	return 0;
}

/* FLR / reset: each channel finishes the descriptor in flight, then clears every register. */
static void ce_reset(struct p2p_pci_dev *dev)
{
	struct copy_engine *ce = p2p_pci_dev_priv(dev);

	/* Stop every channel first, so that none starts new work while another drains. */
	for (unsigned int i = 0; i < ce->nchan; i++) {
		pthread_mutex_lock(&ce->chan[i].lock);
		ce->chan[i].ctrl = 0;
		pthread_mutex_unlock(&ce->chan[i].lock);
	}
	for (unsigned int i = 0; i < ce->nchan; i++) {
		struct ce_chan *ch = &ce->chan[i];

		pthread_mutex_lock(&ch->lock);
		ch->ctrl = 0;
		while (ch->busy)
			pthread_cond_wait(&ch->idle, &ch->lock);
		ch->ring = ch->compl = 0;
		ch->ring_size = 0;
		ch->status = 0;
		atomic_store(&ch->head, 0);
		atomic_store(&ch->tail, 0);
		pthread_mutex_unlock(&ch->lock);
	}
}

/* Stop and join the workers of channels [0, @n). */
static void ce_stop(struct copy_engine *ce, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		pthread_mutex_lock(&ce->chan[i].lock);
		ce->chan[i].stop = true;
		pthread_cond_signal(&ce->chan[i].kick);
		pthread_mutex_unlock(&ce->chan[i].lock);
	}
	for (unsigned int i = 0; i < n; i++)
		pthread_join(ce->chan[i].thread, NULL);
}

static void ce_free(struct copy_engine *ce)
{
	for (unsigned int i = 0; i < ce->nchan; i++) {
		pthread_mutex_destroy(&ce->chan[i].lock);
		pthread_cond_destroy(&ce->chan[i].kick);
		pthread_cond_destroy(&ce->chan[i].idle);
	}
	free(ce);
}

static void ce_release(struct p2p_pci_dev *dev)
{
	struct copy_engine *ce = p2p_pci_dev_priv(dev);

	if (!ce->started)
		return; /* unplugged by a failed create, which frees the engine */
	ce_stop(ce, ce->nchan);
	ce_free(ce);
}

static const struct p2p_pci_dev_ops ce_ops = {
	.reset = ce_reset,
	.bar_rw = ce_bar_rw,
	.release = ce_release,
};

/* One channel per online core, at most P2P_CE_MAX_CHANNELS. */
static unsigned int ce_default_channels(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > P2P_CE_MAX_CHANNELS ? P2P_CE_MAX_CHANNELS : (unsigned int)n;
}

P2P_API int p2p_copy_engine_create_opts(const char *name, struct p2p_pci_devset *set,
					uint32_t group, const struct p2p_copy_engine_opts *opts,
					struct p2p_pci_dev **out)
{
	unsigned int nchan = ce_default_channels(), started = 0;
	struct copy_engine *ce;
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
	};
	int ret;

	if (opts) {
		if (opts->argsz < offsetof(struct p2p_copy_engine_opts, channels) + sizeof(uint32_t))
			return -EINVAL;
		/* Unknown members must be zero (the kernel's rule for growing structs). */
		for (size_t i = sizeof(*opts); i < opts->argsz; i++)
			if (((const uint8_t *)opts)[i])
				return -EINVAL;
		if (opts->channels > P2P_CE_MAX_CHANNELS)
			return -EINVAL;
		if (opts->channels)
			nchan = opts->channels;
	}
	ce = calloc(1, sizeof(*ce) + nchan * sizeof(ce->chan[0]));
	if (!ce)
		return -ENOMEM;
	ce->nchan = nchan;
	/* Registers answer as soon as the function exists: every channel first. */
	for (unsigned int i = 0; i < nchan; i++) {
		ce->chan[i].idx = i;
		pthread_mutex_init(&ce->chan[i].lock, NULL);
		pthread_cond_init(&ce->chan[i].kick, NULL);
		pthread_cond_init(&ce->chan[i].idle, NULL);
	}
	info.priv = ce;
	ret = p2p_pci_dev_create(&info, &ce->dev);
	if (ret) {
		ce_free(ce);
		return ret;
	}
	for (; started < nchan; started++) {
		ce->chan[started].dev = ce->dev;
		ret = -pthread_create(&ce->chan[started].thread, NULL, ce_worker,
				      &ce->chan[started]);
		if (ret)
			break;
	}
	if (ret) {
		/* Unplug: the release op sees !started; the threads that run are ours to stop. */
		ce_stop(ce, started);
		p2p_pci_dev_put(ce->dev);
		ce_free(ce);
		return ret;
	}
	ce->started = true;
	*out = ce->dev;
	return 0;
}

P2P_API int p2p_copy_engine_create(const char *name, struct p2p_pci_devset *set, uint32_t group,
				   struct p2p_pci_dev **out)
{
	return p2p_copy_engine_create_opts(name, set, group, NULL, out);
}
