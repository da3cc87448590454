/*
 * The doorbell test device (see testdev.h).  Doorbell handlers only count:
 * the point is to prove which path each write took, and to cost as little
 * as possible so that the benchmark measures the path, not the device.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/testdev.h"
#include "kickvm/guest_abi.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "kickvm/trace.h"

/* Opaque of a slot region: the device and which slot it is. */
struct slot_ref {
	struct testdev *td;
	unsigned index;
};

struct testdev {
	struct machine *m;
	struct slot_ref slot_ref[TESTDEV_SLOTS];
	struct event_loop *loop;
	struct mem_region *page, *slot[TESTDEV_SLOTS], *coalesced, *ports;
	struct testdev_doorbell db[TESTDEV_DOORBELLS];
	_Atomic uint64_t slot_writes[TESTDEV_SLOTS], port_writes[KICKVM_TESTDEV_NR_PORTS];
	_Atomic uint64_t slot_last[TESTDEV_SLOTS], port_last[KICKVM_TESTDEV_NR_PORTS];
	_Atomic uint64_t coalesced_writes;
};

static uint64_t testdev_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque; (void)offset; (void)size;
	return 0;
}

static void slot_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct slot_ref *ref = opaque;

	(void)offset; (void)size;
	ref->td->slot_writes[ref->index]++;
	ref->td->slot_last[ref->index] = data;
}

static void port_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct testdev *td = opaque;

	(void)size;
	if (offset < KICKVM_TESTDEV_NR_PORTS) {
		td->port_writes[offset]++;
		td->port_last[offset] = data;
	}
}

static void coalesced_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct testdev *td = opaque;

	(void)offset; (void)data; (void)size;
	td->coalesced_writes++;
}

static const struct mr_ops slot_ops = { .read = testdev_read, .write = slot_write };
static const struct mr_ops port_ops = { .read = testdev_read, .write = port_write };
static const struct mr_ops coalesced_ops = { .read = testdev_read, .write = coalesced_write };

static void doorbell_handler(struct event_notifier *e, void *opaque)
{
	struct testdev_doorbell *db = opaque;
	uint64_t n = event_notifier_test_and_clear(e);

	if (n) {
		db->handled += n;
		trace_ioeventfd_handler(db->name, db->offset, db->len, db->data);
	}
}

static struct mem_region *doorbell_region(struct testdev *td, bool pio, uint64_t *offset)
{
	if (pio)
		return td->ports;
	struct mem_region *mr = td->slot[*offset / TESTDEV_SLOT_SIZE];

	*offset %= TESTDEV_SLOT_SIZE;
	return mr;
}

int testdev_add_doorbell(struct testdev *td, bool pio, uint64_t offset, unsigned len,
			 bool match_data, uint64_t data, struct testdev_doorbell **out)
{
	struct testdev_doorbell *db = NULL;
	struct mem_region *mr;
	uint64_t mr_offset = offset;
	int ret;

	if (offset >= (pio ? KICKVM_TESTDEV_NR_PORTS : KICKVM_TESTDEV_SIZE))
		return -EINVAL;
	for (int i = 0; i < TESTDEV_DOORBELLS && !db; i++)
		if (!td->db[i].in_use)
			db = &td->db[i];
	if (!db)
		return -ENOSPC;
	memset(db, 0, sizeof(*db));
	db->td = td;
	db->pio = pio;
	db->offset = offset;
	db->len = len;
	db->match_data = match_data;
	db->data = data;
	snprintf(db->name, sizeof(db->name), pio ? "testdev-io" : "testdev");
	ret = event_notifier_init(&db->e, false);
	if (ret < 0)
		return ret;
	mr = doorbell_region(td, pio, &mr_offset);
	ret = event_loop_set_notifier(td->loop, &db->e, doorbell_handler, db);
	if (ret < 0)
		goto fail;
	ret = mr_add_eventfd(mr, mr_offset, len, match_data, data, &db->e);
	if (ret < 0) {
		event_loop_set_notifier(td->loop, &db->e, NULL, NULL);
		goto fail;
	}
	db->in_use = true;
	if (out)
		*out = db;
	return 0;
fail:
	event_notifier_cleanup(&db->e);
	return ret;
}

void testdev_del_doorbell(struct testdev_doorbell *db)
{
	struct testdev *td = db->td;
	uint64_t mr_offset = db->offset;
	struct mem_region *mr;

	if (!db->in_use)
		return;
	mr = doorbell_region(td, db->pio, &mr_offset);
	/* Deregister first so no new signal arrives, then collect what is left. */
	mr_del_eventfd(mr, mr_offset, db->len, db->match_data, db->data, &db->e);
	event_loop_set_notifier(td->loop, &db->e, NULL, NULL);
	doorbell_handler(&db->e, db);
	event_notifier_cleanup(&db->e);
	db->in_use = false;
}

void testdev_set_userspace_only(struct testdev *td, uint64_t offset, bool on)
{
	if (offset < KICKVM_TESTDEV_SIZE)
		mr_set_ioeventfd_userspace_only(td->slot[offset / TESTDEV_SLOT_SIZE], on);
}

