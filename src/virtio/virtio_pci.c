/*
 * The virtio 1.x modern PCI transport (virtio 1.2 §4.1).
 *
 * BAR 4 (64-bit prefetchable, 16 KiB) is a container of four windows:
 *   0x0000 common config, 0x1000 ISR, 0x2000 device config,
 *   0x3000 notify: queue q rings at 0x3000 + q * VIRTIO_PCI_NOTIFY_MULT.
 * BAR 1 (32-bit, 4 KiB) holds the MSI-X table at 0 and the PBA at 0x800,
 * one vector per queue plus one for config changes.
 *
 * Host notifiers: while the driver has DRIVER_OK, bus mastering is on and
 * ioeventfd is configured, each ready queue's doorbell is an ioeventfd
 * (len 0) whose handler runs in vdev->loop.  Otherwise a doorbell write
 * reaches notify_write() and the queue is served on the writing vCPU.
 *
 * Locks, outermost first: vp->ctrl_lock (status transitions, notifier
 * start/stop, bus master), then vdev->lock (registers and queue work), then
 * the MSI-X lock.  Stopping notifiers waits for the loop thread, whose
 * handlers take vdev->lock, so vdev->lock is never held across a start or a
 * stop; the loop thread never takes ctrl_lock.  Around all of them, when the
 * access came through PCI config space (the config access window, bus master,
 * reset), is the PCI function's lock, not the bus's (pci.h): a stop or a
 * drain here holds up this function only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/log.h"
#include "virtio/virtio_pci_internal.h"

/* A device_status write; vdev->lock not held. */
static void set_status(struct virtio_pci *vp, uint8_t status)
{
	struct virtio_dev *vdev = vp->vdev;

	pthread_mutex_lock(&vp->ctrl_lock);
	/* Stop before the core sees the change: the last doorbells are
	 * processed while the queues still exist. */
	if (!(status & VIRTIO_STATUS_DRIVER_OK))
		virtio_pci_stop_notifiers(vp);
	pthread_mutex_lock(&vdev->lock);
	if (virtio_set_status(vdev, status) == 0) {
		vp->dfselect = vp->gfselect = 0;
		vp->queue_sel = 0;
		vp->start_failed = false;  /* a new driver gets a new try */
	}
	pthread_mutex_unlock(&vdev->lock);
	virtio_pci_update_notifiers(vp);
	pthread_mutex_unlock(&vp->ctrl_lock);
}

/* ---- common config ---------------------------------------------------------------- */

/* The structure as the driver would read it now; vdev->lock held. */
static void common_snapshot(struct virtio_pci *vp, uint8_t *r)
{
	struct virtio_dev *vdev = vp->vdev;
	uint64_t f;

	memset(r, 0, COMMON_SIZE);
	pci_set_long(r + 0x00, vp->dfselect);
	f = vp->dfselect < 2 ? vdev->host_features >> (32 * vp->dfselect) : 0;
	pci_set_long(r + 0x04, (uint32_t)f);
	pci_set_long(r + 0x08, vp->gfselect);
	f = vp->gfselect < 2 ? vdev->guest_features >> (32 * vp->gfselect) : 0;
	pci_set_long(r + 0x0c, (uint32_t)f);
	pci_set_word(r + 0x10, vdev->config_vector);
	pci_set_word(r + 0x12, (uint16_t)vp->nr_queues);
	r[0x14] = vdev->status;
	r[0x15] = vdev->config_generation;
	pci_set_word(r + 0x16, vp->queue_sel);
	if (vp->queue_sel < vp->nr_queues) {
		const struct virtio_queue *q = &vdev->queues[vp->queue_sel];

		pci_set_word(r + 0x18, q->size);
		pci_set_word(r + 0x1a, q->vector);
		pci_set_word(r + 0x1c, q->ready);
		pci_set_word(r + 0x1e, vp->queue_sel);
		for (int i = 0; i < 2; i++) {
			pci_set_long(r + 0x20 + 4 * i, (uint32_t)(q->desc >> (32 * i)));
			pci_set_long(r + 0x28 + 4 * i, (uint32_t)(q->driver >> (32 * i)));
			pci_set_long(r + 0x30 + 4 * i, (uint32_t)(q->device >> (32 * i)));
		}
	}
	/* Out of range: queue_size 0 says "no such queue" (§4.1.4.3.2). */
}

