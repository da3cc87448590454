/*
 * vCPUs: creation (kvm_run mapping, CPUID), the entry state the boot loader
 * asks for, one KVM_RUN at a time, kicks, and the coalesced MMIO ring.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"
#include "kickvm/log.h"
#include "kvm_internal.h"

#include "kickvm/x86.h"

#define CPUID_HV_BASE 0x40000000u
#define CPUID_HV_LAST 0x400000ffu

/* ---- CPUID ------------------------------------------------------------------ */

static void set_signature(struct kvm_cpuid_entry2 *e)
{
	const char sig[] = KICKVM_CPUID_SIGNATURE;

	_Static_assert(sizeof(sig) == 13, "the signature fills ebx, ecx, edx");
	*e = (struct kvm_cpuid_entry2){ .function = CPUID_HV_BASE, .eax = CPUID_HV_BASE };
	memcpy(&e->ebx, sig, 4);
	memcpy(&e->ecx, sig + 4, 4);
	memcpy(&e->edx, sig + 8, 4);
}

/*
 * KVM's supported CPUID, made ours: the APIC id is the vCPU index, and the
 * hypervisor range says "KickVM" and nothing else, so a guest never believes
 * it can use KVM's paravirtual features (kvmclock, PV EOI, ...).
 */
static int set_cpuid(struct vcpu *v)
{
	const struct kvm_cpuid2 *sup = v->kvm->cpuid;
	struct kvm_cpuid2 *c;
	bool have_sig = false;
	uint32_t n = 0;
	int r;

	c = calloc(1, sizeof(*c) + (sup->nent + 1) * sizeof(c->entries[0]));
	if (!c)
		return -ENOMEM;
	for (uint32_t i = 0; i < sup->nent; i++) {
		struct kvm_cpuid_entry2 e = sup->entries[i];

		if (e.function >= CPUID_HV_BASE && e.function <= CPUID_HV_LAST) {
			if (e.function != CPUID_HV_BASE)
				continue;
			set_signature(&e);
			have_sig = true;
		} else if (e.function == 1) {
			e.ebx = (e.ebx & 0x00ffffffu) | ((uint32_t)v->index << 24);
			e.ecx |= 1u << 31;  /* "running under a hypervisor": look at 0x40000000 */
		} else if (e.function == 0xb || e.function == 0x1f) {
			e.edx = (uint32_t)v->index;  /* x2APIC id, every level */
		}
		c->entries[n++] = e;
	}
	if (!have_sig)
		set_signature(&c->entries[n++]);
	c->nent = n;
	r = kvm_ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	return r;
}

/* ---- life cycle ----------------------------------------------------------------- */

int vcpu_create(struct kvm *kvm, int index, struct vcpu **out)
{
	struct vcpu *v;
	void *run;
	int r;

	*out = NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->kvm = kvm;
	v->index = index;
	r = kvm_ioctl(kvm->vm_fd, KVM_CREATE_VCPU, (void *)(long)index);
	if (r < 0)
		goto fail;
	v->fd = r;
	run = mmap(NULL, kvm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (run == MAP_FAILED) {
		r = -errno;
		close(v->fd);
		goto fail;
	}
	v->run = run;
	v->run_size = kvm->run_size;
	if (kvm->caps.coalesced_mmio_page > 0) {
		size_t off = (size_t)kvm->caps.coalesced_mmio_page * (size_t)sysconf(_SC_PAGESIZE);

		if (off < v->run_size)
			v->ring = (struct kvm_coalesced_mmio_ring *)((char *)run + off);
	}
	r = set_cpuid(v);
	if (r < 0) {
		log_error("kvm", "vCPU %d: KVM_SET_CPUID2: %s", index, strerror(-r));
		vcpu_destroy(v);
		return r;
	}
	*out = v;
	return 0;
fail:
	free(v);
	return r;
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	if (v->run)
		munmap(v->run, v->run_size);
	close(v->fd);
	free(v->saved);
	free(v);
}

/* ---- entry state --------------------------------------------------------------- */

static struct kvm_segment flat_seg(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .s = 1, .g = 1,
		.l = code64, .db = !code64,  /* L=1 requires D=0 */
	};
}

