/*
 * QMP commands (kickvm/qmp.h): each request executed through the machine's
 * ops, its result built as QEMU shapes it where QEMU has the same command
 * (query-status, query-version, query-commands, human-monitor-command), and
 * in kickvm's own shape for what QEMU lacks (query-ioeventfds,
 * query-exit-stats).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/qmp.h"

static int op_failed(struct qmp_error *err, const char *what, int ret)
{
	return qmp_set_error(err, QMP_ERR_GENERIC, "%s failed: %s", what, strerror(-ret));
}

static json_object *query_status(const struct qmp_machine_ops *ops, void *opaque)
{
	enum qmp_run_state st = ops->run_state(opaque);
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "running", json_object_new_boolean(st == QMP_RUN_STATE_RUNNING));
	json_object_object_add(o, "singlestep", json_object_new_boolean(false));
	json_object_object_add(o, "status", json_object_new_string(qmp_run_state_name(st)));
	return o;
}

static json_object *query_commands(void)
{
	json_object *a = json_object_new_array();

	for (int i = 0; a && i < QMP_NR_CMDS; i++) {
		json_object *c = json_object_new_object();

		if (c)
			json_object_object_add(c, "name", json_object_new_string(qmp_cmd_name(i)));
		json_object_array_add(a, c);
	}
	return a;
}

static json_object *query_version(const char *version)
{
	/* The greeting has the same object; build it there and take it out. */
	json_object *greeting, *v = NULL;
	char *line = qmp_build_greeting(version);

	if (!line)
		return NULL;
	greeting = json_tokener_parse(line);
	free(line);
	if (greeting && json_object_object_get_ex(json_object_object_get(greeting, "QMP"),
						  "version", &v))
		json_object_get(v);
	json_object_put(greeting);
	return v;
}

/* human-monitor-command: the `info` commands, the text of --info/--stats. */
static int human_monitor(const struct qmp_machine_ops *ops, void *opaque, const char *line,
			 json_object **ret, struct qmp_error *err)
{
	char what[32] = "", extra[8] = "";
	char *text = NULL;
	size_t size = 0;
	FILE *out;
	int r;

	if (sscanf(line, " info %31s %7s", what, extra) != 1)
		return qmp_set_error(err, QMP_ERR_GENERIC,
				     "only 'info mtree', 'info flatview', 'info ioeventfds' and "
				     "'info stats' are available");
	out = open_memstream(&text, &size);
	if (!out)
		return qmp_set_error(err, QMP_ERR_GENERIC, "out of memory");
	r = ops->info(opaque, what, out);
	fclose(out);
	if (r == -EINVAL) {
		free(text);
		return qmp_set_error(err, QMP_ERR_GENERIC, "info %s: unknown (mtree, flatview, "
				     "ioeventfds, stats)", what);
	}
	if (r < 0) {
		free(text);
		return op_failed(err, "info", r);
	}
	*ret = json_object_new_string(text ? text : "");
	free(text);
	return 0;
}

static json_object *ioeventfd_to_json(const struct qmp_ioeventfd *ev)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "address-space", json_object_new_string(ev->address_space));
	json_object_object_add(o, "addr", json_object_new_uint64(ev->addr));
	json_object_object_add(o, "len", json_object_new_int((int)ev->len));
	if (ev->has_datamatch)
		json_object_object_add(o, "datamatch", json_object_new_uint64(ev->datamatch));
	json_object_object_add(o, "path", json_object_new_string(ev->path ? ev->path : "?"));
	if (ev->reason[0])
		json_object_object_add(o, "reason", json_object_new_string(ev->reason));
	json_object_object_add(o, "kvm-signals", json_object_new_uint64(ev->kvm_signals));
	json_object_object_add(o, "fallback-signals", json_object_new_uint64(ev->fallback_signals));
	json_object_object_add(o, "dynamic", json_object_new_boolean(ev->dynamic));
	json_object_object_add(o, "owner", json_object_new_string(ev->owner));
	return o;
}

#define MAX_IOEVENTFDS 256
static int query_ioeventfds(const struct qmp_machine_ops *ops, void *opaque,
			    json_object **ret, struct qmp_error *err)
{
	struct qmp_ioeventfd *evs = calloc(MAX_IOEVENTFDS, sizeof(*evs));
	int n = evs ? ops->ioeventfds(opaque, evs, MAX_IOEVENTFDS) : -ENOMEM;

	if (n < 0) {
		free(evs);
		return op_failed(err, "query-ioeventfds", n);
	}
	if (n > MAX_IOEVENTFDS)
		log_warn("qmp", "query-ioeventfds: %d ioeventfds, showing %d", n, MAX_IOEVENTFDS);
	*ret = json_object_new_array();
	for (int i = 0; *ret && i < n && i < MAX_IOEVENTFDS; i++)
		json_object_array_add(*ret, ioeventfd_to_json(&evs[i]));
	free(evs);
	return 0;
}

