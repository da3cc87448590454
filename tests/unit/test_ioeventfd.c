/*
 * ioeventfds through the memory API: what the listener (a mock of KVM) is
 * told at each commit, refusals and the userspace fallback, and dispatch
 * racing with topology changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
/* The racing vCPU's view of the memory layer: a flat view it holds. */
#include "memory/memory_internal.h"

/* ---- a listener that records calls and keeps KVM's registration rules ----------- */

enum call_kind { RAM_ADD, RAM_DEL, COALESCED_ADD, COALESCED_DEL, EV_ADD, EV_DEL };

struct call {
	enum call_kind kind;
	uint64_t addr, size;          /* size: len for ioeventfds */
	bool match_data;
	uint64_t data;
	struct event_notifier *e;
};

#define MOCK_MAX_CALLS 64
#define MOCK_MAX_REGISTERED 64

struct mock {
	struct call calls[MOCK_MAX_CALLS];
	unsigned nr_calls;               /* recorded; total keeps counting */
	unsigned long total_calls;
	int refuse_err;                  /* returned by eventfd_add when refusing */
	bool refuse_all;
	struct ioeventfd registered[MOCK_MAX_REGISTERED];
	unsigned nr_registered;
	unsigned ram_slots, coalesced_zones;
	unsigned errors;                 /* protocol violations seen */
};

static void mock_record(struct mock *m, struct call c)
{
	if (m->nr_calls < MOCK_MAX_CALLS)
		m->calls[m->nr_calls++] = c;
	m->total_calls++;
}

static void mock_ram_add(void *opaque, const struct flat_range *fr)
{
	struct mock *m = opaque;

	mock_record(m, (struct call){ .kind = RAM_ADD, .addr = fr->addr, .size = fr->size });
	m->ram_slots++;
}

static void mock_ram_del(void *opaque, const struct flat_range *fr)
{
	struct mock *m = opaque;

	mock_record(m, (struct call){ .kind = RAM_DEL, .addr = fr->addr, .size = fr->size });
	if (m->ram_slots-- == 0)
		m->errors++;
}

static void mock_coalesced_add(void *opaque, uint64_t addr, uint64_t size)
{
	struct mock *m = opaque;

	mock_record(m, (struct call){ .kind = COALESCED_ADD, .addr = addr, .size = size });
	m->coalesced_zones++;
}

static void mock_coalesced_del(void *opaque, uint64_t addr, uint64_t size)
{
	struct mock *m = opaque;

	mock_record(m, (struct call){ .kind = COALESCED_DEL, .addr = addr, .size = size });
	if (m->coalesced_zones-- == 0)
		m->errors++;
}

/* KVM's EEXIST rule: same address and (either any-length, or same length
 * and (either a wildcard or the same value)). */
static bool kvm_collides(const struct ioeventfd *a, const struct ioeventfd *b)
{
	if (a->addr != b->addr)
		return false;
	if (a->len == 0 || b->len == 0)
		return true;
	return a->len == b->len && (!a->match_data || !b->match_data || a->data == b->data);
}

static int mock_eventfd_add(void *opaque, const struct ioeventfd *ev)
{
	struct mock *m = opaque;

	mock_record(m, (struct call){ .kind = EV_ADD, .addr = ev->addr, .size = ev->len,
				      .match_data = ev->match_data, .data = ev->data, .e = ev->e });
	if (m->refuse_all)
		return m->refuse_err;
	for (unsigned i = 0; i < m->nr_registered; i++)
		if (kvm_collides(&m->registered[i], ev))
			return -EEXIST;
	if (m->nr_registered == MOCK_MAX_REGISTERED)
		return -ENOSPC;
	m->registered[m->nr_registered++] = *ev;
	return 0;
}

static void mock_eventfd_del(void *opaque, const struct ioeventfd *ev)
{
	struct mock *m = opaque;

	mock_record(m, (struct call){ .kind = EV_DEL, .addr = ev->addr, .size = ev->len,
				      .match_data = ev->match_data, .data = ev->data, .e = ev->e });
	/* KVM deassigns only an exact match (ENOENT otherwise). */
	for (unsigned i = 0; i < m->nr_registered; i++) {
		struct ioeventfd *r = &m->registered[i];

		if (r->addr == ev->addr && r->len == ev->len && r->match_data == ev->match_data &&
		    r->data == ev->data && r->e == ev->e) {
			*r = m->registered[--m->nr_registered];
			return;
		}
	}
	m->errors++;
}

static const struct mem_listener mock_ops = {
	.ram_add = mock_ram_add, .ram_del = mock_ram_del,
	.coalesced_add = mock_coalesced_add, .coalesced_del = mock_coalesced_del,
	.eventfd_add = mock_eventfd_add, .eventfd_del = mock_eventfd_del,
};

static void assert_call(const struct mock *m, unsigned i, enum call_kind kind,
			uint64_t addr, uint64_t size)
{
	assert_true(i < m->nr_calls);
	assert_int_equal(m->calls[i].kind, kind);
	assert_int_equal(m->calls[i].addr, addr);
	assert_int_equal(m->calls[i].size, size);
}

