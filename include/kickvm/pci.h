/*
 * PCI: a host bridge with ECAM (MMCONFIG) and legacy 0xCF8/0xCFC config
 * access, config space emulation with per-bit write masks and capability
 * lists, BARs that the guest sizes and places (the BAR's region, and every
 * ioeventfd on it, moves with it), command-register decode and bus master,
 * and MSI-X with table and PBA emulation whose vectors reach KVM through an
 * MSI route fired by an irqfd.
 *
 * The layout mirrors QEMU's microvm with pcie=on so one guest runs on both:
 * ECAM at PCI_ECAM_BASE, a 32-bit MMIO window for BARs, an I/O window.
 *
 * Config accesses from vCPU threads are serialised per function: each runs
 * under the function's lock (struct pci_device's), and so does every hook
 * (config_read, config_write, bus_master, reset).  Hooks may block (virtio
 * stops its host notifiers and drains its requests from config_write through
 * its config access window, and from bus_master and reset): that holds up
 * accesses to the same function only.  The bus lock is taken for a lookup
 * alone, never across a hook, so the rest of the bus keeps answering.
 * All int-returning calls return 0 or a negative errno.
 */
#ifndef KICKVM_PCI_H
#define KICKVM_PCI_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include "event.h"

struct mem_region;
struct guest_mem;
struct kvm;

#define PCI_ECAM_BASE        0xe0000000ull
#define PCI_ECAM_SIZE        0x10000000ull    /* buses 0-255 */
#define PCI_MMIO_WINDOW      0xc0000000ull    /* 32-bit BARs go here */
#define PCI_MMIO_WINDOW_SIZE 0x20000000ull
#define PCI_IO_WINDOW        0xc000
#define PCI_IO_WINDOW_SIZE   0x4000
#define PCI_CONFIG_ADDR_PORT 0xcf8
#define PCI_CONFIG_DATA_PORT 0xcfc

#define PCI_CONFIG_SPACE_SIZE  4096           /* PCIe extended config space */
#define PCI_NUM_BARS           6
#define PCI_BAR_UNMAPPED       (~0ull)

/* BAR types (low bits of the BAR register). */
#define PCI_BAR_IO             0x1
#define PCI_BAR_MEM32          0x0
#define PCI_BAR_MEM64          0x4
#define PCI_BAR_PREFETCH       0x8

struct pci_device;
struct pci_bus;

struct pci_bar {
	uint64_t size;             /* power of two; 0: BAR not implemented */
	uint8_t type;              /* PCI_BAR_* */
	struct mem_region *mr;     /* what appears in the address space */
	uint64_t addr;             /* where it is mapped, PCI_BAR_UNMAPPED if not */
};

struct pci_device_ops {
	/* Before a config read of [offset, offset + len) is answered from
	 * d->config: refresh registers that mirror other state. Optional. */
	void (*config_read)(struct pci_device *d, uint32_t offset, unsigned len);
	/* After the default handling of a config write (masks applied, BARs
	 * and command register acted on). Optional. */
	void (*config_write)(struct pci_device *d, uint32_t offset, uint32_t value,
			     unsigned len);
	/* Bus master enable changed (virtio stops its notifiers when cleared).
	 * Called with the state current at the call, so a value may repeat.
	 * Optional. */
	void (*bus_master)(struct pci_device *d, bool enabled);
	/* Function-level / bus reset. Optional. */
	void (*reset)(struct pci_device *d);
};

struct msix;

struct pci_device {
	char name[32];
	struct pci_bus *bus;
	uint8_t devfn;                         /* slot << 3 | function */
	uint8_t config[PCI_CONFIG_SPACE_SIZE];
	uint8_t wmask[PCI_CONFIG_SPACE_SIZE];  /* bits the guest may write */
	uint8_t w1cmask[PCI_CONFIG_SPACE_SIZE];/* bits the guest clears by writing 1 */
	struct pci_bar bars[PCI_NUM_BARS];
	const struct pci_device_ops *ops;
	void *opaque;                          /* the device model's */
	struct msix *msix;                     /* NULL without MSI-X */
	uint16_t cap_end;                      /* next free capability byte */
	pthread_mutex_t lock;                  /* config accesses and hooks */
	unsigned users;                        /* accesses in flight (bus lock) */
};

/* What the bus needs from its surroundings: a KVM may be NULL (unit tests),
 * then MSI-X interrupts go to @msi_hook instead. */
struct pci_host_config {
	struct mem_region *system_root;        /* ECAM and memory BARs go here */
	struct mem_region *io_root;            /* 0xCF8/0xCFC and I/O BARs */
	struct kvm *kvm;
	void (*msi_hook)(void *opaque, uint64_t addr, uint32_t data);
	void *msi_hook_opaque;
};

/* The host bridge (00:00.0) with ECAM and the legacy ports. */
int pci_bus_create(const struct pci_host_config *cfg, struct pci_bus **out);
/* Unplugs nothing: devices must have been removed. */
void pci_bus_destroy(struct pci_bus *bus);
/* Plug @d at @slot (-1: the first free one, from 1). Function 0 only. */
int pci_bus_add_device(struct pci_bus *bus, struct pci_device *d, int slot);
void pci_bus_remove_device(struct pci_bus *bus, struct pci_device *d);
/* Reset every device (and the bus's own state). */
void pci_bus_reset(struct pci_bus *bus);
struct kvm *pci_bus_kvm(const struct pci_bus *bus);
/* Where memory BARs go (for a device that places regions of its own). */
struct mem_region *pci_bus_system_root(const struct pci_bus *bus);
/* Deliver one MSI message the slow way: KVM_SIGNAL_MSI, or the msi_hook
 * without KVM.  Any thread. */
