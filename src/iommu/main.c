// SPDX-License-Identifier: MIT
/*
 * The iommufd context (drivers/iommu/iommufd/main.c): its file
 * (/dev/iommu, p2p_iommufd_open_fd()), its object IDs, and the ioctl
 * table with its dispatcher.
 *
 * One table row per command holds its handler, the structure it takes and
 * the offset of that structure's last mandatory field.  The dispatcher does
 * the framing once, as iommufd_fops_ioctl(): it reads the caller's `size`,
 * refuses a size short of the mandatory part (-EINVAL), copies the
 * structure in and refuses a non-zero tail it does not know (-E2BIG);
 * handlers see a checked structure (struct iommufd_ucmd).
 *
 * Locking: ctx->lock protects the object table (iommufd.h; the order is
 * docs/locking.md's).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include <p2pbuf/file.h>
#include <p2pbuf/iommu.h>

#include "iommufd.h"

/*
 * iommufd_fops_release(): destroy every object, then the context.  Bound
 * devices hold references on the file, so they are unbound by now; HWPTs
 * go before the IOASes they hold.
 */
static void iommufd_release(struct p2p_file *file)
{
	struct p2p_iommufd *ctx = p2p_file_priv(file);

	iommufd_ctx_release_xobjs(ctx);
	for (uint32_t i = 0; i < ctx->nr_objs; i++)
		p2p_ioas_put(ctx->objs[i]);
	free(ctx->objs);
	free(ctx->xobjs);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

static long iommufd_file_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	return p2p_iommufd_ioctl(p2p_file_priv(file), cmd, arg);
}

/* iommufd_fops: ioctl and release (no mmap, read or write in v6.19's base). */
static const struct p2p_file_ops iommufd_fops = {
	.name = "iommufd",
	.ioctl = iommufd_file_ioctl,
	.release = iommufd_release,
};

static int iommufd_create(int flags, struct p2p_iommufd **out)
{
	struct p2p_iommufd *ctx = calloc(1, sizeof(*ctx));
	int ret;

	if (!ctx)
		return -ENOMEM;
	pthread_mutex_init(&ctx->lock, NULL);
	ret = p2p_file_create(&iommufd_fops, ctx, "", flags & ~O_CLOEXEC, &ctx->file);
	if (ret) {
		pthread_mutex_destroy(&ctx->lock);
		free(ctx);
		return ret;
	}
	*out = ctx;
	return 0;
}

P2P_API int p2p_iommufd_open(struct p2p_iommufd **out)
{
	return iommufd_create(O_RDWR, out);
}

P2P_API int p2p_iommufd_open_fd(int flags)
{
	struct p2p_iommufd *ctx;
	int ret = iommufd_create(flags, &ctx);

	if (ret)
		return ret;
	ret = p2p_file_install(ctx->file, flags & O_CLOEXEC);
	p2p_file_put(ctx->file); /* the fd holds the only reference now, or release */
	return ret;
}

P2P_API int p2p_iommufd_get(int fd, struct p2p_iommufd **out)
{
	struct p2p_file *f;
	int ret = p2p_file_from_fd(fd, &iommufd_fops, &f);

	if (!ret)
		*out = p2p_file_priv(f);
	return ret;
}

P2P_API void p2p_iommufd_put(struct p2p_iommufd *ctx)
{
	if (ctx)
		p2p_file_put(ctx->file);
}

P2P_API void p2p_iommufd_close(struct p2p_iommufd *ctx)
{
	p2p_iommufd_put(ctx);
}

P2P_API int p2p_iommufd_fd(const struct p2p_iommufd *ctx)
{
	return p2p_file_fd(ctx->file);
}

/* ---------------------------------------------------------------------- */
/* Object IDs                                                              */

/* A free object slot (ID = slot + 1), growing the table; ctx->lock held. */
int iommufd_slot_alloc_locked(struct p2p_iommufd *ctx, uint32_t *out)
{
	uint32_t slot;

	for (slot = 0; slot < ctx->nr_objs && (ctx->objs[slot] || ctx->xobjs[slot]); slot++)
		;
	if (slot == ctx->nr_objs) {
		struct p2p_ioas **n = realloc(ctx->objs, (ctx->nr_objs + 1) * sizeof(*n));
		struct iommufd_xobj **x;

		if (!n)
			return -ENOMEM;
		ctx->objs = n;
		x = realloc(ctx->xobjs, (ctx->nr_objs + 1) * sizeof(*x));
		if (!x)
			return -ENOMEM;
		ctx->xobjs = x;
		ctx->objs[slot] = NULL;
		ctx->xobjs[slot] = NULL;
		ctx->nr_objs++;
	}
	*out = slot;
	return 0;
}

