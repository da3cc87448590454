/*
 * The sandbox (kickvm/sandbox.h): one seccomp-bpf allow-list per thread
 * class, built with libseccomp and loaded by each thread for itself.
 *
 * A list is the union of groups, each a set of calls with the reason they
 * are needed.  What every thread may do: allocate (malloc, thread stacks,
 * never executable memory), wait on futexes, read clocks, write a log line
 * or console output, and end.  Then per class:
 *
 *   vCPU          KVM_RUN, the register reads of a fatal-exit dump and the
 *                 writes of a reset (its saved state put back); what
 *                 an exit can reach: the devices' event notifiers, MSI-X and
 *                 memory-map changes (VM ioctls), block I/O (a trapped
 *                 doorbell with ioeventfd=off is served on the vCPU thread,
 *                 inline reads and writes, io_uring submissions), VFIO
 *   iothread      the event loop (epoll, eventfds), block I/O and io_uring,
 *                 interrupts (VM ioctls)
 *   main loop     the same as an iothread (devices without one run there),
 *                 and the interrupt controllers' state put back by a reset
 *   block worker  block I/O only: no ioctl, no epoll, no io_uring
 *
 * Nothing opens a file, creates a socket or a thread, executes a program or
 * maps executable memory once set-up is over; those calls are on no list.
 *
 * Only calls that can be restricted by their integer arguments are: ioctl
 * by request number (the fd is not known to the filter), mmap and mprotect
 * without PROT_EXEC, tgkill within this process.  The kernel compares an
 * ioctl's request as 32 bits, so the filter does too.
 */
#include <errno.h>
#include <execinfo.h>
#include <malloc.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <linux/vfio.h>

#include "kickvm/log.h"
#include "kickvm/sandbox.h"

#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUILT_WITH_ASAN 1
#endif
#endif
#ifndef BUILT_WITH_ASAN
#define BUILT_WITH_ASAN 0
#endif

/* ---- the groups ------------------------------------------------------------- */

#define SYS(name) SCMP_SYS(name)

/* Every thread. */
static const int base_calls[] = {
	/* malloc and free, thread stacks freed at exit (mmap and mprotect
	 * are added with their PROT_EXEC condition) */
	SYS(brk), SYS(munmap), SYS(mremap), SYS(madvise),
	/* locks, condition variables, semaphores, joins; sleeping */
	SYS(futex), SYS(sched_yield), SYS(nanosleep), SYS(clock_nanosleep),
	/* clocks, where the vDSO falls back to the kernel */
	SYS(clock_gettime), SYS(clock_getres), SYS(gettimeofday), SYS(time),
	SYS(gettid), SYS(getpid), SYS(getrandom),
	/* qsort() of a large array asks for the memory size once (ioeventfd
	 * diffs of a memory transaction) */
	SYS(sysinfo),
	/* signals: vCPU kicks arrive and return, masks, abort() */
	SYS(rt_sigreturn), SYS(rt_sigprocmask), SYS(restart_syscall),
	/* log lines (stderr) and console output (stdout or a file); the first
	 * write on a stdio stream looks at its fd with fstat */
	SYS(write), SYS(writev), SYS(fstat), SYS(newfstatat),
	/* event notifiers are eventfds: signalled, cleared, closed */
	SYS(read), SYS(close),
	SYS(exit), SYS(exit_group),
};

/* AddressSanitizer's run-time, in a build that has it (where the sandbox is
 * off unless asked for): a thread's alternate signal stack goes at its exit. */
static const int asan_calls[] = {
	SYS(sigaltstack),
};

/* The event loop and event notifiers (a device started by a vCPU's status
 * write creates its notifiers on that thread). */
static const int event_calls[] = {
	SYS(epoll_wait), SYS(epoll_pwait), SYS(epoll_ctl), SYS(eventfd2),
};

/* The block backend's I/O (src/block), and VFIO BAR accesses (pread and
 * pwrite on the device fd). */
static const int block_io_calls[] = {
	SYS(pread64), SYS(pwrite64), SYS(preadv), SYS(pwritev), SYS(preadv2), SYS(pwritev2),
	SYS(fdatasync), SYS(fsync), SYS(fallocate),
};

static const int io_uring_calls[] = {
	SYS(io_uring_enter),
};

/* ioctls on the VM fd a running machine makes: memory map changes (BARs),
 * ioeventfds, irqfds, MSI routes and MSIs, legacy interrupt lines. */
static const unsigned long vm_ioctls[] = {
	KVM_SET_USER_MEMORY_REGION, KVM_IOEVENTFD, KVM_IRQFD, KVM_SET_GSI_ROUTING,
	KVM_SIGNAL_MSI, KVM_IRQ_LINE, KVM_REGISTER_COALESCED_MMIO,
	KVM_UNREGISTER_COALESCED_MMIO, KVM_CHECK_EXTENSION,
	/* stdio asks whether a stream is a terminal on its first write */
	TCGETS,
};

