/* Between virtio_pci.c (registers) and virtio_pci_notify.c (host notifiers). */
#ifndef KICKVM_VIRTIO_PCI_INTERNAL_H
#define KICKVM_VIRTIO_PCI_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>

#include "kickvm/memory.h"
#include "kickvm/virtio_pci.h"

#define BAR_REGS          4
#define BAR_MSIX          1
#define BAR_REGS_SIZE     0x4000
#define BAR_MSIX_SIZE     0x1000
#define WINDOW            0x1000
#define OFF_COMMON        0x0000
#define OFF_ISR           0x1000
#define OFF_DEVICE        0x2000
#define OFF_NOTIFY        0x3000
#define MSIX_PBA_OFFSET   0x800

#define PCI_CAP_ID_VNDR   0x09
#define CFG_COMMON        1
#define CFG_NOTIFY        2
#define CFG_ISR           3
#define CFG_DEVICE        4
#define CFG_PCI           5
#define CAP_LEN           16           /* struct virtio_pci_cap */
#define CAP_NOTIFY_LEN    20           /* + notify_off_multiplier */
#define CAP_PCI_CFG_LEN   20           /* + pci_cfg_data[4] */
#define COMMON_SIZE       0x38         /* up to queue_device, no 1.2 extras */

struct queue_ref {
	struct virtio_pci *vp;
	unsigned q;
};

struct virtio_pci {
	struct pci_device pci;
	struct virtio_dev *vdev;
	bool ioeventfd;
	unsigned nr_queues, nr_vectors;
	struct mem_region *bar_regs, *bar_msix;
	struct mem_region *common_mr, *isr_mr, *device_mr, *notify_mr;
	struct queue_ref qref[VIRTIO_MAX_QUEUES];
	uint8_t cfg_cap;               /* the PCI config access capability */

	/* Selectors, under vdev->lock. */
	uint32_t dfselect, gfselect;
	uint16_t queue_sel;

	pthread_mutex_t ctrl_lock;
	bool bus_master;               /* ctrl_lock; mirrored below for notify */
	bool start_failed;             /* until reset: serve doorbells trapped */
	bool fallback_logged;          /* once per device */
	_Atomic bool dma_on;           /* bus master, read without ctrl_lock */
	_Atomic bool notifiers_active;
	_Atomic uint64_t trapped;
};

/* vdev->lock held: run the device's queue work for a doorbell of queue @q. */
void virtio_pci_process_queue(struct virtio_pci *vp, unsigned q);
/* Bring the host notifiers in line with status, bus master and config;
 * ctrl_lock held, vdev->lock not. */
void virtio_pci_update_notifiers(struct virtio_pci *vp);
/* ctrl_lock held, vdev->lock not. */
void virtio_pci_stop_notifiers(struct virtio_pci *vp);

#endif
