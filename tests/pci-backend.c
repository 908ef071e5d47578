// SPDX-License-Identifier: MIT
/*
 * The core hooks a remote (vfio-user) function is built on: memory over an
 * external fd, BAR memory given at creation, the backend hooks of
 * struct p2p_pci_dev_ops (config writes, reset, IOAS attach/detach), IOAS
 * domains mirroring every map and unmap, and the backend state that
 * revokes a function's dma-bufs from outside.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

#define BAR2 (1u << 20)

static struct {
	int cfg_writes;
	unsigned int cfg_off;
	uint32_t cfg_val;
	size_t cfg_len;
	int resets;
	int attaches, detaches;
	struct p2p_ioas *attached;
} hk;

static int hk_config_write(struct p2p_pci_dev *dev, unsigned int off, const void *data, size_t len)
{
	(void)dev;
	hk.cfg_writes++;
	hk.cfg_off = off;
	hk.cfg_len = len;
	hk.cfg_val = 0;
	memcpy(&hk.cfg_val, data, len < 4 ? len : 4);
	return 0;
}

static int hk_reset_done(struct p2p_pci_dev *dev)
{
	(void)dev;
	hk.resets++;
	return 0;
}

static int hk_ioas_attach(struct p2p_pci_dev *dev, struct p2p_ioas *ioas)
{
	(void)dev;
	hk.attaches++;
	hk.attached = ioas;
	return 0;
}

static void hk_ioas_detach(struct p2p_pci_dev *dev, struct p2p_ioas *ioas)
{
	(void)dev;
	CHECK(ioas == hk.attached);
	hk.detaches++;
}

static const struct p2p_pci_dev_ops hk_ops = {
	.config_write = hk_config_write,
	.reset_done = hk_reset_done,
	.ioas_attach = hk_ioas_attach,
	.ioas_detach = hk_ioas_detach,
};

/* A domain that records what it was told. */
struct rec {
	int maps, unmaps;
	struct p2p_ioas_domain_area last;
	uint64_t unmap_iova, unmap_len;
	char fd_byte; /* the byte at last.fd_offset, read through the fd during map */
	int fail;
};

static int rec_map(void *priv, const struct p2p_ioas_domain_area *a)
{
	struct rec *r = priv;

	if (r->fail)
		return r->fail;
	r->maps++;
	r->last = *a;
	r->fd_byte = 0;
	if (a->fd >= 0 && pread(a->fd, &r->fd_byte, 1, (off_t)a->fd_offset) != 1)
		r->fd_byte = -1;
	return 0;
}

static void rec_unmap(void *priv, uint64_t iova, uint64_t len)
{
	struct rec *r = priv;

	r->unmaps++;
	r->unmap_iova = iova;
	r->unmap_len = len;
}

static const struct p2p_ioas_domain_ops rec_ops = { .map = rec_map, .unmap = rec_unmap };

static void test_mem_from_fd(void)
{
	struct p2p_mem *mem;
	int fd = memfd_create("ext", MFD_CLOEXEC), p[2];
	char b = 0;

	t_section("mem-from-fd");
	CHECK(fd >= 0 && ftruncate(fd, 3 * 4096) == 0);
	CHECK(pwrite(fd, "X", 1, 4096 + 7) == 1);
	CHECK_ERR(p2p_mem_create_from_fd(-1, 0, 4096, 0, &mem), -EBADF);
	CHECK_ERR(p2p_mem_create_from_fd(fd, 100, 4096, 0, &mem), -EINVAL);
	CHECK_ERR(p2p_mem_create_from_fd(fd, 0, 100, 0, &mem), -EINVAL);
	CHECK_ERR(p2p_mem_create_from_fd(fd, 0, 4096, 0x80, &mem), -EINVAL);
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	CHECK_ERR(p2p_mem_create_from_fd(p[0], 0, 4096, 0, &mem), -EINVAL);
	close(p[0]);
	close(p[1]);
	CHECK_OK(p2p_mem_create_from_fd(fd, 4096, 2 * 4096, 0, &mem));
	CHECK(*(char *)p2p_mem_ptr(mem, 7) == 'X');
	CHECK(p2p_mem_fd_offset(mem) == 4096 && p2p_mem_size(mem) == 2 * 4096);
	CHECK(p2p_mem_fd(mem) != fd);
	/* Shared both ways: the owner's writes show, ours reach the file. */
	*(char *)p2p_mem_ptr(mem, 8) = 'Y';
	CHECK(pread(fd, &b, 1, 4096 + 8) == 1 && b == 'Y');
	close(fd); /* the object holds its own duplicate */
	CHECK(*(char *)p2p_mem_ptr(mem, 7) == 'X');
	p2p_mem_put(mem);
}

