// SPDX-License-Identifier: MIT
/*
 * Every revoke trigger of vfio-pci (kernel-semantics 1.7) and its
 * un-revoke, with the VFIO exporter on BAR2 of an emulated function.
 *
 * For each trigger: an existing dynamic attachment is invalidated, a new
 * attach and a map fail with ENODEV, an existing CPU mapping of the dma-buf
 * raises SIGBUS while revoked, and after the un-revoke the same mapping
 * works again and shows the data written before (and what the device wrote
 * meanwhile).  Resets are observed from inside the device's reset callback,
 * which runs with the function's memory lock held, between revoke and
 * un-revoke.
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ull
#define BAR2_SIZE (1ull << 20)
#define BUF_LEN (64 * 1024)

/* ---------------------------------------------------------------------- */
/* A function with a reset callback that can look at a rig mid-reset      */

struct rig;

struct obs {
	int resets;
	struct rig *rig;	/* checked inside the reset callback if set */
	int inval_during;	/* invalidations the rig should show by then */
	int seen_revoked;	/* resets during which the rig was fully revoked */
};

struct tdev {
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct obs obs;
};

/* A dma-buf of BAR2 [0, BUF_LEN) with an importer and a CPU mapping. */
struct rig {
	struct tdev *dev;
	int fd;
	struct p2p_dmabuf *buf;
	struct t_importer imp;
	uint8_t *cpu;
	uint8_t want[BUF_LEN]; /* what the memory must hold */
};

static bool rig_revoked(struct rig *r, int inval);

static void obs_reset(struct p2p_pci_dev *pci)
{
	struct obs *o = p2p_pci_dev_priv(pci);

	o->resets++;
	if (o->rig && rig_revoked(o->rig, o->inval_during))
		o->seen_revoked++;
}

static const struct p2p_pci_dev_ops obs_ops = { .reset = obs_reset };

static int tdev_create(struct tdev *d, const char *name, uint32_t flags)
{
	struct p2p_pci_dev_info info;

	t_dev_info(&info, name, BAR2_SIZE, flags, NULL, 7);
	info.ops = &obs_ops;
	info.priv = &d->obs;
	memset(d, 0, sizeof(*d));
	return t_dev_open_info(&info, &d->pci, &d->vdev);
}

static void tdev_destroy(struct tdev *d)
{
	if (d->vdev)
		p2p_vfio_device_close(d->vdev);
	p2p_pci_dev_put(d->pci);
	memset(d, 0, sizeof(*d));
}

static uint8_t *bar2_dev_view(struct tdev *d)
{
	return t_bar_ptr(d->pci, 2, 0);
}

/* ---------------------------------------------------------------------- */
/* Probes                                                                  */

static int try_mmap(struct p2p_dmabuf *buf)
{
	void *p;
	int ret = p2p_dmabuf_mmap(buf, NULL, PAGE, PROT_READ, MAP_SHARED, 0, &p);

	if (!ret)
		p2p_munmap(p, PAGE);
	return ret;
}

static int rig_setup(struct rig *r, struct tdev *d, uint8_t seed)
{
	void *p;
	int ret;

	memset(r, 0, sizeof(*r));
	r->dev = d;
	r->fd = t_dmabuf_range(d->vdev, 2, 0, BUF_LEN);
	CHECK(r->fd >= 0);
	if (r->fd < 0)
		return r->fd;
	ret = p2p_dmabuf_get(r->fd, &r->buf);
	CHECK_OK(ret);
	if (ret)
		goto err_fd;
	ret = p2p_dmabuf_mmap(r->buf, NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &p);
	CHECK_OK(ret);
	if (ret)
		goto err_put;
	r->cpu = p;
	for (size_t i = 0; i < BUF_LEN; i++)
		r->want[i] = (uint8_t)(seed + i * 7 + (i >> 12));
	memcpy(r->cpu, r->want, BUF_LEN);
	ret = t_importer_attach(&r->imp, r->buf, P2P_ATTACH_PEER2PEER, true);
	CHECK_OK(ret);
	if (ret)
		goto err_unmap;
	ret = t_importer_map(&r->imp);
	CHECK_OK(ret);
	return ret;

err_unmap:
	p2p_munmap(r->cpu, BUF_LEN);
err_put:
	p2p_dmabuf_put(r->buf);
err_fd:
	p2p_close(r->fd);
	memset(r, 0, sizeof(*r));
	return ret;
}

