/*
 * The QMP monitor in front of a real machine (machine_monitor_start): a
 * client thread drives it over the socket while machine_run() runs the
 * script guest on KVM.  -S (prelaunch, no vCPU ran), cont and stop with a
 * guest that counts its trapped writes (the count does not move while
 * paused, moves again after cont), the info text and query-ioeventfds, and
 * SHUTDOWN with its cause for quit, system_reset and a guest that exits.
 * The client records what it saw; the main thread asserts after the run.
 */
#include <errno.h>
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

#define COUNTING_GUEST "ncpus=2; cpl3; w4 0xfe001300 1 4000000000"
#define WAIT_NS (10ull * 1000000000ull)

struct client {
	char path[64];
	const char *script;            /* what the client does: "quit", "reset", "cont" */
	struct qmp_test_client conn;
	/* what it saw */
	char prelaunch_status[16], paused_status[16], shutdown_reason[48];
	bool shutdown_guest, resume_seen, stop_seen, reset_seen;
	uint64_t runs_before_cont, mmio_after_cont, paused_a, paused_b, mmio_after_recont;
	int ioeventfds_kvm;
	size_t info_len;
	char error[160];
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

/* Until cpu0's MMIO exits pass @above (bounded). */
static uint64_t wait_mmio_above(struct client *c, uint64_t above)
{
	uint64_t end = clock_ns() + WAIT_NS, n;

	while ((n = cpu_counter(c, 0, "mmio")) <= above && n != UINT64_MAX && clock_ns() < end)
		usleep(10000);
	return n;
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
		wait_mmio_above(c, 0);
		json_object_put(cmd(c, "{\"execute\":\"system_reset\"}"));
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

static void test_system_reset(void **state)
{
	struct machine *m = vm_create(2, IOEVENTFD_AUTO);
	struct client *c = calloc(1, sizeof(*c));

	(void)state;
	vm_load_script(m, COUNTING_GUEST);
	assert_int_equal(run_with_client(m, c, "reset"), MACHINE_EXIT_REBOOT);
	assert_true(c->reset_seen);
	assert_string_equal(c->shutdown_reason, "host-qmp-system-reset");
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
		cmocka_unit_test(test_guest_exit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
