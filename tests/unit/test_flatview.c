/*
 * Flattening a region tree, dispatching accesses through it, and the dumps.
 * No listener here: test_ioeventfd.c covers what KVM is told.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kickvm/log.h"
#include "kickvm/memory.h"

/* ---- a device that records what reached it ------------------------------------ */

#define MAX_ACCESSES 16

struct access {
	bool is_write;
	uint64_t offset, data;
	unsigned size;
};

struct recorder {
	uint8_t bytes[0x100];        /* register file, little-endian */
	struct access log[MAX_ACCESSES];
	unsigned nr;
};

static void record(struct recorder *r, bool is_write, uint64_t offset, uint64_t data,
		   unsigned size)
{
	if (r->nr < MAX_ACCESSES)
		r->log[r->nr] = (struct access){ is_write, offset, data, size };
	r->nr++;
}

static uint64_t rec_read(void *opaque, uint64_t offset, unsigned size)
{
	struct recorder *r = opaque;
	uint64_t value = 0;

	for (unsigned i = 0; i < size; i++)
		value |= (uint64_t)r->bytes[(offset + i) % sizeof(r->bytes)] << (8 * i);
	record(r, false, offset, value, size);
	return value;
}

static void rec_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct recorder *r = opaque;

	for (unsigned i = 0; i < size; i++)
		r->bytes[(offset + i) % sizeof(r->bytes)] = (uint8_t)(data >> (8 * i));
	record(r, true, offset, data, size);
}

static const struct mr_ops any_size_ops = { .read = rec_read, .write = rec_write };
static const struct mr_ops only4_ops = {
	.read = rec_read, .write = rec_write, .valid_min = 4, .valid_max = 4,
};
static const struct mr_ops impl4_ops = {
	.read = rec_read, .write = rec_write, .impl_min = 4, .impl_max = 4,
};

static void assert_access(const struct recorder *r, unsigned i, bool is_write,
			  uint64_t offset, uint64_t data, unsigned size)
{
	assert_true(i < r->nr);
	assert_int_equal(r->log[i].is_write, is_write);
	assert_int_equal(r->log[i].offset, offset);
	assert_int_equal(r->log[i].data, data);
	assert_int_equal(r->log[i].size, size);
}

/* ---- a world: an address space and the regions a test makes --------------------- */

#define MAX_REGIONS 16

struct world {
	struct mem_region *root;
	struct address_space *as;
	struct mem_region *mr[MAX_REGIONS];
	struct mem_region *parent[MAX_REGIONS];  /* where each one is placed */
	struct recorder rec[MAX_REGIONS];
	unsigned nr;
};

static struct mem_region *keep(struct world *w, struct mem_region *mr)
{
	assert_non_null(mr);
	assert_true(w->nr < MAX_REGIONS);
	w->mr[w->nr++] = mr;
	return mr;
}

static unsigned index_of(struct world *w, struct mem_region *mr)
{
	for (unsigned i = 0; i < w->nr; i++)
		if (w->mr[i] == mr)
			return i;
	fail();
	return 0;
}

static struct mem_region *io(struct world *w, const char *name, uint64_t size,
			     const struct mr_ops *ops)
{
	return keep(w, mr_new_io(name, size, ops ? ops : &any_size_ops, &w->rec[w->nr]));
}

static struct mem_region *container(struct world *w, const char *name, uint64_t size)
{
	return keep(w, mr_new_container(name, size));
}

static struct recorder *rec_of(struct world *w, struct mem_region *mr)
{
	return &w->rec[index_of(w, mr)];
}

static void place(struct world *w, struct mem_region *parent, uint64_t offset,
		  struct mem_region *child, int priority)
{
	assert_int_equal(mr_add_subregion(parent ? parent : w->root, offset, child, priority), 0);
	w->parent[index_of(w, child)] = parent ? parent : w->root;
}

static void unplace(struct world *w, struct mem_region *child)
{
	unsigned i = index_of(w, child);

	mr_del_subregion(w->parent[i], child);
	w->parent[i] = NULL;
}

/* A device of @size with @ops placed at @addr in the root, for the dispatch
 * tests: what reached it. */
