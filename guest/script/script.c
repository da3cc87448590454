/*
 * The script guest: host tests and `kickvm bench` describe what the guest
 * does in its command line, and every vCPU runs the same script.
 *
 *   script := op { ';' op }            whitespace around tokens is ignored
 *   ncpus=N                            how many vCPUs run (default 1)
 *   cpl0 | cpl3                        privilege of the ops that follow (cpl0)
 *   w1|w2|w4|w8 ADDR DATA COUNT        COUNT MMIO writes of DATA at ADDR
 *   r1|r2|r4|r8 ADDR COUNT [EXPECT]    COUNT MMIO reads (asserting == EXPECT)
 *   o1|o2|o4 PORT DATA COUNT           COUNT port writes (cpl0 only)
 *   i1|i2|i4 PORT COUNT [EXPECT]       COUNT port reads (cpl0 only)
 *   ram COUNT                          COUNT stores to RAM: the loop's own cost
 *   sync N                             UCALL_SYNC(N, cpu)
 *   exit N                             CPU 0 waits for the others, exits with N
 * Numbers are decimal or 0x-hex.  Without `exit`, CPU 0 exits with 0 once
 * every CPU has reached the end.
 *
 * CPL0 is emulated at ~1 us per instruction on our KVM, so CPU 0 parses at
 * CPL3, and each run of ops at the same privilege is one run_user() call.
 */
#include "guest.h"

#define MAX_OPS 64

enum op_kind { OP_WRITE, OP_READ, OP_OUT, OP_IN, OP_RAM, OP_SYNC, OP_EXIT };

struct op {
	uint8_t kind, size, cpl, check;
	uint64_t addr, data, count;
};

static struct op ops[MAX_OPS];
static unsigned nr_ops, ncpus = 1;
static int parsed;              /* set by CPU 0 once ops[] is complete */
static unsigned finished;       /* APs that reached the end of the script */
static volatile uint32_t ram_var;

/* ---- parsing (runs at CPL3) -------------------------------------------------- */

