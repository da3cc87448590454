/*
 * mode=test: the functional tests of the virtio-pci drivers.  Each step is
 * GUEST_ASSERTed and followed by ucall_sync(step), so a kickvm host test
 * knows how far the guest got; at the end the counters go out as
 * UCALL_REPORTs (and REPORT lines) and the guest exits 0.
 *
 * With irq=1 every wait is interrupt-driven, and a request issued alone
 * (every synchronous one, and each at queue depth 1) must bring exactly one
 * interrupt of its own before the next goes out; deeper queues may share.
 */
#include "virtio_guest.h"

#define BLOCK        4096u
#define SPB          (BLOCK / VBLK_SECTOR)     /* sectors per block */
#define QD_REQS      48u                        /* requests per queue-depth run */
#define QD_AREA      2048u                      /* first sector of those runs */
#define MAX_QD       16u

static struct vblk blk;
static struct vrng rng;
static unsigned step;
static uint8_t *buf_w, *buf_r;      /* MAX_QD blocks each */

static void step_done(const char *what)
{
	step++;
	info("test: step %u ok: %s\n", step, what);
	ucall_sync(step);
}

/* Bytes that depend on where they go and on @seed: a misplaced or stale
 * sector never matches. */
static void pattern(uint8_t *p, uint32_t len, uint64_t sector, uint32_t seed)
{
	uint32_t x = (uint32_t)sector * 2654435761u ^ seed;

	for (uint32_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

static void check_pattern(const uint8_t *p, uint32_t len, uint64_t sector, uint32_t seed)
{
	uint32_t x = (uint32_t)sector * 2654435761u ^ seed;

	for (uint32_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		GUEST_ASSERT_MSG(p[i] == (uint8_t)(x >> 16),
				 "sector %llu byte %u: 0x%02x, expected 0x%02x",
				 (unsigned long long)sector, i, p[i], (uint8_t)(x >> 16));
	}
}

static void write_sectors(uint64_t sector, uint32_t len, uint32_t seed)
{
	pattern(buf_w, len, sector, seed);
	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_OUT, sector, buf_w, len), VIRTIO_BLK_S_OK);
}

static void read_check(uint64_t sector, uint32_t len, uint32_t seed)
{
	memset(buf_r, 0xa5, len);
	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_IN, sector, buf_r, len), VIRTIO_BLK_S_OK);
	check_pattern(buf_r, len, sector, seed);
}

/* Sectors of step 2, read again after the reset. */
static uint64_t rw_sectors[6];

static void test_rw(void)
{
	uint64_t cap = blk.capacity;

	rw_sectors[0] = 0;
	rw_sectors[1] = 1;
	rw_sectors[2] = 7;
	rw_sectors[3] = 1003;
	rw_sectors[4] = cap / 2;
	rw_sectors[5] = cap - 1;        /* the last sector */
	for (unsigned i = 0; i < 6; i++)
		write_sectors(rw_sectors[i], VBLK_SECTOR, 1);
	for (unsigned i = 0; i < 6; i++)
		read_check(rw_sectors[i], VBLK_SECTOR, 1);
	/* Several sectors in one request, then four blocks in one. */
	write_sectors(64, BLOCK, 2);
	read_check(64, BLOCK, 2);
	write_sectors(cap - 1 - 4 * SPB, 4 * BLOCK, 3);      /* up to the last but one */
	read_check(cap - 1 - 4 * SPB, 4 * BLOCK, 3);
}

#define RUN_KICK_EACH  1   /* a kick per request, not per batch */
#define RUN_IRQ_EACH   2   /* each request's interrupt before the next goes out:
			    * two MSIs pending at once would merge in the APIC */

/* QD_REQS writes or reads of distinct blocks, @qd in flight.  Refills go
 * out in one kick per batch, or (RUN_KICK_EACH) one kick per request: then
 * the device is often still busy, and EVENT_IDX lets the driver skip most
 * doorbells - a wrongly skipped one shows up as a hang here. */