static struct recorder *device_at(struct world *w, uint64_t addr, const char *name,
				  uint64_t size, const struct mr_ops *ops)
{
	struct mem_region *dev = io(w, name, size, ops);

	place(w, NULL, addr, dev, 0);
	return rec_of(w, dev);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));

	w->root = mr_new_container("root", 0x100000);
	w->as = address_space_new("memory", AS_MMIO, w->root);
	*state = w;
	return w->as ? 0 : -1;
}

static int teardown(void **state)
{
	struct world *w = *state;
	unsigned long errors = log_count(LOG_ERROR);

	address_space_free(w->as);
	memory_transaction_begin();
	for (unsigned i = w->nr; i-- > 0;)
		if (w->parent[i])
			unplace(w, w->mr[i]);
	memory_transaction_commit();
	for (unsigned i = w->nr; i-- > 0;)
		mr_free(w->mr[i]);
	mr_free(w->root);
	free(w);
	/* Teardown itself must be clean: nothing refused. */
	return log_count(LOG_ERROR) == errors ? 0 : -1;
}

static char *dump_to_string(void (*dump)(struct address_space *, FILE *),
			    struct address_space *as)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	dump(as, f);
	fclose(f);
	return text;
}

static void assert_dump(void (*dump)(struct address_space *, FILE *),
			struct address_space *as, const char *expected)
{
	char *text = dump_to_string(dump, as);

	if (strcmp(text, expected) != 0)
		print_error("got:\n%s\nexpected:\n%s\n", text, expected);
	assert_string_equal(text, expected);
	free(text);
}

/* A read of @size bytes at @addr: it must end in @result with @expected. */
static void assert_read(struct world *w, uint64_t addr, unsigned size, int result,
			uint64_t expected)
{
	uint64_t value = 0;

	assert_int_equal(address_space_read(w->as, addr, &value, size), result);
	assert_int_equal(value, expected);
}

#define assert_flat(w, expected) assert_dump(address_space_dump_flatview, (w)->as, \
					     "FlatView: AS \"memory\"\n" expected "\n")

static void count_one(const struct flat_range *fr, void *opaque)
{
	(void)fr;
	(*(unsigned *)opaque)++;
}

static unsigned count_ranges(struct world *w)
{
	unsigned n = 0;

	address_space_for_each_range(w->as, count_one, &n);
	return n;
}

/* ---- flattening -------------------------------------------------------------------- */

static void test_higher_priority_wins(void **state)
{
	struct world *w = *state;
	struct mem_region *a = io(w, "a", 0x1000, NULL);
	struct mem_region *b = io(w, "b", 0x100, NULL);
	struct mem_region *c = io(w, "c", 0x1000, NULL);

	place(w, NULL, 0, a, 0);
	place(w, NULL, 0x800, b, 1);
	assert_flat(w, "  0000000000000000-00000000000007ff (prio 0, i/o): a\n"
		       "  0000000000000800-00000000000008ff (prio 1, i/o): b\n"
		       "  0000000000000900-0000000000000fff (prio 0, i/o): a @0000000000000900\n");
	/* c is newer than a (wins where they overlap) but below b. */
	place(w, NULL, 0x800, c, 0);
	assert_flat(w, "  0000000000000000-00000000000007ff (prio 0, i/o): a\n"
		       "  0000000000000800-00000000000008ff (prio 1, i/o): b\n"
		       "  0000000000000900-00000000000017ff (prio 0, i/o): c @0000000000000100\n");
}

static void test_equal_priority_last_added_wins(void **state)
{
	struct world *w = *state;
	struct mem_region *a = io(w, "a", 0x1000, NULL);
	struct mem_region *b = io(w, "b", 0x1000, NULL);

	place(w, NULL, 0, a, 0);
	place(w, NULL, 0x800, b, 0);
	assert_flat(w, "  0000000000000000-00000000000007ff (prio 0, i/o): a\n"
		       "  0000000000000800-00000000000017ff (prio 0, i/o): b\n");
	/* Adding a again makes it the newest. */
	unplace(w, a);
	place(w, NULL, 0, a, 0);
	assert_flat(w, "  0000000000000000-0000000000000fff (prio 0, i/o): a\n"
		       "  0000000000001000-00000000000017ff (prio 0, i/o): b @0000000000000800\n");
}

