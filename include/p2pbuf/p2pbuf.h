/* SPDX-License-Identifier: MIT */
/*
 * p2pbuf: peer-to-peer device memory on Linux, in userspace.
 *
 * Umbrella header.  Naming: every exported symbol is p2p_<object>_<verb>;
 * functions return 0 (or a count, or a new fd) on success and -errno on
 * failure.
 */
#ifndef P2PBUF_P2PBUF_H
#define P2PBUF_P2PBUF_H

#include <p2pbuf/common.h>
#include <p2pbuf/file.h>
#include <p2pbuf/uapi.h>
#include <p2pbuf/dmabuf.h>
#include <p2pbuf/vfio.h>
#include <p2pbuf/iommu.h>
#include <p2pbuf/devices.h>
#include <p2pbuf/heap.h>
#include <p2pbuf/uring.h>
#include <p2pbuf/vfio_user.h>

#endif
