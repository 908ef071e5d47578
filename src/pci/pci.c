// SPDX-License-Identifier: MIT
/*
 * Emulated PCI functions: creation, device sets, the config space as the
 * function shows it after reset (identity, BAR sizing, PM, PCIe and MSI
 * capabilities) and its write semantics, BAR memory, the sysfs views.
 *
 * Locking: see pci.h.  The live config space is the driver's (VFIO's
 * vconfig): pci_config_*() work on the image they are given, under the
 * driver's lock.
 */
#define _GNU_SOURCE
#include <sys/resource.h>

#include "pci_priv.h"

P2P_API int p2p_pci_devset_create(struct p2p_pci_devset **out)
{
	struct p2p_pci_devset *set = calloc(1, sizeof(*set));

	if (!set)
		return -ENOMEM;
	kref_init(&set->ref);
	pthread_mutex_init(&set->lock, NULL);
	list_init(&set->devs);
	*out = set;
	return 0;
}

P2P_API void p2p_pci_devset_put(struct p2p_pci_devset *set)
{
	if (!set || !kref_put(&set->ref))
		return;
	pthread_mutex_destroy(&set->lock);
	free(set);
}

static uint32_t bar_flag_bits(const struct p2p_pci_bar_desc *b)
{
	if (b->flags & P2P_BAR_IO)
		return 0x1;
	return ((b->flags & P2P_BAR_MEM64) ? 0x4 : 0) | ((b->flags & P2P_BAR_PREFETCH) ? 0x8 : 0);
}

/* Address bits of BAR register @i that a write can change. */
static uint32_t bar_addr_mask(const struct p2p_pci_dev *dev, int i)
{
	const struct p2p_pci_bar_desc *b = &dev->bars[i];

	if (b->size)
		return (b->flags & P2P_BAR_IO) ? ~(uint32_t)(b->size - 1) & ~0x3u
					       : ~(uint32_t)(b->size - 1) & ~0xfu;
	/* The upper half of a 64-bit BAR. */
	if (i > 0 && (dev->bars[i - 1].flags & P2P_BAR_MEM64) && dev->bars[i - 1].size)
		return ~(uint32_t)((dev->bars[i - 1].size - 1) >> 32);
	return 0;
}

