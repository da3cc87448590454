/*
 * Guest-side virtio over modern PCI (virtio 1.2 §2, §4.1): the transport
 * (virtio_pci.c), split virtqueues (virtq.c) and two device drivers
 * (virtio_blk.c, virtio_rng.c).
 *
 * Everything here runs at CPL3 (run_user()): registers are MMIO, rings are
 * RAM, a notify is one MMIO write.  The only CPL0 parts are the interrupt
 * vectors (irq_set_counter(): count + EOI) and routing them once at set-up.
 *
 * Nothing is assumed about where the device puts its structures: the
 * driver walks the vendor capabilities and takes BAR, offset and the
 * notify multiplier from them, so QEMU's layouts and kickvm's both work.
 */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "pci.h"

#define VIRTIO_PCI_VENDOR          0x1af4
#define VIRTIO_ID_BLOCK            2
#define VIRTIO_ID_RNG              4

/* Feature bits (§6). */
#define VIRTIO_F_INDIRECT_DESC     28
#define VIRTIO_F_EVENT_IDX         29
#define VIRTIO_F_VERSION_1         32
#define VIRTIO_BIT(b)              (1ull << (b))

/* Device status (§2.1). */
#define VIRTIO_S_ACKNOWLEDGE       1
#define VIRTIO_S_DRIVER            2
#define VIRTIO_S_DRIVER_OK         4
#define VIRTIO_S_FEATURES_OK       8
#define VIRTIO_S_NEEDS_RESET       64
#define VIRTIO_S_FAILED            128

#define VIRTIO_NO_VECTOR           0xffff
#define VIRTIO_MAX_QUEUES          4
#define VIRTIO_QUEUE_SIZE_MAX      1024

/* ---- split virtqueue (§2.7) ---------------------------------------------------- */
#define VRING_DESC_F_NEXT          1
#define VRING_DESC_F_WRITE         2
#define VRING_DESC_F_INDIRECT      4
#define VRING_USED_F_NO_NOTIFY     1
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vring_avail {
	uint16_t flags, idx;
	uint16_t ring[];        /* [size], then used_event */
};

struct vring_used_elem {
	uint32_t id, len;
};

struct vring_used {
	uint16_t flags, idx;
	struct vring_used_elem ring[];   /* [size], then avail_event */
};

/* One buffer of a chain.  Readable (driver-to-device) buffers come first. */
struct virtq_buf {
	const void *addr;
	uint32_t len;
	bool device_writes;
};

struct virtq {
	uint16_t index, size;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	void **token;           /* per head: what virtq_get_used() returns */
	uint16_t free_head, num_free;
	uint16_t avail_idx;     /* the driver's next avail index (published by kick) */
	uint16_t kicked_idx;    /* avail index at the last notify decision */
	uint16_t last_used;
	bool event_idx;
	uint64_t doorbell;      /* MMIO address of this queue's notify register */
	uint8_t irq_vector;     /* APIC vector; 0: polled, no interrupts asked */
	uint16_t msix_entry;
	uint64_t irq_seen;      /* irq_count(irq_vector) already waited for */
	/* Counters (kept across a device reset). */
	uint64_t added, kicks, notifies, completions, waits;
};

/* Add a chain of @n buffers (readable first) with @token; returns the head,
 * or -1 when the ring has no room (nothing is added then). */
int virtq_add(struct virtq *vq, const struct virtq_buf *bufs, unsigned n, void *token);
/* The same chain in @table (driver memory, 16-byte aligned, @n entries),
 * taking one ring descriptor.  Needs VIRTIO_F_INDIRECT_DESC. */
int virtq_add_indirect(struct virtq *vq, struct vring_desc *table,
		       const struct virtq_buf *bufs, unsigned n, void *token);
/* Make added chains visible and ring the doorbell if the device asked
 * for it (EVENT_IDX avail_event, or no VRING_USED_F_NO_NOTIFY).  Returns
 * whether it rang. */
bool virtq_kick(struct virtq *vq);
/* The next used chain's token (its written length in *@len), or NULL. */
void *virtq_get_used(struct virtq *vq, uint32_t *len);
bool virtq_has_used(const struct virtq *vq);
/* Block until there may be a used chain: polled, spin on the used index;
 * with interrupts (always armed: used_event = last used, or flags 0), spin
 * at CPL3 until this queue's interrupt counter moves.  Fails the guest
 * after VIRTQ_TIMEOUT_CYCLES without progress. */
