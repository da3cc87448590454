/*
 * The cases of mode=hostile (hostile.c runs them): each builds malformed
 * chains in a freshly initialised queue.  Descriptor indices are picked
 * apart (5, 9, 2) so that a device that walks by position instead of by
 * `next` goes wrong visibly.  What each must end in is the expectation in
 * the table at the bottom (hostile_abi.h says what each one means).
 */
#include "hostile.h"

#define SECTOR       VBLK_SECTOR
#define FAR_AWAY     (1ull << 46)        /* no RAM there */
#define MMIO_PAGE    KICKVM_SYSDEV_BASE   /* a device page, not RAM */
#define RNG_HEAD     3

static uint64_t data(void)
{
	return A(A_DATA);
}

static uint64_t capacity(void)
{
	return hblk->capacity;
}

/* ---- virtio-blk: the descriptor walk ------------------------------------------------- */

static void desc_loop(void)             /* 5 -> 9 -> 5 -> ... */
{
	h_hdr(VIRTIO_BLK_T_IN, 0);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_NEXT, 9);
	h_desc(hq->desc, 9, data(), SECTOR, DF_WRITE | DF_NEXT, 5);
	h_chain(5, A_STATUS, SECTOR + 1);
}

static void desc_self_loop(void)
{
	h_hdr(VIRTIO_BLK_T_IN, 0);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_NEXT, 5);
	h_chain(5, A_STATUS, 1);
}

static void next_past(uint16_t next)
{
	h_hdr(VIRTIO_BLK_T_IN, 0);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_NEXT, 9);
	h_desc(hq->desc, 9, data(), SECTOR, DF_WRITE | DF_NEXT, next);
	h_chain(5, A_STATUS, SECTOR + 1);
}

static void next_is_size(void) { next_past(hq->size); }
static void next_ffff(void) { next_past(0xffff); }

/* A good request in the table, but the ring names another head. */
static void head_past(uint16_t head)
{
	h_hdr(VIRTIO_BLK_T_IN, 0);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_NEXT, 9);
	h_desc(hq->desc, 9, data(), SECTOR, DF_WRITE | DF_NEXT, 2);
	h_desc(hq->desc, 2, A(A_STATUS), 1, DF_WRITE, 0);
	h_publish(head);
}

static void head_is_size(void) { head_past(hq->size); }
static void head_ffff(void) { head_past(0xffff); }

/* One good chain, then the index jumps a whole ring further. */
static void avail_idx_jump(void)
{
	h_blk3(VIRTIO_BLK_T_IN, 0, data(), SECTOR, DF_WRITE);
	hq->avail_idx += hq->size;
}

static void avail_idx_backwards(void)
{
	hq->avail_idx--;                /* 0xffff entries "available" */
}

/* ---- virtio-blk: addresses and lengths ------------------------------------------------ */

static void addr_far(void) { h_blk3(VIRTIO_BLK_T_IN, 0, FAR_AWAY, SECTOR, DF_WRITE); }
static void addr_wraps(void) { h_blk3(VIRTIO_BLK_T_IN, 0, ~0ull - 0xfff, 0x2000, DF_WRITE); }
static void addr_mmio(void) { h_blk3(VIRTIO_BLK_T_IN, 0, MMIO_PAGE, SECTOR, DF_WRITE); }

static void addr_ram_end(void)
{
	h_blk3(VIRTIO_BLK_T_IN, 0, h_ram_end - SECTOR / 2, SECTOR, DF_WRITE);
}

static void len_huge(void) { h_blk3(VIRTIO_BLK_T_IN, 0, data(), 0xffffffffu, DF_WRITE); }

/* ---- virtio-blk: layout of the request --------------------------------------------------- */

static void status_missing(void)
{
	h_hdr(VIRTIO_BLK_T_OUT, 0);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_NEXT, 9);
	h_desc(hq->desc, 9, data(), SECTOR, 0, 0);
	h_chain(5, NO_STATUS, 0);
}

static void status_len_zero(void)
{
	h_hdr(VIRTIO_BLK_T_FLUSH, 0);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_NEXT, 2);
	h_desc(hq->desc, 2, A(A_STATUS), 0, DF_WRITE, 0);
	h_chain(5, NO_STATUS, 0);
}

