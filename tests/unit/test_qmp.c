/*
 * The QMP monitor without a machine: the protocol module alone (requests,
 * QEMU's error classes and wording, the lines built), then the server over
 * a real unix socket in front of a fake machine (tests/helpers/qmp_fake.c):
 * negotiation per client, events, every command, and hostile clients.
 * The test pumps the server's event loop itself, one thread, so nothing
 * depends on timing; waits are bounded only to fail instead of hanging.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <cmocka.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/qmp.h"
#include "qmp_fake.h"

#define WAIT_NS (5ull * 1000000000ull)

/* ---- protocol ------------------------------------------------------------------ */

static int parse(const char *line, struct qmp_request *req, struct qmp_error *err)
{
	return qmp_parse_request(line, strlen(line), req, err);
}

static void test_parse_ok(void **state)
{
	struct qmp_request req;
	struct qmp_error err;

	(void)state;
	assert_int_equal(parse("{\"execute\": \"query-status\", \"id\": \"a1\"}", &req, &err), 0);
	assert_int_equal(req.cmd, QMP_CMD_QUERY_STATUS);
	assert_string_equal(req.id, "\"a1\"");
	qmp_request_clear(&req);

	assert_int_equal(parse("{\"execute\":\"human-monitor-command\",\"arguments\":"
			       "{\"command-line\":\"info mtree\",\"cpu-index\":0}}", &req, &err), 0);
	assert_int_equal(req.cmd, QMP_CMD_HUMAN_MONITOR);
	assert_null(req.id);
	assert_string_equal(req.command_line, "info mtree");
	qmp_request_clear(&req);

	/* Every command of the table parses by its name. */
	for (int c = 0; c < QMP_NR_CMDS; c++) {
		char line[128];

		if (c == QMP_CMD_HUMAN_MONITOR)
			continue;
		snprintf(line, sizeof(line), "{\"execute\":\"%s\",\"arguments\":{}}", qmp_cmd_name(c));
		assert_int_equal(parse(line, &req, &err), 0);
		assert_int_equal(req.cmd, c);
		qmp_request_clear(&req);
	}
}

