/*
 * Entry points, exception and interrupt stubs, and the CPL0 <-> CPL3 switch.
 *
 * CPL0 code is emulated instruction by instruction on our KVM, so the paths
 * taken often (leaving and re-entering CPL3) are a handful of instructions
 * here rather than C.  int3 and int $n are avoided: the emulator stops on
 * them at CPL0, and int $n from CPL3 raises #UD.  CPL3 gets back to CPL0
 * through ud2 at two known addresses, which the #UD stub recognises.
 */
#include "runtime.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* ---- PVH note: QEMU (-kernel) and other PVH loaders enter at pvh_start32 ---- */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4, 8, XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.quad pvh_start32

/* ---- KickVM note: kickvm starts every vCPU at _start in 64-bit mode ---- */
	.section .note.kickvm, "a", @note
	.balign 4
	.long 7, 8, 1			/* "KickVM\0", 8-byte desc, KICKVM_ELFNOTE_ENTRY64 */
	.asciz "KickVM"
	.balign 4
	.quad _start

/*
 * Everything the IDT points at lives in .text.entry, which guest.ld places
 * first, at GUEST_LOAD_BASE: a stub's address is then an assembly-time
 * constant and the IDT below is plain data, instead of a loop of ~350
 * emulated instructions at every boot.
 */
#define GUEST_LOAD_BASE 0x100000
#define ENTRY_ADDR(sym) (GUEST_LOAD_BASE + ((sym) - entry_base))

/* ---- 64-bit entry (kickvm): rsi = cpu index, rbx = hvm_start_info, CPL0 ---- */
	.section .text.entry, "ax"
	.code64
	.globl _start
entry_base:
_start:
	cli
	cld
	cmp $MAX_CPUS, %rsi
	jae park
	mov %rsi, %rax
	inc %rax
	imul $KSTACK_SIZE, %rax, %rax	/* this CPU's stack top */
	lea guest_kstacks(%rax), %rsp
	mov %rsi, %rdi
	mov %rbx, %rsi
	call guest_start
park:
	cli
	hlt
	jmp park

/* ---- 32-bit PVH entry: protected mode, paging off, ebx = start_info ---- */
	.code32
pvh_start32:
	cli
	cld
	lgdt pvh_gdtr
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %cr4, %eax
	or $0x620, %eax			/* PAE | OSFXSR | OSXMMEXCPT */
	mov %eax, %cr4
	mov $pvh_pml4, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx		/* EFER: LME | SCE */
	rdmsr
	or $0x101, %eax
	wrmsr
	mov $0x80010033, %eax		/* PG | WP | NE | ET | MP | PE */
	mov %eax, %cr0
	ljmp $SEL_KCODE, $pvh_start64
	.code64
pvh_start64:
	mov %ebx, %ebx
	xor %esi, %esi			/* PVH starts only the boot CPU */
	jmp _start

/* ---- run_user(fn, arg): fn(arg) at CPL3, returns its value ---- */
	.globl run_user
run_user:
	mov %cs, %eax
	test $3, %al
	jz 1f
	mov %rdi, %rax			/* already at CPL3: plain call */
	mov %rsi, %rdi
	jmp *%rax
1:	push %rbp
	push %rbx
	push %r12
	push %r13
	push %r14
	push %r15
	pushfq				/* the #UD trap back clears IF: restore it after */
	/* Save the outer switch state so run_user nests (via run_kernel). */
	pushq %gs:PCPU_SAVED_KSP
	pushq %gs:PCPU_TSS_RSP0
	mov %rsp, %gs:PCPU_SAVED_KSP
	mov %rsp, %gs:PCPU_TSS_RSP0	/* traps from CPL3 land below this frame */
	mov %gs:PCPU_USER_SP, %rax
	pushq $SEL_UDATA
	push %rax
	pushfq
	pushq $SEL_UCODE
	pushq $user_trampoline
	iretq

user_trampoline:			/* CPL3: rdi = fn, rsi = arg */
	mov %rdi, %rax
	mov %rsi, %rdi
	call *%rax
user_return_ud2:
	ud2				/* -> #UD stub -> back into run_user */

/* ---- run_kernel(fn, arg): fn(arg) at CPL0 ---- */
	.globl run_kernel
run_kernel:
	mov %cs, %eax
	test $3, %al
	jnz kcall_ud2
	mov %rdi, %rax
	mov %rsi, %rdi
	jmp *%rax
kcall_ud2:
	ud2				/* the #UD stub calls fn and resumes after ud2 */
	ret

