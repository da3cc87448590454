/*
 * The sandbox (kickvm/sandbox.h), without /dev/kvm:
 *  - a forbidden call ends the process with SANDBOX_EXIT_STATUS and a line
 *    naming the thread class and the call, for every class (in a child);
 *  - ioctl is allowed by request number: KVM_RUN reaches the kernel (EBADF on
 *    a bad fd), KVM_CREATE_VM does not; executable memory is refused;
 *  - what a vCPU thread does after set-up works under its filter: eventfds,
 *    malloc, log lines, console output, block I/O it submits itself;
 *  - what the VFIO model does at run time is allowed on vCPU, iothread and
 *    main-loop threads (its ioctls reach the kernel: EBADF on a bad fd;
 *    pread/pwrite on the device fd; eventfds), not on a block worker;
 *  - log mode lets a forbidden call through, off installs nothing;
 *  - an iothread sandboxed in this process serves block I/O on every engine
 *    (io_uring, threads with their sandboxed workers, inline), an fd handler
 *    and a timer, and exits cleanly: the same lists machine_run() installs.
 * KVM's side (vCPU threads running guests, machine_run()'s main loop
 * thread) is covered by test_machine and the CLI tests, sandboxed by default.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "wait_until.h"

#include "kickvm/block.h"
#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/sandbox.h"

/* ---- children -------------------------------------------------------------- */

struct child {
	int status;          /* from waitpid */
	char err[8192];      /* the start of what it wrote to stderr */
};

/* Run @fn in a child with stderr captured; the child exits with fn's
 * return value (a small number naming the check that failed, 0: all fine). */
static void run_child(int (*fn)(void *), void *arg, struct child *out)
{
	int pipefd[2];
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pipefd[0]);
		dup2(pipefd[1], STDERR_FILENO);
		/* Not _exit(): under ASan that starts a leak check, whose calls
		 * no sandbox allows. */
		syscall(SYS_exit_group, fn(arg));
	}
	close(pipefd[1]);
	/* Read to the end, so the child never blocks or dies writing. */
	for (;;) {
		char rest[512];
		bool room = got < sizeof(out->err) - 1;

		n = room ? read(pipefd[0], out->err + got, sizeof(out->err) - 1 - got)
			 : read(pipefd[0], rest, sizeof(rest));
		if (n <= 0)
			break;
		if (room)
			got += (size_t)n;
	}
	out->err[got] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &out->status, 0), pid);
}

static void assert_exited(const struct child *c, int status)
{
	if (!WIFEXITED(c->status) || WEXITSTATUS(c->status) != status)
		fail_msg("child: status 0x%x, wanted exit %d; stderr: %s", c->status, status,
			 c->err);
}

/* Thread @tid's filter: "Seccomp:" in its status (0 none, 2 filter).
 * Read from outside, as a sandboxed thread may not open files. */
static int seccomp_state(pid_t tid)
{
	char line[128], path[64];
	int state = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp: %d", &state) == 1)
			break;
	fclose(f);
	return state;
}

/* ---- forbidden calls --------------------------------------------------------- */

struct forbidden {
	enum sandbox_class cls;
	const char *what;            /* the call, as the message names it */
	long nr;
	long (*call)(void);
};

static long call_socket(void) { return socket(AF_INET, SOCK_STREAM, 0); }
static long call_openat(void) { return open("/etc/hostname", O_RDONLY); }
static long call_create_vm(void) { return ioctl(-1, KVM_CREATE_VM, 0); }
static long call_kvm_run(void) { return ioctl(-1, KVM_RUN, 0); }
static long call_fork(void) { return syscall(SYS_fork); }
static long call_map_dma(void) { return ioctl(-1, VFIO_IOMMU_MAP_DMA, 0); }
static long call_epoll_ctl(void) { return syscall(SYS_epoll_ctl, -1, 0, -1, NULL); }
static long call_tgkill_init(void) { return syscall(SYS_tgkill, 1, 1, 0); }
static long call_exec_mmap(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? -1 : 0;
}

