/*
 * The Linux x86 boot protocol, 64-bit entry (Linux's
 * Documentation/arch/x86/boot.rst), and the PVH start-of-day data Linux reads
 * (Xen's start_info.h).  Read for behaviour only; written from the spec.
 *
 * The bzImage is untrusted: all checks run first, on the file alone and
 * against guest RAM, then everything is written.  Offsets into the zero page
 * are spelled out as constants rather than a struct copied from Linux: the
 * page is built as bytes, so its layout is exactly the documented one.
 */
#include <errno.h>
#include <string.h>

#include "kickvm/boot.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"
#include "kickvm/linux_boot.h"
#include "kickvm/pci.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* The setup header, at its offsets in the file and in the zero page. */
#define HDR_START          0x1f1
#define HDR_SETUP_SECTS    0x1f1  /* u8: 0 means 4 */
#define HDR_BOOT_FLAG      0x1fe  /* u16: 0xaa55 */
#define HDR_JUMP           0x200  /* u16: the header ends at 0x202 + byte 0x201 */
#define HDR_MAGIC          0x202  /* "HdrS" */
#define HDR_VERSION        0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS      0x211
#define HDR_RAMDISK_IMAGE  0x218
#define HDR_RAMDISK_SIZE   0x21c
#define HDR_CMD_LINE_PTR   0x228
#define HDR_INITRD_MAX     0x22c
#define HDR_KERNEL_ALIGN   0x230
#define HDR_RELOCATABLE    0x234
#define HDR_XLOADFLAGS     0x236
#define HDR_CMDLINE_SIZE   0x238
#define HDR_SUBARCH        0x23c
#define HDR_SETUP_DATA     0x250
#define HDR_PREF_ADDRESS   0x258
#define HDR_INIT_SIZE      0x260
#define HDR_MIN_END        0x264  /* a 2.12 header reaches at least here */
#define HDR_MAX_END        0x290  /* where the zero page's next field starts */

/* Zero page fields outside the setup header. */
#define BP_ACPI_RSDP       0x070
#define BP_EXT_RAMDISK_IMG 0x0c0
#define BP_EXT_RAMDISK_SZ  0x0c4
#define BP_EXT_CMD_LINE    0x0c8
#define BP_E820_ENTRIES    0x1e8
#define BP_E820_TABLE      0x2d0  /* 128 x { u64 addr, u64 size, u32 type } */
#define BP_SIZE            4096

#define BOOT_FLAG_MAGIC    0xaa55
#define MIN_VERSION        0x020c  /* 2.12: xloadflags */
#define LOADED_HIGH        0x01
#define XLF_KERNEL_64      0x01
#define TYPE_OF_LOADER_UNDEFINED 0xff
#define DEFAULT_INITRD_MAX 0x37ffffffull  /* before 2.03 (boot.rst) */
#define KERNEL_ENTRY64_OFF 0x200

/* The low boot area the guest must not use as RAM: EBDA, VGA, BIOS (and
 * the ACPI tables kickvm puts at 0xe0000). */
#define LOW_RESERVED_START 0x9fc00ull
#define LOW_RESERVED_END   0x100000ull
/* kickvm's platform devices, IOAPIC, LAPIC and KVM's TSS/identity-map pages
 * (src/kvm) all live between here and 4 GiB. */
#define PLATFORM_START     0xfe000000ull
#define PLATFORM_END       0x100000000ull

struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