static void rig_teardown(struct rig *r)
{
	if (!r->buf)
		return;
	t_importer_detach(&r->imp);
	CHECK_OK(p2p_munmap(r->cpu, BUF_LEN));
	p2p_dmabuf_put(r->buf);
	CHECK_OK(p2p_close(r->fd));
	memset(r, 0, sizeof(*r));
}

/*
 * While revoked (1.5, 1.6, 3.3): the importer was invalidated @inval times
 * in all and unmapped, new attach / map / mmap -> ENODEV, the CPU mapping
 * faults.  Safe inside a reset callback (takes only resv).  Returns whether
 * everything held, CHECKing each.
 */
static bool rig_revoked(struct rig *r, int inval)
{
	int before = t_failures;

	CHECK(r->imp.invalidations == inval);
	CHECK(!r->imp.sgt);
	CHECK(p2p_dmabuf_status(r->buf) != P2P_DMABUF_OK);
	CHECK_ERR(t_try_attach(r->buf), -ENODEV);
	CHECK_ERR(t_importer_map(&r->imp), -ENODEV);
	CHECK_ERR(try_mmap(r->buf), -ENODEV);
	CHECK(t_faults_everywhere(r->cpu, BUF_LEN));
	CHECK(t_write_faults(r->cpu + 5, r->want[5]));
	return t_failures == before;
}

/* Live again (1.6 un-revoke, 7.3): the importer was not told, can map again; data intact. */
static void rig_live(struct rig *r, int inval)
{
	struct p2p_mem *bar = p2p_pci_dev_bar_mem(r->dev->pci, 2);

	CHECK(p2p_dmabuf_status(r->buf) == P2P_DMABUF_OK);
	CHECK(r->imp.invalidations == inval);
	CHECK(!t_faults_anywhere(r->cpu, BUF_LEN));
	if (!t_faults_anywhere(r->cpu, BUF_LEN))
		CHECK(memcmp(r->cpu, r->want, BUF_LEN) == 0);
	CHECK(memcmp(bar2_dev_view(r->dev), r->want, BUF_LEN) == 0);
	CHECK_OK(t_try_attach(r->buf));
	CHECK_OK(try_mmap(r->buf));
	if (!r->imp.sgt) {
		CHECK_OK(t_importer_map(&r->imp));
		CHECK(r->imp.sgt && r->imp.sgt->nents == 1);
		if (r->imp.sgt && r->imp.sgt->nents == 1)
			CHECK(r->imp.sgt->ents[0].mem == bar && r->imp.sgt->ents[0].offset == 0 &&
			      r->imp.sgt->ents[0].length == BUF_LEN);
	}
}

/* The device changes BAR memory while the CPU mapping is revoked. */
static void device_writes(struct rig *r, size_t off, uint8_t v)
{
	bar2_dev_view(r->dev)[off] = v;
	r->want[off] = v;
}

/* ---------------------------------------------------------------------- */
/* 1.7 item 1: PCI_COMMAND.MEM                                             */

static void test_command_mem(void)
{
	struct tdev d;
	struct rig r;
	uint8_t b;

	t_section("command-mem");
	if (tdev_create(&d, "0000:10:00.0", 0))
		return;
	CHECK(p2p_pci_dev_memory_enabled(d.pci));
	if (rig_setup(&r, &d, 1))
		goto out;

	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK(!p2p_pci_dev_memory_enabled(d.pci));
	CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_TEMP_REVOKED);
	rig_revoked(&r, 1);
	/* BAR access through the region fails while decoding is off. */
	CHECK_ERR(p2p_vfio_device_pread(d.vdev, &b, 1, P2P_VFIO_REGION_OFFSET(2)), -EIO);
	device_writes(&r, 3 * PAGE + 1, 0xee);

	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK(p2p_pci_dev_memory_enabled(d.pci));
	rig_live(&r, 1);
	CHECK_ERR(p2p_vfio_device_pread(d.vdev, &b, 1, P2P_VFIO_REGION_OFFSET(2) + 3 * PAGE + 1),
		  1);
	CHECK(b == 0xee);

	/* A second cycle behaves the same (re-armed after each revoke, 1.6). */
	CHECK_OK(t_mem_enable(d.vdev, false));
	rig_revoked(&r, 2);
	CHECK_OK(t_mem_enable(d.vdev, true));
	rig_live(&r, 2);

	/* A single-byte write of COMMAND works the same way. */
	{
		uint32_t cmd;

		CHECK_OK(p2p_vfio_config_read(d.vdev, 0x04, 1, &cmd));
		CHECK_OK(p2p_vfio_config_write(d.vdev, 0x04, 1, cmd & ~0x2u));
		rig_revoked(&r, 3);
		CHECK_OK(p2p_vfio_config_write(d.vdev, 0x04, 1, cmd | 0x2u));
		rig_live(&r, 3);
	}
	/* Config writes elsewhere do not revoke. */
	CHECK_OK(p2p_vfio_config_write(d.vdev, 0x3c, 1, 0x0b));
	CHECK(r.imp.invalidations == 3 && r.imp.sgt);
	CHECK(!t_faults_anywhere(r.cpu, BUF_LEN));

	rig_teardown(&r);
