/*
 * Guest-side PCI: ECAM config access, enumeration of bus 0, BAR sizing and
 * placement, capability lists and MSI-X.
 *
 * Config space is reached only through ECAM (MMIO), never 0xCF8/0xCFC, so
 * all of this works at CPL3 - and should run there: every call is a few
 * MMIO accesses plus straight C, and CPL0 code is emulated on our KVM.
 *
 * Layout (kickvm's include/kickvm/pci.h, and QEMU's microvm with pcie=on):
 * ECAM at 0xe0000000 unless the ACPI MCFG table or an `ecam=` command-line
 * value says otherwise; memory BARs go to 0xc0000000-0xdfffffff (64-bit
 * BARs too, with a zero upper half); I/O BARs to 0xc000-0xffff.  QEMU's
 * microvm decodes no I/O window at all: I/O BARs get addresses but nothing
 * answers there, so drivers here use memory BARs only.
 */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_ECAM_DEFAULT   0xe0000000ull
#define PCI_MEM_BASE       0xc0000000ull
#define PCI_MEM_LIMIT      0xe0000000ull   /* exclusive */
#define PCI_IO_BASE        0xc000u
#define PCI_IO_LIMIT       0x10000u        /* exclusive */
#define PCI_MAX_DEVICES    32

/* Standard header registers (PCI 3.0 §6.2). */
#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_CLASS_REV      0x08
#define PCI_HEADER_TYPE    0x0e
#define PCI_BAR0           0x10
#define PCI_SUBSYS_VENDOR  0x2c
#define PCI_SUBSYS_ID      0x2e
#define PCI_CAP_PTR        0x34

#define PCI_CMD_IO         0x0001
#define PCI_CMD_MEM        0x0002
#define PCI_CMD_MASTER     0x0004
#define PCI_CMD_INTX_OFF   0x0400
#define PCI_STATUS_CAPS    0x0010

#define PCI_CAP_MSI        0x05
#define PCI_CAP_MSIX       0x11
#define PCI_CAP_VENDOR     0x09

enum pci_bar_kind { PCI_BAR_NONE, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };

struct pci_bar {
	uint64_t addr;          /* where it was placed; 0 when kind is NONE */
	uint64_t size;
	uint8_t kind;           /* enum pci_bar_kind; the upper half of a
				 * 64-bit BAR is NONE */
	bool prefetch;
};

struct pci_dev {
	uint8_t bus, slot, fn;
	uint64_t cfg;           /* ECAM address of the function's config space */
	uint16_t vendor, device, subsys_vendor, subsys_id;
	uint32_t class_code;    /* 24 bits: class, subclass, prog-if */
	uint8_t header_type;    /* without the multi-function bit */
	struct pci_bar bars[6];
};

struct pci_msix {
	struct pci_dev *dev;
	uint8_t cap;            /* config offset of the capability */
	uint16_t nr_entries;
	uint64_t table;         /* address of entry 0 */
	uint64_t pba;
};

/* Find ECAM: @override (from the command line) if non-zero, else the base
 * the ACPI MCFG table gives for segment 0 (via the PVH RSDP), else
 * PCI_ECAM_DEFAULT.  Returns the base in use; @source says which it was. */
uint64_t pci_init(uint64_t override, const char **source);
uint64_t pci_ecam_base(void);

/* Scan bus 0, size and place every BAR of every type-0 function (decode is
 * left off: pci_enable() turns it on).  Returns the number of functions;
 * idempotent: a second call returns the same list. */
unsigned pci_enumerate(void);
struct pci_dev *pci_device(unsigned index);   /* NULL past the end */
/* The @nth (0-based) function with @vendor and a device id in
 * [@dev_lo, @dev_hi], or NULL. */
struct pci_dev *pci_find(uint16_t vendor, uint16_t dev_lo, uint16_t dev_hi, unsigned nth);

uint8_t pci_read8(const struct pci_dev *d, uint32_t off);
uint16_t pci_read16(const struct pci_dev *d, uint32_t off);
uint32_t pci_read32(const struct pci_dev *d, uint32_t off);
void pci_write8(const struct pci_dev *d, uint32_t off, uint8_t v);
void pci_write16(const struct pci_dev *d, uint32_t off, uint16_t v);
void pci_write32(const struct pci_dev *d, uint32_t off, uint32_t v);

/* Set @bits (PCI_CMD_*) in the command register; INTx is always disabled
 * (drivers here use MSI-X or poll). */
void pci_enable(struct pci_dev *d, uint16_t bits);
/* Clear bus master (and nothing else). */
void pci_disable_master(struct pci_dev *d);

/* Offset of the first capability with @id after @after (0: from the start
 * of the list), or 0.  The walk is bounded, so a looped list ends. */
uint8_t pci_find_cap(const struct pci_dev *d, uint8_t id, uint8_t after);

/* MSI (PCI 3.0 §6.8.1), one vector: deliver it as @vector to the local
 * APIC @apic_id (physical destination, fixed delivery, edge), unmasked, and
 * enable MSI.  Returns 0, or -1 when the function has no MSI capability. */
int pci_msi_enable(struct pci_dev *d, uint32_t apic_id, uint8_t vector);
void pci_msi_disable(struct pci_dev *d);

/* MSI-X (PCI 3.0 §6.8.2).  init: find the capability, locate table and
 * PBA in their (already placed) BARs, mask every entry, then enable MSI-X
 * with the function mask set.  Returns 0 or -1 (no MSI-X, or a BIR that
 * names no memory BAR). */
int pci_msix_init(struct pci_dev *d, struct pci_msix *m);
/* Program entry @entry to deliver @vector to the local APIC @apic_id
 * (physical destination, fixed delivery, edge) and unmask it. */
void pci_msix_set(struct pci_msix *m, unsigned entry, uint32_t apic_id, uint8_t vector);
void pci_msix_mask(struct pci_msix *m, unsigned entry, bool masked);
void pci_msix_function_mask(struct pci_msix *m, bool masked);
bool pci_msix_pending(struct pci_msix *m, unsigned entry);
void pci_msix_disable(struct pci_msix *m);

#endif
