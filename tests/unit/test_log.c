/*
 * The logging core: per call-site rate limits (a burst, then one
 * "suppressed K similar" line per interval and at flush), and the escaping
 * of guest strings.  Time is a fake clock the test moves, so nothing here
 * depends on how fast anything runs.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kickvm/log.h"

#define BURST    3
#define INTERVAL 1000u

static _Atomic uint64_t fake_now = 1;
static uint64_t fake_clock(void) { return fake_now; }

/* Lines logged while capturing, in one buffer. */
static char *captured;
static size_t captured_len;
static FILE *capture_stream;

static int setup(void **state)
{
	(void)state;
	log_set_clock(fake_clock);
	log_ratelimit_configure(BURST, INTERVAL);
	log_ratelimit_flush();  /* sites used by earlier tests start afresh */
	capture_stream = open_memstream(&captured, &captured_len);
	assert_non_null(capture_stream);
	log_set_stream(capture_stream);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_stream(NULL);
	fclose(capture_stream);
	free(captured);
	captured = NULL;
	log_ratelimit_configure(0, 0);
	log_set_clock(NULL);
	log_set_level(LOG_WARN);
	return 0;
}

static unsigned count_lines(const char *needle)
{
	unsigned n = 0;

	fflush(capture_stream);
	for (const char *p = captured; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* One call site each: a site's budget is its own. */
static void site_a(int i) { log_warn_rl("test-a", "flood a %d", i); }
static void site_b(int i) { log_warn_rl("test-b", "flood b %d", i); }
static void site_debug(int i) { log_debug_rl("test-d", "debug %d", i); }

static void test_burst_then_suppressed(void **state)
{
	unsigned long warns = log_count(LOG_WARN);

	(void)state;
	for (int i = 0; i < 10; i++)
		site_a(i);
	/* The first BURST lines only, but every message counted. */
	assert_int_equal(count_lines("kickvm: warning: test-a: flood a "), BURST);
	assert_non_null(strstr(captured, "flood a 2\n"));
	assert_null(strstr(captured, "flood a 3"));
	assert_int_equal(log_count(LOG_WARN) - warns, 10);
	assert_int_equal(count_lines("suppressed"), 0);

	/* Still inside the interval: still nothing. */
	fake_now += INTERVAL - 1;
	site_a(10);
	assert_int_equal(count_lines("flood a "), BURST);

	/* The next interval: one report of the 8 dropped, then a new burst. */
	fake_now += 1;
	for (int i = 11; i < 20; i++)
		site_a(i);
	assert_int_equal(count_lines("kickvm: warning: test-a: suppressed 8 similar messages (tests/unit/test_log.c:"), 1);
	assert_non_null(strstr(captured, "suppressed 8 similar messages (tests/unit/test_log.c:"));
	assert_int_equal(count_lines("flood a "), 2 * BURST);
	assert_non_null(strstr(captured, "flood a 13\n"));
	assert_true(strstr(captured, "suppressed 8") < strstr(captured, "flood a 11\n"));

	/* Flush reports what is left (6 dropped), once. */
	log_ratelimit_flush();
	assert_int_equal(count_lines("test-a: suppressed 6 similar messages"), 1);
	log_ratelimit_flush();
	assert_int_equal(count_lines("suppressed"), 2);
}

static void test_sites_are_separate(void **state)
{
	(void)state;
	for (int i = 0; i < 2 * BURST; i++)
		site_a(i);
	for (int i = 0; i < 2 * BURST; i++)
		site_b(i);
	assert_int_equal(count_lines("flood a "), BURST);
	assert_int_equal(count_lines("flood b "), BURST);
	log_ratelimit_flush();
	assert_int_equal(count_lines("test-a: suppressed 3 similar"), 1);
	assert_int_equal(count_lines("test-b: suppressed 3 similar"), 1);
}

static void test_below_level_spends_nothing(void **state)
{
	unsigned long debug = log_count(LOG_DEBUG);

	(void)state;
	for (int i = 0; i < 50; i++)
		site_debug(i);  /* level WARN: not printed, not budgeted */
	assert_int_equal(count_lines("debug "), 0);
	assert_int_equal(log_count(LOG_DEBUG) - debug, 50);
	log_set_level(LOG_DEBUG);
	for (int i = 0; i < BURST; i++)
		site_debug(i);
	assert_int_equal(count_lines("kickvm: debug: test-d: debug "), BURST);
	log_ratelimit_flush();
	assert_int_equal(count_lines("suppressed"), 0);
}

struct flood_arg {
	int calls;
};

static void *flood_thread(void *opaque)
{
	const struct flood_arg *a = opaque;

	for (int i = 0; i < a->calls; i++)
		site_b(i);
	return NULL;
}

/* Four threads on one site: exactly the burst is printed, the rest counted
 * exactly, and no line is torn. */
static void test_concurrent_sites(void **state)
{
	enum { THREADS = 4, CALLS = 5000 };
	struct flood_arg arg = { .calls = CALLS };
	pthread_t t[THREADS];
	unsigned long warns = log_count(LOG_WARN);
	char expect[80];

	(void)state;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, flood_thread, &arg), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(log_count(LOG_WARN) - warns, THREADS * CALLS);
	assert_int_equal(count_lines("kickvm: warning: test-b: flood b "), BURST);
	log_ratelimit_flush();
	snprintf(expect, sizeof(expect), "test-b: suppressed %d similar messages",
		 THREADS * CALLS - BURST);
	assert_int_equal(count_lines(expect), 1);
	/* Every line is whole: BURST + 1 lines, each starting with the prefix. */
	assert_int_equal(count_lines("\n"), BURST + 1);
	assert_int_equal(count_lines("kickvm: warning: "), BURST + 1);
}

static void test_escape(void **state)
{
	char buf[LOG_ESCAPED_SIZE(64)];

	(void)state;
	assert_string_equal(log_escape(buf, sizeof(buf), "plain text: 1+1=2"), "plain text: 1+1=2");
	/* A forged line, terminal control and bytes outside ASCII. */
	assert_string_equal(log_escape(buf, sizeof(buf), "x\nkickvm: error: y\r\x1b[2J\t\\\x7f\xff"),
			    "x\\nkickvm: error: y\\r\\e[2J\\t\\\\\\x7f\\xff");
	assert_null(strchr(buf, '\n'));
	assert_string_equal(log_escape(buf, sizeof(buf), ""), "");

	/* Too long: cut on a whole escape, "..." at the end, never past @size. */
	assert_string_equal(log_escape(buf, 8, "abcdefgh"), "abcd...");
	assert_string_equal(log_escape(buf, 8, "abcdefg"), "abcdefg");
	assert_string_equal(log_escape(buf, 8, "ab\n\ncdef"), "ab\\n...");
	assert_string_equal(log_escape(buf, 8, "\xff\xff"), "\\xff...");
	assert_string_equal(log_escape(buf, 3, "abcdef"), "..");
	memset(buf, 'Z', sizeof(buf));
	log_escape(buf, 6, "\x01\x02\x03");
	assert_string_equal(buf, "...");  /* no half escape */
	assert_int_equal(buf[5], 'Z');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_burst_then_suppressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sites_are_separate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_below_level_spends_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_sites, setup, teardown),
		cmocka_unit_test_setup_teardown(test_escape, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