static uint64_t common_read(void *opaque, uint64_t offset, unsigned size)
{
	struct virtio_pci *vp = opaque;
	uint8_t regs[COMMON_SIZE];
	uint64_t value = 0;

	pthread_mutex_lock(&vp->vdev->lock);
	common_snapshot(vp, regs);
	pthread_mutex_unlock(&vp->vdev->lock);
	for (unsigned i = 0; i < size; i++)
		if (offset + i < COMMON_SIZE)
			value |= (uint64_t)regs[offset + i] << (8 * i);
	return value;
}

static uint16_t vector_or_none(struct virtio_pci *vp, uint64_t v)
{
	/* Reading back NO_VECTOR tells the driver we could not take it. */
	return v < vp->nr_vectors ? (uint16_t)v : VIRTIO_NO_VECTOR;
}

static bool valid_queue_size(struct virtio_pci *vp, uint64_t v)
{
	return v && !(v & (v - 1)) && v <= vp->vdev->ops->queue_max;
}

/* Field @off now holds @v; vdev->lock held. */
static void common_field_write(struct virtio_pci *vp, unsigned off, uint64_t v)
{
	struct virtio_dev *vdev = vp->vdev;
	struct virtio_queue *q = vp->queue_sel < vp->nr_queues ?
				 &vdev->queues[vp->queue_sel] : NULL;
	bool running = vdev->status & VIRTIO_STATUS_DRIVER_OK;

	switch (off) {
	case 0x00: vp->dfselect = (uint32_t)v; break;
	case 0x08: vp->gfselect = (uint32_t)v; break;
	case 0x0c:
		/* Fixed once FEATURES_OK was accepted (§3.1.1); FEATURES_OK
		 * cannot be cleared without a reset, DRIVER_OK checked all the
		 * same. */
		if (vp->gfselect < 2 &&
		    !(vdev->status & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK))) {
			unsigned shift = 32 * vp->gfselect;

			vdev->guest_features &= ~(0xffffffffull << shift);
			vdev->guest_features |= (v & 0xffffffffull) << shift;
		}
		break;
	case 0x10: vdev->config_vector = vector_or_none(vp, v); break;
	case 0x16: vp->queue_sel = (uint16_t)v; break;
	case 0x18:
		if (q && !q->ready && valid_queue_size(vp, v))
			q->size = (uint16_t)v;
		break;
	case 0x1a: if (q) q->vector = vector_or_none(vp, v); break;
	case 0x1c:
		/* Only 1 may be written; a queue cannot join a running device. */
		if (q && v == 1 && !running)
			q->ready = true;
		break;
	case 0x20: if (q && !q->ready) q->desc = v; break;
	case 0x28: if (q && !q->ready) q->driver = v; break;
	case 0x30: if (q && !q->ready) q->device = v; break;
	default: break;  /* read-only fields */
	}
}

static const struct { uint8_t off, size; } common_fields[] = {
	{ 0x00, 4 }, { 0x04, 4 }, { 0x08, 4 }, { 0x0c, 4 }, { 0x10, 2 }, { 0x12, 2 },
	{ 0x14, 1 }, { 0x15, 1 }, { 0x16, 2 }, { 0x18, 2 }, { 0x1a, 2 }, { 0x1c, 2 },
	{ 0x1e, 2 }, { 0x20, 8 }, { 0x28, 8 }, { 0x30, 8 },
};

static void common_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct virtio_pci *vp = opaque;
	uint8_t regs[COMMON_SIZE];
	int status = -1;

	pthread_mutex_lock(&vp->vdev->lock);
	common_snapshot(vp, regs);
	/* Each field the write touches gets its old bytes patched with the
	 * new ones: a 64-bit address written as two dwords, or a byte of a
	 * word, lands as a whole-field write. */
	for (size_t i = 0; i < sizeof(common_fields) / sizeof(common_fields[0]); i++) {
		unsigned off = common_fields[i].off, fsize = common_fields[i].size;
		uint64_t v = 0;

		if (offset >= off + fsize || offset + size <= off)
			continue;
		for (unsigned b = 0; b < fsize; b++) {
			uint8_t byte = regs[off + b];

			if (off + b >= offset && off + b < offset + size)
				byte = (uint8_t)(data >> (8 * (off + b - offset)));
			v |= (uint64_t)byte << (8 * b);
		}
		if (off == 0x14)
			status = (int)v;  /* after the lock is dropped */
		else
			common_field_write(vp, off, v);
	}
	pthread_mutex_unlock(&vp->vdev->lock);
	if (status >= 0)
		set_status(vp, (uint8_t)status);
}

