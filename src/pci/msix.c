/*
 * MSI-X (PCI Local Bus 3.0 §6.8.2): the capability, the vector table and
 * the pending bit array, and delivery.
 *
 * Each vector that fires gets a KVM MSI route and an irqfd bound to it, so
 * msix_notify() is one eventfd write from whatever thread raises it.  The
 * route is (re)programmed on the vCPU thread that makes a vector
 * deliverable (unmask, enable) or changes an unmasked vector's
 * address/data; a masked vector's table writes only mark it stale, which
 * costs nothing until it is unmasked.  When KVM cannot give us a route or
 * an irqfd, the vector falls back to KVM_SIGNAL_MSI (one ioctl per
 * interrupt).  Without KVM (unit tests) the bus's msi_hook gets the message.
 *
 * The table is written by vCPU threads and notify runs on iothreads: all
 * vector state is under m->lock, a leaf lock (see pci_internal.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/kvm.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "pci_internal.h"

#define MSIX_ENTRY_SIZE      16
#define MSIX_MAX_VECTORS     2048
#define MSIX_CAP_SIZE        12
#define MSIX_CTRL_FMASK      0x4000
#define MSIX_CTRL_ENABLE     0x8000
#define MSIX_VECTOR_MASKED   0x1

struct msix_vector {
	struct event_notifier irqfd;    /* fd -1 until first needed */
	int gsi;                        /* -1 without a route */
	bool route_stale;               /* address/data changed since programmed */
	bool kvm_failed;                /* use KVM_SIGNAL_MSI instead */
	int source_fd;                  /* what the external source signals: the
					 * irqfd's fd, or -1 for the owner's own */
	uint64_t delivered;
};

struct msix {
	struct pci_device *d;
	pthread_mutex_t lock;
	unsigned nr;
	uint8_t cap;
	struct mem_region *table_bar, *pba_bar;   /* the BAR containers */
	struct mem_region *table_mr, *pba_mr;
	uint8_t *table;                 /* nr * 16 bytes, little-endian */
	uint64_t *pba;
	bool enabled, fmask;            /* mirror of the capability's control */
	struct kvm *kvm;                /* the one routes were made in */
	struct msix_vector *vec;
	const struct msix_source_ops *src;  /* NULL: kickvm raises the vectors */
	void *src_opaque;
	_Atomic uint64_t table_accesses;    /* guest reads and writes, table and PBA */
};

static uint64_t entry_addr(const struct msix *m, unsigned v)
{
	const uint8_t *e = m->table + v * MSIX_ENTRY_SIZE;

	return pci_get_long(e) | (uint64_t)pci_get_long(e + 4) << 32;
}

static uint32_t entry_data(const struct msix *m, unsigned v)
{
	return pci_get_long(m->table + v * MSIX_ENTRY_SIZE + 8);
}

static bool entry_masked(const struct msix *m, unsigned v)
{
	return pci_get_long(m->table + v * MSIX_ENTRY_SIZE + 12) & MSIX_VECTOR_MASKED;
}

static bool masked_locked(const struct msix *m, unsigned v)
{
	return !m->enabled || m->fmask || entry_masked(m, v);
}

/* Give @v a route and an irqfd, or bring its route up to date.  Returns
 * false when the vector has to go through KVM_SIGNAL_MSI instead. */
static bool kvm_vector_ready(struct msix *m, struct kvm *kvm, unsigned v)
{
	struct msix_vector *vec = &m->vec[v];
	const char *what;
	int r;

	if (vec->kvm_failed)
		return false;
	m->kvm = kvm;
	if (vec->gsi < 0) {
		what = "route";
		r = kvm_msi_route_add(kvm, entry_addr(m, v), entry_data(m, v));
		if (r < 0)
			goto fail;
		vec->gsi = r;
		r = kvm_routes_commit(kvm);
		if (r < 0)
			goto fail;
		what = "irqfd";
		r = event_notifier_init(&vec->irqfd, false);
		if (r < 0)
			goto fail;
		r = kvm_irqfd(kvm, vec->irqfd.fd, vec->gsi, -1, true);
		if (r < 0) {
			event_notifier_cleanup(&vec->irqfd);
			goto fail;
		}
	} else if (vec->route_stale) {
		what = "route update";
		r = kvm_msi_route_update(kvm, vec->gsi, entry_addr(m, v), entry_data(m, v));
		if (r == 0)
			r = kvm_routes_commit(kvm);
		if (r < 0)
			goto fail;
	}
	vec->route_stale = false;
	return true;
fail:
	log_warn_rl(m->d->name, "MSI-X vector %u: KVM %s failed (%s); interrupts by ioctl",
		 v, what, strerror(-r));
	vec->kvm_failed = true;
	return false;
}

