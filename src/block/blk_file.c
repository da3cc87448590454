/*
 * A raw image file (or block device) as a block backend: opening, request
 * validation, the slot pool, and delivering completions in the loop.  The
 * I/O itself is an engine's: io_uring (blk_uring.c) or a thread pool
 * (blk_threads.c).
 *
 * Drain.  In the loop's thread blk_drain() reaps and delivers everything.
 * From another thread it only waits until the kernel and the workers are
 * done with every buffer, reaping io_uring completions itself: it never
 * waits for the loop thread, which may be blocked on a lock the caller holds
 * (a device resetting under its own lock while the loop waits for it).  The
 * done() calls of what it reaped run later in the loop, or in blk_close().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "blk_internal.h"
#include "kickvm/log.h"

#define DEFAULT_DEPTH 128
#define MAX_DEPTH     4096

uint64_t blk_size(const struct blk_backend *b)
{
	return b->size;
}

bool blk_readonly(const struct blk_backend *b)
{
	return b->readonly;
}

const char *blk_aio_name(const struct blk_backend *b)
{
	return b->engine->name;
}

unsigned blk_in_flight(const struct blk_backend *b)
{
	return atomic_load(&b->in_flight);
}

bool blk_inline_io(const struct blk_backend *b)
{
	return b->inline_io;
}

void blk_get_stats(const struct blk_backend *b, struct blk_stats *out)
{
	out->inline_ios = atomic_load(&b->inline_ios);
	out->engine_ios = atomic_load(&b->engine_ios);
}

void blk_slot_finished(struct blk_backend *b, struct blk_slot *s, int ret)
{
	s->ret = ret;
	s->next = NULL;
	*b->reaped_tail = s;
	b->reaped_tail = &s->next;
	b->pending--;
	pthread_cond_broadcast(&b->cond);
}

int blk_zero_chunk(struct blk_backend *b, struct blk_slot *s, const struct iovec **iov,
		   uint64_t *off)
{
	uint64_t left = s->req->len - s->zero_done;

	*off = s->req->offset + s->zero_done;
	if (left >= BLK_ZERO_BUF) {
		/* Whole buffers only: they all view the same shared zeros. */
		uint64_t n = left / BLK_ZERO_BUF;

		*iov = b->zero_iov;
		return n > BLK_ZERO_IOVS ? (int)BLK_ZERO_IOVS : (int)n;
	}
	s->zero_tail.iov_base = b->zero_buf;
	s->zero_tail.iov_len = left;
	*iov = &s->zero_tail;
	return 1;
}

/* Back to the free list. b->lock held. */
static void put_slot(struct blk_backend *b, struct blk_slot *s)
{
	s->req = NULL;
	s->next = b->free_slots;
	b->free_slots = s;
}

/* ---- delivering completions (the loop's thread only) ---------------------- */

/* Reap what is ready (waiting for one if @wait) and run done() for it. */
static void deliver(struct blk_backend *b, bool wait)
{
	struct blk_slot *list;

	pthread_mutex_lock(&b->lock);
	b->engine->reap(b, wait && !b->reaped);
	list = b->reaped;
	b->reaped = NULL;
	b->reaped_tail = &b->reaped;
	pthread_mutex_unlock(&b->lock);

	while (list) {
		struct blk_slot *s = list;
		struct blk_req *req = s->req;
		int ret = s->ret;

		list = s->next;
		/* Free the slot first: done() may submit the next request. */
		pthread_mutex_lock(&b->lock);
		put_slot(b, s);
		pthread_mutex_unlock(&b->lock);
		atomic_fetch_sub(&b->in_flight, 1);
		req->done(req, ret);
	}
}

static void on_done(struct event_notifier *e, void *opaque)
{
	event_notifier_test_and_clear(e);
	deliver(opaque, false);
}

static bool poll_completions(void *opaque)
{
	struct blk_backend *b = opaque;

	/* An unlocked peek: a stale answer costs one spin or one eventfd. */
	return __atomic_load_n(&b->reaped, __ATOMIC_RELAXED) ||
	       (b->engine->ready && b->engine->ready(b));
}

static void poll_ready(void *opaque)
{
	deliver(opaque, false);
}

static void deliver_all(void *opaque)
{
	struct blk_backend *b = opaque;
	bool busy;

	do {
		deliver(b, true);
		pthread_mutex_lock(&b->lock);
		busy = b->pending || b->reaped;
		pthread_mutex_unlock(&b->lock);
	} while (busy);
}

/* Another thread: wait for the I/O, not for done() (see the top). */
static void wait_io(struct blk_backend *b)
{
	bool reaped;

	pthread_mutex_lock(&b->lock);
	while (b->pending)
		b->engine->reap(b, true);
	reaped = b->reaped != NULL;
	pthread_mutex_unlock(&b->lock);
	if (reaped)
		event_notifier_set(&b->done_ev);
}

void blk_drain(struct blk_backend *b)
{
	if (event_loop_in_thread(b->loop))
		deliver_all(b);
	else
		wait_io(b);
}

/* ---- submitting ------------------------------------------------------------ */

