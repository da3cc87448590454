/* Trace events: enabled by glob patterns, printed to stderr. */
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include "kickvm/trace.h"

bool trace_event_enabled[TRACE_EVENT_COUNT];

static const char *const event_names[TRACE_EVENT_COUNT] = {
#define TRACE_EVENT(name, proto, fmt, ...) [TRACE_##name] = #name,
#include "kickvm/trace-events.h"
#undef TRACE_EVENT
};

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;

const char *trace_event_name(enum trace_event_id id)
{
	return id < TRACE_EVENT_COUNT ? event_names[id] : NULL;
}

static int enable_one(const char *pat)
{
	bool on = true;
	int matched = 0;

	if (*pat == '-') {
		on = false;
		pat++;
	}
	for (int i = 0; i < TRACE_EVENT_COUNT; i++) {
		if (fnmatch(pat, event_names[i], 0) == 0) {
			trace_event_enabled[i] = on;
			matched++;
		}
	}
	return matched;
}

int trace_enable(const char *pattern)
{
	char *copy, *save = NULL, *tok;
	int total = 0, ret = 0;

	if (!pattern)
		return -EINVAL;
	copy = strdup(pattern);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int n = enable_one(tok);

		if (n == 0)
			ret = -EINVAL;
		total += n;
	}
	free(copy);
	return ret < 0 ? ret : total;
}

void trace_emit(enum trace_event_id id, const char *fmt, ...)
{
	struct timespec ts;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&trace_lock);
	fprintf(stderr, "%d@%ld.%06ld:%s ", (int)getpid(), (long)ts.tv_sec,
		ts.tv_nsec / 1000, event_names[id]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&trace_lock);
}
