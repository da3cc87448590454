/*
 * mode=hostile, inside the guest: the runner (hostile.c) and the cases
 * (hostile_cases.c).  A case builds chains by hand with the helpers below
 * in a queue that was just initialised (every descriptor free, indices 0
 * or wherever good I/O left them); the runner makes them available, rings
 * the doorbell, waits and checks.
 *
 * The arena: ARENA_PAGES pages filled with the guard pattern
 * (hostile_guard()); headers, status bytes, indirect tables and data live
 * at the offsets below.  Its first and last page are never handed to the
 * device.  h_desc() records every device-writable buffer that lies inside
 * the arena (between the guard pages); nothing else may change.
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#include "virtio_guest.h"
#include "hostile_abi.h"

#define ARENA_PAGES  64
#define ARENA_BYTES  (ARENA_PAGES * 4096u)
#define A_HDR        0x1000u            /* request header, 16 bytes */
#define A_SEG        0x1100u            /* discard / write-zeroes segment */
#define A_STATUS     0x1800u            /* status byte */
#define A_TABLE      0x2000u            /* indirect tables: 0x3000 bytes */
#define A_TABLE2     0x4000u            /* a second table (nesting) */
#define A_DATA       0x5000u            /* data, up to the last guard page */
#define A_DATA_MAX   (ARENA_BYTES - 4096u - A_DATA)
#define NO_STATUS    0xffffffffu

#define DF_NEXT      VRING_DESC_F_NEXT
#define DF_WRITE     VRING_DESC_F_WRITE
#define DF_INDIRECT  VRING_DESC_F_INDIRECT

struct hcase {
	const char *name;               /* "blk.desc_loop": device.what */
	uint8_t device;                 /* VIRTIO_ID_BLOCK or VIRTIO_ID_RNG */
	uint8_t expect;                 /* enum hostile_expect */
	void (*build)(void);
	/* Optional: instead of waiting for answers to every chain, the case's
	 * own waiting and checks (bus master). */
	void (*await)(struct hostile_report *r);
	/* Optional: checks after the used entries were harvested. */
	void (*check)(struct hostile_report *r);
};

extern const struct hcase hostile_cases[];
extern const unsigned hostile_nr_cases;

/* Set by the runner for the case being built. */
extern uint8_t *arena;
extern struct virtq *hq;                /* the device's request queue */
extern struct vblk *hblk;               /* virtio-blk (good I/O for set-up) */
extern uint64_t h_ram_end;              /* end of the RAM the guest was given */

static inline uint64_t A(uint32_t off)
{
	return (uint64_t)arena + off;
}

/* Write descriptor @i of @table (the ring's or an indirect table). */
void h_desc(struct vring_desc *table, unsigned i, uint64_t addr, uint32_t len,
	    uint16_t flags, uint16_t next);
/* Put @head in the next available-ring slot (made visible by the runner). */
void h_publish(uint16_t head);
/* A chain the device may answer: its status byte at arena offset
 * @status_off (NO_STATUS: none), at most @wlen bytes writable; published. */
void h_chain(uint16_t head, uint32_t status_off, uint32_t wlen);
/* The virtio-blk request header at A_HDR. */
void h_hdr(uint32_t type, uint64_t sector);
/* The usual request: [header @5] -> [@len bytes at @data, @data_flags
 * (+NEXT) @9] -> [status @2], published as a chain. */
void h_blk3(uint32_t type, uint64_t sector, uint64_t data, uint32_t len, uint16_t data_flags);

/* Spin at CPL3 for @ms milliseconds. */
void h_spin_ms(uint64_t ms);
/* Bytes that depend on @sector and @seed: a misplaced sector never matches. */
void h_fill(uint8_t *p, uint32_t len, uint64_t sector, uint32_t seed);
bool h_matches(const uint8_t *p, uint32_t len, uint64_t sector, uint32_t seed);

#endif
