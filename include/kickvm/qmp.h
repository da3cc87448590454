/*
 * The monitor: a QMP-compatible socket (QEMU Machine Protocol) to query and
 * control a running machine.  Three layers, each testable alone:
 *
 *  - the protocol (src/qmp/qmp_proto.c): one request line in, a plain
 *    struct qmp_request out (or a QMP error); greeting, replies and events
 *    built as lines.  No sockets, no machine: the fuzzer drives it.
 *  - the commands (src/qmp/qmp_commands.c): a request executed through
 *    struct qmp_machine_ops, the only thing the monitor knows of a machine;
 *    tests plug in a fake one.
 *  - the server (src/qmp/qmp_server.c): a listening unix socket on an event
 *    loop, any number of clients (up to QMP_MAX_CLIENTS), each with its own
 *    capabilities negotiation, output buffer and line buffer.
 *
 * Framing: the server reads one request per line ('\n'; a '\r' before it
 * is dropped), as every QMP client library sends them, and writes one
 * reply or event per line ending "\r\n", as QEMU does.  A line longer than
 * QMP_MAX_LINE gets an error and the connection is closed.
 *
 * Threads: everything here runs in the thread of the server's event loop;
 * qmp_server_event() too.
 */
#ifndef KICKVM_QMP_H
#define KICKVM_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

struct event_loop;

#define QMP_MAX_LINE    (1u << 20)   /* bytes of one request line */
#define QMP_MAX_OUTPUT  (8u << 20)   /* unread output before a client is dropped */
#define QMP_MAX_CLIENTS 16

/* ---- protocol ----------------------------------------------------------------- */

enum qmp_cmd {
	QMP_CMD_CAPABILITIES,      /* qmp_capabilities */
	QMP_CMD_QUERY_VERSION,
	QMP_CMD_QUERY_COMMANDS,
	QMP_CMD_QUERY_STATUS,
	QMP_CMD_STOP,
	QMP_CMD_CONT,
	QMP_CMD_SYSTEM_RESET,
	QMP_CMD_SYSTEM_POWERDOWN,
	QMP_CMD_QUIT,
	QMP_CMD_HUMAN_MONITOR,     /* human-monitor-command */
	QMP_CMD_QUERY_IOEVENTFDS,
	QMP_CMD_QUERY_EXIT_STATS,
	QMP_NR_CMDS,
};

/* QEMU's error classes (the "class" member of an error reply). */
enum qmp_error_class {
	QMP_ERR_GENERIC,           /* GenericError */
	QMP_ERR_COMMAND_NOT_FOUND, /* CommandNotFound */
};

struct qmp_error {
	enum qmp_error_class cls;
	char desc[256];
};

struct qmp_request {
	enum qmp_cmd cmd;
	char *id;                  /* the "id" member as JSON text, echoed back; NULL: none */
	char *command_line;        /* human-monitor-command's "command-line" */
};

/* The name of @cmd on the wire ("query-status"). */
const char *qmp_cmd_name(enum qmp_cmd cmd);
const char *qmp_error_class_name(enum qmp_error_class cls);

/*
 * Parse one request line (@len bytes, not NUL-terminated, no newline) and
 * check it against the command's arguments.  0: @req is filled (free it
 * with qmp_request_clear()).  -EINVAL: @err says why in QMP's terms, and
 * req->id still holds the id when the line got that far (so the error
 * echoes it); clear @req in both cases.
 */
int qmp_parse_request(const char *line, size_t len, struct qmp_request *req,
		      struct qmp_error *err);
void qmp_request_clear(struct qmp_request *req);

/* Set @err; returns -EINVAL. */
int qmp_set_error(struct qmp_error *err, enum qmp_error_class cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Lines to send, each ending "\r\n", malloc'd (NULL only when out of
 * memory).  The json_object arguments are consumed (NULL: an empty object).
 */
char *qmp_build_greeting(const char *version);
char *qmp_build_return(json_object *ret, const char *id);
char *qmp_build_error(const struct qmp_error *err, const char *id);
/* @realtime_ns: the event's wall-clock time (QMP's seconds + microseconds). */
char *qmp_build_event(const char *name, json_object *data, uint64_t realtime_ns);

/* ---- what the monitor sees of a machine -------------------------------------------- */

/* QEMU's RunState names. */
enum qmp_run_state {
	QMP_RUN_STATE_PRELAUNCH,   /* -S: not started yet */
	QMP_RUN_STATE_RUNNING,
	QMP_RUN_STATE_PAUSED,
	QMP_RUN_STATE_SHUTDOWN,    /* ending */
};
const char *qmp_run_state_name(enum qmp_run_state st);