int vcpu_set_boot_state(struct vcpu *v, const struct vcpu_boot_state *bs)
{
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	struct kvm_sregs s;
	struct kvm_regs regs = {
		.rip = bs->rip, .rsp = bs->rsp, .rbx = bs->rbx, .rsi = bs->rsi,
		.rdi = bs->rdi, .rflags = bs->rflags | 0x2,  /* bit 1 is always set */
	};
	uint16_t cs = bs->cs ? bs->cs : bs->long_mode ? KICKVM_BOOT_CS64 : KICKVM_BOOT_CS32;
	uint16_t ds = bs->ds ? bs->ds : KICKVM_BOOT_DS;
	int r;

	r = kvm_ioctl(v->fd, KVM_GET_SREGS, &s);
	if (r < 0)
		return r;
	/* Type 11: execute/read, accessed.  Type 3: read/write, accessed. */
	s.cs = flat_seg(cs, 11, bs->long_mode);
	s.ds = s.es = s.ss = s.fs = s.gs = flat_seg(ds, 3, false);
	/* VM entry wants a usable TR even if the guest never switches stacks:
	 * a busy TSS (type 11) of minimal size; the guest loads its own later. */
	s.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .type = 11, .present = 1 };
	s.ldt = (struct kvm_segment){ .type = 2, .unusable = 1 };
	s.gdt.base = bs->gdt_base;
	s.gdt.limit = bs->gdt_limit;
	s.idt.base = 0;
	s.idt.limit = 0;  /* interrupts are off until the guest has its IDT */
	if (bs->long_mode) {
		s.cr0 = bs->cr0 ? bs->cr0 : CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
		s.cr4 = bs->cr4 ? bs->cr4 : CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
		s.efer = bs->efer ? bs->efer : EFER_LME | EFER_LMA | EFER_SCE;
		s.cr3 = bs->cr3;
	} else {
		/* PVH: 32-bit flat protected mode, paging off. */
		s.cr0 = bs->cr0 ? bs->cr0 : CR0_PE | CR0_ET;
		s.cr4 = bs->cr4;
		s.efer = bs->efer;
		s.cr3 = bs->cr3;
	}
	r = kvm_ioctl(v->fd, KVM_SET_SREGS, &s);
	if (r < 0)
		return r;
	r = kvm_ioctl(v->fd, KVM_SET_REGS, &regs);
	if (r < 0)
		return r;
	/* Every vCPU starts at the entry directly: no INIT/SIPI for APs. */
	return kvm_ioctl(v->fd, KVM_SET_MP_STATE, &mp);
}

/* ---- running --------------------------------------------------------------------- */

int vcpu_run_once(struct vcpu *v)
{
	int r;

	atomic_fetch_add(&v->stats.runs, 1);
	atomic_store_explicit(&v->in_kvm_run, true, memory_order_relaxed);
	r = kvm_ioctl(v->fd, KVM_RUN, NULL);
	atomic_store_explicit(&v->in_kvm_run, false, memory_order_relaxed);
	if (r == -EINTR) {
		/* A kick (or any signal).  Clearing here may swallow a second kick
		 * that raced in, which is fine: the caller checks v->stop now. */
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		atomic_fetch_add(&v->stats.exits_intr, 1);
		return -EINTR;
	}
	if (r < 0)
		return r;
	switch (v->run->exit_reason) {
	case KVM_EXIT_MMIO:
		atomic_fetch_add(&v->stats.exits_mmio, 1);
		break;
	case KVM_EXIT_IO:
		atomic_fetch_add(&v->stats.exits_pio, 1);
		break;
	case KVM_EXIT_HLT:
		atomic_fetch_add(&v->stats.exits_hlt, 1);
		break;
	case KVM_EXIT_INTR:
		atomic_fetch_add(&v->stats.exits_intr, 1);
		break;
	case KVM_EXIT_SHUTDOWN:
		atomic_fetch_add(&v->stats.exits_shutdown, 1);
		break;
	default:
		atomic_fetch_add(&v->stats.exits_other, 1);
		break;
	}
	return (int)v->run->exit_reason;
}

