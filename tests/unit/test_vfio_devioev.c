/*
 * Device-write ioeventfds in the VFIO device model, over the fake backend
 * (no KVM: the memory layer matches trapped writes in userspace and signals
 * the same eventfd KVM would).  Proves: a static entry from the options
 * reaches the backend (the kernel's VFIO_DEVICE_IOEVENTFD) with the right
 * BAR, offset, width, value and an eventfd a matching guest write signals,
 * without the trapped write reaching the device through kickvm; where the
 * backend refuses, and with ioeventfd=off, kickvm's handler performs the
 * write through the region; writes are dropped with memory decode off;
 * the stats count each path; a device reset drops dynamic entries and keeps
 * static ones; the rules refuse bad entries at creation (-EDOM) and through
 * the public call (the kernel's errnos); `info ioeventfds` lists them.
 */
#include <errno.h>

#include "vfio_fixture.h"

#define REG       0x1000
#define VALUE     0x600dcafeu

static const struct vfio_pci_ioeventfd_spec liveness = { 0, REG, 4, VALUE };

/* The nvme-like device, everything trapped, with @n static entries. */
static int start_ioev(struct fx *x, const struct vfio_pci_ioeventfd_spec *specs, unsigned n,
		      bool ioeventfd, const char **why)
{
	struct vfio_pci_opts o;
	int r;

	nvme_like(x);
	vfio_pci_opts_defaults(&o);
	o.no_mmap = true;   /* a mapped page never reaches an ioeventfd */
	o.ioeventfd = ioeventfd;
	o.static_ioeventfds = specs;
	o.nr_static_ioeventfds = n;
	o.loop = x->loop;
	o.dma_root = x->w.system;
	r = vfio_pci_create(x->w.bus, &x->f->base, &o, &x->v, why);
	if (r < 0) {
		x->f = NULL;
		x->v = NULL;
		return r;
	}
	x->devfn = vfio_pci_device(x->v)->devfn;
	place_bar0(x, true);
	return 0;
}

static uint64_t eventfd_count(int fd)
{
	uint64_t n = 0;

	assert_int_equal(read(fd, &n, sizeof(n)), (ssize_t)sizeof(n));
	return n;
}

static char *dump_of(struct fx *x)
{
	char *dump = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&dump, &len);

	assert_non_null(out);
	vfio_pci_dump_ioeventfds(x->v, out);
	fclose(out);
	return dump;
}

static void test_kernel_path(void **state)
{
	struct fx *x = *state;
	struct vfio_pci_stats st;
	const char *why = NULL;
	char *dump;

	assert_int_equal(start_ioev(x, &liveness, 1, true, &why), 0);
	assert_int_equal(x->f->nr_ioev, 1);
	assert_int_equal(x->f->ioev[0].index, 0);
	assert_int_equal(x->f->ioev[0].offset, REG);
	assert_int_equal(x->f->ioev[0].width, 4);
	assert_int_equal(x->f->ioev[0].data, VALUE);
	assert_true(x->f->ioev[0].fd >= 0);
	/* The matching write signals the kernel's eventfd and is not forwarded
	 * by kickvm (the kernel performs it). */
	wr(x, BAR0_ADDR + REG, VALUE, 4);
	wr(x, BAR0_ADDR + REG, VALUE, 4);
	assert_int_equal(eventfd_count(x->f->ioev[0].fd), 2);
	assert_int_equal(pci_get_long(x->f->mem[0] + REG), 0);
	/* Another value is an ordinary trapped write. */
	wr(x, BAR0_ADDR + REG, 0x1234, 4);
	assert_int_equal(pci_get_long(x->f->mem[0] + REG), 0x1234);
	vfio_pci_get_stats(x->v, &st);
	assert_int_equal(st.trapped_writes, 1);
	assert_int_equal(st.ioeventfds, 1);
	assert_int_equal(st.ioeventfds_by_kernel, 1);
	assert_int_equal(st.ioeventfds_by_handler, 0);
	assert_int_equal(st.ioeventfd_userspace_signals, 2);
	assert_int_equal(st.ioeventfd_handler_writes, 0);
	dump = dump_of(x);
	assert_non_null(strstr(dump, "  bar0+0x1000 len 4 data 0x600dcafe static: "));
	assert_non_null(strstr(dump, " -> kernel"));
	free(dump);
	/* Teardown takes it back from the kernel. */
	stop(x);
}

/* The handler performs each write through region_write. */
static void handler_writes(struct fx *x)
{
	struct vfio_pci_stats st;
	uint64_t writes = x->f->region_writes;

	wr(x, BAR0_ADDR + REG, VALUE, 4);
	run_loop(x);
	assert_int_equal(pci_get_long(x->f->mem[0] + REG), VALUE);
	assert_int_equal(x->f->region_writes, writes + 1);
	vfio_pci_get_stats(x->v, &st);
	assert_int_equal(st.trapped_writes, 0);
	assert_int_equal(st.ioeventfds_by_kernel, 0);
	assert_int_equal(st.ioeventfds_by_handler, 1);
	assert_int_equal(st.ioeventfd_handler_runs, 1);
	assert_int_equal(st.ioeventfd_handler_writes, 1);
	/* Memory decode off before the handler runs: the write is dropped. */
	pci_set_long(x->f->mem[0] + REG, 0);
	wr(x, BAR0_ADDR + REG, VALUE, 4);
	cfg_write(x, 0x04, 0x0004, 2);
	run_loop(x);
	assert_int_equal(pci_get_long(x->f->mem[0] + REG), 0);
	vfio_pci_get_stats(x->v, &st);
	assert_int_equal(st.ioeventfd_dropped, 1);
	assert_int_equal(st.ioeventfd_handler_runs, 2);
	assert_int_equal(st.ioeventfd_handler_writes, 1);
}

