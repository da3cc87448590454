/*
 * The Linux boot protocol and the ACPI tables, on a synthetic bzImage and
 * guest RAM without KVM: what lands in the zero page, what is refused, the
 * e820 map, and tables whose checksums and pointers hold.  (Booting a real
 * kernel is the lab's `linux` group.)
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kickvm/acpi.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"
#include "kickvm/linux_boot.h"
#include "kickvm/pci.h"

#define RAM (64ull << 20)
#define SETUP 1024   /* one setup sector after the boot sector */

static struct guest_mem gm;

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* A bzImage header as a 2.15 kernel writes it, 4 KiB of "kernel". */
static uint8_t *make_bzimage(size_t *len)
{
	uint8_t *f = calloc(1, SETUP + 4096);

	f[0x1f1] = 1;                       /* setup_sects */
	put16(f + 0x1fe, 0xaa55);
	f[0x200] = 0xeb;
	f[0x201] = 0x66;                    /* header ends at 0x268 */
	memcpy(f + 0x202, "HdrS", 4);
	put16(f + 0x206, 0x020f);
	f[0x211] = 0x01;                    /* LOADED_HIGH */
	put32(f + 0x22c, 0x7fffffff);       /* initrd_addr_max */
	put32(f + 0x230, 0x200000);         /* kernel_alignment */
	f[0x234] = 1;                       /* relocatable */
	put16(f + 0x236, 0x3);              /* XLF_KERNEL_64 | can be above 4G */
	put32(f + 0x238, 2047);             /* cmdline_size */
	put64(f + 0x250, 0xdeadbeef);       /* setup_data: must not survive */
	put64(f + 0x258, 0x1000000);        /* pref_address: 16 MiB */
	put32(f + 0x260, 0x800000);         /* init_size: 8 MiB */
	memset(f + SETUP, 0x90, 4096);
	*len = SETUP + 4096;
	return f;
}

static int setup(void **state)
{
	(void)state;
	return guest_mem_create(&gm, RAM, KICKVM_MMIO_HOLE);
}

static int teardown(void **state)
{
	(void)state;
	guest_mem_destroy(&gm);
	return 0;
}

static void test_e820(void **state)
{
	struct e820_entry e[LINUX_E820_MAX];
	int n = linux_build_e820(&gm, e, LINUX_E820_MAX);

	(void)state;
	assert_int_equal(n, 5);
	for (int i = 1; i < n; i++)
		assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
	assert_int_equal(e[0].addr, 0);
	assert_int_equal(e[0].type, E820_RAM);
	assert_int_equal(e[1].addr, 0x9fc00);       /* EBDA, VGA, BIOS, ACPI */
	assert_int_equal(e[1].type, E820_RESERVED);
	assert_int_equal(e[2].addr, 0x100000);
	assert_int_equal(e[2].addr + e[2].size, RAM);
	assert_int_equal(e[3].addr, PCI_ECAM_BASE);
	assert_int_equal(e[3].type, E820_RESERVED);
	assert_int_equal(linux_build_e820(&gm, e, 2), -ENOSPC);
}

static void test_bzimage_loads(void **state)
{
	struct e820_entry e[LINUX_E820_MAX];
	struct linux_boot_config cfg = { .cmdline = "console=ttyS0", .initrd_size = 5000,
					 .rsdp_addr = 0xe0000 };
	struct linux_boot_info info;
	struct vcpu_boot_state bs;
	const char *why = NULL;
	size_t len;
	uint8_t *f = make_bzimage(&len), *bp, *k;
	char cmd[32];

	(void)state;
	cfg.e820 = e;
	cfg.nr_e820 = (unsigned)linux_build_e820(&gm, e, LINUX_E820_MAX);
	assert_int_equal(linux_load_bzimage(&gm, f, len, &cfg, &info, &why), 0);
	assert_int_equal(info.load_addr, 0x1000000);
	assert_int_equal(info.entry64, 0x1000200);
	assert_int_equal(info.load_end, 0x1800000);
	/* The initrd goes high: page aligned, at the top of RAM below 4 GiB. */
	assert_int_equal(info.initrd_addr, (RAM - 5000) & ~0xfffull);

	bp = guest_mem_ptr(&gm, LINUX_BOOT_PARAMS, 4096);
	assert_int_equal(bp[0x210], 0xff);                 /* type_of_loader */
	assert_int_equal(get32(bp + 0x228), KICKVM_BOOT_CMDLINE);
	assert_int_equal(get32(bp + 0x218), info.initrd_addr);
	assert_int_equal(get32(bp + 0x21c), 5000);
	assert_int_equal(get64(bp + 0x070), 0xe0000);      /* acpi_rsdp_addr */
	assert_int_equal(get64(bp + 0x250), 0);            /* setup_data cleared */
	assert_int_equal(bp[0x1e8], cfg.nr_e820);
	assert_int_equal(get64(bp + 0x2d0 + 20 + 0), 0x9fc00);
	assert_memory_equal(bp + 0x202, "HdrS", 4);
	assert_int_equal(guest_mem_read_str(&gm, KICKVM_BOOT_CMDLINE, cmd, sizeof(cmd)), 0);
	assert_string_equal(cmd, "console=ttyS0");
	k = guest_mem_ptr(&gm, info.load_addr, 4097);
	assert_int_equal(k[0], 0x90);
	assert_int_equal(k[4095], 0x90);
	assert_int_equal(k[4096], 0);

	linux_bzimage_vcpu_state(&info, &bs);
	assert_int_equal(bs.rip, 0x1000200);
	assert_int_equal(bs.rsi, LINUX_BOOT_PARAMS);
	assert_int_equal(bs.cs, 0x10);
	assert_int_equal(bs.ds, 0x18);
	assert_true(bs.long_mode);
	assert_int_equal(bs.rflags & 0x200, 0);            /* interrupts off */
	free(f);
}

