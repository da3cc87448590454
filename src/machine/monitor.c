/*
 * The machine behind the QMP monitor (kickvm/qmp.h): the ops the commands
 * call, and the events only the machine knows of (SHUTDOWN and its cause,
 * NEEDS_RESET).  Everything here runs on the main loop's thread.
 *
 * system_reset resets the machine in place (machine_reset: RESET, and the
 * guest boots again); with -no-reboot it ends the machine instead, as QEMU
 * does (RESET, then SHUTDOWN with reason "host-qmp-system-reset", status
 * MACHINE_EXIT_REBOOT).  A guest's own reset is the same reset in place
 * (RESET with guest true, reason "guest-reset"), or under -no-reboot ends the
 * machine (SHUTDOWN "guest-reset").  kickvm's
 * ACPI is hardware-reduced with no power button, so system_powerdown takes
 * the fallback: POWERDOWN, then the machine powers off as a guest's S5
 * would (status 0, SHUTDOWN reason "host-qmp-system-powerdown").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hw/testdev.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "kickvm/qmp.h"
#include "kickvm/sandbox.h"
#include "kickvm/virtio_devices.h"
#include "kickvm/vfio_pci.h"
#include "kickvm/virtio_pci.h"

#include "machine/machine_internal.h"
#include "memory/memory_internal.h"

/* How often broken devices are looked for (NEEDS_RESET). */
#define WATCH_INTERVAL_NS (200 * 1000000ull)
/* How long the SHUTDOWN event may take to reach the clients at the end. */
#define FINAL_FLUSH_MS 1000
#define PAUSE_WAIT_MS  1000

struct machine_monitor {
	struct machine *m;
	struct qmp_server *server;
	struct timer *watch;
	bool started;                  /* cont happened (or no -S) */
	const char *cause;             /* what the host asked for, if anything */
	uint32_t breakages_seen[MACHINE_MAX_DEVICES];
};

static enum qmp_run_state mon_run_state(void *opaque)
{
	struct machine_monitor *mon = opaque;

	if (atomic_load(&mon->m->stopping))
		return QMP_RUN_STATE_SHUTDOWN;
	if (machine_paused(mon->m))
		return mon->started ? QMP_RUN_STATE_PAUSED : QMP_RUN_STATE_PRELAUNCH;
	return QMP_RUN_STATE_RUNNING;
}

static int mon_stop(void *opaque)
{
	struct machine_monitor *mon = opaque;

	/* Paused even if a vCPU is slow to park: it parks at its next exit. */
	machine_pause(mon->m, PAUSE_WAIT_MS);
	return 0;
}

static int mon_cont(void *opaque)
{
	struct machine_monitor *mon = opaque;

	mon->started = true;
	machine_resume(mon->m);
	return 0;
}

static int end_machine(struct machine_monitor *mon, const char *cause, int status)
{
	if (!mon->cause && !atomic_load(&mon->m->stopping))
		mon->cause = cause;
	machine_request_stop(mon->m, status);
	return 0;
}

static int mon_system_reset(void *opaque)
{
	struct machine_monitor *mon = opaque;
	const char *why = NULL;
	int ret;

	if (mon->m->cfg.no_reboot)
		return end_machine(mon, "host-qmp-system-reset", MACHINE_EXIT_REBOOT);
	ret = machine_reset(mon->m, &why);
	if (ret < 0)
		log_warn("qmp", "system_reset: %s", why ? why : strerror(-ret));
	return ret;
}

static int mon_system_powerdown(void *opaque)
{
	return end_machine(opaque, "host-qmp-system-powerdown", MACHINE_EXIT_POWEROFF);
}

static int mon_quit(void *opaque)
{
	return end_machine(opaque, "host-qmp-quit", 0);
}

static int mon_info(void *opaque, const char *what, FILE *out)
{
	struct machine_monitor *mon = opaque;

	if (!strcmp(what, "stats")) {
		machine_print_stats(mon->m, out);
		return 0;
	}
	return machine_info(mon->m, what, out);
}

struct ioeventfd_walk {
	struct qmp_ioeventfd *out;
	int max, n;
	const char *as;
};

static void add_ioeventfd(const struct ioeventfd *ev, void *opaque)
{
	struct ioeventfd_walk *w = opaque;
	struct qmp_ioeventfd *q;
	uint64_t total, fallback;

	if (w->n++ >= w->max)
		return;
	q = &w->out[w->n - 1];
	memset(q, 0, sizeof(*q));
	snprintf(q->address_space, sizeof(q->address_space), "%s", w->as);
	q->addr = ev->addr;
	q->len = ev->len;
	q->has_datamatch = ev->match_data;
	q->datamatch = ev->data;
	if (ev->path == IOEVENTFD_PATH_KVM) {
		q->path = "kvm";
	} else if (ev->kvm_err && ev->kvm_err != -EOPNOTSUPP && ev->kvm_err != EOPNOTSUPP) {
		q->path = "refused";
		snprintf(q->reason, sizeof(q->reason), "%s", ioeventfd_errno_name(ev->kvm_err));
	} else {
		q->path = "fallback";
	}
	total = event_notifier_total(ev->e);
	fallback = atomic_load(&ev->e->fallback_signals);
	q->kvm_signals = total > fallback ? total - fallback : 0;
	q->fallback_signals = fallback;
	snprintf(q->owner, sizeof(q->owner), "%s+0x%" PRIx64, mr_name(ev->mr), ev->offset);
}

