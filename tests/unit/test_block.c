/*
 * Block backends, each test run with each engine (io_uring, threads, and
 * auto: io_uring with buffered I/O done inline where quick) on a temporary
 * file: data round trips with many requests in flight, flush,
 * discard and write-zeroes (also through the plain-write fallback, on tmpfs),
 * refusals, done() always in the loop thread and never inside blk_submit,
 * drain and close with requests in flight, from the loop and from others.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "wait_until.h"

#include "kickvm/block.h"
#include "kickvm/event.h"
#include "kickvm/log.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#define FILE_SIZE (4u << 20)
#define NREQ      64
#define BS        4096



struct ctx {
	enum blk_aio aio;
	struct event_loop *loop;
	struct blk_backend *b;
	char path[64];
	int fd;                        /* the file, for checking behind the backend */
	const char *skip_why;          /* no backend: why the test skips */
	_Atomic int completed;
};

struct io {
	struct blk_req req;
	struct iovec iov[3];
	struct ctx *c;
	int ret;
	_Atomic bool done;
	bool in_loop;
	pthread_t thread;
	uint8_t *buf;
};

static _Thread_local bool in_submit;

static void io_done(struct blk_req *req, int ret)
{
	struct io *io = req->opaque;

	assert_false(in_submit);                      /* never inside blk_submit */
	io->in_loop = event_loop_in_thread(io->c->loop);
	io->thread = pthread_self();
	io->ret = ret;
	atomic_store(&io->done, true);
	atomic_fetch_add(&io->c->completed, 1);
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

/* Give @io an aligned buffer of @len bytes, filled from @seed. */
static void prep_buf(struct io *io, size_t len, unsigned seed)
{
	if (!io->buf)
		assert_int_equal(posix_memalign((void **)&io->buf, 4096, len), 0);
	fill(io->buf, len, seed);
}

static int submit(struct ctx *c, struct io *io, enum blk_op op, uint64_t off, uint64_t len)
{
	int r;

	io->c = c;
	io->done = false;
	io->ret = 1;
	if (!io->buf && (op == BLK_READ || op == BLK_WRITE))
		prep_buf(io, len, 0);
	io->iov[0] = (struct iovec){ io->buf, len };
	io->req = (struct blk_req){ .op = op, .offset = off, .len = len, .iov = io->iov,
				    .iovcnt = 1, .done = io_done, .opaque = io };
	in_submit = true;
	r = blk_submit(c->b, &io->req);
	in_submit = false;
	return r;
}

/* Submit one request and run the loop until it is done; its result. */
static int sync_io(struct ctx *c, struct io *io, enum blk_op op, uint64_t off, uint64_t len)
{
	int r = submit(c, io, op, off, len);

	if (r < 0)
		return r;
	assert_true(RUN_UNTIL(c->loop, atomic_load(&io->done)));
	assert_true(io->in_loop);
	return io->ret;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static int open_backend(struct ctx *c, bool readonly, bool direct, unsigned depth)
{
	struct blk_opts o = { .readonly = readonly, .direct = direct, .aio = c->aio,
			      .queue_depth = depth };

	return blk_open(c->path, &o, c->loop, &c->b);
}

static int make_file(struct ctx *c, const char *dir)
{
	snprintf(c->path, sizeof(c->path), "%s/kickvm-blk-XXXXXX", dir);
	c->fd = mkstemp(c->path);
	if (c->fd < 0)
		return -1;
	assert_int_equal(ftruncate(c->fd, FILE_SIZE), 0);
	return 0;
}

static int setup_in(void **state, const char *dir)
{
	struct ctx *c = calloc(1, sizeof(*c));

	c->aio = *(enum blk_aio *)*state;
	c->fd = -1;
	c->loop = event_loop_new("test-blk");
	assert_non_null(c->loop);
	*state = c;
	if (access(dir, W_OK) < 0) {
		c->skip_why = "no writable directory for the image";
		return 0;
	}
	assert_int_equal(make_file(c, dir), 0);
	/* Sandboxes (seccomp, io_uring_disabled) may refuse io_uring: the
	 * tests that need it skip (see ctx()). */
	if (open_backend(c, false, false, 0) < 0) {
		assert_int_equal(c->aio, BLK_AIO_IO_URING);
		c->skip_why = "io_uring is not available here";
	}
	return 0;
}

/* The test's context; skips when its engine is not available here. */
static struct ctx *ctx(void **state)
{
	struct ctx *c = *state;

	if (!c->b) {
		print_message("%s: skipped\n", c->skip_why);
		skip();
	}
	return c;
}

static int setup(void **state)
{
	const char *dir = getenv("TMPDIR");

	return setup_in(state, dir ? dir : "/tmp");
}

/* tmpfs: no FALLOC_FL_ZERO_RANGE there. */
static int setup_shm(void **state)
{
	return setup_in(state, "/dev/shm");
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	blk_close(c->b);
	if (c->fd >= 0) {
		close(c->fd);
		unlink(c->path);
	}
	event_loop_free(c->loop);
	free(c);
	return 0;
}

static void free_ios(struct io *ios, int n)
{
	for (int i = 0; i < n; i++)
		free(ios[i].buf);
}

/* ---- tests --------------------------------------------------------------- */

static void test_engine(void **state)
{
	struct ctx *c = ctx(state);

	assert_string_equal(blk_aio_name(c->b), c->aio == BLK_AIO_THREADS ? "threads" : "io_uring");
	assert_int_equal(blk_size(c->b), FILE_SIZE);
	assert_false(blk_readonly(c->b));
}

/* AUTO takes io_uring wherever a ring can be set up, else threads. */
static void test_auto(void **state)
{
	struct ctx *c = ctx(state);
	struct blk_backend *b;
	bool uring = blk_open(c->path, &(struct blk_opts){ .aio = BLK_AIO_IO_URING }, c->loop,
			      &b) == 0;

	blk_close(b);
	assert_int_equal(blk_open(c->path, &(struct blk_opts){ .aio = BLK_AIO_AUTO }, c->loop,
				  &b), 0);
	assert_string_equal(blk_aio_name(b), uring ? "io_uring" : "threads");
	blk_close(b);
}

/* Where the kernel refuses io_uring (as a seccomp sandbox does), AUTO falls
 * back to threads.  Checked in a child that refuses io_uring_setup itself. */
/* Run @body(@c) in a forked child in which system call @nr fails with
 * @err (seccomp); the test fails unless it exits 0, skips without seccomp. */
static void in_child_refusing(long nr, int err, int (*body)(struct ctx *), struct ctx *c)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (uint32_t)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	int status;
	pid_t pid;

#ifdef UNDER_TSAN
	skip();   /* TSan cannot start threads in a child forked from threads */
#endif
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
			_exit(77);
		_exit(body(c));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();   /* no seccomp here */
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int open_refused_uring(struct ctx *c)
{
	struct event_loop *loop = event_loop_new("child");
	struct blk_backend *b;

	if (blk_open(c->path, &(struct blk_opts){ .aio = BLK_AIO_IO_URING }, loop, &b) == 0)
		return 2;
	if (blk_open(c->path, &(struct blk_opts){ .aio = BLK_AIO_AUTO }, loop, &b) < 0)
		return 3;
	return strcmp(blk_aio_name(b), "threads") ? 4 : 0;
}

/* Where the kernel refuses io_uring (as a seccomp sandbox does), AUTO falls
 * back to threads.  Checked in a child that refuses io_uring_setup itself. */
static void test_auto_fallback(void **state)
{
	in_child_refusing(__NR_io_uring_setup, ENOSYS, open_refused_uring, ctx(state));
}

static void test_many_in_flight(void **state)
{
	struct ctx *c = ctx(state);
	struct io w[NREQ] = { 0 }, r[NREQ] = { 0 }, flush = { 0 };
	uint8_t *check = malloc(BS);

	for (int i = 0; i < NREQ; i++) {
		prep_buf(&w[i], BS, (unsigned)i);
		/* Scattered offsets, none adjacent. */
		assert_int_equal(submit(c, &w[i], BLK_WRITE, (uint64_t)((i * 37) % NREQ) * 2 * BS, BS), 0);
	}
	assert_int_equal(blk_in_flight(c->b), NREQ);
	assert_true(RUN_UNTIL(c->loop, c->completed == NREQ));
	assert_int_equal(blk_in_flight(c->b), 0);
	assert_int_equal(sync_io(c, &flush, BLK_FLUSH, 0, 0), 0);

	for (int i = 0; i < NREQ; i++)
		assert_int_equal(submit(c, &r[i], BLK_READ, w[i].req.offset, BS), 0);
	assert_true(RUN_UNTIL(c->loop, c->completed == 2 * NREQ + 1));
	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(w[i].ret, 0);
		assert_true(w[i].in_loop);
		assert_int_equal(r[i].ret, 0);
		assert_true(r[i].in_loop);
		assert_memory_equal(r[i].buf, w[i].buf, BS);
		assert_int_equal(pread(c->fd, check, BS, (off_t)w[i].req.offset), BS);
		assert_memory_equal(check, w[i].buf, BS);
	}
	free(check);
	free_ios(w, NREQ);
	free_ios(r, NREQ);
}

static void test_vectors(void **state)
{
	struct ctx *c = ctx(state);
	static uint8_t a[1000], b[24], d[3072], out[4096];
	struct io io = { 0 };

	fill(out, sizeof(out), 9);
	assert_int_equal(pwrite(c->fd, out, sizeof(out), 8192), (ssize_t)sizeof(out));
	io.c = c;
	io.iov[0] = (struct iovec){ a, sizeof(a) };
	io.iov[1] = (struct iovec){ b, sizeof(b) };
	io.iov[2] = (struct iovec){ d, sizeof(d) };
	io.req = (struct blk_req){ .op = BLK_READ, .offset = 8192, .iov = io.iov, .iovcnt = 3,
				   .done = io_done, .opaque = &io };
	assert_int_equal(blk_submit(c->b, &io.req), 0);
	assert_true(RUN_UNTIL(c->loop, atomic_load(&io.done)));
	assert_int_equal(io.ret, 0);
	assert_memory_equal(a, out, sizeof(a));
	assert_memory_equal(b, out + 1000, sizeof(b));
	assert_memory_equal(d, out + 1024, sizeof(d));
}

/* Discard, then write-zeroes, [off, off+len) of a patterned file. */
static void zero_ops(struct ctx *c, uint64_t off, uint64_t len)
{
	uint8_t *pat = malloc(len + 512), *back = malloc(len);
	struct io io = { 0 };

	for (int op = 0; op < 2; op++) {
		fill(pat, len + 512, 3);
		assert_int_equal(pwrite(c->fd, pat, len + 512, (off_t)off), (ssize_t)len + 512);
		assert_int_equal(sync_io(c, &io, op ? BLK_WRITE_ZEROES : BLK_DISCARD, off, len), 0);
		assert_int_equal(pread(c->fd, back, len, (off_t)off), (ssize_t)len);
		assert_true(all_zero(back, len));
		/* Only the range: the bytes after it are intact. */
		assert_int_equal(pread(c->fd, back, 512, (off_t)(off + len)), 512);
		assert_memory_equal(back, pat + len, 512);
	}
	free(pat);
	free(back);
}

static void test_discard_write_zeroes(void **state)
{
	struct ctx *c = ctx(state);

	zero_ops(c, 64 << 10, 128 << 10);
	zero_ops(c, 512, 3 * 512);       /* not block aligned */
}

/* tmpfs has no FALLOC_FL_ZERO_RANGE: write-zeroes falls back to writes,
 * in chunks (16 MiB, then whole 64 KiB buffers, then the tail). */
static void test_write_zeroes_fallback(void **state)
{
	struct ctx *c = ctx(state);

	blk_close(c->b);
	assert_int_equal(ftruncate(c->fd, 20u << 20), 0);
	assert_int_equal(open_backend(c, false, false, 0), 0);
	zero_ops(c, 4096, (17u << 20) + (64u << 10) + 512);
}

static void test_refusals(void **state)
{
	struct ctx *c = ctx(state);
	struct io io = { 0 };

	assert_int_equal(submit(c, &io, BLK_READ, FILE_SIZE - 512, 1024), -EINVAL);
	assert_int_equal(submit(c, &io, BLK_READ, FILE_SIZE + 512, 512), -EINVAL);
	assert_int_equal(submit(c, &io, BLK_READ, UINT64_MAX - 511, 1024), -EINVAL);
	assert_int_equal(submit(c, &io, BLK_DISCARD, FILE_SIZE - 512, 1024), -EINVAL);
	assert_int_equal(submit(c, &io, BLK_WRITE_ZEROES, 0, 0), -EINVAL);
	io.req.done = NULL;
	assert_int_equal(blk_submit(c->b, &io.req), -EINVAL);
	/* The last sector is fine. */
	assert_int_equal(sync_io(c, &io, BLK_READ, FILE_SIZE - 512, 512), 0);
	assert_int_equal(blk_in_flight(c->b), 0);
	free(io.buf);
}

static void test_readonly(void **state)
{
	struct ctx *c = ctx(state);
	struct io io = { 0 };

	blk_close(c->b);
	assert_int_equal(open_backend(c, true, false, 0), 0);
	assert_true(blk_readonly(c->b));
	assert_int_equal(submit(c, &io, BLK_WRITE, 0, 512), -EROFS);
	assert_int_equal(submit(c, &io, BLK_DISCARD, 0, 512), -EROFS);
	assert_int_equal(submit(c, &io, BLK_WRITE_ZEROES, 0, 512), -EROFS);
	assert_int_equal(sync_io(c, &io, BLK_READ, 0, 512), 0);
	assert_int_equal(sync_io(c, &io, BLK_FLUSH, 0, 0), 0);
	free(io.buf);
}

static void test_queue_full(void **state)
{
	struct ctx *c = ctx(state);
	struct io io[5] = { 0 };

	blk_close(c->b);
	assert_int_equal(open_backend(c, false, false, 4), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(submit(c, &io[i], BLK_READ, (uint64_t)i * BS, BS), 0);
	assert_int_equal(submit(c, &io[4], BLK_READ, 0, BS), -EAGAIN);
	assert_true(RUN_UNTIL(c->loop, c->completed == 4));
	assert_int_equal(submit(c, &io[4], BLK_READ, 0, BS), 0);
	assert_true(RUN_UNTIL(c->loop, c->completed == 5));
	free_ios(io, 5);
}

/* The file shrank behind our back: a read past its new end is short. */
static void test_short_read(void **state)
{
	struct ctx *c = ctx(state);
	static uint8_t a[BS], b[BS];
	struct io io = { .c = c };

	assert_int_equal(ftruncate(c->fd, FILE_SIZE - BS), 0);
	/* Two buffers: the threads engine continues after the first, then
	 * meets the end of the file. */
	io.iov[0] = (struct iovec){ a, sizeof(a) };
	io.iov[1] = (struct iovec){ b, sizeof(b) };
	io.req = (struct blk_req){ .op = BLK_READ, .offset = FILE_SIZE - 2 * BS, .iov = io.iov,
				   .iovcnt = 2, .done = io_done, .opaque = &io };
	assert_int_equal(blk_submit(c->b, &io.req), 0);
	assert_true(RUN_UNTIL(c->loop, atomic_load(&io.done)));
	assert_int_equal(io.ret, -EIO);
}

/* O_DIRECT: aligned I/O works; a misaligned buffer fails in done(), not in submit. */
/* The kernel's own answer to a misaligned O_DIRECT read into @buf. */
static int misaligned_direct_read(struct ctx *c, uint8_t *buf)
{
	int fd = open(c->path, O_RDONLY | O_DIRECT);
	ssize_t n;

	assert_true(fd >= 0);
	n = pread(fd, buf, BS, 0);
	close(fd);
	return n < 0 ? -errno : 0;
}

static void test_direct(void **state)
{
	struct ctx *c = ctx(state);
	struct io io = { 0 }, bad = { 0 };

	blk_close(c->b);
	if (open_backend(c, false, true, 0) < 0) {
		assert_int_equal(open_backend(c, false, false, 0), 0);
		skip();   /* the filesystem has no O_DIRECT */
	}
	prep_buf(&io, BS, 5);
	assert_int_equal(sync_io(c, &io, BLK_WRITE, 0, BS), 0);
	assert_int_equal(sync_io(c, &bad, BLK_READ, 0, BS), 0);
	assert_memory_equal(bad.buf, io.buf, BS);
	bad.buf[0] ^= 1;
	bad.iov[0].iov_base = bad.buf + 1;
	bad.done = false;
	bad.req.iov = bad.iov;
	assert_int_equal(blk_submit(c->b, &bad.req), 0);
	assert_true(RUN_UNTIL(c->loop, atomic_load(&bad.done)));
	/* What the kernel says, delivered as a result (tmpfs takes O_DIRECT
	 * without enforcing alignment). */
	assert_int_equal(bad.ret, misaligned_direct_read(c, bad.buf + 1));
	free(io.buf);
	free(bad.buf);
}

struct drain_args { struct ctx *c; unsigned left; };

static void drain_in_loop(void *opaque)
{
	struct drain_args *a = opaque;

	blk_drain(a->c->b);
	a->left = blk_in_flight(a->c->b);
}

static void test_drain(void **state)
{
	struct ctx *c = ctx(state);
	struct io io[NREQ] = { 0 };
	struct drain_args a = { .c = c, .left = 99 };

	/* From the loop's thread: every done() has run when it returns. */
	for (int i = 0; i < NREQ; i++)
		assert_int_equal(submit(c, &io[i], BLK_WRITE, (uint64_t)i * BS, BS), 0);
	assert_int_equal(event_loop_call(c->loop, drain_in_loop, &a), 0);
	assert_true(RUN_UNTIL(c->loop, a.left == 0));
	assert_int_equal(c->completed, NREQ);

	/* From another thread, nobody running the loop: the I/O is over, the
	 * done()s wait for the loop. */
	for (int i = 0; i < NREQ; i++)
		assert_int_equal(submit(c, &io[i], BLK_READ, (uint64_t)i * BS, BS), 0);
	blk_drain(c->b);
	assert_int_equal(c->completed, NREQ);
	assert_int_equal(blk_in_flight(c->b), NREQ);
	assert_true(RUN_UNTIL(c->loop, c->completed == 2 * NREQ));
	for (int i = 0; i < NREQ; i++)
		assert_true(io[i].in_loop);
	free_ios(io, NREQ);
}

/* Reopen the backend on a new iothread's loop (the test's own loop kept in
 * *@own), and back. */
static struct iothread *move_to_iothread(struct ctx *c, struct event_loop **own)
{
	struct iothread *it;

	blk_close(c->b);
	assert_int_equal(iothread_new("blk-io", &it), 0);
	*own = c->loop;
	c->loop = iothread_loop(it);
	assert_int_equal(open_backend(c, false, false, 0), 0);
	return it;
}

static void back_from_iothread(struct ctx *c, struct iothread *it, struct event_loop *own)
{
	blk_close(c->b);
	iothread_free(it);
	c->loop = own;
	assert_int_equal(open_backend(c, false, false, 0), 0);
}

/* The loop runs in an iothread; we submit and drain from here. */
static void test_iothread(void **state)
{
	struct ctx *c = ctx(state);
	struct io io[NREQ] = { 0 };
	struct event_loop *own;
	struct iothread *it = move_to_iothread(c, &own);

	for (int i = 0; i < NREQ; i++)
		assert_int_equal(submit(c, &io[i], BLK_WRITE, (uint64_t)i * BS, BS), 0);
	blk_drain(c->b);
	assert_true(WAIT_UNTIL(c->completed == NREQ));
	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(io[i].ret, 0);
		assert_true(io[i].in_loop);
		assert_false(pthread_equal(io[i].thread, pthread_self()));
	}
	/* Close with requests in flight: their done()s run (in the iothread) first. */
	for (int i = 0; i < NREQ; i++)
		assert_int_equal(submit(c, &io[i], BLK_READ, (uint64_t)i * BS, BS), 0);
	blk_close(c->b);
	c->b = NULL;
	assert_int_equal(c->completed, 2 * NREQ);
	for (int i = 0; i < NREQ; i++)
		assert_true(io[i].in_loop);
	back_from_iothread(c, it, own);
	free_ios(io, NREQ);
}

static void test_close_in_flight(void **state)
{
	struct ctx *c = ctx(state);
	struct io io[NREQ] = { 0 };

	for (int i = 0; i < NREQ; i++)
		assert_int_equal(submit(c, &io[i], i % 2 ? BLK_WRITE : BLK_READ,
					(uint64_t)i * BS, BS), 0);
	blk_close(c->b);
	assert_int_equal(c->completed, NREQ);
	for (int i = 0; i < NREQ; i++)
		assert_int_equal(io[i].ret, 0);
	assert_int_equal(open_backend(c, false, false, 0), 0);
	free_ios(io, NREQ);
}

/* done() may submit the next request: a chain of 32 reads. */
struct chain { struct ctx *c; struct io io; int left; };

static void chain_done(struct blk_req *req, int ret)
{
	struct chain *ch = req->opaque;

	assert_int_equal(ret, 0);
	if (--ch->left > 0)
		assert_int_equal(blk_submit(ch->c->b, req), 0);
}

static void test_resubmit_from_done(void **state)
{
	struct ctx *c = ctx(state);
	static uint8_t buf[512];
	struct chain ch = { .c = c, .left = 32 };

	ch.io.iov[0] = (struct iovec){ buf, sizeof(buf) };
	ch.io.req = (struct blk_req){ .op = BLK_READ, .iov = ch.io.iov, .iovcnt = 1,
				      .done = chain_done, .opaque = &ch };
	assert_int_equal(blk_submit(c->b, &ch.io.req), 0);
	assert_true(RUN_UNTIL(c->loop, ch.left == 0));
}

static void test_open_errors(void **state)
{
	struct ctx *c = ctx(state);
	struct blk_backend *b = (void *)1;
	struct blk_opts o = { .aio = c->aio };

	assert_int_equal(blk_open("/nonexistent/kickvm.img", &o, c->loop, &b), -ENOENT);
	assert_null(b);
	assert_int_equal(blk_open("/dev/null", &o, c->loop, &b), -EINVAL);
	o.queue_depth = 1u << 20;
	assert_int_equal(blk_open(c->path, &o, c->loop, &b), -EINVAL);
	blk_close(NULL);
}

/* ---- inline I/O (aio=auto, buffered) -------------------------------------- */

static struct blk_stats stats(struct ctx *c)
{
	struct blk_stats st;

	blk_get_stats(c->b, &st);
	return st;
}

/* Is the file's page at @off in the page cache? */
static bool resident(struct ctx *c, uint64_t off)
{
	unsigned char vec = 0;
	void *p = mmap(NULL, BS, PROT_READ, MAP_SHARED, c->fd, (off_t)off);

	assert_true(p != MAP_FAILED);
	assert_int_equal(mincore(p, BS, &vec), 0);
	munmap(p, BS);
	return vec & 1;
}

/* Would the file take a buffered write with RWF_NOWAIT?  Asked with a write
 * of what is already there. */
static bool file_takes_nowait_writes(struct ctx *c)
{
	uint8_t buf[BS];
	struct iovec iov = { buf, BS };

	assert_int_equal(pread(c->fd, buf, BS, 0), BS);
	return pwritev2(c->fd, &iov, 1, 0, RWF_NOWAIT) == BS || errno != EOPNOTSUPP;
}

/* Would the file take a read with RWF_NOWAIT? */
static bool file_takes_nowait_reads(struct ctx *c)
{
	uint8_t buf[BS];
	struct iovec iov = { buf, BS };

	return preadv2(c->fd, &iov, 1, 0, RWF_NOWAIT) >= 0 || errno != EOPNOTSUPP;
}

/* Cached reads and small writes are served inline, the data lands on the
 * file, done() still runs later in the loop; a read of pages not in the
 * cache goes to the engine. */
static void test_inline_served(void **state)
{
	struct ctx *c = ctx(state);
	struct io w[NREQ] = { 0 }, r[NREQ] = { 0 }, cold = { 0 }, flush = { 0 };
	uint8_t *check = malloc(BS);

	assert_true(blk_inline_io(c->b));
	for (int i = 0; i < NREQ; i++) {
		prep_buf(&w[i], BS, 100u + (unsigned)i);
		assert_int_equal(submit(c, &w[i], BLK_WRITE, (uint64_t)i * 3 * BS, BS), 0);
		assert_false(atomic_load(&w[i].done));    /* delivered later, not inline */
	}
	assert_true(RUN_UNTIL(c->loop, c->completed == NREQ));
	assert_int_equal(stats(c).inline_ios, NREQ);   /* 4 KiB: inline either way */
	assert_int_equal(stats(c).engine_ios, 0);
	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(w[i].ret, 0);
		assert_true(w[i].in_loop);
		assert_int_equal(pread(c->fd, check, BS, (off_t)w[i].req.offset), BS);
		assert_memory_equal(check, w[i].buf, BS);
	}
	for (int i = 0; i < NREQ; i++)
		assert_int_equal(submit(c, &r[i], BLK_READ, w[i].req.offset, BS), 0);
	assert_true(RUN_UNTIL(c->loop, c->completed == 2 * NREQ));
	if (file_takes_nowait_reads(c)) {
		assert_int_equal(stats(c).inline_ios, 2 * NREQ);  /* just written: cached */
	} else {
		/* tmpfs before Linux 6.6: reads go to the engine. */
		print_message("the file refuses RWF_NOWAIT reads: reads through the engine\n");
		assert_int_equal(stats(c).engine_ios, NREQ);
	}
	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(r[i].ret, 0);
		assert_memory_equal(r[i].buf, w[i].buf, BS);
	}

	/* Out of the page cache: RWF_NOWAIT refuses, the engine reads it. */
	assert_int_equal(sync_io(c, &flush, BLK_FLUSH, 0, 0), 0);
	assert_int_equal(posix_fadvise(c->fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	if (resident(c, w[5].req.offset)) {
		print_message("the page cache kept the file: cold read not checked\n");
	} else {
		uint64_t engine = stats(c).engine_ios;

		assert_int_equal(sync_io(c, &cold, BLK_READ, w[5].req.offset, BS), 0);
		assert_memory_equal(cold.buf, w[5].buf, BS);
		assert_int_equal(stats(c).engine_ios, engine + 1);
	}
	free(check);
	free(cold.buf);
	free_ios(w, NREQ);
	free_ios(r, NREQ);
}

/* Run the loop for @ms without expecting anything. */
static void run_for(struct event_loop *loop, unsigned ms)
{
	uint64_t end = clock_ns() + ms * 1000000ull;

	while (clock_ns() < end)
		assert_true(event_loop_run_once(loop, 1) >= 0);
}

/* sync_ok: what is served inline is finished by blk_submit's return value
 * (1), done() never called; what is not completes as usual. */
static void test_sync_ok(void **state)
{
	struct ctx *c = ctx(state);
	struct io w = { 0 }, r = { 0 };
	uint8_t check[BS];
	int ret;

	prep_buf(&w, BS, 77);
	w.c = c;
	w.iov[0] = (struct iovec){ w.buf, BS };
	w.req = (struct blk_req){ .op = BLK_WRITE, .offset = 9 * BS, .iov = w.iov, .iovcnt = 1,
				  .done = io_done, .opaque = &w, .sync_ok = true };
	in_submit = true;
	ret = blk_submit(c->b, &w.req);
	in_submit = false;
	if (c->aio == BLK_AIO_AUTO) {
		assert_int_equal(ret, 1);
		assert_int_equal(blk_in_flight(c->b), 0);
		assert_int_equal(stats(c).inline_ios, 1);
		run_for(c->loop, 20);
		assert_false(atomic_load(&w.done));   /* and never will be */
	} else {
		assert_int_equal(ret, 0);
		assert_true(RUN_UNTIL(c->loop, atomic_load(&w.done)));
		assert_int_equal(w.ret, 0);
	}
	assert_int_equal(pread(c->fd, check, BS, 9 * BS), BS);
	assert_memory_equal(check, w.buf, BS);
	/* Without sync_ok the same inline read still goes through done(). */
	assert_int_equal(sync_io(c, &r, BLK_READ, 9 * BS, BS), 0);
	assert_memory_equal(r.buf, w.buf, BS);
	free(w.buf);
	free(r.buf);
}

/* Above BLK_INLINE_WRITE_MAX a write blocks nobody: where the file refuses
 * RWF_NOWAIT writes (ext4) it goes to the engine. */
static void test_inline_large_write(void **state)
{
	struct ctx *c = ctx(state);
	struct io big = { 0 };
	uint8_t *check = malloc(2 * BLK_INLINE_WRITE_MAX);
	bool nowait = file_takes_nowait_writes(c);
	struct blk_stats before = stats(c);

	prep_buf(&big, 2 * BLK_INLINE_WRITE_MAX, 7);
	assert_int_equal(sync_io(c, &big, BLK_WRITE, BS, 2 * BLK_INLINE_WRITE_MAX), 0);
	assert_int_equal(pread(c->fd, check, 2 * BLK_INLINE_WRITE_MAX, BS),
			 2 * BLK_INLINE_WRITE_MAX);
	assert_memory_equal(check, big.buf, 2 * BLK_INLINE_WRITE_MAX);
	if (nowait) {
		print_message("the file takes RWF_NOWAIT writes: the large write may be inline\n");
		assert_int_equal(stats(c).inline_ios + stats(c).engine_ios,
				 before.inline_ios + before.engine_ios + 1);
	} else {
		assert_int_equal(stats(c).engine_ios, before.engine_ios + 1);
		assert_int_equal(stats(c).inline_ios, before.inline_ios);
	}
	free(check);
	free(big.buf);
}

/* Only aio=auto on a buffered file goes inline: O_DIRECT and an explicit
 * engine always use the engine. */
static void test_inline_only_auto_buffered(void **state)
{
	struct ctx *c = ctx(state);
	struct io io = { 0 };

	if (c->aio == BLK_AIO_AUTO) {
		blk_close(c->b);
		if (open_backend(c, false, true, 0) < 0) {
			assert_int_equal(open_backend(c, false, false, 0), 0);
			print_message("no O_DIRECT here: skipped\n");
			skip();
		}
	}
	assert_false(blk_inline_io(c->b));
	assert_int_equal(sync_io(c, &io, BLK_WRITE, 0, BS), 0);
	assert_int_equal(sync_io(c, &io, BLK_READ, 0, BS), 0);
	assert_int_equal(stats(c).inline_ios, 0);
	assert_int_equal(stats(c).engine_ios, 2);
	free(io.buf);
}

/* A loop that busy-polls finds inline completions without an eventfd; one
 * submitted from another thread must wake it.  Both in an iothread. */
static void test_inline_wakes_iothread(void **state)
{
	struct ctx *c = ctx(state);
	struct io io[NREQ] = { 0 };
	struct event_loop *own;
	struct iothread *it = move_to_iothread(c, &own);

	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(submit(c, &io[i], BLK_WRITE, (uint64_t)i * BS, BS), 0);
		/* One at a time, so that the loop is asleep when most come. */
		assert_true(WAIT_UNTIL(c->completed == i + 1));
		assert_true(io[i].in_loop);
	}
	assert_int_equal(stats(c).inline_ios, NREQ);
	back_from_iothread(c, it, own);
	free_ios(io, NREQ);
}

