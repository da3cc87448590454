/*
 * The VFIO device model over the fake backend, without KVM: config space
 * virtualization (BAR sizing and placement, masks, capabilities, ROM),
 * mapped versus trapped BAR pieces in the flat view, MSI-X and MSI with
 * masking and pending delivery, the DMA listener, reset, and the layout
 * a relocation planner hands in.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kickvm/event.h"
#include "kickvm/memory.h"
#include "kickvm/pci.h"
#include "kickvm/vfio_pci.h"
#include "pci_world.h"
#include "vfio/vfio_fake.h"
#include "vfio_fixture.h"


/* ---- config space ------------------------------------------------------------------- */

static void test_header_is_virtualized(void **state)
{
	struct fx *x = *state;

	nvme_like(x);
	x->f->config[0x06] |= 0x01;        /* a status bit the device sets later... */
	start(x);
	assert_int_equal(cfg_read(x, 0x00, 4), 0x00101b36);
	assert_int_equal(cfg_read(x, 0x0b, 1), 0x01);
	assert_int_equal(cfg_read(x, 0x0e, 1), 0x00);   /* multi-function hidden */
	assert_int_equal(cfg_read(x, 0x3d, 1), 0x00);   /* no INTx */
	x->f->config[0x07] |= 0x80;        /* ...and one it sets now: read live */
	assert_int_equal(cfg_read(x, 0x06, 2) & 0x8000, 0x8000);
	/* Command: decode and bus master reach the device and stay kickvm's. */
	cfg_write(x, 0x04, 0x0006, 2);
	assert_int_equal(pci_get_word(&x->f->config[0x04]), 0x0006);
	assert_int_equal(cfg_read(x, 0x04, 2) & 0x7, 0x6);
	assert_true(pci_bus_master_enabled(vfio_pci_device(x->v)));
	/* BAR writes never reach the device. */
	cfg_write(x, 0x10, 0x12345000, 4);
	assert_int_equal(pci_get_long(&x->f->config[0x10]), PCI_BAR_MEM64);
	/* The interrupt line is kickvm's. */
	cfg_write(x, 0x3c, 0x0b, 1);
	assert_int_equal(cfg_read(x, 0x3c, 1), 0x0b);
}

static void test_bar_sizing_and_types(void **state)
{
	struct fx *x = *state;

	nvme_like(x);
	assert_int_equal(vfio_fake_add_bar(x->f, 2, 0x10000, PCI_BAR_MEM64 | PCI_BAR_PREFETCH, true), 0);
	assert_int_equal(vfio_fake_add_bar(x->f, 4, 0x20, PCI_BAR_IO, false), 0);
	start(x);
	cfg_write(x, 0x10, 0xffffffff, 4);
	cfg_write(x, 0x14, 0xffffffff, 4);
	assert_int_equal(cfg_read(x, 0x10, 4), 0xffffc004u);
	assert_int_equal(cfg_read(x, 0x14, 4), 0xffffffffu);
	cfg_write(x, 0x18, 0xffffffff, 4);
	assert_int_equal(cfg_read(x, 0x18, 4), 0xffff000cu);
	cfg_write(x, 0x20, 0xffffffff, 4);
	assert_int_equal(cfg_read(x, 0x20, 4), 0xffffffe1u);
	/* Unimplemented BAR 5 reads 0 even after the all-ones write. */
	cfg_write(x, 0x24, 0xffffffff, 4);
	assert_int_equal(cfg_read(x, 0x24, 4), 0);
	/* An I/O BAR is trapped, forwarded to the device's region. */
	cfg_write(x, 0x20, IO_ADDR, 4);
	cfg_write(x, 0x04, 0x0001, 2);
	address_space_write(x->w.as_io, IO_ADDR + 4, 0xa5, 1);
	assert_int_equal(x->f->mem[4][4], 0xa5);
}

