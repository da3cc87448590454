/*
 * A machine for Linux: the kernel and initrd loaded by the boot protocol
 * (src/boot/linux.c), the e820 map, the ACPI tables that describe the vCPUs,
 * IOAPIC, ECAM, PCI host bridge and power registers (src/boot/acpi.c), and an
 * in-kernel PIT.
 *
 * Why a PIT: kickvm's CPUID does not say "KVM" (vcpu.c), so Linux has no
 * kvmclock to read the TSC rate from; it measures the TSC against the 8254
 * (channel 2, gated through port 0x61).  KVM's PIT answers both inside the
 * kernel ("speaker dummy" adds port 0x61).  With a hardware-reduced FADT
 * Linux never uses the PIT as its timer, so IRQ 0 does not matter.
 *
 * Why tsc_early_khz= on the command line: calibrating against the PIT needs
 * the guest to read it quickly and often, which fails where exits are slow
 * (nested, as in the lab: "tsc: Unable to calibrate against PIT", then a
 * kernel without a usable clock).  kickvm knows the guest TSC rate
 * (KVM_GET_TSC_KHZ) and tells it, as it tells its own test guests; Linux then
 * calibrates its LAPIC timer against the TSC too.  A tsc_early_khz= the user
 * gave wins.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <elf.h>
#include <linux/kvm.h>

#include "hw/power.h"
#include "kickvm/acpi.h"
#include "kickvm/boot.h"
#include "kickvm/linux_boot.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"

#include "machine/machine_internal.h"

#define MAX_KERNEL_FILE (512ull << 20)
#define CMDLINE_MAX     4096

/* Open @path as a regular file; its size in *@size. */
static int open_file(const char *path, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

static int read_full(int fd, void *buf, uint64_t len)
{
	uint64_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;  /* the file shrank under us */
		got += (uint64_t)n;
	}
	return 0;
}

static int read_kernel(const char *path, uint8_t **buf, size_t *len, const char **why)
{
	uint64_t size;
	int fd = open_file(path, &size), ret;

	if (fd < 0)
		return fd;
	if (size > MAX_KERNEL_FILE) {
		close(fd);
		*why = "kernel file too large";
		return -EFBIG;
	}
	*buf = malloc(size ? size : 1);
	if (!*buf) {
		close(fd);
		return -ENOMEM;
	}
	ret = read_full(fd, *buf, size);
	close(fd);
	if (ret) {
		free(*buf);
		return ret;
	}
	*len = size;
	return 0;
}

static int create_pit(struct machine *m)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(kvm_vm_fd(m->kvm), KVM_CREATE_PIT2, &pit) < 0)
		return errno == EEXIST ? 0 : -errno;
	return 0;
}

/*
 * The reset vector (F000:FFF0, physical 0xffff0, in the reserved BIOS area).
 * Why: Linux on a hardware-reduced ACPI machine takes it for an EFI machine
 * and reboots through EFI, which is absent, then through the BIOS: real
 * mode, a far jump to the reset vector.  There is no BIOS here; these bytes
 * do what a reset there would mean, write the ACPI reset register, so that
 * reboot ends kickvm with MACHINE_EXIT_REBOOT like the other reset paths.
 */
static int write_reset_vector(struct machine *m)
{
	const uint8_t stub[] = {
		0xb0, POWER_RESET_VALUE,                      /* mov al, value */
		0xba, POWER_RESET_PORT & 0xff, POWER_RESET_PORT >> 8, /* mov dx, port */
		0xee,                                         /* out dx, al */
		0xf4,                                         /* hlt */
		0xeb, 0xfd,                                   /* jmp hlt */
	};

	_Static_assert(LINUX_RESET_VECTOR + sizeof(stub) <= KICKVM_GUEST_LOAD_MIN,
		       "the reset stub runs past 1 MiB");
	return guest_mem_write(&m->mem, LINUX_RESET_VECTOR, stub, sizeof(stub));
}

/* The vmlinux path: segments by the ELF loader, entry through PVH. */
static int load_vmlinux(struct machine *m, const uint8_t *buf, size_t len,
			const struct linux_boot_config *cfg, uint64_t *initrd_addr,
			struct vcpu_boot_state *bs, const char **why)
{
	struct boot_image img;
	enum boot_protocol proto;
	int ret;

	ret = boot_load_elf(&m->mem, buf, len, &img, why);
	if (ret)
		return ret;
	if (boot_choose(&img, BOOT_PVH, &proto, why) < 0) {
		if (!img.pvh_entry32)
			*why = "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): "
			       "boot its bzImage instead";
		return -ENOEXEC;
	}
	ret = linux_setup_pvh(&m->mem, cfg, img.load_end + 1, initrd_addr, why);
	if (ret)
		return ret;
	boot_vcpu_state(&img, BOOT_PVH, 0, bs);
	log_info("linux", "vmlinux loaded at 0x%llx-0x%llx, PVH entry 0x%llx",
		 (unsigned long long)img.load_start, (unsigned long long)img.load_end,
		 (unsigned long long)img.pvh_entry32);
	return 0;
}

