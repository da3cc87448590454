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
#define MSR_X2APIC_ID   0x802
#define CPUID_1_ECX_X2APIC (1u << 21)
#define XAPIC_ID        0x020   /* offsets in the xAPIC's MMIO page */
#define XAPIC_EOI       0x0b0
#define XAPIC_SVR       0x0f0

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

/* Where the counting stubs send their EOI in xAPIC mode; 0: x2APIC (MSR). */
uint64_t guest_xapic_eoi;

uint32_t apic_enable(void)
{
	uint32_t r[4];
	uint64_t base;

	cpuid(1, 0, r);
	if (r[2] & CPUID_1_ECX_X2APIC) {
		x2apic_enable();
		guest_xapic_eoi = 0;
		return (uint32_t)rdmsr(MSR_X2APIC_ID);
	}
	/* No x2APIC (QEMU's TCG before 8.0): the xAPIC page, identity-mapped
	 * like the rest of the low 4 GiB. */
	base = rdmsr(MSR_APIC_BASE);
	wrmsr(MSR_APIC_BASE, (base & ~APIC_BASE_EXTD) | APIC_BASE_EN);
	base &= 0xfffff000ull;
	mmio_write32(base + XAPIC_SVR, 0x1ff);
	guest_xapic_eoi = base + XAPIC_EOI;
	return mmio_read32(base + XAPIC_ID) >> 24;
}

extern const uint8_t guest_irq_count_stubs[];   /* irq_count.S: 16 bytes per vector */

void irq_set_counter(unsigned vector)
{
	if (vector < 32 || vector > 255)
		GUEST_FAIL("irq_set_counter: vector %u is not 32-255", vector);
	guest_irq_handlers[vector] = NULL;
	idt_set_gate(vector, guest_irq_count_stubs + (vector - 32) * 16, 0);
}
