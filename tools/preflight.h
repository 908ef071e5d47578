/* SPDX-License-Identifier: MIT */
/*
 * What this process may not be allowed to do (typically as a non-root
 * user): probed once, before the work starts, so a command can say up
 * front what it cannot do and why (p2pbuf run, p2pbuf exec).
 */
#ifndef P2PBUF_TOOLS_PREFLIGHT_H
#define P2PBUF_TOOLS_PREFLIGHT_H

#include <stdbool.h>
#include <stdint.h>

struct cli_limits {
	bool no_uffd;		/* revocation remaps to an empty memfd (p2p_cpu_revoke_method()) */
	int unpriv_uffd;	/* vm.unprivileged_userfaultfd, -1 if unreadable */
	int uring_err;		/* io_uring_queue_init(): 0 or -errno */
	int uring_disabled;	/* kernel.io_uring_disabled, -1 if unreadable */
	bool memlock_low;	/* registering @pinned bytes would exceed RLIMIT_MEMLOCK */
	uint64_t memlock_cur;	/* RLIMIT_MEMLOCK's soft limit in bytes */
};

/* Probe the limits; @pinned is the bytes a command registers with io_uring. */
void cli_limits_probe(uint64_t pinned, struct cli_limits *l);
/* Does this process have capability @cap in its effective set? */
bool cli_have_cap(unsigned int cap);

#endif
