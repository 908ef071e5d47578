/* SPDX-License-Identifier: MIT */
/*
 * A configured device (struct door_dev, config.h) made real: the one place
 * that turns a configuration line into a p2pbuf PCI function, shared by the
 * door (door.c) and the tools (`p2pbuf serve`).
 */
#ifndef P2PBUF_DOOR_DEVICE_H
#define P2PBUF_DOOR_DEVICE_H

#include <stdint.h>

#include "config.h"

struct p2p_pci_dev;

/* The P2P_BAR_* flags of DOOR_BAR_* @door_flags. */
uint32_t door_pci_bar_flags(uint32_t door_flags);

/**
 * door_dev_create() - create the function @d describes
 * @out: a reference (p2p_pci_dev_put())
 *
 * A GPU line: p2p_pci_dev_create() with its identity, BARs and flags; a
 * copy engine: p2p_copy_engine_create(); a storage device:
 * p2p_storage_create() on its image (or a temporary one of its size).
 * Return: 0 or the creator's -errno.
 */
int door_dev_create(const struct door_dev *d, struct p2p_pci_dev **out);

/*
 * door_tree_remove() - remove a door tree (the preload library's own, or
 * one p2pbuf exec finds left by a process that is gone), depth first,
 * without following its symlinks.
 */
void door_tree_remove(const char *top);

#endif
