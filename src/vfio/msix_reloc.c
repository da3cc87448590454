/*
 * MSI-X relocation planner (rules in msix_reloc.h).
 *
 * The plan is built in three steps: check the device's description, pick
 * the target slot (explicit or auto), then lay out the guest's BARs.  The
 * physical location is copied once into plan->phys and never written again;
 * everything the guest sees is computed into plan->guest and plan->bars.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vfio/msix_reloc.h"

#define GIB (UINT64_C(1) << 30)

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t align_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

static uint64_t pow2_ceil(uint64_t v)
{
	uint64_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static bool is_io(const struct msix_reloc_bar *b)
{
	return b->type & PCI_BAR_IO;
}

static bool is_mem64(const struct msix_reloc_bar *b)
{
	return !is_io(b) && (b->type & PCI_BAR_MEM64);
}

int msix_reloc_parse(const char *s, enum msix_reloc_mode *mode, const char **why)
{
	static const char accepted[] = "x-msix-relocation must be off, auto or bar0..bar5";

	if (s && !strcmp(s, "off")) {
		*mode = MSIX_RELOC_OFF;
		return 0;
	}
	if (s && !strcmp(s, "auto")) {
		*mode = MSIX_RELOC_AUTO;
		return 0;
	}
	if (s && !strncmp(s, "bar", 3) && s[3] >= '0' && s[3] < '0' + PCI_NUM_BARS && !s[4]) {
		*mode = (enum msix_reloc_mode)(MSIX_RELOC_BAR0 + (s[3] - '0'));
		return 0;
	}
	if (why)
		*why = accepted;
	return -EINVAL;
}

const char *msix_reloc_mode_name(enum msix_reloc_mode mode)
{
	static const char *const bars[PCI_NUM_BARS] = {
		"bar0", "bar1", "bar2", "bar3", "bar4", "bar5",
	};

	if (mode == MSIX_RELOC_OFF)
		return "off";
	if (mode == MSIX_RELOC_AUTO)
		return "auto";
	if (mode >= MSIX_RELOC_BAR0 && mode < MSIX_RELOC_BAR0 + PCI_NUM_BARS)
		return bars[mode - MSIX_RELOC_BAR0];
	return "?";
}

static uint32_t pba_bytes(unsigned entries)
{
	return (uint32_t)(align_up(entries, 64) / 8);
}

uint64_t msix_reloc_size(unsigned entries, uint64_t page_size)
{
	uint64_t size;

	if (!entries || entries > MSIX_MAX_ENTRIES || !is_pow2(page_size))
		return 0;
	size = (uint64_t)entries * MSIX_ENTRY_SIZE + pba_bytes(entries);
	return pow2_ceil(align_up(size, page_size));
}

/* Slot @i holds the high half of a 64-bit BAR in slot i - 1. */
static bool is_upper_half(const struct msix_reloc_bar bars[PCI_NUM_BARS], int i)
{
	return i > 0 && bars[i - 1].size && is_mem64(&bars[i - 1]);
}

static int fail(const char **why, const char *msg, int err)
{
	if (why)
		*why = msg;
	return err;
}

/* Does [off, off + len) lie inside memory BAR @bir? */
static bool inside_mem_bar(const struct msix_reloc_bar bars[PCI_NUM_BARS], unsigned bir,
			   uint64_t off, uint64_t len)
{
	if (bir >= PCI_NUM_BARS || !bars[bir].size || is_io(&bars[bir]) ||
	    is_upper_half(bars, (int)bir))
		return false;
	return off + len <= bars[bir].size;
}

