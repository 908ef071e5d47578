/* SPDX-License-Identifier: MIT */
/*
 * Debug views of an IO address space, for tests and fuzz targets only.
 * Not exported from the shared library (hidden, outside the version
 * script's p2p_* pattern): link the static library to use them.
 */
#ifndef P2PBUF_IOAS_DEBUG_H
#define P2PBUF_IOAS_DEBUG_H

#include <stdint.h>

#include <p2pbuf/iommu.h>

/**
 * ioas_check_invariants() - check an IOAS's internal consistency
 * @ioas: the IOAS (takes its lock for read)
 * @why: on failure, a static description of the first broken invariant
 *
 * Areas are non-empty, do not wrap, are sorted and do not overlap; the
 * search keys mirror them; each area lies inside its backing pages object
 * and has a protection; the IO page table agrees with the areas (a block
 * or page entry names a listed area that covers the whole entry, an empty
 * entry covers no area).
 *
 * Return: 0, or -EUCLEAN with *@why set.
 */
int ioas_check_invariants(struct p2p_ioas *ioas, const char **why);

/**
 * ioas_debug_walk() - call @fn for every area, in IOVA order
 * @fn: gets the area's IOVA, length, IOMMU_IOAS_MAP_READABLE/WRITEABLE,
 *	the host address of its first byte when its backing is contiguous
 *	(process memory, memfd, single-range dma-buf; else NULL), and
 *	whether it is a dma-buf area.  Called with the IOAS lock held for
 *	read: @fn must not call into the IOAS.
 */
void ioas_debug_walk(struct p2p_ioas *ioas,
		     void (*fn)(void *priv, uint64_t iova, uint64_t length, uint32_t prot,
				uint8_t *host, int is_dmabuf),
		     void *priv);

#endif
