/*
 * The virtio modern PCI transport, driver side (virtio 1.2 §4.1): find the
 * structures through the vendor capabilities, run the initialisation
 * sequence, set up split queues with their doorbells and MSI-X vectors,
 * reset.  Runs at CPL3; the only trip to CPL0 is routing an interrupt
 * vector to its counting stub, once per vector.
 */
#include "guest.h"
#include "virtio.h"

/* Vendor capability (struct virtio_pci_cap, §4.1.4). */
#define VCAP_CFG_TYPE   3
#define VCAP_BAR        4
#define VCAP_OFFSET     8
#define VCAP_LENGTH     12
#define VCAP_NOTIFY_MULT 16

#define VIRTIO_PCI_CAP_COMMON  1
#define VIRTIO_PCI_CAP_NOTIFY  2
#define VIRTIO_PCI_CAP_ISR     3
#define VIRTIO_PCI_CAP_DEVICE  4

/* Common configuration (§4.1.4.3). */
#define COMMON_DFSELECT     0x00
#define COMMON_DF           0x04
#define COMMON_GFSELECT     0x08
#define COMMON_GF           0x0c
#define COMMON_MSIX         0x10
#define COMMON_NUMQ         0x12
#define COMMON_STATUS       0x14
#define COMMON_CFGGEN       0x15
#define COMMON_Q_SELECT     0x16
#define COMMON_Q_SIZE       0x18
#define COMMON_Q_MSIX       0x1a
#define COMMON_Q_ENABLE     0x1c
#define COMMON_Q_NOFF       0x1e
#define COMMON_Q_DESCLO     0x20
#define COMMON_Q_DESCHI     0x24
#define COMMON_Q_AVAILLO    0x28
#define COMMON_Q_AVAILHI    0x2c
#define COMMON_Q_USEDLO     0x30
#define COMMON_Q_USEDHI     0x34
#define COMMON_MIN_LEN      0x38

#define PAGE                4096u
#define VECTOR_FIRST        0x40
#define VECTOR_LAST         0xef

static uint8_t next_vector = VECTOR_FIRST;

uint8_t virtio_alloc_vector(void)
{
	if (next_vector > VECTOR_LAST)
		GUEST_FAIL("virtio: out of interrupt vectors");
	return next_vector++;
}

static long route_vector(void *arg)
{
	irq_set_counter((unsigned)(uintptr_t)arg);
	return 0;
}

const char *virtio_type_name(uint16_t type)
{
	switch (type) {
	case VIRTIO_ID_BLOCK: return "virtio-blk";
	case VIRTIO_ID_RNG: return "virtio-rng";
	case 1: return "virtio-net";
	case 3: return "virtio-console";
	case 5: return "virtio-balloon";
	case 8: return "virtio-scsi";
	default: return "virtio-?";
	}
}

static uint8_t c_r8(const struct virtio_dev *vd, uint32_t o) { return mmio_read8(vd->common + o); }
static uint16_t c_r16(const struct virtio_dev *vd, uint32_t o) { return mmio_read16(vd->common + o); }
static uint32_t c_r32(const struct virtio_dev *vd, uint32_t o) { return mmio_read32(vd->common + o); }
static void c_w8(struct virtio_dev *vd, uint32_t o, uint8_t v) { mmio_write8(vd->common + o, v); }
static void c_w16(struct virtio_dev *vd, uint32_t o, uint16_t v) { mmio_write16(vd->common + o, v); }
static void c_w32(struct virtio_dev *vd, uint32_t o, uint32_t v) { mmio_write32(vd->common + o, v); }

/* 64-bit fields are written as two 32-bit halves, low first (§4.1.3.1). */
static void c_w64(struct virtio_dev *vd, uint32_t o, uint64_t v)
{
	c_w32(vd, o, (uint32_t)v);
	c_w32(vd, o + 4, (uint32_t)(v >> 32));
}

/* ---- probing ----------------------------------------------------------------------- */

uint16_t virtio_pci_device_type(const struct pci_dev *d)
{
	if (d->vendor != VIRTIO_PCI_VENDOR || d->device < 0x1000 || d->device > 0x107f)
		return 0;
	return d->device >= 0x1040 ? d->device - 0x1040 : d->subsys_id;
}

