/*
 * What a PCI function sits in when a test runs without KVM: the memory and
 * I/O address spaces the guest's accesses go through and a host bridge on
 * them, plus a log of the MSI-X messages the bus delivers.  The PCI, MSI-X
 * and virtio-pci unit tests and the fuzz targets of the bus all start from
 * the same piece, so it is built here once.
 *
 * No cmocka here: the fuzz targets link these helpers too.  Failures are
 * returned for the caller to assert on or abort.
 */
#ifndef KICKVM_TEST_PCI_WORLD_H
#define KICKVM_TEST_PCI_WORLD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kickvm/memory.h"
#include "kickvm/pci.h"

struct pci_world {
	struct mem_region *system, *io;          /* the roots */
	struct address_space *as_mem, *as_io;    /* the guest's view of them */
	struct pci_bus *bus;
};

/* Build @w with MSI-X messages going to @msi_hook(@msi_opaque) (NULL: nowhere).
 * Returns 0, or pci_bus_create's error with nothing left to destroy. */
int pci_world_create(struct pci_world *w, void (*msi_hook)(void *opaque, uint64_t addr,
							    uint32_t data),
		     void *msi_opaque);
/* Devices must have been removed from the bus. */
void pci_world_destroy(struct pci_world *w);

/* The MSI-X messages a bus delivered, in order: give pci_world_create
 * msi_log_hook and the log.  Messages may come from any thread. */
#define MSI_LOG_MAX 64

struct msi_log {
	pthread_mutex_t lock;
	_Atomic unsigned n;                      /* all of them, also past MSI_LOG_MAX */
	struct msi_msg {
		uint64_t addr;
		uint32_t data;
	} msgs[MSI_LOG_MAX];
};

void msi_log_init(struct msi_log *log);
void msi_log_cleanup(struct msi_log *log);
void msi_log_hook(void *log, uint64_t addr, uint32_t data);
/* Message @i's data, read under the lock: a reader that saw the count grow
 * on another thread sees the message too. */
uint32_t msi_log_data(struct msi_log *log, unsigned i);

/* The ioeventfds registered in @as: the first eight, and how many in all. */
struct ioeventfd_list {
	uint64_t addr[8];
	unsigned len[8], n;
};

struct ioeventfd_list ioeventfds_in(struct address_space *as);

#endif
