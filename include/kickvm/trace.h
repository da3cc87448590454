/*
 * Trace events, named and formatted as in QEMU's trace-events files so that
 * people who know QEMU's read them without a manual.  All events are listed
 * once, in include/kickvm/trace-events.h; each gets an inline trace_<name>() that
 * costs one predictable branch when disabled.
 *
 * Enable with trace_enable("ioeventfd_*") (the CLI's --trace PATTERN); output
 * goes to stderr as "<pid>@<sec>.<usec>:<name> <formatted args>".
 */
#ifndef KICKVM_TRACE_H
#define KICKVM_TRACE_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

enum trace_event_id {
#define TRACE_EVENT(name, proto, fmt, ...) TRACE_##name,
#include "trace-events.h"
#undef TRACE_EVENT
	TRACE_EVENT_COUNT
};

extern bool trace_event_enabled[TRACE_EVENT_COUNT];

/*
 * Enable every event whose name matches the glob @pattern (fnmatch).
 * A leading '-' disables instead. Several patterns may be given separated by
 * commas. Returns the number of events matched, or -EINVAL when a pattern
 * matches nothing.
 */
int trace_enable(const char *pattern);
/* Names of all events, for --trace help. */
const char *trace_event_name(enum trace_event_id id);

void trace_emit(enum trace_event_id id, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define TRACE_EVENT(name, proto, fmt, ...)                                      \
	static inline void trace_##name proto                                   \
	{                                                                       \
		if (__builtin_expect(trace_event_enabled[TRACE_##name], 0))     \
			trace_emit(TRACE_##name, fmt, __VA_ARGS__);             \
	}
#include "trace-events.h"
#undef TRACE_EVENT

#endif
