/*
 * The BARs of an assigned device, mapped where possible and trapped where
 * not, and its ROM BAR.
 *
 * Each BAR is a container the PCI bus places where the guest programs it.
 * Inside it, at priority 0, one I/O region traps the whole BAR and forwards
 * accesses to the backend's region read/write (offsets past the device's
 * own size, the room a relocation planner added, read 0 and drop writes).
 * Over it, also at priority 0 but always added later (so they win, and the
 * dumps read like QEMU's: "(prio 0, ramd)" over "(prio 0, i/o)"),
 * the mapped pieces: parts of the BAR the backend lets us mmap, as device
 * RAM regions, so KVM maps them as memory slots and guest accesses there
 * never exit.  The MSI-X table and PBA (msix.c) sit at priority 1, on pages
 * no piece covers: a piece must not share a page with them, or its memory
 * slot would not be page aligned.
 *
 * Pieces are only whole host pages, so BARs smaller than a page stay
 * trapped (the guest may place them anywhere in a page), as do I/O BARs.
 * They are placed only while the device's own memory decode is on: with it
 * off, vfio-pci revokes the mappings and a vCPU touching one would fault in
 * KVM instead of reaching a trap that drops the access.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "vfio/vfio_pci_internal.h"

#define BAR_PRIORITY (-1)   /* as the bus places BARs: below the platform */
#define CFG_COMMAND  0x04
#define CFG_ROM      0x30

static uint64_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? (uint64_t)p : 4096;
}

/* ---- trapped accesses ---------------------------------------------------------------- */

static uint64_t trap_read(void *opaque, uint64_t offset, unsigned size)
{
	struct vfio_bar *bar = opaque;
	struct vfio_pci *v = bar->owner;
	uint64_t value = 0;
	int r;

	atomic_fetch_add_explicit(&v->trapped_reads, 1, memory_order_relaxed);
	if (v->failed)
		return UINT64_MAX;
	if (offset >= bar->phys_size || size > bar->phys_size - offset)
		return 0;  /* room a planner added: nothing of the device's */
	r = v->b->ops->region_read(v->b, (unsigned)bar->index, offset, &value, size);
	if (r != (int)size) {
		vfio_pci_error(v, "BAR read", r < 0 ? r : -EIO);
		return UINT64_MAX;
	}
	return value;
}

static void trap_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct vfio_bar *bar = opaque;
	struct vfio_pci *v = bar->owner;
	int r;

	atomic_fetch_add_explicit(&v->trapped_writes, 1, memory_order_relaxed);
	if (v->failed || offset >= bar->phys_size || size > bar->phys_size - offset)
		return;
	r = v->b->ops->region_write(v->b, (unsigned)bar->index, offset, &data, size);
	if (r != (int)size)
		vfio_pci_error(v, "BAR write", r < 0 ? r : -EIO);
}

static const struct mr_ops trap_ops = {
	.read = trap_read, .write = trap_write,
	.valid_min = 1, .valid_max = 8, .impl_min = 1, .impl_max = 8,
};

/* ---- mapped pieces ------------------------------------------------------------------- */

struct span { uint64_t start, end; };

/* Remove [cut.start, cut.end) from the @n spans in @s (room for @max). */
static unsigned cut_span(struct span *s, unsigned n, unsigned max, struct span cut)
{
	for (unsigned i = 0; i < n; i++) {
		struct span a = s[i];

		if (cut.end <= a.start || cut.start >= a.end)
			continue;
		if (cut.start > a.start && cut.end < a.end) {
			if (n == max) {       /* no room to split: drop the tail */
				s[i].end = cut.start;
				continue;
			}
			s[i].end = cut.start;
			s[n++] = (struct span){ cut.end, a.end };
		} else if (cut.start > a.start) {
			s[i].end = cut.start;
		} else if (cut.end < a.end) {
			s[i].start = cut.end;
		} else {
			s[i--] = s[--n];
		}
	}
	return n;
}

static struct span page_cover(uint64_t offset, uint64_t len, uint64_t page)
{
	return (struct span){ offset & ~(page - 1), (offset + len + page - 1) & ~(page - 1) };
}

/* Exclude the pages the guest finds MSI-X on in BAR @i (virtual places), and
 * the device's own table pages where the backend would not map them. */
static unsigned cut_msix(const struct vfio_pci *v, int i, struct span *s, unsigned n,
			 unsigned max, uint64_t page)
{
	const struct vfio_layout *l[2] = { &v->virt, &v->phys };

	for (int k = 0; k < 2; k++) {
		const struct vfio_msix_place *p = &l[k]->msix;
		uint64_t nr = l[k]->msix_vectors;

		if (!l[k]->has_msix)
			continue;
		if (k == 1 && (v->desc[i].msix_mappable || v->desc[i].nr_areas))
			continue;  /* the backend's areas already leave them out */
		if (p->table_bar == i)
			n = cut_span(s, n, max, page_cover(p->table_offset, nr * 16, page));
		if (p->pba_bar == i)
			n = cut_span(s, n, max, page_cover(p->pba_offset, (nr + 63) / 64 * 8, page));
	}
	return n;
}

