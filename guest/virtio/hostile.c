/*
 * mode=hostile: the driver turns hostile.  Case by case (hostile_cases.c)
 * a malformed chain is built by hand in the freshly initialised queue of
 * virtio-blk or virtio-rng, made available and the doorbell rung; then,
 * with a timeout per case, the guest waits until the device either
 * answers every chain or sets NEEDS_RESET, and checks:
 *  - what came back (used entries, status bytes, lengths);
 *  - that nothing changed outside the buffers the device was given to
 *    write: the arena (guard pattern around every buffer), the descriptor
 *    table and the available ring;
 *  - after a reset: a write read back, the disk's last sector intact, and
 *    for virtio-rng cases a read of random bytes.
 * It reports each step to the host (hostile_abi.h), which judges the
 * outcome against the case's expectation.  Nothing here GUEST_ASSERTs on
 * the device's behaviour during a case: the host says what was wrong, by
 * case name, and the next case still runs.  Everything runs at CPL3.
 */
#include "hostile.h"

#define CASE_TIMEOUT_MS   10000         /* a loaded host is slow; the host allows more */
#define SETTLE_MS         5             /* after the answer: late writes land */
#define RECOVER_AREA      4096u         /* sector of case 0's good I/O, 8 each */
#define LAST_SEED         0xee
#define GOOD_BYTES        4096u

uint8_t *arena;
struct virtq *hq;
struct vblk *hblk;
uint64_t h_ram_end;
static uint64_t h_cycles_per_ms;

static struct vblk blk;
static struct vrng rng;
static bool have_rng;
static struct virtio_opts opts;
static uint8_t *shadow, *ring_shadow, *buf_w, *buf_r;

/* Device-writable ranges inside the arena's interior. */
static struct { uint64_t lo, hi; } wr[64];
static unsigned nwr;

static struct chain {
	uint16_t head;
	bool done;
	uint32_t status_off;
	uint32_t wlen;
} chains[VIRTIO_QUEUE_SIZE_MAX];
static unsigned nchains;

/* ---- helpers the cases build with ------------------------------------------------- */

void h_desc(struct vring_desc *table, unsigned i, uint64_t addr, uint32_t len,
	    uint16_t flags, uint16_t next)
{
	uint64_t lo = A(4096), hi = A(ARENA_BYTES - 4096);

	table[i] = (struct vring_desc){ .addr = addr, .len = len, .flags = flags, .next = next };
	/* Only a buffer wholly between the guard pages may be written: one
	 * that reaches past them must be refused whole. */
	if ((flags & DF_WRITE) && !(flags & DF_INDIRECT) && addr >= lo && addr <= hi &&
	    len <= hi - addr && nwr < sizeof(wr) / sizeof(wr[0])) {
		wr[nwr].lo = addr;
		wr[nwr++].hi = addr + len;
	}
}

void h_publish(uint16_t head)
{
	hq->avail->ring[hq->avail_idx & (hq->size - 1)] = head;
	hq->avail_idx++;
}

void h_chain(uint16_t head, uint32_t status_off, uint32_t wlen)
{
	GUEST_ASSERT(nchains < sizeof(chains) / sizeof(chains[0]));
	chains[nchains++] = (struct chain){ .head = head, .status_off = status_off, .wlen = wlen };
	if (status_off != NO_STATUS)
		arena[status_off] = 0xff;       /* never a status the device writes */
	h_publish(head);
}

void h_hdr(uint32_t type, uint64_t sector)
{
	struct { uint32_t type, reserved; uint64_t sector; } h = { type, 0, sector };

	memcpy(arena + A_HDR, &h, sizeof(h));
}

void h_blk3(uint32_t type, uint64_t sector, uint64_t data, uint32_t len, uint16_t data_flags)
{
	h_hdr(type, sector);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_NEXT, 9);
	h_desc(hq->desc, 9, data, len, data_flags | DF_NEXT, 2);
	h_desc(hq->desc, 2, A(A_STATUS), 1, DF_WRITE, 0);
	h_chain(5, A_STATUS, 1 + ((data_flags & DF_WRITE) ? len : 0));
}