static struct pci_bus *bus_of(const struct msix *m)
{
	return m->d->bus;
}

static void deliver_locked(struct msix *m, unsigned v)
{
	struct pci_bus *bus = bus_of(m);
	struct kvm *kvm = bus ? pci_bus_kvm(bus) : NULL;

	if (kvm) {
		if (kvm_vector_ready(m, kvm, v))
			event_notifier_set(&m->vec[v].irqfd);
		else
			kvm_signal_msi(kvm, entry_addr(m, v), entry_data(m, v));
	} else if (bus && bus->cfg.msi_hook) {
		bus->cfg.msi_hook(bus->cfg.msi_hook_opaque, entry_addr(m, v), entry_data(m, v));
	}
	m->vec[v].delivered++;
}

static bool pending_locked(const struct msix *m, unsigned v)
{
	return m->pba[v / 64] & (1ull << (v % 64));
}

static void set_pending_locked(struct msix *m, unsigned v, bool on)
{
	if (on)
		m->pba[v / 64] |= 1ull << (v % 64);
	else
		m->pba[v / 64] &= ~(1ull << (v % 64));
}

/* An external source (an assigned device) signals the vector's KVM irqfd
 * itself while the vector can deliver, so its interrupts never pass through
 * kickvm; while masked it signals the owner's fd instead, which comes back
 * here through msix_notify() and is held in the PBA. */
static void update_source_locked(struct msix *m, unsigned v)
{
	struct msix_vector *vec = &m->vec[v];
	int want = -1;

	if (!m->src)
		return;
	if (!masked_locked(m, v) && vec->gsi >= 0 && vec->irqfd.fd >= 0 && !vec->kvm_failed &&
	    !vec->route_stale)
		want = vec->irqfd.fd;
	if (want == vec->source_fd)
		return;
	vec->source_fd = want;
	/* Signalled on the owner's fd while we switched: not lost, pending. */
	if (m->src->route(m->src_opaque, v, want))
		set_pending_locked(m, v, true);
}

/* @v may have become deliverable, or its message changed: program KVM now
 * (on this vCPU thread, not in notify), and fire what was held pending. */
static void sync_vector_locked(struct msix *m, unsigned v)
{
	struct pci_bus *bus = bus_of(m);
	struct kvm *kvm = bus ? pci_bus_kvm(bus) : NULL;

	if (masked_locked(m, v)) {
		update_source_locked(m, v);
		return;
	}
	if (kvm && (m->vec[v].gsi < 0 || m->vec[v].route_stale))
		kvm_vector_ready(m, kvm, v);
	update_source_locked(m, v);
	if (pending_locked(m, v)) {
		set_pending_locked(m, v, false);
		deliver_locked(m, v);
	}
}

/* ---- the table and the PBA --------------------------------------------------------- */

static uint32_t table_read_dword(struct msix *m, uint64_t offset)
{
	return pci_get_long(m->table + offset);
}

static void table_write_dword(struct msix *m, uint64_t offset, uint32_t value)
{
	unsigned v = (unsigned)(offset / MSIX_ENTRY_SIZE);
	uint8_t *p = m->table + offset;
	uint32_t old = pci_get_long(p);

	switch (offset % MSIX_ENTRY_SIZE) {
	case 0:
		value &= ~0x3u;  /* the message address is dword aligned */
		break;
	case 12:
		value &= MSIX_VECTOR_MASKED;  /* the rest is reserved */
		break;
	}
	if (value == old)
		return;
	pci_set_long(p, value);
	/* A vector the guest just masked stops signalling KVM first. */
	if (offset % MSIX_ENTRY_SIZE != 12)
		m->vec[v].route_stale = true;
	sync_vector_locked(m, v);
}