static void header_short(void)
{
	h_hdr(VIRTIO_BLK_T_IN, 0);
	h_desc(hq->desc, 5, A(A_HDR), 8, DF_NEXT, 9);
	h_desc(hq->desc, 9, data(), SECTOR, DF_WRITE | DF_NEXT, 2);
	h_desc(hq->desc, 2, A(A_STATUS), 1, DF_WRITE, 0);
	h_chain(5, A_STATUS, SECTOR + 1);
}

static void header_writable(void)
{
	h_hdr(VIRTIO_BLK_T_IN, 0);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_WRITE | DF_NEXT, 9);
	h_desc(hq->desc, 9, data(), SECTOR, DF_WRITE | DF_NEXT, 2);
	h_desc(hq->desc, 2, A(A_STATUS), 1, DF_WRITE, 0);
	h_chain(5, A_STATUS, 16 + SECTOR + 1);
}

static void readable_after_writable(void)
{
	h_hdr(VIRTIO_BLK_T_OUT, 0);
	h_desc(hq->desc, 5, A(A_HDR), 16, DF_NEXT, 2);
	h_desc(hq->desc, 2, A(A_STATUS), 1, DF_WRITE | DF_NEXT, 9);
	h_desc(hq->desc, 9, data(), SECTOR, 0, 0);
	h_chain(5, A_STATUS, 1);
}

/* A read whose data buffer the device may only read: nothing can be read
 * into it, so it must not complete OK. */
static void read_into_readable(void)
{
	h_fill(arena + A_DATA, SECTOR, 0, 1);
	h_blk3(VIRTIO_BLK_T_IN, 64, data(), SECTOR, 0);
}

/* A write whose data buffer is device-writable: nothing to write from. */
static void write_from_writable(void)
{
	h_fill(arena + A_DATA, SECTOR, 64, 2);
	h_blk3(VIRTIO_BLK_T_OUT, 64, data(), SECTOR, DF_WRITE);
}

/* The same good read made available twice while in flight. */
static void duplicate_head(void)
{
	h_blk3(VIRTIO_BLK_T_IN, 0, data(), SECTOR, DF_WRITE);
	h_chain(5, A_STATUS, SECTOR + 1);
}

/* ---- virtio-blk: indirect tables ------------------------------------------------------- */

static struct vring_desc *table(void)
{
	return (struct vring_desc *)(arena + A_TABLE);
}

/* Head 5 refers to the table at A_TABLE: @len bytes, @flags added. */
static void indirect_head(uint64_t addr, uint32_t len, uint16_t flags, uint32_t wlen)
{
	h_desc(hq->desc, 5, addr, len, DF_INDIRECT | flags, 9);
	h_chain(5, A_STATUS, wlen);
}

/* A good three-entry read in the table, then @patch spoils it. */
static void good_table(void)
{
	h_hdr(VIRTIO_BLK_T_IN, 0);
	h_desc(table(), 0, A(A_HDR), 16, DF_NEXT, 1);
	h_desc(table(), 1, data(), SECTOR, DF_WRITE | DF_NEXT, 2);
	h_desc(table(), 2, A(A_STATUS), 1, DF_WRITE, 0);
}

static void indirect_nested(void)
{
	good_table();
	h_desc(table(), 0, A(A_TABLE2), 48, DF_INDIRECT, 0);
	h_desc((struct vring_desc *)(arena + A_TABLE2), 0, A(A_HDR), 16, 0, 0);
	indirect_head(A(A_TABLE), 48, 0, SECTOR + 1);
}

static void indirect_next_past(void)
{
	good_table();
	table()[1].next = 7;            /* the table has 3 */
	indirect_head(A(A_TABLE), 48, 0, SECTOR + 1);
}

static void indirect_loop(void)
{
	good_table();
	table()[1].next = 0;
	indirect_head(A(A_TABLE), 48, 0, SECTOR + 1);
}

static void indirect_far(void) { good_table(); indirect_head(FAR_AWAY, 48, 0, SECTOR + 1); }
static void indirect_mmio(void) { good_table(); indirect_head(MMIO_PAGE, 48, 0, SECTOR + 1); }
static void indirect_len_odd(void) { good_table(); indirect_head(A(A_TABLE), 40, 0, SECTOR + 1); }
static void indirect_len_zero(void) { good_table(); indirect_head(A(A_TABLE), 0, 0, SECTOR + 1); }
static void indirect_huge(void) { good_table(); indirect_head(A(A_TABLE), 0xfffffff0u, 0, SECTOR + 1); }

