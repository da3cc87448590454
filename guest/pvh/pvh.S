/*
 * The smallest PVH guest, linked by GNU ld the ordinary way (no linker
 * script, just -Ttext): ld then gives the ELF and program headers a
 * read-only LOAD segment of their own just below .text, at 0xff000 for
 * -Ttext=0x100000, as a vmlinux or any hand-linked PVH kernel has.  It
 * ends the VM with status PVH_EXIT_STATUS from its 32-bit entry.
 *
 * Variants (guest/meson.build), for the loader's refusals:
 *   HIGH_ENTRY    the PVH note names code placed at 4 GiB (.hightext)
 *   KICKVM_HIGH   the KickVM 64-bit entry note names that code instead
 */
/* guest_abi.h's values (it holds C declarations, so it is not included). */
#define KICKVM_EXIT_PORT         0xf4
#define KICKVM_ELFNOTE_ENTRY64   1
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PVH_EXIT_STATUS          42

	.section .note.entry, "a", @note
	.balign 4
#ifdef KICKVM_HIGH
	.long 7, 8, KICKVM_ELFNOTE_ENTRY64      /* namesz, descsz, type */
	.asciz "KickVM"
	.balign 4
	.quad high_entry
#else
	.long 4, 8, XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
#ifdef HIGH_ENTRY
	.quad high_entry
#else
	.quad pvh_start
#endif
#endif

	.code32
	.text
	.globl pvh_start
pvh_start:
	mov $KICKVM_EXIT_PORT, %dx
	mov $PVH_EXIT_STATUS, %eax
	outl %eax, %dx
1:	hlt
	jmp 1b

#if defined(HIGH_ENTRY) || defined(KICKVM_HIGH)
	.section .hightext, "ax"
high_entry:
	hlt
	jmp high_entry
#endif
