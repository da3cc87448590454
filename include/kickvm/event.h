/*
 * Event loop, event notifiers, timers, deferred calls and iothreads.
 *
 * An event loop belongs to one thread: every handler registered on it runs in
 * that thread and nowhere else.  The main thread runs the "main" loop; each
 * iothread runs a loop of its own.  A device binds its handlers to the loop of
 * the iothread it was given (-object iothread,id=NAME), so its work never runs
 * on a vCPU thread unless it is bound there.
 *
 * All calls return 0 or a negative errno unless documented otherwise.
 */
#ifndef KICKVM_EVENT_H
#define KICKVM_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct event_loop;

/* ---- event notifiers ------------------------------------------------------
 * An eventfd plus the counters that tell how its signals arrived.  KVM writes
 * the eventfd directly (the fast path); the userspace fallback calls
 * event_notifier_signal_fallback() instead.  A consumer calls
 * event_notifier_test_and_clear(), which reads and zeroes the eventfd and adds
 * what it read to @consumed.  Signals that came from KVM are therefore
 *   consumed + pending - fallback_signals.
 */
struct event_notifier {
	int fd;                          /* eventfd, -1 when not initialised */
	struct event_fd *file;           /* what holds @fd open (below); valid
					  * only while @fd >= 0 */
	_Atomic uint64_t consumed;       /* total read by test_and_clear */
	_Atomic uint64_t fallback_signals;
};

/*
 * The eventfd of a notifier, reference counted.  The notifier holds one
 * reference; whoever may still signal the eventfd after its owner is done
 * with it takes another: a flat view that names the notifier (memory.h) is
 * one, as a vCPU that found the doorbell in an old view may signal it after
 * the commit that removed it.  event_notifier_cleanup() drops the
 * notifier's reference; the fd is closed when the last one goes, so such a
 * late signal reaches the old eventfd, never a closed fd or another file
 * that reused its number.
 */
struct event_fd;
/* A new reference on @e's eventfd; NULL when @e has none. */
struct event_fd *event_notifier_ref_fd(struct event_notifier *e);
void event_fd_unref(struct event_fd *f);
/* event_notifier_signal_fallback() that writes through @f (a reference
 * taken on @e's eventfd, maybe since replaced), or through @e if NULL. */
int event_notifier_signal_fallback_via(struct event_notifier *e, struct event_fd *f);

/* Create the eventfd (non-blocking, close-on-exec); @active sets it once. */
int event_notifier_init(struct event_notifier *e, bool active);
/* Drop the notifier's reference on its eventfd (closed unless a flat view
 * still holds it, see above); safe on a notifier never initialised (fd -1). */
void event_notifier_cleanup(struct event_notifier *e);
/* Add 1 to the eventfd counter, as KVM does on a matching write. */
int event_notifier_set(struct event_notifier *e);
/* event_notifier_set() and count it as a userspace-fallback signal. */
int event_notifier_signal_fallback(struct event_notifier *e);
/* Read and zero the counter; returns how many signals it held (0 if none). */
uint64_t event_notifier_test_and_clear(struct event_notifier *e);
/* Current counter value without consuming it (from /proc/self/fdinfo); 0 on
 * a sandboxed thread, which may not open files. */
uint64_t event_notifier_pending(const struct event_notifier *e);
/* consumed + pending: every signal the notifier ever received. */
uint64_t event_notifier_total(const struct event_notifier *e);

/* ---- event loops ---------------------------------------------------------- */
typedef void event_fn(void *opaque);
typedef void notifier_fn(struct event_notifier *e, void *opaque);

/* Create a loop; @name shows in logs and `info iothreads`. */
struct event_loop *event_loop_new(const char *name);
/* Free a loop that is not running. Handlers still registered are dropped. */
void event_loop_free(struct event_loop *loop);
const char *event_loop_name(const struct event_loop *loop);
/* True when called from the thread currently running @loop. */
bool event_loop_in_thread(const struct event_loop *loop);

/*
 * Register (or, with both handlers NULL, remove) handlers for @fd.
 * May be called from any thread.  From another thread than the loop's, the
 * change is made in the loop's thread and the call waits for it, so that once
 * it returns an old handler is not running and will not run again.
 */
