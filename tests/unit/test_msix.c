/*
 * MSI-X without KVM: the capability, table and PBA as the guest sees them
 * through the address spaces, and delivery through the bus's msi_hook.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kickvm/memory.h"
#include "kickvm/pci.h"
#include "pci_world.h"

#define NVEC        4
#define BAR_ADDR    0xc0000000ull
#define BAR2_ADDR   0xc0100000ull
#define TABLE       BAR_ADDR
#define PBA         (BAR_ADDR + 0x800)

struct fx {
	struct pci_world pci;
	struct msi_log msis;
	struct pci_device d;
	struct mem_region *bar, *bar2, *regs;
	unsigned regs_reads;
	uint8_t cap;
};

static uint64_t regs_read(void *opaque, uint64_t offset, unsigned size)
{
	struct fx *f = opaque;

	(void)size;
	f->regs_reads++;
	return 0x1000 + offset;
}

static void regs_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	(void)opaque; (void)offset; (void)data; (void)size;
}

static const struct mr_ops regs_ops = { .read = regs_read, .write = regs_write };

static void cfg_write(struct fx *f, unsigned off, uint32_t v, unsigned len)
{
	pci_bus_config_write(f->pci.bus, 0, f->d.devfn, off, v, len);
}

static uint32_t cfg_read(struct fx *f, unsigned off, unsigned len)
{
	return pci_bus_config_read(f->pci.bus, 0, f->d.devfn, off, len);
}

static uint64_t rd(struct fx *f, uint64_t addr, unsigned len)
{
	uint64_t v = 0;

	address_space_read(f->pci.as_mem, addr, &v, len);
	return v;
}

static void wr(struct fx *f, uint64_t addr, uint64_t v, unsigned len)
{
	address_space_write(f->pci.as_mem, addr, v, len);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	msi_log_init(&f->msis);
	assert_int_equal(pci_world_create(&f->pci, msi_log_hook, &f->msis), 0);

	pci_device_init(&f->d, "msixdev", 0x1234, 0x1, 0xff0000, 0, 0, 0, NULL, f);
	f->bar = mr_new_container("msix-bar", 0x1000);
	f->bar2 = mr_new_container("pba-bar", 0x1000);
	/* Device registers under the table: the overlay must win only where
	 * the table is. */
	f->regs = mr_new_io("regs", 0x1000, &regs_ops, f);
	assert_int_equal(mr_add_subregion(f->bar, 0, f->regs, 0), 0);
	assert_int_equal(pci_register_bar(&f->d, 0, PCI_BAR_MEM32, f->bar), 0);
	assert_int_equal(pci_register_bar(&f->d, 2, PCI_BAR_MEM32, f->bar2), 0);
	assert_int_equal(msix_init(&f->d, NVEC, 0, 0, 0, 0x800), 0);
	assert_int_equal(pci_bus_add_device(f->pci.bus, &f->d, -1), 0);
	f->cap = pci_find_capability(&f->d, 0x11);
	assert_int_equal(f->cap, 0x40);
	cfg_write(f, 0x10, (uint32_t)BAR_ADDR, 4);
	cfg_write(f, 0x18, (uint32_t)BAR2_ADDR, 4);
	cfg_write(f, 0x04, 0x6, 2);   /* memory decode + bus master */
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	pci_bus_remove_device(f->pci.bus, &f->d);
	msix_uninit(&f->d);
	mr_del_subregion(f->bar, f->regs);
	mr_free(f->regs);
	mr_free(f->bar);
	mr_free(f->bar2);
	pci_world_destroy(&f->pci);
	msi_log_cleanup(&f->msis);
	free(f);
	return 0;
}

static void program(struct fx *f, unsigned v, uint64_t addr, uint32_t data, bool masked)
{
	wr(f, TABLE + v * 16, (uint32_t)addr, 4);
	wr(f, TABLE + v * 16 + 4, addr >> 32, 4);
	wr(f, TABLE + v * 16 + 8, data, 4);
	wr(f, TABLE + v * 16 + 12, masked, 4);
}

static void enable(struct fx *f, bool on, bool fmask)
{
	cfg_write(f, f->cap + 2, (on ? 0x8000 : 0) | (fmask ? 0x4000 : 0), 2);
}

