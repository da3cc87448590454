/*
 * The ELF loader and the boot tables, against images built here in memory:
 * one valid image, then one mutation per rule the loader must enforce.
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kickvm/acpi.h"
#include "kickvm/boot.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"
#include "kickvm/linux_boot.h"

#define RAM_SIZE (16ull << 20)

/* Layout of the test image: headers, then two segments and a note. */
#define SEG0_OFF   0x1000
#define SEG0_ADDR  0x100000ull
#define SEG0_SIZE  0x100
#define SEG1_OFF   0x1200
#define SEG1_ADDR  0x200000ull
#define SEG1_FILE  0x80
#define SEG1_MEM   0x2000
#define NOTE_OFF   0x1400
#define PVH_ENTRY  0x100010ull
#define IMAGE_SIZE 0x1500

struct image {
	uint8_t buf[IMAGE_SIZE];
	size_t len;
	Elf64_Ehdr *eh;
	Elf64_Phdr *ph;   /* [0] text, [1] data+bss, [2] note */
};

static void build_image(struct image *im)
{
	Elf64_Nhdr nh = { .n_namesz = 4, .n_descsz = 8, .n_type = 18 };
	uint64_t pvh = PVH_ENTRY;

	memset(im, 0, sizeof(*im));
	im->len = IMAGE_SIZE;
	im->eh = (Elf64_Ehdr *)im->buf;
	im->ph = (Elf64_Phdr *)(im->buf + sizeof(Elf64_Ehdr));

	memcpy(im->eh->e_ident, ELFMAG, SELFMAG);
	im->eh->e_ident[EI_CLASS] = ELFCLASS64;
	im->eh->e_ident[EI_DATA] = ELFDATA2LSB;
	im->eh->e_ident[EI_VERSION] = EV_CURRENT;
	im->eh->e_type = ET_EXEC;
	im->eh->e_machine = EM_X86_64;
	im->eh->e_version = EV_CURRENT;
	im->eh->e_entry = SEG0_ADDR;
	im->eh->e_phoff = sizeof(Elf64_Ehdr);
	im->eh->e_ehsize = sizeof(Elf64_Ehdr);
	im->eh->e_phentsize = sizeof(Elf64_Phdr);
	im->eh->e_phnum = 3;

	im->ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R | PF_X,
		.p_offset = SEG0_OFF, .p_vaddr = SEG0_ADDR, .p_paddr = SEG0_ADDR,
		.p_filesz = SEG0_SIZE, .p_memsz = SEG0_SIZE, .p_align = 0x1000 };
	im->ph[1] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R | PF_W,
		.p_offset = SEG1_OFF, .p_vaddr = SEG1_ADDR, .p_paddr = SEG1_ADDR,
		.p_filesz = SEG1_FILE, .p_memsz = SEG1_MEM, .p_align = 0x1000 };
	im->ph[2] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = NOTE_OFF,
		.p_filesz = sizeof(nh) + 4 + 8, .p_align = 4 };

	memset(im->buf + SEG0_OFF, 0xa5, SEG0_SIZE);
	memset(im->buf + SEG1_OFF, 0x5a, SEG1_FILE);
	memcpy(im->buf + NOTE_OFF, &nh, sizeof(nh));
	memcpy(im->buf + NOTE_OFF + sizeof(nh), "Xen", 4);
	memcpy(im->buf + NOTE_OFF + sizeof(nh) + 4, &pvh, 8);
}

static int setup_ram(void **state)
{
	struct guest_mem *gm = calloc(1, sizeof(*gm));

	assert_non_null(gm);
	assert_int_equal(guest_mem_create(gm, RAM_SIZE, KICKVM_MMIO_HOLE), 0);
	*state = gm;
	return 0;
}

