// SPDX-License-Identifier: MIT
/*
 * iommufd devices and hardware page tables (drivers/iommu/iommufd/device.c,
 * hw_pagetable.c): what a VMM does at start-up on /dev/iommu besides the
 * IOAS commands.
 *
 *   device object - a device bound with p2p_iommufd_device_bind() (what
 *	VFIO_DEVICE_BIND_IOMMUFD does); its ID names it in IOMMU_GET_HW_INFO
 *	and IOMMU_HWPT_ALLOC.
 *   paging HWPT   - an IOMMU domain over one IOAS.  p2pbuf's IOMMU is
 *	emulated: a domain is the IOAS itself with its 4 KiB alignment
 *	(p2p_ioas_attach_device()), so every HWPT over an IOAS translates the
 *	same way.  Attaching a device to an IOAS ID makes (or reuses) an
 *	automatic HWPT, destroyed with its last device, as the kernel does.
 *
 * The emulated IOMMU has no vendor hardware info (IOMMU_HW_INFO_TYPE_NONE),
 * no dirty tracking, no PASID, no nesting and no fault queues.
 *
 * Locking: ctx->lock protects the object table, each HWPT's users and each
 * device's HWPT; the device ops are called under it (docs/locking.md).
 */
#define _GNU_SOURCE
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <p2pbuf/file.h>

#include "iommufd.h"

struct iommufd_hwpt {
	struct iommufd_xobj obj;
	struct p2p_ioas *ioas; /* a reference and a domain (p2p_ioas_attach_device()) */
	bool auto_domain;
	unsigned int users; /* attached devices */
};

struct p2p_iommufd_device {
	struct iommufd_xobj obj;
	struct p2p_iommufd *ctx;
	const struct p2p_iommufd_device_ops *ops;
	void *priv;
	struct iommufd_hwpt *hwpt; /* attached to, under ctx->lock */
};

/* The context behind an iommufd fd, as iommufd_ctx_from_fd(): -EBADFD if it is not one. */
P2P_API int p2p_iommufd_from_fd(int fd, struct p2p_iommufd **out)
{
	int ret = p2p_iommufd_get(fd, out);

	return ret == -EINVAL ? -EBADFD : ret;
}

/* ---------------------------------------------------------------------- */
/* Objects                                                                 */

static struct iommufd_xobj *xobj_find_locked(struct p2p_iommufd *ctx, uint32_t id,
					     enum iommufd_obj_type type)
{
	struct iommufd_xobj *o;

	if (!id || id > ctx->nr_objs)
		return NULL;
	o = ctx->xobjs[id - 1];
	return o && o->type == type ? o : NULL;
}

static int xobj_add_locked(struct p2p_iommufd *ctx, struct iommufd_xobj *o)
{
	uint32_t slot;
	int ret = iommufd_slot_alloc_locked(ctx, &slot);

	if (ret)
		return ret;
	ctx->xobjs[slot] = o;
	o->id = slot + 1;
	return 0;
}

static void xobj_remove_locked(struct p2p_iommufd *ctx, struct iommufd_xobj *o)
{
	ctx->xobjs[o->id - 1] = NULL;
}

/* A paging HWPT over @ioas (takes a reference and a domain on it). */
static int hwpt_alloc_locked(struct p2p_iommufd *ctx, struct p2p_ioas *ioas, bool auto_domain,
			     struct iommufd_hwpt **out)
{
	struct iommufd_hwpt *h = calloc(1, sizeof(*h));
	int ret;

	if (!h)
		return -ENOMEM;
	h->obj.type = IOMMUFD_OBJ_HWPT_PAGING;
	h->auto_domain = auto_domain;
	ret = p2p_ioas_attach_device(ioas);
	if (ret) {
		free(h);
		return ret;
	}
	ret = xobj_add_locked(ctx, &h->obj);
	if (ret) {
		p2p_ioas_detach_device(ioas);
		free(h);
		return ret;
	}
	h->ioas = p2p_ioas_ref(ioas);
	*out = h;
	return 0;
}

/*
 * Remove @h from the table; the caller frees it with hwpt_free() after
 * dropping ctx->lock (the IOAS reference may be the last).
 */
static void hwpt_remove_locked(struct p2p_iommufd *ctx, struct iommufd_hwpt *h)
{
	xobj_remove_locked(ctx, &h->obj);
}