static void run_qd(unsigned qd, uint32_t type, uint32_t seed, unsigned flags)
{
	unsigned submitted = 0, done = 0, in_flight = 0;
	uint64_t base = QD_AREA + (uint64_t)qd * QD_REQS * SPB;
	uint64_t irq0 = virtq_interrupts(&blk.vd.vq[0]);

	GUEST_ASSERT(qd <= MAX_QD && qd <= blk.nr_slots);
	while (done < QD_REQS) {
		struct vblk_req *r;

		while (in_flight < qd && submitted < QD_REQS) {
			unsigned slot;
			uint64_t sector = base + (uint64_t)submitted * SPB;

			r = vblk_alloc(&blk);
			GUEST_ASSERT(r);
			slot = vblk_slot_index(&blk, r);
			GUEST_ASSERT(slot < MAX_QD);
			if (type == VIRTIO_BLK_T_OUT)
				pattern(buf_w + slot * BLOCK, BLOCK, sector, seed);
			else
				memset(buf_r + slot * BLOCK, 0, BLOCK);
			r->cookie = sector;
			GUEST_ASSERT(vblk_queue(&blk, r, type, sector,
						(type == VIRTIO_BLK_T_OUT ? buf_w : buf_r) + slot * BLOCK,
						BLOCK));
			submitted++;
			in_flight++;
			if (flags & RUN_KICK_EACH)
				vblk_kick(&blk);
		}
		GUEST_ASSERT(blk.busy == in_flight);
		vblk_kick(&blk);
		/* One request alone: its interrupt must come, and we wait for it
		 * before harvesting.  Harvesting first would move used_event past
		 * the entry, and a device that checks used_event after that has
		 * no reason left to interrupt (virtio 1.2 §2.7.10): legal, and a
		 * race this test must not depend on. */
		if (flags & RUN_IRQ_EACH)
			virtq_wait_irq_after(&blk.vd.vq[0], irq0 + done);
		r = vblk_wait(&blk);
		do {
			GUEST_ASSERT_EQ(r->status, VIRTIO_BLK_S_OK);
			if (type == VIRTIO_BLK_T_IN)
				check_pattern(buf_r + vblk_slot_index(&blk, r) * BLOCK, BLOCK,
					      r->cookie, seed);
			vblk_release(&blk, r);
			in_flight--;
			done++;
		} while ((r = vblk_poll(&blk)));
	}
}

/* After several requests in flight, whether the last completion brought
 * an interrupt depends on timing: wait until the count has been still for
 * a while (~1 ms), so that counting starts from a quiet queue. */
static void settle_irqs(void)
{
	uint64_t n = virtq_interrupts(&blk.vd.vq[0]), t0 = rdtsc();

	while (rdtsc() - t0 < 3000000) {
		if (virtq_interrupts(&blk.vd.vq[0]) != n) {
			n = virtq_interrupts(&blk.vd.vq[0]);
			t0 = rdtsc();
		}
		cpu_relax();
	}
}

static void test_queue_depth(const struct args *a)
{
	static const unsigned qds[] = { 1, 4, 16 };

	for (unsigned i = 0; i < 3; i++) {
		unsigned qd = qds[i];
		/* The deepest run goes through indirect tables (when offered). */
		bool ind = vblk_use_indirect(&blk, a->indirect >= 0 ? a->indirect : qd == 16);
		/* One request at a time with interrupts always armed: each
		 * request must bring its own interrupt. */
		unsigned flags = a->irq && qd == 1 ? RUN_IRQ_EACH : 0;
		uint64_t n0 = blk.vd.vq[0].notifies, irq0, irqs;

		if (qd > blk.nr_slots) {
			info("test:   qd %2u: only %u request slots (qsize=), skipped\n", qd,
			     blk.nr_slots);
			continue;
		}
		settle_irqs();
		irq0 = virtq_interrupts(&blk.vd.vq[0]);
		run_qd(qd, VIRTIO_BLK_T_OUT, 10 + qd, flags);
		run_qd(qd, VIRTIO_BLK_T_IN, 10 + qd, flags);
		irqs = virtq_interrupts(&blk.vd.vq[0]) - irq0;
		if (a->irq && qd == 1) {
			GUEST_ASSERT_EQ(irqs, 2 * QD_REQS);
			/* Delivered, not left pending behind a mask. */
			GUEST_ASSERT(!pci_msix_pending(&blk.vd.msix, blk.vd.vq[0].msix_entry));
		} else if (a->irq) {
			GUEST_ASSERT(irqs >= 1 && irqs <= 2 * QD_REQS);
		} else {
			GUEST_ASSERT_EQ(irqs, 0);
		}
		info("test:   qd %2u%s: %u requests, %llu doorbell writes, %llu interrupts\n",
		     qd, ind ? " (indirect)" : "", 2 * QD_REQS,
		     (unsigned long long)(blk.vd.vq[0].notifies - n0), (unsigned long long)irqs);
	}
	vblk_use_indirect(&blk, a->indirect > 0);
}

