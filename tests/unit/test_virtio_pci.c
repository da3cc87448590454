/*
 * The virtio modern PCI transport without KVM: a fake driver in this file
 * finds the capabilities, negotiates, sets up queues in guest memory and
 * rings doorbells through the address spaces, against a dummy device.
 *
 * Without a KVM listener the memory layer serves ioeventfds on its
 * userspace fallback path: a doorbell write signals the queue's eventfd and
 * the handler runs in the device's loop, exactly as with KVM.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "kickvm/event.h"
#include "kickvm/guest_mem.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "kickvm/virtio_devices.h"
#include "kickvm/virtio_pci.h"
#include "gate.h"
#include "pci_world.h"

#define NQ          2
#define QMAX        256
#define QSIZE       16
#define BAR4_ADDR   0xc0000000ull
#define BAR1_ADDR   0xc0010000ull
#define DEVFN       (1 << 3)
#define RING(q)     (0x10000ull + (q) * 0x4000)   /* desc, +0x1000 avail, +0x2000 used */
#define BUF         0x40000ull

/* ---- the dummy device ---------------------------------------------------------------- */

struct dummy {
	struct virtq_elem elem;
	_Atomic unsigned notifies[NQ], resets, starts;
	_Atomic bool on_writer_thread;     /* last notify ran on the test thread */
	pthread_t writer;
	char log[64];                       /* 'n' notify, 'r' reset, in order */
	_Atomic unsigned nlog;
	uint8_t config[8];
	struct gate *reset_gate;            /* a reset waits there: a slow drain */
};

static void note(struct dummy *d, char c)
{
	unsigned n = atomic_fetch_add(&d->nlog, 1);

	if (n < sizeof(d->log) - 1)
		d->log[n] = c;
}

static void dummy_notify(struct virtio_dev *vdev, unsigned q)
{
	struct dummy *d = vdev->opaque;
	bool pushed = false;

	atomic_store(&d->on_writer_thread, pthread_equal(pthread_self(), d->writer));
	atomic_fetch_add(&d->notifies[q], 1);
	note(d, 'n');
	while (virtio_queue_pop(vdev, q, &d->elem) == 1) {
		virtio_queue_push(vdev, q, d->elem.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_queue_notify_driver(vdev, q);
}

static void dummy_reset(struct virtio_dev *vdev)
{
	struct dummy *d = vdev->opaque;

	atomic_fetch_add(&d->resets, 1);
	note(d, 'r');
	if (d->reset_gate)
		gate_pass(d->reset_gate);
}

static void dummy_start(struct virtio_dev *vdev)
{
	struct dummy *d = vdev->opaque;

	atomic_fetch_add(&d->starts, 1);
}

static void dummy_read_config(struct virtio_dev *vdev, uint32_t offset, void *buf, uint32_t len)
{
	struct dummy *d = vdev->opaque;

	memcpy(buf, d->config + offset, len);
}

static void dummy_write_config(struct virtio_dev *vdev, uint32_t offset, const void *buf,
			       uint32_t len)
{
	struct dummy *d = vdev->opaque;

	memcpy(d->config + offset, buf, len);
}

static const struct virtio_dev_ops dummy_ops = {
	.name = "virtio-dummy", .device_id = VIRTIO_ID_RNG, .features = 0x3,
	.nr_queues = NQ, .queue_max = QMAX, .config_size = sizeof(((struct dummy *)0)->config),
	.read_config = dummy_read_config, .write_config = dummy_write_config,
	.queue_notify = dummy_notify, .start = dummy_start, .reset = dummy_reset,
};

/* ---- fixture ------------------------------------------------------------------------- */

struct fx {
	struct pci_world pci;
	struct msi_log msis;               /* fed on the iothread */
	struct guest_mem gm;
	struct iothread *it;               /* NULL: the loop runs only when we say */
	struct event_loop *loop;
	struct virtio_dev vdev;
	struct virtio_pci *vp;
	struct dummy dm;
	struct virtio_dev *blk;            /* the blk fixture's device, instead */
	unsigned blk_depth;                /* its request pool; 0: the default */
	char img[32];
	/* what the driver found */
	uint64_t common, isr, device, notify;
	uint32_t mult, nvec;
	uint8_t cfg_cap, msix_cap;
	uint16_t avail_idx[NQ];
};

static int make(void **state, bool ioeventfd, bool iothread)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct virtio_pci_opts opts = { .ioeventfd = ioeventfd, .slot = -1 };

	assert_non_null(f);
	msi_log_init(&f->msis);
	assert_int_equal(pci_world_create(&f->pci, msi_log_hook, &f->msis), 0);
	assert_int_equal(guest_mem_create(&f->gm, 1 << 20, 0xc0000000ull), 0);
	if (iothread) {
		assert_int_equal(iothread_new("vio0", &f->it), 0);
		f->loop = iothread_loop(f->it);
	} else {
		f->loop = event_loop_new("idle");
	}
	f->dm.writer = pthread_self();
	memcpy(f->dm.config, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	virtio_dev_init(&f->vdev, &dummy_ops, &f->dm, "vdummy0", &f->gm, f->loop);
	assert_int_equal(virtio_pci_create(f->pci.bus, &f->vdev, &opts, &f->vp), 0);
	*state = f;
	return 0;
}

static int setup_iothread(void **state) { return make(state, true, true); }
static int setup_idle(void **state) { return make(state, true, false); }
static int setup_off(void **state) { return make(state, false, true); }

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_pci_destroy(f->vp);
	if (f->img[0]) {
		virtio_dev_destroy(f->blk);
		unlink(f->img);
	} else {
		virtio_dev_cleanup(&f->vdev);
	}
	if (f->it)
		iothread_free(f->it);
	else
		event_loop_free(f->loop);
	guest_mem_destroy(&f->gm);
	pci_world_destroy(&f->pci);
	msi_log_cleanup(&f->msis);
	free(f);
	return 0;
}

/* ---- the fake driver ----------------------------------------------------------------- */

static uint32_t cfg_rd(struct fx *f, unsigned off, unsigned len)
{
	uint64_t v = 0;

	address_space_read(f->pci.as_mem, PCI_ECAM_BASE + (DEVFN << 12) + off, &v, len);
	return (uint32_t)v;
}

static void cfg_wr(struct fx *f, unsigned off, uint32_t v, unsigned len)
{
	address_space_write(f->pci.as_mem, PCI_ECAM_BASE + (DEVFN << 12) + off, v, len);
}

static uint64_t rd(struct fx *f, uint64_t addr, unsigned len)
{
	uint64_t v = 0;

	address_space_read(f->pci.as_mem, addr, &v, len);
	return v;
}

static int wr(struct fx *f, uint64_t addr, uint64_t v, unsigned len)
{
	return address_space_write(f->pci.as_mem, addr, v, len);
}

/* Place the BARs, turn on decode and bus mastering, find the structures. */
static void probe(struct fx *f)
{
	uint64_t bars[6] = { 0 };
	uint8_t pos;

	cfg_wr(f, 0x10 + 4 * 4, (uint32_t)BAR4_ADDR, 4);
	cfg_wr(f, 0x10 + 5 * 4, 0, 4);
	cfg_wr(f, 0x10 + 1 * 4, (uint32_t)BAR1_ADDR, 4);
	cfg_wr(f, 0x04, 0x6, 2);
	bars[4] = BAR4_ADDR;
	bars[1] = BAR1_ADDR;
	for (pos = (uint8_t)cfg_rd(f, 0x34, 1); pos; pos = (uint8_t)cfg_rd(f, pos + 1, 1)) {
		uint8_t id = (uint8_t)cfg_rd(f, pos, 1), type = (uint8_t)cfg_rd(f, pos + 3, 1);
		uint64_t at = bars[cfg_rd(f, pos + 4, 1) % 6] + cfg_rd(f, pos + 8, 4);

		if (id == 0x11) {
			f->msix_cap = pos;
			f->nvec = (cfg_rd(f, pos + 2, 2) & 0x7ff) + 1;
			continue;
		}
		assert_int_equal(id, 9);
		switch (type) {
		case 1: f->common = at; break;
		case 2: f->notify = at; f->mult = cfg_rd(f, pos + 16, 4); break;
		case 3: f->isr = at; break;
		case 4: f->device = at; break;
		case 5: f->cfg_cap = pos; break;
		default: fail_msg("unknown cfg_type %u", type);
		}
	}
}

static uint8_t status(struct fx *f)
{
	return (uint8_t)rd(f, f->common + 0x14, 1);
}

static void set_status(struct fx *f, uint8_t s)
{
	wr(f, f->common + 0x14, s, 1);
}

/* Up to FEATURES_OK with VERSION_1 and @features (bits 0-31). */
static void negotiate_with(struct fx *f, uint32_t features)
{
	set_status(f, 0);
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE);
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(f, f->common + 0x08, 0, 4);
	wr(f, f->common + 0x0c, features, 4);
	wr(f, f->common + 0x08, 1, 4);
	wr(f, f->common + 0x0c, 1, 4);   /* VERSION_1 */
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_FEATURES_OK);
	assert_true(status(f) & VIRTIO_STATUS_FEATURES_OK);
}

