/*
 * kickvm-edu.elf: drives QEMU's educational PCI device "edu" (1234:11e8),
 * on QEMU itself (-device edu) or assigned to kickvm through vfio-pci.
 *
 *   mode=test   [raises=N] [ecam=ADDR]
 *       identification and liveness registers, factorials with their
 *       interrupt, N interrupts raised through the raise register (default
 *       4), DMA guest RAM -> edu buffer -> guest RAM (across a page
 *       boundary, and a part of the buffer to an offset), all with MSI;
 *       every interrupt is counted and must come exactly once.
 *   mode=writes [reg=OFF] [value=V] [count=N] [ecam=ADDR]
 *       write V to register OFF (default 0x04, the liveness register) N
 *       times in a row (default 1000), after one write of ~V; for 0x04,
 *       read back until the register shows ~V.  For a host that performs
 *       those writes itself (a device-write ioeventfd matching V): it
 *       counts its exits against the accesses reported here.
 *
 * The device, as QEMU's docs/specs/edu.rst describes it: BAR0 is 1 MiB of
 * 32-bit registers below 0x80 (4-byte accesses only) and 4/8-byte DMA
 * registers from 0x80; 0x00 reads 0xRRrr00ed (major, minor); 0x04 reads
 * back the complement of what was written; writing 0x08 starts a factorial
 * (status 0x20 bit 0 while computing; bit 7 asks for interrupt 0x1 when
 * done); 0x60 raises an interrupt with the written bits (they collect in
 * 0x24) and 0x64 acknowledges them; DMA src 0x80, dst 0x88, count 0x90,
 * command 0x98 (bit 0 start/busy, bit 1 edu -> RAM, bit 2 interrupt 0x100
 * when done) between RAM and a 4 KiB buffer at 0x40000, with a 28-bit DMA
 * mask.  One MSI vector, no MSI-X.  With MSI every raise sends a message.
 *
 * Every BAR access goes through edu_read()/edu_write(), which count them:
 * the REPORT lines at the end (edu.reads, edu.writes) are exactly the
 * register accesses the guest made, for the host to compare with what it
 * trapped.  Everything after set-up runs at CPL3 and prints from CPL3 only
 * (on kickvm one console exit per character, never a port exit).
 */
#include "guest.h"
#include "cmdline.h"
#include "pci.h"

#define EDU_VENDOR          0x1234
#define EDU_DEVICE          0x11e8
#define EDU_BAR_SIZE        0x100000ull

#define EDU_ID              0x00
#define EDU_LIVENESS        0x04
#define EDU_FACTORIAL       0x08
#define EDU_STATUS          0x20
#define EDU_IRQ_STATUS      0x24
#define EDU_IRQ_RAISE       0x60
#define EDU_IRQ_ACK         0x64
#define EDU_DMA_SRC         0x80
#define EDU_DMA_DST         0x88
#define EDU_DMA_COUNT       0x90
#define EDU_DMA_CMD         0x98

#define EDU_STATUS_COMPUTING 0x01
#define EDU_STATUS_IRQFACT   0x80
#define EDU_DMA_RUN          0x1
#define EDU_DMA_TO_RAM       0x2
#define EDU_DMA_IRQ          0x4
#define EDU_IRQ_FACT         0x001
#define EDU_IRQ_DMA          0x100

#define EDU_BUF             0x40000u
#define EDU_BUF_SIZE        4096u
/* QEMU 7.2's edu refuses (aborts QEMU on) a transfer that reaches the last
 * byte of its buffer (an off-by-one in its range check, fixed later), so the
 * big transfers here stop 64 bytes short. */
#define EDU_DMA_LEN         (EDU_BUF_SIZE - 64)
#define EDU_DMA_LIMIT       (1ull << 28)

#define EDU_VECTOR          0x40
/* Bounds on every wait, so a dead device fails the test instead of hanging
 * it; generous (the lab's device is software-emulated two levels down). */
#define WAIT_CYCLES         60000000000ull

struct args {
	char mode[16];
	uint64_t raises, reg, value, count, ecam;
};

static struct args args = {
	.mode = "test", .raises = 4, .reg = EDU_LIVENESS, .value = 0x5a5af00d, .count = 1000,
};
static uint32_t apic_id;
static uint64_t bar;                    /* BAR0's guest-physical address */
static uint64_t reads, writes, polls;   /* BAR accesses made; polls among the reads */
static uint64_t expected_irqs;
static unsigned step;

