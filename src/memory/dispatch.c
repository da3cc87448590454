/*
 * Dispatch of the accesses vCPU exits deliver: ioeventfd fallback first (for
 * writes), then RAM or the region's callbacks, with the access-size rules of
 * struct mr_ops.
 *
 * No memory lock here: dispatch takes a reference on the current flat view,
 * so a concurrent commit can publish a new one without freeing this one
 * (or the regions it points to) under our feet.  A dispatch that began
 * before the commit deleting an ioeventfd may still signal it: the view holds
 * a reference on the notifier's eventfd (event.h), so the write reaches that
 * eventfd even when its owner has cleaned the notifier up meanwhile (never a
 * closed fd, or another file that reused the number).  The owner keeps the
 * struct itself alive while vCPUs may be dispatching (its counters).
 *
 * An access that runs past the end of its flat range into the next one (or
 * into nothing) is rejected as AS_INVALID rather than split: real devices do
 * not decode such accesses consistently, and splitting would hand a region
 * an access size it never declared.
 */
#include <inttypes.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/trace.h"
#include "memory_internal.h"

#define count(as, counter) \
	atomic_fetch_add_explicit(&(as)->stats.counter, 1, memory_order_relaxed)

static uint64_t call_read(const struct mem_region *mr, uint64_t offset, unsigned size)
{
	if (!mr->ops->read)
		return 0;
	return mr->ops->read(mr->opaque, offset, size) & size_mask(size);
}

static void call_write(const struct mem_region *mr, uint64_t offset, uint64_t data,
		       unsigned size)
{
	if (mr->ops->write)
		mr->ops->write(mr->opaque, offset, data & size_mask(size), size);
}

/* Narrower than the callbacks take: cover [offset, offset+len) with aligned
 * words of @unit bytes and patch our bytes into each (read-modify-write). */
static void narrow_write(const struct mem_region *mr, uint64_t offset, uint64_t data,
			 unsigned len, unsigned unit)
{
	wide_addr end = (wide_addr)offset + len;

	for (wide_addr word = offset & ~(uint64_t)(unit - 1); word < end; word += unit) {
		uint64_t value = call_read(mr, (uint64_t)word, unit);

		for (unsigned b = 0; b < unit; b++) {
			wide_addr at = word + b;

			if (at < offset || at >= end)
				continue;
			value &= ~(UINT64_C(0xff) << (8 * b));
			value |= ((data >> ((unsigned)(at - offset) * 8)) & 0xff) << (8 * b);
		}
		call_write(mr, (uint64_t)word, value, unit);
	}
}

static uint64_t narrow_read(const struct mem_region *mr, uint64_t offset, unsigned len,
			    unsigned unit)
{
	wide_addr end = (wide_addr)offset + len;
	uint64_t result = 0;

	for (wide_addr word = offset & ~(uint64_t)(unit - 1); word < end; word += unit) {
		uint64_t value = call_read(mr, (uint64_t)word, unit);

		for (unsigned b = 0; b < unit; b++) {
			wide_addr at = word + b;

			if (at < offset || at >= end)
				continue;
			result |= ((value >> (8 * b)) & 0xff) << ((unsigned)(at - offset) * 8);
		}
	}
	return result;
}

static enum as_result io_access(const struct mem_region *mr, uint64_t offset,
				uint64_t *data, unsigned len, bool is_write)
{
	struct access_limits l = mr_ops_limits(mr->ops);

	if (len < l.valid_min || len > l.valid_max)
		return AS_INVALID;
	if (len > l.impl_max) {
		/* Wider than the callbacks take: little-endian pieces. */
		uint64_t value = 0;

		for (unsigned i = 0; i < len; i += l.impl_max) {
			if (is_write)
				call_write(mr, offset + i, *data >> (8 * i), l.impl_max);
			else
				value |= call_read(mr, offset + i, l.impl_max) << (8 * i);
		}
		if (!is_write)
			*data = value;
	} else if (len < l.impl_min) {
		if (is_write)
			narrow_write(mr, offset, *data, len, l.impl_min);
		else
			*data = narrow_read(mr, offset, len, l.impl_min);
	} else if (is_write) {
		call_write(mr, offset, *data, len);
	} else {
		*data = call_read(mr, offset, len);
	}
	return AS_OK;
}

