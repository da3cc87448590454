/*
 * The doorbell test device: registers a guest rings at will, each reachable
 * by any of kickvm's paths, with counters that say exactly which path every
 * write took.  Used by `kickvm run` (default layout, guest_abi.h), the guest
 * tests and `kickvm bench doorbell`.
 *
 *  - an MMIO page at KICKVM_TESTDEV_BASE made of 16 slots of 0x100 bytes,
 *    each its own region ("testdev.slotN") so that one slot can be kept on
 *    the userspace path while the others use KVM;
 *  - a coalesced MMIO page at KICKVM_TESTDEV_COALESCED;
 *  - KICKVM_TESTDEV_NR_PORTS I/O ports at KICKVM_TESTDEV_PORT.
 * A write that reaches a callback (no doorbell matched) counts as trapped.
 */
#ifndef KICKVM_HW_TESTDEV_H
#define KICKVM_HW_TESTDEV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kickvm/event.h"

#define TESTDEV_SLOTS      16
#define TESTDEV_SLOT_SIZE  0x100
#define TESTDEV_DOORBELLS  32

struct machine;
struct testdev;

struct testdev_doorbell {
	struct testdev *td;
	bool in_use;
	bool pio;
	uint64_t offset;           /* in the MMIO page, or port offset */
	unsigned len;
	bool match_data;
	uint64_t data;
	char name[32];
	struct event_notifier e;
	_Atomic uint64_t handled;  /* signals its handler consumed */
};

/* Create the device; doorbell handlers run in @loop. */
int testdev_create(struct machine *m, struct event_loop *loop, struct testdev **out);
void testdev_destroy(struct testdev *td);

/* Add a doorbell (an ioeventfd) at @offset of the MMIO page, or at port
 * KICKVM_TESTDEV_PORT + @offset when @pio. Takes effect at once (its own
 * transaction, or the caller's). */
int testdev_add_doorbell(struct testdev *td, bool pio, uint64_t offset, unsigned len,
			 bool match_data, uint64_t data, struct testdev_doorbell **out);
/* Delete it: deregistered, then its handler runs once more to collect
 * signals still pending, then the eventfd is closed. */
void testdev_del_doorbell(struct testdev_doorbell *db);
/* Keep the doorbells of the MMIO slot holding @offset on the userspace path. */
void testdev_set_userspace_only(struct testdev *td, uint64_t offset, bool on);
/* Move the MMIO page (as a guest reprogramming a BAR would). */
void testdev_move(struct testdev *td, uint64_t base);
/* The layout `kickvm run` gives guests (guest_abi.h TESTDEV_*). */
int testdev_setup_defaults(struct testdev *td);

/* Every signal the doorbell received: kvm + fallback. */
uint64_t testdev_doorbell_signals(const struct testdev_doorbell *db);
/* Writes that reached the callbacks (trapped, no doorbell matched). */
uint64_t testdev_trapped_writes(const struct testdev *td, bool pio, uint64_t offset);
uint64_t testdev_last_value(const struct testdev *td, bool pio, uint64_t offset);
uint64_t testdev_coalesced_writes(const struct testdev *td);
/* Call @fn for each doorbell in use. */
void testdev_for_each_doorbell(struct testdev *td,
			       void (*fn)(struct testdev_doorbell *db, void *opaque), void *opaque);

#endif
