/*
 * Host notifiers of the virtio-pci transport (docs/kvm-notes.md): while
 * the driver has DRIVER_OK and bus mastering on, each ready queue's doorbell
 * is an ioeventfd (len 0) whose handler runs in the device's event loop; KVM
 * (or, where KVM refuses, the memory layer's userspace fallback) signals it.
 * Locking: see virtio_pci.c.
 */
#include <errno.h>
#include <string.h>

#include "kickvm/log.h"
#include "virtio/virtio_pci_internal.h"

/* ---- queue work --------------------------------------------------------------- */

/* vdev->lock held. */
void virtio_pci_process_queue(struct virtio_pci *vp, unsigned q)
{
	struct virtio_dev *vdev = vp->vdev;

	if (q >= vp->nr_queues || vdev->broken || !(vdev->status & VIRTIO_STATUS_DRIVER_OK) ||
	    !vdev->queues[q].ready || vdev->dma_off)
		return;
	atomic_fetch_add(&vdev->queues[q].notifies, 1);
	vdev->ops->queue_notify(vdev, q);
}

/* A host notifier fired: runs in vdev->loop (and once more at stop). */
static void host_notifier_read(struct event_notifier *e, void *opaque)
{
	struct queue_ref *ref = opaque;
	uint64_t n = event_notifier_test_and_clear(e);

	if (!n)
		return;
	atomic_fetch_add(&ref->vp->vdev->queues[ref->q].signals, n);
	pthread_mutex_lock(&ref->vp->vdev->lock);
	virtio_pci_process_queue(ref->vp, ref->q);
	pthread_mutex_unlock(&ref->vp->vdev->lock);
}

/*
 * Work for the busy-poller on queue @vq: a chain the driver made available
 * that the device can take now.  A starved queue has chains it cannot take
 * until a request of its own completes (which resumes it without us):
 * reporting them would make the loop spin, calling a handler that takes
 * nothing, for as long as the requests in flight take.  vdev->lock held.
 */
static bool has_work(struct virtio_queue *vq)
{
	return vq->ready && vq->notifier_active && !atomic_load(&vq->starved) &&
	       virtq_pending(&vq->vq) > 0;
}

/*
 * Busy-polling (event.h): is there a request the driver has made available
 * that we have not taken?  Seen before its doorbell's eventfd is even read;
 * the signal is still consumed (and counted) later.  trylock: never wait on
 * a vCPU that holds the device for a register access.
 */
static bool poll_queues(void *opaque)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vdev = vp->vdev;
	bool work = false;

	if (!atomic_load(&vp->notifiers_active) || pthread_mutex_trylock(&vdev->lock))
		return false;
	if ((vdev->status & VIRTIO_STATUS_DRIVER_OK) && !vdev->broken)
		for (unsigned q = 0; q < vp->nr_queues && !work; q++)
			work = has_work(&vdev->queues[q]);
	pthread_mutex_unlock(&vdev->lock);
	return work;
}

static void poll_queues_ready(void *opaque)
{
	struct virtio_pci *vp = opaque;

	pthread_mutex_lock(&vp->vdev->lock);
	for (unsigned q = 0; q < vp->nr_queues; q++) {
		struct virtio_queue *vq = &vp->vdev->queues[q];

		if (has_work(vq)) {
			atomic_fetch_add(&vq->polled, 1);
			virtio_pci_process_queue(vp, q);
		}
	}
	pthread_mutex_unlock(&vp->vdev->lock);
}

/* The loop starts spinning: while it looks at the avail rings itself, the
 * driver need not ring (no doorbell write at all, the cheapest path).  Only
 * an optimisation: skipped if a vCPU holds the device. */
static void poll_queues_begin(void *opaque)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vdev = vp->vdev;

	if (!atomic_load(&vp->notifiers_active) || pthread_mutex_trylock(&vdev->lock))
		return;
	if ((vdev->status & VIRTIO_STATUS_DRIVER_OK) && !vdev->broken)
		for (unsigned q = 0; q < vp->nr_queues; q++)
			if (vdev->queues[q].ready && vdev->queues[q].notifier_active)
				virtq_set_polled(&vdev->queues[q].vq, true);
	pthread_mutex_unlock(&vdev->lock);
}

