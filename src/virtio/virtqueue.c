/*
 * Split virtqueues, device side (virtio 1.2 §2.7).
 *
 * Everything here reads memory the guest writes concurrently, so three rules
 * hold throughout:
 *  - a host pointer comes only from guest_mem_ptr() for the whole range that
 *    is then accessed (rings: their spec size; buffers: addr..addr+len);
 *  - ring fields are read and written with atomic accesses (a plain load could
 *    be torn or repeated by the compiler); avail->idx is read with acquire and
 *    used->idx written with release, the two orderings the protocol needs;
 *  - a descriptor is copied once and only the copy is checked and used, so the
 *    driver cannot change it between the check and the use.
 *
 * Notification suppression keeps its state in the used ring itself, which the
 * device owns: without EVENT_IDX in used->flags, with EVENT_IDX in avail_event.
 * "Enabled" under EVENT_IDX means avail_event == last_avail; virtq_pop keeps it
 * so while enabled (the driver then notifies for the entry after the ones we
 * took) and leaves it behind while disabled (the driver stays quiet).
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "kickvm/guest_mem.h"
#include "kickvm/virtqueue.h"

#define DESC_SIZE 16u

/* One descriptor as the driver wrote it, in host byte order. */
struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* ---- ring geometry and accessors ---------------------------------------- */

static uint64_t desc_bytes(uint16_t num) { return (uint64_t)DESC_SIZE * num; }
static uint64_t avail_bytes(uint16_t num) { return 6 + 2 * (uint64_t)num; }
static uint64_t used_bytes(uint16_t num) { return 6 + 8 * (uint64_t)num; }

/* Offsets inside the available ring (flags, idx, ring[num], used_event) and
 * the used ring (flags, idx, ring[num] of {id, len}, avail_event). */
#define AVAIL_FLAGS 0
#define AVAIL_IDX   2
#define AVAIL_RING(i) (4 + 2 * (size_t)(i))
#define USED_FLAGS  0
#define USED_IDX    2
#define USED_RING(i) (4 + 8 * (size_t)(i))

static uint16_t load16(const uint8_t *p, int order)
{
	return le16toh(__atomic_load_n((const uint16_t *)p, order));
}

static void store16(uint8_t *p, uint16_t v, int order)
{
	__atomic_store_n((uint16_t *)p, htole16(v), order);
}

static void store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)p, htole32(v), __ATOMIC_RELAXED);
}

/* Mark the queue broken for @why (a static string); returns @err. */
static int fail_err(struct virtq *vq, const char *why, int err)
{
	vq->broken = true;
	vq->error = why;
	return err;
}

static int fail(struct virtq *vq, const char *why)
{
	return fail_err(vq, why, -EIO);
}

/* Host addresses of the rings. */
struct rings {
	uint8_t *desc, *avail, *used;
};

/*
 * Fills @r for a queue that is set up and not broken.  virtq_init() checked
 * the rings and guest RAM does not move, so the lookups cannot fail then;
 * repeating them (a few compares) beats keeping host pointers the header has
 * no room for.
 */
static bool rings(const struct virtq *vq, struct rings *r)
{
	if (!vq->mem || !vq->num || vq->broken)
		return false;
	r->desc = guest_mem_ptr(vq->mem, vq->desc, desc_bytes(vq->num));
	r->avail = guest_mem_ptr(vq->mem, vq->avail, avail_bytes(vq->num));
	r->used = guest_mem_ptr(vq->mem, vq->used, used_bytes(vq->num));
	return r->desc && r->avail && r->used;
}

/* Copy descriptor @i of @table once; what follows checks and uses only the copy. */
static void desc_read(const uint8_t *table, uint32_t i, struct desc *d)
{
	uint8_t raw[DESC_SIZE];
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;

	memcpy(raw, table + (size_t)i * DESC_SIZE, sizeof(raw));
	/* The driver may rewrite the descriptor meanwhile: the barrier stops the
	 * compiler from fetching a field again from guest memory later on.
	 * memcpy rather than aligned loads because an indirect table need not be
	 * aligned. */
	__asm__ __volatile__("" ::: "memory");
	memcpy(&addr, raw, 8);
	memcpy(&len, raw + 8, 4);
	memcpy(&flags, raw + 12, 2);
	memcpy(&next, raw + 14, 2);
	d->addr = le64toh(addr);
	d->len = le32toh(len);
	d->flags = le16toh(flags);
	d->next = le16toh(next);
}

/* ---- set-up ---------------------------------------------------------------- */

static int check_ring(struct virtq *vq, uint64_t gpa, uint64_t len, uint64_t align,
		      const char *misaligned, const char *outside)
{
	uint8_t *p;

	if (gpa & (align - 1))
		return fail_err(vq, misaligned, -EINVAL);
	p = guest_mem_ptr(vq->mem, gpa, len);
	if (!p)
		return fail_err(vq, outside, -EFAULT);
	/* Atomic ring accesses need the host address aligned too; it is when the
	 * banks are page aligned, which guest_mem guarantees for its own. */
	if ((uintptr_t)p & (align - 1))
		return fail_err(vq, "ring misaligned in host memory", -EFAULT);
	return 0;
}