/* Guest RAM, byte by byte in little-endian order (x86 guests). */
static void ram_access(const struct flat_range *fr, uint64_t addr, uint64_t *data,
		       unsigned len, bool is_write)
{
	uint8_t *p = (uint8_t *)fr->mr->ram_host + fr->offset + (addr - fr->addr);

	if (is_write) {
		for (unsigned i = 0; i < len; i++)
			p[i] = (uint8_t)(*data >> (8 * i));
	} else {
		*data = 0;
		for (unsigned i = 0; i < len; i++)
			*data |= (uint64_t)p[i] << (8 * i);
	}
}

static enum as_result drop_invalid(struct address_space *as, uint64_t addr,
				   uint64_t *data, unsigned len, bool is_write)
{
	count(as, invalid);
	log_debug_rl(as->name, "invalid %u-byte %s at 0x%" PRIx64, len,
		  is_write ? "write" : "read", addr);
	if (!is_write)
		*data = size_mask(len);
	return AS_INVALID;
}

/* Everything after the ioeventfd check; @data is in/out. */
static enum as_result access_range(struct address_space *as, const struct flatview *view,
				   uint64_t addr, uint64_t *data, unsigned len, bool is_write)
{
	const struct flat_range *fr = flatview_lookup(view, addr);
	enum as_result result;

	if (!fr) {
		count(as, unassigned);
		if (!is_write)
			*data = size_mask(len);
		trace_unassigned_access(as->name, addr, len, is_write, *data);
		/* Debug only: a guest can produce these as fast as it likes. */
		log_debug_rl(as->name, "unassigned %s 0x%" PRIx64 "[%u]",
			  is_write ? "write" : "read", addr, len);
		return AS_UNASSIGNED;
	}
	if ((wide_addr)addr + len > (wide_addr)fr->addr + fr->size)
		return drop_invalid(as, addr, data, len, is_write);
	if (fr->mr->type == MR_RAM) {
		ram_access(fr, addr, data, len, is_write);
		return AS_RAM;
	}
	result = io_access(fr->mr, fr->offset + (addr - fr->addr), data, len, is_write);
	if (result == AS_INVALID)
		return drop_invalid(as, addr, data, len, is_write);
	return result;
}

/* Signal the first ioeventfd of the view that takes this write, in the
 * set's order (so len 0 before sized ones, wildcards before datamatch);
 * KVM signals one device per write too. */
static bool signal_ioeventfd(struct address_space *as, const struct flatview *view,
			     uint64_t addr, uint64_t data, unsigned len)
{
	const struct flat_ioeventfd *fe, *end;

	if (!view->nr_ioeventfds)  /* the array may be NULL: no arithmetic on it */
		return false;
	fe = ioeventfd_set_find(view, addr);
	end = view->ioeventfds + view->nr_ioeventfds;
	for (; fe && fe < end && fe->ev.addr == addr; fe++) {
		if (!ioeventfd_matches(&fe->ev, addr, data, len))
			continue;
		event_notifier_signal_fallback_via(fe->ev.e, fe->file);
		count(as, fallback_signals);
		trace_ioeventfd_fallback(as->name, addr, len, data);
		return true;
	}
	return false;
}

int address_space_write(struct address_space *as, uint64_t addr, uint64_t data,
			unsigned len)
{
	struct flatview *view;
	int result;

	count(as, writes);
	if (!is_access_size(len))
		return drop_invalid(as, addr, &data, len, true);
	data &= size_mask(len);
	view = flatview_get(as);
	result = address_space_write_view(as, view, addr, data, len);
	flatview_put(view);
	return result;
}

int address_space_write_view(struct address_space *as, const struct flatview *view,
			     uint64_t addr, uint64_t data, unsigned len)
{
	/* Whatever path an ioeventfd is on: a write that reached us must be
	 * handled as KVM would have handled it. */
	if (signal_ioeventfd(as, view, addr, data, len))
		return AS_IOEVENTFD;
	return access_range(as, view, addr, &data, len, true);
}

int address_space_read(struct address_space *as, uint64_t addr, uint64_t *data,
		       unsigned len)
{
	struct flatview *view;
	int result;

	count(as, reads);
	if (!is_access_size(len))
		return drop_invalid(as, addr, data, len, false);
	view = flatview_get(as);
	result = access_range(as, view, addr, data, len, false);
	flatview_put(view);
	return result;
}
