// SPDX-License-Identifier: MIT
/*
 * IOAS objects and the IOAS ioctls (drivers/iommu/iommufd/ioas.c):
 * IOMMU_IOAS_ALLOC, IOVA_RANGES, ALLOW_IOVAS, MAP, MAP_FILE, UNMAP, COPY
 * (kernel-semantics section 2), and IOMMU_DESTROY of any object.  The
 * handlers get their structure copied in and checked by the dispatcher
 * (main.c); the IO page table work is io_pagetable.c's.
 *
 * Locking: see iommufd.h; the order is docs/locking.md's.
 */
#define _GNU_SOURCE
#include <p2pbuf/iommu.h>

#include "iommufd.h"

/* ---------------------------------------------------------------------- */
/* Objects                                                                 */

P2P_API void p2p_ioas_put(struct p2p_ioas *ioas)
{
	if (!ioas || !kref_put(&ioas->ref))
		return;
	p2p_ioas_unmap(ioas, 0, 0, NULL);
	iopt_destroy(ioas);
	pthread_rwlock_destroy(&ioas->lock);
	pthread_mutex_destroy(&ioas->drain_lock);
	pthread_cond_destroy(&ioas->drain_cond);
	free(ioas);
}

P2P_API struct p2p_ioas *p2p_ioas_ref(struct p2p_ioas *ioas)
{
	kref_get(&ioas->ref);
	return ioas;
}

P2P_API uint32_t p2p_ioas_id(const struct p2p_ioas *ioas)
{
	return ioas->id;
}

P2P_API int p2p_ioas_alloc(struct p2p_iommufd *ctx, uint32_t *id, struct p2p_ioas **out)
{
	struct p2p_ioas *ioas = calloc(1, sizeof(*ioas));
	uint32_t slot;

	if (!ioas)
		return -ENOMEM;
	if (iopt_init(ioas)) {
		free(ioas);
		return -ENOMEM;
	}
	kref_init(&ioas->ref);
	pthread_rwlock_init(&ioas->lock, NULL);
	pthread_mutex_init(&ioas->drain_lock, NULL);
	pthread_cond_init(&ioas->drain_cond, NULL);
	ioas->ctx = ctx;
	pthread_mutex_lock(&ctx->lock);
	if (iommufd_slot_alloc_locked(ctx, &slot)) {
		pthread_mutex_unlock(&ctx->lock);
		iopt_destroy(ioas);
		free(ioas);
		return -ENOMEM;
	}
	ctx->objs[slot] = ioas;
	ioas->id = slot + 1;
	if (out)
		kref_get(&ioas->ref);
	pthread_mutex_unlock(&ctx->lock);
	*id = ioas->id;
	if (out)
		*out = ioas;
	return 0;
}

P2P_API int p2p_ioas_get(struct p2p_iommufd *ctx, uint32_t id, struct p2p_ioas **out)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&ctx->lock);
	if (id && id <= ctx->nr_objs && ctx->objs[id - 1]) {
		*out = ctx->objs[id - 1];
		kref_get(&(*out)->ref);
		ret = 0;
	}
	pthread_mutex_unlock(&ctx->lock);
	return ret;
}