/* ---- batching (blk_plug) ----------------------------------------------------- */


/* Plugged submissions wait for the last unplug (io_uring; a thread pool
 * starts each at once), then all complete with their data. */
static void test_plug(void **state)
{
	struct ctx *c = ctx(state);
	struct io w[8] = { 0 }, r[8] = { 0 };

	for (int i = 0; i < 8; i++) {
		prep_buf(&w[i], BS, 40u + (unsigned)i);
		assert_int_equal(sync_io(c, &w[i], BLK_WRITE, (uint64_t)i * 5 * BS, BS), 0);
	}
	c->completed = 0;
	blk_plug(c->b);
	blk_plug(c->b);
	for (int i = 0; i < 8; i++)
		assert_int_equal(submit(c, &r[i], BLK_READ, w[i].req.offset, BS), 0);
	blk_unplug(c->b);                   /* still plugged once */
	run_for(c->loop, 30);
	if (c->aio == BLK_AIO_IO_URING)
		assert_int_equal(c->completed, 0);
	blk_unplug(c->b);
	assert_true(RUN_UNTIL(c->loop, c->completed == 8));
	for (int i = 0; i < 8; i++) {
		assert_int_equal(r[i].ret, 0);
		assert_true(r[i].in_loop);
		assert_memory_equal(r[i].buf, w[i].buf, BS);
	}
	blk_unplug(c->b);                   /* unbalanced: ignored */
	free_ios(w, 8);
	free_ios(r, 8);
}

