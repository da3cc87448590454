/*
 * virtio-pci end to end: the virtio guest drives kickvm's virtio-blk and
 * virtio-rng through its own drivers (the same ones that pass on QEMU), and
 * the host checks that every doorbell the driver rang took the path it
 * should, exactly: KVM ioeventfd, userspace fallback into the same notifier,
 * or trapped — and that every interrupt the driver counted came through an
 * MSI-X irqfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "kickvm/log.h"
#include "kickvm/pci.h"
#include "kickvm/virtio_devices.h"
#include "kickvm/virtio_pci.h"
#include "../../guest/virtio/stream_abi.h"

#define DISK_SIZE (16u << 20)   /* the guest tests want >= 8 MiB */
#define MAX_REPORTS 32

struct reports {
	char name[MAX_REPORTS][32];
	uint64_t value[MAX_REPORTS];
	int n;
};

static uint64_t report(const struct reports *r, const char *name)
{
	for (int i = 0; i < r->n; i++)
		if (!strcmp(r->name[i], name))
			return r->value[i];
	fail_msg("the guest did not report %s", name);
	return 0;
}

struct vm {
	struct machine *m;
	struct machine_device *blk, *rng;
	char image[64];
};

static void vm_setup(struct vm *vm, enum ioeventfd_mode mode, bool blk_ioeventfd)
{
	struct machine_virtio_opts vo;
	const char *why = NULL;

	memset(vm, 0, sizeof(*vm));
	vm->m = vm_create(1, mode);
	vm->blk = vm_add_disk(vm->m, vm->image, DISK_SIZE, blk_ioeventfd);
	machine_virtio_opts_defaults(&vo);
	vo.iothread = "io0";
	assert_int_equal(machine_add_virtio_rng(vm->m, &vo, &vm->rng, &why), 0);
}

static void vm_teardown(struct vm *vm)
{
	machine_destroy(vm->m);
	unlink(vm->image);
}

/* Boot the virtio guest and step it to its end, collecting its reports. */
static void run_virtio_guest(struct vm *vm, const char *cmdline, struct reports *r)
{
	const char *guest = getenv("KICKVM_VIRTIO_GUEST"), *why = NULL;
	struct machine_exit ex;
	int ret;

	assert_non_null(guest);
	assert_int_equal(machine_load_guest(vm->m, guest, cmdline, &why), 0);
	memset(r, 0, sizeof(*r));
	for (;;) {
		ret = machine_vcpu_run_until_event(vm->m, 0, &ex);
		if (ret != MACHINE_UCALL)
			break;
		if (ex.ucall.cmd == UCALL_REPORT && r->n < MAX_REPORTS) {
			assert_int_equal(guest_mem_read_str(&vm->m->mem, ex.ucall.args[0],
							    r->name[r->n], sizeof(r->name[0])), 0);
			r->value[r->n++] = ex.ucall.args[1];
		}
	}
	assert_int_equal(ret, MACHINE_STOPPED);
	assert_false(vm->m->guest_failed);
	assert_int_equal(vm->m->exit_status, 0);
}

static void doorbells(struct machine_device *md, struct virtio_pci_doorbells *d)
{
	virtio_pci_doorbells(md->vp, 0, d);
}

/* Host notifiers on: every doorbell is a KVM ioeventfd signal; nothing is
 * served on the vCPU thread; the data path works end to end. */
static void test_ioeventfd_on(void **state)
{
	struct vm vm;
	struct reports r;
	struct virtio_pci_doorbells blk, rng;
	struct virtio_blk_stats st;

	(void)state;
	vm_setup(&vm, IOEVENTFD_AUTO, true);
	run_virtio_guest(&vm, "mode=test serial=kickvm-disk", &r);
	doorbells(vm.blk, &blk);
	doorbells(vm.rng, &rng);
	assert_int_equal(blk.doorbells, report(&r, "blk.notifies"));
	assert_int_equal(blk.kvm, report(&r, "blk.notifies"));
	assert_int_equal(blk.fallback, 0);
	assert_int_equal(blk.trapped, 0);
	/* One start (and one kick) per DRIVER_OK: the guest initialises the
	 * disk twice, at boot and after its mid-run reset; the notifiers were
	 * stopped in between. */
	assert_int_equal(blk.kicks, 2);
	assert_int_equal(rng.doorbells, report(&r, "rng.notifies"));
	assert_int_equal(rng.trapped, 0);
	virtio_blk_get_stats(vm.blk->vdev, &st);
	assert_true(st.reads > 0 && st.writes > 0 && st.flushes > 0 && st.get_ids > 0);
	assert_true(st.io_errors >= 1);           /* the read past the end */
	/* aio=auto on a buffered image: the 4 KiB reads and writes of page-
	 * cache data are served inline; flush, discard... go to the engine. */
	assert_true(st.inline_io);
	assert_true(st.backend.inline_ios > 0 && st.backend.engine_ios > 0);
	assert_true(st.backend.inline_ios <= st.reads + st.writes);
	assert_int_equal(virtio_rng_bytes(vm.rng->vdev), report(&r, "rng.bytes"));
	vm_teardown(&vm);
}

