/*
 * virtio-blk (virtio 1.2 §5.2): one request queue served by a block
 * backend, several requests in flight.
 *
 * A request is [header: type, reserved, sector][data...][status byte]: the
 * header is the first 16 readable bytes, the status the last writable byte,
 * wherever the driver's descriptors happen to split them.
 *
 * Threads and locks.  queue_notify runs with vdev->lock held (usually in the
 * loop; on a vCPU thread with ioeventfd=off) and submits.  The backend calls
 * done() in the loop without the lock, so done() takes it to push.  The
 * driver is interrupted once per batch: done() only arms @batch, whose
 * handler runs after the backend's whole batch and notifies once.  What the
 * backend serves inline (page-cache copies, block.h) is finished within
 * process() itself, and interrupted for once at its end.
 *
 * Reset runs with vdev->lock held and must wait for in-flight I/O, which
 * completes through done(), which takes vdev->lock.  What breaks the cycle:
 *  - a reset generation.  reset() bumps @gen first; a done() for an older
 *    generation only returns its request to the pool (its own small lock),
 *    never taking vdev->lock or touching the rings;
 *  - blk_drain() from a thread other than the loop's waits for the kernel
 *    or the workers, never for the loop thread (which may itself be waiting
 *    for vdev->lock, in our done() or in the transport's notify handler);
 *    from the loop's thread it delivers the stale done()s inline.
 * So reset returns once no buffer of the old generation can be touched; the
 * stale done()s may still run afterwards and just free their requests.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/virtio_devices.h"

#define SECTOR          512u
#define QUEUE_MAX       256
#define SEG_MAX         (QUEUE_MAX - 2)     /* the header and status take two */
#define SIZE_MAX_BYTES  (1u << 20)
/* Requests: as many as the queue has entries, so that a driver that fills
 * its ring never runs the device out of them (256 x ~4 KiB of iovecs).  A
 * hostile driver can still offer more chains than that (the same
 * descriptors again before they came back): the rest waits in the ring,
 * the queue marked starved (virtio.h), until a request completes. */
#define DEFAULT_DEPTH   QUEUE_MAX
#define MAX_DZ_SECTORS  (1u << 21)          /* 1 GiB per discard/write-zeroes */
#define DISCARD_ALIGN   8                   /* 4 KiB: a filesystem block */
#define DZ_F_UNMAP      1u

#define FEATURE(b)      (1ull << (b))

/* Device configuration (§5.2.4), little-endian, up to the fields we offer. */
struct blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads, sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp, alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback, unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors, max_discard_seg, discard_sector_alignment;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap, unused1[3];
} __attribute__((packed));
_Static_assert(offsetof(struct blk_config, blk_size) == 20 &&
	       offsetof(struct blk_config, num_queues) == 34 &&
	       offsetof(struct blk_config, max_write_zeroes_seg) == 52 &&
	       sizeof(struct blk_config) == 60, "virtio-blk config layout (§5.2.4)");

/* The fields of struct virtio_blk_stats, in order. */
enum stat {
	ST_READS, ST_WRITES, ST_FLUSHES, ST_GET_IDS, ST_DISCARDS, ST_WRITE_ZEROES,
	ST_UNSUPPORTED, ST_IO_ERRORS, ST_BYTES_READ, ST_BYTES_WRITTEN, ST_COUNT
};
_Static_assert(offsetof(struct virtio_blk_stats, aio) == ST_COUNT * sizeof(uint64_t) &&
	       offsetof(struct virtio_blk_stats, bytes_written) == ST_BYTES_WRITTEN * 8,
	       "enum stat follows struct virtio_blk_stats");

struct vblk_req {
	struct blk_req breq;
	struct virtio_blk *blk;
	struct vblk_req *next;              /* in the free pool */
	uint32_t gen;
	uint32_t type;
	uint16_t head;
	uint8_t *status;                    /* host pointer to the status byte */
	uint32_t written;                   /* bytes written back on success */
	uint64_t bytes;                     /* data moved, for stats */
	int ret;                            /* the backend's result, while held */
	struct iovec iov[VIRTQ_ELEM_MAX_IOV];
};

