/*
 * The QMP wire protocol (kickvm/qmp.h): request lines parsed with json-c
 * into struct qmp_request, checked against each command's arguments as
 * QEMU checks them (same error classes and wording where QEMU has them),
 * and the greeting, replies and events built as lines.
 *
 * A request is {"execute": NAME, "arguments": {...}, "id": ANY}; "id" is
 * echoed back whatever JSON it is.  Out-of-band execution ("exec-oob") is
 * not offered in the greeting, so it is an unexpected member here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/qmp.h"

/* Deeper nesting than any request needs costs json-c stack; refuse it. */
#define QMP_MAX_DEPTH 16

enum arg_type { ARG_NONE, ARG_STRING, ARG_INT, ARG_STRING_ARRAY };

struct arg_spec {
	const char *name;
	enum arg_type type;
	bool required;
};

#define MAX_ARGS 2
static const struct cmd_spec {
	const char *name;
	struct arg_spec args[MAX_ARGS];
} commands[QMP_NR_CMDS] = {
	[QMP_CMD_CAPABILITIES] = { "qmp_capabilities", { { "enable", ARG_STRING_ARRAY, false } } },
	[QMP_CMD_QUERY_VERSION] = { "query-version" },
	[QMP_CMD_QUERY_COMMANDS] = { "query-commands" },
	[QMP_CMD_QUERY_STATUS] = { "query-status" },
	[QMP_CMD_STOP] = { "stop" },
	[QMP_CMD_CONT] = { "cont" },
	[QMP_CMD_SYSTEM_RESET] = { "system_reset" },
	[QMP_CMD_SYSTEM_POWERDOWN] = { "system_powerdown" },
	[QMP_CMD_QUIT] = { "quit" },
	[QMP_CMD_HUMAN_MONITOR] = { "human-monitor-command", {
		{ "command-line", ARG_STRING, true }, { "cpu-index", ARG_INT, false } } },
	[QMP_CMD_QUERY_IOEVENTFDS] = { "query-ioeventfds" },
	[QMP_CMD_QUERY_EXIT_STATS] = { "query-exit-stats" },
};

const char *qmp_cmd_name(enum qmp_cmd cmd)
{
	return (unsigned)cmd < QMP_NR_CMDS ? commands[cmd].name : "?";
}

const char *qmp_error_class_name(enum qmp_error_class cls)
{
	return cls == QMP_ERR_COMMAND_NOT_FOUND ? "CommandNotFound" : "GenericError";
}

int qmp_set_error(struct qmp_error *err, enum qmp_error_class cls, const char *fmt, ...)
{
	va_list ap;

	err->cls = cls;
	va_start(ap, fmt);
	vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void qmp_request_clear(struct qmp_request *req)
{
	free(req->id);
	free(req->command_line);
	memset(req, 0, sizeof(*req));
}

static const char *type_name(enum arg_type t)
{
	switch (t) {
	case ARG_STRING: return "string";
	case ARG_INT: return "integer";
	case ARG_STRING_ARRAY: return "array of strings";
	default: return "nothing";
	}
}

static bool arg_has_type(json_object *v, enum arg_type t)
{
	switch (t) {
	case ARG_STRING:
		return json_object_is_type(v, json_type_string);
	case ARG_INT:
		return json_object_is_type(v, json_type_int);
	case ARG_STRING_ARRAY:
		if (!json_object_is_type(v, json_type_array))
			return false;
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_string))
				return false;
		return true;
	default:
		return false;
	}
}

/* QEMU's checks of a command's arguments, in its words. */
static int check_args(const struct cmd_spec *spec, json_object *args, struct qmp_error *err)
{
	if (args) {
		json_object_object_foreach(args, key, val) {
			const struct arg_spec *a = NULL;

			for (int i = 0; i < MAX_ARGS && spec->args[i].name && !a; i++)
				if (!strcmp(spec->args[i].name, key))
					a = &spec->args[i];
			if (!a)
				return qmp_set_error(err, QMP_ERR_GENERIC,
						     "Parameter '%.64s' is unexpected", key);
			if (!arg_has_type(val, a->type))
				return qmp_set_error(err, QMP_ERR_GENERIC,
						     "Invalid parameter type for '%s', expected: %s",
						     a->name, type_name(a->type));
		}
	}
	for (int i = 0; i < MAX_ARGS && spec->args[i].name; i++) {
		if (spec->args[i].required &&
		    (!args || !json_object_object_get_ex(args, spec->args[i].name, NULL)))
			return qmp_set_error(err, QMP_ERR_GENERIC, "Parameter '%s' is missing",
					     spec->args[i].name);
	}
	return 0;
}