static uint64_t table_read(void *opaque, uint64_t offset, unsigned size)
{
	struct msix *m = opaque;
	uint64_t value;

	atomic_fetch_add_explicit(&m->table_accesses, 1, memory_order_relaxed);
	if (offset & (size - 1))
		return UINT64_MAX;
	pthread_mutex_lock(&m->lock);
	value = table_read_dword(m, offset);
	if (size == 8)
		value |= (uint64_t)table_read_dword(m, offset + 4) << 32;
	pthread_mutex_unlock(&m->lock);
	return value;
}

static void table_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct msix *m = opaque;

	atomic_fetch_add_explicit(&m->table_accesses, 1, memory_order_relaxed);
	if (offset & (size - 1))
		return;
	pthread_mutex_lock(&m->lock);
	table_write_dword(m, offset, (uint32_t)data);
	if (size == 8)
		table_write_dword(m, offset + 4, (uint32_t)(data >> 32));
	pthread_mutex_unlock(&m->lock);
}

/* Software must use aligned dword or qword accesses (§6.8.2). */
static const struct mr_ops table_ops = {
	.read = table_read, .write = table_write,
	.valid_min = 4, .valid_max = 8, .impl_min = 4, .impl_max = 8,
};

static uint64_t pba_read(void *opaque, uint64_t offset, unsigned size)
{
	struct msix *m = opaque;
	uint64_t value;

	atomic_fetch_add_explicit(&m->table_accesses, 1, memory_order_relaxed);
	if (offset & (size - 1))
		return UINT64_MAX;
	pthread_mutex_lock(&m->lock);
	value = m->pba[offset / 8] >> (8 * (offset % 8));
	pthread_mutex_unlock(&m->lock);
	return size == 8 ? value : (uint32_t)value;
}

static void pba_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	/* Read-only: the device owns pending bits. */
	(void)opaque; (void)offset; (void)data; (void)size;
}

static const struct mr_ops pba_ops = {
	.read = pba_read, .write = pba_write,
	.valid_min = 4, .valid_max = 8, .impl_min = 4, .impl_max = 8,
};

/* ---- the capability ------------------------------------------------------------------ */

void msix_config_written(struct pci_device *d, uint32_t offset, unsigned len)
{
	struct msix *m = d->msix;
	uint16_t ctrl;
	bool was_masked, was_enabled;

	if (offset >= m->cap + 4u || offset + len <= m->cap + 2u)
		return;
	ctrl = pci_get_word(&d->config[m->cap + 2]);
	pthread_mutex_lock(&m->lock);
	was_masked = !m->enabled || m->fmask;
	was_enabled = m->enabled;
	m->enabled = ctrl & MSIX_CTRL_ENABLE;
	m->fmask = ctrl & MSIX_CTRL_FMASK;
	/* An external source learns of a disable first and of an enable last,
	 * once every vector knows where to signal. */
	if (m->src && was_enabled && !m->enabled)
		m->src->enable(m->src_opaque, false);
	if (was_masked != (!m->enabled || m->fmask))
		for (unsigned v = 0; v < m->nr; v++)
			sync_vector_locked(m, v);
	if (m->src && !was_enabled && m->enabled)
		m->src->enable(m->src_opaque, true);
	pthread_mutex_unlock(&m->lock);
}

static int check_place(const struct pci_device *d, int bar, uint32_t offset, uint64_t size)
{
	if (bar < 0 || bar >= PCI_NUM_BARS || !d->bars[bar].size ||
	    (d->bars[bar].type & PCI_BAR_IO))
		return -EINVAL;
	/* The table and the PBA go over the device's own container, so the
	 * rest of the BAR stays the device's. */
	if (mr_type(d->bars[bar].mr) != MR_CONTAINER)
		return -EINVAL;
	if (offset & 7 || offset + size > d->bars[bar].size)
		return -EINVAL;
	return 0;
}

int msix_init(struct pci_device *d, unsigned nr_vectors, int table_bar,
	      uint32_t table_offset, int pba_bar, uint32_t pba_offset)
{
	return msix_init_at(d, 0, nr_vectors, table_bar, table_offset, pba_bar, pba_offset);
}

