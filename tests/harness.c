// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "../tools/proc_util.h" /* test-fail-nth has no ../tools include dir */

int t_failures;
const char *t_current;
static int fds_at_start;

/* volatile: the store before a probed access must not be optimised away. */
static __thread sigjmp_buf *volatile probe_jmp;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (probe_jmp)
		siglongjmp(*probe_jmp, sig);
	signal(sig, SIG_DFL);
	raise(sig);
}

int t_count_fds(void)
{
	return proc_count_fds();
}

void t_section(const char *name)
{
	t_current = name;
}

void t_begin(void)
{
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_NODEFER };
	int ret;

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = p2p_library_init();
	if (ret)
		fprintf(stderr, "note: p2p_library_init: %s\n", strerror(-ret));
	fds_at_start = t_count_fds();
}

int t_end(void)
{
	int now = t_count_fds();

	if (now != fds_at_start) {
		fprintf(stderr, "fd leak: %d open at start, %d at end\n", fds_at_start, now);
		t_failures++;
	}
	if (t_failures) {
		fprintf(stderr, "%d check(s) failed\n", t_failures);
		return T_EXIT_FAIL;
	}
	return T_EXIT_PASS;
}

int t_tmpfile(const void *data, uint64_t len)
{
	char path[] = "/tmp/p2p-test-XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);

	if (fd < 0) {
		perror("t_tmpfile: mkostemp");
		exit(T_EXIT_FAIL);
	}
	unlink(path);
	if (pwrite(fd, data, len, 0) != (ssize_t)len) {
		perror("t_tmpfile: pwrite");
		exit(T_EXIT_FAIL);
	}
	return fd;
}

void t_skip(const char *reason)
{
	printf("SKIP: %s\n", reason);
	exit(T_EXIT_SKIP);
}

void t_require_uffd(void)
{
	if (p2p_library_init())
		t_skip("userfaultfd unavailable: CPU revocation not possible");
}

/*
 * Run @fn(@arg) with SIGBUS and SIGSEGV caught: returns 0, or the signal
 * that cut it short (SIGBUS, else SIGSEGV).  Thread-safe, and nests: the
 * previous jump buffer is restored.
 */
static int catch_faults(void (*fn)(void *), void *arg)
{
	sigjmp_buf jb, *volatile old = probe_jmp;
	volatile int sig = 0;

	switch (sigsetjmp(jb, 1)) { /* setjmp may not be assigned from (C11 7.13.1.1) */
	case 0:
		probe_jmp = &jb;
		fn(arg);
		break;
	case SIGBUS:
		sig = SIGBUS;
		break;
	default:
		sig = SIGSEGV;
		break;
	}
	probe_jmp = old;
	return sig;
}

/* One probed access, or a run of them: what catch_faults() runs. */
struct probe_op {
	volatile uint8_t *p;
	size_t len;
	bool write;
	uint8_t v;
	uint8_t *val; /* probe_byte(): where a load goes (may be NULL) */
};

static void probe_pages(void *arg)
{
	const struct probe_op *op = arg;

	for (size_t i = 0; i < op->len; i += 4096) {
		if (op->write)
			op->p[i] = op->v;
		else
			(void)op->p[i];
	}
	/*
	 * The last byte too, but never store twice to one byte: a revoke
	 * between the two stores would report a write that landed as faulted.
	 */
	if (op->write && (op->len - 1) % 4096)
		op->p[op->len - 1] = op->v;
}

static bool probe(volatile uint8_t *p, size_t len, bool write, uint8_t v)
{
	struct probe_op op = { .p = p, .len = len, .write = write, .v = v };

	return catch_faults(probe_pages, &op) != 0;
}

bool t_read_faults(const volatile void *p)
{
	return probe((volatile uint8_t *)p, 1, false, 0);
}

bool t_write_faults(volatile void *p, uint8_t v)
{
	return probe(p, 1, true, v);
}

static void probe_fill(void *arg)
{
	const struct probe_op *op = arg;

	memset((void *)op->p, op->v, op->len);
}

bool t_fill_faults(volatile void *p, uint8_t v, size_t len)
{
	struct probe_op op = { .p = p, .len = len, .v = v };

	return catch_faults(probe_fill, &op) != 0;
}

bool t_faults_everywhere(const volatile void *p, size_t len)
{
	for (size_t i = 0; i < len; i += 4096)
		if (!t_read_faults((const volatile uint8_t *)p + i))
			return false;
	return true;
}

bool t_faults_anywhere(const volatile void *p, size_t len)
{
	for (size_t i = 0; i < len; i += 4096)
		if (t_read_faults((const volatile uint8_t *)p + i))
			return true;
	return false;
}