#define QMP_MAX_VCPUS   16
#define QMP_MAX_DEVICES 16

/* One registered ioeventfd (query-ioeventfds). */
struct qmp_ioeventfd {
	char address_space[16];    /* "memory", "io" */
	uint64_t addr;
	unsigned len;              /* 0: any size */
	bool has_datamatch;
	uint64_t datamatch;
	const char *path;          /* "kvm", "fallback" (by configuration), "refused" */
	char reason[32];           /* for "refused": KVM's errno name */
	uint64_t kvm_signals, fallback_signals;
	bool dynamic;              /* added at run time (promotion), not by a device's layout */
	char owner[48];            /* the region it sits on */
};

/* query-exit-stats: every counter since the machine started. */
struct qmp_exit_stats {
	int nr_vcpus;
	struct qmp_vcpu_exits {
		uint64_t runs, mmio, pio, intr, coalesced;
	} vcpus[QMP_MAX_VCPUS];
	int nr_devices;
	struct qmp_device_stats {
		char id[32];           /* "virtio-blk0", "testdev" */
		char type[24];         /* "virtio-blk", "virtio-rng", "kickvm-testdev" */
		uint64_t doorbell_kvm, doorbell_fallback, doorbell_trapped;
		uint64_t requests;     /* requests served (blk), bytes (rng): device work */
		uint64_t interrupts;   /* MSI-X messages sent */
		uint64_t polled;       /* queue work found by polling, not by a doorbell */
		bool needs_reset;
	} devices[QMP_MAX_DEVICES];
};

struct qmp_machine_ops {
	enum qmp_run_state (*run_state)(void *opaque);
	/* Each returns 0 or a negative errno; the monitor sends the events
	 * (STOP, RESUME) that follow from a state change. */
	int (*stop)(void *opaque);
	int (*cont)(void *opaque);
	int (*system_reset)(void *opaque);
	int (*system_powerdown)(void *opaque);
	int (*quit)(void *opaque);
	/* Text of "mtree", "flatview", "ioeventfds" or "stats" to @out;
	 * -EINVAL for anything else. */
	int (*info)(void *opaque, const char *what, FILE *out);
	/* Up to @max entries to @out; returns how many there are in all. */
	int (*ioeventfds)(void *opaque, struct qmp_ioeventfd *out, int max);
	int (*exit_stats)(void *opaque, struct qmp_exit_stats *out);
};

/* ---- commands ------------------------------------------------------------------ */

struct qmp_server;
struct qmp_server_config;

/*
 * Execute @req (negotiation is the server's business, not this).  0 and
 * *@ret (NULL means {}), or -EINVAL and @err.  Emits events on @s (may be
 * NULL) for state changes the command made.
 */
int qmp_execute(struct qmp_server *s, const struct qmp_server_config *cfg,
		const struct qmp_request *req, json_object **ret, struct qmp_error *err);
/* The data of SHUTDOWN and RESET: {"guest": @guest, "reason": @reason}
 * (QEMU's ShutdownCause names: "guest-shutdown", "host-qmp-quit", ...). */
json_object *qmp_shutdown_data(bool guest, const char *reason);

/* JSON forms, shared with `kickvm stat` (which reads them back). */
json_object *qmp_exit_stats_to_json(const struct qmp_exit_stats *st);

/* ---- server -------------------------------------------------------------------- */

struct qmp_server_config {
	const char *path;          /* the unix socket's path */
	const struct qmp_machine_ops *ops;
	void *opaque;
	const char *version;       /* in the greeting and query-version */
};

/*
 * Listen on cfg->path (mode 0600) from @loop.  A stale socket there is
 * replaced; anything else (-EEXIST) is not.  *@why says what failed.
 */
int qmp_server_new(struct event_loop *loop, const struct qmp_server_config *cfg,
		   struct qmp_server **out, const char **why);
/* Close every client and the socket, remove the path. NULL is fine. */
void qmp_server_free(struct qmp_server *s);

/* Broadcast event @name (data consumed, NULL: none) to negotiated clients. */
void qmp_server_event(struct qmp_server *s, const char *name, json_object *data);
/* Write what is queued for every client, waiting at most @timeout_ms
 * (the SHUTDOWN event when the loop no longer runs). */
void qmp_server_flush(struct qmp_server *s, int timeout_ms);
int qmp_server_nr_clients(const struct qmp_server *s);

/*
 * "-qmp unix:PATH[,server=on|off][,wait=on|off]" (QEMU's spelling; kickvm
 * only listens, so server=off is refused).  @path gets a malloc'd copy.
 * -EINVAL with *@why.
 */
int qmp_parse_address(const char *spec, char **path, bool *wait, const char **why);

#endif