void pci_config_reset(const struct p2p_pci_dev *dev, struct pci_config *cfg)
{
	uint8_t *c = cfg->config;
	uint16_t cmd = CMD_MEM | CMD_MASTER;

	memset(c, 0, sizeof(cfg->config));
	memset(cfg->wmask, 0, sizeof(cfg->wmask));
	put16(c, 0x00, dev->vendor_id);
	put16(c, 0x02, dev->device_id);
	put16(c, 0x06, 0x0010); /* capability list */
	put32(c, 0x08, dev->class_code << 8);
	c[0x0e] = 0; /* type 0 header */
	c[0x34] = P2P_PCI_CAP_PM;
	/*
	 * Interrupt pin 0: the functions signal MSI only (a PCIe endpoint need
	 * not have INTx), so VFIO_DEVICE_GET_IRQ_INFO reports no INTx vector,
	 * as vfio-pci does for a function without a pin (src/vfio/dma_irq.c).
	 */
	c[0x3d] = 0;
	for (int i = 0; i < 6; i++) {
		if (dev->bars[i].flags & P2P_BAR_IO)
			cmd |= CMD_IO;
		if (dev->bars[i].size)
			cfg->bar_regs[i] = ((uint32_t)dev->bar_bus[i] & bar_addr_mask(dev, i)) |
					   bar_flag_bits(&dev->bars[i]);
		else if (bar_addr_mask(dev, i))
			cfg->bar_regs[i] = (uint32_t)(dev->bar_bus[i - 1] >> 32);
		else
			cfg->bar_regs[i] = 0;
	}
	put16(c, 0x04, cmd);
	put16(cfg->wmask, 0x04, 0x0547);
	cfg->wmask[0x3c] = 0xff;

	/* Power management capability, PMCSR: D0, No_Soft_Reset. */
	c[P2P_PCI_CAP_PM] = 0x01;
	c[P2P_PCI_CAP_PM + 1] = P2P_PCI_CAP_EXP;
	put16(c, P2P_PCI_CAP_PM + 2, 0x0003);
	put16(c, P2P_PCI_PM_CTRL, 0x0008);
	put16(cfg->wmask, P2P_PCI_PM_CTRL, 0x0003);

	/* PCI Express capability, endpoint, FLR if the function has it. */
	c[P2P_PCI_CAP_EXP] = 0x10;
	c[P2P_PCI_CAP_EXP + 1] = P2P_PCI_CAP_MSI;
	put16(c, P2P_PCI_CAP_EXP + 2, 0x0002);
	put32(c, P2P_PCI_EXP_DEVCAP, (dev->flags & P2P_PCI_NO_FLR) ? 0 : P2P_PCI_EXP_DEVCAP_FLR);
	put16(c, P2P_PCI_EXP_DEVCTL, 0x2810);
	put16(cfg->wmask, P2P_PCI_EXP_DEVCTL, 0x7fff);

	/*
	 * MSI capability: 64-bit address, Multiple Message Capable = 8 vectors
	 * (P2P_PCI_MAX_VECTORS, the MSI count VFIO_DEVICE_GET_IRQ_INFO reports,
	 * which vfio-pci derives from this field), no per-vector masking.  The
	 * enable bit, Multiple Message Enable, address and data are plain
	 * registers, as vfio-pci virtualizes them: the vectors are the
	 * eventfds of VFIO_DEVICE_SET_IRQS.
	 */
	c[P2P_PCI_CAP_MSI] = 0x05;
	c[P2P_PCI_CAP_MSI + 1] = 0;
	put16(c, P2P_PCI_CAP_MSI + 2, 0x0080 | (uint16_t)(__builtin_ctz(P2P_PCI_MAX_VECTORS) << 1));
	put16(cfg->wmask, P2P_PCI_CAP_MSI + 2, 0x0071);
	put32(cfg->wmask, P2P_PCI_CAP_MSI + 4, 0xfffffffc);
	put32(cfg->wmask, P2P_PCI_CAP_MSI + 8, 0xffffffff);
	put16(cfg->wmask, P2P_PCI_CAP_MSI + 12, 0xffff);
}

bool pci_config_memory_decode(const struct p2p_pci_dev *dev, const struct pci_config *cfg)
{
	if ((cfg->config[P2P_PCI_PM_CTRL] & 0x3) == 3)
		return false;
	return (dev->flags & P2P_PCI_VF) || (cfg->config[0x04] & CMD_MEM);
}

uint32_t pci_config_get(const struct pci_config *cfg, unsigned int off, unsigned int size)
{
	uint32_t v = 0;

	for (unsigned int i = 0; i < size; i++) {
		unsigned int o = off + i;
		uint8_t b;

		if (o >= 0x10 && o < 0x28)
			b = (uint8_t)(cfg->bar_regs[(o - 0x10) / 4] >> (8 * (o & 3)));
		else
			b = cfg->config[o];
		v |= (uint32_t)b << (8 * i);
	}
	return v;
}

/* Apply a write to @cfg (vconfig); side effects are the caller's (src/vfio). */
void pci_config_set(const struct p2p_pci_dev *dev, struct pci_config *cfg, unsigned int off,
		    unsigned int size, uint32_t v)
{
	for (unsigned int i = 0; i < size; i++) {
		unsigned int o = off + i;
		uint8_t b = (uint8_t)(v >> (8 * i));

		if (o >= 0x10 && o < 0x28) {
			int bar = (int)(o - 0x10) / 4;
			unsigned int sh = 8 * (o & 3);
			uint32_t reg = cfg->bar_regs[bar];
			uint32_t mask = bar_addr_mask(dev, bar);

			reg = (reg & ~(0xffu << sh)) | ((uint32_t)b << sh);
			cfg->bar_regs[bar] = (reg & mask) | (cfg->bar_regs[bar] & ~mask);
		} else {
			cfg->config[o] = (cfg->config[o] & ~cfg->wmask[o]) | (b & cfg->wmask[o]);
		}
	}
}

void pci_dev_get(struct p2p_pci_dev *dev)
{
	kref_get(&dev->ref);
}

