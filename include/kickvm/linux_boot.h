/*
 * Booting Linux: the x86 boot protocol (Linux's Documentation/arch/x86/boot.rst)
 * for a bzImage entered at its 64-bit entry, and the extra start-of-day data
 * a vmlinux booted through its PVH note needs (memory map, initrd module,
 * RSDP).
 *
 * The kernel file is untrusted input: every field of its setup header is
 * checked against the file and guest RAM before anything is written, and a
 * rejected file leaves guest RAM as it was.
 *
 * Guest-physical layout below 1 MiB (next to guest_abi.h's boot structures):
 *   0x8000 PVH start_info, 0x8100 its memory map, 0x9000 the command line,
 *   0xa000 the zero page (struct boot_params), 0xb000 the boot GDT Linux's
 *   64-bit protocol asks for, 0xb100 the PVH module list.
 * All int-returning calls return 0 or a negative errno.
 */
#ifndef KICKVM_LINUX_BOOT_H
#define KICKVM_LINUX_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm.h"

struct guest_mem;

#define LINUX_BOOT_PARAMS   0xa000ull   /* the zero page, 4 KiB */
#define LINUX_BOOT_GDT      0xb000ull   /* null, null, __BOOT_CS 0x10, __BOOT_DS 0x18 */
#define LINUX_PVH_MODLIST   0xb100ull   /* struct hvm_modlist_entry[1] */
#define LINUX_BOOT_AREA_END 0xc000ull   /* the pages above end here */
#define LINUX_RESET_VECTOR  0xffff0ull  /* reboot stub, up to 1 MiB (machine/linux.c) */
#define LINUX_BOOT_CS       0x10
#define LINUX_BOOT_DS       0x18

/* e820 types (boot_params and the PVH memory map use the same numbers). */
#define E820_RAM       1
#define E820_RESERVED  2
#define E820_ACPI      3

#define LINUX_E820_MAX 128  /* entries boot_params can carry */

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
};

struct linux_boot_config {
	const char *cmdline;                 /* NULL: empty */
	uint64_t initrd_size;                /* 0: no initrd */
	const struct e820_entry *e820;       /* the map the guest is given */
	unsigned nr_e820;
	uint64_t rsdp_addr;                  /* 0: no ACPI */
};

struct linux_boot_info {
	uint16_t version;                    /* boot protocol version, 0x020c.. */
	uint64_t load_addr;                  /* where the protected-mode kernel went */
	uint64_t load_end;                   /* load_addr + init_size (exclusive) */
	uint64_t entry64;                    /* load_addr + 0x200 */
	uint64_t initrd_addr;                /* where the caller must copy the initrd */
};

/*
 * The memory map of @gm: each RAM bank as RAM, minus the low boot area
 * (0x9fc00-0xfffff: EBDA, VGA hole, BIOS area with the ACPI tables), plus the
 * reserved ranges of the machine (ECAM, the platform devices, IOAPIC, LAPIC
 * and KVM's TSS pages at the top of 4 GiB).  Sorted, at most @max entries.
 * Returns the count, or -ENOSPC.
 */
int linux_build_e820(const struct guest_mem *gm, struct e820_entry *out, unsigned max);

/* The file starts like a bzImage (boot_flag and "HdrS" in place). */
bool linux_is_bzimage(const void *buf, size_t len);

/*
 * Check the bzImage in @buf (@len bytes) and load it: the protected-mode
 * kernel at its preferred address (honouring kernel_alignment when it is
 * relocatable), the zero page at LINUX_BOOT_PARAMS with the setup header,
 * e820 map, command line, RSDP and the initrd's place, and the boot GDT.
 * The initrd itself is not copied: @info->initrd_addr says where it goes
 * (high, below initrd_addr_max and the end of RAM below 4 GiB, above the
 * kernel).  -ENOEXEC with *@why for a file that is not a usable bzImage,
 * -ENOMEM with *@why when it (or the initrd) does not fit, -E2BIG for a
 * command line longer than the kernel takes.
 */
int linux_load_bzimage(struct guest_mem *gm, const void *buf, size_t len,
		       const struct linux_boot_config *cfg, struct linux_boot_info *info,
		       const char **why);

/* The boot vCPU's entry state for a loaded bzImage: 64-bit mode on the
 * identity tables, rsi = the zero page, interrupts off. */
void linux_bzimage_vcpu_state(const struct linux_boot_info *info, struct vcpu_boot_state *bs);

/*
 * For a vmlinux booted through PVH, after boot_setup_tables(): rewrite the
 * hvm_start_info with the e820 map (reserved ranges too), the RSDP, and one
 * module (the initrd) placed as for a bzImage above @kernel_end.
 * *@initrd_addr says where the caller must copy it.
 */
int linux_setup_pvh(struct guest_mem *gm, const struct linux_boot_config *cfg,
		    uint64_t kernel_end, uint64_t *initrd_addr, const char **why);

#endif
