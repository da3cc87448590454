/* Parsing -device and -object (see device_opts.c). */
#ifndef KICKVM_CLI_DEVICE_OPTS_H
#define KICKVM_CLI_DEVICE_OPTS_H

#include <stddef.h>
#include <stdint.h>

#include "kickvm/machine.h"
#include "kickvm/virtio_devices.h"

struct device_spec {
	const char *type;              /* "virtio-blk", "virtio-rng", "vfio-pci" */
	struct virtio_blk_opts blk;
	struct machine_virtio_opts virtio;
	struct machine_vfio_opts vfio;     /* vfio-pci */
	char host[16];                 /* vfio.host points here (canonical BDF) */
	char *buf;                     /* the strings above point into it */
};

/* Parse @arg; on -EINVAL @err says why. device_spec_free() in any case. */
int device_spec_parse(const char *arg, struct device_spec *d, char *err, size_t errlen);
void device_spec_free(struct device_spec *d);
struct object_spec {               /* -object iothread,id=NAME[,poll-max-ns=N] */
	const char *id;
	int64_t poll_ns;               /* the busy-polling window; -1: the default */
	char *buf;                     /* id points into it */
};

/* Parse @arg; on -EINVAL @err says why. object_spec_free() in any case. */
int object_spec_parse(const char *arg, struct object_spec *o, char *err, size_t errlen);
void object_spec_free(struct object_spec *o);

#endif