struct virtio_blk {
	struct virtio_dev *vdev;
	struct blk_backend *backend;
	struct blk_config config;
	uint64_t capacity;                  /* sectors */
	char serial[VIRTIO_BLK_ID_BYTES];
	struct virtq_elem elem;             /* popping, under vdev->lock */

	pthread_mutex_t pool_lock;          /* free_reqs */
	struct vblk_req *reqs, *free_reqs;
	_Atomic uint32_t gen;               /* bumped by reset and destroy */

	/* Under vdev->lock. */
	struct vblk_req *held;              /* completed while DMA was off (virtio.h) */
	bool pushed;                        /* used entries the driver was not told about */
	bool batch_armed;
	struct event_notifier batch;

	/* struct virtio_blk_stats, field by field: read without the lock. */
	_Atomic uint64_t st[ST_COUNT];
};

static void count(struct virtio_blk *blk, enum stat i, uint64_t n)
{
	atomic_fetch_add_explicit(&blk->st[i], n, memory_order_relaxed);
}

/* ---- the request pool -------------------------------------------------- */

static struct vblk_req *req_get(struct virtio_blk *blk)
{
	struct vblk_req *r;

	pthread_mutex_lock(&blk->pool_lock);
	r = blk->free_reqs;
	if (r)
		blk->free_reqs = r->next;
	pthread_mutex_unlock(&blk->pool_lock);
	return r;
}

static void req_put(struct virtio_blk *blk, struct vblk_req *r)
{
	pthread_mutex_lock(&blk->pool_lock);
	r->next = blk->free_reqs;
	blk->free_reqs = r;
	pthread_mutex_unlock(&blk->pool_lock);
}

/* Chains were left in the ring for want of a request (virtio.h). */
static atomic_bool *starved_flag(struct virtio_blk *blk)
{
	return &blk->vdev->queues[0].starved;
}

static bool starved(struct virtio_blk *blk)
{
	return atomic_load(starved_flag(blk));
}

/* ---- completing -------------------------------------------------------- */

/* May the device take and return chains?  vdev->lock held. */
static bool live(struct virtio_dev *vdev)
{
	return !vdev->broken && (vdev->status & VIRTIO_STATUS_DRIVER_OK) &&
	       vdev->queues[0].ready && !vdev->dma_off;
}

/* Write the status, return the chain, count.  vdev->lock held.  A device
 * that broke (or lost DMA) since the request started writes nothing: the
 * rings, and the status byte, are not ours to write any more. */
static void finish(struct virtio_blk *blk, uint16_t head, uint32_t type, uint8_t *status,
		   uint8_t st, uint32_t written, uint64_t bytes)
{
	if (!live(blk->vdev))
		return;
	*status = st;
	if (st != VIRTIO_BLK_S_OK)
		written = 1;                /* only the status is certain */
	virtio_queue_push(blk->vdev, 0, head, written);
	blk->pushed = true;

	switch (type) {
	case VIRTIO_BLK_T_IN: count(blk, ST_READS, 1); break;
	case VIRTIO_BLK_T_OUT: count(blk, ST_WRITES, 1); break;
	case VIRTIO_BLK_T_FLUSH: count(blk, ST_FLUSHES, 1); break;
	case VIRTIO_BLK_T_GET_ID: count(blk, ST_GET_IDS, 1); break;
	case VIRTIO_BLK_T_DISCARD: count(blk, ST_DISCARDS, 1); break;
	case VIRTIO_BLK_T_WRITE_ZEROES: count(blk, ST_WRITE_ZEROES, 1); break;
	}
	if (st == VIRTIO_BLK_S_IOERR)
		count(blk, ST_IO_ERRORS, 1);
	else if (st == VIRTIO_BLK_S_UNSUPP)
		count(blk, ST_UNSUPPORTED, 1);
	else if (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT)
		count(blk, type == VIRTIO_BLK_T_IN ? ST_BYTES_READ : ST_BYTES_WRITTEN, bytes);
}

/* @r finished with @ret: answer the driver, interrupt after the batch.
 * vdev->lock held. */
static void complete(struct virtio_blk *blk, struct vblk_req *r, int ret)
{
	finish(blk, r->head, r->type, r->status, ret < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK,
	       r->written, r->bytes);
	if (!blk->batch_armed) {
		blk->batch_armed = true;
		event_notifier_set(&blk->batch);
	}
}