/* ioeventfd=off on the device: every doorbell is trapped and served on the
 * vCPU thread, with the same results. */
static void test_ioeventfd_off(void **state)
{
	struct vm vm;
	struct reports r;
	struct virtio_pci_doorbells blk;

	(void)state;
	vm_setup(&vm, IOEVENTFD_AUTO, false);
	run_virtio_guest(&vm, "mode=test serial=kickvm-disk", &r);
	doorbells(vm.blk, &blk);
	assert_false(virtio_pci_notifiers_active(vm.blk->vp));
	assert_int_equal(blk.doorbells, report(&r, "blk.notifies"));
	assert_int_equal(blk.trapped, report(&r, "blk.notifies"));
	assert_int_equal(blk.kvm + blk.fallback + blk.kicks, 0);
	vm_teardown(&vm);
}

/* --ioeventfd=off for the whole machine: the notifiers exist, KVM is not
 * asked, and the memory layer's fallback signals them for every doorbell. */
static void test_machine_ioeventfd_off(void **state)
{
	struct vm vm;
	struct reports r;
	struct virtio_pci_doorbells blk;

	(void)state;
	vm_setup(&vm, IOEVENTFD_OFF, true);
	run_virtio_guest(&vm, "mode=test", &r);
	doorbells(vm.blk, &blk);
	assert_int_equal(blk.doorbells, report(&r, "blk.notifies"));
	assert_int_equal(blk.fallback, report(&r, "blk.notifies"));
	assert_int_equal(blk.kvm + blk.trapped, 0);
	vm_teardown(&vm);
}

/* KVM refuses the doorbell registration: the device says it falls back,
 * and not one doorbell is lost. */
static void test_kvm_refusal(void **state)
{
	struct vm vm;
	struct reports r;
	struct virtio_pci_doorbells blk;
	uint64_t notify;
	unsigned long warns;
	int foreign = -1;

	(void)state;
	/* A first run tells where the guest puts the notify window: BAR 4. */
	vm_setup(&vm, IOEVENTFD_AUTO, true);
	run_virtio_guest(&vm, "mode=test", &r);
	notify = virtio_pci_device(vm.blk->vp)->bars[4].addr + 0x3000;
	assert_int_not_equal(notify, PCI_BAR_UNMAPPED);
	vm_teardown(&vm);

	/* The same guest places it at the same address; someone else holds
	 * that address in KVM first, which collides with our len-0 doorbell. */
	vm_setup(&vm, IOEVENTFD_AUTO, true);
	foreign = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(foreign >= 0);
	assert_int_equal(kvm_ioeventfd(vm.m->kvm, foreign, notify, 2, false, true, 0xbeef, true), 0);
	warns = log_count(LOG_WARN);
	run_virtio_guest(&vm, "mode=test", &r);
	doorbells(vm.blk, &blk);
	assert_true(log_count(LOG_WARN) > warns);
	assert_int_equal(blk.doorbells, report(&r, "blk.notifies"));
	assert_int_equal(blk.fallback, report(&r, "blk.notifies"));
	assert_int_equal(blk.kvm + blk.trapped, 0);
	kvm_ioeventfd(vm.m->kvm, foreign, notify, 2, false, true, 0xbeef, false);
	close(foreign);
	vm_teardown(&vm);
}

/* Interrupt-driven completion: every interrupt the driver counted came
 * through one of the device's MSI-X irqfds, none lost, none extra. */
