/* Between the files of src/machine: not for device models or the CLI. */
#ifndef KICKVM_MACHINE_INTERNAL_H
#define KICKVM_MACHINE_INTERNAL_H

#include "kickvm/machine.h"

/* Unplug and free every -device, before the iothreads they run on go. */
void machine_remove_devices(struct machine *m);

/* Pause state: set up, and the wake-up machine_request_stop() gives
 * parked vCPUs (vcpu_loop.c). */
void machine_pause_init(struct machine *m);
void machine_pause_wake(struct machine *m);
/* On a vCPU thread between two runs: park while the machine is paused. */
void machine_park_if_paused(struct machine *m, int cpu);

/* The monitor (monitor.c): tell clients how the machine ended (SHUTDOWN)
 * before machine_run() returns; @host_signal: the stop signal that ended
 * it, 0 if none.  machine_monitor_free() at destruction. */
void machine_monitor_machine_ended(struct machine *m, int host_signal);
void machine_monitor_free(struct machine *m);
/* RESET to the monitor's clients after a reset in place (main loop); no-op
 * without a monitor. */
void machine_monitor_reset_event(struct machine *m, bool guest, const char *reason);

/* The boot image and state a reset puts back (reset.c): the loaders call
 * begin before their first write to guest RAM and end (@loaded: they
 * succeeded) after setting the vCPUs' entry state. */
void machine_boot_record_begin(struct machine *m);
void machine_boot_record_end(struct machine *m, bool loaded);
void machine_boot_image_free(struct machine *m);
/* On a vCPU thread between two runs: if a reset happened since *@seen_gen,
 * restore this vCPU's saved state. */
int machine_vcpu_apply_reset(struct machine *m, int cpu, unsigned *seen_gen);

#endif
