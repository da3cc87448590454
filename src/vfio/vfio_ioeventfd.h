/*
 * Device-write ioeventfds: a guest write of a known value to a trapped
 * register of an assigned device, performed without kickvm.
 *
 * Each entry pairs two things on one eventfd:
 *   1. a KVM ioeventfd with datamatch (width, value) on the TRAPPED region of
 *      the BAR at that register, registered through the memory layer, so the
 *      guest's write signals the eventfd instead of exiting to kickvm (where
 *      KVM refuses, the memory layer matches the trapped write in userspace
 *      and signals the same eventfd: slower, same result);
 *   2. the backend's device-write ioeventfd (ops->ioeventfd; for kernel
 *      vfio-pci VFIO_DEVICE_IOEVENTFD), so the kernel performs the write on
 *      the device when the eventfd fires.  Where the backend refuses (an old
 *      kernel, the kernel's per-device limit, a backend without the feature),
 *      a handler on an event loop performs the same write through
 *      ops->region_write instead: slower, never lost, counted.
 * A trapped write that matched nothing still reaches the region's own write
 * callback, which forwards it as before.  This module never sees the device
 * model's structures: the model passes plain values and two callbacks.
 *
 * The rules are the kernel's (Linux vfio-pci), applied here first so that
 * every backend (kernel, vfio-user, fake) returns the same errno for the
 * same request:
 *   flags not exactly one of the 8/16/32/64-bit width bits   -EINVAL
 *   (any bit outside VFIO_IOEVENTFD_WIDTH_MASK)               -EINVAL
 *   fd < -1                                                   -EINVAL
 *   a region other than BAR 0..5                              -EINVAL
 *   offset + width beyond the BAR                             -EINVAL
 *   any byte overlapping the device's MSI-X table              -EINVAL
 *   the same (bar, offset, data, width) already there          -EEXIST
 *     ... unless fd is -1, which removes it
 *   removing one that is not there                             -ENODEV
 *   a 1001st on one device                                     -ENOSPC
 * in that order.  (The kernel's argsz check belongs to the kernel backend,
 * which builds the ioctl.)  Offsets are PHYSICAL BAR offsets and the MSI-X table is
 * the device's own (not a relocated one the guest sees).
 *
 * What the write does, on either path: one device write per wakeup of the
 * eventfd.  Several signals that arrive before the write runs are one write,
 * as in the kernel (the value is the same by construction: datamatch).  The
 * write is dropped (and counted) while the device's memory decode is off.
 *
 * Entries are "static" (the model asked for them) or "dynamic" (added by
 * hot-write promotion); a device reset drops the dynamic ones only.
 *
 * All int-returning calls return 0 or a negative errno.
 */
#ifndef KICKVM_VFIO_IOEVENTFD_H
#define KICKVM_VFIO_IOEVENTFD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kickvm/memory.h"   /* enum ioeventfd_path */

struct vfio_backend;
struct event_loop;
struct mem_region;

/* The kernel's width flags (the same bit values as VFIO_DEVICE_IOEVENTFD_*). */
#define VFIO_IOEVENTFD_WIDTH_8     (1u << 0)
#define VFIO_IOEVENTFD_WIDTH_16    (1u << 1)
#define VFIO_IOEVENTFD_WIDTH_32    (1u << 2)
#define VFIO_IOEVENTFD_WIDTH_64    (1u << 3)
#define VFIO_IOEVENTFD_WIDTH_MASK  0xfu

#define VFIO_IOEVENTFD_MAX         1000  /* per device, as the kernel */
#define VFIO_IOEVENTFD_NUM_BARS    6

/* What the rules need to know about the device: its PHYSICAL BAR sizes and
 * the device's own MSI-X table (the one the kernel protects). */
struct vfio_ioeventfd_limits {
	uint64_t bar_size[VFIO_IOEVENTFD_NUM_BARS];  /* 0: no such BAR */
	int msix_table_bar;                           /* -1: no MSI-X */
	uint64_t msix_table_offset;                   /* in that physical BAR */
	uint64_t msix_table_size;                     /* entries * 16 */
};

/* ---- the rules, pure --------------------------------------------------------- */

