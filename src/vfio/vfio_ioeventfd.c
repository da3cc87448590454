/*
 * Device-write ioeventfds (rules and paths in vfio_ioeventfd.h).
 *
 * Order of registration matters: whoever performs the write (the backend,
 * or the handler on the loop) is in place before KVM can signal the
 * eventfd, and on removal KVM stops signalling before the writer goes, so a
 * guest write is never signalled to nobody.  Whatever is still pending on
 * the eventfd at removal is written before it is closed.
 *
 * Lifetime: a vCPU that looked up the flat view before the commit removing
 * an ioeventfd may still signal its notifier afterwards (dispatch holds no
 * lock).  So a removed entry is retired, not freed: its eventfd stays open
 * (a late signal lands in it, never in a reused fd number) until
 * vfio_ioeventfd_reclaim() or the set's end, which run when no vCPU is
 * dispatching and perform what arrived late before closing.
 *
 * Locking: the set's mutex guards the lists and is never held while taking
 * the memory lock or waiting for the loop (either may be waiting for it: a
 * caller adding inside a memory transaction, a dump on the loop's thread).
 * The fallback handler runs in
 * the loop's thread and touches only its own entry (immutable fields and
 * atomic counters); event_loop_set_notifier(NULL) waits for a running
 * handler, so once it returns the handler cannot run again.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "kickvm/vfio_backend.h"
#include "vfio/vfio_ioeventfd.h"

struct vfio_ioeventfd {
	struct vfio_ioeventfd_set *set;
	struct vfio_ioeventfd_req req;
	struct event_notifier e;
	enum vfio_ioeventfd_writer writer;
	int backend_err;
	bool ready;                     /* registered; until then only listed */
	_Atomic uint64_t handler_runs, handler_writes, dropped, write_errors;
	struct vfio_ioeventfd *next;    /* in the order added */
};

struct vfio_ioeventfd_set {
	char *name;
	struct vfio_backend *backend;
	struct event_loop *loop;
	struct vfio_ioeventfd_limits limits;
	bool (*decode_enabled)(void *opaque, unsigned bar);
	void *opaque;
	pthread_mutex_t lock;
	struct vfio_ioeventfd *head, **tail;
	unsigned nr;
	struct vfio_ioeventfd *retired;  /* removed, eventfd still open */
	atomic_bool warned_fallback;    /* the backend refusal is logged once */
	bool handler_only;              /* ioeventfd=off: the backend is not asked */
};

/* "EEXIST" for EEXIST. */
static const char *errno_name(int err)
{
	const char *name = strerrorname_np(err);

	return name ? name : "error";
}

/* ---- rules ------------------------------------------------------------------- */

uint32_t vfio_ioeventfd_width_flag(unsigned width)
{
	switch (width) {
	case 1: return VFIO_IOEVENTFD_WIDTH_8;
	case 2: return VFIO_IOEVENTFD_WIDTH_16;
	case 4: return VFIO_IOEVENTFD_WIDTH_32;
	case 8: return VFIO_IOEVENTFD_WIDTH_64;
	default: return 0;
	}
}

int vfio_ioeventfd_check(const struct vfio_ioeventfd_limits *lim, unsigned region,
			 uint64_t offset, uint32_t flags, int fd, bool present,
			 unsigned nr_present)
{
	uint32_t width_bits = flags & VFIO_IOEVENTFD_WIDTH_MASK;
	uint64_t width, bar_size;

	if (flags & ~VFIO_IOEVENTFD_WIDTH_MASK)
		return -EINVAL;
	if (__builtin_popcount(width_bits) != 1 || fd < -1)
		return -EINVAL;
	if (region >= VFIO_IOEVENTFD_NUM_BARS)
		return -EINVAL;
	width = (uint64_t)1 << __builtin_ctz(width_bits);
	bar_size = lim->bar_size[region];
	if (offset > bar_size || width > bar_size - offset)
		return -EINVAL;
	if (lim->msix_table_bar == (int)region &&
	    offset < lim->msix_table_offset + lim->msix_table_size &&
	    lim->msix_table_offset < offset + width)
		return -EINVAL;
	if (present)
		return fd == -1 ? VFIO_IOEVENTFD_REMOVE : -EEXIST;
	if (fd < 0)
		return -ENODEV;
	if (nr_present >= VFIO_IOEVENTFD_MAX)
		return -ENOSPC;
	return VFIO_IOEVENTFD_ADD;
}