static void test_parse_errors(void **state)
{
	static const struct {
		const char *line;
		enum qmp_error_class cls;
		const char *desc;      /* a part of it */
	} cases[] = {
		{ "{\"execute\": ", QMP_ERR_GENERIC, "JSON parse error" },
		{ "not json", QMP_ERR_GENERIC, "JSON parse error" },
		{ "{'execute': 'stop'}", QMP_ERR_GENERIC, "JSON parse error" },
		{ "[1, 2]", QMP_ERR_GENERIC, "must be a JSON object" },
		{ "\"stop\"", QMP_ERR_GENERIC, "must be a JSON object" },
		{ "42", QMP_ERR_GENERIC, "must be a JSON object" },
		{ "null", QMP_ERR_GENERIC, "must be a JSON object" },
		{ "{}", QMP_ERR_GENERIC, "lacks member 'execute'" },
		{ "{\"execute\": 1}", QMP_ERR_GENERIC, "'execute' must be a string" },
		{ "{\"execute\": \"stop\", \"arguments\": []}", QMP_ERR_GENERIC,
		  "'arguments' must be an object" },
		{ "{\"execute\": \"stop\", \"exec-oob\": 1}", QMP_ERR_GENERIC,
		  "member 'exec-oob' is unexpected" },
		{ "{\"execute\": \"no-such\"}", QMP_ERR_COMMAND_NOT_FOUND,
		  "The command no-such has not been found" },
		{ "{\"execute\": \"human-monitor-command\"}", QMP_ERR_GENERIC,
		  "Parameter 'command-line' is missing" },
		{ "{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": 3}}",
		  QMP_ERR_GENERIC, "Invalid parameter type for 'command-line', expected: string" },
		{ "{\"execute\": \"stop\", \"arguments\": {\"force\": true}}", QMP_ERR_GENERIC,
		  "Parameter 'force' is unexpected" },
		{ "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
		  QMP_ERR_GENERIC, "Capability 'oob' not available" },
		{ "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [1]}}",
		  QMP_ERR_GENERIC, "expected: array of strings" },
		{ "{\"execute\": \"stop\"} {\"execute\": \"cont\"}", QMP_ERR_GENERIC,
		  "JSON parse error" },
		{ "{\"execute\": \"stop\"} \t ", -1, NULL },
		{ "{\"execute\": \"stop\"} x", QMP_ERR_GENERIC, "JSON parse error" },
		{ "{\"execute\": \"st\xff\"}", QMP_ERR_GENERIC, "JSON parse error" },
		{ "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		  QMP_ERR_GENERIC, "JSON parse error" },
	};
	struct qmp_request req;
	struct qmp_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&err, 0, sizeof(err));
		if ((int)cases[i].cls < 0) {        /* trailing blanks are fine */
			assert_int_equal(parse(cases[i].line, &req, &err), 0);
			qmp_request_clear(&req);
			continue;
		}
		if (parse(cases[i].line, &req, &err) != -EINVAL || err.cls != cases[i].cls ||
		    !strstr(err.desc, cases[i].desc))
			fail_msg("'%s': got class %d '%s'", cases[i].line, err.cls, err.desc);
		qmp_request_clear(&req);
	}
	/* A NUL inside the line. */
	assert_int_equal(qmp_parse_request("{\"execute\"\0:1}", 15, &req, &err), -EINVAL);
	assert_non_null(strstr(err.desc, "NUL"));
	qmp_request_clear(&req);
	/* The id survives an error, to be echoed. */
	assert_int_equal(parse("{\"execute\": \"nope\", \"id\": 7}", &req, &err), -EINVAL);
	assert_string_equal(req.id, "7");
	qmp_request_clear(&req);
}

static json_object *line_json(char *line)
{
	json_object *o;
	size_t n;

	assert_non_null(line);
	n = strlen(line);
	assert_true(n >= 2 && line[n - 2] == '\r' && line[n - 1] == '\n');
	assert_null(memchr(line, '\n', n - 1));  /* one line */
	o = json_tokener_parse(line);
	free(line);
	assert_non_null(o);
	return o;
}

static const char *get_str(json_object *o, const char *path)
{
	char buf[128], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
		o = json_object_object_get(o, k);
	return o ? json_object_get_string(o) : NULL;
}

static void test_build(void **state)
{
	struct qmp_request req;
	struct qmp_error err;
	json_object *o;

	(void)state;
	o = line_json(qmp_build_greeting("0.1.2"));
	assert_string_equal(get_str(o, "QMP.version.qemu.minor"), "1");
	assert_string_equal(get_str(o, "QMP.version.qemu.micro"), "2");
	assert_string_equal(get_str(o, "QMP.capabilities"), "[ ]");
	json_object_put(o);

	/* Any id comes back as it went in. */
	assert_int_equal(parse("{\"execute\":\"stop\",\"id\":{\"x\":[1,\"a/b\"]}}", &req, &err), 0);
	o = line_json(qmp_build_return(NULL, req.id));
	assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE),
			    "{\"return\":{},\"id\":{\"x\":[1,\"a/b\"]}}");
	json_object_put(o);
	qmp_set_error(&err, QMP_ERR_COMMAND_NOT_FOUND, "nope %d", 1);
	o = line_json(qmp_build_error(&err, req.id));
	assert_string_equal(get_str(o, "error.class"), "CommandNotFound");
	assert_string_equal(get_str(o, "error.desc"), "nope 1");
	assert_string_equal(get_str(o, "id.x"), "[ 1, \"a\\/b\" ]");
	json_object_put(o);
	qmp_request_clear(&req);

	o = line_json(qmp_build_event("STOP", NULL, 1700000000123456789ull));
	assert_string_equal(get_str(o, "event"), "STOP");
	assert_string_equal(get_str(o, "timestamp.seconds"), "1700000000");
	assert_string_equal(get_str(o, "timestamp.microseconds"), "123456");
	assert_null(json_object_object_get(o, "data"));
	json_object_put(o);
	o = line_json(qmp_build_event("SHUTDOWN", qmp_shutdown_data(true, "guest-reset"), 0));
	assert_string_equal(get_str(o, "data.reason"), "guest-reset");
	assert_string_equal(get_str(o, "data.guest"), "true");
	json_object_put(o);
}

