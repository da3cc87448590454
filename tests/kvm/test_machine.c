/*
 * A machine's life: it runs a guest on vCPU threads and stops cleanly — when
 * the guest exits, when asked from another thread while the guest spins, and
 * on fatal exits (with a register dump) — leaving no fd and no thread behind;
 * and it resets in place, the guest starting again from its entry.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <linux/kvm.h>

#include "harness.h"
#include "kickvm/boot.h"
#include "kickvm/log.h"
#include "kickvm/memory.h"
#include "kickvm/sandbox.h"
#include "hw/power.h"

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static int open_fds(void) { return count_dir("/proc/self/fd"); }
static int threads(void) { return count_dir("/proc/self/task"); }

/* Create, run to the guest's exit, destroy: the guest's status comes back,
 * and every fd and thread is gone afterwards.  machine_run() put each vCPU
 * thread and the iothread in its sandbox (unless this build's default is
 * off), the guest and the tear-down none the wiser. */
static void test_run_and_teardown(void **state)
{
	int fds = open_fds(), tasks = threads();
	bool sandboxed = sandbox_get_mode() != SANDBOX_OFF;

	(void)state;
	for (int cpus = 1; cpus <= 2; cpus++) {
		struct machine *m = vm_create(cpus, IOEVENTFD_AUTO);
		unsigned long vcpus_before = sandbox_threads_entered(SANDBOX_VCPU);
		unsigned long io_before = sandbox_threads_entered(SANDBOX_IOTHREAD);
		struct iothread *it;

		assert_int_equal(machine_iothread(m, "io0", &it), 0);
		vm_load_script(m, "ncpus=%d; cpl3; w4 0x%llx 1 10; exit 42", cpus,
			       KICKVM_TESTDEV_BASE + 0x300);
		assert_int_equal(machine_run(m), 42);
		assert_int_equal(testdev_trapped_writes(m->testdev, false, 0x300), 10 * cpus);
		assert_int_equal(sandbox_threads_entered(SANDBOX_VCPU) - vcpus_before,
				 sandboxed ? cpus : 0);
		assert_int_equal(sandbox_threads_entered(SANDBOX_IOTHREAD) - io_before,
				 sandboxed ? 1 : 0);
		machine_destroy(m);
	}
	assert_int_equal(open_fds(), fds);
	assert_int_equal(threads(), tasks);
}

struct stopper {
	struct machine *m;
	uint64_t delay_us;
};

static void *stop_later(void *opaque)
{
	struct stopper *s = opaque;

	usleep(s->delay_us);
	machine_request_stop(s->m, 7);
	return NULL;
}

/* A guest spinning at CPL3 without exits is stopped from another thread:
 * the kick (signal + immediate_exit) reaches every vCPU. */
static void test_stop_spinning_guest(void **state)
{
	struct machine *m = vm_create(2, IOEVENTFD_AUTO);
	struct stopper s = { .m = m, .delay_us = 200000 };
	pthread_t t;

	(void)state;
	/* 10^12 stores to RAM: hours, unless stopped. */
	vm_load_script(m, "ncpus=2; cpl3; ram 1000000000000; exit 0");
	assert_int_equal(pthread_create(&t, NULL, stop_later, &s), 0);
	assert_int_equal(machine_run(m), 7);
	pthread_join(t, NULL);
	assert_true(m->vcpus[0]->stats.exits_intr + m->vcpus[1]->stats.exits_intr >= 1 ||
		    m->stopping);
	machine_destroy(m);
}

static void *sigterm_when_running(void *opaque)
{
	struct machine *m = opaque;
	uint64_t end = clock_ns() + 10000ull * 1000000;  /* bound: 10 s */

	/* machine_run() catches the signal before it starts any vCPU. */
	while ((!m->vcpus[0]->stats.runs || !m->vcpus[1]->stats.runs) && clock_ns() < end)
		usleep(1000);
	kill(getpid(), SIGTERM);
	return NULL;
}

/* SIGTERM (what timeout(1) sends) stops a guest that would spin for hours:
 * machine_run() returns 128 + SIGTERM after printing each vCPU's state, and
 * gives the signal back its old disposition. */
