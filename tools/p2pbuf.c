// SPDX-License-Identifier: MIT
/*
 * p2pbuf: the command-line tool.
 *
 *   p2pbuf run [options]          the main job: the whole story on emulated devices
 *   p2pbuf bench NAME [options]   benchmarks against their raw baselines, --json for scripts
 *   p2pbuf exec [options] -- PROGRAM   run an unmodified program through the kernel-uAPI door
 *   p2pbuf serve --socket-dir DIR      serve the devices to other processes over vfio-user
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: p2pbuf <command> [options]\n"
		   "\n"
		   "commands:\n"
		   "  run              the main job: dma-bufs of emulated GPU memory used by CPU\n"
		   "                   mappings, a copy engine, a storage device and io_uring,\n"
		   "                   peer to peer, through resets (p2pbuf run --help)\n"
		   "  bench NAME       benchmark NAME (mmap, revoke, p2p, iova, io, heap, storage,\n"
		   "                   preload, all) against its raw baseline in the same run\n"
		   "                   (p2pbuf bench --help)\n"
		   "  exec PROGRAM     run PROGRAM unmodified on the emulated devices through\n"
		   "                   /dev/vfio, /dev/iommu and /dev/dma_heap (p2pbuf exec --help)\n"
		   "  serve            serve the configured devices to other processes over\n"
		   "                   vfio-user (p2pbuf serve --help)\n"
		   "  help             this text\n");
}

int cli_gpu_create(const char *bdf, uint64_t vram, struct p2p_pci_devset *set, uint32_t group,
		   struct p2p_pci_dev **pci, struct p2p_vfio_device **vdev)
{
	return cli_gpu_create_flags(bdf, vram, set, group, P2P_PCI_HUGE | P2P_PCI_PREFAULT, pci,
				    vdev);
}

int cli_gpu_create_flags(const char *bdf, uint64_t vram, struct p2p_pci_devset *set,
			 uint32_t group, uint32_t flags, struct p2p_pci_dev **pci,
			 struct p2p_vfio_device **vdev)
{
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.flags = flags,
		.name = bdf,
		.vendor_id = 0x1b36,
		.device_id = 0x0110,
		.class_code = 0x030200, /* 3D controller */
		.group = group,
		.devset = set,
		.bars = {
			[0] = { .size = 16384 },
			[2] = { .size = vram, .flags = P2P_BAR_MEM64 | P2P_BAR_PREFETCH },
		},
	};
	int ret = p2p_pci_dev_create(&info, pci);

	if (ret)
		return ret;
	ret = p2p_vfio_device_open(*pci, vdev);
	if (ret)
		p2p_pci_dev_put(*pci);
	return ret;
}

int cli_mem_enable(struct p2p_vfio_device *vdev, bool on)
{
	uint32_t cmd;
	int ret = p2p_vfio_config_read(vdev, 0x04, 2, &cmd);

	if (ret)
		return ret;
	cmd = on ? (cmd | 0x2) : (cmd & ~0x2u);
	return p2p_vfio_config_write(vdev, 0x04, 2, cmd);
}

uint64_t cli_parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	if (end == s)
		return 0;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	return *end ? 0 : v;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "exec"))
		return cmd_exec(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench"))
		return cmd_bench(argc - 1, argv + 1);
	/* Hidden: the measuring child of `p2pbuf bench preload`. */
	if (!strcmp(argv[1], "bench-preload-worker"))
		return cmd_bench_preload_worker(argc - 1, argv + 1);
	/* Hidden: a client process of `p2pbuf bench vfio-user`. */
	if (!strcmp(argv[1], "bench-vfio-user-worker"))
		return cmd_bench_vfio_user_worker(argc - 1, argv + 1);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "p2pbuf: unknown command '%s' (try 'p2pbuf help')\n", argv[1]);
	return 2;
}
