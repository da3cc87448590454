/*
 * libFuzzer target: arbitrary bytes as a bzImage, with a command line and an
 * initrd size taken from the input too.  The loader must never crash, never
 * write outside guest RAM (canary pages frame a small RAM), leave RAM
 * untouched when it rejects a file, and on success describe a kernel and an
 * initrd that lie inside RAM and do not overlap.  The PVH start-info writer
 * gets the same initrd size.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"
#include "kickvm/linux_boot.h"

/* 3 MiB: room for a small kernel at 1-2 MiB and an initrd above it; small
 * enough to compare whole after every rejected file. */
#define FUZZ_RAM (3ull << 20)
#define HEAD 8  /* input bytes that configure the run */

static struct canaried_ram ram;
static uint8_t *snapshot;

static void init(void)
{
	canaried_ram_init(&ram, FUZZ_RAM);
	snapshot = malloc(FUZZ_RAM);
	if (!snapshot)
		abort();
}

/*
 * A valid bzImage (protocol 2.15, relocatable, 16 KiB init_size) that the
 * input may be XORed into, so the fuzzer reaches the paths past the header
 * checks without a seed corpus (scripts/test.sh --fuzz starts empty).
 */
#define TPL_SETUP 1024
#define TPL_SIZE  (TPL_SETUP + 4096)
static uint8_t tpl[TPL_SIZE], img[TPL_SIZE];

static void make_template(void)
{
	static const struct { uint16_t off; uint8_t len; uint64_t v; } f[] = {
		{ 0x1f1, 1, 1 }, { 0x1fe, 2, 0xaa55 }, { 0x200, 2, 0x66eb },
		{ 0x202, 4, 0x53726448 /* "HdrS" */ }, { 0x206, 2, 0x020f }, { 0x211, 1, 1 },
		{ 0x22c, 4, 0x7fffffff }, { 0x230, 4, 0x200000 }, { 0x234, 1, 1 },
		{ 0x236, 2, 3 }, { 0x238, 4, 2047 }, { 0x258, 8, 0x100000 }, { 0x260, 4, 0x4000 },
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		for (unsigned b = 0; b < f[i].len; b++)
			tpl[f[i].off + b] = (uint8_t)(f[i].v >> (8 * b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct e820_entry e820[LINUX_E820_MAX];
	struct linux_boot_config cfg = { 0 };
	struct linux_boot_info info;
	char cmdline[300];
	const char *why = NULL;
	uint64_t initrd_addr, kernel_end;
	int n, ret;

	if (!ram.gm.nr_banks) {
		init();
		make_template();
	}
	if (size < HEAD)
		return 0;
	/* Head: initrd size (24 bits, in 16-byte units), command line length. */
	cfg.initrd_size = ((uint64_t)data[0] | (uint64_t)data[1] << 8 | (uint64_t)data[2] << 16) << 4;
	memset(cmdline, 'x', sizeof(cmdline));
	cmdline[data[3] % sizeof(cmdline)] = '\0';
	cfg.cmdline = data[4] & 1 ? cmdline : NULL;
	cfg.rsdp_addr = 0xe0000;
	n = linux_build_e820(&ram.gm, e820, data[5] % 8u);  /* a too-small table too */
	if (n < 0 && n != -ENOSPC)
		abort();
	n = linux_build_e820(&ram.gm, e820, LINUX_E820_MAX);
	if (n < 3)
		abort();
	cfg.e820 = e820;
	cfg.nr_e820 = (unsigned)n;
	kernel_end = KICKVM_GUEST_LOAD_MIN + ((uint64_t)data[6] << 12);
	if (data[7] & 1) {
		/* The rest of the input XORed into the template's setup area,
		 * the file cut short by up to 127 x 40 bytes. */
		size_t cut = (size_t)(data[7] >> 1) * 40;

		memcpy(img, tpl, sizeof(img));
		for (size_t i = HEAD; i < size && i - HEAD < TPL_SETUP - 0x1f1; i++)
			img[0x1f1 + i - HEAD] ^= data[i];
		data = img;
		size = sizeof(img) - cut;
	} else {
		data += HEAD;
		size -= HEAD;
	}

	memcpy(snapshot, ram.gm.banks[0].hva, FUZZ_RAM);
	(void)linux_is_bzimage(data, size);
	ret = linux_load_bzimage(&ram.gm, data, size, &cfg, &info, &why);
	if (ret) {
		if (!why || (ret != -ENOEXEC && ret != -ENOMEM && ret != -E2BIG))
			abort();
		/* A rejected file leaves RAM as it was. */
		if (memcmp(snapshot, ram.gm.banks[0].hva, FUZZ_RAM) != 0)
			abort();
	} else {
		if (info.load_addr < KICKVM_GUEST_LOAD_MIN || info.load_end > FUZZ_RAM ||
		    info.entry64 != info.load_addr + 0x200 || info.load_end <= info.load_addr)
			abort();
		if (cfg.initrd_size && (info.initrd_addr < info.load_end ||
					info.initrd_addr + cfg.initrd_size > FUZZ_RAM))
			abort();
	}
	canaried_ram_check(&ram);

	ret = linux_setup_pvh(&ram.gm, &cfg, kernel_end, &initrd_addr, &why);
	if (ret && (ret != -ENOMEM || !why))
		abort();
	if (!ret && cfg.initrd_size &&
	    (initrd_addr < kernel_end || initrd_addr + cfg.initrd_size > FUZZ_RAM))
		abort();
	canaried_ram_check(&ram);
	return 0;
}
