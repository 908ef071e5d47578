// SPDX-License-Identifier: MIT
/*
 * VFIO_DEVICE_PCI_HOT_RESET over a device set (kernel-semantics 1.7 item 6,
 * 7.6): p2p_vfio_device_hot_reset() and the ioctl with group numbers in
 * group_fds.
 *
 * The set holds three functions: A and B are opened and export a dma-buf
 * each (with a dynamic importer and a CPU mapping), C is plugged in but
 * never opened.  Each function's reset callback runs while every member's
 * memory lock is held, between the revoke and the un-revoke, and checks
 * what the opened members look like at that moment.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

#include "harness.h"
#include "vfio/vfio_priv.h" /* the function's memory_lock (struct vfio_pci_core) */

#define PAGE 4096ull
#define BAR2_SIZE (1ull << 20)
#define BUF_LEN (32 * 1024)
#define NMEM 3

struct member;

/* A dma-buf of BAR2 with an importer and a CPU mapping. */
struct rig {
	int fd;
	struct p2p_dmabuf *buf;
	struct t_importer imp;
	uint8_t *cpu;
	uint8_t want[BUF_LEN];
};

struct member {
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev; /* NULL: never opened */
	uint32_t group;
	int resets;
	struct rig rig;
	uint8_t *bar_map;	/* a BAR mmap of the device fd (3.1), A only */
};

#define BAR_MAP_OFF (2 * BUF_LEN)
#define BAR_MAP_LEN (2 * PAGE)

static struct member mem[NMEM];
static bool observe;		/* check the opened members inside reset callbacks */
static int seen_revoked;	/* reset callbacks that found every opened member revoked */

/* Revoked: invalidated and unmapped, attach/map -> ENODEV, CPU mapping faults (1.5, 1.6). */
static bool rig_revoked(struct rig *r)
{
	int before = t_failures;

	CHECK(r->imp.invalidations > 0);
	CHECK(!r->imp.sgt);
	CHECK(p2p_dmabuf_status(r->buf) != P2P_DMABUF_OK);
	CHECK_ERR(t_try_attach(r->buf), -ENODEV);
	CHECK_ERR(t_importer_map(&r->imp), -ENODEV);
	CHECK(t_faults_everywhere(r->cpu, BUF_LEN));
	return t_failures == before;
}

/* Live: new attach works, the importer can map again, CPU data intact (1.6, 7.3). */
static void rig_live(struct rig *r)
{
	CHECK(p2p_dmabuf_status(r->buf) == P2P_DMABUF_OK);
	CHECK_OK(t_try_attach(r->buf));
	CHECK(!t_faults_anywhere(r->cpu, BUF_LEN));
	if (!t_faults_anywhere(r->cpu, BUF_LEN))
		CHECK(memcmp(r->cpu, r->want, BUF_LEN) == 0);
	if (!r->imp.sgt)
		CHECK_OK(t_importer_map(&r->imp));
}

/* The BAR mmap works and sees the device's memory. */
static void bar_map_live(struct member *m)
{
	uint8_t *dev = t_bar_ptr(m->pci, 2, BAR_MAP_OFF);

	if (!m->bar_map)
		return;
	CHECK(!t_faults_anywhere(m->bar_map, BAR_MAP_LEN));
	if (!t_faults_anywhere(m->bar_map, BAR_MAP_LEN))
		CHECK(memcmp(m->bar_map, dev, BAR_MAP_LEN) == 0 && m->bar_map[7] == 0x6b);
}

static void member_reset(struct p2p_pci_dev *pci)
{
	struct member *m = p2p_pci_dev_priv(pci);

	m->resets++;
	if (!observe)
		return;
	/* Every opened member of the set is revoked while any of them resets. */
	{
		int before = t_failures;

		for (int i = 0; i < NMEM; i++) {
			if (mem[i].vdev && mem[i].rig.buf)
				rig_revoked(&mem[i].rig);
			/* BAR mmaps are zapped with the revoke (1.7). */
			if (mem[i].bar_map)
				CHECK(t_faults_everywhere(mem[i].bar_map, BAR_MAP_LEN));
		}
		if (t_failures == before)
			seen_revoked++;
	}
}

