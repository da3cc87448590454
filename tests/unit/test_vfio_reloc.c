/*
 * MSI-X relocation in the VFIO device model, over the fake backend: a device
 * with BAR1 64 KiB 64-bit non-prefetchable holding a 96-entry MSI-X table at
 * 0xe000 and its PBA at 0xf000, and BAR3 256 KiB 64-bit, under
 * x-msix-relocation=off, auto, bar1 and bar5.  For each: the BARs the guest
 * sizes, the capability's table/PBA BIR and offset read through config
 * space, what the flat view maps (ramd) and traps (i/o), that a guest write
 * to the guest's table programs the vector without reaching a device
 * register, and that the device's former table offset now reaches the
 * device.  Then the refusals: an I/O BAR, the upper half of a 64-bit BAR, a
 * 32-bit BAR without room.
 */
#include <errno.h>

#include "vfio_fixture.h"

#define BAR1_ADDR 0xc0000000ull
#define BAR3_ADDR 0xc0100000ull
#define BAR5_ADDR 0xc0200000ull
#define ENTRIES   96

static int msix_cap;

/* Seed 004's device; @mappable: the kernel reports MSIX_MAPPABLE. */
static void lsi_like(struct fx *x, bool mappable)
{
	assert_int_equal(vfio_fake_add_bar(x->f, 1, 0x10000, PCI_BAR_MEM64, true), 0);
	assert_int_equal(vfio_fake_add_bar(x->f, 3, 0x40000, PCI_BAR_MEM64, true), 0);
	msix_cap = vfio_fake_add_msix(x->f, ENTRIES, 1, 0xe000, 1, 0xf000, mappable);
	assert_true(msix_cap > 0);
}

/* Start with the planner in @mode; returns vfio_pci_create's value. */
static int start_mode(struct fx *x, int mode, const char **why)
{
	struct vfio_pci_opts o;
	int r;

	vfio_pci_opts_defaults(&o);
	o.msix_relocation = mode;
	o.planner = vfio_msix_reloc_planner;
	o.loop = x->loop;
	o.dma_root = x->w.system;
	r = vfio_pci_create(x->w.bus, &x->f->base, &o, &x->v, why);
	if (r < 0) {
		x->f = NULL;  /* the model destroyed the backend */
		x->v = NULL;
	} else {
		x->devfn = vfio_pci_device(x->v)->devfn;
	}
	return r;
}

/* What the guest reads back after writing all ones to BAR register @bar. */
static uint32_t size_bar(struct fx *x, int bar)
{
	cfg_write(x, 0x10 + 4 * bar, 0xffffffff, 4);
	return cfg_read(x, 0x10 + 4 * bar, 4);
}

static void place_bars(struct fx *x, bool with_bar5)
{
	cfg_write(x, 0x14, (uint32_t)BAR1_ADDR, 4);
	cfg_write(x, 0x18, 0, 4);
	cfg_write(x, 0x1c, (uint32_t)BAR3_ADDR, 4);
	cfg_write(x, 0x20, 0, 4);
	if (with_bar5)
		cfg_write(x, 0x24, (uint32_t)BAR5_ADDR, 4);
	cfg_write(x, 0x04, 0x0006, 2);
}

static char *flatview(struct fx *x)
{
	char *dump = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&dump, &len);

	assert_non_null(out);
	address_space_dump_flatview(x->w.as_mem, out);
	fclose(out);
	return dump;
}

static void assert_in_dump(const char *dump, const char *line)
{
	if (!strstr(dump, line))
		fail_msg("flat view lacks \"%s\" in:\n%s", line, dump);
}

/* Vector 0 at the guest's table @table: programmed, unmasked, MSI-X on; the
 * device's interrupt arrives with that message; no device register moved. */
static void vector_through_guest_table(struct fx *x, uint64_t table)
{
	uint64_t writes = x->f->region_writes;
	uint8_t before[0x2000];

	memcpy(before, x->f->mem[1] + 0xe000, sizeof(before));
	wr(x, table, 0xfee00000, 4);
	wr(x, table + 4, 0, 4);
	wr(x, table + 8, 0x4321, 4);
	wr(x, table + 12, 0, 4);
	assert_int_equal(x->f->region_writes, writes);
	assert_memory_equal(before, x->f->mem[1] + 0xe000, sizeof(before));
	assert_int_equal(rd(x, table + 8, 4), 0x4321);
	cfg_write(x, msix_cap + 2, 0x8000, 2);
	assert_int_equal(x->f->irq_enabled[VFIO_IRQ_MSIX], ENTRIES);
	signal_fd(x->f->irq_fd[VFIO_IRQ_MSIX][0]);
	run_loop(x);
	assert_int_equal(atomic_load(&x->log.n), 1);
	assert_int_equal(msi_log_data(&x->log, 0), 0x4321);
}

