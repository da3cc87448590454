/*
 * The transport-independent virtio core: feature negotiation, the device
 * status state machine (virtio 1.2 §2.1, §3.1), and queue operations that
 * turn a malformed ring into a device that needs reset.
 *
 * Locking: every function here except virtio_dev_init/cleanup and
 * virtio_has_feature expects vdev->lock held by its caller (the transport on
 * a register access, the device's handler on queue work).  Nothing here takes
 * it, so a device's callbacks can call back in freely.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/virtio.h"
#include "kickvm/virtio_devices.h"

#define VIRTIO_ISR_QUEUE  1
#define VIRTIO_ISR_CONFIG 2

static uint64_t bit(unsigned b) { return 1ull << b; }

/* Queues' state as after reset: not ready, no vector, the largest size
 * offered (what queue_size reads before the driver writes it).  The host
 * notifier and the counters belong to the transport and to stats: kept. */
static void reset_queues(struct virtio_dev *vdev)
{
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtio_queue *q = &vdev->queues[i];

		memset(&q->vq, 0, sizeof(q->vq));
		q->size = i < vdev->ops->nr_queues ? vdev->ops->queue_max : 0;
		q->ready = false;
		atomic_store(&q->starved, false);
		q->vector = VIRTIO_NO_VECTOR;
		q->desc = q->driver = q->device = 0;
	}
}

void virtio_dev_init(struct virtio_dev *vdev, const struct virtio_dev_ops *ops, void *opaque,
		     const char *name, const struct guest_mem *mem, struct event_loop *loop)
{
	memset(vdev, 0, sizeof(*vdev));
	vdev->ops = ops;
	vdev->opaque = opaque;
	snprintf(vdev->name, sizeof(vdev->name), "%s", name ? name : ops->name);
	vdev->mem = mem;
	vdev->loop = loop;
	pthread_mutex_init(&vdev->lock, NULL);
	vdev->host_features = ops->features | bit(VIRTIO_F_VERSION_1) |
			      bit(VIRTIO_F_RING_EVENT_IDX) | bit(VIRTIO_F_RING_INDIRECT_DESC);
	vdev->config_vector = VIRTIO_NO_VECTOR;
	/* The transport creates the host notifiers; until then "none". */
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vdev->queues[i].notifier.fd = -1;
	reset_queues(vdev);
}

void virtio_dev_cleanup(struct virtio_dev *vdev)
{
	pthread_mutex_destroy(&vdev->lock);
}

bool virtio_has_feature(const struct virtio_dev *vdev, unsigned b)
{
	return b < 64 && (vdev->guest_features & bit(b));
}

void virtio_reset(struct virtio_dev *vdev)
{
	/* The model first: it must stop touching the rings before we forget
	 * where they are. */
	if (vdev->ops->reset)
		vdev->ops->reset(vdev);
	vdev->guest_features = 0;
	vdev->status = 0;
	vdev->isr = 0;
	vdev->config_vector = VIRTIO_NO_VECTOR;
	vdev->broken = false;
	vdev->config_irq_held = false;
	/* config_generation is not reset: a driver comparing it across the
	 * reset must still see a change if the config changed. */
	reset_queues(vdev);
}

/* Send the config change interrupt, or keep it for when DMA is back. */
static void config_interrupt(struct virtio_dev *vdev)
{
	if (vdev->dma_off)
		vdev->config_irq_held = true;
	else if (vdev->transport && vdev->transport->notify)
		vdev->transport->notify(vdev, vdev->config_vector);
}