/* ioctls on a vCPU fd: running it. */
static const unsigned long vcpu_ioctls[] = {
	KVM_RUN,
};

/* Reading a vCPU's state: the register dump of a fatal exit (on the vCPU
 * thread) and the report of every vCPU when a stop signal ends kickvm (on
 * the main loop, which also puts the signal handlers back). */
static const unsigned long vcpu_state_ioctls[] = {
	KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_MP_STATE, KVM_GET_LAPIC, KVM_GET_MSRS,
	KVM_TRANSLATE,
};

/* A reset in place (machine_reset): each vCPU writes its saved state back
 * on its own thread (and re-enters KVM_RUN once to complete an exit); the
 * main loop writes back the interrupt controllers. */
static const unsigned long vcpu_reset_ioctls[] = {
	KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_FPU, KVM_SET_XCRS, KVM_SET_MSRS,
	KVM_SET_MP_STATE, KVM_SET_LAPIC, KVM_SET_VCPU_EVENTS, KVM_SET_DEBUGREGS,
};

static const unsigned long vm_reset_ioctls[] = {
	KVM_SET_IRQCHIP, KVM_SET_PIT2,
};

static const int signal_setup_calls[] = {
	SYS(rt_sigaction),
};

/*
 * VFIO device assignment: the ioctls a running machine makes on a VFIO
 * device or container fd.  Everything else the model does at run time is in
 * other groups: trapped BAR and config accesses and kickvm's fallback
 * device writes are pread/pwrite on the device fd (block I/O group), held
 * interrupts and ioeventfds are eventfds (events group), irqfds, routes and
 * KVM ioeventfds are VM ioctls.  Add here any other VFIO ioctl a vCPU
 * thread, an iothread or the main loop makes after set-up.
 */
static const unsigned long vfio_runtime_ioctls[] = {
	/* MSI/MSI-X enabled, vectors masked or unmasked by the guest */
	VFIO_DEVICE_SET_IRQS,
	/* a guest (bus) reset resets the function */
	VFIO_DEVICE_RESET,
	/* device-write ioeventfds: a reset removes the dynamic ones, hot-write
	 * promotion adds them from a vCPU's trapped write */
	VFIO_DEVICE_IOEVENTFD,
	/* the DMA listener follows guest RAM: a BAR the guest places over RAM
	 * splits a RAM range (unmapped, its pieces mapped), and moving it away
	 * joins them again; a config write on a vCPU does that */
	VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
};

/*
 * The QMP monitor on the main loop (only with a monitor: sandbox_allow_monitor):
 * new connections, requests in, replies and events out, the flush of the
 * last event (poll is in the event group), and the socket's path removed
 * when the machine is torn down.  No socket is created after set-up.
 */
static const int monitor_calls[] = {
	SYS(accept4), SYS(accept), SYS(recvfrom), SYS(recvmsg), SYS(sendto), SYS(sendmsg),
	SYS(shutdown), SYS(unlink), SYS(unlinkat),
};

enum group {
	G_EVENTS = 1 << 0, G_BLOCK_IO = 1 << 1, G_IO_URING = 1 << 2,
	G_VM_IOCTLS = 1 << 3, G_VCPU_IOCTLS = 1 << 4, G_VFIO = 1 << 5,
	G_VCPU_STATE = 1 << 6, G_SIGNAL_SETUP = 1 << 7, G_MONITOR = 1 << 8,
	G_VCPU_RESET = 1 << 9, G_VM_RESET = 1 << 10,
};