int virtio_pci_probe(struct virtio_dev *vd, struct pci_dev *d)
{
	bool found[5] = { false };

	memset(vd, 0, sizeof(*vd));
	vd->pci = d;
	vd->type = virtio_pci_device_type(d);
	if (!vd->type)
		return -1;

	for (uint8_t cap = pci_find_cap(d, PCI_CAP_VENDOR, 0); cap;
	     cap = pci_find_cap(d, PCI_CAP_VENDOR, cap)) {
		uint8_t type = pci_read8(d, cap + VCAP_CFG_TYPE);
		uint8_t bar = pci_read8(d, cap + VCAP_BAR);
		uint32_t off = pci_read32(d, cap + VCAP_OFFSET);
		uint32_t len = pci_read32(d, cap + VCAP_LENGTH);
		const struct pci_bar *b = bar < 6 ? &d->bars[bar] : NULL;
		uint64_t addr;

		/* The first usable structure of each type wins (§4.1.4.1).  One in
		 * an I/O BAR is not usable here: CPL3 cannot do port I/O. */
		if (type < VIRTIO_PCI_CAP_COMMON || type > VIRTIO_PCI_CAP_DEVICE || found[type])
			continue;
		if (!b || (b->kind != PCI_BAR_MEM32 && b->kind != PCI_BAR_MEM64) ||
		    (uint64_t)off + len > b->size)
			continue;
		addr = b->addr + off;
		switch (type) {
		case VIRTIO_PCI_CAP_COMMON:
			if (len < COMMON_MIN_LEN)
				continue;
			vd->common = addr;
			break;
		case VIRTIO_PCI_CAP_NOTIFY:
			if (len < 2)
				continue;
			vd->notify = addr;
			vd->notify_len = len;
			vd->notify_mult = pci_read32(d, cap + VCAP_NOTIFY_MULT);
			break;
		case VIRTIO_PCI_CAP_ISR:
			vd->isr = addr;
			break;
		case VIRTIO_PCI_CAP_DEVICE:
			vd->device_cfg = addr;
			vd->device_cfg_len = len;
			break;
		}
		found[type] = true;
	}
	if (!vd->common || !vd->notify || !vd->isr) {
		printf("virtio: %02x:%02x.%x (%s): no usable common/notify/ISR structure\n",
		       d->bus, d->slot, d->fn, virtio_type_name(vd->type));
		return -1;
	}
	vd->has_msix = pci_find_cap(d, PCI_CAP_MSIX, 0) != 0;
	return 0;
}

/* ---- status and configuration ---------------------------------------------------------- */

uint8_t virtio_status(const struct virtio_dev *vd)
{
	return c_r8(vd, COMMON_STATUS);
}

static void status_add(struct virtio_dev *vd, uint8_t bits)
{
	c_w8(vd, COMMON_STATUS, (uint8_t)(c_r8(vd, COMMON_STATUS) | bits));
}

void virtio_reset(struct virtio_dev *vd)
{
	uint64_t start = rdtsc();

	c_w8(vd, COMMON_STATUS, 0);
	/* The reset is complete only when the status reads back 0. */
	while (c_r8(vd, COMMON_STATUS) != 0) {
		cpu_relax();
		if (rdtsc() - start > VIRTQ_TIMEOUT_CYCLES)
			GUEST_FAIL("virtio: %s does not finish its reset",
				   virtio_type_name(vd->type));
	}
	vd->resets++;
}

uint32_t virtio_cfg_read(struct virtio_dev *vd, uint32_t off, unsigned size)
{
	uint8_t gen;
	uint32_t v;

	if (!vd->device_cfg || off + size > vd->device_cfg_len)
		GUEST_FAIL("virtio: config read of %u bytes at %u (%u bytes of config)", size,
			   off, vd->device_cfg_len);
	do {
		gen = c_r8(vd, COMMON_CFGGEN);
		v = size == 1 ? mmio_read8(vd->device_cfg + off) :
		    size == 2 ? mmio_read16(vd->device_cfg + off) :
				mmio_read32(vd->device_cfg + off);
	} while (gen != c_r8(vd, COMMON_CFGGEN));
	return v;
}

uint64_t virtio_cfg_read64(struct virtio_dev *vd, uint32_t off)
{
	uint8_t gen;
	uint64_t v;

	/* Two dword reads may straddle a config change: retry until stable. */
	do {
		gen = c_r8(vd, COMMON_CFGGEN);
		v = virtio_cfg_read(vd, off, 4) | (uint64_t)virtio_cfg_read(vd, off + 4, 4) << 32;
	} while (gen != c_r8(vd, COMMON_CFGGEN));
	return v;
}