void virtio_dev_set_broken(struct virtio_dev *vdev, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	if (vdev->broken)
		return;                  /* said once; the first reason is the cause */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error_rl(vdev->name, "%s; device needs reset", msg);
	memcpy(vdev->broken_reason, msg, sizeof(vdev->broken_reason));
	__atomic_store_n(&vdev->broken, true, __ATOMIC_RELEASE);
	__atomic_fetch_add(&vdev->times_broken, 1, __ATOMIC_RELEASE);
	vdev->status |= VIRTIO_STATUS_NEEDS_RESET;
	vdev->config_generation++;
	vdev->isr |= VIRTIO_ISR_CONFIG;
	/* §2.1.2: after NEEDS_RESET a device with DRIVER_OK must send a config
	 * change notification; before DRIVER_OK it must send none. */
	if (vdev->status & VIRTIO_STATUS_DRIVER_OK)
		config_interrupt(vdev);
}

/* May the driver have FEATURES_OK with what it accepted? */
static bool features_ok(struct virtio_dev *vdev)
{
	uint64_t f = vdev->guest_features;

	if (f & ~vdev->host_features) {
		log_warn_rl(vdev->name, "driver accepted features %#" PRIx64 " that were not offered",
			 f & ~vdev->host_features);
		return false;
	}
	if (!(f & bit(VIRTIO_F_VERSION_1))) {
		/* Legacy (0.9) drivers are not supported. */
		log_warn_rl(vdev->name, "driver did not accept VIRTIO_F_VERSION_1");
		return false;
	}
	if (vdev->ops->validate_features && !vdev->ops->validate_features(vdev, f)) {
		log_warn_rl(vdev->name, "device refused features %#" PRIx64, f);
		return false;
	}
	return true;
}

/* DRIVER_OK: turn every ready queue's registers into a live virtq. */
static void start_queues(struct virtio_dev *vdev)
{
	bool event_idx = virtio_has_feature(vdev, VIRTIO_F_RING_EVENT_IDX);
	bool indirect = virtio_has_feature(vdev, VIRTIO_F_RING_INDIRECT_DESC);
	unsigned nr = vdev->ops->nr_queues < VIRTIO_MAX_QUEUES ? vdev->ops->nr_queues
							       : VIRTIO_MAX_QUEUES;

	for (unsigned i = 0; i < nr; i++) {
		struct virtio_queue *q = &vdev->queues[i];

		if (!q->ready)
			continue;
		if (q->size > vdev->ops->queue_max) {
			virtio_dev_set_broken(vdev, "queue %u: size %u above the maximum %u", i,
					      q->size, vdev->ops->queue_max);
			return;
		}
		if (virtq_init(&q->vq, vdev->mem, q->size, q->desc, q->driver, q->device,
			       event_idx, indirect) < 0) {
			virtio_dev_set_broken(vdev, "queue %u: %s", i, q->vq.error);
			return;
		}
	}
}

uint8_t virtio_set_status(struct virtio_dev *vdev, uint8_t status)
{
	uint8_t old = vdev->status;
	uint8_t added = status & ~old;

	if (status == 0) {
		virtio_reset(vdev);
		return vdev->status;
	}
	/* NEEDS_RESET is the device's to set and only a reset clears it. */
	status = (status & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET);

	/* Only a reset clears bits (§2.1.2).  Clearing DRIVER_OK and setting
	 * it again would restart the rings at index 0 with requests of the
	 * same generation in flight (chains run twice, late completions in
	 * the new ring); clearing FEATURES_OK would reopen the features under
	 * a running device.  Refused: the status stays, the device needs reset
	 * (which waits for what is in flight). */
	if (old & ~status & ~VIRTIO_STATUS_NEEDS_RESET) {
		virtio_dev_set_broken(vdev, "driver cleared status bits %#x without a reset",
				      old & ~status & ~VIRTIO_STATUS_NEEDS_RESET);
		return vdev->status;
	}
	/* Left clear on refusal: the driver reads it back and gives up. */
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !features_ok(vdev)) {
		status &= ~VIRTIO_STATUS_FEATURES_OK;
		added &= ~VIRTIO_STATUS_FEATURES_OK;
	}
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_FEATURES_OK)) {
		/* A 1.x device cannot run without negotiated features. */
		vdev->status = status & ~VIRTIO_STATUS_DRIVER_OK;
		virtio_dev_set_broken(vdev, "DRIVER_OK set without FEATURES_OK");
		return vdev->status;
	}
	/* Stored before the queues start, so that a queue that turns out
	 * broken raises the config notification DRIVER_OK calls for. */
	vdev->status = status;
	if (added & VIRTIO_STATUS_DRIVER_OK) {
		start_queues(vdev);
		if (!vdev->broken && vdev->ops->start)
			vdev->ops->start(vdev);
	}
	/* Any other change (setting FAILED) is recorded as written. */
	return vdev->status;
}

