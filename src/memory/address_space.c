/*
 * Address spaces: a root region, its current flat view, and the one
 * listener (KVM) that mirrors it.
 *
 * At every commit each registered address space is rendered again and,
 * when the result differs, the listener gets the difference, deletions
 * before additions: ioeventfds that left, coalesced zones and memslots
 * that left, then memslots, zones and ioeventfds that came.  Only then is
 * the new view published to dispatch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/trace.h"
#include "memory_internal.h"

/* Every live address space, oldest first; under the memory lock. */
static struct address_space *registry;

enum range_event { RAM_ADD, RAM_DEL, COALESCED_ADD, COALESCED_DEL };

static bool same_range(const struct flat_range *a, const struct flat_range *b)
{
	return a->addr == b->addr && a->size == b->size && a->mr == b->mr &&
	       a->offset == b->offset && a->priority == b->priority &&
	       a->coalesced == b->coalesced;
}

static bool view_has_range(const struct flatview *view, const struct flat_range *fr)
{
	const struct flat_range *found = view ? flatview_lookup(view, fr->addr) : NULL;

	return found && same_range(found, fr);
}

static bool event_applies(enum range_event what, const struct flat_range *fr)
{
	if (what == RAM_ADD || what == RAM_DEL)
		return fr->mr->type == MR_RAM;
	return fr->coalesced;
}

static void send_range(struct address_space *as, enum range_event what,
		       const struct flat_range *fr)
{
	const struct mem_listener *l = as->listener;
	void *opaque = as->listener_opaque;

	switch (what) {
	case RAM_ADD:
		if (l->ram_add)
			l->ram_add(opaque, fr);
		break;
	case RAM_DEL:
		if (l->ram_del)
			l->ram_del(opaque, fr);
		break;
	case COALESCED_ADD:
		if (l->coalesced_add)
			l->coalesced_add(opaque, fr->addr, fr->size);
		break;
	case COALESCED_DEL:
		if (l->coalesced_del)
			l->coalesced_del(opaque, fr->addr, fr->size);
		break;
	}
}

/* Send @what for every range of @from it applies to that @to (NULL: an
 * empty view) does not have. */
static void send_missing(struct address_space *as, enum range_event what,
			 const struct flatview *from, const struct flatview *to)
{
	for (unsigned i = 0; i < from->nr_ranges; i++) {
		const struct flat_range *fr = &from->ranges[i];

		if (event_applies(what, fr) && !view_has_range(to, fr))
			send_range(as, what, fr);
	}
}

static void listener_remove_view(struct address_space *as, struct flatview *view)
{
	ioeventfd_withdraw_all(as, view);
	send_missing(as, COALESCED_DEL, view, NULL);
	send_missing(as, RAM_DEL, view, NULL);
}

static void listener_replay_view(struct address_space *as, struct flatview *view)
{
	send_missing(as, RAM_ADD, view, NULL);
	send_missing(as, COALESCED_ADD, view, NULL);
	ioeventfd_offer_all(as, view);
}

static bool views_equal(const struct flatview *a, const struct flatview *b)
{
	if (a->nr_ranges != b->nr_ranges || !ioeventfd_sets_equal(a, b))
		return false;
	for (unsigned i = 0; i < a->nr_ranges; i++)
		if (!same_range(&a->ranges[i], &b->ranges[i]))
			return false;
	return true;
}

static void address_space_update(struct address_space *as)
{
	struct flatview *old = as->view;
	struct flatview *fresh = flatview_render(as->root, as->kind == AS_PIO);

	if (!fresh) {
		log_error(as->name, "cannot render the memory map: keeping the previous one");
		return;
	}
	if (views_equal(old, fresh)) {
		flatview_put(fresh);
		return;
	}
	ioeventfd_update_withdraw(as, old, fresh);
	if (as->listener) {
		send_missing(as, COALESCED_DEL, old, fresh);
		send_missing(as, RAM_DEL, old, fresh);
		send_missing(as, RAM_ADD, fresh, old);
		send_missing(as, COALESCED_ADD, fresh, old);
	}
	ioeventfd_update_offer(as, fresh);
	flatview_publish(as, fresh);
	atomic_fetch_add_explicit(&as->stats.commits, 1, memory_order_relaxed);
	trace_memory_commit(as->name, fresh->nr_ranges, fresh->nr_ioeventfds);
}

