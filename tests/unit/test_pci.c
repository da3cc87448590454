/*
 * The PCI host bridge and config space, without KVM: a dummy function with
 * a 64-bit memory BAR, a 32-bit one and an I/O BAR, driven the way a guest
 * does it, through the ECAM window and through 0xCF8/0xCFC in the address
 * spaces.
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

#include "kickvm/event.h"
#include "kickvm/memory.h"
#include "kickvm/pci.h"
#include "gate.h"
#include "pci_world.h"

#define CMD   0x04
#define STAT  0x06
#define BAR0  0x10
#define CAPP  0x34

/* ---- a dummy function ------------------------------------------------------------ */

struct bar_rec {
	unsigned reads, writes;
	uint64_t last_offset, last_data;
};

struct dummy {
	struct pci_device pci;
	struct mem_region *bar64, *bar32, *bario;
	struct bar_rec rec64, rec32, recio;
	unsigned bm_calls, cfg_writes, resets;
	bool bm_last;
	uint32_t cfg_last_offset, cfg_last_value;
	unsigned cfg_last_len;
};

static uint64_t rec_read(void *opaque, uint64_t offset, unsigned size)
{
	struct bar_rec *r = opaque;

	(void)size;
	r->reads++;
	r->last_offset = offset;
	return 0x5a00 + offset;
}

static void rec_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct bar_rec *r = opaque;

	(void)size;
	r->writes++;
	r->last_offset = offset;
	r->last_data = data;
}

static const struct mr_ops rec_ops = { .read = rec_read, .write = rec_write };

static void d_config_write(struct pci_device *d, uint32_t offset, uint32_t value, unsigned len)
{
	struct dummy *dm = d->opaque;

	dm->cfg_writes++;
	dm->cfg_last_offset = offset;
	dm->cfg_last_value = value;
	dm->cfg_last_len = len;
}

static void d_bus_master(struct pci_device *d, bool enabled)
{
	struct dummy *dm = d->opaque;

	dm->bm_calls++;
	dm->bm_last = enabled;
}

static void d_reset(struct pci_device *d)
{
	struct dummy *dm = d->opaque;

	dm->resets++;
}

static const struct pci_device_ops dummy_ops = {
	.config_write = d_config_write, .bus_master = d_bus_master, .reset = d_reset,
};

/* ---- fixture --------------------------------------------------------------------------- */

struct fx {
	struct pci_world pci;
	struct dummy dm;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct dummy *dm = &f->dm;

	assert_non_null(f);
	assert_int_equal(pci_world_create(&f->pci, NULL, NULL), 0);

	pci_device_init(&dm->pci, "dummy", 0x1234, 0x5678, 0x028000, 3, 0x1af4, 0x42,
			&dummy_ops, dm);
	dm->bar64 = mr_new_io("dummy-bar64", 0x4000, &rec_ops, &dm->rec64);
	dm->bar32 = mr_new_io("dummy-bar32", 0x1000, &rec_ops, &dm->rec32);
	dm->bario = mr_new_io("dummy-bario", 0x20, &rec_ops, &dm->recio);
	assert_int_equal(pci_register_bar(&dm->pci, 0, PCI_BAR_MEM64 | PCI_BAR_PREFETCH,
					  dm->bar64), 0);
	assert_int_equal(pci_register_bar(&dm->pci, 2, PCI_BAR_MEM32, dm->bar32), 0);
	assert_int_equal(pci_register_bar(&dm->pci, 3, PCI_BAR_IO, dm->bario), 0);
	assert_int_equal(pci_bus_add_device(f->pci.bus, &dm->pci, -1), 0);
	assert_int_equal(dm->pci.devfn, 1 << 3);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->dm.pci.bus)
		pci_bus_remove_device(f->pci.bus, &f->dm.pci);
	mr_free(f->dm.bar64);
	mr_free(f->dm.bar32);
	mr_free(f->dm.bario);
	pci_world_destroy(&f->pci);
	free(f);
	return 0;
}