static void indirect_with_next(void)
{
	good_table();
	h_desc(hq->desc, 9, A(A_STATUS), 1, DF_WRITE, 0);
	indirect_head(A(A_TABLE), 48, DF_NEXT, SECTOR + 1);
}

/* 300 descriptors in one request: more than any device queue, more than
 * the seg_max the device offers (a write: the data may all be one buffer). */
static void chain_too_long(void)
{
	const unsigned n = 300;

	h_hdr(VIRTIO_BLK_T_OUT, 0);
	h_desc(table(), 0, A(A_HDR), 16, DF_NEXT, 1);
	for (unsigned i = 1; i < n - 1; i++)
		h_desc(table(), i, data(), SECTOR, DF_NEXT, (uint16_t)(i + 1));
	h_desc(table(), n - 1, A(A_STATUS), 1, DF_WRITE, 0);
	indirect_head(A(A_TABLE), n * 16, 0, 1);
}

/* ---- virtio-blk: sectors ---------------------------------------------------------------- */

static void read_past_end(void) { h_blk3(VIRTIO_BLK_T_IN, capacity(), data(), SECTOR, DF_WRITE); }
static void read_straddles_end(void)
{
	h_blk3(VIRTIO_BLK_T_IN, capacity() - 1, data(), 2 * SECTOR, DF_WRITE);
}
static void write_past_end(void) { h_blk3(VIRTIO_BLK_T_OUT, capacity(), data(), SECTOR, 0); }
static void write_straddles_end(void)
{
	h_blk3(VIRTIO_BLK_T_OUT, capacity() - 1, data(), 2 * SECTOR, 0);
}
/* 2^55 sectors of 512 bytes: the byte offset wraps to 0. */
static void sector_wraps(void) { h_blk3(VIRTIO_BLK_T_OUT, 1ull << 55, data(), SECTOR, 0); }
static void sector_max(void) { h_blk3(VIRTIO_BLK_T_IN, ~0ull, data(), SECTOR, DF_WRITE); }
static void len_not_sectors(void) { h_blk3(VIRTIO_BLK_T_IN, 0, data(), 100, DF_WRITE); }
static void unknown_type(void) { h_blk3(0x7777, 0, data(), SECTOR, DF_WRITE); }

/* Discard / write-zeroes with one segment at A_SEG. */
static void range_req(uint32_t type, uint64_t sector, uint32_t nsectors)
{
	struct { uint64_t sector; uint32_t num, flags; } seg = { sector, nsectors, 0 };

	memcpy(arena + A_SEG, &seg, sizeof(seg));
	h_blk3(type, 0, A(A_SEG), sizeof(seg), 0);
}

static void discard_past_end(void) { range_req(VIRTIO_BLK_T_DISCARD, capacity() - 4, 8); }
static void write_zeroes_huge(void) { range_req(VIRTIO_BLK_T_WRITE_ZEROES, 0, 0xffffffffu); }

/* ---- virtio-blk: more than the device's request pool -------------------------------------- */

#define POOL_AREA   8192u                /* first sector */
#define POOL_SEED   0x9001

static uint8_t *pool_mem;                /* data, then per request: table, header, status */

struct pool_req {
	struct vring_desc table[3];
	struct { uint32_t type, reserved; uint64_t sector; } hdr;
	uint8_t status;
} __attribute__((aligned(16)));

/* A good read of @len bytes at @sector into @buf, through @p's indirect
 * table, at ring descriptor @head, made available.  Its status byte lives
 * outside the arena: the case's check reads it. */
static void indirect_read(struct pool_req *p, uint16_t head, uint64_t sector, uint8_t *buf,
			  uint32_t len)
{
	p->hdr.type = VIRTIO_BLK_T_IN;
	p->hdr.reserved = 0;
	p->hdr.sector = sector;
	p->status = 0xff;
	h_desc(p->table, 0, (uint64_t)&p->hdr, 16, DF_NEXT, 1);
	h_desc(p->table, 1, (uint64_t)buf, len, DF_WRITE | DF_NEXT, 2);
	h_desc(p->table, 2, (uint64_t)&p->status, 1, DF_WRITE, 0);
	h_desc(hq->desc, head, (uint64_t)p->table, sizeof(p->table), DF_INDIRECT, 0);
	h_chain(head, NO_STATUS, len + 1);
}

static struct pool_req *pool_reqs(void)
{
	return (struct pool_req *)(pool_mem + (size_t)hq->size * SECTOR);
}

/* Every descriptor of the queue an indirect read of its own sector:
 * the whole ring in flight at once (more than the device's pool). */
