// SPDX-License-Identifier: MIT
/* The limits p2pbuf run and p2pbuf exec report at start (preflight.h). */
#define _GNU_SOURCE
#include <liburing.h>
#include <stdio.h>
#include <sys/resource.h>

#include <p2pbuf/p2pbuf.h>

#include "preflight.h"
#include "proc_util.h"

bool cli_have_cap(unsigned int cap)
{
	char line[256];
	unsigned long long eff = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return eff & (1ull << cap);
}

void cli_limits_probe(uint64_t pinned, struct cli_limits *l)
{
	struct io_uring ring;
	struct rlimit rl;

	*l = (struct cli_limits){ .unpriv_uffd = -1, .uring_disabled = -1 };
	l->no_uffd = p2p_cpu_revoke_method() == P2P_CPU_REVOKE_REMAP;
	if (l->no_uffd)
		l->unpriv_uffd = proc_read_int("/proc/sys/vm/unprivileged_userfaultfd");
	l->uring_err = io_uring_queue_init(2, &ring, 0);
	if (l->uring_err < 0) {
		l->uring_disabled = proc_read_int("/proc/sys/kernel/io_uring_disabled");
		return;
	}
	io_uring_queue_exit(&ring);
	/* io_uring accounts registered buffers to RLIMIT_MEMLOCK without CAP_IPC_LOCK. */
	if (!cli_have_cap(14 /* CAP_IPC_LOCK */) && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < pinned) {
		l->memlock_low = true;
		l->memlock_cur = rl.rlim_cur;
	}
}
