/*
 * virtio devices, transport-independent: feature negotiation, the device
 * status state machine, queues and their notifications.  A device model is
 * an ops table; the transport (virtio-pci) owns the registers and the host
 * notifiers; the device owns what it does with its queues.
 *
 * Threading: queue work runs in the device's event loop (its iothread, or the
 * main loop), never on a vCPU thread unless the device was configured with
 * ioeventfd=off — then a notify is handled on the vCPU thread that wrote it.
 * vdev->lock serialises transport register accesses with queue work.
 */
#ifndef KICKVM_VIRTIO_H
#define KICKVM_VIRTIO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include "event.h"
#include "virtqueue.h"

struct guest_mem;

/* Feature bits (virtio 1.2 §6). */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX     29
#define VIRTIO_F_VERSION_1          32
#define VIRTIO_F_ACCESS_PLATFORM    33

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE  1
#define VIRTIO_STATUS_DRIVER       2
#define VIRTIO_STATUS_DRIVER_OK    4
#define VIRTIO_STATUS_FEATURES_OK  8
#define VIRTIO_STATUS_NEEDS_RESET  64
#define VIRTIO_STATUS_FAILED       128

#define VIRTIO_ID_BLOCK  2
#define VIRTIO_ID_RNG    4

#define VIRTIO_MAX_QUEUES    16
#define VIRTIO_NO_VECTOR     0xffff

struct virtio_dev;

struct virtio_dev_ops {
	const char *name;              /* "virtio-blk" */
	uint16_t device_id;            /* VIRTIO_ID_* */
	uint64_t features;             /* device-specific bits offered */
	unsigned nr_queues;
	uint16_t queue_max;            /* largest queue size offered */
	uint32_t config_size;          /* bytes of device config */
	/* Read @len bytes of device config at @offset (bounds checked by
	 * the caller). */
	void (*read_config)(struct virtio_dev *vdev, uint32_t offset, void *buf, uint32_t len);
	/* Optional; writes outside writable fields are ignored by the device. */
	void (*write_config)(struct virtio_dev *vdev, uint32_t offset, const void *buf, uint32_t len);
	/* Optional: refuse a feature combination at FEATURES_OK (return false). */
	bool (*validate_features)(struct virtio_dev *vdev, uint64_t features);
	/* Queue @q has (or may have) work. Runs in vdev->loop's thread (or a
	 * vCPU thread with ioeventfd=off) with vdev->lock held. */
	void (*queue_notify)(struct virtio_dev *vdev, unsigned q);
	/* DRIVER_OK was set: queues are live. Optional; lock held. */
	void (*start)(struct virtio_dev *vdev);
	/* The device is being reset: forget in-flight work (wait for it, or
	 * make sure its completion will not touch the rings). Lock held. */
	void (*reset)(struct virtio_dev *vdev);
	/* Free the model's state (vdev->opaque). */
	void (*destroy)(struct virtio_dev *vdev);
	/* Optional (virtio_set_dma()).  DMA was just forbidden: return once no
	 * data transfer started before can touch guest memory any more, and
	 * hold the completions that come in meanwhile.  Called WITHOUT
	 * vdev->lock, since those completions take it. */
	void (*dma_stop)(struct virtio_dev *vdev);
	/* Optional.  DMA allowed again: deliver what was held, take up the
	 * queues again.  Lock held. */
	void (*dma_start)(struct virtio_dev *vdev);
};

struct virtio_queue {
	struct virtq vq;               /* valid while ready */
	uint16_t size;                 /* as the driver set it */
	bool ready;                    /* queue_enable written 1 */
	uint16_t vector;               /* MSI-X vector */
	uint64_t desc, driver, device; /* ring addresses as written */
	/* host notifier (ioeventfd) */
	struct event_notifier notifier;
	bool notifier_active;
	/* Set by the model when it left chains in the ring for want of
	 * resources (free requests) and will resume the queue itself once
	 * some free up: those chains are no work for a poller, or the
	 * event loop would spin on a queue nobody can take from. */
	atomic_bool starved;
	_Atomic uint64_t notifies;     /* notifications handled */
	_Atomic uint64_t polled;       /* of those, requests found by polling */
	_Atomic uint64_t interrupts;   /* used-buffer interrupts raised */
	/* Doorbell accounting by path (the transport keeps it): */
	_Atomic uint64_t signals;      /* notifier signals consumed, kicks included */
	_Atomic uint64_t fallback;     /* of those, from the userspace fallback
				        * (added when the notifier stops) */
	_Atomic uint64_t kicks;        /* the transport's own kicks at start */
	_Atomic uint64_t trapped;      /* doorbell writes served without a notifier */
};