static void test_partial_overlaps_split(void **state)
{
	struct world *w = *state;

	place(w, NULL, 0, io(w, "big", 0x10000, NULL), 0);
	place(w, NULL, 0, io(w, "left", 0x80, NULL), 1);
	place(w, NULL, 0x4000, io(w, "mid", 0x100, NULL), 1);
	place(w, NULL, 0xff00, io(w, "edge", 0x200, NULL), 1);
	assert_flat(w, "  0000000000000000-000000000000007f (prio 1, i/o): left\n"
		       "  0000000000000080-0000000000003fff (prio 0, i/o): big @0000000000000080\n"
		       "  0000000000004000-00000000000040ff (prio 1, i/o): mid\n"
		       "  0000000000004100-000000000000feff (prio 0, i/o): big @0000000000004100\n"
		       "  000000000000ff00-00000000000100ff (prio 1, i/o): edge\n");
}

static void test_alias_clips_to_window_and_target(void **state)
{
	struct world *w = *state;
	struct mem_region *dev = io(w, "dev", 0x1000, NULL);
	struct recorder *r = rec_of(w, dev);

	place(w, NULL, 0x8000, keep(w, mr_new_alias("win", dev, 0x400, 0x200)), 0);
	/* Runs past the end of dev: only dev's last 0x100 bytes show. */
	place(w, NULL, 0x9000, keep(w, mr_new_alias("tail", dev, 0xf00, 0x400)), 0);
	assert_flat(w, "  0000000000008000-00000000000081ff (prio 0, i/o): dev @0000000000000400\n"
		       "  0000000000009000-00000000000090ff (prio 0, i/o): dev @0000000000000f00\n");
	assert_int_equal(address_space_write(w->as, 0x8010, 0xaa, 1), AS_OK);
	assert_access(r, 0, true, 0x410, 0xaa, 1);
	assert_int_equal(address_space_write(w->as, 0x90ff, 0xbb, 1), AS_OK);
	assert_access(r, 1, true, 0xfff, 0xbb, 1);
	assert_int_equal(address_space_write(w->as, 0x9100, 0xcc, 1), AS_UNASSIGNED);
	assert_int_equal(r->nr, 2);
}

static void test_alias_of_container(void **state)
{
	struct world *w = *state;
	struct mem_region *bar = container(w, "bar", 0x1000);
	struct mem_region *c2 = io(w, "c2", 0x100, NULL);
	uint64_t value = 0;

	place(w, bar, 0, io(w, "c1", 0x100, NULL), 0);
	place(w, bar, 0x800, c2, 2);
	place(w, NULL, 0x10000, keep(w, mr_new_alias("bar-win", bar, 0x700, 0x200)), 3);
	assert_flat(w, "  0000000000010100-00000000000101ff (prio 2, i/o): c2\n");
	rec_of(w, c2)->bytes[0x20] = 0x5a;
	assert_read(w, 0x10120, 1, AS_OK, 0x5a);
	assert_int_equal(address_space_read(w->as, 0x100ff, &value, 1), AS_UNASSIGNED);
}

static void test_nested_containers_are_transparent(void **state)
{
	struct world *w = *state;
	struct mem_region *c1 = container(w, "c1", 0x10000);
	struct mem_region *c2 = container(w, "c2", 0x1000);
	struct mem_region *dev = io(w, "dev", 0x10, NULL);
	struct recorder *r = rec_of(w, dev);

	place(w, NULL, 0, io(w, "bg", 0x100000, NULL), -1);
	place(w, NULL, 0x10000, c1, 0);
	place(w, c1, 0x1000, c2, 0);
	place(w, c2, 0x10, dev, 0);
	place(w, c2, 0xf80, io(w, "tail", 0x100, NULL), 0); /* clipped by c2 */
	assert_flat(w, "  0000000000000000-000000000001100f (prio -1, i/o): bg\n"
		       "  0000000000011010-000000000001101f (prio 0, i/o): dev\n"
		       "  0000000000011020-0000000000011f7f (prio -1, i/o): bg @0000000000011020\n"
		       "  0000000000011f80-0000000000011fff (prio 0, i/o): tail\n"
		       "  0000000000012000-00000000000fffff (prio -1, i/o): bg @0000000000012000\n");
	r->bytes[4] = 0x78;
	r->bytes[5] = 0x56;
	assert_read(w, 0x11014, 2, AS_OK, 0x5678);
	assert_access(r, 0, false, 4, 0x5678, 2);
}

