// SPDX-License-Identifier: MIT
/*
 * Device copies that survive memory vanishing under them.
 *
 * The kernel pins the pages of process memory and of memfds mapped into an
 * IOAS, so a program that truncates the memfd (or the file behind mapped
 * process memory) only orphans them.  p2pbuf cannot pin pages: its devices
 * reach that memory through a shared mapping, and after ftruncate(2) an
 * access to the lost part raises SIGBUS.  A device must not kill the
 * program for it: dma_copy() turns such a fault into -EFAULT, which the
 * device reports as a translation fault.
 *
 * How: a recovery point (sigsetjmp without the signal mask, a few
 * nanoseconds) is armed in a thread-local pointer for exactly the duration
 * of the copy, together with the two address ranges the copy touches.  The
 * SIGBUS handler, installed once when the first IOAS area over process
 * memory or a memfd is created, jumps back (restoring the signal mask of
 * the interrupted context) only for a fault (si_code > 0)
 * inside those ranges on the thread that armed them; every other SIGBUS -
 * the program's own, a sent one, a revoked p2pbuf CPU mapping - goes to
 * the handler that was installed before ours, with that handler's signal
 * mask and flags, or gets the default action.  The handler runs with
 * SA_NODEFER and an empty mask and restores the interrupted context's
 * mask before it jumps, so the thread's mask is as it was at the fault.
 * Nothing here takes a lock or allocates.
 *
 * Limits: a program that installs its own SIGBUS handler later must chain
 * to the previous one (what it got back from sigaction()) for faults that
 * are not its own, as every library-level handler expects; SIGSEGV (process
 * memory unmapped while still mapped in an IOAS) is not caught; a SIGBUS
 * raised while it is blocked is fatal, so the devices' worker threads
 * unblock it (dma_guard_thread()), but a program thread that calls
 * p2p_ioas_access_rw() with SIGBUS blocked is not protected.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>

#include "private.h"

struct fault_guard {
	sigjmp_buf env;
	uintptr_t lo[2], hi[2];
	struct fault_guard *prev;
};

static __thread struct fault_guard *volatile cur_guard;
static struct sigaction prev_bus;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static int guard_err;

static bool guard_hit(const struct fault_guard *g, uintptr_t a)
{
	return (a >= g->lo[0] && a < g->hi[0]) || (a >= g->lo[1] && a < g->hi[1]);
}

/* Not ours: what would have happened without p2pbuf's handler. */
static void chain(int sig, siginfo_t *si, void *uc)
{
	struct sigaction p = prev_bus;
	sigset_t mask, old;

	if ((p.sa_flags & SA_SIGINFO) || (p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN)) {
		mask = p.sa_mask;
		if (!(p.sa_flags & SA_NODEFER))
			sigaddset(&mask, sig);
		if (p.sa_flags & SA_RESETHAND) {
			prev_bus.sa_handler = SIG_DFL;
			prev_bus.sa_flags = 0;
		}
		pthread_sigmask(SIG_BLOCK, &mask, &old);
		if (p.sa_flags & SA_SIGINFO)
			p.sa_sigaction(sig, si, uc);
		else
			p.sa_handler(sig);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return;
	}
	/* A sent signal that was ignored stays ignored. */
	if (p.sa_handler == SIG_IGN && si->si_code <= 0)
		return;
	/*
	 * The default action (a fault cannot be ignored: the kernel forces
	 * it).  A fault re-executes the access and dies at the right address;
	 * a sent signal is raised again.
	 */
	signal(sig, SIG_DFL);
	if (si->si_code <= 0)
		raise(sig);
}

static void guard_handler(int sig, siginfo_t *si, void *uc)
{
	struct fault_guard *g = cur_guard;

	if (g && si->si_code > 0 && guard_hit(g, (uintptr_t)si->si_addr)) {
		cur_guard = g->prev;
		/*
		 * Leave with the mask the thread had at the fault, as a return
		 * from the handler would (sigreturn restores uc_sigmask): with
		 * SA_NODEFER that is already the case, but a runtime that wraps
		 * handlers (TSan) may run us with more blocked, and a SIGBUS
		 * left blocked would make the next fault fatal.
		 */
		pthread_sigmask(SIG_SETMASK, &((ucontext_t *)uc)->uc_sigmask, NULL);
		siglongjmp(g->env, 1);
	}
	chain(sig, si, uc);
}

static void guard_install(void)
{
	struct sigaction sa = { .sa_sigaction = guard_handler }, old;

	if (sigaction(SIGBUS, NULL, &old)) {
		guard_err = -errno;
		return;
	}
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | (old.sa_flags & (SA_ONSTACK | SA_RESTART));
	if (sigaction(SIGBUS, &sa, &prev_bus)) {
		guard_err = -errno;
		pr_err("fault guard: cannot install a SIGBUS handler: %s", strerror(errno));
	}
}

/*
 * A SIGBUS raised while it is blocked is fatal whatever the handler, so a
 * device's worker thread, which inherits the mask of whoever created the
 * device, unblocks it for itself.
 */
void dma_guard_thread(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

int dma_guard_init(void)
{
	pthread_once(&guard_once, guard_install);
	return guard_err;
}

int dma_copy(void *dst, const void *src, size_t n, bool guard)
{
	struct fault_guard g;

	if (!guard || !n) {
		memmove(dst, src, n);
		return 0;
	}
	g.lo[0] = (uintptr_t)dst;
	g.hi[0] = (uintptr_t)dst + n;
	g.lo[1] = (uintptr_t)src;
	g.hi[1] = (uintptr_t)src + n;
	g.prev = cur_guard;
	if (sigsetjmp(g.env, 0))
		return -EFAULT; /* the handler restored cur_guard */
	cur_guard = &g;
	atomic_signal_fence(memory_order_seq_cst);
	memmove(dst, src, n);
	atomic_signal_fence(memory_order_seq_cst);
	cur_guard = g.prev;
	return 0;
}