int msix_init_at(struct pci_device *d, uint8_t cap_offset, unsigned nr_vectors, int table_bar,
		 uint32_t table_offset, int pba_bar, uint32_t pba_offset)
{
	uint64_t table_size = (uint64_t)nr_vectors * MSIX_ENTRY_SIZE;
	uint64_t pba_size = (nr_vectors + 63) / 64 * 8;
	struct msix *m;
	int cap, r;

	if (d->msix || nr_vectors == 0 || nr_vectors > MSIX_MAX_VECTORS)
		return -EINVAL;
	r = check_place(d, table_bar, table_offset, table_size);
	if (!r)
		r = check_place(d, pba_bar, pba_offset, pba_size);
	if (r)
		return r;
	if (table_bar == pba_bar && table_offset < pba_offset + pba_size &&
	    pba_offset < table_offset + table_size)
		return -EINVAL;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->d = d;
	m->nr = nr_vectors;
	m->table = calloc(nr_vectors, MSIX_ENTRY_SIZE);
	m->pba = calloc(pba_size / 8, sizeof(*m->pba));
	m->vec = calloc(nr_vectors, sizeof(*m->vec));
	m->table_mr = mr_new_io("msix-table", table_size, &table_ops, m);
	m->pba_mr = mr_new_io("msix-pba", pba_size, &pba_ops, m);
	if (!m->table || !m->pba || !m->vec || !m->table_mr || !m->pba_mr) {
		r = -ENOMEM;
		goto fail;
	}
	/* A capability the device already has keeps its place in the list. */
	cap = cap_offset ? cap_offset : pci_add_capability(d, PCI_CAP_ID_MSIX, MSIX_CAP_SIZE);
	if (cap_offset && (cap_offset < PCI_STD_HEADER_SIZE ||
			   cap_offset + MSIX_CAP_SIZE > PCI_LEGACY_CONFIG_SIZE))
		cap = -EINVAL;
	if (cap < 0) {
		r = cap;
		goto fail;
	}
	pthread_mutex_init(&m->lock, NULL);
	for (unsigned v = 0; v < nr_vectors; v++) {
		m->vec[v].irqfd.fd = -1;
		m->vec[v].gsi = -1;
		m->vec[v].source_fd = -1;
		pci_set_long(m->table + v * MSIX_ENTRY_SIZE + 12, MSIX_VECTOR_MASKED);
	}
	m->cap = (uint8_t)cap;
	pci_set_word(&d->config[cap + 2], (uint16_t)(nr_vectors - 1));
	pci_set_long(&d->config[cap + 4], table_offset | (uint32_t)table_bar);
	pci_set_long(&d->config[cap + 8], pba_offset | (uint32_t)pba_bar);
	d->wmask[cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK) >> 8;

	m->table_bar = d->bars[table_bar].mr;
	m->pba_bar = d->bars[pba_bar].mr;
	memory_transaction_begin();
	mr_add_subregion(m->table_bar, table_offset, m->table_mr, 1);
	mr_add_subregion(m->pba_bar, pba_offset, m->pba_mr, 1);
	memory_transaction_commit();
	d->msix = m;
	return 0;
fail:
	mr_free(m->table_mr);
	mr_free(m->pba_mr);
	free(m->table);
	free(m->pba);
	free(m->vec);
	free(m);
	return r;
}

void msix_uninit(struct pci_device *d)
{
	struct msix *m = d->msix;
	bool routes_changed = false;

	if (!m)
		return;
	if (m->src && m->enabled)
		m->src->enable(m->src_opaque, false);
	memory_transaction_begin();
	mr_del_subregion(m->table_bar, m->table_mr);
	mr_del_subregion(m->pba_bar, m->pba_mr);
	memory_transaction_commit();
	mr_free(m->table_mr);
	mr_free(m->pba_mr);
	for (unsigned v = 0; v < m->nr; v++) {
		struct msix_vector *vec = &m->vec[v];

		if (vec->irqfd.fd >= 0)
			kvm_irqfd(m->kvm, vec->irqfd.fd, vec->gsi, -1, false);
		event_notifier_cleanup(&vec->irqfd);
		if (vec->gsi >= 0) {
			kvm_route_del(m->kvm, vec->gsi);
			routes_changed = true;
		}
	}
	if (routes_changed)
		kvm_routes_commit(m->kvm);
	/* The capability stays in config space: the function is going away. */
	pci_set_word(&d->config[m->cap + 2],
		     pci_get_word(&d->config[m->cap + 2]) & ~(MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK));
	d->wmask[m->cap + 3] = 0;
	d->msix = NULL;
	pthread_mutex_destroy(&m->lock);
	free(m->table);
	free(m->pba);
	free(m->vec);
	free(m);
}