static void test_capability(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfg_read(f, f->cap, 1), 0x11);
	assert_int_equal(cfg_read(f, f->cap + 2, 2), NVEC - 1);
	assert_int_equal(cfg_read(f, f->cap + 4, 4), 0x000 | 0);
	assert_int_equal(cfg_read(f, f->cap + 8, 4), 0x800 | 0);
	/* Only enable and function mask are writable. */
	cfg_write(f, f->cap + 2, 0xffff, 2);
	assert_int_equal(cfg_read(f, f->cap + 2, 2), 0xc000 | (NVEC - 1));
	assert_true(msix_enabled(&f->d));
	cfg_write(f, f->cap + 4, 0xffffffff, 4);
	assert_int_equal(cfg_read(f, f->cap + 4, 4), 0);
	cfg_write(f, f->cap + 3, 0x00, 1);
	assert_false(msix_enabled(&f->d));

	/* The rest of the BAR stays the device's. */
	f->regs_reads = 0;
	assert_int_equal(rd(f, BAR_ADDR + 0x100, 4), 0x1100);
	assert_int_equal(f->regs_reads, 1);
	rd(f, TABLE, 4);
	rd(f, PBA, 8);
	assert_int_equal(f->regs_reads, 1);
	assert_int_equal(rd(f, PBA + 8, 4), 0x1808);

	/* Bad placements. */
	struct pci_device d2;
	struct mem_region *io = mr_new_io("notcontainer", 0x1000, &regs_ops, f);

	pci_device_init(&d2, "d2", 1, 2, 0, 0, 0, 0, NULL, NULL);
	assert_int_equal(msix_init(&d2, 4, 0, 0, 0, 0x800), -EINVAL);  /* no BAR */
	pci_register_bar(&d2, 0, PCI_BAR_MEM32, io);
	assert_int_equal(msix_init(&d2, 4, 0, 0, 0, 0x800), -EINVAL);  /* not a container */
	assert_int_equal(msix_init(&f->d, 4, 0, 0, 0, 0x800), -EINVAL); /* twice */
	assert_int_equal(msix_init(&d2, 0, 0, 0, 0, 0x800), -EINVAL);
	mr_free(io);
	struct pci_device d3;
	struct mem_region *c = mr_new_container("small", 0x100);

	pci_device_init(&d3, "d3", 1, 2, 0, 0, 0, 0, NULL, NULL);
	pci_register_bar(&d3, 0, PCI_BAR_MEM32, c);
	assert_int_equal(msix_init(&d3, 17, 0, 0, 0, 0xf0), -EINVAL);  /* table too big */
	assert_int_equal(msix_init(&d3, 4, 0, 0, 0, 0x20), -EINVAL);   /* overlap */
	assert_int_equal(msix_init(&d3, 4, 0, 4, 0, 0x80), -EINVAL);   /* misaligned */
	assert_int_equal(msix_init(&d3, 4, 0, 0, 0, 0x40), 0);
	msix_uninit(&d3);
	assert_null(d3.msix);
	mr_free(c);
}

static void test_table_access(void **state)
{
	struct fx *f = *state;

	/* Power-on: every vector masked, messages zero. */
	for (unsigned v = 0; v < NVEC; v++) {
		assert_int_equal(rd(f, TABLE + v * 16 + 12, 4), 1);
		assert_true(msix_masked(&f->d, v));
	}
	program(f, 1, 0xfee01003, 0x4041, true);
	assert_int_equal(rd(f, TABLE + 16, 4), 0xfee01000);   /* dword aligned */
	assert_int_equal(rd(f, TABLE + 24, 4), 0x4041);
	/* 8-byte accesses: address as one qword, data + control as another. */
	wr(f, TABLE + 32, 0x00000001fee02000ull, 8);
	wr(f, TABLE + 40, 0xfffffffe00005051ull, 8);
	assert_true(rd(f, TABLE + 32, 8) == 0x00000001fee02000ull);
	/* Reserved control bits stay 0; the mask bit took the 0. */
	assert_true(rd(f, TABLE + 40, 8) == 0x00005051ull);
	assert_int_equal(rd(f, TABLE + 36, 4), 1);
	/* Only dword and qword accesses. */
	uint64_t v;

	assert_int_equal(address_space_read(f->pci.as_mem, TABLE + 24, &v, 2), AS_INVALID);
	assert_int_equal(address_space_write(f->pci.as_mem, TABLE + 24, 0, 1), AS_INVALID);
	assert_int_equal(rd(f, TABLE + 24, 4), 0x4041);
	assert_true(rd(f, TABLE + 28, 8) == UINT64_MAX);       /* misaligned qword */
	/* Out-of-range vectors are ignored. */
	msix_notify(&f->d, NVEC);
	assert_false(msix_pending(&f->d, NVEC));
	assert_true(msix_masked(&f->d, NVEC));
}

static void test_masked_pending_unmask(void **state)
{
	struct fx *f = *state;

	program(f, 0, 0xfee00000, 0x31, true);
	enable(f, true, false);
	msix_notify(&f->d, 0);
	msix_notify(&f->d, 0);
	assert_int_equal(f->msis.n, 0);
	assert_true(msix_pending(&f->d, 0));
	assert_int_equal(msix_delivered(&f->d, 0), 0);
	assert_int_equal(rd(f, PBA, 4), 1);
	assert_true(rd(f, PBA, 8) == 1);
	/* Unmask: the pending one is delivered once and the bit clears. */
	wr(f, TABLE + 12, 0, 4);
	assert_int_equal(f->msis.n, 1);
	assert_true(f->msis.msgs[0].addr == 0xfee00000 && f->msis.msgs[0].data == 0x31);
	assert_false(msix_pending(&f->d, 0));
	assert_int_equal(rd(f, PBA, 4), 0);
	assert_int_equal(msix_delivered(&f->d, 0), 1);
	/* Unmasked: straight through, with the current message. */
	wr(f, TABLE + 8, 0x32, 4);
	msix_notify(&f->d, 0);
	assert_int_equal(f->msis.n, 2);
	assert_int_equal(f->msis.msgs[1].data, 0x32);
	assert_int_equal(msix_delivered(&f->d, 0), 2);
	/* Unmasking without anything pending sends nothing. */
	wr(f, TABLE + 12, 1, 4);
	wr(f, TABLE + 12, 0, 4);
	assert_int_equal(f->msis.n, 2);
	/* Vector 3 pending lives in bit 3. */
	program(f, 3, 0xfee00000, 0x77, true);
	msix_notify(&f->d, 3);
	assert_int_equal(rd(f, PBA, 4), 0x8);
}

