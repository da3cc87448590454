/*
 * The kickvm test-guest runtime: what a guest program can use.
 *
 * A guest defines guest_main() (CPU 0) and optionally guest_ap_main() (the
 * other vCPUs).  Both start at CPL0 with the runtime set up: GDT, TSS, IDT
 * (exceptions print and exit with status 3), console, and the command line.
 *
 * On this project's KVM, CPL0 code is emulated (~1 us per instruction) and
 * CPL3 code runs natively: do set-up at CPL0, run loops through run_user().
 * Port I/O only works at CPL0; MMIO, the console and ucalls work at both.
 */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kickvm/guest_abi.h"

#define GUEST_MAX_CPUS 8

/* ---- entry points the guest provides ---------------------------------------- */
int guest_main(const char *cmdline);                    /* CPU 0; returns exit status */
void guest_ap_main(unsigned cpu, const char *cmdline);  /* weak default: halt */

/* ---- CPU --------------------------------------------------------------------- */
/* This vCPU's index (rsi at entry); any privilege level. */
static inline unsigned guest_cpu(void)
{
	unsigned cpu;

	__asm__ volatile("movl %%gs:8, %0" : "=r"(cpu));
	return cpu;
}

static inline unsigned guest_cpl(void)
{
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return cs & 3;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline void barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

/* CPL0 only. */
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
			 : "memory");
}

/* Run fn(arg) at CPL3 on this CPU's user stack and return its value.  From
 * CPL3 (nested use) it simply calls fn. */
long run_user(long (*fn)(void *arg), void *arg);
/* Run fn(arg) at CPL0 and return its value; from CPL3 this traps (ud2). */
long run_kernel(long (*fn)(void *arg), void *arg);

/* ---- port I/O (CPL0 only: CPL3 gets #GP even with IOPL) ----------------------- */
static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port) : "memory");
}
static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port) : "memory");
}
static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port) : "memory");
}
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;

	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

/* ---- MMIO (identity-mapped, user-accessible: any privilege level) ------------ */
/* One access of exactly that size; the memory clobber orders it after the
 * plain stores before it (a ucall block, a ring entry). */