/* ---- a device ------------------------------------------------------------------------ */

struct device {
	_Atomic unsigned long writes;
	uint64_t last_offset, last_data;
	unsigned last_size;
};

static uint64_t dev_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque;
	(void)offset;
	(void)size;
	return 0;
}

static void dev_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct device *d = opaque;

	d->last_offset = offset;
	d->last_data = data;
	d->last_size = size;
	atomic_fetch_add(&d->writes, 1);
}

static const struct mr_ops dev_ops = { .read = dev_read, .write = dev_write };

/* ---- fixture ------------------------------------------------------------------------- */

#define NR_NOTIFIERS 4

struct fixture {
	struct mem_region *root, *dev_mr;
	struct address_space *as;
	struct mock mock;
	struct device dev;
	struct event_notifier e[NR_NOTIFIERS];
};

#define DEV_BASE 0x10000

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->root = mr_new_container("system", 0x1000000);
	f->dev_mr = mr_new_io("dev", 0x1000, &dev_ops, &f->dev);
	if (mr_add_subregion(f->root, DEV_BASE, f->dev_mr, 0) < 0)
		return -1;
	f->as = address_space_new("memory", AS_MMIO, f->root);
	address_space_set_listener(f->as, &mock_ops, &f->mock);
	for (int i = 0; i < NR_NOTIFIERS; i++)
		if (event_notifier_init(&f->e[i], false) < 0)
			return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int ret = 0;

	address_space_free(f->as);
	/* Everything registered was deregistered, and nothing else. */
	if (f->mock.errors || f->mock.nr_registered || f->mock.ram_slots ||
	    f->mock.coalesced_zones)
		ret = -1;
	mr_del_subregion(f->root, f->dev_mr);
	mr_free(f->dev_mr);
	mr_free(f->root);
	for (int i = 0; i < NR_NOTIFIERS; i++)
		event_notifier_cleanup(&f->e[i]);
	free(f);
	return ret;
}

static struct as_stats stats_of(struct fixture *f)
{
	struct as_stats s;

	address_space_get_stats(f->as, &s);
	return s;
}

struct path_lookup {
	uint64_t addr;
	struct event_notifier *e;
	int found;
	enum ioeventfd_path path;
	int kvm_err;
};

static void find_path(const struct ioeventfd *ev, void *opaque)
{
	struct path_lookup *l = opaque;

	if (ev->addr == l->addr && ev->e == l->e) {
		l->found++;
		l->path = ev->path;
		l->kvm_err = ev->kvm_err;
	}
}

/* The path of the one ioeventfd of the view at @addr signalling @e. */
static enum ioeventfd_path path_of(struct fixture *f, uint64_t addr,
				   struct event_notifier *e, int *kvm_err)
{
	struct path_lookup l = { .addr = addr, .e = e };

	address_space_for_each_ioeventfd(f->as, find_path, &l);
	assert_int_equal(l.found, 1);
	if (kvm_err)
		*kvm_err = l.kvm_err;
	return l.path;
}

static void count_one(const struct ioeventfd *ev, void *opaque)
{
	(void)ev;
	(*(unsigned *)opaque)++;
}

static unsigned nr_ioeventfds(struct fixture *f)
{
	unsigned n = 0;

	address_space_for_each_ioeventfd(f->as, count_one, &n);
	return n;
}

/* Signals that reached the notifier (and consume them). */
static uint64_t signals(struct event_notifier *e)
{
	return event_notifier_test_and_clear(e);
}

/* ---- what the listener is told ---------------------------------------------------------- */

static void test_batched_adds_and_noop_commit(void **state)
{
	struct fixture *f = *state;
	struct as_stats before = stats_of(f);

	memory_transaction_begin();
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x200, 2, false, 0, &f->e[2]), 0);
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x0, 4, true, 1, &f->e[0]), 0);
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x100, 0, false, 0, &f->e[1]), 0);
	assert_int_equal(f->mock.nr_calls, 0);
	memory_transaction_commit();
	assert_int_equal(f->mock.nr_calls, 3);
	assert_call(&f->mock, 0, EV_ADD, DEV_BASE + 0x0, 4);
	assert_int_equal(f->mock.calls[0].data, 1);
	assert_true(f->mock.calls[0].match_data);
	assert_call(&f->mock, 1, EV_ADD, DEV_BASE + 0x100, 0);
	assert_call(&f->mock, 2, EV_ADD, DEV_BASE + 0x200, 2);
	assert_int_equal(stats_of(f).commits - before.commits, 1);
	assert_int_equal(path_of(f, DEV_BASE + 0x100, &f->e[1], NULL), IOEVENTFD_PATH_KVM);
	/* Commits that change nothing tell the listener nothing. */
	memory_transaction_begin();
	memory_transaction_commit();
	mr_set_enabled(f->dev_mr, true);
	mr_set_address(f->dev_mr, DEV_BASE);
	assert_int_equal(f->mock.nr_calls, 3);
	assert_int_equal(stats_of(f).commits - before.commits, 1);
	/* Nested: nothing until the outermost commit. */
	memory_transaction_begin();
	memory_transaction_begin();
	assert_int_equal(mr_del_eventfd(f->dev_mr, 0x0, 4, true, 1, &f->e[0]), 0);
	memory_transaction_commit();
	assert_int_equal(f->mock.nr_calls, 3);
	memory_transaction_commit();
	assert_int_equal(f->mock.nr_calls, 4);
	assert_call(&f->mock, 3, EV_DEL, DEV_BASE, 4);
}