static uint64_t ecam_rd(struct fx *f, unsigned bus, unsigned devfn, unsigned off, unsigned len)
{
	uint64_t v = 0;

	address_space_read(f->pci.as_mem, PCI_ECAM_BASE + (bus << 20) + (devfn << 12) + off, &v, len);
	return v;
}

static void ecam_wr(struct fx *f, unsigned devfn, unsigned off, uint64_t v, unsigned len)
{
	address_space_write(f->pci.as_mem, PCI_ECAM_BASE + (devfn << 12) + off, v, len);
}

static void cf8_select(struct fx *f, unsigned bus, unsigned devfn, unsigned off)
{
	address_space_write(f->pci.as_io, PCI_CONFIG_ADDR_PORT,
			    0x80000000u | bus << 16 | devfn << 8 | (off & 0xfc), 4);
}

static uint64_t cf8_rd(struct fx *f, unsigned bus, unsigned devfn, unsigned off, unsigned len)
{
	uint64_t v = 0;

	cf8_select(f, bus, devfn, off);
	address_space_read(f->pci.as_io, PCI_CONFIG_DATA_PORT + (off & 3), &v, len);
	return v;
}

static void cf8_wr(struct fx *f, unsigned devfn, unsigned off, uint64_t v, unsigned len)
{
	cf8_select(f, 0, devfn, off);
	address_space_write(f->pci.as_io, PCI_CONFIG_DATA_PORT + (off & 3), v, len);
}

#define DEV (1 << 3)

/* ---- tests ------------------------------------------------------------------------------- */

static void test_ids_and_absent_functions(void **state)
{
	struct fx *f = *state;

	/* The host bridge, both ways. */
	assert_int_equal(ecam_rd(f, 0, 0, 0, 4), 0x29c08086);
	assert_int_equal(cf8_rd(f, 0, 0, 0, 4), 0x29c08086);
	assert_int_equal(ecam_rd(f, 0, 0, 0x08, 4) >> 8, 0x060000);
	assert_int_equal(cf8_rd(f, 0, 0, 0x0a, 2), 0x0600);
	/* The dummy. */
	assert_int_equal(ecam_rd(f, 0, DEV, 0, 2), 0x1234);
	assert_int_equal(ecam_rd(f, 0, DEV, 2, 2), 0x5678);
	assert_int_equal(cf8_rd(f, 0, DEV, 2, 2), 0x5678);
	assert_int_equal(cf8_rd(f, 0, DEV, 3, 1), 0x56);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x08, 1), 3);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x2c, 4), 0x00421af4);
	/* 8 bytes through ECAM come as two dwords. */
	assert_true(ecam_rd(f, 0, DEV, 0, 8) == (0x56781234ull | (uint64_t)ecam_rd(f, 0, DEV, 4, 4) << 32));
	/* Absent: other slots, other functions, other buses. */
	assert_int_equal(ecam_rd(f, 0, 2 << 3, 0, 4), 0xffffffff);
	assert_int_equal(ecam_rd(f, 0, DEV | 1, 0, 2), 0xffff);
	assert_int_equal(ecam_rd(f, 1, DEV, 0, 1), 0xff);
	assert_int_equal(cf8_rd(f, 0, 5 << 3, 0, 4), 0xffffffff);
	assert_int_equal(cf8_rd(f, 3, 0, 0, 4), 0xffffffff);
	/* Writes to absent functions go nowhere and hurt nobody. */
	ecam_wr(f, 2 << 3, CMD, 0xffff, 2);
	/* Misaligned ECAM accesses are refused. */
	assert_int_equal(ecam_rd(f, 0, DEV, 2, 4), 0xffffffff);
	/* CF8 reads back; with the enable bit clear the data port is dead. */
	address_space_write(f->pci.as_io, PCI_CONFIG_ADDR_PORT, 0x00000800, 4);
	{
		uint64_t v;

		address_space_read(f->pci.as_io, PCI_CONFIG_ADDR_PORT, &v, 4);
		assert_int_equal(v, 0x800);
		address_space_read(f->pci.as_io, PCI_CONFIG_DATA_PORT, &v, 4);
		assert_int_equal(v, 0xffffffff);
	}
	/* Direct calls agree. */
	assert_int_equal(pci_bus_config_read(f->pci.bus, 0, DEV, 0, 4), 0x56781234);
	assert_int_equal(pci_bus_config_read(f->pci.bus, 0, DEV, 4094, 4), 0xffffffff);
}