void virtio_set_dma(struct virtio_dev *vdev, bool allowed)
{
	pthread_mutex_lock(&vdev->lock);
	if (vdev->dma_off != allowed) {
		pthread_mutex_unlock(&vdev->lock);
		return;
	}
	vdev->dma_off = !allowed;
	if (allowed) {
		if (vdev->ops->dma_start)
			vdev->ops->dma_start(vdev);
		/* Used entries pushed just before DMA went off may not have
		 * had their interrupt yet: each queue is looked at once. */
		for (unsigned q = 0; q < vdev->ops->nr_queues && q < VIRTIO_MAX_QUEUES; q++)
			virtio_queue_notify_driver(vdev, q);
		if (vdev->config_irq_held) {
			vdev->config_irq_held = false;
			config_interrupt(vdev);
		}
	}
	pthread_mutex_unlock(&vdev->lock);
	/* Without the lock: the transfers' completions take it to be held. */
	if (!allowed && vdev->ops->dma_stop)
		vdev->ops->dma_stop(vdev);
}

/* The queue @q if it exists, else NULL. */
static struct virtio_queue *queue(struct virtio_dev *vdev, unsigned q)
{
	if (q >= vdev->ops->nr_queues || q >= VIRTIO_MAX_QUEUES)
		return NULL;
	return &vdev->queues[q];
}

static bool live(const struct virtio_dev *vdev)
{
	return !vdev->broken && (vdev->status & VIRTIO_STATUS_DRIVER_OK) && !vdev->dma_off;
}

int virtio_queue_pop(struct virtio_dev *vdev, unsigned q, struct virtq_elem *elem)
{
	struct virtio_queue *vq = queue(vdev, q);
	int ret;

	if (!vq)
		return -EINVAL;
	if (!live(vdev))
		return -EIO;             /* (without DMA: nothing popped, not broken) */
	if (!vq->ready)
		return 0;                /* a disabled queue has nothing to give */
	ret = virtq_pop(&vq->vq, elem);
	if (ret == -EIO)
		virtio_dev_set_broken(vdev, "queue %u: %s", q,
				      vq->vq.error ? vq->vq.error : "not set up at DRIVER_OK");
	return ret;
}

int virtio_queue_push(struct virtio_dev *vdev, unsigned q, uint16_t head, uint32_t written)
{
	struct virtio_queue *vq = queue(vdev, q);

	if (!vq)
		return -EINVAL;
	/* After a reset or a break the rings are not ours to write. */
	if (!live(vdev) || !vq->ready)
		return -EIO;
	return virtq_push(&vq->vq, head, written);
}

void virtio_queue_notify_driver(struct virtio_dev *vdev, unsigned q)
{
	struct virtio_queue *vq = queue(vdev, q);

	if (!vq || !live(vdev) || !vq->ready || !virtq_should_notify(&vq->vq))
		return;
	vdev->isr |= VIRTIO_ISR_QUEUE;
	atomic_fetch_add(&vq->interrupts, 1);
	if (vdev->transport && vdev->transport->notify)
		vdev->transport->notify(vdev, vq->vector);
}

/* Devices are heap-allocated by their create functions (virtio_devices.h). */
void virtio_dev_destroy(struct virtio_dev *vdev)
{
	if (!vdev)
		return;
	if (vdev->ops->destroy)
		vdev->ops->destroy(vdev);
	virtio_dev_cleanup(vdev);
	free(vdev);
}