static void test_moving_region_moves_ioeventfds(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x8, 4, false, 0, &f->e[0]), 0);
	f->mock.nr_calls = 0;
	mr_set_address(f->dev_mr, 0x20000);
	assert_int_equal(f->mock.nr_calls, 2);
	assert_call(&f->mock, 0, EV_DEL, DEV_BASE + 8, 4);
	assert_call(&f->mock, 1, EV_ADD, 0x20008, 4);
	/* KVM takes it, but a write that reaches userspace is still a signal. */
	assert_int_equal(address_space_write(f->as, 0x20008, 0x1234, 4), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[0]), 1);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 8, 0x1234, 4), AS_UNASSIGNED);
	mr_set_address(f->dev_mr, DEV_BASE);
}

static void test_reparenting(void **state)
{
	struct fixture *f = *state;
	struct mem_region *bus = mr_new_container("bus", 0x1000);

	assert_int_equal(mr_add_subregion(f->root, 0x100000, bus, 0), 0);
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x8, 4, false, 0, &f->e[0]), 0);
	f->mock.nr_calls = 0;
	memory_transaction_begin();
	mr_del_subregion(f->root, f->dev_mr);
	assert_int_equal(mr_add_subregion(bus, 0x40, f->dev_mr, 0), 0);
	memory_transaction_commit();
	assert_int_equal(f->mock.nr_calls, 2);
	assert_call(&f->mock, 0, EV_DEL, DEV_BASE + 8, 4);
	assert_call(&f->mock, 1, EV_ADD, 0x100048, 4);
	memory_transaction_begin();
	mr_del_subregion(bus, f->dev_mr);
	assert_int_equal(mr_add_subregion(f->root, DEV_BASE, f->dev_mr, 0), 0);
	mr_del_subregion(f->root, bus);
	memory_transaction_commit();
	mr_free(bus);
}

static void test_alias_exposes_target_ioeventfds(void **state)
{
	struct fixture *f = *state;
	struct device tgt_dev = { 0 };
	struct mem_region *tgt = mr_new_io("tgt", 0x100, &dev_ops, &tgt_dev);
	struct mem_region *win = mr_new_alias("win", tgt, 0, 0x40);

	assert_int_equal(mr_add_eventfd(tgt, 0x10, 4, false, 0, &f->e[0]), 0);
	assert_int_equal(mr_add_eventfd(tgt, 0x80, 4, false, 0, &f->e[1]), 0); /* outside */
	assert_int_equal(f->mock.nr_calls, 0);  /* tgt is not mapped anywhere */
	assert_int_equal(mr_add_subregion(f->root, 0x30000, win, 0), 0);
	assert_int_equal(f->mock.nr_calls, 1);
	assert_call(&f->mock, 0, EV_ADD, 0x30010, 4);
	assert_int_equal(address_space_write(f->as, 0x30010, 9, 4), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[0]), 1);
	assert_int_equal(tgt_dev.writes, 0);
	mr_del_subregion(f->root, win);
	assert_call(&f->mock, 1, EV_DEL, 0x30010, 4);
	mr_free(win);
	mr_free(tgt);
}

static void test_disabling_region_removes_ioeventfds(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x4, 0, false, 0, &f->e[0]), 0);
	f->mock.nr_calls = 0;
	mr_set_enabled(f->dev_mr, false);
	assert_int_equal(nr_ioeventfds(f), 0);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 4, 1, 4), AS_UNASSIGNED);
	mr_set_enabled(f->dev_mr, true);
	assert_int_equal(f->mock.nr_calls, 2);
	assert_call(&f->mock, 0, EV_DEL, DEV_BASE + 4, 0);
	assert_call(&f->mock, 1, EV_ADD, DEV_BASE + 4, 0);
}

/* ---- refusals and the fallback -------------------------------------------------------- */

