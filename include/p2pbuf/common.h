/* SPDX-License-Identifier: MIT */
/*
 * p2pbuf common definitions: export macro, logging, library-wide facts.
 */
#ifndef P2PBUF_COMMON_H
#define P2PBUF_COMMON_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define P2P_API __attribute__((visibility("default")))

#define P2PBUF_VERSION_MAJOR 0
#define P2PBUF_VERSION_MINOR 1

/** Log levels, as syslog's. */
enum p2p_log_level {
	P2P_LOG_ERR = 3,
	P2P_LOG_WARN = 4,
	P2P_LOG_INFO = 6,
	P2P_LOG_DEBUG = 7,
};

/** A log sink: the library never prints by itself. */
typedef void (*p2p_log_fn)(enum p2p_log_level level, const char *fmt, va_list ap);

/**
 * p2p_set_log() - install a log callback (NULL: silence, the default)
 * @fn: the callback; called from any thread, must be thread-safe
 * @max_level: messages above this level are dropped
 */
P2P_API void p2p_set_log(p2p_log_fn fn, enum p2p_log_level max_level);

/**
 * p2p_library_init() - set up process-wide state early (optional)
 *
 * Creates the userfaultfd used for CPU revocation or, where the process may
 * not have one (an unprivileged user with vm.unprivileged_userfaultfd=0),
 * the empty memfd that revoked mappings are remapped to instead (see
 * p2p_cpu_revoke_method()).  Everything calls it lazily; calling it first
 * makes the fd set stable (useful for leak checks).  Idempotent and
 * thread-safe.
 *
 * Return: 0, or -errno if neither can be created (out of fds or memory).
 */
P2P_API int p2p_library_init(void);

/** How revoked CPU mappings are made inaccessible in this process. */
enum p2p_cpu_revoke {
	/* userfaultfd SIGBUS: SIGBUS at the faulting address, VMA unchanged */
	P2P_CPU_REVOKE_UFFD = 1,
	/*
	 * No userfaultfd (or P2PBUF_CPU_REVOKE=remap in the environment): the
	 * range is remapped to an empty memfd: SIGBUS at the faulting address
	 * as well, but /proc/self/maps names "p2pbuf-revoked" while revoked.
	 */
	P2P_CPU_REVOKE_REMAP = 2,
};

/**
 * p2p_cpu_revoke_method() - the means this process revokes CPU mappings with
 *
 * Both give SIGBUS at the exact address on CPU access and keep the data; see
 * p2pbuf(7) "CPU revocation".  Thread-safe.
 *
 * Return: P2P_CPU_REVOKE_UFFD or P2P_CPU_REVOKE_REMAP.
 */
P2P_API enum p2p_cpu_revoke p2p_cpu_revoke_method(void);

/** How p2pbuf populates mappings on this system. */
enum p2p_hugepage_mode {
	P2P_HUGEPAGE_NONE = 0,	 /* shmem THP off: 4 KiB pages, populated in runs */
	P2P_HUGEPAGE_ADVISE = 1, /* shmem THP on request: p2pbuf asks for 2 MiB pages */
	P2P_HUGEPAGE_ALWAYS = 2, /* shmem THP always on */
};

/** p2p_hugepage_mode() - what /sys/kernel/mm/transparent_hugepage/shmem_enabled allows */
P2P_API enum p2p_hugepage_mode p2p_hugepage_mode(void);

/** p2p_strerror() - like strerror() for a -errno return value */
P2P_API const char *p2p_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
