/*
 * Split virtqueues against a mock driver: the test lays out the rings in a
 * guest_mem, adds chains to the available ring as a driver would, and reads
 * the used ring back.  Every malformed case must break the queue with -EIO
 * and a reason, and leave the used ring untouched.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "kickvm/guest_mem.h"
#include "kickvm/virtqueue.h"

/* Two banks: [0, 1 MiB) and [4 GiB, 4 GiB + 1 MiB). */
#define RAM_LOW   (1ull << 20)
#define RAM_HIGH  (4ull << 30)
#define DESC_GPA  0x10000
#define AVAIL_GPA 0x30000
#define USED_GPA  0x40000
#define DATA_GPA  0x80000
#define TABLE_GPA 0x70000   /* indirect tables */

/* ---- the mock driver ----------------------------------------------------- */

struct drv {
	struct guest_mem gm;
	struct virtq vq;
	struct virtq_elem elem;
	uint16_t num;
	uint16_t avail_idx;     /* the driver's copy of avail->idx */
};

static void wr(struct drv *d, uint64_t gpa, const void *p, size_t len)
{
	assert_int_equal(guest_mem_write(&d->gm, gpa, p, len), 0);
}

/* A little-endian field of @n bytes (the host is little-endian too). */
static uint32_t rd(struct drv *d, uint64_t gpa, size_t n)
{
	uint32_t v = 0;

	assert_int_equal(guest_mem_read(&d->gm, gpa, &v, n), 0);
	return v;
}

static void wr16(struct drv *d, uint64_t gpa, uint16_t v) { wr(d, gpa, &v, sizeof(v)); }

/* Descriptor @i of the table at @table (the main one or an indirect one). */
static void set_desc_at(struct drv *d, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
			uint16_t flags, uint16_t next)
{
	uint8_t raw[16];

	memcpy(raw, &addr, 8);
	memcpy(raw + 8, &len, 4);
	memcpy(raw + 12, &flags, 2);
	memcpy(raw + 14, &next, 2);
	wr(d, table + 16ull * i, raw, sizeof(raw));
}

static void set_desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	set_desc_at(d, DESC_GPA, i, addr, len, flags, next);
}

/* Make @head available and publish the new index. */
static void add(struct drv *d, uint16_t head)
{
	wr16(d, AVAIL_GPA + 4 + 2 * (d->avail_idx % d->num), head);
	d->avail_idx++;
	wr16(d, AVAIL_GPA + 2, d->avail_idx);
}

static uint16_t used_idx(struct drv *d) { return rd(d, USED_GPA + 2, 2); }
static uint16_t used_flags(struct drv *d) { return rd(d, USED_GPA, 2); }
/* The used element {id, len} written at used index @i. */
static uint64_t used_elem(struct drv *d, uint16_t i) { return USED_GPA + 4 + 8 * (i % d->num); }
static uint32_t used_id(struct drv *d, uint16_t i) { return rd(d, used_elem(d, i), 4); }
static uint32_t used_len(struct drv *d, uint16_t i) { return rd(d, used_elem(d, i) + 4, 4); }
static uint16_t avail_event(struct drv *d) { return rd(d, USED_GPA + 4 + 8 * d->num, 2); }
static void set_used_event(struct drv *d, uint16_t v) { wr16(d, AVAIL_GPA + 4 + 2 * d->num, v); }
static void set_avail_flags(struct drv *d, uint16_t v) { wr16(d, AVAIL_GPA, v); }

/* The driver's side of EVENT_IDX: would it notify after moving avail->idx
 * from @old to @new_idx? */