static void test_bar_sizing(void **state)
{
	struct fx *f = *state;

	/* Before sizing: type bits only. */
	assert_int_equal(ecam_rd(f, 0, DEV, BAR0, 4), 0xc);
	assert_int_equal(ecam_rd(f, 0, DEV, BAR0 + 8, 4), 0x0);
	assert_int_equal(ecam_rd(f, 0, DEV, BAR0 + 12, 4), 0x1);

	ecam_wr(f, DEV, BAR0, 0xffffffff, 4);
	assert_int_equal(ecam_rd(f, 0, DEV, BAR0, 4), 0xffffc00c);
	ecam_wr(f, DEV, BAR0 + 4, 0xffffffff, 4);
	assert_int_equal(ecam_rd(f, 0, DEV, BAR0 + 4, 4), 0xffffffff);
	cf8_wr(f, DEV, BAR0 + 8, 0xffffffff, 4);
	assert_int_equal(cf8_rd(f, 0, DEV, BAR0 + 8, 4), 0xfffff000);
	cf8_wr(f, DEV, BAR0 + 12, 0xffffffff, 4);
	assert_int_equal(cf8_rd(f, 0, DEV, BAR0 + 12, 4), 0xffffffe1);
	/* Unimplemented BARs and the ROM read 0 after sizing. */
	ecam_wr(f, DEV, BAR0 + 16, 0xffffffff, 4);
	assert_int_equal(ecam_rd(f, 0, DEV, BAR0 + 16, 4), 0);
	ecam_wr(f, DEV, 0x30, 0xffffffff, 4);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x30, 4), 0);
	/* Sizing with decode on must not map anything at the top. */
	ecam_wr(f, DEV, CMD, 0x3, 2);
	assert_true(f->dm.pci.bars[0].addr == PCI_BAR_UNMAPPED);
	assert_true(f->dm.pci.bars[2].addr == PCI_BAR_UNMAPPED);
	assert_true(f->dm.pci.bars[3].addr == PCI_BAR_UNMAPPED);

	/* Registering bad BARs. */
	struct pci_device tmp;
	struct mem_region *odd = mr_new_io("odd", 0x3000, &rec_ops, NULL);

	pci_device_init(&tmp, "tmp", 1, 2, 0, 0, 0, 0, NULL, NULL);
	assert_int_equal(pci_register_bar(&tmp, 0, PCI_BAR_MEM32, odd), -EINVAL);
	assert_int_equal(pci_register_bar(&tmp, 5, PCI_BAR_MEM64, f->dm.bar32), -EINVAL);
	assert_int_equal(pci_register_bar(&tmp, 6, PCI_BAR_MEM32, f->dm.bar32), -EINVAL);
	assert_int_equal(pci_register_bar(&tmp, 0, PCI_BAR_IO | PCI_BAR_PREFETCH, f->dm.bario), -EINVAL);
	mr_free(odd);
}