/* The device's former table offset, BAR1+0xe000, is the device's again:
 * mapped (@mapped) or trapped and forwarded. */
static void former_table_reaches_device(struct fx *x, bool mapped)
{
	struct vfio_pci_stats a, b;
	struct seen s = range_at(x, BAR1_ADDR + 0xe000);

	assert_true(s.found);
	assert_int_equal(s.ramd, mapped);
	assert_null(strstr(s.name, "msix"));
	vfio_pci_get_stats(x->v, &a);
	wr(x, BAR1_ADDR + 0xe008, 0x5a5a1234, 4);
	assert_int_equal(pci_get_long(x->f->mem[1] + 0xe008), 0x5a5a1234);
	pci_set_long(x->f->mem[1] + 0xf000, 0x77665544);
	assert_int_equal(rd(x, BAR1_ADDR + 0xf000, 4), 0x77665544);
	vfio_pci_get_stats(x->v, &b);
	assert_int_equal(b.trapped_writes - a.trapped_writes, mapped ? 0 : 1);
	assert_int_equal(b.msix_table_accesses, a.msix_table_accesses);
}

static void test_off(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;
	char *dump;

	lsi_like(x, true);
	assert_int_equal(start_mode(x, VFIO_MSIX_RELOC_OFF, &why), 0);
	assert_int_equal(size_bar(x, 1), 0xffff0004u);
	assert_int_equal(size_bar(x, 3), 0xfffc0004u);
	assert_int_equal(size_bar(x, 5), 0);
	assert_int_equal(cfg_read(x, msix_cap + 4, 4), 0xe000 | 1);
	assert_int_equal(cfg_read(x, msix_cap + 8, 4), 0xf000 | 1);
	place_bars(x, false);
	dump = flatview(x);
	assert_in_dump(dump, "00000000c0000000-00000000c000dfff (prio 0, ramd): "
			     "0000:01:00.0 BAR 1 mmaps[0]\n");
	assert_in_dump(dump, "00000000c000e000-00000000c000e5ff (prio 1, i/o): msix-table\n");
	assert_in_dump(dump, "00000000c000e600-00000000c000efff (prio 0, i/o): "
			     "0000:01:00.0 BAR 1 @000000000000e600\n");
	assert_in_dump(dump, "00000000c000f000-00000000c000f00f (prio 1, i/o): msix-pba\n");
	assert_in_dump(dump, "00000000c0100000-00000000c013ffff (prio 0, ramd): "
			     "0000:01:00.0 BAR 3 mmaps[0]\n");
	free(dump);
	vector_through_guest_table(x, BAR1_ADDR + 0xe000);
}

/* auto and bar1 give the same plan: BAR1 doubled, MSI-X in the new half. */
static void check_bar1_grown(struct fx *x, bool mappable)
{
	char *dump;

	assert_int_equal(size_bar(x, 1), 0xfffe0004u);
	assert_int_equal(size_bar(x, 3), 0xfffc0004u);
	assert_int_equal(size_bar(x, 5), 0);
	assert_int_equal(cfg_read(x, msix_cap + 4, 4), 0x10000 | 1);
	assert_int_equal(cfg_read(x, msix_cap + 8, 4), 0x10600 | 1);
	/* Physical and guest places apart. */
	assert_int_equal(vfio_pci_phys_layout(x->v)->msix.table_offset, 0xe000);
	assert_int_equal(vfio_pci_layout(x->v)->msix.table_offset, 0x10000);
	place_bars(x, false);
	dump = flatview(x);
	if (mappable) {
		/* The whole physical BAR, table pages included: one memory slot. */
		assert_in_dump(dump, "00000000c0000000-00000000c000ffff (prio 0, ramd): "
				     "0000:01:00.0 BAR 1 mmaps[0]\n");
	} else {
		/* The kernel will not mmap the device's table pages: trapped and
		 * forwarded, never emulated. */
		assert_in_dump(dump, "00000000c0000000-00000000c000dfff (prio 0, ramd): "
				     "0000:01:00.0 BAR 1 mmaps[0]\n");
		assert_in_dump(dump, "00000000c000e000-00000000c000ffff (prio 0, i/o): "
				     "0000:01:00.0 BAR 1 @000000000000e000\n");
	}
	assert_in_dump(dump, "00000000c0010000-00000000c00105ff (prio 1, i/o): msix-table\n");
	assert_in_dump(dump, "00000000c0010600-00000000c001060f (prio 1, i/o): msix-pba\n");
	assert_in_dump(dump, "00000000c0100000-00000000c013ffff (prio 0, ramd): "
			     "0000:01:00.0 BAR 3 mmaps[0]\n");
	free(dump);
	vector_through_guest_table(x, BAR1_ADDR + 0x10000);
	former_table_reaches_device(x, mappable);
}

