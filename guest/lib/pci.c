/*
 * Guest-side PCI (guest/include/pci.h): ECAM, enumeration, BAR placement,
 * capabilities, MSI-X.  Written from the PCI Local Bus 3.0 and PCIe base
 * specifications and ACPI's MCFG description.
 */
#include "guest.h"
#include "pci.h"

static uint64_t ecam = PCI_ECAM_DEFAULT;
static struct pci_dev devices[PCI_MAX_DEVICES];
static unsigned nr_devices;
static bool enumerated;
static uint64_t next_mem = PCI_MEM_BASE;
static uint32_t next_io = PCI_IO_BASE;

/* ---- finding ECAM through ACPI --------------------------------------------------- */

struct acpi_header {
	char sig[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem_id[6], oem_table_id[8];
	uint32_t oem_revision, creator_id, creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
	char sig[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt;
	uint32_t length;        /* revision >= 2 from here */
	uint64_t xsdt;
	uint8_t xchecksum, reserved[3];
} __attribute__((packed));

struct mcfg_alloc {
	uint64_t base;
	uint16_t segment;
	uint8_t bus_start, bus_end;
	uint32_t reserved;
} __attribute__((packed));

static bool acpi_sum_ok(const void *p, uint32_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	for (uint32_t i = 0; i < len; i++)
		sum += b[i];
	return sum == 0;
}

/* Tables must lie in identity-mapped RAM: refuse the MMIO hole and above,
 * so that a garbage pointer cannot make us read device registers. */
static const struct acpi_header *acpi_table(uint64_t addr)
{
	const struct acpi_header *h = (const void *)addr;

	if (!addr || addr >= KICKVM_MMIO_HOLE - 0x10000)
		return NULL;
	if (h->length < sizeof(*h) || h->length > 0x10000 || !acpi_sum_ok(h, h->length))
		return NULL;
	return h;
}

static uint64_t mcfg_ecam(const struct acpi_header *mcfg)
{
	/* The allocation structures start after the header and 8 reserved bytes. */
	uint32_t off = sizeof(*mcfg) + 8;

	for (; off + sizeof(struct mcfg_alloc) <= mcfg->length; off += sizeof(struct mcfg_alloc)) {
		const struct mcfg_alloc *a = (const void *)((const char *)mcfg + off);

		if (a->segment == 0 && a->bus_start == 0)
			return a->base;
	}
	return 0;
}

static uint64_t acpi_find_ecam(void)
{
	const struct hvm_start_info *si = guest_start_info();
	const struct acpi_rsdp *rsdp;
	const struct acpi_header *root;
	unsigned entry_size;

	if (!si || !si->rsdp_paddr || si->rsdp_paddr >= KICKVM_MMIO_HOLE)
		return 0;
	rsdp = (const void *)si->rsdp_paddr;
	if (memcmp(rsdp->sig, "RSD PTR ", 8) || !acpi_sum_ok(rsdp, 20))
		return 0;
	if (rsdp->revision >= 2 && rsdp->xsdt) {
		root = acpi_table(rsdp->xsdt);
		entry_size = 8;
	} else {
		root = acpi_table(rsdp->rsdt);
		entry_size = 4;
	}
	if (!root)
		return 0;
	for (uint32_t off = sizeof(*root); off + entry_size <= root->length; off += entry_size) {
		const uint8_t *p = (const uint8_t *)root + off;
		uint64_t addr = 0;
		const struct acpi_header *t;

		for (unsigned i = 0; i < entry_size; i++)
			addr |= (uint64_t)p[i] << (8 * i);
		t = acpi_table(addr);
		if (t && !memcmp(t->sig, "MCFG", 4))
			return mcfg_ecam(t);
	}
	return 0;
}

uint64_t pci_init(uint64_t override, const char **source)
{
	uint64_t acpi = override ? 0 : acpi_find_ecam();

	if (override) {
		ecam = override;
		*source = "command line";
	} else if (acpi) {
		ecam = acpi;
		*source = "ACPI MCFG";
	} else {
		ecam = PCI_ECAM_DEFAULT;
		*source = "default";
	}
	return ecam;
}

uint64_t pci_ecam_base(void)
{
	return ecam;
}

/* ---- config access ----------------------------------------------------------------- */

static uint64_t cfg_addr(uint8_t bus, uint8_t slot, uint8_t fn)
{
	return ecam + ((uint64_t)bus << 20) + ((uint64_t)slot << 15) + ((uint64_t)fn << 12);
}

uint8_t pci_read8(const struct pci_dev *d, uint32_t off) { return mmio_read8(d->cfg + off); }
uint16_t pci_read16(const struct pci_dev *d, uint32_t off) { return mmio_read16(d->cfg + off); }
uint32_t pci_read32(const struct pci_dev *d, uint32_t off) { return mmio_read32(d->cfg + off); }
void pci_write8(const struct pci_dev *d, uint32_t off, uint8_t v) { mmio_write8(d->cfg + off, v); }
void pci_write16(const struct pci_dev *d, uint32_t off, uint16_t v) { mmio_write16(d->cfg + off, v); }
void pci_write32(const struct pci_dev *d, uint32_t off, uint32_t v) { mmio_write32(d->cfg + off, v); }

/* ---- BARs ---------------------------------------------------------------------------- */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Size BAR @i by writing all ones (decode is off during enumeration),
 * place it naturally aligned in its window, and return how many BAR slots
 * it used (2 for a 64-bit one). */
static int bar_setup(struct pci_dev *d, int i)
{
	uint32_t off = PCI_BAR0 + 4 * i;
	uint32_t orig = pci_read32(d, off), lo;
	struct pci_bar *b = &d->bars[i];
	uint64_t mask;

	pci_write32(d, off, 0xffffffff);
	lo = pci_read32(d, off);
	pci_write32(d, off, orig);
	if (lo == 0 || lo == 0xffffffff)        /* unimplemented BAR */
		return 1;

	if (lo & 1) {
		/* I/O: only the low 16 bits decode on x86. */
		mask = (lo & ~3u) | 0xffff0000u;
		b->size = (uint32_t)~mask + 1;
		if (!b->size || align_up(next_io, b->size) + b->size > PCI_IO_LIMIT)
			return 1;
		b->kind = PCI_BAR_IO;
		b->addr = align_up(next_io, b->size);
		next_io = (uint32_t)(b->addr + b->size);
		pci_write32(d, off, (uint32_t)b->addr);
		return 1;
	}

	b->prefetch = lo & 8;
	mask = lo & ~0xfull;
	if (((lo >> 1) & 3) == 2 && i < 5) {
		uint32_t orig_hi = pci_read32(d, off + 4);

		pci_write32(d, off + 4, 0xffffffff);
		mask |= (uint64_t)pci_read32(d, off + 4) << 32;
		pci_write32(d, off + 4, orig_hi);
		b->kind = PCI_BAR_MEM64;
	} else {
		mask |= 0xffffffff00000000ull;
		b->kind = PCI_BAR_MEM32;
	}
	b->size = ~mask + 1;
	if (!b->size || b->size > PCI_MEM_LIMIT - PCI_MEM_BASE ||
	    align_up(next_mem, b->size) + b->size > PCI_MEM_LIMIT) {
		printf("pci: %02x:%02x.%x BAR%d of 0x%llx bytes does not fit: left unplaced\n",
		       d->bus, d->slot, d->fn, i, (unsigned long long)b->size);
		b->kind = PCI_BAR_NONE;
		b->size = 0;
		return lo & 4 ? 2 : 1;
	}
	b->addr = align_up(next_mem, b->size);
	next_mem = b->addr + b->size;
	pci_write32(d, off, (uint32_t)b->addr | (lo & 0xf));
	if (b->kind == PCI_BAR_MEM64) {
		pci_write32(d, off + 4, (uint32_t)(b->addr >> 32));
		return 2;
	}
	return 1;
}

static void function_add(uint8_t slot, uint8_t fn, uint16_t vendor)
{
	struct pci_dev *d;
	uint16_t cmd;

	if (nr_devices == PCI_MAX_DEVICES) {
		printf("pci: more than %d functions: 00:%02x.%x ignored\n", PCI_MAX_DEVICES,
		       slot, fn);
		return;
	}
	d = &devices[nr_devices++];
	d->bus = 0;
	d->slot = slot;
	d->fn = fn;
	d->cfg = cfg_addr(0, slot, fn);
	d->vendor = vendor;
	d->device = pci_read16(d, PCI_DEVICE_ID);
	d->class_code = pci_read32(d, PCI_CLASS_REV) >> 8;
	d->header_type = pci_read8(d, PCI_HEADER_TYPE) & 0x7f;
	if (d->header_type != 0)        /* bridges: no BARs placed, no buses behind */
		return;
	d->subsys_vendor = pci_read16(d, PCI_SUBSYS_VENDOR);
	d->subsys_id = pci_read16(d, PCI_SUBSYS_ID);

	/* Decode off while the BARs hold all ones. */
	cmd = pci_read16(d, PCI_COMMAND);
	pci_write16(d, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEM));
	for (int i = 0; i < 6;)
		i += bar_setup(d, i);
	pci_write16(d, PCI_COMMAND, (cmd & ~(PCI_CMD_IO | PCI_CMD_MEM)) | PCI_CMD_INTX_OFF);
}

unsigned pci_enumerate(void)
{
	if (enumerated)
		return nr_devices;
	enumerated = true;
	for (uint8_t slot = 0; slot < 32; slot++) {
		uint64_t f0 = cfg_addr(0, slot, 0);
		uint16_t vendor = mmio_read16(f0 + PCI_VENDOR_ID);
		unsigned nfn;

		if (vendor == 0xffff || vendor == 0)
			continue;
		nfn = mmio_read8(f0 + PCI_HEADER_TYPE) & 0x80 ? 8 : 1;
		function_add(slot, 0, vendor);
		for (uint8_t fn = 1; fn < nfn; fn++) {
			vendor = mmio_read16(cfg_addr(0, slot, fn) + PCI_VENDOR_ID);
			if (vendor != 0xffff && vendor != 0)
				function_add(slot, fn, vendor);
		}
	}
	return nr_devices;
}

struct pci_dev *pci_device(unsigned index)
{
	return index < nr_devices ? &devices[index] : NULL;
}

struct pci_dev *pci_find(uint16_t vendor, uint16_t dev_lo, uint16_t dev_hi, unsigned nth)
{
	for (unsigned i = 0; i < nr_devices; i++) {
		struct pci_dev *d = &devices[i];

		if (d->vendor == vendor && d->device >= dev_lo && d->device <= dev_hi &&
		    nth-- == 0)
			return d;
	}
	return NULL;
}

void pci_enable(struct pci_dev *d, uint16_t bits)
{
	uint16_t cmd = pci_read16(d, PCI_COMMAND);

	pci_write16(d, PCI_COMMAND, cmd | bits | PCI_CMD_INTX_OFF);
}

void pci_disable_master(struct pci_dev *d)
{
	pci_write16(d, PCI_COMMAND, pci_read16(d, PCI_COMMAND) & ~PCI_CMD_MASTER);
}

/* ---- capabilities --------------------------------------------------------------------- */

uint8_t pci_find_cap(const struct pci_dev *d, uint8_t id, uint8_t after)
{
	uint8_t off;

	if (!(pci_read16(d, PCI_STATUS) & PCI_STATUS_CAPS))
		return 0;
	off = after ? pci_read8(d, after + 1) : pci_read8(d, PCI_CAP_PTR);
	/* At most 48 capabilities fit in 192 bytes: more means a loop. */
	for (int n = 0; n < 48 && off >= 0x40; n++) {
		off &= 0xfc;
		if (pci_read8(d, off) == id)
			return off;
		off = pci_read8(d, off + 1);
	}
	return 0;
}

/* ---- MSI and MSI-X ------------------------------------------------------------------------ */

#define MSI_ADDR_BASE      0xfee00000u
#define MSI_CTRL           2
#define MSI_ADDR_LO        4
#define MSI_CTRL_ENABLE    0x0001
#define MSI_CTRL_MME       0x0070       /* multiple message enable: 0 = one vector */
#define MSI_CTRL_64BIT     0x0080
#define MSI_CTRL_MASKABLE  0x0100

/* The message address of a fixed, edge, physical-destination interrupt. */
static uint32_t msi_address(uint32_t apic_id)
{
	if (apic_id > 255)
		GUEST_FAIL("MSI: APIC id %u does not fit an xAPIC-format address", apic_id);
	return MSI_ADDR_BASE | apic_id << 12;
}

int pci_msi_enable(struct pci_dev *d, uint32_t apic_id, uint8_t vector)
{
	uint8_t cap = pci_find_cap(d, PCI_CAP_MSI, 0);
	uint16_t ctrl;
	uint32_t data, mask;

	if (!cap)
		return -1;
	ctrl = pci_read16(d, cap + MSI_CTRL);
	/* The layout after the address depends on 64-bit support:
	 * 32-bit: data at 8, mask at 12; 64-bit: upper address at 8, data
	 * at 12, mask at 16. */
	data = ctrl & MSI_CTRL_64BIT ? 12 : 8;
	mask = data + 4;
	pci_write16(d, cap + MSI_CTRL, ctrl & ~(MSI_CTRL_ENABLE | MSI_CTRL_MME));
	pci_write32(d, cap + MSI_ADDR_LO, msi_address(apic_id));
	if (ctrl & MSI_CTRL_64BIT)
		pci_write32(d, cap + MSI_ADDR_LO + 4, 0);
	pci_write16(d, cap + data, vector);
	if (ctrl & MSI_CTRL_MASKABLE)
		pci_write32(d, cap + mask, 0);
	pci_write16(d, cap + MSI_CTRL, (ctrl & ~MSI_CTRL_MME) | MSI_CTRL_ENABLE);
	return 0;
}

void pci_msi_disable(struct pci_dev *d)
{
	uint8_t cap = pci_find_cap(d, PCI_CAP_MSI, 0);

	if (cap)
		pci_write16(d, cap + MSI_CTRL,
			    pci_read16(d, cap + MSI_CTRL) & ~MSI_CTRL_ENABLE);
}

#define MSIX_CTRL          2
#define MSIX_TABLE         4
#define MSIX_PBA           8
#define MSIX_CTRL_ENABLE   0x8000
#define MSIX_CTRL_FMASK    0x4000
#define MSIX_ENTRY_SIZE    16
#define MSIX_ENTRY_CTRL    12

static uint64_t msix_region(struct pci_dev *d, uint32_t reg)
{
	const struct pci_bar *b = &d->bars[reg & 7];

	if ((reg & 7) > 5 || (b->kind != PCI_BAR_MEM32 && b->kind != PCI_BAR_MEM64))
		return 0;
	return b->addr + (reg & ~7u);
}

int pci_msix_init(struct pci_dev *d, struct pci_msix *m)
{
	uint8_t cap = pci_find_cap(d, PCI_CAP_MSIX, 0);
	uint16_t ctrl;

	if (!cap)
		return -1;
	m->dev = d;
	m->cap = cap;
	ctrl = pci_read16(d, cap + MSIX_CTRL);
	m->nr_entries = (ctrl & 0x7ff) + 1;
	m->table = msix_region(d, pci_read32(d, cap + MSIX_TABLE));
	m->pba = msix_region(d, pci_read32(d, cap + MSIX_PBA));
	if (!m->table || !m->pba)
		return -1;
	/* The table is in memory space: decode must be on to touch it. */
	pci_enable(d, PCI_CMD_MEM);
	/* Enable with the function masked, so no entry fires while its
	 * address and data are half written; entries start masked. */
	pci_write16(d, cap + MSIX_CTRL, (ctrl & ~0x7ff) | MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK);
	for (unsigned i = 0; i < m->nr_entries; i++)
		pci_msix_mask(m, i, true);
	return 0;
}

void pci_msix_set(struct pci_msix *m, unsigned entry, uint32_t apic_id, uint8_t vector)
{
	uint64_t e = m->table + (uint64_t)entry * MSIX_ENTRY_SIZE;

	if (entry >= m->nr_entries)
		GUEST_FAIL("pci_msix_set: entry %u of %u", entry, m->nr_entries);
	/* Mask while rewriting, as the spec asks of software. */
	pci_msix_mask(m, entry, true);
	mmio_write32(e + 0, msi_address(apic_id));
	mmio_write32(e + 4, 0);
	mmio_write32(e + 8, vector);    /* fixed delivery, edge */
	pci_msix_mask(m, entry, false);
}

void pci_msix_mask(struct pci_msix *m, unsigned entry, bool masked)
{
	uint64_t ctrl = m->table + (uint64_t)entry * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL;
	uint32_t v = mmio_read32(ctrl);

	mmio_write32(ctrl, masked ? v | 1 : v & ~1u);
}

void pci_msix_function_mask(struct pci_msix *m, bool masked)
{
	uint16_t ctrl = pci_read16(m->dev, m->cap + MSIX_CTRL);

	pci_write16(m->dev, m->cap + MSIX_CTRL,
		    masked ? ctrl | MSIX_CTRL_FMASK : ctrl & ~MSIX_CTRL_FMASK);
}

bool pci_msix_pending(struct pci_msix *m, unsigned entry)
{
	/* Dword reads: the narrowest access every PBA must support. */
	return mmio_read32(m->pba + 4 * (entry / 32)) >> (entry % 32) & 1;
}

void pci_msix_disable(struct pci_msix *m)
{
	uint16_t ctrl = pci_read16(m->dev, m->cap + MSIX_CTRL);

	pci_write16(m->dev, m->cap + MSIX_CTRL, ctrl & ~(MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK));
}