static int make_forbidden_call(void *opaque)
{
	const struct forbidden *f = opaque;

	sandbox_set_mode(SANDBOX_ON);
	if (sandbox_enter(f->cls) < 0)
		return 2;
	f->call();
	return 3;  /* still alive */
}

static void test_forbidden_call_named(void **state)
{
	static const struct forbidden cases[] = {
		{ SANDBOX_VCPU, "socket", SYS_socket, call_socket },
		{ SANDBOX_VCPU, "ioctl", SYS_ioctl, call_create_vm },
		{ SANDBOX_VCPU, "mmap", SYS_mmap, call_exec_mmap },
		{ SANDBOX_VCPU, "tgkill", SYS_tgkill, call_tgkill_init },  /* another process */
		{ SANDBOX_IOTHREAD, "openat", SYS_openat, call_openat },
		{ SANDBOX_IOTHREAD, "ioctl", SYS_ioctl, call_kvm_run },  /* a vCPU's, not an iothread's */
		{ SANDBOX_MAIN_LOOP, "fork", SYS_fork, call_fork },
		{ SANDBOX_BLOCK_WORKER, "ioctl", SYS_ioctl, call_kvm_run },
		{ SANDBOX_BLOCK_WORKER, "ioctl", SYS_ioctl, call_map_dma },
		{ SANDBOX_BLOCK_WORKER, "epoll_ctl", SYS_epoll_ctl, call_epoll_ctl },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct forbidden f = cases[i];
		struct child c;
		char want[160];

		run_child(make_forbidden_call, &f, &c);
		assert_exited(&c, SANDBOX_EXIT_STATUS);
		snprintf(want, sizeof(want),
			 "kickvm: error: sandbox: forbidden system call '%s' (%ld) in thread class '%s';",
			 f.what, f.nr, sandbox_class_name(f.cls));
		if (!strstr(c.err, want))
			fail_msg("case %zu: wanted '%s' in: %s", i, want, c.err);
	}
}

/* ---- what a vCPU thread does ---------------------------------------------------- */

struct vcpu_work {
	const char *image;           /* a file for block I/O */
	_Atomic int done;
};

static void work_done(struct blk_req *req, int ret)
{
	struct vcpu_work *w = req->opaque;

	atomic_fetch_add(&w->done, ret == 0 ? 1 : 1000);
}

/* A vCPU thread after set-up: kicked, logging, printing the guest's console,
 * signalling notifiers, submitting block I/O (ioeventfd=off), KVM_RUN. */
static int vcpu_thread_work(void *opaque)
{
	struct vcpu_work *w = opaque;
	struct iothread *it;
	struct blk_backend *b;
	struct event_notifier e;
	static char buf[4096] __attribute__((aligned(4096)));
	struct iovec iov = { buf, sizeof(buf) };
	struct blk_req req = { .op = BLK_WRITE, .iov = &iov, .iovcnt = 1, .done = work_done,
			       .opaque = w };
	void *big;
	time_t now;
	struct tm tm;

	/* Set-up: the backend's loop in an iothread, as a device's.  aio=auto:
	 * writes inline, the flush through io_uring (or the thread pool). */
	sandbox_set_mode(SANDBOX_ON);
	if (iothread_new("sandbox-io", &it) < 0 ||
	    blk_open(w->image, &(struct blk_opts){ .aio = BLK_AIO_AUTO }, iothread_loop(it), &b) < 0)
		return 2;
	if (sandbox_enter(SANDBOX_VCPU) < 0)
		return 3;
	/* Again (a machine run twice): kept, not loaded twice. */
	if (sandbox_enter(SANDBOX_VCPU) != 0 || sandbox_enter(SANDBOX_IOTHREAD) != -EBUSY)
		return 4;
	if (ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF)
		return 5;
	if (event_notifier_init(&e, false) < 0 || event_notifier_set(&e) < 0 ||
	    event_notifier_test_and_clear(&e) != 1)
		return 6;
	event_notifier_cleanup(&e);
	big = malloc(8 << 20);  /* mmap */
	if (!big)
		return 7;
	memset(big, 1, 8 << 20);
	free(big);
	/* The CMOS clock a Linux guest reads at boot: gmtime_r() looks for the
	 * time zone the first time (a file), before the filter or never. */
	now = time(NULL);
	if (!gmtime_r(&now, &tm))
		return 12;
	log_warn("test", "a log line from a sandboxed vCPU thread");
	printf("console output\n");
	fflush(stdout);
	if (blk_submit(b, &req) < 0)
		return 8;
	req.op = BLK_FLUSH;
	while (atomic_load(&w->done) < 1)
		usleep(1000);
	if (blk_submit(b, &req) < 0)
		return 9;
	while (atomic_load(&w->done) < 2)
		usleep(1000);
	if (atomic_load(&w->done) != 2)
		return 10;
	if (syscall(SYS_tgkill, getpid(), gettid(), 0) != 0)  /* a kick, to ourselves */
		return 11;
	return 0;
}