static void hwpt_free(struct iommufd_hwpt *h)
{
	if (!h)
		return;
	p2p_ioas_detach_device(h->ioas);
	p2p_ioas_put(h->ioas);
	free(h);
}

int iommufd_xobj_destroy(struct p2p_iommufd *ctx, uint32_t id)
{
	struct iommufd_hwpt *gone = NULL;
	struct iommufd_xobj *o;
	int ret = -ENOENT;

	pthread_mutex_lock(&ctx->lock);
	o = id && id <= ctx->nr_objs ? ctx->xobjs[id - 1] : NULL;
	if (o && o->type == IOMMUFD_OBJ_DEVICE) {
		ret = -EBUSY; /* the driver is a user until unbind */
	} else if (o) {
		struct iommufd_hwpt *h = (struct iommufd_hwpt *)o;

		ret = h->users ? -EBUSY : 0;
		if (!ret) {
			hwpt_remove_locked(ctx, h);
			gone = h;
		}
	}
	pthread_mutex_unlock(&ctx->lock);
	hwpt_free(gone);
	return ret;
}

/* Last context reference: no device is bound any more, so only HWPTs remain. */
void iommufd_ctx_release_xobjs(struct p2p_iommufd *ctx)
{
	for (uint32_t i = 0; i < ctx->nr_objs; i++) {
		struct iommufd_xobj *o = ctx->xobjs[i];

		ctx->xobjs[i] = NULL;
		if (o && o->type == IOMMUFD_OBJ_HWPT_PAGING)
			hwpt_free((struct iommufd_hwpt *)o);
	}
}

/* ---------------------------------------------------------------------- */
/* Devices                                                                 */

P2P_API int p2p_iommufd_device_bind(struct p2p_iommufd *ctx,
				    const struct p2p_iommufd_device_ops *ops, void *priv,
				    struct p2p_iommufd_device **out, uint32_t *dev_id)
{
	struct p2p_iommufd_device *idev = calloc(1, sizeof(*idev));
	int ret;

	if (!idev)
		return -ENOMEM;
	idev->obj.type = IOMMUFD_OBJ_DEVICE;
	idev->ctx = ctx;
	idev->ops = ops;
	idev->priv = priv;
	pthread_mutex_lock(&ctx->lock);
	ret = xobj_add_locked(ctx, &idev->obj);
	pthread_mutex_unlock(&ctx->lock);
	if (ret) {
		free(idev);
		return ret;
	}
	p2p_file_get(ctx->file); /* Paired with the put in p2p_iommufd_device_unbind() */
	*out = idev;
	*dev_id = idev->obj.id;
	return 0;
}

/* Drop @idev's HWPT; returns an automatic HWPT left unused, to free unlocked. */
static struct iommufd_hwpt *device_unuse_hwpt_locked(struct p2p_iommufd_device *idev)
{
	struct iommufd_hwpt *h = idev->hwpt;

	idev->hwpt = NULL;
	if (!h || --h->users || !h->auto_domain)
		return NULL;
	hwpt_remove_locked(idev->ctx, h);
	return h;
}

P2P_API int p2p_iommufd_device_attach(struct p2p_iommufd_device *idev, uint32_t *pt_id)
{
	struct p2p_iommufd *ctx = idev->ctx;
	struct iommufd_hwpt *h = NULL, *gone = NULL;
	uint32_t id = *pt_id;
	bool made = false;
	int ret = 0;

	pthread_mutex_lock(&ctx->lock);
	if (id && id <= ctx->nr_objs && ctx->objs[id - 1]) {
		struct p2p_ioas *ioas = ctx->objs[id - 1];

		/* iommufd_device_auto_get_domain(): reuse this IOAS's automatic domain. */
		for (uint32_t i = 0; i < ctx->nr_objs && !h; i++) {
			struct iommufd_hwpt *c = (struct iommufd_hwpt *)ctx->xobjs[i];

			if (c && c->obj.type == IOMMUFD_OBJ_HWPT_PAGING && c->auto_domain &&
			    c->ioas == ioas)
				h = c;
		}
		if (!h) {
			ret = hwpt_alloc_locked(ctx, ioas, true, &h);
			made = !ret;
		}
	} else if (id && id <= ctx->nr_objs && ctx->xobjs[id - 1]) {
		h = (struct iommufd_hwpt *)xobj_find_locked(ctx, id, IOMMUFD_OBJ_HWPT_PAGING);
		if (!h)
			ret = -EINVAL; /* not something a device attaches to */
	} else {
		ret = -ENOENT;
	}
	if (ret)
		goto out;
	if (idev->hwpt == h)
		goto done; /* replacing with the same domain */
	ret = idev->ops->attach(idev->priv, h->ioas);
	if (ret) {
		if (made) {
			hwpt_remove_locked(ctx, h);
			gone = h;
		}
		goto out;
	}
	gone = device_unuse_hwpt_locked(idev);
	idev->hwpt = h;
	h->users++;
done:
	*pt_id = h->obj.id;
out:
	pthread_mutex_unlock(&ctx->lock);
	hwpt_free(gone);
	return ret;
}

