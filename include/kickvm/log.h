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

/* Number of LOG_ERROR and LOG_WARN lines emitted so far (tests assert on it). */
unsigned long log_count(enum log_level level);

#endif