static void test_backend_refuses_handler_writes(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;
	char *dump;

	x->f->no_ioeventfd = true;
	assert_int_equal(start_ioev(x, &liveness, 1, true, &why), 0);
	handler_writes(x);
	dump = dump_of(x);
	assert_non_null(strstr(dump, "-> handler (EOPNOTSUPP)"));
	free(dump);
}

static void test_ioeventfd_off_is_handler_only(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;

	assert_int_equal(start_ioev(x, &liveness, 1, false, &why), 0);
	assert_int_equal(x->f->nr_ioev, 0);   /* the backend was never asked */
	handler_writes(x);
}

static void test_reset_keeps_static_drops_dynamic(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;
	struct vfio_pci_stats st;
	char *dump;

	assert_int_equal(start_ioev(x, &liveness, 1, true, &why), 0);
	assert_int_equal(vfio_pci_add_device_ioeventfd(x->v, 0, 0x1008, 2, 7, true), 0);
	assert_int_equal(x->f->nr_ioev, 2);
	pci_bus_reset(x->w.bus);
	assert_int_equal(x->f->nr_ioev, 1);
	assert_int_equal(x->f->ioev[0].offset, REG);
	vfio_pci_get_stats(x->v, &st);
	assert_int_equal(st.ioeventfds, 1);
	dump = dump_of(x);
	assert_non_null(strstr(dump, "bar0+0x1000 len 4"));
	assert_null(strstr(dump, "bar0+0x1008"));
	free(dump);
	/* The static one still works after the reset. */
	place_bar0(x, true);
	wr(x, BAR0_ADDR + REG, VALUE, 4);
	assert_int_equal(eventfd_count(x->f->ioev[0].fd), 1);
}

static void test_public_call_keeps_kernel_rules(void **state)
{
	struct fx *x = *state;
	const char *why = NULL;

	assert_int_equal(start_ioev(x, NULL, 0, true, &why), 0);
	/* The MSI-X table is at BAR0+0x2000 (4 vectors: 64 bytes). */
	assert_int_equal(vfio_pci_add_device_ioeventfd(x->v, 0, 0x2030, 4, 1, true), -EINVAL);
	assert_int_equal(vfio_pci_add_device_ioeventfd(x->v, 0, 0x3ffc, 8, 1, true), -EINVAL);
	assert_int_equal(vfio_pci_add_device_ioeventfd(x->v, 1, 0, 4, 1, true), -EINVAL);
	assert_int_equal(vfio_pci_add_device_ioeventfd(x->v, 0, 0x100, 3, 1, true), -EINVAL);
	assert_int_equal(vfio_pci_add_device_ioeventfd(x->v, 0, 0x100, 4, 1, true), 0);
	assert_int_equal(vfio_pci_add_device_ioeventfd(x->v, 0, 0x100, 4, 1, false), -EEXIST);
	assert_int_equal(vfio_pci_del_device_ioeventfd(x->v, 0, 0x100, 4, 2), -ENODEV);
	assert_int_equal(vfio_pci_del_device_ioeventfd(x->v, 0, 0x100, 4, 1), 0);
	assert_int_equal(x->f->nr_ioev, 0);
	/* Removed: the write traps and is forwarded again. */
	wr(x, BAR0_ADDR + 0x100, 1, 4);
	assert_int_equal(pci_get_long(x->f->mem[0] + 0x100), 1);
}

static void refused_at_start(struct fx *x, const struct vfio_pci_ioeventfd_spec *specs,
			     unsigned n)
{
	const char *why = NULL;

	assert_int_equal(start_ioev(x, specs, n, true, &why), -EDOM);
	assert_non_null(why);
	assert_null(x->v);
}

static void test_bad_static_over_msix_table(void **state)
{
	static const struct vfio_pci_ioeventfd_spec s = { 0, 0x2000, 4, 1 };

	refused_at_start(*state, &s, 1);
}

static void test_bad_static_beyond_bar(void **state)
{
	static const struct vfio_pci_ioeventfd_spec s = { 0, 0x4000, 4, 1 };

	refused_at_start(*state, &s, 1);
}

static void test_bad_static_twice(void **state)
{
	static const struct vfio_pci_ioeventfd_spec s[2] = { { 0, REG, 4, 1 }, { 0, REG, 4, 1 } };

	refused_at_start(*state, s, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kernel_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_refuses_handler_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ioeventfd_off_is_handler_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_keeps_static_drops_dynamic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_public_call_keeps_kernel_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_static_over_msix_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_static_beyond_bar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_static_twice, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