static json_object *parse_json(const char *line, size_t len, struct qmp_error *err)
{
	struct json_tokener *tok;
	json_object *obj = NULL;
	enum json_tokener_error jerr;
	size_t end;

	if (len > QMP_MAX_LINE || memchr(line, '\0', len)) {
		qmp_set_error(err, QMP_ERR_GENERIC, "JSON parse error, %s",
			      len > QMP_MAX_LINE ? "request too long" : "NUL byte in input");
		return NULL;
	}
	tok = json_tokener_new_ex(QMP_MAX_DEPTH);
	if (!tok) {
		qmp_set_error(err, QMP_ERR_GENERIC, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, line, (int)len);
	end = json_tokener_get_parse_end(tok);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* End of the line inside a value: flush what json-c holds (a
		 * bare number ends only at the end of the input). */
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		end = len;
	}
	if (jerr != json_tokener_success) {
		qmp_set_error(err, QMP_ERR_GENERIC, "JSON parse error, %s",
			      json_tokener_error_desc(jerr));
		json_object_put(obj);
		obj = NULL;
	} else if (!obj) {
		qmp_set_error(err, QMP_ERR_GENERIC, "QMP input must be a JSON object");
	} else {
		/* Only blanks may follow the value on its line. */
		for (size_t i = end; i < len; i++) {
			if (!strchr(" \t\r", line[i])) {
				qmp_set_error(err, QMP_ERR_GENERIC,
					      "JSON parse error, trailing characters");
				json_object_put(obj);
				obj = NULL;
				break;
			}
		}
	}
	json_tokener_free(tok);
	return obj;
}

static int check_request(json_object *obj, struct qmp_request *req, struct qmp_error *err)
{
	json_object *execute = NULL, *args = NULL, *id = NULL;
	const struct cmd_spec *spec;
	const char *name;
	int cmd;

	if (!json_object_is_type(obj, json_type_object))
		return qmp_set_error(err, QMP_ERR_GENERIC, "QMP input must be a JSON object");
	if (json_object_object_get_ex(obj, "id", &id)) {
		req->id = strdup(json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN |
								JSON_C_TO_STRING_NOSLASHESCAPE));
		if (!req->id)
			return qmp_set_error(err, QMP_ERR_GENERIC, "out of memory");
	}
	json_object_object_foreach(obj, key, val) {
		(void)val;
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id"))
			return qmp_set_error(err, QMP_ERR_GENERIC,
					     "QMP input member '%.64s' is unexpected", key);
	}
	if (!json_object_object_get_ex(obj, "execute", &execute))
		return qmp_set_error(err, QMP_ERR_GENERIC, "QMP input lacks member 'execute'");
	if (!json_object_is_type(execute, json_type_string))
		return qmp_set_error(err, QMP_ERR_GENERIC,
				     "QMP input member 'execute' must be a string");
	if (json_object_object_get_ex(obj, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object))
		return qmp_set_error(err, QMP_ERR_GENERIC,
				     "QMP input member 'arguments' must be an object");
	name = json_object_get_string(execute);
	for (cmd = 0; cmd < QMP_NR_CMDS; cmd++)
		if (!strcmp(commands[cmd].name, name))
			break;
	if (cmd == QMP_NR_CMDS)
		return qmp_set_error(err, QMP_ERR_COMMAND_NOT_FOUND,
				     "The command %.64s has not been found", name);
	spec = &commands[cmd];
	if (check_args(spec, args, err) < 0)
		return -EINVAL;
	req->cmd = (enum qmp_cmd)cmd;
	if (cmd == QMP_CMD_HUMAN_MONITOR) {
		json_object *cl = json_object_object_get(args, "command-line");

		req->command_line = strdup(json_object_get_string(cl));
		if (!req->command_line)
			return qmp_set_error(err, QMP_ERR_GENERIC, "out of memory");
	}
	if (cmd == QMP_CMD_CAPABILITIES && args) {
		json_object *enable = json_object_object_get(args, "enable");

		/* No optional capability is offered (the greeting's list is
		 * empty), so asking for one is an error, as in QEMU. */
		if (enable && json_object_array_length(enable))
			return qmp_set_error(err, QMP_ERR_GENERIC,
					     "Capability '%.64s' not available",
					     json_object_get_string(
						     json_object_array_get_idx(enable, 0)));
	}
	return 0;
}

int qmp_parse_request(const char *line, size_t len, struct qmp_request *req,
		      struct qmp_error *err)
{
	json_object *obj;
	int ret;

	memset(req, 0, sizeof(*req));
	obj = parse_json(line, len, err);
	if (!obj)
		return -EINVAL;
	ret = check_request(obj, req, err);
	json_object_put(obj);
	return ret;
}

/* ---- building ------------------------------------------------------------------ */

static char *finish_line(json_object *obj)
{
	const char *text;
	char *line = NULL;

	if (!obj)
		return NULL;
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
					      JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text && asprintf(&line, "%s\r\n", text) < 0)
		line = NULL;
	json_object_put(obj);
	return line;
}

