/*
 * Inside the block backend: the state blk_file.c shares with its two I/O
 * engines (blk_uring.c, blk_threads.c).
 *
 * A request lives in a slot from submit until its done() runs.  While the
 * kernel or a worker owns it, it counts in @pending; once the engine has its
 * result it sits on @reaped until the loop thread delivers it.  Reaping may
 * happen in any thread (a drain from another thread reaps so that it never
 * waits on the loop); delivering — calling done() — only in the loop's.
 */
#ifndef KICKVM_BLK_INTERNAL_H
#define KICKVM_BLK_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "kickvm/block.h"

/* The write-zeroes fallback writes from one shared zero buffer. */
#define BLK_ZERO_BUF   (64u << 10)
#define BLK_ZERO_IOVS  256u                 /* up to 16 MiB per write */

struct blk_slot {
	struct blk_req *req;
	struct blk_slot *next;
	uint64_t expect;               /* bytes a read or write must move */
	int ret;
	/* write-zeroes written with plain writes (no FALLOC_FL_ZERO_RANGE) */
	bool zero_writes;
	uint64_t zero_done;
	struct iovec zero_tail;        /* the last, partial chunk */
	struct blk_slot *queued_next;  /* prepared, not yet given to the kernel */
	void *sqe;                     /* io_uring: its entry while queued */
};

struct blk_backend;

struct blk_engine {
	const char *name;
	int (*init)(struct blk_backend *b);
	/* Only when nothing is pending. */
	void (*fini)(struct blk_backend *b);
	/* Start @s. b->lock held. */
	int (*submit)(struct blk_backend *b, struct blk_slot *s);
	/* Move finished slots to b->reaped (blk_slot_finished); with @wait,
	 * block until at least one finished if any is pending.  b->lock held
	 * (the thread pool waits on b->cond, which releases it). */
	void (*reap)(struct blk_backend *b, bool wait);
	/* Optional, lock-free: a completion is waiting to be reaped (the loop's
	 * busy-polling asks, instead of sleeping on done_ev). */
	bool (*ready)(struct blk_backend *b);
	/* Optional: give the kernel what submit() queued while b->plugged.
	 * b->lock held. */
	void (*flush)(struct blk_backend *b);
};

struct blk_backend {
	char name[48];                 /* for logs: "blk(disk.img)" */
	int fd;
	uint64_t size;
	bool readonly;
	struct event_loop *loop;
	const struct blk_engine *engine;
	void *engine_state;
	struct event_notifier done_ev; /* the loop delivers when signalled */

	pthread_mutex_t lock;          /* everything below */
	pthread_cond_t cond;           /* a slot finished */
	struct blk_slot *slots, *free_slots;
	struct blk_slot *reaped, **reaped_tail;
	unsigned depth, pending;
	unsigned plugged;              /* blk_plug() depth */
	struct blk_slot *queued, **queued_tail;   /* FIFO, for the engine's flush */
	bool closing;
	_Atomic unsigned in_flight;    /* submitted, done() not yet called */
	atomic_bool no_zero_range;     /* the file refused FALLOC_FL_ZERO_RANGE */
	bool inline_io;                /* aio=auto, buffered: see block.h */
	bool no_nowait_reads;          /* the file refused RWF_NOWAIT: b->lock */
	bool no_nowait_writes;
	_Atomic uint64_t inline_ios, engine_ios;

	void *zero_buf;
	struct iovec *zero_iov;        /* BLK_ZERO_IOVS views of zero_buf */
};

extern const struct blk_engine blk_engine_uring;
extern const struct blk_engine blk_engine_threads;

/* The engine is done with @s (result @ret). b->lock held. */
void blk_slot_finished(struct blk_backend *b, struct blk_slot *s, int ret);
/* Next chunk of a write-zeroes done with plain writes: the iovecs to write
 * at @*off, from s->zero_done on.  Returns the iovec count. */
int blk_zero_chunk(struct blk_backend *b, struct blk_slot *s, const struct iovec **iov,
		   uint64_t *off);
/* An errno from fallocate() that means "this file cannot do that mode". */
static inline bool blk_falloc_unsupported(int err)
{
	return err == -EOPNOTSUPP || err == -ENOTTY || err == -ENOSYS;
}

#endif
