/*
 * libFuzzer target: arbitrary bytes as a driver's virtio-blk requests.  The
 * input becomes guest RAM from GPA 0 — the descriptor table, the available
 * ring, and whatever the descriptors point at: request headers (type,
 * sector), data, status bytes, discard segments, indirect tables.  A real
 * device (io_uring or the thread pool on a temp image) serves them: the
 * harness kicks as the transport does (ops->queue_notify under vdev->lock),
 * runs the loop until nothing is in flight, and resets.
 *
 * It must never crash, hang, leak, nor touch memory outside guest RAM (a
 * mapping between PROT_NONE guard pages).  A malformed request breaks the
 * device (NEEDS_RESET and a config interrupt) and nothing else.  After the
 * reset guest RAM is PROT_NONE while the stale completions are delivered:
 * reset must leave no buffer of the old requests to be touched.  When no
 * buffer the device writes overlaps the rings or an indirect table (the
 * harness checks the descriptors first), the ring's end state is checked
 * too: every chain taken, notifications re-enabled, the used index right.
 *
 * Input: struct params, then guest RAM, each byte XORed with a template of
 * well-formed requests (one of each type, direct and indirect, headers and
 * data split across descriptors).  Every byte is still the fuzzer's, but
 * an empty input is a full workload and a small change a near miss: copied
 * raw, a valid request (a readable header and a writable status in RAM, in
 * one chain) was not found in over a million runs.  The rings sit at fixed
 * addresses (queue size 16): descriptors at 0, the available ring at 0x100
 * (its idx comes from params), the used ring — the device's — near the top
 * of RAM.
 */
#include <endian.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "kickvm/guest_mem.h"
#include "kickvm/log.h"
#include "kickvm/virtio_devices.h"
#include "virtio_driver.h"

#define RAM_SIZE   (256ull << 10)    /* small: cleared and protected on every run */
#define IMG_SIZE   (1u << 20)
#define PAGE       4096ull
#define QSZ        16
#define DESC_GPA   0x0ull
#define AVAIL_GPA  0x100ull
#define USED_GPA   (RAM_SIZE - PAGE)
#define DESC_BYTES (16ull * QSZ)
#define AVAIL_BYTES (6ull + 2 * QSZ)
#define USED_BYTES (6ull + 8 * QSZ)
#define CVEC       0
#define QVEC       1
#define SETTLE_NS  (10ull * 1000000000)

/* params.flags */
#define F_EVENT_IDX     0x01
#define F_INDIRECT      0x02
#define F_NO_DZ         0x04      /* the driver does not accept discard/write-zeroes */
#define F_RESET_EARLY   0x08      /* reset with the last round still in flight */
#define F_RESET_IN_LOOP 0x10      /* reset from the loop's thread (drains inline) */

struct params {
	uint8_t flags;
	uint8_t dev;                    /* which of devs[] (engine, read-only, depth) */
	uint8_t avail[2];               /* entries made available in each round */
	uint16_t start;                 /* where the ring indices start (wrap-around) */
} __attribute__((packed));

#define TMPL_RAM   0x2000           /* the template's requests end below */

/*
 * The devices, all on one loop.  Their image is on tmpfs when there is one:
 * a flush costs nothing there (on a disk it halves the runs per second),
 * and tmpfs has no FALLOC_FL_ZERO_RANGE, so write-zeroes takes the
 * backends' fallback of plain writes.  The last device's image is in /tmp,
 * for the native path and real flushes.
 */
static const struct {
	enum blk_aio aio;
	bool readonly;
	unsigned depth;
	bool in_tmp;
} kinds[] = {
	{ BLK_AIO_AUTO, false, 4, false },      /* inline where quick, else io_uring; starves */
	{ BLK_AIO_IO_URING, false, 4, false },  /* every request through the ring */
	{ BLK_AIO_AUTO, true, 4, false },
	{ BLK_AIO_THREADS, false, 4, false },
	{ BLK_AIO_AUTO, false, QSZ, false },    /* the whole ring in flight */
	{ BLK_AIO_AUTO, false, 4, true },
};
#define NR_DEVS (sizeof(kinds) / sizeof(kinds[0]))

static struct guest_mem gm;
static uint8_t *ram;
static struct event_loop *loop;
static struct virtio_dev *devs[NR_DEVS];
static _Atomic unsigned irqs[2];        /* this input's, by vector: config, queue */
static uint8_t tmpl[sizeof(struct params) + TMPL_RAM];

