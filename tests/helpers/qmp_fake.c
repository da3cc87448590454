/* The fake machine of qmp_fake.h. */
#include <errno.h>
#include <string.h>

#include "qmp_fake.h"

static enum qmp_run_state fake_run_state(void *opaque)
{
	return ((struct qmp_fake *)opaque)->state;
}

static int fake_stop(void *opaque)
{
	struct qmp_fake *f = opaque;

	f->stops++;
	f->state = QMP_RUN_STATE_PAUSED;
	return 0;
}

static int fake_cont(void *opaque)
{
	struct qmp_fake *f = opaque;

	f->conts++;
	f->state = QMP_RUN_STATE_RUNNING;
	return 0;
}

static int fake_reset(void *opaque)
{
	((struct qmp_fake *)opaque)->resets++;
	return 0;
}

static int fake_powerdown(void *opaque)
{
	((struct qmp_fake *)opaque)->powerdowns++;
	return 0;
}

static int fake_quit(void *opaque)
{
	struct qmp_fake *f = opaque;

	f->quits++;
	f->state = QMP_RUN_STATE_SHUTDOWN;
	return 0;
}

static int fake_info(void *opaque, const char *what, FILE *out)
{
	struct qmp_fake *f = opaque;

	if (f->fail_info)
		return -EIO;
	if (strcmp(what, "mtree") && strcmp(what, "flatview") && strcmp(what, "ioeventfds") &&
	    strcmp(what, "stats"))
		return -EINVAL;
	fprintf(out, "fake %s\nsecond line\n", what);
	return 0;
}

static int fake_ioeventfds(void *opaque, struct qmp_ioeventfd *out, int max)
{
	static const struct qmp_ioeventfd evs[] = {
		{ .address_space = "memory", .addr = 0xfe000000, .len = 4, .has_datamatch = true,
		  .datamatch = 1, .path = "kvm", .kvm_signals = 7, .owner = "testdev+0x0" },
		{ .address_space = "io", .addr = 0x510, .len = 2, .path = "refused",
		  .reason = "EEXIST", .fallback_signals = 3, .owner = "testdev-pio+0x0" },
	};
	int n = (int)(sizeof(evs) / sizeof(evs[0]));

	(void)opaque;
	for (int i = 0; i < n && i < max; i++)
		out[i] = evs[i];
	return n;
}

static int fake_exit_stats(void *opaque, struct qmp_exit_stats *st)
{
	struct qmp_fake *f = opaque;
	uint64_t k = (uint64_t)++f->stats_queries * QMP_FAKE_STEP;

	memset(st, 0, sizeof(*st));
	st->nr_vcpus = 2;
	st->vcpus[0] = (struct qmp_vcpu_exits){ .runs = 2 * k, .mmio = k, .pio = 1, .intr = 5 };
	st->vcpus[1] = (struct qmp_vcpu_exits){ .runs = 1, .intr = 1 };
	st->nr_devices = 2;
	st->devices[0] = (struct qmp_device_stats){ .id = "testdev", .type = "kickvm-testdev",
		.doorbell_kvm = 10 * k, .doorbell_fallback = 2, .doorbell_trapped = 1 };
	st->devices[1] = (struct qmp_device_stats){ .id = "virtio-blk0", .type = "virtio-blk",
		.doorbell_kvm = k, .requests = 3 * k, .interrupts = 3 * k, .polled = k / 2,
		.needs_reset = f->needs_reset };
	return 0;
}

const struct qmp_machine_ops qmp_fake_ops = {
	.run_state = fake_run_state,
	.stop = fake_stop,
	.cont = fake_cont,
	.system_reset = fake_reset,
	.system_powerdown = fake_powerdown,
	.quit = fake_quit,
	.info = fake_info,
	.ioeventfds = fake_ioeventfds,
	.exit_stats = fake_exit_stats,
};
