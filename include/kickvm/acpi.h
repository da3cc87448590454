/*
 * The machine description Linux reads: minimal ACPI, as Firecracker and
 * Cloud Hypervisor give it.  Tables: RSDP -> XSDT -> FADT (hardware-reduced,
 * -> DSDT), MADT, MCFG.
 *
 * Why ACPI and not MP tables: Linux must be able to power off and reboot in a
 * way kickvm sees.  With MP tables only, Linux's poweroff ends in a halt loop
 * that an in-kernel LAPIC keeps inside KVM, invisible to the VMM, and its
 * reboot falls back to a triple fault.  A hardware-reduced FADT gives Linux a
 * sleep-control register (S5 = power off) and a reset register, both plain
 * I/O ports that src/hw/power.c turns into an exit status.  ACPI also carries
 * the ECAM (MCFG) and the PCI host bridge (DSDT), which MP tables cannot.
 */
#ifndef KICKVM_ACPI_H
#define KICKVM_ACPI_H

#include <stdint.h>

struct guest_mem;

/* In the BIOS area (reserved in the e820 map), where Linux also scans for
 * the RSDP when the boot protocol does not hand it over. */
#define ACPI_TABLES_BASE 0xe0000ull
#define ACPI_TABLES_SIZE 0x10000ull

struct acpi_config {
	int nr_cpus;                    /* one LAPIC entry each, APIC id = index */
	uint16_t sleep_control_port;    /* FADT SLEEP_CONTROL_REG (8-bit I/O) */
	uint16_t sleep_status_port;     /* FADT SLEEP_STATUS_REG */
	uint16_t reset_port;            /* FADT RESET_REG */
	uint8_t reset_value;
	uint8_t s5_sleep_type;          /* the DSDT's \_S5 value (SLP_TYP) */
};

/*
 * Build the tables and write them at ACPI_TABLES_BASE; *@rsdp is the RSDP's
 * guest-physical address (for boot_params.acpi_rsdp_addr and the PVH
 * start_info).  -EINVAL for a bad config, -ENOSPC if they do not fit.
 */
int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg, uint64_t *rsdp);

#endif
