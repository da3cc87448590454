/* Logging: one line per message, component named, counted by level. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <pthread.h>

#include "kickvm/log.h"

static enum log_level current_level = LOG_WARN;
static bool quiet;
static _Atomic unsigned long counts[LOG_DEBUG + 1];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
	[LOG_ERROR] = "error", [LOG_WARN] = "warning",
	[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_set_level(enum log_level level) { current_level = level; }
void log_set_quiet(bool on) { quiet = on; }
enum log_level log_get_level(void) { return current_level; }

unsigned long log_count(enum log_level level)
{
	return level <= LOG_DEBUG ? counts[level] : 0;
}

void log_msg(enum log_level level, const char *who, const char *fmt, ...)
{
	va_list ap;

	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	counts[level]++;
	if (quiet || level > current_level)
		return;
	/* One lock so that lines from vCPU threads and iothreads never mix. */
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "kickvm: %s: %s: ", level_names[level], who ? who : "-");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&log_lock);
}
