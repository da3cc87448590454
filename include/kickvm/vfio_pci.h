/*
 * The one VFIO device model: a PCI function of kickvm's bus whose device
 * lives outside the VMM, reached through a struct vfio_backend (kernel
 * vfio-pci, vfio-user, or the in-memory fake of the tests).
 *
 * What the guest sees:
 *  - Config space virtualized: BARs, the ROM BAR, interrupt line/pin, the
 *    capability headers and MSI/MSI-X are kickvm's (emulated); everything
 *    else is read from and written to the device.  Bus master, memory and
 *    I/O enable are kept by kickvm (to decode the BARs) and also reach the
 *    device.  INTx is not offered (interrupt pin 0): MSI or MSI-X only.
 *  - BARs mapped, not trapped: every part of a memory BAR the backend lets
 *    us mmap (its sparse areas; with MSIX_MAPPABLE and no areas, all of it
 *    but the MSI-X table and PBA pages) is device RAM ("ramd") inside the
 *    BAR, so KVM maps it as a memory slot and guest accesses cause no exit.
 *    The rest is trapped and forwarded to the backend's region read/write.
 *    Mapped pieces are present only while the device's memory decode is on.
 *  - MSI-X table and PBA trapped and emulated (src/pci/msix.c); each
 *    unmasked vector's eventfd given to the device is the vector's KVM irqfd,
 *    a masked one signals an eventfd kickvm watches and holds pending.  MSI
 *    the same way, vector by vector.
 *  - DMA: all guest RAM (not device RAM) is DMA-mapped, kept in step with the
 *    memory map by a listener on the memory root.
 *  - Reset at creation, on bus reset and at destroy.
 *
 * Layout: the BARs the guest sees and where MSI-X lives in them come from a
 * struct vfio_layout.  Without a planner it is the physical one; a planner
 * (MSI-X relocation) may grow a BAR, add one, and move the table and PBA.
 * Physical offsets (where the device has them) and virtual ones (where the
 * guest finds them) are kept in separate fields and never mixed.
 */
#ifndef KICKVM_VFIO_PCI_H
#define KICKVM_VFIO_PCI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vfio_backend.h"

struct pci_bus;
struct pci_device;
struct mem_region;
struct event_loop;
struct vfio_pci;

/* x-msix-relocation: off, auto, or a BAR number. */
#define VFIO_MSIX_RELOC_OFF  (-2)
#define VFIO_MSIX_RELOC_AUTO (-1)
/* 0..5: bar0..bar5 */

struct vfio_bar_layout {
	uint64_t size;             /* 0: no BAR (or the upper half of a 64-bit one) */
	uint8_t type;              /* PCI_BAR_IO, PCI_BAR_MEM64, PCI_BAR_PREFETCH bits */
};

struct vfio_msix_place {
	int table_bar, pba_bar;    /* BAR index */
	uint64_t table_offset, pba_offset;
};

struct vfio_layout {
	struct vfio_bar_layout bars[6];
	bool has_msix;
	unsigned msix_vectors;
	struct vfio_msix_place msix;   /* in these BARs */
};

/*
 * Turns the physical layout into the one the guest sees, for relocation
 * mode @mode (VFIO_MSIX_RELOC_*).  The virtual BARs must be at least the
 * physical ones.  0, or a negative errno with *@why set (the model then
 * refuses the device).
 */
typedef int vfio_layout_planner(const struct vfio_layout *phys, int mode,
				struct vfio_layout *virt, const char **why);

/*
 * The MSI-X relocation planner (docs/vfio.md: `auto` grows a BAR the device
 * has, else adds one after its last used slot, else leaves MSI-X alone;
 * refusals: an I/O BAR, the upper half of a 64-bit BAR, a BAR that cannot
 * grow, barN on a device without MSI-X).  Once MSI-X has moved, the whole
 * physical BAR passes through: mapped where the backend allows mmap of the
 * device's own table pages, trapped and forwarded where not.
 */
vfio_layout_planner vfio_msix_reloc_planner;

/* A device-write ioeventfd asked for on the command line
 * (x-device-ioeventfd=BAR:OFFSET:WIDTH:DATA): @offset is a physical BAR
 * offset, @width 1, 2, 4 or 8 bytes. */
struct vfio_pci_ioeventfd_spec {
	unsigned bar;
	uint64_t offset;
	unsigned width;
	uint64_t data;
};
#define VFIO_PCI_MAX_STATIC_IOEVENTFDS 16

struct vfio_pci_opts {
	const char *id;                /* name in dumps and stats ("vfio0") */
	int slot;                      /* PCI slot, -1: first free */
	int msix_relocation;           /* VFIO_MSIX_RELOC_*; default OFF */
	vfio_layout_planner *planner;  /* NULL: physical layout (mode must be OFF) */
	bool no_mmap;                  /* x-no-mmap=on: trap every BAR access */
	bool ioeventfd;                /* off: device-write ioeventfds are performed by
					* kickvm's handler, never by the backend */
	/* Static device-write ioeventfds, added at creation (a rules error
	 * refuses the device with -EDOM). */
	const struct vfio_pci_ioeventfd_spec *static_ioeventfds;
	unsigned nr_static_ioeventfds;
	struct event_loop *loop;       /* watches the masked vectors' eventfds */
	struct mem_region *dma_root;   /* guest RAM lives here (the memory root);
					* NULL: no DMA mappings */
};