static const struct class_def {
	const char *name;
	unsigned groups;
} classes[SANDBOX_NR_CLASSES] = {
	[SANDBOX_VCPU] = { "vCPU", G_EVENTS | G_BLOCK_IO | G_IO_URING | G_VM_IOCTLS |
				   G_VCPU_IOCTLS | G_VCPU_STATE | G_VFIO | G_VCPU_RESET },
	[SANDBOX_IOTHREAD] = { "iothread", G_EVENTS | G_BLOCK_IO | G_IO_URING | G_VM_IOCTLS |
					   G_VFIO },
	[SANDBOX_MAIN_LOOP] = { "main loop", G_EVENTS | G_BLOCK_IO | G_IO_URING | G_VM_IOCTLS |
					     G_VFIO | G_VCPU_STATE | G_SIGNAL_SETUP | G_VM_RESET },
	[SANDBOX_BLOCK_WORKER] = { "block worker", G_BLOCK_IO },
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- mode ------------------------------------------------------------------- */

static _Atomic enum sandbox_mode current_mode = BUILT_WITH_ASAN ? SANDBOX_OFF : SANDBOX_ON;
static _Atomic bool monitor_allowed;

void sandbox_allow_monitor(bool on) { monitor_allowed = on; }

bool sandbox_default_off(void) { return BUILT_WITH_ASAN; }
void sandbox_set_mode(enum sandbox_mode mode) { current_mode = mode; }
enum sandbox_mode sandbox_get_mode(void) { return current_mode; }

static const char *const mode_names[] = {
	[SANDBOX_OFF] = "off", [SANDBOX_ON] = "on", [SANDBOX_LOG] = "log",
};

int sandbox_parse_mode(const char *s, enum sandbox_mode *mode)
{
	for (unsigned i = 0; i < ARRAY_LEN(mode_names); i++) {
		if (!strcmp(s, mode_names[i])) {
			*mode = (enum sandbox_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *sandbox_mode_name(enum sandbox_mode mode)
{
	return (unsigned)mode < ARRAY_LEN(mode_names) ? mode_names[mode] : "?";
}

const char *sandbox_class_name(enum sandbox_class cls)
{
	return (unsigned)cls < SANDBOX_NR_CLASSES ? classes[cls].name : "?";
}

/* ---- the SIGSYS handler ----------------------------------------------------- */

/*
 * The handler may only make async-signal-safe calls, and libseccomp's name
 * lookup allocates: every name is looked up once, before the first filter.
 */
#define MAX_SYSCALL_NR 512
#define MAX_NAME       32
static char syscall_names[MAX_SYSCALL_NR][MAX_NAME];
static __thread enum sandbox_class thread_class;
static __thread bool thread_sandboxed;
static _Atomic unsigned long entered[SANDBOX_NR_CLASSES];

bool sandbox_thread_filtered(void) { return thread_sandboxed; }

unsigned long sandbox_threads_entered(enum sandbox_class cls)
{
	return (unsigned)cls < SANDBOX_NR_CLASSES ? entered[cls] : 0;
}

static void resolve_names(void)
{
	for (int nr = 0; nr < MAX_SYSCALL_NR; nr++) {
		char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

		if (name) {
			strncpy(syscall_names[nr], name, MAX_NAME - 1);
			free(name);
		}
	}
}

static size_t append(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at < cap)
		buf[at++] = *s++;
	return at;
}

static size_t append_uint(char *buf, size_t at, size_t cap, unsigned long v)
{
	char digits[24];
	int n = 0;

	do
		digits[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < (int)sizeof(digits));
	while (n && at < cap)
		buf[at++] = digits[--n];
	return at;
}

#define MAX_FRAMES 24
static bool have_unwinder;

static void on_sigsys(int sig, siginfo_t *info, void *uc)
{
	void *frames[MAX_FRAMES];
	unsigned nr = (unsigned)info->si_syscall;
	const char *name = nr < MAX_SYSCALL_NR && syscall_names[nr][0] ? syscall_names[nr] : "?";
	char msg[256];
	size_t n = 0;

	(void)sig;
	(void)uc;
	n = append(msg, n, sizeof(msg), "kickvm: error: sandbox: forbidden system call '");
	n = append(msg, n, sizeof(msg), name);
	n = append(msg, n, sizeof(msg), "' (");
	n = append_uint(msg, n, sizeof(msg), nr);
	n = append(msg, n, sizeof(msg), ") in thread class '");
	n = append(msg, n, sizeof(msg), sandbox_class_name(thread_class));
	n = append(msg, n, sizeof(msg), "'; kickvm stops (--seccomp=log lets it through and logs it)");
	n = append(msg, n, sizeof(msg), have_unwinder ? "; called from:\n" : "\n");
	if (write(STDERR_FILENO, msg, n) < 0) {
		/* nothing more can be said */
	}
	/* Where it came from, for whoever adds the rule (addr2line -e kickvm
	 * on the +offsets): the unwinder was loaded before the filter. */
	if (have_unwinder)
		backtrace_symbols_fd(frames, backtrace(frames, MAX_FRAMES), STDERR_FILENO);
	/* The system call itself: a sanitizer's _exit() would start its leak
	 * check, which makes calls no list allows. */
	syscall(SYS_exit_group, SANDBOX_EXIT_STATUS);
}

static void prepare_process(void)
{
	void *frame;
	struct sigaction sa;

	resolve_names();
	/* The first backtrace() loads the unwinder (dlopen): not in a handler,
	 * nor under a filter.  Where it cannot be loaded, the handler does
	 * without. */
	have_unwinder = backtrace(&frame, 1) > 0;
	/* libc reads the time zone (/etc/localtime) the first time any time
	 * conversion runs, gmtime_r() included: the CMOS clock's on a vCPU
	 * thread.  Read it now, while files may still be opened. */
	tzset();
	/* glibc's free() shrinks a thread's malloc heap once its free top
	 * passes the trim threshold, and the first shrink reads
	 * /proc/sys/vm/overcommit_memory: an openat on whichever sandboxed
	 * thread frees (seen at the main loop thread's exit, freeing its
	 * cache).  A fixed threshold far above what kickvm frees at once keeps
	 * heaps from shrinking; big buffers are mmap()ed and munmap()ed by
	 * malloc regardless. */
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
}

/* ---- building and loading ------------------------------------------------------ */

static int allow_all(scmp_filter_ctx ctx, const int *calls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0);

		if (r < 0)
			return r;
	}
	return 0;
}

static int allow_ioctls(scmp_filter_ctx ctx, const unsigned long *reqs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					 SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
						 reqs[i] & 0xffffffffu));

		if (r < 0)
			return r;
	}
	return 0;
}