static void test_disabled_regions_are_not_rendered(void **state)
{
	struct world *w = *state;
	struct mem_region *b = io(w, "b", 0x100, NULL);
	struct mem_region *c = container(w, "c", 0x100);

	place(w, NULL, 0, io(w, "a", 0x1000, NULL), 0);
	place(w, NULL, 0x100, b, 1);
	place(w, NULL, 0x200, c, 1);
	place(w, c, 0, io(w, "d", 0x100, NULL), 0);
	assert_int_equal(count_ranges(w), 4);
	mr_set_enabled(b, false);
	mr_set_enabled(c, false);
	assert_flat(w, "  0000000000000000-0000000000000fff (prio 0, i/o): a\n");
	mr_set_enabled(c, true);
	assert_flat(w, "  0000000000000000-00000000000001ff (prio 0, i/o): a\n"
		       "  0000000000000200-00000000000002ff (prio 0, i/o): d\n"
		       "  0000000000000300-0000000000000fff (prio 0, i/o): a @0000000000000300\n");
}

static void test_set_address_moves_region(void **state)
{
	struct world *w = *state;
	struct mem_region *a = io(w, "a", 0x100, NULL);
	struct recorder *r = rec_of(w, a);

	place(w, NULL, 0x1000, a, 0);
	assert_int_equal(address_space_write(w->as, 0x1000, 1, 4), AS_OK);
	mr_set_address(a, 0x2000);
	assert_int_equal(mr_offset(a), 0x2000);
	assert_int_equal(address_space_write(w->as, 0x1000, 2, 4), AS_UNASSIGNED);
	assert_int_equal(address_space_write(w->as, 0x2004, 3, 4), AS_OK);
	assert_int_equal(r->nr, 2);
	assert_access(r, 1, true, 4, 3, 4);
	assert_flat(w, "  0000000000002000-00000000000020ff (prio 0, i/o): a\n");
}

static void test_adjacent_pieces_merge(void **state)
{
	struct world *w = *state;
	struct mem_region *dev = io(w, "dev", 0x1000, NULL);
	struct mem_region *mid = io(w, "mid", 0x100, NULL);

	/* Two aliases onto consecutive parts of one region: one range. */
	place(w, NULL, 0x2000, keep(w, mr_new_alias("lo", dev, 0, 0x100)), 0);
	place(w, NULL, 0x2100, keep(w, mr_new_alias("hi", dev, 0x100, 0x100)), 0);
	assert_flat(w, "  0000000000002000-00000000000021ff (prio 0, i/o): dev\n");
	/* A region split by another is whole again once that one leaves. */
	place(w, NULL, 0x10000, io(w, "big", 0x10000, NULL), 0);
	place(w, NULL, 0x18000, mid, 1);
	assert_int_equal(count_ranges(w), 4);
	unplace(w, mid);
	assert_flat(w, "  0000000000002000-00000000000021ff (prio 0, i/o): dev\n"
		       "  0000000000010000-000000000001ffff (prio 0, i/o): big\n");
}

static void test_transaction_defers_rendering(void **state)
{
	struct world *w = *state;
	struct as_stats before, after;

	address_space_get_stats(w->as, &before);
	memory_transaction_begin();
	place(w, NULL, 0, io(w, "a", 0x100, NULL), 0);
	memory_transaction_begin();
	place(w, NULL, 0x100, io(w, "b", 0x100, NULL), 0);
	memory_transaction_commit();
	assert_int_equal(count_ranges(w), 0);
	assert_int_equal(address_space_write(w->as, 0, 1, 1), AS_UNASSIGNED);
	memory_transaction_commit();
	assert_int_equal(count_ranges(w), 2);
	address_space_get_stats(w->as, &after);
	assert_int_equal(after.commits - before.commits, 1);
	/* Nothing changed: nothing rendered. */
	memory_transaction_begin();
	memory_transaction_commit();
	address_space_get_stats(w->as, &before);
	assert_int_equal(after.commits, before.commits);
}

