/* SPDX-License-Identifier: MIT */
/* Shared pieces of the p2pbuf CLI. */
#ifndef P2PBUF_TOOLS_CLI_H
#define P2PBUF_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <p2pbuf/p2pbuf.h>

#include "bench_util.h"

/*
 * An emulated GPU-like function: BAR0 16 KiB registers, BAR2 64-bit VRAM,
 * huge pages where allowed, VRAM pre-faulted on all cores (P2P_PCI_PREFAULT).
 */
int cli_gpu_create(const char *bdf, uint64_t vram, struct p2p_pci_devset *set, uint32_t group,
		   struct p2p_pci_dev **pci, struct p2p_vfio_device **vdev);
/* The same with the P2P_PCI_* @flags given (e.g. without P2P_PCI_PREFAULT: fresh VRAM). */
int cli_gpu_create_flags(const char *bdf, uint64_t vram, struct p2p_pci_devset *set,
			 uint32_t group, uint32_t flags, struct p2p_pci_dev **pci,
			 struct p2p_vfio_device **vdev);
/* Flip COMMAND.MEM through the config region. */
int cli_mem_enable(struct p2p_vfio_device *vdev, bool on);
/* Parse "256M", "1G", "4096" ... ; 0 on error. */
uint64_t cli_parse_size(const char *s);

int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_serve(int argc, char **argv);
/* libp2pbuf-preload.so as `p2pbuf exec` finds it: 0, or -errno. */
int cli_find_preload(char *out, size_t len);

/* Benchmarks living in their own files (tools/bench_*.c). */
int bench_io(const struct bench_opts *o);
int bench_iova(const struct bench_opts *o);
int bench_heap(const struct bench_opts *o);
int bench_storage(const struct bench_opts *o);
int bench_preload(const struct bench_opts *o);
int bench_vfio_user(const struct bench_opts *o);
/* The hidden `p2pbuf bench-vfio-user-worker` mode (tools/bench_vfio_user.c). */
int cmd_bench_vfio_user_worker(int argc, char **argv);
/* The hidden `p2pbuf bench-preload-worker` mode (tools/bench_preload.c). */
int cmd_bench_preload_worker(int argc, char **argv);

#endif
