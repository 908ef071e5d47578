/* SPDX-License-Identifier: MIT */
/*
 * The kernel-uAPI door (libp2pbuf-preload.so): internals shared by
 * door.c (devices, the generated /sys and /dev tree, path mapping) and
 * preload.c (the libc wrappers).  docs/door.md tells the whole story.
 */
#ifndef P2PBUF_DOOR_H
#define P2PBUF_DOOR_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* What a path names, once door_map_path() has looked at it. */
enum door_node {
	DOOR_NOT_MINE,		/* pass through untouched */
	DOOR_TREE,		/* a file, directory or link of the generated tree */
	DOOR_VFIO_CONTAINER,	/* /dev/vfio/vfio */
	DOOR_VFIO_GROUP,	/* /dev/vfio/N */
	DOOR_VFIO_CDEV,		/* /dev/vfio/devices/vfioN */
	DOOR_IOMMUFD,		/* /dev/iommu */
	DOOR_DMA_HEAP,		/* /dev/dma_heap/NAME */
	DOOR_PCI_CONFIG,	/* /sys/bus/pci/devices/BDF/config (live snapshot) */
	DOOR_BUFINFO,		/* /sys/kernel/debug/dma_buf/bufinfo */
};

struct door_target {
	enum door_node node;
	unsigned int num;	/* group, cdev index, or device slot (PCI_CONFIG) */
	char name[NAME_MAX + 1];/* heap name */
	char path[PATH_MAX];	/* the path in the generated tree */
};

/*
 * door_might_be_mine() - the fast filter: can @path be a door path at all?
 * A few byte compares; false for every path not starting "/dev/", "/sys/",
 * "//" or "/." (the last two may normalise to a door path: "//dev/iommu").
 */
static inline bool door_might_be_mine(const char *path)
{
	return path && path[0] == '/' &&
	       ((path[1] == 'd' && path[2] == 'e' && path[3] == 'v' && path[4] == '/') ||
		(path[1] == 's' && path[2] == 'y' && path[3] == 's' && path[4] == '/') ||
		path[1] == '/' || path[1] == '.');
}

/*
 * door_active - has this process mapped a door path yet?  Set before the
 * devices are created (door_map_path()), so no p2pbuf file exists while it
 * is false: the fd wrappers then pass every fd through without asking the
 * file layer (docs/door.md, "Fast not mine").  Inherited by fork; an
 * exec'd program starts with it false and, as documented, no p2pbuf file.
 */
extern atomic_bool door_active;

/*
 * door_map_path() - is @path one of the door's, and what is it?
 * Creates the devices and the tree on the first door path (door_init()).
 * "//", "." and ".." are resolved lexically first (docs/door.md, "Paths"):
 * /dev/vfio/../vfio/vfio is the container.  A path that names a door
 * directory but normalises to one outside the door (/dev/vfio/../null) is
 * DOOR_TREE with @t->path the normalised host path.
 * Return: DOOR_NOT_MINE, or the node with @t filled.  If the door could
 * not start, its paths are DOOR_NOT_MINE (the host answers: ENOENT).
 */
enum door_node door_map_path(const char *path, struct door_target *t);

/*
 * door_node_target() - @t for device node @node (group or cdev number @num,
 * heap @name), as door_map_path() fills it for the node's path: what
 * fstat(2) of an fd opened there describes.  False if the door has no tree.
 */
bool door_node_target(enum door_node node, unsigned int num, const char *name,
		      struct door_target *t);

/* door_init() - create the devices and the tree once; 0 or -errno. */
int door_init(void);

/*
 * door_tree_generate() - generate another copy of the tree (for tests:
 * tests/fail-nth.c) for the devices door_init() made, in a new directory
 * DIR/p2pbuf-door-PID-XXXXXX written to @top (PATH_MAX bytes); DIR is
 * $P2PBUF_DOOR_TMPDIR (set by `p2pbuf exec`, which removes what is left
 * there when PROGRAM ends), else $TMPDIR, else /tmp.
 * Return: 0, or -errno with nothing left behind.
 * door_tree_delete() - remove such a copy.
 */
int door_tree_generate(char *top);
void door_tree_delete(const char *top);
/*
 * door_release() - for tests: remove the tree and put the devices (their
 * fds must be closed); afterwards no path is the door's.
 */
void door_release(void);

/* Open a constructor node or a snapshot file: an fd, or -errno. */
int door_open_node(const struct door_target *t, int flags);

/* The device nodes' identity for stat(2): char device numbers. */
bool door_node_rdev(const struct door_target *t, unsigned int *major, unsigned int *minor);

/* The generated tree's root, and its length (for realpath()). */
const char *door_root(size_t *len);

/* Write one line on stderr, "p2pbuf door: ...". */
void door_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The configuration, loaded by the library constructor (exits 2 if bad). */
void door_load_config(void);

#endif
