/*
 * The virtio core with a dummy device model and a transport that records its
 * interrupts: the status state machine, feature negotiation, queue set-up at
 * DRIVER_OK, reset, breaking, and used-buffer notifications.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kickvm/guest_mem.h"
#include "kickvm/log.h"
#include "kickvm/virtio.h"

#define DUMMY_F_A   0
#define DUMMY_F_B   5          /* offered, but refused together with A */
#define QUEUE_MAX   8
#define DESC_GPA    0x1000
#define AVAIL_GPA   0x2000
#define USED_GPA    0x3000
#define DATA_GPA    0x8000

#define F(b) (1ull << (b))
#define BASE_FEATURES (F(VIRTIO_F_VERSION_1))

struct world {
	struct guest_mem gm;
	struct virtio_dev vdev;
	struct virtq_elem elem;
	unsigned starts, resets;
	unsigned notifies;               /* transport interrupts */
	uint16_t last_vector;
	uint16_t avail_idx;
};

static void dummy_read_config(struct virtio_dev *vdev, uint32_t offset, void *buf, uint32_t len)
{
	(void)vdev;
	(void)offset;
	memset(buf, 0, len);
}

static bool dummy_validate(struct virtio_dev *vdev, uint64_t features)
{
	(void)vdev;
	return (features & (F(DUMMY_F_A) | F(DUMMY_F_B))) != (F(DUMMY_F_A) | F(DUMMY_F_B));
}

static void dummy_start(struct virtio_dev *vdev)
{
	struct world *w = vdev->opaque;

	/* Started with every ready queue live. */
	assert_true(vdev->status & VIRTIO_STATUS_DRIVER_OK);
	w->starts++;
}

static void dummy_reset(struct virtio_dev *vdev)
{
	struct world *w = vdev->opaque;

	/* Runs before the core forgets the queues. */
	w->resets++;
}

static const struct virtio_dev_ops dummy_ops = {
	.name = "dummy",
	.device_id = 99,
	.features = F(DUMMY_F_A) | F(DUMMY_F_B),
	.nr_queues = 2,
	.queue_max = QUEUE_MAX,
	.config_size = 4,
	.read_config = dummy_read_config,
	.validate_features = dummy_validate,
	.start = dummy_start,
	.reset = dummy_reset,
};

static void transport_notify(struct virtio_dev *vdev, uint16_t vector)
{
	struct world *w = vdev->opaque;

	w->notifies++;
	w->last_vector = vector;
}

static const struct virtio_transport_ops transport = { .notify = transport_notify };

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	assert_int_equal(guest_mem_create(&w->gm, 1 << 20, 1ull << 32), 0);
	virtio_dev_init(&w->vdev, &dummy_ops, w, "dummy0", &w->gm, NULL);
	w->vdev.transport = &transport;
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	virtio_dev_cleanup(&w->vdev);
	guest_mem_destroy(&w->gm);
	free(w);
	return 0;
}

/* The driver's initialisation sequence (§3.1.1) up to FEATURES_OK. */
static uint8_t negotiate(struct world *w, uint64_t features)
{
	virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	w->vdev.guest_features = features;
	return virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					   VIRTIO_STATUS_FEATURES_OK);
}

static void setup_queue(struct world *w, unsigned q, uint16_t size, uint64_t desc)
{
	struct virtio_queue *vq = &w->vdev.queues[q];

	vq->size = size;
	vq->desc = desc;
	vq->driver = AVAIL_GPA;
	vq->device = USED_GPA;
	vq->vector = 1;
	vq->ready = true;
}