static void test_parse_address(void **state)
{
	const char *why = NULL;
	char *path;
	bool wait;

	(void)state;
	assert_int_equal(qmp_parse_address("unix:/tmp/q.sock", &path, &wait, &why), 0);
	assert_string_equal(path, "/tmp/q.sock");
	assert_false(wait);
	free(path);
	assert_int_equal(qmp_parse_address("unix:q,server=on,wait=off", &path, &wait, &why), 0);
	assert_string_equal(path, "q");
	free(path);
	assert_int_equal(qmp_parse_address("unix:q,server,wait=on", &path, &wait, &why), 0);
	assert_true(wait);
	free(path);
	assert_int_equal(qmp_parse_address("tcp:localhost:4444", &path, &wait, &why), -EINVAL);
	assert_int_equal(qmp_parse_address("unix:", &path, &wait, &why), -EINVAL);
	assert_int_equal(qmp_parse_address("unix:q,server=off", &path, &wait, &why), -EINVAL);
	assert_non_null(strstr(why, "only listens"));
	assert_int_equal(qmp_parse_address("unix:q,bogus", &path, &wait, &why), -EINVAL);
	assert_null(path);
}

/* ---- the server ----------------------------------------------------------------- */

struct world {
	char dir[64], path[96];
	struct event_loop *loop;
	struct qmp_fake fake;
	struct qmp_server *s;
};

static int world_setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	struct qmp_server_config cfg = { .ops = &qmp_fake_ops, .version = "0.1.0" };
	const char *why;

	snprintf(w->dir, sizeof(w->dir), "/tmp/kickvm-qmpXXXXXX");
	assert_non_null(mkdtemp(w->dir));
	snprintf(w->path, sizeof(w->path), "%s/qmp.sock", w->dir);
	w->loop = event_loop_new("main");
	w->fake.state = QMP_RUN_STATE_RUNNING;
	cfg.path = w->path;
	cfg.opaque = &w->fake;
	assert_int_equal(qmp_server_new(w->loop, &cfg, &w->s, &why), 0);
	*state = w;
	return 0;
}

static int world_teardown(void **state)
{
	struct world *w = *state;

	qmp_server_free(w->s);
	/* The path goes with the server. */
	assert_int_equal(access(w->path, F_OK), -1);
	event_loop_free(w->loop);
	rmdir(w->dir);
	free(w);
	return 0;
}

struct client {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static void client_connect(struct world *w, struct client *c)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	memset(c, 0, sizeof(*c));
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", w->path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
}

static void client_close(struct client *c)
{
	close(c->fd);
	c->fd = -1;
}

/* Pump the loop until @c has a whole line (NULL: the server closed it). */
static json_object *client_line(struct world *w, struct client *c)
{
	uint64_t deadline = clock_ns() + WAIT_NS;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		ssize_t n;

		if (nl) {
			size_t len = (size_t)(nl - c->buf) + 1;
			json_object *o;

			*nl = '\0';
			o = json_tokener_parse(c->buf);
			assert_non_null(o);
			memmove(c->buf, c->buf + len, c->len - len);
			c->len -= len;
			return o;
		}
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1, 0);
		if (n == 0)
			return NULL;
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		assert_int_equal(errno, EAGAIN);
		if (clock_ns() > deadline)
			fail_msg("no reply within the bound");
		event_loop_run_once(w->loop, 10);
	}
}

