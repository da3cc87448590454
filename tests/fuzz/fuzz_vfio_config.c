/*
 * libFuzzer: a hostile guest against the VFIO device model over the fake
 * backend.  Garbage in config space (BARs over RAM, over ECAM, over each
 * other; decode toggled mid-way; the ROM BAR; MSI and MSI-X control), MSI-X
 * table and PBA accesses of every width and alignment, MMIO and port I/O
 * wherever the BARs landed, device interrupts on any vector, bus resets.
 * Everything is built and torn down per input.
 *
 * Checked after every record: guest RAM is still RAM where it was (a BAR
 * never shadows it), and every DMA mapping the device holds is guest RAM at
 * its own address (never a BAR, never outside RAM).
 *
 * Input: a first byte of options (bit 0: x-no-mmap; bit 1: start from a
 * driver's placement; bits 2-3: x-msix-relocation off, auto, bar0 grown,
 * bar5 added; bit 4: a device-write ioeventfd at BAR0+0x1000 performed by
 * kickvm's handler), then records
 *   op(1) size(1) where(4) data(8)
 * op % 8: 0 config read, 1 config write, 2 MMIO read, 3 MMIO write,
 *         4 port read/write, 5 MSI-X table/PBA write at the BAR 0 the guest
 *         programmed, 6 a device interrupt, 7 bus reset / add-remove RAM.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "kickvm/pci.h"
#include "kickvm/vfio_pci.h"
#include "pci_world.h"
#include "vfio/vfio_fake.h"

#define RAM_SIZE  0x100000ull
#define RAM2_ADDR 0x400000ull

static const unsigned sizes[] = { 1, 2, 4, 8 };

struct world {
	struct pci_world pci;
	struct event_loop *loop;
	struct mem_region *ram, *ram2;
	uint8_t *ram_host, *ram2_host;
	bool ram2_in;
	struct vfio_fake *f;
	struct vfio_pci *v;
	uint8_t devfn;
};

static void count_msi(void *opaque, uint64_t addr, uint32_t data)
{
	(void)opaque; (void)addr; (void)data;
}

static struct vfio_fake *make_device(void)
{
	static const uint64_t areas[1][2] = { { 0, 0x1000 } };
	struct vfio_fake *f = vfio_fake_new("0000:02:00.0", 0x1234, 0x11e8, 0x00ff00);
	int cap;

	if (!f)
		abort();
	if (vfio_fake_add_bar(f, 0, 0x4000, PCI_BAR_MEM64, true) < 0 ||
	    vfio_fake_add_bar(f, 2, 0x2000, PCI_BAR_MEM32, true) < 0 ||
	    vfio_fake_set_areas(f, 2, 1, areas) < 0 ||
	    vfio_fake_add_bar(f, 4, 0x20, PCI_BAR_IO, false) < 0 ||
	    vfio_fake_set_rom(f, 0x1000) < 0 ||
	    vfio_fake_add_msix(f, 8, 0, 0x2000, 0, 0x3000, true) < 0 ||
	    vfio_fake_add_msi(f, 2, true) < 0)
		abort();
	cap = vfio_fake_add_cap(f, 0x09, 16);
	if (cap < 0)
		abort();
	memset(&f->config_wmask[cap + 2], 0xff, 14);
	return f;
}

/* @mode: bits 0-1 the relocation (off, auto, bar0 grown, bar5 added), bit 2
 * a static device-write ioeventfd on BAR0 whose writer is kickvm's handler. */
static void world_create(struct world *w, bool no_mmap, unsigned mode)
{
	static const int relocation[4] = { VFIO_MSIX_RELOC_OFF, VFIO_MSIX_RELOC_AUTO, 0, 5 };
	static const struct vfio_pci_ioeventfd_spec ioev = { 0, 0x1000, 4, 0x1 };
	struct vfio_pci_opts o;
	const char *why;

	memset(w, 0, sizeof(*w));
	if (pci_world_create(&w->pci, count_msi, NULL) < 0)
		abort();
	w->loop = event_loop_new("fuzz-vfio");
	w->ram_host = calloc(1, RAM_SIZE);
	w->ram2_host = calloc(1, 0x10000);
	w->ram = mr_new_ram("ram", RAM_SIZE, w->ram_host, -1, 0);
	w->ram2 = mr_new_ram("ram2", 0x10000, w->ram2_host, -1, 0);
	if (!w->loop || !w->ram || !w->ram2 || mr_add_subregion(w->pci.system, 0, w->ram, 0) < 0)
		abort();
	w->f = make_device();
	vfio_pci_opts_defaults(&o);
	o.no_mmap = no_mmap;
	o.planner = vfio_msix_reloc_planner;
	o.msix_relocation = relocation[mode & 3];
	if (mode & 4) {
		w->f->no_ioeventfd = true;
		o.static_ioeventfds = &ioev;
		o.nr_static_ioeventfds = 1;
	}
	o.loop = w->loop;
	o.dma_root = w->pci.system;
	if (vfio_pci_create(w->pci.bus, &w->f->base, &o, &w->v, &why) < 0)
		abort();
	w->devfn = vfio_pci_device(w->v)->devfn;
}