void vcpu_kick(struct vcpu *v)
{
	/* immediate_exit covers the window where the thread is between two
	 * KVM_RUNs (the signal would be lost); the signal covers KVM_RUN itself. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->has_thread)
		pthread_kill(v->thread, SIGUSR1);
}

static void kick_handler(int sig)
{
	(void)sig;  /* its only job is to interrupt KVM_RUN with EINTR */
}

static void install_kick_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;  /* no SA_RESTART: KVM_RUN must return EINTR */
	sigaction(SIGUSR1, &sa, NULL);
}

void vcpu_signals_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, install_kick_handler);
}

/* ---- coalesced MMIO ---------------------------------------------------------------- */

unsigned vcpu_drain_coalesced(struct vcpu *v,
			      void (*fn)(void *opaque, uint64_t addr, const void *data,
					 unsigned len, bool pio),
			      void *opaque)
{
	struct kvm_coalesced_mmio_ring *ring = v->ring;
	uint32_t max, first;
	unsigned n = 0;

	if (!ring)
		return 0;
	max = (uint32_t)((sysconf(_SC_PAGESIZE) - sizeof(*ring)) / sizeof(ring->coalesced_mmio[0]));
	pthread_mutex_lock(&v->kvm->ring_lock);
	first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);
	/* Acquire on last: the entries KVM wrote before moving it are visible. */
	while (first != __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE)) {
		struct kvm_coalesced_mmio ent = ring->coalesced_mmio[first % max];

		fn(opaque, ent.phys_addr, ent.data, ent.len > 8 ? 8 : ent.len, ent.pio != 0);
		first = (first + 1) % max;
		/* Release: we are done reading the slot before KVM may reuse it. */
		__atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
		n++;
	}
	pthread_mutex_unlock(&v->kvm->ring_lock);
	atomic_fetch_add(&v->stats.coalesced, n);
	return n;
}

/* ---- diagnostics --------------------------------------------------------------------- */

static const char *exit_name(uint32_t reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "UNKNOWN", [KVM_EXIT_EXCEPTION] = "EXCEPTION",
		[KVM_EXIT_IO] = "IO", [KVM_EXIT_HYPERCALL] = "HYPERCALL",
		[KVM_EXIT_DEBUG] = "DEBUG", [KVM_EXIT_HLT] = "HLT",
		[KVM_EXIT_MMIO] = "MMIO", [KVM_EXIT_IRQ_WINDOW_OPEN] = "IRQ_WINDOW_OPEN",
		[KVM_EXIT_SHUTDOWN] = "SHUTDOWN", [KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY",
		[KVM_EXIT_INTR] = "INTR", [KVM_EXIT_NMI] = "NMI",
		[KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR",
		[KVM_EXIT_SYSTEM_EVENT] = "SYSTEM_EVENT",
		[KVM_EXIT_X86_RDMSR] = "X86_RDMSR", [KVM_EXIT_X86_WRMSR] = "X86_WRMSR",
	};

	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return "?";
}

static void dump_seg(FILE *out, const char *name, const struct kvm_segment *s)
{
	fprintf(out, "  %-3s sel=%04x base=%016llx limit=%08x type=%x dpl=%u p=%u s=%u l=%u db=%u g=%u%s\n",
		name, s->selector, (unsigned long long)s->base, s->limit, s->type, s->dpl,
		s->present, s->s, s->l, s->db, s->g, s->unusable ? " unusable" : "");
}

static void dump_exit(struct vcpu *v, FILE *out)
{
	const struct kvm_run *run = v->run;

	fprintf(out, "  exit reason %u (%s)\n", run->exit_reason, exit_name(run->exit_reason));
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		uint32_t nd = run->internal.ndata;

		fprintf(out, "  suberror %u%s, %u data:", run->internal.suberror,
			run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
			" (emulation failure)" : "", nd);
		for (uint32_t i = 0; i < nd && i < 16; i++)
			fprintf(out, " %llx", (unsigned long long)run->internal.data[i]);
		fputc('\n', out);
	} else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY) {
		fprintf(out, "  hardware entry failure reason 0x%llx on cpu %u\n",
			(unsigned long long)run->fail_entry.hardware_entry_failure_reason,
			run->fail_entry.cpu);
	} else if (run->exit_reason == KVM_EXIT_MMIO) {
		fprintf(out, "  mmio %s 0x%llx len %u\n", run->mmio.is_write ? "write" : "read",
			(unsigned long long)run->mmio.phys_addr, run->mmio.len);
	} else if (run->exit_reason == KVM_EXIT_IO) {
		fprintf(out, "  pio %s port 0x%x size %u count %u\n",
			run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
			run->io.port, run->io.size, run->io.count);
	}
}