/*
 * Where BAR @i's memory sits in its memfd: at its VFIO region offset, so a
 * BAR mmap maps the file at exactly the offset the program passed and
 * /proc/self/maps shows it (kernel-semantics 3.1).  The file is sparse; a
 * RLIMIT_FSIZE too small for that offset puts the memory at 0 instead
 * (maps then shows the offset within the BAR), rather than failing.
 */
static uint64_t bar_fd_offset(int i, uint64_t size)
{
	uint64_t off = P2P_VFIO_REGION_OFFSET(i);
	struct rlimit rl;

	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < off + size)
		return 0;
	return off;
}

P2P_API int p2p_pci_dev_create(const struct p2p_pci_dev_info *info, struct p2p_pci_dev **out)
{
	struct p2p_pci_dev *dev;
	static atomic_uint_fast64_t next_bus = 0x800000000000ull;
	int ret;

	if (!info || info->argsz < P2P_PCI_DEV_INFO_SIZE_V1)
		return -EINVAL;
	bool has_mems = info->argsz >= offsetof(struct p2p_pci_dev_info, bar_mems) +
					     sizeof(info->bar_mems);
	if (info->flags & ~(P2P_PCI_VF | P2P_PCI_NO_FLR | P2P_PCI_NO_DMABUF | P2P_PCI_HUGE |
			    P2P_PCI_PREFAULT))
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		const struct p2p_pci_bar_desc *b = &info->bars[i];

		if (!b->size)
			continue;
		if (b->size & (b->size - 1))
			return -EINVAL;
		if ((b->flags & P2P_BAR_IO) ? b->size < 4 || b->size > 256
					    : b->size < P2P_PAGE_SIZE)
			return -EINVAL;
		if ((b->flags & P2P_BAR_IO) && (b->flags & (P2P_BAR_MEM64 | P2P_BAR_PREFETCH)))
			return -EINVAL;
		if (!(b->flags & P2P_BAR_MEM64) && b->size > (1ull << 31))
			return -EINVAL;
		if ((b->flags & P2P_BAR_MEM64) && (i == 5 || info->bars[i + 1].size))
			return -EINVAL;
		/* External memory: a memory BAR's, covering it. */
		if (has_mems && info->bar_mems[i] &&
		    ((b->flags & P2P_BAR_IO) || p2p_mem_size(info->bar_mems[i]) < b->size))
			return -EINVAL;
	}
	if (has_mems)
		for (int i = 0; i < 6; i++)
			if (info->bar_mems[i] && !info->bars[i].size)
				return -EINVAL;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	kref_init(&dev->ref);
	snprintf(dev->name, sizeof(dev->name), "%s", info->name ? info->name : "0000:00:00.0");
	dev->flags = info->flags;
	dev->vendor_id = info->vendor_id;
	dev->device_id = info->device_id;
	dev->class_code = info->class_code;
	dev->group = info->group;
	dev->ops = info->ops;
	dev->priv = info->priv;
	memcpy(dev->bars, info->bars, sizeof(dev->bars));
	list_init(&dev->set_node);

	for (int i = 0; i < 6; i++) {
		const struct p2p_pci_bar_desc *b = &dev->bars[i];
		char name[64];
		uint64_t sz = b->size, align = MAX(sz, P2P_PAGE_SIZE);

		if (!sz)
			continue;
		snprintf(name, sizeof(name), "%s/bar%d", dev->name, i);
		if (has_mems && info->bar_mems[i]) {
			dev->bar_mem[i] = p2p_mem_get(info->bar_mems[i]);
			ret = 0;
		} else {
			ret = mem_create(name, ALIGN_UP(sz, P2P_PAGE_SIZE),
					 ((dev->flags & P2P_PCI_HUGE) ? P2P_MEM_HUGE : 0) |
						 ((dev->flags & P2P_PCI_PREFAULT) ? P2P_MEM_POPULATE
										   : 0),
					 bar_fd_offset(i, ALIGN_UP(sz, P2P_PAGE_SIZE)),
					 &dev->bar_mem[i]);
		}
		if (ret)
			goto err;
		/* Naturally aligned bus addresses, as a BIOS would assign. */
		dev->bar_bus[i] = ALIGN_UP(atomic_fetch_add(&next_bus, align * 2), align);
		if (b->flags & P2P_BAR_IO)
			dev->bar_bus[i] = 0x1000 + (uint64_t)i * 0x100;
	}

	/* Bound before it joins its set: a hot reset of the set sees its driver state. */
	dev->driver = &vfio_pci_driver;
	ret = dev->driver->probe(dev);
	if (ret) {
		dev->driver = NULL;
		goto err;
	}
	if (info->devset) {
		dev->set = info->devset;
		kref_get(&dev->set->ref);
	} else {
		ret = p2p_pci_devset_create(&dev->set);
		if (ret)
			goto err;
	}
	pthread_mutex_lock(&dev->set->lock);
	list_add_tail(&dev->set_node, &dev->set->devs);
	pthread_mutex_unlock(&dev->set->lock);
	*out = dev;
	return 0;

