/*
 * Guest memory: the bounds checks every device model relies on, and the
 * recorder that keeps what a loader wrote for a reset (guest_mem_record_*).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kickvm/guest_mem.h"

#define MiB (1ull << 20)

static void test_bounds(void **state)
{
	struct guest_mem gm;
	uint8_t b[16] = { 0 };

	(void)state;
	assert_int_equal(guest_mem_create(&gm, 16 * MiB, 8 * MiB), 0);
	assert_non_null(guest_mem_ptr(&gm, 0, 16));
	assert_non_null(guest_mem_ptr(&gm, 8 * MiB - 16, 16));
	assert_null(guest_mem_ptr(&gm, 8 * MiB - 15, 16));           /* into the hole */
	assert_null(guest_mem_ptr(&gm, UINT64_MAX - 3, 8));          /* wraps */
	assert_null(guest_mem_ptr(&gm, 0, UINT64_MAX));
	assert_int_equal(guest_mem_write(&gm, 8 * MiB, b, 1), -EFAULT);
	assert_int_equal(guest_mem_write(&gm, 4ull << 30, b, 16), 0); /* above 4 GiB */
	assert_int_equal(guest_mem_read(&gm, 12ull << 30, b, 1), -EFAULT);
	guest_mem_destroy(&gm);
}

static void expect_range(const struct guest_mem_record *rec, unsigned i, uint64_t gpa,
			 uint64_t len)
{
	assert_true(i < rec->nr);
	assert_int_equal(rec->ranges[i].gpa, gpa);
	assert_int_equal(rec->ranges[i].len, len);
}

/* Ranges merge when they touch or overlap, stay in address order, and a
 * range bridging two merges all three. */
static void test_record_merges(void **state)
{
	struct guest_mem_record rec;
	struct guest_mem gm;

	(void)state;
	memset(&gm, 0, sizeof(gm));
	guest_mem_record_start(&gm, &rec);
	guest_mem_record_add(&rec, 0x3000, 0x1000);
	guest_mem_record_add(&rec, 0x1000, 0x100);
	guest_mem_record_add(&rec, 0x1100, 0x100);                   /* adjacent */
	guest_mem_record_add(&rec, 0x8000, 0x10);
	assert_int_equal(rec.nr, 3);
	expect_range(&rec, 0, 0x1000, 0x200);
	expect_range(&rec, 1, 0x3000, 0x1000);
	expect_range(&rec, 2, 0x8000, 0x10);
	guest_mem_record_add(&rec, 0x1100, 0x2000);                  /* bridges 0 and 1 */
	assert_int_equal(rec.nr, 2);
	expect_range(&rec, 0, 0x1000, 0x3000);
	expect_range(&rec, 1, 0x8000, 0x10);
	guest_mem_record_add(&rec, 0x8004, 4);                       /* inside */
	guest_mem_record_add(&rec, 0x9000, 0);                       /* empty */
	assert_int_equal(rec.nr, 2);
	guest_mem_record_stop(&gm);
	assert_null(gm.record);
}

/* Past GUEST_MEM_MAX_RANGES separate ranges the record says so, rather
 * than keep a partial image a reset would silently restore. */
static void test_record_overflow(void **state)
{
	struct guest_mem_record rec;
	struct guest_mem gm;

	(void)state;
	memset(&gm, 0, sizeof(gm));
	guest_mem_record_start(&gm, &rec);
	for (unsigned i = 0; i < GUEST_MEM_MAX_RANGES; i++)
		guest_mem_record_add(&rec, i * 0x100ull, 0x10);
	assert_false(rec.overflow);
	guest_mem_record_add(&rec, 0x100000, 0x10);
	assert_true(rec.overflow);
}

/* While recording, every access through guest_mem_ptr/write is kept (the
 * loader's); after stop, nothing is (the devices' at run time). */
static void test_record_through_accessors(void **state)
{
	struct guest_mem_record rec;
	struct guest_mem gm;
	uint8_t b[64];

	(void)state;
	memset(b, 0xab, sizeof(b));
	assert_int_equal(guest_mem_create(&gm, 16 * MiB, 8 * MiB), 0);
	guest_mem_record_start(&gm, &rec);
	assert_int_equal(guest_mem_write(&gm, 0x9000, b, sizeof(b)), 0);
	assert_non_null(guest_mem_ptr(&gm, MiB, 0x2000));
	assert_null(guest_mem_ptr(&gm, 9 * MiB, 1));                 /* refused: not kept */
	guest_mem_record_stop(&gm);
	assert_int_equal(guest_mem_write(&gm, 0x20000, b, sizeof(b)), 0);
	assert_int_equal(rec.nr, 2);
	expect_range(&rec, 0, 0x9000, sizeof(b));
	expect_range(&rec, 1, MiB, 0x2000);
	guest_mem_destroy(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_record_merges),
		cmocka_unit_test(test_record_overflow),
		cmocka_unit_test(test_record_through_accessors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
