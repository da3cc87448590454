/*
 * Interrupt vectors 32-255 and the x2APIC.  Each vector has a 16-byte stub
 * in entry.S that calls guest_irq_handlers[vector] at CPL0; a gate is only
 * present while a handler is set, so a stray vector is a visible #NP.
 */
#include "guest.h"
#include "runtime.h"

#define MSR_APIC_BASE   0x1b
#define APIC_BASE_EXTD  (1ull << 10)
#define APIC_BASE_EN    (1ull << 11)
#define MSR_X2APIC_SVR  0x80f

void (*guest_irq_handlers[256])(unsigned vector);

void irq_set_handler(unsigned vector, void (*fn)(unsigned vector))
{
	if (vector < 32 || vector > 255)
		GUEST_FAIL("irq_set_handler: vector %u is not 32-255", vector);
	guest_irq_handlers[vector] = fn;
	if (fn)
		idt_set_gate(vector, guest_irq_stubs + (vector - 32) * 16, 0);
	else
		idt_clear_gate(vector);
}

void x2apic_enable(void)
{
	wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | APIC_BASE_EN | APIC_BASE_EXTD);
	/* Software enable, spurious vector 0xff. */
	wrmsr(MSR_X2APIC_SVR, 0x1ff);
}

extern const uint8_t guest_irq_count_stubs[];   /* irq_count.S: 16 bytes per vector */

void irq_set_counter(unsigned vector)
{
	if (vector < 32 || vector > 255)
		GUEST_FAIL("irq_set_counter: vector %u is not 32-255", vector);
	guest_irq_handlers[vector] = NULL;
	idt_set_gate(vector, guest_irq_count_stubs + (vector - 32) * 16, 0);
}