out:
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 1.7 item 2: PM D3hot and back to D0                                     */

static void test_power_state(void)
{
	struct tdev d;
	struct rig r;

	t_section("d3hot");
	if (tdev_create(&d, "0000:11:00.0", 0))
		return;
	if (rig_setup(&r, &d, 2))
		goto out;

	CHECK_OK(t_set_power(d.vdev, 3));
	CHECK(!p2p_pci_dev_memory_enabled(d.pci));
	rig_revoked(&r, 1);
	device_writes(&r, 100, 0x11);
	CHECK_OK(t_set_power(d.vdev, 3)); /* D3hot again: no second revoke */
	CHECK(r.imp.invalidations == 1);
	CHECK_OK(t_set_power(d.vdev, 0));
	rig_live(&r, 1);

	/* Back to D0 with MEM clear: un-revoke only if memory is enabled. */
	CHECK_OK(t_set_power(d.vdev, 3));
	rig_revoked(&r, 2);
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK(r.imp.invalidations == 2);
	CHECK_OK(t_set_power(d.vdev, 0));
	rig_revoked(&r, 2);
	/* MEM set while in D3hot does not un-revoke either. */
	CHECK_OK(t_set_power(d.vdev, 3));
	CHECK_OK(t_mem_enable(d.vdev, true));
	rig_revoked(&r, 2);
	CHECK_OK(t_set_power(d.vdev, 0));
	rig_live(&r, 2);

	rig_teardown(&r);
out:
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 1.7 item 4: FLR started by a PCIe DEVCTL write                          */

static void test_flr(void)
{
	struct tdev d;
	struct rig r;
	uint32_t ctl;

	t_section("flr");
	if (tdev_create(&d, "0000:12:00.0", 0))
		return;
	if (rig_setup(&r, &d, 3))
		goto out;

	d.obs.rig = &r;
	d.obs.inval_during = 1;
	CHECK_OK(t_flr(d.vdev));
	/* Revoked during the reset, un-revoked after: memory stays enabled. */
	CHECK(d.obs.resets == 1);
	CHECK(d.obs.seen_revoked == 1);
	rig_live(&r, 1);
	/* The initiate bit does not stick: a second FLR works the same. */
	CHECK_OK(p2p_vfio_config_read(d.vdev, P2P_PCI_EXP_DEVCTL, 2, &ctl));
	CHECK(!(ctl & P2P_PCI_EXP_DEVCTL_BCR_FLR));
	d.obs.inval_during = 2;
	CHECK_OK(t_flr(d.vdev));
	CHECK(d.obs.resets == 2 && d.obs.seen_revoked == 2);
	rig_live(&r, 2);

	/* FLR with memory disabled: still revoked afterwards (Xu Yilun's polarity fix). */
	d.obs.rig = NULL;
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK_OK(t_flr(d.vdev));
	CHECK(d.obs.resets == 3);
	rig_revoked(&r, 3);
	CHECK_OK(t_mem_enable(d.vdev, true));
	rig_live(&r, 3);

	rig_teardown(&r);
out:
	tdev_destroy(&d);

	/* Without the FLR capability a DEVCTL write resets and revokes nothing. */
	if (tdev_create(&d, "0000:12:00.1", P2P_PCI_NO_FLR))
		return;
	if (!rig_setup(&r, &d, 4)) {
		uint32_t cap;

		CHECK_OK(p2p_vfio_config_read(d.vdev, P2P_PCI_EXP_DEVCAP, 4, &cap));
		CHECK(!(cap & P2P_PCI_EXP_DEVCAP_FLR));
		CHECK_OK(t_flr(d.vdev));
		CHECK(d.obs.resets == 0);
		CHECK(r.imp.invalidations == 0 && r.imp.sgt);
		CHECK(!t_faults_anywhere(r.cpu, BUF_LEN));
		rig_teardown(&r);
	}
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 1.7 item 5: VFIO_DEVICE_RESET                                           */

static void test_device_reset(void)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct tdev d;
	struct rig r;
	uint32_t pm;

	t_section("device-reset");
	if (tdev_create(&d, "0000:13:00.0", 0))
		return;
	if (rig_setup(&r, &d, 5))
		goto out;
	CHECK_OK(p2p_vfio_device_ioctl(d.vdev, VFIO_DEVICE_GET_INFO, &info));
	CHECK(info.flags & VFIO_DEVICE_FLAGS_RESET);

	d.obs.rig = &r;
	d.obs.inval_during = 1;
	CHECK_OK(p2p_vfio_device_reset(d.vdev));
	CHECK(d.obs.resets == 1 && d.obs.seen_revoked == 1);
	rig_live(&r, 1);

	/* The same through the ioctl. */
	d.obs.inval_during = 2;
	CHECK_OK(p2p_vfio_device_ioctl(d.vdev, VFIO_DEVICE_RESET, NULL));
	CHECK(d.obs.resets == 2 && d.obs.seen_revoked == 2);
	rig_live(&r, 2);

	/* From D3hot: the reset moves the function to D0 first, so it comes back live. */
	d.obs.rig = NULL;
	CHECK_OK(t_set_power(d.vdev, 3));
	rig_revoked(&r, 3);
	device_writes(&r, BUF_LEN - 1, 0x77);
	CHECK_OK(p2p_vfio_device_ioctl(d.vdev, VFIO_DEVICE_RESET, NULL));
	CHECK(d.obs.resets == 3);
	CHECK_OK(p2p_vfio_config_read(d.vdev, P2P_PCI_PM_CTRL, 2, &pm));
	CHECK((pm & 3) == 0);
	rig_live(&r, 3);

	/* Memory disabled: revoked across the reset and still revoked after. */
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK_OK(p2p_vfio_device_reset(d.vdev));
	CHECK(d.obs.resets == 4);
	rig_revoked(&r, 4);
	CHECK_OK(t_mem_enable(d.vdev, true));
	rig_live(&r, 4);

	rig_teardown(&r);
out:
	tdev_destroy(&d);

	/* reset_works false (no FLR) -> EINVAL, and nothing is revoked. */
	if (tdev_create(&d, "0000:13:00.1", P2P_PCI_NO_FLR))
		return;
	if (!rig_setup(&r, &d, 6)) {
		info = (struct vfio_device_info){ .argsz = sizeof(info) };
		CHECK_OK(p2p_vfio_device_ioctl(d.vdev, VFIO_DEVICE_GET_INFO, &info));
		CHECK(!(info.flags & VFIO_DEVICE_FLAGS_RESET));
		CHECK_ERR(p2p_vfio_device_reset(d.vdev), -EINVAL);
		CHECK_ERR(p2p_vfio_device_ioctl(d.vdev, VFIO_DEVICE_RESET, NULL), -EINVAL);
		CHECK(d.obs.resets == 0);
		CHECK(r.imp.invalidations == 0 && r.imp.sgt);
		CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_OK);
		CHECK(!t_faults_anywhere(r.cpu, BUF_LEN));
		rig_teardown(&r);
	}
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 1.7 item 3: runtime PM low power entry (feature 3) and exit (feature 5) */

static long feature(struct p2p_vfio_device *vdev, uint32_t flags)
{
	struct vfio_device_feature f = { .argsz = sizeof(f), .flags = flags };

	return p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_FEATURE, &f);
}

