/*
 * The event loop: epoll for fds and notifiers, a FIFO of deferred calls woken
 * through an internal eventfd, and timers carried by the epoll_wait timeout.
 *
 * Ownership.  Exactly one thread at a time "holds" a loop:
 *  - the thread inside event_loop_run() or event_loop_run_once() (running), or
 *  - a thread inside event_loop_call_sync() on a loop nobody holds (brief):
 *    it runs the call itself, since there is no loop thread to hand it to.
 * Only the holder touches the handler list, so the list needs no lock; the
 * holder's tid is what event_loop_in_thread() compares against.  Everything
 * another thread may touch (holder, call queue, timers) is under loop->lock.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "kickvm/event.h"
#include "kickvm/log.h"

#define MAX_EVENTS 64

struct handler {
	struct handler *next;
	int fd;
	struct event_notifier *notifier; /* NULL for a plain fd handler */
	event_fn *on_read, *on_write;
	notifier_fn *on_notify;
	void *opaque;
	/* Removed while an epoll batch may still point at it: skip, free later. */
	bool deleted;
};

struct call {
	struct call *next;
	event_fn *fn;
	void *opaque;
	bool sync;  /* lives on the waiter's stack; set done instead of free */
	bool done;
};

struct timer {
	struct timer *next;          /* in loop->timers, sorted by deadline */
	struct event_loop *loop;
	event_fn *cb;
	void *opaque;
	uint64_t deadline;
	uint64_t armed_pass;         /* loop->timer_pass when last armed */
	bool armed;
};

struct event_loop {
	char *name;
	int epfd;
	struct event_notifier wake;  /* kicked by event_loop_call/stop */
	struct handler wake_handler; /* epoll cookie for @wake, not in the list */

	pthread_mutex_t lock;        /* holder fields, call queue, timers */
	pthread_cond_t cond;         /* holder released, or a sync call done */
	_Atomic pid_t holder_tid;    /* 0 when nobody holds the loop */
	bool holder_running;         /* holder is run/run_once, not call_sync */
	unsigned hold_depth;         /* holder thread only */

	/* Holder thread only. */
	unsigned dispatch_depth;
	struct handler *handlers;
	struct handler *zombies;     /* deleted during a dispatch */

	struct call *calls, **calls_tail;
	unsigned ncalls;
	struct timer *timers;
	uint64_t timer_pass;

	/* Holder thread only (changed through call_sync). */
	struct poller { struct event_poller ops; void *opaque; } *pollers;
	unsigned nr_pollers;
	bool polling;                /* begin hooks ran, end hooks due */
	unsigned polls_skipping_fds; /* progress by polling in a row, fds unchecked */
	_Atomic uint64_t poll_ns;

	atomic_bool stop;
};

static _Thread_local pid_t cached_tid;

static pid_t self_tid(void)
{
	if (!cached_tid)
		cached_tid = gettid();
	return cached_tid;
}

uint64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct event_loop *event_loop_new(const char *name)
{
	struct event_loop *loop = calloc(1, sizeof(*loop));
	struct epoll_event ev = { .events = EPOLLIN };
	int r;

	if (!loop)
		return NULL;
	loop->wake.fd = -1;
	loop->name = strdup(name ? name : "loop");
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!loop->name || loop->epfd < 0) {
		log_warn(name, "cannot create event loop: %s", strerror(errno));
		goto fail;
	}
	r = event_notifier_init(&loop->wake, false);
	if (r < 0) {
		log_warn(name, "cannot create wake-up eventfd: %s", strerror(-r));
		goto fail;
	}
	loop->wake_handler.fd = loop->wake.fd;
	ev.data.ptr = &loop->wake_handler;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake.fd, &ev) < 0) {
		log_warn(name, "cannot watch wake-up eventfd: %s", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&loop->lock, NULL);
	pthread_cond_init(&loop->cond, NULL);
	loop->calls_tail = &loop->calls;
	return loop;

fail:
	event_notifier_cleanup(&loop->wake);
	if (loop->epfd >= 0)
		close(loop->epfd);
	free(loop->name);
	free(loop);
	return NULL;
}

