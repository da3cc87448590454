/*
 * The kernel vfio-pci backend: a device opened through its group and a
 * type1 v2 container (vfio_info.c's vfio_dev_open), regions read with
 * pread/pwrite on the device fd at the region's offset and mmapped from it,
 * interrupts with VFIO_DEVICE_SET_IRQS (one eventfd per vector), DMA with
 * VFIO_IOMMU_MAP_DMA/UNMAP_DMA on the container, VFIO_DEVICE_RESET, and
 * device-write ioeventfds with VFIO_DEVICE_IOEVENTFD.
 *
 * Region info is read once at open, with its capability chain: sparse mmap
 * areas (more than VFIO_MAX_SPARSE_AREAS: the region is trapped whole) and
 * MSIX_MAPPABLE.  The chain is walked with bounds checks on every offset.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "kickvm/log.h"
#include "kickvm/vfio.h"
#include "kickvm/vfio_pci.h"

#define MAX_CAPS 32

struct vfio_kernel {
	struct vfio_backend base;
	struct vfio_dev dev;
	uint64_t offset[VFIO_PCI_NUM_REGIONS];   /* of each region in the device fd */
	struct vfio_region_desc desc[VFIO_PCI_NUM_REGIONS];
};

static struct vfio_kernel *kern(struct vfio_backend *b)
{
	return (struct vfio_kernel *)b;
}

static void parse_caps(const uint8_t *buf, size_t size, uint32_t first,
		       struct vfio_region_desc *d)
{
	size_t off = first;

	for (int n = 0; off && n < MAX_CAPS; n++) {
		struct vfio_info_cap_header h;

		if (off < sizeof(struct vfio_region_info) || off > size || size - off < sizeof(h))
			return;
		memcpy(&h, buf + off, sizeof(h));
		if (h.id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) {
			d->msix_mappable = true;
		} else if (h.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
			struct vfio_region_info_cap_sparse_mmap sp;
			size_t areas = off + sizeof(sp);

			if (size - off < sizeof(sp))
				return;
			memcpy(&sp, buf + off, sizeof(sp));
			if (sp.nr_areas > VFIO_MAX_SPARSE_AREAS ||
			    (size - areas) / sizeof(struct vfio_region_sparse_mmap_area) < sp.nr_areas) {
				d->mappable = false;  /* cannot honour it: trap it all */
				return;
			}
			d->nr_areas = sp.nr_areas;
			for (uint32_t i = 0; i < sp.nr_areas; i++) {
				struct vfio_region_sparse_mmap_area a;

				memcpy(&a, buf + areas + i * sizeof(a), sizeof(a));
				d->areas[i].offset = a.offset;
				d->areas[i].size = a.size;
			}
			/* No areas at all: nothing may be mapped. */
			if (!sp.nr_areas)
				d->mappable = false;
		}
		if (h.next && h.next <= off)
			return;
		off = h.next;
	}
}

static int read_region(struct vfio_kernel *k, unsigned index)
{
	struct vfio_region_desc *d = &k->desc[index];
	struct vfio_region_info *info;
	size_t size;
	int r = vfio_dev_region_info(&k->dev, index, (void **)&info, &size);

	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return 0;  /* absent (VGA on most devices): size 0 */
	k->offset[index] = info->offset;
	d->size = info->size;
	d->readable = info->flags & VFIO_REGION_INFO_FLAG_READ;
	d->writable = info->flags & VFIO_REGION_INFO_FLAG_WRITE;
	d->mappable = info->flags & VFIO_REGION_INFO_FLAG_MMAP;
	if ((info->flags & VFIO_REGION_INFO_FLAG_CAPS) && info->cap_offset)
		parse_caps((const uint8_t *)info, size < info->argsz ? size : info->argsz,
			   info->cap_offset, d);
	free(info);
	return 0;
}

/* ---- the ops ---------------------------------------------------------------------- */

static int kern_device_info(struct vfio_backend *b, unsigned *num_regions, unsigned *num_irqs,
			    bool *can_reset)
{
	struct vfio_kernel *k = kern(b);

	*num_regions = k->dev.num_regions;
	*num_irqs = k->dev.num_irqs;
	*can_reset = k->dev.flags & VFIO_DEVICE_FLAGS_RESET;
	return 0;
}

static int kern_region_desc(struct vfio_backend *b, unsigned index, struct vfio_region_desc *out)
{
	if (index >= VFIO_PCI_NUM_REGIONS)
		return -EINVAL;
	*out = kern(b)->desc[index];
	return 0;
}

static int kern_irq_count(struct vfio_backend *b, unsigned index, unsigned *count)
{
	struct vfio_irq_info irq = { .argsz = sizeof(irq), .index = index };

	if (ioctl(kern(b)->dev.device_fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) < 0)
		return -errno;
	*count = irq.count;
	return 0;
}

static bool in_region(struct vfio_kernel *k, unsigned index, uint64_t offset, size_t len)
{
	return index < VFIO_PCI_NUM_REGIONS && len && offset < k->desc[index].size &&
	       len <= k->desc[index].size - offset;
}

static int kern_region_read(struct vfio_backend *b, unsigned index, uint64_t offset, void *buf,
			    size_t len)
{
	struct vfio_kernel *k = kern(b);
	ssize_t n;

	if (!in_region(k, index, offset, len))
		return -EINVAL;
	n = pread(k->dev.device_fd, buf, len, (off_t)(k->offset[index] + offset));
	return n < 0 ? -errno : (int)n;
}

