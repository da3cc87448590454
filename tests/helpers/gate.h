/*
 * A gate for a hook that must block until the test lets it go (a device
 * draining slow requests, say), and for the test to wait, synchronised, for
 * what another thread manages meanwhile.  The wait for that thread has the
 * NEVER_MS bound only so that a bug fails the test instead of hanging it:
 * no assertion is about time.  Header-only, like wait_until.h.
 */
#ifndef KICKVM_TEST_GATE_H
#define KICKVM_TEST_GATE_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "wait_until.h"

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool inside;       /* a hook waits at the gate */
	bool open;
};

static inline void gate_init(struct gate *g)
{
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->inside = g->open = false;
}

static inline void gate_destroy(struct gate *g)
{
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
}

/* In the hook: say so, then wait until the gate opens. */
static inline void gate_pass(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->inside = true;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	g->inside = false;
	pthread_mutex_unlock(&g->lock);
}

/* The test: until a hook waits at the gate. */
static inline void gate_wait_inside(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	while (!g->inside)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

/* Another thread: *@flag = true, seen by gate_open_after(). */
static inline void gate_set(struct gate *g, bool *flag)
{
	pthread_mutex_lock(&g->lock);
	*flag = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* The test: wait for *@flag, then open the gate.  True when *@flag was set
 * while the hook still waited at the gate. */
static inline bool gate_open_after(struct gate *g, bool *flag)
{
	struct timespec deadline;
	bool while_inside;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += NEVER_MS / 1000;
	pthread_mutex_lock(&g->lock);
	while (!*flag && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&g->cond, &g->lock, &deadline);
	while_inside = *flag && g->inside;
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	return while_inside;
}

/*
 * The whole dance: run @blocked(@arg) on a thread until its hook waits at
 * @g, then @bystander(@arg) on another, which ends with gate_set(@g, @done);
 * open the gate after it and join both.  True when the bystander was done
 * while the hook still waited.
 */
static inline bool gate_bystander_finishes(struct gate *g, void *(*blocked)(void *),
					   void *(*bystander)(void *), void *arg, bool *done)
{
	pthread_t blocked_thread, bystander_thread;
	bool while_inside;

	if (pthread_create(&blocked_thread, NULL, blocked, arg) != 0)
		return false;
	gate_wait_inside(g);
	if (pthread_create(&bystander_thread, NULL, bystander, arg) != 0) {
		pthread_mutex_lock(&g->lock);
		g->open = true;
		pthread_cond_broadcast(&g->cond);
		pthread_mutex_unlock(&g->lock);
		pthread_join(blocked_thread, NULL);
		return false;
	}
	while_inside = gate_open_after(g, done);
	pthread_join(blocked_thread, NULL);
	pthread_join(bystander_thread, NULL);
	return while_inside;
}

#endif
