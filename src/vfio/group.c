// SPDX-License-Identifier: MIT
/*
 * VFIO's ways in, as Linux 6.19 (drivers/vfio/group.c, device_cdev.c):
 *
 *   registry - the functions VFIO users can see (p2p_vfio_register()):
 *		each has its IOMMU group and a cdev index.
 *   group    - /dev/vfio/N: status, SET/UNSET_CONTAINER (container.c),
 *		GET_DEVICE_FD, dispatched from one table.
 *   cdev     - /dev/vfio/devices/vfioN: a device file that does nothing
 *		but VFIO_DEVICE_BIND_IOMMUFD until bound (ioctls.c).
 *
 * Locking: vfio_lock protects the registry, the groups and their
 * container membership; file releases run with no lock held.  The order
 * is docs/locking.md's.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "vfio_priv.h"

struct vfio_reg {
	struct list_head node;
	struct p2p_pci_dev *pdev; /* a reference */
	unsigned int index;	  /* /dev/vfio/devices/vfio<index> */
};

struct vfio_group {
	struct list_head node;
	uint32_t id;
	struct p2p_file *file; /* while open */
	struct vfio_container *container;
	unsigned int container_users; /* 1 + devices opened through the group */
	unsigned int cdev_bound;      /* functions of the group bound through their cdev */
};

static pthread_mutex_t vfio_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head regs = { &regs, &regs };
static struct list_head groups = { &groups, &groups };

static const struct p2p_file_ops vfio_group_fops;

/* ---------------------------------------------------------------------- */
/* Registry                                                                */

static struct vfio_reg *reg_find_locked(const struct p2p_pci_dev *pdev)
{
	struct vfio_reg *r;

	list_for_each_entry(r, &regs, node)
		if (r->pdev == pdev)
			return r;
	return NULL;
}

P2P_API int p2p_vfio_register(struct p2p_pci_dev *pdev, unsigned int *cdev_index)
{
	struct vfio_reg *r, *it;
	unsigned int index = 0;
	int ret = 0;

	if (!pdev)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_lock(&vfio_lock);
	if (reg_find_locked(pdev)) {
		ret = -EEXIST;
		goto out;
	}
	if (!kref_get_unless_zero(&pdev->ref)) {
		ret = -ENODEV;
		goto out;
	}
	/* The lowest free index (an ida); the list stays in registration order. */
	for (bool busy = true; busy; index += busy) {
		busy = false;
		list_for_each_entry(it, &regs, node)
			busy |= it->index == index;
	}
	r->pdev = pdev;
	r->index = index;
	list_add_tail(&r->node, &regs);
	if (cdev_index)
		*cdev_index = index;
	r = NULL;
out:
	pthread_mutex_unlock(&vfio_lock);
	free(r);
	return ret;
}

P2P_API void p2p_vfio_unregister(struct p2p_pci_dev *pdev)
{
	struct vfio_reg *r;

	pthread_mutex_lock(&vfio_lock);
	r = reg_find_locked(pdev);
	if (r)
		list_del_init(&r->node);
	pthread_mutex_unlock(&vfio_lock);
	if (r) {
		/* Ask a user holding the function to release it (REQ trigger). */
		vfio_pci_request(r->pdev);
		p2p_pci_dev_put(r->pdev);
		free(r);
	}
}

P2P_API unsigned int p2p_vfio_registered(struct p2p_pci_dev **out, unsigned int max)
{
	struct vfio_reg *r;
	unsigned int n = 0;

	pthread_mutex_lock(&vfio_lock);
	list_for_each_entry(r, &regs, node) {
		if (out && n < max) {
			pci_dev_get(r->pdev);
			out[n] = r->pdev;
		}
		n++;
	}
	pthread_mutex_unlock(&vfio_lock);
	return n;
}

