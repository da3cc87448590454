/*
 * mode=stream (stream.c): what the guest writes on the disk, read back by the
 * host tests of reset in place and of quit during I/O (tests/kvm).  Shared by
 * the freestanding guest and the host test, so it needs nothing but stdint.
 *
 * Sector 0 holds a boot record: the guest reads it at start, adds one, and
 * writes it back (flushed) before anything else, so the disk counts how many
 * times the guest booted on it.  Then the guest writes data sectors
 * 1, 2, 3 ... in order, @qd requests in flight, each a struct stream_sector
 * naming its boot and sequence number and filled with bytes that depend on
 * both, so a torn, stale or misplaced sector never checks.
 */
#ifndef STREAM_ABI_H
#define STREAM_ABI_H

#include <stdint.h>

#define STREAM_BOOT_MAGIC 0x544f4f424d564b4bull   /* "KKVMBOOT" */
#define STREAM_DATA_MAGIC 0x41544144564d564bull   /* "KVMVDATA" */
#define STREAM_SECTOR     512u

struct stream_boot {
	uint64_t magic, boots;
};

struct stream_sector {
	uint64_t magic, boot, seq;     /* seq: the sector number it was written to */
	uint8_t fill[STREAM_SECTOR - 24];
};

static inline uint8_t stream_fill_byte(uint64_t boot, uint64_t seq, unsigned i)
{
	return (uint8_t)((seq * 2654435761u) ^ (boot * 40503u) ^ (i * 7u));
}

/* Whether @s is a whole sector written by boot @boot at @seq. */
static inline int stream_sector_ok(const struct stream_sector *s, uint64_t boot, uint64_t seq)
{
	if (s->magic != STREAM_DATA_MAGIC || s->boot != boot || s->seq != seq)
		return 0;
	for (unsigned i = 0; i < sizeof(s->fill); i++)
		if (s->fill[i] != stream_fill_byte(boot, seq, i))
			return 0;
	return 1;
}

#endif
