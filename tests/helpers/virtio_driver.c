/* A mock driver's handshake with the virtio core (see virtio_driver.h). */
#include "virtio_driver.h"

uint8_t driver_start_queue0(struct virtio_dev *vdev, uint64_t features,
			    const struct driver_queue *q)
{
	struct virtio_queue *vq = &vdev->queues[0];

	virtio_set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	vdev->guest_features = features;
	virtio_set_status(vdev, vdev->status | VIRTIO_STATUS_FEATURES_OK);
	if (!(vdev->status & VIRTIO_STATUS_FEATURES_OK))
		return vdev->status;
	vq->size = q->size;
	vq->desc = q->desc;
	vq->driver = q->avail;
	vq->device = q->used;
	vq->vector = q->vector;
	vq->ready = true;
	vdev->config_vector = q->config_vector;
	return virtio_set_status(vdev, vdev->status | VIRTIO_STATUS_DRIVER_OK);
}