static void test_bar_mapping_and_moves(void **state)
{
	struct fx *f = *state;
	struct dummy *dm = &f->dm;
	struct event_notifier e;
	struct ioeventfd_list l;
	uint64_t v;

	assert_int_equal(event_notifier_init(&e, false), 0);
	assert_int_equal(mr_add_eventfd(dm->bar64, 0x100, 4, false, 0, &e), 0);

	ecam_wr(f, DEV, BAR0, 0xc0000000, 4);
	ecam_wr(f, DEV, BAR0 + 4, 0, 4);
	ecam_wr(f, DEV, BAR0 + 8, 0xc0010000, 4);
	cf8_wr(f, DEV, BAR0 + 12, 0xc000, 4);
	/* Placed but decode off: nothing there yet. */
	assert_int_equal(address_space_read(f->pci.as_mem, 0xc0000010, &v, 4), AS_UNASSIGNED);
	assert_int_equal(address_space_read(f->pci.as_io, 0xc004, &v, 1), AS_UNASSIGNED);
	assert_int_equal(ioeventfds_in(f->pci.as_mem).n, 0);

	ecam_wr(f, DEV, CMD, 0x3, 2);
	assert_true(pci_memory_enabled(&dm->pci));
	assert_int_equal(address_space_read(f->pci.as_mem, 0xc0000010, &v, 4), AS_OK);
	assert_int_equal(v, 0x5a10);
	assert_int_equal(dm->rec64.reads, 1);
	assert_int_equal(address_space_write(f->pci.as_mem, 0xc0010020, 7, 4), AS_OK);
	assert_int_equal(dm->rec32.last_offset, 0x20);
	assert_int_equal(address_space_read(f->pci.as_io, 0xc004, &v, 1), AS_OK);
	assert_int_equal(dm->recio.last_offset, 4);
	l = ioeventfds_in(f->pci.as_mem);
	assert_int_equal(l.n, 1);
	assert_true(l.addr[0] == 0xc0000100);
	assert_int_equal(address_space_write(f->pci.as_mem, 0xc0000100, 1, 4), AS_IOEVENTFD);
	assert_int_equal(event_notifier_test_and_clear(&e), 1);

	/* Move the 64-bit BAR above 4 GiB: region and ioeventfd go along. */
	ecam_wr(f, DEV, BAR0 + 4, 0x1, 4);
	assert_true(dm->pci.bars[0].addr == 0x1c0000000ull);
	l = ioeventfds_in(f->pci.as_mem);
	assert_int_equal(l.n, 1);
	assert_true(l.addr[0] == 0x1c0000100ull);
	assert_int_equal(address_space_read(f->pci.as_mem, 0xc0000010, &v, 4), AS_UNASSIGNED);
	assert_int_equal(address_space_read(f->pci.as_mem, 0x1c0000010ull, &v, 4), AS_OK);
	assert_int_equal(address_space_write(f->pci.as_mem, 0x1c0000100ull, 1, 4), AS_IOEVENTFD);
	assert_int_equal(event_notifier_test_and_clear(&e), 1);
	/* One 8-byte write moves the whole 64-bit BAR in one transaction. */
	ecam_wr(f, DEV, BAR0, 0xd0000000ull, 8);
	assert_true(dm->pci.bars[0].addr == 0xd0000000ull);
	assert_true(ioeventfds_in(f->pci.as_mem).addr[0] == 0xd0000100ull);
	/* The I/O BAR moves too. */
	cf8_wr(f, DEV, BAR0 + 12, 0xd000, 4);
	assert_int_equal(address_space_read(f->pci.as_io, 0xc004, &v, 1), AS_UNASSIGNED);
	assert_int_equal(address_space_read(f->pci.as_io, 0xd008, &v, 1), AS_OK);
	assert_int_equal(dm->recio.last_offset, 8);

	/* Memory decode off unmaps the memory BARs only. */
	ecam_wr(f, DEV, CMD, 0x1, 2);
	assert_int_equal(address_space_read(f->pci.as_mem, 0xd0000010, &v, 4), AS_UNASSIGNED);
	assert_int_equal(address_space_read(f->pci.as_mem, 0xc0010000, &v, 4), AS_UNASSIGNED);
	assert_int_equal(ioeventfds_in(f->pci.as_mem).n, 0);
	assert_int_equal(address_space_read(f->pci.as_io, 0xd008, &v, 1), AS_OK);
	/* And I/O decode off the I/O BAR. */
	ecam_wr(f, DEV, CMD, 0x0, 2);
	assert_int_equal(address_space_read(f->pci.as_io, 0xd008, &v, 1), AS_UNASSIGNED);
	/* Back on: back where the registers say. */
	ecam_wr(f, DEV, CMD, 0x2, 1);
	assert_true(ioeventfds_in(f->pci.as_mem).addr[0] == 0xd0000100ull);
	/* An address of 0 means unassigned. */
	ecam_wr(f, DEV, BAR0 + 8, 0, 4);
	assert_true(dm->pci.bars[2].addr == PCI_BAR_UNMAPPED);

	ecam_wr(f, DEV, CMD, 0x0, 2);
	mr_del_eventfd(dm->bar64, 0x100, 4, false, 0, &e);
	event_notifier_cleanup(&e);
}

