/*
 * The PCI host bridge: bus 0 with up to 32 single-function devices, reached
 * through ECAM (one 4 KiB config page per function at bus<<20 | devfn<<12)
 * and through the legacy 0xCF8 address / 0xCFC data port pair.
 *
 * The bus lock covers only the bus itself: which function sits at which
 * devfn, and the CF8 register.  A config access looks its function up
 * under it, pins the function (so it cannot be unplugged meanwhile) and
 * drops it; the access itself, and every hook it reaches, runs under the
 * function's own lock.  So two vCPUs never see a half-applied write to one
 * function (a BAR moving while decode toggles), and a hook that waits for
 * an iothread (virtio's status and reset through its config window, its
 * bus master hook) holds up accesses to its own function only, never the
 * bus: another vCPU's read of any other function goes straight through.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/kvm.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "pci_internal.h"

#define CF8_ENABLE     0x80000000u
/* Enable, bus, device, function, register; the rest reads as zero. */
#define CF8_MASK       0x80fffffcu

static uint32_t all_ones(unsigned len)
{
	return len >= 4 ? UINT32_MAX : (1u << (8 * len)) - 1;
}

static bool valid_access(uint32_t offset, unsigned len)
{
	return (len == 1 || len == 2 || len == 4) && offset < PCI_CONFIG_SPACE_SIZE &&
	       offset + len <= PCI_CONFIG_SPACE_SIZE;
}

/* The function at @devfn with its lock held and pinned, or NULL (absent).
 * The bus lock is held only for the lookup: waiting for the function's
 * lock (a hook of it may be blocked) never holds up the bus. */
static struct pci_device *get_function(struct pci_bus *bus, uint8_t busnr, uint8_t devfn)
{
	struct pci_device *d;

	pthread_mutex_lock(&bus->lock);
	d = busnr == 0 ? bus->devices[devfn] : NULL;
	if (d)
		d->users++;
	pthread_mutex_unlock(&bus->lock);
	if (d)
		pthread_mutex_lock(&d->lock);
	return d;
}

static void put_function(struct pci_bus *bus, struct pci_device *d)
{
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&bus->lock);
	if (--d->users == 0)
		pthread_cond_broadcast(&bus->unpinned);
	pthread_mutex_unlock(&bus->lock);
}

uint32_t pci_bus_config_read(struct pci_bus *bus, uint8_t busnr, uint8_t devfn,
			     uint32_t offset, unsigned len)
{
	struct pci_device *d;
	uint32_t value;

	if (!valid_access(offset, len))
		return all_ones(len);
	d = get_function(bus, busnr, devfn);
	/* An absent function answers with a master abort: all ones. */
	if (!d)
		return all_ones(len);
	value = pci_device_config_read(d, offset, len);
	put_function(bus, d);
	return value;
}

void pci_bus_config_write(struct pci_bus *bus, uint8_t busnr, uint8_t devfn,
			  uint32_t offset, uint32_t value, unsigned len)
{
	struct pci_device *d;
	bool master_before;

	if (!valid_access(offset, len))
		return;
	d = get_function(bus, busnr, devfn);
	if (!d)
		return;
	master_before = pci_bus_master_enabled(d);
	pci_device_config_write(d, offset, value & all_ones(len), len);
	/* Under the function's lock: calls are made in the order the
	 * writes were, so the last one carries the final state. */
	if (master_before != pci_bus_master_enabled(d) && d->ops && d->ops->bus_master)
		d->ops->bus_master(d, pci_bus_master_enabled(d));
	put_function(bus, d);
}

/* ---- ECAM --------------------------------------------------------------------- */

static uint64_t ecam_read(void *opaque, uint64_t offset, unsigned size)
{
	/* Config accesses must be naturally aligned (PCIe 3.0 §7.2.2). */
	if (offset & (size - 1))
		return all_ones(size);
	return pci_bus_config_read(opaque, (uint8_t)(offset >> 20), (uint8_t)(offset >> 12),
				   offset & 0xfff, size);
}