static void make_image(char *path, size_t len)
{
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	close(fd);
}

static void test_vcpu_work_allowed(void **state)
{
	char image[] = "/tmp/kickvm-sandbox-XXXXXX";
	struct vcpu_work w = { .image = image };
	struct child c;
	(void)state;

	make_image(image, 1 << 20);
	run_child(vcpu_thread_work, &w, &c);
	unlink(image);
	assert_exited(&c, 0);
	assert_non_null(strstr(c.err, "a log line from a sandboxed vCPU thread"));
}

/* ---- malloc under a filter ------------------------------------------------------ */

/* A sandboxed thread that frees a lot at once: glibc would shrink the
 * thread's heap, and its first shrink opens /proc/sys/vm/overcommit_memory
 * (forbidden).  The sandbox's fixed trim threshold must keep that from
 * happening: the thread lives on and exits normally. */
static void *heap_churn_thread(void *opaque)
{
	enum { N = 160, SIZE = 64 << 10 };   /* 10 MiB, in chunks below the mmap threshold */
	static void *chunks[N];
	long ret = 0;

	(void)opaque;
	if (sandbox_enter(SANDBOX_MAIN_LOOP) < 0)
		return (void *)2;
	for (int i = 0; i < N; i++) {
		chunks[i] = malloc(SIZE);
		if (!chunks[i])
			ret = 3;
		else
			memset(chunks[i], 1, SIZE);
	}
	for (int i = N - 1; i >= 0; i--)
		free(chunks[i]);
	return (void *)ret;
}

static int heap_churn(void *opaque)
{
	pthread_t t;
	void *ret = NULL;

	(void)opaque;
	if (pthread_create(&t, NULL, heap_churn_thread, NULL) != 0)
		return 4;
	pthread_join(t, &ret);
	return (int)(long)ret;
}

static void test_heap_shrink_allowed(void **state)
{
	struct child c;

	(void)state;
	run_child(heap_churn, NULL, &c);
	assert_exited(&c, 0);
}

/* ---- VFIO at run time ---------------------------------------------------------- */

/* In class *@opaque: every ioctl and call the VFIO model makes after set-up
 * reaches the kernel (a bad fd answers EBADF instead of the filter killing
 * us). */
static int vfio_runtime_work(void *opaque)
{
	static const unsigned long ioctls[] = {
		VFIO_DEVICE_SET_IRQS, VFIO_DEVICE_RESET, VFIO_DEVICE_IOEVENTFD,
		VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
	};
	uint32_t word = 0;
	struct event_notifier e;

	if (sandbox_enter(*(enum sandbox_class *)opaque) < 0)
		return 2;
	for (unsigned i = 0; i < sizeof(ioctls) / sizeof(ioctls[0]); i++)
		if (ioctl(-1, ioctls[i], 0) != -1 || errno != EBADF)
			return 10 + (int)i;
	if (pread(-1, &word, 4, 0x1000) != -1 || errno != EBADF ||
	    pwrite(-1, &word, 4, 0x1000) != -1 || errno != EBADF)
		return 3;
	if (event_notifier_init(&e, false) < 0)
		return 4;
	event_notifier_cleanup(&e);
	return 0;
}

static void test_vfio_runtime_allowed(void **state)
{
	enum sandbox_class classes[] = { SANDBOX_VCPU, SANDBOX_IOTHREAD, SANDBOX_MAIN_LOOP };
	(void)state;

	for (unsigned i = 0; i < 3; i++) {
		struct child c;

		run_child(vfio_runtime_work, &classes[i], &c);
		assert_exited(&c, 0);
	}
}

