/*
 * MSI-X relocation plans for a SAS-controller-like device: BAR1 64 KiB
 * 64-bit non-prefetchable with a 96-vector table at 0xe000 and its PBA at
 * 0xf000, BAR3 256 KiB 64-bit, slots 0 and 5 empty.  Each mode's plan is
 * checked for the BARs the guest sees, the capability's BIR and offsets,
 * and what of the physical BARs is passed through; then every refusal,
 * the option parser and the size rounding.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vfio/msix_reloc.h"

#define KIB(x) ((uint64_t)(x) << 10)
#define GIB(x) ((uint64_t)(x) << 30)
#define PAGE_4K  KIB(4)
#define PAGE_64K KIB(64)

#define MEM64_NP PCI_BAR_MEM64
#define MEM32_P  (PCI_BAR_MEM32 | PCI_BAR_PREFETCH)
#define MEM64_P  (PCI_BAR_MEM64 | PCI_BAR_PREFETCH)

static const struct msix_location sas_msix = {
	.table_bir = 1, .table_offset = 0xe000, .pba_bir = 1, .pba_offset = 0xf000,
};

static void sas_bars(struct msix_reloc_bar bars[PCI_NUM_BARS])
{
	memset(bars, 0, sizeof(struct msix_reloc_bar) * PCI_NUM_BARS);
	bars[1] = (struct msix_reloc_bar){ .size = KIB(64), .type = MEM64_NP };
	bars[3] = (struct msix_reloc_bar){ .size = KIB(256), .type = MEM64_NP };
}

static void plan_sas(enum msix_reloc_mode mode, uint64_t page, struct msix_reloc_plan *p)
{
	struct msix_reloc_bar bars[PCI_NUM_BARS];
	const char *why = NULL;

	sas_bars(bars);
	assert_int_equal(msix_reloc_plan(bars, &sas_msix, 96, mode, page, p, &why), 0);
	assert_null(why);
}

static void assert_bar(const struct msix_reloc_plan *p, int i, uint64_t size, uint8_t type,
		       bool upper_half, uint64_t phys_size)
{
	assert_int_equal(p->bars[i].bar.size, size);
	if (size)
		assert_int_equal(p->bars[i].bar.type, type);
	assert_int_equal(p->bars[i].bar.upper_half, upper_half);
	assert_int_equal(p->bars[i].phys_size, phys_size);
}

static void assert_location(const struct msix_location *l, unsigned table_bir,
			    uint32_t table_offset, unsigned pba_bir, uint32_t pba_offset)
{
	assert_int_equal(l->table_bir, table_bir);
	assert_int_equal(l->table_offset, table_offset);
	assert_int_equal(l->pba_bir, pba_bir);
	assert_int_equal(l->pba_offset, pba_offset);
}

/* The physical side never changes, whatever the mode. */
static void assert_phys_untouched(const struct msix_reloc_plan *p)
{
	assert_location(&p->phys, 1, 0xe000, 1, 0xf000);
	assert_int_equal(p->entries, 96);
	assert_int_equal(p->table_size, 96 * 16);
	assert_int_equal(p->pba_size, 16);
}

/* Every slot but @except passes its physical BAR through untouched. */
static void assert_others_whole(const struct msix_reloc_plan *p, int except)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		if (i == except)
			continue;
		assert_int_equal(p->bars[i].nr_holes, 0);
		assert_int_equal(p->bars[i].table.size, 0);
		assert_int_equal(p->bars[i].pba.size, 0);
	}
}

