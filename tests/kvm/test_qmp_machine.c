/*
 * The QMP monitor in front of a real machine (machine_monitor_start): a
 * client thread drives it over the socket while machine_run() runs the
 * script guest on KVM.  -S (prelaunch, no vCPU ran), cont and stop with a
 * guest that counts its trapped writes (the count does not move while
 * paused, moves again after cont), the info text and query-ioeventfds,
 * system_reset in place (the guest boots again and runs on) and with
 * -no-reboot (the machine ends), quit while the disk is busy (every write
 * the device completed is in the image afterwards), and SHUTDOWN with its
 * cause.  The client records what it saw; the main thread asserts after the
 * run.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "harness.h"
#include "kickvm/qmp.h"
#include "qmp_client.h"
#include "kickvm/virtio_devices.h"
#include "../../guest/virtio/stream_abi.h"

#define COUNTING_GUEST "ncpus=2; cpl3; w4 0xfe001300 1 4000000000"
/* The same, with a marker written once per boot by each CPU (testdev slot 4). */
#define MARKER_OFFSET  0x400
#define BOOTING_GUEST  "ncpus=2; cpl3; w4 0xfe001400 7 1; w4 0xfe001300 1 4000000000"
#define STREAM_QD      8
#define WAIT_NS (10ull * 1000000000ull)

struct client {
	char path[64];
	const char *script;            /* what the client does: "quit", "reset", "cont" */
	struct qmp_test_client conn;
	/* what it saw */
	char prelaunch_status[16], paused_status[16], shutdown_reason[48];
	bool shutdown_guest, resume_seen, stop_seen, reset_seen, powerdown_seen;
	char version_package[16], needs_reset_device[32], needs_reset_reason[96];
	size_t nr_commands;
	int64_t needs_reset_count;
	int guest_resets;                  /* RESET events with guest true */
	uint64_t runs_before_cont, mmio_after_cont, paused_a, paused_b, mmio_after_recont;
	uint64_t mmio_at_reset, mmio_after_reset, cpu1_after_reset, disk_requests;
	bool cpu1_moved, stats_count_resets;
	char status_after_reset[16];
	bool reset_returned;
	int ioeventfds_kvm;
	size_t info_len;
	char error[160];
	bool keep_machine;             /* the test destroys the machine itself */
};

static json_object *next_line(struct client *c)
{
	return qmp_test_line(&c->conn);
}

static void note_event(struct client *c, json_object *o)
{
	const char *name = json_object_get_string(json_object_object_get(o, "event"));
	json_object *data = json_object_object_get(o, "data");

	if (!name)
		return;
	c->resume_seen |= !strcmp(name, "RESUME");
	c->stop_seen |= !strcmp(name, "STOP");
	c->reset_seen |= !strcmp(name, "RESET");
	if (!strcmp(name, "RESET") && json_object_get_boolean(json_object_object_get(data, "guest")))
		c->guest_resets++;
	c->powerdown_seen |= !strcmp(name, "POWERDOWN");
	if (!strcmp(name, "NEEDS_RESET") && !c->needs_reset_device[0]) {
		snprintf(c->needs_reset_device, sizeof(c->needs_reset_device), "%s",
			 json_object_get_string(json_object_object_get(data, "device")));
		snprintf(c->needs_reset_reason, sizeof(c->needs_reset_reason), "%s",
			 json_object_get_string(json_object_object_get(data, "reason")));
		c->needs_reset_count = json_object_get_int64(json_object_object_get(data, "count"));
	}
	if (!strcmp(name, "SHUTDOWN")) {
		snprintf(c->shutdown_reason, sizeof(c->shutdown_reason), "%s",
			 json_object_get_string(json_object_object_get(data, "reason")));
		c->shutdown_guest = json_object_get_boolean(json_object_object_get(data, "guest"));
	}
}

/* Send @req; the "return" member of the reply (NULL on error), events noted. */
static json_object *cmd(struct client *c, const char *req)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "%s\n", req);

	if (send(c->conn.fd, line, (size_t)n, MSG_NOSIGNAL) != n)
		return NULL;
	for (;;) {
		json_object *o = next_line(c), *ret;

		if (!o)
			return NULL;
		if (json_object_object_get_ex(o, "event", NULL)) {
			note_event(c, o);
			json_object_put(o);
			continue;
		}
		if (json_object_object_get_ex(o, "return", &ret)) {
			json_object_get(ret);
			json_object_put(o);
			return ret;
		}
		snprintf(c->error, sizeof(c->error), "%s: %s", req, json_object_to_json_string(o));
		json_object_put(o);
		return NULL;
	}
}