static void free_handler_list(struct handler *h)
{
	while (h) {
		struct handler *next = h->next;

		free(h);
		h = next;
	}
}

void event_loop_free(struct event_loop *loop)
{
	if (!loop)
		return;
	free_handler_list(loop->handlers);
	free_handler_list(loop->zombies);
	/* Only async calls can be left: a sync caller would still be waiting. */
	while (loop->calls) {
		struct call *c = loop->calls;

		loop->calls = c->next;
		if (!c->sync)
			free(c);
	}
	/* Timers lock their loop, so their owners must free them first. */
	if (loop->timers)
		log_warn(loop->name, "event loop freed with timers still armed");
	close(loop->epfd);
	event_notifier_cleanup(&loop->wake);
	pthread_cond_destroy(&loop->cond);
	pthread_mutex_destroy(&loop->lock);
	free(loop->pollers);
	free(loop->name);
	free(loop);
}

const char *event_loop_name(const struct event_loop *loop)
{
	return loop->name;
}

bool event_loop_in_thread(const struct event_loop *loop)
{
	/* Only the holder stores its own tid, so no other thread can match. */
	return atomic_load(&loop->holder_tid) == self_tid();
}

static void kick(struct event_loop *loop)
{
	event_notifier_set(&loop->wake);
}

/* ---- holding the loop ------------------------------------------------------ */

/* Called with loop->lock held; returns NULL when no sync call is queued. */
static struct call *take_sync_call(struct event_loop *loop)
{
	for (struct call **p = &loop->calls; *p; p = &(*p)->next) {
		struct call *c = *p;

		if (!c->sync)
			continue;
		*p = c->next;
		if (!*p)
			loop->calls_tail = p;
		loop->ncalls--;
		return c;
	}
	return NULL;
}

/* Called with loop->lock held and nobody holding the loop. */
static void become_holder(struct event_loop *loop, bool running)
{
	atomic_store(&loop->holder_tid, self_tid());
	loop->holder_running = running;
	loop->hold_depth = 1;
}

/* Called with loop->lock held, after running @c. */
static void finish_call(struct event_loop *loop, struct call *c)
{
	if (c->sync) {
		c->done = true; /* the waiter may return and pop @c at once */
		pthread_cond_broadcast(&loop->cond);
	} else {
		free(c);
	}
}

/* Become the running holder (or nest), for run/run_once. */
static int hold_for_run(struct event_loop *loop)
{
	int r = 0;

	if (event_loop_in_thread(loop)) {
		loop->hold_depth++;
		return 0;
	}
	pthread_mutex_lock(&loop->lock);
	/* A brief holder is done soon; a running one may never be. */
	while (atomic_load(&loop->holder_tid) && !loop->holder_running)
		pthread_cond_wait(&loop->cond, &loop->lock);
	if (atomic_load(&loop->holder_tid))
		r = -EBUSY;
	else
		become_holder(loop, true);
	pthread_mutex_unlock(&loop->lock);
	return r;
}

static void release(struct event_loop *loop)
{
	struct call *c;

	if (--loop->hold_depth > 0)
		return;
	pthread_mutex_lock(&loop->lock);
	/*
	 * A call_sync caller that queued while we held the loop waits for us:
	 * once we let go nobody may run the loop again, so run its call now.
	 * Async calls stay queued for whoever runs the loop next.
	 */
	while ((c = take_sync_call(loop))) {
		pthread_mutex_unlock(&loop->lock);
		c->fn(c->opaque);
		pthread_mutex_lock(&loop->lock);
		finish_call(loop, c);
	}
	atomic_store(&loop->holder_tid, 0);
	loop->holder_running = false;
	pthread_cond_broadcast(&loop->cond);
	pthread_mutex_unlock(&loop->lock);
}

/* ---- deferred calls -------------------------------------------------------- */

static void enqueue(struct event_loop *loop, struct call *c)
{
	c->next = NULL;
	*loop->calls_tail = c;
	loop->calls_tail = &c->next;
	loop->ncalls++;
}