static void test_capabilities_pass_through(void **state)
{
	struct fx *x = *state;
	int vendor_cap;

	nvme_like(x);
	vendor_cap = vfio_fake_add_cap(x->f, 0x09, 8);
	x->f->config_wmask[vendor_cap + 4] = 0xff;
	start(x);
	/* Same list, same order, as the device has it. */
	assert_int_equal(cfg_read(x, 0x06, 2) & 0x10, 0x10);
	assert_int_equal(cfg_read(x, 0x34, 1), 0x40);
	assert_int_equal(cfg_read(x, 0x40, 1), 0x11);
	assert_int_equal(cfg_read(x, 0x41, 1), vendor_cap);
	assert_int_equal(cfg_read(x, vendor_cap, 1), 0x09);
	/* MSI-X: emulated, at the physical place with no planner. */
	assert_int_equal(cfg_read(x, 0x42, 2), 3);
	assert_int_equal(cfg_read(x, 0x44, 4), 0x2000);
	assert_int_equal(cfg_read(x, 0x48, 4), 0x3000);
	cfg_write(x, 0x42, 0x8000, 2);
	assert_int_equal(pci_get_word(&x->f->config[0x42]), 3);   /* not forwarded */
	/* A body the device owns: written through and read back live. */
	cfg_write(x, vendor_cap + 4, 0x5a, 1);
	assert_int_equal(x->f->config[vendor_cap + 4], 0x5a);
	x->f->config[vendor_cap + 5] = 0x77;
	assert_int_equal(cfg_read(x, vendor_cap + 4, 2), 0x775a);
	/* The list pointers are a snapshot: a device that changes them later
	 * does not lead the guest (or kickvm) elsewhere. */
	x->f->config[0x41] = 0xfc;
	assert_int_equal(cfg_read(x, 0x41, 1), vendor_cap);
}

static void test_rom_bar(void **state)
{
	struct fx *x = *state;

	nvme_like(x);
	assert_int_equal(vfio_fake_set_rom(x->f, 0x4000), 0);
	start(x);
	cfg_write(x, 0x30, 0xffffffff, 4);
	assert_int_equal(cfg_read(x, 0x30, 4), 0xffffc001u);
	cfg_write(x, 0x30, (uint32_t)ROM_ADDR | 1, 4);
	assert_int_equal(rd(x, ROM_ADDR, 2), 0xffff);            /* decode off */
	cfg_write(x, 0x04, 0x0002, 2);
	assert_int_equal(rd(x, ROM_ADDR, 2), 0xaa55);
	wr(x, ROM_ADDR, 0, 2);                                   /* read-only */
	assert_int_equal(x->f->mem[VFIO_PCI_ROM][0], 0x55);
	cfg_write(x, 0x30, (uint32_t)ROM_ADDR, 4);               /* enable bit off */
	assert_int_equal(rd(x, ROM_ADDR, 2), 0xffff);
}

static void test_no_rom_is_hidden(void **state)
{
	struct fx *x = *state;

	nvme_like(x);
	start(x);
	cfg_write(x, 0x30, 0xffffffff, 4);
	assert_int_equal(cfg_read(x, 0x30, 4), 0);
}

/* ---- mapped and trapped -------------------------------------------------------------- */

static void test_mapped_and_trapped_flat_view(void **state)
{
	struct fx *x = *state;
	struct seen s;
	struct vfio_pci_stats st;

	nvme_like(x);
	start(x);
	place_bar0(x, true);
	/* Registers and doorbells: device RAM, a memory slot, no exits. */
	s = range_at(x, BAR0_ADDR);
	assert_true(s.found && s.ramd);
	assert_int_equal(s.addr, BAR0_ADDR);
	assert_int_equal(s.size, 0x2000);
	assert_string_equal(s.name, "0000:01:00.0 BAR 0 mmaps[0]");
	/* The table is emulated; the rest of its page is trapped. */
	s = range_at(x, BAR0_ADDR + 0x2000);
	assert_false(s.ramd);
	assert_string_equal(s.name, "msix-table");
	assert_int_equal(s.size, 4 * 16);
	s = range_at(x, BAR0_ADDR + 0x2040);
	assert_string_equal(s.name, "0000:01:00.0 BAR 0");
	assert_int_equal(s.addr + s.size, BAR0_ADDR + 0x3000);
	s = range_at(x, BAR0_ADDR + 0x3000);
	assert_string_equal(s.name, "msix-pba");
	s = range_at(x, BAR0_ADDR + 0x3ff8);
	assert_string_equal(s.name, "0000:01:00.0 BAR 0");
	/* The dumps say which is which, in QEMU's words. */
	{
		char *dump = NULL;
		size_t len = 0;
		FILE *out = open_memstream(&dump, &len);

		address_space_dump_flatview(x->w.as_mem, out);
		fclose(out);
		assert_non_null(strstr(dump, "00000000c0000000-00000000c0001fff (prio 0, ramd): "
					      "0000:01:00.0 BAR 0 mmaps[0]\n"));
		assert_non_null(strstr(dump, "00000000c0002000-00000000c000203f (prio 1, i/o): "
					      "msix-table\n"));
		assert_non_null(strstr(dump, "00000000c0002040-00000000c0002fff (prio 0, i/o): "
					      "0000:01:00.0 BAR 0 @0000000000002040\n"));
		free(dump);
	}
	/* The mapped piece is the device's memory itself. */
	memcpy(x->f->mem[0] + 0x100, "\x11\x22\x33\x44", 4);
	assert_int_equal(rd(x, BAR0_ADDR + 0x100, 4), 0x44332211);
	/* A trapped register is forwarded, and counted. */
	wr(x, BAR0_ADDR + 0x3800, 0xdeadbeef, 4);
	assert_int_equal(pci_get_long(x->f->mem[0] + 0x3800), 0xdeadbeef);
	vfio_pci_get_stats(x->v, &st);
	assert_int_equal(st.trapped_writes, 1);
	assert_int_equal(st.mapped_bytes, 0x2000);
	/* Decode off: nothing of the BAR is left, and the device stops decoding. */
	cfg_write(x, 0x04, 0x0004, 2);
	assert_false(range_at(x, BAR0_ADDR).found);
	assert_int_equal(pci_get_word(&x->f->config[0x04]) & 2, 0);
	/* Moved with decode on: the pieces follow. */
	cfg_write(x, 0x10, (uint32_t)BAR2_ADDR, 4);
	cfg_write(x, 0x04, 0x0006, 2);
	s = range_at(x, BAR2_ADDR);
	assert_true(s.found && s.ramd);
	assert_false(range_at(x, BAR0_ADDR).found);
}

