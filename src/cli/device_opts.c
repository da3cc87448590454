/*
 * -device and -object, spelled as QEMU users know them:
 *   -object iothread,id=NAME[,poll-max-ns=N]
 *   -device virtio-blk,file=IMG[,readonly=on][,ioeventfd=on|off][,iothread=NAME]
 *           [,serial=S][,cache=writeback|none][,aio=auto|io_uring|threads][,slot=N]
 *   -device virtio-rng[,ioeventfd=on|off][,iothread=NAME][,slot=N]
 *   -device vfio-pci,host=BDF[,id=ID][,x-msix-relocation=off|auto|bar0..bar5]
 *           [,x-no-mmap=on|off][,ioeventfd=on|off][,slot=N]
 *           [,x-device-ioeventfd=BAR:OFFSET:WIDTH:DATA]...   (repeatable)
 * Everything is parsed and checked before the machine exists, so a typo is
 * exit status 2 with a message, never a half-built VM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/device_opts.h"
#include "kickvm/vfio.h"
#include "kickvm/vfio_pci.h"

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes"))
		*out = true;
	else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* Split "a=b" in place; a key without '=' gets value NULL. */
static char *next_pair(char **cursor, char **value)
{
	char *key = *cursor, *comma, *eq;

	if (!key || !*key)
		return NULL;
	comma = strchr(key, ',');
	if (comma) {
		*comma = '\0';
		*cursor = comma + 1;
	} else {
		*cursor = NULL;
	}
	eq = strchr(key, '=');
	*value = eq ? eq + 1 : NULL;
	if (eq)
		*eq = '\0';
	return key;
}

static int common_opt(struct device_spec *d, const char *key, const char *value, char *err,
		      size_t errlen)
{
	uint64_t v;

	if (!strcmp(key, "ioeventfd")) {
		if (!value || parse_bool(value, &d->virtio.ioeventfd) < 0)
			goto bad;
	} else if (!strcmp(key, "iothread")) {
		if (!value || !*value)
			goto bad;
		d->virtio.iothread = value;
	} else if (!strcmp(key, "slot")) {
		if (!value || parse_uint(value, 1, 31, &v) < 0)
			goto bad;
		d->virtio.slot = (int)v;
	} else {
		snprintf(err, errlen, "%s: unknown option '%s'", d->type, key);
		return -EINVAL;
	}
	return 0;
bad:
	snprintf(err, errlen, "%s: bad value for '%s'", d->type, key);
	return -EINVAL;
}

static int blk_opt(struct device_spec *d, const char *key, const char *value, char *err,
		   size_t errlen)
{
	struct virtio_blk_opts *b = &d->blk;

	if (!strcmp(key, "file")) {
		if (!value || !*value)
			goto bad;
		b->file = value;
	} else if (!strcmp(key, "readonly")) {
		if (!value || parse_bool(value, &b->blk.readonly) < 0)
			goto bad;
	} else if (!strcmp(key, "serial")) {
		if (!value)
			goto bad;
		b->serial = value;
	} else if (!strcmp(key, "cache")) {
		if (value && !strcmp(value, "none"))
			b->blk.direct = true;
		else if (value && !strcmp(value, "writeback"))
			b->blk.direct = false;
		else
			goto bad;
	} else if (!strcmp(key, "aio")) {
		if (value && !strcmp(value, "io_uring"))
			b->blk.aio = BLK_AIO_IO_URING;
		else if (value && !strcmp(value, "threads"))
			b->blk.aio = BLK_AIO_THREADS;
		else if (value && !strcmp(value, "auto"))
			b->blk.aio = BLK_AIO_AUTO;
		else
			goto bad;
	} else {
		return common_opt(d, key, value, err, errlen);
	}
	return 0;
bad:
	snprintf(err, errlen, "virtio-blk: bad value for '%s'", key);
	return -EINVAL;
}

static int parse_relocation(const char *v, int *out)
{
	if (!strcmp(v, "off"))
		*out = VFIO_MSIX_RELOC_OFF;
	else if (!strcmp(v, "auto"))
		*out = VFIO_MSIX_RELOC_AUTO;
	else if (!strncmp(v, "bar", 3) && v[3] >= '0' && v[3] <= '5' && !v[4])
		*out = v[3] - '0';
	else
		return -EINVAL;
	return 0;
}

/* BAR:OFFSET:WIDTH:DATA, numbers in C syntax (0x...); WIDTH in bytes. */
static int parse_device_ioeventfd(const char *value, struct vfio_pci_ioeventfd_spec *s)
{
	char buf[96], *v = buf, *field[4];
	uint64_t n[4];
	static const uint64_t max[4] = { 5, UINT64_MAX - 1, 8, UINT64_MAX - 1 };

	if (snprintf(buf, sizeof(buf), "%s", value) >= (int)sizeof(buf))
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		field[i] = v;
		v = v ? strchr(v, ':') : NULL;
		if (v)
			*v++ = '\0';
	}
	if (v || !field[3])
		return -EINVAL;
	for (int i = 0; i < 4; i++)
		if (parse_uint(field[i], 0, max[i], &n[i]) < 0)
			return -EINVAL;
	if (n[2] != 1 && n[2] != 2 && n[2] != 4 && n[2] != 8)
		return -EINVAL;
	if (n[2] < 8 && n[3] >> (8 * n[2]))
		return -EINVAL;  /* a value the write cannot carry */
	*s = (struct vfio_pci_ioeventfd_spec){ .bar = (unsigned)n[0], .offset = n[1],
					       .width = (unsigned)n[2], .data = n[3] };
	return 0;
}