#define GUEST_MMIO_RW(bits, suffix)                                              \
static inline void mmio_write##bits(uint64_t addr, uint##bits##_t v)             \
{                                                                                \
	__asm__ volatile("mov" suffix " %1, %0"                                  \
			 : "=m"(*(volatile uint##bits##_t *)addr) : "r"(v) : "memory"); \
}                                                                                \
static inline uint##bits##_t mmio_read##bits(uint64_t addr)                      \
{                                                                                \
	uint##bits##_t v;                                                        \
	__asm__ volatile("mov" suffix " %1, %0"                                  \
			 : "=r"(v) : "m"(*(volatile uint##bits##_t *)addr) : "memory"); \
	return v;                                                                \
}
GUEST_MMIO_RW(8, "b")
GUEST_MMIO_RW(16, "w")
GUEST_MMIO_RW(32, "l")
GUEST_MMIO_RW(64, "q")
#undef GUEST_MMIO_RW

/* ---- console ------------------------------------------------------------------ *
 * CPL0: the 8250 at KICKVM_UART_PORT.  CPL3: SYSDEV_PUTC on kickvm, else a
 * trap to CPL0 (e.g. under QEMU).  One printf's output is not interleaved
 * with other CPUs'.  Formats: %d %i %u %x %X %o %s %c %p %% with the l, ll,
 * z and h length modifiers, a width, '0' and '-' flags, and "%.*s". */
int putchar(int c);
int puts(const char *s);            /* appends '\n', as in C */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

/* True when CPUID 0x40000000 says "KickVMKickVM" (the system device exists). */
bool guest_on_kickvm(void);

/* The PVH start info the guest was booted with (command line, memory map,
 * ACPI RSDP), NULL if there was none.  Any privilege level. */
const struct hvm_start_info *guest_start_info(void);

/* ---- memory ------------------------------------------------------------------- */
/* @npages zeroed 4 KiB pages of RAM after the image (identity-mapped, so the
 * address is also the guest-physical one, for DMA).  Never freed; a guest
 * that runs out fails.  Zeroing is a loop: call it at CPL3. */
void *page_alloc(size_t npages);
uint64_t page_alloc_free_bytes(void);

/* ---- ucalls and exit ---------------------------------------------------------- */
void ucall(uint64_t cmd, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3);
void ucall_sync(uint64_t stage);     /* UCALL_SYNC(stage, cpu) */
void ucall_done(void);               /* UCALL_DONE(cpu) */
void ucall_print(const char *s);     /* UCALL_PRINT */
/* End the VM with @status: SYSDEV_EXIT, plus KICKVM_EXIT_PORT at CPL0 (QEMU's
 * isa-debug-exit).  Any privilege level. */
void guest_exit(int status) __attribute__((noreturn));

void guest_assert_fail(const char *file, int line, const char *expr, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));

/* Report file, line and expression to the host (UCALL_ASSERT) and on the
 * console, then exit with status 1. */
#define GUEST_ASSERT(expr)                                                     \
	do {                                                                   \
		if (!(expr))                                                   \
			guest_assert_fail(__FILE__, __LINE__, #expr, NULL);    \
	} while (0)

#define GUEST_ASSERT_MSG(expr, ...)                                            \
	do {                                                                   \
		if (!(expr))                                                   \
			guest_assert_fail(__FILE__, __LINE__, #expr, __VA_ARGS__); \
	} while (0)

#define GUEST_ASSERT_EQ(a, b)                                                  \
	do {                                                                   \
		uint64_t __ga = (uint64_t)(a), __gb = (uint64_t)(b);           \
		if (__ga != __gb)                                              \
			guest_assert_fail(__FILE__, __LINE__, #a " == " #b,    \
					  "0x%llx != 0x%llx",                  \
					  (unsigned long long)__ga,            \
					  (unsigned long long)__gb);           \
	} while (0)

#define GUEST_FAIL(...) guest_assert_fail(__FILE__, __LINE__, "GUEST_FAIL", __VA_ARGS__)

/* ---- interrupts (CPL0 to set up; handlers run at CPL0, keep them short) ------ */
/* Route @vector (32-255) to @fn; NULL removes it. */
void irq_set_handler(unsigned vector, void (*fn)(unsigned vector));
static inline void irq_enable(void)  { __asm__ volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
/* sti; hlt: wait for the next interrupt (CPL0). */
static inline void irq_wait(void)    { __asm__ volatile("sti; hlt" ::: "memory"); }
/* Route @vector (32-255) to a counting handler: it adds one to
 * guest_irq_counts[vector] and EOIs (x2APIC, or xAPIC after apic_enable()
 * chose it), nothing else.  For drivers
 * whose completion work runs at CPL3: the emulated CPL0 part stays a dozen
 * instructions.  CPL0 (it writes the IDT). */
void irq_set_counter(unsigned vector);
extern uint64_t guest_irq_counts[256];
/* Interrupts counted on @vector so far; any privilege level. */
static inline uint64_t irq_count(unsigned vector)
{
	return __atomic_load_n(&guest_irq_counts[vector & 255], __ATOMIC_RELAXED);
}
/* Switch the local APIC to x2APIC mode and software-enable it. */
void x2apic_enable(void);
/* Software-enable the local APIC: x2APIC mode where CPUID offers it, else
 * xAPIC through its MMIO page (QEMU's TCG before 8.0 has no x2APIC).
 * Returns this CPU's APIC id, the destination of MSI/MSI-X messages.  CPL0. */
uint32_t apic_enable(void);
static inline void x2apic_eoi(void) { wrmsr(0x80b, 0); }

/* ---- freestanding string helpers ------------------------------------------------ */
void *memset(void *s, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

#endif
