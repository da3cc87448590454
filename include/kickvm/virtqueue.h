/*
 * Split virtqueues (virtio 1.2 §2.7), device side.  Pure: touches guest
 * memory only through guest_mem's bounds-checked accessors, keeps no thread
 * or device state, so it is unit-tested against a mock ring and fuzzed.
 *
 * Anything malformed the driver put in the ring (a descriptor index out of
 * range, a buffer outside RAM, a loop, a chain longer than the queue, an
 * indirect table that is badly sized or nested, a writable descriptor before
 * a readable one, an avail index that jumps by more than the queue size)
 * marks the queue broken with a reason; the device then sets NEEDS_RESET.
 * Nothing is ever read or written outside guest RAM.
 */
#ifndef KICKVM_VIRTQUEUE_H
#define KICKVM_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>

struct guest_mem;

#define VIRTQ_MAX_SIZE     32768
#define VIRTQ_ELEM_MAX_IOV 256     /* buffers in one chain, direct + indirect */

/* Ring layout constants (virtio spec). */
#define VIRTQ_DESC_F_NEXT      1
#define VIRTQ_DESC_F_WRITE     2
#define VIRTQ_DESC_F_INDIRECT  4
#define VIRTQ_USED_F_NO_NOTIFY 1
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq {
	const struct guest_mem *mem;
	uint16_t num;                 /* queue size, a power of two */
	uint64_t desc, avail, used;   /* guest-physical ring addresses */
	bool event_idx;               /* VIRTIO_F_RING_EVENT_IDX negotiated */
	bool indirect;                /* VIRTIO_F_RING_INDIRECT_DESC negotiated */
	uint16_t last_avail;          /* next avail entry to take */
	uint16_t used_idx;            /* next used entry to fill */
	uint16_t signalled_used;      /* used_idx when we last notified */
	bool signalled_used_valid;
	bool broken;
	const char *error;            /* why it broke (static string) */
	bool polled;                  /* notifications kept off: someone polls */
};

struct virtq_iov {
	void *base;                   /* host pointer, valid for len bytes */
	uint32_t len;
	uint64_t gpa;
};

struct virtq_elem {
	uint16_t head;                /* descriptor index to return in used */
	unsigned nr_out;              /* device-readable buffers: iov[0..nr_out) */
	unsigned nr_in;               /* device-writable: iov[nr_out..nr_out+nr_in) */
	uint64_t out_len, in_len;     /* byte totals */
	struct virtq_iov iov[VIRTQ_ELEM_MAX_IOV];
};

/* Set up a queue the driver configured. Checks the rings lie in RAM;
 * -EFAULT (queue left broken) if not, -EINVAL for a bad size. */
int virtq_init(struct virtq *vq, const struct guest_mem *mem, uint16_t num,
	       uint64_t desc, uint64_t avail, uint64_t used, bool event_idx,
	       bool indirect);
/* Take the next available chain: 1 and @elem filled, 0 when the ring is
 * empty, -EIO when the chain is malformed (the queue is now broken). */
int virtq_pop(struct virtq *vq, struct virtq_elem *elem);
/* Put @head back on the used ring with @written bytes; publishes the used
 * index with a release barrier. -EIO on a broken queue. */
int virtq_push(struct virtq *vq, uint16_t head, uint32_t written);
/* After pushing: should the driver be interrupted?  Honours EVENT_IDX
 * (used_event) or the NO_INTERRUPT flag. Call once per batch. */
bool virtq_should_notify(struct virtq *vq);
/* Device side notification suppression: false asks the driver not to
 * notify (VRING_USED_F_NO_NOTIFY, or avail_event left behind); true
 * re-enables (avail_event = last_avail). Callers re-check the ring after
 * enabling, to close the race with a driver that just added work. */
void virtq_set_notification(struct virtq *vq, bool enable);
/* A poller watches the ring (event.h): notifications stay off, whatever
 * virtq_set_notification() is asked, until virtq_set_polled(vq, false)
 * re-enables them (the caller re-checks the ring after that, as above). */
void virtq_set_polled(struct virtq *vq, bool polled);
/* Entries the driver made available that we have not taken yet. */
int virtq_pending(const struct virtq *vq);

#endif