static void test_refusal_falls_back_with_one_warning(void **state)
{
	struct fixture *f = *state;
	unsigned long warnings = log_count(LOG_WARN);
	struct mem_region *other = mr_new_io("other", 0x100, &dev_ops, NULL);
	int err = 0;

	f->mock.refuse_all = true;
	f->mock.refuse_err = -EEXIST;
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x40, 4, true, 1, &f->e[0]), 0);
	assert_int_equal(f->mock.nr_calls, 1);
	assert_int_equal(path_of(f, DEV_BASE + 0x40, &f->e[0], &err), IOEVENTFD_PATH_FALLBACK);
	assert_int_equal(err, EEXIST);
	assert_int_equal(stats_of(f).kvm_refusals, 1);
	assert_int_equal(log_count(LOG_WARN) - warnings, 1);
	/* Trapped writes now take the fallback. */
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x40, 1, 4), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[0]), 1);
	assert_int_equal(atomic_load(&f->e[0].fallback_signals), 1);
	assert_int_equal(stats_of(f).fallback_signals, 1);
	assert_int_equal(f->dev.writes, 0);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x40, 2, 4), AS_OK);
	assert_int_equal(f->dev.writes, 1);
	/* Unrelated commits neither re-offer nor warn again. */
	assert_int_equal(mr_add_subregion(f->root, 0x50000, other, 0), 0);
	mr_del_subregion(f->root, other);
	mr_free(other);
	assert_int_equal(f->mock.nr_calls, 1);
	assert_int_equal(log_count(LOG_WARN) - warnings, 1);
	assert_int_equal(path_of(f, DEV_BASE + 0x40, &f->e[0], &err), IOEVENTFD_PATH_FALLBACK);
	assert_int_equal(err, EEXIST);
	/* It never reached KVM, so its deletion does not either. */
	assert_int_equal(mr_del_eventfd(f->dev_mr, 0x40, 4, true, 1, &f->e[0]), 0);
	assert_int_equal(f->mock.nr_calls, 1);
}

static void test_kvm_collision_refused(void **state)
{
	struct fixture *f = *state;
	unsigned long warnings = log_count(LOG_WARN);
	int err;

	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x0, 4, false, 0, &f->e[0]), 0);
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x0, 4, true, 7, &f->e[1]), 0);
	assert_int_equal(path_of(f, DEV_BASE, &f->e[0], &err), IOEVENTFD_PATH_KVM);
	assert_int_equal(path_of(f, DEV_BASE, &f->e[1], &err), IOEVENTFD_PATH_FALLBACK);
	assert_int_equal(err, EEXIST);
	assert_int_equal(log_count(LOG_WARN) - warnings, 1);
	/* As KVM would: the registered wildcard takes the write. */
	assert_int_equal(address_space_write(f->as, DEV_BASE, 7, 4), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[0]), 1);
	assert_int_equal(signals(&f->e[1]), 0);
}

static void test_eopnotsupp_is_quiet(void **state)
{
	struct fixture *f = *state;
	unsigned long warnings = log_count(LOG_WARN);
	int err = 1;

	f->mock.refuse_all = true;
	f->mock.refuse_err = -EOPNOTSUPP;
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x0, 0, false, 0, &f->e[0]), 0);
	assert_int_equal(path_of(f, DEV_BASE, &f->e[0], &err), IOEVENTFD_PATH_FALLBACK);
	assert_int_equal(err, 0);
	assert_int_equal(log_count(LOG_WARN), warnings);
	assert_int_equal(stats_of(f).kvm_refusals, 0);
	assert_int_equal(address_space_write(f->as, DEV_BASE, 5, 2), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[0]), 1);
}

static void test_enospc_refusal_in_dump(void **state)
{
	struct fixture *f = *state;
	unsigned long warnings = log_count(LOG_WARN);
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	f->mock.refuse_all = true;
	f->mock.refuse_err = -ENOSPC;
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x20, 2, true, 0x55, &f->e[0]), 0);
	assert_int_equal(log_count(LOG_WARN) - warnings, 1);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x20, 0x55, 2), AS_IOEVENTFD);
	out = open_memstream(&text, &len);
	address_space_dump_ioeventfds(f->as, out);
	fclose(out);
	assert_string_equal(text, "ioeventfds: AS \"memory\"\n"
				  "  0000000000010020 len 2 data 0x55 userspace (ENOSPC) "
				  "signals kvm=0 fallback=1: dev+0x20\n\n");
	free(text);
}

static void test_userspace_only_never_offered(void **state)
{
	struct fixture *f = *state;
	int err = 1;

	mr_set_ioeventfd_userspace_only(f->dev_mr, true);
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x10, 4, true, 3, &f->e[0]), 0);
	assert_int_equal(f->mock.nr_calls, 0);
	assert_int_equal(path_of(f, DEV_BASE + 0x10, &f->e[0], &err), IOEVENTFD_PATH_FALLBACK);
	assert_int_equal(err, 0);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x10, 3, 4), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[0]), 1);
	/* Switching it off offers it; switching it back withdraws it. */
	mr_set_ioeventfd_userspace_only(f->dev_mr, false);
	assert_int_equal(f->mock.nr_calls, 1);
	assert_call(&f->mock, 0, EV_ADD, DEV_BASE + 0x10, 4);
	assert_int_equal(path_of(f, DEV_BASE + 0x10, &f->e[0], NULL), IOEVENTFD_PATH_KVM);
	mr_set_ioeventfd_userspace_only(f->dev_mr, true);
	assert_int_equal(f->mock.nr_calls, 2);
	assert_call(&f->mock, 1, EV_DEL, DEV_BASE + 0x10, 4);
	assert_int_equal(path_of(f, DEV_BASE + 0x10, &f->e[0], NULL), IOEVENTFD_PATH_FALLBACK);
}

