/*
 * The monitor's server (kickvm/qmp.h): a listening unix socket on an event
 * loop and its clients.  Each client has its own line buffer, output buffer
 * and negotiation state: before qmp_capabilities only that command is
 * served and no event is sent, as in QEMU.
 *
 * Nothing a client does can stall the loop or grow without bound: sockets
 * are non-blocking, one read per wake-up per client, a request line is at
 * most QMP_MAX_LINE bytes (longer: an error, and the rest of that line is
 * discarded as it comes),
 * and a client that does not read its replies and events is dropped once
 * QMP_MAX_OUTPUT bytes wait for it.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/qmp.h"

#define READ_CHUNK 65536

struct qmp_client {
	struct qmp_server *s;
	struct qmp_client *next;
	int fd;
	unsigned serial;            /* for logs */
	bool negotiated;
	bool discarding;            /* in a line too long: dropped up to its end */
	bool dead;                  /* closed; freed when its handler returns */
	bool in_handler;
	bool want_write;            /* the write handler is registered */
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off, out_cap;
};

struct qmp_server {
	struct event_loop *loop;
	struct qmp_server_config cfg;
	char *path;
	int listen_fd;
	struct qmp_client *clients;
	int nr_clients;
	unsigned serial;
};

static void on_client_read(void *opaque);
static void on_client_write(void *opaque);

int qmp_server_nr_clients(const struct qmp_server *s)
{
	return s ? s->nr_clients : 0;
}

static void client_free(struct qmp_client *c)
{
	free(c->in);
	free(c->out);
	free(c);
}