int event_loop_set_fd_handler(struct event_loop *loop, int fd,
			      event_fn *on_read, event_fn *on_write, void *opaque);

/*
 * Run @handler in the loop's thread whenever @e is signalled; NULL removes.
 * The loop does not clear the notifier: the handler calls
 * event_notifier_test_and_clear() (so it sees how many signals it consumed).
 * Same threading rule as event_loop_set_fd_handler().
 */
int event_loop_set_notifier(struct event_loop *loop, struct event_notifier *e,
			    notifier_fn *handler, void *opaque);

/* Run @fn(@opaque) once, soon, in the loop's thread. Any thread. */
int event_loop_call(struct event_loop *loop, event_fn *fn, void *opaque);
/* Like event_loop_call() but wait until it has run (runs inline if already
 * in the loop's thread). */
int event_loop_call_sync(struct event_loop *loop, event_fn *fn, void *opaque);

/* Dispatch what is ready, waiting at most @timeout_ms (-1 forever).
 * Returns the number of handlers run, or a negative errno. */
int event_loop_run_once(struct event_loop *loop, int timeout_ms);
/* Run until event_loop_stop(); returns 0. */
int event_loop_run(struct event_loop *loop);
/* Make event_loop_run() return soon. Any thread. */
void event_loop_stop(struct event_loop *loop);

/* ---- polling ---------------------------------------------------------------
 * Waking a sleeping thread costs more than a request (tens of microseconds
 * on a nested host).  A loop with a poll window spins for up to that long
 * before it sleeps, calling every poll function; one that returns true (work
 * is there: a virtqueue's avail index moved, an io_uring completion is ready)
 * gets its @ready called at once, without any eventfd round trip.  The
 * eventfds stay armed, so sleeping loses nothing.  This is QEMU's iothread
 * polling (poll-max-ns); iothreads default to IOTHREAD_POLL_NS, the main loop
 * to none.
 */
#define IOTHREAD_POLL_NS 32768

typedef bool poll_fn(void *opaque);

struct event_poller {
	poll_fn *poll;                 /* is there work? (cheap, no syscall) */
	event_fn *ready;               /* do it */
	/* Optional.  @begin runs when the loop starts spinning, @end when it
	 * stops (before it sleeps, or goes on to what it found).  While it
	 * spins, the wake-ups that spinning makes needless can be switched
	 * off (a virtqueue asks the driver not to ring its doorbell) and
	 * @end switches them on again, returning true if work came in
	 * meanwhile (then @ready runs).  @end may run without @begin (a
	 * poller added while the loop spins) and must cope. */
	event_fn *begin;
	poll_fn *end;
};

/* Add (or, with @p NULL, remove) the poller identified by @opaque; @p is
 * copied.  Same threading rule as event_loop_set_fd_handler(). */
int event_loop_set_poll(struct event_loop *loop, const struct event_poller *p, void *opaque);
/* 0 switches polling off. */
void event_loop_set_poll_ns(struct event_loop *loop, uint64_t ns);
uint64_t event_loop_poll_ns(const struct event_loop *loop);

/* ---- timers (monotonic clock, nanoseconds) -------------------------------- */
struct timer;
uint64_t clock_ns(void); /* CLOCK_MONOTONIC */
struct timer *timer_new(struct event_loop *loop, event_fn *cb, void *opaque);
/* Arm to fire once at absolute time @deadline_ns (re-arming replaces). */
void timer_mod(struct timer *t, uint64_t deadline_ns);
void timer_del(struct timer *t);
/* Delete and free; @t may be NULL. Call from the loop's thread or when the
 * loop is not running. */
void timer_free(struct timer *t);

/* ---- iothreads -------------------------------------------------------------
 * A named thread running its own event loop. */
struct iothread;
/* Create and start; @name must be unique per machine (checked by caller). */
int iothread_new(const char *name, struct iothread **out);
/* Stop the loop, join the thread, free. NULL is fine. */
void iothread_free(struct iothread *it);
struct event_loop *iothread_loop(struct iothread *it);
const char *iothread_name(const struct iothread *it);

#endif