/* Sector by sector, so that any sector can be checked on its own. */
void h_fill(uint8_t *p, uint32_t len, uint64_t sector, uint32_t seed)
{
	for (uint32_t off = 0; off < len; off += VBLK_SECTOR) {
		uint64_t x = (sector + off / VBLK_SECTOR + 1) * 0x9e3779b97f4a7c15ull ^ seed;

		for (uint32_t i = off; i < len && i < off + VBLK_SECTOR; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[i] = (uint8_t)x;
		}
	}
}

bool h_matches(const uint8_t *p, uint32_t len, uint64_t sector, uint32_t seed)
{
	uint8_t tmp[VBLK_SECTOR];

	for (uint32_t off = 0; off < len; off += VBLK_SECTOR) {
		uint32_t n = len - off < VBLK_SECTOR ? len - off : VBLK_SECTOR;

		h_fill(tmp, n, sector + off / VBLK_SECTOR, seed);
		if (memcmp(tmp, p + off, n))
			return false;
	}
	return true;
}

/* ---- the device, fresh -------------------------------------------------------------- */

static struct virtio_dev *fresh(uint8_t device)
{
	if (device == VIRTIO_ID_RNG) {
		/* Not vrng_init(): that probes again and allocates new rings. */
		GUEST_ASSERT(virtio_init(&rng.vd, 0, 1, &opts) == 0);
		return &rng.vd;
	}
	vblk_reset(&blk);
	GUEST_ASSERT(vblk_init(&blk, blk.vd.pci, &opts) == 0);
	return &blk.vd;
}

static uint16_t used_idx(const struct virtq *vq)
{
	return *(volatile uint16_t *)&vq->used->idx;
}

void h_spin_ms(uint64_t ms)
{
	uint64_t t0 = rdtsc();

	while (rdtsc() - t0 < ms * h_cycles_per_ms)
		cpu_relax();
}

/* ---- one case ----------------------------------------------------------------------- */

static size_t avail_bytes(const struct virtq *vq)
{
	return 4 + 2u * vq->size + 2;   /* flags, idx, ring, used_event */
}

/* Snapshot what must not change, make the chains visible, ring. */
static void go(struct virtq *vq)
{
	size_t dbytes = 16u * vq->size;

	memcpy(shadow, arena, ARENA_BYTES);
	memcpy(ring_shadow, vq->desc, dbytes);
	memcpy(ring_shadow + dbytes, (const void *)vq->avail, avail_bytes(vq));
	memcpy(ring_shadow + dbytes + 2, &vq->avail_idx, 2);    /* as it is about to be */
	barrier();
	*(volatile uint16_t *)&vq->avail->idx = vq->avail_idx;
	virtio_mb();
	/* Always: a hostile driver does not care what the device asked for. */
	mmio_write16(vq->doorbell, vq->index);
}

/* Until @want used entries or NEEDS_RESET; false on timeout. */
static bool wait_answer(struct virtio_dev *vd, const struct virtq *vq, unsigned want)
{
	uint64_t t0 = rdtsc();

	for (unsigned i = 0;; i++) {
		if (want && (uint16_t)(used_idx(vq) - vq->last_used) >= want)
			return true;
		/* The status is an exit to the host: not on every turn. */
		if (!(i & 63) && (virtio_status(vd) & VIRTIO_S_NEEDS_RESET))
			return true;
		if (rdtsc() - t0 > CASE_TIMEOUT_MS * h_cycles_per_ms)
			return false;
		cpu_relax();
	}
}

static struct chain *chain_of(uint32_t id)
{
	for (unsigned i = 0; i < nchains; i++)
		if (chains[i].head == id && !chains[i].done)
			return &chains[i];
	return NULL;
}

