/*
 * The ELF64 loader.  The image is untrusted: everything is validated first,
 * in a pass that touches no guest memory, so a rejected file leaves RAM as
 * it was.  Segments are placed by p_paddr (guest-physical), anywhere in RAM
 * but on kickvm's own boot structures (boot.h); the entry points are
 * physical too, which is what both the identity-mapped 64-bit entry and the
 * paging-off PVH entry need.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kickvm/acpi.h"
#include "kickvm/boot.h"
#include "kickvm/guest_abi.h"
#include "kickvm/guest_mem.h"
#include "kickvm/linux_boot.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
/* Real guests have a handful of program headers; a cap keeps the overlap
 * check (quadratic) cheap on hostile input. */
#define ELF_MAX_PHDRS 128
/* Largest image file we read; guest RAM bounds the loadable part anyway. */
#define ELF_MAX_FILE (1ull << 30)

static int reject(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -ENOEXEC;
}

/* a + b without wrapping, else false. */
static bool add_ok(uint64_t a, uint64_t b, uint64_t *sum)
{
	return !__builtin_add_overflow(a, b, sum);
}

static int check_ehdr(const Elf64_Ehdr *eh, size_t len, const char **why)
{
	uint64_t table_size, table_end;

	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return reject(why, "not an ELF file");
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64)
		return reject(why, "not a 64-bit x86 ELF");
	if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT)
		return reject(why, "unknown ELF version");
	if (eh->e_type != ET_EXEC)
		return reject(why, "not an executable ELF (ET_EXEC)");
	if (eh->e_ehsize < sizeof(Elf64_Ehdr) || eh->e_ehsize > len)
		return reject(why, "bad ELF header size");
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return reject(why, "bad program header entry size");
	if (eh->e_phnum == 0)
		return reject(why, "no program headers");
	if (eh->e_phnum > ELF_MAX_PHDRS)
		return reject(why, "too many program headers");
	table_size = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
	if (!add_ok(eh->e_phoff, table_size, &table_end) || table_end > len)
		return reject(why, "program header table outside the file");
	return 0;
}

static const struct boot_reserved reserved[] = {
	{ KICKVM_BOOT_GDT, LINUX_BOOT_AREA_END,
	  "segment collides with kickvm's boot tables at 0x1000-0xbfff "
	  "(GDT, page tables, start info, command line, Linux zero page)" },
	{ ACPI_TABLES_BASE, ACPI_TABLES_BASE + ACPI_TABLES_SIZE,
	  "segment collides with kickvm's ACPI tables at 0xe0000-0xeffff" },
	{ LINUX_RESET_VECTOR, KICKVM_GUEST_LOAD_MIN,
	  "segment collides with kickvm's reset vector stub at 0xffff0-0xfffff" },
};

#define NR_RESERVED (sizeof(reserved) / sizeof(reserved[0]))

const struct boot_reserved *boot_reserved_range(unsigned index)
{
	return index < NR_RESERVED ? &reserved[index] : NULL;
}

static int check_load(const struct guest_mem *gm, const Elf64_Phdr *ph, size_t len,
		      const char **why)
{
	uint64_t file_end, mem_end;

	if (!add_ok(ph->p_offset, ph->p_filesz, &file_end) || file_end > len)
		return reject(why, "segment data outside the file");
	if (ph->p_filesz > ph->p_memsz)
		return reject(why, "segment file size larger than memory size");
	if (!add_ok(ph->p_paddr, ph->p_memsz, &mem_end))
		return reject(why, "segment address overflows");
	if (!guest_mem_ptr(gm, ph->p_paddr, ph->p_memsz))
		return reject(why, "segment outside guest RAM");
	for (const struct boot_reserved *r = reserved; r < reserved + NR_RESERVED; r++)
		if (ph->p_paddr < r->end && r->start < mem_end)
			return reject(why, r->what);
	return 0;
}

static bool inside(uint64_t addr, uint64_t start, uint64_t size)
{
	return addr >= start && addr - start < size;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/*
 * Walk the notes of one PT_NOTE segment (already checked to lie in the file)
 * and pick up Xen's PHYS32_ENTRY.  A note that runs past its segment makes
 * the file malformed; unknown notes are skipped.
 */
static int parse_notes(const uint8_t *seg, uint64_t size, uint64_t align,
		       uint64_t *pvh_entry, uint64_t *kickvm_entry, const char **why)
{
	uint64_t off = 0;

	/* ELF64 notes are 4-aligned in practice; 8 is used by some toolchains. */
	align = align == 8 ? 8 : 4;
	while (size - off >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		uint64_t name_off, desc_off, next;

		memcpy(&nh, seg + off, sizeof(nh));
		name_off = off + sizeof(nh);
		desc_off = name_off + align_up(nh.n_namesz, align);  /* n_namesz is 32-bit */
		if (desc_off > size || nh.n_descsz > size - desc_off)
			return reject(why, "malformed ELF note");
		next = desc_off + align_up(nh.n_descsz, align);
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
		    memcmp(seg + name_off, "Xen", 4) == 0) {
			uint64_t v = 0;

			if (nh.n_descsz != 4 && nh.n_descsz != 8)
				return reject(why, "bad PVH entry note");
			/* x86 is little-endian: a 4-byte value fills the low half. */
			memcpy(&v, seg + desc_off, nh.n_descsz);
			*pvh_entry = v;
		}
		if (nh.n_type == KICKVM_ELFNOTE_ENTRY64 && nh.n_namesz == sizeof(KICKVM_ELFNOTE_NAME) &&
		    memcmp(seg + name_off, KICKVM_ELFNOTE_NAME, sizeof(KICKVM_ELFNOTE_NAME)) == 0) {
			if (nh.n_descsz != 8)
				return reject(why, "bad KickVM entry note");
			memcpy(kickvm_entry, seg + desc_off, 8);
		}
		if (next >= size)
			break;
		off = next;
	}
	return 0;
}