P2P_API int p2p_vfio_cdev_index(struct p2p_pci_dev *pdev)
{
	struct vfio_reg *r;
	int ret;

	pthread_mutex_lock(&vfio_lock);
	r = reg_find_locked(pdev);
	ret = r ? (int)r->index : -ENODEV;
	pthread_mutex_unlock(&vfio_lock);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Groups: state kept while open or while a member is bound via its cdev    */

static bool group_exists_locked(uint32_t id)
{
	struct vfio_reg *r;

	list_for_each_entry(r, &regs, node)
		if (r->pdev->group == id)
			return true;
	return false;
}

static struct vfio_group *group_find_locked(uint32_t id, bool create)
{
	struct vfio_group *g;

	list_for_each_entry(g, &groups, node)
		if (g->id == id)
			return g;
	if (!create)
		return NULL;
	g = calloc(1, sizeof(*g));
	if (g) {
		g->id = id;
		list_add_tail(&g->node, &groups);
	}
	return g;
}

static void group_maybe_free_locked(struct vfio_group *g)
{
	if (!g->file && !g->cdev_bound) {
		list_del_init(&g->node);
		free(g);
	}
}

/* vfio_device_block_group(): a cdev bind keeps the group from opening, and back. */
int vfio_group_block(uint32_t group)
{
	struct vfio_group *g;
	int ret = 0;

	pthread_mutex_lock(&vfio_lock);
	g = group_find_locked(group, true);
	if (!g)
		ret = -ENOMEM;
	else if (g->file)
		ret = -EBUSY;
	else
		g->cdev_bound++;
	pthread_mutex_unlock(&vfio_lock);
	return ret;
}

void vfio_group_unblock(uint32_t group)
{
	struct vfio_group *g;

	pthread_mutex_lock(&vfio_lock);
	g = group_find_locked(group, false);
	if (g && g->cdev_bound) {
		g->cdev_bound--;
		group_maybe_free_locked(g);
	}
	pthread_mutex_unlock(&vfio_lock);
}

/* ---------------------------------------------------------------------- */
/* The group file                                                          */

/* vfio_group_detach_container(); vfio_lock held.  Returns the container file to put. */
static struct p2p_file *group_detach_locked(struct vfio_group *g)
{
	struct p2p_file *cf = vfio_container_detach_group(g->container);

	g->container = NULL;
	g->container_users = 0;
	return cf;
}

static long group_set_container(struct vfio_group *g, void *arg)
{
	struct p2p_file *cf = NULL;
	struct vfio_container *c;
	struct p2p_iommufd *ictx;
	int fd, ret;

	if (copy_from_user(&fd, arg, sizeof(fd)))
		return -EFAULT;
	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	pthread_mutex_lock(&vfio_lock);
	if (g->container) {
		ret = -EINVAL;
		goto out;
	}
	c = vfio_container_from_fd(fd, &cf);
	if (c) {
		if (g->cdev_bound) {
			ret = -EBUSY; /* iommu_group_claim_dma_owner(): a cdev owns it */
			goto out;
		}
		vfio_container_attach_group(c);
		g->container = c;
		g->container_users = 1;
		cf = NULL; /* the group keeps the reference (vfio_container_get()) */
		ret = 0;
	} else if (!p2p_iommufd_from_fd(fd, &ictx)) {
		/* The iommufd compat IOAS for groups is not emulated: use the cdev. */
		p2p_iommufd_put(ictx);
		ret = -EBADFD;
	} else {
		ret = -EBADFD; /* the fd passed is not recognized */
	}
out:
	pthread_mutex_unlock(&vfio_lock);
	if (cf)
		p2p_file_put(cf);
	return ret;
}

static long group_unset_container(struct vfio_group *g)
{
	struct p2p_file *cf = NULL;
	int ret = 0;

	pthread_mutex_lock(&vfio_lock);
	if (!g->container)
		ret = -EINVAL;
	else if (g->container_users != 1)
		ret = -EBUSY;
	else
		cf = group_detach_locked(g);
	pthread_mutex_unlock(&vfio_lock);
	if (cf)
		p2p_file_put(cf);
	return ret;
}

static long group_get_status(struct vfio_group *g, void *arg, void *cmd)
{
	const size_t minsz = offsetof(struct vfio_group_status, flags) + sizeof(uint32_t);
	struct vfio_group_status *status = cmd;

	status->flags = 0;
	pthread_mutex_lock(&vfio_lock);
	if (g->container)
		status->flags |= VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
	else if (!g->cdev_bound)
		status->flags |= VFIO_GROUP_FLAGS_VIABLE;
	pthread_mutex_unlock(&vfio_lock);
	return copy_to_user(arg, status, minsz);
}

/*
 * strndup_user(arg, PAGE_SIZE), a page at a time: a page is readable whole
 * or not at all, so the errno is the byte-by-byte one.
 */
static int copy_name(const char *arg, char *buf, size_t max)
{
	for (size_t i = 0; i < max;) {
		uintptr_t at = (uintptr_t)arg + i;
		size_t n = MIN(max - i, P2P_PAGE_SIZE - (at & P2P_PAGE_MASK));

		if (copy_from_user(&buf[i], (const void *)at, n))
			return -EFAULT;
		if (memchr(&buf[i], 0, n))
			return 0;
		i += n;
	}
	return -EINVAL;
}

static long group_get_device_fd(struct vfio_group *g, void *arg)
{
	char name[4096];
	struct p2p_pci_dev *pdev = NULL;
	struct p2p_vfio_device *vdev;
	struct vfio_reg *r;
	struct p2p_ioas *ioas = NULL;
	int ret, fd;

	ret = copy_name(arg, name, sizeof(name));
	if (ret)
		return ret;
	pthread_mutex_lock(&vfio_lock);
	list_for_each_entry(r, &regs, node) {
		if (r->pdev->group == g->id && !strcmp(r->pdev->name, name)) {
			pdev = r->pdev;
			break;
		}
	}
	if (!pdev) {
		ret = -ENODEV;
		goto out_unlock;
	}
	if (g->container)
		ioas = vfio_container_ioas_get(g->container);
	/* No container, or VFIO_SET_IOMMU not done yet. */
	if (!ioas) {
		ret = -EINVAL;
		goto out_unlock;
	}
	ret = vfio_device_create(pdev, false, O_RDWR, &vdev);
	if (ret)
		goto out_unlock;
	vfio_device_open_device(vdev);
	/* The group is in the container's domain: its devices DMA through it. */
	ret = p2p_vfio_device_attach_ioas(vdev, ioas);
	if (ret) {
		pthread_mutex_unlock(&vfio_lock);
		p2p_file_put(vdev->file);
		p2p_ioas_put(ioas);
		return ret;
	}
	g->container_users++;
	vdev->group = g;
	p2p_file_get(g->file); /* Paired with the put in vfio_group_device_closed() */
	pthread_mutex_unlock(&vfio_lock);
	p2p_ioas_put(ioas);
	fd = vfio_file_install_new(vdev->file, O_CLOEXEC);
	return fd;

out_unlock:
	pthread_mutex_unlock(&vfio_lock);
	if (ioas)
		p2p_ioas_put(ioas);
	return ret;
}

/* A device opened through the group is closed (its last reference went). */
void vfio_group_device_closed(struct vfio_group *g)
{
	struct p2p_file *gf;

	pthread_mutex_lock(&vfio_lock);
	if (g->container_users > 1)
		g->container_users--;
	gf = g->file;
	pthread_mutex_unlock(&vfio_lock);
	p2p_file_put(gf);
}

static long group_get_device_fd_ioctl(struct vfio_group *g, void *arg, void *cmd)
{
	(void)cmd;
	return group_get_device_fd(g, arg);
}

static long group_set_container_ioctl(struct vfio_group *g, void *arg, void *cmd)
{
	(void)cmd;
	return group_set_container(g, arg);
}

static long group_unset_container_ioctl(struct vfio_group *g, void *arg, void *cmd)
{
	(void)arg;
	(void)cmd;
	return group_unset_container(g);
}

struct vfio_group_ioctl_op {
	unsigned long cmd;
	long (*fn)(struct vfio_group *g, void *arg, void *cmd);
	uint32_t minsz; /* the mandatory part, framed by the dispatcher; 0: none */
};

#define GROUP_OP(_cmd, _fn, _minsz) [VFIO_IOCTL_NR(_cmd)] = { .cmd = _cmd, .fn = _fn, .minsz = _minsz }

static const struct vfio_group_ioctl_op vfio_group_ioctls[] = {
	GROUP_OP(VFIO_GROUP_GET_STATUS, group_get_status, VFIO_MINSZ(struct vfio_group_status, flags)),
	GROUP_OP(VFIO_GROUP_SET_CONTAINER, group_set_container_ioctl, 0),
	GROUP_OP(VFIO_GROUP_UNSET_CONTAINER, group_unset_container_ioctl, 0),
	GROUP_OP(VFIO_GROUP_GET_DEVICE_FD, group_get_device_fd_ioctl, 0), /* a string */
};

static long group_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	struct vfio_group *g = p2p_file_priv(file);
	const struct vfio_group_ioctl_op *op;
	unsigned int nr = VFIO_IOCTL_NR(cmd);
	struct vfio_group_status buf;
	int ret;

	if (_IOC_NR(cmd) < VFIO_BASE || nr >= ARRAY_SIZE(vfio_group_ioctls) ||
	    vfio_group_ioctls[nr].cmd != cmd)
		return -ENOTTY;
	op = &vfio_group_ioctls[nr];
	if (op->minsz) {
		ret = vfio_ucmd_in(arg, &buf, sizeof(buf), op->minsz);
		if (ret)
			return ret;
	}
	return op->fn(g, arg, &buf);
}