static void test_off(void **state)
{
	struct msix_reloc_plan p;

	(void)state;
	plan_sas(MSIX_RELOC_OFF, PAGE_4K, &p);
	assert_false(p.relocated);
	assert_int_equal(p.target_bar, -1);
	assert_int_equal(p.msix_size, 0);
	assert_null(p.note);
	assert_phys_untouched(&p);
	assert_location(&p.guest, 1, 0xe000, 1, 0xf000);

	assert_bar(&p, 0, 0, 0, false, 0);
	assert_bar(&p, 1, KIB(64), MEM64_NP, false, KIB(64));
	assert_bar(&p, 2, 0, 0, true, 0);
	assert_bar(&p, 3, KIB(256), MEM64_NP, false, KIB(256));
	assert_bar(&p, 4, 0, 0, true, 0);
	assert_bar(&p, 5, 0, 0, false, 0);

	/* Table and PBA pages of BAR1 are emulated: one merged hole. */
	assert_int_equal(p.bars[1].table.offset, 0xe000);
	assert_int_equal(p.bars[1].table.size, 0x600);
	assert_int_equal(p.bars[1].pba.offset, 0xf000);
	assert_int_equal(p.bars[1].pba.size, 16);
	assert_int_equal(p.bars[1].nr_holes, 1);
	assert_int_equal(p.bars[1].holes[0].offset, 0xe000);
	assert_int_equal(p.bars[1].holes[0].size, 0x2000);
	assert_others_whole(&p, 1);
}

/* With 64 KiB host pages the table page is the whole BAR: all of it traps. */
static void test_off_64k_pages_trap_the_whole_bar(void **state)
{
	struct msix_reloc_plan p;

	(void)state;
	plan_sas(MSIX_RELOC_OFF, PAGE_64K, &p);
	assert_int_equal(p.bars[1].nr_holes, 1);
	assert_int_equal(p.bars[1].holes[0].offset, 0);
	assert_int_equal(p.bars[1].holes[0].size, KIB(64));
}

/* Growing BAR1: 128 KiB, the device's 64 KiB below, MSI-X at 64 KiB. */
static void assert_bar1_grown(const struct msix_reloc_plan *p, uint64_t msix_size)
{
	assert_true(p->relocated);
	assert_int_equal(p->target_bar, 1);
	assert_false(p->target_added);
	assert_int_equal(p->msix_size, msix_size);
	assert_null(p->note);
	assert_phys_untouched(p);
	assert_location(&p->guest, 1, 0x10000, 1, 0x10600);

	assert_bar(p, 0, 0, 0, false, 0);
	assert_bar(p, 1, KIB(128), MEM64_NP, false, KIB(64));
	assert_bar(p, 2, 0, 0, true, 0);
	assert_bar(p, 3, KIB(256), MEM64_NP, false, KIB(256));
	assert_bar(p, 5, 0, 0, false, 0);

	/* The whole physical BAR1 passes through, its MSI-X pages included. */
	assert_int_equal(p->bars[1].nr_holes, 0);
	assert_int_equal(p->bars[1].table.offset, 0x10000);
	assert_int_equal(p->bars[1].table.size, 0x600);
	assert_int_equal(p->bars[1].pba.offset, 0x10600);
	assert_int_equal(p->bars[1].pba.size, 16);
	assert_true(p->bars[1].table.offset >= p->bars[1].phys_size);
	assert_others_whole(p, 1);
}

static void test_auto_grows_bar1_not_empty_bar0(void **state)
{
	struct msix_reloc_plan p;

	(void)state;
	plan_sas(MSIX_RELOC_AUTO, PAGE_4K, &p);
	assert_bar1_grown(&p, PAGE_4K);
	/* The slot in front of the device's BARs stays empty, so a driver
	 * looking for "the first memory BAR" still finds BAR1. */
	assert_int_equal(p.bars[0].bar.size, 0);
}

static void test_bar1(void **state)
{
	struct msix_reloc_plan p;

	(void)state;
	plan_sas(MSIX_RELOC_BAR0 + 1, PAGE_4K, &p);
	assert_bar1_grown(&p, PAGE_4K);
	/* 64 KiB pages: max(2 * 64K, 2 * 64K), the same layout. */
	plan_sas(MSIX_RELOC_BAR0 + 1, PAGE_64K, &p);
	assert_bar1_grown(&p, PAGE_64K);
}