static void test_msix_interrupts(void **state)
{
	struct vm vm;
	struct reports r;
	struct pci_device *d;
	uint64_t delivered = 0;

	(void)state;
	vm_setup(&vm, IOEVENTFD_AUTO, true);
	run_virtio_guest(&vm, "mode=test irq=1 rng=0", &r);
	d = virtio_pci_device(vm.blk->vp);
	for (unsigned v = 0; v <= vm.blk->vdev->ops->nr_queues; v++)
		delivered += msix_delivered(d, v);
	assert_true(report(&r, "blk.interrupts") > 0);
	assert_int_equal(delivered, report(&r, "blk.interrupts") + report(&r, "blk.config_interrupts"));
	vm_teardown(&vm);
}

/* Step the guest until it reports @name (its value), collecting reports on
 * the way; any other end fails the test. */
static uint64_t run_until_report(struct vm *vm, const char *name, struct reports *r)
{
	struct machine_exit ex;

	for (;;) {
		int ret = machine_vcpu_run_until_event(vm->m, 0, &ex);

		if (ret != MACHINE_UCALL)
			fail_msg("the guest ended (%d, status %d) before reporting %s", ret,
				 vm->m->exit_status, name);
		if (ex.ucall.cmd != UCALL_REPORT || r->n == MAX_REPORTS)
			continue;
		assert_int_equal(guest_mem_read_str(&vm->m->mem, ex.ucall.args[0], r->name[r->n],
						    sizeof(r->name[0])), 0);
		r->value[r->n] = ex.ucall.args[1];
		if (!strcmp(r->name[r->n++], name))
			return ex.ucall.args[1];
	}
}

/*
 * system_reset in place with the disk busy: the machine is reset while the
 * guest has its first writes in flight, with MSI-X interrupts on.  The guest
 * boots again, finds the disk through a PCI bus that forgot its BARs,
 * initialises the device again and writes everything; the disk counted two
 * boots, and every data sector holds the second boot's data.
 */
static void test_reset_reinitialises_virtio(void **state)
{
	struct vm vm;
	struct reports r = { 0 };
	struct virtio_pci_doorbells blk;
	struct stream_sector sec;
	struct stream_boot boot;
	const char *guest = getenv("KICKVM_VIRTIO_GUEST"), *why = NULL;
	int fd;

	(void)state;
	vm_setup(&vm, IOEVENTFD_AUTO, true);
	assert_int_equal(machine_load_guest(vm.m, guest, "mode=stream reqs=200 qd=8 irq=1 quiet=1",
					    &why), 0);
	assert_int_equal(run_until_report(&vm, "stream.boot", &r), 1);
	assert_int_equal(run_until_report(&vm, "stream.inflight", &r), 8);
	assert_int_equal(machine_reset(vm.m, &why), 0);
	assert_int_equal(run_until_report(&vm, "stream.boot", &r), 2);
	assert_int_equal(run_until_report(&vm, "stream.written", &r), 200);
	vm_expect_exit(vm.m, 0, 0);

	doorbells(vm.blk, &blk);
	assert_int_equal(blk.kicks, 2);            /* notifiers started once per life */
	assert_true(blk.kvm > 0);
	assert_int_equal(blk.trapped + blk.fallback, 0);
	fd = open(vm.image, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &boot, sizeof(boot), 0), sizeof(boot));
	assert_int_equal(boot.magic, STREAM_BOOT_MAGIC);
	assert_int_equal(boot.boots, 2);
	for (uint64_t k = 1; k <= 200; k++) {
		assert_int_equal(pread(fd, &sec, sizeof(sec), (off_t)(k * STREAM_SECTOR)), sizeof(sec));
		if (!stream_sector_ok(&sec, 2, k))
			fail_msg("sector %llu: not the second boot's data", (unsigned long long)k);
	}
	close(fd);
	vm_teardown(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ioeventfd_on),
		cmocka_unit_test(test_ioeventfd_off),
		cmocka_unit_test(test_machine_ioeventfd_off),
		cmocka_unit_test(test_kvm_refusal),
		cmocka_unit_test(test_msix_interrupts),
		cmocka_unit_test(test_reset_reinitialises_virtio),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests_name("virtio-pci guest tests", tests, NULL, NULL);
}
