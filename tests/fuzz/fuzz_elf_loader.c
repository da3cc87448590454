/*
 * libFuzzer target: arbitrary bytes as an ELF image.  The loader must never
 * crash, and never write outside the guest RAM (ASan watches the mapping's
 * neighbours; a canary page on each side of a small RAM catches stray
 * writes through guest_mem as well).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kickvm/boot.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"

/* 2 MiB: room for small images at 1 MiB, and cheap to check. */
#define FUZZ_RAM (2ull << 20)

static struct guest_mem gm;
static uint8_t *canary_lo, *canary_hi;

static void init(void)
{
	uint8_t *p = mmap(NULL, FUZZ_RAM + 2 * 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		abort();
	/* One bank over our own mapping, framed by canaries. */
	canary_lo = p;
	canary_hi = p + 4096 + FUZZ_RAM;
	memset(canary_lo, 0xcc, 4096);
	memset(canary_hi, 0xcc, 4096);
	gm.memfd = -1;
	gm.total = FUZZ_RAM;
	gm.nr_banks = 1;
	gm.banks[0] = (struct guest_mem_bank){ .gpa = 0, .size = FUZZ_RAM, .hva = p + 4096 };
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct boot_image img;
	const char *why = NULL;
	int ret;

	if (!gm.nr_banks)
		init();
	ret = boot_load_elf(&gm, data, size, &img, &why);
	if (ret != 0 && (ret != -ENOEXEC || !why))
		abort();
	if (ret == 0 && (img.entry64 < KICKVM_GUEST_LOAD_MIN || img.load_end >= FUZZ_RAM ||
			 img.load_start < KICKVM_GUEST_LOAD_MIN || img.load_start > img.load_end))
		abort();
	for (int i = 0; i < 4096; i++)
		if (canary_lo[i] != 0xcc || canary_hi[i] != 0xcc)
			abort();
	return 0;
}