static void ecam_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	if (offset & (size - 1))
		return;
	pci_bus_config_write(opaque, (uint8_t)(offset >> 20), (uint8_t)(offset >> 12),
			     offset & 0xfff, (uint32_t)data, size);
}

/* 8-byte accesses arrive as two dwords. */
static const struct mr_ops ecam_ops = {
	.read = ecam_read, .write = ecam_write,
	.valid_min = 1, .valid_max = 8, .impl_min = 1, .impl_max = 4,
};

/* ---- 0xCF8 / 0xCFC --------------------------------------------------------------- */

static uint64_t cf8_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pci_bus *bus = opaque;

	(void)offset; (void)size;
	return atomic_load(&bus->cf8);
}

static void cf8_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct pci_bus *bus = opaque;

	(void)offset; (void)size;
	atomic_store(&bus->cf8, (uint32_t)data & CF8_MASK);
}

/* Only dword accesses reach the address register: byte accesses to 0xCF8-
 * 0xCFB are other chipset registers (0xCF9 is reset control) on a PC. */
static const struct mr_ops cf8_ops = {
	.read = cf8_read, .write = cf8_write, .valid_min = 4, .valid_max = 4,
};

static uint64_t cfc_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pci_bus *bus = opaque;
	uint32_t addr = atomic_load(&bus->cf8);

	if (!(addr & CF8_ENABLE) || offset + size > 4)
		return all_ones(size);
	return pci_bus_config_read(bus, (uint8_t)(addr >> 16), (uint8_t)(addr >> 8),
				   (addr & 0xfc) + (uint32_t)offset, size);
}

static void cfc_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct pci_bus *bus = opaque;
	uint32_t addr = atomic_load(&bus->cf8);

	if (!(addr & CF8_ENABLE) || offset + size > 4)
		return;
	pci_bus_config_write(bus, (uint8_t)(addr >> 16), (uint8_t)(addr >> 8),
			     (addr & 0xfc) + (uint32_t)offset, (uint32_t)data, size);
}

static const struct mr_ops cfc_ops = {
	.read = cfc_read, .write = cfc_write, .valid_min = 1, .valid_max = 4,
};

/* ---- the bus ---------------------------------------------------------------------- */

int pci_bus_create(const struct pci_host_config *cfg, struct pci_bus **out)
{
	struct pci_bus *bus;
	int r;

	if (!cfg || !cfg->system_root || !cfg->io_root || !out)
		return -EINVAL;
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	bus->cfg = *cfg;
	pthread_mutex_init(&bus->lock, NULL);
	pthread_cond_init(&bus->unpinned, NULL);
	/* q35's host bridge ids, so guests that know q35 feel at home. */
	pci_device_init(&bus->host_bridge, "pci-host", 0x8086, 0x29c0, 0x060000, 0,
			0, 0, NULL, NULL);
	bus->ecam = mr_new_io("pci-ecam", PCI_ECAM_SIZE, &ecam_ops, bus);
	bus->cf8_port = mr_new_io("pci-conf-addr", 4, &cf8_ops, bus);
	bus->cfc_port = mr_new_io("pci-conf-data", 4, &cfc_ops, bus);
	if (!bus->ecam || !bus->cf8_port || !bus->cfc_port) {
		r = -ENOMEM;
		goto fail;
	}
	r = pci_bus_add_device(bus, &bus->host_bridge, 0);
	if (r < 0)
		goto fail;
	memory_transaction_begin();
	r = mr_add_subregion(cfg->system_root, PCI_ECAM_BASE, bus->ecam, 0);
	bus->placed[0] = !r;
	if (!r)
		r = mr_add_subregion(cfg->io_root, PCI_CONFIG_ADDR_PORT, bus->cf8_port, 0);
	bus->placed[1] = !r && bus->placed[0];
	if (!r)
		r = mr_add_subregion(cfg->io_root, PCI_CONFIG_DATA_PORT, bus->cfc_port, 0);
	bus->placed[2] = !r && bus->placed[1];
	memory_transaction_commit();
	if (r < 0)
		goto fail;
	*out = bus;
	return 0;
fail:
	log_error("pci", "cannot create the host bridge: %s", strerror(-r));
	pci_bus_destroy(bus);
	return r;
}