static void test_sigterm_reports_state(void **state)
{
	struct machine *m = vm_create(2, IOEVENTFD_AUTO);
	char path[] = "/tmp/kickvm-sigterm-XXXXXX", text[16384];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	struct sigaction after;
	pthread_t t;
	ssize_t n;

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	unlink(path);
	vm_load_script(m, "ncpus=2; cpl3; ram 1000000000000; exit 0");
	assert_int_equal(pthread_create(&t, NULL, sigterm_when_running, m), 0);
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	assert_int_equal(machine_run(m), 128 + SIGTERM);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	pthread_join(t, NULL);
	n = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	assert_true(n > 0);
	text[n] = '\0';
	assert_non_null(strstr(text, "stopping the guest; the state of each vCPU follows"));
	assert_non_null(strstr(text, "vCPU 0: mp_state runnable"));
	assert_non_null(strstr(text, "vCPU 1: mp_state runnable"));
	assert_non_null(strstr(text, "lapic: irr"));
	assert_non_null(strstr(text, "rip="));
	assert_non_null(strstr(text, "  stack"));
	assert_int_equal(sigaction(SIGTERM, NULL, &after), 0);
	assert_true(after.sa_handler == SIG_DFL);
	machine_destroy(m);
}

/* A stop requested before the vCPUs even start is not lost. */
static void test_stop_before_run(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);

	(void)state;
	vm_load_script(m, "ncpus=1; cpl3; ram 1000000000000; exit 0");
	machine_request_stop(m, 5);
	assert_int_equal(machine_run(m), 5);
	machine_destroy(m);
}

/* An image with a PVH note boots as QEMU boots it: the boot CPU at the 32-bit
 * entry (paging off, ebx = start info), the other vCPUs left waiting for
 * INIT/SIPI. */
static void test_pvh_boot(void **state)
{
	struct machine *m = vm_create(2, IOEVENTFD_AUTO);

	(void)state;
	m->cfg.boot = BOOT_PVH;
	vm_load_script(m, "ncpus=1; cpl3; w4 0x%llx 1 10; exit 9", KICKVM_TESTDEV_BASE + 0x300);
	assert_int_equal(machine_run(m), 9);
	assert_int_equal(testdev_trapped_writes(m->testdev, false, 0x300), 10);
	assert_int_equal(m->vcpus[1]->stats.exits_mmio + m->vcpus[1]->stats.exits_pio, 0);
	machine_destroy(m);
}

/* A minimal ELF whose whole program is @code, loaded at 1 MiB. */
static void write_tiny_elf(const char *path, const uint8_t *code, size_t len)
{
	struct {
		Elf64_Ehdr eh;
		Elf64_Phdr ph;
		uint8_t code[16];
	} img;
	FILE *f;

	memset(&img, 0, sizeof(img));
	memcpy(img.eh.e_ident, ELFMAG, SELFMAG);
	img.eh.e_ident[EI_CLASS] = ELFCLASS64;
	img.eh.e_ident[EI_DATA] = ELFDATA2LSB;
	img.eh.e_ident[EI_VERSION] = EV_CURRENT;
	img.eh.e_type = ET_EXEC;
	img.eh.e_machine = EM_X86_64;
	img.eh.e_version = EV_CURRENT;
	img.eh.e_entry = 0x100000 + offsetof(__typeof__(img), code);
	img.eh.e_phoff = offsetof(__typeof__(img), ph);
	img.eh.e_ehsize = sizeof(Elf64_Ehdr);
	img.eh.e_phentsize = sizeof(Elf64_Phdr);
	img.eh.e_phnum = 1;
	img.ph.p_type = PT_LOAD;
	img.ph.p_flags = PF_R | PF_X;
	img.ph.p_offset = 0;
	img.ph.p_vaddr = img.ph.p_paddr = 0x100000;
	img.ph.p_filesz = img.ph.p_memsz = sizeof(img);
	img.ph.p_align = 0x1000;
	assert_true(len <= sizeof(img.code));
	memcpy(img.code, code, len);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(&img, sizeof(img), 1, f), 1);
	fclose(f);
}

/* Fatal exits stop the machine with status 1 and a register dump, instead of
 * looping or crashing the VMM. */
