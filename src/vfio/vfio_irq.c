/*
 * Interrupts of an assigned device: MSI-X and MSI, never INTx.
 *
 * The device signals one eventfd per vector (the backend's set_irqs).  While
 * a vector can deliver, that eventfd is the vector's KVM irqfd: the interrupt
 * goes from the device to the guest without kickvm.  While it is masked (or
 * there is no irqfd: no KVM, or KVM refused the route) it is the vector's
 * "held" eventfd, which kickvm watches in its event loop: a signal there is
 * kept pending (the PBA, the MSI pending bits) and delivered on unmask.
 * Switching the device to the irqfd comes first and draining the held fd
 * second, so a signal in between is delivered late, never lost.
 *
 * MSI-X: the table, PBA and mask logic are src/pci/msix.c's; this file is
 * its external source (msix_set_source).  MSI: the capability is emulated
 * here, each of its vectors handled like an MSI-X one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/kvm.h"
#include "kickvm/log.h"
#include "vfio/vfio_pci_internal.h"

#define MSI_CTRL_ENABLE 0x0001
#define MSI_CTRL_64     0x0080
#define MSI_CTRL_PVM    0x0100

static int set_irqs(struct vfio_pci *v, unsigned index, unsigned start, unsigned count,
		    const int *fds)
{
	int r = v->failed ? -EIO : v->b->ops->set_irqs(v->b, index, start, count, fds);

	if (r < 0)
		vfio_pci_error(v, index == VFIO_IRQ_MSIX ? "MSI-X set_irqs" : "MSI set_irqs", r);
	return r;
}

static int init_held(struct vfio_pci *v, struct vfio_msi_vec *vec, unsigned index,
		     notifier_fn *handler)
{
	int r;

	vec->owner = v;
	vec->index = index;
	vec->gsi = -1;
	vec->irqfd.fd = -1;
	r = event_notifier_init(&vec->held, false);
	if (r < 0)
		return r;
	vec->source_fd = vec->held.fd;
	return v->opts.loop ? event_loop_set_notifier(v->opts.loop, &vec->held, handler, vec) : 0;
}

static void cleanup_held(struct vfio_pci *v, struct vfio_msi_vec *vec)
{
	if (vec->held.fd < 0)
		return;
	if (v->opts.loop)
		event_loop_set_notifier(v->opts.loop, &vec->held, NULL, NULL);
	event_notifier_cleanup(&vec->held);
}

/* ---- MSI-X: the external source of msix.c ------------------------------------------- */

static void msix_held(struct event_notifier *e, void *opaque)
{
	struct vfio_msi_vec *vec = opaque;

	if (!event_notifier_test_and_clear(e))
		return;
	atomic_fetch_add(&vec->owner->irqs_through_kickvm, 1);
	msix_notify(&vec->owner->dev, vec->index);
}

static void msix_src_enable(void *opaque, bool on)
{
	struct vfio_pci *v = opaque;
	int *fds;

	if (!on) {
		if (v->msix_on)
			set_irqs(v, VFIO_IRQ_MSIX, 0, 0, NULL);
		v->msix_on = false;
		return;
	}
	fds = calloc(v->msix_nr, sizeof(*fds));
	if (!fds) {
		vfio_pci_error(v, "MSI-X enable", -ENOMEM);
		return;
	}
	/* All vectors at once: vfio-pci cannot grow an enabled MSI-X set on
	 * every kernel, and a vector must be there before its first unmask. */
	for (unsigned i = 0; i < v->msix_nr; i++)
		fds[i] = v->msix_vec[i].source_fd;
	v->msix_on = set_irqs(v, VFIO_IRQ_MSIX, 0, v->msix_nr, fds) == 0;
	free(fds);
}

static bool msix_src_route(void *opaque, unsigned i, int irqfd)
{
	struct vfio_pci *v = opaque;
	struct vfio_msi_vec *vec = &v->msix_vec[i];
	int fd = irqfd >= 0 ? irqfd : vec->held.fd;

	vec->source_fd = fd;
	if (v->msix_on)
		set_irqs(v, VFIO_IRQ_MSIX, i, 1, &fd);
	if (irqfd < 0 || !event_notifier_test_and_clear(&vec->held))
		return false;
	atomic_fetch_add(&v->irqs_through_kickvm, 1);
	return true;
}

static const struct msix_source_ops msix_source = {
	.enable = msix_src_enable,
	.route = msix_src_route,
};