int virtq_init(struct virtq *vq, const struct guest_mem *mem, uint16_t num,
	       uint64_t desc, uint64_t avail, uint64_t used, bool event_idx,
	       bool indirect)
{
	struct rings r;
	int ret;

	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->num = num;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	/* Nothing was pushed yet, so "last checked at 0" is exact: the first
	 * should_notify honours used_event instead of notifying blindly. */
	vq->signalled_used_valid = true;

	if (num == 0 || (num & (num - 1)) || num > VIRTQ_MAX_SIZE)
		return fail_err(vq, "queue size not a power of two up to 32768", -EINVAL);
	ret = check_ring(vq, desc, desc_bytes(num), 16, "descriptor table misaligned",
			 "descriptor table outside guest RAM");
	if (!ret)
		ret = check_ring(vq, avail, avail_bytes(num), 2, "available ring misaligned",
				 "available ring outside guest RAM");
	if (!ret)
		ret = check_ring(vq, used, used_bytes(num), 4, "used ring misaligned",
				 "used ring outside guest RAM");
	if (ret)
		return ret;

	/* The used ring is ours: start with notifications enabled (flags 0,
	 * which the spec requires under EVENT_IDX, and avail_event = 0). */
	rings(vq, &r);
	store16(r.used + USED_FLAGS, 0, __ATOMIC_RELAXED);
	if (event_idx)
		store16(r.used + USED_RING(num), 0, __ATOMIC_RELAXED);
	return 0;
}

/* ---- taking a chain ------------------------------------------------------- */

/* State of one chain walk. */
struct walk {
	struct virtq *vq;
	struct virtq_elem *elem;
	unsigned descs;        /* descriptors seen, direct and indirect */
	bool seen_write;       /* a device-writable one came already */
	uint64_t total;        /* bytes in the chain */
};

/* Add the buffer of @d (not an indirect one) to the element. */
static int walk_buffer(struct walk *w, const struct desc *d)
{
	struct virtq_elem *elem = w->elem;
	bool write = d->flags & VIRTQ_DESC_F_WRITE;
	void *p;

	if (++w->descs > VIRTQ_ELEM_MAX_IOV)
		return fail(w->vq, "more than 256 descriptors in a chain");
	if (write)
		w->seen_write = true;
	else if (w->seen_write)
		return fail(w->vq, "device-readable descriptor after a device-writable one");
	w->total += d->len;
	if (w->total > (1ull << 32))
		return fail(w->vq, "descriptor chain longer than 4 GiB");
	/* An empty buffer carries nothing: count it (so it cannot stretch a walk)
	 * but hand devices only buffers they can use, and do not insist that
	 * an address nobody will touch lies in RAM. */
	if (d->len == 0)
		return 0;
	p = guest_mem_ptr(w->vq->mem, d->addr, d->len);
	if (!p)
		return fail(w->vq, "buffer outside guest RAM");
	elem->iov[elem->nr_out + elem->nr_in] =
		(struct virtq_iov){ .base = p, .len = d->len, .gpa = d->addr };
	if (write) {
		elem->nr_in++;
		elem->in_len += d->len;
	} else {
		elem->nr_out++;
		elem->out_len += d->len;
	}
	return 0;
}

