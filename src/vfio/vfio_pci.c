/*
 * The VFIO device model: creation, the virtualized config space, reset and
 * stats (the BARs are in vfio_bars.c, interrupts in vfio_irq.c, DMA in
 * vfio_dma.c; what the guest sees: include/kickvm/vfio_pci.h).
 *
 * Config space has two masks per byte, in the manner of QEMU's vfio
 * emulated_config_bits: @emu, the bits kickvm keeps (reads are answered
 * from its copy), and @fwd, the bits a guest write passes to the device.
 * Everything the guest's driver may program but must not reach the device
 * as is (BARs, ROM BAR, interrupt line, MSI and MSI-X) is emulated and not
 * forwarded; the identity and the capability headers are a snapshot taken
 * at creation; command decode and bus master are both kept and forwarded;
 * the rest (status, capability bodies, extended space) goes straight to the
 * device, which (vfio-pci in the kernel) applies its own rules on top.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "vfio/vfio_pci_internal.h"

#define CFG_COMMAND    0x04
#define CFG_STATUS     0x06
#define CFG_CACHE_LINE 0x0c
#define CFG_LATENCY    0x0d
#define CFG_HEADER     0x0e
#define CFG_BIST       0x0f
#define CFG_BAR0       0x10
#define CFG_ROM        0x30
#define CFG_CAP_PTR    0x34
#define CFG_INT_LINE   0x3c
#define CFG_INT_PIN    0x3d
#define CAP_ID_MSI     0x05
#define CAP_ID_MSIX    0x11
#define CMD_DECODE     0x0007  /* I/O, memory, bus master */
#define CMD_MEMORY     0x0002


void vfio_pci_opts_defaults(struct vfio_pci_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->slot = -1;
	o->msix_relocation = VFIO_MSIX_RELOC_OFF;
	o->ioeventfd = true;
}

void vfio_pci_error(struct vfio_pci *v, const char *what, int err)
{
	/* The first one says what happened; the count says how often. */
	if (atomic_fetch_add(&v->errors, 1) == 0)
		log_error(v->id, "%s: %s", what, strerror(err < 0 ? -err : err));
}

static bool overlaps(uint32_t offset, unsigned len, uint32_t start, uint32_t size)
{
	return offset < start + size && offset + len > start;
}

/* ---- config space ------------------------------------------------------------------ */

/* Bring the bytes the device owns up to date before the bus answers a read. */
static void config_read(struct pci_device *d, uint32_t offset, unsigned len)
{
	struct vfio_pci *v = d->opaque;
	uint32_t first = UINT32_MAX, last = 0;
	uint8_t buf[8];
	int r;

	atomic_fetch_add_explicit(&v->config_reads, 1, memory_order_relaxed);
	if (v->msi_cap && overlaps(offset, len, v->msi_cap, 24))
		vfio_msi_config_read(v, offset, len);
	for (uint32_t o = offset; o < offset + len && o < v->config_size; o++) {
		if (v->emu[o] != 0xff) {
			first = first == UINT32_MAX ? o : first;
			last = o;
		}
	}
	if (first == UINT32_MAX)
		return;
	r = v->failed ? -EIO : v->b->ops->region_read(v->b, VFIO_PCI_CONFIG, first, buf,
						       last - first + 1);
	if (r != (int)(last - first + 1)) {
		vfio_pci_error(v, "config space read", r < 0 ? r : -EIO);
		v->failed = true;  /* gone: every access is dropped from now on */
		memset(buf, 0xff, sizeof(buf));  /* what a vanished device reads as */
	}
	for (uint32_t o = first; o <= last; o++)
		d->config[o] = (uint8_t)((d->config[o] & v->emu[o]) | (buf[o - first] & ~v->emu[o]));
}

/* Pass the forwarded bits of a guest write to the device; the device keeps
 * its own value of the bits that are not forwarded. */