static int teardown_ram(void **state)
{
	guest_mem_destroy(*state);
	free(*state);
	return 0;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void test_valid_image(void **state)
{
	struct guest_mem *gm = *state;
	struct boot_image img;
	struct image im;
	const char *why = "unset";
	uint8_t *bss;

	build_image(&im);
	/* Stale bytes where the bss goes: the loader must clear them. */
	bss = guest_mem_ptr(gm, SEG1_ADDR, SEG1_MEM);
	memset(bss, 0xff, SEG1_MEM + 0x10);

	assert_int_equal(boot_load_elf(gm, im.buf, im.len, &img, &why), 0);
	assert_null(why);
	assert_int_equal(img.entry64, SEG0_ADDR);
	assert_int_equal(img.pvh_entry32, PVH_ENTRY);
	assert_int_equal(img.load_start, SEG0_ADDR);
	assert_int_equal(img.load_end, SEG1_ADDR + SEG1_MEM - 1);
	assert_true(all_bytes(guest_mem_ptr(gm, SEG0_ADDR, SEG0_SIZE), SEG0_SIZE, 0xa5));
	assert_true(all_bytes(bss, SEG1_FILE, 0x5a));
	assert_true(all_bytes(bss + SEG1_FILE, SEG1_MEM - SEG1_FILE, 0));
	/* ...and nothing past the end of the segment. */
	assert_true(all_bytes(bss + SEG1_MEM, 0x10, 0xff));
}

static void test_no_pvh_note(void **state)
{
	struct boot_image img;
	struct image im;
	const char *why;

	build_image(&im);
	im.eh->e_phnum = 2;
	assert_int_equal(boot_load_elf(*state, im.buf, im.len, &img, &why), 0);
	assert_int_equal(img.pvh_entry32, 0);
}

/* Every mutation of the valid image that must be refused. */
enum mutation {
	TRUNCATED, BAD_MAGIC, CLASS32, MSB_DATA, WRONG_MACHINE, NOT_EXEC, BAD_PHENTSIZE,
	NO_PHDRS, PHDRS_OUT_OF_FILE, PHOFF_OVERFLOW, SEG_FILE_OUT, SEG_FILE_OVERFLOW,
	FILESZ_GT_MEMSZ, SEG_OUTSIDE_RAM, SEG_IN_HOLE, SEG_ON_BOOT_TABLES, SEG_ON_ACPI,
	SEG_ON_RESET_VECTOR, PADDR_OVERFLOW,
	ENTRY_OUTSIDE, PVH_OUTSIDE, NOTE_TRUNCATED, NOTE_BAD_DESC, OVERLAP, NO_LOAD,
	NR_MUTATIONS
};

static const char *mutate(struct image *im, enum mutation m)
{
	switch (m) {
	case TRUNCATED:         im->len = sizeof(Elf64_Ehdr) - 1; return "too short";
	case BAD_MAGIC:         im->buf[1] = 'X'; return "not an ELF";
	case CLASS32:           im->eh->e_ident[EI_CLASS] = ELFCLASS32; return "64-bit x86";
	case MSB_DATA:        im->eh->e_ident[EI_DATA] = ELFDATA2MSB; return "64-bit x86";
	case WRONG_MACHINE:     im->eh->e_machine = EM_AARCH64; return "64-bit x86";
	case NOT_EXEC:          im->eh->e_type = ET_DYN; return "ET_EXEC";
	case BAD_PHENTSIZE:     im->eh->e_phentsize = 32; return "entry size";
	case NO_PHDRS:          im->eh->e_phnum = 0; return "no program headers";
	case PHDRS_OUT_OF_FILE: im->eh->e_phoff = im->len - 10; return "table outside";
	case PHOFF_OVERFLOW:    im->eh->e_phoff = UINT64_MAX - 8; return "table outside";
	case SEG_FILE_OUT:      im->ph[0].p_offset = im->len - 0x10; return "data outside the file";
	case SEG_FILE_OVERFLOW: im->ph[1].p_offset = UINT64_MAX - 0x10; return "data outside";
	case FILESZ_GT_MEMSZ:   im->ph[0].p_memsz = 0x10; return "file size larger";
	case SEG_OUTSIDE_RAM:   im->ph[1].p_paddr = RAM_SIZE - 0x1000; return "outside guest RAM";
	case SEG_IN_HOLE:       im->ph[1].p_paddr = KICKVM_TESTDEV_BASE; return "outside guest RAM";
	case SEG_ON_BOOT_TABLES: im->ph[0].p_paddr = 0x8000; return "collides with kickvm's boot tables";
	case SEG_ON_ACPI:       im->ph[0].p_paddr = 0xeff80; return "collides with kickvm's ACPI tables";
	/* Its last 16 bytes on the stub: a real collision, however small. */
	case SEG_ON_RESET_VECTOR: im->ph[0].p_paddr = 0x100000 - SEG0_SIZE; return "reset vector";
	case PADDR_OVERFLOW:    im->ph[1].p_paddr = UINT64_MAX - 0xfff; return "overflows";
	case ENTRY_OUTSIDE:     im->eh->e_entry = 0x300000; return "entry point outside";
	case PVH_OUTSIDE: {
		uint64_t bad = 0x300000;

		memcpy(im->buf + NOTE_OFF + sizeof(Elf64_Nhdr) + 4, &bad, 8);
		return "PVH entry outside";
	}
	case NOTE_TRUNCATED:    im->ph[2].p_filesz -= 4; return "malformed ELF note";
	case NOTE_BAD_DESC: {
		Elf64_Nhdr nh = { .n_namesz = 4, .n_descsz = 2, .n_type = 18 };

		memcpy(im->buf + NOTE_OFF, &nh, sizeof(nh));
		return "bad PVH";
	}
	case OVERLAP:           im->ph[1].p_paddr = SEG0_ADDR + 0x80; return "overlap";
	case NO_LOAD:           im->ph[0].p_type = PT_NULL; im->ph[1].p_type = PT_NULL;
				return "no loadable";
	case NR_MUTATIONS:      break;
	}
	return NULL;
}

static void test_rejections(void **state)
{
	struct guest_mem *gm = *state;

	for (int m = 0; m < NR_MUTATIONS; m++) {
		struct boot_image img = { .entry64 = 0x1234 };
		struct image im;
		const char *why = NULL, *expect;
		int ret;

		build_image(&im);
		expect = mutate(&im, m);
		memset(guest_mem_ptr(gm, SEG0_ADDR, SEG0_SIZE), 0, SEG0_SIZE);
		ret = boot_load_elf(gm, im.buf, im.len, &img, &why);
		if (ret != -ENOEXEC || !why || !strstr(why, expect))
			fail_msg("mutation %d: ret %d why \"%s\", want -ENOEXEC \"%s\"",
				 m, ret, why ? why : "(null)", expect);
		/* Checked before copied: a refused image leaves RAM and img alone. */
		assert_true(all_bytes(guest_mem_ptr(gm, SEG0_ADDR, SEG0_SIZE), SEG0_SIZE, 0));
		assert_int_equal(img.entry64, 0x1234);
	}
}

/*
 * The shape GNU ld gives a PVH kernel linked with -Ttext=0x100000: a
 * read-only first segment at 0xff000 holding the ELF and program headers
 * (file offset 0), then .text at 1 MiB.  It loads, headers and all.  Only
 * kickvm's own structures are off limits: a segment may end right where
 * the reset stub begins, or sit between the boot tables and the ACPI tables.
 */
static void test_gnu_ld_header_segment(void **state)
{
	struct guest_mem *gm = *state;
	const uint64_t hdr_size = sizeof(Elf64_Ehdr) + 3 * sizeof(Elf64_Phdr);
	struct boot_image img;
	struct image im;
	const char *why = "unset";

	build_image(&im);
	im.ph[2] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R, .p_offset = 0,
		.p_vaddr = 0xff000, .p_paddr = 0xff000, .p_filesz = hdr_size,
		.p_memsz = hdr_size, .p_align = 0x1000 };
	assert_int_equal(boot_load_elf(gm, im.buf, im.len, &img, &why), 0);
	assert_null(why);
	assert_int_equal(img.load_start, 0xff000);
	assert_memory_equal(guest_mem_ptr(gm, 0xff000, hdr_size), im.buf, hdr_size);

	/* Up to the byte before the reset stub, and right after the tables. */
	im.ph[2].p_paddr = LINUX_RESET_VECTOR - hdr_size;
	assert_int_equal(boot_load_elf(gm, im.buf, im.len, &img, &why), 0);
	im.ph[2].p_paddr = LINUX_BOOT_AREA_END;
	assert_int_equal(boot_load_elf(gm, im.buf, im.len, &img, &why), 0);
	im.ph[2].p_paddr = ACPI_TABLES_BASE - hdr_size;
	assert_int_equal(boot_load_elf(gm, im.buf, im.len, &img, &why), 0);
	/* One byte further in each case is a collision. */
	for (unsigned i = 0; boot_reserved_range(i); i++) {
		const struct boot_reserved *r = boot_reserved_range(i);
		uint64_t at[] = { r->start - hdr_size + 1, r->end - 1 };

		for (unsigned k = 0; k < 2; k++) {
			im.ph[2].p_paddr = at[k];
			why = NULL;
			assert_int_equal(boot_load_elf(gm, im.buf, im.len, &img, &why), -ENOEXEC);
			assert_string_equal(why, r->what);
		}
	}
}