/* A drain never waits for requests held back by a plug: it sends them. */
static void test_drain_plugged(void **state)
{
	struct ctx *c = ctx(state);
	struct io io[8] = { 0 };

	blk_plug(c->b);
	for (int i = 0; i < 8; i++)
		assert_int_equal(submit(c, &io[i], BLK_READ, (uint64_t)i * BS, BS), 0);
	blk_drain(c->b);    /* not the loop's thread: waits for the I/O, sends the batch */
	blk_unplug(c->b);
	assert_true(RUN_UNTIL(c->loop, c->completed == 8));
	for (int i = 0; i < 8; i++)
		assert_int_equal(io[i].ret, 0);
	free_ios(io, 8);
}

static int submit_refused(struct ctx *c)
{
	struct io io[4] = { 0 };

	c->completed = 0;
	blk_plug(c->b);
	for (int i = 0; i < 4; i++)
		if (submit(c, &io[i], BLK_READ, (uint64_t)i * BS, BS) < 0)
			return 2;
	blk_unplug(c->b);
	if (!RUN_UNTIL(c->loop, c->completed == 4))
		return 3;
	for (int i = 0; i < 4; i++)
		if (io[i].ret != -EPERM || !io[i].in_loop)
			return 4;
	/* The ring still works for nobody, but closing must not hang. */
	blk_close(c->b);
	c->b = NULL;
	return 0;
}