/* The dummy's own bits. */
static void negotiate(struct fx *f)
{
	negotiate_with(f, 0x3);
}

static void setup_queue_sized(struct fx *f, unsigned q, uint16_t size, uint16_t vector)
{
	uint64_t c = f->common;

	wr(f, c + 0x16, q, 2);
	assert_int_equal(rd(f, c + 0x18, 2), QMAX);
	wr(f, c + 0x18, size, 2);
	wr(f, c + 0x1a, vector, 2);
	wr(f, c + 0x20, RING(q), 4);
	wr(f, c + 0x24, 0, 4);
	wr(f, c + 0x28, RING(q) + 0x1000, 8);
	wr(f, c + 0x30, RING(q) + 0x2000, 8);
	wr(f, c + 0x1c, 1, 2);
	assert_int_equal(rd(f, c + 0x1c, 2), 1);
}

static void setup_queue(struct fx *f, unsigned q, uint16_t vector)
{
	setup_queue_sized(f, q, QSIZE, vector);
}

static void program_msix(struct fx *f)
{
	for (unsigned v = 0; v < f->nvec; v++) {
		wr(f, BAR1_ADDR + v * 16, 0xfee00000, 8);
		wr(f, BAR1_ADDR + v * 16 + 8, 0x40 + v, 8);   /* data, unmasked */
	}
	cfg_wr(f, f->msix_cap + 3, 0x80, 1);
}

/* Negotiate and set up every queue; @vectors: queue q gets vector q + 1. */
static void set_up_queues(struct fx *f, bool vectors)
{
	negotiate(f);
	for (unsigned q = 0; q < NQ; q++)
		setup_queue(f, q, vectors ? (uint16_t)(q + 1) : VIRTIO_NO_VECTOR);
}

/* The whole bring-up; @vectors: queue q gets vector q + 1, config 0. */
static void bring_up(struct fx *f, bool vectors)
{
	probe(f);
	set_up_queues(f, vectors);
	wr(f, f->common + 0x10, vectors ? 0 : VIRTIO_NO_VECTOR, 2);
	program_msix(f);
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	assert_true(status(f) & VIRTIO_STATUS_DRIVER_OK);
}