static const struct p2p_pci_dev_ops member_ops = { .reset = member_reset };

static int member_create(struct member *m, struct p2p_pci_devset *set, const char *name,
			 uint32_t group, bool open)
{
	struct p2p_pci_dev_info info;

	t_dev_info(&info, name, BAR2_SIZE, 0, set, group);
	info.bars[4] = (struct p2p_pci_bar_desc){ 0 }; /* no I/O BAR */
	info.ops = &member_ops;
	info.priv = m;
	memset(m, 0, sizeof(*m));
	m->rig.fd = -1;
	m->group = group;
	return t_dev_open_info(&info, &m->pci, open ? &m->vdev : NULL);
}

static int rig_setup(struct rig *r, struct member *m, uint8_t seed)
{
	void *p = NULL;
	int ret;

	r->fd = t_dmabuf_range(m->vdev, 2, 0, BUF_LEN);
	CHECK(r->fd >= 0);
	if (r->fd < 0)
		return r->fd;
	CHECK_OK(ret = p2p_dmabuf_get(r->fd, &r->buf));
	if (ret)
		return ret;
	CHECK_OK(ret = p2p_dmabuf_mmap(r->buf, NULL, BUF_LEN, PROT_READ | PROT_WRITE, MAP_SHARED,
				       0, &p));
	if (ret)
		return ret;
	r->cpu = p;
	for (size_t i = 0; i < BUF_LEN; i++)
		r->want[i] = (uint8_t)(seed ^ (i * 13) ^ (i >> 12));
	memcpy(r->cpu, r->want, BUF_LEN);
	CHECK_OK(ret = t_importer_attach(&r->imp, r->buf, P2P_ATTACH_PEER2PEER, true));
	if (ret)
		return ret;
	CHECK_OK(ret = t_importer_map(&r->imp));
	return ret;
}

static void rig_teardown(struct rig *r)
{
	t_importer_detach(&r->imp);
	if (r->cpu)
		CHECK_OK(p2p_munmap(r->cpu, BUF_LEN));
	p2p_dmabuf_put(r->buf);
	if (r->fd >= 0)
		CHECK_OK(p2p_close(r->fd));
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

static int total_resets(void)
{
	return mem[0].resets + mem[1].resets + mem[2].resets;
}

static int invalidations(int i)
{
	return mem[i].rig.imp.invalidations;
}

/* The ioctl: struct vfio_pci_hot_reset with group numbers in group_fds (p2pbuf's convention). */
static long hot_reset_ioctl(struct p2p_vfio_device *vdev, uint32_t argsz, uint32_t flags,
			    const int32_t *groups, uint32_t count)
{
	size_t sz = sizeof(struct vfio_pci_hot_reset) + count * sizeof(int32_t);
	struct vfio_pci_hot_reset *hr = calloc(1, sz);
	long ret;

	if (!hr)
		return -ENOMEM;
	hr->argsz = argsz ? argsz : (uint32_t)sz;
	hr->flags = flags;
	hr->count = count;
	if (count)
		memcpy(hr->group_fds, groups, count * sizeof(int32_t));
	ret = p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_PCI_HOT_RESET, hr);
	free(hr);
	return ret;
}

/* ---------------------------------------------------------------------- */

