/*
 * kickvm bench blk: 4 KiB random reads and writes on a virtio-blk disk,
 * with host notifiers (ioeventfd) on and off, at one or more queue depths,
 * all in one run.  The virtio guest does the I/O at CPL3 and polls; the host
 * timestamps the guest's two syncs around the measured part and counts
 * userspace exits, doorbell writes (a polling iothread tells the driver it
 * need not ring) and MSI-X interrupts in between.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kickvm/machine.h"
#include "kickvm/pci.h"
#include "kickvm/virtio_devices.h"
#include "kickvm/virtio_pci.h"

#define MAX_QDS  4
#define MAX_RUNS (MAX_QDS * 4)

struct blk_run {
	const char *op;
	unsigned qd;
	bool ioeventfd;
	uint64_t ns, exits, irqs, doorbells, reqs;
};

struct blk_bench {
	const char *image;
	bool direct;
	bool irq;                      /* the guest waits for interrupts, not polls */
	enum blk_aio aio;
	int64_t poll_ns;               /* the iothread's polling window; -1: default */
	const char *aio_used;          /* what the backend reported */
	uint64_t reqs;
	int tsc_khz;
	struct blk_run runs[MAX_RUNS];
	int nr;
};

static uint64_t device_interrupts(struct machine_device *md)
{
	struct pci_device *d = virtio_pci_device(md->vp);
	uint64_t n = 0;

	for (unsigned v = 0; v <= md->vdev->ops->nr_queues; v++)
		n += msix_delivered(d, v);
	return n;
}

/* Doorbell writes that reached the device, by any path. */
static uint64_t doorbells(struct machine_device *md)
{
	struct virtio_pci_doorbells db;

	virtio_pci_doorbells(md->vp, 0, &db);
	return db.doorbells;
}

static uint64_t exits(struct machine *m)
{
	return m->vcpus[0]->stats.exits_mmio + m->vcpus[0]->stats.exits_pio;
}

/* One VM, one disk, one workload. */
static int run_one(struct blk_bench *b, struct blk_run *r)
{
	struct machine_config cfg;
	struct machine_virtio_opts vo;
	struct virtio_blk_opts bo = { .file = b->image };
	struct machine_device *md;
	struct machine_exit ex;
	struct machine *m = NULL;
	const char *why = NULL;
	char cmdline[256];
	uint64_t t0 = 0, e0 = 0, i0 = 0, d0 = 0;
	FILE *devnull = fopen("/dev/null", "w");
	int ret, stage = 0;

	machine_config_defaults(&cfg);
	cfg.console = devnull;
	ret = machine_create(&cfg, &m, &why);
	if (ret < 0)
		goto out;
	machine_virtio_opts_defaults(&vo);
	vo.iothread = "io0";
	vo.ioeventfd = r->ioeventfd;
	if (b->poll_ns >= 0) {
		struct iothread *it;

		ret = machine_iothread(m, vo.iothread, &it);
		if (ret < 0)
			goto out;
		event_loop_set_poll_ns(iothread_loop(it), (uint64_t)b->poll_ns);
	}
	bo.blk.direct = b->direct;
	bo.blk.aio = b->aio;
	ret = machine_add_virtio_blk(m, &bo, &vo, &md, &why);
	if (ret < 0)
		goto out;
	snprintf(cmdline, sizeof(cmdline),
		 "mode=bench op=%s qd=%u reqs=%" PRIu64 " tsc_khz=%d irq=%d", r->op, r->qd,
		 b->reqs, b->tsc_khz, b->irq);
	ret = machine_load_guest(m, bundled_guest("kickvm-virtio.elf"), cmdline, &why);
	if (ret < 0)
		goto out;
	for (;;) {
		ret = machine_vcpu_run_until_event(m, 0, &ex);
		if (ret != MACHINE_UCALL)
			break;
		if (ex.ucall.cmd != UCALL_SYNC)
			continue;
		stage = (int)ex.ucall.args[0];
		if (stage == 1) {
			t0 = clock_ns();
			e0 = exits(m);
			i0 = device_interrupts(md);
			d0 = doorbells(md);
		} else if (stage == 2) {
			r->ns = clock_ns() - t0;
			r->exits = exits(m) - e0 - 1;     /* not the closing sync */
			r->irqs = device_interrupts(md) - i0;
			r->doorbells = doorbells(md) - d0;
			r->reqs = b->reqs;
		}
	}
	if (!b->aio_used) {
		struct virtio_blk_stats st;

		virtio_blk_get_stats(md->vdev, &st);
		b->aio_used = st.inline_io ? (!strcmp(st.aio, "io_uring") ? "io_uring+inline"
									 : "threads+inline")
					   : st.aio;
	}
	if (ret >= 0 && (m->guest_failed || m->exit_status != 0 || stage != 2)) {
		why = "the guest failed";
		ret = -EPROTO;
	}
out:
	if (ret < 0)
		fprintf(stderr, "kickvm: bench blk %s qd=%u ioeventfd=%s: %s (%s)\n", r->op, r->qd,
			r->ioeventfd ? "on" : "off", why ? why : "error", strerror(-ret));
	machine_destroy(m);
	if (devnull)
		fclose(devnull);
	return ret < 0 ? ret : 0;
}