int event_loop_call(struct event_loop *loop, event_fn *fn, void *opaque)
{
	struct call *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->opaque = opaque;
	pthread_mutex_lock(&loop->lock);
	enqueue(loop, c);
	pthread_mutex_unlock(&loop->lock);
	kick(loop);
	return 0;
}

int event_loop_call_sync(struct event_loop *loop, event_fn *fn, void *opaque)
{
	struct call c = { .fn = fn, .opaque = opaque, .sync = true };

	if (event_loop_in_thread(loop)) {
		fn(opaque);
		return 0;
	}
	pthread_mutex_lock(&loop->lock);
	if (!atomic_load(&loop->holder_tid)) {
		/* Nobody runs the loop: hold it ourselves so no handler runs meanwhile. */
		become_holder(loop, false);
		pthread_mutex_unlock(&loop->lock);
		fn(opaque);
		release(loop);
		return 0;
	}
	enqueue(loop, &c);
	kick(loop);
	while (!c.done)
		pthread_cond_wait(&loop->cond, &loop->lock);
	pthread_mutex_unlock(&loop->lock);
	return 0;
}

/* Run the calls queued so far, one at a time so nested runs keep FIFO order. */
static int run_calls(struct event_loop *loop)
{
	unsigned budget;
	int n = 0;

	pthread_mutex_lock(&loop->lock);
	/* Calls queued by these calls wait for the next round: no starvation. */
	budget = loop->ncalls;
	while (budget-- && loop->calls) {
		struct call *c = loop->calls;

		loop->calls = c->next;
		if (!loop->calls)
			loop->calls_tail = &loop->calls;
		loop->ncalls--;
		pthread_mutex_unlock(&loop->lock);
		c->fn(c->opaque);
		n++;
		pthread_mutex_lock(&loop->lock);
		finish_call(loop, c);
	}
	pthread_mutex_unlock(&loop->lock);
	return n;
}

/* ---- fd and notifier handlers ---------------------------------------------- */

struct set_args {
	struct event_loop *loop;
	struct handler want;
	int ret;
};

static struct handler *find_handler(struct event_loop *loop, int fd,
				    struct event_notifier *e)
{
	for (struct handler *h = loop->handlers; h; h = h->next) {
		/* Notifiers go by identity: their fd may already be closed. */
		if (e ? h->notifier == e : (!h->notifier && h->fd == fd))
			return h;
	}
	return NULL;
}

static void remove_handler(struct event_loop *loop, struct handler *h)
{
	struct handler **p = &loop->handlers;

	/* A cleaned-up notifier's fd left epoll when it was closed. */
	if (!h->notifier || h->notifier->fd == h->fd)
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, h->fd, NULL);
	while (*p != h)
		p = &(*p)->next;
	*p = h->next;
	h->deleted = true;
	if (loop->dispatch_depth) {
		h->next = loop->zombies;
		loop->zombies = h;
	} else {
		free(h);
	}
}

/* Runs while holding the loop (in its thread, or with nobody running it). */
static void do_set_handler(void *opaque)
{
	struct set_args *a = opaque;
	struct handler *want = &a->want;
	struct event_loop *loop = a->loop;
	struct handler *h = find_handler(loop, want->fd, want->notifier);
	struct epoll_event ev = { 0 };
	bool fresh = !h;
	int r;

	a->ret = 0;
	if (!want->on_read && !want->on_write && !want->on_notify) {
		if (h)
			remove_handler(loop, h);
		return;
	}
	if (fresh) {
		h = calloc(1, sizeof(*h));
		if (!h) {
			a->ret = -ENOMEM;
			return;
		}
	}
	ev.events = (want->on_read || want->on_notify ? EPOLLIN : 0) |
		    (want->on_write ? EPOLLOUT : 0);
	ev.data.ptr = h;
	r = epoll_ctl(loop->epfd, fresh ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, want->fd, &ev);
	/* The old fd was closed (its number maybe reused): add afresh. */
	if (r < 0 && !fresh && errno == ENOENT)
		r = epoll_ctl(loop->epfd, EPOLL_CTL_ADD, want->fd, &ev);
	if (r < 0) {
		a->ret = -errno;
		if (fresh)
			free(h);
		else
			remove_handler(loop, h);
		return;
	}
	/* Updated in place: an event already fetched for @h gets the new callbacks. */
	want->next = fresh ? loop->handlers : h->next;
	*h = *want;
	if (fresh)
		loop->handlers = h;
}