static void test_no_mmap_traps_everything(void **state)
{
	struct fx *x = *state;
	struct vfio_pci_opts o;
	struct vfio_pci_stats st;

	nvme_like(x);
	vfio_pci_opts_defaults(&o);
	o.no_mmap = true;
	start_with(x, &o);
	place_bar0(x, true);
	assert_false(range_at(x, BAR0_ADDR).ramd);
	assert_string_equal(range_at(x, BAR0_ADDR).name, "0000:01:00.0 BAR 0");
	wr(x, BAR0_ADDR + 0x1000, 0x1234, 2);
	assert_int_equal(rd(x, BAR0_ADDR + 0x1000, 2), 0x1234);
	vfio_pci_get_stats(x->v, &st);
	assert_int_equal(st.trapped_writes, 1);
	assert_int_equal(st.trapped_reads, 1);
	assert_int_equal(st.mapped_bytes, 0);
	assert_int_equal(x->f->mmaps, 0);
}

static void test_sparse_areas(void **state)
{
	struct fx *x = *state;
	static const uint64_t areas[2][2] = { { 0, 0x1000 }, { 0x3000, 0x1000 } };

	assert_int_equal(vfio_fake_add_bar(x->f, 0, 0x4000, PCI_BAR_MEM32, true), 0);
	assert_int_equal(vfio_fake_set_areas(x->f, 0, 2, areas), 0);
	start(x);
	cfg_write(x, 0x10, (uint32_t)BAR0_ADDR, 4);
	cfg_write(x, 0x04, 0x0002, 2);
	assert_true(range_at(x, BAR0_ADDR).ramd);
	assert_false(range_at(x, BAR0_ADDR + 0x1000).ramd);
	assert_false(range_at(x, BAR0_ADDR + 0x2fff).ramd);
	assert_true(range_at(x, BAR0_ADDR + 0x3000).ramd);
	assert_string_equal(range_at(x, BAR0_ADDR + 0x3000).name, "0000:01:00.0 BAR 0 mmaps[1]");
}

static void test_small_bar_stays_trapped(void **state)
{
	struct fx *x = *state;

	assert_int_equal(vfio_fake_add_bar(x->f, 0, 0x100, PCI_BAR_MEM32, true), 0);
	start(x);
	cfg_write(x, 0x10, (uint32_t)BAR0_ADDR + 0x100, 4);
	cfg_write(x, 0x04, 0x0002, 2);
	assert_true(range_at(x, BAR0_ADDR + 0x100).found);
	assert_false(range_at(x, BAR0_ADDR + 0x100).ramd);
	assert_int_equal(x->f->mmaps, 0);
}

/* ---- MSI-X ---------------------------------------------------------------------------- */

static void program_vector(struct fx *x, unsigned v, uint32_t data, bool masked)
{
	uint64_t e = BAR0_ADDR + 0x2000 + 16 * v;

	wr(x, e, 0xfee00000, 4);
	wr(x, e + 4, 0, 4);
	wr(x, e + 8, data, 4);
	wr(x, e + 12, masked, 4);
}