/* ---- log and off ---------------------------------------------------------------- */

static int forbidden_in_mode(void *opaque)
{
	enum sandbox_mode mode = *(enum sandbox_mode *)opaque;
	int fd;

	sandbox_set_mode(mode);
	if (sandbox_enter(SANDBOX_BLOCK_WORKER) < 0)
		return 2;
	if (seccomp_state(gettid()) != (mode == SANDBOX_OFF ? 0 : 2))
		return 3;  /* log mode lets the open through */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	return fd >= 0 ? 0 : 4;
}

static void test_log_and_off_let_it_through(void **state)
{
	enum sandbox_mode modes[] = { SANDBOX_LOG, SANDBOX_OFF };
	(void)state;

	for (int i = 0; i < 2; i++) {
		struct child c;

		run_child(forbidden_in_mode, &modes[i], &c);
		assert_exited(&c, 0);
		assert_null(strstr(c.err, "forbidden"));
	}
}

static void test_parse_mode(void **state)
{
	enum sandbox_mode m;
	(void)state;

	assert_int_equal(sandbox_parse_mode("log", &m), 0);
	assert_int_equal(m, SANDBOX_LOG);
	assert_int_equal(sandbox_parse_mode("on", &m), 0);
	assert_int_equal(m, SANDBOX_ON);
	assert_int_equal(sandbox_parse_mode("off", &m), 0);
	assert_int_equal(m, SANDBOX_OFF);
	assert_int_equal(sandbox_parse_mode("trap", &m), -EINVAL);
	assert_string_equal(sandbox_mode_name(SANDBOX_LOG), "log");
}

/* ---- a sandboxed iothread, in this process ---------------------------------------- */

struct io_world {
	struct blk_backend *b;
	char buf[8][4096] __attribute__((aligned(4096)));
	struct iovec iov[8];
	struct blk_req req[8];
	_Atomic int ok, failed;
	_Atomic int entered;
	pid_t tid;
	struct event_notifier e;
	_Atomic int notified;
	struct timer *timer;
	_Atomic int fired;
};

static void world_done(struct blk_req *req, int ret)
{
	struct io_world *w = req->opaque;

	atomic_fetch_add(ret == 0 ? &w->ok : &w->failed, 1);
}

static void enter_iothread_sandbox(void *opaque)
{
	struct io_world *w = opaque;

	w->tid = gettid();
	w->entered = sandbox_enter(SANDBOX_IOTHREAD) == 0 ? 1 : -1;
}

/* In the iothread, as a device's queue handler would: requests [first, end)
 * of: three writes; then two reads of the first two, flush, discard and
 * write-zeroes. */
static void submit(struct io_world *w, int first, int end)
{
	static const enum blk_op ops[8] = { BLK_WRITE, BLK_WRITE, BLK_WRITE, BLK_READ,
					    BLK_READ, BLK_FLUSH, BLK_DISCARD, BLK_WRITE_ZEROES };
	static const uint64_t blocks[8] = { 0, 1, 2, 0, 1, 0, 5, 6 };

	blk_plug(w->b);
	for (int i = first; i < end; i++) {
		memset(w->buf[i], ops[i] == BLK_WRITE ? i + 1 : 0xee, sizeof(w->buf[i]));
		w->iov[i] = (struct iovec){ w->buf[i], sizeof(w->buf[i]) };
		w->req[i] = (struct blk_req){ .op = ops[i], .offset = blocks[i] * 4096,
					      .len = 4096, .iov = &w->iov[i], .iovcnt = 1,
					      .done = world_done, .opaque = w };
		if (blk_submit(w->b, &w->req[i]) < 0)
			atomic_fetch_add(&w->failed, 1);
	}
	blk_unplug(w->b);
}

static void submit_writes(void *opaque) { submit(opaque, 0, 3); }
static void submit_rest(void *opaque) { submit(opaque, 3, 8); }

