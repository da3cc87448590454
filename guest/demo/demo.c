/*
 * The demo guest `kickvm run` boots: a banner, then writes to every doorbell
 * of the default test-device layout (guest_abi.h) from CPL3 and CPL0, and to
 * the two test ports from CPL0.  The host prints how each path was served.
 */
#include "guest.h"

#define USER_WRITES   1000
#define KERNEL_WRITES 100
#define PORT_WRITES   100

static const struct {
	uint64_t offset;
	const char *name;
} doorbells[] = {
	{ TESTDEV_DB_DATAMATCH, "datamatch ioeventfd" },
	{ TESTDEV_DB_ANY, "any-length ioeventfd" },
	{ TESTDEV_DB_FALLBACK, "userspace ioeventfd" },
	{ TESTDEV_REG_TRAPPED, "trapped register" },
};
#define NR_DOORBELLS (sizeof(doorbells) / sizeof(doorbells[0]))

/* The same tight loop for every path, so the timings compare. */
static uint64_t ring(uint64_t addr, unsigned n)
{
	uint64_t t0 = rdtsc();

	for (unsigned i = 0; i < n; i++)
		mmio_write32(addr, 1);
	return rdtsc() - t0;
}

static void ring_all(unsigned n)
{
	for (unsigned i = 0; i < NR_DOORBELLS; i++) {
		uint64_t addr = KICKVM_TESTDEV_BASE + doorbells[i].offset;
		uint64_t ticks = ring(addr, n);

		printf("  CPL%u: %4u x 4-byte write of 1 to 0x%llx (%s): %llu TSC ticks each\n",
		       guest_cpl(), n, (unsigned long long)addr, doorbells[i].name,
		       (unsigned long long)(ticks / n));
	}
}

static long user_part(void *arg)
{
	(void)arg;
	printf("Hello from CPL%u (user mode: runs natively)\n", guest_cpl());
	ring_all(USER_WRITES);
	return 42;
}

static void ports(void)
{
	static const struct {
		uint16_t offset;
		const char *name;
	} p[] = {
		{ TESTDEV_PORT_DB, "ioeventfd port" },
		{ TESTDEV_PORT_TRAPPED, "trapped port" },
	};

	for (unsigned i = 0; i < 2; i++) {
		uint16_t port = KICKVM_TESTDEV_PORT + p[i].offset;

		for (unsigned n = 0; n < PORT_WRITES; n++)
			outw(port, 1);
		printf("  CPL0: %4u x 2-byte out of 1 to port 0x%x (%s)\n",
		       PORT_WRITES, port, p[i].name);
	}
}

int guest_main(const char *cmdline)
{
	long ret;

	printf("kickvm demo guest on cpu %u: hello from CPL%u (%s), cmdline \"%s\"\n",
	       guest_cpu(), guest_cpl(),
	       guest_on_kickvm() ? "kickvm" : "not kickvm: no system device", cmdline);
	ret = run_user(user_part, NULL);
	GUEST_ASSERT_EQ(ret, 42);
	printf("Back at CPL%u; now the same doorbells from kernel mode (emulated here)\n",
	       guest_cpl());
	ring_all(KERNEL_WRITES);
	ports();
	printf("demo done\n");
	return 0;
}