static void test_auto_grows_bar1(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;

	lsi_like(x, true);
	assert_int_equal(start_mode(x, VFIO_MSIX_RELOC_AUTO, &why), 0);
	check_bar1_grown(x, true);
}

static void test_bar1(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;

	lsi_like(x, true);
	assert_int_equal(start_mode(x, 1, &why), 0);
	check_bar1_grown(x, true);
}

static void test_bar1_without_msix_mappable(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;

	lsi_like(x, false);
	assert_int_equal(start_mode(x, 1, &why), 0);
	check_bar1_grown(x, false);
}

static void test_bar5(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;
	char *dump;

	lsi_like(x, true);
	assert_int_equal(start_mode(x, 5, &why), 0);
	assert_int_equal(size_bar(x, 1), 0xffff0004u);
	assert_int_equal(size_bar(x, 3), 0xfffc0004u);
	assert_int_equal(size_bar(x, 5), 0xfffff008u);   /* 4 KiB 32-bit prefetchable */
	assert_int_equal(cfg_read(x, msix_cap + 4, 4), 0x0 | 5);
	assert_int_equal(cfg_read(x, msix_cap + 8, 4), 0x600 | 5);
	place_bars(x, true);
	dump = flatview(x);
	assert_in_dump(dump, "00000000c0000000-00000000c000ffff (prio 0, ramd): "
			     "0000:01:00.0 BAR 1 mmaps[0]\n");
	assert_in_dump(dump, "00000000c0200000-00000000c02005ff (prio 1, i/o): msix-table\n");
	assert_in_dump(dump, "00000000c0200600-00000000c020060f (prio 1, i/o): msix-pba\n");
	free(dump);
	vector_through_guest_table(x, BAR5_ADDR);
	former_table_reaches_device(x, true);
}

static void refused(struct fx *x, int mode)
{
	const char *why = NULL;

	assert_int_equal(start_mode(x, mode, &why), -EDOM);
	assert_non_null(why);
	assert_null(x->v);
}

static void test_refuses_io_bar(void **state)
{
	struct fx *x = *state;

	assert_int_equal(vfio_fake_add_bar(x->f, 0, 0x100, PCI_BAR_IO, false), 0);
	lsi_like(x, true);
	refused(x, 0);
}

static void test_refuses_upper_half(void **state)
{
	struct fx *x = *state;

	lsi_like(x, true);
	refused(x, 2);   /* BAR1 is 64-bit: slot 2 is its upper half */
}

static void test_refuses_full_32bit_bar(void **state)
{
	struct fx *x = *state;

	assert_int_equal(vfio_fake_add_bar(x->f, 0, 1ull << 31, PCI_BAR_MEM32, false), 0);
	assert_true(vfio_fake_add_msix(x->f, 8, 0, 0x1000, 0, 0x2000, false) > 0);
	refused(x, 0);   /* 2 GiB doubled would reach 4 GiB */
}

static void test_explicit_target_without_msix(void **state)
{
	struct fx *x = *state;

	assert_int_equal(vfio_fake_add_bar(x->f, 0, 0x4000, PCI_BAR_MEM32, true), 0);
	refused(x, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto_grows_bar1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar1_without_msix_mappable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar5, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_io_bar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_upper_half, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_full_32bit_bar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_explicit_target_without_msix, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