int event_loop_set_fd_handler(struct event_loop *loop, int fd,
			      event_fn *on_read, event_fn *on_write, void *opaque)
{
	struct set_args a = {
		.loop = loop,
		.want = { .fd = fd, .on_read = on_read, .on_write = on_write,
			  .opaque = opaque },
	};

	if (fd < 0)
		return -EBADF;
	/* From another thread this waits until the loop thread made the change. */
	event_loop_call_sync(loop, do_set_handler, &a);
	return a.ret;
}

struct poll_args {
	struct event_loop *loop;
	struct poller p;
	int ret;
};

static void do_set_poll(void *opaque)
{
	struct poll_args *a = opaque;
	struct event_loop *loop = a->loop;
	unsigned i;

	for (i = 0; i < loop->nr_pollers && loop->pollers[i].opaque != a->p.opaque; i++)
		;
	if (!a->p.ops.poll) {  /* remove */
		if (i == loop->nr_pollers)
			return;
		/* Leaves with its wake-ups on, and its last work done. */
		if (loop->polling && loop->pollers[i].ops.end &&
		    loop->pollers[i].ops.end(loop->pollers[i].opaque))
			loop->pollers[i].ops.ready(loop->pollers[i].opaque);
		/* ready() may have changed the set: look again. */
		for (i = 0; i < loop->nr_pollers && loop->pollers[i].opaque != a->p.opaque; i++)
			;
		if (i < loop->nr_pollers)
			loop->pollers[i] = loop->pollers[--loop->nr_pollers];
		return;
	}
	if (i == loop->nr_pollers) {
		struct poller *grown = realloc(loop->pollers, (i + 1) * sizeof(*grown));

		if (!grown) {
			a->ret = -ENOMEM;
			return;
		}
		loop->pollers = grown;
		loop->nr_pollers++;
	}
	loop->pollers[i] = a->p;
}

int event_loop_set_poll(struct event_loop *loop, const struct event_poller *p, void *opaque)
{
	struct poll_args a = { .loop = loop, .p = { .opaque = opaque } };

	if (p && (!p->poll || !p->ready))
		return -EINVAL;
	if (p)
		a.p.ops = *p;
	event_loop_call_sync(loop, do_set_poll, &a);
	return a.ret;
}

void event_loop_set_poll_ns(struct event_loop *loop, uint64_t ns)
{
	atomic_store(&loop->poll_ns, ns);
}

uint64_t event_loop_poll_ns(const struct event_loop *loop)
{
	return atomic_load(&loop->poll_ns);
}

int event_loop_set_notifier(struct event_loop *loop, struct event_notifier *e,
			    notifier_fn *handler, void *opaque)
{
	struct set_args a = {
		.loop = loop,
		.want = { .fd = e->fd, .notifier = e, .on_notify = handler,
			  .opaque = opaque },
	};

	if (handler && e->fd < 0)
		return -EBADF;
	event_loop_call_sync(loop, do_set_handler, &a);
	return a.ret;
}

/* ---- timers ---------------------------------------------------------------- */

struct timer *timer_new(struct event_loop *loop, event_fn *cb, void *opaque)
{
	struct timer *t = calloc(1, sizeof(*t));

	if (t) {
		t->loop = loop;
		t->cb = cb;
		t->opaque = opaque;
	}
	return t;
}

/* Called with loop->lock held. */
static void timer_unlink(struct timer *t)
{
	struct timer **p = &t->loop->timers;

	if (!t->armed)
		return;
	while (*p != t)
		p = &(*p)->next;
	*p = t->next;
	t->armed = false;
}