static int kern_region_write(struct vfio_backend *b, unsigned index, uint64_t offset,
			     const void *buf, size_t len)
{
	struct vfio_kernel *k = kern(b);
	ssize_t n;

	if (!in_region(k, index, offset, len))
		return -EINVAL;
	n = pwrite(k->dev.device_fd, buf, len, (off_t)(k->offset[index] + offset));
	return n < 0 ? -errno : (int)n;
}

static int kern_region_mmap(struct vfio_backend *b, unsigned index, uint64_t offset,
			    uint64_t size, void **host)
{
	struct vfio_kernel *k = kern(b);
	void *p;

	if (!in_region(k, index, offset, size) || !k->desc[index].mappable)
		return -EINVAL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, k->dev.device_fd,
		 (off_t)(k->offset[index] + offset));
	if (p == MAP_FAILED)
		return -errno;
	*host = p;
	return 0;
}

static void kern_region_munmap(struct vfio_backend *b, void *host, uint64_t size)
{
	(void)b;
	munmap(host, size);
}

static int kern_set_irqs(struct vfio_backend *b, unsigned index, unsigned start, unsigned count,
			 const int *fds)
{
	size_t size = sizeof(struct vfio_irq_set) + (size_t)count * sizeof(int32_t);
	struct vfio_irq_set *set = calloc(1, size);
	int r = 0;

	if (!set)
		return -ENOMEM;
	set->argsz = (uint32_t)size;
	set->index = index;
	set->start = start;
	set->count = count;
	/* count 0 with DATA_NONE: disable the index. */
	set->flags = VFIO_IRQ_SET_ACTION_TRIGGER |
		     (count ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE);
	if (count)
		memcpy(set->data, fds, (size_t)count * sizeof(int32_t));
	if (ioctl(kern(b)->dev.device_fd, VFIO_DEVICE_SET_IRQS, set) < 0)
		r = -errno;
	free(set);
	return r;
}

static int kern_dma_map(struct vfio_backend *b, uint64_t iova, uint64_t size, void *host,
			bool writable)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | (writable ? VFIO_DMA_MAP_FLAG_WRITE : 0),
		.vaddr = (uint64_t)(uintptr_t)host, .iova = iova, .size = size,
	};

	return ioctl(kern(b)->dev.container_fd, VFIO_IOMMU_MAP_DMA, &map) < 0 ? -errno : 0;
}

static int kern_dma_unmap(struct vfio_backend *b, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap), .iova = iova, .size = size,
	};

	return ioctl(kern(b)->dev.container_fd, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0 ? -errno : 0;
}

static int kern_reset(struct vfio_backend *b)
{
	struct vfio_kernel *k = kern(b);

	if (!(k->dev.flags & VFIO_DEVICE_FLAGS_RESET))
		return -EOPNOTSUPP;
	return ioctl(k->dev.device_fd, VFIO_DEVICE_RESET) < 0 ? -errno : 0;
}

static int kern_ioeventfd(struct vfio_backend *b, unsigned index, uint64_t offset, unsigned width,
			  uint64_t data, int fd)
{
	struct vfio_kernel *k = kern(b);
	struct vfio_device_ioeventfd ev = {
		.argsz = sizeof(ev), .data = data, .fd = fd,
	};

	if (index > 5 || (width != 1 && width != 2 && width != 4 && width != 8))
		return -EINVAL;
	ev.flags = width;  /* VFIO_DEVICE_IOEVENTFD_8/16/32/64 are 1, 2, 4, 8 */
	ev.offset = k->offset[index] + offset;
	if (ioctl(k->dev.device_fd, VFIO_DEVICE_IOEVENTFD, &ev) < 0)
		return errno == ENOTTY ? -EOPNOTSUPP : -errno;
	return 0;
}

static void kern_destroy(struct vfio_backend *b)
{
	struct vfio_kernel *k = kern(b);

	vfio_dev_close(&k->dev);
	free(k);
}

static const struct vfio_backend_ops kernel_ops = {
	.device_info = kern_device_info,
	.region_desc = kern_region_desc,
	.irq_count = kern_irq_count,
	.region_read = kern_region_read,
	.region_write = kern_region_write,
	.region_mmap = kern_region_mmap,
	.region_munmap = kern_region_munmap,
	.set_irqs = kern_set_irqs,
	.dma_map = kern_dma_map,
	.dma_unmap = kern_dma_unmap,
	.reset = kern_reset,
	.ioeventfd = kern_ioeventfd,
	.destroy = kern_destroy,
};

int vfio_kernel_open(const char *bdf, struct vfio_backend **out, const char **why)
{
	struct vfio_kernel *k = calloc(1, sizeof(*k));
	int r;

	*why = NULL;
	if (!k) {
		*why = "out of memory";
		return -ENOMEM;
	}
	r = vfio_dev_open(bdf, &k->dev, why);
	if (r < 0) {
		free(k);
		return r;
	}
	if (!(k->dev.flags & VFIO_DEVICE_FLAGS_PCI)) {
		*why = "not a PCI device";
		r = -ENODEV;
		goto fail;
	}
	for (unsigned i = 0; i < k->dev.num_regions && i < VFIO_PCI_NUM_REGIONS && !r; i++)
		r = read_region(k, i);
	if (r < 0) {
		*why = "cannot read the device's regions";
		goto fail;
	}
	k->base.ops = &kernel_ops;
	snprintf(k->base.name, sizeof(k->base.name), "%s", k->dev.bdf);
	*out = &k->base;
	return 0;
fail:
	vfio_dev_close(&k->dev);
	free(k);
	return r;
}