static const char *cmd_status(struct client *c, char *out, size_t size)
{
	json_object *r = cmd(c, "{\"execute\":\"query-status\"}");

	snprintf(out, size, "%s", r ? json_object_get_string(json_object_object_get(r, "status")) : "?");
	json_object_put(r);
	return out;
}

static uint64_t cpu_counter(struct client *c, int cpu, const char *what)
{
	json_object *r = cmd(c, "{\"execute\":\"query-exit-stats\"}"), *v;
	uint64_t n = UINT64_MAX;

	v = json_object_array_get_idx(json_object_object_get(r, "vcpus"), (size_t)cpu);
	if (v && !strcmp(what, "runs"))
		n = json_object_get_uint64(json_object_object_get(v, "runs"));
	else if (v)
		n = json_object_get_uint64(json_object_object_get(json_object_object_get(v, "exits"),
								  what));
	json_object_put(r);
	return n;
}

/* Requests the first virtio-blk completed so far (query-exit-stats). */
static uint64_t disk_requests(struct client *c)
{
	json_object *r = cmd(c, "{\"execute\":\"query-exit-stats\"}"), *devs;
	uint64_t n = UINT64_MAX;

	devs = json_object_object_get(r, "devices");
	for (size_t i = 0; devs && i < json_object_array_length(devs); i++) {
		json_object *d = json_object_array_get_idx(devs, i);

		if (!strcmp(json_object_get_string(json_object_object_get(d, "type")), "virtio-blk")) {
			n = json_object_get_uint64(json_object_object_get(d, "requests"));
			break;
		}
	}
	json_object_put(r);
	return n;
}

/* Until @cpu's MMIO exits pass @above (bounded). */
static uint64_t wait_cpu_mmio_above(struct client *c, int cpu, uint64_t above)
{
	uint64_t end = clock_ns() + WAIT_NS, n;

	while ((n = cpu_counter(c, cpu, "mmio")) <= above && n != UINT64_MAX && clock_ns() < end)
		usleep(10000);
	return n;
}

static uint64_t wait_mmio_above(struct client *c, uint64_t above)
{
	return wait_cpu_mmio_above(c, 0, above);
}