/* The build's GNU ld-linked PVH guests (guest/pvh/pvh.S) are next to this
 * test's binary: build/tests/unit -> build/guest. */
static void guest_elf_path(char *path, size_t size, const char *name)
{
	char exe[4096], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	assert_true(n > 0);
	exe[n] = 0;
	slash = strrchr(exe, '/');
	assert_non_null(slash);
	*slash = 0;
	snprintf(path, size, "%s/../../guest/kickvm-%s.elf", exe, name);
	if (access(path, R_OK) != 0)
		fail_msg("%s missing: build the guests (ninja -C build)", path);
}

static void test_real_gnu_ld_image(void **state)
{
	char path[4200];
	struct boot_image img;
	const char *why = NULL;

	guest_elf_path(path, sizeof(path), "pvh-ld");
	assert_int_equal(boot_load_elf_file(*state, path, &img, &why), 0);
	assert_null(why);
	assert_true(img.load_start < KICKVM_GUEST_LOAD_MIN);
	assert_memory_equal(guest_mem_ptr(*state, img.load_start, 4), ELFMAG, 4);
	assert_int_equal(img.pvh_entry32, 0x100000);

	guest_elf_path(path, sizeof(path), "pvh-collide");
	assert_int_equal(boot_load_elf_file(*state, path, &img, &why), -ENOEXEC);
	assert_non_null(strstr(why, "collides with kickvm's boot tables"));
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/kickvm-elf-XXXXXX";
	struct boot_image img;
	struct image im;
	const char *why;
	int fd;

	build_image(&im);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, im.buf, im.len), (ssize_t)im.len);
	close(fd);
	assert_int_equal(boot_load_elf_file(*state, path, &img, &why), 0);
	assert_int_equal(img.pvh_entry32, PVH_ENTRY);
	unlink(path);
	assert_int_equal(boot_load_elf_file(*state, path, &img, &why), -ENOENT);
	assert_int_equal(boot_load_elf_file(*state, "/tmp", &img, &why), -EINVAL);
}