/* ---- command line ------------------------------------------------------------------ */

static void parse_kv(void *ctx, const char *k, size_t kn, const char *v, size_t vn)
{
	struct args *a = ctx;
	uint64_t n;

	if (cmdline_key_is(k, kn, "mode")) {
		if (vn >= sizeof(a->mode))
			GUEST_FAIL("command line: mode=%.*s is too long", (int)vn, v);
		memcpy(a->mode, v, vn);
		a->mode[vn] = '\0';
		return;
	}
	if (!cmdline_u64(v, vn, &n))
		GUEST_FAIL("command line: %.*s=%.*s is not a number", (int)kn, k, (int)vn, v);
	if (cmdline_key_is(k, kn, "raises"))
		a->raises = n;
	else if (cmdline_key_is(k, kn, "reg"))
		a->reg = n;
	else if (cmdline_key_is(k, kn, "value"))
		a->value = n;
	else if (cmdline_key_is(k, kn, "count"))
		a->count = n;
	else if (cmdline_key_is(k, kn, "ecam"))
		a->ecam = n;
}

static long parse_args(void *cmdline)
{
	cmdline_for_each(cmdline, parse_kv, &args);
	return 0;
}

/* ---- the device --------------------------------------------------------------------- */

static uint32_t edu_read(uint32_t off)
{
	reads++;
	return mmio_read32(bar + off);
}

static void edu_write(uint32_t off, uint32_t v)
{
	writes++;
	mmio_write32(bar + off, v);
}

static void report(const char *name, uint64_t value)
{
	ucall(UCALL_REPORT, (uint64_t)name, value, 0, 0);
	printf("REPORT %s=%llu\n", name, (unsigned long long)value);
}

static void step_done(const char *what)
{
	step++;
	printf("edu: step %u ok: %s\n", step, what);
	ucall_sync(step);
}

/* Poll register @off until (value & @mask) == @want; returns the value. */
static uint32_t poll_until(uint32_t off, uint32_t mask, uint32_t want, const char *what)
{
	uint64_t start = rdtsc();
	uint32_t v;

	while (((v = edu_read(off)) & mask) != want) {
		polls++;
		if (rdtsc() - start > WAIT_CYCLES)
			GUEST_FAIL("%s: register 0x%02x stays 0x%08x (want 0x%x under mask 0x%x)",
				   what, off, v, want, mask);
		cpu_relax();
	}
	return v;
}

/* The interrupt for @bits: exactly one more message on our vector, @bits
 * in the interrupt status, acknowledged, the status clear again. */
static void expect_irq(uint32_t bits, const char *what)
{
	uint64_t start = rdtsc();

	expected_irqs++;
	while (irq_count(EDU_VECTOR) < expected_irqs) {
		if (rdtsc() - start > WAIT_CYCLES)
			GUEST_FAIL("%s: no interrupt (%llu counted, %llu expected)", what,
				   (unsigned long long)irq_count(EDU_VECTOR),
				   (unsigned long long)expected_irqs);
		cpu_relax();
	}
	GUEST_ASSERT_MSG(irq_count(EDU_VECTOR) == expected_irqs,
			 "%s: %llu interrupts counted, %llu expected", what,
			 (unsigned long long)irq_count(EDU_VECTOR),
			 (unsigned long long)expected_irqs);
	GUEST_ASSERT_EQ(edu_read(EDU_IRQ_STATUS), bits);
	edu_write(EDU_IRQ_ACK, bits);
	GUEST_ASSERT_EQ(edu_read(EDU_IRQ_STATUS), 0);
}

static struct pci_dev *find_edu(void)
{
	const char *src;
	uint64_t ecam = pci_init(args.ecam, &src);
	unsigned n = pci_enumerate();
	struct pci_dev *d = pci_find(EDU_VENDOR, EDU_DEVICE, EDU_DEVICE, 0);
	struct pci_bar *b;

	printf("edu: ECAM at 0x%llx (%s), %u functions on bus 0\n", (unsigned long long)ecam,
	       src, n);
	if (!d)
		GUEST_FAIL("no edu device (%04x:%04x) on bus 0", EDU_VENDOR, EDU_DEVICE);
	b = &d->bars[0];
	printf("edu: 00:%02x.%x, BAR0 at 0x%llx, 0x%llx bytes\n", d->slot, d->fn,
	       (unsigned long long)b->addr, (unsigned long long)b->size);
	GUEST_ASSERT_MSG(b->kind == PCI_BAR_MEM32 || b->kind == PCI_BAR_MEM64,
			 "BAR0 is not a memory BAR (kind %u)", b->kind);
	GUEST_ASSERT_EQ(b->size, EDU_BAR_SIZE);
	bar = b->addr;
	return d;
}

