/*
 * The PCI host bridge: bus 0 with up to 32 single-function devices, reached
 * through ECAM (one 4 KiB config page per function at bus<<20 | devfn<<12)
 * and through the legacy 0xCF8 address / 0xCFC data port pair.
 *
 * Every config access runs under the bus lock, so two vCPUs never see a
 * half-applied write (a BAR moving while decode toggles).  Hooks that may
 * block on an iothread (bus master, reset) run after it is released.
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

static struct pci_device *lookup(struct pci_bus *bus, uint8_t busnr, uint8_t devfn)
{
	return busnr == 0 ? bus->devices[devfn] : NULL;
}

uint32_t pci_bus_config_read(struct pci_bus *bus, uint8_t busnr, uint8_t devfn,
			     uint32_t offset, unsigned len)
{
	struct pci_device *d;
	uint32_t value;

	if (!valid_access(offset, len))
		return all_ones(len);
	pthread_mutex_lock(&bus->lock);
	d = lookup(bus, busnr, devfn);
	/* An absent function answers with a master abort: all ones. */
	value = d ? pci_device_config_read(d, offset, len) : all_ones(len);
	pthread_mutex_unlock(&bus->lock);
	return value;
}

/* Tell @d about its bus master bit, as it is now. */
static void call_bus_master(struct pci_bus *bus, struct pci_device *d)
{
	bool enabled;

	pthread_mutex_lock(&bus->hook_lock);
	pthread_mutex_lock(&bus->lock);
	enabled = pci_bus_master_enabled(d);
	pthread_mutex_unlock(&bus->lock);
	/* Re-read under hook_lock: when two vCPUs race, the last call made
	 * carries the final state, whatever order they got here in. */
	d->ops->bus_master(d, enabled);
	pthread_mutex_unlock(&bus->hook_lock);
}

void pci_bus_config_write(struct pci_bus *bus, uint8_t busnr, uint8_t devfn,
			  uint32_t offset, uint32_t value, unsigned len)
{
	struct pci_device *d;
	bool master_before, master_changed = false;

	if (!valid_access(offset, len))
		return;
	pthread_mutex_lock(&bus->lock);
	d = lookup(bus, busnr, devfn);
	if (d) {
		master_before = pci_bus_master_enabled(d);
		pci_device_config_write(d, offset, value & all_ones(len), len);
		master_changed = master_before != pci_bus_master_enabled(d);
	}
	pthread_mutex_unlock(&bus->lock);
	if (master_changed && d->ops && d->ops->bus_master)
		call_bus_master(bus, d);
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
	pthread_mutex_init(&bus->hook_lock, NULL);
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
	pthread_mutex_destroy(&bus->hook_lock);
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
	pci_device_update_mappings(d, true);
	bus->devices[d->devfn] = NULL;
	d->bus = NULL;
	pthread_mutex_unlock(&bus->lock);
}

void pci_bus_reset(struct pci_bus *bus)
{
	struct pci_device *devs[256];
	bool was_master[256] = { false };

	pthread_mutex_lock(&bus->hook_lock);
	pthread_mutex_lock(&bus->lock);
	atomic_store(&bus->cf8, 0);
	memory_transaction_begin();
	memcpy(devs, bus->devices, sizeof(devs));
	for (int i = 0; i < 256; i++) {
		struct pci_device *d = devs[i];

		if (!d)
			continue;
		was_master[i] = pci_bus_master_enabled(d);
		pci_device_reset_config(d);
		if (d->msix)
			msix_reset(d);
	}
	memory_transaction_commit();
	pthread_mutex_unlock(&bus->lock);
	/* Outside the bus lock: a device may wait for its iothread here. */
	for (int i = 0; i < 256; i++) {
		struct pci_device *d = devs[i];

		if (!d || !d->ops)
			continue;
		if (was_master[i] && d->ops->bus_master)
			d->ops->bus_master(d, false);
		if (d->ops->reset)
			d->ops->reset(d);
	}
	pthread_mutex_unlock(&bus->hook_lock);
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
