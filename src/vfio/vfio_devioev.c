/*
 * Device-write ioeventfds of the VFIO device model: the model's side of
 * vfio_ioeventfd.c.  Each device has one set; its limits are the device's
 * PHYSICAL BAR sizes and its own MSI-X table (the one the kernel protects),
 * whatever a relocation shows the guest.  An entry's KVM ioeventfd sits on
 * the BAR's trapped region at the same offset: below the physical size a
 * guest BAR offset is the device's offset.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "kickvm/log.h"
#include "vfio/vfio_ioeventfd.h"
#include "vfio/vfio_pci_internal.h"

/* Writes reach a memory BAR only while the device decodes memory (the
 * kernel drops them otherwise); I/O BARs are not checked, as in the kernel. */
static bool decode_enabled(void *opaque, unsigned bar)
{
	struct vfio_pci *v = opaque;

	if (bar < PCI_NUM_BARS && (v->phys.bars[bar].type & PCI_BAR_IO))
		return true;
	return __atomic_load_n(&v->device_mem_on, __ATOMIC_ACQUIRE);
}

int vfio_devioev_create(struct vfio_pci *v, const char **why)
{
	struct vfio_ioeventfd_config cfg = {
		.name = v->id, .backend = v->b, .loop = v->opts.loop,
		.limits = { .msix_table_bar = -1 },
		.decode_enabled = decode_enabled, .opaque = v,
		.handler_only = !v->opts.ioeventfd,
	};
	int r;

	if (!v->opts.loop) {
		if (!v->opts.nr_static_ioeventfds)
			return 0;  /* no loop for the handler: none can be asked for */
		*why = "device-write ioeventfds need an event loop";
		return -EINVAL;
	}
	for (int i = 0; i < PCI_NUM_BARS; i++)
		cfg.limits.bar_size[i] = v->phys.bars[i].size;
	if (v->phys.has_msix) {
		cfg.limits.msix_table_bar = v->phys.msix.table_bar;
		cfg.limits.msix_table_offset = v->phys.msix.table_offset;
		cfg.limits.msix_table_size = (uint64_t)v->phys.msix_vectors * 16;
	}
	r = vfio_ioeventfd_set_new(&cfg, &v->ioev);
	if (r < 0) {
		*why = "cannot create the device-write ioeventfd set";
		return r;
	}
	for (unsigned i = 0; i < v->opts.nr_static_ioeventfds; i++) {
		const struct vfio_pci_ioeventfd_spec *s = &v->opts.static_ioeventfds[i];

		r = vfio_pci_add_device_ioeventfd(v, s->bar, s->offset, s->width, s->data, false);
		if (r < 0) {
			log_error(v->id, "x-device-ioeventfd=%u:0x%" PRIx64 ":%u:0x%" PRIx64
				  " refused: %s", s->bar, s->offset, s->width, s->data,
				  strerror(-r));
			*why = r == -EEXIST ? "x-device-ioeventfd given twice" :
			       r == -ENOSPC ? "too many x-device-ioeventfd" :
			       "x-device-ioeventfd outside the BAR, over the MSI-X table, "
			       "or of a bad width";
			vfio_devioev_destroy(v);  /* the caller unwinds what came before */
			return r == -ENOMEM ? r : -EDOM;
		}
	}
	return 0;
}

void vfio_devioev_destroy(struct vfio_pci *v)
{
	vfio_ioeventfd_set_free(v->ioev);
	v->ioev = NULL;
}

void vfio_devioev_reset(struct vfio_pci *v)
{
	if (v->ioev)
		vfio_ioeventfd_del_all(v->ioev, true);
}

int vfio_pci_add_device_ioeventfd(struct vfio_pci *v, unsigned bar, uint64_t offset,
				  unsigned width, uint64_t data, bool dynamic)
{
	struct vfio_ioeventfd_req req = {
		.bar = bar, .offset = offset, .width = width, .data = data,
		.mr = bar < PCI_NUM_BARS ? v->bars[bar].trap : NULL,
		.mr_offset = offset, .dynamic = dynamic,
	};

	/* The rules (physical sizes, the device's table) come first in the
	 * module, so a BAR without a trap still gets the kernel's errno. */
	if (!v->ioev)
		return -EOPNOTSUPP;
	return vfio_ioeventfd_add(v->ioev, &req);
}

int vfio_pci_del_device_ioeventfd(struct vfio_pci *v, unsigned bar, uint64_t offset,
				  unsigned width, uint64_t data)
{
	if (!v->ioev)
		return -ENODEV;
	return vfio_ioeventfd_del(v->ioev, bar, offset, width, data);
}

void vfio_pci_dump_ioeventfds(struct vfio_pci *v, FILE *out)
{
	if (v->ioev)
		vfio_ioeventfd_dump(v->ioev, out);
}

void vfio_devioev_stats(struct vfio_pci *v, struct vfio_pci_stats *s)
{
	struct vfio_ioeventfd_stats st;

	if (!v->ioev)
		return;
	vfio_ioeventfd_get_stats(v->ioev, &st);
	s->ioeventfds = st.entries;
	s->ioeventfds_by_kernel = st.by_backend;
	s->ioeventfds_by_handler = st.by_handler;
	s->ioeventfd_userspace_signals = st.userspace_signals;
	s->ioeventfd_handler_runs = st.handler_runs;
	s->ioeventfd_handler_writes = st.handler_writes;
	s->ioeventfd_dropped = st.dropped;
	s->ioeventfd_errors = st.write_errors;
}
