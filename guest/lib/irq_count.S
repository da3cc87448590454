/*
 * Counting interrupt handlers: the whole CPL0 side of an interrupt-driven
 * driver whose real work runs at CPL3.  Each stub adds one to
 * guest_irq_counts[vector] and sends the EOI (x2APIC MSR, or the xAPIC
 * page after apic_enable() found no x2APIC) - about a dozen
 * instructions, against some forty for the C-handler path in entry.S
 * (CPL0 code is emulated at ~1 us per instruction on our KVM).
 */
	.text
	.balign 16
	.globl guest_irq_count_stubs
guest_irq_count_stubs:			/* 16 bytes per vector from 32 */
	.set vec, 32
	.rept 224
	.balign 16
	incq guest_irq_counts + 8 * vec	/* one instruction: no lost update */
	jmp irq_count_eoi
	.set vec, vec + 1
	.endr

irq_count_eoi:
	push %rax
	mov guest_xapic_eoi, %rax	/* set by apic_enable() in xAPIC mode */
	test %rax, %rax
	jnz 1f
	push %rcx
	push %rdx
	mov $0x80b, %ecx		/* x2APIC EOI */
	xor %eax, %eax
	xor %edx, %edx
	wrmsr
	pop %rdx
	pop %rcx
	pop %rax
	iretq
1:	movl $0, (%rax)			/* xAPIC EOI */
	pop %rax
	iretq

	.bss
	.balign 8
	.globl guest_irq_counts
guest_irq_counts:
	.skip 256 * 8

	.section .note.GNU-stack, "", @progbits
