/*
 * The ioeventfds of an address space as the listener and the fallback see
 * them: absolute, flattened from the regions of a flat view, sorted.
 *
 * At commit the old and the new sets are walked in order, like two sorted
 * lists being merged: an entry only in the old set is withdrawn from the
 * listener, one only in the new set is offered, one in both keeps the path
 * it had.  KVM copies its whole io bus on each registration, so sending only
 * the difference matters.
 *
 * An offer the listener refuses is not an error: the entry stays in the set
 * on the userspace path, where dispatch matches trapped writes against it
 * and signals the same eventfd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/trace.h"
#include "memory_internal.h"

const char *ioeventfd_errno_name(int err)
{
	const char *name = strerrorname_np(err < 0 ? -err : err);

	return name ? name : "unknown error";
}

/* The order of the set: (addr, len, match_data, data, notifier).  Regions
 * keep their own lists in this order too (region.c), by offset for addr. */
int ioeventfd_key_cmp(const struct ioeventfd *a, const struct ioeventfd *b)
{
	if (a->addr != b->addr)
		return a->addr < b->addr ? -1 : 1;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	if (a->match_data != b->match_data)
		return a->match_data ? 1 : -1;
	if (a->data != b->data)
		return a->data < b->data ? -1 : 1;
	if (a->e != b->e)
		return (uintptr_t)a->e < (uintptr_t)b->e ? -1 : 1;
	return 0;
}

/* Two entries are the same registration only if they are offered the same
 * way: toggling userspace-only withdraws or offers them. */
static int diff_cmp(const struct flat_ioeventfd *a, const struct flat_ioeventfd *b)
{
	int c = ioeventfd_key_cmp(&a->ev, &b->ev);

	if (c)
		return c;
	return (int)a->userspace_only - (int)b->userspace_only;
}

static int diff_cmp_qsort(const void *a, const void *b)
{
	return diff_cmp(a, b);
}

int ioeventfd_set_build(struct flatview *view, bool is_pio)
{
	struct flat_ioeventfd *set;
	size_t total = 0;
	unsigned n = 0;

	for (unsigned i = 0; i < view->nr_ranges; i++)
		total += view->ranges[i].mr->nr_ioeventfds;
	if (!total)
		return 0;
	set = calloc(total, sizeof(*set));
	if (!set)
		return -ENOMEM;
	for (unsigned i = 0; i < view->nr_ranges; i++) {
		const struct flat_range *fr = &view->ranges[i];
		struct mem_region *mr = fr->mr;

		for (unsigned k = 0; k < mr->nr_ioeventfds; k++) {
			const struct region_ioeventfd *rev = &mr->ioeventfds[k];

			/* Visible when it starts inside the window: a wide
			 * one at the window's edge still traps there. */
			if (rev->offset < fr->offset || rev->offset - fr->offset >= fr->size)
				continue;
			set[n++] = (struct flat_ioeventfd){
				.ev = {
					.addr = fr->addr + (rev->offset - fr->offset),
					.len = rev->len,
					.match_data = rev->match_data,
					.data = rev->data,
					.is_pio = is_pio,
					.e = rev->e,
					.mr = mr,
					.offset = rev->offset,
					.path = IOEVENTFD_PATH_FALLBACK,
				},
				.userspace_only = mr->ioeventfd_userspace_only,
				.file = event_notifier_ref_fd(rev->e),
			};
		}
	}
	qsort(set, n, sizeof(*set), diff_cmp_qsort);
	view->ioeventfds = set;
	view->nr_ioeventfds = n;
	return 0;
}

const struct flat_ioeventfd *ioeventfd_set_find(const struct flatview *view, uint64_t addr)
{
	unsigned lo = 0, hi = view->nr_ioeventfds;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (view->ioeventfds[mid].ev.addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < view->nr_ioeventfds && view->ioeventfds[lo].ev.addr == addr)
		return &view->ioeventfds[lo];
	return NULL;
}

