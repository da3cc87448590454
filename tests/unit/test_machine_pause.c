/*
 * Pausing a machine (QMP stop/cont, -S) without /dev/kvm: stand-in vCPU
 * threads run the loop machine_run()'s vCPU threads run around KVM_RUN
 * (park if paused, then a "run" that counts, stopping on a kick as KVM_RUN
 * returns EINTR), on vCPU structs with a kvm_run page of their own.
 *  - machine_pause() returns once every thread parked: the counts are
 *    frozen from then on, whatever the time between two looks;
 *  - machine_resume() lets them count again;
 *  - a pause before the threads start (-S) parks them before they run;
 *  - a stop wakes parked threads, which end.
 * Waits are bounded only to fail instead of hanging.
 */
#include <linux/kvm.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "machine/machine_internal.h"

#define NR 2
#define WAIT_NS (10ull * 1000000000ull)

struct world {
	struct machine m;
	struct vcpu vcpus[NR];
	struct kvm_run runs[NR];
	_Atomic uint64_t count[NR];
};

static struct world *current;

/* The shape of vcpu_thread(): park between runs; a "run" ends on a kick. */
static void *fake_vcpu(void *opaque)
{
	struct vcpu *v = opaque;
	struct world *w = current;

	while (!atomic_load(&w->m.stopping)) {
		machine_park_if_paused(&w->m, v->index);
		if (atomic_load(&w->m.stopping))
			break;
		if (__atomic_exchange_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST))
			continue;  /* KVM_RUN would return EINTR at once */
		atomic_fetch_add(&w->count[v->index], 1);
	}
	return NULL;
}

static struct world *world_new(bool start_paused)
{
	struct world *w = calloc(1, sizeof(*w));

	current = w;
	machine_pause_init(&w->m);
	vcpu_signals_init();      /* the kick's signal is caught, as in machine_run() */
	w->m.nr_vcpus = NR;
	for (int i = 0; i < NR; i++) {
		w->vcpus[i].index = i;
		w->vcpus[i].run = &w->runs[i];
		w->m.vcpus[i] = &w->vcpus[i];
	}
	if (start_paused)
		assert_int_equal(machine_pause(&w->m, 0), 0);   /* no thread yet */
	for (int i = 0; i < NR; i++) {
		assert_int_equal(pthread_create(&w->vcpus[i].thread, NULL, fake_vcpu,
						&w->vcpus[i]), 0);
		w->vcpus[i].has_thread = true;
	}
	return w;
}

static void world_end(struct world *w)
{
	atomic_store(&w->m.stopping, true);
	machine_pause_wake(&w->m);
	for (int i = 0; i < NR; i++)
		pthread_join(w->vcpus[i].thread, NULL);
	free(w);
}

static uint64_t total(struct world *w)
{
	return atomic_load(&w->count[0]) + atomic_load(&w->count[1]);
}

static void wait_both_count_past(struct world *w, const uint64_t *base)
{
	uint64_t end = clock_ns() + WAIT_NS;

	while ((atomic_load(&w->count[0]) <= base[0] || atomic_load(&w->count[1]) <= base[1]) &&
	       clock_ns() < end)
		usleep(1000);
	assert_true(atomic_load(&w->count[0]) > base[0] && atomic_load(&w->count[1]) > base[1]);
}

static void test_pause_resume(void **state)
{
	struct world *w = world_new(false);
	uint64_t zero[NR] = { 0 }, frozen[NR];

	(void)state;
	wait_both_count_past(w, zero);
	for (int round = 0; round < 20; round++) {
		uint64_t a;

		assert_int_equal(machine_pause(&w->m, 10000), 0);
		assert_true(machine_paused(&w->m));
		assert_int_equal(w->m.vcpus_parked, NR);
		a = total(w);
		usleep(2000);
		assert_int_equal(total(w), a);      /* parked: nothing moves */
		frozen[0] = atomic_load(&w->count[0]);
		frozen[1] = atomic_load(&w->count[1]);
		machine_resume(&w->m);
		assert_false(machine_paused(&w->m));
		wait_both_count_past(w, frozen);
	}
	world_end(w);
}

static void test_start_paused(void **state)
{
	struct world *w = world_new(true);
	uint64_t end = clock_ns() + WAIT_NS, zero[NR] = { 0 };

	(void)state;
	while (w->m.vcpus_parked < NR && clock_ns() < end)
		usleep(1000);
	assert_int_equal(w->m.vcpus_parked, NR);
	assert_int_equal(total(w), 0);            /* -S: no run before cont */
	machine_resume(&w->m);
	wait_both_count_past(w, zero);
	world_end(w);
}

/* A stop while paused ends the parked threads (world_end joins them). */
static void test_stop_while_paused(void **state)
{
	struct world *w = world_new(false);

	(void)state;
	assert_int_equal(machine_pause(&w->m, 10000), 0);
	world_end(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_start_paused),
		cmocka_unit_test(test_stop_while_paused),
	};

	log_set_quiet(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