/* Nothing more for @c once the loop has nothing left to do. */
static void assert_quiet(struct world *w, struct client *c)
{
	char b;

	while (event_loop_run_once(w->loop, 10) > 0)
		;
	assert_int_equal(c->len, 0);
	assert_int_equal(recv(c->fd, &b, 1, 0), -1);
	assert_int_equal(errno, EAGAIN);
}

static void client_send(struct world *w, struct client *c, const char *text)
{
	size_t len = strlen(text), sent = 0;
	uint64_t deadline = clock_ns() + WAIT_NS;

	while (sent < len) {
		ssize_t n = send(c->fd, text + sent, len - sent, MSG_NOSIGNAL);

		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		assert_int_equal(errno, EAGAIN);
		if (clock_ns() > deadline)
			fail_msg("the server does not read");
		event_loop_run_once(w->loop, 10);
	}
}

/* Send @line, return the reply (events before it go to *@events, if given). */
static json_object *request(struct world *w, struct client *c, const char *line,
			    json_object **events)
{
	char *text;

	assert_true(asprintf(&text, "%s\n", line) > 0);
	client_send(w, c, text);
	free(text);
	for (;;) {
		json_object *o = client_line(w, c);

		assert_non_null(o);
		if (!json_object_object_get_ex(o, "event", NULL))
			return o;
		if (events && !*events)
			*events = o;
		else
			json_object_put(o);
	}
}

static void expect_return(struct world *w, struct client *c, const char *line)
{
	json_object *o = request(w, c, line, NULL);

	if (!json_object_object_get_ex(o, "return", NULL))
		fail_msg("%s: %s", line, json_object_to_json_string(o));
	json_object_put(o);
}

static void expect_error(struct world *w, struct client *c, const char *line, const char *cls,
			 const char *desc)
{
	json_object *o = request(w, c, line, NULL);
	const char *got_cls = get_str(o, "error.class"), *got = get_str(o, "error.desc");

	if (!got_cls || strcmp(got_cls, cls) || !got || !strstr(got, desc))
		fail_msg("%s: %s", line, json_object_to_json_string(o));
	json_object_put(o);
}

static void greet(struct world *w, struct client *c, bool negotiate)
{
	json_object *g;

	client_connect(w, c);
	g = client_line(w, c);
	assert_non_null(g);
	assert_string_equal(get_str(g, "QMP.version.package"), "kickvm");
	json_object_put(g);
	if (negotiate)
		expect_return(w, c, "{\"execute\":\"qmp_capabilities\"}");
}

static void test_negotiation(void **state)
{
	struct world *w = *state;
	struct client c;
	json_object *o;

	greet(w, &c, false);
	expect_error(w, &c, "{\"execute\":\"query-status\"}", "CommandNotFound",
		     "Expecting capabilities negotiation");
	o = request(w, &c, "{\"execute\":\"qmp_capabilities\",\"id\":\"n1\"}", NULL);
	assert_string_equal(get_str(o, "id"), "n1");
	assert_string_equal(json_object_to_json_string_ext(json_object_object_get(o, "return"),
							   JSON_C_TO_STRING_PLAIN), "{}");
	json_object_put(o);
	expect_error(w, &c, "{\"execute\":\"qmp_capabilities\"}", "CommandNotFound",
		     "already complete");
	o = request(w, &c, "{\"execute\":\"query-status\",\"id\":[1]}", NULL);
	assert_string_equal(get_str(o, "return.status"), "running");
	assert_string_equal(get_str(o, "return.running"), "true");
	assert_string_equal(get_str(o, "id"), "[ 1 ]");
	json_object_put(o);
	client_close(&c);
}

