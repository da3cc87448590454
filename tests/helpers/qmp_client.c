/* The blocking test client of qmp_client.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "qmp_client.h"

int qmp_test_connect(struct qmp_test_client *c, const char *path, int timeout_s)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_s };

	c->len = 0;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int err = -errno;

		close(c->fd);
		c->fd = -1;
		return err;
	}
	return 0;
}

json_object *qmp_test_line(struct qmp_test_client *c)
{
	json_object *o;
	size_t used;
	char *nl;

	while (!(nl = memchr(c->buf, '\n', c->len))) {
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);

		if (n <= 0)
			return NULL;
		c->len += (size_t)n;
	}
	*nl = '\0';
	o = json_tokener_parse(c->buf);
	used = (size_t)(nl - c->buf) + 1;
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	return o;
}
