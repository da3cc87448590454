/*
 * Devices a user adds to a machine (-device ...): virtio over PCI, each bound
 * to the event loop of the iothread it names.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "kickvm/vfio_pci.h"
#include "kickvm/virtio_devices.h"
#include "kickvm/virtio_pci.h"
#include "machine/machine_internal.h"

void machine_virtio_opts_defaults(struct machine_virtio_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->ioeventfd = true;
	o->slot = -1;
}

static int device_loop(struct machine *m, const char *iothread, struct event_loop **loop,
		       const char **why)
{
	struct iothread *it;
	int ret;

	if (!iothread) {
		*loop = m->main_loop;
		return 0;
	}
	ret = machine_iothread(m, iothread, &it);
	if (ret < 0) {
		*why = "cannot create the iothread";
		return ret;
	}
	*loop = iothread_loop(it);
	return 0;
}

/* Plug @vdev into the PCI bus and record it; on failure @vdev is freed. */
static int plug(struct machine *m, struct virtio_dev *vdev, struct event_loop *loop,
		const struct machine_virtio_opts *o, const char *kind,
		struct machine_device **out, const char **why)
{
	struct machine_device *md = &m->devices[m->nr_devices];
	struct virtio_pci_opts popts = { .ioeventfd = o->ioeventfd, .slot = o->slot };
	int index = 0, ret;

	for (int i = 0; i < m->nr_devices; i++)
		if (!strncmp(m->devices[i].id, kind, strlen(kind)))
			index++;
	snprintf(md->id, sizeof(md->id), "%s%d", kind, index);
	snprintf(vdev->name, sizeof(vdev->name), "%s", md->id);
	ret = virtio_pci_create(m->pci, vdev, &popts, &md->vp);
	if (ret < 0) {
		*why = ret == -ENOSPC ? "no free PCI slot" : "cannot create the PCI function";
		virtio_dev_destroy(vdev);
		return ret;
	}
	md->vdev = vdev;
	md->loop = loop;
	m->nr_devices++;
	if (out)
		*out = md;
	return 0;
}

/* A free device slot, and the loop the device's work runs in. */
static int room_and_loop(struct machine *m, const struct machine_virtio_opts *o,
			 struct event_loop **loop, const char **why)
{
	*why = NULL;
	if (m->nr_devices == MACHINE_MAX_DEVICES) {
		*why = "too many devices";
		return -ENOSPC;
	}
	return device_loop(m, o->iothread, loop, why);
}

int machine_add_virtio_blk(struct machine *m, const struct virtio_blk_opts *blk,
			   const struct machine_virtio_opts *o, struct machine_device **out,
			   const char **why)
{
	struct event_loop *loop;
	struct virtio_dev *vdev;
	int ret = room_and_loop(m, o, &loop, why);

	if (ret < 0)
		return ret;
	ret = virtio_blk_create(&m->mem, loop, blk, &vdev);
	if (ret < 0) {
		*why = "cannot open the disk image";
		return ret;
	}
	return plug(m, vdev, loop, o, "virtio-blk", out, why);
}

int machine_add_virtio_rng(struct machine *m, const struct machine_virtio_opts *o,
			   struct machine_device **out, const char **why)
{
	struct event_loop *loop;
	struct virtio_dev *vdev;
	int ret = room_and_loop(m, o, &loop, why);

	if (ret < 0)
		return ret;
	ret = virtio_rng_create(&m->mem, loop, &vdev);
	if (ret < 0) {
		*why = "cannot create virtio-rng";
		return ret;
	}
	return plug(m, vdev, loop, o, "virtio-rng", out, why);
}

void machine_vfio_opts_defaults(struct machine_vfio_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->msix_relocation = VFIO_MSIX_RELOC_OFF;
	o->ioeventfd = true;
	o->slot = -1;
}

int machine_add_vfio_pci(struct machine *m, const struct machine_vfio_opts *o,
			 struct machine_device **out, const char **why)
{
	struct machine_device *md = &m->devices[m->nr_devices];
	struct vfio_pci_opts vo;
	struct vfio_backend *b;
	int index = 0, ret;

	*why = NULL;
	if (m->nr_devices == MACHINE_MAX_DEVICES) {
		*why = "too many devices";
		return -ENOSPC;
	}
	for (int i = 0; i < m->nr_devices; i++)
		index += m->devices[i].vfio != NULL;
	if (o->id)
		snprintf(md->id, sizeof(md->id), "%s", o->id);
	else
		snprintf(md->id, sizeof(md->id), "vfio-pci%d", index);
	ret = vfio_kernel_open(o->host, &b, why);
	if (ret < 0)
		return ret;
	vfio_pci_opts_defaults(&vo);
	vo.id = md->id;
	vo.slot = o->slot;
	vo.msix_relocation = o->msix_relocation;
	vo.planner = vfio_msix_reloc_planner;
	vo.no_mmap = o->no_mmap;
	vo.ioeventfd = o->ioeventfd;
	vo.static_ioeventfds = o->ioeventfds;
	vo.nr_static_ioeventfds = o->nr_ioeventfds;
	vo.loop = m->main_loop;
	vo.dma_root = m->system_root;
	ret = vfio_pci_create(m->pci, b, &vo, &md->vfio, why);
	if (ret < 0)
		return ret;
	md->vdev = NULL;
	md->vp = NULL;
	md->loop = m->main_loop;
	m->nr_devices++;
	if (out)
		*out = md;
	return 0;
}

/* Called by machine_destroy() before the iothreads go. */
void machine_remove_devices(struct machine *m)
{
	for (int i = m->nr_devices - 1; i >= 0; i--) {
		if (m->devices[i].vfio) {
			vfio_pci_destroy(m->devices[i].vfio);
			m->devices[i].vfio = NULL;
			continue;
		}
		virtio_pci_destroy(m->devices[i].vp);
		virtio_dev_destroy(m->devices[i].vdev);
	}
	m->nr_devices = 0;
}
