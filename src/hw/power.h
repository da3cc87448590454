/*
 * Power and reset: the ACPI sleep-control, sleep-status and reset registers
 * the FADT points Linux to (src/boot/acpi.c), and the i8042 reset line.
 * What the guest asks for through them (include/kickvm/machine.h):
 *   S5 (power off) written to the sleep-control register -> kickvm ends with
 *                                                           MACHINE_EXIT_POWEROFF
 *   the reset value written to the reset register, or the i8042's pulse-reset
 *   command (0xfe to port 0x64)                          -> machine_request_reset():
 *                         a reset in place, or with -no-reboot MACHINE_EXIT_REBOOT
 */
#ifndef KICKVM_HW_POWER_H
#define KICKVM_HW_POWER_H

#include <stdint.h>

struct machine;
struct power;

/* Three byte-wide ports, away from the PCI I/O window and from 0xcf8. */
#define POWER_SLEEP_CONTROL_PORT 0x600
#define POWER_SLEEP_STATUS_PORT  0x601
#define POWER_RESET_PORT         0x602
#define POWER_RESET_VALUE        0x01
/* SLP_TYP of S5, as the DSDT's \_S5 package says. */
#define POWER_S5_SLEEP_TYPE      5
#define POWER_I8042_DATA_PORT    0x60
#define POWER_I8042_CMD_PORT     0x64

int power_create(struct machine *m, struct power **out);
void power_destroy(struct power *p);

#endif
