/*
 * The QMP monitor under kickvm run's main-loop sandbox (kickvm/sandbox.h):
 * a child process serves the monitor in front of the fake machine with the
 * main loop's seccomp filter installed (forced on, even in an ASan build),
 * as machine_run() installs it.  With the monitor group every command is
 * served, SHUTDOWN goes out and the socket's path is removed; without it
 * the first accept ends the process with the sandbox's status, naming the
 * call.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/qmp.h"
#include "kickvm/sandbox.h"
#include "qmp_client.h"
#include "qmp_fake.h"

#define WAIT_NS (5ull * 1000000000ull)

/*
 * A child serves the monitor as kickvm run's main loop does: set up, then
 * under the main loop's filter (forced on, even in an ASan build), with the
 * monitor group or without it.  It ends after quit: SHUTDOWN, flush, the
 * server freed (the path removed).  Exit 0, or a number naming what failed.
 */
static int serve_sandboxed(const char *path, bool allow, int ready_fd)
{
	struct qmp_fake fake = { .state = QMP_RUN_STATE_RUNNING };
	struct qmp_server_config cfg = { .path = path, .ops = &qmp_fake_ops, .opaque = &fake,
					 .version = "0.1.0" };
	struct event_loop *loop = event_loop_new("main");
	struct qmp_server *s;
	const char *why;
	uint64_t deadline = clock_ns() + WAIT_NS;

	if (!loop || qmp_server_new(loop, &cfg, &s, &why) < 0)
		return 10;
	sandbox_set_mode(SANDBOX_ON);
	sandbox_allow_monitor(allow);
	if (sandbox_enter(SANDBOX_MAIN_LOOP) < 0)
		return 11;
	if (write(ready_fd, "r", 1) != 1)
		return 12;
	while (!fake.quits && clock_ns() < deadline)
		event_loop_run_once(loop, 10);
	qmp_server_event(s, "SHUTDOWN", qmp_shutdown_data(false, "host-qmp-quit"));
	qmp_server_flush(s, 1000);
	qmp_server_free(s);
	event_loop_free(loop);
	return fake.quits == 1 && fake.stops == 1 ? 0 : 13;
}

static pid_t start_sandboxed(const char *path, bool allow, int *err_fd)
{
	int ready[2], err[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(err), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		close(err[0]);
		dup2(err[1], STDERR_FILENO);
		/* Not exit(): under ASan that starts a leak check no list allows. */
		syscall(SYS_exit_group, serve_sandboxed(path, allow, ready[1]));
	}
	close(ready[1]);
	close(err[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	*err_fd = err[0];
	return pid;
}

static void test_sandboxed_main_loop(void **state)
{
	static const char *const requests[] = {
		"{\"execute\":\"qmp_capabilities\"}\n", "{\"execute\":\"stop\"}\n",
		"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info stats\"}}\n",
		"{\"execute\":\"query-exit-stats\"}\n", "{\"execute\":\"quit\"}\n",
	};
	char dir[] = "/tmp/kickvm-qmpsbXXXXXX", path[64], err[512] = "";
	struct qmp_test_client *c = calloc(1, sizeof(*c));
	int status, err_fd, replies = 0;
	bool shutdown_seen = false;
	json_object *o, *ev;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/qmp.sock", dir);

	/* With the monitor group: every command served, SHUTDOWN out, path gone. */
	pid = start_sandboxed(path, true, &err_fd);
	assert_int_equal(qmp_test_connect(c, path, 5), 0);
	o = qmp_test_line(c);
	assert_non_null(o);                   /* the greeting */
	json_object_put(o);
	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
		assert_int_equal(send(c->fd, requests[i], strlen(requests[i]), MSG_NOSIGNAL),
				 (ssize_t)strlen(requests[i]));
	while ((o = qmp_test_line(c))) {
		replies += json_object_object_get_ex(o, "return", NULL);
		shutdown_seen |= json_object_object_get_ex(o, "event", &ev) &&
				 !strcmp(json_object_get_string(ev), "SHUTDOWN");
		json_object_put(o);
	}
	close(c->fd);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(read(err_fd, err, sizeof(err) - 1) >= 0);
	close(err_fd);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("sandboxed server: status 0x%x; %s", status, err);
	assert_int_equal(replies, 5);
	assert_true(shutdown_seen);
	assert_int_equal(access(path, F_OK), -1);

	/* Without it, the first accept ends the process, naming the call. */
	pid = start_sandboxed(path, false, &err_fd);
	assert_int_equal(qmp_test_connect(c, path, 5), 0);
	assert_null(qmp_test_line(c));
	close(c->fd);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	memset(err, 0, sizeof(err));
	assert_true(read(err_fd, err, sizeof(err) - 1) > 0);
	close(err_fd);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == SANDBOX_EXIT_STATUS);
	assert_non_null(strstr(err, "accept"));
	unlink(path);
	rmdir(dir);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sandboxed_main_loop),
	};

	log_set_quiet(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