static void test_bar_mems_and_hooks(void)
{
	struct p2p_pci_dev_info info;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_mem *mem, *small;
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	uint32_t id;
	uint8_t v = 0;
	void *map;
	int fd = memfd_create("bar2", MFD_CLOEXEC);

	t_section("bar-mems");
	CHECK(fd >= 0 && ftruncate(fd, BAR2 + 4096) == 0);
	CHECK_OK(p2p_mem_create_from_fd(fd, 4096, BAR2, 0, &mem));
	CHECK_OK(p2p_mem_create_from_fd(fd, 4096, 4096, 0, &small));
	t_dev_info(&info, "0000:0b:00.0", BAR2, 0, NULL, 11);
	info.ops = &hk_ops;
	/* Too small for the BAR, on an I/O BAR, on no BAR: EINVAL. */
	info.bar_mems[2] = small;
	CHECK_ERR(p2p_pci_dev_create(&info, &pci), -EINVAL);
	info.bar_mems[2] = NULL;
	info.bar_mems[4] = mem;
	CHECK_ERR(p2p_pci_dev_create(&info, &pci), -EINVAL);
	info.bar_mems[4] = NULL;
	info.bar_mems[3] = mem;
	CHECK_ERR(p2p_pci_dev_create(&info, &pci), -EINVAL);
	info.bar_mems[3] = NULL;
	/* The old size is still accepted (no bar_mems read). */
	info.argsz = P2P_PCI_DEV_INFO_SIZE_V1;
	info.bar_mems[2] = mem;
	CHECK_OK(p2p_pci_dev_create(&info, &pci));
	CHECK(p2p_pci_dev_bar_mem(pci, 2) != mem);
	p2p_pci_dev_put(pci);
	info.argsz = sizeof(info);
	CHECK_OK(t_dev_open_info(&info, &pci, &vdev));
	p2p_mem_put(small);
	CHECK(p2p_pci_dev_bar_mem(pci, 2) == mem);
	CHECK(pwrite(fd, "\x5a", 1, 4096 + 100) == 1);
	CHECK(p2p_vfio_device_pread(vdev, &v, 1, P2P_VFIO_REGION_OFFSET(2) + 100) == 1);
	CHECK(v == 0x5a);
	/* A BAR mmap maps the external file. */
	CHECK_OK(p2p_vfio_device_mmap(vdev, NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), &map));
	CHECK(((uint8_t *)map)[100] == 0x5a);
	((uint8_t *)map)[101] = 0xa5;
	CHECK(pread(fd, &v, 1, 4096 + 101) == 1 && v == 0xa5);

	t_section("hooks");
	CHECK_OK(p2p_vfio_config_write(vdev, 0x3c, 1, 0x42));
	CHECK(hk.cfg_writes == 1 && hk.cfg_off == 0x3c && hk.cfg_len == 1 && hk.cfg_val == 0x42);
	CHECK_OK(p2p_vfio_device_reset(vdev));
	CHECK(hk.resets == 1);
	CHECK_OK(p2p_vfio_device_hot_reset(vdev, NULL, 0));
	CHECK(hk.resets == 2);
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_OK(p2p_vfio_device_attach_ioas(vdev, ioas));
	CHECK(hk.attaches == 1 && hk.attached == ioas && hk.detaches == 0);
	p2p_vfio_device_detach_ioas(vdev);
	CHECK(hk.detaches == 1);
	CHECK_OK(p2p_vfio_device_attach_ioas(vdev, ioas));
	CHECK(hk.attaches == 2);

	t_section("backend-state");
	CHECK(!t_read_faults(map));
	CHECK_ERR(p2p_pci_dev_backend_state(pci, 7), -EINVAL);
	CHECK_OK(p2p_pci_dev_backend_state(pci, P2P_PCI_BACKEND_REVOKED));
	CHECK(!p2p_pci_dev_memory_enabled(pci));
	CHECK(t_read_faults(map));
	/* A MEM-on write does not bring it back while the backend says no. */
	CHECK_OK(p2p_vfio_config_write(vdev, 0x04, 2, 0x0006));
	CHECK(t_read_faults(map));
	CHECK_OK(p2p_pci_dev_backend_state(pci, P2P_PCI_BACKEND_OK));
	CHECK(p2p_pci_dev_memory_enabled(pci));
	CHECK(!t_read_faults(map) && ((uint8_t *)map)[101] == 0xa5);
	CHECK_OK(p2p_pci_dev_backend_state(pci, P2P_PCI_BACKEND_GONE));
	CHECK(t_read_faults(map));
	CHECK_ERR(p2p_pci_dev_backend_state(pci, P2P_PCI_BACKEND_OK), -EBADFD);
	CHECK(t_read_faults(map));

	p2p_munmap(map, 4096);
	p2p_vfio_device_close(vdev); /* close_device detaches: the hook is told */
	CHECK(hk.detaches == 2);
	p2p_pci_dev_put(pci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
	p2p_mem_put(mem);
	close(fd);
}