/* ---- the set ------------------------------------------------------------------ */

int vfio_ioeventfd_set_new(const struct vfio_ioeventfd_config *cfg,
			   struct vfio_ioeventfd_set **out)
{
	struct vfio_ioeventfd_set *set;

	if (!cfg->backend || !cfg->backend->ops || !cfg->loop)
		return -EINVAL;
	set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;
	set->name = strdup(cfg->name ? cfg->name : "vfio");
	if (!set->name) {
		free(set);
		return -ENOMEM;
	}
	set->backend = cfg->backend;
	set->loop = cfg->loop;
	set->limits = cfg->limits;
	set->decode_enabled = cfg->decode_enabled;
	set->opaque = cfg->opaque;
	set->handler_only = cfg->handler_only;
	pthread_mutex_init(&set->lock, NULL);
	set->tail = &set->head;
	*out = set;
	return 0;
}

void vfio_ioeventfd_set_free(struct vfio_ioeventfd_set *set)
{
	if (!set)
		return;
	vfio_ioeventfd_del_all(set, false);
	vfio_ioeventfd_reclaim(set);
	pthread_mutex_destroy(&set->lock);
	free(set->name);
	free(set);
}

unsigned vfio_ioeventfd_count(struct vfio_ioeventfd_set *set)
{
	unsigned nr;

	pthread_mutex_lock(&set->lock);
	nr = set->nr;
	pthread_mutex_unlock(&set->lock);
	return nr;
}

static struct vfio_ioeventfd *find_locked(struct vfio_ioeventfd_set *set, unsigned bar,
					  uint64_t offset, unsigned width, uint64_t data)
{
	for (struct vfio_ioeventfd *ev = set->head; ev; ev = ev->next)
		if (ev->req.bar == bar && ev->req.offset == offset &&
		    ev->req.width == width && ev->req.data == data)
			return ev;
	return NULL;
}

static void unlink_locked(struct vfio_ioeventfd_set *set, struct vfio_ioeventfd *victim)
{
	struct vfio_ioeventfd **pp = &set->head;

	while (*pp != victim)
		pp = &(*pp)->next;
	*pp = victim->next;
	if (set->tail == &victim->next)
		set->tail = pp;
	set->nr--;
}

/* The device write itself, as the kernel would do it: dropped while memory
 * decode is off. */
static void perform_write(struct vfio_ioeventfd *ev)
{
	struct vfio_ioeventfd_set *set = ev->set;
	uint64_t data = ev->req.data;   /* little-endian host: the low bytes */
	int ret;

	if (set->decode_enabled && !set->decode_enabled(set->opaque, ev->req.bar)) {
		atomic_fetch_add(&ev->dropped, 1);
		return;
	}
	ret = set->backend->ops->region_write(set->backend, ev->req.bar, ev->req.offset,
					      &data, ev->req.width);
	if (ret == (int)ev->req.width) {
		atomic_fetch_add(&ev->handler_writes, 1);
		return;
	}
	if (atomic_fetch_add(&ev->write_errors, 1) == 0)
		log_error("vfio", "%s: ioeventfd write bar%u+0x%" PRIx64 "[%u] failed (%s)",
			  set->name, ev->req.bar, ev->req.offset, ev->req.width,
			  strerror(ret < 0 ? -ret : EIO));
}

/* The fallback: the eventfd fired and the backend will not write. */
static void on_signal(struct event_notifier *e, void *opaque)
{
	struct vfio_ioeventfd *ev = opaque;

	if (!event_notifier_test_and_clear(e))
		return;
	atomic_fetch_add(&ev->handler_runs, 1);
	perform_write(ev);
}

static int backend_ioeventfd(struct vfio_ioeventfd_set *set, const struct vfio_ioeventfd_req *r,
			     int fd)
{
	if (!set->backend->ops->ioeventfd)
		return -EOPNOTSUPP;
	return set->backend->ops->ioeventfd(set->backend, r->bar, r->offset, r->width,
					    r->data, fd);
}

