/*
 * The driver's side of the virtio core, for device tests that leave the
 * transport out (test_virtio_blk, fuzz_virtio_blk): the status and feature
 * handshake and queue 0's set-up, written straight into struct virtio_dev
 * the way the transport would on the driver's register writes.
 */
#ifndef KICKVM_TEST_VIRTIO_DRIVER_H
#define KICKVM_TEST_VIRTIO_DRIVER_H

#include <stdint.h>

#include "kickvm/virtio.h"

/* Where the driver put queue 0, and the vectors it chose. */
struct driver_queue {
	uint16_t size;
	uint64_t desc, avail, used;              /* guest-physical */
	uint16_t vector, config_vector;
};

/*
 * From reset to DRIVER_OK as a driver goes: ACKNOWLEDGE | DRIVER, accept
 * @features, FEATURES_OK; unless the device refused the features, queue 0
 * on @q, then DRIVER_OK.  Call with vdev->lock held.  Returns the device's
 * status at the end, for the caller to check.
 */
uint8_t driver_start_queue0(struct virtio_dev *vdev, uint64_t features,
			    const struct driver_queue *q);

#endif
