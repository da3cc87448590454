/*
 * virtio-blk driver (virtio 1.2 §5.2): one request queue, a fixed set of
 * request slots (header, status, segment and indirect table each), several
 * requests in flight.  A request is header (device reads) + data + status
 * byte (device writes): three descriptors, or one pointing at the slot's
 * indirect table.  All at CPL3.
 */
#include "guest.h"
#include "virtio.h"

/* Device configuration offsets (§5.2.4). */
#define CFG_CAPACITY        0
#define CFG_SIZE_MAX        8
#define CFG_SEG_MAX         12
#define CFG_BLK_SIZE        20
#define CFG_MAX_DISCARD     36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_DISCARD_ALIGN   44
#define CFG_MAX_WZ          48
#define CFG_MAX_WZ_SEG      52
#define CFG_WZ_MAY_UNMAP    56

#define STATUS_PENDING      0xff    /* never a status the device writes */

static uint32_t cfg_if(struct vblk *b, unsigned feature, uint32_t off, unsigned size)
{
	return virtio_has(&b->vd, feature) ? virtio_cfg_read(&b->vd, off, size) : 0;
}

int vblk_init(struct vblk *b, struct pci_dev *d, const struct virtio_opts *o)
{
	bool again = b->slots != NULL;

	if (!again) {
		memset(b, 0, sizeof(*b));
		if (virtio_pci_probe(&b->vd, d) || b->vd.type != VIRTIO_ID_BLOCK)
			return -1;
	}
	if (virtio_init(&b->vd, VBLK_WANT, 1, o))
		return -1;

	b->capacity = virtio_cfg_read64(&b->vd, CFG_CAPACITY);
	b->size_max = cfg_if(b, VIRTIO_BLK_F_SIZE_MAX, CFG_SIZE_MAX, 4);
	b->seg_max = cfg_if(b, VIRTIO_BLK_F_SEG_MAX, CFG_SEG_MAX, 4);
	b->blk_size = cfg_if(b, VIRTIO_BLK_F_BLK_SIZE, CFG_BLK_SIZE, 4);
	if (!b->blk_size)
		b->blk_size = VBLK_SECTOR;
	b->max_discard_sectors = cfg_if(b, VIRTIO_BLK_F_DISCARD, CFG_MAX_DISCARD, 4);
	b->max_discard_seg = cfg_if(b, VIRTIO_BLK_F_DISCARD, CFG_MAX_DISCARD_SEG, 4);
	b->discard_align = cfg_if(b, VIRTIO_BLK_F_DISCARD, CFG_DISCARD_ALIGN, 4);
	b->max_wz_sectors = cfg_if(b, VIRTIO_BLK_F_WRITE_ZEROES, CFG_MAX_WZ, 4);
	b->max_wz_seg = cfg_if(b, VIRTIO_BLK_F_WRITE_ZEROES, CFG_MAX_WZ_SEG, 4);
	b->wz_may_unmap = cfg_if(b, VIRTIO_BLK_F_WRITE_ZEROES, CFG_WZ_MAY_UNMAP, 1) != 0;

	/* A direct request takes three descriptors: the slots must fit both ways. */
	b->nr_slots = b->vd.vq[0].size / 3;
	if (b->nr_slots > VBLK_MAX_SLOTS)
		b->nr_slots = VBLK_MAX_SLOTS;
	if (b->nr_slots == 0)
		return -1;
	if (!again)
		b->slots = page_alloc((VBLK_MAX_SLOTS * sizeof(struct vblk_req) + 4095) / 4096);
	else
		memset(b->slots, 0, VBLK_MAX_SLOTS * sizeof(struct vblk_req));
	b->busy = 0;
	vblk_use_indirect(b, b->indirect);
	return 0;
}

bool vblk_use_indirect(struct vblk *b, bool on)
{
	b->indirect = on && virtio_has(&b->vd, VIRTIO_F_INDIRECT_DESC);
	return b->indirect;
}

void vblk_reset(struct vblk *b)
{
	virtio_reset(&b->vd);
	/* Whatever was in flight will never complete: forget it. */
	for (unsigned i = 0; i < b->nr_slots; i++)
		b->slots[i].busy = false;
	b->busy = 0;
}

struct vblk_req *vblk_alloc(struct vblk *b)
{
	for (unsigned i = 0; i < b->nr_slots; i++) {
		struct vblk_req *r = &b->slots[i];

		if (!r->busy) {
			r->busy = true;
			b->busy++;
			return r;
		}
	}
	return NULL;
}

