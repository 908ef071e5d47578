// SPDX-License-Identifier: MIT
/*
 * Config space emulation (drivers/vfio/pci/vfio_pci_config.c): accesses
 * through the config region and p2p_vfio_config_read() / write(), with
 * the revoke triggers of kernel-semantics 1.7 (COMMAND.MEM, PM D3hot/D0,
 * FLR through DEVCTL).
 *
 * The vconfig (vc->vconfig) is VFIO's, as the kernel's vdev->vconfig:
 * reset at first open from what the function shows after reset
 * (pci_config_reset()), written with the function's write semantics
 * (pci_config_set()).
 *
 * Locking: every access holds vc->memory_lock, for write when it writes
 * (a revoke trigger), for read when it reads (vfio_priv.h; the order is
 * docs/locking.md's).
 */
#define _GNU_SOURCE
#include "vfio_priv.h"

/* __vfio_pci_memory_enabled() */
bool vfio_memory_enabled_locked(const struct p2p_pci_dev *dev)
{
	const struct vfio_pci_core *vc = vfio_pci_core(dev);

	/* Never-opened functions have no vconfig: not enabled (1.7 item 6). */
	if (!vc->open_count || vc->low_power)
		return false;
	/* Its backend took the memory away (revoked, or gone for good). */
	if (pci_backend_state(dev) != P2P_PCI_BACKEND_OK)
		return false;
	return pci_config_memory_decode(dev, &vc->vconfig);
}

void vfio_vconfig_reset(struct p2p_pci_dev *dev)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);

	pci_config_reset(dev, &vc->vconfig);
	vc->low_power = false;
}

P2P_API bool p2p_pci_dev_memory_enabled(struct p2p_pci_dev *dev)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	bool en;

	pthread_rwlock_rdlock(&vc->memory_lock);
	en = vfio_memory_enabled_locked(dev);
	pthread_rwlock_unlock(&vc->memory_lock);
	return en;
}

/* The driver's config_read (sysfs "config"): no side effects on the device. */
int vfio_config_read_raw(struct p2p_pci_dev *dev, unsigned int off, void *buf, size_t len)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	uint8_t *b = buf;

	pthread_mutex_lock(&vc->open_lock);
	/* Closed: what the function shows after reset (open_device resets it too). */
	pthread_rwlock_wrlock(&vc->memory_lock);
	if (!vc->open_count)
		vfio_vconfig_reset(dev);
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)pci_config_get(&vc->vconfig, off + (unsigned int)i, 1);
	pthread_rwlock_unlock(&vc->memory_lock);
	pthread_mutex_unlock(&vc->open_lock);
	return 0;
}

static bool range_hits(unsigned int off, unsigned int size, unsigned int reg,
		       unsigned int reg_size)
{
	return off < reg + reg_size && reg < off + size;
}

/* One naturally aligned 1/2/4-byte config write, with its side effects. */
static int config_write_locked(struct p2p_pci_dev *dev, unsigned int off, unsigned int size,
			       uint32_t val)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	bool flr = false;
	int ret = 0, err;

	if (range_hits(off, size, P2P_PCI_EXP_DEVCTL + 1, 1)) {
		uint8_t hi = (uint8_t)(val >> (8 * (P2P_PCI_EXP_DEVCTL + 1 - off)));

		flr = (hi & (P2P_PCI_EXP_DEVCTL_BCR_FLR >> 8)) && !(dev->flags & P2P_PCI_NO_FLR);
	}

	/*
	 * COMMAND.MEM clear, D3hot: revoke *before* the new value reaches the
	 * device.  Work out what the write would do on a copy first.
	 */
	if (range_hits(off, size, 0x04, 2) || range_hits(off, size, P2P_PCI_PM_CTRL, 2)) {
		uint8_t cmd = vc->vconfig.config[0x04], pm = vc->vconfig.config[P2P_PCI_PM_CTRL];

		pci_config_set(dev, &vc->vconfig, off, size, val);
		bool enabled_after = vfio_memory_enabled_locked(dev);

		vc->vconfig.config[0x04] = cmd;
		vc->vconfig.config[P2P_PCI_PM_CTRL] = pm;
		if (!enabled_after)
			ret = vfio_dmabufs_move(dev, true);
	}
	pci_config_set(dev, &vc->vconfig, off, size, val);

	if (flr) {
		/* FLR from DEVCTL: revoke, reset, un-revoke if memory is enabled. */
		err = vfio_dmabufs_move(dev, true);
		ret = ret ? ret : err;
		if (dev->ops && dev->ops->reset)
			dev->ops->reset(dev);
	}
	/* MEM set / D0 / reset done: un-revoke only if memory is now enabled. */
	if (vfio_memory_enabled_locked(dev)) {
		err = vfio_dmabufs_move(dev, false);
		ret = ret ? ret : err;
	}
	/*
	 * The write reached the device either way; an error says a CPU
	 * mapping could not be revoked (or restored) and is retried later.
	 */
	return ret;
}

int vfio_config_access(struct p2p_vfio_device *vdev, uint8_t *buf, size_t len, uint64_t off,
		       bool write)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	size_t done = 0;
	int err = 0;

	/* vfio_config_do_rw(): outside the config space is -EFAULT. */
	if (off >= P2P_PCI_CFG_SIZE || len > P2P_PCI_CFG_SIZE - off)
		return -EFAULT;
	if (write)
		pthread_rwlock_wrlock(&vc->memory_lock);
	else
		pthread_rwlock_rdlock(&vc->memory_lock);
	while (done < len) {
		unsigned int o = (unsigned int)(off + done);
		unsigned int sz = (o % 4 == 0 && len - done >= 4) ? 4
				  : (o % 2 == 0 && len - done >= 2) ? 2 : 1;
		uint32_t v = 0;

		if (write) {
			memcpy(&v, buf + done, sz);
			int e = config_write_locked(dev, o, sz, v);

			err = err ? err : e;
		} else {
			v = pci_config_get(&vc->vconfig, o, sz);
			memcpy(buf + done, &v, sz);
		}
		done += sz;
	}
	pthread_rwlock_unlock(&vc->memory_lock);
	/* A backend sees the write after the emulation did (no lock held). */
	if (write && dev->ops && dev->ops->config_write) {
		int e = dev->ops->config_write(dev, (unsigned int)off, buf, len);

		err = err ? err : e;
	}
	/* Written, but a CPU mapping could not be revoked: say so. */
	return err ? err : (int)len;
}

P2P_API int p2p_vfio_config_read(struct p2p_vfio_device *vdev, unsigned int off,
				 unsigned int size, uint32_t *val)
{
	int ret;

	if ((size != 1 && size != 2 && size != 4) || off % size)
		return -EINVAL;
	*val = 0;
	ret = vfio_config_access(vdev, (uint8_t *)val, size, off, false);
	return ret < 0 ? ret : 0;
}

P2P_API int p2p_vfio_config_write(struct p2p_vfio_device *vdev, unsigned int off,
				  unsigned int size, uint32_t val)
{
	int ret;

	if ((size != 1 && size != 2 && size != 4) || off % size)
		return -EINVAL;
	ret = vfio_config_access(vdev, (uint8_t *)&val, size, off, true);
	return ret < 0 ? ret : 0;
}
