/*
 * kickvm stat SOCKET: the live exit economy of a running machine, in the
 * spirit of kvm_stat and top.  Every second it asks the machine's QMP
 * monitor for query-exit-stats and prints what changed, per second: vCPU
 * exits by reason, and per device the doorbell writes by path (KVM
 * ioeventfd, userspace fallback, trapped), requests, interrupts and work
 * found by polling.  Fits 80 columns.  --once prints one screen (two
 * samples a second apart); --json prints each as one JSON object with the
 * deltas, the seconds between the samples and the rates.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cli/cli.h"
#include "kickvm/event.h"
#include "kickvm/qmp.h"

#define REPLY_TIMEOUT_S 5

struct monitor_conn {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static void stat_help(void)
{
	printf("usage: kickvm stat [--once] [--json] [--interval SECONDS] SOCKET\n"
	       "Watch a running kickvm (started with -qmp unix:SOCKET): per second, vCPU\n"
	       "exits by reason and, per device, doorbell writes by path (KVM ioeventfd,\n"
	       "userspace fallback, trapped), requests, interrupts and work found by polling.\n\n"
	       "      --once               one screen (two samples a second apart), then exit\n"
	       "      --json               one JSON object per refresh: deltas, seconds, rates\n"
	       "      --interval SECONDS   refresh period, 1-60 (default 1)\n"
	       "  -h, --help               this text\n");
}

/* The next line that is not an event; NULL when the connection ends. */
static json_object *read_reply(struct monitor_conn *c)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		ssize_t n;

		if (nl) {
			size_t len = (size_t)(nl - c->buf) + 1;
			json_object *o;

			*nl = '\0';
			o = json_tokener_parse(c->buf);
			memmove(c->buf, c->buf + len, c->len - len);
			c->len -= len;
			if (o && json_object_object_get_ex(o, "event", NULL)) {
				json_object_put(o);
				continue;
			}
			return o;
		}
		if (c->len == sizeof(c->buf) - 1)
			return NULL;           /* a line longer than any reply */
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
		if (n <= 0)
			return NULL;
		c->len += (size_t)n;
	}
}

static json_object *execute(struct monitor_conn *c, const char *cmd)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "{\"execute\":\"%s\"}\n", cmd);
	json_object *reply, *ret = NULL;

	if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL) != n)
		return NULL;
	reply = read_reply(c);
	if (reply && json_object_object_get_ex(reply, "return", &ret))
		json_object_get(ret);
	else if (reply)
		fprintf(stderr, "kickvm stat: %s: %s\n", cmd, json_object_to_json_string(reply));
	json_object_put(reply);
	return ret;
}

static int connect_monitor(const char *path, struct monitor_conn *c)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = REPLY_TIMEOUT_S };
	json_object *o;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	c->len = 0;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	/* A monitor that stops answering ends kickvm stat, not hangs it. */
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -errno;
	o = read_reply(c);               /* the greeting */
	if (!o || !json_object_object_get_ex(o, "QMP", NULL)) {
		json_object_put(o);
		return -EPROTO;
	}
	json_object_put(o);
	o = execute(c, "qmp_capabilities");
	if (!o)
		return -EPROTO;
	json_object_put(o);
	return 0;
}

static uint64_t get_u64(json_object *o, const char *a, const char *b)
{
	json_object *v = json_object_object_get(o, a);

	if (b)
		v = json_object_object_get(v, b);
	return v ? json_object_get_uint64(v) : 0;
}