/* ---- exceptions ---- */
.macro EXC vec
exc\vec:
	.if (\vec == 8 || \vec == 10 || \vec == 11 || \vec == 12 || \vec == 13 || \vec == 14 || \vec == 17 || \vec == 21 || \vec == 29 || \vec == 30)
	.else
	pushq $0
	.endif
	pushq $\vec
	jmp exc_common
.endm

	.irp v, 0,1,2,3,4,5,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	EXC \v
	.endr

/* #UD: first the two deliberate traps from CPL3, then the real thing. */
exc6:
	cmpq $user_return_ud2, (%rsp)
	je user_return
	cmpq $kcall_ud2, (%rsp)
	je kcall
	pushq $0
	pushq $6
	jmp exc_common

user_return:				/* rax = fn's return value */
	mov %gs:PCPU_SAVED_KSP, %rsp
	popq %gs:PCPU_TSS_RSP0
	popq %gs:PCPU_SAVED_KSP
	popfq
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbx
	pop %rbp
	ret

kcall:					/* rdi = fn, rsi = arg; on the RSP0 stack */
	pushq %gs:PCPU_USER_SP
	mov 32(%rsp), %rax		/* the user rsp: a nested run_user starts below it */
	sub $128, %rax
	and $-16, %rax
	mov %rax, %gs:PCPU_USER_SP
	mov %rdi, %rax
	mov %rsi, %rdi
	call *%rax
	popq %gs:PCPU_USER_SP
	addq $2, (%rsp)			/* resume after the ud2 */
	iretq

exc_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	and $-16, %rsp
	call guest_trap			/* does not return */
	jmp park

/* ---- interrupts 32-255: one 16-byte stub per vector, then a C handler ---- */
	.balign 16
	.globl guest_irq_stubs
guest_irq_stubs:
	.set vec, 32
	.rept 224
	.balign 16
	pushq $vec
	jmp irq_common
	.set vec, vec + 1
	.endr

/* Frame after the pushes below: 0 saved user_sp, 8-72 r11..rax, 80 vector,
 * 88 rip, 96 cs, 104 rflags, 112 rsp, 120 ss.  16-byte aligned at the call. */
irq_common:				/* keep it short: this runs emulated */
	push %rax
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	pushq %gs:PCPU_USER_SP
	testb $3, 96(%rsp)		/* interrupted CS */
	jz 1f
	/* From CPL3: a run_user() inside the handler must start below the
	 * interrupted user stack, not on top of it. */
	mov 112(%rsp), %rax		/* interrupted rsp */
	sub $128, %rax
	and $-16, %rax
	mov %rax, %gs:PCPU_USER_SP
1:	mov 80(%rsp), %rdi		/* vector */
	call *guest_irq_handlers(,%rdi,8)
	popq %gs:PCPU_USER_SP
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rax
	add $8, %rsp
	iretq

/* ---- the IDT: exceptions 0-31 present, 32-255 filled in by irq_set_handler() ---- */
.macro GATE sym, ist=0
	.word ENTRY_ADDR(\sym) & 0xffff
	.word SEL_KCODE
	.byte \ist, 0x8e		/* present interrupt gate, DPL0 */
	.word ENTRY_ADDR(\sym) >> 16	/* the image is below 4 GiB */
	.long 0, 0
.endm

	.data
	.balign 16
	.globl guest_idt
guest_idt:
	.irp v, 0,1,2,3,4,5,6,7
	GATE exc\v
	.endr
	GATE exc8, 1			/* #DF on its own stack (IST1) */
	.irp v, 9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	GATE exc\v
	.endr
	.fill 224 * 16, 1, 0

/* ---- static identity page tables for the PVH entry (0-4 GiB, 2 MiB, U/S) ---- */
	.section .data.pvh, "aw"
	.balign 4096
pvh_pml4:
	.quad pvh_pdpt + 7
	.fill 511, 8, 0
pvh_pdpt:
	.quad pvh_pd + 0x0007, pvh_pd + 0x1007, pvh_pd + 0x2007, pvh_pd + 0x3007
	.fill 508, 8, 0
pvh_pd:
	.set addr, 0
	.rept 1536			/* RAM: P | W | U | PS */
	.quad addr + 0x87
	.set addr, addr + 0x200000
	.endr
	.rept 512			/* the MMIO hole, uncached: + PWT | PCD */
	.quad addr + 0x9f
	.set addr, addr + 0x200000
	.endr

	.balign 8
pvh_gdtr:
	.word GDT_ENTRIES * 8 - 1
	.long guest_gdt

	.section .note.GNU-stack, "", @progbits