/* The loop stops spinning: doorbells on again, then one more look for what
 * the driver queued while it was told not to ring. */
static bool poll_queues_end(void *opaque)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vdev = vp->vdev;
	bool work = false;

	pthread_mutex_lock(&vdev->lock);
	for (unsigned q = 0; q < vp->nr_queues; q++) {
		struct virtio_queue *vq = &vdev->queues[q];

		if (!vq->vq.polled)
			continue;
		virtq_set_polled(&vq->vq, false);
		work |= has_work(vq);
	}
	pthread_mutex_unlock(&vdev->lock);
	return work;
}

static const struct event_poller queue_poller = {
	.poll = poll_queues,
	.ready = poll_queues_ready,
	.begin = poll_queues_begin,
	.end = poll_queues_end,
};

/* ctrl_lock held, vdev->lock not. */
void virtio_pci_stop_notifiers(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;
	unsigned q;

	if (!atomic_load(&vp->notifiers_active))
		return;
	/* One transaction: KVM drops every doorbell at once. */
	memory_transaction_begin();
	for (q = 0; q < vp->nr_queues; q++)
		if (vdev->queues[q].notifier_active)
			mr_del_eventfd(vp->notify_mr, q * VIRTIO_PCI_NOTIFY_MULT, 0, false, 0,
				       &vdev->queues[q].notifier);
	memory_transaction_commit();
	atomic_store(&vp->notifiers_active, false);
	event_loop_set_poll(vdev->loop, NULL, vp);
	for (q = 0; q < vp->nr_queues; q++) {
		struct event_notifier *e = &vdev->queues[q].notifier;

		if (!vdev->queues[q].notifier_active)
			continue;
		/* Waits until the handler is not running and never will again. */
		event_loop_set_notifier(vdev->loop, e, NULL, NULL);
		/* A doorbell rung before the commit must not be lost. */
		host_notifier_read(e, &vp->qref[q]);
		atomic_fetch_add(&vdev->queues[q].fallback, atomic_load(&e->fallback_signals));
		event_notifier_cleanup(e);
		vdev->queues[q].notifier_active = false;
	}
}

/* Undo a partial start: @bound handlers set, @nr_init notifiers made. */
static void unwind_start(struct virtio_pci *vp, const bool *ready, unsigned bound)
{
	for (unsigned q = 0; q < vp->nr_queues; q++) {
		struct event_notifier *e = &vp->vdev->queues[q].notifier;

		if (!ready[q])
			continue;
		if (q < bound)
			event_loop_set_notifier(vp->vdev->loop, e, NULL, NULL);
		event_notifier_cleanup(e);
	}
}

/* The memory layer falls back to userspace when KVM refuses a doorbell, so
 * the device still works, on the slow path: say so in the device's name. */
static void report_kvm_refusal(struct virtio_pci *vp, const bool *ready)
{
	for (unsigned q = 0; q < vp->nr_queues; q++) {
		enum ioeventfd_path path;
		int err = 0;

		if (!ready[q] || mr_eventfd_path(vp->notify_mr, q * VIRTIO_PCI_NOTIFY_MULT,
						 &vp->vdev->queues[q].notifier, &path, &err) < 0)
			continue;
		if (path == IOEVENTFD_PATH_FALLBACK && err && !vp->fallback_logged) {
			vp->fallback_logged = true;
			log_warn(vp->vdev->name, "KVM refused the doorbell of queue %u (%s): "
				 "falling back to userspace notify (slower)", q, strerror(err));
		}
	}
}

