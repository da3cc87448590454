/*
 * The QMP monitor in front of the fake machine (tests/helpers/qmp_fake.c),
 * on a real socket: what the python client and `kickvm stat` are tested
 * against where there is no /dev/kvm.
 *
 *   qmp_fake_server PATH [SECONDS]
 *
 * Prints "ready" once it listens; ends after quit (sending SHUTDOWN, as a
 * machine does), or after SECONDS (default 60) whatever happens.  A line
 * "needs-reset" on stdin makes virtio-blk0 report NEEDS_RESET and sends the
 * event, as the machine does for a device its driver broke.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/qmp.h"
#include "qmp_fake.h"

struct ctx {
	struct qmp_fake fake;
	struct qmp_server *s;
};

static void on_stdin(void *opaque)
{
	struct ctx *x = opaque;
	char buf[64];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf) - 1);

	if (n <= 0)
		return;
	buf[n] = '\0';
	if (strstr(buf, "needs-reset") && !x->fake.needs_reset) {
		json_object *d = json_object_new_object();

		x->fake.needs_reset = true;
		json_object_object_add(d, "device", json_object_new_string("virtio-blk0"));
		json_object_object_add(d, "reason", json_object_new_string("injected by the test"));
		qmp_server_event(x->s, "NEEDS_RESET", d);
	}
}

int main(int argc, char **argv)
{
	struct ctx x = { .fake = { .state = QMP_RUN_STATE_RUNNING } };
	struct qmp_server_config cfg = { .ops = &qmp_fake_ops, .opaque = &x.fake,
					 .version = KICKVM_QMP_VERSION };
	struct event_loop *loop = event_loop_new("main");
	uint64_t deadline;
	const char *why;
	int ret;

	if (argc < 2 || !loop)
		return 2;
	deadline = clock_ns() + (uint64_t)(argc > 2 ? atoi(argv[2]) : 60) * 1000000000ull;
	cfg.path = argv[1];
	ret = qmp_server_new(loop, &cfg, &x.s, &why);
	if (ret < 0) {
		fprintf(stderr, "qmp_fake_server: %s\n", why ? why : "error");
		event_loop_free(loop);
		return ret == -EEXIST ? 2 : 1;
	}
	event_loop_set_fd_handler(loop, STDIN_FILENO, on_stdin, NULL, &x);
	printf("ready\n");
	fflush(stdout);
	while (!x.fake.quits && clock_ns() < deadline)
		event_loop_run_once(loop, 100);
	qmp_server_event(x.s, "SHUTDOWN", qmp_shutdown_data(false, x.fake.quits ?
							    "host-qmp-quit" : "host-signal"));
	qmp_server_flush(x.s, 1000);
	event_loop_set_fd_handler(loop, STDIN_FILENO, NULL, NULL, NULL);
	qmp_server_free(x.s);
	event_loop_free(loop);
	return x.fake.quits ? 0 : 1;
}
