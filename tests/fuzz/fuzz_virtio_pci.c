/*
 * libFuzzer: register sequences against the virtio-pci transport: common
 * config fields, status transitions (so notifiers start and stop in every
 * order), doorbells, ISR, device config, MSI-X table, bus master and PCI
 * reset, with ring contents in guest memory from the input too.  The BARs
 * are placed and decoded before the input starts, so every record lands on
 * the transport.
 *
 * Input: byte 0 picks ioeventfd on/off; then records op(1) arg(1) value(8).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "kickvm/event.h"
#include "kickvm/guest_mem.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "kickvm/virtio_pci.h"

#define REGS      0xc0000000ull
#define MSIX      0xc0010000ull
#define NQ        3

struct dummy {
	struct virtq_elem elem;
	uint8_t config[12];
};

static void d_notify(struct virtio_dev *vdev, unsigned q)
{
	struct dummy *d = vdev->opaque;
	unsigned budget = 32;

	while (budget-- && virtio_queue_pop(vdev, q, &d->elem) == 1)
		virtio_queue_push(vdev, q, d->elem.head, 0);
	virtio_queue_notify_driver(vdev, q);
}

static void d_read_config(struct virtio_dev *vdev, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, ((struct dummy *)vdev->opaque)->config + off, len);
}

static const struct virtio_dev_ops d_ops = {
	.name = "fuzz-virtio", .device_id = VIRTIO_ID_RNG, .features = 0x5,
	.nr_queues = NQ, .queue_max = 32, .config_size = 12,
	.read_config = d_read_config, .queue_notify = d_notify,
};

static const struct { uint8_t off, size; } fields[] = {
	{ 0x00, 4 }, { 0x04, 4 }, { 0x08, 4 }, { 0x0c, 4 }, { 0x10, 2 }, { 0x12, 2 },
	{ 0x14, 1 }, { 0x15, 1 }, { 0x16, 2 }, { 0x18, 2 }, { 0x1a, 2 }, { 0x1c, 2 },
	{ 0x1e, 2 }, { 0x20, 8 }, { 0x28, 8 }, { 0x30, 8 },
};

/* Status values a driver goes through, and then anything. */
static const uint8_t statuses[] = { 0, 1, 3, 0xb, 0xf, 0x7, 0x8b, 0x80 };

static void rd(struct fuzz_vpci *w, uint64_t addr, unsigned len)
{
	uint64_t v;

	address_space_read(w->pci.as_mem, addr, &v, len);
}

static void wr(struct fuzz_vpci *w, uint64_t addr, uint64_t v, unsigned len)
{
	address_space_write(w->pci.as_mem, addr, v, len);
}

/* Select queue @q and give it rings that lie in RAM. */
static void queue_setup(struct fuzz_vpci *w, unsigned q, uint8_t size_log2)
{
	uint64_t base = 0x1000 + (uint64_t)(q % NQ) * 0x3000;

	wr(w, REGS + 0x16, q, 2);
	wr(w, REGS + 0x18, 1u << (size_log2 % 7), 2);
	wr(w, REGS + 0x1a, q, 2);
	wr(w, REGS + 0x20, base, 8);
	wr(w, REGS + 0x28, base + 0x1000, 8);
	wr(w, REGS + 0x30, base + 0x2000, 8);
	wr(w, REGS + 0x1c, 1, 2);
}

static void negotiate(struct fuzz_vpci *w, uint32_t low)
{
	wr(w, REGS + 0x14, 3, 1);
	wr(w, REGS + 0x08, 0, 4);
	wr(w, REGS + 0x0c, low, 4);
	wr(w, REGS + 0x08, 1, 4);
	wr(w, REGS + 0x0c, 1, 4);
	wr(w, REGS + 0x14, 0xb, 1);
}