static void test_readonly_and_w1c(void **state)
{
	struct fx *f = *state;
	struct dummy *dm = &f->dm;

	ecam_wr(f, DEV, 0, 0xffffffff, 4);
	assert_int_equal(ecam_rd(f, 0, DEV, 0, 4), 0x56781234);
	ecam_wr(f, DEV, 0x08, 0xffffffff, 4);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x08, 4), 0x02800003);
	ecam_wr(f, DEV, 0x0e, 0xff, 1);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x0e, 1), 0);
	ecam_wr(f, DEV, 0x2c, 0xffffffff, 4);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x2c, 4), 0x00421af4);
	ecam_wr(f, DEV, CAPP, 0xff, 1);
	assert_int_equal(ecam_rd(f, 0, DEV, CAPP, 1), 0);
	/* Command: only the bits a function implements. */
	ecam_wr(f, DEV, CMD, 0xfff8, 2);
	assert_int_equal(ecam_rd(f, 0, DEV, CMD, 2), 0x0540);
	ecam_wr(f, DEV, CMD, 0, 2);
	/* Cache line, latency timer, interrupt line are writable; pin is not. */
	ecam_wr(f, DEV, 0x0c, 0xa5b6, 2);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x0c, 2), 0xa5b6);
	ecam_wr(f, DEV, 0x3c, 0xffff, 2);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x3c, 2), 0x00ff);
	/* Status: error bits are write-1-to-clear, the rest read-only. */
	pci_set_word(&dm->pci.config[STAT], 0xf900 | 0x0010);
	ecam_wr(f, DEV, STAT, 0x0100, 2);
	assert_int_equal(ecam_rd(f, 0, DEV, STAT, 2), 0xf810);
	ecam_wr(f, DEV, STAT, 0x0000, 2);
	assert_int_equal(ecam_rd(f, 0, DEV, STAT, 2), 0xf810);
	/* A dword write at the command register clears status bits too. */
	ecam_wr(f, DEV, CMD, 0xc0000000, 4);
	assert_int_equal(ecam_rd(f, 0, DEV, STAT, 2), 0x3810);
	cf8_wr(f, DEV, STAT, 0xffff, 2);
	assert_int_equal(cf8_rd(f, 0, DEV, STAT, 2), 0x0010);
	/* The hook saw the write as the guest made it. */
	assert_int_equal(dm->cfg_last_offset, STAT);
	assert_int_equal(dm->cfg_last_value, 0xffff);
	assert_int_equal(dm->cfg_last_len, 2);
	/* Extended config space exists and is empty. */
	assert_int_equal(ecam_rd(f, 0, DEV, 0x100, 4), 0);
}

