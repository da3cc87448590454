/*
 * The io_uring engine.  One ring per backend, its completion eventfd
 * (io_uring_register_eventfd) being b->done_ev, watched by the loop.  The
 * ring is not thread-safe and a vCPU thread may submit (ioeventfd=off), so
 * every ring access is under b->lock.  In-flight requests never outnumber
 * the ring's entries, so a submission queue entry is always free and the
 * completion queue (twice as large) never overflows.
 */
#ifdef HAVE_LIBURING
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <liburing.h>

#include "blk_internal.h"
#include "kickvm/log.h"

static struct io_uring *ring_of(struct blk_backend *b)
{
	return b->engine_state;
}

static void prep_zero_write(struct blk_backend *b, struct blk_slot *s, struct io_uring_sqe *sqe)
{
	const struct iovec *iov;
	uint64_t off;
	int cnt = blk_zero_chunk(b, s, &iov, &off);

	io_uring_prep_writev(sqe, b->fd, iov, (unsigned)cnt, off);
}

static void prep(struct blk_backend *b, struct blk_slot *s, struct io_uring_sqe *sqe)
{
	struct blk_req *req = s->req;

	switch (req->op) {
	case BLK_READ:
		io_uring_prep_readv(sqe, b->fd, req->iov, (unsigned)req->iovcnt, req->offset);
		break;
	case BLK_WRITE:
		io_uring_prep_writev(sqe, b->fd, req->iov, (unsigned)req->iovcnt, req->offset);
		break;
	case BLK_FLUSH:
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLK_DISCARD:
		io_uring_prep_fallocate(sqe, b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)req->offset, (off_t)req->len);
		break;
	case BLK_WRITE_ZEROES:
		if (s->zero_writes)
			prep_zero_write(b, s, sqe);
		else
			io_uring_prep_fallocate(sqe, b->fd,
						FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
						(off_t)req->offset, (off_t)req->len);
		break;
	}
	io_uring_sqe_set_data(sqe, s);
}

/* Give the kernel every queued entry, in order.  What it refuses outright
 * becomes a no-op (the entries stay in the ring) and its request fails,
 * delivered like a completion.  b->lock held. */
static void uring_flush(struct blk_backend *b)
{
	struct io_uring *ring = ring_of(b);

	while (b->queued) {
		int r = io_uring_submit(ring);

		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r <= 0) {
			log_warn_rl(b->name, "io_uring submit failed: %s", strerror(r ? -r : EIO));
			while (b->queued) {
				struct blk_slot *s = b->queued;

				b->queued = s->queued_next;
				io_uring_prep_nop(s->sqe);
				io_uring_sqe_set_data(s->sqe, NULL);
				blk_slot_finished(b, s, r ? r : -EIO);
			}
			event_notifier_set(&b->done_ev);
			break;
		}
		/* The kernel takes entries in ring order, which is ours. */
		while (r-- > 0 && b->queued)
			b->queued = b->queued->queued_next;
	}
	b->queued_tail = &b->queued;
}

/* Prepare @s's next operation; it reaches the kernel now, or at the unplug
 * while the backend is plugged.  b->lock held. */
static int start(struct blk_backend *b, struct blk_slot *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring_of(b));

	if (!sqe)
		return -EAGAIN;
	prep(b, s, sqe);
	s->sqe = sqe;
	s->queued_next = NULL;
	*b->queued_tail = s;
	b->queued_tail = &s->queued_next;
	if (!b->plugged)
		uring_flush(b);
	return 0;
}

static int uring_submit(struct blk_backend *b, struct blk_slot *s)
{
	if (s->req->op == BLK_WRITE_ZEROES && atomic_load(&b->no_zero_range))
		s->zero_writes = true;
	return start(b, s);
}

/* The result of one completion for @s, or 1 when @s was started again. */
static int result(struct blk_backend *b, struct blk_slot *s, int res)
{
	struct blk_req *req = s->req;

	switch (req->op) {
	case BLK_READ:
	case BLK_WRITE:
		if (res >= 0 && (uint64_t)res != s->expect) {
			/* The device checked the range: a short transfer is an error. */
			log_debug_rl(b->name, "short %s at %llu: %d of %llu bytes",
				  req->op == BLK_READ ? "read" : "write",
				  (unsigned long long)req->offset, res,
				  (unsigned long long)s->expect);
			return -EIO;
		}
		return res < 0 ? res : 0;
	case BLK_DISCARD:
		/* Discard is a hint: a file that cannot punch holes ignores it. */
		return res < 0 && !blk_falloc_unsupported(res) ? res : 0;
	case BLK_WRITE_ZEROES:
		if (!s->zero_writes) {
			if (!blk_falloc_unsupported(res))
				return res < 0 ? res : 0;
			if (!atomic_exchange(&b->no_zero_range, true))
				log_info(b->name, "no FALLOC_FL_ZERO_RANGE here: writing zeroes");
			s->zero_writes = true;
		} else if (res <= 0) {
			return res < 0 ? res : -EIO;
		} else {
			s->zero_done += (uint64_t)res;
		}
		if (s->zero_done == req->len)
			return 0;
		res = start(b, s);
		return res < 0 ? res : 1;
	default:
		return res < 0 ? res : 0;
	}
}

static void uring_reap(struct blk_backend *b, bool wait)
{
	struct io_uring *ring = ring_of(b);
	struct io_uring_cqe *cqe;
	bool got = false;

	/* Never wait for what the kernel has not been given. */
	if (wait && b->queued)
		uring_flush(b);

	for (;;) {
		struct blk_slot *s;
		int r = io_uring_peek_cqe(ring, &cqe);

		if (r < 0) {
			if (!wait || got || !b->pending)
				break;
			r = io_uring_wait_cqe(ring, &cqe);
			if (r < 0)
				continue;  /* EINTR */
		}
		s = io_uring_cqe_get_data(cqe);
		r = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		if (!s)
			continue;  /* a no-op left by a failed submit */
		r = result(b, s, r);
		if (r == 1)
			continue;
		blk_slot_finished(b, s, r);
		got = true;
	}
}

static bool uring_ready(struct blk_backend *b)
{
	/* Reads the completion ring's tail: no syscall, no lock. */
	return io_uring_cq_ready(ring_of(b)) > 0;
}

static int uring_init(struct blk_backend *b)
{
	struct io_uring *ring = calloc(1, sizeof(*ring));
	int r;

	if (!ring)
		return -ENOMEM;
	r = io_uring_queue_init(b->depth, ring, 0);
	if (r < 0) {
		free(ring);
		return r;
	}
	r = io_uring_register_eventfd(ring, b->done_ev.fd);
	if (r < 0) {
		io_uring_queue_exit(ring);
		free(ring);
		return r;
	}
	b->engine_state = ring;
	return 0;
}

static void uring_fini(struct blk_backend *b)
{
	struct io_uring *ring = ring_of(b);

	if (!ring)
		return;
	io_uring_queue_exit(ring);
	free(ring);
	b->engine_state = NULL;
}

const struct blk_engine blk_engine_uring = {
	.name = "io_uring",
	.init = uring_init,
	.fini = uring_fini,
	.submit = uring_submit,
	.reap = uring_reap,
	.ready = uring_ready,
	.flush = uring_flush,
};
#endif