void t_dev_info(struct p2p_pci_dev_info *info, const char *name, uint64_t bar2, uint32_t flags,
		struct p2p_pci_devset *set, uint32_t group)
{
	*info = (struct p2p_pci_dev_info){
		.argsz = sizeof(*info),
		.flags = flags,
		.name = name,
		.vendor_id = 0x1b36,
		.device_id = 0x0011,
		.class_code = 0x030000,
		.group = group,
		.devset = set,
		.bars = {
			[0] = { .size = 16384, .flags = 0 },
			[2] = { .size = bar2, .flags = P2P_BAR_MEM64 | P2P_BAR_PREFETCH },
			[4] = { .size = 256, .flags = P2P_BAR_IO },
		},
	};
}

int t_dev_open_info(const struct p2p_pci_dev_info *info, struct p2p_pci_dev **pci,
		    struct p2p_vfio_device **vdev)
{
	int ret = p2p_pci_dev_create(info, pci);

	if (ret || !vdev)
		return ret;
	ret = p2p_vfio_device_open(*pci, vdev);
	if (ret) {
		p2p_pci_dev_put(*pci);
		*pci = NULL;
	}
	return ret;
}

int t_dev_create(struct t_dev *d, const char *name, uint64_t bar2, uint32_t flags,
		 struct p2p_pci_devset *set, uint32_t group)
{
	struct p2p_pci_dev_info info;

	t_dev_info(&info, name, bar2, flags, set, group);
	return t_dev_open_info(&info, &d->pci, &d->vdev);
}

void t_dev_create_or_skip(struct t_dev *d, const char *name, uint64_t bar2, uint32_t group)
{
	if (t_dev_create(d, name, bar2, 0, NULL, group))
		t_skip("cannot create the emulated device");
}

void t_dev_create_or_fail(struct t_dev *d, const char *name, uint64_t bar2, uint32_t group)
{
	int ret = t_dev_create(d, name, bar2, 0, NULL, group);

	if (ret) {
		fprintf(stderr, "t_dev_create: %s\n", strerror(-ret));
		exit(T_EXIT_FAIL);
	}
}

void t_dev_destroy(struct t_dev *d)
{
	p2p_vfio_device_close(d->vdev);
	p2p_pci_dev_put(d->pci);
	d->vdev = NULL;
	d->pci = NULL;
}

uint8_t *t_bar_ptr(const struct p2p_pci_dev *pci, int bar, uint64_t off)
{
	return p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, bar), off);
}

uint8_t t_pattern(uint64_t off)
{
	return (uint8_t)(off * 131 + (off >> 12) * 7 + 1);
}

void t_bar_fill(const struct p2p_pci_dev *pci, int bar, uint64_t size)
{
	for (uint64_t o = 0; o < size; o++)
		*t_bar_ptr(pci, bar, o) = t_pattern(o);
}

int t_mem_enable(struct p2p_vfio_device *vdev, bool on)
{
	uint32_t cmd;
	int ret = p2p_vfio_config_read(vdev, 0x04, 2, &cmd);

	if (ret)
		return ret;
	cmd = on ? (cmd | 0x2) : (cmd & ~0x2u);
	return p2p_vfio_config_write(vdev, 0x04, 2, cmd);
}

int t_set_power(struct p2p_vfio_device *vdev, unsigned int state)
{
	uint32_t pm;
	int ret = p2p_vfio_config_read(vdev, P2P_PCI_PM_CTRL, 2, &pm);

	if (ret)
		return ret;
	return p2p_vfio_config_write(vdev, P2P_PCI_PM_CTRL, 2, (pm & ~0x3u) | (state & 3));
}

int t_flr(struct p2p_vfio_device *vdev)
{
	uint32_t ctl;
	int ret = p2p_vfio_config_read(vdev, P2P_PCI_EXP_DEVCTL, 2, &ctl);

	if (ret)
		return ret;
	return p2p_vfio_config_write(vdev, P2P_PCI_EXP_DEVCTL, 2, ctl | P2P_PCI_EXP_DEVCTL_BCR_FLR);
}

int t_dmabuf(struct p2p_vfio_device *vdev, uint32_t bar, const struct vfio_region_dma_range *r,
	     uint32_t nr)
{
	return p2p_vfio_device_get_dmabuf(vdev, bar, r, nr, O_RDWR | O_CLOEXEC);
}

int t_dmabuf_range(struct p2p_vfio_device *vdev, uint32_t bar, uint64_t off, uint64_t len)
{
	struct vfio_region_dma_range r = { .offset = off, .length = len };

	return t_dmabuf(vdev, bar, &r, 1);
}

