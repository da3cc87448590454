/* Guest RAM in a memfd, and the bounds-checked accessors everything uses. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kickvm/guest_mem.h"

#define GiB (1ull << 30)

int guest_mem_create(struct guest_mem *gm, uint64_t size, uint64_t hole_start)
{
	uint64_t low = size < hole_start ? size : hole_start;
	void *p;

	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
	if (size == 0 || (size & 0xfff))
		return -EINVAL;
	gm->memfd = memfd_create("kickvm-ram", MFD_CLOEXEC);
	if (gm->memfd < 0)
		return -errno;
	if (ftruncate(gm->memfd, (off_t)size) < 0)
		goto fail;
	/* One mapping for all of RAM; banks are windows into it. */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		 gm->memfd, 0);
	if (p == MAP_FAILED)
		goto fail;
	madvise(p, size, MADV_MERGEABLE);
	gm->total = size;
	gm->banks[0] = (struct guest_mem_bank){ .gpa = 0, .size = low, .hva = p, .fd_offset = 0 };
	gm->nr_banks = 1;
	if (size > low) {
		gm->banks[1] = (struct guest_mem_bank){
			.gpa = 4 * GiB, .size = size - low, .hva = (uint8_t *)p + low,
			.fd_offset = low,
		};
		gm->nr_banks = 2;
	}
	return 0;
fail: {
	int err = -errno;

	close(gm->memfd);
	gm->memfd = -1;
	return err;
}
}

void guest_mem_destroy(struct guest_mem *gm)
{
	if (gm->nr_banks)
		munmap(gm->banks[0].hva, gm->total);
	if (gm->memfd >= 0)
		close(gm->memfd);
	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
}

void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < gm->nr_banks; i++) {
		const struct guest_mem_bank *b = &gm->banks[i];

		/* Written so that no sum can overflow. */
		if (gpa >= b->gpa && gpa - b->gpa <= b->size && len <= b->size - (gpa - b->gpa)) {
			if (__builtin_expect(gm->record != NULL, 0) && len)
				guest_mem_record_add(gm->record, gpa, len);
			return b->hva + (gpa - b->gpa);
		}
	}
	return NULL;
}

void guest_mem_record_add(struct guest_mem_record *rec, uint64_t gpa, uint64_t len)
{
	uint64_t end = gpa + len;     /* no overflow: the range is inside a bank */
	unsigned i, j;

	if (rec->overflow || !len)
		return;
	/* Merge with every range it touches; what is left is one range. */
	for (i = 0; i < rec->nr;) {
		struct guest_mem_range *r = &rec->ranges[i];

		if (gpa <= r->gpa + r->len && r->gpa <= end) {
			if (r->gpa < gpa)
				gpa = r->gpa;
			if (r->gpa + r->len > end)
				end = r->gpa + r->len;
			memmove(r, r + 1, (rec->nr - i - 1) * sizeof(*r));
			rec->nr--;
			continue;
		}
		i++;
	}
	if (rec->nr == GUEST_MEM_MAX_RANGES) {
		rec->overflow = true;
		return;
	}
	/* Kept in address order: the dump and the tests read them so. */
	for (j = rec->nr; j > 0 && rec->ranges[j - 1].gpa > gpa; j--)
		rec->ranges[j] = rec->ranges[j - 1];
	rec->ranges[j] = (struct guest_mem_range){ .gpa = gpa, .len = end - gpa };
	rec->nr++;
}

void guest_mem_record_start(struct guest_mem *gm, struct guest_mem_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	gm->record = rec;
}

void guest_mem_record_stop(struct guest_mem *gm)
{
	gm->record = NULL;
}

int guest_mem_read(const struct guest_mem *gm, uint64_t gpa, void *buf, size_t len)
{
	void *p = guest_mem_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *gm, uint64_t gpa, const void *buf, size_t len)
{
	void *p = guest_mem_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

int guest_mem_read_str(const struct guest_mem *gm, uint64_t gpa, char *buf, size_t max)
{
	for (size_t i = 0; i < max; i++) {
		const char *c = guest_mem_ptr(gm, gpa + i, 1);

		if (!c || gpa + i < gpa)
			return -EFAULT;
		buf[i] = *c;
		if (*c == '\0')
			return 0;
	}
	if (max)
		buf[max - 1] = '\0';
	return -ENAMETOOLONG;
}
