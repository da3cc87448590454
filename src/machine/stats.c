/*
 * What a machine shows about itself: exits per vCPU and reason, dispatches
 * per address space, and every ioeventfd with the path it is on and how many
 * signals came by each path.  This is how kickvm proves which path a write
 * took.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "hw/testdev.h"
#include "hw/uart8250.h"
#include "kickvm/machine.h"
#include "kickvm/vfio_pci.h"
#include "kickvm/virtio_devices.h"
#include "kickvm/virtio_pci.h"

static void print_as_stats(struct address_space *as, FILE *out)
{
	struct as_stats st;

	address_space_get_stats(as, &st);
	fprintf(out, "  %-8s writes %" PRIu64 ", reads %" PRIu64 ", ioeventfd fallback signals %"
		PRIu64 ", unassigned %" PRIu64 ", invalid %" PRIu64 ", KVM refusals %" PRIu64 "\n",
		address_space_name(as), st.writes, st.reads, st.fallback_signals, st.unassigned,
		st.invalid, st.kvm_refusals);
}

static void print_doorbell(struct testdev_doorbell *db, void *opaque)
{
	FILE *out = opaque;
	uint64_t total = testdev_doorbell_signals(db), fallback = db->e.fallback_signals;

	fprintf(out, "  %s+0x%03" PRIx64 " len %u %-10s signals %" PRIu64 " (kvm %" PRIu64
		", userspace fallback %" PRIu64 ")\n", db->name, db->offset, db->len,
		db->match_data ? "datamatch" : "any", total, total - fallback, fallback);
}

static void print_virtio_device(struct machine_device *md, FILE *out)
{
	struct virtio_dev *vdev = md->vdev;

	fprintf(out, " %s (%s, work in \"%s\"): host notifiers %s, doorbell writes trapped %"
		PRIu64 "%s\n", md->id, vdev->ops->name, event_loop_name(md->loop),
		virtio_pci_notifiers_active(md->vp) ? "active" : "inactive",
		virtio_pci_trapped_notifies(md->vp), vdev->broken ? ", NEEDS_RESET" : "");
	for (unsigned q = 0; q < vdev->ops->nr_queues; q++) {
		struct virtio_pci_doorbells db;

		virtio_pci_doorbells(md->vp, q, &db);
		fprintf(out, "  queue %u: notifies handled %" PRIu64 " (found by polling %" PRIu64
			"), interrupts %" PRIu64 ", doorbells %" PRIu64 " (kvm %" PRIu64
			", userspace fallback %" PRIu64 ", trapped %" PRIu64 ")\n", q,
			(uint64_t)vdev->queues[q].notifies, (uint64_t)vdev->queues[q].polled,
			(uint64_t)vdev->queues[q].interrupts, db.doorbells, db.kvm, db.fallback,
			db.trapped);
	}
	if (vdev->ops->device_id == VIRTIO_ID_BLOCK) {
		struct virtio_blk_stats st;

		virtio_blk_get_stats(vdev, &st);
		fprintf(out, "  requests: read %" PRIu64 ", write %" PRIu64 ", flush %" PRIu64
			", get-id %" PRIu64 ", discard %" PRIu64 ", write-zeroes %" PRIu64
			", unsupported %" PRIu64 ", I/O errors %" PRIu64 "\n", st.reads, st.writes,
			st.flushes, st.get_ids, st.discards, st.write_zeroes, st.unsupported,
			st.io_errors);
		fprintf(out, "  backend: aio=%s%s, served inline %" PRIu64 ", through %s %" PRIu64
			"\n", st.aio, st.inline_io ? "+inline" : "", st.backend.inline_ios, st.aio,
			st.backend.engine_ios);
	} else if (vdev->ops->device_id == VIRTIO_ID_RNG) {
		fprintf(out, "  random bytes: %" PRIu64 "\n", virtio_rng_bytes(vdev));
	}
}

void machine_print_stats(struct machine *m, FILE *out)
{
	uint64_t exits = 0;

	fprintf(out, "kickvm stats:\n");
	if (m->resets)
		fprintf(out, " machine resets in place: %" PRIu64 " (counters run on across them)\n",
			m->resets);
	fprintf(out, " vCPU exits to userspace:\n");
	for (int i = 0; i < m->nr_vcpus; i++) {
		const struct vcpu_stats *s = &m->vcpus[i]->stats;

		fprintf(out, "  cpu%d: runs %" PRIu64 ", mmio %" PRIu64 ", pio %" PRIu64
			", intr %" PRIu64 ", coalesced writes drained %" PRIu64 "\n", i,
			(uint64_t)s->runs, (uint64_t)s->exits_mmio, (uint64_t)s->exits_pio,
			(uint64_t)s->exits_intr, (uint64_t)s->coalesced);
		exits += s->exits_mmio + s->exits_pio;
	}
	fprintf(out, " dispatched in userspace:\n");
	print_as_stats(m->as_memory, out);
	print_as_stats(m->as_io, out);
	fprintf(out, " KVM ioeventfd registrations: memory %" PRIu64 " (refused %" PRIu64
		"), io %" PRIu64 " (refused %" PRIu64 ")\n",
		(uint64_t)m->memory_listener.kvm_assigned, (uint64_t)m->memory_listener.kvm_refused,
		(uint64_t)m->io_listener.kvm_assigned, (uint64_t)m->io_listener.kvm_refused);
	fprintf(out, " test device doorbells:\n");
	testdev_for_each_doorbell(m->testdev, print_doorbell, out);
	fprintf(out, "  trapped writes: mmio slots");
	for (unsigned i = 0; i < TESTDEV_SLOTS; i++) {
		uint64_t n = testdev_trapped_writes(m->testdev, false, i * TESTDEV_SLOT_SIZE);

		if (n)
			fprintf(out, " +0x%03x:%" PRIu64, i * TESTDEV_SLOT_SIZE, n);
	}
	fprintf(out, "; ports");
	for (unsigned i = 0; i < KICKVM_TESTDEV_NR_PORTS; i++) {
		uint64_t n = testdev_trapped_writes(m->testdev, true, i);

		if (n)
			fprintf(out, " 0x%x:%" PRIu64, KICKVM_TESTDEV_PORT + i, n);
	}
	fprintf(out, "; coalesced %" PRIu64 "\n", testdev_coalesced_writes(m->testdev));
	for (int i = 0; i < m->nr_iothreads; i++)
		fprintf(out, " iothread %s: busy-polls %" PRIu64 " ns before sleeping\n",
			iothread_name(m->iothreads[i]),
			event_loop_poll_ns(iothread_loop(m->iothreads[i])));
	for (int i = 0; i < m->nr_devices; i++) {
		if (m->devices[i].vfio)
			vfio_pci_print_stats(m->devices[i].vfio, out);
		else
			print_virtio_device(&m->devices[i], out);
	}
	fprintf(out, " console characters: %" PRIu64 "\n", uart8250_chars(m->uart));
	fprintf(out, " total MMIO+PIO exits: %" PRIu64 "\n", exits);
}

int machine_info(struct machine *m, const char *what, FILE *out)
{
	bool all = strcmp(what, "all") == 0;
	bool known = all;

	if (all || strcmp(what, "mtree") == 0) {
		address_space_dump_mtree(m->as_memory, out);
		address_space_dump_mtree(m->as_io, out);
		known = true;
	}
	if (all || strcmp(what, "flatview") == 0) {
		address_space_dump_flatview(m->as_memory, out);
		address_space_dump_flatview(m->as_io, out);
		known = true;
	}
	if (all || strcmp(what, "ioeventfds") == 0) {
		address_space_dump_ioeventfds(m->as_memory, out);
		address_space_dump_ioeventfds(m->as_io, out);
		for (int i = 0; i < m->nr_devices; i++)
			if (m->devices[i].vfio)
				vfio_pci_dump_ioeventfds(m->devices[i].vfio, out);
		known = true;
	}
	return known ? 0 : -EINVAL;
}
