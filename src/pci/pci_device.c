/*
 * One PCI function: its config space with per-byte write masks, BARs the
 * guest sizes and places, and the capability list.
 *
 * BAR placement: a memory BAR's region goes into the system root, an I/O
 * BAR's into the I/O root, at PCI_BAR_PRIORITY.  That is below the platform
 * (RAM, ECAM, the system and test devices, all at 0): a host bridge decodes
 * DRAM and its own windows before it forwards to PCI, so a BAR the guest
 * puts over them is shadowed, never the other way round.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "pci_internal.h"

#define PCI_BAR_PRIORITY (-1)

static const uint16_t command_wmask = PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
	PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
	PCI_COMMAND_INTX_DISABLE;

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor,
		     uint16_t device, uint32_t class_code, uint8_t revision,
		     uint16_t subsys_vendor, uint16_t subsys_id,
		     const struct pci_device_ops *ops, void *opaque)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	snprintf(d->name, sizeof(d->name), "%s", name ? name : "pci");
	d->ops = ops;
	d->opaque = opaque;
	d->cap_end = PCI_STD_HEADER_SIZE;
	for (int i = 0; i < PCI_NUM_BARS; i++)
		d->bars[i].addr = PCI_BAR_UNMAPPED;

	pci_set_word(&d->config[PCI_VENDOR_ID], vendor);
	pci_set_word(&d->config[PCI_DEVICE_ID], device);
	d->config[PCI_REVISION_ID] = revision;
	d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
	d->config[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	d->config[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	d->config[PCI_HEADER_TYPE] = 0;          /* type 0, single function */
	pci_set_word(&d->config[PCI_SUBSYSTEM_VENDOR_ID], subsys_vendor);
	pci_set_word(&d->config[PCI_SUBSYSTEM_ID], subsys_id);
	/* No INTx: every kickvm device interrupts through MSI-X. */
	d->config[PCI_INTERRUPT_PIN] = 0;

	pci_set_word(&d->wmask[PCI_COMMAND], command_wmask);
	pci_set_word(&d->w1cmask[PCI_STATUS], PCI_STATUS_W1C);
	d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	d->wmask[PCI_LATENCY_TIMER] = 0xff;
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

static bool bar_is_io(const struct pci_bar *b)
{
	return b->type & PCI_BAR_IO;
}

static bool bar_is_64(const struct pci_bar *b)
{
	return !bar_is_io(b) && (b->type & PCI_BAR_MEM64);
}

int pci_register_bar(struct pci_device *d, int bar, uint8_t type, struct mem_region *mr)
{
	uint64_t size, mask;
	uint8_t *reg;
	bool io = type & PCI_BAR_IO;

	if (bar < 0 || bar >= PCI_NUM_BARS || !mr)
		return -EINVAL;
	if (io && (type & ~PCI_BAR_IO))
		return -EINVAL;
	if (!io && (type & ~(PCI_BAR_MEM64 | PCI_BAR_PREFETCH)))
		return -EINVAL;
	if ((type & PCI_BAR_MEM64) && bar == PCI_NUM_BARS - 1)
		return -EINVAL;
	size = mr_size(mr);
	if (size & (size - 1) || size < (io ? 4u : 16u) || (io && size > 256) ||
	    (!(type & PCI_BAR_MEM64) && size > (1ull << 31)))
		return -EINVAL;
	if (d->bars[bar].size || (bar > 0 && bar_is_64(&d->bars[bar - 1])) ||
	    ((type & PCI_BAR_MEM64) && d->bars[bar + 1].size))
		return -EBUSY;

	d->bars[bar] = (struct pci_bar){ .size = size, .type = type, .mr = mr,
					 .addr = PCI_BAR_UNMAPPED };
	/* Size probing: the bits below the size read back as zero because
	 * they are not writable, the type bits because they are read-only. */
	mask = ~(size - 1) & (io ? ~0x3ull : ~0xfull);
	reg = &d->config[PCI_BASE_ADDRESS_0 + 4 * bar];
	pci_set_long(reg, type);
	pci_set_long(&d->wmask[PCI_BASE_ADDRESS_0 + 4 * bar], (uint32_t)mask);
	if (type & PCI_BAR_MEM64) {
		pci_set_long(reg + 4, 0);
		pci_set_long(&d->wmask[PCI_BASE_ADDRESS_0 + 4 * bar + 4],
			     (uint32_t)(mask >> 32));
	}
	return 0;
}

int pci_add_capability(struct pci_device *d, uint8_t id, uint8_t size)
{
	unsigned offset = (d->cap_end + 3u) & ~3u;  /* pointers are dword aligned */
	uint8_t *link = &d->config[PCI_CAPABILITY_LIST];

	if (size < 2 || offset + size > PCI_LEGACY_CONFIG_SIZE)
		return -ENOSPC;
	/* Append, so that a walk meets capabilities in the order added. */
	while (*link)
		link = &d->config[*link + 1];
	*link = (uint8_t)offset;
	d->config[offset] = id;
	d->config[offset + 1] = 0;
	memset(&d->wmask[offset], 0, size);
	d->cap_end = (uint16_t)(offset + size);
	pci_set_word(&d->config[PCI_STATUS],
		     pci_get_word(&d->config[PCI_STATUS]) | PCI_STATUS_CAP_LIST);
	return (int)offset;
}

uint8_t pci_find_capability(const struct pci_device *d, uint8_t id)
{
	uint8_t pos = d->config[PCI_CAPABILITY_LIST];

	/* Bounded: a list is at most 48 dword-aligned entries long. */
	for (int n = 0; pos >= PCI_STD_HEADER_SIZE && n < 48; n++) {
		if (d->config[pos] == id)
			return pos;
		pos = d->config[pos + 1];
	}
	return 0;
}