/* Read the used entries the device returned; never trusts their ids. */
static void harvest(struct virtq *vq, struct hostile_report *r)
{
	uint16_t end = used_idx(vq);

	while (vq->last_used != end) {
		struct vring_used_elem e =
			*(volatile struct vring_used_elem *)&vq->used->ring[vq->last_used & (vq->size - 1)];
		struct chain *c = chain_of(e.id);

		vq->last_used++;
		if (r->used++ == 0)
			r->used_len = e.len;
		if (!c || e.len > c->wlen)
			r->bad_used++;
		if (!c)
			continue;
		c->done = true;
		if (c->status_off == NO_STATUS)
			continue;
		switch (arena[c->status_off]) {
		case VIRTIO_BLK_S_OK: r->ok++; break;
		case VIRTIO_BLK_S_IOERR: r->ioerr++; break;
		case VIRTIO_BLK_S_UNSUPP: r->unsupp++; break;
		default: r->other++; break;
		}
	}
}

static bool writable(uint64_t a)
{
	for (unsigned i = 0; i < nwr; i++)
		if (a >= wr[i].lo && a < wr[i].hi)
			return true;
	return false;
}

static int32_t arena_changed(void)
{
	for (uint32_t i = 0; i < ARENA_BYTES; i++)
		if (arena[i] != shadow[i] && !writable(A(i)))
			return (int32_t)i;
	return -1;
}

static bool rings_changed(const struct virtq *vq)
{
	size_t dbytes = 16u * vq->size;

	return memcmp(ring_shadow, vq->desc, dbytes) ||
	       memcmp(ring_shadow + dbytes, (const void *)vq->avail, avail_bytes(vq));
}

/* ---- recovery: reset, then good I/O ------------------------------------------------- */

static uint8_t good_rw(uint32_t type, uint64_t sector, uint8_t *buf, uint32_t len)
{
	return vblk_rw(&blk, type, sector, buf, len);
}

static void recover(const struct hcase *c, struct hostile_report *r)
{
	uint64_t sector = RECOVER_AREA + (uint64_t)r->index * (GOOD_BYTES / VBLK_SECTOR);
	uint8_t st;

	fresh(VIRTIO_ID_BLOCK);
	h_fill(buf_w, GOOD_BYTES, sector, r->index);
	memset(buf_r, 0, GOOD_BYTES);
	if ((st = good_rw(VIRTIO_BLK_T_OUT, sector, buf_w, GOOD_BYTES)) ||
	    (st = good_rw(VIRTIO_BLK_T_IN, sector, buf_r, GOOD_BYTES))) {
		r->recover_status = st;
		return;
	}
	if (!h_matches(buf_r, GOOD_BYTES, sector, r->index)) {
		r->recover_status = RECOVER_DATA_WRONG;
		return;
	}
	/* Written once before the first case; no case may have changed it. */
	if ((st = good_rw(VIRTIO_BLK_T_IN, blk.capacity - 1, buf_r, VBLK_SECTOR))) {
		r->recover_status = st;
		return;
	}
	if (!h_matches(buf_r, VBLK_SECTOR, blk.capacity - 1, LAST_SEED)) {
		r->recover_status = RECOVER_LAST_SECTOR;
		return;
	}
	if (c->device == VIRTIO_ID_RNG) {
		fresh(VIRTIO_ID_RNG);
		if (vrng_read(&rng, buf_r, 16) == 0) {
			r->recover_status = RECOVER_RNG_EMPTY;
			return;
		}
	}
	r->recovered = 1;
}