int ioas_destroy(struct p2p_iommufd *ctx, uint32_t id)
{
	struct p2p_ioas *ioas = NULL;
	int ret = -ENOENT;

	pthread_mutex_lock(&ctx->lock);
	if (id && id <= ctx->nr_objs && !ctx->objs[id - 1] && ctx->xobjs[id - 1]) {
		pthread_mutex_unlock(&ctx->lock);
		return iommufd_xobj_destroy(ctx, id);
	}
	if (id && id <= ctx->nr_objs && ctx->objs[id - 1]) {
		ioas = ctx->objs[id - 1];
		pthread_rwlock_rdlock(&ioas->lock);
		ret = ioas->ndev ? -EBUSY : 0;
		pthread_rwlock_unlock(&ioas->lock);
		if (!ret)
			ctx->objs[id - 1] = NULL;
	}
	pthread_mutex_unlock(&ctx->lock);
	if (!ret)
		p2p_ioas_put(ioas);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* ioctls                                                                  */

static int ioas_ranges(struct p2p_ioas *ioas, struct iommu_ioas_iova_ranges *cmd)
{
	struct iommu_iova_range full = { 0, IOVA_MAX };
	const struct iommu_iova_range *r = ioas->allowed ? ioas->allowed : &full;
	uint32_t n = ioas->allowed ? ioas->nr_allowed : 1;
	int ret = 0;

	pthread_rwlock_rdlock(&ioas->lock);
	if (cmd->num_iovas >= n)
		ret = copy_to_user((void *)(uintptr_t)cmd->allowed_iovas, r, n * sizeof(*r));
	else
		ret = -EMSGSIZE;
	cmd->num_iovas = n;
	cmd->out_iova_alignment = iopt_alignment(ioas);
	pthread_rwlock_unlock(&ioas->lock);
	return ret;
}

static int ioas_allow(struct p2p_ioas *ioas, const struct iommu_ioas_allow_iovas *cmd)
{
	struct iommu_iova_range *r = NULL;
	int ret = 0;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	if (cmd->num_iovas) {
		if (cmd->num_iovas > 4096)
			return -EINVAL;
		r = calloc(cmd->num_iovas, sizeof(*r));
		if (!r)
			return -ENOMEM;
		if (copy_from_user(r, (void *)(uintptr_t)cmd->allowed_iovas,
				   cmd->num_iovas * sizeof(*r))) {
			free(r);
			return -EFAULT;
		}
		for (uint32_t i = 0; i < cmd->num_iovas; i++)
			if (r[i].start > r[i].last)
				ret = -EINVAL;
	}
	pthread_rwlock_wrlock(&ioas->lock);
	if (!ret) {
		/* Existing areas must stay allowed. */
		struct iommu_iova_range *old = ioas->allowed;
		uint32_t old_n = ioas->nr_allowed;

		ioas->allowed = r;
		ioas->nr_allowed = cmd->num_iovas;
		for (size_t i = 0; r && i < ioas->nr; i++)
			if (!iopt_range_allowed(ioas, ioas->areas[i]->iova,
					   ioas->areas[i]->iova + (ioas->areas[i]->length - 1)))
				ret = -EADDRINUSE;
		if (ret) {
			ioas->allowed = old;
			ioas->nr_allowed = old_n;
		} else {
			free(old);
			r = NULL;
		}
	}
	pthread_rwlock_unlock(&ioas->lock);
	free(r);
	return ret;
}

int iommufd_ioas_alloc_ioctl(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_alloc *cmd = ucmd->cmd;
	int ret;

	if (cmd->flags)
		return -EOPNOTSUPP;
	ret = p2p_ioas_alloc(ucmd->ictx, &cmd->out_ioas_id, NULL);
	if (!ret && (ret = iommufd_ucmd_copy_out(ucmd, sizeof(*cmd))))
		ioas_destroy(ucmd->ictx, cmd->out_ioas_id);
	return ret;
}

int iommufd_ioas_iova_ranges(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_iova_ranges *cmd = ucmd->cmd;
	struct p2p_ioas *ioas;
	int ret;

	if (cmd->__reserved)
		return -EOPNOTSUPP; /* iommufd_ioas_iova_ranges(), before the ID */
	if ((ret = p2p_ioas_get(ucmd->ictx, cmd->ioas_id, &ioas)))
		return ret;
	ret = ioas_ranges(ioas, cmd);
	p2p_ioas_put(ioas);
	if (!ret || ret == -EMSGSIZE) {
		int r2 = iommufd_ucmd_copy_out(ucmd, sizeof(*cmd));

		ret = r2 ? r2 : ret;
	}
	return ret;
}

int iommufd_ioas_allow_iovas(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_allow_iovas *cmd = ucmd->cmd;
	struct p2p_ioas *ioas;
	int ret;

	if ((ret = p2p_ioas_get(ucmd->ictx, cmd->ioas_id, &ioas)))
		return ret;
	ret = ioas_allow(ioas, cmd);
	p2p_ioas_put(ioas);
	return ret;
}

int iommufd_ioas_map(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_map *cmd = ucmd->cmd;
	struct p2p_ioas *ioas;
	uint64_t iova;
	int ret;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	if ((ret = iopt_check_map_args(cmd->flags, cmd->iova, cmd->length, false)))
		return ret;
	if ((ret = p2p_ioas_get(ucmd->ictx, cmd->ioas_id, &ioas)))
		return ret;
	iova = cmd->iova;
	ret = iopt_map_user(ioas, (void *)(uintptr_t)cmd->user_va, cmd->length, &iova, cmd->flags);
	cmd->iova = iova;
	if (!ret && (ret = iommufd_ucmd_copy_out(ucmd, sizeof(*cmd))))
		p2p_ioas_unmap(ioas, cmd->iova, cmd->length, NULL);
	p2p_ioas_put(ioas);
	return ret;
}

int iommufd_ioas_map_file(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_map_file *cmd = ucmd->cmd;
	struct p2p_ioas *ioas;
	uint64_t iova;
	int ret;

	if ((ret = iopt_check_map_args(cmd->flags, cmd->iova, cmd->length, false)))
		return ret;
	if ((ret = p2p_ioas_get(ucmd->ictx, cmd->ioas_id, &ioas)))
		return ret;
	iova = cmd->iova;
	ret = iopt_map_file(ioas, cmd->fd, cmd->start, cmd->length, &iova, cmd->flags);
	cmd->iova = iova;
	if (!ret && (ret = iommufd_ucmd_copy_out(ucmd, sizeof(*cmd))))
		p2p_ioas_unmap(ioas, cmd->iova, cmd->length, NULL);
	p2p_ioas_put(ioas);
	return ret;
}

int iommufd_ioas_unmap(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_unmap *cmd = ucmd->cmd;
	struct p2p_ioas *ioas;
	uint64_t done = 0;
	int ret;

	if ((ret = p2p_ioas_get(ucmd->ictx, cmd->ioas_id, &ioas)))
		return ret;
	/* iommufd_ioas_unmap(): 0, U64_MAX is "all"; 0, 0 is a bad length */
	if (!cmd->iova && cmd->length == UINT64_MAX)
		ret = p2p_ioas_unmap(ioas, 0, 0, &done);
	else if (cmd->iova >= IOVA_MAX || cmd->length >= IOVA_MAX)
		ret = -EOVERFLOW;
	else if (!cmd->length)
		ret = -EINVAL;
	else
		ret = p2p_ioas_unmap(ioas, cmd->iova, cmd->length, &done);
	p2p_ioas_put(ioas);
	cmd->length = done;
	return ret ? ret : iommufd_ucmd_copy_out(ucmd, sizeof(*cmd));
}

int iommufd_ioas_copy(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_copy *cmd = ucmd->cmd;
	struct p2p_ioas *ioas, *src;
	uint64_t iova;
	int ret;

	if ((ret = p2p_ioas_get(ucmd->ictx, cmd->src_ioas_id, &src)))
		return ret;
	if ((ret = p2p_ioas_get(ucmd->ictx, cmd->dst_ioas_id, &ioas))) {
		p2p_ioas_put(src);
		return ret;
	}
	iova = cmd->dst_iova;
	ret = p2p_ioas_copy(ioas, src, cmd->src_iova, cmd->length, &iova, cmd->flags);
	cmd->dst_iova = iova;
	if (!ret && (ret = iommufd_ucmd_copy_out(ucmd, sizeof(*cmd))))
		p2p_ioas_unmap(ioas, cmd->dst_iova, cmd->length, NULL);
	p2p_ioas_put(ioas);
	p2p_ioas_put(src);
	return ret;
}