/* Success: every opened member revoked during, un-revoked after; C untouched (1.7 item 6). */
static void test_success(void)
{
	const int32_t groups[] = { 20, 21, 22 };

	t_section("success");
	observe = true;
	seen_revoked = 0;
	CHECK_OK(p2p_vfio_device_hot_reset(mem[0].vdev, groups, 3));
	/* pci_reset_bus() resets the whole set, the never-opened function included. */
	CHECK(mem[0].resets == 1 && mem[1].resets == 1 && mem[2].resets == 1);
	CHECK(seen_revoked == 3);
	CHECK(invalidations(0) == 1 && invalidations(1) == 1);
	rig_live(&mem[0].rig);
	rig_live(&mem[1].rig);
	bar_map_live(&mem[0]);
	/* The never-opened sibling: no crash, still never opened, no memory decode. */
	CHECK(p2p_pci_dev_open_count(mem[2].pci) == 0);
	CHECK(!p2p_pci_dev_memory_enabled(mem[2].pci));

	/* The same through the ioctl, issued on B, groups in another order. */
	{
		const int32_t g2[] = { 22, 20, 21 };

		seen_revoked = 0;
		CHECK_OK(hot_reset_ioctl(mem[1].vdev, 0, 0, g2, 3));
		CHECK(total_resets() == 6);
		CHECK(seen_revoked == 3);
		CHECK(invalidations(0) == 2 && invalidations(1) == 2);
		rig_live(&mem[0].rig);
		rig_live(&mem[1].rig);
		bar_map_live(&mem[0]);
		CHECK(p2p_pci_dev_open_count(mem[2].pci) == 0);
	}
	observe = false;
}

/* Ownership: every member's group must be listed, else EINVAL (1.7 item 6). */
static void test_ownership(void)
{
	const int32_t no_c[] = { 20, 21 }, no_a[] = { 21, 22 }, junk[] = { 99, 20, 21 };
	int resets = total_resets(), i0 = invalidations(0), i1 = invalidations(1);

	t_section("ownership");
	/* The first member is not owned: nothing is touched at all. */
	CHECK_ERR(p2p_vfio_device_hot_reset(mem[0].vdev, no_a, 2), -EINVAL);
	CHECK_ERR(hot_reset_ioctl(mem[1].vdev, 0, 0, no_a, 2), -EINVAL);
	CHECK(invalidations(0) == i0 && invalidations(1) == i1);
	CHECK(mem[0].rig.imp.sgt && mem[1].rig.imp.sgt);
	/* The never-opened member's group is missing: EINVAL, no reset, nothing left revoked. */
	CHECK_ERR(p2p_vfio_device_hot_reset(mem[0].vdev, no_c, 2), -EINVAL);
	CHECK_ERR(hot_reset_ioctl(mem[0].vdev, 0, 0, no_c, 2), -EINVAL);
	CHECK_ERR(hot_reset_ioctl(mem[1].vdev, 0, 0, junk, 3), -EINVAL);
	CHECK(total_resets() == resets);
	rig_live(&mem[0].rig);
	rig_live(&mem[1].rig);
	CHECK(p2p_pci_dev_open_count(mem[2].pci) == 0);
}

/* ioctl framing: argsz and flags (vfio_pci_ioctl_pci_hot_reset). */
static void test_ioctl_validation(void)
{
	const int32_t groups[] = { 20, 21, 22 };
	const uint32_t minsz = offsetof(struct vfio_pci_hot_reset, count) + sizeof(uint32_t);
	int resets = total_resets(), i0 = invalidations(0), i1 = invalidations(1);

	t_section("ioctl-validation");
	CHECK_ERR(hot_reset_ioctl(mem[0].vdev, minsz - 1, 0, groups, 3), -EINVAL);
	CHECK_ERR(hot_reset_ioctl(mem[0].vdev, 4, 0, groups, 3), -EINVAL);
	CHECK_ERR(hot_reset_ioctl(mem[0].vdev, 0, 1, groups, 3), -EINVAL);
	CHECK_ERR(hot_reset_ioctl(mem[0].vdev, 0, 1u << 31, groups, 3), -EINVAL);
	/* argsz does not cover the group array. */
	CHECK_ERR(hot_reset_ioctl(mem[0].vdev, minsz, 0, groups, 3), -EINVAL);
	CHECK_ERR(hot_reset_ioctl(mem[0].vdev, minsz + 8, 0, groups, 3), -EINVAL);
	CHECK(total_resets() == resets);
	CHECK(invalidations(0) == i0 && invalidations(1) == i1);
	CHECK(mem[0].rig.imp.sgt && mem[1].rig.imp.sgt);
	/* Exactly enough is fine. */
	CHECK_OK(hot_reset_ioctl(mem[0].vdev, minsz + 12, 0, groups, 3));
	CHECK(total_resets() == resets + 3);
	rig_live(&mem[0].rig);
	rig_live(&mem[1].rig);
}

