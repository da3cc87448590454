/* What the fuzz targets share (see fuzz_common.h). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fuzz_common.h"

#define CANARY 0xcc

void fuzz_guest_mem_over(struct guest_mem *gm, uint8_t *hva, uint64_t size)
{
	gm->memfd = -1;
	gm->total = size;
	gm->nr_banks = 1;
	gm->banks[0] = (struct guest_mem_bank){ .gpa = 0, .size = size, .hva = hva };
}

void canaried_ram_init(struct canaried_ram *r, uint64_t size)
{
	uint8_t *p = mmap(NULL, size + 2 * FUZZ_PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		abort();
	r->canary_lo = p;
	r->canary_hi = p + FUZZ_PAGE + size;
	memset(r->canary_lo, CANARY, FUZZ_PAGE);
	memset(r->canary_hi, CANARY, FUZZ_PAGE);
	fuzz_guest_mem_over(&r->gm, p + FUZZ_PAGE, size);
}

void canaried_ram_check(const struct canaried_ram *r)
{
	for (unsigned i = 0; i < FUZZ_PAGE; i++)
		if (r->canary_lo[i] != CANARY || r->canary_hi[i] != CANARY)
			abort();
}

static void drop_msi(void *opaque, uint64_t addr, uint32_t data)
{
	(void)opaque; (void)addr; (void)data;
}

void fuzz_vpci_create(struct fuzz_vpci *w, const struct virtio_dev_ops *ops, void *dev,
		      bool ioeventfd)
{
	struct virtio_pci_opts opts = { .ioeventfd = ioeventfd, .slot = -1 };

	memset(w, 0, sizeof(*w));
	if (pci_world_create(&w->pci, drop_msi, NULL) < 0 ||
	    guest_mem_create(&w->gm, FUZZ_VPCI_RAM_SIZE, 0xc0000000ull) < 0)
		abort();
	w->loop = event_loop_new("fuzz");
	virtio_dev_init(&w->vdev, ops, dev, "fuzz0", &w->gm, w->loop);
	if (virtio_pci_create(w->pci.bus, &w->vdev, &opts, &w->vp) < 0)
		abort();
}

void fuzz_vpci_destroy(struct fuzz_vpci *w)
{
	virtio_pci_destroy(w->vp);
	virtio_dev_cleanup(&w->vdev);
	event_loop_free(w->loop);
	guest_mem_destroy(&w->gm);
	pci_world_destroy(&w->pci);
}
