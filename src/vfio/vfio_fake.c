/*
 * The in-memory VFIO backend (see vfio_fake.h).  It keeps the rules a real
 * device would: accesses outside a region fail with -EINVAL, config writes
 * change only the bits the device implements, DMA maps may not overlap and
 * unmaps must match a map exactly (type1 v2 does not split mappings).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kickvm/pci.h"
#include "vfio/vfio_fake.h"

#define CAP_LIST_PTR 0x34

static const struct vfio_backend_ops fake_ops;

struct vfio_fake *vfio_fake_of(struct vfio_backend *b)
{
	return b && b->ops == &fake_ops ? (struct vfio_fake *)b : NULL;
}

struct vfio_fake *vfio_fake_new(const char *name, uint16_t vendor, uint16_t device,
				uint32_t class_code)
{
	struct vfio_fake *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->base.ops = &fake_ops;
	snprintf(f->base.name, sizeof(f->base.name), "%s", name ? name : "fake");
	f->config_size = 4096;
	f->can_reset = true;
	f->next_cap = 0x40;
	pci_set_word(&f->config[0x00], vendor);
	pci_set_word(&f->config[0x02], device);
	f->config[0x09] = (uint8_t)class_code;
	f->config[0x0a] = (uint8_t)(class_code >> 8);
	f->config[0x0b] = (uint8_t)(class_code >> 16);
	f->config[0x0e] = 0x80;  /* multi-function: the model must hide it */
	f->config[0x3d] = 1;     /* INTA: the model must hide it too */
	pci_set_word(&f->config_wmask[0x04], 0x0547);  /* command */
	f->config_wmask[0x0c] = 0xff;
	f->config_wmask[0x0d] = 0xff;
	f->desc[VFIO_PCI_CONFIG] = (struct vfio_region_desc){
		.size = f->config_size, .readable = true, .writable = true };
	return f;
}

static uint8_t *map_anon(uint64_t size)
{
	/* NORESERVE: a test's 2 GiB BAR must not need 2 GiB of commit (the
	 * lab has 2 GiB in all); only touched pages cost anything. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int vfio_fake_add_bar(struct vfio_fake *f, int bar, uint64_t size, uint8_t type, bool mappable)
{
	if (bar < 0 || bar > 5 || !size || (size & (size - 1)) || f->mem[bar])
		return -EINVAL;
	f->mem[bar] = map_anon(size);
	if (!f->mem[bar])
		return -ENOMEM;
	f->desc[bar] = (struct vfio_region_desc){ .size = size, .readable = true,
		.writable = true, .mappable = mappable && !(type & PCI_BAR_IO) };
	pci_set_long(&f->config[0x10 + 4 * bar], type);
	return 0;
}

int vfio_fake_set_areas(struct vfio_fake *f, int bar, unsigned n, const uint64_t (*areas)[2])
{
	if (bar < 0 || bar > 5 || n > VFIO_MAX_SPARSE_AREAS || !f->desc[bar].size)
		return -EINVAL;
	f->desc[bar].nr_areas = n;
	for (unsigned i = 0; i < n; i++) {
		f->desc[bar].areas[i].offset = areas[i][0];
		f->desc[bar].areas[i].size = areas[i][1];
	}
	return 0;
}

int vfio_fake_set_rom(struct vfio_fake *f, uint64_t size)
{
	if (!size || (size & (size - 1)) || f->mem[VFIO_PCI_ROM])
		return -EINVAL;
	f->mem[VFIO_PCI_ROM] = map_anon(size);
	if (!f->mem[VFIO_PCI_ROM])
		return -ENOMEM;
	f->mem[VFIO_PCI_ROM][0] = 0x55;  /* an option ROM signature */
	f->mem[VFIO_PCI_ROM][1] = 0xaa;
	f->desc[VFIO_PCI_ROM] = (struct vfio_region_desc){ .size = size, .readable = true };
	return 0;
}

int vfio_fake_add_cap(struct vfio_fake *f, uint8_t id, uint8_t size)
{
	unsigned off = (f->next_cap + 3u) & ~3u;
	uint8_t *link = &f->config[CAP_LIST_PTR];

	if (off + size > 256)
		return -ENOSPC;
	for (int n = 0; *link && n < 48; n++)
		link = &f->config[*link + 1];
	*link = (uint8_t)off;
	f->config[off] = id;
	f->config[off + 1] = 0;
	f->config[0x06] |= 0x10;  /* status: capability list */
	f->next_cap = (uint8_t)(off + size);
	return (int)off;
}