static int msix_create(struct vfio_pci *v)
{
	const struct vfio_msix_place *p = &v->virt.msix;
	int r;

	v->msix_nr = v->virt.msix_vectors;
	v->msix_vec = calloc(v->msix_nr, sizeof(*v->msix_vec));
	if (!v->msix_vec)
		return -ENOMEM;
	for (unsigned i = 0; i < v->msix_nr; i++)
		v->msix_vec[i].held.fd = -1;
	for (unsigned i = 0; i < v->msix_nr; i++) {
		r = init_held(v, &v->msix_vec[i], i, msix_held);
		if (r < 0)
			return r;
	}
	/* The virtual place: where the guest finds the table (a relocation
	 * plan may have moved it away from the device's). */
	r = msix_init_at(&v->dev, v->msix_cap, v->msix_nr, p->table_bar,
			 (uint32_t)p->table_offset, p->pba_bar, (uint32_t)p->pba_offset);
	if (r < 0)
		return r;
	msix_set_source(&v->dev, &msix_source, v);
	return 0;
}

/* ---- MSI: the emulated capability -------------------------------------------------- */

static uint32_t msi_data_offset(const struct vfio_pci *v)
{
	return v->msi_cap + (v->msi_64 ? 12u : 8u);
}

static uint32_t msi_mask_offset(const struct vfio_pci *v)
{
	return v->msi_cap + (v->msi_64 ? 16u : 12u);
}

static unsigned msi_size(const struct vfio_pci *v)
{
	return (v->msi_64 ? 14u : 10u) + (v->msi_pvm ? 10u : 0u);
}

static bool msi_masked(const struct vfio_pci *v, unsigned j)
{
	return v->msi_mask & (1u << j);
}

static void msi_deliver(struct vfio_pci *v, struct vfio_msi_vec *vec)
{
	if (vec->source_fd == vec->irqfd.fd && vec->irqfd.fd >= 0)
		event_notifier_set(&vec->irqfd);
	else if (v->dev.bus)
		pci_bus_signal_msi(v->dev.bus, vec->addr, vec->data);
}

static void msi_held(struct event_notifier *e, void *opaque)
{
	struct vfio_msi_vec *vec = opaque;
	struct vfio_pci *v = vec->owner;

	if (!event_notifier_test_and_clear(e))
		return;
	atomic_fetch_add(&v->irqs_through_kickvm, 1);
	pthread_mutex_lock(&v->msi_lock);
	if (vec->index < v->msi_nr && !msi_masked(v, vec->index))
		msi_deliver(v, vec);
	else
		vec->pending = true;
	pthread_mutex_unlock(&v->msi_lock);
}

/* Give vector @j of an enabled MSI a KVM route carrying (addr, data), or
 * bring it up to date.  False: KVM is absent or refused, use the held fd. */
static bool msi_kvm_ready(struct vfio_pci *v, struct vfio_msi_vec *vec, bool changed)
{
	struct kvm *kvm = v->dev.bus ? pci_bus_kvm(v->dev.bus) : NULL;
	int r;

	if (!kvm || vec->kvm_failed)
		return false;
	if (vec->gsi < 0) {
		r = kvm_msi_route_add(kvm, vec->addr, vec->data);
		if (r >= 0) {
			vec->gsi = r;
			r = kvm_routes_commit(kvm);
		}
		if (r >= 0)
			r = event_notifier_init(&vec->irqfd, false);
		if (r >= 0) {
			r = kvm_irqfd(kvm, vec->irqfd.fd, vec->gsi, -1, true);
			if (r < 0)
				event_notifier_cleanup(&vec->irqfd);
		}
	} else {
		r = changed ? kvm_msi_route_update(kvm, vec->gsi, vec->addr, vec->data) : 0;
		if (r == 0 && changed)
			r = kvm_routes_commit(kvm);
	}
	if (r < 0) {
		log_warn(v->id, "MSI vector %u: KVM route/irqfd failed (%s): through kickvm",
			 vec->index, strerror(-r));
		vec->kvm_failed = true;
		return false;
	}
	return true;
}

/* Vector @j's message, mask or enable changed: point the device at the
 * right fd, and deliver what was held while it could not. */