static int mon_ioeventfds(void *opaque, struct qmp_ioeventfd *out, int max)
{
	struct machine_monitor *mon = opaque;
	struct ioeventfd_walk w = { .out = out, .max = max, .as = "memory" };

	address_space_for_each_ioeventfd(mon->m->as_memory, add_ioeventfd, &w);
	w.as = "io";
	address_space_for_each_ioeventfd(mon->m->as_io, add_ioeventfd, &w);
	return w.n;
}

static void add_testdev_doorbell(struct testdev_doorbell *db, void *opaque)
{
	struct qmp_device_stats *d = opaque;
	uint64_t total = testdev_doorbell_signals(db), fallback = db->e.fallback_signals;

	d->doorbell_kvm += total > fallback ? total - fallback : 0;
	d->doorbell_fallback += fallback;
}

static void testdev_stats(struct machine *m, struct qmp_device_stats *d)
{
	snprintf(d->id, sizeof(d->id), "testdev");
	snprintf(d->type, sizeof(d->type), "kickvm-testdev");
	testdev_for_each_doorbell(m->testdev, add_testdev_doorbell, d);
	for (unsigned i = 0; i < TESTDEV_SLOTS; i++)
		d->doorbell_trapped += testdev_trapped_writes(m->testdev, false, i * TESTDEV_SLOT_SIZE);
	for (unsigned i = 0; i < KICKVM_TESTDEV_NR_PORTS; i++)
		d->doorbell_trapped += testdev_trapped_writes(m->testdev, true, i);
}

static void virtio_stats(struct machine_device *md, struct qmp_device_stats *d)
{
	struct virtio_dev *vdev = md->vdev;

	snprintf(d->id, sizeof(d->id), "%s", md->id);
	snprintf(d->type, sizeof(d->type), "%s", vdev->ops->name);
	for (unsigned q = 0; q < vdev->ops->nr_queues; q++) {
		struct virtio_pci_doorbells db;

		virtio_pci_doorbells(md->vp, q, &db);
		d->doorbell_kvm += db.kvm;
		d->doorbell_fallback += db.fallback;
		d->doorbell_trapped += db.trapped;
		d->interrupts += vdev->queues[q].interrupts;
		d->polled += vdev->queues[q].polled;
	}
	if (vdev->ops->device_id == VIRTIO_ID_BLOCK) {
		struct virtio_blk_stats st;

		virtio_blk_get_stats(vdev, &st);
		d->requests = st.reads + st.writes + st.flushes + st.get_ids + st.discards +
			      st.write_zeroes + st.unsupported;
	} else if (vdev->ops->device_id == VIRTIO_ID_RNG) {
		d->requests = virtio_rng_bytes(vdev);
	}
	d->needs_reset = __atomic_load_n(&vdev->broken, __ATOMIC_ACQUIRE);
}

/* An assigned device: its doorbells are BAR writes, and those kickvm sees
 * are the trapped ones (mapped writes and writes the kernel performs for a
 * device-write ioeventfd never reach it). */
static void vfio_stats(struct machine_device *md, struct qmp_device_stats *d)
{
	struct vfio_pci_stats st;

	vfio_pci_get_stats(md->vfio, &st);
	snprintf(d->id, sizeof(d->id), "%s", md->id);
	snprintf(d->type, sizeof(d->type), "vfio-pci");
	d->doorbell_trapped = st.trapped_writes;
	d->doorbell_kvm = st.ioeventfd_handler_runs;
	d->doorbell_fallback = st.ioeventfd_userspace_signals;
	d->interrupts = st.irqs_through_kickvm;
}

static int mon_exit_stats(void *opaque, struct qmp_exit_stats *st)
{
	struct machine *m = ((struct machine_monitor *)opaque)->m;

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < m->nr_vcpus && i < QMP_MAX_VCPUS; i++) {
		const struct vcpu_stats *s = &m->vcpus[i]->stats;

		st->vcpus[i] = (struct qmp_vcpu_exits){
			.runs = s->runs, .mmio = s->exits_mmio, .pio = s->exits_pio,
			.intr = s->exits_intr, .coalesced = s->coalesced,
		};
		st->nr_vcpus++;
	}
	testdev_stats(m, &st->devices[st->nr_devices++]);
	for (int i = 0; i < m->nr_devices && st->nr_devices < QMP_MAX_DEVICES; i++)
		if (m->devices[i].vfio)
			vfio_stats(&m->devices[i], &st->devices[st->nr_devices++]);
		else
			virtio_stats(&m->devices[i], &st->devices[st->nr_devices++]);
	return 0;
}