static const struct mr_ops common_ops = {
	.read = common_read, .write = common_write,
	.valid_min = 1, .valid_max = 8, .impl_min = 1, .impl_max = 4,
};

/* ---- ISR, device config, notify ------------------------------------------------------ */

static uint64_t isr_read(void *opaque, uint64_t offset, unsigned size)
{
	struct virtio_pci *vp = opaque;
	uint8_t isr = 0;

	(void)size;
	if (offset != 0)
		return 0;
	/* Reading acknowledges (§4.1.4.5). */
	pthread_mutex_lock(&vp->vdev->lock);
	isr = vp->vdev->isr;
	vp->vdev->isr = 0;
	pthread_mutex_unlock(&vp->vdev->lock);
	return isr;
}

static void ignore_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	(void)opaque; (void)offset; (void)data; (void)size;
}

static const struct mr_ops isr_ops = {
	.read = isr_read, .write = ignore_write, .valid_min = 1, .valid_max = 4,
};

static uint64_t device_read(void *opaque, uint64_t offset, unsigned size)
{
	struct virtio_pci *vp = opaque;
	uint32_t cfg_size = vp->vdev->ops->config_size;
	uint8_t buf[4] = { 0 };
	uint64_t value = 0;

	if (offset >= cfg_size || !vp->vdev->ops->read_config)
		return 0;
	pthread_mutex_lock(&vp->vdev->lock);
	vp->vdev->ops->read_config(vp->vdev, (uint32_t)offset, buf,
				   size < cfg_size - offset ? size : (uint32_t)(cfg_size - offset));
	pthread_mutex_unlock(&vp->vdev->lock);
	for (unsigned i = 0; i < size; i++)
		value |= (uint64_t)buf[i] << (8 * i);
	return value;
}

static void device_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct virtio_pci *vp = opaque;
	uint8_t buf[4];

	if (offset + size > vp->vdev->ops->config_size || !vp->vdev->ops->write_config)
		return;
	for (unsigned i = 0; i < size; i++)
		buf[i] = (uint8_t)(data >> (8 * i));
	pthread_mutex_lock(&vp->vdev->lock);
	vp->vdev->ops->write_config(vp->vdev, (uint32_t)offset, buf, size);
	pthread_mutex_unlock(&vp->vdev->lock);
}

static const struct mr_ops device_ops = {
	.read = device_read, .write = device_write,
	.valid_min = 1, .valid_max = 8, .impl_min = 1, .impl_max = 4,
};

static uint64_t notify_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque; (void)offset; (void)size;
	return 0;
}

/* A doorbell that no ioeventfd took: ioeventfd=off, the fallback after a
 * failed start, or a write through the PCI config access window. */
static void notify_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct virtio_pci *vp = opaque;

	(void)data; (void)size;
	atomic_fetch_add(&vp->trapped, 1);
	if (offset / VIRTIO_PCI_NOTIFY_MULT < vp->nr_queues)
		atomic_fetch_add(&vp->vdev->queues[offset / VIRTIO_PCI_NOTIFY_MULT].trapped, 1);
	/* Without bus mastering the device may not touch the rings. */
	if (!atomic_load(&vp->dma_on))
		return;
	pthread_mutex_lock(&vp->vdev->lock);
	virtio_pci_process_queue(vp, (unsigned)(offset / VIRTIO_PCI_NOTIFY_MULT));
	pthread_mutex_unlock(&vp->vdev->lock);
}

static const struct mr_ops notify_ops = {
	.read = notify_read, .write = notify_write,
};