static void more_than_pool(void)
{
	unsigned n = hq->size;
	uint8_t *w = pool_mem;          /* the data area doubles as the write buffer */

	/* The sectors hold a known pattern first (good I/O, 64 KiB at a time). */
	for (unsigned s = 0; s < n; s += 128) {
		for (unsigned k = 0; k < 128; k++)
			h_fill(w + k * SECTOR, SECTOR, POOL_AREA + s + k, POOL_SEED);
		GUEST_ASSERT_EQ(vblk_rw(hblk, VIRTIO_BLK_T_OUT, POOL_AREA + s, w, 128 * SECTOR),
				VIRTIO_BLK_S_OK);
	}
	memset(pool_mem, 0xa5, (size_t)n * SECTOR);
	for (unsigned i = 0; i < n; i++)
		indirect_read(&pool_reqs()[i], (uint16_t)i, POOL_AREA + i,
			      pool_mem + (size_t)i * SECTOR, SECTOR);
}

static void more_than_pool_check(struct hostile_report *r)
{
	for (unsigned i = 0; i < hq->size; i++) {
		uint8_t st = pool_reqs()[i].status;

		if (st == VIRTIO_BLK_S_OK)
			r->ok++;
		else if (st == VIRTIO_BLK_S_IOERR)
			r->ioerr++;
		else if (st == VIRTIO_BLK_S_UNSUPP)
			r->unsupp++;
		else
			r->other++;
		if (st == VIRTIO_BLK_S_OK &&
		    !h_matches(pool_mem + (size_t)i * SECTOR, SECTOR, POOL_AREA + i, POOL_SEED))
			r->data_bad++;
	}
}

static void pool_build(void)
{
	if (!pool_mem)
		pool_mem = page_alloc(((size_t)VIRTIO_QUEUE_SIZE_MAX *
				       (SECTOR + sizeof(struct pool_req)) + 4095) / 4096);
	more_than_pool();
}

/* ---- virtio-blk: bus master cleared with I/O in flight ------------------------------------ */

#define BM_REQS      16
#define BM_BYTES     (512u << 10)        /* each: 8 MiB in all */
#define QUIET_MS     100
#define IRQ_LAG_MS   20

static uint8_t *bm_mem;

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Large reads through indirect tables (pool_req again), all at once. */
static void bus_master_build(void)
{
	if (!bm_mem)
		bm_mem = page_alloc((size_t)BM_REQS * BM_BYTES / 4096 + 1);
	memset(bm_mem, 0xa5, (size_t)BM_REQS * BM_BYTES);
	for (unsigned i = 0; i < BM_REQS; i++)
		indirect_read((struct pool_req *)(bm_mem + (size_t)BM_REQS * BM_BYTES) + i,
			      (uint16_t)i, (uint64_t)i * (BM_BYTES / SECTOR),
			      bm_mem + (size_t)i * BM_BYTES, BM_BYTES);
}

/* Clear bus master right after the doorbell; from the moment the config
 * write returns, nothing the device could write may change. */
static void bus_master_await(struct hostile_report *r)
{
	const struct pool_req *p = (const struct pool_req *)(bm_mem + (size_t)BM_REQS * BM_BYTES);
	uint8_t status[BM_REQS];
	uint16_t used0;
	uint64_t irq0, data0;

	pci_disable_master(hblk->vd.pci);
	used0 = *(volatile uint16_t *)&hq->used->idx;
	for (unsigned i = 0; i < BM_REQS; i++)
		status[i] = *(volatile const uint8_t *)&p[i].status;
	data0 = fnv(bm_mem, (size_t)BM_REQS * BM_BYTES);
	r->in_flight = BM_REQS - (uint16_t)(used0 - hq->last_used);
	/* An interrupt the device raised before the clear may still be on its
	 * way in (an irqfd injection can lag): count from a little later.  A
	 * completion after the clear shows in the used index anyway. */
	h_spin_ms(IRQ_LAG_MS);
	irq0 = virtq_interrupts(hq);
	h_spin_ms(QUIET_MS);
	if (*(volatile uint16_t *)&hq->used->idx != used0)
		r->quiet_changes |= QUIET_USED_IDX;
	for (unsigned i = 0; i < BM_REQS; i++)
		if (*(volatile const uint8_t *)&p[i].status != status[i])
			r->quiet_changes |= QUIET_STATUS;
	if (fnv(bm_mem, (size_t)BM_REQS * BM_BYTES) != data0)
		r->quiet_changes |= QUIET_DATA;
	if (virtq_interrupts(hq) != irq0)
		r->quiet_changes |= QUIET_IRQ;
}