static void test_fallback_matching_rules(void **state)
{
	struct fixture *f = *state;
	static const unsigned sizes[] = { 1, 2, 4, 8 };

	memory_transaction_begin();
	mr_add_eventfd(f->dev_mr, 0x0, 0, false, 0, &f->e[0]);
	mr_add_eventfd(f->dev_mr, 0x10, 4, true, 5, &f->e[1]);
	mr_add_eventfd(f->dev_mr, 0x20, 2, false, 0, &f->e[2]);
	mr_add_eventfd(f->dev_mr, 0x30, 1, true, 0xab, &f->e[3]);
	memory_transaction_commit();
	/* No listener: every entry is on the userspace path. */
	f->mock.nr_calls = 0;
	address_space_set_listener(f->as, NULL, NULL);
	assert_int_equal(f->mock.nr_calls, 4);
	assert_int_equal(f->mock.calls[0].kind, EV_DEL);
	assert_int_equal(path_of(f, DEV_BASE, &f->e[0], NULL), IOEVENTFD_PATH_FALLBACK);

	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(address_space_write(f->as, DEV_BASE, 0, sizes[i]), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[0]), 4);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 1, 0, 1), AS_OK);

	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x10, 5, 4), AS_IOEVENTFD);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x10, 6, 4), AS_OK);
	assert_int_equal(f->dev.last_data, 6);
	assert_int_equal(f->dev.last_offset, 0x10);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x10, 5, 2), AS_OK);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x10, 5, 8), AS_OK);
	assert_int_equal(signals(&f->e[1]), 1);

	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x20, 0xffff, 2), AS_IOEVENTFD);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x20, 0xffff, 4), AS_OK);
	assert_int_equal(signals(&f->e[2]), 1);

	/* The value is compared at the access size. */
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x30, 0x12ab, 1), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[3]), 1);
	assert_int_equal(f->dev.writes, 5);
	assert_int_equal(stats_of(f).fallback_signals, 7);
	/* Back on: replayed as additions. */
	address_space_set_listener(f->as, &mock_ops, &f->mock);
	assert_int_equal(f->mock.nr_registered, 4);
}

static void test_add_eventfd_validation(void **state)
{
	struct fixture *f = *state;
	struct mem_region *mr = f->dev_mr;
	struct event_notifier *e = &f->e[0];

	assert_int_equal(mr_add_eventfd(mr, 0, 3, false, 0, e), -EINVAL);
	assert_int_equal(mr_add_eventfd(mr, 0, 16, false, 0, e), -EINVAL);
	assert_int_equal(mr_add_eventfd(mr, 0, 0, true, 1, e), -EINVAL);
	assert_int_equal(mr_add_eventfd(mr, 0xffe, 4, false, 0, e), -EINVAL);
	assert_int_equal(mr_add_eventfd(mr, 0x1000, 0, false, 0, e), -EINVAL);
	assert_int_equal(mr_add_eventfd(mr, UINT64_MAX, 8, false, 0, e), -EINVAL);
	assert_int_equal(mr_add_eventfd(mr, 0, 4, false, 0, NULL), -EINVAL);
	assert_int_equal(mr_add_eventfd(f->root, 0, 4, false, 0, e), -EINVAL);
	assert_int_equal(mr_add_eventfd(mr, 0xffc, 4, false, 0, e), 0);
	assert_int_equal(mr_add_eventfd(mr, 0xfff, 0, false, 0, e), 0);
	assert_int_equal(mr_add_eventfd(mr, 0x10, 4, true, 1, e), 0);
	assert_int_equal(mr_add_eventfd(mr, 0x10, 4, true, 1, e), -EEXIST);
	assert_int_equal(mr_add_eventfd(mr, 0x10, 4, true, 2, e), 0);
	/* Without datamatch the value is not part of the identity. */
	assert_int_equal(mr_add_eventfd(mr, 0x20, 4, false, 5, e), 0);
	assert_int_equal(mr_add_eventfd(mr, 0x20, 4, false, 6, e), -EEXIST);
	assert_int_equal(mr_del_eventfd(mr, 0x30, 4, false, 0, e), -ENOENT);
	assert_int_equal(mr_del_eventfd(mr, 0x10, 4, true, 3, e), -ENOENT);
	assert_int_equal(mr_del_eventfd(mr, 0x10, 4, true, 1, &f->e[1]), -ENOENT);
	assert_int_equal(mr_del_eventfd(mr, 0x10, 2, true, 1, e), -ENOENT);
	assert_int_equal(mr_del_eventfd(mr, 0x10, 4, true, 1, e), 0);
	assert_int_equal(mr_del_eventfd(mr, 0x10, 4, true, 1, e), -ENOENT);
	assert_int_equal(mr_del_eventfd(mr, 0x20, 4, false, 0, e), 0);
	assert_int_equal(nr_ioeventfds(f), 3);
}