static void on_notified(struct event_notifier *e, void *opaque)
{
	struct io_world *w = opaque;

	event_notifier_test_and_clear(e);
	atomic_fetch_add(&w->notified, 1);
}

static void on_timer(void *opaque)
{
	struct io_world *w = opaque;

	atomic_fetch_add(&w->fired, 1);
}

static void arm_timer(void *opaque)
{
	struct io_world *w = opaque;

	timer_mod(w->timer, clock_ns() + 1000000);
}

static unsigned long iothreads_entered;

static void sandboxed_iothread(enum blk_aio aio)
{
	char image[] = "/tmp/kickvm-sandbox-XXXXXX";
	struct io_world *w = NULL;
	struct iothread *it;
	struct event_loop *loop;
	int r;

	assert_int_equal(posix_memalign((void **)&w, 4096, sizeof(*w)), 0);
	memset(w, 0, sizeof(*w));
	make_image(image, 1 << 20);
	assert_int_equal(iothread_new("sandbox-io", &it), 0);
	loop = iothread_loop(it);
	r = blk_open(image, &(struct blk_opts){ .aio = aio }, loop, &w->b);
	if (r < 0 && aio == BLK_AIO_IO_URING) {
		iothread_free(it);
		unlink(image);
		free(w);
		skip();  /* no io_uring here: the other engines still ran */
	}
	assert_int_equal(r, 0);
	assert_int_equal(event_notifier_init(&w->e, false), 0);
	w->timer = timer_new(loop, on_timer, w);

	/* What machine_run() does, then what a running machine does. */
	assert_int_equal(event_loop_call_sync(loop, enter_iothread_sandbox, w), 0);
	assert_int_equal(w->entered, 1);
	assert_int_equal(sandbox_threads_entered(SANDBOX_IOTHREAD), ++iothreads_entered);
	assert_int_equal(seccomp_state(w->tid), 2);
	assert_int_equal(seccomp_state(gettid()), 0);  /* this thread: none */
	assert_int_equal(event_loop_set_notifier(loop, &w->e, on_notified, w), 0);
	event_notifier_set(&w->e);
	assert_true(WAIT_UNTIL(w->notified == 1));
	event_loop_call(loop, arm_timer, w);
	assert_true(WAIT_UNTIL(w->fired == 1));
	event_loop_call(loop, submit_writes, w);
	assert_true(WAIT_UNTIL(w->ok + w->failed == 3));
	event_loop_call(loop, submit_rest, w);
	assert_true(WAIT_UNTIL(w->ok + w->failed == 8));
	assert_int_equal(w->failed, 0);
	assert_memory_equal(w->buf[3], w->buf[0], 4096);  /* read back what was written */
	assert_memory_equal(w->buf[4], w->buf[1], 4096);
	assert_int_equal(w->buf[4][4095], 2);

	/* Tear-down, as machine_destroy() does it: the iothread exits sandboxed. */
	event_loop_set_notifier(loop, &w->e, NULL, NULL);
	event_notifier_cleanup(&w->e);
	timer_free(w->timer);
	blk_close(w->b);
	iothread_free(it);
	unlink(image);
	free(w);
}

static void test_iothread_io_uring(void **state) { (void)state; sandboxed_iothread(BLK_AIO_IO_URING); }
static void test_iothread_threads(void **state) { (void)state; sandboxed_iothread(BLK_AIO_THREADS); }
static void test_iothread_auto(void **state) { (void)state; sandboxed_iothread(BLK_AIO_AUTO); }

static int setup(void **state)
{
	(void)state;
	/* Under ASan the default is off (sandbox.h); these tests want it on,
	 * and ASan's run-time makes no calls in the sandboxed threads here. */
	sandbox_set_mode(SANDBOX_ON);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forbidden_call_named),
		cmocka_unit_test(test_vcpu_work_allowed),
		cmocka_unit_test(test_vfio_runtime_allowed),
		cmocka_unit_test(test_heap_shrink_allowed),
		cmocka_unit_test(test_log_and_off_let_it_through),
		cmocka_unit_test(test_parse_mode),
		cmocka_unit_test(test_iothread_io_uring),
		cmocka_unit_test(test_iothread_threads),
		cmocka_unit_test(test_iothread_auto),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