/* ---- raising and inspecting vectors ---------------------------------------------------- */

void msix_notify(struct pci_device *d, unsigned vector)
{
	struct msix *m = d->msix;

	if (!m || vector >= m->nr)
		return;
	pthread_mutex_lock(&m->lock);
	if (masked_locked(m, vector))
		set_pending_locked(m, vector, true);
	else
		deliver_locked(m, vector);
	pthread_mutex_unlock(&m->lock);
}

bool msix_enabled(const struct pci_device *d)
{
	struct msix *m = d->msix;
	bool on;

	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	on = m->enabled;
	pthread_mutex_unlock(&m->lock);
	return on;
}

bool msix_masked(const struct pci_device *d, unsigned vector)
{
	struct msix *m = d->msix;
	bool masked;

	if (!m || vector >= m->nr)
		return true;
	pthread_mutex_lock(&m->lock);
	masked = masked_locked(m, vector);
	pthread_mutex_unlock(&m->lock);
	return masked;
}

bool msix_pending(const struct pci_device *d, unsigned vector)
{
	struct msix *m = d->msix;
	bool pending;

	if (!m || vector >= m->nr)
		return false;
	pthread_mutex_lock(&m->lock);
	pending = pending_locked(m, vector);
	pthread_mutex_unlock(&m->lock);
	return pending;
}

uint64_t msix_delivered(const struct pci_device *d, unsigned vector)
{
	struct msix *m = d->msix;
	uint64_t n;

	if (!m || vector >= m->nr)
		return 0;
	pthread_mutex_lock(&m->lock);
	n = m->vec[vector].delivered;
	pthread_mutex_unlock(&m->lock);
	return n;
}

void msix_reset(struct pci_device *d)
{
	struct msix *m = d->msix;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	if (m->src && m->enabled)
		m->src->enable(m->src_opaque, false);
	memset(m->table, 0, (size_t)m->nr * MSIX_ENTRY_SIZE);
	for (unsigned v = 0; v < m->nr; v++) {
		pci_set_long(m->table + v * MSIX_ENTRY_SIZE + 12, MSIX_VECTOR_MASKED);
		/* Routes and irqfds stay: reprogrammed when next unmasked. */
		m->vec[v].route_stale = true;
		if (m->src && m->vec[v].source_fd >= 0) {
			m->vec[v].source_fd = -1;
			m->src->route(m->src_opaque, v, -1);
		}
	}
	memset(m->pba, 0, (m->nr + 63) / 64 * 8);
	m->enabled = m->fmask = false;
	pci_set_word(&d->config[m->cap + 2],
		     pci_get_word(&d->config[m->cap + 2]) & ~(MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK));
	pthread_mutex_unlock(&m->lock);
}

void msix_set_source(struct pci_device *d, const struct msix_source_ops *ops, void *opaque)
{
	struct msix *m = d->msix;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->src = ops;
	m->src_opaque = opaque;
	pthread_mutex_unlock(&m->lock);
}

uint64_t msix_table_accesses(const struct pci_device *d)
{
	return d->msix ? atomic_load_explicit(&d->msix->table_accesses, memory_order_relaxed) : 0;
}

unsigned msix_vectors_on_irqfd(const struct pci_device *d)
{
	struct msix *m = d->msix;
	unsigned n = 0;

	if (!m)
		return 0;
	pthread_mutex_lock(&m->lock);
	for (unsigned v = 0; v < m->nr; v++)
		n += m->vec[v].source_fd >= 0;
	pthread_mutex_unlock(&m->lock);
	return n;
}
