/*
 * The KVM machine: /dev/kvm, the VM, its memory slots, interrupt plumbing,
 * ioeventfd and coalesced-MMIO registration, and vCPUs.
 *
 * Thin, checked wrappers: every call returns 0 (or a value >= 0) or a negative
 * errno, and never exits the process.  Policy (what to register, fallbacks)
 * lives in the callers; this file only says what KVM answered.
 */
#ifndef KICKVM_KVM_H
#define KICKVM_KVM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>

struct kvm_run;
struct kvm_coalesced_mmio_ring;
struct vcpu_saved_state;
struct mem_listener;

/* What the host KVM offers (KVM_CHECK_EXTENSION), read once at open. */
struct kvm_caps {
	bool user_memory, set_tss_addr, ext_cpuid, irqchip, irq_routing;
	bool irqfd, irqfd_resample, signal_msi;
	bool ioeventfd, ioeventfd_any_length, ioeventfd_no_length;
	bool coalesced_mmio, coalesced_pio, immediate_exit, x2apic_api;
	bool split_irqchip, pit2;
	int coalesced_mmio_page;  /* page offset of the ring in kvm_run, 0 if none */
	int nr_memslots;
	int max_vcpus;
};

struct kvm;

/*
 * Open @path (NULL: /dev/kvm), check API version 12 and the capabilities
 * kickvm cannot run without (user memory, TSS address, CPUID, in-kernel
 * irqchip); create the VM.  On failure *@why names what is missing
 * (a static string).  -ENOENT/-EACCES when the device cannot be opened.
 */
int kvm_open(const char *path, struct kvm **out, const char **why);
void kvm_close(struct kvm *kvm);
const struct kvm_caps *kvm_get_caps(const struct kvm *kvm);
int kvm_vm_fd(const struct kvm *kvm);
/* KVM_CHECK_EXTENSION on the VM (falls back to the system fd). */
int kvm_check_extension(struct kvm *kvm, long cap);
/* Print every capability kickvm looks at and what it will do with it. */
void kvm_print_caps(const struct kvm *kvm, FILE *out);

/* In-kernel LAPIC + IOAPIC + PIC (+ PIT when @pit). */
int kvm_create_irqchip(struct kvm *kvm, bool pit);

/* Memory slots: kickvm allocates slot numbers itself. size 0 deletes. */
int kvm_slot_alloc(struct kvm *kvm);
void kvm_slot_free(struct kvm *kvm, int slot);
int kvm_set_memslot(struct kvm *kvm, int slot, uint64_t gpa, uint64_t size,
		    void *hva, bool readonly);

/* KVM_IOEVENTFD assign or deassign, exactly as given. */
int kvm_ioeventfd(struct kvm *kvm, int fd, uint64_t addr, unsigned len,
		  bool pio, bool match_data, uint64_t data, bool assign);
/* KVM_(UN)REGISTER_COALESCED_MMIO, for MMIO or PIO zones. */
int kvm_coalesced_zone(struct kvm *kvm, uint64_t addr, uint64_t size,
		       bool pio, bool assign);

/* GSI routing: MSI routes kept in a table, pushed by kvm_routes_commit(). */
int kvm_msi_route_add(struct kvm *kvm, uint64_t addr, uint32_t data); /* >= 0: gsi */
int kvm_msi_route_update(struct kvm *kvm, int gsi, uint64_t addr, uint32_t data);
void kvm_route_del(struct kvm *kvm, int gsi);
int kvm_routes_commit(struct kvm *kvm);
int kvm_irqfd(struct kvm *kvm, int fd, int gsi, int resample_fd, bool assign);
int kvm_signal_msi(struct kvm *kvm, uint64_t addr, uint32_t data);
int kvm_irq_line(struct kvm *kvm, int irq, int level);

/* ---- the listener that mirrors an address space into KVM ------------------ */

enum ioeventfd_mode {
	IOEVENTFD_AUTO,  /* use KVM where it has the capability, else fall back */
	IOEVENTFD_ON,    /* same as auto, but a missing capability is an error at start */
	IOEVENTFD_OFF,   /* never register: every doorbell takes the userspace path */
};

struct kvm_mem_listener {
	struct kvm *kvm;
	bool pio;                     /* this listens to the I/O port space */
	enum ioeventfd_mode mode;
	struct kvm_slot_map *slots;   /* flat RAM range -> slot (private) */
	_Atomic uint64_t kvm_assigned, kvm_refused, kvm_deassigned;
};
/* The callbacks; pass a struct kvm_mem_listener as opaque. */
extern const struct mem_listener kvm_mem_listener_ops;
void kvm_mem_listener_init(struct kvm_mem_listener *l, struct kvm *kvm,
			   bool pio, enum ioeventfd_mode mode);
/* Forget slot bookkeeping; call after address_space_free(). */
void kvm_mem_listener_destroy(struct kvm_mem_listener *l);