static int check_device(const struct msix_reloc_bar bars[PCI_NUM_BARS],
			const struct msix_location *msix, unsigned entries,
			uint64_t page_size, const char **why)
{
	if (!is_pow2(page_size) || page_size < 4096)
		return fail(why, "host page size must be a power of two of at least 4 KiB", -EINVAL);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		const struct msix_reloc_bar *b = &bars[i];

		if (is_upper_half(bars, i)) {
			if (b->size)
				return fail(why, "the slot after a 64-bit BAR is not empty", -EINVAL);
			continue;
		}
		if (b->size && !is_pow2(b->size))
			return fail(why, "a BAR size is not a power of two", -EINVAL);
		if (b->size && is_mem64(b) && i == PCI_NUM_BARS - 1)
			return fail(why, "a 64-bit BAR in the last slot", -EINVAL);
		if (b->size > 2 * GIB && !is_io(b) && !is_mem64(b))
			return fail(why, "a 32-bit BAR larger than 2 GiB", -EINVAL);
	}
	if (!entries)
		return 0;
	if (entries > MSIX_MAX_ENTRIES)
		return fail(why, "more than 2048 MSI-X vectors", -EINVAL);
	if (!inside_mem_bar(bars, msix->table_bir, msix->table_offset,
			    (uint64_t)entries * MSIX_ENTRY_SIZE))
		return fail(why, "the MSI-X table is not inside a memory BAR", -EINVAL);
	if (!inside_mem_bar(bars, msix->pba_bir, msix->pba_offset, pba_bytes(entries)))
		return fail(why, "the MSI-X PBA is not inside a memory BAR", -EINVAL);
	return 0;
}

/* The size BAR @i takes once it holds MSI-X (its own registers in the lower
 * half), or 0 with *@why when it cannot. */
static uint64_t grown_size(const struct msix_reloc_bar bars[PCI_NUM_BARS], int i,
			   uint64_t msix_size, const char **why)
{
	const struct msix_reloc_bar *b = &bars[i];
	uint64_t size;

	if (is_io(b)) {
		fail(why, "the target is an I/O BAR: MSI-X must be in memory space", 0);
		return 0;
	}
	if (!b->size) {
		if (is_upper_half(bars, i)) {
			fail(why, "the target is the upper half of a 64-bit BAR", 0);
			return 0;
		}
		return msix_size;
	}
	size = b->size * 2 > msix_size * 2 ? b->size * 2 : msix_size * 2;
	if (!is_mem64(b) && size > 2 * GIB) {
		fail(why, "the target is a 32-bit BAR with no room to grow (it must stay below 4 GiB)", 0);
		return 0;
	}
	/* The table goes at size / 2: it must fit the capability's 32-bit
	 * offset field, with the PBA after it. */
	if (size / 2 + msix_size > (UINT64_C(1) << 32)) {
		fail(why, "the target BAR is too large: the table would start past 4 GiB", 0);
		return 0;
	}
	return size;
}

/* Auto (see the header): the cheapest BAR to grow, else the first empty slot
 * after the last used one, else -1. */
static int pick_auto(const struct msix_reloc_bar bars[PCI_NUM_BARS],
		     const struct msix_location *phys, uint64_t msix_size)
{
	int best = -1, last_used = -1;
	uint64_t best_cost = UINT64_MAX;

	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t size, cost;

		if (bars[i].size || is_upper_half(bars, i))
			last_used = i;
		if (!bars[i].size)
			continue;
		size = grown_size(bars, i, msix_size, NULL);
		if (!size)
			continue;
		cost = size - bars[i].size;
		if (cost < best_cost ||
		    (cost == best_cost && (unsigned)i == phys->table_bir && best != (int)phys->table_bir)) {
			best = i;
			best_cost = cost;
		}
	}
	if (best >= 0)
		return best;
	return last_used + 1 < PCI_NUM_BARS ? last_used + 1 : -1;
}

/* The host pages of [off, off + len), clipped to @limit. */
static struct msix_reloc_range page_span(uint64_t off, uint64_t len, uint64_t page,
					 uint64_t limit)
{
	uint64_t start = off & ~(page - 1), end = align_up(off + len, page);

	if (end > limit)
		end = limit;
	return (struct msix_reloc_range){ start, end - start };
}

