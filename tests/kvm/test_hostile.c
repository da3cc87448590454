/*
 * The hostile-guest suite: the virtio guest in mode=hostile feeds kickvm's
 * virtio-blk and virtio-rng malformed rings case by case (descriptor
 * loops, bad heads and next indices, index jumps, addresses and lengths
 * outside RAM, a missing status byte, wrong-direction buffers, bad
 * indirect tables, sectors past the end, more requests than the device's
 * pool, bus master cleared and DRIVER_OK toggled mid-I/O:
 * guest/virtio/hostile_cases.c).
 *
 * For every case the host asserts, naming the case: kickvm kept running;
 * the device either set NEEDS_RESET (with an error logged) or failed the
 * request (IOERR/UNSUPP) - never OK with data lost - as the case expects;
 * nothing was written outside the buffers the driver gave the device (the
 * guest compares its arena, descriptor table and available ring; the host
 * reads the arena's guard pages itself, and the disk image did not grow);
 * no chain ran twice (the device's own request counts); and a reset
 * brings good I/O back.  A case that gets no answer ends in
 * the guest's timeout; a guest that hangs anyway ends in the host's
 * watchdog, with the case's name.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/virtio_devices.h"
#include "kickvm/virtio_pci.h"
#include "../../guest/virtio/hostile_abi.h"

#define DISK_SIZE        (16u << 20)
#define CASE_TIMEOUT_NS  (60ull * 1000000000ull)  /* per case; the guest's own is 10 s */
#define MAX_CASES        80
#define NEEDS_RESET      VIRTIO_STATUS_NEEDS_RESET

struct outcome {
	char name[HOSTILE_NAME_MAX];
	bool seen, failed, vacuous;
	uint32_t in_flight;             /* EXPECT_QUIET: at the clear */
	char why[600];
};

struct suite {
	struct machine *m;
	struct machine_device *blk, *rng;
	char image[64];
	struct outcome cases[MAX_CASES];
	char current[HOSTILE_NAME_MAX];
	unsigned long errors_at_begin;
	uint64_t executed_at_begin;     /* virtio-blk requests the device executed */
	uint64_t reported_cases;
	/* The watchdog: a case that runs past its deadline stops the machine. */
	pthread_t watchdog, stepper;
	_Atomic uint64_t deadline;
	atomic_bool done, fired;
};

/* ---- the watchdog ------------------------------------------------------------------ */

static void on_kick(int sig)
{
	(void)sig;      /* only there to interrupt KVM_RUN */
}

static void *watchdog_main(void *arg)
{
	struct suite *s = arg;

	while (!atomic_load(&s->done)) {
		usleep(50000);
		if (clock_ns() < atomic_load(&s->deadline))
			continue;
		/* Stopping sets immediate_exit; the signal takes the stepping
		 * thread out of a KVM_RUN it is already in. */
		atomic_store(&s->fired, true);
		machine_request_stop(s->m, 1);
		pthread_kill(s->stepper, SIGUSR1);
	}
	return NULL;
}

static void watchdog_start(struct suite *s)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_kick;        /* no SA_RESTART: KVM_RUN returns EINTR */
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	s->stepper = pthread_self();
	atomic_store(&s->deadline, clock_ns() + CASE_TIMEOUT_NS);
	assert_int_equal(pthread_create(&s->watchdog, NULL, watchdog_main, s), 0);
}

static void watchdog_stop(struct suite *s)
{
	atomic_store(&s->done, true);
	pthread_join(s->watchdog, NULL);
}

/* ---- the machine ------------------------------------------------------------------- */