/* Put a writer behind the eventfd: the backend, else the handler. */
static int attach_writer(struct vfio_ioeventfd_set *set, struct vfio_ioeventfd *ev)
{
	int err = set->handler_only ? -EPERM : backend_ioeventfd(set, &ev->req, ev->e.fd);

	if (!err) {
		ev->writer = VFIO_IOEVENTFD_BY_BACKEND;
		return 0;
	}
	ev->writer = VFIO_IOEVENTFD_BY_HANDLER;
	ev->backend_err = -err;
	if (!set->handler_only && !atomic_exchange(&set->warned_fallback, true)) {
		log_warn("vfio", "%s: %s refused device-write ioeventfd bar%u+0x%" PRIx64
			 "[%u] (%s): kickvm performs those writes itself (slower)",
			 set->name, set->backend->name, ev->req.bar, ev->req.offset,
			 ev->req.width, errno_name(-err));
	}
	return event_loop_set_notifier(set->loop, &ev->e, on_signal, ev);
}

static void detach_writer(struct vfio_ioeventfd_set *set, struct vfio_ioeventfd *ev)
{
	if (ev->writer == VFIO_IOEVENTFD_BY_BACKEND) {
		int err = backend_ioeventfd(set, &ev->req, -1);

		if (err)
			log_warn("vfio", "%s: removing device-write ioeventfd bar%u+0x%" PRIx64
				 " from %s failed (%s)", set->name, ev->req.bar, ev->req.offset,
				 set->backend->name, strerror(-err));
	} else {
		event_loop_set_notifier(set->loop, &ev->e, NULL, NULL);
	}
}

/* The KVM ioeventfd of @ev, added or deleted; takes effect at the
 * outermost commit.  KVM compares the @width bytes written, so the match
 * value is @data cut to that width (the kernel's rules keep the full value
 * as part of the entry's identity). */
static int kvm_ioeventfd(struct vfio_ioeventfd *ev, bool add)
{
	const struct vfio_ioeventfd_req *r = &ev->req;
	uint64_t match = r->width == 8 ? r->data : r->data & ((UINT64_C(1) << (8 * r->width)) - 1);
	int err;

	memory_transaction_begin();
	if (add)
		err = mr_add_eventfd(r->mr, r->mr_offset, r->width, true, match, &ev->e);
	else
		err = mr_del_eventfd(r->mr, r->mr_offset, r->width, true, match, &ev->e);
	memory_transaction_commit();
	return err;
}

/* Can @req's KVM ioeventfd live on @req->mr?  Only on a trapped region: a
 * write to a mapped page never exits, so no KVM ioeventfd there could fire. */
static bool trap_ok(const struct vfio_ioeventfd_req *req)
{
	return req->mr && mr_type(req->mr) == MR_IO && req->mr_offset <= mr_size(req->mr) &&
	       req->width <= mr_size(req->mr) - req->mr_offset;
}

/*
 * The entry is listed (not ready) under the lock, so a concurrent duplicate
 * gets EEXIST and the limit holds; the registrations are made without it,
 * since attaching the handler waits for the loop's thread, which may itself
 * be waiting for the lock (a dump from the monitor).
 */
int vfio_ioeventfd_add(struct vfio_ioeventfd_set *set, const struct vfio_ioeventfd_req *req)
{
	struct vfio_ioeventfd *ev = calloc(1, sizeof(*ev));
	int ret;

	if (!ev)
		return -ENOMEM;
	ev->set = set;
	ev->req = *req;
	ev->e.fd = -1;
	pthread_mutex_lock(&set->lock);
	ret = vfio_ioeventfd_check(&set->limits, req->bar, req->offset,
				   vfio_ioeventfd_width_flag(req->width), 0,
				   find_locked(set, req->bar, req->offset, req->width, req->data),
				   set->nr);
	if (ret >= 0)
		ret = trap_ok(req) ? 0 : -EINVAL;
	if (!ret) {
		*set->tail = ev;
		set->tail = &ev->next;
		set->nr++;
	}
	pthread_mutex_unlock(&set->lock);
	if (ret) {
		free(ev);
		return ret;
	}

	ret = event_notifier_init(&ev->e, false);
	if (!ret)
		ret = attach_writer(set, ev);
	if (!ret) {
		ret = kvm_ioeventfd(ev, true);
		if (ret)
			detach_writer(set, ev);
	}

	pthread_mutex_lock(&set->lock);
	if (ret)
		unlink_locked(set, ev);
	else
		ev->ready = true;
	pthread_mutex_unlock(&set->lock);
	if (ret) {
		event_notifier_cleanup(&ev->e);
		free(ev);
	}
	return ret;
}

