/*
 * Running vCPUs: one KVM_RUN, then the exit dispatched through the address
 * spaces.  The same two functions serve machine_run()'s vCPU threads and the
 * tests and benchmarks that step a vCPU themselves, so the path a write takes
 * in a test is the path it takes in production.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <linux/kvm.h>

#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "kickvm/sandbox.h"
#include "kickvm/trace.h"

#include "machine/machine_internal.h"

/* The exit being dispatched on this thread, so that a device deep in a
 * callback can hand a ucall to whoever steps this vCPU. */
static __thread struct machine_exit *current_exit;
static __thread bool current_ucall;

void machine_post_ucall(struct machine *m, const struct kickvm_ucall *uc)
{
	(void)m;
	if (current_exit) {
		current_exit->ucall = *uc;
		current_ucall = true;
	}
}

int machine_vcpu_run_once(struct machine *m, int cpu)
{
	if (cpu < 0 || cpu >= m->nr_vcpus)
		return -EINVAL;
	return vcpu_run_once(m->vcpus[cpu]);
}

static void coalesced_write(void *opaque, uint64_t addr, const void *data, unsigned len, bool pio)
{
	struct machine *m = opaque;
	uint64_t value = 0;

	if (len > sizeof(value))
		len = sizeof(value);
	memcpy(&value, data, len);
	address_space_write(pio ? m->as_io : m->as_memory, addr, value, len);
}

static void dispatch_pio(struct machine *m, struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	unsigned size = run->io.size;

	/* String I/O (rep outs/ins) comes as @count items in one exit. */
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t value = 0;

		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&value, data, size);
			trace_vcpu_exit_pio(v->index, run->io.port, size, 1, value);
			address_space_write(m->as_io, run->io.port, value, size);
		} else {
			address_space_read(m->as_io, run->io.port, &value, size);
			trace_vcpu_exit_pio(v->index, run->io.port, size, 0, value);
			memcpy(data, &value, size);
		}
	}
}

static void dispatch_mmio(struct machine *m, struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned len = run->mmio.len;
	uint64_t value = 0;

	if (len > sizeof(value)) {  /* KVM splits wider accesses itself */
		log_error_rl("vcpu", "cpu%d: MMIO access of %u bytes at 0x%llx ignored", v->index,
			  len, (unsigned long long)run->mmio.phys_addr);
		return;
	}
	if (run->mmio.is_write) {
		memcpy(&value, run->mmio.data, len);
		trace_vcpu_exit_mmio(v->index, run->mmio.phys_addr, len, 1, value);
		address_space_write(m->as_memory, run->mmio.phys_addr, value, len);
	} else {
		address_space_read(m->as_memory, run->mmio.phys_addr, &value, len);
		trace_vcpu_exit_mmio(v->index, run->mmio.phys_addr, len, 0, value);
		memcpy(run->mmio.data, &value, len);
	}
}

static int fatal_exit(struct machine *m, struct vcpu *v, const char *what)
{
	log_error("vcpu", "cpu%d: %s; registers:", v->index, what);
	vcpu_dump_regs(v, stderr);
	m->guest_failed = true;
	machine_request_stop(m, 1);
	return -EFAULT;
}

static int kvm_run_failed(struct machine *m, struct vcpu *v, int err)
{
	char what[96];

	snprintf(what, sizeof(what), "KVM_RUN failed (%s)", strerror(-err));
	return fatal_exit(m, v, what);
}

int machine_vcpu_dispatch(struct machine *m, int cpu, struct machine_exit *ex)
{
	struct vcpu *v = m->vcpus[cpu];
	struct machine_exit local;
	int reason = v->run->exit_reason, ret = MACHINE_CONTINUE;

	if (!ex)
		ex = &local;
	memset(ex, 0, sizeof(*ex));
	ex->reason = reason;
	current_exit = ex;
	current_ucall = false;
	/* Writes KVM batched are older than this exit: replay them first. */
	if (v->ring)
		vcpu_drain_coalesced(v, coalesced_write, m);
	switch (reason) {
	case KVM_EXIT_IO:
		dispatch_pio(m, v);
		break;
	case KVM_EXIT_MMIO:
		dispatch_mmio(m, v);
		break;
	case KVM_EXIT_INTR:
		break;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; kickvm always has one. */
		ret = fatal_exit(m, v, "unexpected HLT exit");
		break;
	case KVM_EXIT_SHUTDOWN:
		ret = fatal_exit(m, v, "shutdown (triple fault)");
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		ret = fatal_exit(m, v, "KVM internal error");
		break;
	case KVM_EXIT_FAIL_ENTRY:
		ret = fatal_exit(m, v, "VM entry failed");
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		if (v->run->system_event.type == KVM_SYSTEM_EVENT_RESET)
			machine_request_reset(m);
		else
			machine_request_stop(m, 0);
		break;
	default:
		ret = fatal_exit(m, v, "unhandled exit reason");
		break;
	}
	current_exit = NULL;
	if (ret < 0)
		return ret;
	if (current_ucall)
		return MACHINE_UCALL;
	return m->stopping ? MACHINE_STOPPED : MACHINE_CONTINUE;
}

