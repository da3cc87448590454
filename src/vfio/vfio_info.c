/*
 * Opening a vfio-pci device and reading what the kernel says about it
 * (Linux's include/uapi/linux/vfio.h; the group/container flow of its
 * Documentation/driver-api/vfio.rst).  The capability chains the kernel
 * returns are walked with bounds checks on every offset: a chain that points
 * outside the buffer, or backwards, ends the walk with a note.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "kickvm/log.h"
#include "kickvm/vfio.h"

#define SYSFS_PCI "/sys/bus/pci/devices"
#define MAX_CAPS  32     /* a chain longer than this is broken */
#define MAX_INFO  65536  /* largest region-info reply we accept */

/* "hhhh:hh:hh.h" with every h a hex digit; the domain part is optional. */
int vfio_parse_bdf(const char *s, char out[VFIO_BDF_LEN])
{
	static const char full[] = "hhhh:hh:hh.h";
	const char *pat = full;
	unsigned v[4] = { 0 }, field = 0;
	size_t len;

	if (!s)
		return -EINVAL;
	len = strlen(s);
	if (len == sizeof(full) - 1 - 5) {
		pat = full + 5;  /* "hh:hh.h": domain 0 */
		field = 1;
	} else if (len != sizeof(full) - 1) {
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (pat[i] != 'h') {
			if (c != pat[i])
				return -EINVAL;
			field++;
			continue;
		}
		if (c >= '0' && c <= '9')
			v[field] = v[field] << 4 | (unsigned)(c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v[field] = v[field] << 4 | (unsigned)((c | 0x20) - 'a' + 10);
		else
			return -EINVAL;
	}
	if (v[2] > 0x1f || v[3] > 7)
		return -EINVAL;
	snprintf(out, VFIO_BDF_LEN, "%04x:%02x:%02x.%x", v[0], v[1], v[2], v[3]);
	return 0;
}

/* The last path component of the symlink @dir/@link, or -errno. */
static int link_name(const char *dir, const char *link, char *out, size_t len)
{
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t n;
	char *slash;

	snprintf(path, sizeof(path), "%s/%s", dir, link);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	slash = strrchr(target, '/');
	slash = slash ? slash + 1 : target;
	if (strlen(slash) >= len)
		return -ENAMETOOLONG;
	memcpy(out, slash, strlen(slash) + 1);
	return 0;
}

static int fail(const char **why, const char *msg, int err)
{
	*why = msg;
	return err;
}

/* sysfs: the device exists, is bound to vfio-pci, and has an IOMMU group. */
static int check_sysfs(struct vfio_dev *d, const char **why)
{
	char dir[PATH_MAX], name[64];
	char *end;
	long id;

	snprintf(dir, sizeof(dir), SYSFS_PCI "/%s", d->bdf);
	if (access(dir, F_OK) < 0)
		return fail(why, "no such PCI device", -ENODEV);
	if (link_name(dir, "driver", name, sizeof(name)) < 0)
		return fail(why, "not bound to any driver; bind it to vfio-pci: echo vfio-pci > "
			    "/sys/bus/pci/devices/BDF/driver_override; echo BDF > "
			    "/sys/bus/pci/drivers_probe", -EBUSY);
	if (strcmp(name, "vfio-pci") != 0) {
		log_error("vfio", "%s is bound to %s", d->bdf, name);
		return fail(why, "bound to another driver, not vfio-pci; unbind it (echo BDF > "
			    "/sys/bus/pci/devices/BDF/driver/unbind) and bind vfio-pci "
			    "(driver_override, drivers_probe)", -EBUSY);
	}
	if (link_name(dir, "iommu_group", name, sizeof(name)) < 0)
		return fail(why, "no IOMMU group (is the IOMMU on? intel_iommu=on / amd_iommu)",
			    -ENODEV);
	errno = 0;
	id = strtol(name, &end, 10);
	if (errno || *end || id < 0 || id > INT_MAX)
		return fail(why, "unexpected IOMMU group name in sysfs", -EINVAL);
	d->group_id = (int)id;
	return 0;
}

static int open_container(struct vfio_dev *d, const char **why)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[64];

	d->container_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (d->container_fd < 0)
		return fail(why, "cannot open /dev/vfio/vfio (is the vfio module loaded?)", -errno);
	if (ioctl(d->container_fd, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		return fail(why, "unknown VFIO API version", -ENOTSUP);
	if (ioctl(d->container_fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
		return fail(why, "the kernel has no type1 v2 IOMMU (vfio_iommu_type1)", -ENOTSUP);
	snprintf(path, sizeof(path), "/dev/vfio/%d", d->group_id);
	d->group_fd = open(path, O_RDWR | O_CLOEXEC);
	if (d->group_fd < 0)
		return fail(why, errno == EBUSY ? "the group is in use by another process"
				 : "cannot open the group's /dev/vfio/N", -errno);
	if (ioctl(d->group_fd, VFIO_GROUP_GET_STATUS, &status) < 0)
		return fail(why, "VFIO_GROUP_GET_STATUS failed", -errno);
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		return fail(why, "group not viable: every device in the IOMMU group must be "
			    "bound to vfio-pci (or no driver)", -EBUSY);
	if (ioctl(d->group_fd, VFIO_GROUP_SET_CONTAINER, &d->container_fd) < 0)
		return fail(why, "VFIO_GROUP_SET_CONTAINER failed", -errno);
	/* EPERM here: interrupt remapping is off (intremap=off). */
	if (ioctl(d->container_fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
		return fail(why, errno == EPERM ? "VFIO_SET_IOMMU refused: no interrupt "
			    "remapping (intremap=on, or allow_unsafe_interrupts)"
			    : "VFIO_SET_IOMMU failed", -errno);
	return 0;
}

int vfio_dev_open(const char *bdf, struct vfio_dev *d, const char **why)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int ret;

	memset(d, 0, sizeof(*d));
	d->container_fd = d->group_fd = d->device_fd = -1;
	*why = NULL;
	snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);
	ret = check_sysfs(d, why);
	if (!ret)
		ret = open_container(d, why);
	if (!ret) {
		d->device_fd = ioctl(d->group_fd, VFIO_GROUP_GET_DEVICE_FD, d->bdf);
		if (d->device_fd < 0)
			ret = fail(why, "VFIO_GROUP_GET_DEVICE_FD failed", -errno);
	}
	if (!ret && ioctl(d->device_fd, VFIO_DEVICE_GET_INFO, &info) < 0)
		ret = fail(why, "VFIO_DEVICE_GET_INFO failed", -errno);
	if (ret) {
		vfio_dev_close(d);
		return ret;
	}
	d->flags = info.flags;
	d->num_regions = info.num_regions;
	d->num_irqs = info.num_irqs;
	return 0;
}

void vfio_dev_close(struct vfio_dev *d)
{
	if (d->device_fd >= 0)
		close(d->device_fd);
	if (d->group_fd >= 0)
		close(d->group_fd);
	if (d->container_fd >= 0)
		close(d->container_fd);
	d->container_fd = d->group_fd = d->device_fd = -1;
}

/* ---- printing ---------------------------------------------------------------------- */

static const char *region_name(const struct vfio_dev *d, uint32_t i, char *buf, size_t len)
{
	static const char *const pci[] = { "BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5",
					   "ROM", "CONFIG", "VGA" };

	if ((d->flags & VFIO_DEVICE_FLAGS_PCI) && i < sizeof(pci) / sizeof(pci[0]))
		return pci[i];
	snprintf(buf, len, "region%u", i);
	return buf;
}

static const char *irq_name(const struct vfio_dev *d, uint32_t i, char *buf, size_t len)
{
	static const char *const pci[] = { "INTx", "MSI", "MSI-X", "ERR", "REQ" };

	if ((d->flags & VFIO_DEVICE_FLAGS_PCI) && i < sizeof(pci) / sizeof(pci[0]))
		return pci[i];
	snprintf(buf, len, "irq%u", i);
	return buf;
}

/* One capability of a region-info reply @info (@size bytes) at @off. */
static void print_region_cap(const uint8_t *info, size_t size, size_t off,
			     const struct vfio_info_cap_header *h, FILE *out)
{
	switch (h->id) {
	case VFIO_REGION_INFO_CAP_SPARSE_MMAP: {
		struct vfio_region_info_cap_sparse_mmap sp;
		size_t areas = off + sizeof(sp);

		if (size - off < sizeof(sp)) {
			fprintf(out, " sparse-mmap(truncated)");
			break;
		}
		memcpy(&sp, info + off, sizeof(sp));
		fprintf(out, " sparse-mmap(%u areas:", sp.nr_areas);
		for (uint32_t i = 0; i < sp.nr_areas; i++) {
			struct vfio_region_sparse_mmap_area a;

			if (areas > size || (size - areas) / sizeof(a) <= i) {
				fprintf(out, " truncated");
				break;
			}
			memcpy(&a, info + areas + i * sizeof(a), sizeof(a));
			fprintf(out, " [0x%llx-0x%llx)", (unsigned long long)a.offset,
				(unsigned long long)(a.offset + a.size));
		}
		fprintf(out, ")");
		break;
	}
	case VFIO_REGION_INFO_CAP_TYPE: {
		struct vfio_region_info_cap_type t;

		if (size - off < sizeof(t)) {
			fprintf(out, " type(truncated)");
			break;
		}
		memcpy(&t, info + off, sizeof(t));
		fprintf(out, " type(%#x, subtype %#x)", t.type, t.subtype);
		break;
	}
	case VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
		/* The MSI-X table shares this BAR, yet the kernel lets it be
		 * mapped: a VMM that emulates the table must leave its pages
		 * out of the memslot itself (lab/README.md: QEMU's nvme). */
		fprintf(out, " msix-mappable");
		break;
	default:
		fprintf(out, " cap%u(v%u)", h->id, h->version);
		break;
	}
}

static void print_region_caps(const uint8_t *info, size_t size, uint32_t first, FILE *out)
{
	size_t off = first;

	fprintf(out, "  caps:");
	for (int n = 0; off && n < MAX_CAPS; n++) {
		struct vfio_info_cap_header h;

		if (off < sizeof(struct vfio_region_info) || off > size ||
		    size - off < sizeof(h)) {
			fprintf(out, " (chain points outside the reply)");
			return;
		}
		memcpy(&h, info + off, sizeof(h));
		print_region_cap(info, size, off, &h, out);
		if (h.next && h.next <= off) {
			fprintf(out, " (chain loops)");
			return;
		}
		off = h.next;
	}
}

int vfio_dev_region_info(const struct vfio_dev *d, uint32_t index, void **out, size_t *out_size)
{
	struct vfio_region_info *info;
	size_t size = sizeof(*info);

	for (;;) {
		info = calloc(1, size);
		if (!info)
			return -ENOMEM;
		info->argsz = (uint32_t)size;
		info->index = index;
		if (ioctl(d->device_fd, VFIO_DEVICE_GET_REGION_INFO, info) < 0) {
			int err = -errno;

			free(info);
			return err;
		}
		/* The capabilities did not fit: the kernel says how much they need. */
		if (info->argsz <= size || info->argsz > MAX_INFO)
			break;
		size = info->argsz;
		free(info);
	}
	*out = info;
	*out_size = size;
	return 0;
}

static int print_region(const struct vfio_dev *d, uint32_t index, FILE *out)
{
	struct vfio_region_info *info;
	size_t size;
	char buf[32];
	int err = vfio_dev_region_info(d, index, (void **)&info, &size);

	if (err == -ENOMEM)
		return err;
	if (err < 0) {
		/* vfio-pci answers EINVAL for a region the device lacks
		 * (VGA on a device that is not a VGA controller). */
		fprintf(out, "  %-7s %s\n", region_name(d, index, buf, sizeof(buf)),
			err == -EINVAL ? "(absent)" : strerror(-err));
		return 0;
	}
	fprintf(out, "  %-7s offset 0x%llx size 0x%llx", region_name(d, index, buf, sizeof(buf)),
		(unsigned long long)info->offset, (unsigned long long)info->size);
	if (!info->size) {
		fprintf(out, " (not implemented)\n");
		free(info);
		return 0;
	}
	fprintf(out, " %s%s%s", info->flags & VFIO_REGION_INFO_FLAG_READ ? "read" : "",
		info->flags & VFIO_REGION_INFO_FLAG_WRITE ? ",write" : "",
		info->flags & VFIO_REGION_INFO_FLAG_MMAP ? ",mmap" : "");
	if ((info->flags & VFIO_REGION_INFO_FLAG_CAPS) && info->cap_offset)
		print_region_caps((const uint8_t *)info, size, info->cap_offset, out);
	fprintf(out, "\n");
	free(info);
	return 0;
}

static void print_irq(const struct vfio_dev *d, uint32_t index, FILE *out)
{
	struct vfio_irq_info irq = { .argsz = sizeof(irq), .index = index };
	char buf[32];

	if (ioctl(d->device_fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) < 0) {
		/* EINVAL: an IRQ type the device lacks (ERR without AER). */
		fprintf(out, "  %-7s %s\n", irq_name(d, index, buf, sizeof(buf)),
			errno == EINVAL ? "(absent)" : strerror(errno));
		return;
	}
	fprintf(out, "  %-7s count %u%s%s%s%s\n", irq_name(d, index, buf, sizeof(buf)), irq.count,
		irq.flags & VFIO_IRQ_INFO_EVENTFD ? " eventfd" : "",
		irq.flags & VFIO_IRQ_INFO_MASKABLE ? " maskable" : "",
		irq.flags & VFIO_IRQ_INFO_AUTOMASKED ? " automasked" : "",
		irq.flags & VFIO_IRQ_INFO_NORESIZE ? " noresize" : "");
}

int vfio_dev_print(struct vfio_dev *d, FILE *out)
{
	int ret = 0;

	fprintf(out, "%s: vfio-pci, IOMMU group %d, type1v2 container\n", d->bdf, d->group_id);
	fprintf(out, "device: flags%s%s%s, %u regions, %u irqs\n",
		d->flags & VFIO_DEVICE_FLAGS_PCI ? " pci" : "",
		d->flags & VFIO_DEVICE_FLAGS_RESET ? " reset" : "",
		d->flags & VFIO_DEVICE_FLAGS_CAPS ? " caps" : "", d->num_regions, d->num_irqs);
	fprintf(out, "regions:\n");
	for (uint32_t i = 0; i < d->num_regions && !ret; i++)
		ret = print_region(d, i, out);
	fprintf(out, "irqs:\n");
	for (uint32_t i = 0; i < d->num_irqs; i++)
		print_irq(d, i, out);
	return ret;
}