static void test_bar5_adds_a_32bit_prefetchable_bar(void **state)
{
	struct msix_reloc_plan p;

	(void)state;
	plan_sas(MSIX_RELOC_BAR0 + 5, PAGE_64K, &p);
	assert_true(p.relocated);
	assert_int_equal(p.target_bar, 5);
	assert_true(p.target_added);
	assert_int_equal(p.msix_size, KIB(64));
	assert_phys_untouched(&p);
	assert_location(&p.guest, 5, 0, 5, 0x600);

	assert_bar(&p, 1, KIB(64), MEM64_NP, false, KIB(64));
	assert_bar(&p, 3, KIB(256), MEM64_NP, false, KIB(256));
	/* The last slot has no room for an upper half: 32-bit. */
	assert_bar(&p, 5, KIB(64), MEM32_P, false, 0);
	assert_null(p.note);                    /* after the device's BARs */
	assert_int_equal(p.bars[5].table.offset, 0);
	assert_int_equal(p.bars[5].table.size, 0x600);
	assert_int_equal(p.bars[5].pba.offset, 0x600);
	assert_int_equal(p.bars[5].pba.size, 16);
	assert_int_equal(p.bars[5].nr_holes, 0);
	assert_others_whole(&p, 5);
	/* BAR1, the physical table's BAR, passes through whole. */
	assert_int_equal(p.bars[1].nr_holes, 0);

	plan_sas(MSIX_RELOC_BAR0 + 5, PAGE_4K, &p);
	assert_bar(&p, 5, PAGE_4K, MEM32_P, false, 0);
}

/* bar0: the next slot is BAR1, so the new BAR is 32-bit (QEMU's layout). */
static void test_bar0_when_next_slot_used(void **state)
{
	struct msix_reloc_plan p;

	(void)state;
	plan_sas(MSIX_RELOC_BAR0, PAGE_64K, &p);
	assert_non_null(strstr(p.note, "first memory BAR"));   /* done, with a warning */
	assert_bar(&p, 0, KIB(64), MEM32_P, false, 0);
	assert_location(&p.guest, 0, 0, 0, 0x600);
	assert_int_equal(p.bars[1].nr_holes, 0);
}

/* An empty slot with a free one after it becomes a 64-bit BAR. */
static void test_new_bar_is_64bit_when_next_slot_free(void **state)
{
	struct msix_reloc_bar bars[PCI_NUM_BARS] = {
		[0] = { .size = KIB(16), .type = PCI_BAR_MEM32 },
	};
	struct msix_location loc = { 0, 0x2000, 0, 0x3000 };
	struct msix_reloc_plan p;

	(void)state;
	assert_int_equal(msix_reloc_plan(bars, &loc, 8, MSIX_RELOC_BAR0 + 2, PAGE_4K, &p, NULL), 0);
	assert_bar(&p, 2, PAGE_4K, MEM64_P, false, 0);
	assert_bar(&p, 3, 0, 0, true, 0);
	assert_location(&p.guest, 2, 0, 2, 0x80);
}

static void assert_refused(const struct msix_reloc_bar bars[PCI_NUM_BARS],
			   const struct msix_location *loc, unsigned entries,
			   enum msix_reloc_mode mode, int err, const char *why_has)
{
	struct msix_reloc_plan p;
	const char *why = NULL;

	assert_int_equal(msix_reloc_plan(bars, loc, entries, mode, PAGE_4K, &p, &why), err);
	assert_non_null(why);
	assert_non_null(strstr(why, why_has));
}

