/* A blocking QMP client for tests that run the monitor in another thread
 * or process: reads are bounded by a receive timeout, never hang. */
#ifndef KICKVM_QMP_CLIENT_H
#define KICKVM_QMP_CLIENT_H

#include <stddef.h>

#include <json-c/json.h>

struct qmp_test_client {
	int fd;
	char buf[1 << 16];
	size_t len;
};

/* Connect to @path with a @timeout_s receive timeout; 0 or -errno. */
int qmp_test_connect(struct qmp_test_client *c, const char *path, int timeout_s);
/* The next line as JSON; NULL when the peer closed (or the timeout hit). */
json_object *qmp_test_line(struct qmp_test_client *c);

#endif