/* One writable buffer on queue @q, made available (no doorbell). */
static void add_buffer(struct fx *f, unsigned q)
{
	uint8_t desc[16] = { 0 };
	uint16_t slot = f->avail_idx[q] % QSIZE, head = slot;
	uint64_t addr = BUF + q * 0x1000;
	uint32_t len = 64;
	uint16_t flags = 2, idx;

	memcpy(desc, &addr, 8);
	memcpy(desc + 8, &len, 4);
	memcpy(desc + 12, &flags, 2);
	guest_mem_write(&f->gm, RING(q) + head * 16, desc, 16);
	guest_mem_write(&f->gm, RING(q) + 0x1000 + 4 + slot * 2, &head, 2);
	idx = ++f->avail_idx[q];
	/* Published with release, as a driver does, after the entries. */
	__atomic_store_n((uint16_t *)guest_mem_ptr(&f->gm, RING(q) + 0x1000 + 2, 2), idx,
			 __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct fx *f, unsigned q)
{
	return __atomic_load_n((uint16_t *)guest_mem_ptr(&f->gm, RING(q) + 0x2000 + 2, 2),
			       __ATOMIC_ACQUIRE);
}

static int doorbell(struct fx *f, unsigned q)
{
	return wr(f, f->notify + q * f->mult, q, 2);
}

static bool wait_for(_Atomic unsigned *counter, unsigned want)
{
	for (int i = 0; i < 4000; i++) {
		if (atomic_load(counter) >= want)
			return true;
		usleep(500);
	}
	return false;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_layout(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfg_rd(f, 0, 4), 0x10441af4);
	assert_int_equal(cfg_rd(f, 0x08, 4), 0x00ff0001);
	assert_int_equal(cfg_rd(f, 0x2c, 4), 0x00041af4);
	assert_int_equal(cfg_rd(f, 0x06, 2) & 0x10, 0x10);
	cfg_wr(f, 0x20, 0xffffffff, 4);
	assert_int_equal(cfg_rd(f, 0x20, 4), 0xffffc00c);
	cfg_wr(f, 0x14, 0xffffffff, 4);
	assert_int_equal(cfg_rd(f, 0x14, 4), 0xfffff000);
	probe(f);
	assert_true(f->common == BAR4_ADDR);
	assert_true(f->isr == BAR4_ADDR + 0x1000);
	assert_true(f->device == BAR4_ADDR + 0x2000);
	assert_true(f->notify == BAR4_ADDR + 0x3000);
	assert_int_equal(f->mult, 4);
	assert_int_equal(f->nvec, NQ + 1);
	assert_int_equal(cfg_rd(f, f->msix_cap + 4, 4), 0x1);
	assert_int_equal(cfg_rd(f, f->msix_cap + 8, 4), 0x801);
	assert_int_not_equal(f->cfg_cap, 0);
	assert_int_equal(rd(f, f->common + 0x12, 2), NQ);
	/* Device config through its window. */
	assert_int_equal(rd(f, f->device, 4), 0x44332211);
	assert_int_equal(rd(f, f->device + 6, 2), 0x8877);
	assert_true(rd(f, f->device, 8) == 0x8877665544332211ull);
	assert_int_equal(rd(f, f->device + 8, 4), 0);
	wr(f, f->device + 1, 0xab, 1);
	assert_int_equal(f->dm.config[1], 0xab);
	assert_false(virtio_pci_notifiers_active(f->vp));
	assert_ptr_equal(virtio_pci_device(f->vp)->opaque, f->vp);
}

static void test_features(void **state)
{
	struct fx *f = *state;
	uint64_t c;

	probe(f);
	c = f->common;
	wr(f, c, 0, 4);
	assert_int_equal(rd(f, c + 4, 4) & 0x3, 0x3);
	wr(f, c, 1, 4);
	assert_int_equal(rd(f, c + 4, 4) & 1, 1);          /* VERSION_1 */
	wr(f, c, 7, 4);
	assert_int_equal(rd(f, c + 4, 4), 0);
	/* No VERSION_1: refused. */
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(f, c + 8, 0, 4);
	wr(f, c + 12, 0x1, 4);
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_FEATURES_OK);
	assert_false(status(f) & VIRTIO_STATUS_FEATURES_OK);
	/* A bit the device never offered: refused. */
	set_status(f, 0);
	assert_int_equal(status(f), 0);
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(f, c + 8, 1, 4);
	wr(f, c + 12, 0x1 | 0x100, 4);
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_FEATURES_OK);
	assert_false(status(f) & VIRTIO_STATUS_FEATURES_OK);
	/* Reset forgets what was accepted; then the right set is taken. */
	negotiate(f);
	wr(f, c + 8, 1, 4);
	assert_int_equal(rd(f, c + 12, 4), 1);
	assert_true(f->vdev.guest_features == (0x3 | 1ull << 32));
	/* Fixed after FEATURES_OK. */
	wr(f, c + 12, 0, 4);
	assert_true(f->vdev.guest_features == (0x3 | 1ull << 32));
}

/* FEATURES_OK cleared with DRIVER_OK kept: refused, NEEDS_RESET, and the
 * features stay as negotiated.  They used to be rewritable then, under a
 * running device. */