/* Walk the guest's page tables as the MMU would; returns the physical
 * address, with *user set when U/S is 1 at every level. */
static uint64_t translate(struct guest_mem *gm, uint64_t cr3, uint64_t va, bool *user)
{
	uint64_t e;

	*user = true;
	assert_int_equal(guest_mem_read(gm, cr3 + ((va >> 39) & 511) * 8, &e, 8), 0);
	assert_true(e & 1);
	*user &= (e >> 2) & 1;
	assert_int_equal(guest_mem_read(gm, (e & ~0xfffull) + ((va >> 30) & 511) * 8, &e, 8), 0);
	assert_true(e & 1);
	*user &= (e >> 2) & 1;
	assert_int_equal(guest_mem_read(gm, (e & ~0xfffull) + ((va >> 21) & 511) * 8, &e, 8), 0);
	assert_true(e & 1);
	assert_true(e & 2);     /* writable */
	assert_true(e & 0x80);  /* 2 MiB page */
	*user &= (e >> 2) & 1;
	return (e & ~0x1fffffull & ((1ull << 52) - 1)) | (va & 0x1fffff);
}

static void test_boot_tables(void **state)
{
	struct guest_mem *gm = *state;
	struct hvm_start_info si;
	struct hvm_memmap_table_entry map[2];
	const char *cmdline = "ncpus=2; cpl3; w4 0xfe001000 1 10";
	char buf[128];
	uint64_t gdt[4], pdpt4;
	bool user;

	assert_int_equal(boot_setup_tables(gm, cmdline), 0);
	assert_int_equal(guest_mem_read(gm, KICKVM_BOOT_START_INFO, &si, sizeof(si)), 0);
	assert_int_equal(si.magic, HVM_START_MAGIC);
	assert_int_equal(si.version, 1);
	assert_int_equal(si.memmap_entries, 1);
	assert_int_equal(guest_mem_read_str(gm, si.cmdline_paddr, buf, sizeof(buf)), 0);
	assert_string_equal(buf, cmdline);
	assert_int_equal(guest_mem_read(gm, si.memmap_paddr, map, sizeof(map[0])), 0);
	assert_int_equal(map[0].addr, 0);
	assert_int_equal(map[0].size, RAM_SIZE);
	assert_int_equal(map[0].type, 1);

	assert_int_equal(translate(gm, KICKVM_BOOT_PML4, 0xfe000000, &user), 0xfe000000);
	assert_true(user);
	assert_int_equal(translate(gm, KICKVM_BOOT_PML4, 0x123456, &user), 0x123456);
	assert_true(user);
	assert_int_equal(translate(gm, KICKVM_BOOT_PML4, 0xffffffff, &user), 0xffffffff);
	/* Nothing above 4 GiB. */
	assert_int_equal(guest_mem_read(gm, KICKVM_BOOT_PDPT + 4 * 8, &pdpt4, 8), 0);
	assert_int_equal(pdpt4, 0);

	assert_int_equal(guest_mem_read(gm, KICKVM_BOOT_GDT, gdt, sizeof(gdt)), 0);
	assert_int_equal(gdt[0], 0);
	assert_true(gdt[KICKVM_BOOT_CS64 / 8] & (1ull << 53));   /* L */
	assert_false(gdt[KICKVM_BOOT_CS32 / 8] & (1ull << 53));
	assert_true(gdt[KICKVM_BOOT_CS32 / 8] & (1ull << 54));   /* D */
}

