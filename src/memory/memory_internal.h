/*
 * What the files of the memory subsystem share and nobody else sees.
 *
 * Ownership and locking, in one place:
 *  - The region tree, every region's ioeventfd list, the registry of address
 *    spaces, each address space's listener and the path/kvm_err fields of the
 *    flat ioeventfds belong to the process-wide memory lock (recursive).
 *  - A flat view is immutable once published, except for path/kvm_err above;
 *    dispatch reads only the match keys (addr, len, match_data, data, e), so
 *    it needs no memory lock, only a reference on the view.
 *  - Regions are reference counted: the owner's reference (dropped by
 *    mr_free), one per parent placement, one per alias pointing at it, one per
 *    flat range of a view and one per address space rooted at it.  So a vCPU
 *    holding an old view can still call into a region its owner just freed.
 */
#ifndef KICKVM_MEMORY_INTERNAL_H
#define KICKVM_MEMORY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "kickvm/memory.h"

/* Addresses with room for 2^64 (the end of a full address space) and for
 * the negative base of an alias target that starts before its window. */
typedef __int128 wide_addr;
#define WIDE_ADDR_SPACE_END ((wide_addr)1 << 64)

struct region_ioeventfd {
	uint64_t offset;
	unsigned len;
	bool match_data;
	uint64_t data;               /* 0 when !match_data, so compares ignore it */
	struct event_notifier *e;
};

struct mem_region {
	char *name;
	enum mr_type type;
	uint64_t size;               /* UINT64_MAX stands for 2^64, as in QEMU */
	_Atomic unsigned refs;

	const struct mr_ops *ops;    /* MR_IO */
	void *opaque;
	void *ram_host;              /* MR_RAM */
	int ram_fd;
	uint64_t ram_fd_offset;
	bool ram_device;             /* device memory, not guest RAM */
	struct mem_region *alias_target; /* MR_ALIAS */
	uint64_t alias_offset;

	struct mem_region *parent;
	uint64_t offset;             /* in the parent */
	int priority;
	uint64_t placement_seq;      /* orders equal priorities: newer wins */
	bool enabled, coalesced, ioeventfd_userspace_only;

	/* MR_CONTAINER: highest priority first, equal priorities newest first,
	 * which is the order rendering claims addresses in. */
	struct mem_region **children;
	unsigned nr_children, children_cap;

	/* Sorted by (offset, len, match_data, data, e). */
	struct region_ioeventfd *ioeventfds;
	unsigned nr_ioeventfds, ioeventfds_cap;
};

/* A flat ioeventfd plus what the diff needs to know about it. */
struct flat_ioeventfd {
	struct ioeventfd ev;
	struct event_fd *file;       /* a reference on ev.e's eventfd, so a
				      * dispatch through this view never
				      * signals a closed or reused fd */
	bool userspace_only;         /* part of the diff key: toggling re-offers */
	bool needs_offer;            /* transient, during one commit */
};

struct flatview {
	_Atomic unsigned refs;
	struct flat_range *ranges;   /* sorted by addr, non-overlapping */
	unsigned nr_ranges;
	struct flat_ioeventfd *ioeventfds; /* sorted by the ioeventfd key */
	unsigned nr_ioeventfds;
};

struct as_counters {
	_Atomic uint64_t writes, reads, fallback_signals, unassigned, invalid;
	_Atomic uint64_t kvm_refusals, commits;
};

struct address_space {
	char *name;
	enum as_kind kind;
	struct mem_region *root;
	pthread_mutex_t view_lock;   /* only guards the @view pointer swap */
	struct flatview *view;
	const struct mem_listener *listener;
	void *listener_opaque;
	struct as_counters stats;
	struct address_space *next;  /* registry, under the memory lock */
};

/* region.c */
void memory_lock(void);
void memory_unlock(void);
void mr_ref(struct mem_region *mr);
void mr_unref(struct mem_region *mr);
wide_addr mr_span(const struct mem_region *mr);

/* dispatch.c: a write dispatched through @view (which the caller holds),
 * as address_space_write() does with the current one. */
int address_space_write_view(struct address_space *as, const struct flatview *view,
			     uint64_t addr, uint64_t data, unsigned len);

/* flatview.c */
struct flatview *flatview_render(struct mem_region *root, bool is_pio);
struct flatview *flatview_get(struct address_space *as);
void flatview_put(struct flatview *view);
/* Publish @view as the current one (the address space takes over the
 * caller's reference) and drop the previous one. */
void flatview_publish(struct address_space *as, struct flatview *view);
const struct flat_range *flatview_lookup(const struct flatview *view, uint64_t addr);

/* ioeventfd.c */
const char *ioeventfd_errno_name(int err); /* "EEXIST" for EEXIST or -EEXIST */
/* Orders ioeventfds by (addr, len, match_data, data, e), the match key and
 * nothing else: the flat sets and the regions' lists both sort by it. */
int ioeventfd_key_cmp(const struct ioeventfd *a, const struct ioeventfd *b);
int ioeventfd_set_build(struct flatview *view, bool is_pio);
/* First flat ioeventfd at @addr (all of them follow it), or NULL. */
const struct flat_ioeventfd *ioeventfd_set_find(const struct flatview *view,
						 uint64_t addr);
bool ioeventfd_sets_equal(const struct flatview *a, const struct flatview *b);
bool ioeventfd_matches(const struct ioeventfd *ev, uint64_t addr,
		       uint64_t data, unsigned len);
/* Commit, in two halves around the memslot changes: withdraw what left
 * @old (carrying the path of what stays into @new), then offer what came. */
void ioeventfd_update_withdraw(struct address_space *as, const struct flatview *old,
			       struct flatview *new_view);
void ioeventfd_update_offer(struct address_space *as, struct flatview *new_view);
/* Listener changes: withdraw or offer everything of @view. */
void ioeventfd_withdraw_all(struct address_space *as, struct flatview *view);
void ioeventfd_offer_all(struct address_space *as, struct flatview *view);

/* address_space.c */
/* Re-render every address space and send the differences (memory lock held). */
void address_spaces_update_all(void);

static inline uint64_t size_mask(unsigned size)
{
	return size >= 8 ? UINT64_MAX : (UINT64_C(1) << (8 * size)) - 1;
}

static inline bool is_access_size(unsigned len)
{
	return len == 1 || len == 2 || len == 4 || len == 8;
}

/* The access sizes of @ops with the header's defaults applied. */
struct access_limits {
	unsigned valid_min, valid_max, impl_min, impl_max;
};

static inline struct access_limits mr_ops_limits(const struct mr_ops *ops)
{
	struct access_limits l;

	l.valid_min = ops->valid_min ? ops->valid_min : 1;
	l.valid_max = ops->valid_max ? ops->valid_max : 8;
	l.impl_min = ops->impl_min ? ops->impl_min : l.valid_min;
	l.impl_max = ops->impl_max ? ops->impl_max : l.valid_max;
	return l;
}

#endif