static void forward_write(struct vfio_pci *v, uint32_t offset, uint32_t value, unsigned len)
{
	uint32_t first = UINT32_MAX, last = 0;
	uint8_t cur[8], out[8];
	bool need_read = false;
	size_t n;
	int r;

	for (uint32_t o = offset; o < offset + len && o < v->config_size; o++) {
		if (v->fwd[o]) {
			first = first == UINT32_MAX ? o : first;
			last = o;
		}
	}
	if (first == UINT32_MAX || v->failed)
		return;
	n = last - first + 1;
	for (uint32_t o = first; o <= last; o++)
		need_read |= v->fwd[o] != 0xff;
	if (need_read) {
		r = v->b->ops->region_read(v->b, VFIO_PCI_CONFIG, first, cur, n);
		if (r != (int)n) {
			vfio_pci_error(v, "config space read before a write", r < 0 ? r : -EIO);
			return;
		}
	}
	for (uint32_t o = first; o <= last; o++) {
		uint8_t g = (uint8_t)(value >> (8 * (o - offset)));

		out[o - first] = (uint8_t)((g & v->fwd[o]) | (need_read ? cur[o - first] & ~v->fwd[o] : 0));
	}
	r = v->b->ops->region_write(v->b, VFIO_PCI_CONFIG, first, out, n);
	if (r != (int)n)
		vfio_pci_error(v, "config space write", r < 0 ? r : -EIO);
}

static void config_write(struct pci_device *d, uint32_t offset, uint32_t value, unsigned len)
{
	struct vfio_pci *v = d->opaque;

	atomic_fetch_add_explicit(&v->config_writes, 1, memory_order_relaxed);
	forward_write(v, offset, value, len);
	if (overlaps(offset, len, CFG_COMMAND, 2)) {
		bool mem = pci_get_word(&d->config[CFG_COMMAND]) & CMD_MEMORY;

		/* The BAR containers already moved (the bus did that before this
		 * hook); the pieces follow the device's decode, which the write
		 * above just changed: no moment where KVM maps a BAR whose
		 * device does not decode it. */
		if (mem != v->device_mem_on)
			vfio_bars_device_memory(v, mem);
	}
	if (overlaps(offset, len, CFG_COMMAND, 2) || overlaps(offset, len, CFG_ROM, 4))
		vfio_rom_update(v);
	if (v->msi_cap && overlaps(offset, len, v->msi_cap, 24))
		vfio_msi_config_written(v, offset, len);
}

/* Reset the device and what kickvm keeps of its state. */
static void device_reset(struct vfio_pci *v, const char *why)
{
	int r;

	vfio_irq_reset(v);
	vfio_devioev_reset(v);  /* a new driver may write elsewhere */
	vfio_bars_device_memory(v, false);
	if (v->can_reset) {
		r = v->b->ops->reset(v->b);
		if (r < 0)
			log_warn(v->id, "reset (%s) failed: %s", why, strerror(-r));
		else
			atomic_fetch_add(&v->resets, 1);
	} else {
		/* No FLR: at least stop it decoding and mastering. */
		uint16_t off = 0;

		v->b->ops->region_write(v->b, VFIO_PCI_CONFIG, CFG_COMMAND, &off, 2);
	}
	pci_set_long(&v->dev.config[CFG_ROM], 0);
	vfio_rom_update(v);
}

/* Bus reset: the bus already zeroed command and BARs and reset MSI-X. */
static void reset_op(struct pci_device *d)
{
	device_reset(d->opaque, "guest reset");
}

static const struct pci_device_ops vfio_pci_ops = {
	.config_read = config_read,
	.config_write = config_write,
	.reset = reset_op,
};

/* ---- the physical layout ------------------------------------------------------------ */

/* Offset of capability @id in the device's config @cfg, 0 if none; the
 * walk is bounded and never leaves the standard space. */
static uint8_t find_cap(const uint8_t *cfg, uint8_t id)
{
	uint8_t pos = cfg[0x06] & 0x10 ? cfg[CFG_CAP_PTR] & ~3u : 0;

	for (int n = 0; pos >= 0x40 && n < 48; n++) {
		if (cfg[pos] == id)
			return pos;
		pos = cfg[pos + 1] & ~3u;
	}
	return 0;
}

