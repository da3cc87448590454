/*
 * Pausing a running machine (QMP stop and cont, kickvm run -S).  A vCPU
 * thread parks only between two KVM_RUNs, after an exit was dispatched in
 * full (or after a kick's EINTR): no exit is ever left half-handled, and
 * the guest resumes exactly where it stopped.  Devices keep running on
 * their iothreads, as in QEMU, finishing what the guest already queued.
 */
#include <errno.h>
#include <time.h>

#include "kickvm/log.h"
#include "kickvm/machine.h"

#include "machine/machine_internal.h"

void machine_pause_init(struct machine *m)
{
	pthread_condattr_t attr;

	pthread_mutex_init(&m->pause_lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&m->pause_cond, &attr);
	pthread_condattr_destroy(&attr);
}

void machine_pause_wake(struct machine *m)
{
	pthread_mutex_lock(&m->pause_lock);
	pthread_cond_broadcast(&m->pause_cond);
	pthread_mutex_unlock(&m->pause_lock);
}

bool machine_paused(struct machine *m)
{
	return atomic_load(&m->pause_requested);
}

/* On a vCPU thread, between two runs. */
void machine_park_if_paused(struct machine *m, int cpu)
{
	if (!atomic_load(&m->pause_requested))
		return;
	pthread_mutex_lock(&m->pause_lock);
	m->vcpus_parked++;
	pthread_cond_broadcast(&m->pause_cond);
	log_debug("machine", "cpu%d: paused", cpu);
	while (atomic_load(&m->pause_requested) && !atomic_load(&m->stopping))
		pthread_cond_wait(&m->pause_cond, &m->pause_lock);
	m->vcpus_parked--;
	pthread_mutex_unlock(&m->pause_lock);
}

int machine_pause(struct machine *m, int timeout_ms)
{
	struct timespec deadline;
	int running = 0, ret = 0;

	atomic_store(&m->pause_requested, true);
	for (int i = 0; i < m->nr_vcpus; i++) {
		if (m->vcpus[i]->has_thread) {
			running++;
			vcpu_kick(m->vcpus[i]);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->pause_lock);
	while (m->vcpus_parked < running && !atomic_load(&m->stopping) && !ret)
		ret = -pthread_cond_timedwait(&m->pause_cond, &m->pause_lock, &deadline);
	pthread_mutex_unlock(&m->pause_lock);
	if (ret == -ETIMEDOUT)
		log_warn("machine", "pause: not every vCPU parked within %d ms; it parks at its "
			 "next exit", timeout_ms);
	return ret;
}

void machine_resume(struct machine *m)
{
	pthread_mutex_lock(&m->pause_lock);
	atomic_store(&m->pause_requested, false);
	pthread_cond_broadcast(&m->pause_cond);
	pthread_mutex_unlock(&m->pause_lock);
}
