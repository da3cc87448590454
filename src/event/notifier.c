/* Event notifiers: an eventfd and the counters that say which path signalled it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kickvm/event.h"
#include "kickvm/sandbox.h"

struct event_fd {
	_Atomic unsigned refs;
	int fd;
};

int event_notifier_init(struct event_notifier *e, bool active)
{
	e->file = malloc(sizeof(*e->file));
	if (!e->file) {
		e->fd = -1;
		return -ENOMEM;
	}
	e->fd = eventfd(active ? 1 : 0, EFD_NONBLOCK | EFD_CLOEXEC);
	atomic_store(&e->consumed, 0);
	atomic_store(&e->fallback_signals, 0);
	if (e->fd < 0) {
		int err = errno;

		free(e->file);
		e->file = NULL;
		return -err;
	}
	atomic_init(&e->file->refs, 1);
	e->file->fd = e->fd;
	return 0;
}

struct event_fd *event_notifier_ref_fd(struct event_notifier *e)
{
	if (e->fd < 0 || !e->file)
		return NULL;
	atomic_fetch_add_explicit(&e->file->refs, 1, memory_order_relaxed);
	return e->file;
}

void event_fd_unref(struct event_fd *f)
{
	if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
		return;
	close(f->fd);
	free(f);
}

void event_notifier_cleanup(struct event_notifier *e)
{
	if (e->fd < 0)
		return;
	/* A notifier somebody filled in by hand has no holder: close it. */
	if (e->file)
		event_fd_unref(e->file);
	else
		close(e->fd);
	e->fd = -1;
	e->file = NULL;
}

static int eventfd_add_one(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) != sizeof(one))
		return errno == EAGAIN ? 0 : -errno; /* EAGAIN: counter saturated, still signalled */
	return 0;
}

int event_notifier_set(struct event_notifier *e)
{
	return eventfd_add_one(e->fd);
}

int event_notifier_signal_fallback(struct event_notifier *e)
{
	return event_notifier_signal_fallback_via(e, NULL);
}

int event_notifier_signal_fallback_via(struct event_notifier *e, struct event_fd *f)
{
	atomic_fetch_add(&e->fallback_signals, 1);
	return eventfd_add_one(f ? f->fd : e->fd);
}

uint64_t event_notifier_test_and_clear(struct event_notifier *e)
{
	uint64_t value;

	if (read(e->fd, &value, sizeof(value)) != sizeof(value))
		return 0;
	atomic_fetch_add(&e->consumed, value);
	return value;
}

uint64_t event_notifier_pending(const struct event_notifier *e)
{
	char path[64], line[128];
	uint64_t count = 0;
	FILE *f;

	/* Only /proc shows the counter without consuming it, and a sandboxed
	 * thread (a monitor's live query on the main loop) may not open it:
	 * there, signals the handler has not taken yet are left out. */
	if (e->fd < 0 || sandbox_thread_filtered())
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", e->fd);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		/* The kernel prints the counter in hex: "eventfd-count:  1f". */
		if (sscanf(line, "eventfd-count: %" SCNx64, &count) == 1)
			break;
	}
	fclose(f);
	return count;
}

uint64_t event_notifier_total(const struct event_notifier *e)
{
	return atomic_load(&e->consumed) + event_notifier_pending(e);
}
