/*
 * kickvm bench doorbell: what one guest doorbell write costs on each path,
 * all measured in one run on one machine so that ratios are meaningful on a
 * noisy host.  The script guest does the writes; the host timestamps the
 * ucall that opens and closes each phase and counts exits and eventfd
 * signals in between, so every figure comes with proof of the path taken.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "hw/testdev.h"
#include "kickvm/machine.h"

#define MAX_PHASES 16

/* The doorbells the benchmark wires up on the test device. */
#define DB_TRAPPED   0x000  /* slot 0: no ioeventfd */
#define DB_MATCH     0x100  /* slot 1: KVM ioeventfd, len 4, datamatch 1 */
#define DB_LEN0      0x200  /* slot 2: KVM ioeventfd, len 0 */
#define DB_FALLBACK  0x300  /* slot 3: len 4 datamatch 1, kept in userspace */
#define PORT_TRAPPED 0x0
#define PORT_MATCH   0x2    /* KVM ioeventfd, len 2, datamatch 1 */

struct phase {
	const char *path;
	int cpl;
	char op[96];
	/* measured */
	uint64_t ns, exits, signals, fallback;
};

struct bench {
	struct machine *m;
	uint64_t writes;
	struct phase phases[MAX_PHASES];
	int nr;
};

static void add_phase(struct bench *b, const char *path, int cpl, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void add_phase(struct bench *b, const char *path, int cpl, const char *fmt, ...)
{
	struct phase *p = &b->phases[b->nr++];
	va_list ap;

	p->path = path;
	p->cpl = cpl;
	va_start(ap, fmt);
	vsnprintf(p->op, sizeof(p->op), fmt, ap);
	va_end(ap);
}

static void plan(struct bench *b)
{
	uint64_t n = b->writes, base = KICKVM_TESTDEV_BASE;

	/* Port I/O only from CPL0: CPL3 cannot do it on this KVM. */
	add_phase(b, "trapped-pio", 0, "o2 0x%x 1 %" PRIu64, KICKVM_TESTDEV_PORT + PORT_TRAPPED, n);
	add_phase(b, "ioeventfd-pio", 0, "o2 0x%x 1 %" PRIu64, KICKVM_TESTDEV_PORT + PORT_MATCH, n);
	for (int cpl = 0; cpl <= 3; cpl += 3) {
		add_phase(b, "trapped-mmio", cpl, "w4 0x%" PRIx64 " 1 %" PRIu64, base + DB_TRAPPED, n);
		add_phase(b, "ioeventfd-mmio", cpl, "w4 0x%" PRIx64 " 1 %" PRIu64, base + DB_MATCH, n);
		add_phase(b, "ioeventfd-mmio-len0", cpl, "w4 0x%" PRIx64 " 1 %" PRIu64, base + DB_LEN0, n);
		add_phase(b, "fallback-mmio", cpl, "w4 0x%" PRIx64 " 1 %" PRIu64, base + DB_FALLBACK, n);
		add_phase(b, "coalesced-mmio", cpl, "w4 0x%" PRIx64 " 1 %" PRIu64,
			  (uint64_t)KICKVM_TESTDEV_COALESCED, n);
		add_phase(b, "floor", cpl, "ram %" PRIu64, n);
	}
}

static char *script(const struct bench *b)
{
	size_t cap = 256 + (size_t)b->nr * 128, len = 0;
	char *s = malloc(cap);

	if (!s)
		return NULL;
	len += snprintf(s + len, cap - len, "ncpus=1");
	for (int i = 0; i < b->nr; i++)
		len += snprintf(s + len, cap - len, "; cpl%d; sync %d; %s", b->phases[i].cpl, i + 1,
				b->phases[i].op);
	snprintf(s + len, cap - len, "; sync %d; cpl0; exit 0", b->nr + 1);
	return s;
}

struct snapshot {
	uint64_t t, exits, signals, fallback;
};

static void sum_doorbell(struct testdev_doorbell *db, void *opaque)
{
	struct snapshot *s = opaque;

	s->signals += testdev_doorbell_signals(db);
	s->fallback += db->e.fallback_signals;
}

static void take(struct machine *m, struct snapshot *s)
{
	const struct vcpu_stats *st = &m->vcpus[0]->stats;

	memset(s, 0, sizeof(*s));
	s->t = clock_ns();
	s->exits = st->exits_mmio + st->exits_pio;
	testdev_for_each_doorbell(m->testdev, sum_doorbell, s);
}

static int wire_doorbells(struct testdev *td)
{
	int ret = 0;

	memory_transaction_begin();
	testdev_set_userspace_only(td, DB_FALLBACK, true);
	ret = testdev_add_doorbell(td, false, DB_MATCH, 4, true, 1, NULL);
	if (!ret)
		ret = testdev_add_doorbell(td, false, DB_LEN0, 0, false, 0, NULL);
	if (!ret)
		ret = testdev_add_doorbell(td, false, DB_FALLBACK, 4, true, 1, NULL);
	if (!ret)
		ret = testdev_add_doorbell(td, true, PORT_MATCH, 2, true, 1, NULL);
	memory_transaction_commit();
	return ret;
}

static int measure(struct bench *b)
{
	struct machine_exit ex;
	struct snapshot prev = { 0 }, now;
	int stage = 0, ret;

	for (;;) {
		ret = machine_vcpu_run_until_event(b->m, 0, &ex);
		if (ret != MACHINE_UCALL)
			break;
		if (ex.ucall.cmd != UCALL_SYNC)
			continue;
		take(b->m, &now);
		if (stage >= 1 && stage <= b->nr) {
			struct phase *p = &b->phases[stage - 1];

			p->ns = now.t - prev.t;
			p->exits = now.exits - prev.exits - 1;   /* the closing sync exited */
			p->signals = now.signals - prev.signals;
			p->fallback = now.fallback - prev.fallback;
		}
		stage = (int)ex.ucall.args[0];
		prev = now;
	}
	if (ret < 0)
		return ret;
	if (b->m->guest_failed || b->m->exit_status != 0 || stage != b->nr + 1)
		return -EPROTO;
	return 0;
}

static double ns_per_write(const struct bench *b, const char *path, int cpl)
{
	for (int i = 0; i < b->nr; i++)
		if (!strcmp(b->phases[i].path, path) && b->phases[i].cpl == cpl)
			return (double)b->phases[i].ns / (double)b->writes;
	return 0;
}

struct ratio {
	const char *name, *slow, *fast;
	int cpl;
	double target;
};

static const struct ratio ratios[] = {
	{ "cpl3 trapped-mmio / ioeventfd-mmio", "trapped-mmio", "ioeventfd-mmio", 3, 5 },
	{ "cpl3 trapped-mmio / ioeventfd-mmio-len0", "trapped-mmio", "ioeventfd-mmio-len0", 3, 5 },
	{ "cpl3 trapped-mmio / fallback-mmio", "trapped-mmio", "fallback-mmio", 3, 0 },
	{ "cpl0 trapped-pio / ioeventfd-pio", "trapped-pio", "ioeventfd-pio", 0, 3 },
	{ "cpl0 trapped-mmio / ioeventfd-mmio", "trapped-mmio", "ioeventfd-mmio", 0, 0 },
};

static void report_text(const struct bench *b)
{
	printf("kickvm bench doorbell: %" PRIu64 " writes per path, all in one run\n", b->writes);
	printf("cpl  %-20s %12s %10s %10s %10s\n", "path", "ns/write", "exits", "signals",
	       "fallback");
	for (int i = 0; i < b->nr; i++) {
		const struct phase *p = &b->phases[i];

		printf("%3d  %-20s %12.1f %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n", p->cpl,
		       p->path, (double)p->ns / (double)b->writes, p->exits, p->signals,
		       p->fallback);
	}
	printf("ratios (same run):\n");
	for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
		const struct ratio *r = &ratios[i];
		double fast = ns_per_write(b, r->fast, r->cpl);
		double x = fast > 0 ? ns_per_write(b, r->slow, r->cpl) / fast : 0;

		printf("  %-42s %6.1fx", r->name, x);
		if (r->target > 0)
			printf("  (target >= %.0fx: %s)", r->target, x >= r->target ? "met" : "MISSED");
		printf("\n");
	}
}

