/*
 * Device-write ioeventfds without a kernel: the rules with the kernel's
 * errnos, the kernel path (a test backend that performs the write when the
 * eventfd is signalled, as vfio-pci does), the fallback path (the backend
 * refuses: kickvm's handler writes through region_write, counted, nothing
 * while decode is off), the 1000 limit, removal and reset, and the KVM
 * ioeventfd as the address space lists it.
 *
 * The "guest write" comes two ways: as KVM would deliver it (the test
 * listener accepted the registration and signals the eventfd itself), or as
 * a trapped write through address_space_write() (the memory layer matches it
 * in userspace and signals the same eventfd).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "kickvm/vfio_backend.h"
#include "vfio/vfio_ioeventfd.h"

#define BAR0_ADDR   0xfe000000ull
#define BAR0_SIZE   0x4000
#define BAR2_SIZE   0x1000
#define MSIX_OFF    0x2000        /* 96 vectors: 0x2000-0x25ff */
#define MSIX_SIZE   (96 * 16)
#define REG         0x1000
#define VALUE       0xabcdu

/* ---- a test backend: records calls, plays the kernel on request ------------------ */

struct write_rec {
	unsigned index, width;
	uint64_t offset, data;
};

struct kernel_ioeventfd {
	struct write_rec w;
	int fd;
};

#define MAX_KERNEL 1100
#define MAX_WRITES 64

struct test_backend {
	struct vfio_backend base;
	int ioeventfd_ret;                 /* 0: the "kernel" takes them */
	unsigned ioeventfd_calls, removals;
	struct write_rec last_call;
	int last_fd;
	struct kernel_ioeventfd kernel[MAX_KERNEL];
	unsigned nr_kernel;
	/* Device writes through region_write (kickvm's path) and by the
	 * "kernel" (the fast path), kept apart. */
	struct write_rec region_writes[MAX_WRITES], kernel_writes[MAX_WRITES];
	unsigned nr_region_writes, nr_kernel_writes;
	int region_write_ret;              /* 0: succeed */
	/* Called on each registration (fd >= 0) before it is judged. */
	void (*on_register)(struct test_backend *tb);
	void *hook_opaque;
};

static int tb_ioeventfd(struct vfio_backend *b, unsigned index, uint64_t offset,
			unsigned width, uint64_t data, int fd)
{
	struct test_backend *tb = (struct test_backend *)b;
	struct write_rec w = { index, width, offset, data };

	if (fd >= 0 && tb->on_register)
		tb->on_register(tb);
	tb->ioeventfd_calls++;
	tb->last_call = w;
	tb->last_fd = fd;
	if (tb->ioeventfd_ret)
		return tb->ioeventfd_ret;
	if (fd == -1) {
		for (unsigned i = 0; i < tb->nr_kernel; i++)
			if (!memcmp(&tb->kernel[i].w, &w, sizeof(w))) {
				tb->kernel[i] = tb->kernel[--tb->nr_kernel];
				tb->removals++;
				return 0;
			}
		return -ENODEV;
	}
	assert_true(tb->nr_kernel < MAX_KERNEL);
	tb->kernel[tb->nr_kernel++] = (struct kernel_ioeventfd){ w, fd };
	return 0;
}

static int tb_region_write(struct vfio_backend *b, unsigned index, uint64_t offset,
			   const void *buf, size_t len)
{
	struct test_backend *tb = (struct test_backend *)b;
	uint64_t v = 0;

	if (tb->region_write_ret)
		return tb->region_write_ret;
	memcpy(&v, buf, len);
	/* Counted always, recorded while there is room (the stress test
	 * writes more than the tests look at). */
	if (tb->nr_region_writes < MAX_WRITES)
		tb->region_writes[tb->nr_region_writes] =
			(struct write_rec){ index, (unsigned)len, offset, v };
	tb->nr_region_writes++;
	return (int)len;
}

/* What vfio-pci does when an eventfd it holds fires: read it, one write. */
static unsigned tb_kernel_run(struct test_backend *tb)
{
	unsigned n = 0;

	for (unsigned i = 0; i < tb->nr_kernel; i++) {
		uint64_t count;

		if (read(tb->kernel[i].fd, &count, sizeof(count)) != sizeof(count))
			continue;
		assert_true(tb->nr_kernel_writes < MAX_WRITES);
		tb->kernel_writes[tb->nr_kernel_writes++] = tb->kernel[i].w;
		n++;
	}
	return n;
}

static const struct vfio_backend_ops tb_ops = {
	.ioeventfd = tb_ioeventfd,
	.region_write = tb_region_write,
};