P2P_API void p2p_iommufd_device_detach(struct p2p_iommufd_device *idev)
{
	struct p2p_iommufd *ctx = idev->ctx;
	struct iommufd_hwpt *gone = NULL;

	pthread_mutex_lock(&ctx->lock);
	if (idev->hwpt) {
		idev->ops->detach(idev->priv);
		gone = device_unuse_hwpt_locked(idev);
	}
	pthread_mutex_unlock(&ctx->lock);
	hwpt_free(gone);
}

P2P_API void p2p_iommufd_device_unbind(struct p2p_iommufd_device *idev)
{
	struct p2p_iommufd *ctx;

	if (!idev)
		return;
	ctx = idev->ctx;
	p2p_iommufd_device_detach(idev);
	pthread_mutex_lock(&ctx->lock);
	xobj_remove_locked(ctx, &idev->obj);
	pthread_mutex_unlock(&ctx->lock);
	free(idev);
	p2p_iommufd_put(ctx);
}

/* ---------------------------------------------------------------------- */
/* ioctls (rows of the table in main.c)                                    */

static bool has_cap_sys_resource(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };

	if (syscall(SYS_capget, &hdr, data))
		return false;
	return data[CAP_SYS_RESOURCE / 32].effective & (1u << (CAP_SYS_RESOURCE % 32));
}

static int option_rlimit_mode(struct p2p_iommufd *ctx, struct iommu_option *cmd)
{
	int ret = 0;

	if (cmd->object_id)
		return -EOPNOTSUPP;
	if (cmd->op == IOMMU_OPTION_OP_GET) {
		pthread_mutex_lock(&ctx->lock);
		cmd->val64 = ctx->account_mm;
		pthread_mutex_unlock(&ctx->lock);
		return 0;
	}
	if (cmd->op != IOMMU_OPTION_OP_SET)
		return -EOPNOTSUPP;
	if (!has_cap_sys_resource())
		return -EPERM;
	pthread_mutex_lock(&ctx->lock);
	for (uint32_t i = 0; i < ctx->nr_objs && !ret; i++)
		if (ctx->objs[i] || ctx->xobjs[i])
			ret = -EBUSY; /* only on an empty context */
	if (!ret && cmd->val64 > 1)
		ret = -EINVAL;
	if (!ret)
		ctx->account_mm = cmd->val64 == 1;
	pthread_mutex_unlock(&ctx->lock);
	return ret;
}

static int option_huge_pages(struct p2p_iommufd *ctx, struct iommu_option *cmd)
{
	struct p2p_ioas *ioas;
	int ret = p2p_ioas_get(ctx, cmd->object_id, &ioas);

	if (ret)
		return ret;
	if (cmd->op == IOMMU_OPTION_OP_GET)
		cmd->val64 = ioas_large_pages(ioas);
	else if (cmd->op != IOMMU_OPTION_OP_SET)
		ret = -EOPNOTSUPP;
	else if (cmd->val64 > 1)
		ret = -EINVAL;
	else
		ret = ioas_set_large_pages(ioas, cmd->val64 == 1);
	p2p_ioas_put(ioas);
	return ret;
}