static void add_hole(struct msix_reloc_guest_bar *gb, struct msix_reloc_range r)
{
	for (unsigned k = 0; k < gb->nr_holes; k++) {
		struct msix_reloc_range *h = &gb->holes[k];

		if (r.offset <= h->offset + h->size && h->offset <= r.offset + r.size) {
			uint64_t end = r.offset + r.size > h->offset + h->size ?
				       r.offset + r.size : h->offset + h->size;

			h->offset = r.offset < h->offset ? r.offset : h->offset;
			h->size = end - h->offset;
			return;
		}
	}
	gb->holes[gb->nr_holes++] = r;
	if (gb->nr_holes == 2 && gb->holes[1].offset < gb->holes[0].offset) {
		struct msix_reloc_range t = gb->holes[0];

		gb->holes[0] = gb->holes[1];
		gb->holes[1] = t;
	}
}

/* Every guest BAR is its physical BAR, unchanged. */
static void identity_layout(const struct msix_reloc_bar bars[PCI_NUM_BARS],
			    struct msix_reloc_plan *plan)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct msix_reloc_guest_bar *gb = &plan->bars[i];

		gb->bar = bars[i];
		gb->bar.upper_half = is_upper_half(bars, i);
		gb->phys_size = gb->bar.upper_half ? 0 : bars[i].size;
	}
}

/* The emulated table and PBA at plan->guest, and the holes they punch into
 * the physical part of their BARs (none once relocated beyond it). */
static void place_emulated(struct msix_reloc_plan *plan, uint64_t page_size)
{
	const struct msix_location *g = &plan->guest;
	struct msix_reloc_guest_bar *tb = &plan->bars[g->table_bir];
	struct msix_reloc_guest_bar *pb = &plan->bars[g->pba_bir];

	tb->table = (struct msix_reloc_range){ g->table_offset, plan->table_size };
	pb->pba = (struct msix_reloc_range){ g->pba_offset, plan->pba_size };
	if (g->table_offset < tb->phys_size)
		add_hole(tb, page_span(g->table_offset, plan->table_size, page_size, tb->phys_size));
	if (g->pba_offset < pb->phys_size)
		add_hole(pb, page_span(g->pba_offset, plan->pba_size, page_size, pb->phys_size));
}

int msix_reloc_plan(const struct msix_reloc_bar phys_bars[PCI_NUM_BARS],
		    const struct msix_location *phys_msix, unsigned entries,
		    enum msix_reloc_mode mode, uint64_t page_size,
		    struct msix_reloc_plan *plan, const char **why)
{
	struct msix_reloc_guest_bar *gb;
	uint64_t msix_size, size;
	int target, err;

	memset(plan, 0, sizeof(*plan));
	plan->mode = mode;
	plan->target_bar = -1;
	if (mode != MSIX_RELOC_OFF && mode != MSIX_RELOC_AUTO &&
	    (mode < MSIX_RELOC_BAR0 || mode >= MSIX_RELOC_BAR0 + PCI_NUM_BARS))
		return fail(why, "unknown relocation mode", -EINVAL);
	err = check_device(phys_bars, phys_msix, entries, page_size, why);
	if (err)
		return err;
	identity_layout(phys_bars, plan);
	if (!entries) {
		if (mode >= MSIX_RELOC_BAR0)
			return fail(why, "x-msix-relocation: the device has no MSI-X", -ENOENT);
		return 0;
	}
	plan->entries = entries;
	plan->table_size = entries * MSIX_ENTRY_SIZE;
	plan->pba_size = pba_bytes(entries);
	plan->phys = *phys_msix;
	plan->guest = *phys_msix;