int machine_vcpu_run_until_event(struct machine *m, int cpu, struct machine_exit *ex)
{
	for (;;) {
		int ret = machine_vcpu_run_once(m, cpu);

		/* EAGAIN: a vCPU waiting for SIPI took an INIT (Linux starting
		 * its APs); KVM wants KVM_RUN again, which waits for the SIPI. */
		if (ret == -EINTR || ret == -EAGAIN) {
			/* A pause (machine_pause) also returns: the vCPU
			 * thread parks, with no exit pending. */
			if (m->stopping || atomic_load(&m->pause_requested))
				return MACHINE_STOPPED;
			continue;
		}
		/* KVM_RUN itself failed.  EFAULT: KVM could not get the pages of
		 * a memory slot the guest touched (an assigned device's mapped
		 * BAR that vfio-pci revoked, a mapping that went away).  Fatal
		 * and said, with the registers: a vCPU thread that just ended
		 * would leave the guest waiting for that CPU with no word. */
		if (ret < 0)
			return kvm_run_failed(m, m->vcpus[cpu], ret);
		ret = machine_vcpu_dispatch(m, cpu, ex);
		if (ret != MACHINE_CONTINUE)
			return ret;
	}
}

static void *vcpu_thread(void *opaque)
{
	struct vcpu *v = opaque;
	struct machine *m = v->opaque;
	unsigned reset_gen = atomic_load(&m->reset_gen);
	int ret = 0;

	/* Set up: from here on only what an exit needs (kickvm/sandbox.h). */
	if (sandbox_enter(SANDBOX_VCPU) < 0) {
		machine_request_stop(m, 1);
		return NULL;
	}
	/* An error has been said and has stopped the machine already (a fatal
	 * exit, or KVM_RUN failing): this thread only ends. */
	while (!m->stopping) {
		machine_park_if_paused(m, v->index);
		if (m->stopping)
			break;
		/* A reset (machine_reset) happened while this vCPU was parked. */
		if (machine_vcpu_apply_reset(m, v->index, &reset_gen) < 0) {
			machine_request_stop(m, 1);
			break;
		}
		ret = machine_vcpu_run_until_event(m, v->index, NULL);
		/* MACHINE_STOPPED without stopping: a pause. */
		if (ret < 0 || (ret == MACHINE_STOPPED && m->stopping))
			break;
	}
	return NULL;
}

/*
 * SIGTERM, SIGINT and SIGHUP stop the machine and say where it was: a hung
 * guest under timeout(1) then reports each vCPU's state, and --stats still
 * prints.  The handler only writes an eventfd the main loop watches
 * (async-signal-safe); SA_RESETHAND makes a second signal kill at once.
 * One machine_run() at a time owns these (kickvm runs one machine).
 */
#define STOP_GRACE_MS 5000
static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP };
static int stop_signal_fd = -1;
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	uint64_t one = 1;
	int saved = errno;

	if (!stop_signal)
		stop_signal = sig;
	if (write(stop_signal_fd, &one, sizeof(one)) < 0) {
		/* nothing to do in a handler; the loop still sees stop_signal */
	}
	errno = saved;
}

static void stop_signal_ready(void *opaque)
{
	struct machine *m = opaque;
	uint64_t n;

	if (read(stop_signal_fd, &n, sizeof(n)) < 0 && errno == EAGAIN)
		return;
	log_error("machine", "%s: stopping the guest; the state of each vCPU follows",
		  strsignal(stop_signal));
	machine_request_stop(m, 128 + stop_signal);
}