struct parser {
	const char *p, *op_start;
	unsigned cpl;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(struct parser *ps)
{
	while (is_space(*ps->p))
		ps->p++;
}

static void __attribute__((noreturn)) syntax(struct parser *ps, const char *what)
{
	const char *end = ps->op_start;

	while (*end && *end != ';')
		end++;
	guest_assert_fail(__FILE__, __LINE__, "script syntax", "bad op \"%.*s\": %s",
			  (int)(end - ps->op_start), ps->op_start, what);
}

/* A word: letters, digits, '=' is a separator for ncpus=N. */
static int word(struct parser *ps, char *buf, int max)
{
	int n = 0;

	skip_space(ps);
	while (*ps->p && *ps->p != ';' && *ps->p != '=' && !is_space(*ps->p)) {
		if (n < max - 1)
			buf[n++] = *ps->p;
		ps->p++;
	}
	buf[n] = '\0';
	return n;
}

static bool number(struct parser *ps, uint64_t *v)
{
	unsigned base = 10, digits = 0;
	uint64_t x = 0;

	skip_space(ps);
	if (ps->p[0] == '0' && (ps->p[1] == 'x' || ps->p[1] == 'X')) {
		base = 16;
		ps->p += 2;
	}
	for (;; ps->p++, digits++) {
		char c = *ps->p;
		unsigned d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			break;
		if (x > (UINT64_MAX - d) / base)
			return false;   /* overflow */
		x = x * base + d;
	}
	*v = x;
	return digits && (*ps->p == '\0' || *ps->p == ';' || is_space(*ps->p));
}

static uint64_t need(struct parser *ps, const char *name)
{
	uint64_t v;

	if (!number(ps, &v))
		syntax(ps, name);
	return v;
}

static void add(struct parser *ps, struct op op)
{
	if (nr_ops == MAX_OPS)
		syntax(ps, "too many ops");
	op.cpl = (uint8_t)ps->cpl;
	ops[nr_ops++] = op;
}

static void parse_op(struct parser *ps)
{
	char w[16];
	struct op op = { 0 };
	uint64_t v;

	if (!word(ps, w, sizeof(w)))
		return;   /* empty op: "a;;b" or a trailing ';' */
	if (!strcmp(w, "cpl0") || !strcmp(w, "cpl3")) {
		ps->cpl = w[3] - '0';
	} else if (!strcmp(w, "ncpus")) {
		skip_space(ps);
		if (*ps->p == '=')
			ps->p++;
		v = need(ps, "N is not a number");
		if (v < 1 || v > GUEST_MAX_CPUS)
			syntax(ps, "N must be 1-8");
		ncpus = (unsigned)v;
	} else if ((w[0] == 'w' || w[0] == 'r' || w[0] == 'o' || w[0] == 'i') &&
		   (w[1] == '1' || w[1] == '2' || w[1] == '4' || w[1] == '8') && !w[2]) {
		bool pio = w[0] == 'o' || w[0] == 'i', write = w[0] == 'w' || w[0] == 'o';

		op.kind = w[0] == 'w' ? OP_WRITE : w[0] == 'r' ? OP_READ : pio ? (write ? OP_OUT : OP_IN) : 0;
		op.size = (uint8_t)(w[1] - '0');
		if (pio && op.size == 8)
			syntax(ps, "ports take 1, 2 or 4 bytes");
		if (pio && ps->cpl != 0)
			syntax(ps, "port I/O needs cpl0 (CPL3 gets #GP)");
		op.addr = need(ps, pio ? "PORT is not a number" : "ADDR is not a number");
		if (pio && op.addr > 0xffff)
			syntax(ps, "PORT above 0xffff");
		if (write)
			op.data = need(ps, "DATA is not a number");
		op.count = need(ps, "COUNT is not a number");
		skip_space(ps);
		if (!write && *ps->p && *ps->p != ';') {
			op.data = need(ps, "EXPECT is not a number");
			op.check = 1;
		}
		add(ps, op);
	} else if (!strcmp(w, "ram")) {
		op.kind = OP_RAM;
		op.count = need(ps, "COUNT is not a number");
		add(ps, op);
	} else if (!strcmp(w, "sync") || !strcmp(w, "exit")) {
		op.kind = w[0] == 's' ? OP_SYNC : OP_EXIT;
		op.data = need(ps, "N is not a number");
		add(ps, op);
	} else {
		syntax(ps, "unknown op");
	}
	skip_space(ps);
	if (*ps->p && *ps->p != ';')
		syntax(ps, "extra arguments");
}

static long parse(void *arg)
{
	struct parser ps = { .p = arg };

	while (*ps.p) {
		skip_space(&ps);
		ps.op_start = ps.p;
		parse_op(&ps);
		if (*ps.p == ';')
			ps.p++;
	}
	return 0;
}

/* ---- execution: the loops the benchmark measures -------------------------------- */

#define WRITE_LOOP(type)                                                  \
	do {                                                              \
		volatile type *p = (volatile type *)op->addr;             \
		type d = (type)op->data;                                  \
		for (uint64_t n = op->count; n; n--)                      \
			*p = d;                                           \
	} while (0)

#define READ_LOOP(type)                                                   \
	do {                                                              \
		volatile type *p = (volatile type *)op->addr;             \
		for (uint64_t n = op->count; n; n--) {                    \
			type v = *p;                                      \
			if (op->check)                                    \
				GUEST_ASSERT_EQ(v, (type)op->data);       \
		}                                                         \
	} while (0)

static void do_write(const struct op *op)
{
	switch (op->size) {
	case 1: WRITE_LOOP(uint8_t); break;
	case 2: WRITE_LOOP(uint16_t); break;
	case 4: WRITE_LOOP(uint32_t); break;
	case 8: WRITE_LOOP(uint64_t); break;
	}
}

static void do_read(const struct op *op)
{
	switch (op->size) {
	case 1: READ_LOOP(uint8_t); break;
	case 2: READ_LOOP(uint16_t); break;
	case 4: READ_LOOP(uint32_t); break;
	case 8: READ_LOOP(uint64_t); break;
	}
}

/* Per-size loops: at CPL0 every instruction costs ~1 us, so nothing but the
 * access and the count stays inside them. */
#define OUT_LOOP(fn, type)                                                \
	do {                                                              \
		type d = (type)op->data;                                  \
		for (uint64_t n = op->count; n; n--)                      \
			fn(port, d);                                      \
	} while (0)

#define IN_LOOP(fn)                                                       \
	do {                                                              \
		for (uint64_t n = op->count; n; n--) {                    \
			uint32_t v = fn(port);                            \
			if (op->check)                                    \
				GUEST_ASSERT_EQ(v, op->data);             \
		}                                                         \
	} while (0)

static void do_port(const struct op *op)
{
	uint16_t port = (uint16_t)op->addr;

	if (op->kind == OP_OUT) {
		switch (op->size) {
		case 1: OUT_LOOP(outb, uint8_t); break;
		case 2: OUT_LOOP(outw, uint16_t); break;
		case 4: OUT_LOOP(outl, uint32_t); break;
		}
		return;
	}
	switch (op->size) {
	case 1: IN_LOOP(inb); break;
	case 2: IN_LOOP(inw); break;
	case 4: IN_LOOP(inl); break;
	}
}

static void do_ram(const struct op *op)
{
	/* Same shape as w4: the floor under every doorbell loop. */
	volatile uint32_t *p = &ram_var;
	uint32_t d = (uint32_t)op->count;

	for (uint64_t n = op->count; n; n--)
		*p = d;
}

struct span {
	unsigned from, to;
};

static long run_span(void *arg)
{
	const struct span *s = arg;

	for (unsigned i = s->from; i < s->to; i++) {
		const struct op *op = &ops[i];

		switch (op->kind) {
		case OP_WRITE: do_write(op); break;
		case OP_READ:  do_read(op); break;
		case OP_OUT:
		case OP_IN:    do_port(op); break;
		case OP_RAM:   do_ram(op); break;
		case OP_SYNC:  ucall_sync(op->data); break;
		}
	}
	return 0;
}

/* Run the script; returns the index of the `exit` op, or nr_ops. */
static unsigned run_script(void)
{
	unsigned i = 0;

	while (i < nr_ops && ops[i].kind != OP_EXIT) {
		struct span s = { i, i };

		while (s.to < nr_ops && ops[s.to].kind != OP_EXIT && ops[s.to].cpl == ops[i].cpl)
			s.to++;
		if (ops[i].cpl == 3)
			run_user(run_span, &s);
		else
			run_span(&s);
		i = s.to;
	}
	return i;
}

static long wait_parsed(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&parsed, __ATOMIC_ACQUIRE))
		cpu_relax();
	return parsed;
}

