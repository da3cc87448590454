/*
 * libFuzzer target: arbitrary device descriptions (six BARs, an MSI-X
 * capability — what a device process could report) under every relocation
 * mode.  The planner must refuse what it cannot honour and otherwise return
 * a plan the model can trust blindly: guest BARs powers of two that fit
 * their type, the emulated table and PBA inside their guest BAR and never
 * over a passed-through part once relocated, physical parts unchanged, and
 * auto never adding a BAR in front of one the device has.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vfio/msix_reloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct reader {
	const uint8_t *p;
	size_t left;
};

static uint32_t take(struct reader *r, unsigned bytes)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		v = (v << 8) | (r->left ? *r->p : 0);
		if (r->left) {
			r->p++;
			r->left--;
		}
	}
	return v;
}

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static void check_plan(const struct msix_reloc_bar phys[PCI_NUM_BARS],
		       const struct msix_location *loc, unsigned entries,
		       const struct msix_reloc_plan *p, uint64_t page)
{
	int last_used = -1;

	for (int i = 0; i < PCI_NUM_BARS; i++) {
		const struct msix_reloc_guest_bar *g = &p->bars[i];

		if (phys[i].size || (i > 0 && phys[i - 1].size && !(phys[i - 1].type & PCI_BAR_IO) &&
				     (phys[i - 1].type & PCI_BAR_MEM64)))
			last_used = i;
		CHECK(!g->bar.size || pow2(g->bar.size));
		CHECK(!(g->bar.upper_half && g->bar.size));
		if (g->bar.size && !(g->bar.type & PCI_BAR_IO) && !(g->bar.type & PCI_BAR_MEM64))
			CHECK(g->bar.size <= (UINT64_C(1) << 31));
		if (g->bar.size && (g->bar.type & PCI_BAR_MEM64) && !(g->bar.type & PCI_BAR_IO))
			CHECK(i + 1 < PCI_NUM_BARS && p->bars[i + 1].bar.upper_half);
		/* The physical part is the device's BAR, unchanged. */
		CHECK(g->phys_size == 0 || g->phys_size == phys[i].size);
		CHECK(g->phys_size <= g->bar.size);
		if (phys[i].size && !g->bar.upper_half)
			CHECK(g->phys_size == phys[i].size && g->bar.type == phys[i].type);
		CHECK(g->nr_holes <= 2);
		for (unsigned k = 0; k < g->nr_holes; k++) {
			CHECK(!(g->holes[k].offset % page) && g->holes[k].size);
			CHECK(g->holes[k].offset + g->holes[k].size <= g->phys_size);
		}
		if (p->relocated)
			CHECK(g->nr_holes == 0);
	}
	if (!entries)
		return;
	CHECK(!memcmp(&p->phys, loc, sizeof(*loc)));
	CHECK(p->guest.table_bir < PCI_NUM_BARS && p->guest.pba_bir < PCI_NUM_BARS);
	{
		const struct msix_reloc_guest_bar *tb = &p->bars[p->guest.table_bir];
		const struct msix_reloc_guest_bar *pb = &p->bars[p->guest.pba_bir];

		CHECK(tb->table.offset == p->guest.table_offset && tb->table.size == entries * 16);
		CHECK(pb->pba.offset == p->guest.pba_offset && pb->pba.size == (entries + 63) / 64 * 8);
		CHECK(tb->table.offset + tb->table.size <= tb->bar.size);
		CHECK(pb->pba.offset + pb->pba.size <= pb->bar.size);
		CHECK(!(tb->bar.type & PCI_BAR_IO) && !(pb->bar.type & PCI_BAR_IO));
		if (!p->relocated) {
			CHECK(!memcmp(&p->guest, loc, sizeof(*loc)));
			return;
		}
		CHECK(p->target_bar == (int)p->guest.table_bir && p->guest.pba_bir == p->guest.table_bir);
		CHECK(pow2(p->msix_size) && p->msix_size % page == 0);
		CHECK(p->msix_size >= (uint64_t)entries * 16 + pb->pba.size);
		/* Emulated MSI-X beyond the passed-through part, on its own pages. */
		CHECK(tb->table.offset >= tb->phys_size);
		CHECK(tb->table.offset % page == 0);
		CHECK(tb->pba.offset == tb->table.offset + tb->table.size);
		if (p->mode == MSIX_RELOC_AUTO && p->target_added)
			CHECK(p->target_bar > last_used);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reader r = { data, size };
	struct msix_reloc_bar bars[PCI_NUM_BARS];
	struct msix_location loc;
	struct msix_reloc_plan plan;
	const char *why = NULL;
	enum msix_reloc_mode mode;
	unsigned entries;
	uint64_t page;
	int ret;

	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint32_t b = take(&r, 1);

		/* Mostly powers of two from 16 bytes to 8 GiB, sometimes odd. */
		bars[i].size = (b & 0x40) ? 0 : (UINT64_C(1) << (4 + (b & 0x1f) % 30));
		if (b & 0x80)
			bars[i].size += take(&r, 1);
		bars[i].type = (uint8_t)(take(&r, 1) & 0xf);
		bars[i].upper_half = false;
	}
	loc.table_bir = take(&r, 1) % 8;
	loc.table_offset = take(&r, 4);
	loc.pba_bir = take(&r, 1) % 8;
	loc.pba_offset = take(&r, 4);
	entries = take(&r, 2) % 2200;
	mode = (enum msix_reloc_mode)((int)(take(&r, 1) % 9) - 2);
	page = UINT64_C(1) << (11 + take(&r, 1) % 6);   /* 2K (refused) .. 64K */

	ret = msix_reloc_plan(bars, &loc, entries, mode, page, &plan, &why);
	if (ret) {
		CHECK(ret < 0 && why);
		return 0;
	}
	check_plan(bars, &loc, entries, &plan, page);
	{
		char line[200], small[16];

		CHECK(msix_reloc_describe(&plan, line, sizeof(line)) < (int)sizeof(line));
		msix_reloc_describe(&plan, small, sizeof(small));
		CHECK(memchr(small, 0, sizeof(small)));
	}
	return 0;
}
