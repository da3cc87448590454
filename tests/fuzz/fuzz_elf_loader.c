/*
 * libFuzzer target: arbitrary bytes as an ELF image.  The loader must never
 * crash, and never write outside the guest RAM (ASan watches the mapping's
 * neighbours; a canary page on each side of a small RAM catches stray
 * writes through guest_mem as well).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_common.h"
#include "kickvm/boot.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"

/* 2 MiB: room for small images at 1 MiB, and cheap to check. */
#define FUZZ_RAM (2ull << 20)

static struct canaried_ram ram;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct boot_image img;
	const char *why = NULL;
	int ret;

	if (!ram.gm.nr_banks)
		canaried_ram_init(&ram, FUZZ_RAM);
	ret = boot_load_elf(&ram.gm, data, size, &img, &why);
	if (ret != 0 && (ret != -ENOEXEC || !why))
		abort();
	if (ret == 0 && (img.entry64 < KICKVM_GUEST_LOAD_MIN || img.load_end >= FUZZ_RAM ||
			 img.load_start < KICKVM_GUEST_LOAD_MIN || img.load_start > img.load_end))
		abort();
	canaried_ram_check(&ram);
	return 0;
}