/* A thread that holds a member's memory lock for read until told to let go. */
struct holder {
	struct p2p_pci_dev *pci;
	sem_t held, release;
};

static void *hold_memory_lock(void *arg)
{
	struct holder *h = arg;

	pthread_rwlock_rdlock(&vfio_pci_core(h->pci)->memory_lock);
	sem_post(&h->held);
	sem_wait(&h->release);
	pthread_rwlock_unlock(&vfio_pci_core(h->pci)->memory_lock);
	return NULL;
}

/* Contention: trylock fails -> EBUSY, and the unwind un-revokes (1.7 item 6, 7.6). */
static void test_ebusy(void)
{
	const int32_t groups[] = { 20, 21, 22 };
	struct holder h = { .pci = mem[1].pci };
	int resets = total_resets(), i1 = invalidations(1);
	struct rig *a = &mem[0].rig;
	pthread_t th;

	t_section("ebusy");
	sem_init(&h.held, 0, 0);
	sem_init(&h.release, 0, 0);
	CHECK(pthread_create(&th, NULL, hold_memory_lock, &h) == 0);
	sem_wait(&h.held);

	CHECK_ERR(p2p_vfio_device_hot_reset(mem[0].vdev, groups, 3), -EBUSY);
	/* Nothing was reset, and nothing is left revoked. */
	CHECK(total_resets() == resets);
	CHECK(p2p_dmabuf_status(a->buf) == P2P_DMABUF_OK);
	CHECK_OK(t_try_attach(a->buf));
	CHECK(!t_faults_anywhere(a->cpu, BUF_LEN));
	CHECK(memcmp(a->cpu, a->want, BUF_LEN) == 0);
	if (!a->imp.sgt)
		CHECK_OK(t_importer_map(&a->imp));
	bar_map_live(&mem[0]);
	/* B's lock was never taken: B was not touched. */
	CHECK(invalidations(1) == i1 && mem[1].rig.imp.sgt);
	CHECK(p2p_dmabuf_status(mem[1].rig.buf) == P2P_DMABUF_OK);

	/* The same through the ioctl, from B. */
	CHECK_ERR(hot_reset_ioctl(mem[1].vdev, 0, 0, groups, 3), -EBUSY);
	CHECK(total_resets() == resets);
	rig_live(a);
	CHECK(invalidations(1) == i1 && mem[1].rig.imp.sgt);

	sem_post(&h.release);
	pthread_join(th, NULL);
	sem_destroy(&h.held);
	sem_destroy(&h.release);

	/* With the lock free again the reset goes through. */
	CHECK_OK(p2p_vfio_device_hot_reset(mem[0].vdev, groups, 3));
	CHECK(total_resets() == resets + 3);
	rig_live(a);
	rig_live(&mem[1].rig);
}