err:
	if (dev->driver)
		dev->driver->remove(dev);
	for (int i = 0; i < 6; i++)
		p2p_mem_put(dev->bar_mem[i]);
	free(dev);
	return ret;
}

P2P_API void p2p_pci_dev_put(struct p2p_pci_dev *dev)
{
	struct p2p_pci_devset *set;

	if (!dev || !kref_put(&dev->ref))
		return;
	set = dev->set;
	pthread_mutex_lock(&set->lock);
	list_del_init(&dev->set_node);
	pthread_mutex_unlock(&set->lock);
	p2p_pci_devset_put(set);
	if (dev->ops && dev->ops->release)
		dev->ops->release(dev);
	dev->driver->remove(dev);
	for (int i = 0; i < 6; i++)
		p2p_mem_put(dev->bar_mem[i]);
	free(dev);
}

P2P_API const char *p2p_pci_dev_name(const struct p2p_pci_dev *dev)
{
	return dev->name;
}

P2P_API void *p2p_pci_dev_priv(const struct p2p_pci_dev *dev)
{
	return dev->priv;
}

P2P_API struct p2p_mem *p2p_pci_dev_bar_mem(const struct p2p_pci_dev *dev, int bar)
{
	if (bar < 0 || bar >= 6)
		return NULL;
	return dev->bar_mem[bar];
}

/*
 * The backend's state is the function's (hardware: the kernel's
 * pci_dev->error_state); the driver bound to it reacts (disables memory,
 * revokes its dma-bufs) in backend_changed, which reads the state again
 * under its own lock: of two racing changes, the last one stored wins.
 */
P2P_API int p2p_pci_dev_backend_state(struct p2p_pci_dev *dev, int state)
{
	uint8_t old;

	if (state < P2P_PCI_BACKEND_OK || state > P2P_PCI_BACKEND_GONE)
		return -EINVAL;
	old = atomic_load_explicit(&dev->backend_state, memory_order_relaxed);
	do {
		if (old == P2P_PCI_BACKEND_GONE)
			return -EBADFD;
	} while (!atomic_compare_exchange_weak_explicit(&dev->backend_state, &old, (uint8_t)state,
							memory_order_acq_rel,
							memory_order_relaxed));
	return dev->driver->backend_changed(dev);
}

/* ---------------------------------------------------------------------- */
/* Views for sysfs (the door's /sys/bus/pci/devices/BDF/)                  */

P2P_API unsigned int p2p_pci_dev_group(struct p2p_pci_dev *pdev)
{
	return pdev->group;
}

P2P_API int p2p_pci_dev_config_read(struct p2p_pci_dev *pdev, unsigned int off, void *buf,
				    size_t len)
{
	if (off > P2P_PCI_CFG_SIZE || len > P2P_PCI_CFG_SIZE - off)
		return -EINVAL;
	/* The live config space is the driver's (closed: as after reset). */
	return pdev->driver->config_read(pdev, off, buf, len);
}

P2P_API int p2p_pci_dev_bar_info(struct p2p_pci_dev *pdev, int bar, uint64_t *bus_addr,
				 uint64_t *size, uint32_t *flags)
{
	if (bar < 0 || bar > 5)
		return -EINVAL;
	if (bus_addr)
		*bus_addr = pdev->bars[bar].size ? pdev->bar_bus[bar] : 0;
	if (size)
		*size = pdev->bars[bar].size;
	if (flags)
		*flags = pdev->bars[bar].flags;
	return 0;
}