bool vcpu_join_timeout(struct vcpu *v, int ms)
{
	while (v->has_thread) {
		struct timespec ts;

		if (ms >= 0 && ms-- == 0)
			return false;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (ms >= 0 ? 1 : 10) * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (pthread_timedjoin_np(v->thread, NULL, &ts) == 0)
			v->has_thread = false;
		else
			vcpu_kick(v);
	}
	return true;
}

void vcpu_join(struct vcpu *v)
{
	vcpu_join_timeout(v, -1);
}

int vcpu_get_tsc_khz(struct vcpu *v)
{
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);

	return khz < 0 ? -errno : khz;
}

void vcpu_dump_regs(struct vcpu *v, FILE *out)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	fprintf(out, "vCPU %d:\n", v->index);
	if (kvm_ioctl(v->fd, KVM_GET_REGS, &r) == 0) {
		fprintf(out, "  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
			"  rsi=%016llx rdi=%016llx rsp=%016llx rbp=%016llx\n"
			"  r8 =%016llx r9 =%016llx r10=%016llx r11=%016llx\n"
			"  r12=%016llx r13=%016llx r14=%016llx r15=%016llx\n"
			"  rip=%016llx rflags=%08llx\n",
			r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp,
			r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags);
	} else {
		fprintf(out, "  (KVM_GET_REGS failed)\n");
	}
	if (kvm_ioctl(v->fd, KVM_GET_SREGS, &s) == 0) {
		dump_seg(out, "cs", &s.cs);
		dump_seg(out, "ds", &s.ds);
		dump_seg(out, "es", &s.es);
		dump_seg(out, "ss", &s.ss);
		dump_seg(out, "fs", &s.fs);
		dump_seg(out, "gs", &s.gs);
		dump_seg(out, "tr", &s.tr);
		dump_seg(out, "ldt", &s.ldt);
		fprintf(out, "  gdt=%016llx/%04x idt=%016llx/%04x\n",
			(unsigned long long)s.gdt.base, s.gdt.limit,
			(unsigned long long)s.idt.base, s.idt.limit);
		fprintf(out, "  cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx\n"
			"  efer=%016llx apic_base=%016llx\n",
			s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.apic_base);
	} else {
		fprintf(out, "  (KVM_GET_SREGS failed)\n");
	}
	dump_exit(v, out);
}

/* The vectors set in one of the local APIC's 256-bit registers (ISR, IRR),
 * stored as eight 32-bit words 16 bytes apart from @off. */