static void test_capabilities(void **state)
{
	struct fx *f = *state;
	struct pci_device d;
	int a, b, c;
	uint8_t pos, ids[3], n = 0;

	pci_device_init(&d, "caps", 0x1111, 0x2222, 0, 0, 0, 0, NULL, NULL);
	assert_int_equal(pci_get_word(&d.config[STAT]) & 0x10, 0);
	a = pci_add_capability(&d, 0x09, 15);
	b = pci_add_capability(&d, 0x11, 12);
	c = pci_add_capability(&d, 0x05, 10);
	assert_int_equal(a, 0x40);
	assert_int_equal(b, 0x50);   /* dword aligned after 15 bytes */
	assert_int_equal(c, 0x5c);
	assert_int_equal(pci_find_capability(&d, 0x11), 0x50);
	assert_int_equal(pci_find_capability(&d, 0x10), 0);
	d.config[c + 2] = 0xab;
	assert_int_equal(pci_bus_add_device(f->pci.bus, &d, 7), 0);

	assert_int_equal(ecam_rd(f, 0, 7 << 3, STAT, 2) & 0x10, 0x10);
	pos = (uint8_t)ecam_rd(f, 0, 7 << 3, CAPP, 1);
	while (pos && n < 3) {
		assert_true(pos >= 0x40 && !(pos & 3));
		ids[n++] = (uint8_t)cf8_rd(f, 0, 7 << 3, pos, 1);
		pos = (uint8_t)cf8_rd(f, 0, 7 << 3, pos + 1, 1);
	}
	assert_int_equal(n, 3);
	assert_int_equal(pos, 0);
	assert_int_equal(ids[0], 0x09);
	assert_int_equal(ids[1], 0x11);
	assert_int_equal(ids[2], 0x05);
	/* Capability headers and (unless the owner says) bodies are read-only. */
	ecam_wr(f, 7 << 3, c, 0xffffffff, 4);
	assert_int_equal(ecam_rd(f, 0, 7 << 3, c, 4), 0x00ab0005);
	pci_bus_remove_device(f->pci.bus, &d);
	assert_int_equal(ecam_rd(f, 0, 7 << 3, 0, 4), 0xffffffff);

	/* Full. */
	while ((a = pci_add_capability(&d, 0x09, 64)) > 0)
		;
	assert_int_equal(a, -ENOSPC);
}

static void test_bus_master_and_reset(void **state)
{
	struct fx *f = *state;
	struct dummy *dm = &f->dm;

	ecam_wr(f, DEV, CMD, 0x4, 2);
	assert_int_equal(dm->bm_calls, 1);
	assert_true(dm->bm_last);
	assert_true(pci_bus_master_enabled(&dm->pci));
	ecam_wr(f, DEV, CMD, 0x6, 2);       /* master unchanged: no call */
	assert_int_equal(dm->bm_calls, 1);
	cf8_wr(f, DEV, CMD, 0x2, 2);
	assert_int_equal(dm->bm_calls, 2);
	assert_false(dm->bm_last);
	cf8_wr(f, DEV, CMD, 0x4, 1);
	assert_int_equal(dm->bm_calls, 3);
	assert_true(dm->bm_last);

	/* Map something, then reset the bus: all back to power-on. */
	ecam_wr(f, DEV, BAR0 + 8, 0xc0020000, 4);
	ecam_wr(f, DEV, 0x3c, 0x0b, 1);
	ecam_wr(f, DEV, CMD, 0x6, 2);
	assert_true(dm->pci.bars[2].addr == 0xc0020000);
	address_space_write(f->pci.as_io, PCI_CONFIG_ADDR_PORT, 0x80000800, 4);
	pci_bus_reset(f->pci.bus);
	assert_int_equal(dm->resets, 1);
	assert_int_equal(dm->bm_calls, 4);
	assert_false(dm->bm_last);
	assert_int_equal(ecam_rd(f, 0, DEV, CMD, 2), 0);
	assert_int_equal(ecam_rd(f, 0, DEV, BAR0 + 8, 4), 0);
	assert_int_equal(ecam_rd(f, 0, DEV, BAR0, 4), 0xc);
	assert_int_equal(ecam_rd(f, 0, DEV, 0x3c, 1), 0);
	assert_true(dm->pci.bars[2].addr == PCI_BAR_UNMAPPED);
	{
		uint64_t v;

		address_space_read(f->pci.as_io, PCI_CONFIG_ADDR_PORT, &v, 4);
		assert_int_equal(v, 0);
		assert_int_equal(address_space_read(f->pci.as_mem, 0xc0020000, &v, 4), AS_UNASSIGNED);
	}
	/* The ids survive. */
	assert_int_equal(ecam_rd(f, 0, DEV, 0, 4), 0x56781234);
}