static void test_low_power(void)
{
	const uint32_t entry = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	const uint32_t exit_ = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
	struct tdev d;
	struct rig r;

	t_section("low-power");
	if (tdev_create(&d, "0000:14:00.0", 0))
		return;
	if (rig_setup(&r, &d, 7))
		goto out;

	/* PROBE and a wrong direction change nothing (1.2). */
	CHECK_OK(feature(d.vdev, entry | VFIO_DEVICE_FEATURE_PROBE));
	CHECK_ERR(feature(d.vdev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY),
		  -EINVAL);
	CHECK(r.imp.invalidations == 0 && p2p_dmabuf_status(r.buf) == P2P_DMABUF_OK);

	CHECK_OK(feature(d.vdev, entry));
	CHECK(!p2p_pci_dev_memory_enabled(d.pci));
	rig_revoked(&r, 1);
	device_writes(&r, 2 * PAGE, 0x42);
	/* Entry while engaged: EINVAL (vfio_pci_runtime_pm_entry), no second revoke. */
	CHECK_ERR(feature(d.vdev, entry), -EINVAL);
	rig_revoked(&r, 1);
	CHECK_OK(feature(d.vdev, exit_));
	rig_live(&r, 1);
	CHECK_OK(feature(d.vdev, exit_)); /* idempotent */
	CHECK(r.imp.invalidations == 1 && r.imp.sgt);

	/* Exit un-revokes only if memory is enabled. */
	CHECK_OK(feature(d.vdev, entry));
	rig_revoked(&r, 2);
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK_OK(feature(d.vdev, exit_));
	rig_revoked(&r, 2);
	CHECK_OK(t_mem_enable(d.vdev, true));
	rig_live(&r, 2);

	rig_teardown(&r);
out:
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 1.7 item 7, 1.6 cleanup: device close is a permanent revoke (7.4)      */

static void test_device_close(void)
{
	struct p2p_dmabuf *again = NULL;
	struct tdev d;
	struct rig r;

	t_section("device-close");
	if (tdev_create(&d, "0000:15:00.0", 0))
		return;
	if (rig_setup(&r, &d, 8))
		goto out;

	CHECK(p2p_pci_dev_open_count(d.pci) == 1);
	p2p_vfio_device_close(d.vdev);
	d.vdev = NULL;
	CHECK(p2p_pci_dev_open_count(d.pci) == 0);
	CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_PERM_REVOKED);
	rig_revoked(&r, 1);
	/* The fd stays valid... */
	CHECK_OK(p2p_dmabuf_get(r.fd, &again));
	CHECK(again == r.buf);
	p2p_dmabuf_put(again);
	CHECK(memcmp(bar2_dev_view(&d), r.want, BUF_LEN) == 0);
	/* ...and dead for good: opening the function again does not revive it. */
	CHECK_OK(p2p_vfio_device_open(d.pci, &d.vdev));
	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_PERM_REVOKED);
	rig_revoked(&r, 1);
	p2p_vfio_device_close(d.vdev);
	d.vdev = NULL;

	/* Closable after the function itself is gone (ASan checks the release). */
	p2p_pci_dev_put(d.pci);
	d.pci = NULL;
	rig_revoked(&r, 1);
	t_importer_detach(&r.imp);
	CHECK_OK(p2p_munmap(r.cpu, BUF_LEN));
	p2p_dmabuf_put(r.buf);
	CHECK_OK(p2p_close(r.fd));
	return;