/* The backend finished @breq; in the loop, without vdev->lock. */
static void req_done(struct blk_req *breq, int ret)
{
	struct vblk_req *r = (struct vblk_req *)breq;
	struct virtio_blk *blk = r->blk;
	struct virtio_dev *vdev = blk->vdev;

	/* Stale (see the top): the lock may be held by the reset waiting on us. */
	if (r->gen != atomic_load(&blk->gen)) {
		req_put(blk, r);
		if (starved(blk))
			event_notifier_set(&blk->batch);
		return;
	}
	pthread_mutex_lock(&vdev->lock);
	if (r->gen == atomic_load(&blk->gen)) {
		if (ret < 0)
			log_debug_rl(vdev->name, "request type %u at %llu failed: %s", r->type,
				  (unsigned long long)breq->offset, strerror(-ret));
		if (vdev->dma_off) {
			/* Its data moved already; the rest waits for DMA. */
			r->ret = ret;
			r->next = blk->held;
			blk->held = r;
			r = NULL;
		} else {
			complete(blk, r, ret);
		}
	}
	pthread_mutex_unlock(&vdev->lock);
	if (r)
		req_put(blk, r);
}

/* ---- parsing a request ------------------------------------------------- */

/* Turn @len bytes at byte @off of @iov[0..n) into host iovecs; the count. */
static int iov_slice(const struct virtq_iov *iov, unsigned n, uint64_t off, uint64_t len,
		     struct iovec *out)
{
	int cnt = 0;

	for (unsigned i = 0; i < n && len; i++) {
		uint64_t take;

		if (off >= iov[i].len) {
			off -= iov[i].len;
			continue;
		}
		take = iov[i].len - off;
		if (take > len)
			take = len;
		out[cnt++] = (struct iovec){ (uint8_t *)iov[i].base + off, take };
		len -= take;
		off = 0;
	}
	return cnt;
}

/* Copy between @buf and the (at most 20) bytes at byte @off of @iov[0..n):
 * the driver may split a header, a segment or the ID anywhere. */
static void iov_copy(const struct virtq_iov *iov, unsigned n, uint64_t off, void *buf,
		     size_t len, bool to_iov)
{
	struct iovec v[VIRTIO_BLK_ID_BYTES];  /* no buffer is empty: a piece per byte at most */
	int cnt = iov_slice(iov, n, off, len, v);

	for (int i = 0; i < cnt; i++) {
		if (to_iov)
			memcpy(v[i].iov_base, buf, v[i].iov_len);
		else
			memcpy(buf, v[i].iov_base, v[i].iov_len);
		buf = (uint8_t *)buf + v[i].iov_len;
	}
}

static bool in_range(const struct virtio_blk *blk, uint64_t sector, uint64_t sectors)
{
	return sector <= blk->capacity && sectors <= blk->capacity - sector;
}

/* Validate a discard/write-zeroes payload into @r->breq; a status when it
 * completes at once, or -1 to submit. */
static int parse_dz(struct virtio_blk *blk, struct vblk_req *r, const struct virtq_elem *e)
{
	struct { uint64_t sector; uint32_t num_sectors, flags; } seg;
	uint64_t payload = e->out_len - 16;
	uint32_t flags;
	bool discard = r->type == VIRTIO_BLK_T_DISCARD;

	if (!virtio_has_feature(blk->vdev, discard ? VIRTIO_BLK_F_DISCARD
						    : VIRTIO_BLK_F_WRITE_ZEROES))
		return VIRTIO_BLK_S_UNSUPP;
	if (e->in_len != 1)
		return VIRTIO_BLK_S_IOERR;  /* segments device-writable (wrong_way()) */
	if (payload == 0 || payload % sizeof(seg))
		return VIRTIO_BLK_S_IOERR;
	/* We said max_*_seg = 1 (§5.2.6.2: more is not supported). */
	if (payload > sizeof(seg))
		return VIRTIO_BLK_S_UNSUPP;
	iov_copy(e->iov, e->nr_out, 16, &seg, sizeof(seg), false);
	flags = le32toh(seg.flags);
	/* Unknown flags, and unmap on a discard, are unsupported (§5.2.6.2). */
	if ((flags & ~DZ_F_UNMAP) || (discard && (flags & DZ_F_UNMAP)))
		return VIRTIO_BLK_S_UNSUPP;
	seg.sector = le64toh(seg.sector);
	seg.num_sectors = le32toh(seg.num_sectors);
	if (seg.num_sectors > MAX_DZ_SECTORS || !in_range(blk, seg.sector, seg.num_sectors))
		return VIRTIO_BLK_S_IOERR;
	if (seg.num_sectors == 0)
		return VIRTIO_BLK_S_OK;
	if (blk_readonly(blk->backend))
		return VIRTIO_BLK_S_IOERR;
	/* With write_zeroes_may_unmap = 0 the unmap hint is ignored: zeroes
	 * are written (FALLOC_FL_ZERO_RANGE) but nothing is deallocated. */
	r->breq.op = discard ? BLK_DISCARD : BLK_WRITE_ZEROES;
	r->breq.offset = seg.sector * SECTOR;
	r->breq.len = (uint64_t)seg.num_sectors * SECTOR;
	return -1;
}