static void test_refusals(void **state)
{
	struct msix_reloc_bar bars[PCI_NUM_BARS];
	struct msix_location loc = { 0, 0, 0, 0x800 };

	(void)state;
	/* Upper half of BAR1 and of BAR3. */
	sas_bars(bars);
	assert_refused(bars, &sas_msix, 96, MSIX_RELOC_BAR0 + 2, -EINVAL, "upper half");
	assert_refused(bars, &sas_msix, 96, MSIX_RELOC_BAR0 + 4, -EINVAL, "upper half");

	/* An I/O BAR. */
	bars[5] = (struct msix_reloc_bar){ .size = 256, .type = PCI_BAR_IO };
	assert_refused(bars, &sas_msix, 96, MSIX_RELOC_BAR0 + 5, -EINVAL, "I/O BAR");

	/* A 32-bit BAR of 2 GiB would grow to 4 GiB. */
	memset(bars, 0, sizeof(bars));
	bars[0] = (struct msix_reloc_bar){ .size = GIB(2), .type = PCI_BAR_MEM32 };
	assert_refused(bars, &loc, 64, MSIX_RELOC_BAR0, -EINVAL, "no room to grow");
	/* ... while 1 GiB grows to 2 GiB, table at 1 GiB. */
	{
		struct msix_reloc_plan p;

		bars[0].size = GIB(1);
		assert_int_equal(msix_reloc_plan(bars, &loc, 64, MSIX_RELOC_BAR0, PAGE_4K, &p, NULL), 0);
		assert_int_equal(p.bars[0].bar.size, GIB(2));
		assert_int_equal(p.guest.table_offset, GIB(1));
	}
	/* A 64-bit BAR of 4 GiB would put the table at 4 GiB, past the
	 * capability's 32-bit offset. */
	bars[0] = (struct msix_reloc_bar){ .size = GIB(4), .type = PCI_BAR_MEM64 };
	assert_refused(bars, &loc, 64, MSIX_RELOC_BAR0, -EINVAL, "past 4 GiB");
}

/* Descriptions that cannot be a real device. */
static void test_malformed(void **state)
{
	struct msix_reloc_bar bars[PCI_NUM_BARS] = {
		[0] = { .size = KIB(1), .type = PCI_BAR_MEM32 },
		[2] = { .size = 256, .type = PCI_BAR_IO },
	};
	struct msix_location loc = { 0, 0, 0, 0x400 };

	(void)state;
	assert_refused(bars, &loc, 64, MSIX_RELOC_OFF, -EINVAL, "PBA is not inside");
	loc.table_offset = 0x100;
	assert_refused(bars, &loc, 64, MSIX_RELOC_OFF, -EINVAL, "table is not inside");
	loc = (struct msix_location){ 2, 0, 2, 0x80 };
	assert_refused(bars, &loc, 4, MSIX_RELOC_OFF, -EINVAL, "table is not inside");
	loc = (struct msix_location){ 0, 0, 0, 0x200 };
	assert_refused(bars, &loc, 4096, MSIX_RELOC_OFF, -EINVAL, "2048");
	bars[1] = (struct msix_reloc_bar){ .size = 3000, .type = PCI_BAR_MEM32 };
	assert_refused(bars, &loc, 4, MSIX_RELOC_OFF, -EINVAL, "power of two");
	bars[1] = (struct msix_reloc_bar){ 0 };
	bars[5] = (struct msix_reloc_bar){ .size = KIB(4), .type = PCI_BAR_MEM64 };
	assert_refused(bars, &loc, 4, MSIX_RELOC_OFF, -EINVAL, "last slot");
	bars[5] = (struct msix_reloc_bar){ 0 };
	bars[3] = (struct msix_reloc_bar){ .size = GIB(4), .type = PCI_BAR_MEM32 };
	assert_refused(bars, &loc, 4, MSIX_RELOC_OFF, -EINVAL, "32-bit BAR larger than 2 GiB");
	bars[3] = (struct msix_reloc_bar){ 0 };
	/* No MSI-X: an explicit target is an error, off and auto are not. */
	assert_refused(bars, &loc, 0, MSIX_RELOC_BAR0 + 3, -ENOENT, "no MSI-X");
	{
		struct msix_reloc_plan p;

		assert_int_equal(msix_reloc_plan(bars, &loc, 0, MSIX_RELOC_AUTO, PAGE_4K, &p, NULL), 0);
		assert_false(p.relocated);
		assert_int_equal(p.bars[0].bar.size, KIB(1));
		assert_int_equal(p.bars[0].nr_holes, 0);
	}
}

/* auto: no BAR can grow (an I/O BAR, a 2 GiB 32-bit BAR), so a new BAR
 * goes after the last used slot (3), never into the empty slot 0. */
