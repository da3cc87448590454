/*
 * libFuzzer target: arbitrary bytes as an ELF image.  The loader must never
 * crash, never write outside the guest RAM (ASan watches the mapping's
 * neighbours; a canary page on each side of a small RAM catches stray
 * writes through guest_mem as well), and never write where kickvm keeps its
 * boot structures (boot_reserved_range(): filled with a pattern, checked).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "kickvm/boot.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"

/* 2 MiB: the first MiB with its boot structures, room for small images at
 * 1 MiB, and cheap to check. */
#define FUZZ_RAM (2ull << 20)

static struct canaried_ram ram;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESERVED_PATTERN 0xcc

static void fill_reserved(const struct boot_reserved *r)
{
	memset(guest_mem_ptr(&ram.gm, r->start, r->end - r->start), RESERVED_PATTERN,
	       r->end - r->start);
}

static void check_reserved(const struct boot_reserved *r)
{
	const uint8_t *p = guest_mem_ptr(&ram.gm, r->start, r->end - r->start);

	for (uint64_t i = 0; i < r->end - r->start; i++)
		if (p[i] != RESERVED_PATTERN)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct boot_image img;
	const char *why = NULL;
	int ret;

	if (!ram.gm.nr_banks) {
		canaried_ram_init(&ram, FUZZ_RAM);
		for (unsigned i = 0; boot_reserved_range(i); i++)
			fill_reserved(boot_reserved_range(i));
	}
	ret = boot_load_elf(&ram.gm, data, size, &img, &why);
	if (ret != 0 && (ret != -ENOEXEC || !why))
		abort();
	if (ret == 0 && (img.entry64 < img.load_start || img.entry64 > img.load_end ||
			 img.load_end >= FUZZ_RAM || img.load_start > img.load_end))
		abort();
	for (unsigned i = 0; boot_reserved_range(i); i++)
		check_reserved(boot_reserved_range(i));
	canaried_ram_check(&ram);
	return 0;
}
