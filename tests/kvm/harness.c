/* The guest-test harness (see harness.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "harness.h"
#include "kickvm/virtio_devices.h"

static FILE *console_sink(void)
{
	/* Guest console output goes to stderr so it shows in the test log. */
	return stderr;
}

struct machine *vm_create(int ncpus, enum ioeventfd_mode mode)
{
	struct machine_config cfg;
	struct machine *m = NULL;
	const char *why = NULL;
	int ret;

	machine_config_defaults(&cfg);
	cfg.nr_vcpus = ncpus;
	cfg.ioeventfd = mode;
	cfg.ram_size = 64ull << 20;
	cfg.console = console_sink();
	ret = machine_create(&cfg, &m, &why);
	if (ret == -ENOENT || ret == -EACCES || ret == -ENOTSUP || ret == -ENXIO) {
		print_message("SKIP: KVM unusable here: %s (%s)\n", why ? why : "?", strerror(-ret));
		skip();
	}
	if (ret < 0)
		fail_msg("machine_create: %s (%s)", why ? why : "?", strerror(-ret));
	return m;
}

void vm_load_script(struct machine *m, const char *fmt, ...)
{
	const char *guest = getenv("KICKVM_SCRIPT_GUEST"), *why = NULL;
	char script[2048];
	va_list ap;
	int ret;

	if (!guest)
		fail_msg("KICKVM_SCRIPT_GUEST is not set (run through meson test)");
	va_start(ap, fmt);
	vsnprintf(script, sizeof(script), fmt, ap);
	va_end(ap);
	ret = machine_load_guest(m, guest, script, &why);
	if (ret < 0)
		fail_msg("load %s: %s (%s)", guest, why ? why : "?", strerror(-ret));
}

struct machine_device *vm_add_disk(struct machine *m, char *image, uint64_t disk_size,
				   bool ioeventfd)
{
	struct virtio_blk_opts bo = { .serial = "kickvm-disk" };
	struct machine_virtio_opts vo;
	struct machine_device *md = NULL;
	struct iothread *it;
	const char *why = NULL;
	int fd;

	strcpy(image, "/tmp/kickvm-disk-XXXXXX");
	fd = mkstemp(image);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)disk_size), 0);
	close(fd);
	bo.file = image;
	assert_int_equal(machine_iothread(m, "io0", &it), 0);
	machine_virtio_opts_defaults(&vo);
	vo.iothread = "io0";
	vo.ioeventfd = ioeventfd;
	if (machine_add_virtio_blk(m, &bo, &vo, &md, &why) < 0)
		fail_msg("virtio-blk: %s", why ? why : "?");
	return md;
}

uint64_t vm_exits(struct machine *m, int cpu)
{
	const struct vcpu_stats *s = &m->vcpus[cpu]->stats;

	return s->exits_mmio + s->exits_pio;
}

void vm_run_to_sync(struct machine *m, int cpu, uint64_t stage, uint64_t *exits)
{
	struct machine_exit ex;
	uint64_t before = vm_exits(m, cpu);
	int ret;

	do {
		ret = machine_vcpu_run_until_event(m, cpu, &ex);
		if (ret == MACHINE_STOPPED)
			fail_msg("cpu%d: guest stopped (status %d) before sync %llu", cpu,
				 m->exit_status, (unsigned long long)stage);
		if (ret < 0)
			fail_msg("cpu%d: fatal exit %d before sync %llu", cpu, ret,
				 (unsigned long long)stage);
	} while (ex.ucall.cmd != UCALL_SYNC);
	assert_int_equal(ex.ucall.args[0], stage);
	assert_int_equal(ex.ucall.args[1], cpu);
	if (exits)
		*exits = vm_exits(m, cpu) - before - 1; /* not the sync itself */
}

/* Run @cpu to its next exit other than an interrupted KVM_RUN; it must be @reason. */
static struct kvm_run *expect_exit(struct machine *m, int cpu, uint32_t reason)
{
	int ret = machine_vcpu_run_once(m, cpu);

	while (ret == -EINTR || (ret >= 0 && m->vcpus[cpu]->run->exit_reason == KVM_EXIT_INTR)) {
		machine_vcpu_dispatch(m, cpu, NULL);
		ret = machine_vcpu_run_once(m, cpu);
	}
	assert_true(ret >= 0);
	assert_int_equal(m->vcpus[cpu]->run->exit_reason, reason);
	return m->vcpus[cpu]->run;
}

/* The write exit @cpu stopped at carried @data (its @len bytes at @bytes);
 * dispatch it.  The MMIO and port checks end the same way. */
static void expect_data_and_dispatch(struct machine *m, int cpu, const void *bytes,
				     unsigned len, uint64_t data)
{
	uint64_t value = 0;

	memcpy(&value, bytes, len);
	assert_int_equal(value, data);
	assert_int_equal(machine_vcpu_dispatch(m, cpu, NULL), MACHINE_CONTINUE);
}

void vm_expect_mmio_writes(struct machine *m, int cpu, uint64_t addr, unsigned len,
			   uint64_t data, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++) {
		struct kvm_run *run = expect_exit(m, cpu, KVM_EXIT_MMIO);

		assert_int_equal(run->mmio.phys_addr, addr);
		assert_int_equal(run->mmio.len, len);
		assert_true(run->mmio.is_write);
		expect_data_and_dispatch(m, cpu, run->mmio.data, len, data);
	}
}

void vm_expect_pio_writes(struct machine *m, int cpu, uint16_t port, unsigned len,
			  uint64_t data, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++) {
		struct kvm_run *run = expect_exit(m, cpu, KVM_EXIT_IO);

		assert_int_equal(run->io.port, port);
		assert_int_equal(run->io.size, len);
		assert_int_equal(run->io.direction, KVM_EXIT_IO_OUT);
		assert_int_equal(run->io.count, 1);
		expect_data_and_dispatch(m, cpu, (uint8_t *)run + run->io.data_offset, len, data);
	}
}

void vm_expect_exit(struct machine *m, int cpu, int status)
{
	struct machine_exit ex;
	int ret;

	do {
		ret = machine_vcpu_run_until_event(m, cpu, &ex);
		assert_true(ret >= 0);
	} while (ret == MACHINE_UCALL && ex.ucall.cmd != UCALL_ASSERT);
	assert_int_equal(ret, MACHINE_STOPPED);
	assert_false(m->guest_failed);
	assert_int_equal(m->exit_status, status);
}