out:
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 1.6 initial state: created while memory decoding is off                */

static void test_created_disabled(void)
{
	struct p2p_dmabuf *buf = NULL;
	struct t_importer imp;
	struct tdev d;
	void *p = NULL;
	int fd;

	t_section("created-disabled");
	if (tdev_create(&d, "0000:16:00.0", 0))
		return;
	CHECK_OK(t_mem_enable(d.vdev, false));
	fd = t_dmabuf_range(d.vdev, 2, 0, BUF_LEN);
	CHECK(fd >= 0);	/* it can be created... */
	if (fd < 0)
		goto out;
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
	/* ...but not attached or mapped until memory is enabled. */
	CHECK_ERR(t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true), -ENODEV);
	CHECK_ERR(try_mmap(buf), -ENODEV);
	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
	CHECK_OK(t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true));
	CHECK_OK(t_importer_map(&imp));
	CHECK_OK(p2p_dmabuf_mmap(buf, NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &p));
	if (p) {
		CHECK(!t_write_faults(p, 0x31));
		CHECK(bar2_dev_view(&d)[0] == 0x31);
		CHECK_OK(p2p_munmap(p, BUF_LEN));
	}
	t_importer_detach(&imp);

	/* The same from D3hot and from low power. */
	CHECK_OK(t_set_power(d.vdev, 3));
	{
		int fd2 = t_dmabuf_range(d.vdev, 2, PAGE, PAGE);
		struct p2p_dmabuf *b2 = NULL;

		CHECK(fd2 >= 0);
		if (fd2 >= 0) {
			CHECK_OK(p2p_dmabuf_get(fd2, &b2));
			CHECK(p2p_dmabuf_status(b2) == P2P_DMABUF_TEMP_REVOKED);
			CHECK_ERR(t_try_attach(b2), -ENODEV);
			CHECK_OK(t_set_power(d.vdev, 0));
			CHECK(p2p_dmabuf_status(b2) == P2P_DMABUF_OK);
			CHECK_OK(t_try_attach(b2));
			p2p_dmabuf_put(b2);
			CHECK_OK(p2p_close(fd2));
		}
	}
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
out:
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 1.6 initial state: a VF ignores PCI_COMMAND.MEM                         */

