/*
 * The contract between kickvm and its test guests: where things are in the
 * guest, how a guest starts, and the devices only kickvm provides.
 * Freestanding: included by the guest runtime (no libc) as well as the VMM.
 */
#ifndef KICKVM_GUEST_ABI_H
#define KICKVM_GUEST_ABI_H

#include <stdint.h>

/* ---- memory layout ----------------------------------------------------------
 * RAM starts at 0 and stops at KICKVM_MMIO_HOLE below 4 GiB (the rest, if any,
 * continues at 4 GiB).  The boot structures kickvm writes live in the first
 * MiB (boot.h lists every range); guest images load at 1 MiB and above, and
 * may put segments in the rest of the first MiB (GNU ld's header segment). */
#define KICKVM_MMIO_HOLE        0xc0000000ull
#define KICKVM_BOOT_GDT         0x1000ull   /* boot GDT: null, code64, data, code32 */
#define KICKVM_BOOT_PML4        0x2000ull   /* identity map of 0-4 GiB, 2 MiB pages, */
#define KICKVM_BOOT_PDPT        0x3000ull   /* user-accessible (U/S=1) so CPL3 code  */
#define KICKVM_BOOT_PD          0x4000ull   /* reaches devices; 4 pages of PDs       */
#define KICKVM_BOOT_IDENTITY_END 0x100000000ull /* what those tables map: 0-4 GiB    */
#define KICKVM_BOOT_START_INFO  0x8000ull   /* struct hvm_start_info (PVH)           */
#define KICKVM_BOOT_MEMMAP      0x8100ull   /* struct hvm_memmap_table_entry[]       */
#define KICKVM_BOOT_CMDLINE     0x9000ull
#define KICKVM_BOOT_CMDLINE_MAX 0x1000ull
#define KICKVM_GUEST_LOAD_MIN   0x100000ull

/* Boot GDT selectors. */
#define KICKVM_BOOT_CS64 0x08
#define KICKVM_BOOT_DS   0x10
#define KICKVM_BOOT_CS32 0x18

/* ---- entry ---------------------------------------------------------------------
 * kickvm starts every vCPU of an ELF64 guest at its e_entry in 64-bit mode,
 * CPL0, interrupts off, paging on with the boot tables above, and:
 *   rbx = guest-physical address of the hvm_start_info (as PVH does)
 *   rsi = vCPU index (0 is the boot CPU; the others start at the same entry)
 *   rsp = 0: the guest sets up its own stacks.
 * (PVH guests entered at their 32-bit XEN_ELFNOTE_PHYS32_ENTRY come later.)
 */
#define HVM_START_MAGIC 0x336ec578u

/* ELF note (name "KickVM", type 1, 8-byte address) by which a guest says it
 * takes the entry above on every vCPU.  Without it, a guest with a PVH note
 * (Xen, type 18: 32-bit entry, paging off, ebx = start_info, boot CPU only)
 * boots as QEMU and Firecracker boot it; without either, e_entry in 64-bit
 * mode as above. */
#define KICKVM_ELFNOTE_NAME     "KickVM"
#define KICKVM_ELFNOTE_ENTRY64  1

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;        /* 1: memmap fields valid */
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;           /* 1 RAM, 2 reserved */
	uint32_t reserved;
};

/* CPUID leaf 0x40000000 returns this in ebx, ecx, edx on kickvm. */
#define KICKVM_CPUID_SIGNATURE "KickVMKickVM"

/* ---- devices -------------------------------------------------------------------- */
#define KICKVM_UART_PORT   0x3f8   /* 8250, output to kickvm's stdout */
#define KICKVM_EXIT_PORT   0xf4    /* 32-bit write: end the VM, status = value & 0xff */

/* The system device: one MMIO page every privilege level can use. */
#define KICKVM_SYSDEV_BASE  0xfe000000ull
#define KICKVM_SYSDEV_SIZE  0x1000ull
#define SYSDEV_EXIT   0x00   /* u32 write: end the VM with status value & 0xff */
#define SYSDEV_UCALL  0x08   /* u64 write: GPA of a struct kickvm_ucall */
#define SYSDEV_PUTC   0x10   /* u8 write: one console character */

enum kickvm_ucall_cmd {
	UCALL_SYNC = 1,    /* args[0] = stage, args[1] = vCPU index */
	UCALL_ASSERT = 2,  /* args[0] = file (GPA), args[1] = line, args[2] = expr (GPA),
			    * args[3] = message (GPA, may be 0) */
	UCALL_PRINT = 3,   /* args[0] = NUL-terminated string (GPA) */
	UCALL_DONE = 4,    /* args[0] = vCPU index: this CPU has finished */
	UCALL_REPORT = 5,  /* args[0] = name (GPA of a NUL-terminated string),
			    * args[1] = value: a figure the guest measured or
			    * counted, for the host test to check */
};

struct kickvm_ucall {
	uint64_t cmd;
	uint64_t args[6];
};

/* The doorbell test device used by the test guests and `kickvm bench`:
 * an MMIO page of doorbells (trapped unless the host adds ioeventfds), a page
 * of coalesced MMIO, and a few I/O ports. */
#define KICKVM_TESTDEV_BASE       0xfe001000ull
#define KICKVM_TESTDEV_SIZE       0x1000ull
#define KICKVM_TESTDEV_COALESCED  0xfe002000ull
#define KICKVM_TESTDEV_PORT       0x510
#define KICKVM_TESTDEV_NR_PORTS   0x10

/* What `kickvm run` puts on the test device (tests and benchmarks set up
 * their own).  Offsets in the MMIO page, ports from KICKVM_TESTDEV_PORT. */
#define TESTDEV_DB_DATAMATCH  0x000  /* KVM ioeventfd, len 4, datamatch 1 */
#define TESTDEV_DB_ANY        0x100  /* KVM ioeventfd, len 0 (any size, any value) */
#define TESTDEV_DB_FALLBACK   0x200  /* ioeventfd kept in userspace: trapped, then signalled */
#define TESTDEV_REG_TRAPPED   0x300  /* plain trapped register: every write exits */
#define TESTDEV_PORT_DB       0x0    /* KVM ioeventfd, len 2, datamatch 1 */
#define TESTDEV_PORT_TRAPPED  0x2    /* trapped port */

#endif