static void test_placement_errors(void **state)
{
	struct world *w = *state;
	struct mem_region *a = io(w, "a", 0x100, NULL);
	struct mem_region *c1 = container(w, "c1", 0x1000);
	struct mem_region *c2 = container(w, "c2", 0x1000);
	static const struct mr_ops bad_size = { .write = rec_write, .valid_min = 3 };
	static const struct mr_ops bad_order = { .write = rec_write, .valid_min = 8, .valid_max = 4 };
	unsigned long errors = log_count(LOG_ERROR);

	assert_int_equal(mr_add_subregion(a, 0, c1, 0), -EINVAL);      /* not a container */
	place(w, NULL, 0, a, 0);
	assert_int_equal(mr_add_subregion(c1, 0, a, 0), -EBUSY);       /* already placed */
	assert_int_equal(mr_add_subregion(c1, 0, c1, 0), -EINVAL);     /* itself */
	place(w, c1, 0, c2, 0);
	assert_int_equal(mr_add_subregion(c2, 0, c1, 0), -EINVAL);     /* its own ancestor */
	assert_null(mr_new_io("bad", 4, &bad_size, NULL));
	assert_null(mr_new_io("bad", 4, &bad_order, NULL));
	/* Freeing a placed region is refused (and logged); it keeps working. */
	mr_free(a);
	mr_del_subregion(c1, a);                                       /* wrong parent */
	assert_int_equal(log_count(LOG_ERROR) - errors, 4);
	assert_int_equal(address_space_write(w->as, 0, 1, 1), AS_OK);
}

static void test_alias_cycle_keeps_previous_view(void **state)
{
	struct world *w = *state;
	struct mem_region *loop = container(w, "loop", 0x1000);
	struct mem_region *back = keep(w, mr_new_alias("back", loop, 0, 0x1000));
	unsigned long errors = log_count(LOG_ERROR);

	place(w, NULL, 0, io(w, "a", 0x100, NULL), 0);
	place(w, NULL, 0x30000, loop, 0);
	place(w, loop, 0, back, 0);
	assert_true(log_count(LOG_ERROR) > errors);
	assert_flat(w, "  0000000000000000-00000000000000ff (prio 0, i/o): a\n");
	unplace(w, back);
	place(w, loop, 0x100, io(w, "b", 0x10, NULL), 0);
	assert_int_equal(count_ranges(w), 2);
}

/* ---- dispatch ------------------------------------------------------------------------ */

static void test_invalid_access_sizes(void **state)
{
	struct world *w = *state;
	struct recorder *r = device_at(w, 0, "r4", 0x100, &only4_ops);
	struct as_stats stats;

	assert_int_equal(address_space_write(w->as, 0, 1, 1), AS_INVALID);
	assert_read(w, 0, 2, AS_INVALID, 0xffff);
	assert_int_equal(address_space_write(w->as, 0, 1, 8), AS_INVALID);
	assert_int_equal(address_space_write(w->as, 0, 1, 3), AS_INVALID); /* no such size */
	assert_int_equal(r->nr, 0);
	assert_int_equal(address_space_write(w->as, 4, 0x12345678, 4), AS_OK);
	assert_access(r, 0, true, 4, 0x12345678, 4);
	address_space_get_stats(w->as, &stats);
	assert_int_equal(stats.invalid, 4);
	assert_int_equal(stats.writes, 4);
	assert_int_equal(stats.reads, 1);
}

static void test_wide_access_split_little_endian(void **state)
{
	struct world *w = *state;
	struct recorder *r = device_at(w, 0x1000, "dev", 0x100, &impl4_ops);

	assert_int_equal(address_space_write(w->as, 0x1010, 0x1122334455667788, 8), AS_OK);
	assert_int_equal(r->nr, 2);
	assert_access(r, 0, true, 0x10, 0x55667788, 4);
	assert_access(r, 1, true, 0x14, 0x11223344, 4);
	assert_read(w, 0x1010, 8, AS_OK, 0x1122334455667788);
	assert_access(r, 2, false, 0x10, 0x55667788, 4);
	assert_access(r, 3, false, 0x14, 0x11223344, 4);
}