static void test_msix_masking_and_pending(void **state)
{
	struct fx *x = *state;
	struct vfio_pci_stats st;

	nvme_like(x);
	start(x);
	place_bar0(x, true);
	assert_int_equal(x->f->irq_enabled[VFIO_IRQ_MSIX], 0);
	cfg_write(x, 0x42, 0x8000, 2);                /* MSI-X on */
	assert_int_equal(x->f->irq_enabled[VFIO_IRQ_MSIX], 4);
	program_vector(x, 0, 0x41, false);
	program_vector(x, 1, 0x42, true);
	/* Unmasked: the device's signal becomes the message. */
	signal_fd(x->f->irq_fd[VFIO_IRQ_MSIX][0]);
	run_loop(x);
	assert_int_equal(atomic_load(&x->log.n), 1);
	assert_int_equal(msi_log_data(&x->log, 0), 0x41);
	/* Masked: held, pending in the PBA, nothing delivered. */
	signal_fd(x->f->irq_fd[VFIO_IRQ_MSIX][1]);
	run_loop(x);
	assert_int_equal(atomic_load(&x->log.n), 1);
	assert_int_equal(rd(x, BAR0_ADDR + 0x3000, 4) & 0x2, 0x2);
	/* Unmask: delivered now, pending cleared. */
	wr(x, BAR0_ADDR + 0x2000 + 16 + 12, 0, 4);
	assert_int_equal(atomic_load(&x->log.n), 2);
	assert_int_equal(msi_log_data(&x->log, 1), 0x42);
	assert_int_equal(rd(x, BAR0_ADDR + 0x3000, 4) & 0x2, 0);
	/* Function mask holds everything; clearing it delivers. */
	cfg_write(x, 0x42, 0xc000, 2);
	signal_fd(x->f->irq_fd[VFIO_IRQ_MSIX][0]);
	run_loop(x);
	assert_int_equal(atomic_load(&x->log.n), 2);
	cfg_write(x, 0x42, 0x8000, 2);
	assert_int_equal(atomic_load(&x->log.n), 3);
	/* Reprogrammed while unmasked: the next one carries the new message. */
	wr(x, BAR0_ADDR + 0x2000 + 8, 0x51, 4);
	signal_fd(x->f->irq_fd[VFIO_IRQ_MSIX][0]);
	run_loop(x);
	assert_int_equal(msi_log_data(&x->log, 3), 0x51);
	vfio_pci_get_stats(x->v, &st);
	assert_true(st.msix_table_accesses >= 10);
	assert_int_equal(st.irqs_through_kickvm, 4);
	/* Off: the device's MSI-X is disabled too. */
	cfg_write(x, 0x42, 0x0000, 2);
	assert_int_equal(x->f->irq_enabled[VFIO_IRQ_MSIX], 0);
}

/* ---- MSI -------------------------------------------------------------------------------- */

static void test_msi_vectors_and_mask(void **state)
{
	struct fx *x = *state;
	int cap;

	assert_int_equal(vfio_fake_add_bar(x->f, 0, 0x100000, PCI_BAR_MEM32, true), 0);
	cap = vfio_fake_add_msi(x->f, 2, true);        /* 4 vectors, 64-bit, maskable */
	start(x);
	assert_int_equal(cfg_read(x, cap, 1), 0x05);
	assert_int_equal(cfg_read(x, cap + 2, 2), 0x0184);
	cfg_write(x, cap + 4, 0xfee00000, 4);
	cfg_write(x, cap + 8, 0, 4);
	cfg_write(x, cap + 12, 0x60, 2);
	cfg_write(x, cap + 16, 0x2, 4);                 /* vector 1 masked */
	cfg_write(x, cap + 2, 0x0025, 2);               /* enable, 4 vectors */
	assert_int_equal(x->f->irq_enabled[VFIO_IRQ_MSI], 4);
	assert_int_equal(x->f->config[cap + 2] & 1, 0); /* not forwarded */
	signal_fd(x->f->irq_fd[VFIO_IRQ_MSI][2]);
	run_loop(x);
	assert_int_equal(atomic_load(&x->log.n), 1);
	assert_int_equal(msi_log_data(&x->log, 0), 0x62);
	signal_fd(x->f->irq_fd[VFIO_IRQ_MSI][1]);
	run_loop(x);
	assert_int_equal(atomic_load(&x->log.n), 1);
	assert_int_equal(cfg_read(x, cap + 20, 4), 0x2);  /* pending */
	cfg_write(x, cap + 16, 0, 4);
	assert_int_equal(atomic_load(&x->log.n), 2);
	assert_int_equal(msi_log_data(&x->log, 1), 0x61);
	assert_int_equal(cfg_read(x, cap + 20, 4), 0);
	cfg_write(x, cap + 2, 0x0000, 2);
	assert_int_equal(x->f->irq_enabled[VFIO_IRQ_MSI], 0);
}