static uint8_t driver_ok(struct world *w)
{
	return virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

/* Negotiate @features, set queue 0 up, DRIVER_OK. */
static void bring_up(struct world *w, uint64_t features)
{
	assert_true(negotiate(w, features) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(w, 0, QUEUE_MAX, DESC_GPA);
	assert_true(driver_ok(w) & VIRTIO_STATUS_DRIVER_OK);
	assert_false(w->vdev.broken);
}

/* Driver side of queue 0: one writable buffer in descriptor @i. */
static void add_buffer(struct world *w, uint16_t i, uint16_t flags)
{
	uint8_t raw[16] = { 0 };
	uint64_t addr = DATA_GPA;
	uint32_t len = 64;

	memcpy(raw, &addr, 8);
	memcpy(raw + 8, &len, 4);
	memcpy(raw + 12, &flags, 2);
	assert_int_equal(guest_mem_write(&w->gm, DESC_GPA + 16 * i, raw, 16), 0);
	assert_int_equal(guest_mem_write(&w->gm, AVAIL_GPA + 4 + 2 * (w->avail_idx % QUEUE_MAX),
					 &i, 2), 0);
	w->avail_idx++;
	assert_int_equal(guest_mem_write(&w->gm, AVAIL_GPA + 2, &w->avail_idx, 2), 0);
}

static void write16(struct world *w, uint64_t gpa, uint16_t v)
{
	assert_int_equal(guest_mem_write(&w->gm, gpa, &v, 2), 0);
}

/* ---- init and features ------------------------------------------------------ */

static void test_init(void **state)
{
	struct world *w = *state;

	assert_string_equal(w->vdev.name, "dummy0");
	assert_int_equal(w->vdev.host_features,
			 F(DUMMY_F_A) | F(DUMMY_F_B) | F(VIRTIO_F_VERSION_1) |
			 F(VIRTIO_F_RING_EVENT_IDX) | F(VIRTIO_F_RING_INDIRECT_DESC));
	assert_int_equal(w->vdev.status, 0);
	assert_int_equal(w->vdev.config_vector, VIRTIO_NO_VECTOR);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		assert_int_equal(w->vdev.queues[i].vector, VIRTIO_NO_VECTOR);
		assert_int_equal(w->vdev.queues[i].size, i < 2 ? QUEUE_MAX : 0);
		assert_false(w->vdev.queues[i].ready);
		assert_int_equal(w->vdev.queues[i].notifier.fd, -1);
	}
}

static void test_features_refused(void **state)
{
	struct world *w = *state;
	static const uint64_t bad[] = {
		BASE_FEATURES | F(7),                           /* not offered */
		BASE_FEATURES | F(VIRTIO_F_ACCESS_PLATFORM),    /* not offered either */
		F(DUMMY_F_A),                                   /* no VERSION_1 */
		BASE_FEATURES | F(DUMMY_F_A) | F(DUMMY_F_B),    /* device says no */
	};

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t s = negotiate(w, bad[i]);

		assert_false(s & VIRTIO_STATUS_FEATURES_OK);
		assert_int_equal(s, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
		assert_int_equal(w->vdev.status, s);
		assert_false(w->vdev.broken);
		virtio_set_status(&w->vdev, 0);
	}
}

static void test_features_accepted(void **state)
{
	struct world *w = *state;
	uint64_t f = BASE_FEATURES | F(DUMMY_F_B) | F(VIRTIO_F_RING_EVENT_IDX);

	assert_true(negotiate(w, f) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(virtio_has_feature(&w->vdev, VIRTIO_F_VERSION_1));
	assert_true(virtio_has_feature(&w->vdev, DUMMY_F_B));
	assert_false(virtio_has_feature(&w->vdev, DUMMY_F_A));
	assert_false(virtio_has_feature(&w->vdev, 64));
	assert_false(virtio_has_feature(&w->vdev, 1000));
}

static void test_needs_reset_is_the_devices(void **state)
{
	struct world *w = *state;

	/* The driver can neither set nor clear it. */
	assert_int_equal(virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE |
						     VIRTIO_STATUS_NEEDS_RESET),
			 VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_dev_set_broken(&w->vdev, "test");
	assert_true(virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER) &
		    VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(virtio_set_status(&w->vdev, 0), 0);
}

/* ---- DRIVER_OK ------------------------------------------------------------------ */

static void test_driver_ok_builds_queues(void **state)
{
	struct world *w = *state;

	bring_up(w, BASE_FEATURES | F(VIRTIO_F_RING_EVENT_IDX));
	assert_int_equal(w->starts, 1);
	assert_int_equal(w->vdev.queues[0].vq.num, QUEUE_MAX);
	assert_int_equal(w->vdev.queues[0].vq.desc, DESC_GPA);
	assert_int_equal(w->vdev.queues[0].vq.avail, AVAIL_GPA);
	assert_int_equal(w->vdev.queues[0].vq.used, USED_GPA);
	assert_true(w->vdev.queues[0].vq.event_idx);
	assert_false(w->vdev.queues[0].vq.indirect);
	assert_ptr_equal(w->vdev.queues[0].vq.mem, &w->gm);
	/* Queue 1 was not enabled: nothing built, nothing to pop. */
	assert_int_equal(w->vdev.queues[1].vq.num, 0);
	assert_int_equal(virtio_queue_pop(&w->vdev, 1, &w->elem), 0);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), 0);
	assert_int_equal(virtio_queue_pop(&w->vdev, 2, &w->elem), -EINVAL);
	assert_int_equal(w->notifies, 0);
	/* Writing the same status again starts nothing twice. */
	driver_ok(w);
	assert_int_equal(w->starts, 1);
}