void pci_bus_signal_msi(struct pci_bus *bus, uint64_t addr, uint32_t data);

/* Config accesses as the guest makes them (ECAM or CF8/CFC land here):
 * bus number, devfn, offset. Reads of absent functions return all ones. */
uint32_t pci_bus_config_read(struct pci_bus *bus, uint8_t busnr, uint8_t devfn,
			     uint32_t offset, unsigned len);
void pci_bus_config_write(struct pci_bus *bus, uint8_t busnr, uint8_t devfn,
			  uint32_t offset, uint32_t value, unsigned len);

/* ---- building a device -------------------------------------------------------- */

/* Zero @d and fill the standard header: ids, class (24-bit class code),
 * header type 0, capability list bit, write masks of the standard registers. */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor,
		     uint16_t device, uint32_t class_code, uint8_t revision,
		     uint16_t subsys_vendor, uint16_t subsys_id,
		     const struct pci_device_ops *ops, void *opaque);
/* Declare BAR @bar of @type backed by @mr (its size is the BAR size; a power
 * of two, at least 16 bytes for memory and 4 for I/O).  A 64-bit BAR uses
 * @bar and @bar + 1. The region is mapped when the guest enables decode. */
int pci_register_bar(struct pci_device *d, int bar, uint8_t type, struct mem_region *mr);
/* Add a capability of @size bytes with @id; returns its offset (>= 0x40) or
 * a negative errno.  The caller fills the body (and its write masks). */
int pci_add_capability(struct pci_device *d, uint8_t id, uint8_t size);
/* Offset of the first capability @id, 0 if none. */
uint8_t pci_find_capability(const struct pci_device *d, uint8_t id);

bool pci_bus_master_enabled(const struct pci_device *d);
bool pci_memory_enabled(const struct pci_device *d);

/* Little-endian config space helpers (no masks applied). */
static inline void pci_set_byte(uint8_t *p, uint8_t v) { p[0] = v; }
static inline void pci_set_word(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void pci_set_long(uint8_t *p, uint32_t v)
{
	pci_set_word(p, (uint16_t)v);
	pci_set_word(p + 2, (uint16_t)(v >> 16));
}
static inline uint16_t pci_get_word(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t pci_get_long(const uint8_t *p)
{
	return (uint32_t)pci_get_word(p) | (uint32_t)pci_get_word(p + 2) << 16;
}

/* ---- MSI-X ------------------------------------------------------------------------
 * The table and PBA are regions laid over the given BAR(s) at priority 1, so
 * the rest of the BAR stays the device's.  Each vector has a KVM MSI route
 * (updated when the guest writes the table) and an irqfd: msix_notify() is
 * one eventfd write, no ioctl.  A masked vector (or function mask, or MSI-X
 * disabled) records the interrupt in the PBA instead; unmasking delivers it.
 */
int msix_init(struct pci_device *d, unsigned nr_vectors, int table_bar,
	      uint32_t table_offset, int pba_bar, uint32_t pba_offset);
/* The same over a capability the function already has at @cap_offset (an
 * assigned device's; 0: add one).  Its control, table and PBA words are
 * rewritten to @nr_vectors and the given places. */
int msix_init_at(struct pci_device *d, uint8_t cap_offset, unsigned nr_vectors, int table_bar,
		 uint32_t table_offset, int pba_bar, uint32_t pba_offset);
void msix_uninit(struct pci_device *d);

/*
 * Vectors raised outside kickvm (an assigned device signals one eventfd per
 * vector).  Called with the MSI-X lock held, so they must not call back into
 * msix_*.  enable(): MSI-X was enabled (after every vector got its route) or
 * disabled (before).  route(): vector @v must from now on signal @irqfd, the
 * vector's KVM irqfd (the interrupt then never passes through kickvm), or,
 * with -1 (masked, or no irqfd), the owner's own eventfd, whose signals the
 * owner passes to msix_notify() (held pending while masked).  route() returns
 * true when the owner's fd was signalled and not yet passed on: the vector
 * is then left pending, delivered when it can be.
 */
struct msix_source_ops {
	void (*enable)(void *opaque, bool on);
	bool (*route)(void *opaque, unsigned vector, int irqfd);
};
void msix_set_source(struct pci_device *d, const struct msix_source_ops *ops, void *opaque);
/* Guest accesses to the table and PBA (all trapped). */
uint64_t msix_table_accesses(const struct pci_device *d);
/* Vectors whose source signals KVM directly right now. */
unsigned msix_vectors_on_irqfd(const struct pci_device *d);
/* Raise @vector. Any thread. */
void msix_notify(struct pci_device *d, unsigned vector);
bool msix_enabled(const struct pci_device *d);
bool msix_masked(const struct pci_device *d, unsigned vector);
bool msix_pending(const struct pci_device *d, unsigned vector);
/* Interrupts delivered (not left pending) on @vector so far. */
uint64_t msix_delivered(const struct pci_device *d, unsigned vector);
/* Back to power-on state: all vectors masked, disabled, PBA clear. */
void msix_reset(struct pci_device *d);

#endif
