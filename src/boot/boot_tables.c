/*
 * The boot structures kickvm writes below 1 MiB (guest_abi.h has the map):
 * a GDT, identity page tables for the low 4 GiB, the PVH hvm_start_info with
 * its memory map, and the command line.  Then the register state a vCPU
 * needs to enter an ELF64 guest in long mode on those tables.
 */
#include <errno.h>
#include <string.h>

#include "kickvm/boot.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"

/* Page-table entry bits. */
#define PTE_P   (1ull << 0)
#define PTE_W   (1ull << 1)
#define PTE_U   (1ull << 2)
#define PTE_PWT (1ull << 3)
#define PTE_PCD (1ull << 4)
#define PTE_PS  (1ull << 7)

#include "kickvm/x86.h"

#define BOOT_GDT_ENTRIES 4
#define NR_PD_PAGES      (KICKVM_BOOT_IDENTITY_END >> 30)  /* one page directory per GiB */
#define PAGE_2M          (2ull << 20)

/*
 * Flat descriptors (base 0, limit 4 GiB, G=1), accessed bit preset so the
 * CPU never needs to write the GDT:
 *   0x08 code, L=1 (64-bit), DPL0     0x10 data, read/write, D/B=1
 *   0x18 code, D=1 (32-bit), DPL0, for a 32-bit (PVH) entry
 */
static const uint64_t boot_gdt[BOOT_GDT_ENTRIES] = {
	0,
	0x00af9b000000ffffull,
	0x00cf93000000ffffull,
	0x00cf9b000000ffffull,
};

static int write_gdt(struct guest_mem *gm)
{
	return guest_mem_write(gm, KICKVM_BOOT_GDT, boot_gdt, sizeof(boot_gdt));
}

/*
 * Identity map 0-4 GiB with 2 MiB pages.  U/S is set at every level: test
 * guests run their bodies at CPL3 (the fast mode on this KVM) and must reach
 * RAM and device MMIO from there.  The MMIO hole is mapped uncached.
 */
static int write_page_tables(struct guest_mem *gm)
{
	const uint64_t flags = PTE_P | PTE_W | PTE_U;
	uint64_t pml4[512] = { 0 }, pdpt[512] = { 0 }, pd[512];
	int ret;

	pml4[0] = KICKVM_BOOT_PDPT | flags;
	for (unsigned i = 0; i < NR_PD_PAGES; i++)
		pdpt[i] = (KICKVM_BOOT_PD + i * 0x1000ull) | flags;
	ret = guest_mem_write(gm, KICKVM_BOOT_PML4, pml4, sizeof(pml4));
	if (!ret)
		ret = guest_mem_write(gm, KICKVM_BOOT_PDPT, pdpt, sizeof(pdpt));
	for (unsigned i = 0; i < NR_PD_PAGES && !ret; i++) {
		for (unsigned j = 0; j < 512; j++) {
			uint64_t addr = ((uint64_t)i * 512 + j) * PAGE_2M;

			pd[j] = addr | flags | PTE_PS;
			if (addr >= KICKVM_MMIO_HOLE)
				pd[j] |= PTE_PCD | PTE_PWT;
		}
		ret = guest_mem_write(gm, KICKVM_BOOT_PD + i * 0x1000ull, pd, sizeof(pd));
	}
	return ret;
}

/* start_info, the memory map (every RAM bank as type 1) and the cmdline. */
static int write_start_info(struct guest_mem *gm, const char *cmdline, size_t cmdlen)
{
	struct hvm_memmap_table_entry map[GUEST_MEM_MAX_BANKS];
	struct hvm_start_info si;
	int ret;

	_Static_assert(KICKVM_BOOT_START_INFO + sizeof(si) <= KICKVM_BOOT_MEMMAP,
		       "start_info runs into the memory map");
	_Static_assert(KICKVM_BOOT_MEMMAP + sizeof(map) <= KICKVM_BOOT_CMDLINE,
		       "memory map runs into the command line");

	memset(map, 0, sizeof(map));
	for (unsigned i = 0; i < gm->nr_banks && i < GUEST_MEM_MAX_BANKS; i++) {
		map[i].addr = gm->banks[i].gpa;
		map[i].size = gm->banks[i].size;
		map[i].type = 1;
	}
	memset(&si, 0, sizeof(si));
	si.magic = HVM_START_MAGIC;
	si.version = 1;
	si.cmdline_paddr = KICKVM_BOOT_CMDLINE;
	si.memmap_paddr = KICKVM_BOOT_MEMMAP;
	si.memmap_entries = gm->nr_banks;

	ret = guest_mem_write(gm, KICKVM_BOOT_START_INFO, &si, sizeof(si));
	if (!ret)
		ret = guest_mem_write(gm, KICKVM_BOOT_MEMMAP, map,
				      gm->nr_banks * sizeof(map[0]));
	if (!ret)
		ret = guest_mem_write(gm, KICKVM_BOOT_CMDLINE, cmdline, cmdlen + 1);
	return ret;
}