static void test_auto_empty_slot_only_after_last_used(void **state)
{
	struct msix_reloc_bar bars[PCI_NUM_BARS] = {
		[1] = { .size = GIB(2), .type = PCI_BAR_MEM32 },
		[3] = { .size = 256, .type = PCI_BAR_IO },
	};
	struct msix_location loc = { 1, 0x1000, 1, 0x3000 };
	struct msix_reloc_plan p;

	(void)state;
	assert_int_equal(msix_reloc_plan(bars, &loc, 16, MSIX_RELOC_AUTO, PAGE_4K, &p, NULL), 0);
	assert_true(p.relocated);
	assert_int_equal(p.target_bar, 4);
	assert_true(p.target_added);
	assert_bar(&p, 4, PAGE_4K, MEM64_P, false, 0);
	assert_bar(&p, 5, 0, 0, true, 0);
	assert_int_equal(p.bars[0].bar.size, 0);
	assert_location(&p.guest, 4, 0, 4, 0x100);
	assert_int_equal(p.bars[1].nr_holes, 0);

	/* The last used slot is 5: nowhere to go, left in place (not an
	 * error), and the physical pages stay emulated. */
	bars[5] = (struct msix_reloc_bar){ .size = 16, .type = PCI_BAR_IO };
	assert_int_equal(msix_reloc_plan(bars, &loc, 16, MSIX_RELOC_AUTO, PAGE_4K, &p, NULL), 0);
	assert_false(p.relocated);
	assert_non_null(p.note);
	assert_location(&p.guest, 1, 0x1000, 1, 0x3000);
	assert_int_equal(p.bars[1].nr_holes, 2);
	assert_int_equal(p.bars[1].holes[0].offset, 0x1000);
	assert_int_equal(p.bars[1].holes[0].size, 0x1000);
	assert_int_equal(p.bars[1].holes[1].offset, 0x3000);
	assert_int_equal(p.bars[1].holes[1].size, 0x1000);
}

/* auto picks the BAR whose growth costs least, not the table's BAR. */
static void test_auto_cheapest(void **state)
{
	struct msix_reloc_bar bars[PCI_NUM_BARS] = {
		[0] = { .size = KIB(1024), .type = PCI_BAR_MEM32 },
		[2] = { .size = KIB(16), .type = MEM64_P },
		[4] = { .size = KIB(16), .type = PCI_BAR_MEM32 },
	};
	struct msix_location loc = { 0, 0x3000, 0, 0x3800 };
	struct msix_reloc_plan p;

	(void)state;
	assert_int_equal(msix_reloc_plan(bars, &loc, 32, MSIX_RELOC_AUTO, PAGE_4K, &p, NULL), 0);
	assert_int_equal(p.target_bar, 2);      /* 16K -> 32K; ties with 4: lower index */
	assert_bar(&p, 2, KIB(32), MEM64_P, false, KIB(16));
	assert_location(&p.guest, 2, KIB(16), 2, KIB(16) + 32 * 16);
	assert_int_equal(p.bars[0].nr_holes, 0); /* BAR0 passes through whole */

	/* A tie with the table's own BAR goes to it. */
	loc = (struct msix_location){ 4, 0x3000, 4, 0x3800 };
	assert_int_equal(msix_reloc_plan(bars, &loc, 32, MSIX_RELOC_AUTO, PAGE_4K, &p, NULL), 0);
	assert_int_equal(p.target_bar, 4);
	assert_location(&p.guest, 4, KIB(16), 4, KIB(16) + 32 * 16);
}