static void plan_pieces(struct vfio_pci *v, struct vfio_bar *bar)
{
	const struct vfio_region_desc *d = &v->desc[bar->index];
	uint64_t page = page_size();
	struct span s[VFIO_MAX_PIECES];
	unsigned n = 0;

	if (v->opts.no_mmap || !d->mappable || (bar->type & PCI_BAR_IO) ||
	    bar->phys_size < page || !v->b->ops->region_mmap)
		return;
	if (!d->nr_areas) {
		s[n++] = (struct span){ 0, bar->phys_size };
	}
	for (unsigned a = 0; a < d->nr_areas && n < VFIO_MAX_PIECES; a++) {
		uint64_t start = (d->areas[a].offset + page - 1) & ~(page - 1);
		uint64_t end = (d->areas[a].offset + d->areas[a].size) & ~(page - 1);

		if (end > bar->phys_size)
			end = bar->phys_size & ~(page - 1);
		if (d->areas[a].offset + d->areas[a].size < d->areas[a].offset || start >= end)
			continue;
		s[n++] = (struct span){ start, end };
	}
	n = cut_msix(v, bar->index, s, n, VFIO_MAX_PIECES, page);
	for (unsigned k = 0; k < n; k++) {
		struct vfio_piece *p = &bar->pieces[bar->nr_pieces];
		char name[64];
		int r;

		p->offset = s[k].start;
		p->size = s[k].end - s[k].start;
		r = v->b->ops->region_mmap(v->b, (unsigned)bar->index, p->offset, p->size, &p->host);
		if (r < 0) {
			log_warn(v->id, "BAR %d: cannot mmap 0x%" PRIx64 "+0x%" PRIx64 " (%s): trapped",
				 bar->index, p->offset, p->size, strerror(-r));
			continue;
		}
		snprintf(name, sizeof(name), "%s BAR %d mmaps[%u]", v->b->name, bar->index,
			 bar->nr_pieces);
		p->mr = mr_new_ram_device(name, p->size, p->host);
		if (!p->mr) {
			v->b->ops->region_munmap(v->b, p->host, p->size);
			continue;
		}
		bar->nr_pieces++;
	}
}

void vfio_bars_device_memory(struct vfio_pci *v, bool on)
{
	v->device_mem_on = on;
	memory_transaction_begin();
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct vfio_bar *bar = &v->bars[i];

		if (!bar->container || bar->pieces_in == on)
			continue;
		for (unsigned k = 0; k < bar->nr_pieces; k++) {
			if (on)
				mr_add_subregion(bar->container, bar->pieces[k].offset,
						 bar->pieces[k].mr, 0);
			else
				mr_del_subregion(bar->container, bar->pieces[k].mr);
		}
		bar->pieces_in = on;
	}
	memory_transaction_commit();
}

/* ---- the ROM --------------------------------------------------------------------------- */

static uint64_t rom_read(void *opaque, uint64_t offset, unsigned size)
{
	struct vfio_pci *v = opaque;
	uint64_t value = 0;
	int r;

	atomic_fetch_add_explicit(&v->trapped_reads, 1, memory_order_relaxed);
	if (v->failed)
		return UINT64_MAX;
	r = v->b->ops->region_read(v->b, VFIO_PCI_ROM, offset, &value, size);
	if (r != (int)size) {
		vfio_pci_error(v, "ROM read", r < 0 ? r : -EIO);
		return UINT64_MAX;
	}
	return value;
}

static void rom_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	(void)opaque; (void)offset; (void)data; (void)size;  /* read-only */
}

static const struct mr_ops rom_ops = {
	.read = rom_read, .write = rom_write,
	.valid_min = 1, .valid_max = 8, .impl_min = 1, .impl_max = 4,
};

void vfio_rom_update(struct vfio_pci *v)
{
	uint32_t reg = pci_get_long(&v->dev.config[CFG_ROM]);
	uint64_t want = reg & ~0x7ffu;
	struct mem_region *root;

	if (!v->rom || !v->dev.bus)
		return;
	if (!(reg & 1) || !pci_memory_enabled(&v->dev) || !want ||
	    want + v->rom_size - 1 > UINT32_MAX)
		want = PCI_BAR_UNMAPPED;
	if (want == v->rom_addr)
		return;
	root = pci_bus_system_root(v->dev.bus);
	memory_transaction_begin();
	if (v->rom_addr != PCI_BAR_UNMAPPED)
		mr_del_subregion(root, v->rom);
	if (want != PCI_BAR_UNMAPPED && mr_add_subregion(root, want, v->rom, BAR_PRIORITY) < 0)
		want = PCI_BAR_UNMAPPED;
	v->rom_addr = want;
	memory_transaction_commit();
}