static void test_narrow_access_widened(void **state)
{
	struct world *w = *state;
	struct recorder *r = device_at(w, 0, "dev", 0x100, &impl4_ops);

	assert_int_equal(address_space_write(w->as, 0, 0x44332211, 4), AS_OK);
	assert_int_equal(address_space_write(w->as, 4, 0x88776655, 4), AS_OK);
	r->nr = 0;
	/* Read-modify-write of the word holding the byte. */
	assert_int_equal(address_space_write(w->as, 2, 0xab, 1), AS_OK);
	assert_int_equal(r->nr, 2);
	assert_access(r, 0, false, 0, 0x44332211, 4);
	assert_access(r, 1, true, 0, 0x44ab2211, 4);
	assert_read(w, 1, 2, AS_OK, 0xab22);
	/* Unaligned: two words, each patched. */
	r->nr = 0;
	assert_int_equal(address_space_write(w->as, 3, 0xbeef, 2), AS_OK);
	assert_int_equal(r->nr, 4);
	assert_access(r, 1, true, 0, 0xefab2211, 4);
	assert_access(r, 3, true, 4, 0x887766be, 4);
	assert_read(w, 3, 2, AS_OK, 0xbeef);
}

static void test_unassigned_accesses(void **state)
{
	struct world *w = *state;
	struct as_stats stats;

	place(w, NULL, 0, io(w, "a", 0x100, NULL), 0);
	assert_int_equal(address_space_write(w->as, 0x50000, 1, 4), AS_UNASSIGNED);
	assert_read(w, 0x50000, 4, AS_UNASSIGNED, 0xffffffff);
	assert_read(w, 0x100, 8, AS_UNASSIGNED, UINT64_MAX);
	address_space_get_stats(w->as, &stats);
	assert_int_equal(stats.unassigned, 3);
	assert_int_equal(rec_of(w, w->mr[0])->nr, 0);
}

static void test_straddling_access_is_invalid(void **state)
{
	struct world *w = *state;
	struct mem_region *a = io(w, "a", 0x100, NULL);
	struct mem_region *b = io(w, "b", 0x100, NULL);

	place(w, NULL, 0, a, 0);
	place(w, NULL, 0x100, b, 0);
	assert_int_equal(address_space_write(w->as, 0xfe, 0x11223344, 4), AS_INVALID);
	assert_read(w, 0x1fc, 8, AS_INVALID, UINT64_MAX);
	assert_int_equal(rec_of(w, a)->nr + rec_of(w, b)->nr, 0);
	assert_int_equal(address_space_write(w->as, 0xfc, 0x11223344, 4), AS_OK);
}

static void test_ram_is_accessed_directly(void **state)
{
	struct world *w = *state;
	static uint8_t host[0x1000];
	struct mem_region *ram = keep(w, mr_new_ram("ram", sizeof(host), host, -1, 0));
	struct mem_region *shared = keep(w, mr_new_ram("shared", 0x1000, host, 7, 0x2000));
	uint64_t fd_offset = 0;

	place(w, NULL, 0x4000, ram, 0);
	assert_int_equal(address_space_write(w->as, 0x4010, 0xdeadbeef, 4), AS_RAM);
	assert_int_equal(host[0x10], 0xef);
	assert_int_equal(host[0x13], 0xde);
	assert_read(w, 0x4012, 2, AS_RAM, 0xdead);
	assert_int_equal(mr_type(ram), MR_RAM);
	assert_ptr_equal(mr_ram_ptr(ram), host);
	assert_int_equal(mr_ram_fd(ram, &fd_offset), -ENOENT);
	assert_int_equal(mr_ram_fd(shared, &fd_offset), 7);
	assert_int_equal(fd_offset, 0x2000);
	assert_int_equal(mr_ram_fd(w->root, NULL), -EINVAL);
	assert_null(mr_ram_ptr(w->root));
	assert_string_equal(mr_name(ram), "ram");
	assert_int_equal(mr_size(ram), 0x1000);
	assert_null(mr_new_ram("no-host", 0x1000, NULL, -1, 0));
}

/* ---- dumps ---------------------------------------------------------------------------- */