/* ---- virtio-blk: DRIVER_OK cleared and set again with I/O in flight ------------------ */

#define COMMON_STATUS  0x14             /* device_status in the common config */

/* The bus master case's reads, then DRIVER_OK off and on again without a
 * reset.  The device may refuse (NEEDS_RESET) or treat it as a reset; it
 * must not start the rings over and run the same chains again (the host
 * counts what it executed) nor complete old chains into a ring it forgot. */
static void driver_ok_await(struct hostile_report *r)
{
	uint8_t st = virtio_status(&hblk->vd);

	(void)r;
	mmio_write8(hblk->vd.common + COMMON_STATUS, (uint8_t)(st & ~VIRTIO_S_DRIVER_OK));
	mmio_write8(hblk->vd.common + COMMON_STATUS, st);
	h_spin_ms(QUIET_MS);
}

/* ---- virtio-rng ------------------------------------------------------------------------- */

static void rng_one(uint64_t addr, uint32_t len, uint16_t flags)
{
	h_desc(hq->desc, RNG_HEAD, addr, len, flags, 0);
	h_chain(RNG_HEAD, NO_STATUS, (flags & DF_WRITE) ? len : 0);
}

static void rng_desc_loop(void)
{
	h_desc(hq->desc, RNG_HEAD, data(), 64, DF_WRITE | DF_NEXT, 4);
	h_desc(hq->desc, 4, data() + 64, 64, DF_WRITE | DF_NEXT, RNG_HEAD);
	h_chain(RNG_HEAD, NO_STATUS, 128);
}

static void rng_head_past(void)
{
	h_desc(hq->desc, RNG_HEAD, data(), 64, DF_WRITE, 0);
	h_publish(hq->size);
}

static void rng_next_past(void)
{
	h_desc(hq->desc, RNG_HEAD, data(), 64, DF_WRITE | DF_NEXT, hq->size);
	h_chain(RNG_HEAD, NO_STATUS, 64);
}

static void rng_avail_idx_jump(void)
{
	rng_one(data(), 64, DF_WRITE);
	hq->avail_idx += hq->size;
}

static void rng_far(void) { rng_one(FAR_AWAY, 64, DF_WRITE); }
static void rng_mmio(void) { rng_one(MMIO_PAGE, 64, DF_WRITE); }
static void rng_len_huge(void) { rng_one(data(), 0xffffffffu, DF_WRITE); }
static void rng_readable(void) { rng_one(data(), 64, 0); }
static void rng_over_max(void) { rng_one(data(), 128u << 10, DF_WRITE); }

static void rng_readable_after_writable(void)
{
	h_desc(hq->desc, RNG_HEAD, data(), 64, DF_WRITE | DF_NEXT, 4);
	h_desc(hq->desc, 4, data() + 64, 64, 0, 0);
	h_chain(RNG_HEAD, NO_STATUS, 64);
}

static void rng_indirect_nested(void)
{
	h_desc(table(), 0, A(A_TABLE2), 16, DF_INDIRECT, 0);
	h_desc((struct vring_desc *)(arena + A_TABLE2), 0, data(), 64, DF_WRITE, 0);
	h_desc(hq->desc, RNG_HEAD, A(A_TABLE), 16, DF_INDIRECT, 0);
	h_chain(RNG_HEAD, NO_STATUS, 64);
}

/* ---- the table ------------------------------------------------------------------------ */

#define BLK(name, expect, build) { "blk." name, VIRTIO_ID_BLOCK, expect, build, NULL, NULL }
#define RNG(name, expect, build) { "rng." name, VIRTIO_ID_RNG, expect, build, NULL, NULL }