/* Un-revoke only members with memory enabled (open_count && memory_enabled, 1.7 item 6). */
static void test_memory_disabled_member(void)
{
	const int32_t groups[] = { 20, 21, 22 };
	int i0, i1;

	t_section("memory-disabled-member");
	CHECK_OK(t_mem_enable(mem[1].vdev, false));
	CHECK(rig_revoked(&mem[1].rig));
	i0 = invalidations(0);
	i1 = invalidations(1);
	CHECK_OK(p2p_vfio_device_hot_reset(mem[0].vdev, groups, 3));
	CHECK(invalidations(0) == i0 + 1);
	CHECK(invalidations(1) == i1); /* already revoked: not again */
	rig_live(&mem[0].rig);
	CHECK(rig_revoked(&mem[1].rig));
	CHECK_OK(t_mem_enable(mem[1].vdev, true));
	rig_live(&mem[1].rig);

	/*
	 * A member left in D3hot: vfio_pci_dev_set_hot_reset() moves every
	 * member to D0 before pci_reset_bus(), so it comes back live.
	 */
	CHECK_OK(t_set_power(mem[1].vdev, 3));
	CHECK(rig_revoked(&mem[1].rig));
	CHECK_OK(p2p_vfio_device_hot_reset(mem[0].vdev, groups, 3));
	{
		uint32_t pm = 3;

		CHECK_OK(p2p_vfio_config_read(mem[1].vdev, P2P_PCI_PM_CTRL, 2, &pm));
		CHECK((pm & 3) == 0);
	}
	rig_live(&mem[0].rig);
	rig_live(&mem[1].rig);
}

/* A member whose device file was closed (dma-bufs dead for good) stays dead. */
static void test_closed_member(void)
{
	const int32_t groups[] = { 20, 21, 22 };
	struct rig *b = &mem[1].rig;

	t_section("closed-member");
	p2p_vfio_device_close(mem[1].vdev);
	mem[1].vdev = NULL;
	CHECK(p2p_dmabuf_status(b->buf) == P2P_DMABUF_PERM_REVOKED);
	CHECK_OK(p2p_vfio_device_hot_reset(mem[0].vdev, groups, 3));
	CHECK(p2p_dmabuf_status(b->buf) == P2P_DMABUF_PERM_REVOKED);
	CHECK(t_faults_everywhere(b->cpu, BUF_LEN));
	CHECK_ERR(t_try_attach(b->buf), -ENODEV);
	CHECK(p2p_pci_dev_open_count(mem[1].pci) == 0);
	rig_live(&mem[0].rig);
}

int main(void)
{
	struct p2p_pci_devset *set = NULL;

	t_begin();
	if (p2p_pci_devset_create(&set))
		t_skip("no device set");
	if (member_create(&mem[0], set, "0000:30:00.0", 20, true) ||
	    member_create(&mem[1], set, "0000:30:00.1", 21, true) ||
	    member_create(&mem[2], set, "0000:30:00.2", 22, false)) {
		fprintf(stderr, "cannot create the device set\n");
		return T_EXIT_FAIL;
	}
	p2p_pci_devset_put(set); /* the members keep it */
	CHECK(p2p_pci_dev_open_count(mem[2].pci) == 0);

	if (!rig_setup(&mem[0].rig, &mem[0], 0x10) && !rig_setup(&mem[1].rig, &mem[1], 0x20)) {
		void *p = NULL;

		CHECK_OK(p2p_vfio_device_mmap(mem[0].vdev, NULL, BAR_MAP_LEN,
					      PROT_READ | PROT_WRITE, MAP_SHARED,
					      P2P_VFIO_REGION_OFFSET(2) + BAR_MAP_OFF, &p));
		mem[0].bar_map = p;
		if (p)
			memset(p, 0x6b, BAR_MAP_LEN);

		test_success();
		test_ownership();
		test_ioctl_validation();
		test_ebusy();
		test_memory_disabled_member();
		test_closed_member();
	}

	for (int i = 0; i < NMEM; i++) {
		if (mem[i].bar_map)
			CHECK_OK(p2p_munmap(mem[i].bar_map, BAR_MAP_LEN));
		if (mem[i].rig.buf)
			rig_teardown(&mem[i].rig);
		if (mem[i].vdev)
			p2p_vfio_device_close(mem[i].vdev);
		p2p_pci_dev_put(mem[i].pci);
	}
	return t_end();
}
