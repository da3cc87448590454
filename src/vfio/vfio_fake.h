/*
 * An in-memory VFIO backend for unit tests and fuzz targets: config space,
 * BARs and a ROM held in this process, and a record of everything the model
 * asked for (IRQ eventfds, DMA maps, device-write ioeventfds, resets), so a
 * test can assert on it without a kernel.
 *
 * BAR memory is an anonymous shared mapping, so region_mmap() hands out a
 * pointer into it: a guest write through a mapped piece and a trapped write
 * land in the same bytes.
 */
#ifndef KICKVM_VFIO_FAKE_H
#define KICKVM_VFIO_FAKE_H

#include "kickvm/vfio_backend.h"

#define VFIO_FAKE_MAX_DMA   64
#define VFIO_FAKE_MAX_IOEVENTFDS 16
#define VFIO_FAKE_MAX_VECTORS 2048

struct vfio_fake {
	struct vfio_backend base;
	uint8_t config[4096];
	uint8_t config_wmask[4096];      /* bits the device takes from a write */
	unsigned config_size;            /* 256 or 4096 */
	struct vfio_region_desc desc[VFIO_PCI_NUM_REGIONS];
	uint8_t *mem[VFIO_PCI_NUM_REGIONS];  /* BARs and ROM contents */
	uint8_t next_cap;                /* where vfio_fake_add_cap puts the next one */
	bool can_reset;
	unsigned irq_count[3];

	/* What the model did. */
	unsigned resets;
	uint64_t region_reads, region_writes, mmaps, munmaps;
	unsigned set_irqs_calls;
	unsigned irq_enabled[3];         /* vectors enabled per index (0: off) */
	int irq_fd[3][VFIO_FAKE_MAX_VECTORS];
	struct vfio_fake_dma {
		uint64_t iova, size;
		void *host;
		bool writable;
	} dma[VFIO_FAKE_MAX_DMA];
	unsigned nr_dma;
	uint64_t dma_map_calls, dma_unmap_calls;
	struct vfio_fake_ioeventfd {
		unsigned index, width;
		uint64_t offset, data;
		int fd;
	} ioev[VFIO_FAKE_MAX_IOEVENTFDS];
	unsigned nr_ioev;
	bool no_ioeventfd;               /* answer -EOPNOTSUPP */
	int fail_config_reads;           /* this errno (negative) on every config read */
	unsigned *resets_at_destroy;     /* if set, gets @resets when destroyed */
};

/* A function with ids @vendor:@device, class @class_code, no BARs, no
 * capabilities, resettable.  NULL on allocation failure. */
struct vfio_fake *vfio_fake_new(const char *name, uint16_t vendor, uint16_t device,
				uint32_t class_code);
/* BAR @bar of @size (power of two) and @type (PCI_BAR_* bits); @mappable:
 * region_mmap works on it (on the whole of it unless areas are set). */
int vfio_fake_add_bar(struct vfio_fake *f, int bar, uint64_t size, uint8_t type, bool mappable);
/* Only these parts of BAR @bar may be mmapped. */
int vfio_fake_set_areas(struct vfio_fake *f, int bar, unsigned n, const uint64_t (*areas)[2]);
int vfio_fake_set_rom(struct vfio_fake *f, uint64_t size);
/* A capability @id of @size bytes, linked at the end of the list; its
 * offset, or a negative errno. */
int vfio_fake_add_cap(struct vfio_fake *f, uint8_t id, uint8_t size);
/* MSI-X with @nr vectors, table and PBA where given; the BAR reports
 * MSIX_MAPPABLE when @mappable.  Returns the capability offset. */
int vfio_fake_add_msix(struct vfio_fake *f, unsigned nr, int table_bar, uint32_t table_offset,
		       int pba_bar, uint32_t pba_offset, bool mappable);
/* MSI with 2^@log2_vectors vectors, 64-bit, per-vector masking if @maskable. */
int vfio_fake_add_msi(struct vfio_fake *f, unsigned log2_vectors, bool maskable);

struct vfio_fake *vfio_fake_of(struct vfio_backend *b);
/* The DMA map covering @iova, or NULL. */
const struct vfio_fake_dma *vfio_fake_dma_find(const struct vfio_fake *f, uint64_t iova);

#endif