static void test_features_fixed_while_running(void **state)
{
	struct fx *f = *state;
	uint64_t c;

	bring_up(f, true);
	c = f->common;
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
	assert_true(status(f) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	wr(f, c + 0x08, 0, 4);
	wr(f, c + 0x0c, 0x1, 4);
	wr(f, c + 0x08, 1, 4);
	wr(f, c + 0x0c, 0, 4);
	assert_true(f->vdev.guest_features == (0x3 | 1ull << 32));
	assert_false(virtio_pci_notifiers_active(f->vp));
	/* A reset reopens them. */
	negotiate(f);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_registers_out_of_range(void **state)
{
	struct fx *f = *state;
	uint64_t c;

	probe(f);
	c = f->common;
	negotiate(f);
	/* A queue that does not exist: size 0, writes go nowhere. */
	wr(f, c + 0x16, NQ + 3, 2);
	assert_int_equal(rd(f, c + 0x16, 2), NQ + 3);
	assert_int_equal(rd(f, c + 0x18, 2), 0);
	wr(f, c + 0x18, 8, 2);
	wr(f, c + 0x1c, 1, 2);
	assert_int_equal(rd(f, c + 0x18, 2), 0);
	assert_int_equal(rd(f, c + 0x1c, 2), 0);
	wr(f, c + 0x16, 0xffff, 2);
	assert_int_equal(rd(f, c + 0x18, 2), 0);
	/* Sizes: powers of two up to the maximum only. */
	wr(f, c + 0x16, 1, 2);
	assert_int_equal(rd(f, c + 0x1e, 2), 1);            /* notify_off = q */
	wr(f, c + 0x18, 100, 2);
	assert_int_equal(rd(f, c + 0x18, 2), QMAX);
	wr(f, c + 0x18, QMAX * 2, 2);
	assert_int_equal(rd(f, c + 0x18, 2), QMAX);
	wr(f, c + 0x18, 0, 2);
	assert_int_equal(rd(f, c + 0x18, 2), QMAX);
	wr(f, c + 0x18, 64, 2);
	assert_int_equal(rd(f, c + 0x18, 2), 64);
	/* Vectors beyond the table read back NO_VECTOR. */
	wr(f, c + 0x1a, NQ, 2);
	assert_int_equal(rd(f, c + 0x1a, 2), NQ);
	wr(f, c + 0x1a, NQ + 1, 2);
	assert_int_equal(rd(f, c + 0x1a, 2), VIRTIO_NO_VECTOR);
	wr(f, c + 0x10, 77, 2);
	assert_int_equal(rd(f, c + 0x10, 2), VIRTIO_NO_VECTOR);
	/* Ring addresses: 64-bit, as two dwords or one qword. */
	wr(f, c + 0x20, 0x1000, 4);
	wr(f, c + 0x24, 0x2, 4);
	assert_true(rd(f, c + 0x20, 8) == 0x200001000ull);
	/* Read-only fields stay. */
	wr(f, c + 0x12, 9, 2);
	assert_int_equal(rd(f, c + 0x12, 2), NQ);
	wr(f, c + 0x1e, 9, 2);
	assert_int_equal(rd(f, c + 0x1e, 2), 1);
	/* Past the structure: zeros. */
	assert_int_equal(rd(f, c + 0x40, 4), 0);
	wr(f, c + 0x100, 1, 4);
	/* A running device takes no new queues. */
	wr(f, c + 0x20, RING(1), 8);
	wr(f, c + 0x28, RING(1) + 0x1000, 8);
	wr(f, c + 0x30, RING(1) + 0x2000, 8);
	set_status(f, status(f) | VIRTIO_STATUS_DRIVER_OK);
	wr(f, c + 0x1c, 1, 2);
	assert_int_equal(rd(f, c + 0x1c, 2), 0);
}

static void test_notifiers_on_iothread(void **state)
{
	struct fx *f = *state;
	struct ioeventfd_list l;
	unsigned resets;

	probe(f);
	set_up_queues(f, true);
	program_msix(f);
	/* Queued before DRIVER_OK, no doorbell: the start kick finds it. */
	add_buffer(f, 0);
	assert_int_equal(ioeventfds_in(f->pci.as_mem).n, 0);
	set_status(f, 0xf);
	assert_true(virtio_pci_notifiers_active(f->vp));
	assert_true(wait_for(&f->dm.notifies[0], 1));
	assert_true(wait_for(&f->dm.notifies[1], 1));
	assert_false(atomic_load(&f->dm.on_writer_thread));
	assert_true(wait_for(&f->msis.n, 1));
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(msi_log_data(&f->msis, 0), 0x41);          /* queue 0's vector 1 */
	assert_int_equal(f->dm.starts, 1);

	/* One len-0 ioeventfd per queue, each at its own doorbell. */
	l = ioeventfds_in(f->pci.as_mem);
	assert_int_equal(l.n, NQ);
	for (unsigned q = 0; q < NQ; q++) {
		assert_true(l.addr[q] == f->notify + q * 4);
		assert_int_equal(l.len[q], 0);
	}
	/* A doorbell is caught (here by the fallback) and served in the loop. */
	add_buffer(f, 1);
	assert_int_equal(doorbell(f, 1), AS_IOEVENTFD);
	assert_true(wait_for(&f->dm.notifies[1], 2));
	assert_false(atomic_load(&f->dm.on_writer_thread));
	assert_true(wait_for(&f->msis.n, 2));
	assert_int_equal(msi_log_data(&f->msis, 1), 0x42);
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(virtio_pci_trapped_notifies(f->vp), 0);
	assert_true(atomic_load(&f->vdev.queues[1].notifies) >= 2);
	assert_int_equal(atomic_load(&f->vdev.queues[1].interrupts), 1);
	/* Any access size rings it. */
	assert_int_equal(wr(f, f->notify, 0, 4), AS_IOEVENTFD);
	assert_true(wait_for(&f->dm.notifies[0], 2));

	/* Reset stops them: nothing registered, the model was reset. */
	resets = f->dm.resets;
	set_status(f, 0);
	assert_false(virtio_pci_notifiers_active(f->vp));
	assert_int_equal(ioeventfds_in(f->pci.as_mem).n, 0);
	assert_int_equal(f->dm.resets, resets + 1);
	assert_int_equal(f->vdev.queues[0].notifier.fd, -1);
	assert_int_equal(rd(f, f->common + 0x18, 2), QMAX);
	/* Doorbells now trap and find nothing to do. */
	assert_int_equal(doorbell(f, 0), AS_OK);
	assert_int_equal(virtio_pci_trapped_notifies(f->vp), 1);
	/* And a second life works the same. */
	bring_up(f, true);
	assert_true(virtio_pci_notifiers_active(f->vp));
	assert_int_equal(ioeventfds_in(f->pci.as_mem).n, NQ);
}

/* With nobody running the loop, the test sees exactly what stop drains. */
static void test_stop_runs_handler_once(void **state)
{
	struct fx *f = *state;

	bring_up(f, true);
	assert_true(virtio_pci_notifiers_active(f->vp));
	/* The start kick is pending in both eventfds, not yet handled. */
	assert_int_equal(f->dm.notifies[0] + f->dm.notifies[1], 0);
	assert_int_equal(f->dm.resets, 1);           /* the driver's first reset */
	f->dm.nlog = 0;
	memset(f->dm.log, 0, sizeof(f->dm.log));
	add_buffer(f, 0);
	assert_int_equal(doorbell(f, 0), AS_IOEVENTFD);
	assert_int_equal(doorbell(f, 0), AS_IOEVENTFD);
	set_status(f, 0);
	/* Each queue's handler ran once (signals coalesce), before the reset. */
	assert_int_equal(f->dm.notifies[0], 1);
	assert_int_equal(f->dm.notifies[1], 1);
	assert_int_equal(f->dm.resets, 2);
	assert_string_equal(f->dm.log, "nnr");
	assert_int_equal(used_idx(f, 0), 1);
	/* The fallback counted the doorbells as its own signals. */
	assert_int_equal(atomic_load(&f->vdev.queues[0].notifier.fallback_signals), 2);
	assert_false(virtio_pci_notifiers_active(f->vp));
	assert_int_equal(event_loop_run_once(f->loop, 0), 0);

	/* Clearing DRIVER_OK (without a reset) stops them too. */
	bring_up(f, true);
	assert_true(virtio_pci_notifiers_active(f->vp));
	set_status(f, status(f) & ~VIRTIO_STATUS_DRIVER_OK);
	assert_false(virtio_pci_notifiers_active(f->vp));
	assert_int_equal(f->dm.notifies[0], 2);
	/* Refused, in fact: the device broke (docs/virtio-errors.md). */
	assert_int_equal(status(f) & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET),
			 VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET);
}

static void test_ioeventfd_off(void **state)
{
	struct fx *f = *state;

	bring_up(f, true);
	assert_false(virtio_pci_notifiers_active(f->vp));
	assert_int_equal(ioeventfds_in(f->pci.as_mem).n, 0);
	add_buffer(f, 1);
	assert_int_equal(doorbell(f, 1), AS_OK);
	/* Served before the write returned, on the writing thread. */
	assert_int_equal(f->dm.notifies[1], 1);
	assert_true(atomic_load(&f->dm.on_writer_thread));
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(f->msis.n, 1);
	assert_int_equal(msi_log_data(&f->msis, 0), 0x42);
	assert_int_equal(virtio_pci_trapped_notifies(f->vp), 1);
	assert_int_equal(atomic_load(&f->vdev.queues[1].notifies), 1);
	/* A doorbell beyond the queues is trapped and ignored. */
	assert_int_equal(doorbell(f, NQ + 1), AS_OK);
	assert_int_equal(virtio_pci_trapped_notifies(f->vp), 2);
}

static void test_bus_master_stops_notifiers(void **state)
{
	struct fx *f = *state;

	bring_up(f, true);
	assert_true(virtio_pci_notifiers_active(f->vp));
	assert_true(wait_for(&f->dm.notifies[0], 1));
	cfg_wr(f, 0x04, 0x2, 2);                         /* master off */
	assert_false(virtio_pci_notifiers_active(f->vp));
	assert_int_equal(ioeventfds_in(f->pci.as_mem).n, 0);
	/* The device may not touch the rings now: a doorbell is dropped. */
	add_buffer(f, 0);
	assert_int_equal(doorbell(f, 0), AS_OK);
	assert_int_equal(used_idx(f, 0), 0);
	/* Master back on: notifiers again, and the kick finds the buffer. */
	cfg_wr(f, 0x04, 0x6, 2);
	assert_true(virtio_pci_notifiers_active(f->vp));
	assert_true(wait_for(&f->msis.n, 1));
	assert_int_equal(used_idx(f, 0), 1);
	/* A PCI reset takes everything down. */
	pci_bus_reset(f->pci.bus);
	assert_false(virtio_pci_notifiers_active(f->vp));
	assert_int_equal(status(f), 0xff);               /* decode is off now */
	assert_int_equal(f->vdev.status, 0);
	assert_int_equal(f->dm.resets, 2);           /* bring-up's, and this one */
}

static void test_needs_reset_and_isr(void **state)
{
	struct fx *f = *state;

	/* No vectors: the ISR is all the driver gets. */
	bring_up(f, false);
	assert_true(wait_for(&f->dm.notifies[0], 1));
	add_buffer(f, 0);
	doorbell(f, 0);
	for (int i = 0; i < 4000 && used_idx(f, 0) < 1; i++)
		usleep(500);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(f->msis.n, 0);
	assert_int_equal(rd(f, f->isr, 1), 1);
	assert_int_equal(rd(f, f->isr, 1), 0);

	/* Broken, with the config vector set: NEEDS_RESET and an interrupt. */
	wr(f, f->common + 0x10, 0, 2);
	pthread_mutex_lock(&f->vdev.lock);
	virtio_dev_set_broken(&f->vdev, "test says so");
	pthread_mutex_unlock(&f->vdev.lock);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->msis.n, 1);
	assert_int_equal(msi_log_data(&f->msis, 0), 0x40);
	assert_int_equal(rd(f, f->isr, 4), 2);
	assert_int_equal(rd(f, f->isr, 1), 0);
	/* A broken device serves no doorbells. */
	add_buffer(f, 0);
	doorbell(f, 0);
	usleep(20000);
	assert_int_equal(used_idx(f, 0), 1);
	/* Reset clears it. */
	set_status(f, 0);
	assert_int_equal(status(f), 0);
}