static long wait_finished(void *arg)
{
	unsigned others = ncpus - 1;
	uint64_t start = rdtsc();
	bool told = false;

	(void)arg;
	while (__atomic_load_n(&finished, __ATOMIC_ACQUIRE) < others) {
		/* ~10 s at a few GHz: say why we are stuck, once. */
		if (!told && rdtsc() - start > (30ull << 30)) {
			printf("script: cpu 0 still waiting for %u of %u CPUs (ncpus=%u)\n",
			       others - __atomic_load_n(&finished, __ATOMIC_RELAXED), others, ncpus);
			told = true;
		}
		cpu_relax();
	}
	return 0;
}

int guest_main(const char *cmdline)
{
	unsigned end;

	run_user(parse, (void *)cmdline);
	__atomic_store_n(&parsed, 1, __ATOMIC_RELEASE);
	end = run_script();
	if (ncpus > 1)
		run_user(wait_finished, NULL);
	return end < nr_ops ? (int)ops[end].data : 0;
}

void guest_ap_main(unsigned cpu, const char *cmdline)
{
	(void)cpu;
	(void)cmdline;
	/* CPU 0 reports syntax errors; the others wait for its op array. */
	run_user(wait_parsed, NULL);
	run_script();
	__atomic_fetch_add(&finished, 1, __ATOMIC_RELEASE);
}