/*
 * Is the data of request @type on the wrong side (§5.2.6)?  What the device
 * reads comes after the 16-byte header in the readable part of the chain,
 * what it writes before the status byte in the writable part: a read's data
 * must be device-writable, a write's (and a discard or write-zeroes
 * segment's) device-readable, a flush has none, GET_ID's ID is writable.
 * Bytes on the other side mean the driver got a flag wrong: answered with
 * IOERR, nothing read or written (not "OK" for a transfer of 0 bytes), the
 * device kept working since the request's frame, header and status byte, is
 * intact.  (Unknown types get UNSUPP whatever their layout; discard and
 * write-zeroes are checked in parse_dz() after their feature.)
 */
static bool wrong_way(uint32_t type, const struct virtq_elem *e)
{
	uint64_t readable = e->out_len - 16, writable = e->in_len - 1;

	switch (type) {
	case VIRTIO_BLK_T_IN: return readable != 0;
	case VIRTIO_BLK_T_OUT: return writable != 0;
	case VIRTIO_BLK_T_FLUSH: return readable || writable;
	case VIRTIO_BLK_T_GET_ID: return readable || !writable;
	default: return false;
	}
}

/* Decode @e into @r: a status when it completes at once, -1 to submit. */
static int parse(struct virtio_blk *blk, struct vblk_req *r, const struct virtq_elem *e,
		 uint64_t sector)
{
	const struct virtq_iov *in = &e->iov[e->nr_out];
	uint64_t len;

	r->written = 1;
	r->bytes = 0;
	if (wrong_way(r->type, e))
		return VIRTIO_BLK_S_IOERR;
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (r->type == VIRTIO_BLK_T_OUT && blk_readonly(blk->backend))
			return VIRTIO_BLK_S_IOERR;
		len = r->type == VIRTIO_BLK_T_IN ? e->in_len - 1 : e->out_len - 16;
		if (len % SECTOR || !in_range(blk, sector, len / SECTOR))
			return VIRTIO_BLK_S_IOERR;
		if (len == 0)
			return VIRTIO_BLK_S_OK;
		r->breq.op = r->type == VIRTIO_BLK_T_IN ? BLK_READ : BLK_WRITE;
		r->breq.offset = sector * SECTOR;
		r->bytes = len;
		r->breq.iovcnt = r->type == VIRTIO_BLK_T_IN ?
			iov_slice(in, e->nr_in, 0, len, r->iov) :
			iov_slice(e->iov, e->nr_out, 16, len, r->iov);
		if (r->type == VIRTIO_BLK_T_IN)
			r->written = (uint32_t)len + 1;
		return -1;
	case VIRTIO_BLK_T_FLUSH:
		r->breq.op = BLK_FLUSH;
		return -1;
	case VIRTIO_BLK_T_GET_ID:
		len = e->in_len - 1;
		if (len > VIRTIO_BLK_ID_BYTES)
			len = VIRTIO_BLK_ID_BYTES;
		/* Zero-padded, not NUL-terminated when all 20 bytes are used. */
		iov_copy(in, e->nr_in, 0, blk->serial, len, true);
		r->written = (uint32_t)len + 1;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return parse_dz(blk, r, e);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* Start the chain in blk->elem with request @r.  False when the driver
 * broke the protocol (the device is now broken; @r unused). */
static bool handle(struct virtio_blk *blk, struct vblk_req *r)
{
	const struct virtq_elem *e = &blk->elem;
	const struct virtq_iov *last;
	struct { uint32_t type, reserved; uint64_t sector; } hdr;
	int st;

	if (e->nr_in == 0) {
		virtio_dev_set_broken(blk->vdev, "request %u has no writable status byte", e->head);
		return false;
	}
	if (e->out_len < sizeof(hdr)) {
		virtio_dev_set_broken(blk->vdev, "request %u: header of %llu bytes, not 16",
				      e->head, (unsigned long long)e->out_len);
		return false;
	}
	iov_copy(e->iov, e->nr_out, 0, &hdr, sizeof(hdr), false);
	last = &e->iov[e->nr_out + e->nr_in - 1];
	r->head = e->head;
	r->type = le32toh(hdr.type);
	r->status = (uint8_t *)last->base + last->len - 1;
	r->gen = atomic_load(&blk->gen);
	/* sync_ok: a request the backend serves inline is finished right here,
	 * under the lock we hold, with no hand-off to the loop. */
	r->breq = (struct blk_req){ .iov = r->iov, .done = req_done, .opaque = r,
				    .sync_ok = true };

	st = parse(blk, r, e, le64toh(hdr.sector));
	if (st < 0) {
		int ret = blk_submit(blk->backend, &r->breq);

		if (ret == 0)
			return true;
		if (ret == 1) {
			st = VIRTIO_BLK_S_OK;
		} else {
			log_warn_rl(blk->vdev->name, "cannot submit request type %u: %s", r->type,
				 strerror(-ret));
			st = VIRTIO_BLK_S_IOERR;
		}
	}
	finish(blk, r->head, r->type, r->status, (uint8_t)st, r->written, r->bytes);
	req_put(blk, r);
	return true;
}

/* Take every available chain we have a request for.  vdev->lock held. */
static void process(struct virtio_blk *blk)
{
	struct virtio_dev *vdev = blk->vdev;
	struct virtq *vq = &vdev->queues[0].vq;

	atomic_store(starved_flag(blk), false);
	/* Everything taken in this pass goes to the kernel as one batch. */
	blk_plug(blk->backend);
	while (live(vdev)) {
		/* Quiet while draining: the driver need not kick for what we
		 * are about to see anyway. */
		virtq_set_notification(vq, false);
		for (;;) {
			struct vblk_req *r = req_get(blk);
			int n;

			if (!r) {
				/* Stay quiet: a completion frees a request and
				 * brings us back here (batch handler); until
				 * then the ring's chains are no work for a
				 * poller. */
				atomic_store(starved_flag(blk), true);
				goto out;
			}
			n = virtio_queue_pop(vdev, 0, &blk->elem);
			if (n <= 0 || !handle(blk, r))
				req_put(blk, r);
			if (n <= 0 || vdev->broken)
				break;
		}
		if (!live(vdev))
			break;
		/* Re-enable, then look again: the driver may have added a
		 * chain after our last pop and seen notifications off. */
		virtq_set_notification(vq, true);
		if (virtq_pending(vq) <= 0)
			break;
	}
out:
	blk_unplug(blk->backend);
	if (blk->pushed) {
		blk->pushed = false;
		virtio_queue_notify_driver(vdev, 0);
	}
}

/* After a batch of completions: one interrupt, and resume if starved. */
static void on_batch(struct event_notifier *e, void *opaque)
{
	struct virtio_blk *blk = opaque;

	event_notifier_test_and_clear(e);
	pthread_mutex_lock(&blk->vdev->lock);
	blk->batch_armed = false;
	if (starved(blk))
		process(blk);
	if (blk->pushed) {
		blk->pushed = false;
		virtio_queue_notify_driver(blk->vdev, 0);
	}
	pthread_mutex_unlock(&blk->vdev->lock);
}

/* ---- virtio_dev_ops ----------------------------------------------------- */

static void blk_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	if (q == 0)
		process(vdev->opaque);
}