static int vfio_opt(struct device_spec *d, const char *key, const char *value, char *err,
		    size_t errlen)
{
	struct machine_vfio_opts *o = &d->vfio;
	uint64_t v;

	if (!strcmp(key, "host")) {
		if (!value || vfio_parse_bdf(value, d->host) < 0) {
			snprintf(err, errlen, "vfio-pci: malformed host '%s' (want DDDD:BB:DD.F or "
				 "BB:DD.F, hex, as lspci -D prints it)", value ? value : "");
			return -EINVAL;
		}
		o->host = d->host;
	} else if (!strcmp(key, "id")) {
		if (!value || !*value || strlen(value) >= 32)
			goto bad;
		o->id = value;
	} else if (!strcmp(key, "x-msix-relocation")) {
		if (!value || parse_relocation(value, &o->msix_relocation) < 0)
			goto bad;
	} else if (!strcmp(key, "x-no-mmap")) {
		if (!value || parse_bool(value, &o->no_mmap) < 0)
			goto bad;
	} else if (!strcmp(key, "ioeventfd")) {
		if (!value || parse_bool(value, &o->ioeventfd) < 0)
			goto bad;
	} else if (!strcmp(key, "slot")) {
		if (!value || parse_uint(value, 1, 31, &v) < 0)
			goto bad;
		o->slot = (int)v;
	} else if (!strcmp(key, "x-device-ioeventfd")) {
		if (o->nr_ioeventfds == VFIO_PCI_MAX_STATIC_IOEVENTFDS) {
			snprintf(err, errlen, "vfio-pci: at most %d x-device-ioeventfd",
				 VFIO_PCI_MAX_STATIC_IOEVENTFDS);
			return -EINVAL;
		}
		if (!value || parse_device_ioeventfd(value, &o->ioeventfds[o->nr_ioeventfds]) < 0) {
			snprintf(err, errlen, "vfio-pci: bad x-device-ioeventfd '%s' (want BAR:OFFSET:"
				 "WIDTH:DATA, BAR 0-5, WIDTH 1, 2, 4 or 8 bytes, DATA fitting WIDTH)",
				 value ? value : "");
			return -EINVAL;
		}
		o->nr_ioeventfds++;
	} else {
		snprintf(err, errlen, "vfio-pci: unknown option '%s' (host, id, x-msix-relocation, "
			 "x-no-mmap, ioeventfd, x-device-ioeventfd, slot)", key);
		return -EINVAL;
	}
	return 0;
bad:
	snprintf(err, errlen, "vfio-pci: bad value for '%s'", key);
	return -EINVAL;
}

int device_spec_parse(const char *arg, struct device_spec *d, char *err, size_t errlen)
{
	char *cursor, *key, *value;
	int ret = 0;

	memset(d, 0, sizeof(*d));
	machine_virtio_opts_defaults(&d->virtio);
	machine_vfio_opts_defaults(&d->vfio);
	d->buf = strdup(arg);
	if (!d->buf)
		return -ENOMEM;
	cursor = d->buf;
	key = next_pair(&cursor, &value);
	if (!key || value) {
		snprintf(err, errlen, "-device needs a device type first (virtio-blk, virtio-rng, "
			 "vfio-pci)");
		return -EINVAL;
	}
	d->type = key;
	if (strcmp(d->type, "virtio-blk") && strcmp(d->type, "virtio-rng") &&
	    strcmp(d->type, "vfio-pci")) {
		snprintf(err, errlen, "unknown device '%s' (virtio-blk, virtio-rng, vfio-pci)", d->type);
		return -EINVAL;
	}
	while (!ret && (key = next_pair(&cursor, &value))) {
		if (!strcmp(d->type, "vfio-pci"))
			ret = vfio_opt(d, key, value, err, errlen);
		else if (!strcmp(d->type, "virtio-blk"))
			ret = blk_opt(d, key, value, err, errlen);
		else
			ret = common_opt(d, key, value, err, errlen);
	}
	if (!ret && !strcmp(d->type, "vfio-pci") && !d->vfio.host) {
		snprintf(err, errlen, "vfio-pci needs host=BDF");
		ret = -EINVAL;
	}
	if (!ret && !strcmp(d->type, "virtio-blk") && !d->blk.file) {
		snprintf(err, errlen, "virtio-blk needs file=IMAGE");
		ret = -EINVAL;
	}
	return ret;
}

int object_spec_parse(const char *arg, struct object_spec *o, char *err, size_t errlen)
{
	char *cursor, *key, *value;
	uint64_t ns;

	*o = (struct object_spec){ .poll_ns = -1, .buf = strdup(arg) };
	if (!o->buf)
		return -ENOMEM;
	cursor = o->buf;
	key = next_pair(&cursor, &value);
	if (!key || value || strcmp(key, "iothread")) {
		snprintf(err, errlen, "-object: only 'iothread,id=NAME' is known");
		return -EINVAL;
	}
	while ((key = next_pair(&cursor, &value))) {
		if (!strcmp(key, "id") && value && *value) {
			o->id = value;
		} else if (!strcmp(key, "poll-max-ns") && value) {
			/* QEMU's name; 0 switches polling off. */
			if (parse_uint(value, 0, 1000000000, &ns) < 0) {
				snprintf(err, errlen, "-object iothread: bad poll-max-ns '%s' "
					 "(0-1000000000)", value);
				return -EINVAL;
			}
			o->poll_ns = (int64_t)ns;
		} else {
			snprintf(err, errlen, "-object iothread: takes id=NAME[,poll-max-ns=N] only");
			return -EINVAL;
		}
	}
	if (!o->id) {
		snprintf(err, errlen, "-object iothread needs id=NAME");
		return -EINVAL;
	}
	return 0;
}

void object_spec_free(struct object_spec *o)
{
	free(o->buf);
	o->buf = NULL;
}

void device_spec_free(struct device_spec *d)
{
	free(d->buf);
	d->buf = NULL;
}