/* Unlink every entry (or every dynamic one) into a list of their own. */
static struct vfio_ioeventfd *unlink_all_locked(struct vfio_ioeventfd_set *set,
						bool dynamic_only)
{
	struct vfio_ioeventfd *doomed = NULL, **doomed_tail = &doomed, *ev, *next;

	for (ev = set->head; ev; ev = next) {
		next = ev->next;
		if (!ev->ready || (dynamic_only && !ev->req.dynamic))
			continue;
		unlink_locked(set, ev);
		ev->next = NULL;
		*doomed_tail = ev;
		doomed_tail = &ev->next;
	}
	return doomed;
}

/*
 * Remove the entries of @doomed: every KVM ioeventfd first, in one
 * transaction (KVM copies its bus on every change), so guest writes trap
 * again; then each writer, performing what is still pending; then retire
 * them.  Called without the set's lock: the writer removal may wait for
 * the loop.
 */
static unsigned destroy_entries(struct vfio_ioeventfd_set *set, struct vfio_ioeventfd *doomed)
{
	struct vfio_ioeventfd *ev, *next;
	unsigned n = 0;

	memory_transaction_begin();
	for (ev = doomed; ev; ev = ev->next) {
		int err = kvm_ioeventfd(ev, false);

		if (err)
			log_warn("vfio", "%s: removing KVM ioeventfd bar%u+0x%" PRIx64 " failed (%s)",
				 set->name, ev->req.bar, ev->req.offset, strerror(-err));
	}
	memory_transaction_commit();
	for (ev = doomed; ev; ev = next) {
		next = ev->next;
		detach_writer(set, ev);
		if (event_notifier_test_and_clear(&ev->e))
			perform_write(ev);
		pthread_mutex_lock(&set->lock);
		ev->next = set->retired;
		set->retired = ev;
		pthread_mutex_unlock(&set->lock);
		n++;
	}
	return n;
}

int vfio_ioeventfd_del(struct vfio_ioeventfd_set *set, unsigned bar, uint64_t offset,
		       unsigned width, uint64_t data)
{
	struct vfio_ioeventfd *ev;
	int ret;

	pthread_mutex_lock(&set->lock);
	ev = find_locked(set, bar, offset, width, data);
	if (ev && !ev->ready)
		ev = NULL;      /* still being added: not there yet */
	ret = vfio_ioeventfd_check(&set->limits, bar, offset, vfio_ioeventfd_width_flag(width),
				   -1, ev != NULL, set->nr);
	if (ret < 0) {
		pthread_mutex_unlock(&set->lock);
		return ret;
	}
	unlink_locked(set, ev);
	ev->next = NULL;
	pthread_mutex_unlock(&set->lock);
	destroy_entries(set, ev);
	return 0;
}

unsigned vfio_ioeventfd_del_all(struct vfio_ioeventfd_set *set, bool dynamic_only)
{
	struct vfio_ioeventfd *doomed;

	pthread_mutex_lock(&set->lock);
	doomed = unlink_all_locked(set, dynamic_only);
	pthread_mutex_unlock(&set->lock);
	return destroy_entries(set, doomed);
}

unsigned vfio_ioeventfd_reclaim(struct vfio_ioeventfd_set *set)
{
	struct vfio_ioeventfd *ev, *next;
	unsigned n = 0;

	pthread_mutex_lock(&set->lock);
	ev = set->retired;
	set->retired = NULL;
	pthread_mutex_unlock(&set->lock);
	for (; ev; ev = next) {
		next = ev->next;
		if (event_notifier_test_and_clear(&ev->e))
			perform_write(ev);
		event_notifier_cleanup(&ev->e);
		free(ev);
		n++;
	}
	return n;
}

/* ---- reporting ------------------------------------------------------------------ */

