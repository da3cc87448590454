/*
 * mode=bench: 4 KiB random reads or writes over the whole disk at a fixed
 * queue depth, polled at CPL3 (or interrupt-driven with irq=1).  The timed
 * part lies between ucall_sync(1) and ucall_sync(2): kickvm timestamps
 * those itself; the guest measures the same stretch with rdtsc and prints
 *   RESULT op=randread qd=8 reqs=20000 tsc_cycles=... req_per_s=... ...
 * (req_per_s needs the TSC rate: tsc_khz= or KVM's; 0 when unknown).
 *
 * The loop: harvest every completed request, refill each slot with the
 * next offset, then one kick for the batch - with EVENT_IDX the doorbell
 * is rung only when the device asked for it.
 */
#include "virtio_guest.h"

#define BLOCK   4096u
#define SPB     (BLOCK / VBLK_SECTOR)

static struct vblk blk;

/* Numerical Recipes' 64-bit LCG; the high bits are the good ones. */
static uint64_t lcg_next(uint64_t *state)
{
	*state = *state * 6364136223846793005ull + 1442695040888963407ull;
	return *state >> 33;
}

static void submit(uint32_t type, uint8_t *bufs, uint64_t nblocks, uint64_t *lcg)
{
	struct vblk_req *r = vblk_alloc(&blk);
	uint64_t sector = lcg_next(lcg) % nblocks * SPB;

	if (!r)
		GUEST_FAIL("bench: no free request slot");
	if (!vblk_queue(&blk, r, type, sector, bufs + vblk_slot_index(&blk, r) * BLOCK, BLOCK))
		GUEST_FAIL("bench: ring full");
}

int bench_run(const struct args *a, const struct devices *d)
{
	struct virtio_opts o;
	uint32_t type;
	uint64_t nblocks, lcg = 0x6b69636b766dull, submitted = 0, done = 0;
	uint64_t t0, t1, cycles, rate = 0, irq0, notify0;
	uint8_t *bufs;
	unsigned qd = a->qd ? a->qd : 1;

	if (!strcmp(a->op, "randread"))
		type = VIRTIO_BLK_T_IN;
	else if (!strcmp(a->op, "randwrite"))
		type = VIRTIO_BLK_T_OUT;
	else
		GUEST_FAIL("bench: op=randread or op=randwrite, please (got \"%s\")", a->op);
	GUEST_ASSERT_MSG(d->nr_blk > a->disk, "disk=%u but %u virtio-blk found", a->disk,
			 d->nr_blk);
	GUEST_ASSERT_MSG(a->reqs > 0, "bench: reqs=N, please");
	virtio_opts_from(a, &o);
	GUEST_ASSERT(vblk_init(&blk, d->blk[a->disk], &o) == 0);
	vblk_use_indirect(&blk, a->indirect > 0);
	GUEST_ASSERT_MSG(qd <= blk.nr_slots, "qd=%u but only %u request slots", qd,
			 blk.nr_slots);
	nblocks = blk.capacity / SPB;
	GUEST_ASSERT(nblocks > 0);
	bufs = page_alloc((size_t)qd * BLOCK / 4096);
	/* Something other than zeros to write; reads overwrite it anyway. */
	for (uint64_t i = 0; i < (uint64_t)qd * BLOCK; i++)
		bufs[i] = (uint8_t)(i * 7 + 1);
	info("bench: %s qd=%u reqs=%llu on virtio-blk %u (%llu MiB, features 0x%llx), %s, "
	     "tsc %llu kHz\n", a->op, qd, (unsigned long long)a->reqs, a->disk,
	     (unsigned long long)(blk.capacity >> 11), (unsigned long long)blk.vd.features,
	     a->irq ? "interrupts" : "polled", (unsigned long long)a->tsc_khz);

	irq0 = virtq_interrupts(&blk.vd.vq[0]);
	notify0 = blk.vd.vq[0].notifies;
	ucall_sync(1);
	t0 = rdtsc();
	while (submitted < qd && submitted < a->reqs) {
		submit(type, bufs, nblocks, &lcg);
		submitted++;
	}
	vblk_kick(&blk);
	while (done < a->reqs) {
		struct vblk_req *r = vblk_wait(&blk);

		do {
			if (r->status != VIRTIO_BLK_S_OK)
				GUEST_FAIL("bench: request at sector %llu: status %u",
					   (unsigned long long)r->hdr.sector, r->status);
			vblk_release(&blk, r);
			done++;
			if (submitted < a->reqs) {
				submit(type, bufs, nblocks, &lcg);
				submitted++;
			}
		} while ((r = vblk_poll(&blk)));
		vblk_kick(&blk);
	}
	t1 = rdtsc();
	ucall_sync(2);

	cycles = t1 - t0;
	if (a->tsc_khz && cycles)
		rate = a->reqs * a->tsc_khz * 1000 / cycles;
	report("bench.reqs", a->reqs);
	report("bench.tsc_cycles", cycles);
	report("bench.req_per_s", rate);
	report_blk(&blk);
	printf("RESULT op=%s qd=%u reqs=%llu tsc_cycles=%llu req_per_s=%llu irq=%u notifies=%llu "
	       "interrupts=%llu\n", a->op, qd, (unsigned long long)a->reqs,
	       (unsigned long long)cycles, (unsigned long long)rate, a->irq ? 1 : 0,
	       (unsigned long long)(blk.vd.vq[0].notifies - notify0),
	       (unsigned long long)(virtq_interrupts(&blk.vd.vq[0]) - irq0));
	return 0;
}