/* Chain @n buffers for @r, indirect when asked and negotiated. */
static struct vblk_req *queue_req(struct vblk *b, struct vblk_req *r,
				  const struct virtq_buf *bufs, unsigned n)
{
	struct virtq *vq = &b->vd.vq[0];
	int head;

	r->status = STATUS_PENDING;
	r->written = 0;
	if (b->indirect)
		head = virtq_add_indirect(vq, r->table, bufs, n, r);
	else
		head = virtq_add(vq, bufs, n, r);
	if (head < 0) {
		r->busy = false;
		b->busy--;
		return NULL;
	}
	b->requests++;
	return r;
}

struct vblk_req *vblk_queue(struct vblk *b, struct vblk_req *r, uint32_t type, uint64_t sector,
			    void *buf, uint32_t len)
{
	struct virtq_buf bufs[3];
	unsigned n = 0;

	r->hdr.type = type;
	r->hdr.reserved = 0;
	r->hdr.sector = sector;
	bufs[n++] = (struct virtq_buf){ &r->hdr, sizeof(r->hdr), false };
	if (len)
		bufs[n++] = (struct virtq_buf){ buf, len, type != VIRTIO_BLK_T_OUT };
	bufs[n++] = (struct virtq_buf){ (const void *)&r->status, 1, true };
	return queue_req(b, r, bufs, n);
}

struct vblk_req *vblk_submit(struct vblk *b, uint32_t type, uint64_t sector, void *buf,
			     uint32_t len)
{
	struct vblk_req *r = vblk_alloc(b);

	return r ? vblk_queue(b, r, type, sector, buf, len) : NULL;
}

struct vblk_req *vblk_submit_range(struct vblk *b, uint32_t type, uint64_t sector,
				   uint32_t nsectors, uint32_t flags)
{
	struct vblk_req *r = vblk_alloc(b);
	struct virtq_buf bufs[3];

	if (!r)
		return NULL;
	r->hdr.type = type;
	r->hdr.reserved = 0;
	r->hdr.sector = 0;      /* the segment carries the range */
	r->seg.sector = sector;
	r->seg.num_sectors = nsectors;
	r->seg.flags = flags;
	bufs[0] = (struct virtq_buf){ &r->hdr, sizeof(r->hdr), false };
	bufs[1] = (struct virtq_buf){ &r->seg, sizeof(r->seg), false };
	bufs[2] = (struct virtq_buf){ (const void *)&r->status, 1, true };
	return queue_req(b, r, bufs, 3);
}

bool vblk_kick(struct vblk *b)
{
	return virtq_kick(&b->vd.vq[0]);
}

struct vblk_req *vblk_poll(struct vblk *b)
{
	uint32_t len;
	struct vblk_req *r = virtq_get_used(&b->vd.vq[0], &len);

	if (!r)
		return NULL;
	r->written = len;
	if (r->status == STATUS_PENDING)
		GUEST_FAIL("virtio-blk: request of type %u at sector %llu used without a status",
			   r->hdr.type, (unsigned long long)r->hdr.sector);
	if (r->status != VIRTIO_BLK_S_OK)
		b->errors++;
	return r;
}

struct vblk_req *vblk_wait(struct vblk *b)
{
	struct vblk_req *r;

	while (!(r = vblk_poll(b)))
		virtq_wait(&b->vd.vq[0]);
	return r;
}

void vblk_release(struct vblk *b, struct vblk_req *r)
{
	if (!r->busy)
		GUEST_FAIL("virtio-blk: releasing a free request slot");
	r->busy = false;
	b->busy--;
}

static uint8_t finish(struct vblk *b, struct vblk_req *r)
{
	struct virtq *vq = &b->vd.vq[0];
	uint64_t irqs = virtq_interrupts(vq);
	struct vblk_req *done;
	uint8_t status;

	if (!r)
		GUEST_FAIL("virtio-blk: no free request slot for a synchronous request");
	vblk_kick(b);
	/* The interrupt before the harvest: harvesting moves used_event past
	 * the entry, and a device that looks at used_event after that (a
	 * polling device can be that quick) rightly sends none (§2.7.10). */
	virtq_wait_irq_after(vq, irqs);
	done = vblk_wait(b);
	if (done != r)
		GUEST_FAIL("virtio-blk: a request completed that was not in flight");
	status = r->status;
	vblk_release(b, r);
	return status;
}

uint8_t vblk_rw(struct vblk *b, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	return finish(b, vblk_submit(b, type, sector, buf, len));
}

uint8_t vblk_range(struct vblk *b, uint32_t type, uint64_t sector, uint32_t nsectors,
		   uint32_t flags)
{
	return finish(b, vblk_submit_range(b, type, sector, nsectors, flags));
}