static void fill_info(const struct vfio_ioeventfd *ev, struct vfio_ioeventfd_info *info)
{
	const struct vfio_ioeventfd_req *r = &ev->req;
	char trap[40], writer[40];

	memset(info, 0, sizeof(*info));
	info->bar = r->bar;
	info->offset = r->offset;
	info->width = r->width;
	info->data = r->data;
	info->dynamic = r->dynamic;
	info->writer = ev->writer;
	info->backend_err = ev->backend_err;
	info->trap_visible = mr_eventfd_path(r->mr, r->mr_offset, &ev->e, &info->trap_path,
					     &info->kvm_err) == 0;
	info->userspace_signals = atomic_load(&ev->e.fallback_signals);
	info->handler_runs = atomic_load(&ev->handler_runs);
	info->handler_writes = atomic_load(&ev->handler_writes);
	info->dropped = atomic_load(&ev->dropped);
	info->write_errors = atomic_load(&ev->write_errors);

	if (!info->trap_visible)
		snprintf(trap, sizeof(trap), "unmapped");
	else if (info->trap_path == IOEVENTFD_PATH_KVM)
		snprintf(trap, sizeof(trap), "kvm");
	else if (info->kvm_err)
		snprintf(trap, sizeof(trap), "userspace (%s)", errno_name(info->kvm_err));
	else
		snprintf(trap, sizeof(trap), "userspace");
	if (ev->writer == VFIO_IOEVENTFD_BY_BACKEND)
		snprintf(writer, sizeof(writer), "kernel");
	else
		snprintf(writer, sizeof(writer), "handler (%s)", errno_name(ev->backend_err));
	snprintf(info->path, sizeof(info->path), "%s -> %s", trap, writer);
}

void vfio_ioeventfd_for_each(struct vfio_ioeventfd_set *set,
			     void (*fn)(const struct vfio_ioeventfd_info *info, void *opaque),
			     void *opaque)
{
	struct vfio_ioeventfd *snapshot[VFIO_IOEVENTFD_MAX];
	struct vfio_ioeventfd_info info;
	unsigned n = 0;

	/* The paths come from the memory layer, whose lock a caller of
	 * vfio_ioeventfd_add() may hold while it waits for ours: take the list
	 * under our lock, ask about each entry after.  A removed entry stays
	 * allocated until reclaim, which no dump runs concurrently with. */
	pthread_mutex_lock(&set->lock);
	for (struct vfio_ioeventfd *ev = set->head; ev && n < VFIO_IOEVENTFD_MAX; ev = ev->next)
		if (ev->ready)
			snapshot[n++] = ev;
	pthread_mutex_unlock(&set->lock);
	for (unsigned i = 0; i < n; i++) {
		fill_info(snapshot[i], &info);
		fn(&info, opaque);
	}
}

static void add_stats(const struct vfio_ioeventfd_info *info, void *opaque)
{
	struct vfio_ioeventfd_stats *s = opaque;

	s->entries++;
	if (info->writer == VFIO_IOEVENTFD_BY_BACKEND)
		s->by_backend++;
	else
		s->by_handler++;
	s->dynamic += info->dynamic;
	s->userspace_signals += info->userspace_signals;
	s->handler_runs += info->handler_runs;
	s->handler_writes += info->handler_writes;
	s->dropped += info->dropped;
	s->write_errors += info->write_errors;
}

void vfio_ioeventfd_get_stats(struct vfio_ioeventfd_set *set, struct vfio_ioeventfd_stats *out)
{
	memset(out, 0, sizeof(*out));
	vfio_ioeventfd_for_each(set, add_stats, out);
}

static void print_entry(const struct vfio_ioeventfd_info *info, void *opaque)
{
	FILE *out = opaque;

	fprintf(out, "  bar%u+0x%" PRIx64 " len %u data 0x%" PRIx64 " %s: %s",
		info->bar, info->offset, info->width, info->data,
		info->dynamic ? "dynamic" : "static", info->path);
	if (info->writer == VFIO_IOEVENTFD_BY_HANDLER || info->userspace_signals)
		fprintf(out, " userspace_signals=%" PRIu64 " handler_writes=%" PRIu64
			" dropped=%" PRIu64 " errors=%" PRIu64, info->userspace_signals,
			info->handler_writes, info->dropped, info->write_errors);
	fputc('\n', out);
}

void vfio_ioeventfd_dump(struct vfio_ioeventfd_set *set, FILE *out)
{
	fprintf(out, "vfio ioeventfds: %s (%u of %u)\n", set->name, set->nr, VFIO_IOEVENTFD_MAX);
	vfio_ioeventfd_for_each(set, print_entry, out);
	fputc('\n', out);
}