static int load_bzimage(struct machine *m, const uint8_t *buf, size_t len,
			const struct linux_boot_config *cfg, uint64_t *initrd_addr,
			struct vcpu_boot_state *bs, const char **why)
{
	struct linux_boot_info info;
	int ret = linux_load_bzimage(&m->mem, buf, len, cfg, &info, why);

	if (ret)
		return ret;
	*initrd_addr = info.initrd_addr;
	linux_bzimage_vcpu_state(&info, bs);
	log_info("linux", "bzImage (boot protocol %u.%02u) loaded at 0x%llx, 64-bit entry 0x%llx",
		 info.version >> 8, info.version & 0xff, (unsigned long long)info.load_addr,
		 (unsigned long long)info.entry64);
	return 0;
}

static int load_linux(struct machine *m, const char *kernel, const char *initrd,
		      const char *cmdline, const char **why)
{
	struct e820_entry e820[LINUX_E820_MAX];
	struct acpi_config acpi = {
		.nr_cpus = m->nr_vcpus,
		.sleep_control_port = POWER_SLEEP_CONTROL_PORT,
		.sleep_status_port = POWER_SLEEP_STATUS_PORT,
		.reset_port = POWER_RESET_PORT,
		.reset_value = POWER_RESET_VALUE,
		.s5_sleep_type = POWER_S5_SLEEP_TYPE,
	};
	struct linux_boot_config cfg = { .cmdline = cmdline ? cmdline : "" };
	char full_cmdline[CMDLINE_MAX];
	int tsc_khz = vcpu_get_tsc_khz(m->vcpus[0]);
	struct vcpu_boot_state bs;
	uint64_t initrd_addr = 0;
	uint8_t *buf = NULL;
	size_t len = 0;
	int initrd_fd = -1, n, ret;

	*why = NULL;
	if (tsc_khz > 0 && !strstr(cfg.cmdline, "tsc_early_khz=")) {
		n = snprintf(full_cmdline, sizeof(full_cmdline), "%s%stsc_early_khz=%d",
			     cfg.cmdline, cfg.cmdline[0] ? " " : "", tsc_khz);
		if (n < 0 || (size_t)n >= sizeof(full_cmdline)) {
			*why = "command line too long";
			return -E2BIG;
		}
		cfg.cmdline = full_cmdline;
	}
	ret = read_kernel(kernel, &buf, &len, why);
	if (ret)
		return ret;
	if (initrd) {
		initrd_fd = open_file(initrd, &cfg.initrd_size);
		if (initrd_fd < 0) {
			ret = initrd_fd;
			*why = "cannot open the initrd";
			goto out;
		}
		if (!cfg.initrd_size) {
			ret = -ENOEXEC;
			*why = "the initrd is empty";
			goto out;
		}
	}
	n = linux_build_e820(&m->mem, e820, LINUX_E820_MAX);
	if (n < 0) {
		ret = n;
		*why = "cannot build the memory map";
		goto out;
	}
	cfg.e820 = e820;
	cfg.nr_e820 = (unsigned)n;
	ret = acpi_build(&m->mem, &acpi, &cfg.rsdp_addr);
	if (ret) {
		*why = "cannot write the ACPI tables";
		goto out;
	}
	ret = create_pit(m);
	if (ret) {
		*why = "KVM_CREATE_PIT2 failed";
		goto out;
	}
	ret = write_reset_vector(m);
	if (ret) {
		*why = "cannot write the reset vector";
		goto out;
	}
	/* GDT, identity page tables (0-4 GiB), command line at 0x9000. */
	ret = boot_setup_tables(&m->mem, cfg.cmdline);
	if (ret) {
		*why = ret == -E2BIG ? "command line too long" : "cannot write boot tables";
		goto out;
	}
	if (len >= SELFMAG && memcmp(buf, ELFMAG, SELFMAG) == 0)
		ret = load_vmlinux(m, buf, len, &cfg, &initrd_addr, &bs, why);
	else
		ret = load_bzimage(m, buf, len, &cfg, &initrd_addr, &bs, why);
	if (ret)
		goto out;
	if (cfg.initrd_size) {
		ret = read_full(initrd_fd, guest_mem_ptr(&m->mem, initrd_addr, cfg.initrd_size),
				cfg.initrd_size);
		if (ret) {
			*why = "cannot read the initrd";
			goto out;
		}
		log_info("linux", "initrd at 0x%llx, %llu bytes", (unsigned long long)initrd_addr,
			 (unsigned long long)cfg.initrd_size);
	}
	/* The boot CPU only: Linux starts the others with INIT/SIPI. */
	ret = vcpu_set_boot_state(m->vcpus[0], &bs);
	if (ret)
		*why = "cannot set the vCPU registers";
out:
	if (initrd_fd >= 0)
		close(initrd_fd);
	free(buf);
	return ret;
}

int machine_load_linux(struct machine *m, const char *kernel, const char *initrd,
		       const char *cmdline, const char **why)
{
	int ret;

	machine_boot_record_begin(m);
	ret = load_linux(m, kernel, initrd, cmdline, why);
	machine_boot_record_end(m, ret == 0);
	return ret;
}