/* Take the ROM out of the address space; while the device is still on its
 * bus, which knows the address space (pci_bus_remove_device forgets it). */
void vfio_rom_unmap(struct vfio_pci *v)
{
	if (!v->rom || v->rom_addr == PCI_BAR_UNMAPPED || !v->dev.bus)
		return;
	memory_transaction_begin();
	mr_del_subregion(pci_bus_system_root(v->dev.bus), v->rom);
	v->rom_addr = PCI_BAR_UNMAPPED;
	memory_transaction_commit();
}

static int create_rom(struct vfio_pci *v)
{
	uint64_t size = v->num_regions > VFIO_PCI_ROM ? v->desc[VFIO_PCI_ROM].size : 0;
	char name[48];

	v->rom_addr = PCI_BAR_UNMAPPED;
	/* No ROM, or one no 32-bit ROM BAR can hold: hidden (reads 0). */
	if (!size || (size & (size - 1)) || size < 2048 || size > (1ull << 24) ||
	    !v->desc[VFIO_PCI_ROM].readable)
		return 0;
	snprintf(name, sizeof(name), "%s ROM", v->b->name);
	v->rom = mr_new_io(name, size, &rom_ops, v);
	if (!v->rom)
		return -ENOMEM;
	v->rom_size = size;
	pci_set_long(&v->dev.wmask[CFG_ROM], (uint32_t)~(size - 1) | 1u);
	return 0;
}

/* ---- creation ---------------------------------------------------------------------------- */

static int create_bar(struct vfio_pci *v, int i)
{
	struct vfio_bar *bar = &v->bars[i];
	char name[48];

	bar->owner = v;
	bar->index = i;
	bar->size = v->virt.bars[i].size;
	bar->phys_size = v->phys.bars[i].size;
	bar->type = v->virt.bars[i].type;
	snprintf(name, sizeof(name), "%s base BAR %d", v->b->name, i);
	bar->container = mr_new_container(name, bar->size);
	snprintf(name, sizeof(name), "%s BAR %d", v->b->name, i);
	bar->trap = mr_new_io(name, bar->size, &trap_ops, bar);
	if (!bar->container || !bar->trap)
		return -ENOMEM;
	mr_add_subregion(bar->container, 0, bar->trap, 0);
	plan_pieces(v, bar);
	return pci_register_bar(&v->dev, i, bar->type, bar->container);
}

int vfio_bars_create(struct vfio_pci *v)
{
	int r = 0;

	for (int i = 0; i < PCI_NUM_BARS && !r; i++)
		if (v->virt.bars[i].size)
			r = create_bar(v, i);
	if (!r)
		r = create_rom(v);
	return r;
}

void vfio_bars_destroy(struct vfio_pci *v)
{
	vfio_bars_device_memory(v, false);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct vfio_bar *bar = &v->bars[i];

		for (unsigned k = 0; k < bar->nr_pieces; k++) {
			mr_free(bar->pieces[k].mr);
			v->b->ops->region_munmap(v->b, bar->pieces[k].host, bar->pieces[k].size);
		}
		bar->nr_pieces = 0;
		if (bar->trap && bar->container)
			mr_del_subregion(bar->container, bar->trap);
		mr_free(bar->trap);
		mr_free(bar->container);
		bar->trap = bar->container = NULL;
	}
	vfio_rom_unmap(v);
	mr_free(v->rom);
	v->rom = NULL;
}

uint64_t vfio_bars_mapped_bytes(const struct vfio_pci *v)
{
	uint64_t n = 0;

	for (int i = 0; i < PCI_NUM_BARS; i++)
		for (unsigned k = 0; k < v->bars[i].nr_pieces; k++)
			n += v->bars[i].pieces[k].size;
	return n;
}

void vfio_bars_print(struct vfio_pci *v, FILE *out)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		const struct vfio_bar *bar = &v->bars[i];
		uint64_t at = v->dev.bars[i].addr;

		if (!bar->container)
			continue;
		fprintf(out, "  BAR %d: %s 0x%" PRIx64 " bytes", i,
			bar->type & PCI_BAR_IO ? "I/O" : "memory", bar->size);
		if (at != PCI_BAR_UNMAPPED)
			fprintf(out, " at 0x%" PRIx64, at);
		else
			fprintf(out, " (not decoded)");
		if (!bar->nr_pieces)
			fprintf(out, ", all trapped");
		for (unsigned k = 0; k < bar->nr_pieces; k++)
			fprintf(out, "%s+0x%" PRIx64 "-0x%" PRIx64, k ? " " : ", mapped (0 exits): ",
				bar->pieces[k].offset, bar->pieces[k].offset + bar->pieces[k].size - 1);
		fputc('\n', out);
	}
}