static bool in_loaded_segment(const Elf64_Phdr *ph, unsigned n, uint64_t addr)
{
	for (unsigned i = 0; i < n; i++)
		if (ph[i].p_type == PT_LOAD && inside(addr, ph[i].p_paddr, ph[i].p_memsz))
			return true;
	return false;
}

int boot_load_elf(struct guest_mem *gm, const void *buf, size_t len,
		  struct boot_image *img, const char **why)
{
	const uint8_t *file = buf;
	Elf64_Ehdr eh;
	Elf64_Phdr ph[ELF_MAX_PHDRS];
	uint64_t pvh_entry = 0, kickvm_entry = 0, lo = UINT64_MAX, hi = 0;
	bool entry_ok = false;
	unsigned nr_load = 0;
	int ret;

	if (why)
		*why = NULL;
	if (!buf || len < sizeof(Elf64_Ehdr))
		return reject(why, "file too short for an ELF header");
	/* memcpy: the buffer need not be aligned. */
	memcpy(&eh, file, sizeof(eh));
	ret = check_ehdr(&eh, len, why);
	if (ret)
		return ret;
	memcpy(ph, file + eh.e_phoff, (size_t)eh.e_phnum * sizeof(Elf64_Phdr));

	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_NOTE) {
			uint64_t end;

			if (!add_ok(ph[i].p_offset, ph[i].p_filesz, &end) || end > len)
				return reject(why, "note segment outside the file");
			ret = parse_notes(file + ph[i].p_offset, ph[i].p_filesz,
					  ph[i].p_align, &pvh_entry, &kickvm_entry, why);
			if (ret)
				return ret;
			continue;
		}
		if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
			continue;
		ret = check_load(gm, &ph[i], len, why);
		if (ret)
			return ret;
		/* Overlapping segments would silently clobber each other. */
		for (unsigned j = 0; j < i; j++) {
			if (ph[j].p_type != PT_LOAD || ph[j].p_memsz == 0)
				continue;
			if (ph[i].p_paddr < ph[j].p_paddr + ph[j].p_memsz &&
			    ph[j].p_paddr < ph[i].p_paddr + ph[i].p_memsz)
				return reject(why, "segments overlap");
		}
		nr_load++;
		if (ph[i].p_paddr < lo)
			lo = ph[i].p_paddr;
		if (ph[i].p_paddr + ph[i].p_memsz - 1 > hi)
			hi = ph[i].p_paddr + ph[i].p_memsz - 1;
		if (inside(eh.e_entry, ph[i].p_paddr, ph[i].p_memsz))
			entry_ok = true;
	}
	if (nr_load == 0)
		return reject(why, "no loadable segment");
	if (!entry_ok)
		return reject(why, "entry point outside the loaded segments");
	/* The notes may come after the segments: check them once all are known. */
	if (pvh_entry && !in_loaded_segment(ph, eh.e_phnum, pvh_entry))
		return reject(why, "PVH entry outside the loaded segments");
	if (kickvm_entry && !in_loaded_segment(ph, eh.e_phnum, kickvm_entry))
		return reject(why, "KickVM entry outside the loaded segments");

	/* Everything checked: now copy. */
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		uint8_t *dst;

		if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
			continue;
		dst = guest_mem_ptr(gm, ph[i].p_paddr, ph[i].p_memsz);
		memcpy(dst, file + ph[i].p_offset, ph[i].p_filesz);
		memset(dst + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
	}
	if (img) {
		img->entry64 = eh.e_entry;
		img->pvh_entry32 = pvh_entry;
		img->kickvm_entry64 = kickvm_entry;
		img->load_start = lo;
		img->load_end = hi;
	}
	return 0;
}

int boot_load_elf_file(struct guest_mem *gm, const char *path,
		       struct boot_image *img, const char **why)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd, ret;

	if (why)
		*why = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out_close;
	}
	if ((uint64_t)st.st_size > ELF_MAX_FILE) {
		ret = -EFBIG;
		goto out_close;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out_free;
		}
		if (n == 0)
			break;  /* the file shrank: parse what is there */
		got += (size_t)n;
	}
	ret = boot_load_elf(gm, buf, got, img, why);
out_free:
	free(buf);
out_close:
	close(fd);
	return ret;
}