/* ---- PCI side: config access window, bus master, reset ---------------------------------- */

/* An access through VIRTIO_PCI_CAP_PCI_CFG, as the window is set now. */
static bool cfg_window(struct virtio_pci *vp, uint32_t *off, unsigned *len)
{
	const uint8_t *c = &vp->pci.config[vp->cfg_cap];

	*off = pci_get_long(c + 8);
	*len = pci_get_long(c + 12);
	/* Only BAR 4: the registers; the MSI-X BAR is not reachable here. */
	return c[4] == BAR_REGS && (*len == 1 || *len == 2 || *len == 4) &&
	       !(*off & (*len - 1)) && *off < BAR_REGS_SIZE;
}

static uint64_t bar_regs_read(struct virtio_pci *vp, uint32_t off, unsigned len)
{
	switch (off & ~(WINDOW - 1)) {
	case OFF_COMMON: return common_read(vp, off % WINDOW, len);
	case OFF_ISR:    return isr_read(vp, off % WINDOW, len);
	case OFF_DEVICE: return device_read(vp, off % WINDOW, len);
	default:         return notify_read(vp, off % WINDOW, len);
	}
}

static void bar_regs_write(struct virtio_pci *vp, uint32_t off, uint64_t data, unsigned len)
{
	switch (off & ~(WINDOW - 1)) {
	case OFF_COMMON: common_write(vp, off % WINDOW, data, len); break;
	case OFF_DEVICE: device_write(vp, off % WINDOW, data, len); break;
	case OFF_NOTIFY:
		if (off % WINDOW < vp->nr_queues * VIRTIO_PCI_NOTIFY_MULT)
			notify_write(vp, off % WINDOW, data, len);
		break;
	default: break;
	}
}

static bool touches_cfg_data(struct virtio_pci *vp, uint32_t offset, unsigned len)
{
	uint32_t data = vp->cfg_cap + 16u;

	return offset < data + 4 && offset + len > data;
}

static void vp_config_read(struct pci_device *d, uint32_t offset, unsigned len)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t off;
	unsigned n;
	uint64_t v;

	if (!touches_cfg_data(vp, offset, len) || !cfg_window(vp, &off, &n))
		return;
	v = bar_regs_read(vp, off, n);
	for (unsigned i = 0; i < 4; i++)
		d->config[vp->cfg_cap + 16 + i] = i < n ? (uint8_t)(v >> (8 * i)) : 0;
}

static void vp_config_write(struct pci_device *d, uint32_t offset, uint32_t value,
			    unsigned len)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t off;
	unsigned n;

	(void)value;
	if (!touches_cfg_data(vp, offset, len) || !cfg_window(vp, &off, &n))
		return;
	bar_regs_write(vp, off, pci_get_long(&d->config[vp->cfg_cap + 16]), n);
}

/*
 * Bus Master Enable is the device's permission to touch guest memory
 * (virtio_set_dma()).  Cleared: the notifiers stop first (their last
 * doorbells are still served), then the device stops and waits for its
 * data transfers, holding their completions; the guest's config write
 * returns after that.  Set: the held completions are delivered, then the
 * notifiers start and kick every queue.
 */
static void vp_bus_master(struct pci_device *d, bool enabled)
{
	struct virtio_pci *vp = d->opaque;

	pthread_mutex_lock(&vp->ctrl_lock);
	vp->bus_master = enabled;
	atomic_store(&vp->dma_on, enabled);
	if (enabled)
		virtio_set_dma(vp->vdev, true);
	virtio_pci_update_notifiers(vp);
	if (!enabled)
		virtio_set_dma(vp->vdev, false);
	pthread_mutex_unlock(&vp->ctrl_lock);
}

static void vp_reset(struct pci_device *d)
{
	struct virtio_pci *vp = d->opaque;

	pthread_mutex_lock(&vp->ctrl_lock);
	vp->bus_master = false;
	atomic_store(&vp->dma_on, false);
	virtio_pci_stop_notifiers(vp);
	virtio_set_dma(vp->vdev, false);
	pthread_mutex_lock(&vp->vdev->lock);
	virtio_reset(vp->vdev);
	vp->dfselect = vp->gfselect = 0;
	vp->queue_sel = 0;
	vp->start_failed = false;
	pthread_mutex_unlock(&vp->vdev->lock);
	pthread_mutex_unlock(&vp->ctrl_lock);
}