void testdev_move(struct testdev *td, uint64_t base)
{
	mr_set_address(td->page, base);
}

int testdev_setup_defaults(struct testdev *td)
{
	int ret = 0;

	memory_transaction_begin();
	testdev_set_userspace_only(td, TESTDEV_DB_FALLBACK, true);
	if (!ret)
		ret = testdev_add_doorbell(td, false, TESTDEV_DB_DATAMATCH, 4, true, 1, NULL);
	if (!ret)
		ret = testdev_add_doorbell(td, false, TESTDEV_DB_ANY, 0, false, 0, NULL);
	if (!ret)
		ret = testdev_add_doorbell(td, false, TESTDEV_DB_FALLBACK, 4, true, 1, NULL);
	if (!ret)
		ret = testdev_add_doorbell(td, true, TESTDEV_PORT_DB, 2, true, 1, NULL);
	memory_transaction_commit();
	return ret;
}

uint64_t testdev_doorbell_signals(const struct testdev_doorbell *db)
{
	return event_notifier_total(&db->e);
}

uint64_t testdev_trapped_writes(const struct testdev *td, bool pio, uint64_t offset)
{
	if (pio)
		return offset < KICKVM_TESTDEV_NR_PORTS ? td->port_writes[offset] : 0;
	return offset < KICKVM_TESTDEV_SIZE ? td->slot_writes[offset / TESTDEV_SLOT_SIZE] : 0;
}

uint64_t testdev_last_value(const struct testdev *td, bool pio, uint64_t offset)
{
	if (pio)
		return offset < KICKVM_TESTDEV_NR_PORTS ? td->port_last[offset] : 0;
	return offset < KICKVM_TESTDEV_SIZE ? td->slot_last[offset / TESTDEV_SLOT_SIZE] : 0;
}

uint64_t testdev_coalesced_writes(const struct testdev *td)
{
	return td->coalesced_writes;
}

void testdev_for_each_doorbell(struct testdev *td,
			       void (*fn)(struct testdev_doorbell *db, void *opaque), void *opaque)
{
	for (int i = 0; i < TESTDEV_DOORBELLS; i++)
		if (td->db[i].in_use)
			fn(&td->db[i], opaque);
}

int testdev_create(struct machine *m, struct event_loop *loop, struct testdev **out)
{
	struct testdev *td = calloc(1, sizeof(*td));
	char name[32];
	int ret = -ENOMEM;

	if (!td)
		return -ENOMEM;
	td->m = m;
	td->loop = loop;
	td->page = mr_new_container("testdev", KICKVM_TESTDEV_SIZE);
	td->coalesced = mr_new_io("testdev-coalesced", 0x1000, &coalesced_ops, td);
	td->ports = mr_new_io("testdev-io", KICKVM_TESTDEV_NR_PORTS, &port_ops, td);
	if (!td->page || !td->coalesced || !td->ports)
		goto fail;
	memory_transaction_begin();
	for (unsigned i = 0; i < TESTDEV_SLOTS; i++) {
		td->slot_ref[i] = (struct slot_ref){ .td = td, .index = i };
		snprintf(name, sizeof(name), "testdev.slot%u", i);
		td->slot[i] = mr_new_io(name, TESTDEV_SLOT_SIZE, &slot_ops, &td->slot_ref[i]);
		if (td->slot[i])
			mr_add_subregion(td->page, i * TESTDEV_SLOT_SIZE, td->slot[i], 0);
	}
	mr_set_coalesced(td->coalesced, true);
	mr_add_subregion(m->system_root, KICKVM_TESTDEV_BASE, td->page, 0);
	mr_add_subregion(m->system_root, KICKVM_TESTDEV_COALESCED, td->coalesced, 0);
	mr_add_subregion(m->io_root, KICKVM_TESTDEV_PORT, td->ports, 0);
	memory_transaction_commit();
	for (unsigned i = 0; i < TESTDEV_SLOTS; i++)
		if (!td->slot[i]) {
			testdev_destroy(td);
			return -ENOMEM;
		}
	*out = td;
	return 0;
fail:
	if (td->page)
		mr_free(td->page);
	if (td->coalesced)
		mr_free(td->coalesced);
	if (td->ports)
		mr_free(td->ports);
	free(td);
	return ret;
}

void testdev_destroy(struct testdev *td)
{
	if (!td)
		return;
	for (int i = 0; i < TESTDEV_DOORBELLS; i++)
		testdev_del_doorbell(&td->db[i]);
	memory_transaction_begin();
	mr_del_subregion(td->m->system_root, td->page);
	mr_del_subregion(td->m->system_root, td->coalesced);
	mr_del_subregion(td->m->io_root, td->ports);
	for (unsigned i = 0; i < TESTDEV_SLOTS; i++)
		if (td->slot[i])
			mr_del_subregion(td->page, td->slot[i]);
	memory_transaction_commit();
	for (unsigned i = 0; i < TESTDEV_SLOTS; i++)
		if (td->slot[i])
			mr_free(td->slot[i]);
	mr_free(td->page);
	mr_free(td->coalesced);
	mr_free(td->ports);
	free(td);
}