static void catch_stop_signals(struct machine *m, struct sigaction *old)
{
	struct sigaction sa;

	stop_signal = 0;
	stop_signal_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (stop_signal_fd < 0 ||
	    event_loop_set_fd_handler(m->main_loop, stop_signal_fd, stop_signal_ready, NULL, m) < 0) {
		log_warn("machine", "cannot catch SIGTERM: a signal ends kickvm without its state");
		if (stop_signal_fd >= 0)
			close(stop_signal_fd);
		stop_signal_fd = -1;
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaction(stop_signals[i], &sa, &old[i]);
}

static void release_stop_signals(struct machine *m, const struct sigaction *old)
{
	if (stop_signal_fd < 0)
		return;
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaction(stop_signals[i], &old[i], NULL);
	event_loop_set_fd_handler(m->main_loop, stop_signal_fd, NULL, NULL, NULL);
	close(stop_signal_fd);
	stop_signal_fd = -1;
}

/* After a stop signal: each vCPU's state.  A vCPU thread that does not stop
 * is stuck in kickvm itself (or in KVM): say where, and exit, since the
 * machine cannot be torn down under it. */
static void join_and_report(struct machine *m)
{
	bool stuck = false;

	for (int i = 0; i < m->nr_vcpus; i++) {
		struct vcpu *v = m->vcpus[i];

		if (vcpu_join_timeout(v, STOP_GRACE_MS)) {
			vcpu_dump_state(v, stderr);
			vcpu_dump_stack(v, &m->mem, 64, stderr);
			continue;
		}
		stuck = true;
		log_error("machine", "cpu%d did not stop within %d ms: %s (last exit reason %u)", i,
			  STOP_GRACE_MS, atomic_load(&v->in_kvm_run) ? "inside KVM_RUN" :
			  "in kickvm, handling its exit", v->run->exit_reason);
	}
	if (stuck) {
		fflush(stdout);
		fflush(stderr);
		_exit(128 + stop_signal);
	}
}

static void sandbox_iothread(void *opaque)
{
	int *ret = opaque;

	*ret = sandbox_enter(SANDBOX_IOTHREAD);
}

/* Every iothread's devices are attached by now: its set-up is over. */
static int sandbox_iothreads(struct machine *m)
{
	int ret = 0;

	for (int i = 0; i < m->nr_iothreads && !ret; i++)
		event_loop_call_sync(iothread_loop(m->iothreads[i]), sandbox_iothread, &ret);
	return ret;
}

/*
 * The main loop runs on a thread of its own, sandboxed like the others: the
 * caller's thread only waits, so what it does before and after the guest's
 * life (building the machine; stats, --info, tear-down) is not held to the
 * list of a running machine.
 */
static void *main_loop_thread(void *opaque)
{
	struct machine *m = opaque;

	pthread_setname_np(pthread_self(), "main-loop");
	if (sandbox_enter(SANDBOX_MAIN_LOOP) < 0) {
		machine_request_stop(m, 1);
		return NULL;
	}
	event_loop_run(m->main_loop);
	return NULL;
}

int machine_run(struct machine *m)
{
	struct sigaction old[sizeof(stop_signals) / sizeof(stop_signals[0])];
	pthread_t loop_thread;
	int ret;

	vcpu_signals_init();
	catch_stop_signals(m, old);
	ret = sandbox_iothreads(m);
	for (int i = 0; i < m->nr_vcpus && !ret; i++) {
		struct vcpu *v = m->vcpus[i];

		v->opaque = m;
		ret = -pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (ret < 0) {
			machine_request_stop(m, 1);
			break;
		}
		v->has_thread = true;
	}
	if (ret == 0) {
		ret = -pthread_create(&loop_thread, NULL, main_loop_thread, m);
		if (ret < 0)
			machine_request_stop(m, 1);
		else
			pthread_join(loop_thread, NULL);
	}
	/* On the caller's thread, which no filter holds. */
	if (m->monitor)
		machine_monitor_machine_ended(m, stop_signal);
	if (stop_signal)
		join_and_report(m);
	for (int i = 0; i < m->nr_vcpus; i++)
		vcpu_join(m->vcpus[i]);
	release_stop_signals(m, old);
	if (ret < 0)
		return ret;
	return m->guest_failed && m->exit_status == 0 ? 1 : m->exit_status;
}
