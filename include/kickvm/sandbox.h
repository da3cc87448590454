/*
 * The sandbox: once a machine is set up, each of its threads runs under a
 * seccomp-bpf allow-list of the system calls its class needs, and nothing
 * else (the idea Firecracker and Cloud Hypervisor apply to their threads).
 *
 * A filter applies to the thread that installs it and to threads it starts
 * later, never to threads already running, so every class installs its own
 * list where its set-up ends:
 *
 *   vCPU          machine_run()'s vCPU threads, before the first KVM_RUN
 *   iothread      each iothread, when machine_run() starts (devices attached)
 *   main loop     the thread machine_run() runs the main loop on
 *   block worker  the thread-pool engine's workers, when they start
 *
 * machine_run()'s caller only waits: building the machine before, and the
 * stats, --info and tear-down after the guest's life, run unsandboxed.
 *
 * The allow-lists, and why each call is on them, are in src/core/sandbox.c.
 *
 * A forbidden call in SANDBOX_ON mode ends kickvm at once: a SIGSYS handler
 * writes "kickvm: error: sandbox: forbidden system call '<name>' (<nr>) in
 * thread class '<class>'; ..." to stderr and exits with SANDBOX_EXIT_STATUS.  SANDBOX_LOG
 * lets every call through and has the kernel log the ones not on the list
 * (dmesg or the audit log: "type=1326 ... syscall=<nr>"), to find a missing
 * rule.
 */
#ifndef KICKVM_SANDBOX_H
#define KICKVM_SANDBOX_H

#include <stdbool.h>

enum sandbox_mode {
	SANDBOX_OFF,   /* no filters */
	SANDBOX_ON,    /* a forbidden call ends kickvm, naming the call */
	SANDBOX_LOG,   /* a forbidden call is logged by the kernel, and allowed */
};

enum sandbox_class {
	SANDBOX_VCPU,
	SANDBOX_IOTHREAD,
	SANDBOX_MAIN_LOOP,
	SANDBOX_BLOCK_WORKER,
	SANDBOX_NR_CLASSES,
};

/* kickvm's exit status when a sandboxed thread made a forbidden call
 * (128 + SIGSYS: what a shell shows for a process SIGSYS killed). */
#define SANDBOX_EXIT_STATUS 159

/*
 * The mode every later sandbox_enter() uses, process-wide.  The default is
 * SANDBOX_ON, except in a build with AddressSanitizer: the lists are made
 * for kickvm's calls, not for the sanitizer run-time's own (its error
 * reports read files, for one), so there the default is SANDBOX_OFF and only
 * an explicit sandbox_set_mode() turns it on.
 */
void sandbox_set_mode(enum sandbox_mode mode);
enum sandbox_mode sandbox_get_mode(void);
/* "off", "on", "log" <-> the mode; -EINVAL for anything else. */
int sandbox_parse_mode(const char *s, enum sandbox_mode *mode);
const char *sandbox_mode_name(enum sandbox_mode mode);
const char *sandbox_class_name(enum sandbox_class cls);
/* True when this build turns the sandbox off by default (see above). */
bool sandbox_default_off(void);

/*
 * Put the calling thread under @cls's allow-list, in the current mode
 * (nothing in SANDBOX_OFF).  SIGSYS is unblocked in the calling thread, so
 * that a forbidden call reaches the handler however the thread's mask was
 * set.  Returns 0 or a negative errno (logged: the filter could not be built
 * or the kernel refused it; the thread is then unchanged).  A thread already
 * sandboxed keeps its filter: 0 again for the same class, -EBUSY for another.
 */
int sandbox_enter(enum sandbox_class cls);

/* How many threads of @cls this process has put under a filter so far
 * (tests check that machine_run() sandboxes every thread it should). */
unsigned long sandbox_threads_entered(enum sandbox_class cls);

/* Whether the calling thread runs under a filter (any mode but off): such a
 * thread may not open files, so code that would (reading /proc) must take
 * another way or do without. */
bool sandbox_thread_filtered(void);

/*
 * The QMP monitor's socket (kickvm/qmp.h) is served by the main loop: with
 * @on, the main loop's list also has the monitor group (accepting and
 * closing connections, sending and receiving on them, removing the socket's
 * path at exit).  Set before the main loop enters its sandbox; off by
 * default, so a machine without a monitor has no such call allowed.
 */
void sandbox_allow_monitor(bool on);

#endif