static void run_case(const struct hcase *c, unsigned index)
{
	static struct hostile_report rep;
	struct hostile_report *r = &rep;
	struct virtio_dev *vd;
	uint64_t setup0;

	memset(r, 0, sizeof(*r));
	memcpy(r->name, c->name, strlen(c->name) < HOSTILE_NAME_MAX ? strlen(c->name) + 1
								   : HOSTILE_NAME_MAX - 1);
	r->expect = c->expect;
	r->index = index;
	r->arena_bad = -1;
	r->guard_lo = A(0);
	r->guard_hi = A(ARENA_BYTES - 4096);
	r->guard_len = 4096;
	ucall(UCALL_REPORT, (uint64_t)"hostile.begin", (uint64_t)r, 0, 0);
	info("hostile: case %u %s\n", index, c->name);

	vd = fresh(c->device);
	hq = &vd->vq[0];
	for (uint32_t i = 0; i < ARENA_BYTES; i++)
		arena[i] = hostile_guard(A(i));
	nwr = nchains = 0;
	setup0 = blk.requests;
	c->build();
	r->setup_requests = (uint32_t)(blk.requests - setup0);
	r->submitted = nchains;
	go(hq);
	if (c->await) {
		c->await(r);
	} else {
		r->timed_out = !wait_answer(vd, hq, nchains);
		h_spin_ms(SETTLE_MS);
	}
	harvest(hq, r);
	if (c->check)
		c->check(r);
	r->arena_bad = arena_changed();
	r->ring_bad = rings_changed(hq);
	r->dev_status = virtio_status(vd);
	ucall(UCALL_REPORT, (uint64_t)"hostile.case", (uint64_t)r, 0, 0);

	recover(c, r);
	ucall(UCALL_REPORT, (uint64_t)"hostile.recovered", (uint64_t)r, 0, 0);
}

/* The end of the RAM below 4 GiB the start info describes (0: unknown). */
static uint64_t ram_end(void)
{
	const struct hvm_start_info *si = guest_start_info();
	const struct hvm_memmap_table_entry *map;
	uint64_t end = 0;

	if (!si || si->version < 1 || !si->memmap_paddr)
		return 0;
	map = (const void *)si->memmap_paddr;
	for (uint32_t i = 0; i < si->memmap_entries; i++)
		if (map[i].type == 1 && map[i].addr + map[i].size <= KICKVM_MMIO_HOLE &&
		    map[i].addr + map[i].size > end)
			end = map[i].addr + map[i].size;
	return end;
}

int hostile_run(const struct args *a, const struct devices *d)
{
	unsigned ran = 0;

	virtio_opts_from(a, &opts);
	GUEST_ASSERT_MSG(d->nr_blk > a->disk, "disk=%u but %u virtio-blk found", a->disk,
			 d->nr_blk);
	GUEST_ASSERT(vblk_init(&blk, d->blk[a->disk], &opts) == 0);
	have_rng = d->rng && vrng_init(&rng, d->rng, &opts) == 0;
	GUEST_ASSERT_MSG(virtio_has(&blk.vd, VIRTIO_F_INDIRECT_DESC),
			 "the indirect cases need VIRTIO_F_INDIRECT_DESC");
	GUEST_ASSERT_MSG(!virtio_has(&blk.vd, VIRTIO_BLK_F_RO), "read-only disk: the cases write");
	hblk = &blk;
	h_ram_end = ram_end();
	GUEST_ASSERT_MSG(h_ram_end, "no memory map: the RAM-end case needs one");
	h_cycles_per_ms = a->tsc_khz ? a->tsc_khz : 3000000;
	arena = page_alloc(ARENA_PAGES);
	shadow = page_alloc(ARENA_PAGES);
	ring_shadow = page_alloc((16u * VIRTIO_QUEUE_SIZE_MAX + 6 + 2 * VIRTIO_QUEUE_SIZE_MAX) / 4096 + 1);
	buf_w = page_alloc(GOOD_BYTES / 4096);
	buf_r = page_alloc(GOOD_BYTES / 4096);

	h_fill(buf_w, VBLK_SECTOR, blk.capacity - 1, LAST_SEED);
	GUEST_ASSERT_EQ(good_rw(VIRTIO_BLK_T_OUT, blk.capacity - 1, buf_w, VBLK_SECTOR),
			VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < hostile_nr_cases; i++) {
		if (hostile_cases[i].device == VIRTIO_ID_RNG && !have_rng)
			continue;
		run_case(&hostile_cases[i], i);
		ran++;
	}
	report("hostile.cases", ran);
	printf("hostile: %u cases run\n", ran);
	return 0;
}