static void suite_setup(struct suite *s, bool blk_ioeventfd, enum blk_aio aio)
{
	struct machine_virtio_opts vo;
	struct virtio_blk_opts bo = { .serial = "hostile" };
	struct iothread *it;
	const char *why = NULL;
	int fd;

	memset(s, 0, sizeof(*s));
	s->m = vm_create(1, IOEVENTFD_AUTO);
	strcpy(s->image, "/tmp/kickvm-hostile-XXXXXX");
	fd = mkstemp(s->image);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
	close(fd);
	bo.file = s->image;
	bo.blk.aio = aio;
	assert_int_equal(machine_iothread(s->m, "io0", &it), 0);
	machine_virtio_opts_defaults(&vo);
	vo.iothread = "io0";
	vo.ioeventfd = blk_ioeventfd;
	/* Where io_uring is refused, the thread pool: completions come late
	 * either way, which is what the bus master case needs. */
	if (machine_add_virtio_blk(s->m, &bo, &vo, &s->blk, &why) < 0 && aio == BLK_AIO_IO_URING) {
		bo.blk.aio = BLK_AIO_THREADS;
		assert_int_equal(machine_add_virtio_blk(s->m, &bo, &vo, &s->blk, &why), 0);
	}
	assert_non_null(s->blk);
	machine_virtio_opts_defaults(&vo);
	vo.iothread = "io0";
	assert_int_equal(machine_add_virtio_rng(s->m, &vo, &s->rng, &why), 0);
}

static void suite_teardown(struct suite *s)
{
	machine_destroy(s->m);
	unlink(s->image);
}

/* ---- judging one case --------------------------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static void problem(struct outcome *o, const char *fmt, ...)
{
	size_t n = strlen(o->why);
	va_list ap;

	if (n && n + 2 < sizeof(o->why)) {
		strcpy(o->why + n, "; ");
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(o->why + n, sizeof(o->why) - n, fmt, ap);
	va_end(ap);
	o->failed = true;
}

static const struct machine_device *device_of(const struct suite *s, const char *name)
{
	return !strncmp(name, "rng.", 4) ? s->rng : s->blk;
}

/* Requests virtio-blk executed (each counts once, by type or as unsupported). */
static uint64_t blk_executed(const struct suite *s)
{
	struct virtio_blk_stats st;

	virtio_blk_get_stats(s->blk->vdev, &st);
	return st.reads + st.writes + st.flushes + st.get_ids + st.discards + st.write_zeroes +
	       st.unsupported;
}

/* The guard pages around the arena, read by the host on its own. */
static void check_guards(struct suite *s, struct outcome *o, const struct hostile_report *r)
{
	const uint64_t pages[2] = { r->guard_lo, r->guard_hi };

	for (int k = 0; k < 2; k++) {
		const uint8_t *p = guest_mem_ptr(&s->m->mem, pages[k], r->guard_len);

		if (!p) {
			problem(o, "guard page at 0x%llx is not in guest RAM",
				(unsigned long long)pages[k]);
			continue;
		}
		for (uint64_t i = 0; i < r->guard_len; i++)
			if (p[i] != hostile_guard(pages[k] + i)) {
				problem(o, "guard byte at 0x%llx changed",
					(unsigned long long)(pages[k] + i));
				break;
			}
	}
}

static void check_expectation(struct outcome *o, const struct hostile_report *r, bool nr)
{
	switch (r->expect) {
	case EXPECT_BROKEN:
		if (!nr)
			problem(o, "expected NEEDS_RESET, device_status 0x%x", r->dev_status);
		if (r->used)
			problem(o, "%u chains completed (%u OK) instead of none", r->used, r->ok);
		break;
	case EXPECT_IOERR:
	case EXPECT_UNSUPP: {
		uint32_t want = r->expect == EXPECT_IOERR ? r->ioerr : r->unsupp;

		if (nr)
			problem(o, "NEEDS_RESET for a well-formed request");
		if (r->used != r->submitted || want != r->submitted)
			problem(o, "expected %u chains to complete with %s: %u used, %u OK, "
				"%u IOERR, %u UNSUPP, %u other", r->submitted,
				r->expect == EXPECT_IOERR ? "IOERR" : "UNSUPP", r->used, r->ok,
				r->ioerr, r->unsupp, r->other);
		break;
	}
	case EXPECT_FAILED:
		if (r->ok)
			problem(o, "%u chains completed OK: the data was never moved", r->ok);
		if (!nr && (r->used != r->submitted || r->ioerr + r->unsupp != r->used))
			problem(o, "neither NEEDS_RESET nor IOERR/UNSUPP: %u of %u used, %u OK, "
				"%u other", r->used, r->submitted, r->ok, r->other);
		break;
	case EXPECT_ALL_OK:
		if (nr)
			problem(o, "NEEDS_RESET for well-formed requests");
		if (r->used != r->submitted || r->ok != r->submitted || r->data_bad)
			problem(o, "%u requests: %u used, %u OK, %u with wrong data", r->submitted,
				r->used, r->ok, r->data_bad);
		break;
	case EXPECT_RNG_BOUNDED:
		if (!nr && r->used != r->submitted)
			problem(o, "%u of %u chains used, and no NEEDS_RESET", r->used, r->submitted);
		break;
	case EXPECT_QUIET:
		if (r->quiet_changes)
			problem(o, "with bus master off the device still wrote:%s%s%s%s",
				r->quiet_changes & QUIET_USED_IDX ? " used index" : "",
				r->quiet_changes & QUIET_STATUS ? " status bytes" : "",
				r->quiet_changes & QUIET_DATA ? " data buffers" : "",
				r->quiet_changes & QUIET_IRQ ? " interrupts" : "");
		/* Nothing in flight at the clear: this run proved nothing. */
		o->vacuous = !r->in_flight;
		o->in_flight = r->in_flight;
		break;
	case EXPECT_SURVIVE:
		break;
	default:
		problem(o, "unknown expectation %u", r->expect);
	}
}