static void test_pci_cfg_window(void **state)
{
	struct fx *f = *state;
	uint8_t c;

	probe(f);
	c = f->cfg_cap;
	/* num_queues through the window. */
	cfg_wr(f, c + 4, 4, 1);
	cfg_wr(f, c + 8, 0x12, 4);
	cfg_wr(f, c + 12, 2, 4);
	assert_int_equal(cfg_rd(f, c + 16, 2), NQ);
	/* device_status through the window. */
	cfg_wr(f, c + 8, 0x14, 4);
	cfg_wr(f, c + 12, 1, 4);
	cfg_wr(f, c + 16, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE);
	assert_int_equal(cfg_rd(f, c + 16, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	/* Device config. */
	cfg_wr(f, c + 8, 0x2000, 4);
	cfg_wr(f, c + 12, 4, 4);
	assert_int_equal(cfg_rd(f, c + 16, 4), 0x44332211);
	/* Bad windows do nothing. */
	cfg_wr(f, c + 12, 3, 4);
	cfg_wr(f, c + 16, 0xffffffff, 4);
	cfg_wr(f, c + 4, 1, 1);
	cfg_wr(f, c + 12, 4, 4);
	cfg_wr(f, c + 16, 0, 4);
	assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE);
}

struct bus_bystander {
	struct fx *f;
	struct gate *gate;
	bool done;                           /* under the gate's lock */
	uint32_t bridge_id;
};

/* A vCPU resetting the device through the config access window. */
static void *window_reset(void *opaque)
{
	struct bus_bystander *by = opaque;

	cfg_wr(by->f, by->f->cfg_cap + 16, 0, 1);
	return NULL;
}

/* Another vCPU: the host bridge's ids, through ECAM. */
static void *bridge_reader(void *opaque)
{
	struct bus_bystander *by = opaque;

	by->bridge_id = (uint32_t)rd(by->f, PCI_ECAM_BASE, 4);
	gate_set(by->gate, &by->done);
	return NULL;
}

/*
 * A reset through VIRTIO_PCI_CAP_PCI_CFG waits for the device (virtio-blk
 * drains its requests there): meanwhile another vCPU's config read of
 * another function goes through, the PCI bus is not held (gate.h).
 */
static void test_window_reset_does_not_hold_the_bus(void **state)
{
	struct fx *f = *state;
	struct gate gate;
	struct bus_bystander by = { .f = f, .gate = &gate };
	bool done_during_reset;

	probe(f);
	negotiate(f);
	gate_init(&gate);
	f->dm.reset_gate = &gate;
	cfg_wr(f, f->cfg_cap + 4, 4, 1);
	cfg_wr(f, f->cfg_cap + 8, 0x14, 4);        /* device_status */
	cfg_wr(f, f->cfg_cap + 12, 1, 4);
	done_during_reset = gate_bystander_finishes(&gate, window_reset, bridge_reader, &by,
						    &by.done);
	f->dm.reset_gate = NULL;
	gate_destroy(&gate);

	assert_true(done_during_reset);
	assert_int_equal(by.bridge_id, 0x29c08086);
	assert_int_equal(status(f), 0);
	assert_int_equal(atomic_load(&f->dm.resets), 1 + 1);   /* negotiate()'s, and this */
}

/* Use up every fd number below the limit; returns how many were taken. */
static int exhaust_fds(int *fds, int max)
{
	int n = 0;

	while (n < max && (fds[n] = dup(0)) >= 0)
		n++;
	return n;
}

static void release_fds(int *fds, int n)
{
	while (n--)
		close(fds[n]);
}

static void test_fallback_when_start_fails(void **state)
{
	struct fx *f = *state;
	struct rlimit old, low;
	unsigned long warns;
	static int fds[4096];
	int nfds;

	probe(f);
	set_up_queues(f, true);
	program_msix(f);
	add_buffer(f, 0);
	/* No fd left for the notifiers' eventfds. */
	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	low.rlim_cur = 256;
	setrlimit(RLIMIT_NOFILE, &low);
	nfds = exhaust_fds(fds, 4096);
	warns = log_count(LOG_WARN);
	set_status(f, 0xf);
	release_fds(fds, nfds);
	setrlimit(RLIMIT_NOFILE, &old);
	assert_int_equal(log_count(LOG_WARN), warns + 1);
	assert_false(virtio_pci_notifiers_active(f->vp));
	assert_int_equal(ioeventfds_in(f->pci.as_mem).n, 0);
	/* The start kick was served here, and doorbells are served trapped. */
	assert_int_equal(f->dm.notifies[0], 1);
	assert_int_equal(used_idx(f, 0), 1);
	add_buffer(f, 0);
	assert_int_equal(doorbell(f, 0), AS_OK);
	assert_int_equal(f->dm.notifies[0], 2);
	assert_true(atomic_load(&f->dm.on_writer_thread));
	assert_int_equal(used_idx(f, 0), 2);
	/* Logged once per device, even across resets. */
	set_status(f, 0);
	set_up_queues(f, true);
	setrlimit(RLIMIT_NOFILE, &low);
	nfds = exhaust_fds(fds, 4096);
	set_status(f, 0xf);
	release_fds(fds, nfds);
	setrlimit(RLIMIT_NOFILE, &old);
	assert_int_equal(log_count(LOG_WARN), warns + 1);
	assert_false(virtio_pci_notifiers_active(f->vp));
	/* After a reset with fds to spare, notifiers work again. */
	set_status(f, 0);
	bring_up(f, true);
	assert_true(virtio_pci_notifiers_active(f->vp));
}

/* ---- virtio-blk behind the transport, on a slow disk ------------------------------------ */

/*
 * A disk whose reads wait while the gate is closed: with aio=threads the
 * backend reads with preadv (preadv64 is the symbol with 64-bit off_t) in
 * its workers, and this definition comes before libc's.  Requests stay in
 * flight for as long as a test wants, the loop thread free meanwhile.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t open;
	bool closed;
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false };

ssize_t gated_preadv(int fd, const struct iovec *iov, int cnt, off_t off) __asm__("preadv64");
ssize_t gated_preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	static ssize_t (*real)(int, const struct iovec *, int, off_t);

	if (!real)
		real = (ssize_t (*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT,
										 "preadv64");
	pthread_mutex_lock(&gate.lock);
	while (gate.closed)
		pthread_cond_wait(&gate.open, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
	return real(fd, iov, cnt, off);
}

static void backend_gate_set(bool closed)
{
	pthread_mutex_lock(&gate.lock);
	gate.closed = closed;
	pthread_cond_broadcast(&gate.open);
	pthread_mutex_unlock(&gate.lock);
}

#define BLK_QSIZE     256
#define BLK_IMG       (1u << 20)
#define BLK_HDR(i)    (0x50000ull + 16 * (i))
#define BLK_STATUS(i) (0x51000ull + (i))
#define BLK_TABLE(i)  (0x52000ull + 48 * (i))         /* an indirect table each */
#define BLK_DATA(i)   (0x60000ull + 512 * (uint64_t)(i))

static uint8_t img_byte(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 9));
}