static void *client_thread(void *opaque)
{
	struct client *c = opaque;
	json_object *o;
	int ret = qmp_test_connect(&c->conn, c->path, 10);

	if (ret < 0) {
		snprintf(c->error, sizeof(c->error), "connect: %s", strerror(-ret));
		return NULL;
	}
	json_object_put(next_line(c));                  /* greeting */
	json_object_put(cmd(c, "{\"execute\":\"qmp_capabilities\"}"));
	cmd_status(c, c->prelaunch_status, sizeof(c->prelaunch_status));
	c->runs_before_cont = cpu_counter(c, 0, "runs") + cpu_counter(c, 1, "runs");
	json_object_put(cmd(c, "{\"execute\":\"cont\"}"));
	if (!strcmp(c->script, "quit")) {
		c->mmio_after_cont = wait_mmio_above(c, 0);
		json_object_put(cmd(c, "{\"execute\":\"stop\"}"));
		cmd_status(c, c->paused_status, sizeof(c->paused_status));
		c->paused_a = cpu_counter(c, 0, "mmio") + cpu_counter(c, 1, "mmio");
		usleep(200000);
		c->paused_b = cpu_counter(c, 0, "mmio") + cpu_counter(c, 1, "mmio");
		json_object_put(cmd(c, "{\"execute\":\"cont\"}"));
		c->mmio_after_recont = wait_mmio_above(c, c->paused_a);
		o = cmd(c, "{\"execute\":\"human-monitor-command\","
			"\"arguments\":{\"command-line\":\"info stats\"}}");
		c->info_len = o ? strlen(json_object_get_string(o)) : 0;
		json_object_put(o);
		o = cmd(c, "{\"execute\":\"query-ioeventfds\"}");
		for (size_t i = 0; o && i < json_object_array_length(o); i++)
			c->ioeventfds_kvm += !strcmp(json_object_get_string(json_object_object_get(
				json_object_array_get_idx(o, i), "path")), "kvm");
		json_object_put(o);
		json_object_put(cmd(c, "{\"execute\":\"quit\"}"));
	} else if (!strcmp(c->script, "reset")) {
		/* In place: the reply, RESET, and the guest running on. */
		uint64_t cpu1_at_reset;

		/* Both CPUs past their marker, in the counting loop: the
		 * second one starts later (after CPU 0 parsed the script). */
		wait_mmio_above(c, 100);
		wait_cpu_mmio_above(c, 1, 100);
		c->mmio_at_reset = cpu_counter(c, 0, "mmio");
		cpu1_at_reset = cpu_counter(c, 1, "mmio");
		o = cmd(c, "{\"execute\":\"system_reset\"}");
		c->reset_returned = o != NULL;
		json_object_put(o);
		/* Both CPUs boot again; the second starts its script once the
		 * first has parsed it, so wait for each. */
		c->mmio_after_reset = wait_mmio_above(c, c->mmio_at_reset + 100);
		c->cpu1_after_reset = wait_cpu_mmio_above(c, 1, cpu1_at_reset + 100);
		c->cpu1_moved = c->cpu1_after_reset > cpu1_at_reset + 100 &&
				c->cpu1_after_reset != UINT64_MAX;
		cmd_status(c, c->status_after_reset, sizeof(c->status_after_reset));
		o = cmd(c, "{\"execute\":\"human-monitor-command\","
			"\"arguments\":{\"command-line\":\"info stats\"}}");
		c->stats_count_resets = o && strstr(json_object_get_string(o),
						    "machine resets in place: 1 ");
		json_object_put(o);
		json_object_put(cmd(c, "{\"execute\":\"quit\"}"));
	} else if (!strcmp(c->script, "powerdown")) {
		o = cmd(c, "{\"execute\":\"query-version\"}");
		snprintf(c->version_package, sizeof(c->version_package), "%s",
			 o ? json_object_get_string(json_object_object_get(o, "package")) : "");
		json_object_put(o);
		o = cmd(c, "{\"execute\":\"query-commands\"}");
		c->nr_commands = o ? json_object_array_length(o) : 0;
		json_object_put(o);
		wait_mmio_above(c, 0);
		json_object_put(cmd(c, "{\"execute\":\"system_powerdown\"}"));
	} else if (!strcmp(c->script, "needs-reset")) {
		/* The hostile guest breaks its devices on purpose, case after
		 * case: the first NEEDS_RESET, then quit. */
		uint64_t end = clock_ns() + 6 * WAIT_NS;

		while (!c->needs_reset_device[0] && !c->shutdown_reason[0] && clock_ns() < end &&
		       (o = next_line(c))) {
			note_event(c, o);
			json_object_put(o);
		}
		json_object_put(cmd(c, "{\"execute\":\"quit\"}"));
	} else if (!strcmp(c->script, "guest-resets")) {
		/* The guest resets itself once per boot: two RESET events
		 * from it, then quit. */
		uint64_t end = clock_ns() + 3 * WAIT_NS;

		while (c->guest_resets < 2 && !c->shutdown_reason[0] && clock_ns() < end &&
		       (o = next_line(c))) {
			note_event(c, o);
			json_object_put(o);
		}
		json_object_put(cmd(c, "{\"execute\":\"quit\"}"));
	} else if (!strcmp(c->script, "reset-exits")) {
		wait_mmio_above(c, 0);
		json_object_put(cmd(c, "{\"execute\":\"system_reset\"}"));
	} else if (!strcmp(c->script, "quit-io")) {
		/* quit with the disk busy: the guest keeps STREAM_QD writes in
		 * flight all the time. */
		uint64_t end = clock_ns() + WAIT_NS;

		while ((c->disk_requests = disk_requests(c)) < 50 && c->disk_requests != UINT64_MAX &&
		       clock_ns() < end)
			usleep(2000);
		json_object_put(cmd(c, "{\"execute\":\"quit\"}"));
	}
	/* Events until the machine closes the connection. */
	while ((o = next_line(c))) {
		note_event(c, o);
		json_object_put(o);
	}
	close(c->conn.fd);
	return NULL;
}