/* Device fds hold a group file reference: no device of the group is open. */
static void group_release(struct p2p_file *file)
{
	struct vfio_group *g = p2p_file_priv(file);
	struct p2p_file *cf = NULL;

	pthread_mutex_lock(&vfio_lock);
	if (g->container)
		cf = group_detach_locked(g);
	g->file = NULL;
	group_maybe_free_locked(g);
	pthread_mutex_unlock(&vfio_lock);
	if (cf)
		p2p_file_put(cf);
}

static const struct p2p_file_ops vfio_group_fops = {
	.name = "vfio-group",
	.ioctl = group_ioctl,
	.release = group_release,
};

P2P_API int p2p_vfio_group_open_fd(unsigned int group, int flags)
{
	struct vfio_group *g;
	struct p2p_file *f;
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "%u", group);
	pthread_mutex_lock(&vfio_lock);
	if (!group_exists_locked(group)) {
		ret = -ENOENT;
		goto out;
	}
	g = group_find_locked(group, true);
	if (!g) {
		ret = -ENOMEM;
		goto out;
	}
	if (g->file || g->cdev_bound) {
		/* one open at a time; a bound cdev blocks the group */
		ret = -EBUSY;
		goto out;
	}
	ret = p2p_file_create(&vfio_group_fops, g, name, flags & ~O_CLOEXEC, &f);
	if (ret) {
		group_maybe_free_locked(g);
		goto out;
	}
	g->file = f;
	pthread_mutex_unlock(&vfio_lock);
	return vfio_file_install_new(f, flags);
out:
	pthread_mutex_unlock(&vfio_lock);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* The device cdev                                                         */

P2P_API int p2p_vfio_cdev_open_fd(unsigned int index, int flags)
{
	struct p2p_pci_dev *pdev = NULL;
	struct p2p_vfio_device *vdev;
	struct vfio_reg *r;
	int ret;

	pthread_mutex_lock(&vfio_lock);
	list_for_each_entry(r, &regs, node) {
		if (r->index == index) {
			pdev = r->pdev;
			pci_dev_get(pdev);
			break;
		}
	}
	pthread_mutex_unlock(&vfio_lock);
	if (!pdev)
		return -ENOENT;
	ret = vfio_device_create(pdev, true, flags & ~O_CLOEXEC, &vdev);
	p2p_pci_dev_put(pdev);
	if (ret)
		return ret;
	return vfio_file_install_new(vdev->file, flags);
}
