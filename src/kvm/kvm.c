/*
 * The VM: /dev/kvm, capabilities, memory slots, ioeventfd and coalesced-MMIO
 * registration, GSI routing and irqfds.  Each call says what KVM answered
 * (0, a value >= 0, or -errno); what to do about a refusal is the caller's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kickvm/guest_abi.h"
#include "kickvm/log.h"
#include "kickvm/trace.h"
#include "kvm_internal.h"

_Static_assert(KVM_TSS_ADDR >= KICKVM_TESTDEV_COALESCED + 0x1000,
	       "the TSS pages must not overlap the kickvm devices");
_Static_assert(KVM_IDENTITY_MAP_ADDR + 0x1000 <= KVM_TSS_ADDR,
	       "identity map page and TSS must not overlap");
_Static_assert(KVM_IDENTITY_MAP_ADDR >= KICKVM_TESTDEV_COALESCED + 0x1000,
	       "the identity map page must not overlap the kickvm devices");

#define KVM_DEFAULT_MEMSLOTS 32    /* what KVM guaranteed before it said */
#define KVM_DEFAULT_ROUTES   1024

static int check_sys(int fd, long cap)
{
	return kvm_ioctl(fd, KVM_CHECK_EXTENSION, (void *)cap);
}

int kvm_check_extension(struct kvm *kvm, long cap)
{
	int r = -EBADF;

	/* Per-VM answers can be narrower than the system's (api.rst,
	 * KVM_CAP_CHECK_EXTENSION_VM); old kernels only answer on /dev/kvm. */
	if (kvm->vm_fd >= 0)
		r = kvm_ioctl(kvm->vm_fd, KVM_CHECK_EXTENSION, (void *)cap);
	if (r < 0)
		r = check_sys(kvm->sys_fd, cap);
	return r;
}

static void read_caps(int fd, struct kvm_caps *c, int *max_routes)
{
	int r;

#define HAS(cap) (check_sys(fd, KVM_CAP_##cap) > 0)
	c->user_memory = HAS(USER_MEMORY);
	c->set_tss_addr = HAS(SET_TSS_ADDR);
	c->ext_cpuid = HAS(EXT_CPUID);
	c->irqchip = HAS(IRQCHIP);
	c->irqfd = HAS(IRQFD);
	c->irqfd_resample = HAS(IRQFD_RESAMPLE);
	c->signal_msi = HAS(SIGNAL_MSI);
	c->ioeventfd = HAS(IOEVENTFD);
	c->ioeventfd_any_length = HAS(IOEVENTFD_ANY_LENGTH);
	c->ioeventfd_no_length = HAS(IOEVENTFD_NO_LENGTH);
	c->coalesced_pio = HAS(COALESCED_PIO);
	c->immediate_exit = HAS(IMMEDIATE_EXIT);
	c->x2apic_api = HAS(X2APIC_API);
	c->split_irqchip = HAS(SPLIT_IRQCHIP);
	c->pit2 = HAS(PIT2);
#undef HAS
	/* These answer with numbers rather than yes/no. */
	r = check_sys(fd, KVM_CAP_IRQ_ROUTING);
	c->irq_routing = r > 0;
	*max_routes = r > 0 ? r : KVM_DEFAULT_ROUTES;
	r = check_sys(fd, KVM_CAP_COALESCED_MMIO);
	c->coalesced_mmio = r > 0;
	c->coalesced_mmio_page = r > 0 ? r : 0;
	r = check_sys(fd, KVM_CAP_NR_MEMSLOTS);
	c->nr_memslots = r > 0 ? r : KVM_DEFAULT_MEMSLOTS;
	r = check_sys(fd, KVM_CAP_MAX_VCPUS);
	if (r <= 0)
		r = check_sys(fd, KVM_CAP_NR_VCPUS);
	c->max_vcpus = r > 0 ? r : 4;
}