static void world_destroy(struct world *w)
{
	vfio_pci_destroy(w->v);
	if (w->ram2_in)
		mr_del_subregion(w->pci.system, w->ram2);
	mr_del_subregion(w->pci.system, w->ram);
	mr_free(w->ram);
	mr_free(w->ram2);
	free(w->ram_host);
	free(w->ram2_host);
	event_loop_free(w->loop);
	pci_world_destroy(&w->pci);
}

/* Near the BARs the guest is likely to have placed, RAM, ECAM, or anywhere. */
static uint64_t mmio_address(uint32_t where)
{
	static const uint64_t bases[] = {
		0xc0000000ull, 0xc0004000ull, 0xd0000000ull, PCI_ECAM_BASE,
		0x0, 0x100000000ull, RAM2_ADDR, 0xfffff000ull,
	};

	return bases[where >> 29] + (where & 0x1ffff);
}

static void check_ram(const struct flat_range *fr, void *opaque)
{
	struct world *w = opaque;

	/* Guest RAM wins over any BAR placed on it. */
	if (fr->addr < RAM_SIZE && fr->mr != w->ram)
		abort();
}

static void check_invariants(struct world *w)
{
	address_space_for_each_range(w->pci.as_mem, check_ram, w);
	for (unsigned i = 0; i < w->f->nr_dma; i++) {
		const struct vfio_fake_dma *d = &w->f->dma[i];
		bool in_ram = d->iova + d->size <= RAM_SIZE &&
			      (uint8_t *)d->host == w->ram_host + d->iova;
		bool in_ram2 = w->ram2_in && d->iova >= RAM2_ADDR &&
			       d->iova + d->size <= RAM2_ADDR + 0x10000 &&
			       (uint8_t *)d->host == w->ram2_host + (d->iova - RAM2_ADDR);

		if (!in_ram && !in_ram2)
			abort();
	}
}

static uint64_t bar0_address(struct world *w)
{
	return pci_bus_config_read(w->pci.bus, 0, w->devfn, 0x10, 4) & ~0xfull;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct world w;
	const size_t rec = 14;
	uint64_t v = 1;

	if (size < 1)
		return 0;
	log_set_quiet(true);
	world_create(&w, data[0] & 1, (data[0] >> 2) & 7);
	if (data[0] & 2) {  /* half the inputs start from a driver's placement */
		pci_bus_config_write(w.pci.bus, 0, w.devfn, 0x10, 0xc0000000u, 4);
		pci_bus_config_write(w.pci.bus, 0, w.devfn, 0x18, 0xc0004000u, 4);
		pci_bus_config_write(w.pci.bus, 0, w.devfn, 0x04, 0x7, 2);
	}
	data++, size--;
	for (; size >= rec; data += rec, size -= rec) {
		unsigned op = data[0] % 8, len = sizes[data[1] % 4];
		uint32_t where;
		uint64_t value;
		int fd;

		memcpy(&where, data + 2, 4);
		memcpy(&value, data + 6, 8);
		switch (op) {
		case 0:
			pci_bus_config_read(w.pci.bus, 0, w.devfn, where & 0xfff, len);
			break;
		case 1:
			pci_bus_config_write(w.pci.bus, 0, w.devfn, where & 0xfff, (uint32_t)value, len);
			break;
		case 2:
			address_space_read(w.pci.as_mem, mmio_address(where), &v, len);
			break;
		case 3:
			address_space_write(w.pci.as_mem, mmio_address(where), value, len);
			break;
		case 4:
			if (where & 1)
				address_space_write(w.pci.as_io, (where >> 1) & 0xffff, value, len);
			else
				address_space_read(w.pci.as_io, (where >> 1) & 0xffff, &v, len);
			break;
		case 5:
			address_space_write(w.pci.as_mem, bar0_address(&w) + 0x2000 + (where & 0x1fff),
					    value, len);
			break;
		case 6:
			fd = where & 1 ? w.f->irq_fd[VFIO_IRQ_MSI][(where >> 1) % 4]
				       : w.f->irq_fd[VFIO_IRQ_MSIX][(where >> 1) % 8];
			if (fd > 0 && write(fd, &v, sizeof(v)) < 0)
				break;
			event_loop_run_once(w.loop, 0);
			break;
		default:
			if (where & 1) {
				pci_bus_reset(w.pci.bus);
			} else if (w.ram2_in) {
				mr_del_subregion(w.pci.system, w.ram2);
				w.ram2_in = false;
			} else {
				w.ram2_in = mr_add_subregion(w.pci.system, RAM2_ADDR, w.ram2, 0) == 0;
			}
			break;
		}
		check_invariants(&w);
	}
	world_destroy(&w);
	return 0;
}
