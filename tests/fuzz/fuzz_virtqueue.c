/*
 * libFuzzer target: arbitrary bytes as a driver's virtqueue.  The first bytes
 * choose the queue (size, ring addresses, features, starting indices); the
 * rest become guest RAM — rings, descriptors, indirect tables, buffers.  The
 * device side pops, uses and pushes until the ring is empty or broken.
 *
 * It must never crash nor touch memory outside guest RAM: each of the two RAM
 * banks is its own mapping between PROT_NONE guard pages, so a stray access
 * faults, and every buffer handed out is checked to lie inside its bank.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kickvm/guest_mem.h"
#include "kickvm/virtqueue.h"

#define BANK_SIZE  0x10000ull          /* 64 KiB each: small enough to fill */
#define BANK1_GPA  (4ull << 30)
#define PAGE       4096ull

struct params {
	uint8_t flags;                  /* bit 0 EVENT_IDX, 1 INDIRECT, 2 raw size */
	uint8_t size;                   /* log2 of the queue size, or low byte of it */
	uint8_t size_hi;                /* high byte of a raw size */
	uint8_t script;                 /* what the device does between pops */
	uint32_t desc, avail, used;     /* bit 31: high bank; low 17 bits: offset */
	uint16_t start;                 /* where both indices start (wrap-around) */
} __attribute__((packed));

static struct guest_mem gm;

static uint8_t *guarded_bank(void)
{
	uint8_t *p = mmap(NULL, BANK_SIZE + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED || mprotect(p + PAGE, BANK_SIZE, PROT_READ | PROT_WRITE))
		abort();
	return p + PAGE;
}

static void init(void)
{
	gm.memfd = -1;
	gm.total = 2 * BANK_SIZE;
	gm.nr_banks = 2;
	gm.banks[0] = (struct guest_mem_bank){ .gpa = 0, .size = BANK_SIZE, .hva = guarded_bank() };
	gm.banks[1] = (struct guest_mem_bank){
		.gpa = BANK1_GPA, .size = BANK_SIZE, .hva = guarded_bank(), .fd_offset = BANK_SIZE,
	};
}

/* Half the offsets land in a bank, some straddle its end, the rest miss. */
static uint64_t gpa_of(uint32_t v)
{
	return ((v & 0x80000000u) ? BANK1_GPA : 0) + (v & 0x1ffff);
}

static bool in_bank(const void *base, uint64_t len)
{
	for (unsigned i = 0; i < gm.nr_banks; i++) {
		const uint8_t *lo = gm.banks[i].hva, *p = base;

		if (p >= lo && p < lo + BANK_SIZE && len <= BANK_SIZE - (uint64_t)(p - lo))
			return true;
	}
	return false;
}

/* What a device does with an element: read what it may read, write what it
 * may write, and check the element is consistent. */
static uint32_t use(const struct virtq *vq, const struct virtq_elem *elem)
{
	volatile uint8_t sink = 0;
	uint64_t out = 0, in = 0;

	if (elem->head >= vq->num || elem->nr_out + elem->nr_in > VIRTQ_ELEM_MAX_IOV)
		abort();
	for (unsigned i = 0; i < elem->nr_out + elem->nr_in; i++) {
		const struct virtq_iov *iov = &elem->iov[i];

		if (iov->len == 0 || !in_bank(iov->base, iov->len) ||
		    guest_mem_ptr(&gm, iov->gpa, iov->len) != iov->base)
			abort();
		if (i < elem->nr_out) {
			const uint8_t *p = iov->base;

			sink ^= p[0] ^ p[iov->len - 1];
			out += iov->len;
		} else {
			memset(iov->base, 0xa5, iov->len < 64 ? iov->len : 64);
			((uint8_t *)iov->base)[iov->len - 1] = 0x5a;
			in += iov->len;
		}
	}
	if (out != elem->out_len || in != elem->in_len || out + in > (1ull << 32))
		abort();
	(void)sink;
	return (uint32_t)in;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_elem elem;
	struct params p = { 0 };
	struct virtq vq;
	uint16_t num;
	size_t n;
	int ret;

	if (!gm.nr_banks)
		init();
	if (size < sizeof(p))
		return 0;
	memcpy(&p, data, sizeof(p));
	data += sizeof(p);
	size -= sizeof(p);
	for (unsigned i = 0; i < 2; i++) {
		n = size < BANK_SIZE ? size : BANK_SIZE;
		memset(gm.banks[i].hva, 0, BANK_SIZE);
		memcpy(gm.banks[i].hva, data, n);
		data += n;
		size -= n;
	}

	num = (p.flags & 4) ? (uint16_t)(p.size | p.size_hi << 8) : (uint16_t)(1u << (p.size % 13));
	ret = virtq_init(&vq, &gm, num, gpa_of(p.desc), gpa_of(p.avail), gpa_of(p.used),
			 p.flags & 1, p.flags & 2);
	if (ret) {
		if ((ret != -EINVAL && ret != -EFAULT) || !vq.broken || !vq.error)
			abort();
		return 0;
	}
	/* Resume at an arbitrary point of the 16-bit index space, as after
	 * many requests; the driver's indices come from the RAM bytes. */
	vq.last_avail = vq.used_idx = vq.signalled_used = p.start;

	/* At most num entries are pending; more only when the device's own
	 * writes (buffers or used ring overlapping the available ring) move
	 * avail->idx, which is the guest's business but must stay bounded. */
	for (unsigned iter = 0; iter < 4u * num + 4; iter++) {
		unsigned step = (p.script >> (2 * (iter % 4))) & 3;

		ret = virtq_pop(&vq, &elem);
		if (ret == 0)
			break;
		if (ret != 1) {
			if (ret != -EIO || !vq.broken || !vq.error)
				abort();
			break;
		}
		if (virtq_push(&vq, elem.head, use(&vq, &elem)) != 0)
			abort();
		if (step == 1)
			virtq_should_notify(&vq);
		else if (step >= 2)
			virtq_set_notification(&vq, step == 3);
		ret = virtq_pending(&vq);
		if ((ret < 0 && ret != -EIO) || ret > num)
			abort();
	}
	virtq_should_notify(&vq);
	return 0;
}