static void fatal_guest(const uint8_t *code, size_t len, uint32_t want_reason)
{
	char path[] = "/tmp/kickvm-fatal-XXXXXX";
	int fd = mkstemp(path), ret;
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	const char *why = NULL;

	assert_true(fd >= 0);
	close(fd);
	write_tiny_elf(path, code, len);
	assert_int_equal(machine_load_guest(m, path, "", &why), 0);
	unlink(path);
	ret = machine_vcpu_run_once(m, 0);
	assert_true(ret >= 0);
	assert_int_equal(m->vcpus[0]->run->exit_reason, want_reason);
	assert_true(machine_vcpu_dispatch(m, 0, NULL) < 0);
	assert_true(m->guest_failed);
	assert_true(m->stopping);
	assert_int_equal(m->exit_status, 1);
	machine_destroy(m);
}

static void test_triple_fault(void **state)
{
	/* ud2 with no IDT loaded: #UD, #DF, then shutdown. */
	static const uint8_t code[] = { 0x0f, 0x0b };

	(void)state;
	fatal_guest(code, sizeof(code), KVM_EXIT_SHUTDOWN);
}

static void test_emulation_failure(void **state)
{
	/* int3 at CPL0: this machine's instruction emulator gives up on it
	 * (docs/kvm-notes.md). Elsewhere it is an exception with no IDT, i.e. a
	 * triple fault: both are fatal and both must be reported. */
	static const uint8_t code[] = { 0xcc };
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	char path[] = "/tmp/kickvm-int3-XXXXXX";
	int fd = mkstemp(path);
	const char *why = NULL;
	int reason;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_tiny_elf(path, code, sizeof(code));
	assert_int_equal(machine_load_guest(m, path, "", &why), 0);
	unlink(path);
	assert_true(machine_vcpu_run_once(m, 0) >= 0);
	reason = m->vcpus[0]->run->exit_reason;
	assert_true(reason == KVM_EXIT_INTERNAL_ERROR || reason == KVM_EXIT_SHUTDOWN);
	assert_true(machine_vcpu_dispatch(m, 0, NULL) < 0);
	assert_int_equal(m->exit_status, 1);
	machine_destroy(m);
}

/* Guest garbage through the system device: a ucall block outside RAM is
 * logged and dropped; the VMM goes on. */
static void test_bad_ucall_address(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	unsigned long errors = log_count(LOG_ERROR);

	(void)state;
	vm_load_script(m, "ncpus=1; cpl3; w8 0x%llx 0x7fffffff0000 3; sync 1; exit 0",
		       KICKVM_SYSDEV_BASE + SYSDEV_UCALL);
	vm_run_to_sync(m, 0, 1, NULL);
	assert_int_equal(log_count(LOG_ERROR), errors + 3);
	vm_expect_exit(m, 0, 0);
	machine_destroy(m);
}

static uint64_t frozen_clock(void) { return 1; }

/* A guest repeating that garbage cannot flood the log: each message is
 * counted, LOG_RL_BURST of them printed per interval (the clock is frozen:
 * one interval), and the rest reported as "suppressed K similar". */
static void test_bad_ucall_flood(void **state)
{
	enum { SENT = 50 };
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	unsigned long errors = log_count(LOG_ERROR), suppressed = 0;
	unsigned printed = 0;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	(void)state;
	assert_non_null(f);
	log_set_clock(frozen_clock);
	log_set_stream(f);
	vm_load_script(m, "ncpus=1; cpl3; w8 0x%llx 0x7fffffff0000 %d; sync 1; exit 0",
		       KICKVM_SYSDEV_BASE + SYSDEV_UCALL, SENT);
	vm_run_to_sync(m, 0, 1, NULL);
	log_ratelimit_flush();
	log_set_stream(NULL);
	log_set_clock(NULL);
	fclose(f);
	assert_int_equal(log_count(LOG_ERROR), errors + SENT);
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		const char *s = strstr(line, "sysdev: suppressed ");

		if (s)
			suppressed += strtoul(s + strlen("sysdev: suppressed "), NULL, 10);
		else if (strstr(line, "outside guest RAM"))
			printed++;
	}
	free(out);
	assert_int_equal(printed, LOG_RL_BURST);
	assert_int_equal(suppressed, SENT - LOG_RL_BURST);
	vm_expect_exit(m, 0, 0);
	machine_destroy(m);
}

