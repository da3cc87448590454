/*
 * mode=hostile (hostile.c): what the guest tells the host test about each
 * malformed-ring case (tests/kvm/test_hostile.c).  Shared by the
 * freestanding guest and the host test, so it needs nothing but stdint.
 *
 * Per case the guest makes three UCALL_REPORTs whose value is the
 * guest-physical address of its struct hostile_report (RAM is identity
 * mapped): "hostile.begin" before it touches the device, "hostile.case"
 * once the device answered (or the case timed out) and the guest checked
 * its memory, and "hostile.recovered" after a reset and good I/O.  At the
 * end "hostile.cases" carries the number of cases run.
 */
#ifndef HOSTILE_ABI_H
#define HOSTILE_ABI_H

#include <stdint.h>

#define HOSTILE_NAME_MAX 40

/* What a case must end in.  Every case also requires: no timeout, nothing
 * written outside the buffers the device was given to write (the arena
 * and its guard pages, the descriptor table, the available ring), used
 * entries only for chains that were made available, with a length within
 * their writable bytes, and good I/O after a reset. */
enum hostile_expect {
	EXPECT_BROKEN = 1,      /* NEEDS_RESET, and no chain completed */
	EXPECT_IOERR,           /* every chain completed with IOERR; no NEEDS_RESET */
	EXPECT_UNSUPP,          /* every chain completed with UNSUPP; no NEEDS_RESET */
	EXPECT_FAILED,          /* NEEDS_RESET, or every chain completed with IOERR/UNSUPP:
				 * never OK (the device may choose which) */
	EXPECT_ALL_OK,          /* every chain completed OK with the right data */
	EXPECT_RNG_BOUNDED,     /* NEEDS_RESET, or every chain completed (the length
				 * check above is the point) */
	EXPECT_QUIET,           /* bus master off: used ring, status bytes, data
				 * buffers and interrupt count do not change */
	EXPECT_SURVIVE,         /* only the checks every case has */
};

/* quiet_changes bits (EXPECT_QUIET). */
#define QUIET_USED_IDX   1u
#define QUIET_STATUS     2u
#define QUIET_DATA       4u
#define QUIET_IRQ        8u

struct hostile_report {
	char name[HOSTILE_NAME_MAX];    /* "blk.desc_loop" */
	uint32_t expect;                /* enum hostile_expect */
	uint32_t index;                 /* 0-based case number */
	/* What the guest saw. */
	uint32_t dev_status;            /* device_status after the case */
	uint32_t timed_out;             /* no answer within the case's timeout */
	uint32_t submitted;             /* chains made available */
	uint32_t used;                  /* used entries returned */
	uint32_t ok, ioerr, unsupp, other;  /* virtio-blk status bytes of those */
	uint32_t bad_used;              /* used entries naming no chain in flight, or
					 * claiming more bytes than were writable */
	uint32_t used_len;              /* length in the first used entry */
	uint32_t data_bad;              /* EXPECT_ALL_OK: requests with wrong data */
	int32_t arena_bad;              /* first arena offset changed outside the
					 * writable buffers, or -1 */
	uint32_t ring_bad;              /* the descriptor table or the available
					 * ring changed under the driver */
	uint32_t quiet_changes;         /* EXPECT_QUIET: QUIET_* bits */
	uint32_t in_flight;             /* EXPECT_QUIET: not yet used at the clear */
	uint32_t setup_requests;        /* good requests the case made before its chains
					 * (the host counts what the device executed) */
	/* The arena's two guard pages, for the host to check on its own. */
	uint64_t guard_lo, guard_hi, guard_len;
	/* After the reset: */
	uint32_t recovered;             /* write + read back + last sector intact */
	uint32_t recover_status;        /* status of the first good request that
					 * failed, or RECOVER_* */
};

/* recover_status when every request completed OK but: */
#define RECOVER_DATA_WRONG   0x100      /* the sectors read back differ */
#define RECOVER_LAST_SECTOR  0x101      /* the disk's last sector changed */
#define RECOVER_RNG_EMPTY    0x102      /* virtio-rng gave no bytes */

/* The byte a guard page holds at guest-physical address @gpa. */
static inline uint8_t hostile_guard(uint64_t gpa)
{
	uint32_t x = (uint32_t)(gpa ^ (gpa >> 11)) * 2654435761u;

	return (uint8_t)(x >> 24);
}

#endif
