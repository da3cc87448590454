/*
 * libFuzzer target: what a monitor client sends.  Each input is one request
 * line for the QMP parser (and argument checker); a request that parses is
 * executed against the fake machine (tests/helpers/qmp_fake.c), and every
 * reply is built.  Invariants: a parsed request names a known command, its
 * id is JSON that parses back, human-monitor-command has its command line;
 * a refused one has a QMP error class and a description; every reply is
 * one line of JSON ending "\r\n".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "kickvm/qmp.h"
#include "qmp_fake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_line(char *line)
{
	size_t n;
	json_object *o;

	CHECK(line);
	n = strlen(line);
	CHECK(n >= 3 && line[n - 2] == '\r' && line[n - 1] == '\n');
	CHECK(!memchr(line, '\n', n - 1));
	o = json_tokener_parse(line);
	CHECK(o && json_object_is_type(o, json_type_object));
	json_object_put(o);
	free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct qmp_fake fake;
	struct qmp_server_config cfg = { .ops = &qmp_fake_ops, .opaque = &fake, .version = "0.1.0" };
	struct qmp_request req;
	struct qmp_error err;
	json_object *ret = NULL;

	log_set_quiet(true);
	if (qmp_parse_request((const char *)data, size, &req, &err) < 0) {
		CHECK(err.cls == QMP_ERR_GENERIC || err.cls == QMP_ERR_COMMAND_NOT_FOUND);
		CHECK(err.desc[0] && memchr(err.desc, '\0', sizeof(err.desc)));
		check_line(qmp_build_error(&err, req.id));
		qmp_request_clear(&req);
		return 0;
	}
	CHECK((unsigned)req.cmd < QMP_NR_CMDS);
	CHECK(req.cmd != QMP_CMD_HUMAN_MONITOR || req.command_line);
	if (req.id) {
		json_object *id = json_tokener_parse(req.id);

		CHECK(id || !strcmp(req.id, "null"));
		json_object_put(id);
	}
	fake.state = QMP_RUN_STATE_RUNNING;
	if (qmp_execute(NULL, &cfg, &req, &ret, &err) == 0)
		check_line(qmp_build_return(ret, req.id));
	else
		check_line(qmp_build_error(&err, req.id));
	qmp_request_clear(&req);
	return 0;
}
