/*
 * Block backends: a raw image file served asynchronously.  Requests are
 * submitted from, and complete in, one event loop (the device's iothread):
 * io_uring (liburing) when the kernel has it, else a small thread pool whose
 * completions come back to the loop through an eventfd.
 */
#ifndef KICKVM_BLOCK_H
#define KICKVM_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "event.h"

enum blk_aio { BLK_AIO_AUTO, BLK_AIO_IO_URING, BLK_AIO_THREADS };
enum blk_op { BLK_READ, BLK_WRITE, BLK_FLUSH, BLK_DISCARD, BLK_WRITE_ZEROES };

struct blk_backend;

struct blk_req {
	enum blk_op op;
	uint64_t offset;               /* bytes */
	uint64_t len;                  /* bytes, for discard/write-zeroes */
	struct iovec *iov;             /* read/write buffers (guest memory) */
	int iovcnt;
	/* Called in the backend's loop with 0 or a negative errno. */
	void (*done)(struct blk_req *req, int ret);
	void *opaque;
	/* The caller takes an inline success as blk_submit()'s return value
	 * (1) instead of a later done(): no hand-off to the loop at all. */
	bool sync_ok;
};

/*
 * aio=auto also does buffered (cache=writeback) reads and writes inline, on
 * the submitting thread, when that cannot take long: a read whose data is in
 * the page cache (preadv2 RWF_NOWAIT), a write the file takes without
 * blocking (pwritev2 RWF_NOWAIT), or, on a file system that refuses
 * RWF_NOWAIT for buffered writes (ext4), a plain write of up to
 * BLK_INLINE_WRITE_MAX bytes: a copy into the page cache, a few
 * microseconds, where handing it to an io_uring worker or a pool thread
 * costs a thread wake-up (tens of microseconds on a nested host).  What
 * would block (a read from disk, a large write) goes to the engine.  Such a
 * write can still wait on dirty-page throttling, as Firecracker's sync
 * engine does for all I/O; aio=io_uring or aio=threads never block the
 * submitting thread.  Completions are delivered in the loop either way.
 */
#define BLK_INLINE_WRITE_MAX (128u << 10)

struct blk_opts {
	bool readonly;
	bool direct;                   /* O_DIRECT (cache=none) */
	enum blk_aio aio;
	unsigned queue_depth;          /* in-flight requests; default 128 */
};

/* Where requests were served, since open. */
struct blk_stats {
	uint64_t inline_ios;           /* read or written on the submitting thread */
	uint64_t engine_ios;           /* through io_uring or the thread pool */
};

int blk_open(const char *path, const struct blk_opts *opts, struct event_loop *loop,
	     struct blk_backend **out);
/* Waits for in-flight requests, then closes. */
void blk_close(struct blk_backend *b);
uint64_t blk_size(const struct blk_backend *b);
bool blk_readonly(const struct blk_backend *b);
const char *blk_aio_name(const struct blk_backend *b);   /* "io_uring" / "threads" */
/* Whether buffered reads and writes may be done inline (aio=auto, above). */
bool blk_inline_io(const struct blk_backend *b);
void blk_get_stats(const struct blk_backend *b, struct blk_stats *out);
/* Queue @req; its done() runs later in the loop (never inside this call),
 * and 0 is returned.  With req->sync_ok, a request served inline that
 * succeeded returns 1 instead and done() is not called.  -EROFS for writes
 * on a read-only backend, -EINVAL out of range. */
int blk_submit(struct blk_backend *b, struct blk_req *req);
/* Batching: what is submitted between blk_plug() and blk_unplug() reaches
 * the kernel together at the unplug: one io_uring_enter for the batch,
 * which the block layer sees as one batch too (one doorbell to the disk, not
 * one per request).  Plugs nest.  Inline requests are not held back. */
void blk_plug(struct blk_backend *b);
void blk_unplug(struct blk_backend *b);
/* Requests submitted but not completed. */
unsigned blk_in_flight(const struct blk_backend *b);
/* Wait (running the loop if called from it) until nothing is in flight. */
void blk_drain(struct blk_backend *b);

#endif
