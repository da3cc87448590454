/*
 * VFIO, the ground for device assignment: open a vfio-pci device through the
 * group/container API (type1 v2 IOMMU; Linux 6.1 has no iommufd) and read
 * what the kernel says about it: device info, every region with its
 * capability chain (sparse mmap areas, MSIX_MAPPABLE, type), every IRQ.
 *
 * Calls return 0 or a negative errno, with *why (a static string) saying
 * what to do about it where there is something to say.
 */
#ifndef KICKVM_VFIO_H
#define KICKVM_VFIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VFIO_BDF_LEN 13  /* "0000:00:00.0" and its NUL */

struct vfio_dev {
	char bdf[VFIO_BDF_LEN];
	int group_id;
	int container_fd, group_fd, device_fd;
	uint32_t flags, num_regions, num_irqs;  /* VFIO_DEVICE_GET_INFO */
};

/* "DDDD:BB:DD.F" or "BB:DD.F" (domain 0), hex, to the canonical form in
 * @out.  -EINVAL when malformed or out of range. */
int vfio_parse_bdf(const char *s, char out[VFIO_BDF_LEN]);

/*
 * Open @bdf (canonical): its IOMMU group from sysfs, a container with the
 * type1 v2 IOMMU, the device fd, and VFIO_DEVICE_GET_INFO.  Errors:
 * -ENODEV no such PCI device, or no IOMMU group; -EBUSY not bound to
 * vfio-pci, or the group is not viable; -ENOTSUP no type1 v2; else the
 * failing call's errno.
 */
int vfio_dev_open(const char *bdf, struct vfio_dev *dev, const char **why);
void vfio_dev_close(struct vfio_dev *dev);

/* VFIO_DEVICE_GET_REGION_INFO of region @index with room for its whole
 * capability chain: *@out (a struct vfio_region_info, free() it) of
 * *@size bytes.  -EINVAL for a region the device lacks. */
int vfio_dev_region_info(const struct vfio_dev *d, uint32_t index, void **out, size_t *size);

/* Print the device, its regions (with capabilities) and IRQs to @out. */
int vfio_dev_print(struct vfio_dev *dev, FILE *out);

#endif
