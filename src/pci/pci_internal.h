/*
 * What the files of the PCI subsystem share and nobody else sees.
 *
 * Locks, outermost first:
 *   d->lock          one function: its config space, BAR mappings and every
 *                    hook (config_read/write, bus_master, reset), which may
 *                    block (virtio waits for its iothread)
 *   bus->lock        the bus: devices[], the pins (d->users), CF8; held only
 *                    for a lookup, never across a hook or while waiting for
 *                    a function's lock
 *   memory lock      (memory.h) a BAR remap is one transaction under d->lock
 *   msix->lock       table, PBA, enable/mask state; a leaf: held only around
 *                    eventfd writes and KVM routing ioctls
 * Device model locks (vdev->lock) may be taken under d->lock by hooks but
 * must never be held while taking d->lock.
 */
#ifndef KICKVM_PCI_INTERNAL_H
#define KICKVM_PCI_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "kickvm/pci.h"

/* Standard header registers (PCI Local Bus 3.0 §6.1). */
#define PCI_VENDOR_ID          0x00
#define PCI_DEVICE_ID          0x02
#define PCI_COMMAND            0x04
#define PCI_STATUS             0x06
#define PCI_REVISION_ID        0x08
#define PCI_CLASS_PROG         0x09
#define PCI_CACHE_LINE_SIZE    0x0c
#define PCI_LATENCY_TIMER      0x0d
#define PCI_HEADER_TYPE        0x0e
#define PCI_BASE_ADDRESS_0     0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID       0x2e
#define PCI_ROM_ADDRESS        0x30
#define PCI_CAPABILITY_LIST    0x34
#define PCI_INTERRUPT_LINE     0x3c
#define PCI_INTERRUPT_PIN      0x3d
#define PCI_STD_HEADER_SIZE    0x40
#define PCI_LEGACY_CONFIG_SIZE 0x100

#define PCI_COMMAND_IO           0x0001
#define PCI_COMMAND_MEMORY       0x0002
#define PCI_COMMAND_MASTER       0x0004
#define PCI_COMMAND_PARITY       0x0040
#define PCI_COMMAND_SERR         0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_CAP_LIST      0x0010
/* Error bits the device sets and the driver clears by writing 1. */
#define PCI_STATUS_W1C           0xf900

#define PCI_CAP_ID_MSIX          0x11

struct pci_bus {
	struct pci_host_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t unpinned;                /* some d->users dropped to 0 */
	struct pci_device *devices[256];        /* bus 0, by devfn */
	struct pci_device host_bridge;
	struct mem_region *ecam, *cf8_port, *cfc_port;
	bool placed[3];                         /* each of the three above */
	_Atomic uint32_t cf8;                   /* the legacy address register */
};

/* pci_device.c; the function's lock is held. */
uint32_t pci_device_config_read(struct pci_device *d, uint32_t offset, unsigned len);
void pci_device_config_write(struct pci_device *d, uint32_t offset, uint32_t value,
			     unsigned len);
/* Map or unmap every BAR as the command register and BAR registers say,
 * in one memory transaction; with @force_off everything is unmapped. */
void pci_device_update_mappings(struct pci_device *d, bool force_off);
/* Power-on values of the writable registers (command, BARs, ...). */
void pci_device_reset_config(struct pci_device *d);

/* msix.c; the function's lock is held. */
/* A config write touched bytes [offset, offset + len). */
void msix_config_written(struct pci_device *d, uint32_t offset, unsigned len);

#endif
