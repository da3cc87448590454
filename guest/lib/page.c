/*
 * A page allocator for driver memory (virtqueues, DMA buffers): a bump
 * pointer over the RAM after the image, never freed.  Guests are short
 * programs that set up once; a free list would be code nobody exercises.
 *
 * RAM ends where the PVH memory map says the bank holding the image ends;
 * without a map (or a bank) a fixed 16 MiB after the image is assumed.
 */
#include "guest.h"

#define PAGE_SIZE          4096ull
#define NO_MEMMAP_RAM      (16ull << 20)

extern char _end[];            /* guest.ld: the first byte after the image */

static uint64_t next_page, ram_limit;

static void page_alloc_init(void)
{
	const struct hvm_start_info *si = guest_start_info();
	uint64_t start = ((uint64_t)_end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);

	next_page = start;
	ram_limit = start + NO_MEMMAP_RAM;
	if (!si || si->version < 1 || !si->memmap_paddr)
		return;

	const struct hvm_memmap_table_entry *map = (const void *)si->memmap_paddr;

	for (uint32_t i = 0; i < si->memmap_entries; i++) {
		if (map[i].type == 1 && map[i].addr <= start &&
		    start < map[i].addr + map[i].size) {
			ram_limit = map[i].addr + map[i].size;
			break;
		}
	}
	/* Identity-mapped and user-accessible only below the MMIO hole. */
	if (ram_limit > KICKVM_MMIO_HOLE)
		ram_limit = KICKVM_MMIO_HOLE;
}

void *page_alloc(size_t npages)
{
	uint64_t size = npages * PAGE_SIZE;
	void *p;

	if (!next_page)
		page_alloc_init();
	if (!npages || size / PAGE_SIZE != npages || ram_limit - next_page < size)
		GUEST_FAIL("page_alloc: %zu pages do not fit (0x%llx-0x%llx free)", npages,
			   (unsigned long long)next_page, (unsigned long long)ram_limit);
	p = (void *)next_page;
	next_page += size;
	memset(p, 0, size);
	return p;
}

uint64_t page_alloc_free_bytes(void)
{
	if (!next_page)
		page_alloc_init();
	return ram_limit - next_page;
}