/* Walk the indirect table @ind refers to; it ends the chain. */
static int walk_indirect(struct walk *w, const struct desc *ind)
{
	const uint8_t *table;
	uint32_t n, i = 0, seen = 0;
	struct desc d;
	int ret;

	if (!w->vq->indirect)
		return fail(w->vq, "indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC");
	if (ind->flags & VIRTQ_DESC_F_NEXT)
		return fail(w->vq, "indirect descriptor with NEXT set");
	if (ind->len == 0 || ind->len % DESC_SIZE)
		return fail(w->vq, "indirect table size not a non-zero multiple of 16");
	table = guest_mem_ptr(w->vq->mem, ind->addr, ind->len);
	if (!table)
		return fail(w->vq, "indirect table outside guest RAM");
	n = ind->len / DESC_SIZE;
	for (;;) {
		if (i >= n)
			return fail(w->vq, "indirect descriptor index out of range");
		/* A chain visiting more entries than the table has loops. */
		if (++seen > n)
			return fail(w->vq, "loop in indirect descriptor table");
		desc_read(table, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return fail(w->vq, "nested indirect descriptor");
		ret = walk_buffer(w, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
}

/* Walk the chain starting at @head in the descriptor table @table. */
static int walk_chain(struct walk *w, const uint8_t *table, uint16_t head)
{
	uint16_t num = w->vq->num;
	unsigned seen = 0;
	uint32_t i = head;
	struct desc d;
	int ret;

	for (;;) {
		if (i >= num)
			return fail(w->vq, "descriptor index out of range");
		/* The table holds num descriptors: a longer chain loops (and the
		 * spec forbids chains longer than the queue anyway). */
		if (++seen > num)
			return fail(w->vq, "descriptor chain longer than the queue (loop)");
		desc_read(table, i, &d);
		/* Zero or more plain descriptors, then at most one indirect. */
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return walk_indirect(w, &d);
		ret = walk_buffer(w, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
}

/* Entries made available and not taken yet, or -EIO for an impossible index. */
static int avail_pending(const struct virtq *vq, const uint8_t *avail)
{
	uint16_t n = (uint16_t)(load16(avail + AVAIL_IDX, __ATOMIC_ACQUIRE) - vq->last_avail);

	return n > vq->num ? -EIO : n;
}

int virtq_pop(struct virtq *vq, struct virtq_elem *elem)
{
	struct walk w = { .vq = vq, .elem = elem };
	struct rings r;
	uint16_t head;
	int n, ret;

	if (!rings(vq, &r))
		return -EIO;
	n = avail_pending(vq, r.avail);
	if (n == 0 && vq->event_idx) {
		/* Our last avail_event store must be visible before we decide
		 * the ring is empty, or a driver that just added an entry may
		 * have read the old value and not notified: both sides would
		 * then wait.  (Without EVENT_IDX, virtq_set_notification has
		 * its own fence.) */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		n = avail_pending(vq, r.avail);
	}
	if (n < 0)
		return fail(vq, "available index moved by more than the queue size");
	if (n == 0)
		return 0;

	/* Ordered after the acquire load of avail->idx in avail_pending(). */
	head = load16(r.avail + AVAIL_RING(vq->last_avail & (vq->num - 1)), __ATOMIC_RELAXED);
	elem->head = head;
	elem->nr_out = elem->nr_in = 0;
	elem->out_len = elem->in_len = 0;
	ret = walk_chain(&w, r.desc, head);
	if (ret)
		return ret;

	if (vq->event_idx) {
		uint8_t *avail_event = r.used + USED_RING(vq->num);

		/* Enabled notifications follow what we take (see the top). */
		if (load16(avail_event, __ATOMIC_RELAXED) == vq->last_avail)
			store16(avail_event, (uint16_t)(vq->last_avail + 1), __ATOMIC_RELAXED);
	}
	vq->last_avail++;
	return 1;
}

/* ---- returning a chain and notifying ---------------------------------------- */

int virtq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
	struct rings r;
	uint8_t *e;

	if (!rings(vq, &r))
		return -EIO;
	/* A device bug, not the driver's: refuse without breaking the queue. */
	if (head >= vq->num)
		return -EINVAL;
	e = r.used + USED_RING(vq->used_idx & (vq->num - 1));
	store32(e, head);
	store32(e + 4, written);
	/* Release: the entry and the data the device wrote into the buffers
	 * are visible before the driver can see the new index. */
	vq->used_idx++;
	store16(r.used + USED_IDX, vq->used_idx, __ATOMIC_RELEASE);
	return 0;
}

/* Did moving the used index from @old to @new_idx pass @event (virtio 1.2
 * §2.7.10: notify when the entry at index @event was written)? */
static bool crossed(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool virtq_should_notify(struct virtq *vq)
{
	uint16_t old = vq->signalled_used;
	bool valid = vq->signalled_used_valid;
	struct rings r;

	if (!rings(vq, &r))
		return false;
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	if (valid && old == vq->used_idx)
		return false;            /* nothing new since the last check */
	/* Store-load ordering against the driver, which writes used_event (or
	 * flags) and then reads used->idx: our used->idx store must be visible
	 * before we read what it wrote, or both sides may skip the interrupt. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(load16(r.avail + AVAIL_FLAGS, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	return crossed(load16(r.avail + AVAIL_RING(vq->num), __ATOMIC_RELAXED), vq->used_idx, old);
}

void virtq_set_notification(struct virtq *vq, bool enable)
{
	struct rings r;

	if (!rings(vq, &r))
		return;
	enable = enable && !vq->polled;
	if (vq->event_idx) {
		/* Disabled: one behind what we will take next.  The driver can
		 * be at most num (≤ 32768) entries ahead of last_avail, so it
		 * never reaches that index again before we re-enable. */
		uint16_t event = enable ? vq->last_avail : (uint16_t)(vq->last_avail - 1);

		store16(r.used + USED_RING(vq->num), event, __ATOMIC_RELAXED);
	} else {
		store16(r.used + USED_FLAGS, enable ? 0 : VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
	}
	/* The caller re-checks the ring after enabling: that read must not pass
	 * our store (the driver does store idx, fence, read flags/avail_event). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void virtq_set_polled(struct virtq *vq, bool polled)
{
	vq->polled = polled;
	virtq_set_notification(vq, !polled);
}

int virtq_pending(const struct virtq *vq)
{
	struct rings r;

	if (!rings(vq, &r))
		return -EIO;
	/* An impossible index is -EIO here too; the next virtq_pop breaks the
	 * queue (this one is const and cannot). */
	return avail_pending(vq, r.avail);
}