static void test_vf(void)
{
	struct tdev d;
	struct rig r;
	uint8_t b;

	t_section("vf");
	if (tdev_create(&d, "0000:17:00.1", P2P_PCI_VF))
		return;
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK(p2p_pci_dev_memory_enabled(d.pci));
	/* A dma-buf created with MEM clear is live on a VF. */
	if (rig_setup(&r, &d, 9))
		goto out;
	CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_OK);
	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK(r.imp.invalidations == 0 && r.imp.sgt);
	CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_OK);
	CHECK(!t_faults_anywhere(r.cpu, BUF_LEN));
	CHECK_OK(t_try_attach(r.buf));
	CHECK_ERR(p2p_vfio_device_pread(d.vdev, &b, 1, P2P_VFIO_REGION_OFFSET(2)), 1);
	CHECK(b == r.want[0]);

	/* D3hot still revokes a VF; D0 brings it back even with MEM clear. */
	CHECK_OK(t_set_power(d.vdev, 3));
	rig_revoked(&r, 1);
	CHECK_OK(t_set_power(d.vdev, 0));
	rig_live(&r, 1);

	rig_teardown(&r);
out:
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 1.6 idempotency and the kref underflow fix (7.5)                        */

static void test_idempotency(void)
{
	struct p2p_dmabuf *again = NULL;
	struct tdev d;
	struct rig r;

	t_section("idempotency");
	if (tdev_create(&d, "0000:18:00.0", 0))
		return;
	if (rig_setup(&r, &d, 10))
		goto out;

	/* Memory on while on: nothing happens. */
	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK(r.imp.invalidations == 0 && r.imp.sgt);
	/* Off twice: one revoke. */
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK_OK(t_mem_enable(d.vdev, false));
	rig_revoked(&r, 1);
	/* On twice: one un-revoke; the second does not disturb the new map. */
	CHECK_OK(t_mem_enable(d.vdev, true));
	rig_live(&r, 1);
	CHECK(r.imp.sgt);
	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK(r.imp.invalidations == 1 && r.imp.sgt);
	CHECK(!t_faults_anywhere(r.cpu, BUF_LEN));

	/*
	 * The kref underflow reproducer (1.6): memory off (revoke), then close
	 * the device (cleanup revokes again).  No second invalidation, no double
	 * release; the dma-buf stays usable as an object and closable.
	 */
	CHECK_OK(t_mem_enable(d.vdev, false));
	rig_revoked(&r, 2);
	p2p_vfio_device_close(d.vdev);
	d.vdev = NULL;
	CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_PERM_REVOKED);
	rig_revoked(&r, 2);
	CHECK_OK(p2p_dmabuf_get(r.fd, &again));
	CHECK(again == r.buf);
	p2p_dmabuf_put(again);
	/* The function is unplugged before the dma-buf goes. */
	p2p_pci_dev_put(d.pci);
	d.pci = NULL;
	CHECK(p2p_dmabuf_size(r.buf) == BUF_LEN);
	t_importer_detach(&r.imp);
	CHECK_OK(p2p_munmap(r.cpu, BUF_LEN));
	CHECK_OK(p2p_close(r.fd));	/* the fd's reference */
	p2p_dmabuf_put(r.buf);		/* the last one: released exactly once */
	return;
out:
	tdev_destroy(&d);
}

/* ---------------------------------------------------------------------- */
/* 3.1: BAR mmap through a dma-buf                                         */