enum vfio_ioeventfd_verdict {
	VFIO_IOEVENTFD_ADD = 1,
	VFIO_IOEVENTFD_REMOVE = 2,
};

/*
 * Judge one request as Linux vfio-pci would: @region the VFIO region index,
 * @offset in it, @flags the width flag, @fd (-1 removes), @present whether
 * an entry with the same (region, offset, data, width) exists, @nr_present
 * how many the device has.  Returns VFIO_IOEVENTFD_ADD or _REMOVE, or the
 * kernel's negative errno (table in the header comment).
 */
int vfio_ioeventfd_check(const struct vfio_ioeventfd_limits *lim, unsigned region,
			 uint64_t offset, uint32_t flags, int fd, bool present,
			 unsigned nr_present);

/* The flag for a width of 1, 2, 4 or 8 bytes; 0 (which the rules refuse)
 * for any other width. */
uint32_t vfio_ioeventfd_width_flag(unsigned width);

/* ---- a device's set ------------------------------------------------------------ */

struct vfio_ioeventfd_set;

struct vfio_ioeventfd_config {
	const char *name;                   /* the device, for logs and dumps */
	struct vfio_backend *backend;       /* ops->ioeventfd, ops->region_write */
	struct event_loop *loop;            /* where fallback writes run */
	struct vfio_ioeventfd_limits limits;
	/* Do writes to BAR @bar reach the device now?  For a memory BAR: is
	 * memory decode on (the kernel drops those writes while it is off; it
	 * does not check I/O BARs, so answer true for them to match it).
	 * Called before each write kickvm performs (from @loop's thread, or
	 * the remover's when a signal is pending at removal): read a flag,
	 * take no lock the model holds while it calls into this module.
	 * NULL: always. */
	bool (*decode_enabled)(void *opaque, unsigned bar);
	void *opaque;
	/* ioeventfd=off: never ask the backend; kickvm's handler performs
	 * every write (the path then reads "handler (EPERM)"). */
	bool handler_only;
};

/* Create an empty set; the config is copied (@name too).  -EINVAL without
 * a backend or a loop. */
int vfio_ioeventfd_set_new(const struct vfio_ioeventfd_config *cfg,
			   struct vfio_ioeventfd_set **out);
/* Remove every entry (device teardown), reclaim, free the set.  No vCPU may
 * be dispatching any more.  NULL is fine. */
void vfio_ioeventfd_set_free(struct vfio_ioeventfd_set *set);

/* One device-write ioeventfd. */
struct vfio_ioeventfd_req {
	unsigned bar;              /* VFIO region index, 0..5 */
	uint64_t offset;           /* PHYSICAL offset in that BAR */
	unsigned width;            /* 1, 2, 4 or 8 bytes */
	uint64_t data;             /* the value written (and matched) */
	/* Where the guest's write lands: the trapped region holding this
	 * register and the offset in it (the BAR offset when @mr is the whole
	 * BAR, less where @mr is a trapped piece starting inside the BAR).
	 * Must stay alive until the entry is removed. */
	struct mem_region *mr;
	uint64_t mr_offset;
	bool dynamic;              /* added by promotion: reset drops it */
};

/*
 * Add an entry: the rules (errno as the kernel's), an eventfd, the backend's
 * device-write ioeventfd (or, where it refuses, the fallback handler on the
 * loop; logged once with the backend's errno), then the KVM ioeventfd on
 * @req->mr (in a memory transaction of its own, nested in the caller's if
 * there is one).  Besides the rules' errnos: -EINVAL for a @req->mr that is
 * NULL or not a trapped (MR_IO) region, or a register outside it; -ENOMEM,
 * or the eventfd's errno.  On error nothing is left registered.  Any thread,
 * including a trapped region's write callback on a vCPU (where promotion
 * will call it; the memory layer allows a transaction there).  The write
 * that prompted the call is the caller's to forward: the entry only takes
 * the next ones.
 */
int vfio_ioeventfd_add(struct vfio_ioeventfd_set *set, const struct vfio_ioeventfd_req *req);