static void test_kick_each(void)
{
	uint64_t n0 = blk.vd.vq[0].notifies, k0 = blk.vd.vq[0].kicks;

	if (blk.nr_slots < 16) {
		info("test:   only %u request slots (qsize=): skipped\n", blk.nr_slots);
		return;
	}
	run_qd(16, VIRTIO_BLK_T_IN, 10 + 16, RUN_KICK_EACH);
	info("test:   qd 16, a kick per request: %llu kicks, %llu doorbell writes\n",
	     (unsigned long long)(blk.vd.vq[0].kicks - k0),
	     (unsigned long long)(blk.vd.vq[0].notifies - n0));
	GUEST_ASSERT(blk.vd.vq[0].notifies - n0 <= blk.vd.vq[0].kicks - k0);
}

static void test_past_end(void)
{
	uint64_t cap = blk.capacity;

	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_IN, cap, buf_r, VBLK_SECTOR),
			VIRTIO_BLK_S_IOERR);
	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_IN, cap - 1, buf_r, 2 * VBLK_SECTOR),
			VIRTIO_BLK_S_IOERR);
	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_OUT, cap, buf_w, VBLK_SECTOR),
			VIRTIO_BLK_S_IOERR);
	/* The last sector written in step 2 is untouched. */
	read_check(cap - 1, VBLK_SECTOR, 1);
}

static void test_get_id(const struct args *a)
{
	char id[VIRTIO_BLK_ID_BYTES + 1];

	memset(buf_r, 0, VIRTIO_BLK_ID_BYTES);
	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_GET_ID, 0, buf_r, VIRTIO_BLK_ID_BYTES),
			VIRTIO_BLK_S_OK);
	/* Not NUL-terminated when the id has all 20 bytes. */
	memcpy(id, buf_r, VIRTIO_BLK_ID_BYTES);
	id[VIRTIO_BLK_ID_BYTES] = '\0';
	info("test:   id \"%s\"\n", id);
	if (a->has_serial)
		GUEST_ASSERT_MSG(!strcmp(id, a->serial), "id \"%s\", serial= says \"%s\"", id,
				 a->serial);
}

static bool all_zero(const uint8_t *p, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void test_discard_wz(void)
{
	uint64_t sector = 1024;         /* block-aligned, away from the rest */

	if (virtio_has(&blk.vd, VIRTIO_BLK_F_DISCARD) && blk.max_discard_sectors >= 4 * SPB) {
		write_sectors(sector, 4 * BLOCK, 4);
		GUEST_ASSERT_EQ(vblk_range(&blk, VIRTIO_BLK_T_DISCARD, sector, 4 * SPB, 0),
				VIRTIO_BLK_S_OK);
		/* Discarded data is unspecified: only say what came back. */
		memset(buf_r, 0xa5, 4 * BLOCK);
		GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_IN, sector, buf_r, 4 * BLOCK),
				VIRTIO_BLK_S_OK);
		info("test:   discard ok (reads back %s)\n",
		     all_zero(buf_r, 4 * BLOCK) ? "zeros" : "old data");
	} else {
		info("test:   discard not offered: skipped\n");
	}
	if (virtio_has(&blk.vd, VIRTIO_BLK_F_WRITE_ZEROES) && blk.max_wz_sectors >= 4 * SPB) {
		write_sectors(sector, 4 * BLOCK, 5);
		GUEST_ASSERT_EQ(vblk_range(&blk, VIRTIO_BLK_T_WRITE_ZEROES, sector, 4 * SPB, 0),
				VIRTIO_BLK_S_OK);
		memset(buf_r, 0xa5, 4 * BLOCK);
		GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_IN, sector, buf_r, 4 * BLOCK),
				VIRTIO_BLK_S_OK);
		GUEST_ASSERT_MSG(all_zero(buf_r, 4 * BLOCK), "write-zeroes left data behind");
		info("test:   write-zeroes ok%s\n", blk.wz_may_unmap ? " (may unmap)" : "");
	} else {
		info("test:   write-zeroes not offered: skipped\n");
	}
}

static void test_rng(void)
{
	static const uint32_t sizes[] = { 1, 16, 64, 512 };
	uint8_t *p = buf_r;

	for (unsigned i = 0; i < 4; i++) {
		uint32_t want = sizes[i], got = 0;
		bool differ = false;

		memset(p, 0, want);
		/* The device may give less than asked: ask again for the rest. */
		while (got < want) {
			uint32_t n = vrng_read(&rng, p + got, want - got);

			GUEST_ASSERT(n > 0);
			got += n;
		}
		GUEST_ASSERT_EQ(got, want);
		for (uint32_t k = 1; k < want; k++)
			differ |= p[k] != p[0];
		GUEST_ASSERT_MSG(want == 1 || differ, "%u random bytes all 0x%02x", want, p[0]);
	}
}