static void expect_refused(uint8_t *f, size_t len, const struct linux_boot_config *cfg, int err)
{
	const char *why = NULL;

	assert_int_equal(linux_load_bzimage(&gm, f, len, cfg, NULL, &why), err);
	assert_non_null(why);
}

static void test_bzimage_refused(void **state)
{
	struct linux_boot_config cfg = { 0 };
	char longcmd[3000];
	size_t len;
	uint8_t *f = make_bzimage(&len);

	(void)state;
	f[0x1fe] = 0;                                      /* no boot flag */
	expect_refused(f, len, &cfg, -ENOEXEC);
	put16(f + 0x1fe, 0xaa55);
	put16(f + 0x206, 0x020b);                          /* protocol 2.11 */
	expect_refused(f, len, &cfg, -ENOEXEC);
	put16(f + 0x206, 0x020f);
	put16(f + 0x236, 0);                               /* no 64-bit entry */
	expect_refused(f, len, &cfg, -ENOEXEC);
	put16(f + 0x236, 3);
	put32(f + 0x230, 0x3000);                          /* alignment not 2^n */
	expect_refused(f, len, &cfg, -ENOEXEC);
	put32(f + 0x230, 0x200000);
	f[0x1f1] = 200;                                    /* setup past the end */
	expect_refused(f, len, &cfg, -ENOEXEC);
	f[0x1f1] = 1;
	expect_refused(f, 0x250, &cfg, -ENOEXEC);          /* truncated header */
	put32(f + 0x260, 0x10000000);                      /* init_size 256 MiB */
	expect_refused(f, len, &cfg, -ENOMEM);
	put32(f + 0x260, 0x800000);
	memset(longcmd, 'a', sizeof(longcmd) - 1);
	longcmd[sizeof(longcmd) - 1] = '\0';
	cfg.cmdline = longcmd;                             /* > cmdline_size */
	expect_refused(f, len, &cfg, -E2BIG);
	cfg.cmdline = NULL;
	cfg.initrd_size = RAM;                             /* initrd cannot fit */
	expect_refused(f, len, &cfg, -ENOMEM);
	free(f);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

static void test_acpi_tables(void **state)
{
	struct acpi_config cfg = { .nr_cpus = 3, .sleep_control_port = 0x600,
				   .sleep_status_port = 0x601, .reset_port = 0x602,
				   .reset_value = 1, .s5_sleep_type = 5 };
	uint64_t rsdp, xsdt;
	uint8_t *r, *x;
	int found = 0;

	(void)state;
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), 0);
	assert_true(rsdp >= 0xe0000 && rsdp < 0x100000 && !(rsdp & 15));
	r = guest_mem_ptr(&gm, rsdp, 36);
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum(r, 20), 0);
	assert_int_equal(sum(r, 36), 0);
	xsdt = get64(r + 24);
	x = guest_mem_ptr(&gm, xsdt, 36);
	assert_memory_equal(x, "XSDT", 4);
	assert_int_equal(sum(x, get32(x + 4)), 0);
	for (uint32_t i = 0; i < (get32(x + 4) - 36) / 8; i++) {
		uint8_t *t = guest_mem_ptr(&gm, get64(x + 36 + 8 * i), 36);

		assert_non_null(t);
		assert_int_equal(sum(t, get32(t + 4)), 0);
		if (!memcmp(t, "FACP", 4)) {
			uint8_t *d = guest_mem_ptr(&gm, get64(t + 140), 36);

			assert_true(get32(t + 112) & (1u << 20));        /* HW_REDUCED_ACPI */
			assert_int_equal(get64(t + 244 + 4), 0x600);     /* SLEEP_CONTROL */
			assert_int_equal(get64(t + 116 + 4), 0x602);     /* RESET_REG */
			assert_memory_equal(d, "DSDT", 4);
			assert_int_equal(sum(d, get32(d + 4)), 0);
			assert_non_null(memmem(d, get32(d + 4), "_S5_", 4));
			assert_non_null(memmem(d, get32(d + 4), "PCI0", 4));
			assert_non_null(memmem(d, get32(d + 4), "COM1", 4));
			found |= 1;
		} else if (!memcmp(t, "APIC", 4)) {
			assert_int_equal(get32(t + 4), 44 + 3 * 8 + 12 + 6);
			found |= 2;
		} else if (!memcmp(t, "MCFG", 4)) {
			assert_int_equal(get64(t + 44), PCI_ECAM_BASE);
			found |= 4;
		}
	}
	assert_int_equal(found, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_e820),
		cmocka_unit_test(test_bzimage_loads),
		cmocka_unit_test(test_bzimage_refused),
		cmocka_unit_test(test_acpi_tables),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
