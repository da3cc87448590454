/* Between the files of src/machine: not for device models or the CLI. */
#ifndef KICKVM_MACHINE_INTERNAL_H
#define KICKVM_MACHINE_INTERNAL_H

#include "kickvm/machine.h"

/* Unplug and free every -device, before the iothreads they run on go. */
void machine_remove_devices(struct machine *m);

#endif
