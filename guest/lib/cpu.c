/*
 * Per-CPU start-up: stacks, GDT with a TSS per CPU, IDT, the GS base that
 * lets code at any privilege level find its CPU, then guest_main() or
 * guest_ap_main().  Also the fatal exception report.
 *
 * All of this runs at CPL0, i.e. emulated at ~1 us per instruction on our
 * KVM: it is kept to straight-line code and a few short loops.
 */
#include "guest.h"
#include "runtime.h"

#define MSR_GS_BASE 0xc0000101

struct percpu guest_percpu[MAX_CPUS];
uint8_t guest_kstacks[MAX_CPUS][KSTACK_SIZE] __attribute__((aligned(16)));
uint8_t guest_ustacks[MAX_CPUS][USTACK_SIZE] __attribute__((aligned(16)));
static uint8_t guest_istacks[MAX_CPUS][ISTACK_SIZE] __attribute__((aligned(16)));

/* Flat segments; accessed bits preset.  TSS descriptors are filled per CPU. */
uint64_t guest_gdt[GDT_ENTRIES] __attribute__((aligned(16))) = {
	[0] = 0,
	[1] = 0x00af9b000000ffffull,   /* 0x08 kernel code, 64-bit */
	[2] = 0x00cf93000000ffffull,   /* 0x10 kernel data */
	[3] = 0x00cffb000000ffffull,   /* 0x18 user code, 32-bit (SYSRET layout) */
	[4] = 0x00cff3000000ffffull,   /* 0x20 user data */
	[5] = 0x00affb000000ffffull,   /* 0x28 user code, 64-bit */
};

struct __attribute__((packed)) desc_ptr {
	uint16_t limit;
	uint64_t base;
};

int guest_has_sysdev;
const struct hvm_start_info *guest_boot_info;

_Static_assert(__builtin_offsetof(struct percpu, cpu) == PCPU_CPU, "percpu layout");
_Static_assert(__builtin_offsetof(struct percpu, saved_ksp) == PCPU_SAVED_KSP, "percpu layout");
_Static_assert(__builtin_offsetof(struct percpu, user_sp) == PCPU_USER_SP, "percpu layout");
_Static_assert(__builtin_offsetof(struct percpu, in_trap) == PCPU_IN_TRAP, "percpu layout");
_Static_assert(__builtin_offsetof(struct percpu, tss) == PCPU_TSS, "percpu layout");
_Static_assert(sizeof(struct tss64) == 104, "TSS size");

void idt_set_gate(unsigned vector, const void *handler, unsigned ist)
{
	uint64_t a = (uint64_t)handler;

	/* Present interrupt gate (IF cleared on entry), DPL0, kernel CS. */
	guest_idt[vector][0] = (a & 0xffff) | ((uint64_t)SEL_KCODE << 16) |
			       ((uint64_t)ist << 32) | (0x8eull << 40) |
			       (((a >> 16) & 0xffff) << 48);
	guest_idt[vector][1] = a >> 32;
}

void idt_clear_gate(unsigned vector)
{
	guest_idt[vector][0] = 0;
	guest_idt[vector][1] = 0;
}

/* A 4-character slice of the signature as CPUID returns it; folds to a
 * constant, where a memcmp would be a loop of emulated instructions. */
#define SIG_WORD(i) ((uint32_t)KICKVM_CPUID_SIGNATURE[4 * (i)] |                \
		     (uint32_t)KICKVM_CPUID_SIGNATURE[4 * (i) + 1] << 8 |       \
		     (uint32_t)KICKVM_CPUID_SIGNATURE[4 * (i) + 2] << 16 |      \
		     (uint32_t)KICKVM_CPUID_SIGNATURE[4 * (i) + 3] << 24)

static void check_sysdev(void)
{
	uint32_t r[4];

	cpuid(0x40000000, 0, r);
	guest_has_sysdev = r[1] == SIG_WORD(0) && r[2] == SIG_WORD(1) && r[3] == SIG_WORD(2);
}

