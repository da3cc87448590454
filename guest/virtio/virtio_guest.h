/*
 * kickvm-virtio.elf: the virtio-pci test and benchmark guest.  main.c
 * parses the command line and finds the devices, test.c is `mode=test`,
 * bench.c is `mode=bench`, hostile.c `mode=hostile`, stream.c `mode=stream`.
 * All run at CPL3
 * (run_user()).
 */
#ifndef VIRTIO_GUEST_H
#define VIRTIO_GUEST_H

#include "guest.h"
#include "pci.h"
#include "virtio.h"

#define MAX_DISKS 4

struct args {
	char mode[16];          /* test | bench | hostile | stream */
	char op[16];            /* randread | randwrite */
	char serial[VIRTIO_BLK_ID_BYTES + 1];
	bool has_serial;
	unsigned qd, disk, qsize;
	uint64_t reqs, tsc_khz, ecam;
	bool irq, no_event_idx;
	bool quiet;             /* quiet=1: no progress lines (console writes exit on kickvm) */
	int indirect;           /* -1: the mode's default */
	uint32_t apic_id;       /* filled at CPL0 when irq=1 */
};

struct devices {
	struct pci_dev *blk[MAX_DISKS];
	unsigned nr_blk;
	struct pci_dev *rng;
};

/* A progress line: dropped with quiet=1, so that a kickvm host test sees
 * no console exits between two syncs. */
extern bool guest_quiet;
#define info(...)                                                              \
	do {                                                                   \
		if (!guest_quiet)                                              \
			printf(__VA_ARGS__);                                   \
	} while (0)

/* main.c */
void find_devices(const struct args *a, struct devices *out);
void virtio_opts_from(const struct args *a, struct virtio_opts *o);
/* UCALL_REPORT(name, value) for the kickvm host, and a "REPORT name=value"
 * line on the console (the only way on QEMU). */
void report(const char *name, uint64_t value);
void report_blk(const struct vblk *b);

/* test.c, bench.c: return the guest's exit status. */
int test_run(const struct args *a, const struct devices *d);
int bench_run(const struct args *a, const struct devices *d);
/* hostile.c: malformed rings case by case (hostile_abi.h). */
int hostile_run(const struct args *a, const struct devices *d);
/* stream.c: boot counting and sequential writes (stream_abi.h). */
int stream_run(const struct args *a, const struct devices *d);

#endif