/* ---- memslots, coalesced zones, listener lifetime ------------------------------------ */

static void test_ram_ranges_follow_the_map(void **state)
{
	struct fixture *f = *state;
	static uint8_t host[0x1000];
	struct mem_region *ram = mr_new_ram("ram", 0x100000, host, -1, 0);
	struct mem_region *hole = mr_new_io("hole", 0x1000, &dev_ops, NULL);

	assert_int_equal(mr_add_subregion(f->root, 0x200000, ram, 0), 0);
	assert_int_equal(f->mock.nr_calls, 1);
	assert_call(&f->mock, 0, RAM_ADD, 0x200000, 0x100000);
	/* A hole punched in the middle: the slot goes, two smaller ones come. */
	assert_int_equal(mr_add_subregion(f->root, 0x280000, hole, 1), 0);
	assert_int_equal(f->mock.nr_calls, 4);
	assert_call(&f->mock, 1, RAM_DEL, 0x200000, 0x100000);
	assert_call(&f->mock, 2, RAM_ADD, 0x200000, 0x80000);
	assert_call(&f->mock, 3, RAM_ADD, 0x281000, 0x7f000);
	mr_del_subregion(f->root, hole);
	assert_int_equal(f->mock.nr_calls, 7);
	assert_call(&f->mock, 4, RAM_DEL, 0x200000, 0x80000);
	assert_call(&f->mock, 5, RAM_DEL, 0x281000, 0x7f000);
	assert_call(&f->mock, 6, RAM_ADD, 0x200000, 0x100000);
	mr_del_subregion(f->root, ram);
	assert_call(&f->mock, 7, RAM_DEL, 0x200000, 0x100000);
	assert_int_equal(f->mock.ram_slots, 0);
	mr_free(hole);
	mr_free(ram);
}

static void test_coalesced_zones(void **state)
{
	struct fixture *f = *state;

	mr_set_coalesced(f->dev_mr, true);
	assert_int_equal(f->mock.nr_calls, 1);
	assert_call(&f->mock, 0, COALESCED_ADD, DEV_BASE, 0x1000);
	mr_set_address(f->dev_mr, 0x30000);
	assert_call(&f->mock, 1, COALESCED_DEL, DEV_BASE, 0x1000);
	assert_call(&f->mock, 2, COALESCED_ADD, 0x30000, 0x1000);
	mr_set_coalesced(f->dev_mr, false);
	assert_call(&f->mock, 3, COALESCED_DEL, 0x30000, 0x1000);
	assert_int_equal(f->mock.nr_calls, 4);
	mr_set_address(f->dev_mr, DEV_BASE);
}

static void test_deletions_before_additions(void **state)
{
	struct fixture *f = *state;
	static uint8_t host[0x1000];
	struct mem_region *ram = mr_new_ram("ram", 0x1000, host, -1, 0);
	struct mem_region *old_ram = mr_new_ram("old-ram", 0x1000, host, -1, 0);
	static const enum call_kind expected[] = {
		EV_DEL, COALESCED_DEL, RAM_DEL, RAM_ADD, COALESCED_ADD, EV_ADD,
	};

	assert_int_equal(mr_add_subregion(f->root, 0x400000, old_ram, 0), 0);
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0, 4, false, 0, &f->e[0]), 0);
	mr_set_coalesced(f->dev_mr, true);
	f->mock.nr_calls = 0;
	memory_transaction_begin();
	assert_int_equal(mr_add_subregion(f->root, 0x500000, ram, 0), 0);
	mr_set_address(f->dev_mr, 0x20000);
	mr_del_subregion(f->root, old_ram);
	memory_transaction_commit();
	assert_int_equal(f->mock.nr_calls, 6);
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(f->mock.calls[i].kind, expected[i]);
	memory_transaction_begin();
	mr_del_subregion(f->root, ram);
	mr_set_address(f->dev_mr, DEV_BASE);
	mr_set_coalesced(f->dev_mr, false);
	memory_transaction_commit();
	mr_free(ram);
	mr_free(old_ram);
}