void virtq_wait(struct virtq *vq);
/* Interrupts counted on this queue's vector. */
uint64_t virtq_interrupts(const struct virtq *vq);
/* With interrupts: wait until the count passes @before (the count taken
 * before a lone request went out), so that a synchronous request also
 * consumes its own interrupt and none is left in flight for the next. */
void virtq_wait_irq_after(struct virtq *vq, uint64_t before);

#define VIRTQ_TIMEOUT_CYCLES 30000000000ull   /* ~10 s at 3 GHz */

/* Full barrier between publishing an index and reading the other side's
 * event index (store-load: the one order x86 does not keep). */
static inline void virtio_mb(void)
{
	__asm__ volatile("lock; addl $0, (%%rsp)" ::: "memory", "cc");
}

/* ---- the device and its transport -------------------------------------------------- */

struct virtio_opts {
	bool irq;               /* MSI-X interrupts per queue; else polled */
	uint32_t apic_id;       /* where interrupts go (x2APIC id) */
	uint16_t queue_size;    /* upper bound; 0: VIRTIO_QUEUE_SIZE_MAX */
	bool no_event_idx;      /* refuse VIRTIO_F_EVENT_IDX */
	bool no_indirect;       /* refuse VIRTIO_F_INDIRECT_DESC */
};

struct virtio_dev {
	struct pci_dev *pci;
	uint16_t type;          /* VIRTIO_ID_* */
	uint64_t common, isr, device_cfg, notify;  /* structure addresses */
	uint32_t device_cfg_len, notify_len, notify_mult;
	struct pci_msix msix;
	bool has_msix, msix_on;
	uint8_t config_vector;  /* APIC vector of config changes (irq mode) */
	struct virtio_opts opts;
	uint64_t offered, features;
	uint16_t num_queues;    /* as the device reports */
	unsigned nr_vqs;
	struct virtq vq[VIRTIO_MAX_QUEUES];
	void *ring_mem[VIRTIO_MAX_QUEUES];  /* kept over a reset, reused */
	uint16_t ring_size[VIRTIO_MAX_QUEUES];
	uint64_t resets;
};

/* The virtio device type of PCI function @d (VIRTIO_ID_*), 0 if it is no
 * virtio device: modern ids are 0x1040 + type, transitional ones
 * (0x1000-0x103f) carry the type in the subsystem id (§4.1.2.1). */
uint16_t virtio_pci_device_type(const struct pci_dev *d);
/* Accept @d if it is a virtio device (modern 0x1040+ id, or transitional
 * 0x1000-0x103f with the id in the subsystem id) and find its structures.
 * 0, or -1 with a message printed. */
int virtio_pci_probe(struct virtio_dev *vd, struct pci_dev *d);
/* The §3.1.1 sequence: reset, ACKNOWLEDGE, DRIVER, features (VERSION_1,
 * EVENT_IDX and INDIRECT_DESC unless refused in @o, plus the @want
 * device bits that are offered), FEATURES_OK (checked), @nr_queues queues
 * with their MSI-X vectors, DRIVER_OK.  0, or -1 with FAILED set. */
int virtio_init(struct virtio_dev *vd, uint64_t want, unsigned nr_queues,
		const struct virtio_opts *o);
/* Write 0 to device_status and wait until it reads 0 (§4.1.4.3.2). */
void virtio_reset(struct virtio_dev *vd);
uint8_t virtio_status(const struct virtio_dev *vd);
static inline bool virtio_has(const struct virtio_dev *vd, unsigned bit)
{
	return vd->features & VIRTIO_BIT(bit);
}
/* Device configuration reads, retried until config_generation is stable. */
uint32_t virtio_cfg_read(struct virtio_dev *vd, uint32_t off, unsigned size);
uint64_t virtio_cfg_read64(struct virtio_dev *vd, uint32_t off);
/* The devices found: "virtio-blk" etc. */
const char *virtio_type_name(uint16_t type);

/* APIC vectors handed out to queues (from 0x40). */
uint8_t virtio_alloc_vector(void);