/* ---- DMA ---------------------------------------------------------------------------------- */

static void test_dma_follows_guest_ram(void **state)
{
	struct fx *x = *state;
	const struct vfio_fake_dma *m;
	struct mem_region *more;
	void *host = calloc(1, 0x10000);

	nvme_like(x);
	start(x);
	m = vfio_fake_dma_find(x->f, 0x1000);
	assert_non_null(m);
	assert_int_equal(m->iova, 0);
	assert_int_equal(m->size, RAM_SIZE);
	assert_ptr_equal(m->host, x->ram_host);
	assert_true(m->writable);
	/* RAM that comes and goes is mapped and unmapped with it. */
	more = mr_new_ram("more", 0x10000, host, -1, 0);
	assert_int_equal(mr_add_subregion(x->w.system, 0x200000, more, 0), 0);
	assert_int_equal(x->f->nr_dma, 2);
	assert_ptr_equal(vfio_fake_dma_find(x->f, 0x200000)->host, host);
	mr_del_subregion(x->w.system, more);
	assert_int_equal(x->f->nr_dma, 1);
	assert_null(vfio_fake_dma_find(x->f, 0x200000));
	/* The device's own mapped BAR is not guest RAM: never DMA-mapped. */
	place_bar0(x, true);
	assert_true(range_at(x, BAR0_ADDR).ramd);
	assert_int_equal(x->f->nr_dma, 1);
	assert_null(vfio_fake_dma_find(x->f, BAR0_ADDR));
	mr_free(more);
	free(host);
	stop(x);
	/* Gone with the device; the fake is freed, so nothing more to look at
	 * but what it reported. */
}

/* A hostile guest puts BAR 0 over RAM and over ECAM: both keep winning, the
 * DMA map stays guest RAM only, and the device is not harmed. */
static void test_bar_over_ram_and_ecam(void **state)
{
	struct fx *x = *state;

	nvme_like(x);
	start(x);
	cfg_write(x, 0x10, 0x1000, 4);
	cfg_write(x, 0x14, 0, 4);
	cfg_write(x, 0x04, 0x0006, 2);
	assert_string_equal(range_at(x, 0x1000).name, "ram");
	assert_false(range_at(x, 0x1000).ramd);
	wr(x, 0x1000, 0xabcd, 2);
	assert_int_equal(pci_get_word((uint8_t *)x->ram_host + 0x1000), 0xabcd);
	assert_int_equal(pci_get_word(x->f->mem[0]), 0);
	assert_int_equal(x->f->nr_dma, 1);
	assert_int_equal(x->f->dma[0].size, RAM_SIZE);
	/* Over ECAM: config space still answers. */
	cfg_write(x, 0x10, (uint32_t)PCI_ECAM_BASE, 4);
	assert_string_equal(range_at(x, PCI_ECAM_BASE).name, "pci-ecam");
	assert_int_equal(cfg_read(x, 0x00, 2), 0x1b36);
}

/* ---- reset ------------------------------------------------------------------------------ */

static void test_reset_at_start_guest_reset_and_exit(void **state)
{
	struct fx *x = *state;

	nvme_like(x);
	start(x);
	assert_int_equal(x->f->resets, 1);
	place_bar0(x, true);
	cfg_write(x, 0x42, 0x8000, 2);
	assert_int_equal(x->f->irq_enabled[VFIO_IRQ_MSIX], 4);
	pci_bus_reset(x->w.bus);
	assert_int_equal(x->f->resets, 2);
	assert_int_equal(x->f->irq_enabled[VFIO_IRQ_MSIX], 0);
	assert_false(range_at(x, BAR0_ADDR).found);
	assert_int_equal(cfg_read(x, 0x42, 2) & 0x8000, 0);
	stop(x);
	assert_int_equal(x->resets_at_exit, 3);
	x->f = NULL;
}