/* virtio-blk on a 1 MiB image, aio=threads, a pool of @depth (0: its
 * default), on an iothread. */
static int make_blk(void **state, unsigned depth)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct virtio_pci_opts opts = { .ioeventfd = true, .slot = -1 };
	struct virtio_blk_opts o = { .blk = { .aio = BLK_AIO_THREADS, .queue_depth = depth } };
	uint8_t *img = malloc(BLK_IMG);
	int fd;

	assert_non_null(f);
	msi_log_init(&f->msis);
	assert_int_equal(pci_world_create(&f->pci, msi_log_hook, &f->msis), 0);
	assert_int_equal(guest_mem_create(&f->gm, 1 << 20, 0xc0000000ull), 0);
	assert_int_equal(iothread_new("vblk0", &f->it), 0);
	f->loop = iothread_loop(f->it);
	snprintf(f->img, sizeof(f->img), "/tmp/kickvm-vpci-XXXXXX");
	fd = mkstemp(f->img);
	assert_true(fd >= 0);
	for (unsigned i = 0; i < BLK_IMG; i++)
		img[i] = img_byte(i);
	assert_int_equal(pwrite(fd, img, BLK_IMG, 0), BLK_IMG);
	close(fd);
	free(img);
	o.file = f->img;
	f->blk_depth = depth;
	assert_int_equal(virtio_blk_create(&f->gm, f->loop, &o, &f->blk), 0);
	assert_int_equal(virtio_pci_create(f->pci.bus, f->blk, &opts, &f->vp), 0);
	*state = f;
	return 0;
}

