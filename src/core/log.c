/*
 * Logging: one line per message, component named, counted by level; per
 * call-site rate limits for what a guest can trigger; escaping of guest text.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "kickvm/log.h"

static enum log_level current_level = LOG_WARN;
static bool quiet;
static _Atomic unsigned long counts[LOG_DEBUG + 1];
static FILE *out_stream;  /* NULL: stderr (not a constant initializer) */
/* One lock so that lines from vCPU threads and iothreads never mix; it also
 * guards every rate-limit state and the list of them. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static struct log_ratelimit *rl_sites;
static unsigned rl_burst = LOG_RL_BURST;
static uint64_t rl_interval_ns = LOG_RL_INTERVAL_NS;

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t (*_Atomic clock_now)(void) = monotonic_ns;

static const char *const level_names[] = {
	[LOG_ERROR] = "error", [LOG_WARN] = "warning",
	[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_set_level(enum log_level level) { current_level = level; }
void log_set_quiet(bool on) { quiet = on; }
enum log_level log_get_level(void) { return current_level; }

void log_set_stream(FILE *stream)
{
	pthread_mutex_lock(&log_lock);
	out_stream = stream;
	pthread_mutex_unlock(&log_lock);
}

unsigned long log_count(enum log_level level)
{
	return level <= LOG_DEBUG ? counts[level] : 0;
}

/* Count the message; true if it is to be printed at all. */
static bool log_wanted(enum log_level *level)
{
	if (*level > LOG_DEBUG)
		*level = LOG_DEBUG;
	counts[*level]++;
	return !quiet && *level <= current_level;
}

/* log_lock held. */
static void vprint_line(enum log_level level, const char *who, const char *fmt, va_list ap)
{
	FILE *out = out_stream ? out_stream : stderr;

	fprintf(out, "kickvm: %s: %s: ", level_names[level], who ? who : "-");
	vfprintf(out, fmt, ap);
	fputc('\n', out);
	fflush(out);
}

static void print_line(enum log_level level, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void print_line(enum log_level level, const char *who, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint_line(level, who, fmt, ap);
	va_end(ap);
}

void log_msg(enum log_level level, const char *who, const char *fmt, ...)
{
	va_list ap;

	if (!log_wanted(&level))
		return;
	pthread_mutex_lock(&log_lock);
	va_start(ap, fmt);
	vprint_line(level, who, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&log_lock);
}

/* ---- rate limiting ------------------------------------------------------- */

/* log_lock held. */
static void report_suppressed(struct log_ratelimit *rl)
{
	const char *site = rl->site ? rl->site : "?";

	if (!rl->suppressed)
		return;
	while (!strncmp(site, "../", 3))  /* meson compiles from the build dir */
		site += 3;
	print_line(rl->level, rl->who, "suppressed %lu similar message%s (%s)",
		   rl->suppressed, rl->suppressed == 1 ? "" : "s", site);
	rl->suppressed = 0;
}

static void flush_at_exit(void) { log_ratelimit_flush(); }
static void register_exit_flush(void) { atexit(flush_at_exit); }

void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *who,
			 const char *fmt, ...)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	uint64_t now;
	va_list ap;

	if (!log_wanted(&level))
		return;  /* below the level: spends none of the budget */
	pthread_once(&once, register_exit_flush);
	now = clock_now();
	pthread_mutex_lock(&log_lock);
	if (!rl->registered) {
		rl->registered = true;
		rl->next = rl_sites;
		rl_sites = rl;
		rl->window_start_ns = now;
		rl->printed = 0;
	} else if (now - rl->window_start_ns >= rl_interval_ns) {
		report_suppressed(rl);
		rl->window_start_ns = now;
		rl->printed = 0;
	}
	if (rl->printed < rl_burst) {
		rl->printed++;
		va_start(ap, fmt);
		vprint_line(level, who, fmt, ap);
		va_end(ap);
	} else {
		rl->suppressed++;
		rl->level = level;
		snprintf(rl->who, sizeof(rl->who), "%s", who ? who : "-");
	}
	pthread_mutex_unlock(&log_lock);
}

void log_ratelimit_flush(void)
{
	pthread_mutex_lock(&log_lock);
	for (struct log_ratelimit *rl = rl_sites; rl; rl = rl->next) {
		report_suppressed(rl);
		rl->printed = 0;
		rl->window_start_ns = clock_now();
	}
	pthread_mutex_unlock(&log_lock);
}

void log_ratelimit_configure(unsigned burst, uint64_t interval_ns)
{
	pthread_mutex_lock(&log_lock);
	rl_burst = burst ? burst : LOG_RL_BURST;
	rl_interval_ns = interval_ns ? interval_ns : LOG_RL_INTERVAL_NS;
	pthread_mutex_unlock(&log_lock);
}

void log_set_clock(uint64_t (*now_ns)(void))
{
	clock_now = now_ns ? now_ns : monotonic_ns;
}

/* ---- guest strings ------------------------------------------------------- */

/* Write byte @c as it appears in a log line; returns its length. */
static size_t escape_byte(unsigned char c, char esc[5])
{
	static const char named[][2] = {
		{ '\\', '\\' }, { '\n', 'n' }, { '\r', 'r' }, { '\t', 't' }, { 0x1b, 'e' },
	};

	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (c == (unsigned char)named[i][0])
			return (size_t)snprintf(esc, 5, "\\%c", named[i][1]);
	if (c >= 0x20 && c < 0x7f)
		return (size_t)snprintf(esc, 5, "%c", c);
	return (size_t)snprintf(esc, 5, "\\x%02x", c);
}

char *log_escape(char *buf, size_t size, const char *s)
{
	size_t n = 0, cut = 0;  /* cut: where "..." goes if the rest does not fit */

	if (!size)
		return buf;
	for (; *s; s++) {
		char esc[5];
		size_t len = escape_byte((unsigned char)*s, esc);

		if (n + len > size - 1) {
			snprintf(buf + cut, size - cut, "...");
			return buf;
		}
		memcpy(buf + n, esc, len);
		n += len;
		if (n + 3 <= size - 1)
			cut = n;
	}
	buf[n] = '\0';
	return buf;
}
