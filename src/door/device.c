// SPDX-License-Identifier: MIT
/*
 * Configured devices made real (device.h): used by the door and by
 * `p2pbuf serve`, so both create exactly the same functions; and the removal
 * of a door tree, shared by the door and `p2pbuf exec`.
 */
#define _GNU_SOURCE /* nftw(), FTW_DEPTH */
#include <p2pbuf/p2pbuf.h>

#include <ftw.h>
#include <stdio.h>
#include <unistd.h>

#include "device.h"

uint32_t door_pci_bar_flags(uint32_t door)
{
	return ((door & DOOR_BAR_MEM64) ? P2P_BAR_MEM64 : 0) |
	       ((door & DOOR_BAR_PREFETCH) ? P2P_BAR_PREFETCH : 0) |
	       ((door & DOOR_BAR_IO) ? P2P_BAR_IO : 0);
}

int door_dev_create(const struct door_dev *d, struct p2p_pci_dev **out)
{
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.name = d->bdf,
		.vendor_id = d->vendor,
		.device_id = d->device,
		.class_code = d->class_code,
		.group = d->group,
	};

	switch (d->kind) {
	case DOOR_COPY_ENGINE:
		return p2p_copy_engine_create(d->bdf, NULL, d->group, out);
	case DOOR_STORAGE:
		return p2p_storage_create(d->bdf, NULL, d->group, d->file, d->file ? 0 : d->size, out);
	case DOOR_GPU:
		break;
	}
	info.flags = ((d->fn_flags & DOOR_FN_VF) ? P2P_PCI_VF : 0) |
		     ((d->fn_flags & DOOR_FN_NO_FLR) ? P2P_PCI_NO_FLR : 0) |
		     ((d->fn_flags & DOOR_FN_NO_DMABUF) ? P2P_PCI_NO_DMABUF : 0) |
		     ((d->fn_flags & DOOR_FN_HUGE) ? P2P_PCI_HUGE : 0) |
		     ((d->fn_flags & DOOR_FN_PREFAULT) ? P2P_PCI_PREFAULT : 0);
	for (int i = 0; i < 6; i++) {
		info.bars[i].size = d->bar_size[i];
		info.bars[i].flags = door_pci_bar_flags(d->bar_flags[i]);
	}
	return p2p_pci_dev_create(&info, out);
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void door_tree_remove(const char *top)
{
	nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
