/*
 * The I/O backend under kickvm's one VFIO device model.
 *
 * A device that lives outside the VMM is reached through one of these: the
 * kernel's vfio-pci (group/container, type1 v2 IOMMU) is the first backend,
 * vfio-user (a device process on a socket) the second, and an in-memory fake
 * lets unit tests and fuzz targets drive the model without a kernel.  The
 * model above (config space, BARs, MSI/MSI-X, device-write ioeventfds, MSI-X
 * relocation) never knows which one it talks to.
 *
 * Region and IRQ indices are VFIO PCI's: regions 0-5 are the BARs, 6 the
 * expansion ROM, 7 config space; IRQ 0 is INTx, 1 MSI, 2 MSI-X.
 *
 * Every call returns 0 (or a byte count where said) or a negative errno.
 * Calls a backend cannot make return -EOPNOTSUPP; the model then takes its
 * slower path (trapping instead of mapping, a userspace write instead of a
 * kernel one) and says so.
 */
#ifndef KICKVM_VFIO_BACKEND_H
#define KICKVM_VFIO_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VFIO_PCI_BAR0        0
#define VFIO_PCI_ROM         6
#define VFIO_PCI_CONFIG      7
#define VFIO_PCI_NUM_REGIONS 9    /* ... and 8, VGA, which kickvm does not use */

#define VFIO_IRQ_INTX  0
#define VFIO_IRQ_MSI   1
#define VFIO_IRQ_MSIX  2

#define VFIO_MAX_SPARSE_AREAS 16  /* more than this: the region is trapped whole */

/* What a backend says about one region. */
struct vfio_region_desc {
	uint64_t size;             /* 0: the region does not exist */
	bool readable, writable;
	bool mappable;             /* region_mmap works on (part of) it */
	bool msix_mappable;        /* the MSI-X table's pages may be mapped too */
	/* Where only parts may be mapped: the sparse areas (offset, size within
	 * the region).  nr_areas 0 with mappable: the whole region. */
	unsigned nr_areas;
	struct { uint64_t offset, size; } areas[VFIO_MAX_SPARSE_AREAS];
};

struct vfio_backend;

struct vfio_backend_ops {
	/* Number of regions and IRQ indices, and whether the device can reset. */
	int (*device_info)(struct vfio_backend *b, unsigned *num_regions,
			   unsigned *num_irqs, bool *can_reset);
	int (*region_desc)(struct vfio_backend *b, unsigned index,
			   struct vfio_region_desc *out);
	/* Vectors of IRQ index @index (0 where the device has none). */
	int (*irq_count)(struct vfio_backend *b, unsigned index, unsigned *count);

	/* @len bytes at @offset of region @index; 1, 2, 4 or 8 bytes for
	 * registers, any length for config space and ROM.  Return @len or a
	 * negative errno. */
	int (*region_read)(struct vfio_backend *b, unsigned index, uint64_t offset,
			   void *buf, size_t len);
	int (*region_write)(struct vfio_backend *b, unsigned index, uint64_t offset,
			    const void *buf, size_t len);
	/* Map [@offset, @offset + @size) of region @index (page aligned, inside
	 * one sparse area) into this process; *@host gets the address. */
	int (*region_mmap)(struct vfio_backend *b, unsigned index, uint64_t offset,
			   uint64_t size, void **host);
	void (*region_munmap)(struct vfio_backend *b, void *host, uint64_t size);

	/* Interrupts of IRQ index @index, vectors [@start, @start + @count):
	 * each vector signals fds[i] (-1: that vector signals nothing).
	 * @count 0 disables the index. */
	int (*set_irqs)(struct vfio_backend *b, unsigned index, unsigned start,
			unsigned count, const int *fds);

	/* Let the device reach guest RAM: @size bytes at I/O virtual address
	 * @iova are @host in this process. */
	int (*dma_map)(struct vfio_backend *b, uint64_t iova, uint64_t size,
		       void *host, bool writable);
	int (*dma_unmap)(struct vfio_backend *b, uint64_t iova, uint64_t size);

	/* Reset the device (FLR or what the backend offers). */
	int (*reset)(struct vfio_backend *b);

	/* Device-write ioeventfd: when @fd is signalled, write @data (@width
	 * bytes: 1, 2, 4 or 8) at @offset of BAR region @index, with no VMM
	 * round trip.  @fd -1 removes the one with the same (index, offset,
	 * width, data).  The caller has already checked the rules (see
	 * vfio_ioeventfd.h); a backend without the feature returns -EOPNOTSUPP. */
	int (*ioeventfd)(struct vfio_backend *b, unsigned index, uint64_t offset,
			 unsigned width, uint64_t data, int fd);

	/* Close everything the backend holds.  The backend is freed. */
	void (*destroy)(struct vfio_backend *b);
};

/* Backends embed this as their first member. */
struct vfio_backend {
	const struct vfio_backend_ops *ops;
	char name[32];             /* "0000:01:00.0", or the socket's name */
};

#endif