int iommufd_option(struct iommufd_ucmd *ucmd)
{
	struct iommu_option *cmd = ucmd->cmd;
	struct p2p_iommufd *ctx = ucmd->ictx;
	int ret;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	switch (cmd->option_id) {
	case IOMMU_OPTION_RLIMIT_MODE:
		ret = option_rlimit_mode(ctx, cmd);
		break;
	case IOMMU_OPTION_HUGE_PAGES:
		ret = option_huge_pages(ctx, cmd);
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (ret)
		return ret;
	return copy_to_user((uint8_t *)ucmd->ubuffer + offsetof(struct iommu_option, val64),
			    &cmd->val64, sizeof(cmd->val64));
}

int iommufd_get_hw_info(struct iommufd_ucmd *ucmd)
{
	struct iommu_hw_info *cmd = ucmd->cmd;
	struct p2p_iommufd *ctx = ucmd->ictx;
	bool found;

	if (cmd->flags & ~(uint32_t)IOMMU_HW_INFO_FLAG_INPUT_TYPE)
		return -EOPNOTSUPP;
	if (cmd->__reserved[0] || cmd->__reserved[1] || cmd->__reserved[2])
		return -EOPNOTSUPP;
	pthread_mutex_lock(&ctx->lock);
	found = xobj_find_locked(ctx, cmd->dev_id, IOMMUFD_OBJ_DEVICE);
	pthread_mutex_unlock(&ctx->lock);
	if (!found)
		return -ENOENT;
	/* No hw_info op: type NONE, no data; the caller's buffer is zeroed. */
	cmd->out_data_type = IOMMU_HW_INFO_TYPE_NONE;
	for (uint64_t i = 0; i < cmd->data_len;) {
		/* A page at a time: a page is writable whole or not at all (clear_user()). */
		static const uint8_t zero[P2P_PAGE_SIZE];
		uintptr_t at = (uintptr_t)cmd->data_uptr + i;
		size_t n = MIN(cmd->data_len - i, P2P_PAGE_SIZE - (at & P2P_PAGE_MASK));

		if (copy_to_user((void *)at, zero, n))
			return -EFAULT;
		i += n;
	}
	cmd->data_len = 0;
	cmd->out_capabilities = 0;
	cmd->out_max_pasid_log2 = 0;
	return iommufd_ucmd_respond(ucmd, sizeof(*cmd));
}

int iommufd_hwpt_alloc(struct iommufd_ucmd *ucmd)
{
	const uint32_t paging_flags = IOMMU_HWPT_ALLOC_NEST_PARENT |
				      IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
				      IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;
	struct iommu_hwpt_alloc *cmd = ucmd->cmd;
	struct p2p_iommufd *ctx = ucmd->ictx;
	struct iommufd_hwpt *h = NULL;
	uint32_t id;
	int ret = 0;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	if ((cmd->data_type == IOMMU_HWPT_DATA_NONE && cmd->data_len) ||
	    (cmd->data_type != IOMMU_HWPT_DATA_NONE && !cmd->data_len))
		return -EINVAL;
	pthread_mutex_lock(&ctx->lock);
	id = cmd->pt_id;
	if (!xobj_find_locked(ctx, cmd->dev_id, IOMMUFD_OBJ_DEVICE)) {
		ret = -ENOENT;
	} else if (id && id <= ctx->nr_objs && ctx->objs[id - 1]) {
		/*
		 * iommufd_hwpt_paging_alloc(): the emulated IOMMU takes no
		 * driver data and cannot nest, track dirty pages or use PASIDs.
		 */
		if ((cmd->flags & ~paging_flags) || cmd->data_len ||
		    (cmd->flags & (IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
				   IOMMU_HWPT_ALLOC_PASID)))
			ret = -EOPNOTSUPP;
		else if (cmd->flags & IOMMU_HWPT_FAULT_ID_VALID)
			ret = -ENOENT; /* no fault object can exist */
		else
			ret = hwpt_alloc_locked(ctx, ctx->objs[id - 1], false, &h);
	} else if (xobj_find_locked(ctx, id, IOMMUFD_OBJ_HWPT_PAGING)) {
		/* A nested HWPT needs driver data and a nest parent: never here. */
		ret = -EOPNOTSUPP;
	} else {
		ret = -EINVAL; /* no such object, or not one a HWPT is made over */
	}
	pthread_mutex_unlock(&ctx->lock);
	if (ret)
		return ret;
	cmd->out_hwpt_id = h->obj.id;
	ret = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (ret)
		iommufd_xobj_destroy(ctx, cmd->out_hwpt_id);
	return ret;
}