	msix_size = msix_reloc_size(entries, page_size);
	if (mode == MSIX_RELOC_OFF) {
		place_emulated(plan, page_size);
		return 0;
	}
	if (mode == MSIX_RELOC_AUTO) {
		target = pick_auto(phys_bars, phys_msix, msix_size);
		if (target < 0) {
			plan->note = "auto: no BAR can grow and no slot is free after the "
				     "device's BARs; MSI-X left in place";
			place_emulated(plan, page_size);
			return 0;
		}
	} else {
		target = mode - MSIX_RELOC_BAR0;
	}
	size = grown_size(phys_bars, target, msix_size, why);
	if (!size)
		return -EINVAL;

	plan->relocated = true;
	plan->target_bar = target;
	plan->msix_size = msix_size;
	gb = &plan->bars[target];
	if (!phys_bars[target].size) {
		/* A new BAR; 64-bit when the slot after it is free too. */
		plan->target_added = true;
		for (int i = target + 1; i < PCI_NUM_BARS; i++)
			if (phys_bars[i].size)
				plan->note = "the new BAR comes before the device's own: a driver "
					     "that takes the first memory BAR may fail to probe";
		gb->bar.type = PCI_BAR_PREFETCH | PCI_BAR_MEM32;
		if (target + 1 < PCI_NUM_BARS && !phys_bars[target + 1].size) {
			gb->bar.type = PCI_BAR_PREFETCH | PCI_BAR_MEM64;
			plan->bars[target + 1].bar.upper_half = true;
		}
		plan->guest.table_offset = 0;
	} else {
		/* The device's registers keep the lower half. */
		plan->guest.table_offset = (uint32_t)(size / 2);
	}
	gb->bar.size = size;
	plan->guest.table_bir = plan->guest.pba_bir = (unsigned)target;
	plan->guest.pba_offset = plan->guest.table_offset + plan->table_size;
	place_emulated(plan, page_size);
	return 0;
}

/* "64 KiB", "2 MiB", "1 GiB"; sizes here are powers of two. */
static void format_size(uint64_t size, char *buf, size_t len)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 0;

	while (u + 1 < sizeof(units) / sizeof(units[0]) && size >= 1024 && !(size % 1024)) {
		size /= 1024;
		u++;
	}
	snprintf(buf, len, "%" PRIu64 " %s", size, units[u]);
}

int msix_reloc_describe(const struct msix_reloc_plan *plan, char *buf, size_t len)
{
	const struct msix_location *ph = &plan->phys, *g = &plan->guest;
	char from[24], to[24];
	int n;

	if (!plan->entries)
		return snprintf(buf, len, "no MSI-X");
	if (!plan->relocated) {
		n = snprintf(buf, len, "MSI-X (%u vectors) at BAR%u+0x%" PRIx32 ", not relocated",
			     plan->entries, ph->table_bir, ph->table_offset);
	} else if (plan->target_added) {
		const struct msix_reloc_bar *b = &plan->bars[plan->target_bar].bar;

		format_size(b->size, to, sizeof(to));
		n = snprintf(buf, len, "MSI-X (%u vectors) moved from BAR%u+0x%" PRIx32
			     " to BAR%u+0x%" PRIx32 ", new %s %s BAR%d", plan->entries,
			     ph->table_bir, ph->table_offset, g->table_bir, g->table_offset, to,
			     (b->type & PCI_BAR_MEM64) ? "64-bit" : "32-bit", plan->target_bar);
	} else {
		format_size(plan->bars[plan->target_bar].phys_size, from, sizeof(from));
		format_size(plan->bars[plan->target_bar].bar.size, to, sizeof(to));
		n = snprintf(buf, len, "MSI-X (%u vectors) moved from BAR%u+0x%" PRIx32
			     " to BAR%u+0x%" PRIx32 ", BAR%d %s -> %s", plan->entries,
			     ph->table_bir, ph->table_offset, g->table_bir, g->table_offset,
			     plan->target_bar, from, to);
	}
	if (plan->note && n >= 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, " (%s)", plan->note);
	return n;
}