static const struct qmp_machine_ops machine_qmp_ops = {
	.run_state = mon_run_state,
	.stop = mon_stop,
	.cont = mon_cont,
	.system_reset = mon_system_reset,
	.system_powerdown = mon_system_powerdown,
	.quit = mon_quit,
	.info = mon_info,
	.ioeventfds = mon_ioeventfds,
	.exit_stats = mon_exit_stats,
};

/* NEEDS_RESET: a device its driver broke (virtio_dev_set_broken).  Looked
 * for every WATCH_INTERVAL_NS by the count of breakages, not the broken
 * flag: a driver that breaks the device and resets it between two looks
 * still gets its event.  Several breakages between two looks make one
 * event, whose "count" says how many, with the last reason. */
static void watch_devices(void *opaque)
{
	struct machine_monitor *mon = opaque;
	struct machine *m = mon->m;

	for (int i = 0; i < m->nr_devices; i++) {
		struct virtio_dev *vdev = m->devices[i].vdev;
		uint32_t n;

		if (!vdev)
			continue;
		n = __atomic_load_n(&vdev->times_broken, __ATOMIC_ACQUIRE);
		if (n != mon->breakages_seen[i]) {
			json_object *data = json_object_new_object();

			json_object_object_add(data, "device", json_object_new_string(m->devices[i].id));
			json_object_object_add(data, "reason",
					       json_object_new_string(vdev->broken_reason));
			json_object_object_add(data, "count",
					       json_object_new_int64(n - mon->breakages_seen[i]));
			qmp_server_event(mon->server, "NEEDS_RESET", data);
			mon->breakages_seen[i] = n;
		}
	}
	timer_mod(mon->watch, clock_ns() + WATCH_INTERVAL_NS);
}

void machine_monitor_machine_ended(struct machine *m, int host_signal)
{
	struct machine_monitor *mon = m->monitor;
	const char *cause = mon->cause;
	bool guest = false;

	if (!cause && host_signal) {
		cause = "host-signal";
	} else if (!cause) {
		guest = true;
		cause = m->guest_failed ? "guest-panic" :
			m->exit_status == MACHINE_EXIT_REBOOT ? "guest-reset" : "guest-shutdown";
	}
	watch_devices(mon);  /* a device broken at the very end still tells */
	timer_del(mon->watch);
	qmp_server_event(mon->server, "SHUTDOWN", qmp_shutdown_data(guest, cause));
	qmp_server_flush(mon->server, FINAL_FLUSH_MS);
}

void machine_monitor_free(struct machine *m)
{
	struct machine_monitor *mon = m->monitor;

	if (!mon)
		return;
	timer_free(mon->watch);
	qmp_server_free(mon->server);
	free(mon);
	m->monitor = NULL;
}

void machine_monitor_reset_event(struct machine *m, bool guest, const char *reason)
{
	if (m->monitor)
		qmp_server_event(m->monitor->server, "RESET", qmp_shutdown_data(guest, reason));
}

void machine_monitor_close(struct machine *m)
{
	machine_monitor_free(m);
}

int machine_monitor_start(struct machine *m, const char *path, bool start_paused, bool wait,
			  const char **why)
{
	struct machine_monitor *mon;
	struct qmp_server_config cfg = {
		.path = path, .ops = &machine_qmp_ops, .version = KICKVM_QMP_VERSION,
	};
	int ret;

	*why = NULL;
	if (m->monitor) {
		*why = "one monitor per machine";
		return -EBUSY;
	}
	mon = calloc(1, sizeof(*mon));
	if (!mon)
		return -ENOMEM;
	mon->m = m;
	cfg.opaque = mon;
	mon->watch = timer_new(m->main_loop, watch_devices, mon);
	ret = mon->watch ? qmp_server_new(m->main_loop, &cfg, &mon->server, why) : -ENOMEM;
	if (ret < 0) {
		timer_free(mon->watch);
		free(mon);
		return ret;
	}
	m->monitor = mon;
	/* The main loop serves the socket under the sandbox. */
	sandbox_allow_monitor(true);
	timer_mod(mon->watch, clock_ns() + WATCH_INTERVAL_NS);
	mon->started = !start_paused;
	if (start_paused)
		machine_pause(m, 0);
	if (wait) {
		log_info("qmp", "waiting for a client on %s", path);
		while (!qmp_server_nr_clients(mon->server) && !atomic_load(&m->stopping))
			event_loop_run_once(m->main_loop, 1000);
	}
	return 0;
}