static void assert_write(const struct write_rec *w, unsigned index, uint64_t offset,
			 unsigned width, uint64_t data)
{
	assert_int_equal(w->index, index);
	assert_int_equal(w->offset, offset);
	assert_int_equal(w->width, width);
	assert_int_equal(w->data, data);
}

/* ---- a listener standing in for KVM ---------------------------------------------- */

#define MAX_KVM 1100

struct kvm_mock {
	int refuse_err;                    /* 0: accept */
	struct ioeventfd registered[MAX_KVM];
	unsigned nr, adds, dels;
};

static int kvm_add(void *opaque, const struct ioeventfd *ev)
{
	struct kvm_mock *k = opaque;

	k->adds++;
	if (k->refuse_err)
		return k->refuse_err;
	assert_true(k->nr < MAX_KVM);
	k->registered[k->nr++] = *ev;
	return 0;
}

static void kvm_del(void *opaque, const struct ioeventfd *ev)
{
	struct kvm_mock *k = opaque;

	k->dels++;
	for (unsigned i = 0; i < k->nr; i++)
		if (k->registered[i].e == ev->e && k->registered[i].addr == ev->addr) {
			k->registered[i] = k->registered[--k->nr];
			return;
		}
	fail_msg("KVM asked to remove an ioeventfd it does not have");
}

static const struct mem_listener kvm_ops = { .eventfd_add = kvm_add, .eventfd_del = kvm_del };

/* A guest write as KVM delivers it: the matching ioeventfd's eventfd is
 * signalled, no exit.  Returns false when KVM has nothing there. */
static bool kvm_guest_write(struct kvm_mock *k, uint64_t addr, uint64_t data, unsigned len)
{
	for (unsigned i = 0; i < k->nr; i++) {
		const struct ioeventfd *ev = &k->registered[i];

		if (ev->addr == addr && ev->len == len && (!ev->match_data || ev->data == data)) {
			assert_int_equal(event_notifier_set(ev->e), 0);
			return true;
		}
	}
	return false;
}

/* ---- fixture ------------------------------------------------------------------------ */

struct fixture {
	struct test_backend tb;
	struct kvm_mock kvm;
	struct event_loop *loop;
	struct mem_region *root, *bar0;
	struct address_space *as;
	struct vfio_ioeventfd_set *set;
	bool decode_on;
	unsigned forwarded;                /* trapped writes the BAR region got */
	uint64_t forwarded_data;
};

static uint64_t bar_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque;
	(void)offset;
	(void)size;
	return 0;
}

/* The model's trapped-BAR write: would forward to the device. */
static void bar_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct fixture *f = opaque;

	(void)offset;
	(void)size;
	f->forwarded++;
	f->forwarded_data = data;
}

static const struct mr_ops bar_ops = { .read = bar_read, .write = bar_write };

static bool decode_enabled(void *opaque, unsigned bar)
{
	assert_int_equal(bar, 0);
	return ((struct fixture *)opaque)->decode_on;
}

static const struct vfio_ioeventfd_limits limits = {
	.bar_size = { BAR0_SIZE, 0, BAR2_SIZE },
	.msix_table_bar = 0,
	.msix_table_offset = MSIX_OFF,
	.msix_table_size = MSIX_SIZE,
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct vfio_ioeventfd_config cfg;

	if (!f)
		return -1;
	f->tb.base.ops = &tb_ops;
	strcpy(f->tb.base.name, "0000:01:00.0");
	f->decode_on = true;
	f->loop = event_loop_new("test");
	f->root = mr_new_container("system", UINT64_MAX);
	f->bar0 = mr_new_io("dev BAR 0", BAR0_SIZE, &bar_ops, f);
	if (!f->loop || !f->root || !f->bar0 || mr_add_subregion(f->root, BAR0_ADDR, f->bar0, 0))
		return -1;
	f->as = address_space_new("memory", AS_MMIO, f->root);
	address_space_set_listener(f->as, &kvm_ops, &f->kvm);
	cfg = (struct vfio_ioeventfd_config){
		.name = "dev0", .backend = &f->tb.base, .loop = f->loop, .limits = limits,
		.decode_enabled = decode_enabled, .opaque = f,
	};
	if (vfio_ioeventfd_set_new(&cfg, &f->set))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vfio_ioeventfd_set_free(f->set);
	/* Everything the set put into KVM and the backend is gone. */
	assert_int_equal(f->kvm.nr, 0);
	assert_int_equal(f->tb.nr_kernel, 0);
	address_space_free(f->as);
	mr_del_subregion(f->root, f->bar0);
	mr_free(f->bar0);
	mr_free(f->root);
	event_loop_free(f->loop);
	free(f);
	return 0;
}