static const struct pci_device_ops vp_pci_ops = {
	.config_read = vp_config_read, .config_write = vp_config_write,
	.bus_master = vp_bus_master, .reset = vp_reset,
};

/* Used-buffer and config interrupts; the core set the ISR bit already,
 * and with NO_VECTOR that is all the driver gets (there is no INTx). */
static void vp_notify(struct virtio_dev *vdev, uint16_t vector)
{
	struct virtio_pci *vp = vdev->transport_opaque;

	if (vector < vp->nr_vectors)
		msix_notify(&vp->pci, vector);
}

static const struct virtio_transport_ops vp_transport = { .notify = vp_notify };

/* ---- building one -------------------------------------------------------------------- */

static int add_cap(struct pci_device *d, uint8_t type, uint8_t len, uint32_t offset,
		   uint32_t length)
{
	int c = pci_add_capability(d, PCI_CAP_ID_VNDR, len);

	if (c < 0)
		return c;
	d->config[c + 2] = len;
	d->config[c + 3] = type;
	d->config[c + 4] = type == CFG_PCI ? 0 : BAR_REGS;
	pci_set_long(&d->config[c + 8], offset);
	pci_set_long(&d->config[c + 12], length);
	return c;
}

static int add_caps(struct virtio_pci *vp)
{
	struct pci_device *d = &vp->pci;
	int c;

	if ((c = add_cap(d, CFG_COMMON, CAP_LEN, OFF_COMMON, COMMON_SIZE)) < 0)
		return c;
	if ((c = add_cap(d, CFG_NOTIFY, CAP_NOTIFY_LEN, OFF_NOTIFY,
			 vp->nr_queues * VIRTIO_PCI_NOTIFY_MULT)) < 0)
		return c;
	pci_set_long(&d->config[c + 16], VIRTIO_PCI_NOTIFY_MULT);
	if ((c = add_cap(d, CFG_ISR, CAP_LEN, OFF_ISR, 1)) < 0)
		return c;
	if (vp->vdev->ops->config_size &&
	    (c = add_cap(d, CFG_DEVICE, CAP_LEN, OFF_DEVICE, vp->vdev->ops->config_size)) < 0)
		return c;
	if ((c = add_cap(d, CFG_PCI, CAP_PCI_CFG_LEN, 0, 0)) < 0)
		return c;
	/* The driver points the window (bar, offset, length), then moves
	 * data through pci_cfg_data. */
	vp->cfg_cap = (uint8_t)c;
	d->wmask[c + 4] = 0xff;
	memset(&d->wmask[c + 8], 0xff, 8);
	memset(&d->wmask[c + 16], 0xff, 4);
	return 0;
}

static void free_regions(struct virtio_pci *vp)
{
	struct mem_region *children[] = { vp->common_mr, vp->isr_mr, vp->device_mr,
					  vp->notify_mr };

	memory_transaction_begin();
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
		if (!children[i])
			continue;
		if (vp->bar_regs)
			mr_del_subregion(vp->bar_regs, children[i]);
		mr_free(children[i]);
	}
	memory_transaction_commit();
	mr_free(vp->bar_regs);
	mr_free(vp->bar_msix);
}

