/*
 * Guest memory: the only code that turns a guest-physical address into a
 * host pointer.  Every access is bounds-checked against the RAM banks; an
 * address (or a range) that is not entirely inside one bank is -EFAULT, never
 * a host access.  Device models and the loader go through here.
 */
#ifndef KICKVM_GUEST_MEM_H
#define KICKVM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_BANKS 4

struct guest_mem_bank {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
	uint64_t fd_offset;   /* where the bank starts in the memfd */
};

/* The ranges a loader wrote (guest_mem_record_start), merged. */
#define GUEST_MEM_MAX_RANGES 64

struct guest_mem_range {
	uint64_t gpa, len;
};

struct guest_mem_record {
	unsigned nr;
	bool overflow;                /* more ranges than fit: nothing is usable */
	struct guest_mem_range ranges[GUEST_MEM_MAX_RANGES];
};

struct guest_mem {
	int memfd;            /* backs every bank; shareable with device processes */
	uint64_t total;
	unsigned nr_banks;
	struct guest_mem_bank banks[GUEST_MEM_MAX_BANKS];
	struct guest_mem_record *record;  /* while a loader runs, else NULL */
};

/*
 * Create @size bytes of guest RAM in a memfd and map it. Below 4 GiB the RAM
 * stops at @hole_start (the MMIO hole); the rest is placed from 4 GiB up.
 */
int guest_mem_create(struct guest_mem *gm, uint64_t size, uint64_t hole_start);
void guest_mem_destroy(struct guest_mem *gm);

/* Host pointer for [gpa, gpa+len) when it lies inside one bank, else NULL. */
void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
int guest_mem_read(const struct guest_mem *gm, uint64_t gpa, void *buf, size_t len);
int guest_mem_write(const struct guest_mem *gm, uint64_t gpa, const void *buf, size_t len);
/*
 * Recording what the loader writes, so that a machine reset can put the boot
 * image back (a ROM reload, in QEMU's terms) without the files it came from:
 * between start and stop every range handed out by guest_mem_ptr() or
 * written by guest_mem_write() is added to @rec (adjacent and overlapping
 * ranges merged).  One thread only: the loader runs before any vCPU or
 * device thread does.
 */
void guest_mem_record_start(struct guest_mem *gm, struct guest_mem_record *rec);
void guest_mem_record_stop(struct guest_mem *gm);
/* Add [gpa, gpa+len) to @rec (exposed for the unit test). */
void guest_mem_record_add(struct guest_mem_record *rec, uint64_t gpa, uint64_t len);

/* Copy a NUL-terminated string of at most @max-1 characters; -EFAULT when it
 * leaves RAM, -ENAMETOOLONG when no NUL within @max. */
int guest_mem_read_str(const struct guest_mem *gm, uint64_t gpa, char *buf, size_t max);

#endif