static bool drv_would_notify(struct drv *d, uint16_t new_idx, uint16_t old)
{
	uint16_t event = avail_event(d);

	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

static uint8_t *hva(struct drv *d, uint64_t gpa) { return guest_mem_ptr(&d->gm, gpa, 1); }

static struct drv *drv_new(uint16_t num, bool event_idx, bool indirect)
{
	struct drv *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	assert_int_equal(guest_mem_create(&d->gm, 2 * RAM_LOW, RAM_LOW), 0);
	assert_int_equal(d->gm.nr_banks, 2);
	d->num = num;
	assert_int_equal(virtq_init(&d->vq, &d->gm, num, DESC_GPA, AVAIL_GPA, USED_GPA,
				    event_idx, indirect), 0);
	assert_false(d->vq.broken);
	return d;
}

static void drv_free(struct drv *d)
{
	guest_mem_destroy(&d->gm);
	free(d);
}

static int setup_plain(void **state) { *state = drv_new(16, false, false); return 0; }
static int setup_event(void **state) { *state = drv_new(16, true, false); return 0; }
static int setup_indirect(void **state) { *state = drv_new(16, false, true); return 0; }
static int teardown(void **state) { drv_free(*state); return 0; }

static void assert_iov(struct drv *d, unsigned i, uint64_t gpa, uint32_t len)
{
	assert_ptr_equal(d->elem.iov[i].base, hva(d, gpa));
	assert_int_equal(d->elem.iov[i].len, len);
	assert_int_equal(d->elem.iov[i].gpa, gpa);
}

static void assert_elem(struct drv *d, uint16_t head, unsigned nr_out, unsigned nr_in,
			uint64_t out_len, uint64_t in_len)
{
	assert_int_equal(d->elem.head, head);
	assert_int_equal(d->elem.nr_out, nr_out);
	assert_int_equal(d->elem.nr_in, nr_in);
	assert_int_equal(d->elem.out_len, out_len);
	assert_int_equal(d->elem.in_len, in_len);
}

/* The device takes the next chain and gives it straight back. */
static void pop_push(struct drv *d)
{
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_int_equal(virtq_push(&d->vq, d->elem.head, 1), 0);
}

/* Pop must fail with -EIO, break the queue for @why, and keep failing
 * without writing the used ring. */
static void assert_broken(struct drv *d, const char *why)
{
	uint16_t before = used_idx(d);

	assert_int_equal(virtq_pop(&d->vq, &d->elem), -EIO);
	assert_true(d->vq.broken);
	assert_non_null(d->vq.error);
	assert_non_null(strstr(d->vq.error, why));
	assert_int_equal(virtq_pop(&d->vq, &d->elem), -EIO);
	assert_int_equal(virtq_push(&d->vq, 0, 0), -EIO);
	assert_false(virtq_should_notify(&d->vq));
	assert_int_equal(virtq_pending(&d->vq), -EIO);
	assert_int_equal(used_idx(d), before);
}

/* ---- well-formed chains --------------------------------------------------- */

static void test_single_buffer(void **state)
{
	struct drv *d = *state;

	assert_int_equal(virtq_pending(&d->vq), 0);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 0);   /* empty */
	set_desc(d, 3, DATA_GPA, 100, 0, 0);
	add(d, 3);
	assert_int_equal(virtq_pending(&d->vq), 1);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_elem(d, 3, 1, 0, 100, 0);
	assert_iov(d, 0, DATA_GPA, 100);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 0);

	/* A bad head is the device's mistake: refused, queue intact. */
	assert_int_equal(virtq_push(&d->vq, 16, 0), -EINVAL);
	assert_int_equal(used_idx(d), 0);
	assert_int_equal(virtq_push(&d->vq, 3, 0), 0);
	assert_int_equal(used_idx(d), 1);
	assert_int_equal(used_id(d, 0), 3);
	assert_int_equal(used_len(d, 0), 0);
	assert_false(d->vq.broken);
}