void timer_mod(struct timer *t, uint64_t deadline_ns)
{
	struct event_loop *loop = t->loop;
	struct timer **p;
	bool first;

	pthread_mutex_lock(&loop->lock);
	timer_unlink(t);
	/* After timers with the same deadline: those fire in arming order. */
	for (p = &loop->timers; *p && (*p)->deadline <= deadline_ns; p = &(*p)->next)
		;
	t->next = *p;
	*p = t;
	t->deadline = deadline_ns;
	t->armed = true;
	t->armed_pass = loop->timer_pass;
	first = loop->timers == t;
	pthread_mutex_unlock(&loop->lock);
	/* The loop thread may be asleep with a later timeout in epoll_wait. */
	if (first && !event_loop_in_thread(loop))
		kick(loop);
}

void timer_del(struct timer *t)
{
	pthread_mutex_lock(&t->loop->lock);
	timer_unlink(t);
	pthread_mutex_unlock(&t->loop->lock);
}

void timer_free(struct timer *t)
{
	if (!t)
		return;
	timer_del(t);
	free(t);
}

/* Milliseconds until the first deadline (rounded up, so never early), capped. */
static int wait_ms(struct event_loop *loop, int timeout_ms)
{
	uint64_t now, ms;
	int r = timeout_ms;

	pthread_mutex_lock(&loop->lock);
	if (loop->timers) {
		now = clock_ns();
		ms = loop->timers->deadline <= now ? 0 :
		     (loop->timers->deadline - now + 999999) / 1000000;
		if (ms > INT_MAX)
			ms = INT_MAX;
		if (timeout_ms < 0 || (int)ms < timeout_ms)
			r = (int)ms;
	}
	pthread_mutex_unlock(&loop->lock);
	return r;
}

static int run_timers(struct event_loop *loop)
{
	uint64_t now = clock_ns(), pass;
	int n = 0;

	pthread_mutex_lock(&loop->lock);
	/* A timer re-armed by a callback in this pass waits for the next one,
	 * or timer_mod(t, 0) from its own callback would spin here forever. */
	pass = ++loop->timer_pass;
	for (;;) {
		struct timer *t = loop->timers;
		event_fn *cb;
		void *opaque;

		while (t && t->deadline <= now && t->armed_pass == pass)
			t = t->next;
		if (!t || t->deadline > now)
			break;
		timer_unlink(t);
		cb = t->cb;
		opaque = t->opaque;
		pthread_mutex_unlock(&loop->lock);
		cb(opaque);  /* may free or re-arm @t */
		n++;
		pthread_mutex_lock(&loop->lock);
	}
	pthread_mutex_unlock(&loop->lock);
	return n;
}

/* ---- dispatch -------------------------------------------------------------- */

static int dispatch_one(struct event_loop *loop, struct handler *h, uint32_t ev)
{
	const uint32_t readable = EPOLLIN | EPOLLHUP | EPOLLERR;
	int n = 0;

	if (h == &loop->wake_handler) {
		event_notifier_test_and_clear(&loop->wake);
		return run_calls(loop);
	}
	if (h->deleted)
		return 0;
	if (h->notifier) {
		/* The handler clears the notifier: it wants the count it consumed. */
		if (ev & readable) {
			h->on_notify(h->notifier, h->opaque);
			n++;
		}
		return n;
	}
	if ((ev & readable) && h->on_read) {
		h->on_read(h->opaque);
		n++;
	}
	/* on_read may have removed or replaced this handler. */
	if (h->deleted || !h->on_write)
		return n;
	/* Without a read handler nobody else would clear a hang-up: avoid a spin. */
	if ((ev & (EPOLLOUT | EPOLLERR)) || ((ev & EPOLLHUP) && !h->on_read)) {
		h->on_write(h->opaque);
		n++;
	}
	return n;
}

/* Spinning starts: let every poller switch off the wake-ups it makes
 * needless (event.h).  They stay off while polling keeps finding work. */
static void begin_polling(struct event_loop *loop)
{
	if (loop->polling)
		return;
	loop->polling = true;
	for (unsigned i = 0; i < loop->nr_pollers; i++)
		if (loop->pollers[i].ops.begin)
			loop->pollers[i].ops.begin(loop->pollers[i].opaque);
}