static void test_free_withdraws_everything(void **state)
{
	struct fixture *f = *state;
	static uint8_t host[0x1000];
	struct mock mock = { 0 };
	struct mem_region *root = mr_new_container("root2", 0x100000);
	struct mem_region *ram = mr_new_ram("ram", 0x1000, host, -1, 0);
	struct mem_region *dev = mr_new_io("dev2", 0x100, &dev_ops, NULL);
	struct address_space *as;
	static const enum call_kind replay[] = { RAM_ADD, COALESCED_ADD, EV_ADD };
	static const enum call_kind removal[] = { EV_DEL, COALESCED_DEL, RAM_DEL };

	assert_int_equal(mr_add_subregion(root, 0, ram, 0), 0);
	assert_int_equal(mr_add_subregion(root, 0x8000, dev, 0), 0);
	mr_set_coalesced(dev, true);
	assert_int_equal(mr_add_eventfd(dev, 0x4, 4, false, 0, &f->e[0]), 0);
	as = address_space_new("second", AS_MMIO, root);
	address_space_set_listener(as, &mock_ops, &mock);
	assert_int_equal(mock.nr_calls, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(mock.calls[i].kind, replay[i]);
	address_space_free(as);
	assert_int_equal(mock.nr_calls, 6);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(mock.calls[3 + i].kind, removal[i]);
	assert_int_equal(mock.nr_registered + mock.ram_slots + mock.coalesced_zones, 0);
	assert_int_equal(mock.errors, 0);
	/* The other address space was not told anything. */
	assert_int_equal(f->mock.nr_calls, 0);
	mr_del_subregion(root, ram);
	mr_del_subregion(root, dev);
	mr_free(ram);
	mr_free(dev);
	mr_free(root);
}

static void test_pio_space(void **state)
{
	struct fixture *f = *state;
	struct mock mock = { 0 };
	struct mem_region *io_root = mr_new_container("io", 0x10000);
	struct mem_region *port = mr_new_io("port", 4, &dev_ops, &f->dev);
	struct address_space *as = address_space_new("io", AS_PIO, io_root);

	address_space_set_listener(as, &mock_ops, &mock);
	assert_int_equal(mr_add_subregion(io_root, 0x510, port, 0), 0);
	assert_int_equal(mr_add_eventfd(port, 0, 2, true, 1, &f->e[0]), 0);
	assert_int_equal(mock.nr_calls, 1);
	assert_int_equal(mock.registered[0].is_pio, true);
	assert_int_equal(mock.registered[0].addr, 0x510);
	assert_int_equal(address_space_write(as, 0x510, 1, 2), AS_IOEVENTFD);
	assert_int_equal(address_space_write(as, 0x510, 2, 2), AS_OK);
	assert_int_equal(signals(&f->e[0]), 1);
	address_space_free(as);
	assert_int_equal(mock.nr_registered, 0);
	mr_del_subregion(io_root, port);
	mr_free(port);
	mr_free(io_root);
}

static void test_dump_counts_both_paths(void **state)
{
	struct fixture *f = *state;
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x0, 4, false, 0, &f->e[0]), 0);
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x0, 4, true, 7, &f->e[1]), 0); /* EEXIST */
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x8, 0, false, 0, &f->e[2]), 0);
	event_notifier_set(&f->e[0]);               /* as KVM would signal it */
	event_notifier_set(&f->e[0]);
	signals(&f->e[0]);                          /* consumed ones still count */
	event_notifier_set(&f->e[0]);
	assert_int_equal(address_space_write(f->as, DEV_BASE, 1, 4), AS_IOEVENTFD);
	out = open_memstream(&text, &len);
	address_space_dump_ioeventfds(f->as, out);
	fclose(out);
	assert_string_equal(text,
		"ioeventfds: AS \"memory\"\n"
		"  0000000000010000 len 4 any kvm signals kvm=3 fallback=1: dev+0x0\n"
		"  0000000000010000 len 4 data 0x7 userspace (EEXIST) signals kvm=0 fallback=0: dev+0x0\n"
		"  0000000000010008 len 0 any kvm signals kvm=0 fallback=0: dev+0x8\n"
		"\n");
	free(text);
}

/* ---- dispatch from callbacks and from other threads ------------------------------------- */

struct control {
	struct fixture *f;
	int add_result;
};

/* A "driver ready" register: its handler wires up a doorbell, as virtio
 * does on DRIVER_OK, from inside dispatch. */
static void control_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct control *c = opaque;

	(void)offset;
	(void)data;
	(void)size;
	memory_transaction_begin();
	c->add_result = mr_add_eventfd(c->f->dev_mr, 0x100, 0, false, 0, &c->f->e[3]);
	memory_transaction_commit();
}

static const struct mr_ops control_ops = { .write = control_write };

static void test_callback_changes_topology(void **state)
{
	struct fixture *f = *state;
	struct control c = { .f = f, .add_result = 1 };
	struct mem_region *ctl = mr_new_io("ctl", 4, &control_ops, &c);

	assert_int_equal(mr_add_subregion(f->root, 0x60000, ctl, 0), 0);
	assert_int_equal(address_space_write(f->as, 0x60000, 4, 4), AS_OK);
	assert_int_equal(c.add_result, 0);
	assert_call(&f->mock, 0, EV_ADD, DEV_BASE + 0x100, 0);
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x100, 1, 4), AS_IOEVENTFD);
	assert_int_equal(signals(&f->e[3]), 1);
	mr_del_subregion(f->root, ctl);
	mr_free(ctl);
}

#define RACE_WRITES 100000
#define RACE_MOVES 1000
#define RACE_ADDR (DEV_BASE + 0x40)

struct race {
	struct fixture *f;
	unsigned long result[AS_INVALID + 1][2];  /* [result][data == 1] */
};