static int check_req(struct blk_backend *b, struct blk_req *req, uint64_t *expect)
{
	uint64_t len = 0;

	*expect = 0;
	if (!req->done)
		return -EINVAL;
	switch (req->op) {
	case BLK_READ:
	case BLK_WRITE:
		if (req->iovcnt < 0 || req->iovcnt > IOV_MAX || (req->iovcnt && !req->iov))
			return -EINVAL;
		for (int i = 0; i < req->iovcnt; i++) {
			/* Never more than the file: the sum cannot overflow. */
			if (req->iov[i].iov_len > b->size - len)
				return -EINVAL;
			len += req->iov[i].iov_len;
		}
		*expect = len;
		break;
	case BLK_DISCARD:
	case BLK_WRITE_ZEROES:
		len = req->len;
		if (len == 0)
			return -EINVAL;
		break;
	case BLK_FLUSH:
		return 0;
	default:
		return -EINVAL;
	}
	if (req->op != BLK_READ && b->readonly)
		return -EROFS;
	/* Written so that no sum can overflow. */
	if (req->offset > b->size || len > b->size - req->offset)
		return -EINVAL;
	return 0;
}

/* ---- inline I/O (aio=auto, buffered; block.h) ------------------------------ */

/* @s's read or write done here and now if that is quick (true: it
 * succeeded), or false to leave it to the engine (which does it all again, so a
 * short or failed attempt loses nothing).  b->lock held. */
static bool try_inline(struct blk_backend *b, struct blk_slot *s)
{
	struct blk_req *req = s->req;
	bool write = req->op == BLK_WRITE;
	bool *refused = write ? &b->no_nowait_writes : &b->no_nowait_reads;
	ssize_t n = -1;

	if (!b->inline_io || (req->op != BLK_READ && !write))
		return false;
	if (!*refused) {
		n = write ? pwritev2(b->fd, req->iov, req->iovcnt, (off_t)req->offset, RWF_NOWAIT)
			  : preadv2(b->fd, req->iov, req->iovcnt, (off_t)req->offset, RWF_NOWAIT);
		if (n < 0 && errno == EOPNOTSUPP) {
			*refused = true;
			log_info(b->name, "the file refuses RWF_NOWAIT %s%s", write ? "writes" : "reads",
				 write ? ": small writes are done inline, blocking" : "");
		}
	}
	if (n < 0 && write && b->no_nowait_writes && s->expect <= BLK_INLINE_WRITE_MAX) {
		do
			n = pwritev(b->fd, req->iov, req->iovcnt, (off_t)req->offset);
		while (n < 0 && errno == EINTR);
	}
	return n >= 0 && (uint64_t)n == s->expect;
}

/* An inline completion waits on b->reaped for the loop.  The loop's own
 * busy-polling finds it before the loop sleeps; anyone else wakes it. */
static void wake_loop_for(struct blk_backend *b)
{
	if (!event_loop_in_thread(b->loop) || !event_loop_poll_ns(b->loop))
		event_notifier_set(&b->done_ev);
}

int blk_submit(struct blk_backend *b, struct blk_req *req)
{
	struct blk_slot *s;
	uint64_t expect;
	int r = check_req(b, req, &expect);

	if (r < 0)
		return r;
	pthread_mutex_lock(&b->lock);
	s = b->free_slots;
	if (b->closing || !s) {
		pthread_mutex_unlock(&b->lock);
		return b->closing ? -ESHUTDOWN : -EAGAIN;
	}
	b->free_slots = s->next;
	*s = (struct blk_slot){ .req = req, .expect = expect };
	if (try_inline(b, s)) {
		atomic_fetch_add_explicit(&b->inline_ios, 1, memory_order_relaxed);
		if (req->sync_ok) {
			/* Done: the caller takes it from our return value. */
			put_slot(b, s);
			pthread_mutex_unlock(&b->lock);
			return 1;
		}
		b->pending++;
		atomic_fetch_add(&b->in_flight, 1);
		blk_slot_finished(b, s, 0);
		pthread_mutex_unlock(&b->lock);
		wake_loop_for(b);
		return 0;
	}
	atomic_fetch_add_explicit(&b->engine_ios, 1, memory_order_relaxed);
	/* Counted first: the engine may finish it before returning (a failed
	 * submission of a batch is delivered like a completion). */
	b->pending++;
	atomic_fetch_add(&b->in_flight, 1);
	r = b->engine->submit(b, s);
	if (r < 0) {
		b->pending--;
		atomic_fetch_sub(&b->in_flight, 1);
		put_slot(b, s);
	}
	pthread_mutex_unlock(&b->lock);
	return r < 0 ? r : 0;
}

void blk_plug(struct blk_backend *b)
{
	pthread_mutex_lock(&b->lock);
	b->plugged++;
	pthread_mutex_unlock(&b->lock);
}

void blk_unplug(struct blk_backend *b)
{
	pthread_mutex_lock(&b->lock);
	if (b->plugged && --b->plugged == 0 && b->engine->flush)
		b->engine->flush(b);
	pthread_mutex_unlock(&b->lock);
}

/* ---- opening and closing --------------------------------------------------- */

static int file_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	return -EINVAL;
}

