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

struct world {
	struct mem_region *system, *io;
	struct address_space *as_mem, *as_io;
	struct pci_bus *bus;
	struct guest_mem gm;
	struct event_loop *loop;
	struct virtio_dev vdev;
	struct virtio_pci *vp;
	struct dummy d;
};

static void msi(void *opaque, uint64_t addr, uint32_t data)
{
	(void)opaque; (void)addr; (void)data;
}

static int world_create(struct world *w, bool ioeventfd)
{
	struct pci_host_config cfg = { 0 };
	struct virtio_pci_opts opts = { .ioeventfd = ioeventfd, .slot = -1 };

	w->system = mr_new_container("system", UINT64_MAX);
	w->io = mr_new_container("io", 0x10000);
	w->as_mem = address_space_new("memory", AS_MMIO, w->system);
	w->as_io = address_space_new("io", AS_PIO, w->io);
	cfg = (struct pci_host_config){ .system_root = w->system, .io_root = w->io,
					.msi_hook = msi };
	if (pci_bus_create(&cfg, &w->bus) < 0)
		abort();
	if (guest_mem_create(&w->gm, 64 << 10, 0xc0000000ull) < 0)
		abort();
	/* Nobody runs this loop: handlers run when an input says so. */
	w->loop = event_loop_new("fuzz");
	virtio_dev_init(&w->vdev, &d_ops, &w->d, "fuzz0", &w->gm, w->loop);
	return virtio_pci_create(w->bus, &w->vdev, &opts, &w->vp);
}

static void world_destroy(struct world *w)
{
	virtio_pci_destroy(w->vp);
	virtio_dev_cleanup(&w->vdev);
	event_loop_free(w->loop);
	guest_mem_destroy(&w->gm);
	pci_bus_destroy(w->bus);
	address_space_free(w->as_mem);
	address_space_free(w->as_io);
	mr_free(w->system);
	mr_free(w->io);
}

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
	static struct world w;
	const size_t rec = 14;
	uint64_t v;

	if (size < 1)
		return 0;
	log_set_quiet(true);  /* garbage in on purpose: keep the log small */
	memset(&w, 0, sizeof(w));
	if (world_create(&w, data[0] & 1) < 0)
		abort();
	/* Half the inputs start from a driver-ready placement. */
	if (data[0] & 2) {
		pci_bus_config_write(w.bus, 0, 8, 0x20, 0xc0000000u, 4);
		pci_bus_config_write(w.bus, 0, 8, 0x14, 0xc0010000u, 4);
		pci_bus_config_write(w.bus, 0, 8, 0x04, 0x7, 2);
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
			address_space_read(w.as_mem, PCI_ECAM_BASE + (where & 0x1fffff), &v, len);
			break;
		case 1:
			address_space_write(w.as_mem, PCI_ECAM_BASE + (where & 0x1fffff), value, len);
			break;
		case 2:
			address_space_write(w.as_io, PCI_CONFIG_ADDR_PORT + (where & 3), value, len);
			break;
		case 3:
			address_space_read(w.as_io, PCI_CONFIG_DATA_PORT + (where & 3), &v, len);
			break;
		case 4:
			address_space_write(w.as_io, PCI_CONFIG_DATA_PORT + (where & 3), value, len);
			break;
		case 5:
			address_space_read(w.as_mem, mmio_address(where), &v, len);
			break;
		case 6:
			address_space_write(w.as_mem, mmio_address(where), value, len);
			break;
		default:
			if (where & 1)
				pci_bus_reset(w.bus);
			else if (where & 2)
				guest_mem_write(&w.gm, (where >> 8) % ((64 << 10) - 8), &value, 8);
			else
				event_loop_run_once(w.loop, 0);
			break;
		}
	}
	world_destroy(&w);
	return 0;
}