/* Copy in a size-prefixed command (iommufd framing rules). */
static int cmd_in(void *arg, void *cmd, size_t kernel_size, size_t min_size, uint32_t *user_size)
{
	uint32_t size;

	if (copy_from_user(&size, arg, sizeof(size)))
		return -EFAULT;
	*user_size = size;
	if (size < min_size)
		return -EINVAL;
	memset(cmd, 0, kernel_size);
	if (copy_from_user(cmd, arg, MIN(size, kernel_size)))
		return -EFAULT;
	/*
	 * The tail must be zero (copy_struct_from_user()).  size is the
	 * caller's u32: read it a page at a time (a page is readable whole or
	 * not at all, so the errno is the same as byte by byte), not a byte
	 * per copy.
	 */
	for (size_t i = kernel_size; i < size;) {
		uint8_t chunk[256];
		uintptr_t at = (uintptr_t)arg + i;
		size_t n = MIN(MIN(size - i, sizeof(chunk)), P2P_PAGE_SIZE - (at & P2P_PAGE_MASK));

		if (copy_from_user(chunk, (void *)at, n))
			return -EFAULT;
		for (size_t k = 0; k < n; k++)
			if (chunk[k])
				return -E2BIG;
		i += n;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* The ioctl table                                                         */

static int iommufd_destroy(struct iommufd_ucmd *ucmd)
{
	struct iommu_destroy *cmd = ucmd->cmd;

	return ioas_destroy(ucmd->ictx, cmd->id);
}

/* Big enough for any command's structure (the kernel's union ucmd_buffer). */
union ucmd_buffer {
	struct iommu_destroy destroy;
	struct iommu_hw_info info;
	struct iommu_hwpt_alloc hwpt;
	struct iommu_ioas_alloc alloc;
	struct iommu_ioas_allow_iovas allow_iovas;
	struct iommu_ioas_copy ioas_copy;
	struct iommu_ioas_iova_ranges iova_ranges;
	struct iommu_ioas_map map;
	struct iommu_ioas_map_file map_file;
	struct iommu_ioas_unmap unmap;
	struct iommu_option option;
};

struct iommufd_ioctl_op {
	unsigned int size;     /* the structure this kernel knows */
	unsigned int min_size; /* up to its last mandatory field */
	unsigned long ioctl_num;
	int (*execute)(struct iommufd_ucmd *ucmd);
};

#define IOCTL_OP(_ioctl, _fn, _struct, _last)                                                  \
	[_IOC_NR(_ioctl) - IOMMUFD_CMD_BASE] = {                                               \
		.size = sizeof(_struct),                                                        \
		.min_size = offsetof(_struct, _last) + sizeof(((_struct *)0)->_last),           \
		.ioctl_num = _ioctl,                                                            \
		.execute = _fn,                                                                 \
	}

static const struct iommufd_ioctl_op iommufd_ioctl_ops[] = {
	IOCTL_OP(IOMMU_DESTROY, iommufd_destroy, struct iommu_destroy, id),
	IOCTL_OP(IOMMU_GET_HW_INFO, iommufd_get_hw_info, struct iommu_hw_info, __reserved),
	IOCTL_OP(IOMMU_HWPT_ALLOC, iommufd_hwpt_alloc, struct iommu_hwpt_alloc, __reserved),
	IOCTL_OP(IOMMU_IOAS_ALLOC, iommufd_ioas_alloc_ioctl, struct iommu_ioas_alloc, out_ioas_id),
	IOCTL_OP(IOMMU_IOAS_ALLOW_IOVAS, iommufd_ioas_allow_iovas, struct iommu_ioas_allow_iovas,
		 allowed_iovas),
	IOCTL_OP(IOMMU_IOAS_COPY, iommufd_ioas_copy, struct iommu_ioas_copy, src_iova),
	IOCTL_OP(IOMMU_IOAS_IOVA_RANGES, iommufd_ioas_iova_ranges, struct iommu_ioas_iova_ranges,
		 out_iova_alignment),
	IOCTL_OP(IOMMU_IOAS_MAP, iommufd_ioas_map, struct iommu_ioas_map, iova),
	IOCTL_OP(IOMMU_IOAS_MAP_FILE, iommufd_ioas_map_file, struct iommu_ioas_map_file, iova),
	IOCTL_OP(IOMMU_IOAS_UNMAP, iommufd_ioas_unmap, struct iommu_ioas_unmap, length),
	IOCTL_OP(IOMMU_OPTION, iommufd_option, struct iommu_option, val64),
};

P2P_API long p2p_iommufd_ioctl(struct p2p_iommufd *ctx, unsigned long req, void *arg)
{
	struct iommufd_ucmd ucmd = { .ictx = ctx, .ubuffer = arg };
	const struct iommufd_ioctl_op *op;
	unsigned int nr = _IOC_NR(req);
	union ucmd_buffer buf;
	int ret;

	if (nr < IOMMUFD_CMD_BASE || nr - IOMMUFD_CMD_BASE >= ARRAY_SIZE(iommufd_ioctl_ops))
		return -ENOTTY;
	op = &iommufd_ioctl_ops[nr - IOMMUFD_CMD_BASE];
	if (op->ioctl_num != req)
		return -ENOTTY;
	ret = cmd_in(arg, &buf, op->size, op->min_size, &ucmd.user_size);
	if (ret)
		return ret;
	ucmd.cmd = &buf;
	return op->execute(&ucmd);
}