/* Each client negotiates for itself; events reach negotiated ones only. */
static void test_clients_and_events(void **state)
{
	struct world *w = *state;
	struct client a, b;
	json_object *ev = NULL, *o;

	greet(w, &a, true);
	greet(w, &b, false);
	o = request(w, &a, "{\"execute\":\"stop\"}", &ev);
	assert_non_null(ev);
	assert_string_equal(get_str(ev, "event"), "STOP");
	assert_non_null(get_str(ev, "timestamp.seconds"));
	json_object_put(ev);
	json_object_put(o);
	assert_int_equal(w->fake.stops, 1);
	assert_quiet(w, &b);                  /* not negotiated: no STOP */
	o = request(w, &a, "{\"execute\":\"query-status\"}", NULL);
	assert_string_equal(get_str(o, "return.status"), "paused");
	json_object_put(o);

	expect_return(w, &b, "{\"execute\":\"qmp_capabilities\"}");
	ev = NULL;
	o = request(w, &a, "{\"execute\":\"cont\"}", &ev);
	assert_string_equal(get_str(ev, "event"), "RESUME");
	json_object_put(ev);
	json_object_put(o);
	o = client_line(w, &b);
	assert_string_equal(get_str(o, "event"), "RESUME");
	json_object_put(o);
	/* cont on a running machine changes nothing: no event. */
	expect_return(w, &a, "{\"execute\":\"cont\"}");
	assert_quiet(w, &b);
	assert_int_equal(qmp_server_nr_clients(w->s), 2);
	client_close(&a);
	client_close(&b);
	while (event_loop_run_once(w->loop, 10) > 0)
		;
	assert_int_equal(qmp_server_nr_clients(w->s), 0);
}

static void test_commands(void **state)
{
	struct world *w = *state;
	struct client c;
	json_object *o, *ev = NULL, *a;

	greet(w, &c, true);
	o = request(w, &c, "{\"execute\":\"human-monitor-command\","
		    "\"arguments\":{\"command-line\":\"info mtree\"}}", NULL);
	assert_string_equal(get_str(o, "return"), "fake mtree\nsecond line\n");
	json_object_put(o);
	expect_error(w, &c, "{\"execute\":\"human-monitor-command\","
		     "\"arguments\":{\"command-line\":\"info pci\"}}", "GenericError", "unknown");
	expect_error(w, &c, "{\"execute\":\"human-monitor-command\","
		     "\"arguments\":{\"command-line\":\"system_reset\"}}", "GenericError",
		     "only 'info mtree'");
	w->fake.fail_info = true;
	expect_error(w, &c, "{\"execute\":\"human-monitor-command\","
		     "\"arguments\":{\"command-line\":\"info stats\"}}", "GenericError",
		     "Input/output error");
	w->fake.fail_info = false;

	o = request(w, &c, "{\"execute\":\"query-ioeventfds\"}", NULL);
	a = json_object_object_get(o, "return");
	assert_int_equal(json_object_array_length(a), 2);
	assert_string_equal(get_str(json_object_array_get_idx(a, 0), "path"), "kvm");
	assert_string_equal(get_str(json_object_array_get_idx(a, 0), "addr"), "4261412864");
	assert_string_equal(get_str(json_object_array_get_idx(a, 0), "datamatch"), "1");
	assert_string_equal(get_str(json_object_array_get_idx(a, 1), "path"), "refused");
	assert_string_equal(get_str(json_object_array_get_idx(a, 1), "reason"), "EEXIST");
	assert_null(json_object_object_get(json_object_array_get_idx(a, 1), "datamatch"));
	json_object_put(o);

	o = request(w, &c, "{\"execute\":\"query-exit-stats\"}", NULL);
	a = json_object_object_get(json_object_object_get(o, "return"), "vcpus");
	assert_int_equal(json_object_array_length(a), 2);
	assert_string_equal(get_str(json_object_array_get_idx(a, 0), "exits.mmio"), "100");
	a = json_object_object_get(json_object_object_get(o, "return"), "devices");
	assert_string_equal(get_str(json_object_array_get_idx(a, 1), "id"), "virtio-blk0");
	assert_string_equal(get_str(json_object_array_get_idx(a, 1), "requests"), "300");
	assert_string_equal(get_str(json_object_array_get_idx(a, 0), "doorbells.kvm"), "1000");
	json_object_put(o);

	o = request(w, &c, "{\"execute\":\"query-commands\"}", NULL);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "return")),
			 QMP_NR_CMDS);
	json_object_put(o);
	o = request(w, &c, "{\"execute\":\"query-version\"}", NULL);
	assert_string_equal(get_str(o, "return.package"), "kickvm");
	json_object_put(o);

	o = request(w, &c, "{\"execute\":\"system_reset\"}", &ev);
	assert_string_equal(get_str(ev, "event"), "RESET");
	assert_string_equal(get_str(ev, "data.reason"), "host-qmp-system-reset");
	json_object_put(ev);
	json_object_put(o);
	ev = NULL;
	o = request(w, &c, "{\"execute\":\"system_powerdown\"}", &ev);
	assert_string_equal(get_str(ev, "event"), "POWERDOWN");
	json_object_put(ev);
	json_object_put(o);
	expect_return(w, &c, "{\"execute\":\"quit\"}");
	assert_int_equal(w->fake.resets, 1);
	assert_int_equal(w->fake.powerdowns, 1);
	assert_int_equal(w->fake.quits, 1);
	expect_error(w, &c, "{\"execute\":\"stop\"}", "GenericError", "shutting down");
	/* The machine ends: the SHUTDOWN its owner sends gets out. */
	qmp_server_event(w->s, "SHUTDOWN", qmp_shutdown_data(false, "host-qmp-quit"));
	qmp_server_flush(w->s, 1000);
	o = client_line(w, &c);
	assert_string_equal(get_str(o, "data.reason"), "host-qmp-quit");
	json_object_put(o);
	client_close(&c);
}