static double req_per_s(const struct blk_run *r)
{
	return r->ns ? (double)r->reqs * 1e9 / (double)r->ns : 0;
}

static const struct blk_run *find(const struct blk_bench *b, const char *op, unsigned qd, bool on)
{
	for (int i = 0; i < b->nr; i++)
		if (!strcmp(b->runs[i].op, op) && b->runs[i].qd == qd && b->runs[i].ioeventfd == on)
			return &b->runs[i];
	return NULL;
}

static void report(const struct blk_bench *b, bool json)
{
	if (json) {
		printf("{\"bench\":\"blk\",\"reqs\":%" PRIu64 ",\"cache\":\"%s\",\"aio\":\"%s\","
		       "\"guest\":\"%s\",\"runs\":[", b->reqs, b->direct ? "none" : "writeback",
		       b->aio_used ? b->aio_used : "?", b->irq ? "interrupts" : "polled");
		for (int i = 0; i < b->nr; i++) {
			const struct blk_run *r = &b->runs[i];

			printf("%s{\"op\":\"%s\",\"qd\":%u,\"ioeventfd\":\"%s\",\"req_per_s\":%.0f,"
			       "\"exits_per_req\":%.3f,\"doorbells_per_req\":%.3f,\"irqs_per_req\":%.3f}",
			       i ? "," : "", r->op, r->qd, r->ioeventfd ? "on" : "off", req_per_s(r),
			       (double)r->exits / (double)r->reqs, (double)r->doorbells / (double)r->reqs,
			       (double)r->irqs / (double)r->reqs);
		}
		printf("]}\n");
		return;
	}
	printf("kickvm bench blk: 4 KiB random I/O, %" PRIu64 " requests per run, cache=%s, "
	       "aio=%s, guest %s\n", b->reqs, b->direct ? "none" : "writeback",
	       b->aio_used ? b->aio_used : "?", b->irq ? "interrupt-driven" : "polled");
	printf("%-10s %4s %10s %12s %12s %14s %12s\n", "op", "qd", "ioeventfd", "req/s",
	       "exits/req", "doorbells/req", "irqs/req");
	for (int i = 0; i < b->nr; i++) {
		const struct blk_run *r = &b->runs[i];

		printf("%-10s %4u %10s %12.0f %12.3f %14.3f %12.3f\n", r->op, r->qd,
		       r->ioeventfd ? "on" : "off", req_per_s(r), (double)r->exits / (double)r->reqs,
		       (double)r->doorbells / (double)r->reqs, (double)r->irqs / (double)r->reqs);
	}
	printf("ioeventfd on / off (same run):\n");
	for (int i = 0; i < b->nr; i++) {
		const struct blk_run *on = &b->runs[i], *off;

		if (!on->ioeventfd || !(off = find(b, on->op, on->qd, false)) || !req_per_s(off))
			continue;
		double x = req_per_s(on) / req_per_s(off), target = on->qd == 1 ? 2.5 : on->qd >= 8 ? 1.5 : 0;

		printf("  %-10s qd %-3u %5.2fx", on->op, on->qd, x);
		if (target > 0)
			printf("  (target >= %.1fx: %s)", target, x >= target ? "met" : "MISSED");
		printf("\n");
	}
}

/* A scratch image of random bytes, so reads touch real data. */
static int make_image(char *path, size_t pathlen, uint64_t size)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char buf[65536];
	int fd;

	snprintf(path, pathlen, "%s/kickvm-bench-XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	for (uint64_t done = 0; done < size; done += sizeof(buf)) {
		if (getrandom(buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) ||
		    write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
			int err = -errno;

			close(fd);
			unlink(path);
			return err ? err : -EIO;
		}
	}
	fsync(fd);
	close(fd);
	return 0;
}