struct watchdog {
	struct machine *m;
	_Atomic bool done;
};

/* Stops the machine with status 99 if it is still running after 20 s. */
static void *watchdog_thread(void *opaque)
{
	struct watchdog *w = opaque;
	uint64_t end = clock_ns() + 20000ull * 1000000;

	while (!w->done && clock_ns() < end)
		usleep(10000);
	if (!w->done)
		machine_request_stop(w->m, 99);
	return NULL;
}

/* A guest touching a memory slot whose pages the host cannot give (KVM_RUN
 * fails with EFAULT, as it does on an assigned device's mapped BAR that
 * vfio-pci revoked) stops the machine with status 1 and a register dump.
 * The vCPU thread used to end without a word: the machine ran on, its
 * guest waiting for that CPU, until a timeout killed it. */
/*
 * system_reset in place (machine_reset), stepped: the guest writes a marker,
 * syncs, writes another and syncs; then its code page is overwritten (as a
 * guest scribbling over itself would) and the machine reset.  The guest must
 * start again from its entry with its command line: the first marker comes
 * again, then the same syncs, and the script's own exit status at the end.
 * Without the boot image written back the garbage would run instead.
 */
static void test_reset_in_place(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	uint64_t marker = KICKVM_TESTDEV_BASE + 0x300;
	uint8_t garbage[4096];
	const char *why = NULL;
	unsigned ranges = 0;

	(void)state;
	vm_load_script(m, "cpl3; w4 0x%llx 7 1; sync 1; w4 0x%llx 8 1; sync 2; exit 9",
		       (unsigned long long)marker, (unsigned long long)marker);
	assert_true(machine_boot_image_bytes(m, &ranges) > 0);
	assert_true(ranges > 0);
	vm_run_to_sync(m, 0, 1, NULL);
	assert_int_equal(testdev_last_value(m->testdev, false, 0x300), 7);
	vm_run_to_sync(m, 0, 2, NULL);
	assert_int_equal(testdev_trapped_writes(m->testdev, false, 0x300), 2);
	assert_int_equal(testdev_last_value(m->testdev, false, 0x300), 8);

	memset(garbage, 0xff, sizeof(garbage));
	assert_int_equal(guest_mem_write(&m->mem, KICKVM_GUEST_LOAD_MIN, garbage, sizeof(garbage)), 0);
	assert_int_equal(machine_reset(m, &why), 0);
	assert_null(why);
	assert_int_equal(m->resets, 1);
	assert_false(machine_paused(m));

	vm_run_to_sync(m, 0, 1, NULL);
	assert_int_equal(testdev_trapped_writes(m->testdev, false, 0x300), 3);
	assert_int_equal(testdev_last_value(m->testdev, false, 0x300), 7);
	vm_run_to_sync(m, 0, 2, NULL);
	vm_expect_exit(m, 0, 9);
	assert_int_equal(testdev_trapped_writes(m->testdev, false, 0x300), 4);
	machine_destroy(m);
}

/* A paused machine stays paused through a reset; one with no guest loaded
 * has nothing to go back to, and says so. */
static void test_reset_refusals_and_pause(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	const char *why = NULL;

	(void)state;
	assert_int_equal(machine_reset(m, &why), -ENOENT);
	assert_non_null(why);
	assert_int_equal(machine_boot_image_bytes(m, NULL), 0);
	vm_load_script(m, "cpl3; sync 1; exit 3");
	assert_int_equal(machine_pause(m, 100), 0);
	assert_int_equal(machine_reset(m, &why), 0);
	assert_true(machine_paused(m));
	machine_resume(m);
	vm_run_to_sync(m, 0, 1, NULL);
	vm_expect_exit(m, 0, 3);
	machine_destroy(m);
}

/* A guest that resets itself through the ACPI reset register, once per boot,
 * after writing a marker: kickvm resets the machine in place each time and
 * the guest boots again (markers and resets pile up) until the test stops
 * it.  With -no-reboot the first reset ends kickvm with status 3. */