static struct vfio_ioeventfd_req req_at(struct fixture *f, uint64_t offset, unsigned width,
					uint64_t data, bool dynamic)
{
	return (struct vfio_ioeventfd_req){
		.bar = 0, .offset = offset, .width = width, .data = data,
		.mr = f->bar0, .mr_offset = offset, .dynamic = dynamic,
	};
}

static int add(struct fixture *f, uint64_t offset, unsigned width, uint64_t data)
{
	struct vfio_ioeventfd_req r = req_at(f, offset, width, data, false);

	return vfio_ioeventfd_add(f->set, &r);
}

static void first_info(const struct vfio_ioeventfd_info *info, void *opaque)
{
	struct vfio_ioeventfd_info *out = opaque;

	if (!out->width)
		*out = *info;
}

static struct vfio_ioeventfd_info info_of_first(struct fixture *f)
{
	struct vfio_ioeventfd_info info = { 0 };

	vfio_ioeventfd_for_each(f->set, first_info, &info);
	assert_int_not_equal(info.width, 0);
	return info;
}

/* ---- the rules ------------------------------------------------------------------------ */

static void test_rules(void **state)
{
	const struct vfio_ioeventfd_limits *l = &limits;
	const unsigned W32 = VFIO_IOEVENTFD_WIDTH_32;

	(void)state;
	/* Width flags: exactly one of the four, nothing else. */
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, 0, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, 0x3, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, 0xf, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, 0x10, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32 | 0x10, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32 | 0x80000000u, 5, false, 0), -EINVAL);
	for (unsigned w = 1; w <= 8; w <<= 1)
		assert_int_equal(vfio_ioeventfd_check(l, 0, REG, vfio_ioeventfd_width_flag(w), 5,
						      false, 0), VFIO_IOEVENTFD_ADD);
	assert_int_equal(vfio_ioeventfd_width_flag(3), 0);
	assert_int_equal(vfio_ioeventfd_width_flag(16), 0);
	assert_int_equal(vfio_ioeventfd_width_flag(4), 4);   /* the kernel's bit values */
	assert_int_equal(vfio_ioeventfd_width_flag(8), 8);

	/* fd: -1 removes, below that is invalid. */
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, -2, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, -2, true, 1), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, -1, true, 1), VFIO_IOEVENTFD_REMOVE);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, -1, false, 1), -ENODEV);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, 0, true, 1), -EEXIST);

	/* Only BARs: ROM (6), config (7), VGA (8) are not. */
	for (unsigned region = 6; region <= 9; region++)
		assert_int_equal(vfio_ioeventfd_check(l, region, 0, W32, 5, false, 0), -EINVAL);
	/* BAR1 does not exist (size 0). */
	assert_int_equal(vfio_ioeventfd_check(l, 1, 0, VFIO_IOEVENTFD_WIDTH_8, 5, false, 0), -EINVAL);

	/* Inside the BAR, up to its last byte. */
	assert_int_equal(vfio_ioeventfd_check(l, 0, BAR0_SIZE - 4, W32, 5, false, 0), VFIO_IOEVENTFD_ADD);
	assert_int_equal(vfio_ioeventfd_check(l, 0, BAR0_SIZE - 3, W32, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, BAR0_SIZE, VFIO_IOEVENTFD_WIDTH_8, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, UINT64_MAX - 3, VFIO_IOEVENTFD_WIDTH_64, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 2, BAR2_SIZE - 8, VFIO_IOEVENTFD_WIDTH_64, 5, false, 0), VFIO_IOEVENTFD_ADD);
	/* Bounds come before the lookup: a removal out of range is EINVAL. */
	assert_int_equal(vfio_ioeventfd_check(l, 0, BAR0_SIZE, W32, -1, true, 1), -EINVAL);

	/* Any byte of the MSI-X table, in its BAR only. */
	assert_int_equal(vfio_ioeventfd_check(l, 0, MSIX_OFF - 4, W32, 5, false, 0), VFIO_IOEVENTFD_ADD);
	assert_int_equal(vfio_ioeventfd_check(l, 0, MSIX_OFF - 3, W32, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, MSIX_OFF, VFIO_IOEVENTFD_WIDTH_8, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, MSIX_OFF + MSIX_SIZE - 1, VFIO_IOEVENTFD_WIDTH_8, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 0, MSIX_OFF + MSIX_SIZE, W32, 5, false, 0), VFIO_IOEVENTFD_ADD);
	assert_int_equal(vfio_ioeventfd_check(l, 0, MSIX_OFF - 4, VFIO_IOEVENTFD_WIDTH_64, 5, false, 0), -EINVAL);
	assert_int_equal(vfio_ioeventfd_check(l, 2, 0, W32, 5, false, 0), VFIO_IOEVENTFD_ADD);

	/* 1000 per device; removal is never limited. */
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, 5, false, 999), VFIO_IOEVENTFD_ADD);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, 5, false, 1000), -ENOSPC);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, -1, true, 1000), VFIO_IOEVENTFD_REMOVE);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, -1, false, 1000), -ENODEV);
	assert_int_equal(vfio_ioeventfd_check(l, 0, REG, W32, 5, true, 1000), -EEXIST);
}