static int setup_blk(void **state) { return make_blk(state, 0); }
static int setup_blk_depth16(void **state) { return make_blk(state, 16); }

static int teardown_blk(void **state)
{
	backend_gate_set(false);                   /* nothing may wait on it at the end */
	return teardown(state);
}

/* Negotiated (indirect descriptors, no event index), queue 0 of 256 on
 * vector 1, config on vector 0, DRIVER_OK. */
static void blk_bring_up(struct fx *f)
{
	uint32_t offered;

	probe(f);
	wr(f, f->common, 0, 4);
	offered = (uint32_t)rd(f, f->common + 4, 4);
	assert_true(offered & (1u << VIRTIO_F_RING_INDIRECT_DESC));
	negotiate_with(f, offered & ~(1u << VIRTIO_F_RING_EVENT_IDX));
	setup_queue_sized(f, 0, BLK_QSIZE, 1);
	wr(f, f->common + 0x10, 0, 2);
	program_msix(f);
	set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	assert_true(status(f) & VIRTIO_STATUS_DRIVER_OK);
	assert_true(virtio_pci_notifiers_active(f->vp));
}

/* Request @i: read sector @i into BLK_DATA(i), through an indirect table
 * (256 requests in a ring of 256), made available without a doorbell. */
static void blk_add_read(struct fx *f, unsigned i)
{
	struct { uint32_t type, reserved; uint64_t sector; } hdr = { VIRTIO_BLK_T_IN, 0, i };
	struct { uint64_t addr; uint32_t len; uint16_t flags, next; } table[3] = {
		{ BLK_HDR(i), 16, VIRTQ_DESC_F_NEXT, 1 },
		{ BLK_DATA(i), 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2 },
		{ BLK_STATUS(i), 1, VIRTQ_DESC_F_WRITE, 0 },
	}, desc = { BLK_TABLE(i), sizeof(table), VIRTQ_DESC_F_INDIRECT, 0 };
	uint16_t slot = f->avail_idx[0] % BLK_QSIZE, idx;
	uint8_t ff = 0xff;

	guest_mem_write(&f->gm, BLK_HDR(i), &hdr, sizeof(hdr));
	guest_mem_write(&f->gm, BLK_STATUS(i), &ff, 1);
	memset(guest_mem_ptr(&f->gm, BLK_DATA(i), 512), 0xee, 512);
	guest_mem_write(&f->gm, BLK_TABLE(i), table, sizeof(table));
	guest_mem_write(&f->gm, RING(0) + slot * 16, &desc, sizeof(desc));
	guest_mem_write(&f->gm, RING(0) + 0x1000 + 4 + slot * 2, &slot, 2);
	idx = ++f->avail_idx[0];
	__atomic_store_n((uint16_t *)guest_mem_ptr(&f->gm, RING(0) + 0x1000 + 2, 2), idx,
			 __ATOMIC_RELEASE);
}

static uint8_t blk_status(struct fx *f, unsigned i)
{
	return *(uint8_t *)guest_mem_ptr(&f->gm, BLK_STATUS(i), 1);
}

/* Request @i's buffer holds sector @i. */
static void assert_blk_data(struct fx *f, unsigned i)
{
	const uint8_t *p = guest_mem_ptr(&f->gm, BLK_DATA(i), 512);

	for (unsigned b = 0; b < 512; b++)
		assert_int_equal(p[b], img_byte(i * 512ull + b));
}

/* Request @i completed with OK and the sector's data. */
static void assert_blk_read(struct fx *f, unsigned i)
{
	assert_int_equal(blk_status(f, i), VIRTIO_BLK_S_OK);
	assert_blk_data(f, i);
}

/* Chains the device has taken from queue 0. */
static unsigned blk_taken(struct fx *f)
{
	unsigned n;

	pthread_mutex_lock(&f->blk->lock);
	n = f->blk->queues[0].vq.last_avail;
	pthread_mutex_unlock(&f->blk->lock);
	return n;
}

/* The disk held, 256 reads made available and rung for: returns once the
 * device took what its pool holds (that many). */
static unsigned blk_fill_ring(struct fx *f)
{
	unsigned takes = f->blk_depth ? f->blk_depth : BLK_QSIZE;

	backend_gate_set(true);
	blk_bring_up(f);
	for (unsigned i = 0; i < BLK_QSIZE; i++)
		blk_add_read(f, i);
	assert_int_equal(doorbell(f, 0), AS_IOEVENTFD);
	for (int i = 0; i < 4000 && blk_taken(f) < takes; i++)
		usleep(500);
	assert_int_equal(blk_taken(f), takes);
	return takes;
}

static void read_thread_cpu(void *opaque)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	*(uint64_t *)opaque = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time the loop's thread has used, read on that thread. */
static uint64_t loop_cpu_ns(struct fx *f)
{
	uint64_t ns = 0;

	assert_int_equal(event_loop_call_sync(f->loop, read_thread_cpu, &ns), 0);
	return ns;
}

/* Times the queue handler ran (doorbells and polling alike). */
static uint64_t blk_handled(struct fx *f)
{
	return atomic_load(&f->blk->queues[0].notifies);
}

#define STALL_US 200000

