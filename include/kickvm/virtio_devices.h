/*
 * The virtio device models: each returns a virtio_dev ready for a transport
 * (virtio_pci_create()).  virtio_dev_destroy() frees one.
 */
#ifndef KICKVM_VIRTIO_DEVICES_H
#define KICKVM_VIRTIO_DEVICES_H

#include "block.h"
#include "virtio.h"

/* virtio-blk device config features we offer (virtio 1.2 §5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX      1
#define VIRTIO_BLK_F_SEG_MAX       2
#define VIRTIO_BLK_F_RO            5
#define VIRTIO_BLK_F_BLK_SIZE      6
#define VIRTIO_BLK_F_FLUSH         9
#define VIRTIO_BLK_F_DISCARD       13
#define VIRTIO_BLK_F_WRITE_ZEROES  14

#define VIRTIO_BLK_T_IN            0
#define VIRTIO_BLK_T_OUT           1
#define VIRTIO_BLK_T_FLUSH         4
#define VIRTIO_BLK_T_GET_ID        8
#define VIRTIO_BLK_T_DISCARD       11
#define VIRTIO_BLK_T_WRITE_ZEROES  13
#define VIRTIO_BLK_S_OK            0
#define VIRTIO_BLK_S_IOERR         1
#define VIRTIO_BLK_S_UNSUPP        2
#define VIRTIO_BLK_ID_BYTES        20

struct virtio_blk_opts {
	const char *file;
	const char *serial;            /* GET_ID answer; default: file's basename */
	struct blk_opts blk;
};

int virtio_blk_create(const struct guest_mem *mem, struct event_loop *loop,
		      const struct virtio_blk_opts *opts, struct virtio_dev **out);
/* Requests by type and errors, for stats and tests. */
struct virtio_blk_stats {
	uint64_t reads, writes, flushes, get_ids, discards, write_zeroes;
	uint64_t unsupported, io_errors, bytes_read, bytes_written;
	const char *aio;                /* the backend's engine */
	bool inline_io;                 /* and buffered I/O inline where quick */
	struct blk_stats backend;       /* where its reads and writes were served */
};
void virtio_blk_get_stats(struct virtio_dev *vdev, struct virtio_blk_stats *out);

int virtio_rng_create(const struct guest_mem *mem, struct event_loop *loop,
		      struct virtio_dev **out);
uint64_t virtio_rng_bytes(struct virtio_dev *vdev);

/* ops->destroy, virtio_dev_cleanup, free. NULL is fine. */
void virtio_dev_destroy(struct virtio_dev *vdev);

#endif