/* The kernel refuses the batch (io_uring_enter fails): every request in it
 * fails, delivered in the loop like a completion; nothing hangs. */
static void test_plug_refused(void **state)
{
	in_child_refusing(__NR_io_uring_enter, EPERM, submit_refused, ctx(state));
}

static enum blk_aio uring = BLK_AIO_IO_URING, threads = BLK_AIO_THREADS, automatic = BLK_AIO_AUTO;

#define ONE(t, aio) cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, &aio)
#define ENGINES(t) ONE(t, uring), ONE(t, threads), ONE(t, automatic)

int main(void)
{
	const struct CMUnitTest tests[] = {
		ENGINES(test_engine),
		cmocka_unit_test_prestate_setup_teardown(test_auto, setup, teardown, &threads),
		cmocka_unit_test_prestate_setup_teardown(test_auto_fallback, setup, teardown, &threads),
		ENGINES(test_many_in_flight),
		ENGINES(test_vectors),
		ENGINES(test_discard_write_zeroes),
		cmocka_unit_test_prestate_setup_teardown(test_write_zeroes_fallback, setup_shm,
							 teardown, &uring),
		cmocka_unit_test_prestate_setup_teardown(test_write_zeroes_fallback, setup_shm,
							 teardown, &threads),
		ENGINES(test_refusals),
		ENGINES(test_readonly),
		ENGINES(test_queue_full),
		ENGINES(test_short_read),
		ENGINES(test_direct),
		ENGINES(test_drain),
		ENGINES(test_iothread),
		ENGINES(test_close_in_flight),
		ENGINES(test_resubmit_from_done),
		ENGINES(test_open_errors),
		ONE(test_inline_served, automatic),
		ONE(test_inline_large_write, automatic),
		ONE(test_inline_only_auto_buffered, automatic),
		ONE(test_inline_only_auto_buffered, uring),
		ONE(test_inline_only_auto_buffered, threads),
		ONE(test_inline_wakes_iothread, automatic),
		ENGINES(test_sync_ok),
		ONE(test_plug, uring),
		ONE(test_plug, threads),
		ONE(test_drain_plugged, uring),
		ONE(test_drain_plugged, threads),
		ONE(test_plug_refused, uring),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
