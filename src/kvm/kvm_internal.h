/*
 * Private to src/kvm: the VM object that kvm.c owns and vcpu.c and
 * kvm_listener.c read.  Nothing outside this folder includes it.
 */
#ifndef KICKVM_KVM_INTERNAL_H
#define KICKVM_KVM_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include "kickvm/kvm.h"

/* Outside RAM (which stops at KICKVM_MMIO_HOLE) and above the kickvm devices
 * at 0xfe000000-0xfe002fff: the TSS takes three pages, the EPT identity map
 * page sits right below it. */
#define KVM_TSS_ADDR          0xfffbd000ull
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

/* IOAPIC pins 0-23 keep the GSIs KVM gives them; MSIs are numbered after. */
#define KVM_IOAPIC_PINS       24
#define KVM_PIC_PINS          16
#define KVM_MSI_GSI_BASE      KVM_IOAPIC_PINS

struct kvm_saved_state;

struct kvm_msi_route {
	bool used;
	uint64_t addr;
	uint32_t data;
};

struct kvm {
	int sys_fd, vm_fd;
	struct kvm_caps caps;
	int max_routes;                 /* KVM_CAP_IRQ_ROUTING: table size limit */
	size_t run_size;                /* KVM_GET_VCPU_MMAP_SIZE */
	struct kvm_cpuid2 *cpuid;       /* KVM_GET_SUPPORTED_CPUID, read once */
	bool irqchip_created;
	struct kvm_saved_state *saved;  /* kvm_save_state(), for a reset */

	pthread_mutex_t lock;           /* slot bitmap and the route table */
	uint64_t *slot_bitmap;          /* bit set: slot in use */
	struct kvm_msi_route *routes;   /* index gsi - KVM_MSI_GSI_BASE */
	int nr_routes;                  /* allocated entries in @routes */

	/* The coalesced ring is one page per VM, mapped into every vCPU's
	 * kvm_run: only one thread may consume it at a time. */
	pthread_mutex_t ring_lock;
};

/* ioctl() that answers like the rest of kickvm: result or -errno. */
static inline int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	int r = ioctl(fd, req, arg);

	return r < 0 ? -errno : r;
}

#endif