/* Garbage gets an error and the connection lives on. */
static void test_bad_input(void **state)
{
	struct world *w = *state;
	struct client c;
	json_object *o;

	greet(w, &c, true);
	expect_error(w, &c, "{\"execute\": ", "GenericError", "JSON parse error");
	expect_error(w, &c, "[]", "GenericError", "must be a JSON object");
	expect_error(w, &c, "{\"execute\":\"reboot-now\",\"id\":5}", "CommandNotFound",
		     "has not been found");
	expect_error(w, &c, "{\"execute\":\"human-monitor-command\","
		     "\"arguments\":{\"command-line\":[]}}", "GenericError",
		     "Invalid parameter type");
	/* Blank lines are skipped; "\r\n" is a line end too. */
	client_send(w, &c, "\n\r\n  \n");
	o = request(w, &c, "{\"execute\":\"query-status\"}\r", NULL);
	assert_string_equal(get_str(o, "return.status"), "running");
	json_object_put(o);
	/* Two requests in one write, one split over two. */
	client_send(w, &c, "{\"execute\":\"stop\"}\n{\"execute\":\"query-");
	o = request(w, &c, "status\"}", NULL);
	json_object_put(o);
	o = client_line(w, &c);
	assert_string_equal(get_str(o, "return.status"), "paused");
	json_object_put(o);
	client_close(&c);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_hostile_clients(void **state)
{
	struct world *w = *state;
	struct client silent, c, big;
	int fds_before;
	char *chunk;
	size_t sent = 0, total = 3u << 20;
	json_object *o;

	/* A silent client gets its greeting and holds nobody up. */
	client_connect(w, &silent);
	greet(w, &c, true);
	expect_return(w, &c, "{\"execute\":\"query-status\"}");

	/* A line of several megabytes: an error, the line is dropped, the
	 * connection goes on. */
	greet(w, &big, true);
	chunk = malloc(1 << 16);
	memset(chunk, ' ', 1 << 16);
	while (sent < total) {
		ssize_t n = send(big.fd, chunk, 1 << 16, MSG_NOSIGNAL);

		if (n > 0)
			sent += (size_t)n;
		else if (n < 0 && errno == EAGAIN)
			event_loop_run_once(w->loop, 10);
		else
			fail_msg("send: %s", strerror(errno));
	}
	free(chunk);
	o = request(w, &big, "{\"execute\":\"stop\"}", NULL);   /* ends the long line */
	assert_non_null(strstr(get_str(o, "error.desc"), "longer than"));
	json_object_put(o);
	assert_int_equal(w->fake.stops, 0);
	expect_return(w, &big, "{\"execute\":\"query-status\"}");
	client_close(&big);

	/* Disconnecting in the middle of a request. */
	greet(w, &big, true);
	client_send(w, &big, "{\"execute\":\"query-st");
	event_loop_run_once(w->loop, 10);
	client_close(&big);
	while (event_loop_run_once(w->loop, 10) > 0)
		;
	assert_int_equal(qmp_server_nr_clients(w->s), 2);   /* silent and c */

	/* A hundred connect/disconnect cycles leave nothing behind. */
	fds_before = count_fds();
	for (int i = 0; i < 100; i++) {
		struct client t;

		client_connect(w, &t);
		if (i % 2)
			client_send(w, &t, "{\"execute\":\"qmp_capabilities\"}\n");
		event_loop_run_once(w->loop, 0);
		client_close(&t);
	}
	while (event_loop_run_once(w->loop, 10) > 0)
		;
	assert_int_equal(count_fds(), fds_before);
	assert_int_equal(qmp_server_nr_clients(w->s), 2);   /* silent and c */

	/* Past QMP_MAX_CLIENTS, a connection is closed at once. */
	{
		struct client many[QMP_MAX_CLIENTS];

		for (int i = 0; i < QMP_MAX_CLIENTS - 2; i++)
			greet(w, &many[i], false);
		client_connect(w, &big);
		assert_null(client_line(w, &big));
		client_close(&big);
		for (int i = 0; i < QMP_MAX_CLIENTS - 2; i++)
			client_close(&many[i]);
	}
	/* Through all this the other client is served. */
	expect_return(w, &c, "{\"execute\":\"query-status\"}");
	o = client_line(w, &silent);
	assert_non_null(get_str(o, "QMP.version.package"));
	json_object_put(o);
	client_close(&silent);
	client_close(&c);
}

static void test_socket_path(void **state)
{
	struct world *w = *state;
	struct qmp_server_config cfg = { .ops = &qmp_fake_ops, .opaque = &w->fake };
	struct qmp_server *s2;
	const char *why;
	char other[100];
	struct stat st;
	int fd;

	assert_int_equal(stat(w->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	/* Somebody listens there: not taken over. */
	cfg.path = w->path;
	assert_int_equal(qmp_server_new(w->loop, &cfg, &s2, &why), -EADDRINUSE);
	assert_int_equal(stat(w->path, &st), 0);

	/* A file that is not a socket is never replaced. */
	snprintf(other, sizeof(other), "%s/file", w->dir);
	fd = open(other, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "data", 4), 4);
	close(fd);
	cfg.path = other;
	assert_int_equal(qmp_server_new(w->loop, &cfg, &s2, &why), -EEXIST);
	assert_non_null(strstr(why, "not a socket"));
	assert_int_equal(stat(other, &st), 0);
	assert_int_equal(st.st_size, 4);
	unlink(other);

	/* A stale socket (nobody listens) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un addr = { .sun_family = AF_UNIX };

		snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", other);
		assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	}
	close(fd);
	assert_int_equal(qmp_server_new(w->loop, &cfg, &s2, &why), 0);
	qmp_server_free(s2);
	assert_int_equal(access(other, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_parse_address),
		cmocka_unit_test_setup_teardown(test_negotiation, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_clients_and_events, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_commands, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_hostile_clients, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_socket_path, world_setup, world_teardown),
	};

	log_set_quiet(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