static void test_memmap_two_banks(void **state)
{
	struct guest_mem gm;
	struct hvm_start_info si;
	struct hvm_memmap_table_entry map[2];

	(void)state;
	/* A small "hole" puts half of RAM above 4 GiB. */
	assert_int_equal(guest_mem_create(&gm, 32ull << 20, 16ull << 20), 0);
	assert_int_equal(boot_setup_tables(&gm, NULL), 0);
	assert_int_equal(guest_mem_read(&gm, KICKVM_BOOT_START_INFO, &si, sizeof(si)), 0);
	assert_int_equal(si.memmap_entries, 2);
	assert_int_equal(guest_mem_read(&gm, si.memmap_paddr, map, sizeof(map)), 0);
	assert_int_equal(map[0].addr, 0);
	assert_int_equal(map[0].size, 16ull << 20);
	assert_int_equal(map[1].addr, 4ull << 30);
	assert_int_equal(map[1].size, 16ull << 20);
	assert_int_equal(map[1].type, 1);
	guest_mem_destroy(&gm);
}

static void test_cmdline_too_long(void **state)
{
	char *s = malloc(KICKVM_BOOT_CMDLINE_MAX + 1);
	char *back = malloc(KICKVM_BOOT_CMDLINE_MAX);

	memset(s, 'x', KICKVM_BOOT_CMDLINE_MAX);
	s[KICKVM_BOOT_CMDLINE_MAX] = '\0';
	assert_int_equal(boot_setup_tables(*state, s), -E2BIG);
	/* The longest that fits. */
	s[KICKVM_BOOT_CMDLINE_MAX - 1] = '\0';
	assert_int_equal(boot_setup_tables(*state, s), 0);
	assert_int_equal(guest_mem_read_str(*state, KICKVM_BOOT_CMDLINE, back,
					    KICKVM_BOOT_CMDLINE_MAX), 0);
	assert_string_equal(back, s);
	free(s);
	free(back);
}