/* The set applies the same rules and leaves nothing behind on a refusal. */
static void test_rules_through_the_set(void **state)
{
	struct fixture *f = *state;
	struct vfio_ioeventfd_req r;

	assert_int_equal(add(f, REG, 4, VALUE), 0);
	assert_int_equal(add(f, REG, 4, VALUE), -EEXIST);
	assert_int_equal(add(f, REG, 3, VALUE), -EINVAL);
	assert_int_equal(add(f, MSIX_OFF + 8, 4, VALUE), -EINVAL);
	assert_int_equal(add(f, BAR0_SIZE - 2, 4, VALUE), -EINVAL);
	r = req_at(f, REG, 4, VALUE, false);
	r.bar = 6;
	assert_int_equal(vfio_ioeventfd_add(f->set, &r), -EINVAL);
	r = req_at(f, REG + 4, 4, VALUE, false);
	r.mr = NULL;
	assert_int_equal(vfio_ioeventfd_add(f->set, &r), -EINVAL);
	r = req_at(f, REG + 4, 4, VALUE, false);
	r.mr_offset = BAR0_SIZE;       /* not inside the trapped region */
	assert_int_equal(vfio_ioeventfd_add(f->set, &r), -EINVAL);
	{
		/* A mapped piece of the BAR: KVM would never see the write. */
		static uint8_t page[4096];
		struct mem_region *mapped = mr_new_ram("dev BAR 0 mmap", sizeof(page), page, -1, 0);

		r = req_at(f, REG + 4, 4, VALUE, false);
		r.mr = mapped;
		r.mr_offset = 4;
		assert_int_equal(vfio_ioeventfd_add(f->set, &r), -EINVAL);
		mr_free(mapped);
	}
	/* Same register, another value or width: distinct entries. */
	assert_int_equal(add(f, REG, 4, VALUE + 1), 0);
	assert_int_equal(add(f, REG, 2, VALUE), 0);

	assert_int_equal(vfio_ioeventfd_count(f->set), 3);
	assert_int_equal(f->tb.ioeventfd_calls, 3);
	assert_int_equal(f->tb.nr_kernel, 3);
	assert_int_equal(f->kvm.nr, 3);

	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 4, VALUE + 2), -ENODEV);
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 3, VALUE), -EINVAL);
	assert_int_equal(vfio_ioeventfd_del(f->set, 7, REG, 4, VALUE), -EINVAL);
	assert_int_equal(vfio_ioeventfd_count(f->set), 3);
}

/* ---- the kernel path ------------------------------------------------------------------- */

struct as_entry {
	unsigned n;
	struct ioeventfd ev;
};

static void collect(const struct ioeventfd *ev, void *opaque)
{
	struct as_entry *a = opaque;

	if (a->n++ == 0)
		a->ev = *ev;
}