static void test_domains(void)
{
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	struct p2p_ioas_domain *dom, *dom2;
	struct rec r = { 0 }, r2 = { 0 };
	uint64_t iova = 0x100000, iova2 = 0x400000;
	uint32_t id;
	void *anon = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = memfd_create("dom", MFD_CLOEXEC);

	t_section("domains");
	CHECK(anon != MAP_FAILED && fd >= 0 && ftruncate(fd, 16384) == 0);
	CHECK(pwrite(fd, "Q", 1, 4096) == 1);
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_ERR(p2p_ioas_domain_attach(ioas, NULL, &r, &dom), -EINVAL);
	CHECK_OK(p2p_ioas_map(ioas, anon, 8192, &iova,
			      P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE));
	/* Attach replays what is mapped. */
	CHECK_OK(p2p_ioas_domain_attach(ioas, &rec_ops, &r, &dom));
	CHECK(r.maps == 1 && r.last.iova == 0x100000 && r.last.length == 8192);
	CHECK(r.last.kind == P2P_IOAS_DOMAIN_VA && r.last.va == anon && r.last.fd == -1);
	CHECK(r.last.prot == (P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE));
	/* A memfd is given as its file. */
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 4096, 8192, &iova2,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE));
	CHECK(r.maps == 2 && r.last.kind == P2P_IOAS_DOMAIN_FD && r.last.iova == 0x400000);
	CHECK(r.last.fd_offset == 4096 && r.fd_byte == 'Q' && r.last.prot == P2P_IOAS_MAP_READABLE);
	/* A failing domain fails the map and leaves nothing. */
	r.fail = -EIO;
	iova = 0x800000;
	CHECK_ERR(p2p_ioas_map(ioas, anon, 4096, &iova,
			       P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE), -EIO);
	CHECK(p2p_ioas_nr_areas(ioas) == 2);
	/* A second domain gets the replay and an unmap of each area at detach. */
	r2.fail = 0;
	CHECK_OK(p2p_ioas_domain_attach(ioas, &rec_ops, &r2, &dom2));
	CHECK(r2.maps == 2);
	p2p_ioas_domain_detach(dom2);
	CHECK(r2.unmaps == 2);
	r.fail = 0;
	CHECK_OK(p2p_ioas_unmap(ioas, 0x100000, 8192, NULL));
	CHECK(r.unmaps == 1 && r.unmap_iova == 0x100000 && r.unmap_len == 8192);
	p2p_ioas_domain_detach(dom);
	CHECK(r.unmaps == 2 && r.unmap_iova == 0x400000);
	/* Detached: no more calls. */
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));
	CHECK(r.unmaps == 2);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
	munmap(anon, 8192);
	close(fd);
}

int main(void)
{
	t_begin();
	t_require_uffd();
	test_mem_from_fd();
	test_bar_mems_and_hooks();
	test_domains();
	return t_end();
}