static void test_dumps(void **state)
{
	struct world *w = *state;
	static uint8_t host[0x1000];
	struct mem_region *dev = container(w, "dev", 0x1000);
	struct mem_region *bell = io(w, "bell", 0x10, NULL);
	struct mem_region *tgt = io(w, "tgt", 0x1000, NULL);

	place(w, NULL, 0, keep(w, mr_new_ram("ram", sizeof(host), host, -1, 0)), 0);
	place(w, NULL, 0x10000, dev, 0);
	place(w, dev, 0x100, io(w, "regs", 0x100, NULL), 1);
	place(w, dev, 0, bell, 0);
	mr_set_enabled(bell, false);
	place(w, NULL, 0x20000, keep(w, mr_new_alias("win", tgt, 0x800, 0x100)), 2);
	assert_dump(address_space_dump_mtree, w->as,
		    "address-space: memory\n"
		    "  0000000000000000-00000000000fffff (prio 0, i/o): root\n"
		    "    0000000000000000-0000000000000fff (prio 0, ram): ram\n"
		    "    0000000000010000-0000000000010fff (prio 0, i/o): dev\n"
		    "      0000000000010000-000000000001000f (prio 0, i/o): bell [disabled]\n"
		    "      0000000000010100-00000000000101ff (prio 1, i/o): regs\n"
		    "    0000000000020000-00000000000200ff (prio 2, i/o): alias win @tgt "
		    "0000000000000800-00000000000008ff\n"
		    "\n"
		    "memory-region: tgt\n"
		    "  0000000000000000-0000000000000fff (prio 0, i/o): tgt\n"
		    "\n");
	assert_flat(w, "  0000000000000000-0000000000000fff (prio 0, ram): ram\n"
		       "  0000000000010100-00000000000101ff (prio 1, i/o): regs\n"
		       "  0000000000020000-00000000000200ff (prio 2, i/o): tgt @0000000000000800\n");
}

static void test_empty_flatview_dump(void **state)
{
	struct world *w = *state;

	assert_dump(address_space_dump_flatview, w->as,
		    "FlatView: AS \"memory\"\n  No rendered FlatView\n\n");
}

/* A root of size UINT64_MAX spans the whole 2^64 space, as in QEMU. */
static void test_whole_address_space(void **state)
{
	struct world *w = *state;
	struct mem_region *system = mr_new_container("system", UINT64_MAX);
	struct mem_region *all = io(w, "all", UINT64_MAX, NULL);
	struct address_space *as = address_space_new("sys", AS_MMIO, system);
	uint64_t value;

	assert_int_equal(mr_add_subregion(system, 0, all, 0), 0);
	assert_dump(address_space_dump_mtree, as,
		    "address-space: sys\n"
		    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system\n"
		    "    0000000000000000-ffffffffffffffff (prio 0, i/o): all\n"
		    "\n");
	/* flat_range.size cannot hold 2^64: two halves. */
	assert_dump(address_space_dump_flatview, as,
		    "FlatView: AS \"sys\"\n"
		    "  0000000000000000-7fffffffffffffff (prio 0, i/o): all\n"
		    "  8000000000000000-ffffffffffffffff (prio 0, i/o): all @8000000000000000\n"
		    "\n");
	assert_int_equal(address_space_read(as, UINT64_MAX - 3, &value, 4), AS_OK);
	assert_access(rec_of(w, all), 0, false, UINT64_MAX - 3, 0, 4);
	assert_int_equal(address_space_write(as, UINT64_MAX - 3, 0, 8), AS_INVALID);
	address_space_free(as);
	mr_del_subregion(system, all);
	mr_free(system);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_higher_priority_wins),
		T(test_equal_priority_last_added_wins),
		T(test_partial_overlaps_split),
		T(test_alias_clips_to_window_and_target),
		T(test_alias_of_container),
		T(test_nested_containers_are_transparent),
		T(test_disabled_regions_are_not_rendered),
		T(test_set_address_moves_region),
		T(test_adjacent_pieces_merge),
		T(test_transaction_defers_rendering),
		T(test_placement_errors),
		T(test_alias_cycle_keeps_previous_view),
		T(test_invalid_access_sizes),
		T(test_wide_access_split_little_endian),
		T(test_narrow_access_widened),
		T(test_unassigned_accesses),
		T(test_straddling_access_is_invalid),
		T(test_ram_is_accessed_directly),
		T(test_dumps),
		T(test_empty_flatview_dump),
		T(test_whole_address_space),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