struct virtio_transport_ops {
	/* Interrupt the driver for @vector (MSI-X). */
	void (*notify)(struct virtio_dev *vdev, uint16_t vector);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *opaque;                  /* the device model's state */
	char name[32];                 /* for logs: "virtio-blk0" */
	const struct guest_mem *mem;
	struct event_loop *loop;       /* where queue work runs */
	pthread_mutex_t lock;

	uint64_t host_features;        /* offered: ops->features + transport's */
	uint64_t guest_features;       /* accepted by the driver */
	uint8_t status;
	uint8_t config_generation;
	uint8_t isr;
	uint16_t config_vector;
	struct virtio_queue queues[VIRTIO_MAX_QUEUES];

	const struct virtio_transport_ops *transport;
	void *transport_opaque;
	bool broken;                   /* NEEDS_RESET set */
	bool dma_off;                  /* virtio_set_dma(): guest memory is off limits */
	bool config_irq_held;          /* a config interrupt due while dma_off */
	char broken_reason[160];       /* why, set before @broken */
	uint32_t times_broken;         /* breakages so far (atomic): a watcher that
					* looks now and then misses none */
};

/* Initialise @vdev for @ops (offered features: ops->features | VERSION_1 |
 * RING_EVENT_IDX | RING_INDIRECT_DESC). */
void virtio_dev_init(struct virtio_dev *vdev, const struct virtio_dev_ops *ops, void *opaque,
		     const char *name, const struct guest_mem *mem, struct event_loop *loop);
void virtio_dev_cleanup(struct virtio_dev *vdev);

/* Status write as the driver makes it (transport calls, lock held):
 * checks FEATURES_OK (driver may only accept offered features, VERSION_1
 * required; otherwise FEATURES_OK stays clear), sets up the virtqs at
 * DRIVER_OK, resets on 0.  Only a reset clears bits: a write that clears
 * one (DRIVER_OK, FEATURES_OK, ...) is refused, the status kept, and the
 * device set NEEDS_RESET.  Returns the new status. */
uint8_t virtio_set_status(struct virtio_dev *vdev, uint8_t status);
void virtio_reset(struct virtio_dev *vdev);
bool virtio_has_feature(const struct virtio_dev *vdev, unsigned bit);

/*
 * The transport allows or forbids the device's access to guest memory (PCI:
 * Bus Master Enable).  While forbidden the device touches no guest memory
 * and raises no interrupt (an MSI-X message is a memory write too): no chain
 * is taken, no status byte or used entry written, no notification state
 * changed.  Data transfers already started are waited for before this
 * returns, so they land before the driver's write that forbade DMA
 * completes, as a DMA already under way would; their completions are held
 * and delivered, with their interrupts, once DMA is allowed again — or
 * dropped by a reset meanwhile, like everything in flight at a reset.
 * Starts allowed.  Call without vdev->lock; the caller serialises calls for
 * one device (and with resets).
 */
void virtio_set_dma(struct virtio_dev *vdev, bool allowed);

/* Something the driver did is malformed: log it (once), set NEEDS_RESET,
 * raise a config interrupt; the device processes nothing more until reset. */
void virtio_dev_set_broken(struct virtio_dev *vdev, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Return @head with @written bytes to queue @q, without notifying. */
int virtio_queue_push(struct virtio_dev *vdev, unsigned q, uint16_t head, uint32_t written);
/* After a batch of pushes: interrupt the driver if the ring says so. */
void virtio_queue_notify_driver(struct virtio_dev *vdev, unsigned q);
/* Pop on queue @q; a malformed chain breaks the device (returns -EIO). */
int virtio_queue_pop(struct virtio_dev *vdev, unsigned q, struct virtq_elem *elem);

#endif
