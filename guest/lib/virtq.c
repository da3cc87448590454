/*
 * The driver side of a split virtqueue (virtio 1.2 §2.7): descriptor free
 * list, avail publishing with notification suppression, used harvesting,
 * and waiting (polled or interrupt-driven).  Pure ring logic plus one MMIO
 * write per notify; runs at CPL3.
 *
 * x86 keeps stores in order and loads in order, so the only barrier that
 * costs anything is virtio_mb() where a store (an index) must be visible
 * before a load (the device's event index).
 */
#include "guest.h"
#include "virtio.h"

/* §2.7.10: does moving an index from @old to @new pass @event? */
static inline bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

static inline volatile uint16_t *used_event(struct virtq *vq)
{
	return &vq->avail->ring[vq->size];
}

static inline volatile uint16_t *avail_event(struct virtq *vq)
{
	return (volatile uint16_t *)&vq->used->ring[vq->size];
}

static inline uint16_t used_idx(const struct virtq *vq)
{
	return *(volatile uint16_t *)&vq->used->idx;
}

static void publish(struct virtq *vq, uint16_t head, void *token)
{
	vq->token[head] = token;
	vq->avail->ring[vq->avail_idx & (vq->size - 1)] = head;
	vq->avail_idx++;
	vq->added++;
}

int virtq_add(struct virtq *vq, const struct virtq_buf *bufs, unsigned n, void *token)
{
	uint16_t head = vq->free_head, i = head;

	if (n == 0 || n > vq->num_free)
		return -1;
	for (unsigned k = 0; k < n; k++) {
		struct vring_desc *d = &vq->desc[i];

		d->addr = (uint64_t)bufs[k].addr;
		d->len = bufs[k].len;
		d->flags = (bufs[k].device_writes ? VRING_DESC_F_WRITE : 0) |
			   (k + 1 < n ? VRING_DESC_F_NEXT : 0);
		i = d->next;
	}
	/* The free list continues where the chain's last link pointed. */
	vq->free_head = i;
	vq->num_free -= n;
	publish(vq, head, token);
	return head;
}

int virtq_add_indirect(struct virtq *vq, struct vring_desc *table,
		       const struct virtq_buf *bufs, unsigned n, void *token)
{
	uint16_t head = vq->free_head;
	struct vring_desc *d;

	if (n == 0 || vq->num_free == 0)
		return -1;
	for (unsigned k = 0; k < n; k++) {
		table[k].addr = (uint64_t)bufs[k].addr;
		table[k].len = bufs[k].len;
		table[k].flags = (bufs[k].device_writes ? VRING_DESC_F_WRITE : 0) |
				 (k + 1 < n ? VRING_DESC_F_NEXT : 0);
		table[k].next = (uint16_t)(k + 1);
	}
	d = &vq->desc[head];
	vq->free_head = d->next;
	vq->num_free--;
	d->addr = (uint64_t)table;
	d->len = n * sizeof(*table);
	d->flags = VRING_DESC_F_INDIRECT;
	publish(vq, head, token);
	return head;
}

bool virtq_kick(struct virtq *vq)
{
	uint16_t old = vq->kicked_idx, new_idx = vq->avail_idx;
	bool need;

	if (old == new_idx)
		return false;
	/* Ring entries before the index: a compiler barrier is enough on x86. */
	barrier();
	*(volatile uint16_t *)&vq->avail->idx = new_idx;
	/* The index must be visible before we read what the device asked for,
	 * or we may skip a notify the device is about to need. */
	virtio_mb();
	vq->kicked_idx = new_idx;
	vq->kicks++;
	if (vq->event_idx)
		need = need_event(*avail_event(vq), new_idx, old);
	else
		need = !(*(volatile uint16_t *)&vq->used->flags & VRING_USED_F_NO_NOTIFY);
	if (need) {
		/* Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index. */
		mmio_write16(vq->doorbell, vq->index);
		vq->notifies++;
	}
	return need;
}

bool virtq_has_used(const struct virtq *vq)
{
	return used_idx(vq) != vq->last_used;
}

void *virtq_get_used(struct virtq *vq, uint32_t *len)
{
	struct vring_used_elem e;
	uint16_t id, i;
	void *token;

	if (!virtq_has_used(vq))
		return NULL;
	/* The entry is read after the index (loads stay in order on x86). */
	barrier();
	e = *(volatile struct vring_used_elem *)&vq->used->ring[vq->last_used & (vq->size - 1)];
	if (e.id >= vq->size || !vq->token[e.id])
		GUEST_FAIL("virtq %u: used id %u is not a chain in flight", vq->index, e.id);
	id = (uint16_t)e.id;
	token = vq->token[id];
	vq->token[id] = NULL;

	/* Return the chain to the free list (an indirect chain is one entry). */
	i = id;
	vq->num_free++;
	while (vq->desc[i].flags & VRING_DESC_F_NEXT) {
		i = vq->desc[i].next;
		vq->num_free++;
	}
	vq->desc[i].next = vq->free_head;
	vq->free_head = id;

	vq->last_used++;
	vq->completions++;
	/* EVENT_IDX: with interrupts, ask for one at the very next used chain
	 * (every completion after a harvest interrupts); polled, keep
	 * used_event half the index space ahead so the device never finds a
	 * reason to interrupt (and kickvm's interrupt counters stay 0). */
	if (vq->event_idx)
		*used_event(vq) = (uint16_t)(vq->last_used + (vq->irq_vector ? 0 : 0x8000));
	if (len)
		*len = e.len;
	return token;
}

void virtq_wait(struct virtq *vq)
{
	uint64_t start = rdtsc();

	vq->waits++;
	if (!vq->irq_vector) {
		while (!virtq_has_used(vq)) {
			cpu_relax();
			if (rdtsc() - start > VIRTQ_TIMEOUT_CYCLES)
				GUEST_FAIL("virtq %u: no used buffer (avail %u, used %u/%u)",
					   vq->index, vq->avail_idx, used_idx(vq), vq->last_used);
		}
		return;
	}
	/* Interrupts stay armed (used_event = last_used, or flags 0): but a
	 * chain the device used before it saw our used_event may have gone
	 * without one - so look once more after making the store visible. */
	virtio_mb();
	if (virtq_has_used(vq))
		return;
	/* The interrupt comes to the CPL0 counting stub; we only watch its
	 * counter, so the work after it stays at CPL3. */
	while (irq_count(vq->irq_vector) == vq->irq_seen) {
		cpu_relax();
		if (rdtsc() - start > VIRTQ_TIMEOUT_CYCLES)
			GUEST_FAIL("virtq %u: no interrupt on vector 0x%x (used %u/%u, %llu seen)",
				   vq->index, vq->irq_vector, used_idx(vq), vq->last_used,
				   (unsigned long long)vq->irq_seen);
	}
	vq->irq_seen = irq_count(vq->irq_vector);
}

uint64_t virtq_interrupts(const struct virtq *vq)
{
	return vq->irq_vector ? irq_count(vq->irq_vector) : 0;
}

void virtq_wait_irq_after(struct virtq *vq, uint64_t before)
{
	uint64_t start = rdtsc();

	if (!vq->irq_vector)
		return;
	while (irq_count(vq->irq_vector) <= before) {
		cpu_relax();
		if (rdtsc() - start > VIRTQ_TIMEOUT_CYCLES)
			GUEST_FAIL("virtq %u: the request's interrupt never came (vector 0x%x)",
				   vq->index, vq->irq_vector);
	}
	vq->irq_seen = irq_count(vq->irq_vector);
}
