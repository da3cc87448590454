/*
 * virtio-blk and virtio-rng driven by a mock driver: rings in guest memory,
 * negotiation through the core, kicks as the transport makes them
 * (ops->queue_notify under vdev->lock), a fake transport counting
 * interrupts.  The loop runs in this thread (or an iothread) until the used
 * ring shows the completions; the image file is checked behind the device.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "wait_until.h"

#include "kickvm/guest_mem.h"
#include "kickvm/log.h"
#include "kickvm/virtio_devices.h"
#include "virtio_driver.h"

#define IMG_SIZE   (1u << 20)
#define SECTORS    (IMG_SIZE / 512)
#define QSZ        256
#define DESC_GPA   0x10000ull
#define AVAIL_GPA  0x20000ull
#define USED_GPA   0x30000ull
#define HEAP_GPA   0x100000ull
#define QVEC       1
#define CVEC       0


struct cfg {
	enum blk_aio aio;
	bool readonly, iothread, event_idx, rng;
	unsigned depth;
	const char *serial;
};

struct drv {
	struct cfg cfg;
	struct guest_mem gm;
	struct event_loop *loop;
	struct iothread *it;
	struct virtio_dev *vdev;
	char path[64];
	int fd;
	uint16_t next_desc, avail_idx, used_seen;
	uint64_t heap;
	_Atomic unsigned irqs[2];       /* by vector: config, queue */
};

struct vreq {
	uint16_t head;
	uint64_t hdr, data, status;
	uint32_t len;
};

static void fake_notify(struct virtio_dev *vdev, uint16_t vector)
{
	struct drv *d = vdev->transport_opaque;

	assert_true(vector < 2);
	atomic_fetch_add(&d->irqs[vector], 1);
}

static const struct virtio_transport_ops fake_transport = { .notify = fake_notify };

/* ---- the mock driver ---------------------------------------------------- */

static uint64_t gmalloc(struct drv *d, uint64_t len)
{
	uint64_t gpa = d->heap;

	d->heap += (len + 4095) & ~4095ull;
	assert_true(d->heap < d->gm.total);
	return gpa;
}

static void put16(struct drv *d, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	assert_int_equal(guest_mem_write(&d->gm, gpa, &v, 2), 0);
}

static uint32_t get32(struct drv *d, uint64_t gpa)
{
	uint32_t v;

	assert_int_equal(guest_mem_read(&d->gm, gpa, &v, 4), 0);
	return le32toh(v);
}

