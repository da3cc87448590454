/*
 * Flat views: a region tree rendered into the sorted, non-overlapping list
 * of address ranges that dispatch and the listener work from.
 *
 * Rendering visits regions in the order they win: within a container the
 * highest priority first and, among equal priorities, the subregion added
 * last first.  Each terminal region (I/O or RAM) claims only the parts of its
 * window that nothing visited earlier has claimed, so a winner is never
 * overwritten and a container claims nothing of its own: its gaps stay open
 * for lower-priority siblings, or end up unassigned.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "memory_internal.h"

/* Deeper than any real tree; only an alias cycle gets there. */
#define MAX_RENDER_DEPTH 64

struct range_builder {
	struct flat_range *ranges;   /* sorted by addr, non-overlapping */
	unsigned nr, cap;
	int err;
};

static wide_addr range_end(const struct flat_range *fr)
{
	return (wide_addr)fr->addr + fr->size;
}

static wide_addr wide_max(wide_addr a, wide_addr b)
{
	return a > b ? a : b;
}

static wide_addr wide_min(wide_addr a, wide_addr b)
{
	return a < b ? a : b;
}

/* Index of the first range that ends after @addr. */
static unsigned first_ending_after(const struct range_builder *b, wide_addr addr)
{
	unsigned lo = 0, hi = b->nr;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (range_end(&b->ranges[mid]) <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int insert_range(struct range_builder *b, unsigned pos, const struct flat_range *fr)
{
	if (b->nr == b->cap) {
		unsigned new_cap = b->cap ? b->cap * 2 : 16;
		struct flat_range *grown = realloc(b->ranges, new_cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		b->ranges = grown;
		b->cap = new_cap;
	}
	memmove(&b->ranges[pos + 1], &b->ranges[pos], (b->nr - pos) * sizeof(*b->ranges));
	b->ranges[pos] = *fr;
	b->nr++;
	return 0;
}

/* Give @mr (whose offset 0 sits at @mr_base) every still unclaimed address
 * of [start, end). */
static void claim(struct range_builder *b, wide_addr start, wide_addr end,
		  struct mem_region *mr, wide_addr mr_base, int priority, bool coalesced)
{
	unsigned i = first_ending_after(b, start);
	wide_addr cursor = start;

	while (cursor < end && !b->err) {
		struct flat_range fr;
		wide_addr gap_end;

		if (i < b->nr && b->ranges[i].addr <= cursor) {
			cursor = range_end(&b->ranges[i++]);
			continue;
		}
		gap_end = (i < b->nr && b->ranges[i].addr < end) ? b->ranges[i].addr : end;
		/* flat_range.size cannot say 2^64: a whole-space gap takes two. */
		if (gap_end - cursor > UINT64_MAX)
			gap_end = cursor + ((wide_addr)1 << 63);
		fr = (struct flat_range){
			.addr = (uint64_t)cursor,
			.size = (uint64_t)(gap_end - cursor),
			.mr = mr,
			.offset = (uint64_t)(cursor - mr_base),
			.priority = priority,
			.coalesced = coalesced && mr->type == MR_IO,
		};
		b->err = insert_range(b, i++, &fr);
		cursor = gap_end;
	}
}

/*
 * Render @mr with its offset 0 at @base, seen through [clip_start, clip_end).
 * @priority is that of the placement that brought it here (an alias lends
 * its own to its target); @coalesced is inherited down the path.
 */
static void render(struct range_builder *b, struct mem_region *mr, wide_addr base,
		   wide_addr clip_start, wide_addr clip_end, int priority,
		   bool coalesced, unsigned depth)
{
	wide_addr start, end;

	if (!mr->enabled || b->err)
		return;
	if (depth > MAX_RENDER_DEPTH) {
		log_error("memory", "%s: regions nested too deep (an alias cycle?)", mr->name);
		b->err = -ELOOP;
		return;
	}
	start = wide_max(base, clip_start);
	end = wide_min(base + mr_span(mr), clip_end);
	if (start >= end)
		return;
	coalesced = coalesced || mr->coalesced;
	switch (mr->type) {
	case MR_ALIAS:
		/* The target's offset alias_offset lands on the alias's start;
		 * the target itself clips the window to its own size. */
		render(b, mr->alias_target, base - (wide_addr)mr->alias_offset,
		       start, end, priority, coalesced, depth + 1);
		break;
	case MR_CONTAINER:
		for (unsigned i = 0; i < mr->nr_children && !b->err; i++) {
			struct mem_region *child = mr->children[i];

			render(b, child, base + child->offset, start, end,
			       child->priority, coalesced, depth + 1);
		}
		break;
	case MR_IO:
	case MR_RAM:
		claim(b, start, end, mr, base, priority, coalesced);
		break;
	}
}

static bool can_merge(const struct flat_range *prev, const struct flat_range *next)
{
	return range_end(prev) == next->addr && prev->mr == next->mr &&
	       (wide_addr)prev->offset + prev->size == next->offset &&
	       prev->priority == next->priority && prev->coalesced == next->coalesced &&
	       (wide_addr)prev->size + next->size <= UINT64_MAX;
}

/* Pieces of one region split only by the order rendering met them in are
 * one range to KVM (one memslot) and in dumps. */
static void merge_adjacent(struct range_builder *b)
{
	unsigned out = 0;

	for (unsigned i = 0; i < b->nr; i++) {
		if (out && can_merge(&b->ranges[out - 1], &b->ranges[i]))
			b->ranges[out - 1].size += b->ranges[i].size;
		else
			b->ranges[out++] = b->ranges[i];
	}
	b->nr = out;
}

/* The root is rendered at address 0 whatever its offset in a parent. */
struct flatview *flatview_render(struct mem_region *root, bool is_pio)
{
	struct range_builder b = { 0 };
	struct flatview *view = calloc(1, sizeof(*view));

	if (!view)
		return NULL;
	atomic_init(&view->refs, 1);
	if (root)
		render(&b, root, 0, 0, WIDE_ADDR_SPACE_END, root->priority, false, 0);
	if (b.err) {
		free(b.ranges);
		free(view);
		return NULL;
	}
	merge_adjacent(&b);
	view->ranges = b.ranges;
	view->nr_ranges = b.nr;
	for (unsigned i = 0; i < view->nr_ranges; i++)
		mr_ref(view->ranges[i].mr);
	if (ioeventfd_set_build(view, is_pio) < 0) {
		flatview_put(view);
		return NULL;
	}
	return view;
}

struct flatview *flatview_get(struct address_space *as)
{
	struct flatview *view;

	pthread_mutex_lock(&as->view_lock);
	view = as->view;
	atomic_fetch_add_explicit(&view->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&as->view_lock);
	return view;
}

void flatview_put(struct flatview *view)
{
	if (!view || atomic_fetch_sub_explicit(&view->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned i = 0; i < view->nr_ranges; i++)
		mr_unref(view->ranges[i].mr);
	/* Last: the eventfds a late dispatch through this view may have hit. */
	for (unsigned i = 0; i < view->nr_ioeventfds; i++)
		event_fd_unref(view->ioeventfds[i].file);
	free(view->ranges);
	free(view->ioeventfds);
	free(view);
}

void flatview_publish(struct address_space *as, struct flatview *view)
{
	struct flatview *old;

	pthread_mutex_lock(&as->view_lock);
	old = as->view;
	as->view = view;
	pthread_mutex_unlock(&as->view_lock);
	flatview_put(old);
}

const struct flat_range *flatview_lookup(const struct flatview *view, uint64_t addr)
{
	unsigned lo = 0, hi = view->nr_ranges;

	/* The last range starting at or before @addr, if it reaches @addr. */
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (view->ranges[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || range_end(&view->ranges[lo - 1]) <= addr)
		return NULL;
	return &view->ranges[lo - 1];
}
