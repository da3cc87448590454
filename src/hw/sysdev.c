/*
 * The system device.  Test guests end the VM, print and report assertions
 * through it; it is MMIO so that CPL3 code (which cannot do port I/O on this
 * machine's KVM) can use it too.  The exit port 0xf4 is where QEMU's
 * isa-debug-exit sits, so a guest that writes both ends on either VMM.
 *
 * Everything the guest passes by address is read through guest_mem; an
 * address outside RAM is logged and the ucall dropped, never dereferenced.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "hw/sysdev.h"
#include "hw/uart8250.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"

#define GUEST_STR_MAX 512

struct sysdev {
	struct machine *m;
	struct mem_region *mmio, *exit_port;
	_Atomic uint64_t bad_ucalls;
};

static void read_guest_str(struct sysdev *sd, uint64_t gpa, char *buf, size_t max)
{
	int ret = gpa ? guest_mem_read_str(&sd->m->mem, gpa, buf, max) : 0;

	if (!gpa)
		buf[0] = '\0';
	else if (ret == -EFAULT)
		snprintf(buf, max, "<string at 0x%llx outside RAM>", (unsigned long long)gpa);
	/* -ENAMETOOLONG: keep the truncated string */
}

/* The guest's words in kickvm's log: escaped, so that they cannot forge a
 * line or drive the terminal.  (Its console output, UCALL_PRINT, stays raw:
 * that is the guest's own stream, as a serial port's would be.) */
static void log_guest_assert(const char *file, uint64_t line, const char *expr, const char *msg)
{
	char file_e[LOG_ESCAPED_SIZE(128)], expr_e[LOG_ESCAPED_SIZE(256)];
	char msg_e[LOG_ESCAPED_SIZE(256)];

	log_error_rl("guest", "assertion failed at %s:%llu: %s%s%s",
		     log_escape(file_e, sizeof(file_e), file), (unsigned long long)line,
		     log_escape(expr_e, sizeof(expr_e), expr), msg[0] ? ": " : "",
		     log_escape(msg_e, sizeof(msg_e), msg));
}

static void sysdev_ucall(struct sysdev *sd, uint64_t gpa)
{
	struct kickvm_ucall uc;
	char file[GUEST_STR_MAX], expr[GUEST_STR_MAX], msg[GUEST_STR_MAX];

	if (guest_mem_read(&sd->m->mem, gpa, &uc, sizeof(uc)) < 0) {
		sd->bad_ucalls++;
		log_error_rl("sysdev", "ucall block at 0x%llx is outside guest RAM: ignored",
			  (unsigned long long)gpa);
		return;
	}
	switch (uc.cmd) {
	case UCALL_PRINT:
		read_guest_str(sd, uc.args[0], msg, sizeof(msg));
		for (const char *p = msg; *p; p++)
			uart8250_putc(sd->m->uart, *p);
		break;
	case UCALL_ASSERT:
		read_guest_str(sd, uc.args[0], file, sizeof(file));
		read_guest_str(sd, uc.args[2], expr, sizeof(expr));
		read_guest_str(sd, uc.args[3], msg, sizeof(msg));
		log_guest_assert(file, uc.args[1], expr, msg);
		sd->m->guest_failed = true;
		machine_post_ucall(sd->m, &uc);
		machine_request_stop(sd->m, 1);
		break;
	case UCALL_SYNC:
	case UCALL_DONE:
	case UCALL_REPORT:
		machine_post_ucall(sd->m, &uc);
		break;
	default:
		sd->bad_ucalls++;
		log_error_rl("sysdev", "unknown ucall %llu: ignored", (unsigned long long)uc.cmd);
	}
}

static uint64_t sysdev_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque; (void)offset; (void)size;
	return 0;
}

static void sysdev_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct sysdev *sd = opaque;

	(void)size;
	switch (offset) {
	case SYSDEV_EXIT:
		machine_request_stop(sd->m, (int)(data & 0xff));
		break;
	case SYSDEV_UCALL:
		sysdev_ucall(sd, data);
		break;
	case SYSDEV_PUTC:
		uart8250_putc(sd->m->uart, (char)data);
		break;
	default:
		break;
	}
}

static void exit_port_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct sysdev *sd = opaque;

	(void)offset; (void)size;
	machine_request_stop(sd->m, (int)(data & 0xff));
}

static const struct mr_ops sysdev_ops = {
	.read = sysdev_read, .write = sysdev_write,
	.valid_min = 1, .valid_max = 8,
};

static const struct mr_ops exit_port_ops = {
	.read = sysdev_read, .write = exit_port_write,
	.valid_min = 1, .valid_max = 4,
};

int sysdev_create(struct machine *m, struct sysdev **out)
{
	struct sysdev *sd = calloc(1, sizeof(*sd));
	int ret = -ENOMEM;

	if (!sd)
		return -ENOMEM;
	sd->m = m;
	sd->mmio = mr_new_io("kickvm-sysdev", KICKVM_SYSDEV_SIZE, &sysdev_ops, sd);
	sd->exit_port = mr_new_io("kickvm-exit", 4, &exit_port_ops, sd);
	if (!sd->mmio || !sd->exit_port)
		goto fail;
	ret = mr_add_subregion(m->system_root, KICKVM_SYSDEV_BASE, sd->mmio, 0);
	if (ret < 0)
		goto fail;
	ret = mr_add_subregion(m->io_root, KICKVM_EXIT_PORT, sd->exit_port, 0);
	if (ret < 0) {
		mr_del_subregion(m->system_root, sd->mmio);
		goto fail;
	}
	*out = sd;
	return 0;
fail:
	if (sd->mmio)
		mr_free(sd->mmio);
	if (sd->exit_port)
		mr_free(sd->exit_port);
	free(sd);
	return ret;
}

void sysdev_destroy(struct sysdev *sd)
{
	if (!sd)
		return;
	memory_transaction_begin();
	mr_del_subregion(sd->m->system_root, sd->mmio);
	mr_del_subregion(sd->m->io_root, sd->exit_port);
	memory_transaction_commit();
	mr_free(sd->mmio);
	mr_free(sd->exit_port);
	free(sd);
}

uint64_t sysdev_bad_ucalls(const struct sysdev *sd)
{
	return sd->bad_ucalls;
}