/* ---- mode=test ------------------------------------------------------------------------ */

static void test_registers(void)
{
	static const uint32_t values[] = { 0, 0xffffffff, 0x12345678, 0xdeadbeef, 0x80000001 };
	uint32_t id = edu_read(EDU_ID);

	printf("edu: identification 0x%08x: version %u.%u\n", id, id >> 24, (id >> 16) & 0xff);
	GUEST_ASSERT_MSG((id & 0xffff) == 0x00ed, "identification 0x%08x lacks 0x00ed", id);
	GUEST_ASSERT_MSG(id >> 24 >= 1, "identification 0x%08x: major version 0", id);
	GUEST_ASSERT_EQ(edu_read(EDU_ID), id);          /* read-only, no side effect */
	edu_write(EDU_ID, ~id);
	GUEST_ASSERT_EQ(edu_read(EDU_ID), id);
	step_done("identification register");

	for (unsigned i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		edu_write(EDU_LIVENESS, values[i]);
		GUEST_ASSERT_EQ(edu_read(EDU_LIVENESS), (uint32_t)~values[i]);
		GUEST_ASSERT_EQ(edu_read(EDU_LIVENESS), (uint32_t)~values[i]);
	}
	step_done("liveness register");
}

static void test_factorial(void)
{
	static const uint32_t n[] = { 0, 5, 10, 12 };
	uint32_t want = 1, got;

	edu_write(EDU_STATUS, EDU_STATUS_IRQFACT);
	GUEST_ASSERT_EQ(edu_read(EDU_STATUS) & EDU_STATUS_IRQFACT, EDU_STATUS_IRQFACT);
	for (unsigned i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		want = 1;
		for (uint32_t k = 2; k <= n[i]; k++)
			want *= k;
		edu_write(EDU_FACTORIAL, n[i]);
		poll_until(EDU_STATUS, EDU_STATUS_COMPUTING, 0, "factorial");
		got = edu_read(EDU_FACTORIAL);
		GUEST_ASSERT_MSG(got == want, "%u! came back as %u, not %u", n[i], got, want);
		expect_irq(EDU_IRQ_FACT, "factorial");
	}
	edu_write(EDU_STATUS, 0);
	printf("edu: 12! = %u, with its interrupt\n", want);
	step_done("factorials, one interrupt each");
}