static void check_case(struct suite *s, struct outcome *o, const struct hostile_report *r)
{
	const struct machine_device *md = device_of(s, r->name);
	uint8_t host_status = __atomic_load_n(&md->vdev->status, __ATOMIC_RELAXED);
	bool nr = r->dev_status & NEEDS_RESET;
	struct stat st;

	if (r->timed_out)
		problem(o, "no answer within the guest's timeout (neither a used entry nor "
			"NEEDS_RESET)");
	if (!!(host_status & NEEDS_RESET) != nr)
		problem(o, "the guest read device_status 0x%x, the device holds 0x%x",
			r->dev_status, host_status);
	if (nr && log_count(LOG_ERROR) == s->errors_at_begin)
		problem(o, "NEEDS_RESET without an error logged");
	if (r->arena_bad >= 0)
		problem(o, "arena byte at offset 0x%x changed, outside every writable buffer",
			(unsigned)r->arena_bad);
	if (r->ring_bad)
		problem(o, "the descriptor table or the available ring changed");
	if (r->bad_used)
		problem(o, "%u used entries name no chain in flight or claim more bytes than "
			"were writable", r->bad_used);
	check_guards(s, o, r);
	/* No chain runs twice: what the device executed since the case began
	 * is at most the chains made available plus the case's good set-up. */
	if (md == s->blk && blk_executed(s) - s->executed_at_begin > r->submitted + r->setup_requests)
		problem(o, "virtio-blk executed %llu requests for %u chains (+%u set-up): some ran "
			"twice", (unsigned long long)(blk_executed(s) - s->executed_at_begin),
			r->submitted, r->setup_requests);
	if (stat(s->image, &st) || st.st_size != DISK_SIZE)
		problem(o, "the disk image changed size");
	check_expectation(o, r, nr);
}

/* One report from the guest: "hostile.begin", ".case" or ".recovered". */
static void on_report(struct suite *s, const char *what, uint64_t gpa)
{
	struct hostile_report r;
	struct outcome *o;

	if (!strcmp(what, "hostile.cases")) {
		s->reported_cases = gpa;
		return;
	}
	if (strncmp(what, "hostile.", 8))
		return;
	assert_int_equal(guest_mem_read(&s->m->mem, gpa, &r, sizeof(r)), 0);
	r.name[HOSTILE_NAME_MAX - 1] = '\0';
	if (r.index >= MAX_CASES)
		fail_msg("case %s: index %u out of range", r.name, r.index);
	o = &s->cases[r.index];
	if (!strcmp(what, "hostile.begin")) {
		snprintf(s->current, sizeof(s->current), "%s", r.name);
		memcpy(o->name, r.name, sizeof(o->name));
		o->seen = true;
		s->errors_at_begin = log_count(LOG_ERROR);
		s->executed_at_begin = blk_executed(s);
		atomic_store(&s->deadline, clock_ns() + CASE_TIMEOUT_NS);
	} else if (!strcmp(what, "hostile.case")) {
		check_case(s, o, &r);
	} else if (!strcmp(what, "hostile.recovered")) {
		if (!r.recovered)
			problem(o, "after a reset: %s (%u)",
				r.recover_status == RECOVER_DATA_WRONG ? "a write read back wrong" :
				r.recover_status == RECOVER_LAST_SECTOR ? "the disk's last sector changed" :
				r.recover_status == RECOVER_RNG_EMPTY ? "virtio-rng gave nothing" :
				"a good request failed", r.recover_status);
	}
}