json_object *qmp_exit_stats_to_json(const struct qmp_exit_stats *st)
{
	json_object *o = json_object_new_object(), *cpus = json_object_new_array();
	json_object *devs = json_object_new_array();

	if (!o || !cpus || !devs) {
		json_object_put(o);
		json_object_put(cpus);
		json_object_put(devs);
		return NULL;
	}
	for (int i = 0; i < st->nr_vcpus && i < QMP_MAX_VCPUS; i++) {
		const struct qmp_vcpu_exits *v = &st->vcpus[i];
		json_object *c = json_object_new_object(), *ex = json_object_new_object();

		json_object_object_add(c, "cpu", json_object_new_int(i));
		json_object_object_add(c, "runs", json_object_new_uint64(v->runs));
		json_object_object_add(ex, "mmio", json_object_new_uint64(v->mmio));
		json_object_object_add(ex, "pio", json_object_new_uint64(v->pio));
		json_object_object_add(ex, "intr", json_object_new_uint64(v->intr));
		json_object_object_add(c, "exits", ex);
		json_object_object_add(c, "coalesced-writes", json_object_new_uint64(v->coalesced));
		json_object_array_add(cpus, c);
	}
	for (int i = 0; i < st->nr_devices && i < QMP_MAX_DEVICES; i++) {
		const struct qmp_device_stats *d = &st->devices[i];
		json_object *c = json_object_new_object(), *db = json_object_new_object();

		json_object_object_add(c, "id", json_object_new_string(d->id));
		json_object_object_add(c, "type", json_object_new_string(d->type));
		json_object_object_add(db, "kvm", json_object_new_uint64(d->doorbell_kvm));
		json_object_object_add(db, "fallback", json_object_new_uint64(d->doorbell_fallback));
		json_object_object_add(db, "trapped", json_object_new_uint64(d->doorbell_trapped));
		json_object_object_add(c, "doorbells", db);
		json_object_object_add(c, "requests", json_object_new_uint64(d->requests));
		json_object_object_add(c, "interrupts", json_object_new_uint64(d->interrupts));
		json_object_object_add(c, "polled", json_object_new_uint64(d->polled));
		json_object_object_add(c, "needs-reset", json_object_new_boolean(d->needs_reset));
		json_object_array_add(devs, c);
	}
	json_object_object_add(o, "vcpus", cpus);
	json_object_object_add(o, "devices", devs);
	return o;
}

static int query_exit_stats(const struct qmp_machine_ops *ops, void *opaque,
			    json_object **ret, struct qmp_error *err)
{
	struct qmp_exit_stats *st = calloc(1, sizeof(*st));
	int r = st ? ops->exit_stats(opaque, st) : -ENOMEM;

	if (r < 0) {
		free(st);
		return op_failed(err, "query-exit-stats", r);
	}
	*ret = qmp_exit_stats_to_json(st);
	free(st);
	return 0;
}

/* stop and cont: QEMU sends STOP / RESUME when the state changed. */
static int change_run_state(struct qmp_server *s, const struct qmp_machine_ops *ops,
			    void *opaque, bool run, struct qmp_error *err)
{
	enum qmp_run_state before = ops->run_state(opaque);
	int r;

	if (before == QMP_RUN_STATE_SHUTDOWN)
		return qmp_set_error(err, QMP_ERR_GENERIC, "the machine is shutting down");
	r = run ? ops->cont(opaque) : ops->stop(opaque);
	if (r < 0)
		return op_failed(err, run ? "cont" : "stop", r);
	if (s && (before == QMP_RUN_STATE_RUNNING) != run)
		qmp_server_event(s, run ? "RESUME" : "STOP", NULL);
	return 0;
}

json_object *qmp_shutdown_data(bool guest, const char *reason)
{
	json_object *o = json_object_new_object();

	if (o) {
		json_object_object_add(o, "guest", json_object_new_boolean(guest));
		json_object_object_add(o, "reason", json_object_new_string(reason));
	}
	return o;
}

int qmp_execute(struct qmp_server *s, const struct qmp_server_config *cfg,
		const struct qmp_request *req, json_object **ret, struct qmp_error *err)
{
	const struct qmp_machine_ops *ops = cfg->ops;
	void *opaque = cfg->opaque;
	int r = 0;

	*ret = NULL;
	switch (req->cmd) {
	case QMP_CMD_CAPABILITIES:
		return 0;
	case QMP_CMD_QUERY_VERSION:
		*ret = query_version(cfg->version);
		break;
	case QMP_CMD_QUERY_COMMANDS:
		*ret = query_commands();
		break;
	case QMP_CMD_QUERY_STATUS:
		*ret = query_status(ops, opaque);
		break;
	case QMP_CMD_STOP:
	case QMP_CMD_CONT:
		return change_run_state(s, ops, opaque, req->cmd == QMP_CMD_CONT, err);
	case QMP_CMD_SYSTEM_RESET:
		r = ops->system_reset(opaque);
		if (r < 0)
			return op_failed(err, "system_reset", r);
		if (s)
			qmp_server_event(s, "RESET", qmp_shutdown_data(false, "host-qmp-system-reset"));
		return 0;
	case QMP_CMD_SYSTEM_POWERDOWN:
		r = ops->system_powerdown(opaque);
		if (r < 0)
			return op_failed(err, "system_powerdown", r);
		if (s)
			qmp_server_event(s, "POWERDOWN", NULL);
		return 0;
	case QMP_CMD_QUIT:
		r = ops->quit(opaque);
		return r < 0 ? op_failed(err, "quit", r) : 0;
	case QMP_CMD_HUMAN_MONITOR:
		return human_monitor(ops, opaque, req->command_line, ret, err);
	case QMP_CMD_QUERY_IOEVENTFDS:
		return query_ioeventfds(ops, opaque, ret, err);
	case QMP_CMD_QUERY_EXIT_STATS:
		return query_exit_stats(ops, opaque, ret, err);
	default:
		return qmp_set_error(err, QMP_ERR_COMMAND_NOT_FOUND, "The command has not been found");
	}
	if (!*ret)
		return qmp_set_error(err, QMP_ERR_GENERIC, "out of memory");
	return 0;
}