static void test_parse(void **state)
{
	static const char *const bad[] = {
		"", "on", "Auto", "OFF", "bar", "bar6", "bar-1", "bar01", "BAR1", "bar1 ", " bar1",
		"auto1", "1",
	};
	enum msix_reloc_mode m;
	const char *why = NULL;

	(void)state;
	assert_int_equal(msix_reloc_parse("off", &m, NULL), 0);
	assert_int_equal(m, MSIX_RELOC_OFF);
	assert_int_equal(msix_reloc_parse("auto", &m, NULL), 0);
	assert_int_equal(m, MSIX_RELOC_AUTO);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		char s[8] = "bar0";

		s[3] = (char)('0' + i);
		assert_int_equal(msix_reloc_parse(s, &m, NULL), 0);
		assert_int_equal(m, MSIX_RELOC_BAR0 + i);
		assert_string_equal(msix_reloc_mode_name(m), s);
	}
	assert_string_equal(msix_reloc_mode_name(MSIX_RELOC_OFF), "off");
	assert_string_equal(msix_reloc_mode_name(MSIX_RELOC_AUTO), "auto");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		m = MSIX_RELOC_AUTO;
		assert_int_equal(msix_reloc_parse(bad[i], &m, &why), -EINVAL);
		assert_int_equal(m, MSIX_RELOC_AUTO);   /* untouched */
		assert_non_null(strstr(why, "off, auto or bar0..bar5"));
	}
	assert_int_equal(msix_reloc_parse(NULL, &m, &why), -EINVAL);
}

/* entries * 16 + align_up(entries, 64) / 8, to the page, to a power of 2. */
static void test_size_rounding(void **state)
{
	(void)state;
	assert_int_equal(msix_reloc_size(96, PAGE_4K), PAGE_4K);      /* 1552 */
	assert_int_equal(msix_reloc_size(96, PAGE_64K), PAGE_64K);
	assert_int_equal(msix_reloc_size(1, PAGE_4K), PAGE_4K);       /* 24 */
	assert_int_equal(msix_reloc_size(256, PAGE_4K), PAGE_4K * 2); /* 4096 + 32 */
	assert_int_equal(msix_reloc_size(254, PAGE_4K), PAGE_4K);     /* 4064 + 32: exactly a page */
	assert_int_equal(msix_reloc_size(255, PAGE_4K), PAGE_4K * 2); /* 4080 + 32 */
	assert_int_equal(msix_reloc_size(600, PAGE_4K), KIB(16));     /* 9600 + 80 -> 12K -> 16K */
	assert_int_equal(msix_reloc_size(2048, PAGE_4K), KIB(64));    /* 32768 + 256 -> 36K */
	assert_int_equal(msix_reloc_size(2048, PAGE_64K), KIB(64));
	assert_int_equal(msix_reloc_size(0, PAGE_4K), 0);
	assert_int_equal(msix_reloc_size(2049, PAGE_4K), 0);
}

static void test_describe(void **state)
{
	struct msix_reloc_plan p;
	char line[160];

	(void)state;
	plan_sas(MSIX_RELOC_AUTO, PAGE_4K, &p);
	msix_reloc_describe(&p, line, sizeof(line));
	assert_string_equal(line, "MSI-X (96 vectors) moved from BAR1+0xe000 to BAR1+0x10000, "
				  "BAR1 64 KiB -> 128 KiB");
	plan_sas(MSIX_RELOC_BAR0 + 5, PAGE_4K, &p);
	msix_reloc_describe(&p, line, sizeof(line));
	assert_string_equal(line, "MSI-X (96 vectors) moved from BAR1+0xe000 to BAR5+0x0, "
				  "new 4 KiB 32-bit BAR5");
	plan_sas(MSIX_RELOC_OFF, PAGE_4K, &p);
	msix_reloc_describe(&p, line, sizeof(line));
	assert_string_equal(line, "MSI-X (96 vectors) at BAR1+0xe000, not relocated");
	/* Truncation is safe. */
	assert_true(msix_reloc_describe(&p, line, 8) > 8);
	assert_int_equal(strlen(line), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_off),
		cmocka_unit_test(test_off_64k_pages_trap_the_whole_bar),
		cmocka_unit_test(test_auto_grows_bar1_not_empty_bar0),
		cmocka_unit_test(test_bar1),
		cmocka_unit_test(test_bar5_adds_a_32bit_prefetchable_bar),
		cmocka_unit_test(test_bar0_when_next_slot_used),
		cmocka_unit_test(test_new_bar_is_64bit_when_next_slot_free),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_auto_empty_slot_only_after_last_used),
		cmocka_unit_test(test_auto_cheapest),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_size_rounding),
		cmocka_unit_test(test_describe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