static uint16_t used_idx(struct drv *d)
{
	uint16_t *p = guest_mem_ptr(&d->gm, USED_GPA + 2, 2);

	return le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

struct seg { uint64_t gpa; uint32_t len; bool write; };

/* Write a chain of descriptors and make it available (no kick). */
static uint16_t add_chain(struct drv *d, const struct seg *s, unsigned n)
{
	uint16_t head = d->next_desc;
	uint16_t *avail_idx = guest_mem_ptr(&d->gm, AVAIL_GPA + 2, 2);

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((d->next_desc + i) % QSZ);
		struct { uint64_t addr; uint32_t len; uint16_t flags, next; } desc = {
			htole64(s[i].gpa), htole32(s[i].len),
			htole16((s[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				(i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			htole16((uint16_t)((idx + 1) % QSZ)),
		};

		assert_int_equal(guest_mem_write(&d->gm, DESC_GPA + 16 * idx, &desc, 16), 0);
	}
	d->next_desc = (uint16_t)((d->next_desc + n) % QSZ);
	put16(d, AVAIL_GPA + 4 + 2 * (d->avail_idx % QSZ), head);
	d->avail_idx++;
	__atomic_store_n(avail_idx, htole16(d->avail_idx), __ATOMIC_RELEASE);
	return head;
}

/* A request as three descriptors: header, data (if @len), status. */
static void blk_req(struct drv *d, struct vreq *r, uint32_t type, uint64_t sector,
		    uint32_t len, bool data_write)
{
	struct { uint32_t type, reserved; uint64_t sector; } hdr = {
		htole32(type), 0, htole64(sector) };
	struct seg s[3];
	unsigned n = 0;
	uint8_t ff = 0xff;

	r->hdr = gmalloc(d, 16);
	r->status = gmalloc(d, 1);
	r->len = len;
	if (len && !r->data)
		r->data = gmalloc(d, len);
	assert_int_equal(guest_mem_write(&d->gm, r->hdr, &hdr, 16), 0);
	assert_int_equal(guest_mem_write(&d->gm, r->status, &ff, 1), 0);
	s[n++] = (struct seg){ r->hdr, 16, false };
	if (len)
		s[n++] = (struct seg){ r->data, len, data_write };
	s[n++] = (struct seg){ r->status, 1, true };
	r->head = add_chain(d, s, n);
}

static void kick(struct drv *d)
{
	pthread_mutex_lock(&d->vdev->lock);
	d->vdev->ops->queue_notify(d->vdev, 0);
	pthread_mutex_unlock(&d->vdev->lock);
}

/* Wait for @n more used entries. */
static void wait_used(struct drv *d, unsigned n)
{
	uint16_t want = (uint16_t)(d->used_seen + n);

	if (d->it)
		assert_true(WAIT_UNTIL(used_idx(d) == want));
	else
		assert_true(RUN_UNTIL(d->loop, used_idx(d) == want));
	d->used_seen = want;
}

/* The used entry for @head among the last @n; its len. */
static uint32_t used_len(struct drv *d, uint16_t head, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint16_t slot = (uint16_t)(d->used_seen - 1 - i) % QSZ;

		if (get32(d, USED_GPA + 4 + 8 * slot) == head)
			return get32(d, USED_GPA + 8 + 8 * slot);
	}
	fail_msg("head %u not in the used ring", head);
	return 0;
}

static uint8_t status_of(struct drv *d, const struct vreq *r)
{
	uint8_t st;

	assert_int_equal(guest_mem_read(&d->gm, r->status, &st, 1), 0);
	return st;
}

/* One request, waited for; its status. */
static uint8_t do_req(struct drv *d, struct vreq *r, uint32_t type, uint64_t sector,
		      uint32_t len, bool data_write)
{
	blk_req(d, r, type, sector, len, data_write);
	kick(d);
	wait_used(d, 1);
	return status_of(d, r);
}

/* Negotiate @features (plus VERSION_1) and start the queue, as a driver. */
static void driver_init(struct drv *d, uint64_t features)
{
	static const struct driver_queue q = {
		.size = QSZ, .desc = DESC_GPA, .avail = AVAIL_GPA, .used = USED_GPA,
		.vector = QVEC, .config_vector = CVEC,
	};
	struct virtio_dev *vdev = d->vdev;
	uint8_t status;

	memset(guest_mem_ptr(&d->gm, DESC_GPA, 0x30000), 0, 0x30000);
	d->next_desc = d->avail_idx = d->used_seen = 0;
	pthread_mutex_lock(&vdev->lock);
	status = driver_start_queue0(vdev, (features | (1ull << VIRTIO_F_VERSION_1)) &
					   vdev->host_features, &q);
	pthread_mutex_unlock(&vdev->lock);
	assert_true(status & VIRTIO_STATUS_FEATURES_OK);
	assert_true(status & VIRTIO_STATUS_DRIVER_OK);
}

static int setup(void **state)
{
	struct drv *d = calloc(1, sizeof(*d));
	struct virtio_blk_opts o = { 0 };
	uint8_t *img = malloc(IMG_SIZE);
	int r;

	d->cfg = *(struct cfg *)*state;
	assert_int_equal(guest_mem_create(&d->gm, 32u << 20, 3ull << 30), 0);
	d->heap = HEAP_GPA;
	if (d->cfg.iothread) {
		assert_int_equal(iothread_new("vblk-io", &d->it), 0);
		d->loop = iothread_loop(d->it);
	} else {
		d->loop = event_loop_new("test-vblk");
	}
	snprintf(d->path, sizeof(d->path), "/tmp/kickvm-vblk-XXXXXX");
	d->fd = mkstemp(d->path);
	assert_true(d->fd >= 0);
	for (unsigned i = 0; i < IMG_SIZE; i++)
		img[i] = (uint8_t)(i * 13 + (i >> 9));
	assert_int_equal(pwrite(d->fd, img, IMG_SIZE, 0), IMG_SIZE);
	free(img);
	if (d->cfg.rng) {
		r = virtio_rng_create(&d->gm, d->loop, &d->vdev);
	} else {
		o.file = d->path;
		o.serial = d->cfg.serial;
		o.blk = (struct blk_opts){ .readonly = d->cfg.readonly, .aio = d->cfg.aio,
					   .queue_depth = d->cfg.depth };
		r = virtio_blk_create(&d->gm, d->loop, &o, &d->vdev);
	}
	*state = d;
	/* A sandbox may refuse io_uring: those tests skip (see drv()). */
	if (r < 0 && d->cfg.aio == BLK_AIO_IO_URING)
		return 0;
	assert_int_equal(r, 0);
	d->vdev->transport = &fake_transport;
	d->vdev->transport_opaque = d;
	driver_init(d, d->vdev->host_features &
		       ~(d->cfg.event_idx ? 0 : 1ull << VIRTIO_F_RING_EVENT_IDX));
	return 0;
}

/* The test's driver; skips when its engine is not available here. */
static struct drv *drv(void **state)
{
	struct drv *d = *state;

	if (!d->vdev) {
		print_message("io_uring is not available here: skipped\n");
		skip();
	}
	return d;
}

static int teardown(void **state)
{
	struct drv *d = *state;

	virtio_dev_destroy(d->vdev);
	if (d->it)
		iothread_free(d->it);
	else
		event_loop_free(d->loop);
	guest_mem_destroy(&d->gm);
	close(d->fd);
	unlink(d->path);
	free(d);
	return 0;
}


static void pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 29 + i * 3 + (i >> 8));
}

static void *gptr(struct drv *d, uint64_t gpa, uint64_t len)
{
	void *p = guest_mem_ptr(&d->gm, gpa, len);

	assert_non_null(p);
	return p;
}

/* The image at @off equals @expect. */
static void assert_file(struct drv *d, uint64_t off, const void *expect, size_t len)
{
	uint8_t *buf = malloc(len);

	assert_int_equal(pread(d->fd, buf, len, (off_t)off), (ssize_t)len);
	assert_memory_equal(buf, expect, len);
	free(buf);
}

static void assert_file_zero(struct drv *d, uint64_t off, size_t len)
{
	uint8_t *zero = calloc(1, len);

	assert_file(d, off, zero, len);
	free(zero);
}

static struct virtio_blk_stats stats(struct drv *d)
{
	struct virtio_blk_stats s;

	virtio_blk_get_stats(d->vdev, &s);
	return s;
}

/* ---- virtio-blk ----------------------------------------------------------- */

static void test_config(void **state)
{
	struct drv *d = drv(state);
	const struct virtio_dev_ops *ops = d->vdev->ops;
	uint8_t cfg[60];
	uint64_t cap;
	uint32_t v;

	assert_int_equal(ops->device_id, VIRTIO_ID_BLOCK);
	assert_int_equal(ops->config_size, sizeof(cfg));
	ops->read_config(d->vdev, 0, cfg, sizeof(cfg));
	memcpy(&cap, cfg, 8);
	assert_int_equal(le64toh(cap), SECTORS);
	memcpy(&v, cfg + 20, 4);
	assert_int_equal(le32toh(v), 512);                  /* blk_size */
	memcpy(&v, cfg + 12, 4);
	assert_int_equal(le32toh(v), QSZ - 2);              /* seg_max */
	memcpy(&v, cfg + 40, 4);
	assert_int_equal(le32toh(v), 1);                    /* max_discard_seg */
	ops->read_config(d->vdev, 52, &v, 4);
	assert_int_equal(le32toh(v), 1);                    /* max_write_zeroes_seg */
	for (unsigned f = 0; f < 64; f++) {
		bool want = f == VIRTIO_BLK_F_SIZE_MAX || f == VIRTIO_BLK_F_SEG_MAX ||
			    f == VIRTIO_BLK_F_BLK_SIZE || f == VIRTIO_BLK_F_FLUSH ||
			    f == VIRTIO_BLK_F_DISCARD || f == VIRTIO_BLK_F_WRITE_ZEROES ||
			    f == VIRTIO_F_VERSION_1 || f == VIRTIO_F_RING_EVENT_IDX ||
			    f == VIRTIO_F_RING_INDIRECT_DESC;

		assert_int_equal(!!(d->vdev->host_features & (1ull << f)), want);
	}
}

static void test_write_flush_read(void **state)
{
	struct drv *d = drv(state);
	struct vreq w = { 0 }, f = { 0 }, r = { 0 };
	uint8_t data[8192];

	pattern(data, sizeof(data), 1);
	w.data = gmalloc(d, sizeof(data));
	memcpy(gptr(d, w.data, sizeof(data)), data, sizeof(data));
	assert_int_equal(do_req(d, &w, VIRTIO_BLK_T_OUT, 10, sizeof(data), false), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len(d, w.head, 1), 1);
	assert_int_equal(do_req(d, &f, VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
	assert_file(d, 10 * 512, data, sizeof(data));

	/* And back through the device, from elsewhere in the file too. */
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, 10, sizeof(data), true), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len(d, r.head, 1), sizeof(data) + 1);
	assert_memory_equal(gptr(d, r.data, sizeof(data)), data, sizeof(data));
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, 1000, sizeof(data), true), VIRTIO_BLK_S_OK);
	assert_file(d, 1000 * 512, gptr(d, r.data, sizeof(data)), sizeof(data));

	assert_int_equal(stats(d).writes, 1);
	assert_int_equal(stats(d).flushes, 1);
	assert_int_equal(stats(d).reads, 2);
	assert_int_equal(stats(d).bytes_written, sizeof(data));
	assert_int_equal(stats(d).bytes_read, 2 * sizeof(data));
}