/* query-exit-stats' return back into the struct it was built from. */
static void stats_from_json(json_object *o, struct qmp_exit_stats *st)
{
	json_object *cpus = json_object_object_get(o, "vcpus");
	json_object *devs = json_object_object_get(o, "devices");

	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < json_object_array_length(cpus) && i < QMP_MAX_VCPUS; i++) {
		json_object *c = json_object_array_get_idx(cpus, i);

		st->vcpus[i] = (struct qmp_vcpu_exits){
			.runs = get_u64(c, "runs", NULL), .mmio = get_u64(c, "exits", "mmio"),
			.pio = get_u64(c, "exits", "pio"), .intr = get_u64(c, "exits", "intr"),
			.coalesced = get_u64(c, "coalesced-writes", NULL),
		};
		st->nr_vcpus++;
	}
	for (size_t i = 0; i < json_object_array_length(devs) && i < QMP_MAX_DEVICES; i++) {
		json_object *d = json_object_array_get_idx(devs, i);
		struct qmp_device_stats *s = &st->devices[i];

		snprintf(s->id, sizeof(s->id), "%s",
			 json_object_get_string(json_object_object_get(d, "id")) ?: "?");
		snprintf(s->type, sizeof(s->type), "%s",
			 json_object_get_string(json_object_object_get(d, "type")) ?: "?");
		s->doorbell_kvm = get_u64(d, "doorbells", "kvm");
		s->doorbell_fallback = get_u64(d, "doorbells", "fallback");
		s->doorbell_trapped = get_u64(d, "doorbells", "trapped");
		s->requests = get_u64(d, "requests", NULL);
		s->interrupts = get_u64(d, "interrupts", NULL);
		s->polled = get_u64(d, "polled", NULL);
		s->needs_reset = json_object_get_boolean(json_object_object_get(d, "needs-reset"));
		st->nr_devices++;
	}
}

static int sample(struct monitor_conn *c, struct qmp_exit_stats *st, uint64_t *when)
{
	json_object *o = execute(c, "query-exit-stats");

	if (!o)
		return -EPIPE;
	*when = clock_ns();
	stats_from_json(o, st);
	json_object_put(o);
	return 0;
}

/* "12345", "1.23M": at most 7 characters. */
static const char *fmt_rate(char *buf, double v)
{
	if (v < 99999.5)
		snprintf(buf, 16, "%.0f", v);
	else if (v < 9999.5e3)
		snprintf(buf, 16, "%.4gk", v / 1e3);
	else
		snprintf(buf, 16, "%.4gM", v / 1e6);
	return buf;
}

#define D(field) ((double)(cur->field - prev->field) / secs)

static void print_text(const char *path, const struct qmp_exit_stats *prev,
		       const struct qmp_exit_stats *cur, double secs, bool clear)
{
	char b[6][16];
	double total[4] = { 0 };

	if (clear)
		fputs("\033[H\033[2J", stdout);
	printf("kickvm stat %.40s   per second over %.2f s\n\n", path, secs);
	printf("%-15s%8s %8s %8s %8s %10s\n", "vCPU exits", "runs", "mmio", "pio", "intr",
	       "coalesced");
	for (int i = 0; i < cur->nr_vcpus && i < prev->nr_vcpus; i++) {
		char name[16];

		snprintf(name, sizeof(name), "cpu%d", i);
		printf("  %-13s%8s %8s %8s %8s %10s\n", name, fmt_rate(b[0], D(vcpus[i].runs)),
		       fmt_rate(b[1], D(vcpus[i].mmio)), fmt_rate(b[2], D(vcpus[i].pio)),
		       fmt_rate(b[3], D(vcpus[i].intr)), fmt_rate(b[4], D(vcpus[i].coalesced)));
		total[0] += D(vcpus[i].mmio);
		total[1] += D(vcpus[i].pio);
		total[2] += D(vcpus[i].intr);
	}
	printf("  %-13s%8s %8s %8s %8s\n\n", "all", "", fmt_rate(b[0], total[0]),
	       fmt_rate(b[1], total[1]), fmt_rate(b[2], total[2]));
	printf("%-15s%-26s   %s\n", "", "  --- doorbell writes ---", "  --- device work ---");
	printf("%-15s%8s %8s %8s   %8s %8s %8s\n", "device", "kvm", "fallback", "trapped",
	       "requests", "irqs", "polled");
	for (int i = 0; i < cur->nr_devices && i < prev->nr_devices; i++) {
		const struct qmp_device_stats *d = &cur->devices[i];

		printf("  %-13.13s%8s %8s %8s   %8s %8s %8s%s\n", d->id,
		       fmt_rate(b[0], D(devices[i].doorbell_kvm)),
		       fmt_rate(b[1], D(devices[i].doorbell_fallback)),
		       fmt_rate(b[2], D(devices[i].doorbell_trapped)),
		       fmt_rate(b[3], D(devices[i].requests)),
		       fmt_rate(b[4], D(devices[i].interrupts)),
		       fmt_rate(b[5], D(devices[i].polled)), d->needs_reset ? " RESET!" : "");
	}
	fflush(stdout);
}

static json_object *delta_obj(uint64_t before, uint64_t after, double secs)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "delta", json_object_new_uint64(after - before));
	json_object_object_add(o, "rate", json_object_new_double((double)(after - before) / secs));
	return o;
}