static int run_with_client(struct machine *m, struct client *c, const char *script)
{
	const char *why = NULL;
	pthread_t t;
	int ret;

	snprintf(c->path, sizeof(c->path), "/tmp/kickvm-qmp-%d.sock", (int)getpid());
	c->script = script;
	assert_int_equal(machine_monitor_start(m, c->path, true, false, &why), 0);
	assert_int_equal(pthread_create(&t, NULL, client_thread, c), 0);
	ret = machine_run(m);
	/* The client reads events until the connection closes: with the
	 * machine's destruction, after the SHUTDOWN machine_run() flushed. */
	if (c->keep_machine)
		machine_monitor_close(m);
	else
		machine_destroy(m);
	pthread_join(t, NULL);
	assert_int_equal(access(c->path, F_OK), -1);   /* the path went with it */
	if (c->error[0])
		fail_msg("client: %s", c->error);
	return ret;
}

static void test_stop_cont_quit(void **state)
{
	struct machine *m = vm_create(2, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));

	(void)state;
	assert_int_equal(testdev_setup_defaults(m->testdev), 0);  /* its doorbells, as kickvm run */
	vm_load_script(m, COUNTING_GUEST);
	assert_int_equal(run_with_client(m, c, "quit"), 0);
	assert_string_equal(c->prelaunch_status, "prelaunch");
	assert_int_equal(c->runs_before_cont, 0);        /* -S: no vCPU ran */
	assert_true(c->resume_seen);
	assert_true(c->mmio_after_cont > 0 && c->mmio_after_cont != UINT64_MAX);
	assert_true(c->stop_seen);
	assert_string_equal(c->paused_status, "paused");
	assert_int_equal(c->paused_a, c->paused_b);      /* paused: nothing moves */
	assert_true(c->mmio_after_recont > c->paused_a && c->mmio_after_recont != UINT64_MAX);
	assert_true(c->info_len > 0);
	assert_true(c->ioeventfds_kvm > 0);              /* the testdev's doorbells */
	assert_string_equal(c->shutdown_reason, "host-qmp-quit");
	assert_false(c->shutdown_guest);
	free(c);
}

/* system_reset in place: RESET, no SHUTDOWN, the guest boots again (each
 * CPU writes its boot marker a second time) and runs on until quit. */
static void test_system_reset(void **state)
{
	struct machine *m = vm_create(2, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));

	(void)state;
	vm_load_script(m, BOOTING_GUEST);
	c->keep_machine = true;
	assert_int_equal(run_with_client(m, c, "reset"), 0);
	assert_true(c->reset_returned);
	assert_true(c->reset_seen);
	assert_string_equal(c->status_after_reset, "running");
	assert_true(c->mmio_after_reset > c->mmio_at_reset + 100 &&
		    c->mmio_after_reset != UINT64_MAX);
	assert_true(c->cpu1_moved);
	assert_true(c->stats_count_resets);
	assert_int_equal(m->resets, 1);
	/* Two CPUs, two boots. */
	assert_int_equal(testdev_trapped_writes(m->testdev, false, MARKER_OFFSET), 4);
	assert_string_equal(c->shutdown_reason, "host-qmp-quit");
	machine_destroy(m);
	free(c);
}

/* -no-reboot: system_reset ends the machine as QEMU's does (status 3). */
static void test_system_reset_no_reboot(void **state)
{
	struct machine *m = vm_create(2, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));

	(void)state;
	m->cfg.no_reboot = true;
	vm_load_script(m, COUNTING_GUEST);
	assert_int_equal(run_with_client(m, c, "reset-exits"), MACHINE_EXIT_REBOOT);
	assert_true(c->reset_seen);
	assert_string_equal(c->shutdown_reason, "host-qmp-system-reset");
	free(c);
}

/*
 * quit while the guest keeps its disk busy (mode=stream: sequential
 * 512-byte writes, STREAM_QD in flight).  Afterwards every write the device
 * had completed to the driver when kickvm ended is in the image, whole:
 * the data sectors written form a prefix 1..n of intact sectors with
 * n >= the completed data writes, and nothing after it was half-written.
 */
