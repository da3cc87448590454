/*
 * The smallest PVH guest, linked by GNU ld the ordinary way (no linker
 * script, just -Ttext): ld then gives the ELF and program headers a
 * read-only LOAD segment of their own just below .text, at 0xff000 for
 * -Ttext=0x100000, as a vmlinux or any hand-linked PVH kernel has.  It
 * ends the VM with status PVH_EXIT_STATUS from its 32-bit entry.
 */

/* guest_abi.h's values (it holds C declarations, so it is not included). */
#define KICKVM_EXIT_PORT         0xf4
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PVH_EXIT_STATUS          42

	.section .note.entry, "a", @note
	.balign 4
	.long 4, 8, XEN_ELFNOTE_PHYS32_ENTRY    /* namesz, descsz, type */
	.asciz "Xen"
	.quad pvh_start

	.code32
	.text
	.globl pvh_start
pvh_start:
	mov $KICKVM_EXIT_PORT, %dx
	mov $PVH_EXIT_STATUS, %eax
	outl %eax, %dx
1:	hlt
	jmp 1b