int t_mmap_fd(int fd, size_t len, int flags, uint64_t off, void **va)
{
	struct p2p_dmabuf *buf;
	int ret = p2p_dmabuf_get(fd, &buf);

	if (ret)
		return ret;
	ret = p2p_dmabuf_mmap(buf, NULL, len, PROT_READ | PROT_WRITE, flags, off, va);
	p2p_dmabuf_put(buf);
	return ret;
}

long t_feat_revoke(struct p2p_vfio_device *vdev, int fd)
{
	uint64_t buf[(sizeof(struct vfio_device_feature) +
		      sizeof(struct vfio_device_feature_dma_buf_revoke) + 7) / 8] = { 0 };
	struct vfio_device_feature *f = (void *)buf;
	struct vfio_device_feature_dma_buf_revoke *arg = (void *)f->data;

	f->argsz = sizeof(*f) + sizeof(*arg);
	f->flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE;
	arg->dmabuf_fd = fd;
	return p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_FEATURE, f);
}

static void t_invalidate(struct p2p_attachment *a)
{
	struct t_importer *imp = p2p_attachment_importer_priv(a);

	imp->invalidations++;
	if (imp->sgt) {
		p2p_attachment_unmap(a, imp->sgt); /* resv is held by the revoker */
		imp->sgt = NULL;
	}
}

static const struct p2p_dmabuf_importer_ops t_importer_ops = {
	.invalidate_mappings = t_invalidate,
};

static const struct p2p_dmabuf_importer_ops t_importer_ops_norevoke = { 0 };

int t_importer_attach(struct t_importer *imp, struct p2p_dmabuf *buf, uint32_t flags,
		      bool revocable)
{
	struct p2p_attach_info info = {
		.argsz = sizeof(info),
		.flags = flags,
		.importer_ops = revocable ? &t_importer_ops : &t_importer_ops_norevoke,
		.importer_priv = imp,
		.name = "test",
	};

	memset(imp, 0, sizeof(*imp));
	return p2p_dmabuf_attach(buf, &info, &imp->attach);
}

int t_importer_map(struct t_importer *imp)
{
	struct p2p_dmabuf *buf = p2p_attachment_dmabuf(imp->attach);
	int ret;

	p2p_dmabuf_resv_lock(buf);
	ret = imp->sgt ? 0 : p2p_attachment_map(imp->attach, &imp->sgt);
	p2p_dmabuf_resv_unlock(buf);
	return ret;
}

void t_importer_detach(struct t_importer *imp)
{
	struct p2p_dmabuf *buf;

	if (!imp->attach)
		return;
	buf = p2p_attachment_dmabuf(imp->attach);
	p2p_dmabuf_resv_lock(buf);
	if (imp->sgt)
		p2p_attachment_unmap(imp->attach, imp->sgt);
	imp->sgt = NULL;
	p2p_dmabuf_resv_unlock(buf);
	p2p_dmabuf_detach(imp->attach);
	imp->attach = NULL;
}

int t_try_attach(struct p2p_dmabuf *buf)
{
	struct t_importer imp;
	int ret = t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true);

	if (!ret) {
		ret = t_importer_map(&imp);
		t_importer_detach(&imp);
	}
	return ret;
}

struct p2p_sgt *t_sgt_of_ranges(struct p2p_dmabuf *buf)
{
	const struct p2p_phys_range *r;
	struct p2p_sgt *sgt;
	unsigned int nr;

	r = p2p_dmabuf_ranges(buf, &nr);
	sgt = malloc(sizeof(*sgt) + nr * sizeof(sgt->ents[0]));
	if (!sgt)
		return NULL;
	sgt->nents = nr;
	memcpy(sgt->ents, r, nr * sizeof(*r));
	return sgt;
}

uint32_t t_ioas_new(struct p2p_iommufd *ictx, struct p2p_ioas **out)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };

	CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOC, &cmd));
	CHECK_OK(p2p_ioas_get(ictx, cmd.out_ioas_id, out));
	return cmd.out_ioas_id;
}

long t_destroy_ioctl(struct p2p_iommufd *ictx, uint32_t id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

	return p2p_iommufd_ioctl(ictx, IOMMU_DESTROY, &cmd);
}

void t_ioas_del(struct p2p_iommufd *ictx, uint32_t id, struct p2p_ioas *ioas)
{
	p2p_ioas_put(ioas);
	CHECK_OK(t_destroy_ioctl(ictx, id));
}

