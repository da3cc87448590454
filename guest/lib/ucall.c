/*
 * Talking to the host: ucalls through the system device, asserts, exit.
 * A ucall block lives on the caller's stack; RAM is identity-mapped, so its
 * address is the guest-physical address the host reads it from.
 */
#include "guest.h"
#include "runtime.h"

void ucall(uint64_t cmd, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
	struct kickvm_ucall uc = { .cmd = cmd, .args = { a0, a1, a2, a3 } };

	/* mmio_write64's memory clobber makes the block visible first. */
	mmio_write64(KICKVM_SYSDEV_BASE + SYSDEV_UCALL, (uint64_t)&uc);
}

void ucall_sync(uint64_t stage)
{
	ucall(UCALL_SYNC, stage, guest_cpu(), 0, 0);
}

void ucall_done(void)
{
	ucall(UCALL_DONE, guest_cpu(), 0, 0, 0);
}

void ucall_print(const char *s)
{
	ucall(UCALL_PRINT, (uint64_t)s, 0, 0, 0);
}

static void __attribute__((noreturn)) halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

static long exit_kcall(void *arg)
{
	outl(KICKVM_EXIT_PORT, (uint32_t)(uintptr_t)arg);
	halt_forever();
}

void guest_exit(int status)
{
	mmio_write32(KICKVM_SYSDEV_BASE + SYSDEV_EXIT, (uint32_t)status);
	/* Still running: not kickvm (QEMU's isa-debug-exit listens on the port),
	 * or the host lets this vCPU run on while it stops the others. */
	if (guest_cpl() == 0)
		exit_kcall((void *)(uintptr_t)(uint32_t)status);
	if (!guest_has_sysdev)
		run_kernel(exit_kcall, (void *)(uintptr_t)(uint32_t)status);
	for (;;)
		cpu_relax();
}

/* One report at a time; the text must stay valid while the host reads it. */
static char assert_msg[GUEST_MAX_CPUS][256];

void guest_assert_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	char *msg = NULL;

	if (fmt) {
		va_list ap;

		msg = assert_msg[guest_cpu() % GUEST_MAX_CPUS];
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(assert_msg[0]), fmt, ap);
		va_end(ap);
	}
	printf("guest: assertion failed at %s:%d: %s%s%s\n", file, line, expr,
	       msg ? ": " : "", msg ? msg : "");
	ucall(UCALL_ASSERT, (uint64_t)file, (uint64_t)line, (uint64_t)expr, (uint64_t)msg);
	guest_exit(1);
}
