/*
 * What the files of the VFIO device model share (vfio_pci.c: creation,
 * config space, reset, stats; vfio_bars.c: BARs and the ROM; vfio_irq.c:
 * MSI-X and MSI; vfio_dma.c: the DMA listener).
 *
 * Locking: config accesses and reset run under the PCI bus lock (pci.h);
 * trapped BAR accesses run on vCPU threads without it and touch only the
 * backend and atomic counters; the held-interrupt handlers run in the
 * model's event loop and go through msix_notify()/the MSI lock.
 */
#ifndef KICKVM_VFIO_PCI_INTERNAL_H
#define KICKVM_VFIO_PCI_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "kickvm/event.h"
#include "kickvm/pci.h"
#include "kickvm/vfio_pci.h"

#define VFIO_MAX_PIECES   8     /* mapped pieces per BAR */
#define VFIO_MAX_MSI      32

struct vfio_piece {
	uint64_t offset, size;      /* in the BAR (physical = virtual below the
				     * physical size) */
	void *host;
	struct mem_region *mr;      /* "ramd" */
};

struct vfio_bar {
	uint64_t phys_size;         /* what the device has (0: an added BAR) */
	uint64_t size;              /* what the guest sees */
	uint8_t type;
	struct mem_region *container, *trap;
	struct vfio_piece pieces[VFIO_MAX_PIECES];
	unsigned nr_pieces;
	bool pieces_in;             /* placed in the container */
	struct vfio_pci *owner;     /* the trap's opaque is the BAR */
	int index;
};

struct vfio_msi_vec {
	struct vfio_pci *owner;
	unsigned index;
	struct event_notifier held; /* the device signals this while masked */
	/* MSI only (MSI-X keeps these in msix.c): */
	struct event_notifier irqfd;/* bound to the vector's KVM route */
	int gsi;
	bool kvm_failed;
	uint64_t addr;              /* the message the route carries */
	uint32_t data;
	int source_fd;              /* the fd the device was given */
	bool pending;
};

struct vfio_pci {
	struct pci_device dev;
	struct vfio_backend *b;
	struct vfio_pci_opts opts;
	char id[32];
	struct vfio_region_desc desc[VFIO_PCI_NUM_REGIONS];
	unsigned num_regions;
	bool can_reset;
	uint16_t config_size;       /* the device's: 256 or 4096 */
	/* Per config byte: bits kickvm keeps (read from dev.config) and bits a
	 * guest write passes to the device.  A bit may be both (command decode). */
	uint8_t emu[PCI_CONFIG_SPACE_SIZE];
	uint8_t fwd[PCI_CONFIG_SPACE_SIZE];

	struct vfio_layout phys, virt;
	struct vfio_bar bars[PCI_NUM_BARS];
	bool device_mem_on;         /* the device's own memory decode, as forwarded */

	/* The ROM BAR: read-only, trapped; hidden when the device has none. */
	struct mem_region *rom;
	uint64_t rom_size, rom_addr;

	/* MSI-X */
	uint8_t msix_cap;
	bool msix_on;               /* the device's MSI-X index is enabled */
	struct vfio_msi_vec *msix_vec;
	unsigned msix_nr;

	/* MSI (emulated capability, vectors like MSI-X's) */
	uint8_t msi_cap;
	unsigned msi_max;           /* vectors the device offers */
	unsigned msi_nr;            /* enabled on the device; 0: off */
	bool msi_64, msi_pvm;
	uint32_t msi_mask;
	pthread_mutex_t msi_lock;
	struct vfio_msi_vec msi_vec[VFIO_MAX_MSI];

	/* Device-write ioeventfds (vfio_devioev.c) */
	struct vfio_ioeventfd_set *ioev;

	/* DMA */
	struct address_space *dma_as;

	bool failed;
	_Atomic uint64_t trapped_reads, trapped_writes, config_reads, config_writes;
	_Atomic uint64_t irqs_through_kickvm, errors;
	_Atomic uint64_t dma_maps, dma_unmaps, dma_bytes, resets;
};

/* vfio_pci.c */
void vfio_pci_error(struct vfio_pci *v, const char *what, int err);

/* vfio_bars.c */
int vfio_bars_create(struct vfio_pci *v);
void vfio_bars_destroy(struct vfio_pci *v);
/* The device's memory decode is now @on: place or remove the mapped pieces. */
void vfio_bars_device_memory(struct vfio_pci *v, bool on);
/* The guest wrote the command register or the ROM BAR. */
void vfio_rom_update(struct vfio_pci *v);
void vfio_rom_unmap(struct vfio_pci *v);
uint64_t vfio_bars_mapped_bytes(const struct vfio_pci *v);
void vfio_bars_print(struct vfio_pci *v, FILE *out);

/* vfio_irq.c */
int vfio_irq_create(struct vfio_pci *v);
void vfio_irq_destroy(struct vfio_pci *v);
/* A config write touched [offset, offset + len) of the MSI capability. */
void vfio_msi_config_written(struct vfio_pci *v, uint32_t offset, unsigned len);
/* A config read touches the capability: bring the pending bits up to date. */
void vfio_msi_config_read(struct vfio_pci *v, uint32_t offset, unsigned len);
/* Interrupts off on the device (before a reset). */
void vfio_irq_reset(struct vfio_pci *v);
unsigned vfio_irq_on_irqfd(struct vfio_pci *v);

/* vfio_devioev.c */
/* The device's set, with the static entries of the options: -EDOM (and
 * *@why) when one breaks the rules. */
int vfio_devioev_create(struct vfio_pci *v, const char **why);
void vfio_devioev_destroy(struct vfio_pci *v);
/* Device reset: the dynamic entries go, the static ones stay. */
void vfio_devioev_reset(struct vfio_pci *v);
/* Fill the ioeventfd fields of @s. */
void vfio_devioev_stats(struct vfio_pci *v, struct vfio_pci_stats *s);

/* vfio_dma.c */
int vfio_dma_start(struct vfio_pci *v);
void vfio_dma_stop(struct vfio_pci *v);

#endif