bool guest_on_kickvm(void)
{
	return guest_has_sysdev;
}

const struct hvm_start_info *guest_start_info(void)
{
	return guest_boot_info;
}

static void cpu_init(unsigned cpu)
{
	struct percpu *pc = &guest_percpu[cpu];
	uint64_t tss = (uint64_t)&pc->tss, limit = sizeof(pc->tss) - 1;
	struct desc_ptr gdtr = { sizeof(guest_gdt) - 1, (uint64_t)guest_gdt };
	struct desc_ptr idtr = { sizeof(guest_idt) - 1, (uint64_t)guest_idt };

	pc->self = pc;
	pc->cpu = cpu;
	pc->user_sp = (uint64_t)guest_ustacks[cpu + 1];
	pc->tss.rsp[0] = (uint64_t)guest_kstacks[cpu + 1];
	pc->tss.ist[0] = (uint64_t)guest_istacks[cpu + 1];
	pc->tss.iomap_base = sizeof(pc->tss);   /* no I/O bitmap */

	/* 64-bit available TSS (type 9), present. */
	guest_gdt[6 + 2 * cpu] = (limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x89ull << 40) |
				 (((tss >> 24) & 0xff) << 56);
	guest_gdt[7 + 2 * cpu] = tss >> 32;

	/* Our GDT keeps 0x08/0x10 as kickvm's boot GDT (and the PVH entry) has
	 * them, so CS needs no reload.  FS/GS are null: the GS base then comes
	 * only from the MSR and survives the CPL switches. */
	__asm__ volatile("lgdt %0\n\t"
			 "mov %1, %%ds\n\t"
			 "mov %1, %%es\n\t"
			 "mov %1, %%ss\n\t"
			 "mov %2, %%fs\n\t"
			 "mov %2, %%gs\n\t"
			 "ltr %w3\n\t"
			 "lidt %4"
			 :: "m"(gdtr), "r"(SEL_KDATA), "r"(0), "r"(SEL_TSS(cpu)), "m"(idtr)
			 : "memory");
	wrmsr(MSR_GS_BASE, (uint64_t)pc);
}

__attribute__((weak)) void guest_ap_main(unsigned cpu, const char *cmdline)
{
	(void)cpu;
	(void)cmdline;
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_start(uint64_t cpu, uint64_t start_info)
{
	const struct hvm_start_info *si = (const void *)start_info;
	const char *cmdline = "";

	/* Every CPU gets rbx = start_info (guest_abi.h), so no CPU waits for
	 * another; the IDT is static data (entry.S). */
	if (si && si->magic == HVM_START_MAGIC) {
		if (cpu == 0)
			guest_boot_info = si;
		if (si->cmdline_paddr)
			cmdline = (const char *)si->cmdline_paddr;
	}
	check_sysdev();
	cpu_init(cpu);
	if (cpu == 0)
		guest_exit(guest_main(cmdline));
	guest_ap_main(cpu, cmdline);
	ucall_done();
	for (;;)
		__asm__ volatile("cli; hlt");
}

static const char *const exc_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
	"#NP", "#SS", "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void guest_trap(struct trap_frame *f)
{
	struct percpu *pc = this_percpu();
	uint64_t cr2;

	/* A fault while reporting a fault: stop without another word. */
	if (!pc || pc->in_trap++)
		guest_exit(3);
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	printf("\nguest: exception %s (vector %llu) error 0x%llx at RIP 0x%llx CPL%llu cpu %llu",
	       f->vector < 32 && exc_names[f->vector] ? exc_names[f->vector] : "?",
	       (unsigned long long)f->vector, (unsigned long long)f->error,
	       (unsigned long long)f->rip, (unsigned long long)(f->cs & 3),
	       (unsigned long long)pc->cpu);
	if (f->vector == 14)
		printf(" CR2 0x%llx", (unsigned long long)cr2);
	printf("\n");
	guest_exit(3);
}