#define ADD(obj, name, field) \
	json_object_object_add(obj, name, delta_obj(prev->field, cur->field, secs))

static void print_json(const struct qmp_exit_stats *prev, const struct qmp_exit_stats *cur,
		       double secs)
{
	json_object *o = json_object_new_object(), *cpus = json_object_new_array();
	json_object *devs = json_object_new_array();

	json_object_object_add(o, "seconds", json_object_new_double(secs));
	for (int i = 0; i < cur->nr_vcpus && i < prev->nr_vcpus; i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "cpu", json_object_new_int(i));
		ADD(c, "runs", vcpus[i].runs);
		ADD(c, "mmio", vcpus[i].mmio);
		ADD(c, "pio", vcpus[i].pio);
		ADD(c, "intr", vcpus[i].intr);
		ADD(c, "coalesced-writes", vcpus[i].coalesced);
		json_object_array_add(cpus, c);
	}
	for (int i = 0; i < cur->nr_devices && i < prev->nr_devices; i++) {
		json_object *d = json_object_new_object(), *db = json_object_new_object();

		json_object_object_add(d, "id", json_object_new_string(cur->devices[i].id));
		json_object_object_add(d, "type", json_object_new_string(cur->devices[i].type));
		ADD(db, "kvm", devices[i].doorbell_kvm);
		ADD(db, "fallback", devices[i].doorbell_fallback);
		ADD(db, "trapped", devices[i].doorbell_trapped);
		json_object_object_add(d, "doorbells", db);
		ADD(d, "requests", devices[i].requests);
		ADD(d, "interrupts", devices[i].interrupts);
		ADD(d, "polled", devices[i].polled);
		json_object_object_add(d, "needs-reset",
				       json_object_new_boolean(cur->devices[i].needs_reset));
		json_object_array_add(devs, d);
	}
	json_object_object_add(o, "vcpus", cpus);
	json_object_object_add(o, "devices", devs);
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
	json_object_put(o);
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int cmd_stat(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "once", no_argument, NULL, '1' },
		{ "json", no_argument, NULL, 'j' },
		{ "interval", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct qmp_exit_stats *st = calloc(2, sizeof(*st));
	struct monitor_conn *c = calloc(1, sizeof(*c));
	bool once = false, json = false;
	uint64_t interval = 1, t[2];
	int opt, ret, cur = 0;

	if (!st || !c) {
		free(st);
		free(c);
		return 1;
	}
	c->fd = -1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case '1':
			once = true;
			break;
		case 'j':
			json = true;
			break;
		case 'i':
			if (parse_uint(optarg, 1, 60, &interval) < 0) {
				ret = usage_error("stat ", "--interval takes 1-60 seconds");
				goto out;
			}
			break;
		case 'h':
			stat_help();
			ret = 0;
			goto out;
		default:
			ret = usage_error("stat ", "bad option");
			goto out;
		}
	}
	if (argc - optind != 1) {
		ret = usage_error("stat ", "one SOCKET (the path given to kickvm run -qmp unix:)");
		goto out;
	}
	ret = connect_monitor(argv[optind], c);
	if (ret < 0) {
		fprintf(stderr, "kickvm stat: cannot talk to the monitor at %s: %s\n", argv[optind],
			strerror(-ret));
		ret = ret == -ENOENT || ret == -ECONNREFUSED || ret == -ENAMETOOLONG ? EXIT_USAGE : 1;
		goto out;
	}
	if (sample(c, &st[0], &t[0]) < 0) {
		ret = 1;
		goto out;
	}
	for (;;) {
		int next = cur ^ 1;

		sleep_ns(interval * 1000000000ull);
		if (sample(c, &st[next], &t[next]) < 0) {
			/* The machine ended (or its monitor went): a normal end. */
			fprintf(stderr, "kickvm stat: the monitor closed the connection\n");
			break;
		}
		if (json)
			print_json(&st[cur], &st[next], (double)(t[next] - t[cur]) / 1e9);
		else
			print_text(argv[optind], &st[cur], &st[next], (double)(t[next] - t[cur]) / 1e9,
				   !once && isatty(STDOUT_FILENO));
		cur = next;
		if (once)
			break;
	}
	ret = 0;
out:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	free(st);
	return ret;
}