static void blk_read_config(struct virtio_dev *vdev, uint32_t offset, void *buf, uint32_t len)
{
	struct virtio_blk *blk = vdev->opaque;

	memset(buf, 0, len);
	if (offset < sizeof(blk->config))
		memcpy(buf, (uint8_t *)&blk->config + offset,
		       len < sizeof(blk->config) - offset ? len : sizeof(blk->config) - offset);
}

static void blk_reset(struct virtio_dev *vdev)
{
	struct virtio_blk *blk = vdev->opaque;

	/* First, so every done() from now on is stale (see the top). */
	atomic_fetch_add(&blk->gen, 1);
	blk_drain(blk->backend);
	atomic_store(starved_flag(blk), false);
	blk->pushed = false;
	/* Held completions are dropped like every other of the old rings. */
	while (blk->held) {
		struct vblk_req *r = blk->held;

		blk->held = r->next;
		req_put(blk, r);
	}
}

/* DMA off (virtio.h): process() takes nothing more, done() holds; wait for
 * the backend to be through with the buffers.  Without vdev->lock: from the
 * loop's thread the drain delivers the done()s inline, and they take it. */
static void blk_dma_stop(struct virtio_dev *vdev)
{
	struct virtio_blk *blk = vdev->opaque;

	blk_drain(blk->backend);
}

