/*
 * Address spaces: a tree of memory regions flattened into a flat view that
 * vCPU exits are dispatched through, with the ioeventfds the regions carry.
 *
 * Regions (RAM, I/O with callbacks, containers, aliases) are placed in a
 * parent at an offset with a priority; higher priority wins where siblings
 * overlap, and among equal priorities the one added last wins (as in QEMU).  Changes are
 * grouped in transactions: nothing is re-flattened and nothing reaches the
 * listener (KVM) until the outermost memory_transaction_commit(), which sends
 * only the difference between the old and the new flat view: memslots that
 * came and went, coalesced zones, and ioeventfds.
 *
 * ioeventfds have two paths.  KVM's (the listener accepted the registration)
 * and the userspace fallback: a trapped write that matches an ioeventfd of the
 * flat view (len 0 matches any size; datamatch compares the value) signals the
 * same eventfd and does not reach the region's write callback, so a handler
 * cannot tell which path a signal took.  The fallback is used when the
 * listener refuses (KVM lacks the capability, EEXIST, ENOSPC, ...), when it is
 * configured off, and for regions marked userspace-only.  A refusal is logged
 * once per registration, counted, and never fatal.
 *
 * Topology changes take a process-wide lock (recursive: a region callback may
 * start a nested transaction).  Dispatch does not: it holds a reference on the
 * flat view it looked up, so vCPUs keep running while the map changes.
 *
 * All int-returning calls return 0 or a negative errno.
 */
#ifndef KICKVM_MEMORY_H
#define KICKVM_MEMORY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct event_notifier;
struct mem_region;
struct address_space;

/* ---- regions ---------------------------------------------------------------- */

struct mr_ops {
	/* @size is 1, 2, 4 or 8 and within [impl_min, impl_max]. */
	uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
	void (*write)(void *opaque, uint64_t offset, uint64_t data, unsigned size);
	/* Access sizes the guest may use; others are dropped (reads return all
	 * ones) and counted as invalid. 0 means 1 (min) and 8 (max). */
	unsigned valid_min, valid_max;
	/* Sizes the callbacks implement; wider accesses are split into
	 * little-endian pieces, narrower ones widened (read-modify-write for
	 * writes).  0 means the valid_* value. */
	unsigned impl_min, impl_max;
};

enum mr_type { MR_CONTAINER, MR_IO, MR_RAM, MR_ALIAS };

/* A container: has no behaviour of its own; where no child covers an
 * address, accesses are unassigned. */
struct mem_region *mr_new_container(const char *name, uint64_t size);
/* Device registers: accesses call @ops with @opaque. */
struct mem_region *mr_new_io(const char *name, uint64_t size,
			     const struct mr_ops *ops, void *opaque);
/* Guest RAM at host address @host (owned by the caller), backed by @fd at
 * @fd_offset (-1 when not file-backed) so it can be shared later. */
struct mem_region *mr_new_ram(const char *name, uint64_t size, void *host,
			      int fd, uint64_t fd_offset);
/* RAM that is a device's memory (an assigned device's BAR, mmapped): KVM
 * maps it like RAM, dumps show it as "ramd", and DMA mappings leave it out. */
struct mem_region *mr_new_ram_device(const char *name, uint64_t size, void *host);
bool mr_is_ram_device(const struct mem_region *mr);
/* A window of @size bytes onto @target starting at @offset in @target. */
struct mem_region *mr_new_alias(const char *name, struct mem_region *target,
				uint64_t offset, uint64_t size);
/* Free a region that has no parent and no children left. Its own ioeventfds
 * are dropped (not closed: the notifiers belong to their owners). */
void mr_free(struct mem_region *mr);

/* Place @child in @parent at @offset. -EBUSY if @child already has a parent,
 * -EINVAL if @parent is not a container. */
int mr_add_subregion(struct mem_region *parent, uint64_t offset,
		     struct mem_region *child, int priority);
void mr_del_subregion(struct mem_region *parent, struct mem_region *child);
/* Move @mr within its parent (a BAR the guest reprogrammed). */
void mr_set_address(struct mem_region *mr, uint64_t offset);
/* A disabled region is not rendered (a BAR with decode off). */
void mr_set_enabled(struct mem_region *mr, bool enabled);
/* Writes to the region may be batched by KVM (coalesced MMIO/PIO). */
void mr_set_coalesced(struct mem_region *mr, bool coalesced);
/* Keep this region's ioeventfds on the userspace path (never offered to
 * the listener): the --ioeventfd=off of one device, and the benchmark's
 * fallback path. */
void mr_set_ioeventfd_userspace_only(struct mem_region *mr, bool on);

const char *mr_name(const struct mem_region *mr);
uint64_t mr_size(const struct mem_region *mr);
uint64_t mr_offset(const struct mem_region *mr); /* in its parent */
enum mr_type mr_type(const struct mem_region *mr);
void *mr_ram_ptr(const struct mem_region *mr);   /* NULL unless RAM */
int mr_ram_fd(const struct mem_region *mr, uint64_t *fd_offset);

/*
 * Add an ioeventfd on @mr at @offset: @len is 0 (any size, MMIO only, no
 * datamatch), 1, 2, 4 or 8; with @match_data only writes of value @data
 * match.  Signals @e (owned by the caller, who must keep it alive until the
 * ioeventfd is deleted and the transaction committed).
 * -EINVAL for a bad length, len 0 with datamatch, or offset+len outside @mr;
 * -EEXIST for an identical one.  Takes effect at commit.
 */