static void test_reset(const struct args *a)
{
	struct virtio_opts o;

	/* Reset with reads in flight: the device must finish or drop them
	 * before the reset completes, and never touch the (reused) rings
	 * afterwards - a stale completion would fail the used-id check. */
	for (unsigned i = 0; i < 8; i++)
		GUEST_ASSERT(vblk_submit(&blk, VIRTIO_BLK_T_IN, QD_AREA + i * SPB,
					 buf_r + (i % MAX_QD) * BLOCK, BLOCK));
	vblk_kick(&blk);
	vblk_reset(&blk);
	GUEST_ASSERT_EQ(virtio_status(&blk.vd), 0);
	virtio_opts_from(a, &o);
	GUEST_ASSERT(vblk_init(&blk, blk.vd.pci, &o) == 0);
	GUEST_ASSERT(virtio_status(&blk.vd) & VIRTIO_S_DRIVER_OK);
	for (unsigned i = 0; i < 6; i++)
		read_check(rw_sectors[i], VBLK_SECTOR, 1);
	read_check(64, BLOCK, 2);
	run_qd(4, VIRTIO_BLK_T_IN, 14, 0);   /* written in step 3 */
}

int test_run(const struct args *a, const struct devices *d)
{
	struct virtio_opts o;
	uint64_t irq0, req0;

	virtio_opts_from(a, &o);
	GUEST_ASSERT_MSG(d->nr_blk > a->disk, "disk=%u but %u virtio-blk found", a->disk,
			 d->nr_blk);
	GUEST_ASSERT(vblk_init(&blk, d->blk[a->disk], &o) == 0);
	vblk_use_indirect(&blk, a->indirect > 0);
	if (d->rng)
		GUEST_ASSERT(vrng_init(&rng, d->rng, &o) == 0);
	GUEST_ASSERT(blk.capacity >= 16384);   /* 8 MiB: room for every area used */
	GUEST_ASSERT_MSG(!virtio_has(&blk.vd, VIRTIO_BLK_F_RO), "read-only disk: the tests write");
	buf_w = page_alloc(MAX_QD * BLOCK / 4096);
	buf_r = page_alloc(MAX_QD * BLOCK / 4096);
	info("test: virtio-blk %u of %u: %llu sectors, features 0x%llx of 0x%llx, queue %u, "
	     "%u slots, %s\n", a->disk, d->nr_blk, (unsigned long long)blk.capacity,
	     (unsigned long long)blk.vd.features, (unsigned long long)blk.vd.offered,
	     blk.vd.vq[0].size, blk.nr_slots, a->irq ? "interrupts" : "polled");
	step_done("devices found and initialised");

	irq0 = virtq_interrupts(&blk.vd.vq[0]);
	req0 = blk.requests;
	test_rw();
	/* One synchronous request at a time: exactly one interrupt each. */
	if (a->irq)
		GUEST_ASSERT_EQ(virtq_interrupts(&blk.vd.vq[0]) - irq0, blk.requests - req0);
	step_done("write and read back single sectors (incl. the last) and multi-sector");
	test_queue_depth(a);
	step_done("queue depth 1, 4, 16");
	test_kick_each();
	step_done("a kick per request: doorbells only where the device asks");
	if (virtio_has(&blk.vd, VIRTIO_BLK_F_FLUSH))
		GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	else
		info("test:   flush not offered: skipped\n");
	step_done("flush");
	test_past_end();
	step_done("past the end: IOERR");
	test_get_id(a);
	step_done("get-id");
	test_discard_wz();
	step_done("discard and write-zeroes");
	if (d->rng)
		test_rng();
	else
		info("test:   no virtio-rng: skipped\n");
	step_done("rng");
	test_reset(a);
	step_done("reset with requests in flight, re-initialise, data still there");

	/* Counts final, so they match what the host counted. */
	settle_irqs();
	report_blk(&blk);
	report("rng.requests", rng.requests);
	report("rng.bytes", rng.bytes);
	report("rng.notifies", d->rng ? rng.vd.vq[0].notifies : 0);
	report("rng.interrupts", d->rng ? virtq_interrupts(&rng.vd.vq[0]) : 0);
	printf("test: all passed\n");
	return 0;
}