int boot_setup_tables(struct guest_mem *gm, const char *cmdline)
{
	size_t cmdlen;
	int ret;

	if (!cmdline)
		cmdline = "";
	cmdlen = strlen(cmdline);
	if (cmdlen > KICKVM_BOOT_CMDLINE_MAX - 1)
		return -E2BIG;
	if (gm->nr_banks > GUEST_MEM_MAX_BANKS)
		return -EINVAL;
	ret = write_gdt(gm);
	if (!ret)
		ret = write_page_tables(gm);
	if (!ret)
		ret = write_start_info(gm, cmdline, cmdlen);
	return ret;
}

const char *boot_protocol_name(enum boot_protocol p)
{
	static const char *const names[] = {
		[BOOT_AUTO] = "auto", [BOOT_KICKVM] = "kickvm", [BOOT_PVH] = "pvh",
		[BOOT_ELF64] = "elf64",
	};

	return p <= BOOT_ELF64 ? names[p] : "?";
}

/* The entry @proto jumps to must be reachable in the mode it starts in:
 * PVH enters in 32-bit mode with paging off, the 64-bit entries on the
 * identity map of write_page_tables().  A segment may lie higher (RAM
 * continues above 4 GiB), its entry may not. */
static int check_entry(const struct boot_image *img, enum boot_protocol proto,
		       const char **why)
{
	const char *reason = NULL;

	if (proto == BOOT_PVH && img->pvh_entry32 > UINT32_MAX)
		reason = "PVH entry above 4 GiB (it is entered in 32-bit mode, paging off)";
	else if (proto == BOOT_KICKVM && img->kickvm_entry64 >= KICKVM_BOOT_IDENTITY_END)
		reason = "KickVM entry outside the boot identity map (0-4 GiB)";
	else if (proto == BOOT_ELF64 && img->entry64 >= KICKVM_BOOT_IDENTITY_END)
		reason = "ELF entry point outside the boot identity map (0-4 GiB)";
	if (!reason)
		return 0;
	if (why)
		*why = reason;
	return -ENOEXEC;
}

int boot_choose(const struct boot_image *img, enum boot_protocol requested,
		enum boot_protocol *chosen, const char **why)
{
	switch (requested) {
	case BOOT_AUTO:
		*chosen = img->kickvm_entry64 ? BOOT_KICKVM : img->pvh_entry32 ? BOOT_PVH : BOOT_ELF64;
		return check_entry(img, *chosen, why);
	case BOOT_KICKVM:
		if (!img->kickvm_entry64)
			goto missing;
		break;
	case BOOT_PVH:
		if (!img->pvh_entry32)
			goto missing;
		break;
	case BOOT_ELF64:
		break;
	}
	*chosen = requested;
	return check_entry(img, *chosen, why);
missing:
	if (why)
		*why = requested == BOOT_PVH ? "no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"
					     : "no KickVM entry note";
	return -ENOEXEC;
}

int boot_vcpu_state(const struct boot_image *img, enum boot_protocol proto, int index,
		    struct vcpu_boot_state *bs)
{
	memset(bs, 0, sizeof(*bs));
	bs->rbx = KICKVM_BOOT_START_INFO;
	bs->rflags = 0x2;  /* bit 1 is always set; IF off */
	bs->gdt_base = KICKVM_BOOT_GDT;
	bs->gdt_limit = BOOT_GDT_ENTRIES * 8 - 1;
	bs->ds = KICKVM_BOOT_DS;
	if (proto == BOOT_PVH) {
		/* PVH: 32-bit flat protected mode, paging off; the guest brings
		 * up its other CPUs itself with INIT/SIPI. */
		if (index != 0)
			return 0;
		bs->rip = img->pvh_entry32;
		bs->cr0 = CR0_PE | CR0_ET;
		bs->cs = KICKVM_BOOT_CS32;
		bs->long_mode = false;
		return 1;
	}
	bs->rip = proto == BOOT_KICKVM ? img->kickvm_entry64 : img->entry64;
	bs->rsp = 0;   /* the guest picks its own stack (guest_abi.h) */
	bs->rsi = (uint64_t)index;
	bs->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	bs->cr3 = KICKVM_BOOT_PML4;
	bs->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	bs->efer = EFER_LME | EFER_LMA | EFER_SCE;
	bs->cs = KICKVM_BOOT_CS64;
	bs->long_mode = true;
	return 1;
}