int mr_add_eventfd(struct mem_region *mr, uint64_t offset, unsigned len,
		   bool match_data, uint64_t data, struct event_notifier *e);
/* Delete the ioeventfd with exactly these arguments; -ENOENT if none. */
int mr_del_eventfd(struct mem_region *mr, uint64_t offset, unsigned len,
		   bool match_data, uint64_t data, struct event_notifier *e);

/* ---- transactions ------------------------------------------------------------ */
void memory_transaction_begin(void);
void memory_transaction_commit(void);

/* ---- flat views and ioeventfds as the listener sees them ------------------------ */

struct flat_range {
	uint64_t addr;           /* absolute start in the address space */
	uint64_t size;
	struct mem_region *mr;   /* the terminal region: MR_IO or MR_RAM */
	uint64_t offset;         /* offset in @mr of @addr */
	int priority;            /* of the region that put it there, for dumps */
	bool coalesced;
};

enum ioeventfd_path { IOEVENTFD_PATH_KVM, IOEVENTFD_PATH_FALLBACK };

struct ioeventfd {
	uint64_t addr;           /* absolute */
	unsigned len;
	bool match_data;
	uint64_t data;
	bool is_pio;             /* the address space is an I/O port space */
	struct event_notifier *e;
	struct mem_region *mr;   /* the region it was added on, and where */
	uint64_t offset;
	enum ioeventfd_path path;
	int kvm_err;             /* errno the listener gave (0: accepted, or
				  * userspace-only by configuration) */
};

/*
 * What the machine mirrors into KVM. Callbacks run inside commit, under the
 * memory lock, in this order: deletions before additions.
 */
struct mem_listener {
	void (*ram_add)(void *opaque, const struct flat_range *fr);
	void (*ram_del)(void *opaque, const struct flat_range *fr);
	void (*coalesced_add)(void *opaque, uint64_t addr, uint64_t size);
	void (*coalesced_del)(void *opaque, uint64_t addr, uint64_t size);
	/* 0: KVM took it.  -EOPNOTSUPP: not offered by configuration (quietly
	 * falls back).  Any other negative errno: a refusal (logged once,
	 * counted, falls back). */
	int (*eventfd_add)(void *opaque, const struct ioeventfd *ev);
	void (*eventfd_del)(void *opaque, const struct ioeventfd *ev);
};

/* ---- address spaces ------------------------------------------------------------ */

enum as_kind { AS_MMIO, AS_PIO };

struct address_space *address_space_new(const char *name, enum as_kind kind,
					 struct mem_region *root);
/* Removes every listener registration (ioeventfds, memslots) first. */
void address_space_free(struct address_space *as);
const char *address_space_name(const struct address_space *as);
/* Set the one listener (NULL for none) and replay the current flat view to
 * it as additions. */
void address_space_set_listener(struct address_space *as,
				const struct mem_listener *l, void *opaque);

enum as_result {
	AS_OK,           /* a region callback handled it */
	AS_IOEVENTFD,    /* matched an ioeventfd: its notifier was signalled */
	AS_RAM,          /* plain RAM (only if KVM let the access through) */
	AS_UNASSIGNED,   /* nothing there: write dropped, read all ones */
	AS_INVALID,      /* the region does not accept this access size */
};

/* A guest write of @len bytes (1, 2, 4, 8) as a vCPU exit delivers it. Any
 * thread; safe against concurrent commits. Returns an enum as_result. */
int address_space_write(struct address_space *as, uint64_t addr,
			uint64_t data, unsigned len);
int address_space_read(struct address_space *as, uint64_t addr,
		       uint64_t *data, unsigned len);

struct as_stats {
	uint64_t writes, reads;       /* dispatched accesses */
	uint64_t fallback_signals;    /* writes that matched an ioeventfd */
	uint64_t unassigned, invalid;
	uint64_t kvm_refusals;        /* registrations the listener refused */
	uint64_t commits;
};
void address_space_get_stats(const struct address_space *as, struct as_stats *out);

/* Every ioeventfd of the current flat view, ordered by address. */
void address_space_for_each_ioeventfd(struct address_space *as,
				      void (*fn)(const struct ioeventfd *ev, void *opaque),
				      void *opaque);
/*
 * Where the ioeventfd of @e added on @mr at @offset ended up: the path of its
 * first appearance in any address space's current view (and the errno KVM
 * gave when it refused).  -ENOENT when it is not visible anywhere.  Lets a
 * device say "KVM refused my doorbells" in its own words.
 */
int mr_eventfd_path(struct mem_region *mr, uint64_t offset, const struct event_notifier *e,
		    enum ioeventfd_path *path, int *kvm_err);

/* Every range of the current flat view, ordered by address. */
void address_space_for_each_range(struct address_space *as,
				  void (*fn)(const struct flat_range *fr, void *opaque),
				  void *opaque);

/* ---- dumps (the monitor's info commands) ------------------------------------------
 * Formats follow QEMU's so that dumps read the same as QEMU's `info mtree`:
 *   mtree:    "  0000000000000000-0000000000000fff (prio 0, i/o): name"
 *             aliases add " @target 0000...-0000..." ; disabled ones " [disabled]"
 *   flatview: "  0000210000000000-000021000000dfff (prio 0, i/o): name"
 *             with " @<offset as %016x>" when the range starts inside the region
 *   ioeventfds: one line each: address, len, datamatch, path, signals.
 */
void address_space_dump_mtree(struct address_space *as, FILE *out);
void address_space_dump_flatview(struct address_space *as, FILE *out);
void address_space_dump_ioeventfds(struct address_space *as, FILE *out);

#endif