static void test_vcpu_state(void **state)
{
	struct boot_image img = { .entry64 = 0x100040 };
	struct vcpu_boot_state bs;

	(void)state;
	assert_int_equal(boot_vcpu_state(&img, BOOT_ELF64, 3, &bs), 1);
	assert_int_equal(bs.rip, 0x100040);
	assert_int_equal(bs.rsi, 3);
	assert_int_equal(bs.rbx, KICKVM_BOOT_START_INFO);
	assert_int_equal(bs.rsp, 0);
	assert_int_equal(bs.cr3, KICKVM_BOOT_PML4);
	assert_int_equal(bs.cr0, 0x80010033);
	assert_int_equal(bs.cr4, 0x620);
	assert_int_equal(bs.efer, 0x501);
	assert_int_equal(bs.gdt_base, KICKVM_BOOT_GDT);
	assert_int_equal(bs.gdt_limit, 31);
	assert_int_equal(bs.cs, KICKVM_BOOT_CS64);
	assert_int_equal(bs.ds, KICKVM_BOOT_DS);
	assert_true(bs.long_mode);
}

/* AUTO prefers the KickVM note, then PVH, then e_entry; PVH starts the boot
 * CPU only, in 32-bit mode with paging off. */
static void test_boot_protocols(void **state)
{
	struct boot_image img = { .entry64 = 0x100040, .pvh_entry32 = 0x100010 };
	struct vcpu_boot_state bs;
	enum boot_protocol p;
	const char *why = NULL;

	(void)state;
	assert_int_equal(boot_choose(&img, BOOT_AUTO, &p, &why), 0);
	assert_int_equal(p, BOOT_PVH);
	assert_int_equal(boot_vcpu_state(&img, BOOT_PVH, 0, &bs), 1);
	assert_int_equal(bs.rip, 0x100010);
	assert_false(bs.long_mode);
	assert_int_equal(bs.cr0 & 0x80000000u, 0);
	assert_int_equal(bs.rbx, KICKVM_BOOT_START_INFO);
	assert_int_equal(boot_vcpu_state(&img, BOOT_PVH, 1, &bs), 0);
	assert_int_equal(boot_choose(&img, BOOT_KICKVM, &p, &why), -ENOEXEC);
	assert_non_null(why);

	img.kickvm_entry64 = 0x100080;
	assert_int_equal(boot_choose(&img, BOOT_AUTO, &p, &why), 0);
	assert_int_equal(p, BOOT_KICKVM);
	assert_int_equal(boot_vcpu_state(&img, BOOT_KICKVM, 2, &bs), 1);
	assert_int_equal(bs.rip, 0x100080);
	assert_int_equal(bs.rsi, 2);
	assert_true(bs.long_mode);

	img.kickvm_entry64 = img.pvh_entry32 = 0;
	assert_int_equal(boot_choose(&img, BOOT_AUTO, &p, &why), 0);
	assert_int_equal(p, BOOT_ELF64);
	assert_int_equal(boot_choose(&img, BOOT_PVH, &p, &why), -ENOEXEC);
}

/*
 * With RAM above 4 GiB a segment may load there, but no entry may: PVH is
 * entered with paging off in 32-bit mode, the 64-bit entries on the boot
 * identity map of 0-4 GiB.  Each entry in turn points into a segment at
 * 4 GiB; the loader takes the image, boot_choose() refuses the protocol.
 */
