/* Iothreads: a named thread that does nothing but run its own event loop. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/event.h"
#include "kickvm/log.h"

struct iothread {
	char *name;
	struct event_loop *loop;
	pthread_t thread;
	sem_t started;
};

/* Runs as the loop's first deferred call, i.e. once the thread holds the loop. */
static void iothread_started(void *opaque)
{
	struct iothread *it = opaque;

	sem_post(&it->started);
}

static void *iothread_main(void *opaque)
{
	struct iothread *it = opaque;
	char comm[16]; /* the kernel keeps 15 characters and a NUL */

	snprintf(comm, sizeof(comm), "%s", it->name);
	pthread_setname_np(pthread_self(), comm);
	event_loop_run(it->loop);
	return NULL;
}

int iothread_new(const char *name, struct iothread **out)
{
	struct iothread *it;
	sigset_t all, old;
	int r;

	*out = NULL;
	if (!name || !*name)
		return -EINVAL;
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->name = strdup(name);
	it->loop = it->name ? event_loop_new(name) : NULL;
	if (it->loop)
		event_loop_set_poll_ns(it->loop, IOTHREAD_POLL_NS);
	if (!it->loop) {
		r = -ENOMEM;
		goto fail;
	}
	sem_init(&it->started, 0, 0);
	r = event_loop_call(it->loop, iothread_started, it);
	if (r < 0)
		goto fail_sem;

	/*
	 * Process signals (SIGINT, vCPU kicks) belong to the main and vCPU
	 * threads; the new thread inherits this mask.  Faults stay unblocked so
	 * a crash in a handler is reported as one.
	 */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGABRT);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&it->thread, NULL, iothread_main, it);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		log_warn(name, "cannot create iothread: %s", strerror(-r));
		goto fail_sem;
	}
	/*
	 * Return only once the thread holds its loop: from then on every
	 * set_fd_handler/call_sync from elsewhere is handed to that thread.
	 */
	while (sem_wait(&it->started) < 0 && errno == EINTR)
		;
	*out = it;
	return 0;

fail_sem:
	sem_destroy(&it->started);
fail:
	event_loop_free(it->loop);
	free(it->name);
	free(it);
	return r;
}

void iothread_free(struct iothread *it)
{
	if (!it)
		return;
	event_loop_stop(it->loop);
	pthread_join(it->thread, NULL);
	event_loop_free(it->loop);
	sem_destroy(&it->started);
	free(it->name);
	free(it);
}

struct event_loop *iothread_loop(struct iothread *it)
{
	return it->loop;
}

const char *iothread_name(const struct iothread *it)
{
	return it->name;
}
