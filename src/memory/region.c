/*
 * Memory regions: the objects, their placement in containers, their
 * ioeventfd lists, and the memory lock with its transactions.
 *
 * Every mutation runs inside a transaction (its own when the caller has
 * none open) and only marks the topology changed; the outermost commit
 * re-renders the address spaces and sends the listener the difference.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/trace.h"
#include "memory_internal.h"

/* Recursive: a region callback or a listener may open a nested transaction
 * while the lock is already held by its thread. */
static pthread_mutex_t memory_mutex = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
/* All below under memory_mutex. */
static unsigned transaction_depth;
static bool topology_changed;
static bool committing;
static uint64_t placement_counter;

void memory_lock(void)
{
	pthread_mutex_lock(&memory_mutex);
}

void memory_unlock(void)
{
	pthread_mutex_unlock(&memory_mutex);
}

/* The lock is held from begin to the matching commit, so a transaction
 * built by one thread is never interleaved with another thread's changes. */
void memory_transaction_begin(void)
{
	memory_lock();
	transaction_depth++;
}

void memory_transaction_commit(void)
{
	if (transaction_depth == 0) {
		log_error("memory", "transaction commit without a begin");
		return;
	}
	/* A listener that changes the topology from inside a commit only marks
	 * it changed; the loop below renders again once it returns. */
	if (--transaction_depth == 0 && !committing) {
		committing = true;
		while (topology_changed) {
			topology_changed = false;
			address_spaces_update_all();
		}
		committing = false;
	}
	memory_unlock();
}

static void end_mutation(bool changed)
{
	if (changed)
		topology_changed = true;
	memory_transaction_commit();
}

/* ---- lifetime ------------------------------------------------------------- */

wide_addr mr_span(const struct mem_region *mr)
{
	return mr->size == UINT64_MAX ? WIDE_ADDR_SPACE_END : (wide_addr)mr->size;
}

void mr_ref(struct mem_region *mr)
{
	atomic_fetch_add_explicit(&mr->refs, 1, memory_order_relaxed);
}

/* May run on a vCPU thread (the last reference of an old flat view): it
 * touches nothing but the region, which by then is in no tree. */
void mr_unref(struct mem_region *mr)
{
	struct mem_region *target;

	if (atomic_fetch_sub_explicit(&mr->refs, 1, memory_order_acq_rel) != 1)
		return;
	target = mr->alias_target;
	free(mr->children);
	free(mr->ioeventfds);
	free(mr->name);
	free(mr);
	if (target)
		mr_unref(target);
}

static struct mem_region *region_new(const char *name, enum mr_type type, uint64_t size)
{
	struct mem_region *mr = calloc(1, sizeof(*mr));

	if (!mr)
		return NULL;
	mr->name = strdup(name ? name : "anonymous");
	if (!mr->name) {
		free(mr);
		return NULL;
	}
	mr->type = type;
	mr->size = size;
	mr->enabled = true;
	mr->ram_fd = -1;
	atomic_init(&mr->refs, 1);
	return mr;
}

struct mem_region *mr_new_container(const char *name, uint64_t size)
{
	return region_new(name, MR_CONTAINER, size);
}

static bool ops_are_valid(const struct mr_ops *ops)
{
	struct access_limits l = mr_ops_limits(ops);

	return is_access_size(l.valid_min) && is_access_size(l.valid_max) &&
	       is_access_size(l.impl_min) && is_access_size(l.impl_max) &&
	       l.valid_min <= l.valid_max && l.impl_min <= l.impl_max;
}

struct mem_region *mr_new_io(const char *name, uint64_t size,
			     const struct mr_ops *ops, void *opaque)
{
	struct mem_region *mr;

	if (!ops || !ops_are_valid(ops)) {
		log_error("memory", "%s: access sizes must be 1, 2, 4 or 8 with min <= max",
			  name ? name : "anonymous");
		return NULL;
	}
	mr = region_new(name, MR_IO, size);
	if (mr) {
		mr->ops = ops;
		mr->opaque = opaque;
	}
	return mr;
}

struct mem_region *mr_new_ram(const char *name, uint64_t size, void *host,
			      int fd, uint64_t fd_offset)
{
	struct mem_region *mr;

	if (!host)
		return NULL;
	mr = region_new(name, MR_RAM, size);
	if (mr) {
		mr->ram_host = host;
		mr->ram_fd = fd;
		mr->ram_fd_offset = fd_offset;
	}
	return mr;
}

struct mem_region *mr_new_ram_device(const char *name, uint64_t size, void *host)
{
	struct mem_region *mr = mr_new_ram(name, size, host, -1, 0);

	if (mr)
		mr->ram_device = true;
	return mr;
}

bool mr_is_ram_device(const struct mem_region *mr)
{
	return mr->type == MR_RAM && mr->ram_device;
}