static void test_failed_device_reads_ones(void **state)
{
	struct fx *x = *state;

	nvme_like(x);
	start(x);
	place_bar0(x, false);
	x->f->fail_config_reads = -EIO;
	assert_int_equal(cfg_read(x, 0x06, 2), 0xffff);
	assert_true(vfio_pci_failed(x->v));
	/* Emulated registers still answer; trapped accesses are dropped. */
	assert_int_equal(cfg_read(x, 0x00, 2), 0x1b36);
	cfg_write(x, 0x04, 0x0002, 2);
	assert_int_equal(rd(x, BAR0_ADDR + 0x3800, 4), 0xffffffffu);
	x->f->fail_config_reads = 0;
}

/* ---- layout from a planner ------------------------------------------------------------------ */

/* A test planner: MSI-X moves to the upper half of a doubled BAR 0. */
static int move_to_upper_half(const struct vfio_layout *phys, int mode, struct vfio_layout *virt,
			      const char **why)
{
	(void)why;
	assert_int_equal(mode, 0);
	*virt = *phys;
	virt->bars[0].size = phys->bars[0].size * 2;
	virt->msix.table_offset = phys->bars[0].size;
	virt->msix.pba_offset = phys->bars[0].size + 0x1000;
	return 0;
}

static void test_planner_layout(void **state)
{
	struct fx *x = *state;
	struct vfio_pci_opts o;
	struct seen s;

	nvme_like(x);
	vfio_pci_opts_defaults(&o);
	o.msix_relocation = 0;
	o.planner = move_to_upper_half;
	start_with(x, &o);
	cfg_write(x, 0x10, 0xffffffff, 4);
	assert_int_equal(cfg_read(x, 0x10, 4), 0xffff8004u);
	assert_int_equal(cfg_read(x, 0x44, 4), 0x4000);
	assert_int_equal(cfg_read(x, 0x48, 4), 0x5000);
	/* Physical and virtual places stay apart. */
	assert_int_equal(vfio_pci_phys_layout(x->v)->msix.table_offset, 0x2000);
	assert_int_equal(vfio_pci_layout(x->v)->msix.table_offset, 0x4000);
	assert_int_equal(mr_size(vfio_pci_bar_trap(x->v, 0)), 0x8000);
	place_bar0(x, true);
	/* The device's own table pages are not emulated any more: all of the
	 * physical BAR is mapped; the added half is trapped and emulated. */
	s = range_at(x, BAR0_ADDR);
	assert_true(s.ramd);
	assert_int_equal(s.size, 0x4000);
	assert_string_equal(range_at(x, BAR0_ADDR + 0x4000).name, "msix-table");
	assert_string_equal(range_at(x, BAR0_ADDR + 0x5000).name, "msix-pba");
	assert_int_equal(rd(x, BAR0_ADDR + 0x7000, 4), 0);
}

static void test_relocation_without_planner_is_refused(void **state)
{
	struct fx *x = *state;
	struct vfio_pci_opts o;
	const char *why = NULL;

	nvme_like(x);
	vfio_pci_opts_defaults(&o);
	o.msix_relocation = VFIO_MSIX_RELOC_AUTO;
	assert_int_equal(vfio_pci_create(x->w.bus, &x->f->base, &o, &x->v, &why), -ENOTSUP);
	assert_non_null(why);
	x->f = NULL;  /* the model destroyed the backend */
	x->v = NULL;
}

static void test_msix_outside_bar_is_refused(void **state)
{
	struct fx *x = *state;
	struct vfio_pci_opts o;
	const char *why = NULL;

	assert_int_equal(vfio_fake_add_bar(x->f, 0, 0x1000, PCI_BAR_MEM32, true), 0);
	assert_true(vfio_fake_add_msix(x->f, 64, 0, 0xc00, 0, 0xff8, true) > 0);
	vfio_pci_opts_defaults(&o);
	assert_int_equal(vfio_pci_create(x->w.bus, &x->f->base, &o, &x->v, &why), -EINVAL);
	x->f = NULL;
	x->v = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_header_is_virtualized, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing_and_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capabilities_pass_through, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rom_bar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_rom_is_hidden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mapped_and_trapped_flat_view, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_mmap_traps_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sparse_areas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_bar_stays_trapped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_masking_and_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msi_vectors_and_mask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_follows_guest_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_over_ram_and_ecam, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_at_start_guest_reset_and_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_device_reads_ones, setup, teardown),
		cmocka_unit_test_setup_teardown(test_planner_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relocation_without_planner_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_outside_bar_is_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