static int fail(struct virtio_dev *vd, const char *why)
{
	printf("virtio: %s at %02x:%02x.%x: %s\n", virtio_type_name(vd->type), vd->pci->bus,
	       vd->pci->slot, vd->pci->fn, why);
	status_add(vd, VIRTIO_S_FAILED);
	return -1;
}

/* ---- queues ------------------------------------------------------------------------------- */

static unsigned pages_for(uint32_t bytes)
{
	return (bytes + PAGE - 1) / PAGE;
}

static unsigned ring_pages(uint16_t size)
{
	return pages_for(16u * size) + pages_for(6u + 2u * size) +
	       pages_for(6u + 8u * size) + pages_for(8u * size);
}

static int queue_setup(struct virtio_dev *vd, unsigned q)
{
	struct virtq *vq = &vd->vq[q];
	uint16_t max, size, noff;
	unsigned limit = vd->opts.queue_size ? vd->opts.queue_size : VIRTIO_QUEUE_SIZE_MAX;
	uint8_t *mem;

	c_w16(vd, COMMON_Q_SELECT, (uint16_t)q);
	max = c_r16(vd, COMMON_Q_SIZE);
	if (max == 0)
		return fail(vd, "queue not available");
	if (c_r16(vd, COMMON_Q_ENABLE))
		return fail(vd, "queue enabled before the driver set it up");
	/* Split queues must have a power-of-two size. */
	for (size = 1; size * 2u <= max && size * 2u <= limit; size *= 2)
		;

	/* Ring memory: a reset keeps it, a re-initialisation reuses it. */
	if (vd->ring_mem[q] && vd->ring_size[q] == size) {
		memset(vd->ring_mem[q], 0, (size_t)ring_pages(size) * PAGE);
	} else {
		vd->ring_mem[q] = page_alloc(ring_pages(size));
		vd->ring_size[q] = size;
	}
	mem = vd->ring_mem[q];
	vq->index = (uint16_t)q;
	vq->size = size;
	vq->desc = (void *)mem;
	mem += pages_for(16u * size) * PAGE;
	vq->avail = (void *)mem;
	mem += pages_for(6u + 2u * size) * PAGE;
	vq->used = (void *)mem;
	mem += pages_for(6u + 8u * size) * PAGE;
	vq->token = (void *)mem;
	for (uint16_t i = 0; i < size; i++)
		vq->desc[i].next = (uint16_t)(i + 1);
	vq->free_head = 0;
	vq->num_free = size;
	vq->avail_idx = vq->kicked_idx = vq->last_used = 0;
	vq->event_idx = virtio_has(vd, VIRTIO_F_EVENT_IDX);

	c_w16(vd, COMMON_Q_SIZE, size);
	c_w64(vd, COMMON_Q_DESCLO, (uint64_t)vq->desc);
	c_w64(vd, COMMON_Q_AVAILLO, (uint64_t)vq->avail);
	c_w64(vd, COMMON_Q_USEDLO, (uint64_t)vq->used);

	if (vd->opts.irq) {
		/* MSI-X entry 0 is the config vector, entry q + 1 queue q's. */
		vq->msix_entry = (uint16_t)(q + 1);
		if (vq->msix_entry >= vd->msix.nr_entries)
			return fail(vd, "not enough MSI-X entries for a vector per queue");
		if (!vq->irq_vector) {
			vq->irq_vector = virtio_alloc_vector();
			run_kernel(route_vector, (void *)(uintptr_t)vq->irq_vector);
		}
		pci_msix_set(&vd->msix, vq->msix_entry, vd->opts.apic_id, vq->irq_vector);
		c_w16(vd, COMMON_Q_MSIX, vq->msix_entry);
		if (c_r16(vd, COMMON_Q_MSIX) != vq->msix_entry)
			return fail(vd, "device refused the queue's MSI-X vector");
		vq->irq_seen = irq_count(vq->irq_vector);
	} else {
		/* Polled: no vector, and no interrupt asked for in the ring either. */
		vq->irq_vector = 0;
		vq->msix_entry = VIRTIO_NO_VECTOR;
		c_w16(vd, COMMON_Q_MSIX, VIRTIO_NO_VECTOR);
		vq->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
		if (vq->event_idx)
			*(volatile uint16_t *)&vq->avail->ring[size] = 0x8000;
	}

	noff = c_r16(vd, COMMON_Q_NOFF);
	if ((uint64_t)noff * vd->notify_mult + 2 > vd->notify_len)
		return fail(vd, "queue doorbell outside the notify structure");
	vq->doorbell = vd->notify + (uint64_t)noff * vd->notify_mult;
	c_w16(vd, COMMON_Q_ENABLE, 1);
	return 0;
}