static void test_entries_above_4g(void **state)
{
	const uint64_t high = KICKVM_BOOT_IDENTITY_END + 0x10;
	struct guest_mem gm;
	struct boot_image img;
	enum boot_protocol p;
	struct image im;
	const char *why;
	char path[4200];

	(void)state;
	/* Bank 2 at 4 GiB; nothing is touched but what the image loads. */
	assert_int_equal(guest_mem_create(&gm, KICKVM_MMIO_HOLE + RAM_SIZE, KICKVM_MMIO_HOLE), 0);

	build_image(&im);
	im.ph[1].p_paddr = im.ph[1].p_vaddr = KICKVM_BOOT_IDENTITY_END;
	memcpy(im.buf + NOTE_OFF + sizeof(Elf64_Nhdr) + 4, &high, 8);
	assert_int_equal(boot_load_elf(&gm, im.buf, im.len, &img, &why), 0);
	assert_int_equal(img.pvh_entry32, high);
	why = NULL;
	assert_int_equal(boot_choose(&img, BOOT_PVH, &p, &why), -ENOEXEC);
	assert_non_null(why);
	assert_non_null(strstr(why, "PVH entry above 4 GiB"));
	why = NULL;
	assert_int_equal(boot_choose(&img, BOOT_AUTO, &p, &why), -ENOEXEC);
	assert_non_null(strstr(why, "PVH entry above 4 GiB"));
	/* e_entry is below: the ELF64 protocol still boots it. */
	assert_int_equal(boot_choose(&img, BOOT_ELF64, &p, &why), 0);

	img.kickvm_entry64 = high;
	why = NULL;
	assert_int_equal(boot_choose(&img, BOOT_AUTO, &p, &why), -ENOEXEC);
	assert_non_null(strstr(why, "KickVM entry outside the boot identity map"));
	img.kickvm_entry64 = KICKVM_BOOT_IDENTITY_END - 0x1000;
	assert_int_equal(boot_choose(&img, BOOT_KICKVM, &p, &why), 0);

	img.entry64 = high;
	why = NULL;
	assert_int_equal(boot_choose(&img, BOOT_ELF64, &p, &why), -ENOEXEC);
	assert_non_null(strstr(why, "ELF entry point outside the boot identity map"));

	/* A PVH entry just below 4 GiB is fine. */
	img.pvh_entry32 = UINT32_MAX;
	assert_int_equal(boot_choose(&img, BOOT_PVH, &p, &why), 0);

	/* The same with images GNU ld linked (.hightext at 4 GiB). */
	guest_elf_path(path, sizeof(path), "pvh-high");
	assert_int_equal(boot_load_elf_file(&gm, path, &img, &why), 0);
	assert_int_equal(boot_choose(&img, BOOT_AUTO, &p, &why), -ENOEXEC);
	assert_non_null(strstr(why, "PVH entry above 4 GiB"));
	guest_elf_path(path, sizeof(path), "kickvm-high");
	assert_int_equal(boot_load_elf_file(&gm, path, &img, &why), 0);
	assert_int_equal(boot_choose(&img, BOOT_AUTO, &p, &why), -ENOEXEC);
	assert_non_null(strstr(why, "KickVM entry outside the boot identity map"));
	guest_mem_destroy(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_image, setup_ram, teardown_ram),
		cmocka_unit_test_setup_teardown(test_no_pvh_note, setup_ram, teardown_ram),
		cmocka_unit_test_setup_teardown(test_rejections, setup_ram, teardown_ram),
		cmocka_unit_test_setup_teardown(test_load_file, setup_ram, teardown_ram),
		cmocka_unit_test_setup_teardown(test_gnu_ld_header_segment, setup_ram, teardown_ram),
		cmocka_unit_test_setup_teardown(test_real_gnu_ld_image, setup_ram, teardown_ram),
		cmocka_unit_test_setup_teardown(test_boot_tables, setup_ram, teardown_ram),
		cmocka_unit_test(test_memmap_two_banks),
		cmocka_unit_test_setup_teardown(test_cmdline_too_long, setup_ram, teardown_ram),
		cmocka_unit_test(test_vcpu_state),
		cmocka_unit_test(test_boot_protocols),
		cmocka_unit_test(test_entries_above_4g),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