static bool bar_size_ok(uint64_t size, uint8_t type)
{
	if (!size || (size & (size - 1)))
		return false;
	if (type & PCI_BAR_IO)
		return size >= 4 && size <= 256;
	return size >= 16 && ((type & PCI_BAR_MEM64) || size <= (1ull << 31));
}

static void read_bars(struct vfio_pci *v, const uint8_t *cfg)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint32_t reg = pci_get_long(&cfg[CFG_BAR0 + 4 * i]);
		uint64_t size = i < (int)v->num_regions ? v->desc[i].size : 0;
		uint8_t type;

		if (!size)
			continue;
		if (reg & 1)
			type = PCI_BAR_IO;
		else
			type = (uint8_t)((((reg >> 1) & 3) == 2 ? PCI_BAR_MEM64 : 0) |
					 (reg & PCI_BAR_PREFETCH));
		if ((type & PCI_BAR_MEM64) && i == PCI_NUM_BARS - 1)
			type &= (uint8_t)~PCI_BAR_MEM64;
		if (!bar_size_ok(size, type)) {
			log_warn(v->id, "BAR %d: size 0x%" PRIx64 " not usable: hidden", i, size);
			continue;
		}
		v->phys.bars[i] = (struct vfio_bar_layout){ .size = size, .type = type };
		if (type & PCI_BAR_MEM64)
			i++;
	}
}

static bool msix_fits(const struct vfio_layout *l)
{
	const struct vfio_msix_place *p = &l->msix;
	uint64_t table = (uint64_t)l->msix_vectors * 16, pba = (l->msix_vectors + 63) / 64 * 8;

	if (p->table_bar < 0 || p->table_bar >= PCI_NUM_BARS || p->pba_bar < 0 ||
	    p->pba_bar >= PCI_NUM_BARS)
		return false;
	if (!l->bars[p->table_bar].size || !l->bars[p->pba_bar].size ||
	    (l->bars[p->table_bar].type & PCI_BAR_IO) || (l->bars[p->pba_bar].type & PCI_BAR_IO))
		return false;
	return p->table_offset + table <= l->bars[p->table_bar].size &&
	       p->pba_offset + pba <= l->bars[p->pba_bar].size;
}

static int read_msix(struct vfio_pci *v, const uint8_t *cfg, const char **why)
{
	uint8_t cap = find_cap(cfg, CAP_ID_MSIX);
	uint32_t table, pba;

	if (!cap)
		return 0;
	table = pci_get_long(&cfg[cap + 4]);
	pba = pci_get_long(&cfg[cap + 8]);
	v->msix_cap = cap;
	v->phys.has_msix = true;
	v->phys.msix_vectors = (pci_get_word(&cfg[cap + 2]) & 0x7ff) + 1u;
	v->phys.msix = (struct vfio_msix_place){
		.table_bar = (int)(table & 7), .table_offset = table & ~7u,
		.pba_bar = (int)(pba & 7), .pba_offset = pba & ~7u };
	if (!msix_fits(&v->phys)) {
		*why = "the MSI-X table or PBA lies outside its BAR";
		return -EINVAL;
	}
	return 0;
}

static int plan_layout(struct vfio_pci *v, const char **why)
{
	int r;

	if (!v->opts.planner) {
		if (v->opts.msix_relocation != VFIO_MSIX_RELOC_OFF) {
			*why = "x-msix-relocation needs the relocation planner";
			return -ENOTSUP;
		}
		v->virt = v->phys;
		return 0;
	}
	r = v->opts.planner(&v->phys, v->opts.msix_relocation, &v->virt, why);
	if (r < 0) {
		log_error(v->id, "x-msix-relocation refused: %s (%s)", *why ? *why : "no reason given",
			  strerror(-r));
		return -EDOM;  /* the option does not fit the device */
	}
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		if (v->virt.bars[i].size < v->phys.bars[i].size ||
		    (v->virt.bars[i].size && !bar_size_ok(v->virt.bars[i].size, v->virt.bars[i].type))) {
			*why = "the relocation plan shrinks or breaks a BAR";
			return -EINVAL;
		}
	}
	if (v->virt.has_msix != v->phys.has_msix ||
	    v->virt.msix_vectors != v->phys.msix_vectors ||
	    (v->virt.has_msix && !msix_fits(&v->virt))) {
		*why = "the relocation plan puts MSI-X outside its BAR";
		return -EINVAL;
	}
	return 0;
}

