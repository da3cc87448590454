/*
 * The listener that mirrors one address space into KVM: RAM ranges become
 * memory slots, coalesced ranges become coalesced zones, and ioeventfds are
 * offered to KVM.  Runs inside memory_transaction_commit(), under the memory
 * lock, so the slot table needs no lock of its own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "kickvm/trace.h"
#include "kvm_internal.h"

/* Which slot holds which flat RAM range: deletions arrive as (gpa, size). */
struct kvm_slot_map {
	struct slot_entry {
		uint64_t gpa, size;
		int slot;
	} *e;
	size_t n, cap;
};

static const char *as_name(const struct kvm_mem_listener *l)
{
	return l->pio ? "pio" : "mmio";
}

static int map_add(struct kvm_mem_listener *l, uint64_t gpa, uint64_t size, int slot)
{
	struct kvm_slot_map *m = l->slots;

	if (!m) {
		m = calloc(1, sizeof(*m));
		if (!m)
			return -ENOMEM;
		l->slots = m;
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		struct slot_entry *grown = realloc(m->e, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		m->e = grown;
		m->cap = cap;
	}
	m->e[m->n++] = (struct slot_entry){ .gpa = gpa, .size = size, .slot = slot };
	return 0;
}

/* Remove the entry for (gpa, size); its slot number, or -ENOENT. */
static int map_take(struct kvm_mem_listener *l, uint64_t gpa, uint64_t size)
{
	struct kvm_slot_map *m = l->slots;

	for (size_t i = 0; m && i < m->n; i++) {
		if (m->e[i].gpa == gpa && m->e[i].size == size) {
			int slot = m->e[i].slot;

			m->e[i] = m->e[--m->n];
			return slot;
		}
	}
	return -ENOENT;
}

static void ram_add(void *opaque, const struct flat_range *fr)
{
	struct kvm_mem_listener *l = opaque;
	char *host;
	int slot, r;

	if (l->pio)
		return;  /* port space has no RAM */
	host = mr_ram_ptr(fr->mr);
	if (!host) {
		log_error("kvm", "RAM range 0x%llx+0x%llx has no host memory",
			  (unsigned long long)fr->addr, (unsigned long long)fr->size);
		return;
	}
	slot = kvm_slot_alloc(l->kvm);
	if (slot < 0) {
		log_error("kvm", "no free memory slot for 0x%llx+0x%llx",
			  (unsigned long long)fr->addr, (unsigned long long)fr->size);
		return;
	}
	r = kvm_set_memslot(l->kvm, slot, fr->addr, fr->size, host + fr->offset, false);
	if (r == 0) {
		r = map_add(l, fr->addr, fr->size, slot);
		if (r < 0)  /* a slot we could never delete: take it back now */
			kvm_set_memslot(l->kvm, slot, fr->addr, 0, NULL, false);
	}
	if (r < 0) {
		/* The guest would see holes in its RAM: loud, but not our call to exit. */
		log_error("kvm", "memory slot %d for 0x%llx+0x%llx: %s", slot,
			  (unsigned long long)fr->addr, (unsigned long long)fr->size,
			  strerror(-r));
		kvm_slot_free(l->kvm, slot);
	}
}

static void ram_del(void *opaque, const struct flat_range *fr)
{
	struct kvm_mem_listener *l = opaque;
	int slot, r;

	if (l->pio)
		return;
	slot = map_take(l, fr->addr, fr->size);
	if (slot < 0) {
		log_warn("kvm", "no memory slot for 0x%llx+0x%llx to delete",
			 (unsigned long long)fr->addr, (unsigned long long)fr->size);
		return;
	}
	r = kvm_set_memslot(l->kvm, slot, fr->addr, 0, NULL, false);
	if (r < 0)
		log_error("kvm", "deleting memory slot %d: %s", slot, strerror(-r));
	kvm_slot_free(l->kvm, slot);
}

/* Without the capability writes simply stay trapped: slower, still correct. */
static bool coalesced_supported(const struct kvm_mem_listener *l)
{
	const struct kvm_caps *c = kvm_get_caps(l->kvm);

	return l->pio ? c->coalesced_pio : c->coalesced_mmio;
}

static void coalesced_add(void *opaque, uint64_t addr, uint64_t size)
{
	struct kvm_mem_listener *l = opaque;
	int r;

	if (!coalesced_supported(l))
		return;
	r = kvm_coalesced_zone(l->kvm, addr, size, l->pio, true);
	if (r < 0)
		log_warn("kvm", "%s coalesced zone 0x%llx+0x%llx refused: %s", as_name(l),
			 (unsigned long long)addr, (unsigned long long)size, strerror(-r));
}

static void coalesced_del(void *opaque, uint64_t addr, uint64_t size)
{
	struct kvm_mem_listener *l = opaque;
	int r;

	if (!coalesced_supported(l))
		return;
	r = kvm_coalesced_zone(l->kvm, addr, size, l->pio, false);
	if (r < 0 && r != -ENOENT)
		log_warn("kvm", "%s coalesced zone 0x%llx+0x%llx removal: %s", as_name(l),
			 (unsigned long long)addr, (unsigned long long)size, strerror(-r));
}

static int eventfd_add(void *opaque, const struct ioeventfd *ev)
{
	struct kvm_mem_listener *l = opaque;
	const struct kvm_caps *c = kvm_get_caps(l->kvm);
	int r;

	/* Configuration and capability: quiet fallbacks, not refusals. */
	if (l->mode == IOEVENTFD_OFF || !c->ioeventfd)
		return -EOPNOTSUPP;
	if (ev->len == 0 && !c->ioeventfd_any_length)
		return -EOPNOTSUPP;
	if (ev->len == 0 && l->pio) {
		/* memory.h makes "any size" MMIO only.  (The KVM here would take
		 * it on a port; the userspace fallback keeps one behaviour.) */
		atomic_fetch_add(&l->kvm_refused, 1);
		return -EINVAL;
	}
	r = kvm_ioeventfd(l->kvm, ev->e->fd, ev->addr, ev->len, l->pio,
			  ev->match_data, ev->data, true);
	trace_ioeventfd_kvm_assign(as_name(l), ev->addr, ev->len, ev->data, r);
	if (r == 0)
		atomic_fetch_add(&l->kvm_assigned, 1);
	else
		atomic_fetch_add(&l->kvm_refused, 1);
	return r;
}

static void eventfd_del(void *opaque, const struct ioeventfd *ev)
{
	struct kvm_mem_listener *l = opaque;
	int r;

	/* Only what KVM accepted is KVM's to forget. */
	if (ev->path != IOEVENTFD_PATH_KVM || l->mode == IOEVENTFD_OFF)
		return;
	r = kvm_ioeventfd(l->kvm, ev->e->fd, ev->addr, ev->len, l->pio,
			  ev->match_data, ev->data, false);
	trace_ioeventfd_kvm_deassign(as_name(l), ev->addr, ev->len, ev->data, r);
	if (r == 0)
		atomic_fetch_add(&l->kvm_deassigned, 1);
	else
		log_warn("kvm", "%s ioeventfd 0x%llx[%u] deassign: %s", as_name(l),
			 (unsigned long long)ev->addr, ev->len, strerror(-r));
}

const struct mem_listener kvm_mem_listener_ops = {
	.ram_add = ram_add,
	.ram_del = ram_del,
	.coalesced_add = coalesced_add,
	.coalesced_del = coalesced_del,
	.eventfd_add = eventfd_add,
	.eventfd_del = eventfd_del,
};

void kvm_mem_listener_init(struct kvm_mem_listener *l, struct kvm *kvm,
			   bool pio, enum ioeventfd_mode mode)
{
	l->kvm = kvm;
	l->pio = pio;
	l->mode = mode;
	l->slots = NULL;
	atomic_store(&l->kvm_assigned, 0);
	atomic_store(&l->kvm_refused, 0);
	atomic_store(&l->kvm_deassigned, 0);
}

void kvm_mem_listener_destroy(struct kvm_mem_listener *l)
{
	if (l->slots) {
		free(l->slots->e);
		free(l->slots);
	}
	l->slots = NULL;
}