static void test_chain(void **state)
{
	struct drv *d = *state;

	/* Out of table order on purpose: 5 -> 2 -> 9 -> 0. */
	set_desc(d, 5, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc(d, 2, DATA_GPA + 0x1000, 512, VIRTQ_DESC_F_NEXT, 9);
	set_desc(d, 9, DATA_GPA + 0x2000, 4096, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	set_desc(d, 0, RAM_HIGH + 0x10, 1, VIRTQ_DESC_F_WRITE, 0);
	add(d, 5);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_elem(d, 5, 2, 2, 528, 4097);
	assert_iov(d, 0, DATA_GPA, 16);
	assert_iov(d, 1, DATA_GPA + 0x1000, 512);
	assert_iov(d, 2, DATA_GPA + 0x2000, 4096);
	assert_iov(d, 3, RAM_HIGH + 0x10, 1);

	/* The device writes through the iov; the driver sees it. */
	memset(d->elem.iov[3].base, 0x5a, 1);
	assert_int_equal(virtq_push(&d->vq, 5, 4097), 0);
	assert_int_equal(*hva(d, RAM_HIGH + 0x10), 0x5a);
	assert_int_equal(used_id(d, 0), 5);
	assert_int_equal(used_len(d, 0), 4097);
}

static void test_zero_length_buffer_dropped(void **state)
{
	struct drv *d = *state;

	/* An empty buffer at an address outside RAM is harmless: never touched. */
	set_desc(d, 0, 0xdead0000000ull, 0, VIRTQ_DESC_F_NEXT, 1);
	set_desc(d, 1, DATA_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	add(d, 0);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_elem(d, 0, 0, 1, 0, 8);
	assert_iov(d, 0, DATA_GPA, 8);
}

static void test_indirect(void **state)
{
	struct drv *d = *state;

	set_desc_at(d, TABLE_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc_at(d, TABLE_GPA, 2, DATA_GPA + 0x100, 32, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc_at(d, TABLE_GPA, 1, DATA_GPA + 0x200, 1, VIRTQ_DESC_F_WRITE, 0);
	/* WRITE on the descriptor that points at the table is to be ignored. */
	set_desc(d, 7, TABLE_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	add(d, 7);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_elem(d, 7, 1, 2, 16, 33);
	assert_iov(d, 0, DATA_GPA, 16);
	assert_iov(d, 1, DATA_GPA + 0x100, 32);
	assert_iov(d, 2, DATA_GPA + 0x200, 1);

	/* Plain descriptors, then an indirect one (§2.7.5.3.2). */
	set_desc(d, 1, DATA_GPA + 0x300, 8, VIRTQ_DESC_F_NEXT, 4);
	set_desc(d, 4, TABLE_GPA + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc_at(d, TABLE_GPA + 0x100, 0, DATA_GPA + 0x400, 64, VIRTQ_DESC_F_WRITE, 0);
	add(d, 1);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_elem(d, 1, 1, 1, 8, 64);
	assert_iov(d, 0, DATA_GPA + 0x300, 8);
	assert_iov(d, 1, DATA_GPA + 0x400, 64);

	/* A table need not be aligned. */
	set_desc_at(d, TABLE_GPA + 0x203, 0, DATA_GPA, 4, 0, 0);
	set_desc(d, 8, TABLE_GPA + 0x203, 16, VIRTQ_DESC_F_INDIRECT, 0);
	add(d, 8);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_iov(d, 0, DATA_GPA, 4);
}

static void test_max_buffers(void **state)
{
	struct drv *d = drv_new(512, false, true);

	(void)state;
	/* 256 buffers are fine, direct... */
	for (unsigned i = 0; i < 256; i++)
		set_desc(d, i, DATA_GPA + i, 1, i < 255 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	add(d, 0);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_int_equal(d->elem.nr_out, 256);
	assert_iov(d, 255, DATA_GPA + 255, 1);
	/* ...and 257 are not. */
	for (unsigned i = 0; i < 257; i++)
		set_desc(d, i, DATA_GPA + i, 1, i < 256 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	add(d, 0);
	assert_broken(d, "more than 256");
	drv_free(d);

	/* The limit counts direct and indirect together, empty ones too. */
	d = drv_new(16, false, true);
	set_desc(d, 0, DATA_GPA, 0, VIRTQ_DESC_F_NEXT, 1);
	set_desc(d, 1, TABLE_GPA, 256 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	for (unsigned i = 0; i < 256; i++)
		set_desc_at(d, TABLE_GPA, i, DATA_GPA, 1, i < 255 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	add(d, 0);
	assert_broken(d, "more than 256");
	drv_free(d);
}

static void test_wraparound(void **state)
{
	struct drv *d = drv_new(4, true, false);
	uint16_t start = 65533;

	(void)state;
	/* Device and driver both resume near the top of the 16-bit index
	 * space, as after 65533 requests. */
	d->vq.last_avail = d->vq.used_idx = d->vq.signalled_used = start;
	d->avail_idx = start;
	wr16(d, AVAIL_GPA + 2, start);
	wr16(d, USED_GPA + 2, start);
	set_used_event(d, 0);   /* interrupt when the entry at index 0 is written */

	for (unsigned round = 0; round < 3; round++) {
		for (uint16_t i = 0; i < 4; i++) {
			set_desc(d, i, DATA_GPA + 0x100 * i, 10 + i, 0, 0);
			add(d, i);
		}
		assert_int_equal(virtq_pending(&d->vq), 4);
		for (uint16_t i = 0; i < 4; i++) {
			uint16_t slot = (uint16_t)(start + 4 * round + i);

			assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
			assert_int_equal(d->elem.head, i);
			assert_iov(d, 0, DATA_GPA + 0x100 * i, 10 + i);
			assert_int_equal(virtq_push(&d->vq, i, 20 + i), 0);
			assert_int_equal(used_idx(d), (uint16_t)(slot + 1));
			assert_int_equal(used_id(d, slot), i);
			assert_int_equal(used_len(d, slot), 20 + i);
			/* Only the push that writes entry 0 (used idx 0 -> 1). */
			assert_int_equal(virtq_should_notify(&d->vq), slot == 0);
		}
		assert_int_equal(virtq_pop(&d->vq, &d->elem), 0);
	}
	assert_int_equal(d->vq.last_avail, (uint16_t)(start + 12));
	drv_free(d);
}

/* ---- notification suppression ---------------------------------------------- */

static void test_used_event(void **state)
{
	struct drv *d = *state;

	for (uint16_t i = 0; i < 8; i++) {
		set_desc(d, i, DATA_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
		add(d, i);
	}
	/* Notify when the entry at index 2 is written: used idx 2 -> 3. */
	set_used_event(d, 2);
	for (uint16_t i = 0; i < 4; i++) {
		pop_push(d);
		assert_int_equal(virtq_should_notify(&d->vq), i == 2);
	}
	/* A batch that jumps over used_event notifies once. */
	set_used_event(d, 5);
	for (uint16_t i = 0; i < 3; i++)
		pop_push(d);
	assert_true(virtq_should_notify(&d->vq));
	assert_false(virtq_should_notify(&d->vq));   /* nothing new since */
	/* used_event already behind: no interrupt. */
	pop_push(d);
	assert_false(virtq_should_notify(&d->vq));
	/* NO_INTERRUPT means nothing under EVENT_IDX. */
	set_avail_flags(d, VIRTQ_AVAIL_F_NO_INTERRUPT);
	set_used_event(d, 8);
	set_desc(d, 0, DATA_GPA, 1, 0, 0);
	add(d, 0);
	pop_push(d);
	assert_true(virtq_should_notify(&d->vq));
	/* Not knowing when we last checked (a restored queue): notify. */
	d->vq.signalled_used_valid = false;
	add(d, 0);
	pop_push(d);
	assert_true(virtq_should_notify(&d->vq));
}

static void test_avail_event(void **state)
{
	struct drv *d = *state;
	uint16_t old;

	assert_int_equal(avail_event(d), 0);
	assert_int_equal(used_flags(d), 0);
	for (uint16_t i = 0; i < 3; i++) {
		set_desc(d, i, DATA_GPA, 1, 0, 0);
		add(d, i);
	}
	/* Enabled: avail_event follows what the device took. */
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_int_equal(avail_event(d), 1);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_int_equal(avail_event(d), 2);

	/* Disabled: left behind, and pops do not move it. */
	virtq_set_notification(&d->vq, false);
	assert_int_equal(avail_event(d), 1);
	assert_int_equal(used_flags(d), 0);          /* §2.7.10: MUST be 0 */
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 0);
	assert_int_equal(avail_event(d), 1);
	old = d->avail_idx;
	add(d, 0);
	assert_false(drv_would_notify(d, d->avail_idx, old));

	/* Enabled again: avail_event = last_avail; the entry already there is
	 * the caller's to find by re-checking. */
	virtq_set_notification(&d->vq, true);
	assert_int_equal(avail_event(d), 3);
	assert_int_equal(virtq_pending(&d->vq), 1);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	assert_int_equal(avail_event(d), 4);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 0);
	/* The ring is drained: the driver's next add notifies. */
	old = d->avail_idx;
	add(d, 1);
	assert_true(drv_would_notify(d, d->avail_idx, old));
}

/* Polled (a busy-polling loop watches the ring): the driver is told not to
 * notify, and stays told, whatever the device's request handling asks,
 * until polling ends.  Both with EVENT_IDX and with the flags. */
static bool would_notify(struct drv *d, uint16_t old)
{
	return d->vq.event_idx ? drv_would_notify(d, d->avail_idx, old)
			       : !(used_flags(d) & VIRTQ_USED_F_NO_NOTIFY);
}

static void test_polled(void **state)
{
	struct drv *d = *state;
	uint16_t old;

	set_desc(d, 0, DATA_GPA, 1, 0, 0);
	virtq_set_polled(&d->vq, true);
	virtq_set_notification(&d->vq, true);        /* a handler re-enabling */
	old = d->avail_idx;
	add(d, 0);
	assert_false(would_notify(d, old));
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	virtq_set_notification(&d->vq, true);
	old = d->avail_idx;
	add(d, 0);
	assert_false(would_notify(d, old));
	/* Polling ends: enabled, and the entry added meanwhile is there to
	 * find by re-checking. */
	virtq_set_polled(&d->vq, false);
	assert_int_equal(virtq_pending(&d->vq), 1);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	old = d->avail_idx;
	add(d, 0);
	assert_true(would_notify(d, old));
}

static void test_flags_without_event_idx(void **state)
{
	struct drv *d = *state;

	/* NO_INTERRUPT from the driver. */
	set_desc(d, 0, DATA_GPA, 1, 0, 0);
	add(d, 0);
	add(d, 0);
	pop_push(d);
	set_avail_flags(d, VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_false(virtq_should_notify(&d->vq));
	pop_push(d);
	set_avail_flags(d, 0);
	set_used_event(d, 0x1234);                   /* ignored without EVENT_IDX */
	assert_true(virtq_should_notify(&d->vq));
	assert_false(virtq_should_notify(&d->vq));   /* nothing pushed since */

	/* NO_NOTIFY from the device; avail_event is not ours to write. */
	wr16(d, USED_GPA + 4 + 8 * d->num, 0x7777);
	virtq_set_notification(&d->vq, false);
	assert_int_equal(used_flags(d), VIRTQ_USED_F_NO_NOTIFY);
	virtq_set_notification(&d->vq, true);
	assert_int_equal(used_flags(d), 0);
	assert_int_equal(avail_event(d), 0x7777);
}

/* ---- malformed chains ----------------------------------------------------- */

/* A descriptor the driver writes: in the main table or an indirect one. */
enum where { END, MAIN, TAB, TAB2 };
struct bad_desc {
	enum where where;
	uint16_t i;
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct bad_chain {
	const char *name, *why;     /* test name, expected reason */
	bool indirect;              /* VIRTIO_F_RING_INDIRECT_DESC negotiated */
	uint16_t num, head;         /* queue size, chain made available */
	struct bad_desc d[4];
};

#define NX VIRTQ_DESC_F_NEXT
#define WR VIRTQ_DESC_F_WRITE
#define IN VIRTQ_DESC_F_INDIRECT
#define OUTSIDE "buffer outside guest RAM"
#define ORDER "device-readable descriptor after a device-writable one"
#define BAD_LEN "not a non-zero multiple of 16"

static const struct bad_chain bad_chains[] = {
	{ "head out of range", "descriptor index out of range", false, 16, 16,
	  { { END, 0, 0, 0, 0, 0 } } },
	{ "next out of range", "descriptor index out of range", false, 16, 0,
	  { { MAIN, 0, DATA_GPA, 1, NX, 0xffff } } },
	{ "buffer outside RAM", OUTSIDE, false, 16, 0, { { MAIN, 0, 8ull << 30, 16, 0, 0 } } },
	/* Host memory goes on past the first bank; guest RAM does not. */
	{ "buffer straddles the end of a bank", OUTSIDE, false, 16, 0,
	  { { MAIN, 0, RAM_LOW - 8, 16, 0, 0 } } },
	{ "buffer straddles the end of RAM", OUTSIDE, false, 16, 0,
	  { { MAIN, 0, DATA_GPA, 8, NX, 1 }, { MAIN, 1, RAM_HIGH + RAM_LOW - 1, 2, WR, 0 } } },
	{ "buffer wraps the address space", OUTSIDE, false, 16, 0,
	  { { MAIN, 0, UINT64_MAX - 3, 0x10, 0, 0 } } },
	{ "loop", "longer than the queue", false, 16, 0,
	  { { MAIN, 0, DATA_GPA, 1, NX, 1 }, { MAIN, 1, DATA_GPA, 1, NX, 0 } } },
	/* In a two-entry table the third descriptor of a chain is a repeat. */
	{ "chain longer than the queue", "longer than the queue", false, 2, 1,
	  { { MAIN, 0, DATA_GPA, 1, NX, 1 }, { MAIN, 1, DATA_GPA, 1, NX, 0 } } },
	/* Empty buffers are dropped from the element but still counted. */
	{ "self loop of empty buffers", "longer than the queue", false, 16, 4,
	  { { MAIN, 4, DATA_GPA, 0, NX, 4 } } },
	{ "readable after writable", ORDER, false, 16, 0,
	  { { MAIN, 0, DATA_GPA, 1, WR | NX, 1 }, { MAIN, 1, DATA_GPA, 1, 0, 0 } } },
	{ "readable after writable across indirect", ORDER, true, 16, 0,
	  { { MAIN, 0, DATA_GPA, 1, WR | NX, 1 }, { MAIN, 1, TABLE_GPA, 16, IN, 0 },
	    { TAB, 0, DATA_GPA, 1, 0, 0 } } },
	{ "indirect not negotiated", "without VIRTIO_F_RING_INDIRECT_DESC", false, 16, 0,
	  { { MAIN, 0, TABLE_GPA, 16, IN, 0 }, { TAB, 0, DATA_GPA, 1, 0, 0 } } },
	{ "nested indirect", "nested indirect", true, 16, 0,
	  { { MAIN, 0, TABLE_GPA, 32, IN, 0 }, { TAB, 0, DATA_GPA, 1, NX, 1 },
	    { TAB, 1, TABLE_GPA + 0x100, 16, IN, 0 }, { TAB2, 0, DATA_GPA, 1, 0, 0 } } },
	{ "indirect with NEXT", "indirect descriptor with NEXT", true, 16, 0,
	  { { MAIN, 0, TABLE_GPA, 16, IN | NX, 1 }, { MAIN, 1, DATA_GPA, 1, WR, 0 },
	    { TAB, 0, DATA_GPA, 1, 0, 0 } } },
	{ "indirect length 0", BAD_LEN, true, 16, 0, { { MAIN, 0, TABLE_GPA, 0, IN, 0 } } },
	{ "indirect length 8", BAD_LEN, true, 16, 0, { { MAIN, 0, TABLE_GPA, 8, IN, 0 } } },
	{ "indirect length 24", BAD_LEN, true, 16, 0, { { MAIN, 0, TABLE_GPA, 24, IN, 0 } } },
	{ "indirect table outside RAM", "indirect table outside guest RAM", true, 16, 0,
	  { { MAIN, 0, RAM_LOW - 16, 32, IN, 0 } } },
	/* Entry 2 lies in RAM, but not in a two-entry table. */
	{ "indirect next out of range", "indirect descriptor index out of range", true, 16, 0,
	  { { MAIN, 0, TABLE_GPA, 32, IN, 0 }, { TAB, 0, DATA_GPA, 1, NX, 2 },
	    { TAB, 2, DATA_GPA, 1, 0, 0 } } },
	{ "indirect loop", "loop in indirect", true, 16, 0,
	  { { MAIN, 0, TABLE_GPA, 32, IN, 0 }, { TAB, 0, DATA_GPA, 1, NX, 1 },
	    { TAB, 1, DATA_GPA, 1, NX, 0 } } },
};

static void test_bad_chain(void **state)
{
	static const uint64_t table_of[] = { [MAIN] = DESC_GPA, [TAB] = TABLE_GPA,
					     [TAB2] = TABLE_GPA + 0x100 };
	const struct bad_chain *c = *state;
	struct drv *d = drv_new(c->num, false, c->indirect);

	for (const struct bad_desc *b = c->d; b < c->d + 4 && b->where != END; b++)
		set_desc_at(d, table_of[b->where], b->i, b->addr, b->len, b->flags, b->next);
	add(d, c->head);
	assert_broken(d, c->why);
	drv_free(d);
}

static void test_chain_longer_than_4g(void **state)
{
	struct drv *d = calloc(1, sizeof(*d));

	(void)state;
	/* 2 GiB of sparse RAM: three buffers over the same bytes. */
	assert_int_equal(guest_mem_create(&d->gm, 2ull << 30, 4ull << 30), 0);
	d->num = 4;
	assert_int_equal(virtq_init(&d->vq, &d->gm, 4, DESC_GPA, AVAIL_GPA, USED_GPA, false,
				    false), 0);
	set_desc(d, 0, 0, 0x80000000u, VIRTQ_DESC_F_NEXT, 1);
	set_desc(d, 1, 0, 0x80000000u, 0, 0);
	add(d, 0);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);   /* exactly 4 GiB is fine */
	assert_int_equal(d->elem.out_len, 1ull << 32);
	set_desc(d, 1, 0, 0x80000000u, VIRTQ_DESC_F_NEXT, 2);
	set_desc(d, 2, 0, 1, VIRTQ_DESC_F_WRITE, 0);
	add(d, 0);
	assert_broken(d, "longer than 4 GiB");
	drv_free(d);
}

static void test_avail_idx_jump(void **state)
{
	struct drv *d = drv_new(16, false, false);

	(void)state;
	set_desc(d, 0, DATA_GPA, 1, 0, 0);
	wr16(d, AVAIL_GPA + 2, 17);                   /* 17 new entries in a 16-entry ring */
	assert_int_equal(virtq_pending(&d->vq), -EIO);
	assert_broken(d, "available index moved by more than the queue size");
	drv_free(d);

	d = drv_new(16, true, false);
	add(d, 0);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), 1);
	wr16(d, AVAIL_GPA + 2, 0);                    /* "unexposes" one: 0xffff new */
	assert_broken(d, "available index moved");
	drv_free(d);
}

/* ---- set-up ---------------------------------------------------------------- */

static void expect_init(struct drv *d, uint16_t num, uint64_t desc, uint64_t avail, uint64_t used,
			int err, const char *why)
{
	struct virtq vq;

	assert_int_equal(virtq_init(&vq, &d->gm, num, desc, avail, used, true, true), err);
	assert_true(vq.broken);
	assert_non_null(strstr(vq.error, why));
	assert_int_equal(virtq_pop(&vq, &d->elem), -EIO);
	assert_int_equal(virtq_push(&vq, 0, 0), -EIO);
	assert_int_equal(virtq_pending(&vq), -EIO);
	assert_false(virtq_should_notify(&vq));
	virtq_set_notification(&vq, true);
}

static void test_init_checks(void **state)
{
	struct drv *d = *state;
	struct virtq vq;

	expect_init(d, 0, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL, "power of two");
	expect_init(d, 24, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL, "power of two");
	expect_init(d, 65535, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL, "power of two");
	expect_init(d, 16, DESC_GPA + 8, AVAIL_GPA, USED_GPA, -EINVAL, "descriptor table misaligned");
	expect_init(d, 16, DESC_GPA, AVAIL_GPA + 1, USED_GPA, -EINVAL, "available ring misaligned");
	expect_init(d, 16, DESC_GPA, AVAIL_GPA, USED_GPA + 2, -EINVAL, "used ring misaligned");
	/* Outside RAM, and each ring straddling the end of a bank by its
	 * last bytes (avail_event / used_event included). */
	expect_init(d, 16, 8ull << 30, AVAIL_GPA, USED_GPA, -EFAULT, "descriptor table outside");
	expect_init(d, 16, RAM_LOW - 16 * 16 + 16, AVAIL_GPA, USED_GPA, -EFAULT,
		    "descriptor table outside");
	expect_init(d, 16, DESC_GPA, RAM_LOW - (6 + 2 * 16) + 2, USED_GPA, -EFAULT,
		    "available ring outside");
	expect_init(d, 16, DESC_GPA, AVAIL_GPA, RAM_HIGH + RAM_LOW - (6 + 8 * 16) + 2, -EFAULT,
		    "used ring outside");
	expect_init(d, 16, DESC_GPA, AVAIL_GPA, UINT64_MAX - 3, -EFAULT, "used ring outside");

	/* Exactly at the end is fine, and so is the largest queue. */
	assert_int_equal(virtq_init(&vq, &d->gm, 16, RAM_LOW - 16 * 16, RAM_LOW - (6 + 2 * 16),
				    RAM_HIGH + RAM_LOW - (6 + 8 * 16) - 2, true, true), 0);
	assert_int_equal(virtq_init(&vq, &d->gm, 32768, 0, 0x80000, RAM_HIGH, true, true), 0);
	assert_int_equal(virtq_pop(&vq, &d->elem), 0);
}

static void test_init_host_misaligned(void **state)
{
	struct guest_mem gm = { .memfd = -1, .nr_banks = 1 };
	uint8_t *p = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct virtq vq;

	(void)state;
	assert_true(p != MAP_FAILED);
	/* A bank whose host address is not aligned like its guest address. */
	gm.banks[0] = (struct guest_mem_bank){ .gpa = 0, .size = 0x8000, .hva = p + 2 };
	gm.total = 0x8000;
	assert_int_equal(virtq_init(&vq, &gm, 8, 0x1000, 0x2000, 0x3000, false, false), -EFAULT);
	assert_non_null(strstr(vq.error, "host memory"));
	munmap(p, 0x10000);
}

static void test_uninitialised_queue(void **state)
{
	struct virtq vq;
	struct virtq_elem elem;

	(void)state;
	/* A zeroed queue (e.g. never set up) refuses everything, touches nothing. */
	memset(&vq, 0, sizeof(vq));
	assert_int_equal(virtq_pop(&vq, &elem), -EIO);
	assert_int_equal(virtq_push(&vq, 0, 0), -EIO);
	assert_int_equal(virtq_pending(&vq), -EIO);
	assert_false(virtq_should_notify(&vq));
	virtq_set_notification(&vq, false);
}

#define T(fn, setup) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_single_buffer, setup_plain),
		T(test_chain, setup_plain),
		T(test_zero_length_buffer_dropped, setup_plain),
		T(test_indirect, setup_indirect),
		cmocka_unit_test(test_max_buffers),
		cmocka_unit_test(test_wraparound),
		T(test_used_event, setup_event),
		T(test_avail_event, setup_event),
		T(test_flags_without_event_idx, setup_plain),
		T(test_polled, setup_event),
		T(test_polled, setup_plain),
		cmocka_unit_test(test_chain_longer_than_4g),
		cmocka_unit_test(test_avail_idx_jump),
		T(test_init_checks, setup_plain),
		cmocka_unit_test(test_init_host_misaligned),
		cmocka_unit_test(test_uninitialised_queue),
	};

	enum { NR_BAD = sizeof(bad_chains) / sizeof(bad_chains[0]) };
	struct CMUnitTest bad[NR_BAD];
	int failed;

	/* One test per malformed chain, named for it. */
	for (unsigned i = 0; i < NR_BAD; i++)
		bad[i] = (struct CMUnitTest){ .name = bad_chains[i].name, .test_func = test_bad_chain,
					      .initial_state = (void *)&bad_chains[i] };
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	return failed + _cmocka_run_group_tests("malformed chains", bad, NR_BAD, NULL, NULL);
}