/* Print every case's verdict; the number that count as failures. */
static int verdicts(struct suite *s, unsigned *nseen)
{
	int bad = 0;

	*nseen = 0;
	for (int i = 0; i < MAX_CASES; i++) {
		struct outcome *o = &s->cases[i];

		if (!o->seen)
			continue;
		(*nseen)++;
		if (o->failed) {
			print_message("hostile: FAIL %s: %s\n", o->name, o->why);
			bad++;
		} else if (o->vacuous) {
			print_message("hostile: ok %s (nothing was in flight: proved nothing this "
				      "run)\n", o->name);
		} else {
			print_message("hostile: ok %s\n", o->name);
		}
		if (s->cases[i].in_flight)
			print_message("hostile:   %s: %u requests in flight at the clear\n", o->name,
				      o->in_flight);
	}
	return bad;
}

static void run_suite(bool irq, bool blk_ioeventfd, enum blk_aio aio)
{
	const char *guest = getenv("KICKVM_VIRTIO_GUEST"), *why = NULL;
	/* Static, not allocated: a skip (no KVM) jumps out of suite_setup()
	 * and would leave an allocation behind. */
	static struct suite suite;
	struct suite *s = &suite;
	struct machine_exit ex;
	char name[32];
	unsigned nseen;
	int ret, bad;

	assert_non_null(guest);
	suite_setup(s, blk_ioeventfd, aio);
	assert_int_equal(machine_load_guest(s->m, guest, irq ? "mode=hostile irq=1 quiet=1"
							      : "mode=hostile quiet=1", &why), 0);
	watchdog_start(s);
	for (;;) {
		ret = machine_vcpu_run_until_event(s->m, 0, &ex);
		if (ret != MACHINE_UCALL)
			break;
		if (ex.ucall.cmd != UCALL_REPORT)
			continue;
		assert_int_equal(guest_mem_read_str(&s->m->mem, ex.ucall.args[0], name, sizeof(name)), 0);
		on_report(s, name, ex.ucall.args[1]);
	}
	watchdog_stop(s);
	if (atomic_load(&s->fired))
		fail_msg("case %s: no progress for %llu s: the guest hangs", s->current,
			 (unsigned long long)(CASE_TIMEOUT_NS / 1000000000ull));
	if (ret != MACHINE_STOPPED)
		fail_msg("case %s: kickvm failed (%d)", s->current, ret);
	if (s->m->guest_failed || s->m->exit_status)
		fail_msg("case %s: the guest failed (its assertion is above), status %d",
			 s->current, s->m->exit_status);
	bad = verdicts(s, &nseen);
	assert_int_equal(nseen, s->reported_cases);
	if (bad)
		fail_msg("%d of %u hostile cases failed (see FAIL above)", bad, nseen);
	suite_teardown(s);
}

/* Polled, doorbells through KVM ioeventfds: the queue work on the
 * iothread, the I/O on worker threads (never inline: requests stay in
 * flight for a while). */
static void test_hostile_polled(void **state)
{
	(void)state;
	run_suite(false, true, BLK_AIO_THREADS);
}

/* MSI-X interrupts (bus master off must silence them too), aio=auto. */
static void test_hostile_irq(void **state)
{
	(void)state;
	run_suite(true, true, BLK_AIO_AUTO);
}

/* ioeventfd=off: every doorbell trapped, the queue work on the vCPU
 * thread; io_uring. */
static void test_hostile_trapped(void **state)
{
	(void)state;
	run_suite(false, false, BLK_AIO_IO_URING);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_polled),
		cmocka_unit_test(test_hostile_irq),
		cmocka_unit_test(test_hostile_trapped),
	};

	/* Each malformed ring logs one error, naming the device and the fault. */
	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests_name("hostile-guest suite", tests, NULL, NULL);
}
