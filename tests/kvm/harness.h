/*
 * Guest tests in the style of Linux's KVM selftests: the script guest does
 * the accesses, the test steps its vCPU and asserts on every exit, on
 * eventfd counts and on data.  Without a usable /dev/kvm every test skips
 * with the reason.
 */
#ifndef KICKVM_TEST_HARNESS_H
#define KICKVM_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "hw/testdev.h"
#include "kickvm/machine.h"

/* A machine with @ncpus vCPUs and @mode, or skip() when KVM is unusable. */
struct machine *vm_create(int ncpus, enum ioeventfd_mode mode);
/* Load the script guest with the script printf-formatted from @fmt. */
void vm_load_script(struct machine *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Run @cpu until its next ucall; assert it is SYNC @stage. Exits on the way
 * are dispatched and counted in *@exits (may be NULL). */
void vm_run_to_sync(struct machine *m, int cpu, uint64_t stage, uint64_t *exits);
/* The next @count exits of @cpu must each be an MMIO write of @len bytes of
 * @data at @addr; each is dispatched after the check. */
void vm_expect_mmio_writes(struct machine *m, int cpu, uint64_t addr, unsigned len,
			   uint64_t data, uint64_t count);
/* Same for port writes. */
void vm_expect_pio_writes(struct machine *m, int cpu, uint16_t port, unsigned len,
			  uint64_t data, uint64_t count);
/* Run to the end: the guest must exit with @status. */
void vm_expect_exit(struct machine *m, int cpu, int status);

/* A virtio-blk on iothread "io0" over a new sparse image of @disk_size bytes,
 * whose path goes to @image (at least 64 bytes; the caller unlinks it);
 * @ioeventfd: host notifiers. */
struct machine_device *vm_add_disk(struct machine *m, char *image, uint64_t disk_size,
				   bool ioeventfd);

/* Userspace MMIO+PIO exits of @cpu so far. */
uint64_t vm_exits(struct machine *m, int cpu);

#endif