void address_spaces_update_all(void)
{
	for (struct address_space *as = registry; as; as = as->next)
		address_space_update(as);
}

struct address_space *address_space_new(const char *name, enum as_kind kind,
					 struct mem_region *root)
{
	struct address_space *as, **tail;

	if (!root)
		return NULL;
	as = calloc(1, sizeof(*as));
	if (!as)
		return NULL;
	as->name = strdup(name ? name : "anonymous");
	if (!as->name) {
		free(as);
		return NULL;
	}
	as->kind = kind;
	pthread_mutex_init(&as->view_lock, NULL);
	memory_lock();
	as->view = flatview_render(root, kind == AS_PIO);
	if (!as->view) {
		memory_unlock();
		pthread_mutex_destroy(&as->view_lock);
		free(as->name);
		free(as);
		return NULL;
	}
	mr_ref(root);
	as->root = root;
	for (tail = &registry; *tail; tail = &(*tail)->next)
		;
	*tail = as;
	memory_unlock();
	return as;
}

void address_space_free(struct address_space *as)
{
	struct address_space **link;

	if (!as)
		return;
	memory_lock();
	if (as->listener)
		listener_remove_view(as, as->view);
	for (link = &registry; *link != as; link = &(*link)->next)
		;
	*link = as->next;
	memory_unlock();
	flatview_put(as->view);
	mr_unref(as->root);
	pthread_mutex_destroy(&as->view_lock);
	free(as->name);
	free(as);
}

const char *address_space_name(const struct address_space *as)
{
	return as->name;
}

void address_space_set_listener(struct address_space *as,
				const struct mem_listener *l, void *opaque)
{
	memory_lock();
	if (as->listener)
		listener_remove_view(as, as->view);
	as->listener = l;
	as->listener_opaque = opaque;
	if (l)
		listener_replay_view(as, as->view);
	memory_unlock();
}

void address_space_get_stats(const struct address_space *as, struct as_stats *out)
{
	const struct as_counters *c = &as->stats;

	out->writes = atomic_load_explicit(&c->writes, memory_order_relaxed);
	out->reads = atomic_load_explicit(&c->reads, memory_order_relaxed);
	out->fallback_signals = atomic_load_explicit(&c->fallback_signals, memory_order_relaxed);
	out->unassigned = atomic_load_explicit(&c->unassigned, memory_order_relaxed);
	out->invalid = atomic_load_explicit(&c->invalid, memory_order_relaxed);
	out->kvm_refusals = atomic_load_explicit(&c->kvm_refusals, memory_order_relaxed);
	out->commits = atomic_load_explicit(&c->commits, memory_order_relaxed);
}

/* Under the memory lock, which owns the paths the callback may read; with a
 * reference, in case the callback commits a change itself. */
void address_space_for_each_ioeventfd(struct address_space *as,
				      void (*fn)(const struct ioeventfd *ev, void *opaque),
				      void *opaque)
{
	struct flatview *view;

	memory_lock();
	view = flatview_get(as);
	for (unsigned i = 0; i < view->nr_ioeventfds; i++)
		fn(&view->ioeventfds[i].ev, opaque);
	flatview_put(view);
	memory_unlock();
}

void address_space_for_each_range(struct address_space *as,
				  void (*fn)(const struct flat_range *fr, void *opaque),
				  void *opaque)
{
	struct flatview *view = flatview_get(as);

	for (unsigned i = 0; i < view->nr_ranges; i++)
		fn(&view->ranges[i], opaque);
	flatview_put(view);
}

int mr_eventfd_path(struct mem_region *mr, uint64_t offset, const struct event_notifier *e,
		    enum ioeventfd_path *path, int *kvm_err)
{
	int ret = -ENOENT;

	memory_lock();
	for (struct address_space *as = registry; as && ret; as = as->next) {
		struct flatview *view = flatview_get(as);

		for (unsigned i = 0; i < view->nr_ioeventfds; i++) {
			const struct ioeventfd *ev = &view->ioeventfds[i].ev;

			if (ev->mr == mr && ev->offset == offset && ev->e == e) {
				*path = ev->path;
				*kvm_err = ev->kvm_err;
				ret = 0;
				break;
			}
		}
		flatview_put(view);
	}
	memory_unlock();
	return ret;
}