static void test_slots(void **state)
{
	struct fx *f = *state;
	static struct pci_device many[32];
	int added = 0, r;

	assert_int_equal(pci_bus_add_device(f->pci.bus, &many[0], 1), -EBUSY);
	assert_int_equal(pci_bus_add_device(f->pci.bus, &f->dm.pci, 5), -EINVAL);  /* plugged */
	assert_int_equal(pci_bus_add_device(f->pci.bus, &many[0], 32), -EINVAL);
	for (int i = 0; i < 32; i++) {
		pci_device_init(&many[i], "m", 0x1000, (uint16_t)i, 0, 0, 0, 0, NULL, NULL);
		r = pci_bus_add_device(f->pci.bus, &many[i], -1);
		if (r < 0) {
			assert_int_equal(r, -ENOSPC);
			break;
		}
		assert_int_equal(many[i].devfn, (i + 2) << 3);
		added++;
	}
	assert_int_equal(added, 30);   /* 32 slots minus host bridge and dummy */
	pci_bus_remove_device(f->pci.bus, &many[3]);
	pci_device_init(&many[31], "m", 0x1000, 99, 0, 0, 0, 0, NULL, NULL);
	assert_int_equal(pci_bus_add_device(f->pci.bus, &many[31], -1), 0);
	assert_int_equal(many[31].devfn, 5 << 3);
	assert_int_equal(ecam_rd(f, 0, 5 << 3, 2, 2), 99);
	for (int i = 0; i < 32; i++)
		if (many[i].bus)
			pci_bus_remove_device(f->pci.bus, &many[i]);
}

/* ---- a hook that blocks -------------------------------------------------------------- */

/* A function whose config_write hook waits until the test lets it go, as
 * virtio's does while it drains requests or stops its notifiers. */
struct blocker {
	struct pci_device pci;
	struct gate gate;
};

static void blocker_config_write(struct pci_device *d, uint32_t offset, uint32_t value,
				 unsigned len)
{
	struct blocker *b = d->opaque;

	(void)offset; (void)value; (void)len;
	gate_pass(&b->gate);
}

static const struct pci_device_ops blocker_ops = { .config_write = blocker_config_write };

struct bystander {
	struct fx *f;
	struct blocker *b;
	bool done;                  /* under b->gate's lock */
	uint64_t dummy_id, bridge_id;
};

static void *blocked_writer(void *opaque)
{
	struct bystander *by = opaque;

	ecam_wr(by->f, by->b->pci.devfn, 0x40, 1, 4);
	return NULL;
}

/* Another vCPU: config accesses to other functions, by ECAM and CF8. */
static void *bystander_vcpu(void *opaque)
{
	struct bystander *by = opaque;

	by->dummy_id = ecam_rd(by->f, 0, DEV, 0, 4);
	by->bridge_id = cf8_rd(by->f, 0, 0, 0, 4);
	cf8_wr(by->f, DEV, CMD, 0x4, 2);      /* and a write, with its bus_master hook */
	gate_set(&by->b->gate, &by->done);
	return NULL;
}

/*
 * While one function's config_write hook blocks, config accesses to the
 * other functions complete: the hook holds its own function, not the bus.
 * Synchronised, not timed: the bystander starts once the hook is known to
 * be inside, and must be done while it is still there (gate.h).
 */
static void test_blocking_hook_does_not_hold_the_bus(void **state)
{
	struct fx *f = *state;
	struct blocker b;
	struct bystander by = { .f = f, .b = &b };

	pci_device_init(&b.pci, "blocker", 0x1234, 0x9999, 0xff0000, 0, 0, 0, &blocker_ops, &b);
	gate_init(&b.gate);
	assert_int_equal(pci_bus_add_device(f->pci.bus, &b.pci, -1), 0);
	assert_true(gate_bystander_finishes(&b.gate, blocked_writer, bystander_vcpu, &by,
					    &by.done));
	assert_int_equal(by.dummy_id, 0x56781234);
	assert_int_equal(by.bridge_id, 0x29c08086);
	assert_int_equal(f->dm.bm_calls, 1);
	assert_true(f->dm.bm_last);
	pci_bus_remove_device(f->pci.bus, &b.pci);
	gate_destroy(&b.gate);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_ids_and_absent_functions),
		T(test_bar_sizing),
		T(test_bar_mapping_and_moves),
		T(test_readonly_and_w1c),
		T(test_capabilities),
		T(test_bus_master_and_reset),
		T(test_slots),
		T(test_blocking_hook_does_not_hold_the_bus),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
