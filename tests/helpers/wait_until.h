/*
 * Waiting in tests for something that will happen, with an upper bound so a
 * bug shows up as a failed assertion, not a hung test.  For cmocka tests
 * (RUN_UNTIL asserts); header-only, so the fuzz targets never see it.
 */
#ifndef KICKVM_TEST_WAIT_UNTIL_H
#define KICKVM_TEST_WAIT_UNTIL_H

#include <stdint.h>
#include <unistd.h>

#include "kickvm/event.h"

#define NEVER_MS 10000  /* upper bound for "this will happen" */

/* Poll @expr until true or NEVER_MS elapsed; evaluates to its last value. */
#define WAIT_UNTIL(expr) ({                                                \
	uint64_t end_ = clock_ns() + NEVER_MS * 1000000ull;                \
	while (!(expr) && clock_ns() < end_)                               \
		usleep(1000);                                              \
	(expr); })

/* Run @loop in this thread until @expr or NEVER_MS elapsed. */
#define RUN_UNTIL(loop, expr) ({                                           \
	uint64_t end_ = clock_ns() + NEVER_MS * 1000000ull;                \
	while (!(expr) && clock_ns() < end_)                               \
		assert_true(event_loop_run_once(loop, 10) >= 0);           \
	(expr); })

#endif