static void test_kernel_path(void **state)
{
	struct fixture *f = *state;
	struct vfio_ioeventfd_info info;
	struct as_entry seen = { 0 };

	assert_int_equal(add(f, REG, 4, VALUE), 0);

	/* The backend was asked to write VALUE at BAR0+REG on this eventfd. */
	assert_int_equal(f->tb.ioeventfd_calls, 1);
	assert_write(&f->tb.last_call, 0, REG, 4, VALUE);
	assert_true(f->tb.last_fd >= 0);

	/* The address space lists one KVM ioeventfd with datamatch, on the
	 * trapped BAR at that register, on KVM's path. */
	address_space_for_each_ioeventfd(f->as, collect, &seen);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.ev.addr, BAR0_ADDR + REG);
	assert_int_equal(seen.ev.len, 4);
	assert_true(seen.ev.match_data);
	assert_int_equal(seen.ev.data, VALUE);
	assert_ptr_equal(seen.ev.mr, f->bar0);
	assert_int_equal(seen.ev.offset, REG);
	assert_int_equal(seen.ev.path, IOEVENTFD_PATH_KVM);
	assert_int_equal(seen.ev.e->fd, f->tb.last_fd);   /* one eventfd for both */

	/* KVM signals, the kernel writes; kickvm does nothing. */
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 4));
	assert_int_equal(tb_kernel_run(&f->tb), 1);
	assert_int_equal(f->tb.nr_kernel_writes, 1);
	assert_write(&f->tb.kernel_writes[0], 0, REG, 4, VALUE);
	event_loop_run_once(f->loop, 0);
	assert_int_equal(f->tb.nr_region_writes, 0);
	assert_int_equal(f->forwarded, 0);

	/* A write that exits anyway (another vCPU's view) is matched in
	 * userspace and still performed by the kernel, not forwarded. */
	assert_int_equal(address_space_write(f->as, BAR0_ADDR + REG, VALUE, 4), AS_IOEVENTFD);
	assert_int_equal(tb_kernel_run(&f->tb), 1);
	assert_int_equal(f->tb.nr_kernel_writes, 2);
	/* Another value is no match: the trapped region forwards it. */
	assert_int_equal(address_space_write(f->as, BAR0_ADDR + REG, 0x1, 4), AS_OK);
	assert_int_equal(f->forwarded, 1);
	assert_int_equal(f->forwarded_data, 0x1);
	assert_int_equal(tb_kernel_run(&f->tb), 0);

	info = info_of_first(f);
	assert_int_equal(info.writer, VFIO_IOEVENTFD_BY_BACKEND);
	assert_int_equal(info.backend_err, 0);
	assert_true(info.trap_visible);
	assert_int_equal(info.trap_path, IOEVENTFD_PATH_KVM);
	assert_int_equal(info.userspace_signals, 1);
	assert_int_equal(info.handler_runs, 0);
	assert_int_equal(info.handler_writes, 0);
	assert_string_equal(info.path, "kvm -> kernel");
}

/* ---- the fallback path ----------------------------------------------------------------- */

static void test_fallback_path(void **state)
{
	struct fixture *f = *state;
	struct vfio_ioeventfd_info info;
	struct vfio_ioeventfd_stats st;
	unsigned long warnings = log_count(LOG_WARN);

	f->tb.ioeventfd_ret = -EOPNOTSUPP;
	assert_int_equal(add(f, REG, 4, VALUE), 0);
	assert_int_equal(f->tb.ioeventfd_calls, 1);
	assert_int_equal(f->kvm.nr, 1);
	assert_int_equal(log_count(LOG_WARN), warnings + 1);

	/* One signal: exactly one region_write, same offset, width, data. */
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 4));
	assert_int_equal(event_loop_run_once(f->loop, 1000), 1);
	assert_int_equal(f->tb.nr_region_writes, 1);
	assert_write(&f->tb.region_writes[0], 0, REG, 4, VALUE);
	assert_int_equal(f->forwarded, 0);
	info = info_of_first(f);
	assert_int_equal(info.writer, VFIO_IOEVENTFD_BY_HANDLER);
	assert_int_equal(info.backend_err, EOPNOTSUPP);
	assert_int_equal(info.handler_runs, 1);
	assert_int_equal(info.handler_writes, 1);
	assert_string_equal(info.path, "kvm -> handler (EOPNOTSUPP)");

	/* Nothing signalled: nothing written. */
	assert_int_equal(event_loop_run_once(f->loop, 0), 0);
	assert_int_equal(f->tb.nr_region_writes, 1);

	/* Decode off: the write is dropped, and counted. */
	f->decode_on = false;
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 4));
	assert_int_equal(event_loop_run_once(f->loop, 1000), 1);
	assert_int_equal(f->tb.nr_region_writes, 1);
	info = info_of_first(f);
	assert_int_equal(info.dropped, 1);
	assert_int_equal(info.handler_writes, 1);
	f->decode_on = true;

	/* A trapped write matched in userspace takes the same handler. */
	assert_int_equal(address_space_write(f->as, BAR0_ADDR + REG, VALUE, 4), AS_IOEVENTFD);
	assert_int_equal(event_loop_run_once(f->loop, 1000), 1);
	assert_int_equal(f->tb.nr_region_writes, 2);
	assert_write(&f->tb.region_writes[1], 0, REG, 4, VALUE);

	/* Two signals before the handler runs are one write, as in the kernel
	 * (same register, same value: datamatch). */
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 4));
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 4));
	assert_int_equal(event_loop_run_once(f->loop, 1000), 1);
	assert_int_equal(f->tb.nr_region_writes, 3);
	info = info_of_first(f);
	assert_int_equal(info.handler_runs, 4);

	/* A failing region_write is counted, not retried or lost silently. */
	f->tb.region_write_ret = -EIO;
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 4));
	assert_int_equal(event_loop_run_once(f->loop, 1000), 1);
	f->tb.region_write_ret = 0;

	vfio_ioeventfd_get_stats(f->set, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.by_handler, 1);
	assert_int_equal(st.by_backend, 0);
	assert_int_equal(st.handler_writes, 3);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(st.write_errors, 1);
	assert_int_equal(st.userspace_signals, 1);
	assert_int_equal(f->tb.nr_kernel_writes, 0);
}