static void *race_writer(void *opaque)
{
	struct race *r = opaque;

	for (unsigned i = 0; i < RACE_WRITES; i++) {
		uint64_t data = (i & 1) ? 1 : 2;
		int res = address_space_write(r->f->as, RACE_ADDR, data, 4);

		if (res >= AS_OK && res <= AS_INVALID)
			r->result[res][data == 1]++;
	}
	return NULL;
}

static void test_dispatch_races_with_moves(void **state)
{
	struct fixture *f = *state;
	struct race r = { .f = f };
	unsigned long hits, ok, unassigned, ringing;
	pthread_t writer;

	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x40, 4, true, 1, &f->e[0]), 0);
	assert_int_equal(pthread_create(&writer, NULL, race_writer, &r), 0);
	for (unsigned i = 0; i < RACE_MOVES; i++)
		mr_set_address(f->dev_mr, (i & 1) ? DEV_BASE : 0x800000);
	pthread_join(writer, NULL);

	/* The value 1 rings the doorbell whenever the device is mapped there;
	 * it never reaches the callback, and 2 never rings it. */
	assert_int_equal(r.result[AS_OK][1], 0);
	assert_int_equal(r.result[AS_IOEVENTFD][0], 0);
	assert_int_equal(r.result[AS_RAM][0] + r.result[AS_RAM][1], 0);
	assert_int_equal(r.result[AS_INVALID][0] + r.result[AS_INVALID][1], 0);
	ringing = r.result[AS_IOEVENTFD][1];
	ok = r.result[AS_OK][0];
	unassigned = r.result[AS_UNASSIGNED][0] + r.result[AS_UNASSIGNED][1];
	hits = ringing + ok + unassigned;
	assert_int_equal(hits, RACE_WRITES);
	assert_int_equal(f->dev.writes, ok);
	assert_int_equal(atomic_load(&f->e[0].fallback_signals), ringing);
	assert_int_equal(signals(&f->e[0]), ringing);
	assert_int_equal(stats_of(f).unassigned, unassigned);
	assert_true(f->mock.total_calls >= RACE_MOVES);
	print_message("race: %lu rang, %lu reached the device, %lu unassigned\n",
		      ringing, ok, unassigned);
}

/*
 * A vCPU that looked a doorbell up in the flat view just before the commit
 * that deleted it signals it afterwards, when its owner may already have
 * closed the notifier (virtio's stop_notifiers does, right after the
 * commit).  The old view holds the eventfd open: the late signal reaches
 * that eventfd, and no new file can take its number, until the view goes.
 */
static void test_old_view_keeps_eventfd_open(void **state)
{
	struct fixture *f = *state;
	struct event_notifier e;
	struct flatview *old;
	uint64_t value = 0;
	int fd, newer;

	assert_int_equal(event_notifier_init(&e, false), 0);
	assert_int_equal(mr_add_eventfd(f->dev_mr, 0x100, 0, false, 0, &e), 0);
	old = flatview_get(f->as);               /* the racing vCPU's lookup */
	assert_int_equal(mr_del_eventfd(f->dev_mr, 0x100, 0, false, 0, &e), 0);
	fd = e.fd;
	event_notifier_cleanup(&e);

	/* Still open, and still the same eventfd: nothing reused the number. */
	assert_true(fcntl(fd, F_GETFD) >= 0);
	newer = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(newer >= 0);
	assert_int_not_equal(newer, fd);
	assert_int_equal(address_space_write_view(f->as, old, DEV_BASE + 0x100, 7, 4),
			 AS_IOEVENTFD);
	assert_int_equal(read(fd, &value, sizeof(value)), sizeof(value));
	assert_int_equal(value, 1);
	assert_int_equal(read(newer, &value, sizeof(value)), -1);  /* nothing there */
	assert_int_equal(atomic_load(&e.fallback_signals), 1);
	/* The current view has forgotten it: the write reaches the device. */
	assert_int_equal(address_space_write(f->as, DEV_BASE + 0x100, 7, 4), AS_OK);

	/* The last view that named it is gone: now it is closed. */
	flatview_put(old);
	errno = 0;
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	close(newer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_batched_adds_and_noop_commit),
		T(test_moving_region_moves_ioeventfds),
		T(test_reparenting),
		T(test_alias_exposes_target_ioeventfds),
		T(test_disabling_region_removes_ioeventfds),
		T(test_refusal_falls_back_with_one_warning),
		T(test_kvm_collision_refused),
		T(test_eopnotsupp_is_quiet),
		T(test_enospc_refusal_in_dump),
		T(test_userspace_only_never_offered),
		T(test_fallback_matching_rules),
		T(test_add_eventfd_validation),
		T(test_ram_ranges_follow_the_map),
		T(test_coalesced_zones),
		T(test_deletions_before_additions),
		T(test_free_withdraws_everything),
		T(test_pio_space),
		T(test_dump_counts_both_paths),
		T(test_callback_changes_topology),
		T(test_dispatch_races_with_moves),
		T(test_old_view_keeps_eventfd_open),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
