// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

#include "harness.h"

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

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
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
	fds_at_start = count_fds();
}

int t_end(void)
{
	int now = count_fds();

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

void t_skip(const char *reason)
{
	printf("SKIP: %s\n", reason);
	exit(T_EXIT_SKIP);
}

static bool probe(volatile uint8_t *p, size_t len, bool write, uint8_t v)
{
	sigjmp_buf jb, *volatile old = probe_jmp;
	volatile bool faulted = false;

	if (sigsetjmp(jb, 1)) {
		faulted = true;
	} else {
		probe_jmp = &jb;
		for (size_t i = 0; i < len; i += 4096) {
			if (write)
				p[i] = v;
			else
				(void)p[i];
		}
		/*
		 * The last byte too, but never store twice to one byte: a
		 * revoke between the two stores would report a write that
		 * landed as faulted.
		 */
		if (write && (len - 1) % 4096)
			p[len - 1] = v;
	}
	probe_jmp = old;
	return faulted;
}

bool t_read_faults(const volatile void *p)
{
	return probe((volatile uint8_t *)p, 1, false, 0);
}

bool t_write_faults(volatile void *p, uint8_t v)
{
	return probe(p, 1, true, v);
}

bool t_fill_faults(volatile void *p, uint8_t v, size_t len)
{
	sigjmp_buf jb, *volatile old = probe_jmp;
	volatile bool faulted = false;

	if (sigsetjmp(jb, 1)) {
		faulted = true;
	} else {
		probe_jmp = &jb;
		memset((void *)p, v, len);
	}
	probe_jmp = old;
	return faulted;
}

int t_dev_create(struct t_dev *d, const char *name, uint64_t bar2, uint32_t flags,
		 struct p2p_pci_devset *set, uint32_t group)
{
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
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
	int ret = p2p_pci_dev_create(&info, &d->pci);

	if (ret)
		return ret;
	ret = p2p_vfio_device_open(d->pci, &d->vdev);
	if (ret) {
		p2p_pci_dev_put(d->pci);
		return ret;
	}
	return 0;
}

void t_dev_destroy(struct t_dev *d)
{
	p2p_vfio_device_close(d->vdev);
	p2p_pci_dev_put(d->pci);
	d->vdev = NULL;
	d->pci = NULL;
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

bool t_load_faults(const volatile void *p, uint8_t *val)
{
	sigjmp_buf jb, *volatile old = probe_jmp;
	volatile bool faulted = false;

	if (sigsetjmp(jb, 1)) {
		faulted = true;
	} else {
		probe_jmp = &jb;
		*val = *(const volatile uint8_t *)p;
	}
	probe_jmp = old;
	return faulted;
}

int t_access(volatile void *p, bool write, uint8_t wval, uint8_t *rval)
{
	sigjmp_buf jb, *volatile old = probe_jmp;
	volatile int sig = 0;

	switch (sigsetjmp(jb, 1)) { /* setjmp may not be assigned from (C11 7.13.1.1) */
	case 0:
		probe_jmp = &jb;
		if (write)
			*(volatile uint8_t *)p = wval;
		else if (rval)
			*rval = *(volatile uint8_t *)p;
		else
			(void)*(volatile uint8_t *)p;
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
