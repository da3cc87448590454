/*
 * libFuzzer: random config-space traffic (ECAM and 0xCF8/0xCFC, any size and
 * offset) and MMIO to wherever the BARs end up, against a bus holding a
 * virtio-pci function with a dummy device.  Everything is built and torn
 * down per input, so a crash reproduces from its input alone and a leak in
 * any path shows.
 *
 * Input: a sequence of records
 *   op(1) size(1) where(4) data(8)
 * op % 8: 0 ECAM read, 1 ECAM write, 2 CF8 write, 3 CFC read, 4 CFC write,
 *         5 MMIO read, 6 MMIO write, 7 run the device's loop / bus reset.
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

struct dummy {
	struct virtq_elem elem;
	uint8_t config[16];
};

static void d_notify(struct virtio_dev *vdev, unsigned q)
{
	struct dummy *d = vdev->opaque;
	unsigned budget = 64;

	while (budget-- && virtio_queue_pop(vdev, q, &d->elem) == 1)
		virtio_queue_push(vdev, q, d->elem.head, d->elem.nr_in ? 1 : 0);
	virtio_queue_notify_driver(vdev, q);
}

static void d_read_config(struct virtio_dev *vdev, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, ((struct dummy *)vdev->opaque)->config + off, len);
}

static void d_write_config(struct virtio_dev *vdev, uint32_t off, const void *buf, uint32_t len)
{
	memcpy(((struct dummy *)vdev->opaque)->config + off, buf, len);
}

static const struct virtio_dev_ops d_ops = {
	.name = "fuzz-virtio", .device_id = VIRTIO_ID_BLOCK, .features = 0xff,
	.nr_queues = 3, .queue_max = 64, .config_size = 16,
	.read_config = d_read_config, .write_config = d_write_config,
	.queue_notify = d_notify,
};

static const unsigned sizes[] = { 1, 2, 4, 8 };

/* Where an MMIO record goes: near something interesting, mostly. */
static uint64_t mmio_address(uint32_t where)
{
	static const uint64_t bases[] = {
		0xc0000000ull, 0xc0010000ull, 0xd0000000ull, PCI_ECAM_BASE,
		0xfebf0000ull, 0x100000000ull, 0, 0xffffc000ull,
	};

	return bases[where >> 29] + (where & 0x1ffff);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_vpci w;
	static struct dummy d;
	const size_t rec = 14;
	uint64_t v;

	if (size < 1)
		return 0;
	log_set_quiet(true);  /* garbage in on purpose: keep the log small */
	memset(&d, 0, sizeof(d));
	fuzz_vpci_create(&w, &d_ops, &d, data[0] & 1);
	/* Half the inputs start from a driver-ready placement. */
	if (data[0] & 2) {
		pci_bus_config_write(w.pci.bus, 0, 8, 0x20, 0xc0000000u, 4);
		pci_bus_config_write(w.pci.bus, 0, 8, 0x14, 0xc0010000u, 4);
		pci_bus_config_write(w.pci.bus, 0, 8, 0x04, 0x7, 2);
	}
	data++, size--;
	for (; size >= rec; data += rec, size -= rec) {
		unsigned op = data[0] % 8, len = sizes[data[1] % 4];
		uint32_t where;
		uint64_t value;

		memcpy(&where, data + 2, 4);
		memcpy(&value, data + 6, 8);
		switch (op) {
		case 0:
			address_space_read(w.pci.as_mem, PCI_ECAM_BASE + (where & 0x1fffff), &v, len);
			break;
		case 1:
			address_space_write(w.pci.as_mem, PCI_ECAM_BASE + (where & 0x1fffff), value, len);
			break;
		case 2:
			address_space_write(w.pci.as_io, PCI_CONFIG_ADDR_PORT + (where & 3), value, len);
			break;
		case 3:
			address_space_read(w.pci.as_io, PCI_CONFIG_DATA_PORT + (where & 3), &v, len);
			break;
		case 4:
			address_space_write(w.pci.as_io, PCI_CONFIG_DATA_PORT + (where & 3), value, len);
			break;
		case 5:
			address_space_read(w.pci.as_mem, mmio_address(where), &v, len);
			break;
		case 6:
			address_space_write(w.pci.as_mem, mmio_address(where), value, len);
			break;
		default:
			if (where & 1)
				pci_bus_reset(w.pci.bus);
			else if (where & 2)
				guest_mem_write(&w.gm, (where >> 8) % (FUZZ_VPCI_RAM_SIZE - 8), &value, 8);
			else
				event_loop_run_once(w.loop, 0);
			break;
		}
	}
	fuzz_vpci_destroy(&w);
	return 0;
}