/* The PCI config access capability: the vendor capability of type 5. */
static unsigned cfg_cap(struct fuzz_vpci *w)
{
	const struct pci_device *d = virtio_pci_device(w->vp);

	for (unsigned pos = d->config[0x34]; pos; pos = d->config[pos + 1])
		if (d->config[pos] == 0x09 && d->config[pos + 3] == 5)
			return pos;
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_vpci w;
	static struct dummy d;
	const size_t rec = 10;

	if (size < 1)
		return 0;
	log_set_quiet(true);  /* garbage in on purpose: keep the log small */
	memset(&d, 0, sizeof(d));
	fuzz_vpci_create(&w, &d_ops, &d, data[0] & 1);
	pci_bus_config_write(w.pci.bus, 0, 8, 0x20, (uint32_t)REGS, 4);
	pci_bus_config_write(w.pci.bus, 0, 8, 0x14, (uint32_t)MSIX, 4);
	pci_bus_config_write(w.pci.bus, 0, 8, 0x04, 0x6, 2);
	if (data[0] & 2)   /* MSI-X enabled from the start */
		pci_bus_config_write(w.pci.bus, 0, 8,
				     pci_find_capability(virtio_pci_device(w.vp), 0x11) + 3u, 0x80, 1);

	for (data++, size--; size >= rec; data += rec, size -= rec) {
		unsigned op = data[0] % 13, arg = data[1];
		uint64_t value;

		memcpy(&value, data + 2, 8);
		switch (op) {
		case 0: {
			unsigned f = arg % 16;

			wr(&w, REGS + fields[f].off, value, fields[f].size);
			break;
		}
		case 1:
			rd(&w, REGS + fields[arg % 16].off, 1u << (arg >> 6));
			break;
		case 2:
			wr(&w, REGS + 0x14, arg & 0x80 ? (uint8_t)value : statuses[arg % 8], 1);
			break;
		case 3:
			wr(&w, REGS + 0x3000 + (arg % 16) * 4 + ((arg >> 4) & 3), value, 1u << (arg >> 6));
			break;
		case 4:
			rd(&w, REGS + 0x1000 + (arg & 7), 1u << (arg >> 6));
			break;
		case 5:
			if (arg & 0x80)
				wr(&w, REGS + 0x2000 + (arg & 0xf), value, 1u << ((arg >> 5) & 3));
			else
				rd(&w, REGS + 0x2000 + (arg & 0xf), 1u << ((arg >> 5) & 3));
			break;
		case 6:
			wr(&w, MSIX + (arg & 0x3f) * 4, value, arg & 0x80 ? 8 : 4);
			break;
		case 7:
			pci_bus_config_write(w.pci.bus, 0, 8, 0x40 + (arg & 0x7f), (uint32_t)value,
					     1u << ((arg >> 7) + (value & 1)));
			break;
		case 8:
			if (arg & 1)
				pci_bus_config_write(w.pci.bus, 0, 8, 0x04, arg & 0x2 ? 0x6 : 0x2, 2);
			else if (arg & 2)
				pci_bus_reset(w.pci.bus);
			else
				event_loop_run_once(w.loop, 0);
			break;
		case 9:
			guest_mem_write(&w.gm, (value >> 16) % (FUZZ_VPCI_RAM_SIZE - 6), &value, 6);
			break;
		case 10:
			queue_setup(&w, arg, (uint8_t)value);
			break;
		case 11:
			negotiate(&w, (uint32_t)value);
			break;
		default: {
			/* Through VIRTIO_PCI_CAP_PCI_CFG: point the window, move data. */
			unsigned c = cfg_cap(&w);

			pci_bus_config_write(w.pci.bus, 0, 8, c + 4, arg & 0x80 ? arg & 7 : 4, 1);
			pci_bus_config_write(w.pci.bus, 0, 8, c + 8, (uint32_t)(value >> 32) & 0x3fff, 4);
			pci_bus_config_write(w.pci.bus, 0, 8, c + 12, 1u << (arg & 3), 4);
			if (arg & 0x40)
				pci_bus_config_write(w.pci.bus, 0, 8, c + 16, (uint32_t)value, 4);
			else
				pci_bus_config_read(w.pci.bus, 0, 8, c + 16, 1u << ((arg >> 4) & 3));
			break;
		}
		}
	}
	fuzz_vpci_destroy(&w);
	return 0;
}
