/*
 * virtio-rng (virtio 1.2 §5.4): one queue; every chain's writable buffers
 * are filled from getrandom() and returned at once.  Nothing is ever in
 * flight, so reset has nothing to wait for.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kickvm/log.h"
#include "kickvm/virtio_devices.h"

/* A request larger than this gets this much: the driver asks again. */
#define MAX_PER_REQUEST (64u << 10)

struct virtio_rng {
	struct virtq_elem elem;       /* popping, under vdev->lock */
	_Atomic uint64_t bytes;
};

/* Fill @len bytes at @p; returns how many were filled. */
static size_t fill(void *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = getrandom((uint8_t *)p + done, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	return done;
}

/* Fill the writable buffers of @e, up to MAX_PER_REQUEST; bytes written. */
static uint32_t fill_elem(const struct virtq_elem *e)
{
	uint32_t total = 0;

	for (unsigned i = e->nr_out; i < e->nr_out + e->nr_in && total < MAX_PER_REQUEST; i++) {
		uint32_t want = e->iov[i].len;
		size_t got;

		if (want > MAX_PER_REQUEST - total)
			want = MAX_PER_REQUEST - total;
		got = fill(e->iov[i].base, want);
		total += (uint32_t)got;
		if (got < want)
			break;   /* used len counts from the first writable byte */
	}
	return total;
}

static void rng_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	struct virtio_rng *rng = vdev->opaque;
	struct virtq *vq = &vdev->queues[0].vq;
	bool pushed = false;

	if (q != 0)
		return;
	/* (Without DMA the pops fail and the ring must not be touched.) */
	while (!vdev->broken && (vdev->status & VIRTIO_STATUS_DRIVER_OK) &&
	       vdev->queues[0].ready && !vdev->dma_off) {
		virtq_set_notification(vq, false);
		while (virtio_queue_pop(vdev, 0, &rng->elem) > 0) {
			uint32_t n = fill_elem(&rng->elem);

			atomic_fetch_add_explicit(&rng->bytes, n, memory_order_relaxed);
			virtio_queue_push(vdev, 0, rng->elem.head, n);
			pushed = true;
		}
		if (vdev->broken)
			break;
		/* Re-enable, then look again for a chain added meanwhile. */
		virtq_set_notification(vq, true);
		if (virtq_pending(vq) <= 0)
			break;
	}
	if (pushed)
		virtio_queue_notify_driver(vdev, 0);
}

static void rng_read_config(struct virtio_dev *vdev, uint32_t offset, void *buf, uint32_t len)
{
	(void)vdev;
	(void)offset;
	memset(buf, 0, len);          /* no device config */
}

static void rng_destroy(struct virtio_dev *vdev)
{
	free(vdev->opaque);
	vdev->opaque = NULL;
}

static const struct virtio_dev_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.nr_queues = 1,
	.queue_max = 256,
	.read_config = rng_read_config,
	.queue_notify = rng_queue_notify,
	.destroy = rng_destroy,
};

int virtio_rng_create(const struct guest_mem *mem, struct event_loop *loop,
		      struct virtio_dev **out)
{
	static _Atomic unsigned instances;
	struct virtio_dev *vdev = calloc(1, sizeof(*vdev));
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	char name[32];

	*out = NULL;
	if (!vdev || !rng) {
		free(vdev);
		free(rng);
		return -ENOMEM;
	}
	snprintf(name, sizeof(name), "virtio-rng%u", atomic_fetch_add(&instances, 1));
	virtio_dev_init(vdev, &rng_ops, rng, name, mem, loop);
	*out = vdev;
	return 0;
}

uint64_t virtio_rng_bytes(struct virtio_dev *vdev)
{
	if (!vdev || vdev->ops != &rng_ops || !vdev->opaque)
		return 0;
	return atomic_load(&((struct virtio_rng *)vdev->opaque)->bytes);
}