static void test_function_mask_and_enable(void **state)
{
	struct fx *f = *state;

	program(f, 2, 0xfee00000, 0x50, false);
	/* Disabled: vectors are masked whatever the table says. */
	assert_true(msix_masked(&f->d, 2));
	msix_notify(&f->d, 2);
	assert_true(msix_pending(&f->d, 2));
	assert_int_equal(f->msis.n, 0);
	/* Enabled with the function mask: still held. */
	enable(f, true, true);
	assert_true(msix_masked(&f->d, 2));
	assert_int_equal(f->msis.n, 0);
	msix_notify(&f->d, 2);
	assert_int_equal(f->msis.n, 0);
	/* Function mask cleared: the pending interrupt goes, once. */
	enable(f, true, false);
	assert_int_equal(f->msis.n, 1);
	assert_int_equal(f->msis.msgs[0].data, 0x50);
	assert_false(msix_pending(&f->d, 2));
	msix_notify(&f->d, 2);
	assert_int_equal(f->msis.n, 2);
	/* Disabled again: pending again; enabling delivers. */
	enable(f, false, false);
	msix_notify(&f->d, 2);
	assert_int_equal(f->msis.n, 2);
	assert_true(msix_pending(&f->d, 2));
	cfg_write(f, f->cap + 3, 0x80, 1);
	assert_int_equal(f->msis.n, 3);
	assert_int_equal(msix_delivered(&f->d, 2), 3);
}

static void test_pba_read_only_and_reset(void **state)
{
	struct fx *f = *state;

	program(f, 1, 0xfee00000, 0x10, true);
	enable(f, true, false);
	msix_notify(&f->d, 1);
	assert_int_equal(rd(f, PBA, 4), 2);
	wr(f, PBA, 0, 4);
	wr(f, PBA, 0, 8);
	assert_int_equal(rd(f, PBA, 4), 2);
	assert_int_equal(rd(f, PBA + 4, 4), 0);

	program(f, 0, 0xfee00000, 0x11, false);
	msix_reset(&f->d);
	assert_false(msix_enabled(&f->d));
	assert_false(msix_pending(&f->d, 1));
	assert_int_equal(rd(f, PBA, 4), 0);
	assert_int_equal(cfg_read(f, f->cap + 2, 2), NVEC - 1);
	for (unsigned v = 0; v < NVEC; v++) {
		assert_true(msix_masked(&f->d, v));
		assert_int_equal(rd(f, TABLE + v * 16 + 12, 4), 1);
		assert_int_equal(rd(f, TABLE + v * 16 + 8, 4), 0);
	}
	/* Bus reset does the same (and turns decode off). */
	enable(f, true, false);
	program(f, 0, 0xfee00000, 0x11, false);
	pci_bus_reset(f->pci.bus);
	assert_false(msix_enabled(&f->d));
	assert_true(msix_masked(&f->d, 0));
	assert_int_equal(f->msis.n, 0);
}

/* Iothreads raising vectors while a vCPU toggles the mask: every raise
 * ends up delivered or pending, and the final unmask flushes. */
struct stress {
	struct fx *f;
	unsigned n;
};

static void *raiser(void *opaque)
{
	struct stress *s = opaque;

	for (unsigned i = 0; i < s->n; i++)
		msix_notify(&s->f->d, 0);
	return NULL;
}

static void test_concurrent_notify(void **state)
{
	struct fx *f = *state;
	struct stress s = { f, 20000 };
	pthread_t t[2];

	program(f, 0, 0xfee00000, 0x21, false);
	enable(f, true, false);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, raiser, &s);
	for (int i = 0; i < 2000; i++)
		wr(f, TABLE + 12, i & 1, 4);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	wr(f, TABLE + 12, 1, 4);
	msix_notify(&f->d, 0);
	wr(f, TABLE + 12, 0, 4);
	assert_false(msix_pending(&f->d, 0));
	assert_int_equal(msix_delivered(&f->d, 0), f->msis.n);
	assert_true(f->msis.n >= 1 && f->msis.n <= 2 * s.n + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_capability),
		T(test_table_access),
		T(test_masked_pending_unmask),
		T(test_function_mask_and_enable),
		T(test_pba_read_only_and_reset),
		T(test_concurrent_notify),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