/*
 * Remove the entry (@bar, @offset, @width, @data): the KVM ioeventfd first
 * (committed, so the guest's writes trap again), then the backend's or the
 * handler; a signal still pending on the eventfd is performed.  Call it
 * outside any memory transaction of the caller's (inside one, KVM keeps
 * signalling until the caller commits, and those writes wait for
 * vfio_ioeventfd_reclaim()).  The entry is retired: its eventfd stays open
 * until reclaim, because a vCPU dispatching through the old flat view may
 * still signal it.  -ENODEV when there is none; -EINVAL where the rules say.
 */
int vfio_ioeventfd_del(struct vfio_ioeventfd_set *set, unsigned bar, uint64_t offset,
		       unsigned width, uint64_t data);

/* Remove every entry, or only the dynamic ones (device reset: a new driver
 * may write elsewhere), as vfio_ioeventfd_del() does, with one memory
 * transaction for all of them.  Returns how many were removed. */
unsigned vfio_ioeventfd_del_all(struct vfio_ioeventfd_set *set, bool dynamic_only);

/* Close and free the retired entries, performing any write that reached
 * them late.  Call when no vCPU can be dispatching (vCPUs paused, e.g. in a
 * system reset); vfio_ioeventfd_set_free() does it too.  Returns how many. */
unsigned vfio_ioeventfd_reclaim(struct vfio_ioeventfd_set *set);

/* How many entries the set holds. */
unsigned vfio_ioeventfd_count(struct vfio_ioeventfd_set *set);

/* ---- what each entry does: `info ioeventfds` and --stats -------------------------- */

enum vfio_ioeventfd_writer {
	VFIO_IOEVENTFD_BY_BACKEND,   /* the kernel (or device process) writes */
	VFIO_IOEVENTFD_BY_HANDLER,   /* kickvm's handler writes via region_write */
};

struct vfio_ioeventfd_info {
	unsigned bar;
	uint64_t offset;
	unsigned width;
	uint64_t data;
	bool dynamic;
	/* Second hop: who performs the device write. */
	enum vfio_ioeventfd_writer writer;
	int backend_err;           /* errno the backend refused with (0: took it) */
	/* First hop: how the guest's write reaches the eventfd.  Not visible
	 * when the region is in no address space's flat view (decode off). */
	bool trap_visible;
	enum ioeventfd_path trap_path;
	int kvm_err;               /* errno KVM refused with */
	/* Counters.  Signals KVM delivers and writes the kernel performs are
	 * out of kickvm's sight (the kernel consumes the eventfd); these count
	 * what kickvm itself saw and did. */
	uint64_t userspace_signals; /* guest writes that exited and kickvm matched */
	uint64_t handler_runs;      /* wakeups of the fallback handler */
	uint64_t handler_writes;    /* device writes kickvm performed */
	uint64_t dropped;           /* writes dropped with memory decode off */
	uint64_t write_errors;      /* region_write failures */
	/* "kvm -> kernel", "userspace (EEXIST) -> handler (EOPNOTSUPP)", ... */
	char path[96];
};

/* Call @fn for every entry, in the order they were added.  Not concurrently
 * with vfio_ioeventfd_reclaim() or vfio_ioeventfd_set_free(). */
void vfio_ioeventfd_for_each(struct vfio_ioeventfd_set *set,
			     void (*fn)(const struct vfio_ioeventfd_info *info, void *opaque),
			     void *opaque);

struct vfio_ioeventfd_stats {
	unsigned entries, by_backend, by_handler, dynamic;
	uint64_t userspace_signals, handler_runs, handler_writes, dropped, write_errors;
};
void vfio_ioeventfd_get_stats(struct vfio_ioeventfd_set *set, struct vfio_ioeventfd_stats *out);

/*
 * `info ioeventfds` for one device (the model calls it after the memory
 * layer's dump):
 *   vfio ioeventfds: dev0 (2 of 1000)
 *     bar0+0x1000 len 4 data 0x1 static: kvm -> kernel
 *     bar0+0x1040 len 2 data 0x7 dynamic: kvm -> handler (EOPNOTSUPP) userspace_signals=0 handler_writes=3 dropped=0 errors=0
 * followed by an empty line.
 */
void vfio_ioeventfd_dump(struct vfio_ioeventfd_set *set, FILE *out);

#endif
