/*
 * Saving and restoring the architectural state a machine reset puts back:
 * each vCPU's registers (general, segment/control, FPU/SSE, XCR0, debug),
 * its LAPIC, pending events, run state and the MSRs an OS programs; and the
 * VM's interrupt controllers (both PICs, the IOAPIC, the PIT when there is
 * one).  KVM has no "reset" ioctl, so kickvm saves this state once the
 * guest is loaded (entry registers included) and writes it back on reset.
 *
 * The TSC is left running, as a reset on real hardware leaves it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "kvm_internal.h"

/* MSRs an OS sets up that KVM keeps per vCPU and a reset must clear: the
 * fast system call entries, the kernel GS base, TSC_AUX, PAT, the TSC
 * deadline, MTRR default type and kvmclock/async-PF/steal-time/PV-EOI.
 * Each is read on its own at save time; one KVM does not know is left out. */
static const uint32_t reset_msrs[] = {
	0x174, 0x175, 0x176,                   /* SYSENTER_CS/ESP/EIP */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR LSTAR CSTAR FMASK */
	0xc0000102, 0xc0000103,                /* KERNEL_GS_BASE, TSC_AUX */
	0x277, 0x6e0, 0x2ff,                   /* PAT, TSC_DEADLINE, MTRRdefType */
	0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, /* kvmclock & co */
	0x11, 0x12,                            /* old kvmclock: wall clock, system time */
};
#define NR_RESET_MSRS (sizeof(reset_msrs) / sizeof(reset_msrs[0]))

struct vcpu_saved_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct kvm_xcrs xcrs;
	bool has_xcrs;
	unsigned nr_msrs;
	struct kvm_msr_entry msrs[NR_RESET_MSRS];
};

/* struct kvm_msrs with room for one entry (its array is flexible). */
union one_msr {
	struct kvm_msrs hdr;
	uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
};

static int get_msr(struct vcpu *v, uint32_t index, uint64_t *value)
{
	union one_msr m;
	int r;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = 1;
	m.hdr.entries[0].index = index;
	r = kvm_ioctl(v->fd, KVM_GET_MSRS, &m);
	if (r < 0)
		return r;
	if (r != 1)
		return -ENOENT;
	*value = m.hdr.entries[0].data;
	return 0;
}

static int set_msr(struct vcpu *v, const struct kvm_msr_entry *e)
{
	union one_msr m;
	int r;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = 1;
	m.hdr.entries[0] = *e;
	r = kvm_ioctl(v->fd, KVM_SET_MSRS, &m);
	return r < 0 ? r : r == 1 ? 0 : -EINVAL;
}

int vcpu_save_state(struct vcpu *v)
{
	struct vcpu_saved_state *s = v->saved;
	int r;

	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -ENOMEM;
		v->saved = s;
	}
	if ((r = kvm_ioctl(v->fd, KVM_GET_REGS, &s->regs)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_GET_SREGS, &s->sregs)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_GET_FPU, &s->fpu)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_GET_LAPIC, &s->lapic)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_GET_MP_STATE, &s->mp)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_GET_DEBUGREGS, &s->debugregs)) < 0)
		return r;
	/* KVM_GET_VCPU_EVENTS does not mark these valid, and KVM_SET_VCPU_EVENTS
	 * leaves them alone unless marked: an NMI pending at reset time would
	 * survive it. */
	s->events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	s->has_xcrs = kvm_ioctl(v->fd, KVM_GET_XCRS, &s->xcrs) == 0;
	s->nr_msrs = 0;
	for (unsigned i = 0; i < NR_RESET_MSRS; i++) {
		uint64_t value;

		if (get_msr(v, reset_msrs[i], &value) == 0)
			s->msrs[s->nr_msrs++] = (struct kvm_msr_entry){ .index = reset_msrs[i],
									.data = value };
	}
	return 0;
}

int vcpu_restore_state(struct vcpu *v)
{
	struct vcpu_saved_state *s = v->saved;
	int r;

	if (!s)
		return -ENOENT;
	/* An exit handled but not yet completed by KVM (the MMIO read value
	 * still to be put in its register, RIP still to advance) completes on
	 * the next KVM_RUN; with immediate_exit set that run does only that
	 * (KVM's API: re-enter with immediate_exit before saving or changing
	 * state), so the completion cannot land on the state written below. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	r = kvm_ioctl(v->fd, KVM_RUN, NULL);
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	if (r < 0 && r != -EINTR)
		return r;
	/* Writes KVM batched before the reset belong to the old life. */
	if (v->ring)
		__atomic_store_n(&v->ring->first, __atomic_load_n(&v->ring->last, __ATOMIC_ACQUIRE),
				 __ATOMIC_RELEASE);
	/* QEMU's order: sregs (with the APIC base) before the LAPIC, the MSRs
	 * before the run state, the LAPIC after it, then pending events. */
	if ((r = kvm_ioctl(v->fd, KVM_SET_REGS, &s->regs)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_SET_FPU, &s->fpu)) < 0 ||
	    (s->has_xcrs && (r = kvm_ioctl(v->fd, KVM_SET_XCRS, &s->xcrs)) < 0) ||
	    (r = kvm_ioctl(v->fd, KVM_SET_SREGS, &s->sregs)) < 0)
		return r;
	for (unsigned i = 0; i < s->nr_msrs; i++) {
		r = set_msr(v, &s->msrs[i]);
		if (r < 0)
			log_warn_rl("kvm", "cpu%d: reset: MSR 0x%x not written back (%s)", v->index,
				    s->msrs[i].index, strerror(-r));
	}
	if ((r = kvm_ioctl(v->fd, KVM_SET_MP_STATE, &s->mp)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_SET_LAPIC, &s->lapic)) < 0 ||
	    (r = kvm_ioctl(v->fd, KVM_SET_VCPU_EVENTS, &s->events)) < 0)
		return r;
	return kvm_ioctl(v->fd, KVM_SET_DEBUGREGS, &s->debugregs);
}

/* ---- the VM's interrupt controllers ------------------------------------------------ */

struct kvm_saved_state {
	struct kvm_irqchip chips[3];     /* PIC master, PIC slave, IOAPIC */
	struct kvm_pit_state2 pit;
	bool has_pit;
};

int kvm_save_state(struct kvm *kvm)
{
	struct kvm_saved_state *s = kvm->saved;
	int r;

	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -ENOMEM;
		kvm->saved = s;
	}
	for (unsigned i = 0; i < 3; i++) {
		s->chips[i].chip_id = i;
		r = kvm_ioctl(kvm->vm_fd, KVM_GET_IRQCHIP, &s->chips[i]);
		if (r < 0)
			return r;
	}
	/* ENXIO: no PIT (only Linux guests get one). */
	s->has_pit = kvm_ioctl(kvm->vm_fd, KVM_GET_PIT2, &s->pit) == 0;
	return 0;
}

int kvm_restore_state(struct kvm *kvm)
{
	struct kvm_saved_state *s = kvm->saved;
	int r;

	if (!s)
		return -ENOENT;
	for (unsigned i = 0; i < 3; i++) {
		r = kvm_ioctl(kvm->vm_fd, KVM_SET_IRQCHIP, &s->chips[i]);
		if (r < 0)
			return r;
	}
	return s->has_pit ? kvm_ioctl(kvm->vm_fd, KVM_SET_PIT2, &s->pit) : 0;
}