/* Spinning stops, the loop may sleep: wake-ups on again; what came in
 * meanwhile is work.  Returns how many pollers had some. */
static int end_polling(struct event_loop *loop)
{
	int n = 0;

	if (!loop->polling)
		return 0;
	loop->polling = false;
	for (unsigned i = 0; i < loop->nr_pollers; i++) {
		struct poller p = loop->pollers[i];  /* ready() may change the set */

		if (p.ops.end && p.ops.end(p.opaque)) {
			p.ops.ready(p.opaque);
			n++;
		}
	}
	return n;
}

/* Spin on the pollers for up to the poll window; returns how many had work.
 * Found some: polling goes on (wake-ups stay off) in the next dispatch.
 * Found none: polling ends here, before the caller sleeps. */
static int busy_poll(struct event_loop *loop)
{
	uint64_t window = atomic_load(&loop->poll_ns), start;
	int n = 0;

	if (!window || !loop->nr_pollers)
		return end_polling(loop);
	begin_polling(loop);
	start = clock_ns();
	do {
		for (unsigned i = 0; i < loop->nr_pollers; i++) {
			struct poller p = loop->pollers[i];  /* ready() may change the set */

			if (p.ops.poll(p.opaque)) {
				p.ops.ready(p.opaque);
				n++;
			}
		}
		if (n)
			return n;
		if (atomic_load(&loop->stop))
			break;
		__builtin_ia32_pause();
	} while (clock_ns() - start < window);
	return end_polling(loop);
}

/* While polling keeps finding work, the fds are looked at only every few
 * rounds: an epoll_wait per request would cost as much as the request. */
#define POLLS_BETWEEN_FD_CHECKS 8

static int dispatch(struct event_loop *loop, int timeout_ms)
{
	struct epoll_event events[MAX_EVENTS];
	int nev = 0, n = 0;

	/* Found work by polling: still look at the fds, but do not sleep. */
	if (timeout_ms != 0) {
		loop->dispatch_depth++;
		n = busy_poll(loop);
		loop->dispatch_depth--;
		if (n)
			timeout_ms = 0;
	}
	if (n && loop->polling && ++loop->polls_skipping_fds < POLLS_BETWEEN_FD_CHECKS) {
		/* Polling goes on: the fds can wait a round or two. */
	} else {
		loop->polls_skipping_fds = 0;
		nev = epoll_wait(loop->epfd, events, MAX_EVENTS, wait_ms(loop, timeout_ms));
		if (nev < 0) {
			if (errno != EINTR)
				return -errno;
			nev = 0;
		}
	}
	loop->dispatch_depth++;
	for (int i = 0; i < nev; i++)
		n += dispatch_one(loop, events[i].data.ptr, events[i].events);
	n += run_timers(loop);
	if (--loop->dispatch_depth == 0) {
		free_handler_list(loop->zombies);
		loop->zombies = NULL;
	}
	return n;
}

int event_loop_run_once(struct event_loop *loop, int timeout_ms)
{
	int r = hold_for_run(loop);

	if (r < 0)
		return r;
	r = dispatch(loop, timeout_ms);
	/* Whoever holds the loop next may not poll: leave wake-ups on. */
	if (r >= 0)
		r += end_polling(loop);
	else
		end_polling(loop);
	release(loop);
	return r;
}

int event_loop_run(struct event_loop *loop)
{
	int r = hold_for_run(loop);

	if (r < 0)
		return r;
	/* Consuming the request: a stop made before run starts is not lost. */
	while (!atomic_exchange(&loop->stop, false)) {
		r = dispatch(loop, -1);
		if (r < 0) {
			log_warn(loop->name, "epoll_wait failed: %s", strerror(-r));
			break;
		}
	}
	end_polling(loop);
	release(loop);
	return r < 0 ? r : 0;
}

void event_loop_stop(struct event_loop *loop)
{
	atomic_store(&loop->stop, true);
	kick(loop);
}
