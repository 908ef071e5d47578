// SPDX-License-Identifier: MIT
/*
 * Config space emulation (drivers/vfio/pci/vfio_pci_config.c): accesses
 * through the config region and p2p_vfio_config_read() / write(), with
 * the revoke triggers of kernel-semantics 1.7 (COMMAND.MEM, PM D3hot/D0,
 * FLR through DEVCTL).
 *
 * Locking: every access holds dev->memory_lock, for write when it writes
 * (a revoke trigger), for read when it reads (pci.h; the order is
 * docs/locking.md's).
 */
#define _GNU_SOURCE
#include "vfio_priv.h"

static bool range_hits(unsigned int off, unsigned int size, unsigned int reg,
		       unsigned int reg_size)
{
	return off < reg + reg_size && reg < off + size;
}

/* One naturally aligned 1/2/4-byte config write, with its side effects. */
static int config_write_locked(struct p2p_pci_dev *dev, unsigned int off, unsigned int size,
			       uint32_t val)
{
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
		uint8_t cmd = dev->config[0x04], pm = dev->config[P2P_PCI_PM_CTRL];

		pci_config_set(dev, off, size, val);
		bool enabled_after = pci_memory_enabled_locked(dev);

		dev->config[0x04] = cmd;
		dev->config[P2P_PCI_PM_CTRL] = pm;
		if (!enabled_after)
			ret = vfio_dmabufs_move(dev, true);
	}
	pci_config_set(dev, off, size, val);

	if (flr) {
		/* FLR from DEVCTL: revoke, reset, un-revoke if memory is enabled. */
		err = vfio_dmabufs_move(dev, true);
		ret = ret ? ret : err;
		if (dev->ops && dev->ops->reset)
			dev->ops->reset(dev);
	}
	/* MEM set / D0 / reset done: un-revoke only if memory is now enabled. */
	if (pci_memory_enabled_locked(dev)) {
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
	size_t done = 0;
	int err = 0;

	/* vfio_config_do_rw(): outside the config space is -EFAULT. */
	if (off >= P2P_PCI_CFG_SIZE || len > P2P_PCI_CFG_SIZE - off)
		return -EFAULT;
	if (write)
		pthread_rwlock_wrlock(&dev->memory_lock);
	else
		pthread_rwlock_rdlock(&dev->memory_lock);
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
			v = pci_config_get(dev, o, sz);
			memcpy(buf + done, &v, sz);
		}
		done += sz;
	}
	pthread_rwlock_unlock(&dev->memory_lock);
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