static void free_port(struct mem_region *root, struct mem_region *mr, bool placed)
{
	if (placed)
		mr_del_subregion(root, mr);
	mr_free(mr);
}

void pci_bus_destroy(struct pci_bus *bus)
{
	if (!bus)
		return;
	for (int i = 1; i < 256; i++)
		if (bus->devices[i])
			log_warn("pci", "%s still plugged at destroy", bus->devices[i]->name);
	memory_transaction_begin();
	free_port(bus->cfg.system_root, bus->ecam, bus->placed[0]);
	free_port(bus->cfg.io_root, bus->cf8_port, bus->placed[1]);
	free_port(bus->cfg.io_root, bus->cfc_port, bus->placed[2]);
	memory_transaction_commit();
	pthread_mutex_destroy(&bus->lock);
	pthread_cond_destroy(&bus->unpinned);
	free(bus);
}

int pci_bus_add_device(struct pci_bus *bus, struct pci_device *d, int slot)
{
	int r = 0;

	if (!bus || !d || slot < -1 || slot > 31 || d->bus)
		return -EINVAL;
	pthread_mutex_lock(&bus->lock);
	if (slot == -1) {
		/* Slot 0 is the host bridge's. */
		for (slot = 1; slot < 32 && bus->devices[slot << 3]; slot++)
			;
		if (slot == 32)
			r = -ENOSPC;
	} else if (bus->devices[slot << 3]) {
		r = -EBUSY;
	}
	if (!r) {
		d->devfn = (uint8_t)(slot << 3);
		d->bus = bus;
		bus->devices[d->devfn] = d;
	}
	pthread_mutex_unlock(&bus->lock);
	return r;
}

void pci_bus_remove_device(struct pci_bus *bus, struct pci_device *d)
{
	if (!bus || !d || d->bus != bus)
		return;
	pthread_mutex_lock(&bus->lock);
	bus->devices[d->devfn] = NULL;
	/* Nobody finds it any more; wait for those who already did. */
	while (d->users)
		pthread_cond_wait(&bus->unpinned, &bus->lock);
	pthread_mutex_unlock(&bus->lock);
	pthread_mutex_lock(&d->lock);
	pci_device_update_mappings(d, true);
	d->bus = NULL;
	pthread_mutex_unlock(&d->lock);
}

void pci_bus_reset(struct pci_bus *bus)
{
	atomic_store(&bus->cf8, 0);
	for (int i = 0; i < 256; i++) {
		struct pci_device *d = get_function(bus, 0, (uint8_t)i);
		bool was_master;

		if (!d)
			continue;
		was_master = pci_bus_master_enabled(d);
		pci_device_reset_config(d);
		if (d->msix)
			msix_reset(d);
		/* Under the function's lock only: a device may wait for its
		 * iothread here. */
		if (was_master && d->ops && d->ops->bus_master)
			d->ops->bus_master(d, false);
		if (d->ops && d->ops->reset)
			d->ops->reset(d);
		put_function(bus, d);
	}
}

struct kvm *pci_bus_kvm(const struct pci_bus *bus)
{
	return bus->cfg.kvm;
}

struct mem_region *pci_bus_system_root(const struct pci_bus *bus)
{
	return bus->cfg.system_root;
}

void pci_bus_signal_msi(struct pci_bus *bus, uint64_t addr, uint32_t data)
{
	if (bus->cfg.kvm)
		kvm_signal_msi(bus->cfg.kvm, addr, data);
	else if (bus->cfg.msi_hook)
		bus->cfg.msi_hook(bus->cfg.msi_hook_opaque, addr, data);
}