/* Every kind of refusal falls back, with the errno in the path. */
static void test_fallback_on_every_refusal(void **state)
{
	struct fixture *f = *state;
	static const int errs[] = { -ENOSPC, -ENOTTY, -EINVAL };
	static const char *const paths[] = {
		"kvm -> handler (ENOSPC)", "kvm -> handler (ENOTTY)", "kvm -> handler (EINVAL)",
	};

	for (unsigned i = 0; i < 3; i++) {
		struct vfio_ioeventfd_info info;

		f->tb.ioeventfd_ret = errs[i];
		assert_int_equal(add(f, REG, 4, VALUE), 0);
		info = info_of_first(f);
		assert_string_equal(info.path, paths[i]);
		assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 4));
		assert_int_equal(event_loop_run_once(f->loop, 1000), 1);
		assert_int_equal(f->tb.nr_region_writes, i + 1);
		assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 4, VALUE), 0);
	}
}

/* KVM refuses too: both hops in userspace, still one write per signal. */
static void test_userspace_both_hops(void **state)
{
	struct fixture *f = *state;
	struct vfio_ioeventfd_info info;

	f->kvm.refuse_err = -ENOSPC;
	f->tb.ioeventfd_ret = -EOPNOTSUPP;
	assert_int_equal(add(f, REG, 2, 0x55), 0);
	assert_int_equal(f->kvm.nr, 0);
	assert_int_equal(address_space_write(f->as, BAR0_ADDR + REG, 0x55, 2), AS_IOEVENTFD);
	assert_int_equal(event_loop_run_once(f->loop, 1000), 1);
	assert_int_equal(f->tb.nr_region_writes, 1);
	assert_write(&f->tb.region_writes[0], 0, REG, 2, 0x55);
	info = info_of_first(f);
	assert_int_equal(info.trap_path, IOEVENTFD_PATH_FALLBACK);
	assert_int_equal(info.kvm_err, ENOSPC);
	assert_string_equal(info.path, "userspace (ENOSPC) -> handler (EOPNOTSUPP)");
}

/* ---- the limit --------------------------------------------------------------------------- */

static void test_enospc_at_1001(void **state)
{
	struct fixture *f = *state;

	/* One transaction: KVM sees the 1000 in one commit. */
	memory_transaction_begin();
	for (unsigned i = 0; i < VFIO_IOEVENTFD_MAX; i++)
		assert_int_equal(add(f, REG, 4, i), 0);
	memory_transaction_commit();
	assert_int_equal(vfio_ioeventfd_count(f->set), 1000);
	assert_int_equal(f->tb.nr_kernel, 1000);
	assert_int_equal(f->kvm.nr, 1000);

	assert_int_equal(add(f, REG, 4, 1000), -ENOSPC);
	assert_int_equal(add(f, REG + 4, 1, 0), -ENOSPC);
	assert_int_equal(f->tb.ioeventfd_calls, 1000);   /* never reached the backend */
	/* Duplicates are still EEXIST at the limit, removals still work. */
	assert_int_equal(add(f, REG, 4, 7), -EEXIST);
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 4, 7), 0);
	assert_int_equal(add(f, REG, 4, 1000), 0);
	assert_int_equal(vfio_ioeventfd_count(f->set), 1000);

	assert_int_equal(vfio_ioeventfd_del_all(f->set, false), 1000);
	assert_int_equal(f->kvm.nr, 0);
	assert_int_equal(f->tb.nr_kernel, 0);
	assert_int_equal(vfio_ioeventfd_reclaim(f->set), 1001);
}

/* ---- removal, reset, late signals ------------------------------------------------------ */