static uint16_t command(const struct pci_device *d)
{
	return pci_get_word(&d->config[PCI_COMMAND]);
}

bool pci_bus_master_enabled(const struct pci_device *d)
{
	return command(d) & PCI_COMMAND_MASTER;
}

bool pci_memory_enabled(const struct pci_device *d)
{
	return command(d) & PCI_COMMAND_MEMORY;
}

/* ---- config space accesses ----------------------------------------------------- */

uint32_t pci_device_config_read(struct pci_device *d, uint32_t offset, unsigned len)
{
	uint32_t value = 0;

	if (d->ops && d->ops->config_read)
		d->ops->config_read(d, offset, len);
	for (unsigned i = 0; i < len; i++)
		value |= (uint32_t)d->config[offset + i] << (8 * i);
	return value;
}

static bool overlaps(uint32_t offset, unsigned len, uint32_t start, uint32_t end)
{
	return offset < end && offset + len > start;
}

void pci_device_config_write(struct pci_device *d, uint32_t offset, uint32_t value,
			     unsigned len)
{
	for (unsigned i = 0; i < len; i++) {
		uint32_t o = offset + i;
		uint8_t v = (uint8_t)(value >> (8 * i));
		uint8_t wm = d->wmask[o];

		d->config[o] = (uint8_t)((d->config[o] & ~wm) | (v & wm));
		d->config[o] &= (uint8_t)~(v & d->w1cmask[o]);
	}
	if (overlaps(offset, len, PCI_COMMAND, PCI_COMMAND + 2) ||
	    overlaps(offset, len, PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_0 + 4 * PCI_NUM_BARS))
		pci_device_update_mappings(d, false);
	if (d->msix)
		msix_config_written(d, offset, len);
	if (d->ops && d->ops->config_write)
		d->ops->config_write(d, offset, value, len);
}

/* ---- BAR mappings ------------------------------------------------------------------ */

/* Where BAR @i should be, or PCI_BAR_UNMAPPED. */
static uint64_t bar_address(const struct pci_device *d, int i)
{
	const struct pci_bar *b = &d->bars[i];
	const uint8_t *reg = &d->config[PCI_BASE_ADDRESS_0 + 4 * i];
	uint64_t addr, last;

	if (bar_is_io(b)) {
		if (!(command(d) & PCI_COMMAND_IO))
			return PCI_BAR_UNMAPPED;
		addr = pci_get_long(reg) & ~0x3u;
		last = addr + b->size - 1;
		/* x86 has 64 KiB of ports; 0 means the guest never placed it. */
		return addr == 0 || last > 0xffff ? PCI_BAR_UNMAPPED : addr;
	}
	if (!(command(d) & PCI_COMMAND_MEMORY))
		return PCI_BAR_UNMAPPED;
	addr = pci_get_long(reg) & ~0xfu;
	if (bar_is_64(b))
		addr |= (uint64_t)pci_get_long(reg + 4) << 32;
	last = addr + b->size - 1;
	/*
	 * 0 is "not assigned"; a BAR reaching the top of its address range is
	 * what the all-ones sizing write leaves behind (a guest that sizes with
	 * decode on, or is halfway through a 64-bit BAR).
	 */
	if (addr == 0 || last < addr || last == UINT64_MAX ||
	    (!bar_is_64(b) && last >= UINT32_MAX))
		return PCI_BAR_UNMAPPED;
	return addr;
}

void pci_device_update_mappings(struct pci_device *d, bool force_off)
{
	if (!d->bus)
		return;
	/* One transaction: a BAR that moves takes its ioeventfds along without
	 * a moment where KVM has neither the old nor the new ones. */
	memory_transaction_begin();
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &d->bars[i];
		struct mem_region *root = bar_is_io(b) ? d->bus->cfg.io_root :
							 d->bus->cfg.system_root;
		uint64_t want;
		int r;

		if (!b->size)
			continue;
		want = force_off ? PCI_BAR_UNMAPPED : bar_address(d, i);
		if (want == b->addr)
			continue;
		if (want == PCI_BAR_UNMAPPED) {
			mr_del_subregion(root, b->mr);
		} else if (b->addr != PCI_BAR_UNMAPPED) {
			mr_set_address(b->mr, want);
		} else {
			r = mr_add_subregion(root, want, b->mr, PCI_BAR_PRIORITY);
			if (r < 0) {
				log_warn_rl(d->name, "cannot map BAR %d at 0x%llx: %s", i,
					 (unsigned long long)want, strerror(-r));
				want = PCI_BAR_UNMAPPED;
			}
		}
		b->addr = want;
	}
	memory_transaction_commit();
}

void pci_device_reset_config(struct pci_device *d)
{
	/* Writable bits go back to zero; read-only ones (ids, BAR type bits,
	 * capability bodies the device owns) keep their values. */
	pci_set_word(&d->config[PCI_COMMAND], 0);
	pci_set_word(&d->config[PCI_STATUS],
		     pci_get_word(&d->config[PCI_STATUS]) & ~PCI_STATUS_W1C);
	d->config[PCI_CACHE_LINE_SIZE] = 0;
	d->config[PCI_LATENCY_TIMER] = 0;
	d->config[PCI_INTERRUPT_LINE] = 0;
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint8_t *reg = &d->config[PCI_BASE_ADDRESS_0 + 4 * i];
		const uint8_t *wm = &d->wmask[PCI_BASE_ADDRESS_0 + 4 * i];

		pci_set_long(reg, pci_get_long(reg) & ~pci_get_long(wm));
	}
	pci_device_update_mappings(d, false);
}