static int build(struct virtio_pci *vp)
{
	struct pci_device *d = &vp->pci;
	int r;

	vp->bar_regs = mr_new_container("virtio-pci-regs", BAR_REGS_SIZE);
	vp->bar_msix = mr_new_container("virtio-pci-msix", BAR_MSIX_SIZE);
	vp->common_mr = mr_new_io("virtio-pci-common", WINDOW, &common_ops, vp);
	vp->isr_mr = mr_new_io("virtio-pci-isr", WINDOW, &isr_ops, vp);
	vp->device_mr = mr_new_io("virtio-pci-device", WINDOW, &device_ops, vp);
	vp->notify_mr = mr_new_io("virtio-pci-notify", WINDOW, &notify_ops, vp);
	if (!vp->bar_regs || !vp->bar_msix || !vp->common_mr || !vp->isr_mr ||
	    !vp->device_mr || !vp->notify_mr)
		return -ENOMEM;
	memory_transaction_begin();
	mr_add_subregion(vp->bar_regs, OFF_COMMON, vp->common_mr, 0);
	mr_add_subregion(vp->bar_regs, OFF_ISR, vp->isr_mr, 0);
	mr_add_subregion(vp->bar_regs, OFF_DEVICE, vp->device_mr, 0);
	mr_add_subregion(vp->bar_regs, OFF_NOTIFY, vp->notify_mr, 0);
	memory_transaction_commit();
	r = pci_register_bar(d, BAR_REGS, PCI_BAR_MEM64 | PCI_BAR_PREFETCH, vp->bar_regs);
	if (!r)
		r = pci_register_bar(d, BAR_MSIX, PCI_BAR_MEM32, vp->bar_msix);
	if (!r)
		r = add_caps(vp);
	if (!r)
		r = msix_init(d, vp->nr_vectors, BAR_MSIX, 0, BAR_MSIX, MSIX_PBA_OFFSET);
	return r;
}

int virtio_pci_create(struct pci_bus *bus, struct virtio_dev *vdev,
		      const struct virtio_pci_opts *opts, struct virtio_pci **out)
{
	const struct virtio_dev_ops *ops = vdev ? vdev->ops : NULL;
	struct virtio_pci *vp;
	uint32_t class_code;
	int r;

	if (!bus || !ops || !opts || !out || !ops->queue_notify || ops->nr_queues == 0 ||
	    ops->nr_queues > VIRTIO_MAX_QUEUES || !vdev->loop)
		return -EINVAL;
	vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	vp->vdev = vdev;
	vp->ioeventfd = opts->ioeventfd;
	vp->nr_queues = ops->nr_queues;
	vp->nr_vectors = ops->nr_queues + 1;
	pthread_mutex_init(&vp->ctrl_lock, NULL);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vp->qref[q] = (struct queue_ref){ .vp = vp, .q = q };
	class_code = ops->device_id == VIRTIO_ID_BLOCK ? 0x018000 : 0x00ff00;
	pci_device_init(&vp->pci, vdev->name, VIRTIO_PCI_VENDOR,
			(uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id), class_code, 1,
			VIRTIO_PCI_VENDOR, ops->device_id, &vp_pci_ops, vp);
	r = build(vp);
	if (!r) {
		vdev->transport = &vp_transport;
		vdev->transport_opaque = vp;
		r = pci_bus_add_device(bus, &vp->pci, opts->slot);
	}
	if (!r)
		virtio_set_dma(vdev, false);  /* Bus Master Enable starts clear */
	if (r < 0) {
		log_error(vdev->name, "cannot create the PCI function: %s", strerror(-r));
		vdev->transport = NULL;
		vdev->transport_opaque = NULL;
		msix_uninit(&vp->pci);
		free_regions(vp);
		pthread_mutex_destroy(&vp->ctrl_lock);
		free(vp);
		return r;
	}
	*out = vp;
	return 0;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp)
		return;
	pthread_mutex_lock(&vp->ctrl_lock);
	vp->bus_master = false;
	atomic_store(&vp->dma_on, false);
	virtio_pci_stop_notifiers(vp);
	pthread_mutex_unlock(&vp->ctrl_lock);
	pthread_mutex_lock(&vp->vdev->lock);
	vp->vdev->transport = NULL;
	vp->vdev->transport_opaque = NULL;
	pthread_mutex_unlock(&vp->vdev->lock);
	if (vp->pci.bus)
		pci_bus_remove_device(vp->pci.bus, &vp->pci);
	msix_uninit(&vp->pci);
	free_regions(vp);
	pthread_mutex_destroy(&vp->ctrl_lock);
	free(vp);
}

struct pci_device *virtio_pci_device(struct virtio_pci *vp)
{
	return &vp->pci;
}

bool virtio_pci_notifiers_active(const struct virtio_pci *vp)
{
	return atomic_load(&vp->notifiers_active);
}

uint64_t virtio_pci_trapped_notifies(const struct virtio_pci *vp)
{
	return atomic_load(&vp->trapped);
}