static void test_range_errors(void **state)
{
	struct drv *d = drv(state);
	struct vreq r = { 0 };
	uint8_t before[1024];

	assert_int_equal(pread(d->fd, before, sizeof(before), IMG_SIZE - 1024), 1024);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, SECTORS, 512, true), VIRTIO_BLK_S_IOERR);
	assert_int_equal(used_len(d, r.head, 1), 1);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, SECTORS - 1, 1024, true),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, UINT64_MAX, 512, true), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_OUT, SECTORS - 1, 1024, false),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, 0, 100, true), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, SECTORS - 2, 1024, true), VIRTIO_BLK_S_OK);
	assert_file(d, IMG_SIZE - 1024, before, sizeof(before));
	assert_int_equal(stats(d).io_errors, 5);
}

static void test_get_id(void **state)
{
	struct drv *d = drv(state);
	struct vreq r = { 0 };
	char want[VIRTIO_BLK_ID_BYTES];
	const char *base = strrchr(d->path, '/') + 1;
	const char *serial = d->cfg.serial ? d->cfg.serial : base;

	memset(want, 0, sizeof(want));
	memcpy(want, serial, strnlen(serial, sizeof(want)));
	r.data = gmalloc(d, 64);
	memset(gptr(d, r.data, 64), 0x55, 64);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_GET_ID, 0, 64, true), VIRTIO_BLK_S_OK);
	assert_memory_equal(gptr(d, r.data, sizeof(want)), want, sizeof(want));
	assert_int_equal(used_len(d, r.head, 1), VIRTIO_BLK_ID_BYTES + 1);
	assert_int_equal(stats(d).get_ids, 1);
}

