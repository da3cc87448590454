/*
 * The thread-pool engine: a few workers doing blocking preadv/pwritev/
 * fdatasync/fallocate.  For kernels (or sandboxes) without io_uring.  A
 * worker hands its finished slot to b->reaped and signals b->done_ev; the
 * loop does the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blk_internal.h"
#include "kickvm/log.h"
#include "kickvm/sandbox.h"

#define NR_WORKERS 4

struct pool {
	pthread_t workers[NR_WORKERS];
	unsigned nr_workers;
	struct blk_slot *todo, **todo_tail;
	pthread_cond_t work;
	bool stop;
};

/* preadv/pwritev until all of it moved: a short transfer continues where it
 * stopped; end of file (0 bytes) is an I/O error. */
static int rw(struct blk_backend *b, struct blk_slot *s)
{
	struct blk_req *req = s->req;
	struct iovec *iov = req->iov, *copy = NULL;
	int cnt = req->iovcnt;
	uint64_t done = 0;
	int ret = 0;

	while (done < s->expect) {
		off_t off = (off_t)(req->offset + done);
		ssize_t n = req->op == BLK_WRITE ? pwritev(b->fd, iov, cnt, off) :
						   preadv(b->fd, iov, cnt, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			break;
		}
		done += (uint64_t)n;
		if (done == s->expect)
			break;
		/* Rare: step over what moved in a private copy of the vector. */
		if (!copy) {
			copy = malloc((size_t)cnt * sizeof(*copy));
			if (!copy) {
				ret = -ENOMEM;
				break;
			}
			memcpy(copy, iov, (size_t)cnt * sizeof(*copy));
			iov = copy;
		}
		while ((size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		iov->iov_base = (char *)iov->iov_base + n;
		iov->iov_len -= (size_t)n;
	}
	free(copy);
	return ret;
}

static int write_zeroes(struct blk_backend *b, struct blk_slot *s)
{
	struct blk_req *req = s->req;

	if (!atomic_load(&b->no_zero_range)) {
		if (fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			      (off_t)req->offset, (off_t)req->len) == 0)
			return 0;
		if (!blk_falloc_unsupported(-errno))
			return -errno;
		atomic_store(&b->no_zero_range, true);
		log_info(b->name, "no FALLOC_FL_ZERO_RANGE here: writing zeroes");
	}
	while (s->zero_done < req->len) {
		const struct iovec *iov;
		uint64_t off;
		int cnt = blk_zero_chunk(b, s, &iov, &off);
		ssize_t n = pwritev(b->fd, iov, cnt, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		s->zero_done += (uint64_t)n;
	}
	return 0;
}

static int run(struct blk_backend *b, struct blk_slot *s)
{
	struct blk_req *req = s->req;

	switch (req->op) {
	case BLK_READ:
	case BLK_WRITE:
		return rw(b, s);
	case BLK_FLUSH:
		return fdatasync(b->fd) < 0 ? -errno : 0;
	case BLK_DISCARD:
		if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)req->offset, (off_t)req->len) == 0)
			return 0;
		/* Discard is a hint: a file that cannot punch holes ignores it. */
		return blk_falloc_unsupported(-errno) ? 0 : -errno;
	case BLK_WRITE_ZEROES:
		return write_zeroes(b, s);
	}
	return -EINVAL;
}

static void *worker(void *opaque)
{
	struct blk_backend *b = opaque;
	struct pool *p = b->engine_state;

	/* A worker does I/O on an open file and nothing else.  Without its
	 * filter it still works: the error is logged. */
	sandbox_enter(SANDBOX_BLOCK_WORKER);
	pthread_mutex_lock(&b->lock);
	for (;;) {
		struct blk_slot *s;
		int ret;

		while (!p->todo && !p->stop)
			pthread_cond_wait(&p->work, &b->lock);
		s = p->todo;
		if (!s)
			break;
		p->todo = s->next;
		if (!p->todo)
			p->todo_tail = &p->todo;
		pthread_mutex_unlock(&b->lock);

		ret = run(b, s);

		pthread_mutex_lock(&b->lock);
		blk_slot_finished(b, s, ret);
		event_notifier_set(&b->done_ev);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

static void pool_fini(struct blk_backend *b)
{
	struct pool *p = b->engine_state;

	if (!p)
		return;
	pthread_mutex_lock(&b->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&b->lock);
	for (unsigned i = 0; i < p->nr_workers; i++)
		pthread_join(p->workers[i], NULL);
	pthread_cond_destroy(&p->work);
	free(p);
	b->engine_state = NULL;
}

static int pool_init(struct blk_backend *b)
{
	struct pool *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->todo_tail = &p->todo;
	pthread_cond_init(&p->work, NULL);
	b->engine_state = p;
	for (unsigned i = 0; i < NR_WORKERS; i++) {
		r = pthread_create(&p->workers[i], NULL, worker, b);
		if (r) {
			pool_fini(b);
			return -r;
		}
		p->nr_workers++;
	}
	return 0;
}

static int pool_submit(struct blk_backend *b, struct blk_slot *s)
{
	struct pool *p = b->engine_state;

	s->next = NULL;
	*p->todo_tail = s;
	p->todo_tail = &s->next;
	pthread_cond_signal(&p->work);
	return 0;
}

/* Workers put finished slots on b->reaped themselves: only wait here. */
static void pool_reap(struct blk_backend *b, bool wait)
{
	if (wait && b->pending)
		pthread_cond_wait(&b->cond, &b->lock);
}

const struct blk_engine blk_engine_threads = {
	.name = "threads",
	.init = pool_init,
	.fini = pool_fini,
	.submit = pool_submit,
	.reap = pool_reap,
};