static void report_json(const struct bench *b)
{
	printf("{\"bench\":\"doorbell\",\"writes\":%" PRIu64 ",\"paths\":[", b->writes);
	for (int i = 0; i < b->nr; i++) {
		const struct phase *p = &b->phases[i];

		printf("%s{\"path\":\"%s\",\"cpl\":%d,\"ns_per_write\":%.1f,\"userspace_exits\":%"
		       PRIu64 ",\"eventfd_signals\":%" PRIu64 ",\"fallback_signals\":%" PRIu64 "}",
		       i ? "," : "", p->path, p->cpl, (double)p->ns / (double)b->writes, p->exits,
		       p->signals, p->fallback);
	}
	printf("],\"ratios\":{");
	for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
		const struct ratio *r = &ratios[i];
		double fast = ns_per_write(b, r->fast, r->cpl);

		printf("%s\"%s\":%.2f", i ? "," : "", r->name,
		       fast > 0 ? ns_per_write(b, r->slow, r->cpl) / fast : 0);
	}
	printf("}}\n");
}

static int bench_doorbell(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "writes", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct bench b = { .writes = 20000 };
	struct machine_config cfg;
	const char *why = NULL, *guest = bundled_guest("kickvm-script.elf");
	bool json = false;
	char *s = NULL;
	FILE *devnull;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "n:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_uint(optarg, 1, 100000000, &b.writes) < 0)
				return usage_error("bench doorbell ", "bad --writes '%s'", optarg);
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			printf("usage: kickvm bench doorbell [--writes N] [--json]\n"
			       "Cost of one doorbell write on every path, from CPL0 and CPL3.\n");
			return 0;
		default:
			return usage_error("bench doorbell ", "bad option");
		}
	}
	if (optind < argc)
		return usage_error("bench doorbell ", "unexpected argument '%s'", argv[optind]);

	machine_config_defaults(&cfg);
	devnull = fopen("/dev/null", "w");
	cfg.console = devnull;
	ret = machine_create(&cfg, &b.m, &why);
	if (ret < 0) {
		fprintf(stderr, "kickvm: cannot create the machine: %s (%s)\n", why ? why : "error",
			strerror(-ret));
		ret = 1;
		goto out;
	}
	plan(&b);
	s = script(&b);
	ret = s ? wire_doorbells(b.m->testdev) : -ENOMEM;
	if (!ret)
		ret = machine_load_guest(b.m, guest, s, &why);
	if (!ret)
		ret = measure(&b);
	if (ret < 0) {
		fprintf(stderr, "kickvm: bench doorbell failed: %s (%s)\n", why ? why : "run",
			strerror(-ret));
		ret = 1;
		goto out;
	}
	if (json)
		report_json(&b);
	else
		report_text(&b);
out:
	free(s);
	machine_destroy(b.m);
	if (devnull)
		fclose(devnull);
	return ret;
}

int cmd_bench(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("bench ", "which benchmark? (doorbell)");
	if (!strcmp(argv[1], "doorbell"))
		return bench_doorbell(argc - 1, argv + 1);
	if (!strcmp(argv[1], "blk"))
		return bench_blk(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		printf("usage: kickvm bench doorbell [--writes N] [--json]\n"
		       "       kickvm bench blk [--qd N]... [--reqs N] [--file IMG] [--cache writeback|none] [--aio auto|io_uring|threads] [--irq] [--poll-ns N] [--json]\n");
		return 0;
	}
	return usage_error("bench ", "unknown benchmark '%s'", argv[1]);
}