void vfio_pci_opts_defaults(struct vfio_pci_opts *o);

/*
 * Build the function over @b (taken over: destroyed with the device, or on
 * failure) and plug it into @bus.  *@why says what went wrong.  -EDOM: the
 * options do not fit this device (the planner refused the relocation, or a
 * static device-write ioeventfd broke the rules): a bad command line.
 */
int vfio_pci_create(struct pci_bus *bus, struct vfio_backend *b, const struct vfio_pci_opts *o,
		    struct vfio_pci **out, const char **why);
/* Interrupts off, DMA unmapped, device reset, unplugged, backend destroyed. */
void vfio_pci_destroy(struct vfio_pci *v);

struct pci_device *vfio_pci_device(struct vfio_pci *v);
struct vfio_backend *vfio_pci_backend(struct vfio_pci *v);
/* The layout the guest sees, and the device's own (physical offsets). */
const struct vfio_layout *vfio_pci_layout(const struct vfio_pci *v);
const struct vfio_layout *vfio_pci_phys_layout(const struct vfio_pci *v);
/* The trapped region of BAR @bar (NULL if none): where device-write
 * ioeventfds go.  Only trapped offsets reach KVM's ioeventfds; a mapped
 * page never does (x-no-mmap=on traps them all). */
struct mem_region *vfio_pci_bar_trap(struct vfio_pci *v, int bar);
/* ioeventfd=on|off of this device. */
bool vfio_pci_ioeventfd_allowed(const struct vfio_pci *v);

/*
 * Device-write ioeventfds (docs/vfio.md): a guest write of @data, @width
 * bytes (1/2/4/8), at @offset of BAR @bar (a physical offset, below the
 * device's own BAR size) is performed by the backend (the kernel:
 * VFIO_DEVICE_IOEVENTFD) with no exit to kickvm, or, where the backend
 * refuses or ioeventfd=off, by kickvm's handler through the region.  The
 * KVM ioeventfd sits on the BAR's trapped region, so it only takes writes
 * the BAR does not map (x-no-mmap=on, or pages the kernel will not mmap).
 * @dynamic entries (hot-write promotion) are dropped by a device reset;
 * static ones (the command line) stay until the device goes.  The
 * kernel's errnos for the kernel's rules on every backend: -EINVAL (width,
 * not a BAR, beyond the BAR, over the device's MSI-X table), -EEXIST,
 * -ENOSPC (1001st); -ENODEV to remove one that is not there.  Any thread,
 * including a trapped access on a vCPU.
 */
int vfio_pci_add_device_ioeventfd(struct vfio_pci *v, unsigned bar, uint64_t offset,
				  unsigned width, uint64_t data, bool dynamic);
int vfio_pci_del_device_ioeventfd(struct vfio_pci *v, unsigned bar, uint64_t offset,
				  unsigned width, uint64_t data);
/* `info ioeventfds`: the device's entries and the path each is on, e.g.
 *   "  bar0+0x4 len 4 data 0x600dcafe static: kvm -> kernel". */
void vfio_pci_dump_ioeventfds(struct vfio_pci *v, FILE *out);
/* The device failed (a backend call did): accesses are dropped from now on. */
bool vfio_pci_failed(const struct vfio_pci *v);

/* Counting, not timing: how each access reached the device. */
struct vfio_pci_stats {
	uint64_t trapped_reads, trapped_writes;   /* BAR accesses forwarded */
	uint64_t config_reads, config_writes;     /* guest config accesses */
	uint64_t msix_table_accesses;             /* table and PBA, emulated */
	uint64_t irqs_through_kickvm;             /* signals on the held fds */
	unsigned vectors_on_irqfd;                /* straight to KVM right now */
	uint64_t mapped_bytes;                    /* device RAM in memory slots */
	uint64_t dma_maps, dma_unmaps, dma_bytes; /* guest RAM the device reaches */
	uint64_t resets;
	/* Device-write ioeventfds: entries on each writer, and what kickvm
	 * saw (writes the kernel performs are out of its sight). */
	unsigned ioeventfds, ioeventfds_by_kernel, ioeventfds_by_handler;
	uint64_t ioeventfd_userspace_signals, ioeventfd_handler_runs, ioeventfd_handler_writes;
	uint64_t ioeventfd_dropped, ioeventfd_errors;
};
void vfio_pci_get_stats(struct vfio_pci *v, struct vfio_pci_stats *out);
/* Stats as --stats prints them, with the mapped ranges (0 exits there). */
void vfio_pci_print_stats(struct vfio_pci *v, FILE *out);

/* Kernel vfio-pci: open @bdf (canonical) as a backend.  *@why as for
 * vfio_dev_open(). */
int vfio_kernel_open(const char *bdf, struct vfio_backend **out, const char **why);

#endif