struct mem_region *mr_new_alias(const char *name, struct mem_region *target,
				uint64_t offset, uint64_t size)
{
	struct mem_region *mr;

	if (!target)
		return NULL;
	mr = region_new(name, MR_ALIAS, size);
	if (mr) {
		mr_ref(target);
		mr->alias_target = target;
		mr->alias_offset = offset;
	}
	return mr;
}

void mr_free(struct mem_region *mr)
{
	bool changed = false;

	if (!mr)
		return;
	memory_transaction_begin();
	if (mr->parent || mr->nr_children) {
		log_error("memory", "%s: not freed: %s", mr->name,
			  mr->parent ? "still placed in a container" : "still has subregions");
		memory_transaction_commit();
		return;
	}
	/* It may still be visible through an alias: its ioeventfds go now. */
	for (unsigned i = 0; i < mr->nr_ioeventfds; i++) {
		const struct region_ioeventfd *ev = &mr->ioeventfds[i];

		trace_ioeventfd_exit(mr->name, ev->offset, ev->len, ev->data);
		changed = true;
	}
	mr->nr_ioeventfds = 0;
	end_mutation(changed);
	mr_unref(mr);
}

/* ---- placement ---------------------------------------------------------------- */

static int reserve(void **array, unsigned *cap, unsigned need, size_t elem_size)
{
	unsigned new_cap;
	void *grown;

	if (need <= *cap)
		return 0;
	new_cap = *cap ? *cap * 2 : 4;
	while (new_cap < need)
		new_cap *= 2;
	grown = realloc(*array, (size_t)new_cap * elem_size);
	if (!grown)
		return -ENOMEM;
	*array = grown;
	*cap = new_cap;
	return 0;
}

static bool is_ancestor_or_self(const struct mem_region *mr, const struct mem_region *of)
{
	for (const struct mem_region *p = of; p; p = p->parent)
		if (p == mr)
			return true;
	return false;
}

int mr_add_subregion(struct mem_region *parent, uint64_t offset,
		     struct mem_region *child, int priority)
{
	unsigned pos;
	int ret;

	if (!parent || !child)
		return -EINVAL;
	memory_transaction_begin();
	if (child->parent)
		ret = -EBUSY;
	else if (parent->type != MR_CONTAINER || is_ancestor_or_self(child, parent))
		ret = -EINVAL;
	else
		ret = reserve((void **)&parent->children, &parent->children_cap,
			      parent->nr_children + 1, sizeof(*parent->children));
	if (ret < 0) {
		memory_transaction_commit();
		return ret;
	}
	/* Before every sibling of equal priority: the newest one wins. */
	for (pos = 0; pos < parent->nr_children; pos++)
		if (parent->children[pos]->priority <= priority)
			break;
	memmove(&parent->children[pos + 1], &parent->children[pos],
		(parent->nr_children - pos) * sizeof(*parent->children));
	parent->children[pos] = child;
	parent->nr_children++;
	mr_ref(child);
	child->parent = parent;
	child->offset = offset;
	child->priority = priority;
	child->placement_seq = ++placement_counter;
	end_mutation(true);
	return 0;
}

void mr_del_subregion(struct mem_region *parent, struct mem_region *child)
{
	unsigned pos;

	if (!parent || !child)
		return;
	memory_transaction_begin();
	if (child->parent != parent) {
		log_error("memory", "%s: not a subregion of %s", child->name, parent->name);
		memory_transaction_commit();
		return;
	}
	for (pos = 0; parent->children[pos] != child; pos++)
		;
	memmove(&parent->children[pos], &parent->children[pos + 1],
		(parent->nr_children - pos - 1) * sizeof(*parent->children));
	parent->nr_children--;
	child->parent = NULL;
	/* The owner's reference is still there: mr_free refuses placed regions. */
	mr_unref(child);
	end_mutation(true);
}

void mr_set_address(struct mem_region *mr, uint64_t offset)
{
	bool changed;

	if (!mr)
		return;
	memory_transaction_begin();
	changed = mr->offset != offset;
	mr->offset = offset;
	end_mutation(changed);
}

static void set_flag(bool *flag, bool on)
{
	bool changed;

	memory_transaction_begin();
	changed = *flag != on;
	*flag = on;
	end_mutation(changed);
}

void mr_set_enabled(struct mem_region *mr, bool enabled)
{
	if (mr)
		set_flag(&mr->enabled, enabled);
}

void mr_set_coalesced(struct mem_region *mr, bool coalesced)
{
	if (mr)
		set_flag(&mr->coalesced, coalesced);
}

void mr_set_ioeventfd_userspace_only(struct mem_region *mr, bool on)
{
	if (mr)
		set_flag(&mr->ioeventfd_userspace_only, on);
}

/* ---- accessors ---------------------------------------------------------------- */

const char *mr_name(const struct mem_region *mr)
{
	return mr->name;
}

