/*
 * MSI-X relocation planner: where the guest sees an assigned device's MSI-X
 * table and PBA, and what is left of each physical BAR to pass through.
 *
 * Why relocate.  kickvm emulates the MSI-X table and PBA (every vector is a
 * KVM irqfd), so their pages are trapped.  When the device keeps other
 * registers in those pages, or the host page is larger than the device's own
 * spacing, every access to those registers exits to kickvm.  Relocation moves
 * the table and PBA the guest sees into space of their own, so the physical
 * BAR can be mapped whole and only the emulated structures trap.
 *
 * This file is pure: it takes the six physical BARs, the device's MSI-X
 * capability, the mode (`x-msix-relocation=off|auto|bar0..bar5`) and the host
 * page size, and returns a plan.  It knows nothing of the device model; the
 * model lays out its BARs and its emulated capability from the plan.
 *
 * Offsets are kept in two separately named sets that never mix:
 *   plan->phys   where the DEVICE has its table and PBA (BIR, offset in the
 *                physical BAR).  After relocation nothing emulates it and the
 *                guest never addresses it; the kernel programs it.
 *   plan->guest  what the guest's capability says, where kickvm's emulated
 *                table and PBA live (BIR, offset in the guest-visible BAR).
 * The device's registers in guest BAR i at offset o are physical BAR i at
 * the same offset o, for o < plan->bars[i].phys_size: the physical part of
 * a BAR never moves, the emulated MSI-X is added beyond it.
 *
 * Sizing.  The room the relocated structures take is
 *     entries * 16 + align_up(entries, 64) / 8
 * (table plus PBA, the PBA a whole number of 64-bit words), rounded up to
 * the host page so nothing else shares their pages, then to a power of two
 * because it becomes a BAR or half of one.  The same rounding as QEMU's, so
 * a guest sees the same layout under either VMM.
 *
 * Placement, for an explicit barN:
 *   - an empty slot becomes a new prefetchable memory BAR of that size (the
 *     emulation has no read side effects), 64-bit when the next slot is also
 *     empty, with the table at offset 0;
 *   - a memory BAR the device has grows to max(2 * size, 2 * msix size); the
 *     table starts halfway, on a page of its own, and the device's registers
 *     keep the lower half unchanged;
 *   - the PBA follows the table directly (8-byte aligned by construction).
 * Refused: an I/O BAR; the upper half of a 64-bit BAR; a BAR whose grown
 * size no longer fits its type (a 32-bit BAR must stay below 4 GiB, i.e. at
 * most 2 GiB); a table offset outside the capability's 32-bit offset field.
 *
 * `auto` must not break the guest's driver.  Drivers commonly find their
 * registers by BAR order ("the first memory BAR"); a new BAR in an empty slot
 * in front of the device's own BARs changes what that finds and the driver
 * fails to probe.  So auto:
 *   1. extends a memory BAR the device already has, the one whose growth
 *      adds the least address space (ties: the BAR holding the physical
 *      table, then the lowest index);
 *   2. only when no BAR can grow, adds a BAR in the first empty slot AFTER
 *      the device's last used slot;
 *   3. never uses an empty slot before a used one; when neither 1 nor 2 is
 *      possible it leaves MSI-X where it is (plan->note says why) rather
 *      than fail a device that works unrelocated.
 *
 * Once relocated, the whole physical BAR is passed through (plan->bars[i]
 * .nr_holes is 0): the device's own table and PBA pages included, since the
 * guest no longer addresses them as MSI-X.  Whether those pages are mapped
 * or trapped-and-forwarded is then only a question of what the backend lets
 * kickvm mmap, never of emulation.
 */
#ifndef KICKVM_VFIO_MSIX_RELOC_H
#define KICKVM_VFIO_MSIX_RELOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kickvm/pci.h"   /* PCI_NUM_BARS, PCI_BAR_* type bits */

#define MSIX_ENTRY_SIZE       16
#define MSIX_MAX_ENTRIES      2048

/* x-msix-relocation: off, auto, or an explicit target slot 0..5. */
enum msix_reloc_mode {
	MSIX_RELOC_OFF = -2,
	MSIX_RELOC_AUTO = -1,
	MSIX_RELOC_BAR0 = 0, /* ... MSIX_RELOC_BAR0 + 5 */
};

/* One BAR slot.  @size 0: the slot is empty (or, in a plan's output, the
 * upper half of the 64-bit BAR below it: @upper_half). */
struct msix_reloc_bar {
	uint64_t size;        /* a power of two, or 0 */
	uint8_t type;         /* PCI_BAR_IO, or PCI_BAR_MEM32/MEM64 | PCI_BAR_PREFETCH */
	bool upper_half;      /* output only: holds the high half of BAR i-1 */
};