static void expect_broken_at_driver_ok(struct world *w)
{
	unsigned long errors = log_count(LOG_ERROR);
	uint8_t s;

	w->vdev.config_vector = 3;
	s = driver_ok(w);
	assert_true(s & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(w->vdev.broken);
	assert_int_equal(w->starts, 0);
	assert_int_equal(w->notifies, 1);
	assert_int_equal(w->last_vector, 3);
	assert_int_equal(log_count(LOG_ERROR), errors + 1);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), -EIO);
}

static void test_driver_ok_bad_ring(void **state)
{
	struct world *w = *state;

	assert_true(negotiate(w, BASE_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(w, 0, QUEUE_MAX, 2ull << 20);      /* beyond 1 MiB of RAM */
	expect_broken_at_driver_ok(w);
	assert_non_null(strstr(w->vdev.queues[0].vq.error, "descriptor table outside guest RAM"));
}

static void test_driver_ok_bad_size(void **state)
{
	struct world *w = *state;

	assert_true(negotiate(w, BASE_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(w, 0, 2 * QUEUE_MAX, DESC_GPA);
	expect_broken_at_driver_ok(w);
	virtio_set_status(&w->vdev, 0);
	w->notifies = 0;
	assert_true(negotiate(w, BASE_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(w, 0, 3, DESC_GPA);
	expect_broken_at_driver_ok(w);
	assert_non_null(strstr(w->vdev.queues[0].vq.error, "power of two"));
}

static void test_driver_ok_without_features_ok(void **state)
{
	struct world *w = *state;
	uint8_t s;

	virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	setup_queue(w, 0, QUEUE_MAX, DESC_GPA);
	s = virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					VIRTIO_STATUS_DRIVER_OK);
	assert_false(s & VIRTIO_STATUS_DRIVER_OK);
	assert_true(s & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(w->starts, 0);
	/* Not DRIVER_OK: no config notification (§2.1.2). */
	assert_int_equal(w->notifies, 0);
}

/* ---- reset and breaking ------------------------------------------------------------- */

static void test_reset(void **state)
{
	struct world *w = *state;
	uint8_t gen;

	bring_up(w, BASE_FEATURES | F(VIRTIO_F_RING_INDIRECT_DESC));
	w->vdev.config_vector = 2;
	w->vdev.isr = 3;
	w->vdev.queues[0].notifier.fd = 42;          /* the transport's: kept */
	virtio_dev_set_broken(&w->vdev, "for the test");
	gen = w->vdev.config_generation;

	assert_int_equal(virtio_set_status(&w->vdev, 0), 0);
	assert_int_equal(w->resets, 1);
	assert_int_equal(w->vdev.guest_features, 0);
	assert_int_equal(w->vdev.status, 0);
	assert_int_equal(w->vdev.isr, 0);
	assert_false(w->vdev.broken);
	assert_int_equal(w->vdev.config_vector, VIRTIO_NO_VECTOR);
	assert_int_equal(w->vdev.config_generation, gen);
	assert_false(w->vdev.queues[0].ready);
	assert_int_equal(w->vdev.queues[0].vector, VIRTIO_NO_VECTOR);
	assert_int_equal(w->vdev.queues[0].size, QUEUE_MAX);
	assert_int_equal(w->vdev.queues[0].desc, 0);
	assert_int_equal(w->vdev.queues[0].vq.num, 0);
	assert_int_equal(w->vdev.queues[0].notifier.fd, 42);
	w->vdev.queues[0].notifier.fd = -1;
	/* After reset nothing runs until the driver starts again. */
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), -EIO);
	assert_int_equal(virtio_queue_push(&w->vdev, 0, 0, 0), -EIO);

	/* And it can: the whole sequence again. */
	w->avail_idx = 0;
	bring_up(w, BASE_FEATURES);
	assert_int_equal(w->starts, 2);
}

static void test_set_broken(void **state)
{
	struct world *w = *state;
	unsigned long errors = log_count(LOG_ERROR);
	uint8_t gen;

	bring_up(w, BASE_FEATURES);
	w->vdev.config_vector = 5;
	gen = w->vdev.config_generation;
	virtio_dev_set_broken(&w->vdev, "bad thing %d", 1);
	assert_true(w->vdev.broken);
	assert_true(w->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(w->vdev.status & VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(w->vdev.config_generation, (uint8_t)(gen + 1));
	assert_int_equal(w->vdev.isr & 2, 2);
	assert_int_equal(w->notifies, 1);
	assert_int_equal(w->last_vector, 5);
	assert_int_equal(log_count(LOG_ERROR), errors + 1);

	/* Once: a second reason changes nothing. */
	virtio_dev_set_broken(&w->vdev, "bad thing %d", 2);
	assert_int_equal(w->notifies, 1);
	assert_int_equal(w->vdev.config_generation, (uint8_t)(gen + 1));
	assert_int_equal(log_count(LOG_ERROR), errors + 1);

	add_buffer(w, 0, 2);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), -EIO);
	assert_int_equal(virtio_queue_push(&w->vdev, 0, 0, 0), -EIO);
	virtio_queue_notify_driver(&w->vdev, 0);
	assert_int_equal(w->notifies, 1);
}

static void test_set_broken_before_driver_ok(void **state)
{
	struct world *w = *state;

	negotiate(w, BASE_FEATURES);
	virtio_dev_set_broken(&w->vdev, "early");
	assert_true(w->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(w->notifies, 0);
}

static void test_pop_before_driver_ok(void **state)
{
	struct world *w = *state;

	assert_true(negotiate(w, BASE_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(w, 0, QUEUE_MAX, DESC_GPA);
	add_buffer(w, 0, 2);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), -EIO);
	assert_false(w->vdev.broken);
	assert_true(driver_ok(w) & VIRTIO_STATUS_DRIVER_OK);
	/* Queued before DRIVER_OK, served after. */
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), 1);
}

static void test_malformed_chain_breaks_device(void **state)
{
	struct world *w = *state;

	bring_up(w, BASE_FEATURES);
	w->vdev.config_vector = 7;
	add_buffer(w, 0, 2 | VIRTQ_DESC_F_NEXT);
	write16(w, DESC_GPA + 14, QUEUE_MAX);          /* next out of range */
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), -EIO);
	assert_true(w->vdev.broken);
	assert_true(w->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(w->notifies, 1);
	assert_int_equal(w->last_vector, 7);
}

/* A driver clears DRIVER_OK without a reset, then sets it again: refused,
 * NEEDS_RESET.  It used to restart the rings at index 0 under the chain
 * still in flight, which would then run twice. */
static void test_clear_driver_ok_refused(void **state)
{
	struct world *w = *state;
	const uint8_t negotiated = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				   VIRTIO_STATUS_FEATURES_OK;
	uint16_t used;

	bring_up(w, BASE_FEATURES);
	w->vdev.config_vector = 3;
	add_buffer(w, 0, 2);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), 1);   /* in flight */
	assert_int_equal(virtio_set_status(&w->vdev, negotiated),
			 negotiated | VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET);
	assert_true(w->vdev.broken);
	assert_int_equal(w->notifies, 1);
	assert_int_equal(w->last_vector, 3);
	/* Setting it again starts nothing: the ring still where it was. */
	driver_ok(w);
	assert_int_equal(w->starts, 1);
	assert_int_equal(w->vdev.queues[0].vq.last_avail, 1);
	assert_int_equal(virtio_queue_push(&w->vdev, 0, w->elem.head, 0), -EIO);
	assert_int_equal(guest_mem_read(&w->gm, USED_GPA + 2, &used, 2), 0);
	assert_int_equal(used, 0);

	/* FEATURES_OK cleared under DRIVER_OK: the same, the features stay. */
	virtio_set_status(&w->vdev, 0);
	w->avail_idx = 0;
	bring_up(w, BASE_FEATURES);
	virtio_set_status(&w->vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				    VIRTIO_STATUS_DRIVER_OK);
	assert_true(w->vdev.status & VIRTIO_STATUS_FEATURES_OK);
	assert_true(w->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
	/* A reset is the way out. */
	virtio_set_status(&w->vdev, 0);
	w->avail_idx = 0;
	bring_up(w, BASE_FEATURES);
}

/* DMA forbidden (Bus Master clear): nothing taken or returned, no interrupt,
 * not broken; a config interrupt due meanwhile comes when DMA is back. */
static void test_dma_off(void **state)
{
	struct world *w = *state;

	bring_up(w, BASE_FEATURES);
	w->vdev.config_vector = 4;
	add_buffer(w, 0, 2);
	virtio_set_dma(&w->vdev, false);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), -EIO);
	assert_false(w->vdev.broken);
	assert_int_equal(w->vdev.queues[0].vq.last_avail, 0);
	virtio_set_dma(&w->vdev, true);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), 1);
	virtio_set_dma(&w->vdev, false);
	assert_int_equal(virtio_queue_push(&w->vdev, 0, w->elem.head, 0), -EIO);
	virtio_dev_set_broken(&w->vdev, "while DMA is off");
	assert_true(w->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(w->notifies, 0);
	virtio_set_dma(&w->vdev, true);
	assert_int_equal(w->notifies, 1);
	assert_int_equal(w->last_vector, 4);
	virtio_set_dma(&w->vdev, true);                /* no change, no second one */
	assert_int_equal(w->notifies, 1);
}