/* A discard/write-zeroes request with @nseg segments. */
static uint8_t dz_req(struct drv *d, uint32_t type, uint64_t sector, uint32_t num,
		      uint32_t flags, unsigned nseg)
{
	struct { uint64_t sector; uint32_t num, flags; } seg = {
		htole64(sector), htole32(num), htole32(flags) };
	struct vreq r = { .data = gmalloc(d, 64) };

	for (unsigned i = 0; i < nseg; i++)
		memcpy(gptr(d, r.data + 16 * i, 16), &seg, 16);
	return do_req(d, &r, type, 0, nseg ? 16 * nseg : 8, false);
}

static void test_discard_write_zeroes(void **state)
{
	struct drv *d = drv(state);

	assert_int_equal(dz_req(d, VIRTIO_BLK_T_DISCARD, 8, 16, 0, 1), VIRTIO_BLK_S_OK);
	assert_file_zero(d, 8 * 512, 16 * 512);
	/* Unmap is a hint on write-zeroes: zeroes all the same. */
	assert_int_equal(dz_req(d, VIRTIO_BLK_T_WRITE_ZEROES, 65, 7, 1, 1), VIRTIO_BLK_S_OK);
	assert_file_zero(d, 65 * 512, 7 * 512);
	assert_int_equal(dz_req(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 0, 0, 1), VIRTIO_BLK_S_OK);
	/* §5.2.6.2: unmap on discard, unknown flags, more segments than offered. */
	assert_int_equal(dz_req(d, VIRTIO_BLK_T_DISCARD, 8, 1, 1, 1), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(dz_req(d, VIRTIO_BLK_T_WRITE_ZEROES, 8, 1, 2, 1), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(dz_req(d, VIRTIO_BLK_T_DISCARD, 8, 1, 0, 2), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(dz_req(d, VIRTIO_BLK_T_DISCARD, SECTORS - 1, 2, 0, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(dz_req(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 1, 0, 0), VIRTIO_BLK_S_IOERR);
	assert_int_equal(stats(d).discards, 4);
	assert_int_equal(stats(d).write_zeroes, 4);
	assert_int_equal(stats(d).unsupported, 3);
	assert_int_equal(stats(d).io_errors, 2);
}

static void test_unsupported_type(void **state)
{
	struct drv *d = drv(state);
	struct vreq r = { 0 };

	assert_int_equal(do_req(d, &r, 99, 0, 512, true), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(stats(d).unsupported, 1);
}

static void test_readonly(void **state)
{
	struct drv *d = drv(state);
	struct vreq r = { 0 };
	uint8_t before[512];

	assert_true(d->vdev->host_features & (1ull << VIRTIO_BLK_F_RO));
	assert_false(d->vdev->host_features & (1ull << VIRTIO_BLK_F_DISCARD));
	assert_int_equal(pread(d->fd, before, 512, 0), 512);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_OUT, 0, 512, false), VIRTIO_BLK_S_IOERR);
	assert_int_equal(dz_req(d, VIRTIO_BLK_T_DISCARD, 0, 1, 0, 1), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
	assert_file(d, 0, before, sizeof(before));
}

/* The driver broke the protocol: NEEDS_RESET, a config interrupt, and after
 * a reset the device works again. */
static void test_malformed(void **state)
{
	struct drv *d = drv(state);
	struct { uint32_t type, reserved; uint64_t sector; } hdr = { 0 };
	uint64_t h = gmalloc(d, 16);
	struct vreq r = { 0 };

	for (int shape = 0; shape < 2; shape++) {
		/* No writable status byte; then a header of 8 bytes. */
		struct seg s[2] = { { h, shape ? 8 : 16, false }, { h + 512, 1, true } };

		guest_mem_write(&d->gm, h, &hdr, sizeof(hdr));
		add_chain(d, s, shape ? 2 : 1);
		kick(d);
		assert_true(d->vdev->broken);
		assert_true(d->vdev->status & VIRTIO_STATUS_NEEDS_RESET);
		assert_int_equal(d->irqs[CVEC], shape + 1);
		assert_int_equal(used_idx(d), d->used_seen);
		pthread_mutex_lock(&d->vdev->lock);
		virtio_set_status(d->vdev, 0);
		pthread_mutex_unlock(&d->vdev->lock);
		driver_init(d, d->vdev->host_features & ~(1ull << VIRTIO_F_RING_EVENT_IDX));
		assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
	}
}

/* Data on the wrong side of the chain (§5.2.6): IOERR, nothing read or
 * written, the device still working.  A read into a device-readable buffer
 * used to complete with OK, having read nothing. */
static void test_wrong_direction(void **state)
{
	struct drv *d = drv(state);
	static const struct { uint32_t type, len; bool write; } cases[] = {
		{ VIRTIO_BLK_T_IN, 512, false },        /* read into a readable buffer */
		{ VIRTIO_BLK_T_OUT, 512, true },        /* write from a writable one */
		{ VIRTIO_BLK_T_FLUSH, 512, false },     /* a flush has no data */
		{ VIRTIO_BLK_T_FLUSH, 512, true },
		{ VIRTIO_BLK_T_GET_ID, 20, false },     /* the ID must be writable */
		{ VIRTIO_BLK_T_GET_ID, 0, false },      /* and there */
		{ VIRTIO_BLK_T_DISCARD, 16, true },     /* segments must be readable */
		{ VIRTIO_BLK_T_WRITE_ZEROES, 16, true },
	};
	const unsigned n = sizeof(cases) / sizeof(cases[0]);
	struct { uint64_t sector; uint32_t num, flags; } seg = { 0, htole32(8), 0 };
	struct { uint32_t type, reserved; uint64_t sector; } hdr = { htole32(VIRTIO_BLK_T_IN) };
	uint8_t before[4096], snap[512], *p;
	struct vreq r = { 0 };
	uint64_t h, buf;
	uint16_t head;

	assert_int_equal(pread(d->fd, before, sizeof(before), 0), sizeof(before));
	for (unsigned i = 0; i < n; i++) {
		struct vreq w = { .data = gmalloc(d, 512) };

		p = gptr(d, w.data, 512);
		pattern(p, 512, i);
		memcpy(p, &seg, sizeof(seg));
		memcpy(snap, p, sizeof(snap));
		assert_int_equal(do_req(d, &w, cases[i].type, 0, cases[i].len, cases[i].write),
				 VIRTIO_BLK_S_IOERR);
		assert_int_equal(used_len(d, w.head, 1), 1);
		assert_memory_equal(p, snap, sizeof(snap));
		assert_false(d->vdev->broken);
	}
	/* A read whose data starts readable and goes on writable. */
	h = gmalloc(d, 16);
	buf = gmalloc(d, 2048);
	guest_mem_write(&d->gm, h, &hdr, sizeof(hdr));
	p = gptr(d, buf, 2048);
	pattern(p, 2048, 99);
	memcpy(snap, p + 1024, sizeof(snap));
	head = add_chain(d, (struct seg[]){ { h, 16, false }, { buf, 512, false },
					    { buf + 1024, 512, true }, { buf + 1536, 1, true } }, 4);
	kick(d);
	wait_used(d, 1);
	assert_int_equal(used_len(d, head, 1), 1);
	assert_int_equal(p[1536], VIRTIO_BLK_S_IOERR);
	assert_memory_equal(p + 1024, snap, sizeof(snap));

	assert_file(d, 0, before, sizeof(before));
	assert_int_equal(stats(d).io_errors, n + 1);
	assert_int_equal(stats(d).bytes_read + stats(d).bytes_written, 0);
	/* Still working. */
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
	assert_memory_equal(gptr(d, r.data, 512), before, 512);
}

/* Descriptors split anywhere: a header in two pieces, data in three, the
 * status byte at the end of the last data buffer. */
static void test_layouts(void **state)
{
	struct drv *d = drv(state);
	struct { uint32_t type, reserved; uint64_t sector; } hdr = {
		htole32(VIRTIO_BLK_T_IN), 0, htole64(4) };
	uint64_t h = gmalloc(d, 16), buf = gmalloc(d, 8192);
	struct seg s[5] = { { h, 10, false }, { h + 10, 6, false }, { buf, 1000, true },
			    { buf + 1000, 24, true }, { buf + 4096, 3073, true } };
	uint8_t *p = gptr(d, buf, 8192), want[4096];
	uint16_t head;

	assert_int_equal(pread(d->fd, want, sizeof(want), 4 * 512), 4096);
	guest_mem_write(&d->gm, h, &hdr, sizeof(hdr));
	head = add_chain(d, s, 5);
	kick(d);
	wait_used(d, 1);
	assert_int_equal(used_len(d, head, 1), 4097);
	assert_memory_equal(p, want, 1024);
	assert_memory_equal(p + 4096, want + 1024, 3072);
	assert_int_equal(p[4096 + 3072], VIRTIO_BLK_S_OK);

	/* A write: header and data in one readable buffer. */
	hdr.type = htole32(VIRTIO_BLK_T_OUT);
	pattern(p, 16 + 512, 7);
	memcpy(p, &hdr, sizeof(hdr));
	s[0] = (struct seg){ buf, 16 + 512, false };
	s[1] = (struct seg){ buf + 4096, 1, true };
	head = add_chain(d, s, 2);
	kick(d);
	wait_used(d, 1);
	assert_int_equal(p[4096], VIRTIO_BLK_S_OK);
	assert_file(d, 4 * 512, p + 16, 512);
}

#define NR 32

static void test_many_in_flight(void **state)
{
	struct drv *d = drv(state);
	struct vreq r[NR] = { 0 };
	uint8_t want[4096];

	for (int i = 0; i < NR; i++)
		blk_req(d, &r[i], VIRTIO_BLK_T_IN, (uint64_t)i * 16, 4096, true);
	kick(d);
	/* Everything is done before the loop runs: one batch, one interrupt. */
	usleep(50000);
	wait_used(d, NR);
	/* The interrupt follows the batch's last push, in the next round. */
	assert_true(RUN_UNTIL(d->loop, d->irqs[QVEC] == 1));
	for (int i = 0; i < 5; i++)
		event_loop_run_once(d->loop, 1);
	assert_int_equal(d->irqs[QVEC], 1);
	for (int i = 0; i < NR; i++) {
		assert_int_equal(status_of(d, &r[i]), VIRTIO_BLK_S_OK);
		assert_int_equal(used_len(d, r[i].head, NR), 4097);
		assert_int_equal(pread(d->fd, want, 4096, (off_t)i * 16 * 512), 4096);
		assert_memory_equal(gptr(d, r[i].data, 4096), want, 4096);
	}
}

/* Backend depth 4: the rest waits in the ring and goes as requests free up. */
static void test_starved(void **state)
{
	struct drv *d = drv(state);
	struct vreq r[NR] = { 0 };
	struct vreq f = { 0 };

	for (int i = 0; i < NR; i++) {
		r[i].data = gmalloc(d, 512);
		pattern(gptr(d, r[i].data, 512), 512, (unsigned)i);
		blk_req(d, &r[i], VIRTIO_BLK_T_OUT, (uint64_t)i, 512, false);
	}
	kick(d);
	wait_used(d, NR);
	assert_int_equal(do_req(d, &f, VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
	for (int i = 0; i < NR; i++) {
		assert_int_equal(status_of(d, &r[i]), VIRTIO_BLK_S_OK);
		assert_file(d, (uint64_t)i * 512, gptr(d, r[i].data, 512), 512);
	}
}

/* Reset with requests in flight: nothing reaches the used ring afterwards;
 * the I/O was over when reset returned; the device is usable at once. */
static void test_reset_in_flight(void **state)
{
	struct drv *d = drv(state);
	struct vreq r[NR] = { 0 }, rd[8] = { 0 };

	for (int i = 0; i < NR; i++) {
		r[i].data = gmalloc(d, 4096);
		pattern(gptr(d, r[i].data, 4096), 4096, (unsigned)i + 3);
		blk_req(d, &r[i], VIRTIO_BLK_T_OUT, (uint64_t)i * 8, 4096, false);
	}
	kick(d);
	pthread_mutex_lock(&d->vdev->lock);
	virtio_set_status(d->vdev, 0);
	pthread_mutex_unlock(&d->vdev->lock);
	/* depth 4: the first four went to the backend and are finished. */
	for (int i = 0; i < 4; i++)
		assert_file(d, (uint64_t)i * 8 * 512, gptr(d, r[i].data, 4096), 4096);
	assert_int_equal(used_idx(d), 0);

	driver_init(d, d->vdev->host_features & ~(1ull << VIRTIO_F_RING_EVENT_IDX));
	for (int i = 0; i < 8; i++)
		blk_req(d, &rd[i], VIRTIO_BLK_T_IN, (uint64_t)i, 512, true);
	kick(d);              /* the stale requests still hold the pool */
	wait_used(d, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(status_of(d, &rd[i]), VIRTIO_BLK_S_OK);
	assert_int_equal(stats(d).writes, 0);
}

/* @NR reads of 4 KiB, read i at sector 8i, into buffers of 0xee. */
static void queue_reads(struct drv *d, struct vreq *r)
{
	for (int i = 0; i < NR; i++) {
		r[i].data = gmalloc(d, 4096);
		memset(gptr(d, r[i].data, 4096), 0xee, 4096);
		blk_req(d, &r[i], VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, true);
	}
}

/* Read i of queue_reads() holds its sectors. */
static void assert_read_data(struct drv *d, const struct vreq *r, int i)
{
	assert_file(d, (uint64_t)i * 8 * 512, gptr(d, r[i].data, 4096), 4096);
}

static uint16_t taken(struct drv *d)
{
	uint16_t n;

	pthread_mutex_lock(&d->vdev->lock);
	n = d->vdev->queues[0].vq.last_avail;
	pthread_mutex_unlock(&d->vdev->lock);
	return n;
}

/* Run the loop a while: whatever is due gets delivered. */
static void run_loop(struct drv *d)
{
	for (int i = 0; i < 20; i++)
		event_loop_run_once(d->loop, 5);
}

/*
 * DMA off (Bus Master clear) with reads in flight and the queue starved
 * (pool 4): the call returns once the data is in; then nothing more is
 * written, no chain taken, no interrupt, however long the loop runs; DMA
 * back on delivers the held completions and the rest is served.
 */
static void test_dma_off_holds_completions(void **state)
{
	struct drv *d = drv(state);
	struct vreq r[NR] = { 0 };

	queue_reads(d, r);
	kick(d);
	assert_int_equal(taken(d), 4);
	virtio_set_dma(d->vdev, false);
	for (int i = 0; i < 4; i++)
		assert_read_data(d, r, i);
	run_loop(d);
	assert_int_equal(used_idx(d), 0);
	assert_int_equal(taken(d), 4);
	assert_int_equal(d->irqs[QVEC], 0);
	for (int i = 0; i < NR; i++)
		assert_int_equal(status_of(d, &r[i]), 0xff);
	kick(d);                            /* a doorbell changes nothing */
	assert_int_equal(taken(d), 4);

	virtio_set_dma(d->vdev, true);
	assert_true(used_idx(d) >= 4);      /* held, delivered at once */
	assert_true(d->irqs[QVEC] >= 1);
	wait_used(d, NR);
	for (int i = 0; i < NR; i++) {
		assert_int_equal(status_of(d, &r[i]), VIRTIO_BLK_S_OK);
		assert_read_data(d, r, i);
	}
	assert_int_equal(stats(d).reads, NR);
}

/* A reset while completions are held drops them and gives their requests
 * back: the whole pool serves the next driver. */
static void test_dma_off_then_reset(void **state)
{
	struct drv *d = drv(state);
	struct vreq r[NR] = { 0 }, rd[8] = { 0 };

	queue_reads(d, r);
	kick(d);
	virtio_set_dma(d->vdev, false);
	run_loop(d);
	pthread_mutex_lock(&d->vdev->lock);
	virtio_set_status(d->vdev, 0);
	pthread_mutex_unlock(&d->vdev->lock);
	virtio_set_dma(d->vdev, true);
	assert_int_equal(used_idx(d), 0);
	assert_int_equal(d->irqs[QVEC], 0);
	driver_init(d, d->vdev->host_features & ~(1ull << VIRTIO_F_RING_EVENT_IDX));
	for (int i = 0; i < 8; i++)
		blk_req(d, &rd[i], VIRTIO_BLK_T_IN, (uint64_t)i, 512, true);
	kick(d);
	wait_used(d, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(status_of(d, &rd[i]), VIRTIO_BLK_S_OK);
}

/*
 * DRIVER_OK cleared without a reset while reads are in flight, then set
 * again: refused, NEEDS_RESET; the late completions write no status byte
 * and no used entry, and no chain is taken twice.  It used to restart the
 * ring at index 0 and serve the same chains again.
 */
static void test_driver_ok_cleared_in_flight(void **state)
{
	struct drv *d = drv(state);
	const uint8_t negotiated = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				   VIRTIO_STATUS_FEATURES_OK;
	struct vreq r[NR] = { 0 }, rd = { 0 };

	queue_reads(d, r);
	kick(d);
	pthread_mutex_lock(&d->vdev->lock);
	virtio_set_status(d->vdev, negotiated);
	virtio_set_status(d->vdev, negotiated | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&d->vdev->lock);
	kick(d);
	run_loop(d);
	for (int i = 0; i < NR; i++)
		assert_int_equal(status_of(d, &r[i]), 0xff);
	assert_int_equal(used_idx(d), 0);
	assert_int_equal(taken(d), 4);
	assert_true(d->vdev->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(d->irqs[CVEC], 1);
	pthread_mutex_lock(&d->vdev->lock);
	virtio_set_status(d->vdev, 0);
	pthread_mutex_unlock(&d->vdev->lock);
	driver_init(d, d->vdev->host_features & ~(1ull << VIRTIO_F_RING_EVENT_IDX));
	assert_int_equal(do_req(d, &rd, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
}

static void take_lock(void *opaque)
{
	struct drv *d = opaque;

	pthread_mutex_lock(&d->vdev->lock);
	pthread_mutex_unlock(&d->vdev->lock);
}

/* The loop thread blocks on vdev->lock (as the transport's notify handler
 * would) while a vCPU resets under it with requests in flight: the reset
 * must not need the loop thread. */
static void test_reset_loop_blocked(void **state)
{
	struct drv *d = drv(state);
	struct vreq r[NR] = { 0 }, rd = { 0 };

	for (int i = 0; i < NR; i++)
		blk_req(d, &r[i], VIRTIO_BLK_T_OUT, (uint64_t)i * 8, 4096, false);
	pthread_mutex_lock(&d->vdev->lock);
	assert_int_equal(event_loop_call(d->loop, take_lock, d), 0);
	usleep(20000);
	d->vdev->ops->queue_notify(d->vdev, 0);
	virtio_set_status(d->vdev, 0);
	pthread_mutex_unlock(&d->vdev->lock);
	assert_int_equal(used_idx(d), 0);
	driver_init(d, d->vdev->host_features & ~(1ull << VIRTIO_F_RING_EVENT_IDX));
	assert_int_equal(do_req(d, &rd, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
}

static void test_event_idx(void **state)
{
	struct drv *d = drv(state);
	struct vreq r = { 0 };
	uint64_t used_event = AVAIL_GPA + 4 + 2 * QSZ;

	assert_true(virtio_has_feature(d->vdev, VIRTIO_F_RING_EVENT_IDX));
	put16(d, used_event, 0);       /* interrupt when entry 0 is used */
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
	assert_true(WAIT_UNTIL(d->irqs[QVEC] == 1));
	put16(d, used_event, 100);     /* not before entry 100 */
	for (int i = 0; i < 4; i++)
		assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
	usleep(10000);
	assert_int_equal(d->irqs[QVEC], 1);
}

/* Destroyed with requests in flight (teardown does it): no leak, no crash. */
static void test_destroy_in_flight(void **state)
{
	struct drv *d = drv(state);
	struct vreq r[NR] = { 0 };

	for (int i = 0; i < NR; i++)
		blk_req(d, &r[i], i % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, (uint64_t)i, 512, i % 2);
	kick(d);
}

/* The file shrank behind the device: the backend's error becomes IOERR. */
static void test_backend_error(void **state)
{
	struct drv *d = drv(state);
	struct vreq r = { 0 };

	assert_int_equal(ftruncate(d->fd, IMG_SIZE - 512), 0);
	assert_int_equal(do_req(d, &r, VIRTIO_BLK_T_IN, SECTORS - 2, 1024, true),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(stats(d).io_errors, 1);
	assert_int_equal(stats(d).bytes_read, 0);
}

static void test_create(void **state)
{
	struct virtio_blk_opts o = { .file = "/nonexistent/kickvm.img" };
	struct event_loop *loop = event_loop_new("test-vblk");
	struct virtio_dev *vdev = (void *)1;
	struct guest_mem gm;
	char path[] = "/tmp/kickvm-vblk-XXXXXX";
	int fd = mkstemp(path);
	uint64_t cap = 0;

	(void)state;
	assert_int_equal(guest_mem_create(&gm, 1u << 20, 3ull << 30), 0);
	assert_int_equal(virtio_blk_create(&gm, loop, NULL, &vdev), -EINVAL);
	assert_null(vdev);
	assert_int_equal(virtio_blk_create(&gm, loop, &o, &vdev), -ENOENT);
	/* 1000 bytes: one whole sector; the rest is not visible. */
	assert_int_equal(ftruncate(fd, 1000), 0);
	o.file = path;
	o.blk.queue_depth = 1000;          /* capped at the queue size */
	assert_int_equal(virtio_blk_create(&gm, loop, &o, &vdev), 0);
	vdev->ops->read_config(vdev, 0, &cap, 8);
	assert_int_equal(le64toh(cap), 1);
	virtio_dev_destroy(vdev);
	virtio_dev_destroy(NULL);
	assert_int_equal(virtio_rng_bytes(NULL), 0);
	guest_mem_destroy(&gm);
	event_loop_free(loop);
	close(fd);
	unlink(path);
}

/* ---- virtio-rng ------------------------------------------------------------- */

static void test_rng(void **state)
{
	struct drv *d = drv(state);
	uint64_t a = gmalloc(d, 100), b = gmalloc(d, 5000), big = gmalloc(d, 128 << 10);
	struct seg two[2] = { { a, 100, true }, { b, 5000, true } };
	struct seg one = { big, 128 << 10, true }, ro = { a, 16, false };
	uint16_t h1, h2, h3;
	uint8_t *p = gptr(d, b, 5000);
	unsigned nonzero = 0;
	struct virtio_blk_stats s;

	assert_int_equal(d->vdev->ops->device_id, VIRTIO_ID_RNG);
	h1 = add_chain(d, two, 2);
	h2 = add_chain(d, &one, 1);
	h3 = add_chain(d, &ro, 1);
	kick(d);
	wait_used(d, 3);
	assert_int_equal(used_len(d, h1, 3), 5100);
	assert_int_equal(used_len(d, h2, 3), 64 << 10);       /* capped per request */
	assert_int_equal(used_len(d, h3, 3), 0);
	for (int i = 0; i < 5000; i++)
		nonzero += p[i] != 0;
	assert_true(nonzero > 4500);
	assert_int_equal(virtio_rng_bytes(d->vdev), 5100 + (64 << 10));
	assert_int_equal(d->irqs[QVEC], 1);
	virtio_blk_get_stats(d->vdev, &s);                    /* not a block device: zeros */
	assert_int_equal(s.reads, 0);
}

/* Without DMA a kick takes nothing and returns (it used to loop for ever
 * on the chain it could not pop); with DMA back the next kick serves it. */
static void test_rng_dma_off(void **state)
{
	struct drv *d = drv(state);
	struct seg s = { gmalloc(d, 64), 64, true };
	uint16_t head;

	virtio_set_dma(d->vdev, false);
	head = add_chain(d, &s, 1);
	kick(d);
	assert_int_equal(used_idx(d), 0);
	assert_int_equal(d->irqs[QVEC], 0);
	virtio_set_dma(d->vdev, true);
	kick(d);
	wait_used(d, 1);
	assert_int_equal(used_len(d, head, 1), 64);
}

static struct cfg c_uring = { .aio = BLK_AIO_IO_URING, .serial = "kickvm-serial-0123456789" },
		  c_threads = { .aio = BLK_AIO_THREADS, .serial = "short" },
		  c_ro = { .aio = BLK_AIO_AUTO, .readonly = true },
		  c_depth4 = { .aio = BLK_AIO_IO_URING, .depth = 4 },
		  c_depth4t = { .aio = BLK_AIO_THREADS, .depth = 4 },
		  c_io_uring = { .aio = BLK_AIO_IO_URING, .iothread = true },
		  c_io_threads = { .aio = BLK_AIO_THREADS, .iothread = true },
		  c_eidx = { .aio = BLK_AIO_IO_URING, .event_idx = true, .iothread = true },
		  c_rng = { .rng = true };

#define T(test, cfg) cmocka_unit_test_prestate_setup_teardown(test, setup, teardown, &cfg)
#define BOTH(test) T(test, c_uring), T(test, c_threads)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_config),
		BOTH(test_write_flush_read),
		T(test_write_flush_read, c_io_uring),
		T(test_write_flush_read, c_io_threads),
		BOTH(test_range_errors),
		BOTH(test_get_id),
		T(test_get_id, c_ro),
		BOTH(test_discard_write_zeroes),
		BOTH(test_unsupported_type),
		T(test_readonly, c_ro),
		BOTH(test_malformed),
		BOTH(test_wrong_direction),
		BOTH(test_layouts),
		BOTH(test_many_in_flight),
		T(test_starved, c_depth4),
		T(test_starved, c_depth4t),
		T(test_reset_in_flight, c_depth4),
		T(test_reset_in_flight, c_depth4t),
		T(test_dma_off_holds_completions, c_depth4t),
		T(test_dma_off_holds_completions, c_depth4),
		T(test_dma_off_then_reset, c_depth4t),
		T(test_driver_ok_cleared_in_flight, c_depth4t),
		T(test_driver_ok_cleared_in_flight, c_depth4),
		T(test_reset_loop_blocked, c_io_uring),
		T(test_reset_loop_blocked, c_io_threads),
		T(test_event_idx, c_eidx),
		BOTH(test_destroy_in_flight),
		T(test_destroy_in_flight, c_io_uring),
		BOTH(test_backend_error),
		cmocka_unit_test(test_create),
		T(test_rng, c_rng),
		T(test_rng_dma_off, c_rng),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