/* ---- the emulated header ------------------------------------------------------------- */

static void set_mask(uint8_t *mask, uint32_t offset, unsigned len, uint8_t value)
{
	memset(mask + offset, value, len);
}

static void setup_config(struct vfio_pci *v, const uint8_t *cfg)
{
	struct pci_device *d = &v->dev;
	uint8_t pos;

	memcpy(d->config, cfg, v->config_size);
	/* BARs and ROM are kickvm's: the host's addresses mean nothing here. */
	memset(&d->config[CFG_BAR0], 0, 4 * PCI_NUM_BARS);
	memset(&d->config[CFG_ROM], 0, 4);
	pci_set_word(&d->config[CFG_COMMAND], 0);
	d->config[CFG_HEADER] &= 0x7f;       /* one function of its own */
	d->config[CFG_INT_LINE] = 0;
	d->config[CFG_INT_PIN] = 0;          /* no INTx: MSI or MSI-X */

	/* Owned by kickvm unless said otherwise below. */
	set_mask(v->emu, 0, PCI_CONFIG_SPACE_SIZE, 0xff);
	set_mask(v->fwd, 0, PCI_CONFIG_SPACE_SIZE, 0);
	pci_set_word(&v->emu[CFG_COMMAND], CMD_DECODE);
	set_mask(v->fwd, CFG_COMMAND, 2, 0xff);
	set_mask(v->emu, CFG_STATUS, 2, 0);
	set_mask(v->fwd, CFG_STATUS, 2, 0xff);
	d->w1cmask[CFG_STATUS] = d->w1cmask[CFG_STATUS + 1] = 0;
	for (uint32_t o = CFG_CACHE_LINE; o <= CFG_BIST; o++) {
		if (o == CFG_HEADER)
			continue;
		v->emu[o] = 0;
		v->fwd[o] = 0xff;
	}
	/* Capability bodies and extended space go to the device... */
	set_mask(v->emu, 0x40, v->config_size - 0x40, 0);
	set_mask(v->fwd, 0x40, v->config_size - 0x40, 0xff);
	/* ...but the list itself is a snapshot, so that kickvm and the guest
	 * walk the same list whatever the device does later. */
	pos = cfg[0x06] & 0x10 ? cfg[CFG_CAP_PTR] & ~3u : 0;
	for (int n = 0; pos >= 0x40 && n < 48; n++) {
		set_mask(v->emu, pos, 2, 0xff);
		set_mask(v->fwd, pos, 2, 0);
		pos = cfg[pos + 1] & ~3u;
	}
	if (v->msix_cap) {
		set_mask(v->emu, v->msix_cap, 12, 0xff);
		set_mask(v->fwd, v->msix_cap, 12, 0);
	}
}

/* ---- lifetime ------------------------------------------------------------------------ */

static int read_device(struct vfio_pci *v, uint8_t *cfg, const char **why)
{
	unsigned nirqs;
	int r = v->b->ops->device_info(v->b, &v->num_regions, &nirqs, &v->can_reset);

	if (r < 0) {
		*why = "cannot read the device's info";
		return r;
	}
	if (v->num_regions > VFIO_PCI_NUM_REGIONS)
		v->num_regions = VFIO_PCI_NUM_REGIONS;
	if (v->num_regions <= VFIO_PCI_CONFIG) {
		*why = "the device has no config space region";
		return -ENODEV;
	}
	for (unsigned i = 0; i < v->num_regions; i++) {
		r = v->b->ops->region_desc(v->b, i, &v->desc[i]);
		if (r < 0)
			memset(&v->desc[i], 0, sizeof(v->desc[i]));  /* e.g. no VGA */
	}
	v->config_size = v->desc[VFIO_PCI_CONFIG].size >= PCI_CONFIG_SPACE_SIZE ?
			 PCI_CONFIG_SPACE_SIZE : 256;
	if (v->desc[VFIO_PCI_CONFIG].size < 256) {
		*why = "the device's config space is smaller than 256 bytes";
		return -ENODEV;
	}
	r = v->b->ops->region_read(v->b, VFIO_PCI_CONFIG, 0, cfg, v->config_size);
	if (r != (int)v->config_size) {
		*why = "cannot read the device's config space";
		return r < 0 ? r : -EIO;
	}
	if (pci_get_word(cfg) == 0xffff) {
		*why = "the device answers config reads with all ones";
		return -ENODEV;
	}
	read_bars(v, cfg);
	r = read_msix(v, cfg, why);
	if (!r)
		r = plan_layout(v, why);
	return r;
}

