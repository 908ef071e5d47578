// SPDX-License-Identifier: MIT
/*
 * Fences: one-shot completion objects for in-flight work.
 *
 * Locking: fence->lock is a leaf lock protecting only the condition wait.
 */
#define _GNU_SOURCE
#include <time.h>

#include "core.h"

P2P_API int p2p_fence_create(struct p2p_fence **out)
{
	struct p2p_fence *f = calloc(1, sizeof(*f));
	pthread_condattr_t ca;

	if (!f)
		return -ENOMEM;
	kref_init(&f->ref);
	atomic_init(&f->signaled, false);
	pthread_mutex_init(&f->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = f;
	return 0;
}

P2P_API struct p2p_fence *p2p_fence_ref(struct p2p_fence *fence)
{
	kref_get(&fence->ref);
	return fence;
}

P2P_API void p2p_fence_put(struct p2p_fence *fence)
{
	if (!fence || !kref_put(&fence->ref))
		return;
	pthread_mutex_destroy(&fence->lock);
	pthread_cond_destroy(&fence->cond);
	free(fence);
}

P2P_API void p2p_fence_signal(struct p2p_fence *fence)
{
	pthread_mutex_lock(&fence->lock);
	atomic_store_explicit(&fence->signaled, true, memory_order_release);
	pthread_cond_broadcast(&fence->cond);
	pthread_mutex_unlock(&fence->lock);
}

P2P_API bool p2p_fence_is_signaled(const struct p2p_fence *fence)
{
	return atomic_load_explicit(&fence->signaled, memory_order_acquire);
}

P2P_API int p2p_fence_wait(struct p2p_fence *fence, int64_t timeout_ns)
{
	struct timespec ts;
	int ret = 0;

	if (p2p_fence_is_signaled(fence))
		return 0;
	if (timeout_ns >= 0) {
		uint64_t end = p2p_now_ns() + (uint64_t)timeout_ns;

		ts.tv_sec = (time_t)(end / 1000000000ull);
		ts.tv_nsec = (long)(end % 1000000000ull);
	}
	pthread_mutex_lock(&fence->lock);
	while (!atomic_load(&fence->signaled) && !ret) {
		if (timeout_ns < 0)
			pthread_cond_wait(&fence->cond, &fence->lock);
		else if (pthread_cond_timedwait(&fence->cond, &fence->lock, &ts) == ETIMEDOUT)
			ret = atomic_load(&fence->signaled) ? 0 : -ETIME;
	}
	pthread_mutex_unlock(&fence->lock);
	return ret;
}