/* Close @c now; it is freed at once unless its own handler is running. */
static void client_close(struct qmp_client *c, const char *why)
{
	struct qmp_server *s = c->s;

	if (c->dead)
		return;
	log_debug("qmp", "client %u: closed (%s)", c->serial, why);
	c->dead = true;
	event_loop_set_fd_handler(s->loop, c->fd, NULL, NULL, NULL);
	close(c->fd);
	for (struct qmp_client **p = &s->clients; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	s->nr_clients--;
	if (!c->in_handler)
		client_free(c);
}

static void update_handlers(struct qmp_client *c)
{
	bool want = c->out_len > c->out_off;

	if (want == c->want_write || c->dead)
		return;
	c->want_write = want;
	event_loop_set_fd_handler(c->s->loop, c->fd, on_client_read,
				  want ? on_client_write : NULL, c);
}

/* Write what is queued; 0, or a negative errno when the peer is gone. */
static int client_flush(struct qmp_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* Queue @line (consumed; NULL: out of memory) and write what can go now. */
static void client_send(struct qmp_client *c, char *line)
{
	size_t len;

	if (c->dead) {
		free(line);
		return;
	}
	if (!line) {
		client_close(c, "out of memory");
		return;
	}
	len = strlen(line);
	if (c->out_len - c->out_off + len > QMP_MAX_OUTPUT) {
		free(line);
		log_warn_rl("qmp", "client %u: %u bytes unread: dropped", c->serial, QMP_MAX_OUTPUT);
		client_close(c, "not reading");
		return;
	}
	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		/* Slide the unsent part down before growing. */
		if (c->out_off) {
			memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
		}
		while (cap < c->out_len + len)
			cap *= 2;
		p = cap == c->out_cap ? c->out : realloc(c->out, cap);
		if (!p) {
			free(line);
			client_close(c, "out of memory");
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
	free(line);
	if (client_flush(c) < 0) {
		client_close(c, "peer gone");
		return;
	}
	update_handlers(c);
}

static void handle_line(struct qmp_client *c, const char *line, size_t len)
{
	struct qmp_request req;
	struct qmp_error err;
	json_object *ret = NULL;

	if (qmp_parse_request(line, len, &req, &err) < 0) {
		client_send(c, qmp_build_error(&err, req.id));
		qmp_request_clear(&req);
		return;
	}
	if (!c->negotiated && req.cmd != QMP_CMD_CAPABILITIES) {
		qmp_set_error(&err, QMP_ERR_COMMAND_NOT_FOUND,
			      "Expecting capabilities negotiation with 'qmp_capabilities'");
	} else if (c->negotiated && req.cmd == QMP_CMD_CAPABILITIES) {
		qmp_set_error(&err, QMP_ERR_COMMAND_NOT_FOUND,
			      "Capabilities negotiation is already complete, command ignored");
	} else if (qmp_execute(c->s, &c->s->cfg, &req, &ret, &err) == 0) {
		log_debug("qmp", "client %u: %s", c->serial, qmp_cmd_name(req.cmd));
		if (req.cmd == QMP_CMD_CAPABILITIES)
			c->negotiated = true;
		client_send(c, qmp_build_return(ret, req.id));
		qmp_request_clear(&req);
		return;
	}
	client_send(c, qmp_build_error(&err, req.id));
	qmp_request_clear(&req);
}

/* Serve every complete line in the buffer; keep the unfinished tail. */
static bool blank(const char *p, size_t len)
{
	while (len && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++, len--;
	return !len;
}

static void handle_input(struct qmp_client *c)
{
	size_t start = 0;
	char *nl;

	while (!c->dead && (nl = memchr(c->in + start, '\n', c->in_len - start))) {
		size_t len = (size_t)(nl - (c->in + start));

		if (c->discarding)
			c->discarding = false;     /* the end of the long line */
		else if (!blank(c->in + start, len))
			handle_line(c, c->in + start, len);
		start = (size_t)(nl - c->in) + 1;
	}
	if (c->dead)
		return;
	if (c->discarding) {
		c->in_len = 0;
		return;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (c->in_len > QMP_MAX_LINE) {
		struct qmp_error err;

		qmp_set_error(&err, QMP_ERR_GENERIC, "request longer than %u bytes: ignored",
			      QMP_MAX_LINE);
		log_warn_rl("qmp", "client %u: %s", c->serial, err.desc);
		c->discarding = true;
		c->in_len = 0;
		client_send(c, qmp_build_error(&err, NULL));
	}
}

static void on_client_read(void *opaque)
{
	struct qmp_client *c = opaque;
	ssize_t n;

	c->in_handler = true;
	if (c->in_cap - c->in_len < READ_CHUNK) {
		/* At most the longest line and one chunk past it. */
		size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
		char *p = realloc(c->in, cap);

		if (!p) {
			client_close(c, "out of memory");
			goto out;
		}
		c->in = p;
		c->in_cap = cap;
	}
	n = recv(c->fd, c->in + c->in_len, READ_CHUNK, MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(c, n == 0 ? "end of stream" : strerror(errno));
		goto out;
	}
	if (n > 0) {
		c->in_len += (size_t)n;
		handle_input(c);
	}
out:
	c->in_handler = false;
	if (c->dead)
		client_free(c);
}

static void on_client_write(void *opaque)
{
	struct qmp_client *c = opaque;

	c->in_handler = true;
	if (client_flush(c) < 0)
		client_close(c, "peer gone");
	else
		update_handlers(c);
	c->in_handler = false;
	if (c->dead)
		client_free(c);
}

static void accept_one(struct qmp_server *s, int fd)
{
	struct qmp_client *c;

	if (s->nr_clients >= QMP_MAX_CLIENTS) {
		log_warn_rl("qmp", "%d clients already: connection refused", QMP_MAX_CLIENTS);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || event_loop_set_fd_handler(s->loop, fd, on_client_read, NULL, c) < 0) {
		log_warn_rl("qmp", "cannot serve a new client");
		free(c);
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	c->serial = ++s->serial;
	c->next = s->clients;
	s->clients = c;
	s->nr_clients++;
	log_debug("qmp", "client %u: connected", c->serial);
	client_send(c, qmp_build_greeting(s->cfg.version));
}

static void on_accept(void *opaque)
{
	struct qmp_server *s = opaque;

	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				log_warn_rl("qmp", "accept: %s", strerror(errno));
			return;
		}
		accept_one(s, fd);
	}
}

void qmp_server_event(struct qmp_server *s, const char *name, json_object *data)
{
	struct timespec ts;
	struct qmp_client *c, *next;
	char *line;

	if (!s) {
		json_object_put(data);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	line = qmp_build_event(name, data, (uint64_t)ts.tv_sec * 1000000000ull +
			       (uint64_t)ts.tv_nsec);
	log_debug("qmp", "event %s", name);
	for (c = s->clients; c; c = next) {
		next = c->next;
		if (c->negotiated)
			client_send(c, line ? strdup(line) : NULL);
	}
	free(line);
}

void qmp_server_flush(struct qmp_server *s, int timeout_ms)
{
	uint64_t deadline = clock_ns() + (uint64_t)timeout_ms * 1000000ull;

	if (!s)
		return;
	for (;;) {
		struct pollfd pfd[QMP_MAX_CLIENTS];
		struct qmp_client *c, *next;
		uint64_t now = clock_ns();
		int n = 0;

		for (c = s->clients; c; c = next) {
			next = c->next;
			if (client_flush(c) < 0)
				client_close(c, "peer gone");
			else if (c->out_off < c->out_len && n < QMP_MAX_CLIENTS)
				pfd[n++] = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
		}
		if (!n || now >= deadline)
			return;
		if (poll(pfd, (nfds_t)n, (int)((deadline - now) / 1000000ull) + 1) < 0 &&
		    errno != EINTR)
			return;
	}
}

/* A socket at @path nobody listens on is stale and may go; anything else
 * stays.  0 when @path is free now. */
static int clear_path(const struct sockaddr_un *addr, const char **why)
{
	struct stat st;
	int fd, r;

	if (lstat(addr->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		*why = "the path exists and is not a socket: not replaced";
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	close(fd);
	if (r == 0) {
		*why = "another process listens on that socket";
		return -EADDRINUSE;
	}
	return unlink(addr->sun_path) < 0 ? -errno : 0;
}

static int listen_on(struct qmp_server *s, const char **why)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	mode_t old_mask;
	int r;

	if (strlen(s->path) >= sizeof(addr.sun_path)) {
		*why = "socket path too long";
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, s->path);
	r = clear_path(&addr, why);
	if (r < 0)
		return r;
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0) {
		*why = "cannot create a socket";
		return -errno;
	}
	/* Created 0600 from the start: whoever connects controls the VM. */
	old_mask = umask(0177);
	r = bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old_mask);
	if (r < 0) {
		*why = "cannot bind the socket";
		return -errno;
	}
	if (listen(s->listen_fd, QMP_MAX_CLIENTS) < 0) {
		r = -errno;
		*why = "cannot listen on the socket";
		unlink(s->path);
		return r;
	}
	return 0;
}

int qmp_server_new(struct event_loop *loop, const struct qmp_server_config *cfg,
		   struct qmp_server **out, const char **why)
{
	struct qmp_server *s = calloc(1, sizeof(*s));
	int r;

	*why = NULL;
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->cfg = *cfg;
	s->listen_fd = -1;
	s->path = strdup(cfg->path);
	if (!s->path) {
		free(s);
		return -ENOMEM;
	}
	r = listen_on(s, why);
	if (!r) {
		r = event_loop_set_fd_handler(loop, s->listen_fd, on_accept, NULL, s);
		if (r < 0) {
			*why = "cannot watch the socket";
			unlink(s->path);
		}
	}
	if (r < 0) {
		if (s->listen_fd >= 0)
			close(s->listen_fd);
		free(s->path);
		free(s);
		return r;
	}
	log_info("qmp", "monitor listening on %s", s->path);
	*out = s;
	return 0;
}

void qmp_server_free(struct qmp_server *s)
{
	if (!s)
		return;
	while (s->clients)
		client_close(s->clients, "monitor closed");
	event_loop_set_fd_handler(s->loop, s->listen_fd, NULL, NULL, NULL);
	close(s->listen_fd);
	unlink(s->path);
	free(s->path);
	free(s);
}