int vfio_pci_create(struct pci_bus *bus, struct vfio_backend *b, const struct vfio_pci_opts *o,
		    struct vfio_pci **out, const char **why)
{
	struct vfio_pci *v;
	uint8_t *cfg;
	int r;

	*why = NULL;
	v = calloc(1, sizeof(*v));
	cfg = calloc(1, PCI_CONFIG_SPACE_SIZE);
	if (!v || !cfg) {
		free(v);
		free(cfg);
		b->ops->destroy(b);
		*why = "out of memory";
		return -ENOMEM;
	}
	v->b = b;
	v->opts = *o;
	snprintf(v->id, sizeof(v->id), "%s", o->id ? o->id : b->name);
	v->opts.id = v->id;
	pthread_mutex_init(&v->msi_lock, NULL);
	r = read_device(v, cfg, why);
	if (r < 0)
		goto fail_early;
	pci_device_init(&v->dev, v->id, pci_get_word(cfg), pci_get_word(cfg + 2),
			cfg[0x09] | (uint32_t)cfg[0x0a] << 8 | (uint32_t)cfg[0x0b] << 16, cfg[0x08],
			pci_get_word(cfg + 0x2c), pci_get_word(cfg + 0x2e), &vfio_pci_ops, v);
	setup_config(v, cfg);
	/* A device a previous user left running must not DMA into our RAM. */
	device_reset(v, "start");
	r = vfio_bars_create(v);
	if (r < 0) {
		*why = "cannot build the BARs";
		goto fail_bars;
	}
	r = vfio_devioev_create(v, why);
	if (r < 0)
		goto fail_ioev;
	r = vfio_irq_create(v);
	if (r < 0) {
		*why = "cannot set up MSI/MSI-X";
		goto fail_irq;
	}
	r = vfio_dma_start(v);
	if (r < 0) {
		*why = "cannot DMA-map guest RAM";
		goto fail_dma;
	}
	r = pci_bus_add_device(bus, &v->dev, o->slot);
	if (r < 0) {
		*why = r == -ENOSPC ? "no free PCI slot" : "cannot plug the PCI function";
		goto fail_plug;
	}
	free(cfg);
	log_info(v->id, "%s assigned: %04x:%04x, %u MSI-X / %u MSI vectors, 0x%" PRIx64
		 " bytes mapped", b->name, pci_get_word(v->dev.config), pci_get_word(v->dev.config + 2),
		 v->msix_nr, v->msi_max, vfio_bars_mapped_bytes(v));
	*out = v;
	return 0;
fail_plug:
	vfio_dma_stop(v);
fail_dma:
	vfio_irq_destroy(v);
fail_irq:
	vfio_devioev_destroy(v);
fail_ioev:
	vfio_bars_destroy(v);
fail_bars:
	device_reset(v, "failed start");
fail_early:
	pthread_mutex_destroy(&v->msi_lock);
	b->ops->destroy(b);
	free(cfg);
	free(v);
	return r;
}

void vfio_pci_destroy(struct vfio_pci *v)
{
	if (!v)
		return;
	vfio_rom_unmap(v);  /* the bus unmaps the BARs, not the ROM */
	if (v->dev.bus)
		pci_bus_remove_device(v->dev.bus, &v->dev);
	vfio_irq_destroy(v);
	vfio_devioev_destroy(v);  /* before the trapped regions it sits on */
	vfio_dma_stop(v);
	/* The next user finds the device as we found it. */
	device_reset(v, "exit");
	vfio_bars_destroy(v);
	pthread_mutex_destroy(&v->msi_lock);
	v->b->ops->destroy(v->b);
	free(v);
}