static void dump_apic_vectors(FILE *out, const char *name, const struct kvm_lapic_state *l,
			      unsigned off)
{
	bool any = false;

	fprintf(out, " %s", name);
	for (unsigned word = 0; word < 8; word++) {
		uint32_t bits;

		memcpy(&bits, &l->regs[off + word * 16], sizeof(bits));
		for (unsigned b = 0; b < 32; b++) {
			if (bits & (1u << b)) {
				fprintf(out, " 0x%02x", word * 32 + b);
				any = true;
			}
		}
	}
	if (!any)
		fprintf(out, " -");
}

static uint32_t apic_reg(const struct kvm_lapic_state *l, unsigned off)
{
	uint32_t v;

	memcpy(&v, &l->regs[off], sizeof(v));
	return v;
}

void vcpu_dump_state(struct vcpu *v, FILE *out)
{
	static const char *const mp_names[] = {
		"runnable", "uninitialized", "init-received", "halted", "sipi-received",
		"stopped", "check-stop", "operating", "load", "ap-reset-hold", "suspended",
	};
	struct kvm_mp_state mp;
	struct kvm_lapic_state lapic;

	if (kvm_ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0)
		fprintf(out, "vCPU %d: mp_state %s\n", v->index,
			mp.mp_state < sizeof(mp_names) / sizeof(mp_names[0]) ?
			mp_names[mp.mp_state] : "?");
	if (kvm_ioctl(v->fd, KVM_GET_LAPIC, &lapic) == 0) {
		/* Register offsets of the xAPIC page (the SDM's table 11-1). */
		fprintf(out, "  lapic:");
		dump_apic_vectors(out, "irr", &lapic, 0x200);
		fprintf(out, ";");
		dump_apic_vectors(out, "isr", &lapic, 0x100);
		fprintf(out, "; tpr 0x%x svr 0x%x lvt-timer 0x%x initial-count %u current-count %u\n",
			apic_reg(&lapic, 0x80), apic_reg(&lapic, 0xf0), apic_reg(&lapic, 0x320),
			apic_reg(&lapic, 0x380), apic_reg(&lapic, 0x390));
	}
	{
		/* A timer in TSC-deadline mode keeps its deadline in an MSR.  The
		 * entries follow the header (a flexible array), so allocate both. */
		struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + 2 * sizeof(msrs->entries[0]));

		if (msrs) {
			msrs->nmsrs = 2;
			msrs->entries[0].index = 0x10;
			msrs->entries[1].index = 0x6e0;
			if (kvm_ioctl(v->fd, KVM_GET_MSRS, msrs) == 2)
				fprintf(out, "  tsc %llu, tsc-deadline %llu\n",
					(unsigned long long)msrs->entries[0].data,
					(unsigned long long)msrs->entries[1].data);
			free(msrs);
		}
	}
	vcpu_dump_regs(v, out);
}

void vcpu_dump_stack(struct vcpu *v, const struct guest_mem *mem, unsigned words, FILE *out)
{
	struct kvm_regs r;
	struct kvm_translation tr = { 0 };
	uint64_t room, w;

	if (kvm_ioctl(v->fd, KVM_GET_REGS, &r) < 0)
		return;
	tr.linear_address = r.rsp;
	if (kvm_ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid) {
		fprintf(out, "  stack: rsp %016llx not mapped\n", r.rsp);
		return;
	}
	room = (0x1000 - (r.rsp & 0xfff)) / 8;
	if (words > room)
		words = (unsigned)room;
	fprintf(out, "  stack at %016llx (guest-physical %016llx):", r.rsp,
		(unsigned long long)tr.physical_address);
	for (unsigned i = 0; i < words; i++) {
		if (guest_mem_read(mem, tr.physical_address + 8ull * i, &w, sizeof(w)) < 0)
			break;
		fprintf(out, "%s%016llx", i % 4 ? " " : "\n    ", (unsigned long long)w);
	}
	fputc('\n', out);
}