/* ---- used-buffer notifications ------------------------------------------------------ */

static void test_notify_event_idx(void **state)
{
	struct world *w = *state;

	bring_up(w, BASE_FEATURES | F(VIRTIO_F_RING_EVENT_IDX));
	write16(w, AVAIL_GPA + 4 + 2 * QUEUE_MAX, 1);  /* used_event: after the 2nd */
	add_buffer(w, 0, 2);
	add_buffer(w, 1, 2);
	add_buffer(w, 2, 2);

	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), 1);
		assert_int_equal(virtio_queue_push(&w->vdev, 0, w->elem.head, 1), 0);
		virtio_queue_notify_driver(&w->vdev, 0);
		assert_int_equal(w->notifies, i >= 1 ? 1 : 0);
	}
	assert_int_equal(w->last_vector, 1);
	assert_int_equal(w->vdev.isr & 1, 1);
	assert_int_equal(atomic_load(&w->vdev.queues[0].interrupts), 1);
	assert_int_equal(virtio_queue_push(&w->vdev, 0, QUEUE_MAX, 0), -EINVAL);
	assert_int_equal(virtio_queue_push(&w->vdev, 9, 0, 0), -EINVAL);
}

static void test_notify_no_interrupt_flag(void **state)
{
	struct world *w = *state;

	bring_up(w, BASE_FEATURES);
	write16(w, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	add_buffer(w, 0, 2);
	add_buffer(w, 1, 2);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), 1);
	assert_int_equal(virtio_queue_push(&w->vdev, 0, w->elem.head, 1), 0);
	virtio_queue_notify_driver(&w->vdev, 0);
	assert_int_equal(w->notifies, 0);
	write16(w, AVAIL_GPA, 0);
	assert_int_equal(virtio_queue_pop(&w->vdev, 0, &w->elem), 1);
	assert_int_equal(virtio_queue_push(&w->vdev, 0, w->elem.head, 1), 0);
	virtio_queue_notify_driver(&w->vdev, 0);
	assert_int_equal(w->notifies, 1);
	assert_int_equal(w->last_vector, 1);
	/* Nothing pushed since: no second interrupt. */
	virtio_queue_notify_driver(&w->vdev, 0);
	assert_int_equal(w->notifies, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_init),
		T(test_features_refused),
		T(test_features_accepted),
		T(test_needs_reset_is_the_devices),
		T(test_driver_ok_builds_queues),
		T(test_driver_ok_bad_ring),
		T(test_driver_ok_bad_size),
		T(test_driver_ok_without_features_ok),
		T(test_reset),
		T(test_set_broken),
		T(test_set_broken_before_driver_ok),
		T(test_pop_before_driver_ok),
		T(test_malformed_chain_breaks_device),
		T(test_clear_driver_ok_refused),
		T(test_dma_off),
		T(test_notify_event_idx),
		T(test_notify_no_interrupt_flag),
	};

	/* The refusals and breaks log by design; keep the output readable. */
	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