/* ctrl_lock held, vdev->lock not. */
static int start_notifiers(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;
	bool ready[VIRTIO_MAX_QUEUES] = { false };
	unsigned q, added = 0;
	int r = 0;

	/* Queue enables are refused after DRIVER_OK, so this stays true. */
	pthread_mutex_lock(&vdev->lock);
	for (q = 0; q < vp->nr_queues; q++)
		ready[q] = vdev->queues[q].ready;
	pthread_mutex_unlock(&vdev->lock);

	for (q = 0; q < vp->nr_queues && !r; q++)
		if (ready[q])
			r = event_notifier_init(&vdev->queues[q].notifier, false);
	if (r) {
		unwind_start(vp, ready, 0);
		return r;
	}
	/* Handlers are bound before the transaction: binding waits for the
	 * loop thread, and nobody may wait on another thread while holding
	 * the process-wide memory lock.  Until the commit nothing signals. */
	for (q = 0; q < vp->nr_queues && !r; q++)
		if (ready[q])
			r = event_loop_set_notifier(vdev->loop, &vdev->queues[q].notifier,
						    host_notifier_read, &vp->qref[q]);
	if (r) {
		unwind_start(vp, ready, q);
		return r;
	}
	memory_transaction_begin();
	for (q = 0; q < vp->nr_queues && !r; q++) {
		if (!ready[q])
			continue;
		r = mr_add_eventfd(vp->notify_mr, q * VIRTIO_PCI_NOTIFY_MULT, 0, false, 0,
				   &vdev->queues[q].notifier);
		if (!r)
			added = q + 1;
	}
	if (r)
		for (q = 0; q < added; q++)
			if (ready[q])
				mr_del_eventfd(vp->notify_mr, q * VIRTIO_PCI_NOTIFY_MULT, 0,
					       false, 0, &vdev->queues[q].notifier);
	memory_transaction_commit();
	if (r) {
		unwind_start(vp, ready, vp->nr_queues);
		return r;
	}
	for (q = 0; q < vp->nr_queues; q++)
		vdev->queues[q].notifier_active = ready[q];
	atomic_store(&vp->notifiers_active, true);
	/* The iothread looks at the avail rings while it spins: a request is
	 * taken before its doorbell's eventfd even wakes anybody. */
	if (event_loop_set_poll(vdev->loop, &queue_poller, vp) < 0)
		log_info(vdev->name, "no busy-polling of the queues (out of memory)");
	report_kvm_refusal(vp, ready);
	/* Requests queued before DRIVER_OK, with no doorbell after them. */
	for (q = 0; q < vp->nr_queues; q++) {
		if (ready[q]) {
			atomic_fetch_add(&vdev->queues[q].kicks, 1);
			event_notifier_set(&vdev->queues[q].notifier);
		}
	}
	return 0;
}

void virtio_pci_doorbells(struct virtio_pci *vp, unsigned q, struct virtio_pci_doorbells *out)
{
	struct virtio_queue *vq = &vp->vdev->queues[q];
	uint64_t signals, fallback;

	memset(out, 0, sizeof(*out));
	if (q >= vp->nr_queues)
		return;
	pthread_mutex_lock(&vp->ctrl_lock);  /* the notifier is not torn down meanwhile */
	signals = atomic_load(&vq->signals);
	fallback = atomic_load(&vq->fallback);
	if (vq->notifier_active) {
		signals += event_notifier_pending(&vq->notifier);
		fallback += atomic_load(&vq->notifier.fallback_signals);
	}
	pthread_mutex_unlock(&vp->ctrl_lock);
	out->kicks = atomic_load(&vq->kicks);
	out->trapped = atomic_load(&vq->trapped);
	out->fallback = fallback;
	out->kvm = signals - out->kicks - fallback;
	out->doorbells = out->kvm + out->fallback + out->trapped;
}

/* Bring the notifiers in line with the state; ctrl_lock held. */
void virtio_pci_update_notifiers(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;
	bool live, want;
	int r;

	pthread_mutex_lock(&vdev->lock);
	live = (vdev->status & VIRTIO_STATUS_DRIVER_OK) && !vdev->broken;
	pthread_mutex_unlock(&vdev->lock);
	want = live && vp->bus_master && vp->ioeventfd && !vp->start_failed;
	if (!want) {
		virtio_pci_stop_notifiers(vp);
		return;
	}
	if (atomic_load(&vp->notifiers_active))
		return;
	r = start_notifiers(vp);
	if (!r)
		return;
	vp->start_failed = true;
	if (!vp->fallback_logged) {
		vp->fallback_logged = true;
		log_warn(vdev->name, "cannot start host notifiers (%s): "
			 "falling back to userspace notify (slower)", strerror(-r));
	}
	/* The kick the notifiers would have given, served here instead. */
	pthread_mutex_lock(&vdev->lock);
	for (unsigned q = 0; q < vp->nr_queues; q++)
		virtio_pci_process_queue(vp, q);
	pthread_mutex_unlock(&vdev->lock);
}