/* DMA on again: the held completions, in the order they came, then what
 * the driver queued meanwhile (its doorbells were dropped).  Lock held. */
static void blk_dma_start(struct virtio_dev *vdev)
{
	struct virtio_blk *blk = vdev->opaque;
	struct vblk_req *list = NULL;

	while (blk->held) {                 /* reverse: oldest first */
		struct vblk_req *r = blk->held;

		blk->held = r->next;
		r->next = list;
		list = r;
	}
	while (list) {
		struct vblk_req *r = list;

		list = r->next;
		complete(blk, r, r->ret);
		req_put(blk, r);
	}
	process(blk);
}

/*
 * In the order that leaves nothing to run on freed state: every done() stale
 * first; then the batch handler gone (once that returns it is not running
 * and never will again, so nothing submits to the backend we close next);
 * then the backend, whose last done()s only return requests to the pool and
 * may signal the batch eventfd, still open, with nobody listening.
 */
static void free_blk(struct virtio_blk *blk, struct event_loop *loop)
{
	atomic_fetch_add(&blk->gen, 1);
	if (blk->batch.fd >= 0)
		event_loop_set_notifier(loop, &blk->batch, NULL, NULL);
	blk_close(blk->backend);            /* runs the last (stale) done()s */
	event_notifier_cleanup(&blk->batch);
	pthread_mutex_destroy(&blk->pool_lock);
	free(blk->reqs);
	free(blk);
}

static void blk_destroy(struct virtio_dev *vdev)
{
	if (vdev->opaque)
		free_blk(vdev->opaque, vdev->loop);
	vdev->opaque = NULL;
}

#define BLK_OPS(ro_features)                                                   \
	.name = "virtio-blk", .device_id = VIRTIO_ID_BLOCK,                    \
	.features = FEATURE(VIRTIO_BLK_F_SIZE_MAX) | FEATURE(VIRTIO_BLK_F_SEG_MAX) | \
		    FEATURE(VIRTIO_BLK_F_BLK_SIZE) | FEATURE(VIRTIO_BLK_F_FLUSH) | \
		    (ro_features),                                             \
	.nr_queues = 1, .queue_max = QUEUE_MAX,                                \
	.config_size = sizeof(struct blk_config),                              \
	.read_config = blk_read_config, .queue_notify = blk_queue_notify,      \
	.reset = blk_reset, .destroy = blk_destroy,                            \
	.dma_stop = blk_dma_stop, .dma_start = blk_dma_start

static const struct virtio_dev_ops blk_ops = {
	BLK_OPS(FEATURE(VIRTIO_BLK_F_DISCARD) | FEATURE(VIRTIO_BLK_F_WRITE_ZEROES)),
};
static const struct virtio_dev_ops blk_ro_ops = {
	BLK_OPS(FEATURE(VIRTIO_BLK_F_RO)),
};

static bool is_blk(const struct virtio_dev *vdev)
{
	return vdev && (vdev->ops == &blk_ops || vdev->ops == &blk_ro_ops);
}