static void fake_notify(struct virtio_dev *vdev, uint16_t vector)
{
	(void)vdev;
	if (vector > QVEC)
		abort();
	atomic_fetch_add(&irqs[vector], 1);
}

static const struct virtio_transport_ops fake_transport = { .notify = fake_notify };

/* ---- the template ---------------------------------------------------------- */

static uint8_t *t_ram(uint64_t gpa)
{
	return tmpl + sizeof(struct params) + gpa;
}

static void t_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		   uint16_t next)
{
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t f = htole16(flags), n = htole16(next);
	uint8_t *d = t_ram(table + 16 * i);

	memcpy(d, &a, 8);
	memcpy(d + 8, &l, 4);
	memcpy(d + 12, &f, 2);
	memcpy(d + 14, &n, 2);
}

static void t_hdr(uint64_t gpa, uint32_t type, uint64_t sector)
{
	struct { uint32_t type, reserved; uint64_t sector; } h = {
		htole32(type), 0, htole64(sector) };

	memcpy(t_ram(gpa), &h, sizeof(h));
}

static void t_seg(uint64_t gpa, uint64_t sector, uint32_t num, uint32_t flags)
{
	struct { uint64_t sector; uint32_t num, flags; } g = {
		htole64(sector), htole32(num), htole32(flags) };

	memcpy(t_ram(gpa), &g, sizeof(g));
}

/* A buffer of a template chain; NEXT is added where another follows. */
struct t_buf {
	uint64_t gpa;
	uint32_t len;
	uint16_t flags;
};

/* The buffers @b as one chain in the table at @table from entry @first on,
 * each linked to the entry after it. */
static void t_chain(uint64_t table, unsigned first, const struct t_buf *b, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		bool more = i + 1 < n;
		uint16_t flags = b[i].flags | (more ? VIRTQ_DESC_F_NEXT : 0);
		uint16_t next = more ? (uint16_t)(first + i + 1) : 0;

		t_desc(table, first + i, b[i].gpa, b[i].len, flags, next);
	}
}

#define T_CHAIN(table, first, ...)                                             \
	t_chain(table, first, (const struct t_buf[]){ __VA_ARGS__ },           \
		sizeof((const struct t_buf[]){ __VA_ARGS__ }) / sizeof(struct t_buf))

/*
 * What an empty input means: nine requests, six in the first round and
 * three in the second, the ring indices wrapping between them.  Headers at
 * 0x200, status bytes at 0x300, indirect tables at 0x700, data in between
 * and up to 0x2000; nothing the device writes overlaps a ring or a table,
 * so the end state is checked.
 */
static void make_template(void)
{
	const uint16_t R = 0, W = VIRTQ_DESC_F_WRITE, I = VIRTQ_DESC_F_INDIRECT;
	static const uint16_t heads[QSZ] = { 0, 3, 5, 7, 9, 11, 13, 14, 15, 0, 3, 5, 7, 13, 14, 15 };
	struct params p = {
		.flags = F_EVENT_IDX | F_INDIRECT, .avail = { 6, 3 }, .start = 0xfffa,
	};

	memcpy(tmpl, &p, sizeof(p));
	/* IN: header, data, status. */
	t_hdr(0x200, VIRTIO_BLK_T_IN, 1);
	T_CHAIN(DESC_GPA, 0, { 0x200, 16, R }, { 0x1000, 1024, W }, { 0x300, 1, W });
	/* OUT: header and data in one buffer. */
	t_hdr(0x400, VIRTIO_BLK_T_OUT, 8);
	T_CHAIN(DESC_GPA, 3, { 0x400, 16 + 512, R }, { 0x301, 1, W });
	/* FLUSH */
	t_hdr(0x210, VIRTIO_BLK_T_FLUSH, 0);
	T_CHAIN(DESC_GPA, 5, { 0x210, 16, R }, { 0x302, 1, W });
	/* GET_ID: the ID and the status in one buffer. */
	t_hdr(0x220, VIRTIO_BLK_T_GET_ID, 0);
	T_CHAIN(DESC_GPA, 7, { 0x220, 16, R }, { 0x800, 64, W });
	/* DISCARD and WRITE_ZEROES (unmap hint): header and segment together. */
	t_hdr(0x230, VIRTIO_BLK_T_DISCARD, 0);
	t_seg(0x240, 16, 8, 0);
	T_CHAIN(DESC_GPA, 9, { 0x230, 32, R }, { 0x303, 1, W });
	t_hdr(0x250, VIRTIO_BLK_T_WRITE_ZEROES, 0);
	t_seg(0x260, 256, 200, 1);      /* 100 KiB: the fallback writes it in two */
	T_CHAIN(DESC_GPA, 11, { 0x250, 32, R }, { 0x304, 1, W });
	/* Indirect IN: header in two pieces, data in two, then the status. */
	t_hdr(0x270, VIRTIO_BLK_T_IN, 100);
	T_CHAIN(0x700, 0, { 0x270, 10, R }, { 0x27a, 6, R }, { 0x1400, 300, W },
		{ 0x1600, 212, W }, { 0x305, 1, W });
	T_CHAIN(DESC_GPA, 13, { 0x700, 5 * 16, I });
	/* Indirect OUT: header, data in two buffers, status. */
	t_hdr(0x280, VIRTIO_BLK_T_OUT, 200);
	T_CHAIN(0x780, 0, { 0x280, 16, R }, { 0x1800, 512, R }, { 0x1c00, 512, R },
		{ 0x306, 1, W });
	T_CHAIN(DESC_GPA, 14, { 0x780, 4 * 16, I });
	/* Indirect IN, the status at the end of the data buffer. */
	t_hdr(0x290, VIRTIO_BLK_T_IN, 2047);
	T_CHAIN(0x7c0, 0, { 0x290, 16, R }, { 0xa00, 513, W });
	T_CHAIN(DESC_GPA, 15, { 0x7c0, 2 * 16, I });
	for (unsigned i = 0; i < QSZ; i++) {
		uint16_t h = htole16(heads[i]);

		memcpy(t_ram(AVAIL_GPA + 4 + 2 * i), &h, 2);
	}
}