static void msi_sync_vector(struct vfio_pci *v, unsigned j, uint64_t addr, uint32_t data)
{
	struct vfio_msi_vec *vec = &v->msi_vec[j];
	bool changed = vec->addr != addr || vec->data != data;
	int want = vec->held.fd;

	vec->addr = addr;
	vec->data = data;
	if (!msi_masked(v, j) && msi_kvm_ready(v, vec, changed))
		want = vec->irqfd.fd;
	if (want != vec->source_fd) {
		vec->source_fd = want;
		if (v->msi_nr)
			set_irqs(v, VFIO_IRQ_MSI, j, 1, &want);
	}
	if (want == vec->irqfd.fd && event_notifier_test_and_clear(&vec->held)) {
		atomic_fetch_add(&v->irqs_through_kickvm, 1);
		vec->pending = true;
	}
	if (vec->pending && !msi_masked(v, j)) {
		vec->pending = false;
		msi_deliver(v, vec);
	}
}

static void msi_disable_locked(struct vfio_pci *v)
{
	if (v->msi_nr)
		set_irqs(v, VFIO_IRQ_MSI, 0, 0, NULL);
	v->msi_nr = 0;
	for (unsigned j = 0; j < v->msi_max; j++)
		v->msi_vec[j].source_fd = v->msi_vec[j].held.fd;
}

void vfio_msi_config_written(struct vfio_pci *v, uint32_t offset, unsigned len)
{
	const uint8_t *c = v->dev.config;
	uint16_t ctrl = pci_get_word(&c[v->msi_cap + 2]);
	unsigned nr = 1u << ((ctrl >> 4) & 7);
	uint64_t addr = pci_get_long(&c[v->msi_cap + 4]);
	uint32_t data = pci_get_word(&c[msi_data_offset(v)]);
	int fds[VFIO_MAX_MSI];

	(void)offset; (void)len;
	if (nr > v->msi_max)
		nr = v->msi_max;  /* more than offered: as many as there are */
	if (v->msi_64)
		addr |= (uint64_t)pci_get_long(&c[v->msi_cap + 8]) << 32;
	pthread_mutex_lock(&v->msi_lock);
	v->msi_mask = v->msi_pvm ? pci_get_long(&c[msi_mask_offset(v)]) : 0;
	if (!(ctrl & MSI_CTRL_ENABLE) || (v->msi_nr && v->msi_nr != nr))
		msi_disable_locked(v);
	if (ctrl & MSI_CTRL_ENABLE) {
		bool first = !v->msi_nr;

		/* Multiple messages differ in the low bits of the data. */
		for (unsigned j = 0; j < nr; j++)
			msi_sync_vector(v, j, addr, (data & ~(nr - 1)) | j);
		if (first) {
			for (unsigned j = 0; j < nr; j++)
				fds[j] = v->msi_vec[j].source_fd;
			if (set_irqs(v, VFIO_IRQ_MSI, 0, nr, fds) == 0)
				v->msi_nr = nr;
		}
	}
	pthread_mutex_unlock(&v->msi_lock);
}

void vfio_msi_config_read(struct vfio_pci *v, uint32_t offset, unsigned len)
{
	uint32_t pending = 0;

	(void)offset; (void)len;
	if (!v->msi_pvm)
		return;
	pthread_mutex_lock(&v->msi_lock);
	for (unsigned j = 0; j < v->msi_max; j++)
		pending |= (uint32_t)v->msi_vec[j].pending << j;
	pthread_mutex_unlock(&v->msi_lock);
	pci_set_long(&v->dev.config[msi_mask_offset(v) + 4], pending);
}