const struct hcase hostile_cases[] = {
	BLK("desc_loop", EXPECT_BROKEN, desc_loop),
	BLK("desc_self_loop", EXPECT_BROKEN, desc_self_loop),
	BLK("next_is_queue_size", EXPECT_BROKEN, next_is_size),
	BLK("next_0xffff", EXPECT_BROKEN, next_ffff),
	BLK("head_is_queue_size", EXPECT_BROKEN, head_is_size),
	BLK("head_0xffff", EXPECT_BROKEN, head_ffff),
	BLK("avail_idx_jump", EXPECT_BROKEN, avail_idx_jump),
	BLK("avail_idx_backwards", EXPECT_BROKEN, avail_idx_backwards),
	BLK("addr_far_outside_ram", EXPECT_BROKEN, addr_far),
	BLK("addr_wraps_64bit", EXPECT_BROKEN, addr_wraps),
	BLK("addr_mmio_page", EXPECT_BROKEN, addr_mmio),
	BLK("addr_straddles_ram_end", EXPECT_BROKEN, addr_ram_end),
	BLK("len_4g", EXPECT_BROKEN, len_huge),
	BLK("status_missing", EXPECT_BROKEN, status_missing),
	BLK("status_len_zero", EXPECT_BROKEN, status_len_zero),
	BLK("header_short", EXPECT_BROKEN, header_short),
	BLK("header_writable", EXPECT_BROKEN, header_writable),
	BLK("readable_after_writable", EXPECT_BROKEN, readable_after_writable),
	BLK("read_into_readable", EXPECT_FAILED, read_into_readable),
	BLK("write_from_writable", EXPECT_FAILED, write_from_writable),
	BLK("duplicate_head", EXPECT_SURVIVE, duplicate_head),
	BLK("indirect_nested", EXPECT_BROKEN, indirect_nested),
	BLK("indirect_next_past_table", EXPECT_BROKEN, indirect_next_past),
	BLK("indirect_loop", EXPECT_BROKEN, indirect_loop),
	BLK("indirect_far_outside_ram", EXPECT_BROKEN, indirect_far),
	BLK("indirect_table_mmio_page", EXPECT_BROKEN, indirect_mmio),
	BLK("indirect_len_not_16n", EXPECT_BROKEN, indirect_len_odd),
	BLK("indirect_len_zero", EXPECT_BROKEN, indirect_len_zero),
	BLK("indirect_len_huge", EXPECT_BROKEN, indirect_huge),
	BLK("indirect_with_next", EXPECT_BROKEN, indirect_with_next),
	BLK("chain_300_descriptors", EXPECT_FAILED, chain_too_long),
	BLK("read_past_end", EXPECT_IOERR, read_past_end),
	BLK("read_straddles_end", EXPECT_IOERR, read_straddles_end),
	BLK("write_past_end", EXPECT_IOERR, write_past_end),
	BLK("write_straddles_end", EXPECT_IOERR, write_straddles_end),
	BLK("sector_offset_wraps", EXPECT_IOERR, sector_wraps),
	BLK("sector_max", EXPECT_IOERR, sector_max),
	BLK("len_not_sectors", EXPECT_IOERR, len_not_sectors),
	BLK("discard_past_end", EXPECT_IOERR, discard_past_end),
	BLK("write_zeroes_4g_sectors", EXPECT_IOERR, write_zeroes_huge),
	BLK("unknown_type", EXPECT_UNSUPP, unknown_type),
	{ "blk.more_than_pool", VIRTIO_ID_BLOCK, EXPECT_ALL_OK, pool_build, NULL,
	  more_than_pool_check },
	{ "blk.bus_master_cleared", VIRTIO_ID_BLOCK, EXPECT_QUIET, bus_master_build,
	  bus_master_await, NULL },
	{ "blk.driver_ok_toggled", VIRTIO_ID_BLOCK, EXPECT_SURVIVE, bus_master_build,
	  driver_ok_await, NULL },
	RNG("desc_loop", EXPECT_BROKEN, rng_desc_loop),
	RNG("head_is_queue_size", EXPECT_BROKEN, rng_head_past),
	RNG("next_is_queue_size", EXPECT_BROKEN, rng_next_past),
	RNG("avail_idx_jump", EXPECT_BROKEN, rng_avail_idx_jump),
	RNG("addr_far_outside_ram", EXPECT_BROKEN, rng_far),
	RNG("addr_mmio_page", EXPECT_BROKEN, rng_mmio),
	RNG("len_4g", EXPECT_BROKEN, rng_len_huge),
	RNG("readable_buffer", EXPECT_RNG_BOUNDED, rng_readable),
	RNG("readable_after_writable", EXPECT_BROKEN, rng_readable_after_writable),
	RNG("indirect_nested", EXPECT_BROKEN, rng_indirect_nested),
	RNG("more_than_per_request", EXPECT_RNG_BOUNDED, rng_over_max),
};
const unsigned hostile_nr_cases = sizeof(hostile_cases) / sizeof(hostile_cases[0]);
