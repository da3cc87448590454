/*
 * virtio-rng driver (virtio 1.2 §5.4): one queue of device-writable
 * buffers; the device fills as much of each as it has entropy for.
 */
#include "guest.h"
#include "virtio.h"

int vrng_init(struct vrng *r, struct pci_dev *d, const struct virtio_opts *o)
{
	memset(r, 0, sizeof(*r));
	if (virtio_pci_probe(&r->vd, d) || r->vd.type != VIRTIO_ID_RNG)
		return -1;
	return virtio_init(&r->vd, 0, 1, o);
}

uint32_t vrng_read(struct vrng *r, void *buf, uint32_t len)
{
	struct virtq *vq = &r->vd.vq[0];
	struct virtq_buf b = { buf, len, true };
	uint64_t irqs = virtq_interrupts(vq);
	uint32_t got = 0;

	if (virtq_add(vq, &b, 1, buf) < 0)
		GUEST_FAIL("virtio-rng: ring full");
	virtq_kick(vq);
	/* Interrupt first, then harvest: see vblk's finish(). */
	virtq_wait_irq_after(vq, irqs);
	while (!virtq_get_used(vq, &got))
		virtq_wait(vq);
	if (got > len)
		GUEST_FAIL("virtio-rng: device wrote %u bytes into a %u-byte buffer", got, len);
	r->requests++;
	r->bytes += got;
	return got;
}
