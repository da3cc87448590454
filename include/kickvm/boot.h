/*
 * Loading a guest: an ELF64 x86-64 image is placed in guest RAM and every
 * vCPU is given the entry state include/kickvm/guest_abi.h describes.
 *
 * The file is untrusted input: every header field, segment and note is
 * checked against the file size and the guest RAM before anything is copied.
 */
#ifndef KICKVM_BOOT_H
#define KICKVM_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "kvm.h"

struct guest_mem;

struct boot_image {
	uint64_t entry64;        /* ELF e_entry */
	uint64_t pvh_entry32;    /* XEN_ELFNOTE_PHYS32_ENTRY, 0 if absent */
	uint64_t kickvm_entry64; /* KICKVM_ELFNOTE_ENTRY64, 0 if absent */
	uint64_t load_start, load_end;  /* lowest and highest byte loaded (inclusive) */
};

/*
 * What kickvm writes below KICKVM_GUEST_LOAD_MIN, whatever the boot protocol:
 * boot tables, start info and command line, Linux's zero page, the ACPI
 * tables, the reset stub.  A segment may load anywhere else in RAM (GNU ld
 * puts an image's ELF headers in a segment of their own just below .text,
 * at 0xff000 for -Ttext=0x100000); one that overlaps these is refused.
 * Ranges are [start, end); boot_reserved_range() returns NULL past the last.
 */
struct boot_reserved {
	uint64_t start, end;
	const char *what;
};
const struct boot_reserved *boot_reserved_range(unsigned index);

/*
 * Parse @buf (@len bytes, the whole file) and copy its PT_LOAD segments into
 * @gm (bss zeroed).  Errors: -ENOEXEC with *@why set to a static reason ("not
 * an ELF file", "not x86-64", "segment outside guest RAM", ...).
 */
int boot_load_elf(struct guest_mem *gm, const void *buf, size_t len,
		  struct boot_image *img, const char **why);
/* Read @path and boot_load_elf() it. -errno from open/read, or as above. */
int boot_load_elf_file(struct guest_mem *gm, const char *path,
		       struct boot_image *img, const char **why);

/*
 * Write the boot GDT, identity page tables, hvm_start_info with the memory
 * map and @cmdline (-E2BIG when longer than KICKVM_BOOT_CMDLINE_MAX-1).
 */
int boot_setup_tables(struct guest_mem *gm, const char *cmdline);

enum boot_protocol {
	BOOT_AUTO,     /* KickVM note, else PVH note, else ELF64 */
	BOOT_KICKVM,   /* every vCPU at the KickVM note's 64-bit entry */
	BOOT_PVH,      /* the boot CPU at the PVH entry; the others wait for SIPI */
	BOOT_ELF64,    /* every vCPU at e_entry in 64-bit mode */
};

/* The protocol @img boots with when @requested; -ENOEXEC (with *@why) when
 * the image lacks what @requested needs, or when the chosen entry cannot be
 * reached in the mode it starts in (PVH: above 4 GiB; KickVM and ELF64:
 * outside the identity map of 0-4 GiB). */
int boot_choose(const struct boot_image *img, enum boot_protocol requested,
		enum boot_protocol *chosen, const char **why);
const char *boot_protocol_name(enum boot_protocol p);

/* The entry state of vCPU @index under @proto (as chosen by boot_choose()).
 * Returns 1 when the vCPU starts there, 0 when it waits for INIT/SIPI. */
int boot_vcpu_state(const struct boot_image *img, enum boot_protocol proto, int index,
		    struct vcpu_boot_state *bs);

#endif
