/*
 * mode=stream: a guest that counts its boots on the disk and then writes
 * sequential sectors with requests in flight (stream_abi.h), for the host
 * tests of reset in place (the device must come back and work after the
 * machine reset under it) and of quit during I/O (every write the device
 * completed must be in the image afterwards).
 *
 * UCALL_REPORTs: "stream.boot" (this boot's number, once it is on disk),
 * "stream.inflight" (the first @qd writes are queued and the device told),
 * and at the end "stream.written".  reqs=N writes N sectors and exits 0;
 * reqs=0 writes until the disk's end, then waits for the host to end it.
 */
#include "virtio_guest.h"
#include "stream_abi.h"

#define MAX_QD 16u

static struct vblk blk;
static struct stream_sector *bufs;   /* one per slot */

static void fill(struct stream_sector *s, uint64_t boot, uint64_t seq)
{
	s->magic = STREAM_DATA_MAGIC;
	s->boot = boot;
	s->seq = seq;
	for (unsigned i = 0; i < sizeof(s->fill); i++)
		s->fill[i] = stream_fill_byte(boot, seq, i);
}

static uint64_t count_boot(void)
{
	struct stream_boot *rec = (struct stream_boot *)&bufs[0];
	uint64_t boots;

	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_IN, 0, rec, STREAM_SECTOR), VIRTIO_BLK_S_OK);
	boots = rec->magic == STREAM_BOOT_MAGIC ? rec->boots + 1 : 1;
	memset(rec, 0, STREAM_SECTOR);
	rec->magic = STREAM_BOOT_MAGIC;
	rec->boots = boots;
	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_OUT, 0, rec, STREAM_SECTOR), VIRTIO_BLK_S_OK);
	GUEST_ASSERT_EQ(vblk_rw(&blk, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	return boots;
}

static bool submit(uint64_t boot, uint64_t seq)
{
	struct vblk_req *r = vblk_alloc(&blk);
	struct stream_sector *s;

	if (!r)
		return false;
	s = &bufs[vblk_slot_index(&blk, r)];
	fill(s, boot, seq);
	if (!vblk_queue(&blk, r, VIRTIO_BLK_T_OUT, seq, s, STREAM_SECTOR))
		GUEST_FAIL("stream: ring full with a free slot");
	return true;
}

int stream_run(const struct args *a, const struct devices *d)
{
	struct virtio_opts o;
	unsigned qd = a->qd ? a->qd : 4;
	uint64_t boot, next = 1, done = 0, last;

	GUEST_ASSERT_MSG(d->nr_blk > a->disk, "stream: no virtio-blk disk %u", a->disk);
	GUEST_ASSERT_MSG(qd <= MAX_QD, "stream: qd=%u (at most %u)", qd, MAX_QD);
	virtio_opts_from(a, &o);
	GUEST_ASSERT_EQ(vblk_init(&blk, d->blk[a->disk], &o), 0);
	GUEST_ASSERT_MSG(blk.nr_slots >= qd, "stream: %u slots for qd=%u", blk.nr_slots, qd);
	bufs = page_alloc((blk.nr_slots * sizeof(*bufs) + 4095) / 4096);
	boot = count_boot();
	report("stream.boot", boot);
	last = a->reqs ? a->reqs : blk.capacity - 1;
	GUEST_ASSERT_MSG(last < blk.capacity, "stream: reqs=%llu on %llu sectors",
			 (unsigned long long)a->reqs, (unsigned long long)blk.capacity);
	while (next <= last && next <= qd && submit(boot, next))
		next++;
	vblk_kick(&blk);
	report("stream.inflight", next - 1);
	while (done < last) {
		struct vblk_req *r = vblk_wait(&blk);

		GUEST_ASSERT_EQ(r->status, VIRTIO_BLK_S_OK);
		vblk_release(&blk, r);
		done++;
		while (next <= last && submit(boot, next))
			next++;
		vblk_kick(&blk);
	}
	report("stream.written", done);
	if (!a->reqs)
		for (;;)
			cpu_relax();
	return 0;
}