static void test_quit_during_io(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));
	const char *guest = getenv("KICKVM_VIRTIO_GUEST"), *why = NULL;
	struct machine_device *disk;
	struct virtio_blk_stats st;
	struct stream_sector sec;
	char image[64], cmdline[96];
	uint64_t n = 0;
	int fd;

	(void)state;
	assert_non_null(guest);
	disk = vm_add_disk(m, image, 16u << 20, true);
	snprintf(cmdline, sizeof(cmdline), "mode=stream qd=%d quiet=1", STREAM_QD);
	assert_int_equal(machine_load_guest(m, guest, cmdline, &why), 0);
	c->keep_machine = true;
	assert_int_equal(run_with_client(m, c, "quit-io"), 0);
	assert_string_equal(c->shutdown_reason, "host-qmp-quit");
	assert_true(c->disk_requests >= 50 && c->disk_requests != UINT64_MAX);
	virtio_blk_get_stats(disk->vdev, &st);
	assert_true(st.writes > 1);
	machine_destroy(m);              /* what was in flight finishes here */

	fd = open(image, O_RDONLY);
	assert_true(fd >= 0);
	for (;;) {
		ssize_t got = pread(fd, &sec, sizeof(sec), (off_t)((n + 1) * STREAM_SECTOR));

		if (got != sizeof(sec) || !stream_sector_ok(&sec, 1, n + 1))
			break;
		n++;
	}
	/* One write was the boot record; every completed data write is there. */
	if (n < st.writes - 1)
		fail_msg("%llu data writes completed, only %llu in the image",
			 (unsigned long long)(st.writes - 1), (unsigned long long)n);
	/* After the prefix: sectors the guest never wrote, or that were in
	 * flight and not completed; never a torn one (a sector is written
	 * whole or not at all). */
	for (uint64_t k = n + 1; k <= n + STREAM_QD; k++) {
		uint8_t zero[STREAM_SECTOR] = { 0 };

		assert_int_equal(pread(fd, &sec, sizeof(sec), (off_t)(k * STREAM_SECTOR)), sizeof(sec));
		assert_true(stream_sector_ok(&sec, 1, k) || !memcmp(&sec, zero, sizeof(zero)));
	}
	close(fd);
	unlink(image);
	print_message("quit during I/O: %llu data writes completed before quit, %llu in the image\n",
		      (unsigned long long)(st.writes - 1), (unsigned long long)n);
	free(c);
}

/* query-version and query-commands on a live machine, then
 * system_powerdown: no ACPI power button here, so POWERDOWN and the
 * machine powers off as a guest's S5 would (status 0). */
static void test_system_powerdown(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));

	(void)state;
	vm_load_script(m, "cpl3; w4 0xfe001300 1 4000000000");
	assert_int_equal(run_with_client(m, c, "powerdown"), MACHINE_EXIT_POWEROFF);
	assert_string_equal(c->version_package, "kickvm");
	assert_int_equal(c->nr_commands, 12);
	assert_true(c->powerdown_seen);
	assert_string_equal(c->shutdown_reason, "host-qmp-system-powerdown");
	assert_false(c->shutdown_guest);
	free(c);
}

/* NEEDS_RESET from a live machine: the hostile guest feeds virtio-blk a
 * malformed ring, the device breaks, and the monitor names it. */
static void test_needs_reset_event(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));
	const char *guest = getenv("KICKVM_VIRTIO_GUEST"), *why = NULL;
	char image[64];

	(void)state;
	vm_add_disk(m, image, 16u << 20, true);
	assert_int_equal(machine_load_guest(m, guest, "mode=hostile quiet=1", &why), 0);
	run_with_client(m, c, "needs-reset");
	unlink(image);
	assert_string_equal(c->needs_reset_device, "virtio-blk0");
	assert_true(strlen(c->needs_reset_reason) > 0);
	assert_true(c->needs_reset_count >= 1);
	free(c);
}

/* A guest's own reset, in place: RESET with guest true, once per boot. */
static void test_guest_reset_event(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));

	(void)state;
	vm_load_script(m, "cpl0; o1 0x602 1 1; cpl3; w4 0xfe001300 1 4000000000");
	c->keep_machine = true;
	assert_int_equal(run_with_client(m, c, "guest-resets"), 0);
	assert_true(c->guest_resets >= 2);
	assert_true(m->resets >= 2);
	assert_string_equal(c->shutdown_reason, "host-qmp-quit");
	machine_destroy(m);
	free(c);
}

static void test_guest_exit(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));

	(void)state;
	vm_load_script(m, "cpl3; w4 0xfe001300 1 10; exit 5");
	assert_int_equal(run_with_client(m, c, "cont"), 5);
	assert_string_equal(c->shutdown_reason, "guest-shutdown");
	assert_true(c->shutdown_guest);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stop_cont_quit),
		cmocka_unit_test(test_system_reset),
		cmocka_unit_test(test_system_reset_no_reboot),
		cmocka_unit_test(test_quit_during_io),
		cmocka_unit_test(test_system_powerdown),
		cmocka_unit_test(test_needs_reset_event),
		cmocka_unit_test(test_guest_reset_event),
		cmocka_unit_test(test_guest_exit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