long t_map_file_ioctl(struct p2p_iommufd *ictx, uint32_t id, int fd, uint64_t start,
		      uint64_t len, uint64_t *iova, uint32_t flags)
{
	struct iommu_ioas_map_file cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.ioas_id = id,
		.fd = fd,
		.start = start,
		.length = len,
		.iova = *iova,
	};
	long ret = p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP_FILE, &cmd);

	if (!ret)
		*iova = cmd.iova;
	return ret;
}

long t_map_ioctl(struct p2p_iommufd *ictx, uint32_t id, void *va, uint64_t len, uint64_t *iova,
		 uint32_t flags)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.ioas_id = id,
		.user_va = (uintptr_t)va,
		.length = len,
		.iova = *iova,
	};
	long ret = p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP, &cmd);

	if (!ret)
		*iova = cmd.iova;
	return ret;
}

long t_unmap_ioctl(struct p2p_iommufd *ictx, uint32_t id, uint64_t iova, uint64_t len,
		   uint64_t *done)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = id, .iova = iova, .length = len
	};
	long ret = p2p_iommufd_ioctl(ictx, IOMMU_IOAS_UNMAP, &cmd);

	if (done)
		*done = ret ? 0 : cmd.length;
	return ret;
}

/* One byte: a store of op->v if op->write, else a load (into *op->val if not NULL). */
static void probe_byte(void *arg)
{
	const struct probe_op *op = arg;

	if (op->write)
		*op->p = op->v;
	else if (op->val)
		*op->val = *op->p;
	else
		(void)*op->p;
}

bool t_load_faults(const volatile void *p, uint8_t *val)
{
	struct probe_op op = { .p = (volatile uint8_t *)p, .val = val };

	return catch_faults(probe_byte, &op) != 0;
}

int t_access(volatile void *p, bool write, uint8_t wval, uint8_t *rval)
{
	struct probe_op op = { .p = p, .write = write, .v = wval, .val = rval };

	return catch_faults(probe_byte, &op);
}

bool t_maps_find(const void *va, uint64_t *off, const char *name, bool *named)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		unsigned long long o;

		if (sscanf(line, "%lx-%lx %*s %llx", &lo, &hi, &o) != 3)
			continue;
		if ((uintptr_t)va < lo || (uintptr_t)va >= hi)
			continue;
		found = true;
		*off = o;
		if (named)
			*named = name && strstr(line, name);
	}
	fclose(f);
	return found;
}

void t_tool_path(char *out, size_t n)
{
	ssize_t r = readlink("/proc/self/exe", out, n - 32);
	char *slash;

	out[r > 0 ? r : 0] = 0;
	/* build/tests/test-x -> build/tools/p2pbuf */
	for (int i = 0; i < 2 && (slash = strrchr(out, '/')); i++)
		*slash = 0;
	strcat(out, "/tools/p2pbuf");
}

pid_t t_serve(const char *dir, const char *conf, const char *const *bdfs, const char *revoke_ms)
{
	extern char **environ;
	char cfg[256], log[256], p[256], exe[512];
	char *argv[] = { "p2pbuf", "serve", "--config", cfg, "--socket-dir", (char *)dir,
			 "--revoke-timeout-ms", (char *)revoke_ms, NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	FILE *f;

	snprintf(cfg, sizeof(cfg), "%s/devices.conf", dir);
	snprintf(log, sizeof(log), "%s/serve.log", dir);
	f = fopen(cfg, "w");
	if (!f)
		return -1;
	fputs(conf, f);
	fclose(f);
	t_tool_path(exe, sizeof(exe));
	if (posix_spawn_file_actions_init(&fa))
		return -1;
	/* Not our stdout: a server left behind by a dying test holds none of our pipes. */
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (posix_spawn(&pid, exe, &fa, NULL, argv, environ))
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	for (int i = 0; pid > 0 && i < 1000; i++) {
		struct stat st;
		bool up = true;

		for (const char *const *b = bdfs; *b && up; b++) {
			snprintf(p, sizeof(p), "%s/%s", dir, *b);
			up = !stat(p, &st);
		}
		if (up)
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		usleep(10000);
	}
	return -1;
}

ssize_t t_sendmsg_fds(int s, const void *buf, size_t len, const int *fds, unsigned int nfds)
{
	union {
		struct cmsghdr a;
		char b[CMSG_SPACE(sizeof(int) * 16)];
	} cb;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds > 16)
		return -1;
	if (nfds) {
		struct cmsghdr *c;

		memset(&cb, 0, sizeof(cb));
		mh.msg_control = cb.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(s, &mh, MSG_NOSIGNAL);
}