/* The capabilities kickvm cannot run without, and the name to report. */
static const char *missing_cap(const struct kvm_caps *c)
{
	if (!c->user_memory)
		return "missing KVM capability KVM_CAP_USER_MEMORY";
	if (!c->set_tss_addr)
		return "missing KVM capability KVM_CAP_SET_TSS_ADDR";
	if (!c->ext_cpuid)
		return "missing KVM capability KVM_CAP_EXT_CPUID";
	if (!c->irqchip)
		return "missing KVM capability KVM_CAP_IRQCHIP";
	return NULL;
}

/* The CPUID KVM can give a vCPU; E2BIG means "more entries than that". */
static int read_supported_cpuid(struct kvm *kvm)
{
	for (int nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c;
		int r;

		c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = nent;
		r = kvm_ioctl(kvm->sys_fd, KVM_GET_SUPPORTED_CPUID, c);
		if (r == 0) {
			kvm->cpuid = c;
			return 0;
		}
		free(c);
		if (r != -E2BIG)
			return r;
	}
	return -E2BIG;
}

int kvm_open(const char *path, struct kvm **out, const char **why)
{
	const char *dummy;
	struct kvm *kvm;
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	int r;

	if (!why)
		why = &dummy;
	*why = NULL;
	*out = NULL;
	kvm = calloc(1, sizeof(*kvm));
	if (!kvm) {
		*why = "out of memory";
		return -ENOMEM;
	}
	kvm->sys_fd = kvm->vm_fd = -1;
	pthread_mutex_init(&kvm->lock, NULL);
	pthread_mutex_init(&kvm->ring_lock, NULL);

	kvm->sys_fd = open(path ? path : "/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm->sys_fd < 0) {
		r = -errno;
		*why = r == -ENOENT ? "no such device (is the kvm module loaded?)" :
		       r == -EACCES ? "permission denied (not in the kvm group?)" :
				      "cannot open the KVM device";
		goto fail;
	}
	r = kvm_ioctl(kvm->sys_fd, KVM_GET_API_VERSION, NULL);
	if (r != KVM_API_VERSION) {
		*why = "KVM API version is not 12";
		r = r < 0 ? r : -ENOTSUP;
		goto fail;
	}
	read_caps(kvm->sys_fd, &kvm->caps, &kvm->max_routes);
	*why = missing_cap(&kvm->caps);
	if (*why) {
		r = -ENOTSUP;
		goto fail;
	}

	/* KVM_CREATE_VM may be interrupted while it sets up the MMU. */
	do
		r = kvm_ioctl(kvm->sys_fd, KVM_CREATE_VM, (void *)0);
	while (r == -EINTR);
	if (r < 0) {
		*why = "KVM_CREATE_VM failed";
		goto fail;
	}
	kvm->vm_fd = r;

	/* Intel needs both pages for real mode / paging-off guests; both are
	 * harmless elsewhere.  They must be set before the first vCPU. */
	r = kvm_ioctl(kvm->vm_fd, KVM_SET_TSS_ADDR, (void *)(unsigned long)KVM_TSS_ADDR);
	if (r < 0) {
		*why = "KVM_SET_TSS_ADDR failed";
		goto fail;
	}
	if (kvm_check_extension(kvm, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
		r = kvm_ioctl(kvm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
		if (r < 0) {
			*why = "KVM_SET_IDENTITY_MAP_ADDR failed";
			goto fail;
		}
	}
	r = kvm_ioctl(kvm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, NULL);
	if (r <= 0) {
		*why = "KVM_GET_VCPU_MMAP_SIZE failed";
		r = r < 0 ? r : -EINVAL;
		goto fail;
	}
	kvm->run_size = (size_t)r;
	r = read_supported_cpuid(kvm);
	if (r < 0) {
		*why = "KVM_GET_SUPPORTED_CPUID failed";
		goto fail;
	}
	kvm->slot_bitmap = calloc((kvm->caps.nr_memslots + 63) / 64, sizeof(uint64_t));
	if (!kvm->slot_bitmap) {
		*why = "out of memory";
		r = -ENOMEM;
		goto fail;
	}
	*out = kvm;
	return 0;
fail:
	kvm_close(kvm);
	return r;
}

void kvm_close(struct kvm *kvm)
{
	if (!kvm)
		return;
	if (kvm->vm_fd >= 0)
		close(kvm->vm_fd);
	if (kvm->sys_fd >= 0)
		close(kvm->sys_fd);
	free(kvm->cpuid);
	free(kvm->saved);
	free(kvm->slot_bitmap);
	free(kvm->routes);
	pthread_mutex_destroy(&kvm->lock);
	pthread_mutex_destroy(&kvm->ring_lock);
	free(kvm);
}

const struct kvm_caps *kvm_get_caps(const struct kvm *kvm) { return &kvm->caps; }
int kvm_vm_fd(const struct kvm *kvm) { return kvm->vm_fd; }

/* ---- capability report ------------------------------------------------------ */

static const struct {
	const char *name;
	size_t off;              /* of the bool in struct kvm_caps */
	const char *yes, *no;
} cap_table[] = {
#define CAP(f, y, n) { #f, offsetof(struct kvm_caps, f), y, n }
	CAP(user_memory, "guest RAM mapped from kickvm's memory", "required: cannot run"),
	CAP(set_tss_addr, "TSS placed at 0xfffbd000", "required: cannot run"),
	CAP(ext_cpuid, "CPUID from KVM_GET_SUPPORTED_CPUID", "required: cannot run"),
	CAP(irqchip, "in-kernel LAPIC/IOAPIC/PIC", "required: cannot run"),
	CAP(irq_routing, "MSI routes in the GSI table", "no MSI through irqfd"),
	CAP(irqfd, "device interrupts injected by KVM from an eventfd", "interrupts by ioctl"),
	CAP(irqfd_resample, "level interrupts re-armed by KVM", "level interrupts by ioctl"),
	CAP(signal_msi, "MSIs injected directly", "MSIs only through routes"),
	CAP(ioeventfd, "doorbells handled in KVM", "userspace fallback"),
	CAP(ioeventfd_any_length, "len 0 (any size) doorbells in KVM", "len 0 doorbells: userspace fallback"),
	CAP(ioeventfd_no_length, "len 0 MMIO doorbells take KVM's fast exit", "len 0 doorbells take the normal exit"),
	CAP(coalesced_mmio, "batched MMIO writes", "every MMIO write exits"),
	CAP(coalesced_pio, "batched port writes", "every port write exits"),
	CAP(immediate_exit, "vCPU kicks without races", "kicks rely on the signal alone"),
	CAP(x2apic_api, "x2APIC ids above 255", "xAPIC ids only"),
	CAP(split_irqchip, "available (kickvm uses the full irqchip)", "full irqchip only"),
	CAP(pit2, "in-kernel PIT", "no PIT"),
#undef CAP
};

void kvm_print_caps(const struct kvm *kvm, FILE *out)
{
	const struct kvm_caps *c = &kvm->caps;

	fprintf(out, "KVM capabilities (API version %d):\n", KVM_API_VERSION);
	for (size_t i = 0; i < sizeof(cap_table) / sizeof(cap_table[0]); i++) {
		bool on = *(const bool *)((const char *)c + cap_table[i].off);

		fprintf(out, "  %-22s %-6s %s\n", cap_table[i].name, on ? "yes" : "no",
			on ? cap_table[i].yes : cap_table[i].no);
	}
	fprintf(out, "  %-22s %-6d %s\n", "coalesced_mmio_page", c->coalesced_mmio_page,
		c->coalesced_mmio_page ? "ring page offset in kvm_run" : "no ring");
	fprintf(out, "  %-22s %-6d memory slots per VM\n", "nr_memslots", c->nr_memslots);
	fprintf(out, "  %-22s %-6d vCPUs per VM\n", "max_vcpus", c->max_vcpus);
}

/* ---- irqchip, memory slots ----------------------------------------------------- */

int kvm_create_irqchip(struct kvm *kvm, bool pit)
{
	struct kvm_pit_config pitcfg = { .flags = 0 };
	int r;

	r = kvm_ioctl(kvm->vm_fd, KVM_CREATE_IRQCHIP, NULL);
	if (r < 0)
		return r;
	kvm->irqchip_created = true;
	if (pit) {
		r = kvm_ioctl(kvm->vm_fd, KVM_CREATE_PIT2, &pitcfg);
		if (r < 0)
			return r;
	}
	return 0;
}

int kvm_slot_alloc(struct kvm *kvm)
{
	int slot = -ENOSPC;

	pthread_mutex_lock(&kvm->lock);
	for (int i = 0; i < kvm->caps.nr_memslots; i++) {
		if (!(kvm->slot_bitmap[i / 64] & (1ull << (i % 64)))) {
			kvm->slot_bitmap[i / 64] |= 1ull << (i % 64);
			slot = i;
			break;
		}
	}
	pthread_mutex_unlock(&kvm->lock);
	return slot;
}

void kvm_slot_free(struct kvm *kvm, int slot)
{
	if (slot < 0 || slot >= kvm->caps.nr_memslots)
		return;
	pthread_mutex_lock(&kvm->lock);
	kvm->slot_bitmap[slot / 64] &= ~(1ull << (slot % 64));
	pthread_mutex_unlock(&kvm->lock);
}

int kvm_set_memslot(struct kvm *kvm, int slot, uint64_t gpa, uint64_t size,
		    void *hva, bool readonly)
{
	struct kvm_userspace_memory_region region = {
		.slot = (uint32_t)slot,
		.flags = readonly ? KVM_MEM_READONLY : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	if (slot < 0 || slot >= kvm->caps.nr_memslots)
		return -EINVAL;
	trace_memslot_set((unsigned)slot, gpa, size, (uint64_t)(uintptr_t)hva);
	return kvm_ioctl(kvm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
}

/* ---- ioeventfd, coalesced zones ------------------------------------------------- */

int kvm_ioeventfd(struct kvm *kvm, int fd, uint64_t addr, unsigned len,
		  bool pio, bool match_data, uint64_t data, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = match_data ? data : 0,
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (match_data ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	return kvm_ioctl(kvm->vm_fd, KVM_IOEVENTFD, &io);
}

int kvm_coalesced_zone(struct kvm *kvm, uint64_t addr, uint64_t size,
		       bool pio, bool assign)
{
	struct kvm_coalesced_mmio_zone zone = {
		.addr = addr,
		.size = (uint32_t)size,
		.pio = pio ? 1 : 0,
	};

	if (size == 0 || size > UINT32_MAX)
		return -EINVAL;
	return kvm_ioctl(kvm->vm_fd, assign ? KVM_REGISTER_COALESCED_MMIO :
			 KVM_UNREGISTER_COALESCED_MMIO, &zone);
}

/* ---- GSI routing and interrupts ---------------------------------------------- */

static struct kvm_msi_route *route_of(struct kvm *kvm, int gsi)
{
	int i = gsi - KVM_MSI_GSI_BASE;

	if (i < 0 || i >= kvm->nr_routes || !kvm->routes[i].used)
		return NULL;
	return &kvm->routes[i];
}

int kvm_msi_route_add(struct kvm *kvm, uint64_t addr, uint32_t data)
{
	int i, gsi;

	pthread_mutex_lock(&kvm->lock);
	for (i = 0; i < kvm->nr_routes && kvm->routes[i].used; i++)
		;
	gsi = KVM_MSI_GSI_BASE + i;
	/* The pushed table also carries the 40 PIC/IOAPIC routes. */
	if (gsi >= kvm->max_routes || i + KVM_IOAPIC_PINS + KVM_PIC_PINS >= kvm->max_routes) {
		pthread_mutex_unlock(&kvm->lock);
		return -ENOSPC;
	}
	if (i == kvm->nr_routes) {
		int n = kvm->nr_routes ? kvm->nr_routes * 2 : 16;
		struct kvm_msi_route *grown = realloc(kvm->routes, n * sizeof(*grown));

		if (!grown) {
			pthread_mutex_unlock(&kvm->lock);
			return -ENOMEM;
		}
		memset(grown + kvm->nr_routes, 0, (n - kvm->nr_routes) * sizeof(*grown));
		kvm->routes = grown;
		kvm->nr_routes = n;
	}
	kvm->routes[i] = (struct kvm_msi_route){ .used = true, .addr = addr, .data = data };
	pthread_mutex_unlock(&kvm->lock);
	return gsi;
}

int kvm_msi_route_update(struct kvm *kvm, int gsi, uint64_t addr, uint32_t data)
{
	struct kvm_msi_route *rt;

	pthread_mutex_lock(&kvm->lock);
	rt = route_of(kvm, gsi);
	if (rt) {
		rt->addr = addr;
		rt->data = data;
	}
	pthread_mutex_unlock(&kvm->lock);
	return rt ? 0 : -ENOENT;
}

void kvm_route_del(struct kvm *kvm, int gsi)
{
	struct kvm_msi_route *rt;

	pthread_mutex_lock(&kvm->lock);
	rt = route_of(kvm, gsi);
	if (rt)
		rt->used = false;
	pthread_mutex_unlock(&kvm->lock);
}

static void irqchip_route(struct kvm_irq_routing_entry *e, int gsi, int chip, int pin)
{
	*e = (struct kvm_irq_routing_entry){ .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP };
	e->u.irqchip.irqchip = chip;
	e->u.irqchip.pin = pin;
}

/*
 * KVM_SET_GSI_ROUTING replaces the whole table, including the routes KVM set
 * up for the PIC and IOAPIC pins when the irqchip was created: push those
 * again with the MSI routes, or legacy interrupts stop reaching the guest.
 */
int kvm_routes_commit(struct kvm *kvm)
{
	struct kvm_irq_routing *tbl;
	size_t n = 0, max;
	int r;

	pthread_mutex_lock(&kvm->lock);
	max = KVM_IOAPIC_PINS + KVM_PIC_PINS + kvm->nr_routes;
	tbl = calloc(1, sizeof(*tbl) + max * sizeof(tbl->entries[0]));
	if (!tbl) {
		pthread_mutex_unlock(&kvm->lock);
		return -ENOMEM;
	}
	if (kvm->irqchip_created) {
		for (int pin = 0; pin < KVM_IOAPIC_PINS; pin++) {
			if (pin < KVM_PIC_PINS)
				irqchip_route(&tbl->entries[n++], pin, pin < 8 ?
					      KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
					      pin % 8);
			irqchip_route(&tbl->entries[n++], pin, KVM_IRQCHIP_IOAPIC, pin);
		}
	}
	for (int i = 0; i < kvm->nr_routes; i++) {
		struct kvm_irq_routing_entry *e;

		if (!kvm->routes[i].used)
			continue;
		e = &tbl->entries[n++];
		e->gsi = KVM_MSI_GSI_BASE + i;
		e->type = KVM_IRQ_ROUTING_MSI;
		e->u.msi.address_lo = (uint32_t)kvm->routes[i].addr;
		e->u.msi.address_hi = (uint32_t)(kvm->routes[i].addr >> 32);
		e->u.msi.data = kvm->routes[i].data;
	}
	tbl->nr = n;
	r = kvm_ioctl(kvm->vm_fd, KVM_SET_GSI_ROUTING, tbl);
	pthread_mutex_unlock(&kvm->lock);
	free(tbl);
	return r;
}

int kvm_irqfd(struct kvm *kvm, int fd, int gsi, int resample_fd, bool assign)
{
	struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = (uint32_t)gsi };

	if (!assign)
		irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
	else if (resample_fd >= 0) {
		irqfd.flags = KVM_IRQFD_FLAG_RESAMPLE;
		irqfd.resamplefd = (uint32_t)resample_fd;
	}
	return kvm_ioctl(kvm->vm_fd, KVM_IRQFD, &irqfd);
}

/* >0: delivered, 0: blocked by the guest (masked), <0: -errno. */
int kvm_signal_msi(struct kvm *kvm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};

	return kvm_ioctl(kvm->vm_fd, KVM_SIGNAL_MSI, &msi);
}

int kvm_irq_line(struct kvm *kvm, int irq, int level)
{
	struct kvm_irq_level l = { .irq = (uint32_t)irq, .level = (uint32_t)level };
	int r = kvm_ioctl(kvm->vm_fd, KVM_IRQ_LINE, &l);

	return r < 0 ? r : 0;
}