/* ---- vCPUs -------------------------------------------------------------------- */

struct vcpu_stats {
	_Atomic uint64_t runs;           /* KVM_RUN calls */
	_Atomic uint64_t exits_mmio, exits_pio, exits_hlt, exits_intr;
	_Atomic uint64_t exits_shutdown, exits_other;
	_Atomic uint64_t coalesced;      /* ring entries drained */
};

/* Initial register state, filled by the boot loader. */
struct vcpu_boot_state {
	uint64_t rip, rsp, rbx, rsi, rdi, rflags;
	uint64_t cr0, cr3, cr4, efer;
	uint64_t gdt_base;
	uint16_t gdt_limit;
	uint16_t cs, ds;                 /* selectors; descriptors read from GDT layout below */
	bool long_mode;                  /* false: 32-bit flat protected mode (PVH) */
};

struct vcpu {
	struct kvm *kvm;
	int index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	struct kvm_coalesced_mmio_ring *ring;  /* NULL without coalesced MMIO */
	pthread_t thread;
	bool has_thread;
	_Atomic bool stop;
	_Atomic bool in_kvm_run;         /* inside the KVM_RUN ioctl (diagnostics) */
	struct vcpu_stats stats;
	void *opaque;                    /* the owner's (the machine) */
	struct vcpu_saved_state *saved;  /* vcpu_save_state(), for a reset */
};

/* Create vCPU @index with the host-supported CPUID (APIC id = index, and the
 * hypervisor leaf 0x40000000 saying "KickVMKickVM"). */
int vcpu_create(struct kvm *kvm, int index, struct vcpu **out);
/* Close the fd and unmap kvm_run. The thread must have been joined. */
void vcpu_destroy(struct vcpu *v);
int vcpu_set_boot_state(struct vcpu *v, const struct vcpu_boot_state *bs);

/*
 * Reset support (src/kvm/vcpu_state.c).  vcpu_save_state() keeps the vCPU's
 * architectural state (registers, FPU, XCR0, LAPIC, run state, events,
 * debug registers, the MSRs an OS programs); vcpu_restore_state() writes it
 * back, on the vCPU's own thread or while it has none, first letting KVM
 * complete an exit already handled.  kvm_save_state()/kvm_restore_state() do
 * the same for the PICs, the IOAPIC and the PIT.  0 or a negative errno;
 * -ENOENT to restore what was never saved.
 */
int vcpu_save_state(struct vcpu *v);
int vcpu_restore_state(struct vcpu *v);
int kvm_save_state(struct kvm *kvm);
int kvm_restore_state(struct kvm *kvm);

/* One KVM_RUN. Returns run->exit_reason (>= 0), -EINTR when kicked, or a
 * negative errno.  Counts the exit in @stats. */
int vcpu_run_once(struct vcpu *v);
/* Make a KVM_RUN in progress (or the next one) return -EINTR soon: sets
 * immediate_exit and signals the vCPU's thread (SIGUSR1). Any thread. */
void vcpu_kick(struct vcpu *v);
/* Join the vCPU's thread (has_thread), kicking it again every 10 ms until it
 * has gone: a kick can land between the thread's check of its stop flag and
 * its next KVM_RUN, and a vCPU halted in the kernel would then sleep on. */
void vcpu_join(struct vcpu *v);
/* vcpu_join() for at most @ms milliseconds; true when the thread is gone. */
bool vcpu_join_timeout(struct vcpu *v, int ms);
/* Where a stopped vCPU is: its mp_state, its local APIC (pending and
 * in-service vectors, TPR, timer), registers and last exit.  Only for a vCPU
 * not in KVM_RUN (KVM would make the caller wait for the run to end). */
void vcpu_dump_state(struct vcpu *v, FILE *out);
/* The top of a stopped vCPU's stack: up to @words 8-byte words from RSP
 * (translated by KVM, read from @mem, never past RSP's page) -- with a
 * kernel's System.map, the return addresses among them are a backtrace. */
struct guest_mem;
void vcpu_dump_stack(struct vcpu *v, const struct guest_mem *mem, unsigned words, FILE *out);
/* Install the no-op SIGUSR1 handler vcpu_kick() relies on (once per process). */
void vcpu_signals_init(void);
/* The guest TSC frequency in kHz (KVM_GET_TSC_KHZ), or a negative errno.
 * Guests that time themselves with rdtsc are told it on their command line. */
int vcpu_get_tsc_khz(struct vcpu *v);
/* Registers, segments and control registers, for fatal exits. */
void vcpu_dump_regs(struct vcpu *v, FILE *out);
/* Drain the coalesced MMIO ring: @fn for each batched write, in order. */
unsigned vcpu_drain_coalesced(struct vcpu *v,
			      void (*fn)(void *opaque, uint64_t addr, const void *data,
					 unsigned len, bool pio),
			      void *opaque);

#endif