/* ---- initialisation ----------------------------------------------------------------------- */

static int msix_setup(struct virtio_dev *vd)
{
	if (!vd->has_msix) {
		if (vd->opts.irq)
			return fail(vd, "interrupt mode needs MSI-X");
		return 0;
	}
	/* Once per device: a virtio reset leaves the PCI function's MSI-X
	 * state alone, only the virtio vector numbers go back to NO_VECTOR.
	 * Enabled even when polling, so the device never falls back to INTx. */
	if (!vd->msix_on) {
		if (pci_msix_init(vd->pci, &vd->msix))
			return fail(vd, "MSI-X table not in a memory BAR");
		vd->msix_on = true;
	}
	pci_msix_function_mask(&vd->msix, true);
	if (!vd->opts.irq) {
		c_w16(vd, COMMON_MSIX, VIRTIO_NO_VECTOR);
		return 0;
	}
	if (!vd->config_vector) {
		vd->config_vector = virtio_alloc_vector();
		run_kernel(route_vector, (void *)(uintptr_t)vd->config_vector);
	}
	pci_msix_set(&vd->msix, 0, vd->opts.apic_id, vd->config_vector);
	c_w16(vd, COMMON_MSIX, 0);
	if (c_r16(vd, COMMON_MSIX) != 0)
		return fail(vd, "device refused the config MSI-X vector");
	return 0;
}

int virtio_init(struct virtio_dev *vd, uint64_t want, unsigned nr_queues,
		const struct virtio_opts *o)
{
	uint64_t accept = want | VIRTIO_BIT(VIRTIO_F_VERSION_1);

	vd->opts = *o;
	if (nr_queues > VIRTIO_MAX_QUEUES)
		return fail(vd, "too many queues asked for");
	pci_enable(vd->pci, PCI_CMD_MEM | PCI_CMD_MASTER);
	virtio_reset(vd);
	status_add(vd, VIRTIO_S_ACKNOWLEDGE);
	status_add(vd, VIRTIO_S_DRIVER);

	c_w32(vd, COMMON_DFSELECT, 0);
	vd->offered = c_r32(vd, COMMON_DF);
	c_w32(vd, COMMON_DFSELECT, 1);
	vd->offered |= (uint64_t)c_r32(vd, COMMON_DF) << 32;
	if (!o->no_event_idx)
		accept |= VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	if (!o->no_indirect)
		accept |= VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	vd->features = vd->offered & accept;
	if (!virtio_has(vd, VIRTIO_F_VERSION_1))
		return fail(vd, "VIRTIO_F_VERSION_1 not offered (legacy-only device)");
	c_w32(vd, COMMON_GFSELECT, 0);
	c_w32(vd, COMMON_GF, (uint32_t)vd->features);
	c_w32(vd, COMMON_GFSELECT, 1);
	c_w32(vd, COMMON_GF, (uint32_t)(vd->features >> 32));
	status_add(vd, VIRTIO_S_FEATURES_OK);
	if (!(virtio_status(vd) & VIRTIO_S_FEATURES_OK))
		return fail(vd, "device did not accept our features (FEATURES_OK clear)");

	vd->num_queues = c_r16(vd, COMMON_NUMQ);
	if (nr_queues > vd->num_queues)
		return fail(vd, "fewer queues than the driver needs");
	if (msix_setup(vd))
		return -1;
	for (unsigned q = 0; q < nr_queues; q++)
		if (queue_setup(vd, q))
			return -1;
	vd->nr_vqs = nr_queues;
	if (vd->msix_on)
		pci_msix_function_mask(&vd->msix, false);
	status_add(vd, VIRTIO_S_DRIVER_OK);
	if (virtio_status(vd) & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED))
		return fail(vd, "device reports an error after DRIVER_OK");
	return 0;
}