/* Where an MSI-X table and PBA are: BIR and offset of each. */
struct msix_location {
	unsigned table_bir;
	uint32_t table_offset;
	unsigned pba_bir;
	uint32_t pba_offset;
};

/* A byte range of a BAR. */
struct msix_reloc_range {
	uint64_t offset, size;
};

struct msix_reloc_plan {
	enum msix_reloc_mode mode;   /* as asked */
	bool relocated;              /* the guest's table/PBA are not the device's */
	int target_bar;              /* the BAR that took them; -1 when not relocated */
	bool target_added;           /* ... and it was an empty slot */
	unsigned entries;
	uint32_t table_size;         /* entries * 16 */
	uint32_t pba_size;           /* align_up(entries, 64) / 8 */
	uint64_t msix_size;          /* the rounded room (0 when not relocated) */

	/* PHYSICAL: the device's own table and PBA (physical BAR offsets). */
	struct msix_location phys;
	/* GUEST: what the emulated capability reports and where the emulated
	 * table and PBA are placed (guest BAR offsets). */
	struct msix_location guest;

	/* Per slot, what the guest sees and how it maps onto the device. */
	struct msix_reloc_guest_bar {
		struct msix_reloc_bar bar;   /* size and type the guest sizes */
		/* [0, phys_size) of this guest BAR is physical BAR i at the
		 * same offsets; 0 when the BAR holds only emulated MSI-X. */
		uint64_t phys_size;
		/* Host-page-aligned parts of [0, phys_size) that must stay
		 * trapped because the emulated table or PBA lies over them
		 * (only without relocation).  The rest may be mapped. */
		unsigned nr_holes;
		struct msix_reloc_range holes[2];
		/* The emulated table/PBA in this BAR (guest offsets), size 0
		 * when not here. */
		struct msix_reloc_range table, pba;
	} bars[PCI_NUM_BARS];

	/* Why auto left MSI-X in place, or a warning about an explicit target
	 * in front of the device's BARs, or NULL.  A static string. */
	const char *note;
};

/*
 * Parse the option value: "off", "auto", "bar0" .. "bar5" (lower case, as
 * typed on the command line).  -EINVAL for anything else, with *@why (a
 * static string, may be NULL) saying what is accepted.
 */
int msix_reloc_parse(const char *s, enum msix_reloc_mode *mode, const char **why);

/* "off", "auto", "bar0" .. "bar5". A static string. */
const char *msix_reloc_mode_name(enum msix_reloc_mode mode);

/*
 * The room relocated MSI-X structures of @entries vectors take with host
 * pages of @page_size bytes (a power of two): see the header comment.
 * 0 when @entries is 0 or above MSIX_MAX_ENTRIES.
 */
uint64_t msix_reloc_size(unsigned entries, uint64_t page_size);

/*
 * Plan the guest's view of a device.
 *   @phys_bars: the device's six BAR slots as it reports them (@upper_half
 *     ignored: the slot after a 64-bit BAR must have size 0).
 *   @phys_msix: the device's MSI-X capability, @entries vectors (1..2048).
 *   @mode, @page_size (a power of two, at least 4096).
 * Fills @plan and returns 0; not relocating is a plan too (mode off, or auto
 * with nowhere to go: @plan->note).  Errors, with *@why (a static string,
 * may be NULL) saying what is wrong:
 *   -EINVAL  malformed input (a BAR size not a power of two, a 64-bit BAR in
 *            slot 5, a 32-bit memory BAR above 2 GiB, something in the slot
 *            after a 64-bit BAR, table or PBA outside its BAR or in an I/O BAR, bad
 *            entries or page size), or an explicit target that is an I/O
 *            BAR, the upper half of a 64-bit BAR, or a BAR that cannot grow
 *            (a 32-bit BAR past 2 GiB, a table offset past 32 bits);
 *   -ENOENT  an explicit target on a device without MSI-X (@entries 0).
 * With @entries 0 and mode off or auto the plan is the identity.
 */
int msix_reloc_plan(const struct msix_reloc_bar phys_bars[PCI_NUM_BARS],
		    const struct msix_location *phys_msix, unsigned entries,
		    enum msix_reloc_mode mode, uint64_t page_size,
		    struct msix_reloc_plan *plan, const char **why);

/*
 * One line for the log saying what the plan does, e.g.
 *   "MSI-X (96 vectors) moved from BAR1+0xe000 to BAR1+0x10000, BAR1 64 KiB -> 128 KiB"
 *   "MSI-X (96 vectors) moved from BAR1+0xe000 to BAR5+0x0, new 4 KiB 32-bit BAR5"
 *   "MSI-X (96 vectors) at BAR1+0xe000, not relocated"
 * (with plan->note appended when there is one).  Returns snprintf's value.
 */
int msix_reloc_describe(const struct msix_reloc_plan *plan, char *buf, size_t len);

#endif
