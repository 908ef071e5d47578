// SPDX-License-Identifier: MIT
/*
 * Example: export two ranges of an emulated device's BAR as one dma-buf,
 * map it, and watch a revoke (memory decoding off) and its undo.
 *
 * Build against an installed p2pbuf:  cc export_mmap.c $(pkg-config --cflags --libs p2pbuf)
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <p2pbuf/p2pbuf.h>

static int set_mem(struct p2p_vfio_device *vdev, int on)
{
	uint32_t cmd;
	int ret = p2p_vfio_config_read(vdev, 0x04, 2, &cmd);

	return ret ? ret : p2p_vfio_config_write(vdev, 0x04, 2, on ? cmd | 2 : cmd & ~2u);
}

int main(void)
{
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.name = "0000:02:00.0",
		.vendor_id = 0x1b36,
		.device_id = 0x0110,
		.bars = { [2] = { .size = 1 << 20, .flags = P2P_BAR_MEM64 } },
	};
	struct vfio_region_dma_range ranges[2] = { { 65536, 8192 }, { 0, 4096 } };
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dmabuf *buf;
	char *va;
	int fd, ret;

	if ((ret = p2p_pci_dev_create(&info, &pci)) || (ret = p2p_vfio_device_open(pci, &vdev))) {
		fprintf(stderr, "device: %s\n", p2p_strerror(ret));
		return 1;
	}
	fd = p2p_vfio_device_get_dmabuf(vdev, 2, ranges, 2, O_RDWR | O_CLOEXEC);
	if (fd < 0 || p2p_dmabuf_get(fd, &buf)) {
		fprintf(stderr, "DMA_BUF: %s\n", p2p_strerror(fd));
		return 1;
	}
	ret = p2p_dmabuf_mmap(buf, NULL, 12288, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
			      (void **)&va);
	if (ret) {
		fprintf(stderr, "mmap: %s\n", p2p_strerror(ret));
		return 1;
	}
	strcpy(va + 8192, "hello from the second range");
	printf("BAR offset 0: \"%s\"\n", (char *)p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0));

	set_mem(vdev, 0);
	printf("memory off: dma-buf status %d (1 = revoked; the mapping would SIGBUS)\n",
	       p2p_dmabuf_status(buf));
	set_mem(vdev, 1);
	printf("memory on: \"%s\"\n", va + 8192);
	ret = strcmp(va + 8192, "hello from the second range") != 0;

	p2p_munmap(va, 12288);
	p2p_dmabuf_put(buf);
	p2p_close(fd);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	return ret;
}