static int start_engine(struct blk_backend *b, enum blk_aio aio)
{
	int r;

	if (aio == BLK_AIO_THREADS) {
		b->engine = &blk_engine_threads;
		return b->engine->init(b);
	}
#ifdef HAVE_LIBURING
	b->engine = &blk_engine_uring;
	r = b->engine->init(b);
	if (r == 0 || aio == BLK_AIO_IO_URING)
		return r;
	log_info(b->name, "io_uring unavailable (%s), using threads", strerror(-r));
#else
	if (aio == BLK_AIO_IO_URING)
		return -ENOTSUP;
#endif
	b->engine = &blk_engine_threads;
	r = b->engine->init(b);
	return r;
}

static void free_backend(struct blk_backend *b)
{
	event_notifier_cleanup(&b->done_ev);
	if (b->fd >= 0)
		close(b->fd);
	free(b->zero_iov);
	free(b->zero_buf);
	free(b->slots);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static int alloc_state(struct blk_backend *b)
{
	int r = event_notifier_init(&b->done_ev, false);

	if (r < 0)
		return r;
	b->slots = calloc(b->depth, sizeof(*b->slots));
	b->zero_iov = calloc(BLK_ZERO_IOVS, sizeof(*b->zero_iov));
	/* Aligned so the zeros can be written with O_DIRECT too. */
	if (!b->slots || !b->zero_iov || posix_memalign(&b->zero_buf, 4096, BLK_ZERO_BUF))
		return -ENOMEM;
	memset(b->zero_buf, 0, BLK_ZERO_BUF);
	for (unsigned i = 0; i < BLK_ZERO_IOVS; i++)
		b->zero_iov[i] = (struct iovec){ b->zero_buf, BLK_ZERO_BUF };
	for (unsigned i = 0; i < b->depth; i++) {
		b->slots[i].next = b->free_slots;
		b->free_slots = &b->slots[i];
	}
	return 0;
}

int blk_open(const char *path, const struct blk_opts *opts, struct event_loop *loop,
	     struct blk_backend **out)
{
	struct blk_opts o = opts ? *opts : (struct blk_opts){ 0 };
	struct blk_backend *b = calloc(1, sizeof(*b));
	const char *base = strrchr(path, '/');
	int r, flags = (o.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (o.direct ? O_DIRECT : 0);

	*out = NULL;
	if (!b)
		return -ENOMEM;
	snprintf(b->name, sizeof(b->name), "blk(%s)", base ? base + 1 : path);
	b->fd = -1;
	b->done_ev.fd = -1;
	b->loop = loop;
	b->readonly = o.readonly;
	b->depth = o.queue_depth ? o.queue_depth : DEFAULT_DEPTH;
	b->reaped_tail = &b->reaped;
	b->queued_tail = &b->queued;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	if (b->depth > MAX_DEPTH) {
		r = -EINVAL;
		log_warn(b->name, "queue depth %u above %u", b->depth, MAX_DEPTH);
		goto fail;
	}
	b->fd = open(path, flags);
	if (b->fd < 0) {
		r = -errno;
		log_warn(b->name, "cannot open %s%s: %s", path, o.direct ? " with O_DIRECT" : "",
			 strerror(-r));
		goto fail;
	}
	r = file_size(b->fd, &b->size);
	if (r < 0) {
		log_warn(b->name, "%s: not a regular file or block device, or no size: %s",
			 path, strerror(-r));
		goto fail;
	}
	r = alloc_state(b);
	if (r < 0)
		goto fail;
	b->inline_io = o.aio == BLK_AIO_AUTO && !o.direct;
	r = start_engine(b, o.aio);
	if (r < 0) {
		log_warn(b->name, "cannot start the %s engine: %s", b->engine->name, strerror(-r));
		goto fail;
	}
	r = event_loop_set_notifier(loop, &b->done_ev, on_done, b);
	if (!r && (b->engine->ready || b->inline_io))
		r = event_loop_set_poll(loop, &(struct event_poller){ .poll = poll_completions,
								      .ready = poll_ready }, b);
	if (r < 0) {
		event_loop_set_notifier(loop, &b->done_ev, NULL, NULL);
		b->engine->fini(b);
		goto fail;
	}
	log_info(b->name, "%s: %llu bytes, %s%s, aio=%s%s, depth %u", path,
		 (unsigned long long)b->size, b->readonly ? "read-only" : "read-write",
		 o.direct ? ", O_DIRECT" : "", b->engine->name, b->inline_io ? "+inline" : "",
		 b->depth);
	*out = b;
	return 0;
fail:
	free_backend(b);
	return r;
}

void blk_close(struct blk_backend *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	b->closing = true;
	pthread_mutex_unlock(&b->lock);
	/* Every done() runs before we go: in the loop's thread, or here
	 * holding the loop when nobody runs it.  So the caller must not hold
	 * a lock its done() takes. */
	event_loop_call_sync(b->loop, deliver_all, b);
	event_loop_set_poll(b->loop, NULL, b);
	event_loop_set_notifier(b->loop, &b->done_ev, NULL, NULL);
	b->engine->fini(b);
	free_backend(b);
}
