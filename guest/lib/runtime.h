/*
 * Runtime internals shared by the C files and entry.S: the per-CPU block
 * (reached through the GS base at any privilege level), the GDT layout and
 * the sizes of the static stacks.  Not part of the guest API.
 */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

#define MAX_CPUS          8
#define KSTACK_SIZE       0x4000   /* CPL0 stack; traps from CPL3 land here too */
#define USTACK_SIZE       0x10000  /* CPL3 stack for run_user() */
#define ISTACK_SIZE       0x1000   /* double-fault stack (IST1) */

/* GDT selectors.  The order kernel code, kernel data, user code32, user
 * data, user code64 is what SYSCALL/SYSRET would need. */
#define SEL_KCODE   0x08
#define SEL_KDATA   0x10
#define SEL_UCODE32 0x1b
#define SEL_UDATA   0x23
#define SEL_UCODE   0x2b
#define SEL_TSS(cpu) (0x30 + 16 * (cpu))
#define GDT_ENTRIES (6 + 2 * MAX_CPUS)

/* Offsets in struct percpu, for %gs: accesses from assembly. */
#define PCPU_SELF      0
#define PCPU_CPU       8
#define PCPU_SAVED_KSP 16   /* kernel rsp of the innermost run_user() */
#define PCPU_USER_SP   24   /* where the next run_user() starts its CPL3 stack */
#define PCPU_IN_TRAP   32
#define PCPU_TSS       64
#define PCPU_TSS_RSP0  (PCPU_TSS + 4)

#ifndef __ASSEMBLER__
#include <stdint.h>

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

struct percpu {
	struct percpu *self;
	uint64_t cpu;
	uint64_t saved_ksp;
	uint64_t user_sp;
	uint64_t in_trap;
	uint64_t pad[3];
	struct tss64 tss;
} __attribute__((aligned(64)));

/* What the common exception stub pushes, lowest address first. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

extern struct percpu guest_percpu[MAX_CPUS];
extern uint64_t guest_gdt[GDT_ENTRIES];
extern uint8_t guest_kstacks[MAX_CPUS][KSTACK_SIZE];
extern uint8_t guest_ustacks[MAX_CPUS][USTACK_SIZE];
extern uint64_t guest_idt[256][2];
extern const uint8_t guest_irq_stubs[];   /* 16 bytes per vector from 32 */
extern void (*guest_irq_handlers[256])(unsigned vector);
extern int guest_has_sysdev;

void guest_start(uint64_t cpu, uint64_t start_info) __attribute__((noreturn));
void guest_trap(struct trap_frame *f) __attribute__((noreturn));
void idt_set_gate(unsigned vector, const void *handler, unsigned ist);
void idt_clear_gate(unsigned vector);
void console_write(const char *s, unsigned long len);

static inline struct percpu *this_percpu(void)
{
	struct percpu *pc;

	__asm__ volatile("mov %%gs:0, %0" : "=r"(pc));
	return pc;
}
#endif

#endif