uint64_t mr_size(const struct mem_region *mr)
{
	return mr->size;
}

uint64_t mr_offset(const struct mem_region *mr)
{
	return mr->offset;
}

enum mr_type mr_type(const struct mem_region *mr)
{
	return mr->type;
}

void *mr_ram_ptr(const struct mem_region *mr)
{
	return mr->type == MR_RAM ? mr->ram_host : NULL;
}

/* Returns the fd (>= 0); -EINVAL unless RAM, -ENOENT when not file-backed. */
int mr_ram_fd(const struct mem_region *mr, uint64_t *fd_offset)
{
	if (mr->type != MR_RAM)
		return -EINVAL;
	if (mr->ram_fd < 0)
		return -ENOENT;
	if (fd_offset)
		*fd_offset = mr->ram_fd_offset;
	return mr->ram_fd;
}

/* ---- ioeventfds on a region ------------------------------------------------------ */

/* @r as a flat view's ioeventfd key, its offset in the region for the address. */
static struct ioeventfd region_ioeventfd_key(const struct region_ioeventfd *r)
{
	return (struct ioeventfd){
		.addr = r->offset, .len = r->len, .match_data = r->match_data, .data = r->data,
		.e = r->e,
	};
}

/* A region's list is sorted the way flat views sort theirs: one order, one
 * comparator (ioeventfd.c). */
static int region_ioeventfd_cmp(const struct region_ioeventfd *a,
				const struct region_ioeventfd *b)
{
	struct ioeventfd ka = region_ioeventfd_key(a), kb = region_ioeventfd_key(b);

	return ioeventfd_key_cmp(&ka, &kb);
}

/* Index of the first entry not ordered before @key. */
static unsigned region_ioeventfd_lower_bound(const struct mem_region *mr,
					     const struct region_ioeventfd *key)
{
	unsigned lo = 0, hi = mr->nr_ioeventfds;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (region_ioeventfd_cmp(&mr->ioeventfds[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct region_ioeventfd make_key(uint64_t offset, unsigned len, bool match_data,
					uint64_t data, struct event_notifier *e)
{
	/* Without datamatch the value is a wildcard: store 0 so that an add
	 * and a delete that differ only in an unused @data still pair up. */
	return (struct region_ioeventfd){
		.offset = offset, .len = len, .match_data = match_data,
		.data = match_data ? data : 0, .e = e,
	};
}

int mr_add_eventfd(struct mem_region *mr, uint64_t offset, unsigned len,
		   bool match_data, uint64_t data, struct event_notifier *e)
{
	struct region_ioeventfd key = make_key(offset, len, match_data, data, e);
	unsigned pos;
	int ret;

	if (!mr || !e || (len != 0 && !is_access_size(len)) || (len == 0 && match_data))
		return -EINVAL;
	/* Only I/O regions trap writes; on anything else it could never fire. */
	if (mr->type != MR_IO || (wide_addr)offset + (len ? len : 1) > mr_span(mr))
		return -EINVAL;
	memory_transaction_begin();
	pos = region_ioeventfd_lower_bound(mr, &key);
	if (pos < mr->nr_ioeventfds && region_ioeventfd_cmp(&mr->ioeventfds[pos], &key) == 0)
		ret = -EEXIST;
	else
		ret = reserve((void **)&mr->ioeventfds, &mr->ioeventfds_cap,
			      mr->nr_ioeventfds + 1, sizeof(*mr->ioeventfds));
	if (ret == 0) {
		memmove(&mr->ioeventfds[pos + 1], &mr->ioeventfds[pos],
			(mr->nr_ioeventfds - pos) * sizeof(*mr->ioeventfds));
		mr->ioeventfds[pos] = key;
		mr->nr_ioeventfds++;
		trace_ioeventfd_init(mr->name, offset, len, key.data);
	}
	end_mutation(ret == 0);
	return ret;
}

int mr_del_eventfd(struct mem_region *mr, uint64_t offset, unsigned len,
		   bool match_data, uint64_t data, struct event_notifier *e)
{
	struct region_ioeventfd key = make_key(offset, len, match_data, data, e);
	unsigned pos;
	int ret = 0;

	if (!mr)
		return -EINVAL;
	memory_transaction_begin();
	pos = region_ioeventfd_lower_bound(mr, &key);
	if (pos >= mr->nr_ioeventfds || region_ioeventfd_cmp(&mr->ioeventfds[pos], &key) != 0) {
		ret = -ENOENT;
	} else {
		memmove(&mr->ioeventfds[pos], &mr->ioeventfds[pos + 1],
			(mr->nr_ioeventfds - pos - 1) * sizeof(*mr->ioeventfds));
		mr->nr_ioeventfds--;
		trace_ioeventfd_exit(mr->name, offset, len, key.data);
	}
	end_mutation(ret == 0);
	return ret;
}