/*
 * 256 reads in flight on a disk that does not answer: the device takes what
 * its pool holds, the rest waits in the ring, and the iothread sleeps until
 * a read completes.  It used to spin instead, the poller reporting the
 * chains the pool had no request for as work (tens of thousands of handler
 * runs taking nothing, CPU time = wall time).  The pool holds a full ring by
 * default; with 16 the queue is starved and must be resumed by completions.
 */
static void test_blk_starved_does_not_spin(void **state)
{
	struct fx *f = *state;
	unsigned takes = f->blk_depth ? f->blk_depth : BLK_QSIZE;
	uint64_t handled, cpu;

	assert_int_equal(blk_fill_ring(f), takes);
	/* Its pool is used up either way: a completion resumes the queue. */
	assert_true(atomic_load(&f->blk->queues[0].starved));

	handled = blk_handled(f);
	cpu = loop_cpu_ns(f);
	usleep(STALL_US);
	cpu = loop_cpu_ns(f) - cpu;
	handled = blk_handled(f) - handled;
	print_message("iothread with %u requests taken, %u waiting, disk stalled %u ms: "
		      "%.1f ms CPU, queue handler run %llu times\n", takes, BLK_QSIZE - takes,
		      STALL_US / 1000, cpu / 1e6, (unsigned long long)handled);
	/* Nothing happened meanwhile: nothing to handle (the spin ran it
	 * for every poll).  No used entry, no interrupt either. */
	assert_true(handled <= 1);
	assert_int_equal(used_idx(f, 0), 0);
	assert_int_equal(atomic_load(&f->msis.n), 0);
	assert_int_equal(blk_taken(f), takes);

	/* The disk answers: every read completes, the starved ones taken as
	 * requests free up. */
	backend_gate_set(false);
	for (int i = 0; i < 4000 && used_idx(f, 0) != BLK_QSIZE; i++)
		usleep(500);
	assert_int_equal(used_idx(f, 0), BLK_QSIZE);
	for (unsigned i = 0; i < BLK_QSIZE; i++)
		assert_blk_read(f, i);
	assert_false(atomic_load(&f->blk->queues[0].starved));
	assert_true(atomic_load(&f->msis.n) >= 1);
}


static void *open_gate_later(void *opaque)
{
	(void)opaque;
	usleep(50000);
	backend_gate_set(false);
	return NULL;
}

/*
 * Destroyed with the queue starved and reads in flight: the last (stale)
 * completions free requests and signal the batch handler, which must be
 * gone by then.  It used to run after the backend was closed, take the
 * chains left in the ring and complete them with IOERR (or, later still,
 * submit to a freed backend).  No chain left in the ring may be touched.
 */
static void test_blk_destroy_starved(void **state)
{
	struct fx *f = *state;
	pthread_t opener;

	blk_fill_ring(f);
	assert_int_equal(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
	virtio_pci_destroy(f->vp);
	f->vp = NULL;
	virtio_dev_destroy(f->blk);        /* waits for the gate */
	f->blk = NULL;
	pthread_join(opener, NULL);
	assert_int_equal(used_idx(f, 0), 0);
	for (unsigned i = f->blk_depth; i < BLK_QSIZE; i++)
		assert_int_equal(blk_status(f, i), 0xff);
}

/*
 * Bus Master cleared with reads in flight and the queue starved (pool 16 of
 * 256): the config write returns once the reads' data is in; from then on
 * the device writes no status byte and no used entry, takes no chain and
 * sends no MSI-X message, however long it waits.  Set again, the held
 * completions are delivered and the rest is served.  It used to go on
 * completing, interrupting and taking new chains with Bus Master off.
 */
static void test_blk_bus_master_cleared_mid_io(void **state)
{
	struct fx *f = *state;
	pthread_t opener;

	blk_fill_ring(f);
	assert_int_equal(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
	cfg_wr(f, 0x04, 0x2, 2);           /* waits for the reads under way */
	pthread_join(opener, NULL);
	for (unsigned i = 0; i < f->blk_depth; i++)
		assert_blk_data(f, i);
	usleep(50000);                     /* time to do what it must not */
	assert_int_equal(doorbell(f, 0), AS_OK);
	usleep(10000);
	for (unsigned i = 0; i < BLK_QSIZE; i++)
		assert_int_equal(blk_status(f, i), 0xff);
	assert_int_equal(used_idx(f, 0), 0);
	assert_int_equal(atomic_load(&f->msis.n), 0);
	assert_int_equal(blk_taken(f), f->blk_depth);

	cfg_wr(f, 0x04, 0x6, 2);
	assert_true(virtio_pci_notifiers_active(f->vp));
	for (int i = 0; i < 4000 && used_idx(f, 0) != BLK_QSIZE; i++)
		usleep(500);
	assert_int_equal(used_idx(f, 0), BLK_QSIZE);
	for (unsigned i = 0; i < BLK_QSIZE; i++)
		assert_blk_read(f, i);
	assert_true(atomic_load(&f->msis.n) >= 1);
	assert_false(f->blk->broken);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn, setup) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_layout, setup_iothread),
		T(test_features, setup_iothread),
		T(test_features_fixed_while_running, setup_iothread),
		T(test_registers_out_of_range, setup_iothread),
		T(test_notifiers_on_iothread, setup_iothread),
		T(test_stop_runs_handler_once, setup_idle),
		T(test_ioeventfd_off, setup_off),
		T(test_bus_master_stops_notifiers, setup_iothread),
		T(test_needs_reset_and_isr, setup_iothread),
		T(test_pci_cfg_window, setup_iothread),
		T(test_fallback_when_start_fails, setup_idle),
		T(test_window_reset_does_not_hold_the_bus, setup_iothread),
		cmocka_unit_test_setup_teardown(test_blk_starved_does_not_spin, setup_blk,
						teardown_blk),
		cmocka_unit_test_setup_teardown(test_blk_starved_does_not_spin, setup_blk_depth16,
						teardown_blk),
		cmocka_unit_test_setup_teardown(test_blk_destroy_starved, setup_blk_depth16,
						teardown_blk),
		cmocka_unit_test_setup_teardown(test_blk_bus_master_cleared_mid_io,
						setup_blk_depth16, teardown_blk),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