static int msi_create(struct vfio_pci *v)
{
	uint8_t cap = pci_find_capability(&v->dev, 0x05);
	uint16_t ctrl;
	uint8_t *wm;
	int r;

	if (!cap)
		return 0;
	ctrl = pci_get_word(&v->dev.config[cap + 2]);
	v->msi_64 = ctrl & MSI_CTRL_64;
	v->msi_pvm = ctrl & MSI_CTRL_PVM;
	if (cap + msi_size(v) > 256u)
		return 0;  /* a broken list: no MSI rather than a wild write */
	v->msi_cap = cap;
	v->msi_max = 1u << ((ctrl >> 1) & 7);
	if (v->msi_max > VFIO_MAX_MSI)
		v->msi_max = VFIO_MAX_MSI;
	/* Emulated whole: enable, message and masks are kickvm's. */
	memset(&v->emu[cap + 2], 0xff, msi_size(v) - 2);
	memset(&v->fwd[cap + 2], 0, msi_size(v) - 2);
	memset(&v->dev.config[cap + 4], 0, msi_size(v) - 4);
	pci_set_word(&v->dev.config[cap + 2], ctrl & (MSI_CTRL_64 | MSI_CTRL_PVM | 0x000e));
	wm = v->dev.wmask;
	pci_set_word(&wm[cap + 2], 0x0071);  /* enable, multiple message enable */
	pci_set_long(&wm[cap + 4], 0xfffffffc);
	if (v->msi_64)
		pci_set_long(&wm[cap + 8], 0xffffffff);
	pci_set_word(&wm[msi_data_offset(v)], 0xffff);
	if (v->msi_pvm)
		pci_set_long(&wm[msi_mask_offset(v)],
			     v->msi_max >= 32 ? 0xffffffffu : (1u << v->msi_max) - 1);
	for (unsigned j = 0; j < VFIO_MAX_MSI; j++)
		v->msi_vec[j].held.fd = -1;
	for (unsigned j = 0; j < v->msi_max; j++) {
		r = init_held(v, &v->msi_vec[j], j, msi_held);
		if (r < 0)
			return r;
	}
	return 0;
}

static void msi_release(struct vfio_pci *v)
{
	struct kvm *kvm = v->dev.bus ? pci_bus_kvm(v->dev.bus) : NULL;
	bool routes = false;

	for (unsigned j = 0; j < VFIO_MAX_MSI; j++) {
		struct vfio_msi_vec *vec = &v->msi_vec[j];

		if (vec->irqfd.fd >= 0 && kvm)
			kvm_irqfd(kvm, vec->irqfd.fd, vec->gsi, -1, false);
		event_notifier_cleanup(&vec->irqfd);
		if (vec->gsi >= 0 && kvm) {
			kvm_route_del(kvm, vec->gsi);
			routes = true;
		}
		vec->gsi = -1;
		cleanup_held(v, vec);
	}
	if (routes)
		kvm_routes_commit(kvm);
}

/* ---- the rest -------------------------------------------------------------------- */

int vfio_irq_create(struct vfio_pci *v)
{
	int r = 0;

	for (unsigned j = 0; j < VFIO_MAX_MSI; j++)
		v->msi_vec[j].held.fd = v->msi_vec[j].irqfd.fd = -1;
	if (v->virt.has_msix)
		r = msix_create(v);
	if (!r)
		r = msi_create(v);
	if (r < 0)
		vfio_irq_destroy(v);
	return r;
}

void vfio_irq_reset(struct vfio_pci *v)
{
	if (v->msix_on)
		set_irqs(v, VFIO_IRQ_MSIX, 0, 0, NULL);
	v->msix_on = false;
	pthread_mutex_lock(&v->msi_lock);
	msi_disable_locked(v);
	v->msi_mask = 0;
	for (unsigned j = 0; j < VFIO_MAX_MSI; j++)
		v->msi_vec[j].pending = false;
	if (v->msi_cap) {
		uint16_t ctrl = pci_get_word(&v->dev.config[v->msi_cap + 2]);

		memset(&v->dev.config[v->msi_cap + 4], 0, msi_size(v) - 4);
		pci_set_word(&v->dev.config[v->msi_cap + 2], ctrl & (uint16_t)~0x0071);
	}
	pthread_mutex_unlock(&v->msi_lock);
}

void vfio_irq_destroy(struct vfio_pci *v)
{
	vfio_irq_reset(v);
	if (v->dev.msix) {
		msix_set_source(&v->dev, NULL, NULL);
		msix_uninit(&v->dev);
	}
	for (unsigned i = 0; v->msix_vec && i < v->msix_nr; i++)
		cleanup_held(v, &v->msix_vec[i]);
	free(v->msix_vec);
	v->msix_vec = NULL;
	v->msix_nr = 0;
	msi_release(v);
}

unsigned vfio_irq_on_irqfd(struct vfio_pci *v)
{
	unsigned n = msix_vectors_on_irqfd(&v->dev);

	pthread_mutex_lock(&v->msi_lock);
	for (unsigned j = 0; j < v->msi_nr; j++)
		n += v->msi_vec[j].irqfd.fd >= 0 && v->msi_vec[j].source_fd == v->msi_vec[j].irqfd.fd;
	pthread_mutex_unlock(&v->msi_lock);
	return n;
}