static int reject(const char **why, const char *reason, int err)
{
	if (why)
		*why = reason;
	return err;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* ---- memory map ---------------------------------------------------------------- */

static int e820_add(struct e820_entry *out, unsigned *n, unsigned max,
		    uint64_t addr, uint64_t end, uint32_t type)
{
	if (end <= addr)
		return 0;
	if (*n == max)
		return -ENOSPC;
	out[(*n)++] = (struct e820_entry){ .addr = addr, .size = end - addr, .type = type };
	return 0;
}

int linux_build_e820(const struct guest_mem *gm, struct e820_entry *out, unsigned max)
{
	unsigned n = 0;
	int ret = 0;

	for (unsigned i = 0; i < gm->nr_banks && i < GUEST_MEM_MAX_BANKS && !ret; i++) {
		uint64_t start = gm->banks[i].gpa, end = start + gm->banks[i].size;

		if (start >= LOW_RESERVED_END || end <= LOW_RESERVED_START) {
			ret = e820_add(out, &n, max, start, end, E820_RAM);
			continue;
		}
		/* The bank covers (part of) the low boot area: cut it out. */
		ret = e820_add(out, &n, max, start, LOW_RESERVED_START, E820_RAM);
		if (!ret)
			ret = e820_add(out, &n, max, LOW_RESERVED_END, end, E820_RAM);
	}
	if (!ret)
		ret = e820_add(out, &n, max, LOW_RESERVED_START, LOW_RESERVED_END, E820_RESERVED);
	/* ECAM must be reserved, or Linux refuses MMCONFIG and falls back to
	 * CF8/CFC.  The BAR window (PCI_MMIO_WINDOW) is not: Linux places BARs
	 * there from the host bridge's _CRS, and a reserved range would be busy. */
	if (!ret)
		ret = e820_add(out, &n, max, PCI_ECAM_BASE, PCI_ECAM_BASE + PCI_ECAM_SIZE,
			       E820_RESERVED);
	if (!ret)
		ret = e820_add(out, &n, max, PLATFORM_START, PLATFORM_END, E820_RESERVED);
	if (ret)
		return ret;
	/* Insertion sort by address: a handful of entries. */
	for (unsigned i = 1; i < n; i++) {
		struct e820_entry e = out[i];
		unsigned j = i;

		for (; j > 0 && out[j - 1].addr > e.addr; j--)
			out[j] = out[j - 1];
		out[j] = e;
	}
	return (int)n;
}

/* ---- initrd placement ----------------------------------------------------------- */

/*
 * As high as possible (page aligned) in the RAM below 4 GiB, ending at or
 * below @max_last (the last byte the kernel can reach) and starting at or
 * above @min_addr (the end of the kernel).
 */
static int place_initrd(const struct guest_mem *gm, uint64_t size, uint64_t max_last,
			uint64_t min_addr, uint64_t *addr, const char **why)
{
	uint64_t top = 0, a;

	for (unsigned i = 0; i < gm->nr_banks && i < GUEST_MEM_MAX_BANKS; i++) {
		const struct guest_mem_bank *b = &gm->banks[i];

		if (b->gpa == 0)
			top = b->size;
	}
	if (top > max_last + 1)
		top = max_last + 1;
	if (size == 0 || size > top)
		return reject(why, "the initrd does not fit in RAM below the kernel's limit", -ENOMEM);
	a = (top - size) & ~0xfffull;
	if (a < min_addr || !guest_mem_ptr(gm, a, size))
		return reject(why, "the initrd does not fit in RAM above the kernel", -ENOMEM);
	*addr = a;
	return 0;
}

/* ---- bzImage -------------------------------------------------------------------- */

bool linux_is_bzimage(const void *buf, size_t len)
{
	const uint8_t *f = buf;

	return buf && len >= HDR_MAGIC + 4 && get16(f + HDR_BOOT_FLAG) == BOOT_FLAG_MAGIC &&
	       memcmp(f + HDR_MAGIC, "HdrS", 4) == 0;
}

struct bz_plan {
	uint64_t setup_size, kernel_size, load_addr, need, initrd_addr;
	size_t hdr_end;
	size_t cmdlen;
};

static int check_bzimage(const struct guest_mem *gm, const uint8_t *f, size_t len,
			 const struct linux_boot_config *cfg, struct bz_plan *p,
			 const char **why)
{
	uint64_t align, pref, init_size, cmdline_max, initrd_max;
	unsigned setup_sects;

	if (!linux_is_bzimage(f, len))
		return reject(why, "not a bzImage (no boot flag 0xAA55 and \"HdrS\" header)", -ENOEXEC);
	p->hdr_end = 0x202 + (size_t)f[HDR_JUMP + 1];
	if (p->hdr_end < HDR_MIN_END || p->hdr_end > len)
		return reject(why, "bzImage setup header too short or outside the file", -ENOEXEC);
	if (p->hdr_end > HDR_MAX_END)
		p->hdr_end = HDR_MAX_END;  /* newer fields we do not know stay zero */
	if (get16(f + HDR_VERSION) < MIN_VERSION)
		return reject(why, "boot protocol older than 2.12 (no 64-bit entry)", -ENOEXEC);
	if (!(get16(f + HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return reject(why, "kernel has no 64-bit entry (XLF_KERNEL_64)", -ENOEXEC);
	if (!(f[HDR_LOADFLAGS] & LOADED_HIGH))
		return reject(why, "kernel does not load at 1 MiB (not a bzImage)", -ENOEXEC);

	setup_sects = f[HDR_SETUP_SECTS] ? f[HDR_SETUP_SECTS] : 4;
	p->setup_size = (setup_sects + 1ull) * 512;
	if (p->setup_size < p->hdr_end || p->setup_size >= len)
		return reject(why, "bzImage has no protected-mode kernel after its setup", -ENOEXEC);
	p->kernel_size = len - p->setup_size;

	/* The kernel needs init_size bytes from where it is loaded (it
	 * decompresses in place), never less than what the file holds. */
	init_size = get32(f + HDR_INIT_SIZE);
	p->need = init_size > p->kernel_size ? init_size : p->kernel_size;
	pref = get64(f + HDR_PREF_ADDRESS);
	if (!pref)
		pref = MiB;
	if (f[HDR_RELOCATABLE]) {
		align = get32(f + HDR_KERNEL_ALIGN);
		if (align < 4096 || align > GiB || (align & (align - 1)))
			return reject(why, "bad kernel_alignment", -ENOEXEC);
		pref = (pref + align - 1) & ~(align - 1);
	}
	if (pref < MiB || pref >= 4 * GiB)
		return reject(why, "kernel load address outside 1 MiB-4 GiB", -ENOEXEC);
	if (!guest_mem_ptr(gm, pref, p->need))
		return reject(why, "the kernel does not fit in RAM at its load address", -ENOMEM);
	p->load_addr = pref;

	p->cmdlen = cfg->cmdline ? strlen(cfg->cmdline) : 0;
	cmdline_max = get32(f + HDR_CMDLINE_SIZE);
	if (p->cmdlen > cmdline_max || p->cmdlen > KICKVM_BOOT_CMDLINE_MAX - 1)
		return reject(why, "command line longer than the kernel takes", -E2BIG);
	if (cfg->nr_e820 > LINUX_E820_MAX)
		return reject(why, "memory map too long", -E2BIG);

	p->initrd_addr = 0;
	if (cfg->initrd_size) {
		int ret;

		initrd_max = get32(f + HDR_INITRD_MAX);
		if (!initrd_max)
			initrd_max = DEFAULT_INITRD_MAX;
		ret = place_initrd(gm, cfg->initrd_size, initrd_max, p->load_addr + p->need,
				   &p->initrd_addr, why);
		if (ret)
			return ret;
	}
	return 0;
}

/* Linux's 64-bit protocol asks for flat __BOOT_CS (0x10) and __BOOT_DS (0x18). */
static int write_boot_gdt(struct guest_mem *gm)
{
	const uint64_t gdt[4] = { 0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull };

	return guest_mem_write(gm, LINUX_BOOT_GDT, gdt, sizeof(gdt));
}

int linux_load_bzimage(struct guest_mem *gm, const void *buf, size_t len,
		       const struct linux_boot_config *cfg, struct linux_boot_info *info,
		       const char **why)
{
	const uint8_t *f = buf;
	uint8_t bp[BP_SIZE];
	struct bz_plan p;
	uint8_t *dst;
	int ret;

	if (why)
		*why = NULL;
	ret = check_bzimage(gm, f, len, cfg, &p, why);
	if (ret)
		return ret;

	/* Everything checked: write. */
	memset(bp, 0, sizeof(bp));
	memcpy(bp + HDR_START, f + HDR_START, p.hdr_end - HDR_START);
	bp[HDR_TYPE_OF_LOADER] = TYPE_OF_LOADER_UNDEFINED;
	put32(bp + HDR_CMD_LINE_PTR, (uint32_t)KICKVM_BOOT_CMDLINE);
	put32(bp + BP_EXT_CMD_LINE, 0);
	put32(bp + HDR_RAMDISK_IMAGE, (uint32_t)p.initrd_addr);
	put32(bp + HDR_RAMDISK_SIZE, (uint32_t)cfg->initrd_size);
	put32(bp + BP_EXT_RAMDISK_IMG, (uint32_t)(p.initrd_addr >> 32));
	put32(bp + BP_EXT_RAMDISK_SZ, (uint32_t)(cfg->initrd_size >> 32));
	/* Fields a loader owns: whatever the file says there is not ours. */
	put64(bp + HDR_SETUP_DATA, 0);
	put32(bp + HDR_SUBARCH, 0);  /* a PC */
	put64(bp + BP_ACPI_RSDP, cfg->rsdp_addr);
	bp[BP_E820_ENTRIES] = (uint8_t)cfg->nr_e820;
	for (unsigned i = 0; i < cfg->nr_e820; i++) {
		uint8_t *e = bp + BP_E820_TABLE + i * 20;

		put64(e, cfg->e820[i].addr);
		put64(e + 8, cfg->e820[i].size);
		put32(e + 16, cfg->e820[i].type);
	}

	dst = guest_mem_ptr(gm, p.load_addr, p.need);
	memcpy(dst, f + p.setup_size, p.kernel_size);
	/* The rest of init_size is the kernel's to use: hand it over clean. */
	memset(dst + p.kernel_size, 0, p.need - p.kernel_size);
	ret = guest_mem_write(gm, LINUX_BOOT_PARAMS, bp, sizeof(bp));
	if (!ret)
		ret = guest_mem_write(gm, KICKVM_BOOT_CMDLINE, cfg->cmdline ? cfg->cmdline : "",
				      p.cmdlen + 1);
	if (!ret)
		ret = write_boot_gdt(gm);
	if (ret)
		return reject(why, "cannot write the boot structures", ret);
	if (info) {
		info->version = get16(f + HDR_VERSION);
		info->load_addr = p.load_addr;
		info->load_end = p.load_addr + p.need;
		info->entry64 = p.load_addr + KERNEL_ENTRY64_OFF;
		info->initrd_addr = p.initrd_addr;
	}
	return 0;
}

void linux_bzimage_vcpu_state(const struct linux_boot_info *info, struct vcpu_boot_state *bs)
{
	memset(bs, 0, sizeof(*bs));
	bs->rip = info->entry64;
	bs->rsi = LINUX_BOOT_PARAMS;
	bs->rflags = 0x2;                  /* interrupts off */
	bs->cr0 = 0x80050033;              /* PG WP NE ET MP PE */
	bs->cr3 = KICKVM_BOOT_PML4;        /* boot_setup_tables(): identity 0-4 GiB */
	bs->cr4 = 0x20;                    /* PAE */
	bs->efer = 0x500;                  /* LME LMA */
	bs->gdt_base = LINUX_BOOT_GDT;
	bs->gdt_limit = 4 * 8 - 1;
	bs->cs = LINUX_BOOT_CS;
	bs->ds = LINUX_BOOT_DS;
	bs->long_mode = true;
}

/* ---- PVH ------------------------------------------------------------------------ */

int linux_setup_pvh(struct guest_mem *gm, const struct linux_boot_config *cfg,
		    uint64_t kernel_end, uint64_t *initrd_addr, const char **why)
{
	struct hvm_memmap_table_entry map[LINUX_E820_MAX];
	struct hvm_modlist_entry mod = { 0 };
	struct hvm_start_info si;
	uint64_t addr = 0;
	int ret;

	_Static_assert(KICKVM_BOOT_MEMMAP + sizeof(map) <= KICKVM_BOOT_CMDLINE,
		       "the PVH memory map runs into the command line");
	if (why)
		*why = NULL;
	if (cfg->nr_e820 > LINUX_E820_MAX)
		return reject(why, "memory map too long", -E2BIG);
	if (cfg->initrd_size) {
		ret = place_initrd(gm, cfg->initrd_size, 4 * GiB - 1, kernel_end, &addr, why);
		if (ret)
			return ret;
	}
	memset(map, 0, sizeof(map));
	for (unsigned i = 0; i < cfg->nr_e820; i++) {
		map[i].addr = cfg->e820[i].addr;
		map[i].size = cfg->e820[i].size;
		map[i].type = cfg->e820[i].type;
	}
	mod.paddr = addr;
	mod.size = cfg->initrd_size;
	memset(&si, 0, sizeof(si));
	si.magic = HVM_START_MAGIC;
	si.version = 1;
	si.nr_modules = cfg->initrd_size ? 1 : 0;
	si.modlist_paddr = cfg->initrd_size ? LINUX_PVH_MODLIST : 0;
	si.cmdline_paddr = KICKVM_BOOT_CMDLINE;  /* boot_setup_tables() wrote it */
	si.rsdp_paddr = cfg->rsdp_addr;
	si.memmap_paddr = KICKVM_BOOT_MEMMAP;
	si.memmap_entries = cfg->nr_e820;
	ret = guest_mem_write(gm, KICKVM_BOOT_MEMMAP, map, cfg->nr_e820 * sizeof(map[0]));
	if (!ret)
		ret = guest_mem_write(gm, LINUX_PVH_MODLIST, &mod, sizeof(mod));
	if (!ret)
		ret = guest_mem_write(gm, KICKVM_BOOT_START_INFO, &si, sizeof(si));
	if (ret)
		return reject(why, "cannot write the PVH start info", ret);
	*initrd_addr = addr;
	return 0;
}