static void test_removal(void **state)
{
	struct fixture *f = *state;
	struct as_entry seen = { 0 };

	assert_int_equal(add(f, REG, 4, VALUE), 0);
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 4, VALUE), 0);
	/* The backend got the kernel's removal: the same key with fd -1. */
	assert_write(&f->tb.last_call, 0, REG, 4, VALUE);
	assert_int_equal(f->tb.last_fd, -1);
	assert_int_equal(f->tb.removals, 1);
	assert_int_equal(f->kvm.dels, 1);
	address_space_for_each_ioeventfd(f->as, collect, &seen);
	assert_int_equal(seen.n, 0);
	assert_int_equal(vfio_ioeventfd_count(f->set), 0);
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 4, VALUE), -ENODEV);
	/* The guest's write traps again and is forwarded. */
	assert_int_equal(address_space_write(f->as, BAR0_ADDR + REG, VALUE, 4), AS_OK);
	assert_int_equal(f->forwarded, 1);
	assert_int_equal(vfio_ioeventfd_reclaim(f->set), 1);
}

/* A signal not yet consumed when the entry goes is written, not lost. */
static void test_pending_signal_written_at_removal(void **state)
{
	struct fixture *f = *state;

	/* Fallback: the handler has not run yet. */
	f->tb.ioeventfd_ret = -EOPNOTSUPP;
	assert_int_equal(add(f, REG, 4, VALUE), 0);
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 4));
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 4, VALUE), 0);
	assert_int_equal(f->tb.nr_region_writes, 1);
	assert_write(&f->tb.region_writes[0], 0, REG, 4, VALUE);
	assert_int_equal(event_loop_run_once(f->loop, 0), 0);   /* the handler is gone */
	assert_int_equal(f->tb.nr_region_writes, 1);

	/* Kernel path: the "kernel" has not consumed it before removal. */
	f->tb.ioeventfd_ret = 0;
	assert_int_equal(add(f, REG, 8, VALUE), 0);
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, VALUE, 8));
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 8, VALUE), 0);
	assert_int_equal(f->tb.nr_kernel_writes, 0);
	assert_int_equal(f->tb.nr_region_writes, 2);
	assert_write(&f->tb.region_writes[1], 0, REG, 8, VALUE);
}

/* A vCPU that dispatched through the old view signals after removal: the
 * retired eventfd keeps it, and reclaim performs it. */
static void test_late_signal_performed_at_reclaim(void **state)
{
	struct fixture *f = *state;
	struct event_notifier *e;

	f->tb.ioeventfd_ret = -EOPNOTSUPP;
	assert_int_equal(add(f, REG, 4, VALUE), 0);
	e = f->kvm.registered[0].e;
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG, 4, VALUE), 0);
	assert_int_equal(f->tb.nr_region_writes, 0);
	assert_int_equal(event_notifier_signal_fallback(e), 0);   /* late */
	assert_int_equal(vfio_ioeventfd_reclaim(f->set), 1);
	assert_int_equal(f->tb.nr_region_writes, 1);
	assert_int_equal(vfio_ioeventfd_reclaim(f->set), 0);
}

static void test_reset_drops_only_dynamic(void **state)
{
	struct fixture *f = *state;
	struct vfio_ioeventfd_req r;

	assert_int_equal(add(f, REG, 4, 1), 0);
	assert_int_equal(add(f, REG + 8, 4, 2), 0);
	r = req_at(f, REG + 0x40, 4, 3, true);
	assert_int_equal(vfio_ioeventfd_add(f->set, &r), 0);
	r = req_at(f, REG + 0x44, 2, 4, true);
	assert_int_equal(vfio_ioeventfd_add(f->set, &r), 0);
	assert_int_equal(f->kvm.nr, 4);

	assert_int_equal(vfio_ioeventfd_del_all(f->set, true), 2);
	assert_int_equal(vfio_ioeventfd_count(f->set), 2);
	assert_int_equal(f->kvm.nr, 2);
	assert_int_equal(f->tb.nr_kernel, 2);
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG + 0x40, 4, 3), -ENODEV);
	assert_int_equal(vfio_ioeventfd_del(f->set, 0, REG + 8, 4, 2), 0);
	assert_int_equal(vfio_ioeventfd_count(f->set), 1);
	/* Teardown removes the rest (checked in teardown()). */
}

/* ---- info ioeventfds ------------------------------------------------------------------------ */