static void add_id(json_object *obj, const char *id)
{
	json_object *v;

	if (!id)
		return;
	/* The id is JSON json-c wrote from a parsed request: it parses. */
	v = json_tokener_parse(id);
	if (v)
		json_object_object_add(obj, "id", v);
}

char *qmp_build_greeting(const char *version)
{
	json_object *qmp = json_object_new_object(), *ver = json_object_new_object();
	json_object *top = json_object_new_object(), *inner = json_object_new_object();
	unsigned major = 0, minor = 0, micro = 0;

	if (!qmp || !ver || !top || !inner) {
		json_object_put(qmp);
		json_object_put(ver);
		json_object_put(top);
		json_object_put(inner);
		return NULL;
	}
	if (sscanf(version ? version : "", "%u.%u.%u", &major, &minor, &micro) < 1)
		major = minor = micro = 0;
	json_object_object_add(inner, "major", json_object_new_int((int)major));
	json_object_object_add(inner, "minor", json_object_new_int((int)minor));
	json_object_object_add(inner, "micro", json_object_new_int((int)micro));
	json_object_object_add(ver, "qemu", inner);
	json_object_object_add(ver, "package", json_object_new_string("kickvm"));
	json_object_object_add(qmp, "version", ver);
	json_object_object_add(qmp, "capabilities", json_object_new_array());
	json_object_object_add(top, "QMP", qmp);
	return finish_line(top);
}

char *qmp_build_return(json_object *ret, const char *id)
{
	json_object *top = json_object_new_object();

	if (!ret)
		ret = json_object_new_object();
	if (!top || !ret) {
		json_object_put(top);
		json_object_put(ret);
		return NULL;
	}
	json_object_object_add(top, "return", ret);
	add_id(top, id);
	return finish_line(top);
}

char *qmp_build_error(const struct qmp_error *err, const char *id)
{
	json_object *top = json_object_new_object(), *e = json_object_new_object();

	if (!top || !e) {
		json_object_put(top);
		json_object_put(e);
		return NULL;
	}
	json_object_object_add(e, "class", json_object_new_string(qmp_error_class_name(err->cls)));
	json_object_object_add(e, "desc", json_object_new_string(err->desc));
	json_object_object_add(top, "error", e);
	add_id(top, id);
	return finish_line(top);
}

char *qmp_build_event(const char *name, json_object *data, uint64_t realtime_ns)
{
	json_object *top = json_object_new_object(), *ts = json_object_new_object();

	if (!top || !ts) {
		json_object_put(top);
		json_object_put(ts);
		json_object_put(data);
		return NULL;
	}
	json_object_object_add(top, "event", json_object_new_string(name));
	if (data)
		json_object_object_add(top, "data", data);
	json_object_object_add(ts, "seconds", json_object_new_int64((int64_t)(realtime_ns / 1000000000)));
	json_object_object_add(ts, "microseconds",
			       json_object_new_int64((int64_t)(realtime_ns % 1000000000 / 1000)));
	json_object_object_add(top, "timestamp", ts);
	return finish_line(top);
}

const char *qmp_run_state_name(enum qmp_run_state st)
{
	static const char *const names[] = {
		[QMP_RUN_STATE_PRELAUNCH] = "prelaunch", [QMP_RUN_STATE_RUNNING] = "running",
		[QMP_RUN_STATE_PAUSED] = "paused", [QMP_RUN_STATE_SHUTDOWN] = "shutdown",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

int qmp_parse_address(const char *spec, char **path, bool *wait, const char **why)
{
	char *copy, *opt, *save = NULL;
	int ret = 0;

	*path = NULL;
	*wait = false;
	if (strncmp(spec, "unix:", 5) || !spec[5] || spec[5] == ',') {
		*why = "-qmp takes unix:PATH[,server=on][,wait=off]";
		return -EINVAL;
	}
	copy = strdup(spec + 5);
	if (!copy)
		return -ENOMEM;
	opt = strtok_r(copy, ",", &save);
	*path = strdup(opt);
	while (!ret && (opt = strtok_r(NULL, ",", &save))) {
		if (!strcmp(opt, "server=on") || !strcmp(opt, "server") || !strcmp(opt, "server=true"))
			continue;
		if (!strcmp(opt, "wait=off") || !strcmp(opt, "nowait") || !strcmp(opt, "wait=false")) {
			*wait = false;
		} else if (!strcmp(opt, "wait=on") || !strcmp(opt, "wait=true")) {
			*wait = true;
		} else if (!strncmp(opt, "server=", 7)) {
			*why = "kickvm's monitor only listens: server=off is not supported";
			ret = -EINVAL;
		} else {
			*why = "unknown -qmp option (server=on, wait=on|off)";
			ret = -EINVAL;
		}
	}
	free(copy);
	if (!ret && !*path)
		ret = -ENOMEM;
	if (ret) {
		free(*path);
		*path = NULL;
	}
	return ret;
}