/* A temp image of IMG_SIZE in @dir; its path in @path. */
static void make_image(const char *dir, char *path, size_t len)
{
	int fd;

	snprintf(path, len, "%s/kickvm-fuzz-blk-XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, IMG_SIZE) || close(fd))
		abort();
}

static void init(void)
{
	char shm[64], tmp[64];
	uint8_t *p = mmap(NULL, RAM_SIZE + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED || mprotect(p + PAGE, RAM_SIZE, PROT_READ | PROT_WRITE))
		abort();
	log_set_quiet(true);  /* garbage in on purpose: keep the log small */
	make_template();
	ram = p + PAGE;
	fuzz_guest_mem_over(&gm, ram, RAM_SIZE);
	make_image(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", shm, sizeof(shm));
	make_image("/tmp", tmp, sizeof(tmp));
	loop = event_loop_new("fuzz-vblk");
	for (unsigned i = 0; i < NR_DEVS; i++) {
		struct virtio_blk_opts o = {
			.file = kinds[i].in_tmp ? tmp : shm, .serial = "kickvm-fuzz-serial-0123",
			.blk = { .readonly = kinds[i].readonly, .aio = kinds[i].aio,
				 .queue_depth = kinds[i].depth },
		};

		if (!loop)
			abort();
		/* Where io_uring is refused, that device runs on threads. */
		if (virtio_blk_create(&gm, loop, &o, &devs[i]) < 0 &&
		    (o.blk.aio != BLK_AIO_IO_URING ||
		     (o.blk.aio = BLK_AIO_THREADS, virtio_blk_create(&gm, loop, &o, &devs[i]) < 0)))
			abort();
		devs[i]->transport = &fake_transport;
	}
	unlink(shm);
	unlink(tmp);
}

static uint16_t ld16(uint64_t gpa)
{
	return le16toh(__atomic_load_n((uint16_t *)(ram + gpa), __ATOMIC_ACQUIRE));
}

static void st16(uint64_t gpa, uint16_t v)
{
	__atomic_store_n((uint16_t *)(ram + gpa), htole16(v), __ATOMIC_RELEASE);
}

/* Negotiate as a driver and start queue 0 at index @start. */
static void driver_init(struct virtio_dev *vdev, const struct params *p)
{
	static const struct driver_queue q0 = {
		.size = QSZ, .desc = DESC_GPA, .avail = AVAIL_GPA, .used = USED_GPA,
		.vector = QVEC, .config_vector = CVEC,
	};
	struct virtq *vq = &vdev->queues[0].vq;
	uint64_t drop = 0;

	if (!(p->flags & F_EVENT_IDX))
		drop |= 1ull << VIRTIO_F_RING_EVENT_IDX;
	if (!(p->flags & F_INDIRECT))
		drop |= 1ull << VIRTIO_F_RING_INDIRECT_DESC;
	if (p->flags & F_NO_DZ)
		drop |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	pthread_mutex_lock(&vdev->lock);
	if (driver_start_queue0(vdev, vdev->host_features & ~drop, &q0) !=
	    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
	     VIRTIO_STATUS_DRIVER_OK) || vdev->broken)
		abort();
	/* As after @start requests: the used ring says so too. */
	vq->last_avail = vq->used_idx = vq->signalled_used = p->start;
	st16(USED_GPA + 2, p->start);
	if (p->flags & F_EVENT_IDX)
		st16(USED_GPA + 4 + 8 * QSZ, p->start);
	pthread_mutex_unlock(&vdev->lock);
}

static void kick(struct virtio_dev *vdev)
{
	pthread_mutex_lock(&vdev->lock);
	vdev->ops->queue_notify(vdev, 0);
	pthread_mutex_unlock(&vdev->lock);
}

static void reset(void *opaque)
{
	struct virtio_dev *vdev = opaque;

	pthread_mutex_lock(&vdev->lock);
	virtio_set_status(vdev, 0);
	pthread_mutex_unlock(&vdev->lock);
}

/* Chains taken and not yet returned; a broken device returns none. */
static unsigned in_flight(struct virtio_dev *vdev, unsigned depth)
{
	const struct virtq *vq = &vdev->queues[0].vq;
	unsigned n;

	pthread_mutex_lock(&vdev->lock);
	n = (uint16_t)(vq->last_avail - vq->used_idx);
	if (vdev->broken)
		n = 0;
	pthread_mutex_unlock(&vdev->lock);
	/* More would mean a chain returned twice, or requests the pool has not. */
	if (n > depth)
		abort();
	return n;
}

/* Run the loop until nothing is in flight and no handler has work. */
static void settle(struct virtio_dev *vdev, unsigned depth)
{
	uint64_t end = clock_ns() + SETTLE_NS;

	for (;;) {
		bool busy = in_flight(vdev, depth) > 0;
		int n = event_loop_run_once(loop, busy ? 1 : 0);

		if (n < 0)
			abort();
		if (!busy && n == 0)
			return;
		if (clock_ns() > end) {
			fprintf(stderr, "fuzz_virtio_blk: not settled after 10 s, %u in flight\n",
				in_flight(vdev, depth));
			abort();
		}
	}
}

/* ---- may the end state be checked? ---------------------------------------- */

#define MAX_IND 64                      /* entries of an indirect table we look at */

struct range { uint64_t gpa, len; };

static bool in_ram(uint64_t gpa, uint64_t len)
{
	return len && gpa < RAM_SIZE && len <= RAM_SIZE - gpa;
}

static bool overlap(struct range a, struct range b)
{
	return a.gpa < b.gpa + b.len && b.gpa < a.gpa + a.len;
}

static struct range desc_at(uint64_t gpa, uint16_t *flags)
{
	uint64_t addr;
	uint32_t len;

	memcpy(&addr, ram + gpa, 8);
	memcpy(&len, ram + gpa + 8, 4);
	memcpy(flags, ram + gpa + 12, 2);
	*flags = le16toh(*flags);
	return (struct range){ le64toh(addr), le32toh(len) };
}

/*
 * True when nothing the device writes — a buffer marked WRITE, in the table
 * or in an indirect table, or the used ring — overlaps what it reads to find
 * work (the table, the available ring, indirect tables), and no buffer
 * overlaps the used ring.  The device writes nowhere else (only whole
 * buffers inside RAM), so the rings then hold exactly what the harness and
 * the device's ring code put there.
 */
static bool rings_private(void)
{
	static struct range wr[QSZ + QSZ * MAX_IND + 1];
	struct range rd[2 + QSZ] = { { DESC_GPA, DESC_BYTES }, { AVAIL_GPA, AVAIL_BYTES } };
	const struct range used = { USED_GPA, USED_BYTES };
	unsigned nrd = 2, nwr = 0;
	uint16_t flags;

	for (unsigned i = 0; i < QSZ; i++) {
		struct range d = desc_at(DESC_GPA + 16 * i, &flags);

		if (!in_ram(d.gpa, d.len))
			continue;     /* the device refuses it: never written */
		if (flags & VIRTQ_DESC_F_WRITE)
			wr[nwr++] = d;
		if (!(flags & VIRTQ_DESC_F_INDIRECT))
			continue;
		if (d.len > 16 * MAX_IND)
			return false;     /* not worth the walk: unchecked */
		rd[nrd++] = d;
		for (uint64_t off = 0; off + 16 <= d.len; off += 16) {
			struct range e = desc_at(d.gpa + off, &flags);

			if ((flags & VIRTQ_DESC_F_WRITE) && in_ram(e.gpa, e.len))
				wr[nwr++] = e;
		}
	}
	wr[nwr++] = used;
	for (unsigned i = 0; i < nwr; i++) {
		for (unsigned j = 0; j < nrd; j++)
			if (overlap(wr[i], rd[j]))
				return false;
		if (i + 1 < nwr && overlap(wr[i], used))
			return false;
	}
	return true;
}

/* Every chain made available was taken and returned; the driver would be
 * told of new ones (a device idle with notifications off hangs a guest). */
static void check_idle(struct virtio_dev *vdev, bool event_idx)
{
	const struct virtq *vq = &vdev->queues[0].vq;

	pthread_mutex_lock(&vdev->lock);
	if (!vdev->broken) {
		if (virtq_pending(vq) != 0 || vq->used_idx != vq->last_avail ||
		    ld16(USED_GPA + 2) != vq->used_idx)
			abort();
		if (event_idx ? ld16(USED_GPA + 4 + 8 * QSZ) != vq->last_avail
			      : ld16(USED_GPA) != 0)
			abort();
		for (unsigned i = 0; i < QSZ; i++) {
			uint32_t id;

			memcpy(&id, ram + USED_GPA + 4 + 8 * i, 4);
			if (le32toh(id) >= QSZ)
				abort();
		}
	}
	pthread_mutex_unlock(&vdev->lock);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct params p;
	struct virtio_dev *vdev;
	unsigned depth, rounds;
	uint16_t idx;
	bool checkable, broken;

	if (!loop)
		init();
	for (size_t i = 0; i < sizeof(p); i++)
		((uint8_t *)&p)[i] = tmpl[i] ^ (i < size ? data[i] : 0);
	data += size < sizeof(p) ? size : sizeof(p);
	size -= size < sizeof(p) ? size : sizeof(p);
	vdev = devs[p.dev % NR_DEVS];
	depth = kinds[p.dev % NR_DEVS].depth;

	memcpy(ram, t_ram(0), TMPL_RAM);
	memset(ram + TMPL_RAM, 0, RAM_SIZE - TMPL_RAM);
	if (size > USED_GPA)
		size = USED_GPA;
	for (size_t i = 0; i < size; i++)
		ram[i] ^= data[i];
	checkable = rings_private();
	atomic_store(&irqs[CVEC], 0);
	atomic_store(&irqs[QVEC], 0);
	driver_init(vdev, &p);

	/* A second round only when it adds entries. */
	rounds = p.avail[1] ? 2 : 1;
	idx = p.start;
	for (unsigned r = 0; r < rounds; r++) {
		idx = (uint16_t)(idx + p.avail[r]);
		st16(AVAIL_GPA + 2, idx);
		kick(vdev);
		if (r + 1 < rounds || !(p.flags & F_RESET_EARLY))
			settle(vdev, depth);
	}

	pthread_mutex_lock(&vdev->lock);
	broken = vdev->broken;
	if (broken != !!(vdev->status & VIRTIO_STATUS_NEEDS_RESET) ||
	    broken != (atomic_load(&irqs[CVEC]) > 0))
		abort();
	pthread_mutex_unlock(&vdev->lock);
	if (checkable && !(p.flags & F_RESET_EARLY))
		check_idle(vdev, p.flags & F_EVENT_IDX);

	if (p.flags & F_RESET_IN_LOOP) {
		if (event_loop_call_sync(loop, reset, vdev) < 0)
			abort();
	} else {
		reset(vdev);
	}
	if (vdev->status || vdev->broken)
		abort();
	/* Reset returned: no buffer of the old requests may be touched now,
	 * while their stale completions are delivered. */
	if (mprotect(ram, RAM_SIZE, PROT_NONE))
		abort();
	for (unsigned i = 0; event_loop_run_once(loop, 0) > 0; i++)
		if (i == 64)
			abort();      /* handlers busy forever after a reset */
	if (mprotect(ram, RAM_SIZE, PROT_READ | PROT_WRITE))
		abort();
	return 0;
}