int bench_blk(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "qd", required_argument, NULL, 'q' },
		{ "reqs", required_argument, NULL, 'n' },
		{ "file", required_argument, NULL, 'f' },
		{ "cache", required_argument, NULL, 'c' },
		{ "aio", required_argument, NULL, 'a' },
		{ "irq", no_argument, NULL, 'i' },
		{ "poll-ns", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char *const ops[] = { "randread", "randwrite" };
	struct blk_bench b = { .reqs = 20000, .poll_ns = -1 };
	unsigned qds[MAX_QDS] = { 1, 8 }, nr_qds = 2;
	char scratch[256] = "";
	const char *why = NULL;
	bool json = false, qd_given = false;
	struct machine *probe = NULL;
	struct machine_config cfg;
	uint64_t v;
	int c, ret = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "q:n:f:c:a:ip:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			if (parse_uint(optarg, 1, 128, &v) < 0)
				return usage_error("bench blk ", "bad --qd '%s' (1-128)", optarg);
			if (!qd_given)
				nr_qds = 0;
			qd_given = true;
			if (nr_qds == MAX_QDS)
				return usage_error("bench blk ", "at most %d --qd", MAX_QDS);
			qds[nr_qds++] = (unsigned)v;
			break;
		case 'n':
			if (parse_uint(optarg, 1, 10000000, &b.reqs) < 0)
				return usage_error("bench blk ", "bad --reqs '%s'", optarg);
			break;
		case 'f':
			b.image = optarg;
			break;
		case 'c':
			if (strcmp(optarg, "none") && strcmp(optarg, "writeback"))
				return usage_error("bench blk ", "--cache takes none or writeback");
			b.direct = !strcmp(optarg, "none");
			break;
		case 'a':
			if (!strcmp(optarg, "auto"))
				b.aio = BLK_AIO_AUTO;
			else if (!strcmp(optarg, "io_uring"))
				b.aio = BLK_AIO_IO_URING;
			else if (!strcmp(optarg, "threads"))
				b.aio = BLK_AIO_THREADS;
			else
				return usage_error("bench blk ", "--aio takes auto, io_uring or threads");
			break;
		case 'i':
			b.irq = true;
			break;
		case 'p':
			if (parse_uint(optarg, 0, 1000000000, &v) < 0)
				return usage_error("bench blk ", "bad --poll-ns '%s' (0-1000000000)", optarg);
			b.poll_ns = (int64_t)v;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			printf("usage: kickvm bench blk [--qd N]... [--reqs N] [--file IMG] "
			       "[--cache writeback|none] [--aio auto|io_uring|threads] [--irq] [--poll-ns N] [--json]\n");
			return 0;
		default:
			return usage_error("bench blk ", "bad option");
		}
	}
	if (optind < argc)
		return usage_error("bench blk ", "unexpected argument '%s'", argv[optind]);
	if (b.image && access(b.image, R_OK | W_OK) < 0) {
		fprintf(stderr, "kickvm: cannot use image '%s': %s\n", b.image, strerror(errno));
		return EXIT_USAGE;
	}

	/* The guest times itself with rdtsc when run elsewhere; tell it the rate. */
	machine_config_defaults(&cfg);
	ret = machine_create(&cfg, &probe, &why);
	if (ret < 0) {
		fprintf(stderr, "kickvm: cannot create the machine: %s (%s)\n", why ? why : "error",
			strerror(-ret));
		return 1;
	}
	b.tsc_khz = vcpu_get_tsc_khz(probe->vcpus[0]);
	machine_destroy(probe);
	if (b.tsc_khz <= 0)
		b.tsc_khz = 1000000;
	if (!b.image) {
		ret = make_image(scratch, sizeof(scratch), 64ull << 20);
		if (ret < 0) {
			fprintf(stderr, "kickvm: cannot create a scratch image: %s\n", strerror(-ret));
			return 1;
		}
		b.image = scratch;
	}
	for (unsigned q = 0; q < nr_qds && !ret; q++)
		for (unsigned o = 0; o < 2 && !ret; o++)
			for (int on = 1; on >= 0 && !ret; on--) {
				struct blk_run *r = &b.runs[b.nr++];

				*r = (struct blk_run){ .op = ops[o], .qd = qds[q], .ioeventfd = on };
				ret = run_one(&b, r);
			}
	if (scratch[0])
		unlink(scratch);
	if (ret < 0)
		return 1;
	report(&b, json);
	return 0;
}