/* ---- virtio-blk (§5.2) ----------------------------------------------------------------- */
#define VIRTIO_BLK_F_SIZE_MAX      1
#define VIRTIO_BLK_F_SEG_MAX       2
#define VIRTIO_BLK_F_RO            5
#define VIRTIO_BLK_F_BLK_SIZE      6
#define VIRTIO_BLK_F_FLUSH         9
#define VIRTIO_BLK_F_TOPOLOGY      10
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
#define VIRTIO_BLK_WZ_UNMAP        1
#define VBLK_SECTOR                512
#define VBLK_MAX_SLOTS             64

/* One request: what the device reads and writes besides the data.  The
 * indirect table comes first for its 16-byte alignment. */
struct vblk_req {
	struct vring_desc table[3];
	struct {
		uint32_t type, reserved;
		uint64_t sector;
	} hdr;
	struct {
		uint64_t sector;
		uint32_t num_sectors, flags;
	} seg;                  /* discard / write zeroes */
	volatile uint8_t status;
	bool busy;
	uint32_t written;       /* bytes the device reports written */
	uint64_t cookie;        /* the caller's */
} __attribute__((aligned(16)));

struct vblk {
	struct virtio_dev vd;
	uint64_t capacity;      /* 512-byte sectors */
	uint32_t blk_size, seg_max, size_max;
	uint32_t max_discard_sectors, max_discard_seg, discard_align;
	uint32_t max_wz_sectors, max_wz_seg;
	bool wz_may_unmap;
	bool indirect;          /* submit through indirect tables (if negotiated) */
	struct vblk_req *slots;
	unsigned nr_slots, busy;
	uint64_t requests, errors;
};

/* Features the driver asks for (the rest of the header is the core's). */
#define VBLK_WANT (VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | \
		   VIRTIO_BIT(VIRTIO_BLK_F_RO) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |        \
		   VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_TOPOLOGY) |     \
		   VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES))

/* Initialise (or, after vblk_reset(), re-initialise) on @d. 0 or -1. */
int vblk_init(struct vblk *b, struct pci_dev *d, const struct virtio_opts *o);
/* Reset the device mid-run; requests in flight are forgotten. */
void vblk_reset(struct vblk *b);
/* Use indirect descriptors from now on (when negotiated); returns whether
 * they are used. */
bool vblk_use_indirect(struct vblk *b, bool on);
/* Queue a request without notifying: @type VIRTIO_BLK_T_*, @len bytes of
 * @buf (a multiple of 512 for IN/OUT; none for FLUSH).  NULL when every
 * slot or the ring is busy. */
struct vblk_req *vblk_submit(struct vblk *b, uint32_t type, uint64_t sector, void *buf,
			     uint32_t len);
/* The same in two steps, for callers that pick the data buffer by slot
 * (vblk_slot_index()): a free slot or NULL, then queue it (NULL if the
 * ring is full; the slot is released then). */
struct vblk_req *vblk_alloc(struct vblk *b);
struct vblk_req *vblk_queue(struct vblk *b, struct vblk_req *r, uint32_t type, uint64_t sector,
			    void *buf, uint32_t len);
static inline unsigned vblk_slot_index(const struct vblk *b, const struct vblk_req *r)
{
	return (unsigned)(r - b->slots);
}
/* DISCARD or WRITE_ZEROES of @nsectors at @sector, one segment. */
struct vblk_req *vblk_submit_range(struct vblk *b, uint32_t type, uint64_t sector,
				   uint32_t nsectors, uint32_t flags);
/* Publish and notify if the device wants it. */
bool vblk_kick(struct vblk *b);
/* A completed request (status set), or NULL; vblk_wait() blocks for one. */
struct vblk_req *vblk_poll(struct vblk *b);
struct vblk_req *vblk_wait(struct vblk *b);
void vblk_release(struct vblk *b, struct vblk_req *r);
/* Submit, kick, wait, release: returns the status byte. */
uint8_t vblk_rw(struct vblk *b, uint32_t type, uint64_t sector, void *buf, uint32_t len);
uint8_t vblk_range(struct vblk *b, uint32_t type, uint64_t sector, uint32_t nsectors,
		   uint32_t flags);

/* ---- virtio-rng (§5.4) ------------------------------------------------------------------- */
struct vrng {
	struct virtio_dev vd;
	uint64_t bytes, requests;
};

int vrng_init(struct vrng *r, struct pci_dev *d, const struct virtio_opts *o);
/* One request for @len bytes into @buf; returns how many the device gave. */
uint32_t vrng_read(struct vrng *r, void *buf, uint32_t len);

#endif