static void test_bar_mmap_disabled(void)
{
	const uint64_t off = P2P_VFIO_REGION_OFFSET(2) + 4 * PAGE;
	struct p2p_dmabuf *vb = NULL;
	uint8_t *bar, *p = NULL;
	struct tdev d;
	uint64_t boff = 0;
	void *out;

	t_section("bar-mmap-disabled");
	if (tdev_create(&d, "0000:19:00.0", 0))
		return;
	bar = bar2_dev_view(&d);
	memset(bar + 4 * PAGE, 0x3c, 2 * PAGE);
	CHECK_OK(t_mem_enable(d.vdev, false));
	/* The mapping is made while memory is off... */
	CHECK_OK(p2p_vfio_device_mmap(d.vdev, NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
				      off, &out));
	p = out;
	if (!p)
		goto out;
	/* ...and is a dma-buf mapping of exactly the window (3.1)... */
	CHECK_OK(p2p_va_lookup(p + PAGE + 8, &vb, &boff, NULL));
	if (vb) {
		CHECK(p2p_dmabuf_size(vb) == 2 * PAGE && boff == PAGE + 8);
		p2p_dmabuf_put(vb);
	}
	/* ...which faults until memory is enabled. */
	CHECK(t_faults_everywhere(p, 2 * PAGE));
	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK(!t_faults_anywhere(p, 2 * PAGE));
	CHECK(p[0] == 0x3c && p[2 * PAGE - 1] == 0x3c);
	p[1] = 0x4d;
	CHECK(bar[4 * PAGE + 1] == 0x4d);
	/* BAR mmaps follow the other triggers too (zap with revoke, 1.7). */
	CHECK_OK(t_set_power(d.vdev, 3));
	CHECK(t_faults_everywhere(p, 2 * PAGE));
	CHECK_OK(t_set_power(d.vdev, 0));
	CHECK(!t_faults_anywhere(p, 2 * PAGE) && p[1] == 0x4d);
	CHECK_OK(p2p_munmap(p, 2 * PAGE));
out:
	tdev_destroy(&d);
}

static void test_bar_mmap_keeps_open(void)
{
	struct p2p_vfio_device *vdev;
	struct tdev d;
	struct rig r;
	uint8_t *p = NULL;
	void *out;

	t_section("bar-mmap-keeps-open");
	if (tdev_create(&d, "0000:1a:00.0", 0))
		return;
	if (rig_setup(&r, &d, 11))
		goto out;
	CHECK_OK(p2p_vfio_device_mmap(d.vdev, NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), &out));
	p = out;
	if (!p) {
		rig_teardown(&r);
		goto out;
	}
	CHECK(memcmp(p, r.want, BUF_LEN) == 0);

	/* Closing the device fd leaves it open: the BAR mmap holds the file (3.1, 8.3 item 13). */
	vdev = d.vdev;
	p2p_vfio_device_close(vdev);
	d.vdev = NULL;
	CHECK(p2p_pci_dev_open_count(d.pci) == 1);
	CHECK(r.imp.invalidations == 0 && r.imp.sgt);
	CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_OK);
	CHECK(!t_faults_anywhere(r.cpu, BUF_LEN));
	CHECK(!t_faults_anywhere(p, BUF_LEN));
	p[10] = 0x99;
	CHECK(r.cpu[10] == 0x99);
	r.want[10] = 0x99;
	CHECK_OK(t_try_attach(r.buf));

	/* The final munmap really closes it: permanent revoke of the exported dma-buf. */
	CHECK_OK(p2p_munmap(p, BUF_LEN));
	CHECK(p2p_pci_dev_open_count(d.pci) == 0);
	CHECK(p2p_dmabuf_status(r.buf) == P2P_DMABUF_PERM_REVOKED);
	rig_revoked(&r, 1);
	CHECK(memcmp(bar2_dev_view(&d), r.want, BUF_LEN) == 0);
	rig_teardown(&r);
out:
	tdev_destroy(&d);
}

int main(void)
{
	t_begin();

	test_command_mem();
	test_power_state();
	test_flr();
	test_device_reset();
	test_low_power();
	test_device_close();
	test_created_disabled();
	test_vf();
	test_idempotency();
	test_bar_mmap_disabled();
	test_bar_mmap_keeps_open();

	return t_end();
}
