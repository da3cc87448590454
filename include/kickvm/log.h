/*
 * Logging and error conventions.
 *
 * Every internal call returns 0 (or a non-negative value) on success and a
 * negative errno on failure; nothing in the core sets errno for its callers.
 * Every log line names the component (a subsystem or a device) it is about:
 *
 *     kickvm: warning: ioeventfd: KVM refused testdev+0x100[4] (EEXIST): ...
 */
#ifndef KICKVM_LOG_H
#define KICKVM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Lines at or below @level are printed (default LOG_WARN). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Print nothing at all (lines are still counted): fuzz targets feed the
 * device garbage on purpose, millions of times. */
void log_set_quiet(bool quiet);

/* Print one line to stderr: "kickvm: <level>: <who>: <message>". Thread-safe. */
void log_msg(enum log_level level, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(who, ...) log_msg(LOG_ERROR, who, __VA_ARGS__)
#define log_warn(who, ...)  log_msg(LOG_WARN, who, __VA_ARGS__)
#define log_info(who, ...)  log_msg(LOG_INFO, who, __VA_ARGS__)
#define log_debug(who, ...) log_msg(LOG_DEBUG, who, __VA_ARGS__)

/* Number of messages logged so far at @level, printed or not (quiet, below
 * the level, or suppressed by a rate limit): tests assert on it. */
unsigned long log_count(enum log_level level);

/* Where lines go (NULL: stderr, the default).  Tests capture lines here. */
void log_set_stream(FILE *stream);

/* ---- rate limiting ---------------------------------------------------------
 * A guest can make some messages happen as often as it likes (a refused
 * feature set, a bad register write, a ucall with a bad address).  Every such
 * message goes through log_*_rl(): each call site has its own budget of
 * LOG_RL_BURST lines per LOG_RL_INTERVAL_NS; past it, lines are counted, not
 * printed, and the next line after the interval is preceded by one
 *     kickvm: warning: who: suppressed K similar messages (src/file.c:123)
 * line.  What is still suppressed when the process exits is reported the
 * same way (atexit), so no count is lost.  Thread-safe.
 */
#define LOG_RL_BURST       10
#define LOG_RL_INTERVAL_NS (5ull * 1000000000ull)

/* One call site's state; LOG_RL() declares it static. All fields are the
 * logging core's (guarded by its lock). */
struct log_ratelimit {
	const char *site;              /* "file:line" */
	uint64_t window_start_ns;      /* CLOCK_MONOTONIC, 0: no window yet */
	unsigned printed;              /* lines printed in this window */
	unsigned long suppressed;      /* lines dropped since the last report */
	enum log_level level;          /* of the last dropped line */
	char who[40];                  /* component of the last dropped line */
	bool registered;               /* on the list reported at exit */
	struct log_ratelimit *next;
};

void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *who,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define LOG_RL_STR_(x) #x
#define LOG_RL_STR(x) LOG_RL_STR_(x)
#define LOG_RL(level, who, ...) do {                                                    \
		static struct log_ratelimit log_rl_site_ = {                            \
			.site = __FILE__ ":" LOG_RL_STR(__LINE__) };                    \
		log_msg_ratelimited(&log_rl_site_, level, who, __VA_ARGS__);            \
	} while (0)

#define log_error_rl(who, ...) LOG_RL(LOG_ERROR, who, __VA_ARGS__)
#define log_warn_rl(who, ...)  LOG_RL(LOG_WARN, who, __VA_ARGS__)
#define log_info_rl(who, ...)  LOG_RL(LOG_INFO, who, __VA_ARGS__)
#define log_debug_rl(who, ...) LOG_RL(LOG_DEBUG, who, __VA_ARGS__)

/* Print a "suppressed K similar messages" line for every call site that has
 * dropped lines since its last report, and start each afresh.  Runs at exit;
 * tests call it directly. */
void log_ratelimit_flush(void);

/* Tests: change the budget (@burst lines per @interval_ns; 0, 0 restores the
 * defaults) and the clock (NULL restores CLOCK_MONOTONIC). */
void log_ratelimit_configure(unsigned burst, uint64_t interval_ns);
void log_set_clock(uint64_t (*now_ns)(void));

/* ---- guest strings -----------------------------------------------------------
 * A string a guest wrote must not be able to forge log lines (a newline then
 * "kickvm: error: ...") or drive the terminal (ESC sequences).  log_escape()
 * copies @s into @buf (NUL-terminated, at most @size bytes) with printable
 * ASCII kept as is and everything else written as \n, \r, \t, \e, \\ or \xHH;
 * a string that does not fit ends in "...".  Returns @buf.
 * LOG_ESCAPED_SIZE(n) is the room for n guest bytes, escaped.
 */
#define LOG_ESCAPED_SIZE(n) (4 * (n) + 1)
char *log_escape(char *buf, size_t size, const char *s);

#endif