int vfio_fake_add_msix(struct vfio_fake *f, unsigned nr, int table_bar, uint32_t table_offset,
		       int pba_bar, uint32_t pba_offset, bool mappable)
{
	int cap = vfio_fake_add_cap(f, 0x11, 12);

	if (cap < 0)
		return cap;
	pci_set_word(&f->config[cap + 2], (uint16_t)(nr - 1));
	pci_set_long(&f->config[cap + 4], table_offset | (uint32_t)table_bar);
	pci_set_long(&f->config[cap + 8], pba_offset | (uint32_t)pba_bar);
	f->irq_count[2] = nr;
	if (table_bar >= 0 && table_bar < 6)
		f->desc[table_bar].msix_mappable = mappable;
	return cap;
}

int vfio_fake_add_msi(struct vfio_fake *f, unsigned log2_vectors, bool maskable)
{
	int cap = vfio_fake_add_cap(f, 0x05, maskable ? 24 : 14);

	if (cap < 0)
		return cap;
	/* 64-bit, multiple message capable, per-vector masking. */
	pci_set_word(&f->config[cap + 2],
		     (uint16_t)(0x80 | (log2_vectors << 1) | (maskable ? 0x100 : 0)));
	f->irq_count[1] = 1u << log2_vectors;
	return cap;
}

const struct vfio_fake_dma *vfio_fake_dma_find(const struct vfio_fake *f, uint64_t iova)
{
	for (unsigned i = 0; i < f->nr_dma; i++)
		if (iova >= f->dma[i].iova && iova - f->dma[i].iova < f->dma[i].size)
			return &f->dma[i];
	return NULL;
}

/* ---- the ops ---------------------------------------------------------------------- */

static int fake_device_info(struct vfio_backend *b, unsigned *num_regions, unsigned *num_irqs,
			    bool *can_reset)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	*num_regions = VFIO_PCI_NUM_REGIONS;
	*num_irqs = 3;
	*can_reset = f->can_reset;
	return 0;
}

static int fake_region_desc(struct vfio_backend *b, unsigned index, struct vfio_region_desc *out)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	if (index >= VFIO_PCI_NUM_REGIONS)
		return -EINVAL;
	*out = f->desc[index];
	return 0;
}

static int fake_irq_count(struct vfio_backend *b, unsigned index, unsigned *count)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	if (index > 2)
		return -EINVAL;
	*count = f->irq_count[index];
	return 0;
}

static bool inside(const struct vfio_fake *f, unsigned index, uint64_t offset, size_t len)
{
	return index < VFIO_PCI_NUM_REGIONS && len && offset < f->desc[index].size &&
	       len <= f->desc[index].size - offset;
}

static int fake_region_read(struct vfio_backend *b, unsigned index, uint64_t offset, void *buf,
			    size_t len)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	if (!inside(f, index, offset, len))
		return -EINVAL;
	if (index == VFIO_PCI_CONFIG) {
		if (f->fail_config_reads)
			return f->fail_config_reads;
		memcpy(buf, f->config + offset, len);
	} else {
		f->region_reads++;
		memcpy(buf, f->mem[index] + offset, len);
	}
	return (int)len;
}

static int fake_region_write(struct vfio_backend *b, unsigned index, uint64_t offset,
			     const void *buf, size_t len)
{
	struct vfio_fake *f = (struct vfio_fake *)b;
	const uint8_t *p = buf;

	if (!inside(f, index, offset, len) || !f->desc[index].writable)
		return -EINVAL;
	if (index == VFIO_PCI_CONFIG) {
		for (size_t i = 0; i < len; i++) {
			uint8_t wm = f->config_wmask[offset + i];

			f->config[offset + i] = (uint8_t)((f->config[offset + i] & ~wm) | (p[i] & wm));
		}
	} else {
		f->region_writes++;
		memcpy(f->mem[index] + offset, buf, len);
	}
	return (int)len;
}

static int fake_region_mmap(struct vfio_backend *b, unsigned index, uint64_t offset,
			    uint64_t size, void **host)
{
	struct vfio_fake *f = (struct vfio_fake *)b;
	const struct vfio_region_desc *d;
	bool ok = false;

	if (index > 5 || !f->desc[index].mappable || !inside(f, index, offset, size) ||
	    (offset | size) & 4095)
		return -EINVAL;
	d = &f->desc[index];
	ok = d->nr_areas == 0;
	for (unsigned i = 0; i < d->nr_areas && !ok; i++)
		ok = offset >= d->areas[i].offset &&
		     offset + size <= d->areas[i].offset + d->areas[i].size;
	if (!ok)
		return -EINVAL;
	f->mmaps++;
	*host = f->mem[index] + offset;
	return 0;
}