bool ioeventfd_sets_equal(const struct flatview *a, const struct flatview *b)
{
	if (a->nr_ioeventfds != b->nr_ioeventfds)
		return false;
	for (unsigned i = 0; i < a->nr_ioeventfds; i++) {
		const struct flat_ioeventfd *x = &a->ioeventfds[i], *y = &b->ioeventfds[i];

		if (diff_cmp(x, y) || x->ev.mr != y->ev.mr || x->ev.offset != y->ev.offset)
			return false;
	}
	return true;
}

/* KVM's rule: same address; len 0 takes any size; otherwise the same size
 * and, with datamatch, the value truncated to that size. */
bool ioeventfd_matches(const struct ioeventfd *ev, uint64_t addr, uint64_t data, unsigned len)
{
	if (ev->addr != addr)
		return false;
	if (ev->len == 0)
		return true;
	if (ev->len != len)
		return false;
	return !ev->match_data || (data & size_mask(len)) == ev->data;
}

static void offer(struct address_space *as, struct flat_ioeventfd *fe)
{
	struct ioeventfd *ev = &fe->ev;
	const struct mem_listener *l = as->listener;
	int err;

	ev->path = IOEVENTFD_PATH_FALLBACK;
	ev->kvm_err = 0;
	if (fe->userspace_only || !l || !l->eventfd_add)
		return;
	/* The listener traces what KVM answered (ioeventfd_kvm_assign). */
	err = l->eventfd_add(as->listener_opaque, ev);
	if (err == 0) {
		ev->path = IOEVENTFD_PATH_KVM;
		return;
	}
	if (err == -EOPNOTSUPP)
		return; /* switched off by configuration: not news */
	ev->kvm_err = -err; /* an errno, as the header's readers expect */
	atomic_fetch_add_explicit(&as->stats.kvm_refusals, 1, memory_order_relaxed);
	log_warn_rl("ioeventfd", "KVM refused %s 0x%" PRIx64 "[%u] (%s): falling back to userspace",
		 as->name, ev->addr, ev->len, ioeventfd_errno_name(err));
}

static void withdraw(struct address_space *as, const struct ioeventfd *ev)
{
	const struct mem_listener *l = as->listener;

	if (ev->path != IOEVENTFD_PATH_KVM)
		return;
	if (l && l->eventfd_del)
		l->eventfd_del(as->listener_opaque, ev);
}

void ioeventfd_update_withdraw(struct address_space *as, const struct flatview *old,
			       struct flatview *new_view)
{
	unsigned n_old = old ? old->nr_ioeventfds : 0, n_new = new_view->nr_ioeventfds;
	unsigned i = 0, j = 0;

	while (i < n_old || j < n_new) {
		struct flat_ioeventfd *fresh = j < n_new ? &new_view->ioeventfds[j] : NULL;
		const struct flat_ioeventfd *stale = i < n_old ? &old->ioeventfds[i] : NULL;
		int c = !stale ? 1 : !fresh ? -1 : diff_cmp(stale, fresh);

		if (c < 0) {
			withdraw(as, &stale->ev);
			i++;
		} else if (c > 0) {
			fresh->needs_offer = true;
			j++;
		} else {
			fresh->ev.path = stale->ev.path;
			fresh->ev.kvm_err = stale->ev.kvm_err;
			fresh->needs_offer = false;
			i++;
			j++;
		}
	}
}

void ioeventfd_update_offer(struct address_space *as, struct flatview *new_view)
{
	for (unsigned j = 0; j < new_view->nr_ioeventfds; j++) {
		struct flat_ioeventfd *fe = &new_view->ioeventfds[j];

		if (fe->needs_offer)
			offer(as, fe);
		fe->needs_offer = false;
	}
}

void ioeventfd_withdraw_all(struct address_space *as, struct flatview *view)
{
	for (unsigned i = 0; i < view->nr_ioeventfds; i++) {
		struct ioeventfd *ev = &view->ioeventfds[i].ev;

		withdraw(as, ev);
		ev->path = IOEVENTFD_PATH_FALLBACK;
		ev->kvm_err = 0;
	}
}

void ioeventfd_offer_all(struct address_space *as, struct flatview *view)
{
	for (unsigned i = 0; i < view->nr_ioeventfds; i++)
		offer(as, &view->ioeventfds[i]);
}
