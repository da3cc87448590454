/*
 * libFuzzer target: a monitor client's whole byte stream, through the real
 * server (a unix socket, the fake machine behind it).  The input is split
 * into writes at each 0xff byte (so one request may arrive in pieces, or
 * many in one write), the client half-closes, and the loop runs until the
 * server has dropped the client.  Invariants: every line the server sends
 * is one JSON object; the server ends with no client and keeps serving the
 * next input (a leaked client or fd would show in nr_clients or ASan).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/qmp.h"
#include "qmp_fake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static struct event_loop *loop;
static struct qmp_server *server;
static struct qmp_fake fake;
static char path[64];

static void setup(void)
{
	struct qmp_server_config cfg = { .ops = &qmp_fake_ops, .opaque = &fake, .version = "0.1.0" };
	const char *why;

	log_set_quiet(true);
	snprintf(path, sizeof(path), "/tmp/kickvm-fuzz-qmp-%d.sock", (int)getpid());
	cfg.path = path;
	loop = event_loop_new("main");
	CHECK(loop && qmp_server_new(loop, &cfg, &server, &why) == 0);
}

/* Every complete line in @buf is a JSON object; keep the unfinished tail. */
static size_t check_output(char *buf, size_t len)
{
	char *nl;
	size_t start = 0;

	while ((nl = memchr(buf + start, '\n', len - start))) {
		json_object *o;

		*nl = '\0';
		o = json_tokener_parse(buf + start);
		CHECK(o && json_object_is_type(o, json_type_object));
		json_object_put(o);
		start = (size_t)(nl - buf) + 1;
	}
	memmove(buf, buf + start, len - start);
	return len - start;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[1 << 20];
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t out_len = 0, at = 0;
	uint64_t deadline;
	int fd;

	if (!loop)
		setup();
	fake.state = QMP_RUN_STATE_RUNNING;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	deadline = clock_ns() + 10ull * 1000000000ull;
	while (at <= size) {
		const uint8_t *end = memchr(data + at, 0xff, size - at);
		size_t piece = end ? (size_t)(end - (data + at)) : size - at;
		size_t sent = 0;

		while (sent < piece) {
			ssize_t n = send(fd, data + at + sent, piece - sent, MSG_NOSIGNAL);

			if (n > 0)
				sent += (size_t)n;
			else
				CHECK(errno == EAGAIN && clock_ns() < deadline);
			event_loop_run_once(loop, 0);
		}
		event_loop_run_once(loop, 0);
		at += piece + 1;
	}
	shutdown(fd, SHUT_WR);
	while (qmp_server_nr_clients(server)) {
		ssize_t n;

		CHECK(clock_ns() < deadline);
		event_loop_run_once(loop, 1);
		while ((n = recv(fd, out + out_len, sizeof(out) - 1 - out_len, 0)) > 0)
			out_len = check_output(out, out_len + (size_t)n);
	}
	close(fd);
	return 0;
}