static void test_raise(void)
{
	for (uint64_t i = 0; i < args.raises; i++) {
		uint32_t bits = 0x10000u << (i % 16);

		edu_write(EDU_IRQ_RAISE, bits);
		expect_irq(bits, "raise");
	}
	step_done("interrupts raised by the raise register, one each");
}

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t x = seed;

	for (uint32_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

static void dma(uint32_t src, uint32_t dst, uint32_t len, bool to_ram, const char *what)
{
	uint32_t ram = to_ram ? dst : src;

	GUEST_ASSERT_MSG(ram + (uint64_t)len <= EDU_DMA_LIMIT,
			 "%s: RAM at 0x%x is beyond the edu's 28-bit DMA mask", what, ram);
	edu_write(EDU_DMA_SRC, src);
	edu_write(EDU_DMA_DST, dst);
	edu_write(EDU_DMA_COUNT, len);
	edu_write(EDU_DMA_CMD, EDU_DMA_RUN | EDU_DMA_IRQ | (to_ram ? EDU_DMA_TO_RAM : 0));
	poll_until(EDU_DMA_CMD, EDU_DMA_RUN, 0, what);
	expect_irq(EDU_IRQ_DMA, what);
}

static void test_dma(void)
{
	/* The source straddles a page boundary: the IOMMU must map guest RAM
	 * as one contiguous range, as the guest sees it. */
	uint8_t *src = (uint8_t *)page_alloc(2) + 0x800;
	uint8_t *back = page_alloc(1), *part = page_alloc(1);
	const uint32_t part_off = 0x123, part_len = 200, part_at = 0x10;

	fill(src, EDU_DMA_LEN, 0xed0);
	memset(back, 0xa5, EDU_BUF_SIZE);
	memset(part, 0xa5, EDU_BUF_SIZE);

	dma((uint32_t)(uintptr_t)src, EDU_BUF, EDU_DMA_LEN, false, "DMA RAM -> edu");
	dma(EDU_BUF, (uint32_t)(uintptr_t)back, EDU_DMA_LEN, true, "DMA edu -> RAM");
	for (uint32_t i = 0; i < EDU_BUF_SIZE; i++) {
		uint8_t want = i < EDU_DMA_LEN ? src[i] : 0xa5;

		GUEST_ASSERT_MSG(back[i] == want, "DMA round trip: byte %u is 0x%02x, want 0x%02x",
				 i, back[i], want);
	}
	step_done("DMA of 4032 bytes to the edu and back, data equal, nothing past it");

	dma(EDU_BUF + part_off, (uint32_t)(uintptr_t)(part + part_at), part_len, true,
	    "DMA part of the edu buffer -> RAM");
	for (uint32_t i = 0; i < EDU_BUF_SIZE; i++) {
		bool in = i >= part_at && i < part_at + part_len;
		uint8_t want = in ? src[part_off + i - part_at] : 0xa5;

		GUEST_ASSERT_MSG(part[i] == want, "partial DMA: byte %u is 0x%02x, want 0x%02x%s",
				 i, part[i], want, in ? "" : " (outside the transfer)");
	}
	step_done("DMA of 200 bytes from an offset, nothing written around it");
}

static int test_run(struct pci_dev *d)
{
	pci_enable(d, PCI_CMD_MEM | PCI_CMD_MASTER);
	test_registers();
	if (pci_msi_enable(d, apic_id, EDU_VECTOR))
		GUEST_FAIL("the edu has no MSI capability");
	step_done("MSI enabled");
	test_factorial();
	test_raise();
	test_dma();
	pci_msi_disable(d);
	pci_disable_master(d);
	GUEST_ASSERT_EQ(irq_count(EDU_VECTOR), expected_irqs);
	report("edu.interrupts", irq_count(EDU_VECTOR));
	report("edu.expected_interrupts", expected_irqs);
	report("edu.polls", polls);
	report("edu.reads", reads);
	report("edu.writes", writes);
	printf("KICKVM-EDU: PASS test (%llu interrupts, %llu register reads, %llu writes)\n",
	       (unsigned long long)expected_irqs, (unsigned long long)reads,
	       (unsigned long long)writes);
	return 0;
}

/* ---- mode=writes ------------------------------------------------------------------------ */

static int writes_run(struct pci_dev *d)
{
	uint32_t reg = (uint32_t)args.reg, v = (uint32_t)args.value;

	GUEST_ASSERT_MSG(reg < 0x80 && !(reg & 3), "reg=0x%x: a 4-byte register below 0x80, please",
			 reg);
	pci_enable(d, PCI_CMD_MEM);
	/* One write of another value first: the register must change. */
	edu_write(reg, ~v);
	if (reg == EDU_LIVENESS)
		GUEST_ASSERT_EQ(edu_read(reg), v);
	for (uint64_t i = 0; i < args.count; i++)
		edu_write(reg, v);
	/* A write the host hands to the kernel may land a little later. */
	if (reg == EDU_LIVENESS)
		poll_until(reg, 0xffffffff, ~v, "liveness after the writes");
	report("edu.value_writes", args.count);
	report("edu.polls", polls);
	report("edu.reads", reads);
	report("edu.writes", writes);
	printf("KICKVM-EDU: PASS writes (%llu x 0x%08x to 0x%02x)\n",
	       (unsigned long long)args.count, v, reg);
	return 0;
}

/* ---- entry ---------------------------------------------------------------------------------- */

static long user_main(void *arg)
{
	struct pci_dev *d;

	(void)arg;
	printf("edu: mode=%s on %s\n", args.mode, guest_on_kickvm() ? "kickvm" : "not kickvm");
	d = find_edu();
	step_done("edu found");
	if (!strcmp(args.mode, "test"))
		return test_run(d);
	if (!strcmp(args.mode, "writes"))
		return writes_run(d);
	printf("kickvm-edu: mode=test or mode=writes, please (got \"%s\")\n", args.mode);
	return 2;
}

int guest_main(const char *cmdline)
{
	run_user(parse_args, (void *)cmdline);
	/* CPL0: the APIC and the counting handler; then interrupts on, and
	 * run_user() takes RFLAGS along, so CPL3 waits with them enabled. */
	apic_id = apic_enable();
	irq_set_counter(EDU_VECTOR);
	irq_enable();
	return (int)run_user(user_main, NULL);
}
