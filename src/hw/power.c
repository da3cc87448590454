/*
 * Power and reset registers (what they mean: power.h).  The sleep-control
 * register is laid out as ACPI's hardware-reduced one: SLP_TYP in bits 2-4,
 * SLP_EN in bit 5.  The i8042 is only the part Linux's reboot path touches:
 * a status register that says "input buffer empty" (so kb_wait() does not
 * spin) and the pulse-reset command.
 */
#include <errno.h>
#include <stdlib.h>

#include "hw/power.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"

#define SLP_TYP_SHIFT  2
#define SLP_TYP_MASK   0x7
#define SLP_EN         0x20
#define I8042_CMD_PULSE_RESET 0xfe

struct power {
	struct machine *m;
	struct mem_region *acpi, *i8042_data, *i8042_cmd;
};

static void power_off(struct power *p, const char *how)
{
	log_info_rl("power", "the guest powered off (%s)", how);
	machine_request_stop(p->m, MACHINE_EXIT_POWEROFF);
}

static void reboot(struct power *p, const char *how)
{
	log_info_rl("power", "the guest asked for a reset (%s)%s", how,
		    p->m->cfg.no_reboot ? ": -no-reboot, stopping with status 3" : "");
	machine_request_reset(p->m);
}

static uint64_t acpi_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque; (void)offset; (void)size;
	return 0;  /* no wake status, nothing pending */
}

static void acpi_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct power *p = opaque;
	unsigned typ = (data >> SLP_TYP_SHIFT) & SLP_TYP_MASK;

	(void)size;
	switch (POWER_SLEEP_CONTROL_PORT + offset) {
	case POWER_SLEEP_CONTROL_PORT:
		if (!(data & SLP_EN))
			break;
		if (typ == POWER_S5_SLEEP_TYPE)
			power_off(p, "ACPI S5");
		else
			log_warn_rl("power", "sleep type %u requested: not supported, ignored", typ);
		break;
	case POWER_RESET_PORT:
		if (data == POWER_RESET_VALUE)
			reboot(p, "ACPI reset register");
		break;
	default:  /* sleep status: write-1-to-clear bits we never set */
		break;
	}
}

static uint64_t i8042_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque; (void)offset; (void)size;
	return 0;  /* status: both buffers empty; data: nothing */
}

static void i8042_cmd_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	(void)offset; (void)size;
	if (data == I8042_CMD_PULSE_RESET)
		reboot(opaque, "i8042 pulse reset");
}

static void i8042_data_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	(void)opaque; (void)offset; (void)data; (void)size;
}

static const struct mr_ops acpi_ops = {
	.read = acpi_read, .write = acpi_write, .valid_min = 1, .valid_max = 1,
};
static const struct mr_ops i8042_cmd_ops = {
	.read = i8042_read, .write = i8042_cmd_write, .valid_min = 1, .valid_max = 1,
};
static const struct mr_ops i8042_data_ops = {
	.read = i8042_read, .write = i8042_data_write, .valid_min = 1, .valid_max = 1,
};

int power_create(struct machine *m, struct power **out)
{
	struct power *p = calloc(1, sizeof(*p));
	int ret = -ENOMEM;

	if (!p)
		return -ENOMEM;
	p->m = m;
	p->acpi = mr_new_io("acpi-power", 3, &acpi_ops, p);
	p->i8042_data = mr_new_io("i8042-data", 1, &i8042_data_ops, p);
	p->i8042_cmd = mr_new_io("i8042-cmd", 1, &i8042_cmd_ops, p);
	if (!p->acpi || !p->i8042_data || !p->i8042_cmd)
		goto fail;
	{
		struct mem_region *mrs[3] = { p->acpi, p->i8042_data, p->i8042_cmd };
		const uint16_t ports[3] = { POWER_SLEEP_CONTROL_PORT, POWER_I8042_DATA_PORT,
					    POWER_I8042_CMD_PORT };
		int added = 0;

		memory_transaction_begin();
		for (ret = 0; added < 3 && !ret; added += !ret)
			ret = mr_add_subregion(m->io_root, ports[added], mrs[added], 0);
		while (ret && added-- > 0)
			mr_del_subregion(m->io_root, mrs[added]);
		memory_transaction_commit();
	}
	if (ret)
		goto fail;
	*out = p;
	return 0;
fail:
	if (p->acpi)
		mr_free(p->acpi);
	if (p->i8042_data)
		mr_free(p->i8042_data);
	if (p->i8042_cmd)
		mr_free(p->i8042_cmd);
	free(p);
	return ret;
}

void power_destroy(struct power *p)
{
	if (!p)
		return;
	memory_transaction_begin();
	mr_del_subregion(p->m->io_root, p->acpi);
	mr_del_subregion(p->m->io_root, p->i8042_data);
	mr_del_subregion(p->m->io_root, p->i8042_cmd);
	memory_transaction_commit();
	mr_free(p->acpi);
	mr_free(p->i8042_data);
	mr_free(p->i8042_cmd);
	free(p);
}