struct boot_watch {
	struct machine *m;
	uint64_t boots;               /* stop once this many markers were written */
	bool reached;
};

static void *stop_after_boots(void *opaque)
{
	struct boot_watch *w = opaque;

	for (int i = 0; i < 3000 && !w->reached; i++) {   /* 30 s at most */
		w->reached = testdev_trapped_writes(w->m->testdev, false, 0x400) >= w->boots;
		usleep(10000);
	}
	machine_request_stop(w->m, w->reached ? 0 : 99);
	return NULL;
}

#define REBOOTING_GUEST "cpl3; w4 0x%llx 7 1; cpl0; o1 0x%x 0x%x 1; cpl3; w4 0x%llx 1 4000000000"

static void test_guest_reset_in_place(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	struct boot_watch w = { .m = m, .boots = 3 };
	uint64_t markers;
	pthread_t t;

	(void)state;
	vm_load_script(m, REBOOTING_GUEST, KICKVM_TESTDEV_BASE + 0x400, POWER_RESET_PORT,
		       POWER_RESET_VALUE, KICKVM_TESTDEV_BASE + 0x300);
	assert_int_equal(pthread_create(&t, NULL, stop_after_boots, &w), 0);
	assert_int_equal(machine_run(m), 0);
	pthread_join(t, NULL);
	assert_true(w.reached);
	assert_true(m->resets >= 2);
	/* One marker per boot: the stop may come after a reset and before the
	 * marker of the boot it started. */
	markers = testdev_trapped_writes(m->testdev, false, 0x400);
	assert_true(markers == m->resets + 1 || markers == m->resets);
	machine_destroy(m);
}

static void test_guest_reset_no_reboot(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);

	(void)state;
	m->cfg.no_reboot = true;
	vm_load_script(m, REBOOTING_GUEST, KICKVM_TESTDEV_BASE + 0x400, POWER_RESET_PORT,
		       POWER_RESET_VALUE, KICKVM_TESTDEV_BASE + 0x300);
	assert_int_equal(machine_run(m), MACHINE_EXIT_REBOOT);
	assert_int_equal(m->resets, 0);
	assert_int_equal(testdev_trapped_writes(m->testdev, false, 0x400), 1);
	machine_destroy(m);
}

static void test_unbacked_slot_is_fatal(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	char path[] = "/tmp/kickvm-unbacked-XXXXXX";
	int fd = mkstemp(path);
	struct watchdog w = { .m = m };
	struct mem_region *mr;
	pthread_t t;
	void *host;

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	/* An empty file: every page of the mapping is past its end (SIGBUS). */
	host = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	assert_true(host != MAP_FAILED);
	mr = mr_new_ram_device("unbacked", 4096, host);
	assert_non_null(mr);
	assert_int_equal(mr_add_subregion(m->system_root, 0xd0000000, mr, 0), 0);
	vm_load_script(m, "ncpus=1; cpl3; r4 0xd0000000 1; exit 0");
	assert_int_equal(pthread_create(&t, NULL, watchdog_thread, &w), 0);
	assert_int_equal(machine_run(m), 1);
	w.done = true;
	pthread_join(t, NULL);
	assert_true(m->guest_failed);
	mr_del_subregion(m->system_root, mr);
	mr_free(mr);
	machine_destroy(m);
	munmap(host, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_and_teardown),
		cmocka_unit_test(test_stop_spinning_guest),
		cmocka_unit_test(test_stop_before_run),
		cmocka_unit_test(test_sigterm_reports_state),
		cmocka_unit_test(test_pvh_boot),
		cmocka_unit_test(test_triple_fault),
		cmocka_unit_test(test_emulation_failure),
		cmocka_unit_test(test_bad_ucall_address),
		cmocka_unit_test(test_bad_ucall_flood),
		cmocka_unit_test(test_unbacked_slot_is_fatal),
		cmocka_unit_test(test_reset_in_place),
		cmocka_unit_test(test_reset_refusals_and_pause),
		cmocka_unit_test(test_guest_reset_in_place),
		cmocka_unit_test(test_guest_reset_no_reboot),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests_name("machine lifecycle tests", tests, NULL, NULL);
}