struct pci_device *vfio_pci_device(struct vfio_pci *v)
{
	return &v->dev;
}

struct vfio_backend *vfio_pci_backend(struct vfio_pci *v)
{
	return v->b;
}

const struct vfio_layout *vfio_pci_layout(const struct vfio_pci *v)
{
	return &v->virt;
}

const struct vfio_layout *vfio_pci_phys_layout(const struct vfio_pci *v)
{
	return &v->phys;
}

struct mem_region *vfio_pci_bar_trap(struct vfio_pci *v, int bar)
{
	return bar >= 0 && bar < PCI_NUM_BARS ? v->bars[bar].trap : NULL;
}

bool vfio_pci_ioeventfd_allowed(const struct vfio_pci *v)
{
	return v->opts.ioeventfd;
}

bool vfio_pci_failed(const struct vfio_pci *v)
{
	return v->failed;
}

/* ---- stats ------------------------------------------------------------------------- */

void vfio_pci_get_stats(struct vfio_pci *v, struct vfio_pci_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->trapped_reads = atomic_load(&v->trapped_reads);
	s->trapped_writes = atomic_load(&v->trapped_writes);
	s->config_reads = atomic_load(&v->config_reads);
	s->config_writes = atomic_load(&v->config_writes);
	s->msix_table_accesses = msix_table_accesses(&v->dev);
	s->irqs_through_kickvm = atomic_load(&v->irqs_through_kickvm);
	s->vectors_on_irqfd = vfio_irq_on_irqfd(v);
	s->mapped_bytes = vfio_bars_mapped_bytes(v);
	s->dma_maps = atomic_load(&v->dma_maps);
	s->dma_unmaps = atomic_load(&v->dma_unmaps);
	s->dma_bytes = atomic_load(&v->dma_bytes);
	s->resets = atomic_load(&v->resets);
	vfio_devioev_stats(v, s);
}

void vfio_pci_print_stats(struct vfio_pci *v, FILE *out)
{
	struct vfio_pci_stats s;

	vfio_pci_get_stats(v, &s);
	fprintf(out, " %s (vfio-pci %s)%s:\n", v->id, v->b->name, v->failed ? ", FAILED" : "");
	vfio_bars_print(v, out);
	fprintf(out, "  trapped BAR accesses: reads %" PRIu64 ", writes %" PRIu64
		"; config reads %" PRIu64 ", writes %" PRIu64 "\n", s.trapped_reads,
		s.trapped_writes, s.config_reads, s.config_writes);
	fprintf(out, "  MSI-X table/PBA accesses (emulated) %" PRIu64 "; vectors straight to KVM "
		"(irqfd) %u; interrupts through kickvm (held while masked, or no irqfd) %" PRIu64
		"\n", s.msix_table_accesses, s.vectors_on_irqfd, s.irqs_through_kickvm);
	fprintf(out, "  DMA: %" PRIu64 " bytes of guest RAM mapped (maps %" PRIu64 ", unmaps %"
		PRIu64 "); resets %" PRIu64 ", errors %" PRIu64 "\n", s.dma_bytes, s.dma_maps,
		s.dma_unmaps, s.resets, (uint64_t)atomic_load(&v->errors));
	if (s.ioeventfds)
		fprintf(out, "  device-write ioeventfds %u: by the kernel %u, by kickvm's handler %u;"
			" trapped writes matched %" PRIu64 ", handler runs %" PRIu64 ", handler writes %"
			PRIu64 ", dropped (decode off) %" PRIu64 ", errors %" PRIu64 "\n", s.ioeventfds,
			s.ioeventfds_by_kernel, s.ioeventfds_by_handler, s.ioeventfd_userspace_signals,
			s.ioeventfd_handler_runs, s.ioeventfd_handler_writes, s.ioeventfd_dropped, s.ioeventfd_errors);
}