static void test_dump(void **state)
{
	struct fixture *f = *state;
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	assert_int_equal(add(f, REG, 4, VALUE), 0);
	f->tb.ioeventfd_ret = -EOPNOTSUPP;
	assert_int_equal(add(f, REG + 0x40, 2, 7), 0);
	assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG + 0x40, 7, 2));
	assert_int_equal(event_loop_run_once(f->loop, 1000), 1);

	out = open_memstream(&text, &len);
	vfio_ioeventfd_dump(f->set, out);
	/* Decode off: the BAR leaves the address space. */
	memory_transaction_begin();
	mr_set_enabled(f->bar0, false);
	memory_transaction_commit();
	vfio_ioeventfd_dump(f->set, out);
	fclose(out);
	assert_non_null(strstr(text, "vfio ioeventfds: dev0 (2 of 1000)\n"));
	assert_non_null(strstr(text, "  bar0+0x1000 len 4 data 0xabcd static: kvm -> kernel\n"));
	assert_non_null(strstr(text, "  bar0+0x1040 len 2 data 0x7 static: kvm -> handler (EOPNOTSUPP)"
				     " userspace_signals=0 handler_writes=1 dropped=0 errors=0\n"));
	assert_non_null(strstr(text, "  bar0+0x1000 len 4 data 0xabcd static: unmapped -> kernel\n"));
	free(text);
	assert_int_equal(f->kvm.nr, 0);
	memory_transaction_begin();
	mr_set_enabled(f->bar0, true);
	memory_transaction_commit();
	assert_int_equal(f->kvm.nr, 2);
	f->tb.ioeventfd_ret = 0;   /* so teardown's removal reaches the "kernel" */
}

/* ---- threads ------------------------------------------------------------------------------ */

struct dump_race {
	struct vfio_ioeventfd_set *set;
	struct event_loop *loop;
	atomic_bool started;
};

static void dump_on_loop(void *opaque)
{
	struct dump_race *d = opaque;
	FILE *out = fopen("/dev/null", "w");

	assert_non_null(out);
	atomic_store(&d->started, true);
	vfio_ioeventfd_dump(d->set, out);
	fclose(out);
}

/* In the middle of an add: have the loop's thread start a dump, and wait
 * until it has.  If the add held the set's lock now, the dump would block
 * on it and the add's wait for the loop would never end. */
static void dump_during_add(struct test_backend *tb)
{
	struct dump_race *d = tb->hook_opaque;
	const struct timespec tick = { 0, 100000 };

	atomic_store(&d->started, false);
	assert_int_equal(event_loop_call(d->loop, dump_on_loop, d), 0);
	while (!atomic_load(&d->started))
		nanosleep(&tick, NULL);
}

/*
 * The loop runs in an iothread that also serves dumps (as the monitor's
 * loop would), while this thread adds, signals and removes fallback entries.
 * Adding waits for the loop to take the handler; a dump on the loop takes
 * the set's lock: neither may wait for the other (a regression hangs here
 * until the test's timeout).  Each signal is written exactly once, by the
 * handler or at removal.
 */
static void test_adds_and_dumps_from_two_threads(void **state)
{
	struct fixture *f = *state;
	struct vfio_ioeventfd_config cfg = {
		.name = "dev1", .backend = &f->tb.base, .limits = limits,
	};
	struct vfio_ioeventfd_set *set;
	struct iothread *it;
	const unsigned rounds = 300;
	struct dump_race race;

	assert_int_equal(iothread_new("vfio-io", &it), 0);
	cfg.loop = iothread_loop(it);
	assert_int_equal(vfio_ioeventfd_set_new(&cfg, &set), 0);
	race = (struct dump_race){ .set = set, .loop = cfg.loop };
	f->tb.hook_opaque = &race;
	f->tb.on_register = dump_during_add;
	f->tb.ioeventfd_ret = -EOPNOTSUPP;
	for (unsigned i = 0; i < rounds; i++) {
		struct vfio_ioeventfd_req r = req_at(f, REG, 4, i, i & 1);

		assert_int_equal(vfio_ioeventfd_add(set, &r), 0);
		assert_true(kvm_guest_write(&f->kvm, BAR0_ADDR + REG, i, 4));
		if (i & 1)
			assert_int_equal(vfio_ioeventfd_del_all(set, true), 1);
		else
			assert_int_equal(vfio_ioeventfd_del(set, 0, REG, 4, i), 0);
	}
	f->tb.on_register = NULL;
	/* The last dump is done before anything is reclaimed. */
	assert_int_equal(event_loop_call_sync(cfg.loop, dump_on_loop, &race), 0);
	assert_int_equal(f->tb.nr_region_writes, rounds);
	assert_int_equal(vfio_ioeventfd_reclaim(set), rounds);
	vfio_ioeventfd_set_free(set);
	iothread_free(it);
	f->tb.ioeventfd_ret = 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rules),
		cmocka_unit_test_setup_teardown(test_rules_through_the_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallback_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallback_on_every_refusal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_userspace_both_hops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_at_1001, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_signal_written_at_removal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_signal_performed_at_reclaim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_drops_only_dynamic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adds_and_dumps_from_two_threads, setup, teardown),
	};

	log_set_quiet(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
