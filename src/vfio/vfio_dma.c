/*
 * DMA: the device reaches all guest RAM and nothing else.  A listener on an
 * address space of its own over the memory root sees every RAM range come
 * and go (as KVM's listener sees memory slots) and maps it for the device
 * at its guest-physical address; device RAM (an assigned device's mapped
 * BARs, "ramd") is left out, so a guest cannot aim one device's DMA at
 * another's registers.  Ranges come and go whole, and type1 v2 needs an
 * unmap to match a map, so each range is mapped and unmapped as one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "vfio/vfio_pci_internal.h"

static bool is_guest_ram(const struct flat_range *fr)
{
	return mr_ram_ptr(fr->mr) && !mr_is_ram_device(fr->mr);
}

static void dma_add(void *opaque, const struct flat_range *fr)
{
	struct vfio_pci *v = opaque;
	int r;

	if (!is_guest_ram(fr))
		return;
	r = v->b->ops->dma_map(v->b, fr->addr, fr->size, (char *)mr_ram_ptr(fr->mr) + fr->offset,
			       true);
	if (r < 0) {
		/* The device will fault on that range: loud, not fatal. */
		log_error(v->id, "DMA map 0x%" PRIx64 "+0x%" PRIx64 ": %s", fr->addr, fr->size,
			  strerror(-r));
		return;
	}
	atomic_fetch_add(&v->dma_maps, 1);
	atomic_fetch_add(&v->dma_bytes, fr->size);
}

static void dma_del(void *opaque, const struct flat_range *fr)
{
	struct vfio_pci *v = opaque;
	int r;

	if (!is_guest_ram(fr))
		return;
	r = v->b->ops->dma_unmap(v->b, fr->addr, fr->size);
	if (r < 0) {
		log_warn(v->id, "DMA unmap 0x%" PRIx64 "+0x%" PRIx64 ": %s", fr->addr, fr->size,
			 strerror(-r));
		return;
	}
	atomic_fetch_add(&v->dma_unmaps, 1);
	atomic_fetch_sub(&v->dma_bytes, fr->size);
}

static const struct mem_listener dma_listener = {
	.ram_add = dma_add,
	.ram_del = dma_del,
};

int vfio_dma_start(struct vfio_pci *v)
{
	char name[48];

	if (!v->opts.dma_root)
		return 0;
	snprintf(name, sizeof(name), "%s-dma", v->id);
	v->dma_as = address_space_new(name, AS_MMIO, v->opts.dma_root);
	if (!v->dma_as)
		return -ENOMEM;
	/* Replays what is there now as additions. */
	address_space_set_listener(v->dma_as, &dma_listener, v);
	return 0;
}

void vfio_dma_stop(struct vfio_pci *v)
{
	/* Removes the listener's view first: every range is unmapped. */
	address_space_free(v->dma_as);
	v->dma_as = NULL;
}