static void fake_region_munmap(struct vfio_backend *b, void *host, uint64_t size)
{
	(void)host; (void)size;
	((struct vfio_fake *)b)->munmaps++;
}

static int fake_set_irqs(struct vfio_backend *b, unsigned index, unsigned start, unsigned count,
			 const int *fds)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	if (index > 2)
		return -EINVAL;
	f->set_irqs_calls++;
	if (!count) {
		f->irq_enabled[index] = 0;
		return 0;
	}
	if (start + count > f->irq_count[index] || start + count > VFIO_FAKE_MAX_VECTORS)
		return -EINVAL;
	/* Like vfio-pci: only one index at a time. */
	for (unsigned i = 0; i < 3; i++)
		if (i != index && f->irq_enabled[i])
			return -EINVAL;
	for (unsigned i = 0; i < count; i++)
		f->irq_fd[index][start + i] = fds[i];
	if (start + count > f->irq_enabled[index])
		f->irq_enabled[index] = start + count;
	return 0;
}

static int fake_dma_map(struct vfio_backend *b, uint64_t iova, uint64_t size, void *host,
			bool writable)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	f->dma_map_calls++;
	if (!size || iova + size < iova)
		return -EINVAL;
	for (unsigned i = 0; i < f->nr_dma; i++)
		if (iova < f->dma[i].iova + f->dma[i].size && f->dma[i].iova < iova + size)
			return -EEXIST;
	if (f->nr_dma == VFIO_FAKE_MAX_DMA)
		return -ENOSPC;
	f->dma[f->nr_dma++] = (struct vfio_fake_dma){ iova, size, host, writable };
	return 0;
}

static int fake_dma_unmap(struct vfio_backend *b, uint64_t iova, uint64_t size)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	f->dma_unmap_calls++;
	for (unsigned i = 0; i < f->nr_dma; i++) {
		if (f->dma[i].iova == iova && f->dma[i].size == size) {
			f->dma[i] = f->dma[--f->nr_dma];
			return 0;
		}
	}
	return -ENOENT;
}

static int fake_reset(struct vfio_backend *b)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	if (!f->can_reset)
		return -EOPNOTSUPP;
	f->resets++;
	pci_set_word(&f->config[0x04], 0);
	return 0;
}

static int fake_ioeventfd(struct vfio_backend *b, unsigned index, uint64_t offset, unsigned width,
			  uint64_t data, int fd)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	if (f->no_ioeventfd)
		return -EOPNOTSUPP;
	for (unsigned i = 0; i < f->nr_ioev; i++) {
		struct vfio_fake_ioeventfd *e = &f->ioev[i];

		if (e->index == index && e->offset == offset && e->width == width && e->data == data) {
			if (fd != -1)
				return -EEXIST;
			*e = f->ioev[--f->nr_ioev];
			return 0;
		}
	}
	if (fd == -1)
		return -ENODEV;
	if (f->nr_ioev == VFIO_FAKE_MAX_IOEVENTFDS)
		return -ENOSPC;
	f->ioev[f->nr_ioev++] = (struct vfio_fake_ioeventfd){ index, width, offset, data, fd };
	return 0;
}

static void fake_destroy(struct vfio_backend *b)
{
	struct vfio_fake *f = (struct vfio_fake *)b;

	if (f->resets_at_destroy)
		*f->resets_at_destroy = f->resets;
	for (unsigned i = 0; i < VFIO_PCI_NUM_REGIONS; i++)
		if (f->mem[i])
			munmap(f->mem[i], f->desc[i].size);
	free(f);
}

static const struct vfio_backend_ops fake_ops = {
	.device_info = fake_device_info,
	.region_desc = fake_region_desc,
	.irq_count = fake_irq_count,
	.region_read = fake_region_read,
	.region_write = fake_region_write,
	.region_mmap = fake_region_mmap,
	.region_munmap = fake_region_munmap,
	.set_irqs = fake_set_irqs,
	.dma_map = fake_dma_map,
	.dma_unmap = fake_dma_unmap,
	.reset = fake_reset,
	.ioeventfd = fake_ioeventfd,
	.destroy = fake_destroy,
};
