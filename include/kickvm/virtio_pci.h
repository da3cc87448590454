/*
 * The virtio 1.x modern PCI transport (virtio 1.2 §4.1): common config,
 * notify (notify_off_multiplier 4: every queue its own doorbell), ISR and
 * device config structures in one memory BAR, MSI-X in another.
 *
 * Host notifiers (docs/kvm-notes.md, "Host notifiers"): at DRIVER_OK one
 * ioeventfd per ready queue (len 0 at its own doorbell), all in one memory
 * transaction, then every queue kicked once so requests queued before are
 * processed; a reset, bus master cleared, or the device breaking (a driver
 * clearing DRIVER_OK without a reset breaks it) stop them, each handler run
 * once before its eventfd closes (bus master set again with DRIVER_OK still
 * on starts them again).  Bus master cleared also stops the device itself
 * (virtio_set_dma(): no guest memory touched, no interrupt, completions
 * held until it is set again); doorbells meanwhile are dropped, and the
 * start kick finds what they announced.  If they cannot be used the
 * device logs "falling back to userspace notify (slower)" and serves the
 * trapped doorbell writes itself.
 */
#ifndef KICKVM_VIRTIO_PCI_H
#define KICKVM_VIRTIO_PCI_H

#include <stdbool.h>

#include "pci.h"
#include "virtio.h"

#define VIRTIO_PCI_VENDOR         0x1af4
#define VIRTIO_PCI_DEVICE_BASE    0x1040   /* + virtio device id (modern) */
#define VIRTIO_PCI_NOTIFY_MULT    4

struct virtio_pci;

struct virtio_pci_opts {
	bool ioeventfd;                /* per device: on (default) or off */
	int slot;                      /* PCI slot, -1 for the first free */
};

/* Create the PCI function for @vdev (already virtio_dev_init()ed) and plug
 * it into @bus. */
int virtio_pci_create(struct pci_bus *bus, struct virtio_dev *vdev,
		      const struct virtio_pci_opts *opts, struct virtio_pci **out);
void virtio_pci_destroy(struct virtio_pci *vp);
struct pci_device *virtio_pci_device(struct virtio_pci *vp);
/* True while host notifiers (ioeventfds) serve the queues. */
bool virtio_pci_notifiers_active(const struct virtio_pci *vp);
/* Doorbell writes that reached the transport itself (userspace notify). */
uint64_t virtio_pci_trapped_notifies(const struct virtio_pci *vp);

/* Every doorbell write of queue @q the guest made, by the path it took.
 * doorbells = kvm + fallback + trapped, exactly, at any moment the guest is
 * not writing (a test compares it with the driver's own count). */
struct virtio_pci_doorbells {
	uint64_t doorbells;
	uint64_t kvm;          /* KVM's ioeventfd signalled the notifier */
	uint64_t fallback;     /* trapped, matched in userspace, same notifier */
	uint64_t trapped;      /* no notifier: served on the vCPU thread */
	uint64_t kicks;        /* not the guest's: the transport's own at start */
};
void virtio_pci_doorbells(struct virtio_pci *vp, unsigned q, struct virtio_pci_doorbells *out);

#endif