void virtio_blk_get_stats(struct virtio_dev *vdev, struct virtio_blk_stats *out)
{
	uint64_t v[ST_COUNT] = { 0 };

	memset(out, 0, sizeof(*out));
	out->aio = "none";
	if (is_blk(vdev) && vdev->opaque) {
		struct virtio_blk *blk = vdev->opaque;

		for (unsigned i = 0; i < ST_COUNT; i++)
			v[i] = atomic_load(&blk->st[i]);
		out->aio = blk_aio_name(blk->backend);
		out->inline_io = blk_inline_io(blk->backend);
		blk_get_stats(blk->backend, &out->backend);
	}
	memcpy(out, v, sizeof(v));
}

/* ---- creating ------------------------------------------------------------ */

int virtio_blk_create(const struct guest_mem *mem, struct event_loop *loop,
		      const struct virtio_blk_opts *opts, struct virtio_dev **out)
{
	static _Atomic unsigned instances;
	struct virtio_dev *vdev = NULL;
	struct virtio_blk *blk = NULL;
	struct blk_opts bo = opts ? opts->blk : (struct blk_opts){ 0 };
	unsigned depth;
	char name[32];
	const char *serial;
	int r;

	*out = NULL;
	if (!opts || !opts->file || !mem || !loop)
		return -EINVAL;
	snprintf(name, sizeof(name), "virtio-blk%u", atomic_fetch_add(&instances, 1));
	depth = opts->blk.queue_depth ? opts->blk.queue_depth : DEFAULT_DEPTH;
	/* More in flight than the ring holds buys nothing. */
	if (depth > QUEUE_MAX)
		depth = QUEUE_MAX;
	vdev = calloc(1, sizeof(*vdev));
	blk = calloc(1, sizeof(*blk));
	if (!vdev || !blk) {
		free(vdev);
		free(blk);
		return -ENOMEM;
	}
	blk->batch.fd = -1;
	pthread_mutex_init(&blk->pool_lock, NULL);
	blk->reqs = calloc(depth, sizeof(*blk->reqs));
	if (!blk->reqs) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < depth; i++) {
		blk->reqs[i].blk = blk;
		req_put(blk, &blk->reqs[i]);
	}
	bo.queue_depth = depth;
	r = blk_open(opts->file, &bo, loop, &blk->backend);
	if (r < 0) {
		log_warn(name, "cannot open %s: %s", opts->file, strerror(-r));
		goto fail;
	}
	blk->capacity = blk_size(blk->backend) / SECTOR;
	if (blk_size(blk->backend) % SECTOR)
		log_warn(name, "%s: %llu trailing bytes past the last whole sector are not visible",
			 opts->file, (unsigned long long)(blk_size(blk->backend) % SECTOR));
	serial = opts->serial;
	if (!serial) {
		serial = strrchr(opts->file, '/');
		serial = serial ? serial + 1 : opts->file;
	}
	/* Zero-padded (calloc), unterminated when it fills all 20 bytes. */
	memcpy(blk->serial, serial, strnlen(serial, sizeof(blk->serial)));
	blk->config = (struct blk_config){
		.capacity = htole64(blk->capacity), .size_max = htole32(SIZE_MAX_BYTES),
		.seg_max = htole32(SEG_MAX), .blk_size = htole32(SECTOR),
		.num_queues = htole16(1), .max_discard_sectors = htole32(MAX_DZ_SECTORS),
		.max_discard_seg = htole32(1), .discard_sector_alignment = htole32(DISCARD_ALIGN),
		.max_write_zeroes_sectors = htole32(MAX_DZ_SECTORS),
		.max_write_zeroes_seg = htole32(1), .write_zeroes_may_unmap = 0,
	};

	r = event_notifier_init(&blk->batch, false);
	if (r == 0)
		r = event_loop_set_notifier(loop, &blk->batch, on_batch, blk);
	if (r < 0)
		goto fail;
	virtio_dev_init(vdev, blk_readonly(blk->backend) ? &blk_ro_ops : &blk_ops, blk, name,
			mem, loop);
	blk->vdev = vdev;
	log_info(name, "%s: %llu sectors, %s, serial \"%.20s\"", opts->file,
		 (unsigned long long)blk->capacity, blk_aio_name(blk->backend), blk->serial);
	*out = vdev;
	return 0;
fail:
	free_blk(blk, loop);
	free(vdev);
	return r;
}
