/*
 * The monitor's views of an address space, in QEMU's formats so that dumps
 * from kickvm and from QEMU read alike:
 *
 *   address-space: memory
 *     0000000000000000-ffffffffffffffff (prio 0, i/o): system
 *       00000000fe001000-00000000fe001fff (prio 0, i/o): testdev
 *       00000000c0000000-00000000c0000fff (prio 1, i/o): alias bar0 @dev 0000000000001000-0000000000001fff
 *
 *   memory-region: dev            (one section per alias target)
 *     ...
 *
 *   FlatView: AS "memory"
 *     0000000000000000-000000000fffffff (prio 0, ram): ram
 *     000021000000e600-000021000000ffff (prio 0, i/o): bar1 @000000000000e600
 *
 *   ioeventfds: AS "memory"
 *     00000000fe001000 len 4 data 0x1 kvm signals kvm=3 fallback=0: testdev.slot0+0x0
 *     00000000fe001100 len 0 any userspace (EEXIST) signals kvm=0 fallback=7: testdev.slot1+0x0
 *
 * Containers print as "i/o", device memory (an assigned device's mapped BAR)
 * as "ramd" and an alias as the kind of its target, as QEMU does.  Each section ends with an empty line.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "kickvm/event.h"
#include "memory_internal.h"

struct region_list {
	const struct mem_region **items;
	unsigned nr, cap;
};

static const char *region_kind(const struct mem_region *mr)
{
	while (mr->type == MR_ALIAS)
		mr = mr->alias_target;
	if (mr->type != MR_RAM)
		return "i/o";
	return mr->ram_device ? "ramd" : "ram";
}

static void remember_target(struct region_list *list, const struct mem_region *mr)
{
	for (unsigned i = 0; i < list->nr; i++)
		if (list->items[i] == mr)
			return;
	if (list->nr == list->cap) {
		unsigned new_cap = list->cap ? list->cap * 2 : 4;
		const struct mem_region **grown = realloc(list->items, new_cap * sizeof(*grown));

		if (!grown)
			return; /* the dump just lacks that section */
		list->items = grown;
		list->cap = new_cap;
	}
	list->items[list->nr++] = mr;
}

/* Children by address, then by who wins (the order they are stored in). */
static const struct mem_region **children_by_address(const struct mem_region *mr)
{
	const struct mem_region **sorted = malloc(mr->nr_children * sizeof(*sorted));

	if (!sorted)
		return NULL;
	for (unsigned i = 0; i < mr->nr_children; i++) {
		const struct mem_region *child = mr->children[i];
		unsigned pos = i;

		for (; pos > 0 && sorted[pos - 1]->offset > child->offset; pos--)
			sorted[pos] = sorted[pos - 1];
		sorted[pos] = child;
	}
	return sorted;
}

static void print_region(FILE *out, const struct mem_region *mr, unsigned level,
			 wide_addr start, struct region_list *targets)
{
	const struct mem_region **children;
	wide_addr last = start + mr_span(mr) - 1;

	fprintf(out, "%*s%016" PRIx64 "-%016" PRIx64 " (prio %d, %s): ", (int)level * 2, "",
		(uint64_t)start, (uint64_t)last, mr->priority, region_kind(mr));
	if (mr->type == MR_ALIAS) {
		fprintf(out, "alias %s @%s %016" PRIx64 "-%016" PRIx64, mr->name,
			mr->alias_target->name, mr->alias_offset,
			(uint64_t)(mr->alias_offset + mr_span(mr) - 1));
		remember_target(targets, mr->alias_target);
	} else {
		fputs(mr->name, out);
	}
	fputs(mr->enabled ? "\n" : " [disabled]\n", out);
	if (!mr->nr_children)
		return;
	children = children_by_address(mr);
	for (unsigned i = 0; i < mr->nr_children; i++) {
		const struct mem_region *child = children ? children[i] : mr->children[i];

		print_region(out, child, level + 1, start + child->offset, targets);
	}
	free(children);
}

void address_space_dump_mtree(struct address_space *as, FILE *out)
{
	struct region_list targets = { 0 };

	memory_lock();
	fprintf(out, "address-space: %s\n", as->name);
	print_region(out, as->root, 1, 0, &targets);
	fputc('\n', out);
	/* The list grows while we print: aliases of aliases get a section too. */
	for (unsigned i = 0; i < targets.nr; i++) {
		fprintf(out, "memory-region: %s\n", targets.items[i]->name);
		print_region(out, targets.items[i], 1, 0, &targets);
		fputc('\n', out);
	}
	memory_unlock();
	free(targets.items);
}

void address_space_dump_flatview(struct address_space *as, FILE *out)
{
	struct flatview *view = flatview_get(as);

	fprintf(out, "FlatView: AS \"%s\"\n", as->name);
	if (!view->nr_ranges)
		fputs("  No rendered FlatView\n", out);
	for (unsigned i = 0; i < view->nr_ranges; i++) {
		const struct flat_range *fr = &view->ranges[i];

		fprintf(out, "  %016" PRIx64 "-%016" PRIx64 " (prio %d, %s): %s", fr->addr,
			(uint64_t)((wide_addr)fr->addr + fr->size - 1), fr->priority,
			region_kind(fr->mr), fr->mr->name);
		if (fr->offset)
			fprintf(out, " @%016" PRIx64, fr->offset);
		fputc('\n', out);
	}
	fputc('\n', out);
	flatview_put(view);
}

static void print_ioeventfd(FILE *out, const struct ioeventfd *ev)
{
	uint64_t total = event_notifier_total(ev->e);
	uint64_t fallback = atomic_load(&ev->e->fallback_signals);

	fprintf(out, "  %016" PRIx64 " len %u ", ev->addr, ev->len);
	if (ev->match_data)
		fprintf(out, "data 0x%" PRIx64, ev->data);
	else
		fputs("any", out);
	if (ev->path == IOEVENTFD_PATH_KVM)
		fputs(" kvm", out);
	else if (ev->kvm_err)
		fprintf(out, " userspace (%s)", ioeventfd_errno_name(ev->kvm_err));
	else
		fputs(" userspace", out);
	/* The consumer may have read signals before the counter caught up. */
	fprintf(out, " signals kvm=%" PRIu64 " fallback=%" PRIu64 ": %s+0x%" PRIx64 "\n",
		total > fallback ? total - fallback : 0, fallback, ev->mr->name, ev->offset);
}

void address_space_dump_ioeventfds(struct address_space *as, FILE *out)
{
	struct flatview *view;

	/* The memory lock owns the paths. */
	memory_lock();
	view = flatview_get(as);
	fprintf(out, "ioeventfds: AS \"%s\"\n", as->name);
	if (!view->nr_ioeventfds)
		fputs("  (none)\n", out);
	for (unsigned i = 0; i < view->nr_ioeventfds; i++)
		print_ioeventfd(out, &view->ioeventfds[i].ev);
	fputc('\n', out);
	flatview_put(view);
	memory_unlock();
}