static int add_rules(scmp_filter_ctx ctx, unsigned groups)
{
	int r = allow_all(ctx, base_calls, ARRAY_LEN(base_calls));

	if (!r && BUILT_WITH_ASAN)
		r = allow_all(ctx, asan_calls, ARRAY_LEN(asan_calls));

	/* Never executable memory: nothing kickvm maps after set-up is code. */
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	/* Signals (vCPU kicks, abort()) go to threads of this process only. */
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
	if (!r && (groups & G_EVENTS))
		r = allow_all(ctx, event_calls, ARRAY_LEN(event_calls));
	if (!r && (groups & G_BLOCK_IO))
		r = allow_all(ctx, block_io_calls, ARRAY_LEN(block_io_calls));
	if (!r && (groups & G_IO_URING))
		r = allow_all(ctx, io_uring_calls, ARRAY_LEN(io_uring_calls));
	if (!r && (groups & G_VM_IOCTLS))
		r = allow_ioctls(ctx, vm_ioctls, ARRAY_LEN(vm_ioctls));
	if (!r && (groups & G_VCPU_IOCTLS))
		r = allow_ioctls(ctx, vcpu_ioctls, ARRAY_LEN(vcpu_ioctls));
	if (!r && (groups & G_VCPU_STATE))
		r = allow_ioctls(ctx, vcpu_state_ioctls, ARRAY_LEN(vcpu_state_ioctls));
	if (!r && (groups & G_VCPU_RESET))
		r = allow_ioctls(ctx, vcpu_reset_ioctls, ARRAY_LEN(vcpu_reset_ioctls));
	if (!r && (groups & G_VM_RESET))
		r = allow_ioctls(ctx, vm_reset_ioctls, ARRAY_LEN(vm_reset_ioctls));
	if (!r && (groups & G_SIGNAL_SETUP))
		r = allow_all(ctx, signal_setup_calls, ARRAY_LEN(signal_setup_calls));
	if (!r && (groups & G_VFIO))
		r = allow_ioctls(ctx, vfio_runtime_ioctls, ARRAY_LEN(vfio_runtime_ioctls));
	if (!r && (groups & G_MONITOR))
		r = allow_all(ctx, monitor_calls, ARRAY_LEN(monitor_calls));
	return r;
}

int sandbox_enter(enum sandbox_class cls)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	enum sandbox_mode mode = current_mode;
	scmp_filter_ctx ctx;
	sigset_t sys;
	int r;

	if (mode == SANDBOX_OFF)
		return 0;
	if ((unsigned)cls >= SANDBOX_NR_CLASSES)
		return -EINVAL;
	/* Loading a second filter takes calls no list allows: a machine run
	 * again on the same iothreads keeps the filter they have. */
	if (thread_sandboxed)
		return thread_class == cls ? 0 : -EBUSY;
	pthread_once(&once, prepare_process);
	ctx = seccomp_init(mode == SANDBOX_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	if (!ctx) {
		log_error("sandbox", "cannot start a seccomp filter");
		return -ENOMEM;
	}
	/* A binary tree of syscall numbers rather than a list: fewer BPF
	 * instructions per call.  Older libseccomp refuses; a list works too. */
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	r = add_rules(ctx, classes[cls].groups |
		      (cls == SANDBOX_MAIN_LOOP && monitor_allowed ? G_MONITOR : 0));
	if (r < 0) {
		log_error("sandbox", "cannot build the %s filter: %s", classes[cls].name,
			  strerror(-r));
		goto out;
	}
	/* A blocked SIGSYS would not reach the handler: the kernel would kill
	 * the process without a word. */
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
	thread_class = cls;
	r = seccomp_load(ctx);
	if (r < 0)
		log_error("sandbox", "the kernel refused the %s filter: %s (--seccomp=off runs "
			  "without)", classes[cls].name, strerror(-r));
	else {
		thread_sandboxed = true;
		entered[cls]++;
		log_debug("sandbox", "%s thread sandboxed (%s)", classes[cls].name,
			  mode_names[mode]);
	}
out:
	seccomp_release(ctx);
	return r;
}
