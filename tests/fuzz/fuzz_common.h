/*
 * What the fuzz targets share: guest RAM they map themselves (to frame it
 * with canary or guard pages), and the machine the virtio-pci targets
 * drive (a bus with one virtio-pci function on it).
 */
#ifndef KICKVM_FUZZ_COMMON_H
#define KICKVM_FUZZ_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "kickvm/event.h"
#include "kickvm/guest_mem.h"
#include "kickvm/virtio_pci.h"
#include "pci_world.h"

#define FUZZ_PAGE 4096u

/* @gm as one bank of @size at GPA 0 over @hva: memory the target mapped
 * itself, no memfd. */
void fuzz_guest_mem_over(struct guest_mem *gm, uint8_t *hva, uint64_t size);

/*
 * Guest RAM with a page of canary bytes on each side.  ASan does not see
 * inside one mapping, so the canaries are what catch a write that got past
 * guest_mem's bounds checks.
 */
struct canaried_ram {
	struct guest_mem gm;
	uint8_t *canary_lo, *canary_hi;
};

/* Aborts when it cannot map. */
void canaried_ram_init(struct canaried_ram *r, uint64_t size);
/* Aborts when a canary byte changed. */
void canaried_ram_check(const struct canaried_ram *r);

/*
 * A bus with one virtio-pci function (slot 1) for a device of the target's
 * own, and 64 KiB of guest RAM from GPA 0.  Nobody runs the loop: handlers
 * run when an input says so.  MSI-X messages go nowhere.
 */
#define FUZZ_VPCI_RAM_SIZE (64u << 10)

struct fuzz_vpci {
	struct pci_world pci;
	struct guest_mem gm;
	struct event_loop *loop;
	struct virtio_dev vdev;
	struct virtio_pci *vp;
};

/* Build @w (all of it is overwritten) for @ops with @dev as the device's
 * state (vdev.opaque); aborts on failure. */
void fuzz_vpci_create(struct fuzz_vpci *w, const struct virtio_dev_ops *ops, void *dev,
		      bool ioeventfd);
void fuzz_vpci_destroy(struct fuzz_vpci *w);

#endif
