/*
 * The KVM layer against the real /dev/kvm, in the manner of the Linux KVM
 * selftests: a tiny guest does the accesses, the host asserts on every exit
 * (reason, address, size, data) and on eventfd counters.
 *
 * Guests are hand-assembled 16-bit real-mode snippets (no tables needed) in a
 * 64 KiB memory slot at 0, entered with CS = 0 at GUEST_CODE.  MMIO goes to
 * MMIO_SEG:0, which no slot covers.  Two tests enter 32-bit and 64-bit mode
 * through vcpu_set_boot_state() to check the boot loader's entry state.
 * Guest code at CPL0 is emulated on the project machine (~1 us/instruction):
 * loops stay short.  Without a usable /dev/kvm every test skips, saying why.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <cmocka.h>

#include "kickvm/event.h"
#include "kickvm/guest_abi.h"
#include "kickvm/kvm.h"
#include "kickvm/memory.h"

#define RAM_SIZE    0x10000u
#define GUEST_CODE  0x1000u
#define MMIO_BASE   0xd0000u   /* real-mode segment 0xd000, outside the slot */
#define PORT        KICKVM_TESTDEV_PORT

/* ---- guests (objdump of `as --32`, .code16 unless noted) ---------------------- */

static const uint8_t g_pio[] = {
	0xba, 0x10, 0x05,                     /* mov $0x510,%dx */
	0xb8, 0x34, 0x12,                     /* mov $0x1234,%ax */
	0xef,                                 /* out %ax,(%dx)      -> 0x510[2] */
	0x42,                                 /* inc %dx */
	0xb0, 0x5a,                           /* mov $0x5a,%al */
	0xee,                                 /* out %al,(%dx)      -> 0x511[1] */
	0xba, 0x14, 0x05,                     /* mov $0x514,%dx */
	0x66, 0xb8, 0xef, 0xbe, 0xad, 0xde,   /* mov $0xdeadbeef,%eax */
	0x66, 0xef,                           /* out %eax,(%dx)     -> 0x514[4] */
	0xed,                                 /* in (%dx),%ax       <- 0x514[2] */
	0xba, 0x10, 0x05,                     /* mov $0x510,%dx */
	0xef,                                 /* out %ax,(%dx)      echo what was read */
	0xf4,                                 /* hlt */
};
static const uint8_t g_mmio[] = {
	0xb8, 0x00, 0xd0, 0x8e, 0xd8,                     /* mov $0xd000,%ax; mov %ax,%ds */
	0xc6, 0x06, 0x08, 0x00, 0x11,                     /* movb $0x11,0x8 */
	0xc7, 0x06, 0x10, 0x00, 0xef, 0xbe,               /* movw $0xbeef,0x10 */
	0x66, 0xc7, 0x06, 0x20, 0x00, 0xef, 0xbe, 0xad, 0xde, /* movl $0xdeadbeef,0x20 */
	0xa1, 0x30, 0x00,                                 /* mov 0x30,%ax */
	0xba, 0x10, 0x05, 0xef,                           /* mov $0x510,%dx; out %ax,(%dx) */
	0xf4,                                             /* hlt */
};
/* ds = 0xd000; cx times: mov %eax,(%bx); then mov %edx,(%bx); hlt */
static const uint8_t g_loop_mmio[] = {
	0xbe, 0x00, 0xd0, 0x8e, 0xde,   /* mov $0xd000,%si; mov %si,%ds */
	0xe3, 0x05,                     /* jcxz 2f */
	0x66, 0x89, 0x07,               /* 1: mov %eax,(%bx) */
	0xe2, 0xfb,                     /* loop 1b */
	0x66, 0x89, 0x17,               /* 2: mov %edx,(%bx) */
	0xf4,                           /* hlt */
};
/* ds = 0xd000; byte, word, dword writes of eax to (%bx), then edx to 4(%bx) */
static const uint8_t g_sizes_mmio[] = {
	0xbe, 0x00, 0xd0, 0x8e, 0xde,   /* mov $0xd000,%si; mov %si,%ds */
	0x88, 0x07,                     /* mov %al,(%bx) */
	0x89, 0x07,                     /* mov %ax,(%bx) */
	0x66, 0x89, 0x07,               /* mov %eax,(%bx) */
	0x66, 0x89, 0x57, 0x04,         /* mov %edx,0x4(%bx) */
	0xf4,                           /* hlt */
};
/* cx times: out %ax,(%dx); then mov %bx,%ax; out %ax,(%dx); hlt */
static const uint8_t g_loop_pio[] = {
	0xe3, 0x03,                     /* jcxz 2f */
	0xef,                           /* 1: out %ax,(%dx) */
	0xe2, 0xfd,                     /* loop 1b */
	0x89, 0xd8, 0xef,               /* 2: mov %bx,%ax; out %ax,(%dx) */
	0xf4,                           /* hlt */
};
static const uint8_t g_coalesced[] = {
	0xb8, 0x00, 0xd0, 0x8e, 0xd8,                             /* ds = 0xd000 */
	0xc6, 0x06, 0x00, 0x00, 0x11,                             /* movb $0x11,0x0 */
	0xc7, 0x06, 0x02, 0x00, 0x22, 0x22,                       /* movw $0x2222,0x2 */
	0x66, 0xc7, 0x06, 0x04, 0x00, 0x33, 0x33, 0x33, 0x33,     /* movl $0x33333333,0x4 */
	0x66, 0xc7, 0x06, 0x08, 0x00, 0x44, 0x44, 0x44, 0x44,     /* movl $0x44444444,0x8 */
	0xc6, 0x06, 0x0f, 0x00, 0x55,                             /* movb $0x55,0xf */
	0xba, 0x20, 0x05, 0xb0, 0x66, 0xee,                       /* out $0x66 -> 0x520 */
	0xba, 0x10, 0x05, 0xee,                                   /* out %al -> 0x510 */
	0xf4,                                                     /* hlt */
};
static const uint8_t g_spin[] = { 0xeb, 0xfe };                  /* jmp . */
/* ds = 0x2000; mov 0x0,%eax; out %eax -> 0x510; hlt */
static const uint8_t g_read_2000[] = {
	0xb8, 0x00, 0x20, 0x8e, 0xd8, 0x66, 0xa1, 0x00, 0x00,
	0xba, 0x10, 0x05, 0x66, 0xef, 0xf4,
};
/* .code32: movl $0xcafef00d,(0xfe001000); out %esi -> 0x510; hlt */
static const uint8_t g_pm32[] = {
	0xbb, 0x00, 0x10, 0x00, 0xfe, 0xc7, 0x03, 0x0d, 0xf0, 0xfe, 0xca,
	0x66, 0xba, 0x10, 0x05, 0x89, 0xf0, 0xef, 0xf4,
};
/* .code64: movq 0x1122334455667788 -> (0xfe001000); cpuid(0x40000000);
 * out ebx, ecx, edx, esi -> 0x510; hlt */
static const uint8_t g_lm64[] = {
	0x48, 0xbb, 0x00, 0x10, 0x00, 0xfe, 0x00, 0x00, 0x00, 0x00,
	0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
	0x48, 0x89, 0x03,
	0xb8, 0x00, 0x00, 0x00, 0x40, 0x0f, 0xa2,
	0x89, 0xd7, 0x66, 0xba, 0x10, 0x05,
	0x89, 0xd8, 0xef, 0x89, 0xc8, 0xef, 0x89, 0xf8, 0xef, 0x89, 0xf0, 0xef,
	0xf4,
};

/* ---- fixture --------------------------------------------------------------------- */

struct vm {
	struct kvm *kvm;
	uint8_t *mem;
	int slot;
	struct vcpu *v[2];
	int err;
	const char *why;
};

static int vm_setup(void **state)
{
	struct vm *t = calloc(1, sizeof(*t));

	*state = t;
	t->slot = -1;
	t->err = kvm_open(NULL, &t->kvm, &t->why);
	if (t->err < 0)
		return 0;  /* the test skips and says why */
	t->mem = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return t->mem == MAP_FAILED ? -1 : 0;
}

/* Slot 0 for RAM; tests that build RAM through the listener skip this. */
static void vm_add_ram(struct vm *t)
{
	t->slot = kvm_slot_alloc(t->kvm);
	assert_true(t->slot >= 0);
	assert_int_equal(kvm_set_memslot(t->kvm, t->slot, 0, RAM_SIZE, t->mem, false), 0);
}

static int vm_teardown(void **state)
{
	struct vm *t = *state;

	for (int i = 0; i < 2; i++)
		vcpu_destroy(t->v[i]);
	kvm_close(t->kvm);
	if (t->mem && t->mem != MAP_FAILED)
		munmap(t->mem, RAM_SIZE);
	free(t);
	return 0;
}

#define REQUIRE_KVM(t)                                                          \
	do {                                                                    \
		if (!(t)->kvm) {                                                \
			print_message("skipping: KVM unavailable: %s (%s)\n",   \
				      (t)->why ? (t)->why : "?", strerror(-(t)->err)); \
			skip();                                                 \
		}                                                               \
	} while (0)

/* Load @code at GUEST_CODE and start @idx in real mode there with @regs. */
static struct vcpu *start_real(struct vm *t, int idx, const void *code, size_t len,
			       const struct kvm_regs *regs)
{
	struct kvm_sregs s;
	struct kvm_regs r = regs ? *regs : (struct kvm_regs){ 0 };
	struct vcpu *v = t->v[idx];

	if (!v) {
		assert_int_equal(vcpu_create(t->kvm, idx, &t->v[idx]), 0);
		v = t->v[idx];
	}
	memcpy(t->mem + GUEST_CODE, code, len);
	assert_int_equal(ioctl(v->fd, KVM_GET_SREGS, &s), 0);
	s.cs.selector = 0;
	s.cs.base = 0;
	assert_int_equal(ioctl(v->fd, KVM_SET_SREGS, &s), 0);
	r.rip = GUEST_CODE;
	r.rflags = 0x2;
	assert_int_equal(ioctl(v->fd, KVM_SET_REGS, &r), 0);
	return v;
}

static void run_expect(struct vcpu *v, int want, int line)
{
	int r = vcpu_run_once(v);

	if (r != want) {
		vcpu_dump_regs(v, stderr);
		fail_msg("line %d: vCPU %d: run returned %d, expected exit %d", line, v->index, r, want);
	}
}

static uint64_t le(const void *p, unsigned len)
{
	uint64_t x = 0;

	memcpy(&x, p, len);
	return x;
}

#define expect_hlt(v) run_expect(v, KVM_EXIT_HLT, __LINE__)
#define expect_pio_out(v, port, size, data) expect_pio(v, port, size, data, __LINE__)
static void expect_pio(struct vcpu *v, unsigned port, unsigned size, uint64_t data, int line)
{
	struct kvm_run *run = v->run;

	run_expect(v, KVM_EXIT_IO, line);
	if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != port ||
	    run->io.size != size || run->io.count != 1 ||
	    le((char *)run + run->io.data_offset, size) != data)
		fail_msg("line %d: pio dir %u port 0x%x size %u count %u data 0x%llx; want out 0x%x[%u] 0x%llx",
			 line, run->io.direction, run->io.port, run->io.size, run->io.count,
			 (unsigned long long)le((char *)run + run->io.data_offset, run->io.size & 7),
			 port, size, (unsigned long long)data);
}

#define expect_mmio_write(v, addr, len, data) expect_mmio(v, addr, len, true, data, __LINE__)
#define expect_mmio_read(v, addr, len, reply) expect_mmio(v, addr, len, false, reply, __LINE__)
static void expect_mmio(struct vcpu *v, uint64_t addr, unsigned len, bool write,
			uint64_t data, int line)
{
	struct kvm_run *run = v->run;

	run_expect(v, KVM_EXIT_MMIO, line);
	if (run->mmio.phys_addr != addr || run->mmio.len != len || run->mmio.is_write != write ||
	    (write && le(run->mmio.data, len) != data))
		fail_msg("line %d: mmio %s 0x%llx[%u] 0x%llx; want %s 0x%llx[%u] 0x%llx", line,
			 run->mmio.is_write ? "write" : "read",
			 (unsigned long long)run->mmio.phys_addr, run->mmio.len,
			 (unsigned long long)le(run->mmio.data, 8),
			 write ? "write" : "read", (unsigned long long)addr, len,
			 (unsigned long long)data);
	if (!write)
		memcpy(run->mmio.data, &data, len);
}

static int new_eventfd(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* Consume and return the eventfd's count. */
static uint64_t efd_count(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1;  /* the DIR's own fd */
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_open_missing_device(void **state)
{
	struct kvm *kvm = (void *)1;
	const char *why = NULL;

	(void)state;
	assert_int_equal(kvm_open("/nonexistent/kvm", &kvm, &why), -ENOENT);
	assert_null(kvm);
	assert_non_null(why);
}

static void test_open_caps(void **state)
{
	struct vm *t = *state;
	const struct kvm_caps *c;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	REQUIRE_KVM(t);
	c = kvm_get_caps(t->kvm);
	assert_true(c->user_memory && c->set_tss_addr && c->ext_cpuid && c->irqchip);
	assert_true(c->ioeventfd);   /* the project machine has it */
	assert_true(c->nr_memslots > 0 && c->max_vcpus > 0);
	assert_true(kvm_vm_fd(t->kvm) >= 0);
	assert_true(kvm_check_extension(t->kvm, KVM_CAP_IOEVENTFD) > 0);
	f = open_memstream(&buf, &len);
	kvm_print_caps(t->kvm, f);
	fclose(f);
	assert_non_null(strstr(buf, "ioeventfd"));
	assert_non_null(strstr(buf, "doorbells handled in KVM"));
	free(buf);
}

static void test_pio_exits(void **state)
{
	struct vm *t = *state;
	struct vcpu *v;
	struct kvm_run *run;

	REQUIRE_KVM(t);
	vm_add_ram(t);
	v = start_real(t, 0, g_pio, sizeof(g_pio), NULL);
	run = v->run;
	expect_pio_out(v, PORT, 2, 0x1234);
	expect_pio_out(v, PORT + 1, 1, 0x5a);
	expect_pio_out(v, PORT + 4, 4, 0xdeadbeef);
	run_expect(v, KVM_EXIT_IO, __LINE__);
	assert_int_equal(run->io.direction, KVM_EXIT_IO_IN);
	assert_int_equal(run->io.port, PORT + 4);
	assert_int_equal(run->io.size, 2);
	memcpy((char *)run + run->io.data_offset, "\x21\x43", 2);
	expect_pio_out(v, PORT, 2, 0x4321);  /* the guest saw our answer */
	expect_hlt(v);
	assert_int_equal(atomic_load(&v->stats.exits_pio), 5);
	assert_int_equal(atomic_load(&v->stats.exits_hlt), 1);
	assert_int_equal(atomic_load(&v->stats.runs), 6);
}

static void test_mmio_exits(void **state)
{
	struct vm *t = *state;
	struct vcpu *v;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	REQUIRE_KVM(t);
	vm_add_ram(t);
	v = start_real(t, 0, g_mmio, sizeof(g_mmio), NULL);
	expect_mmio_write(v, MMIO_BASE + 0x8, 1, 0x11);
	expect_mmio_write(v, MMIO_BASE + 0x10, 2, 0xbeef);
	expect_mmio_write(v, MMIO_BASE + 0x20, 4, 0xdeadbeef);
	expect_mmio_read(v, MMIO_BASE + 0x30, 2, 0xaa55);
	expect_pio_out(v, PORT, 2, 0xaa55);
	expect_hlt(v);
	assert_int_equal(atomic_load(&v->stats.exits_mmio), 4);
	/* The dump names the exit and the registers. */
	f = open_memstream(&buf, &len);
	vcpu_dump_regs(v, f);
	fclose(f);
	assert_non_null(strstr(buf, "rip="));
	assert_non_null(strstr(buf, "cr0="));
	assert_non_null(strstr(buf, "HLT"));
	free(buf);
}

/* N matching writes reach the eventfd without a single exit; a different
 * value falls through to userspace; after deassign every write exits. */
static void test_ioeventfd_datamatch(void **state)
{
	struct vm *t = *state;
	struct kvm_regs r = { .rax = 1, .rcx = 200, .rdx = 2, .rbx = 0x40 };
	struct vcpu *v;
	int fd;

	REQUIRE_KVM(t);
	fd = new_eventfd();
	vm_add_ram(t);
	assert_int_equal(kvm_ioeventfd(t->kvm, fd, MMIO_BASE + 0x40, 4, false, true, 1, true), 0);
	v = start_real(t, 0, g_loop_mmio, sizeof(g_loop_mmio), &r);
	expect_mmio_write(v, MMIO_BASE + 0x40, 4, 2);
	assert_int_equal(atomic_load(&v->stats.exits_mmio), 1);
	assert_int_equal(efd_count(fd), 200);
	expect_hlt(v);

	assert_int_equal(kvm_ioeventfd(t->kvm, fd, MMIO_BASE + 0x40, 4, false, true, 1, false), 0);
	r.rcx = 3;
	start_real(t, 0, g_loop_mmio, sizeof(g_loop_mmio), &r);
	for (int i = 0; i < 3; i++)
		expect_mmio_write(v, MMIO_BASE + 0x40, 4, 1);
	expect_mmio_write(v, MMIO_BASE + 0x40, 4, 2);
	expect_hlt(v);
	assert_int_equal(efd_count(fd), 0);

	/* The same on a port, len 2. */
	assert_int_equal(kvm_ioeventfd(t->kvm, fd, PORT, 2, true, true, 1, true), 0);
	r = (struct kvm_regs){ .rax = 1, .rcx = 150, .rdx = PORT, .rbx = 7 };
	start_real(t, 0, g_loop_pio, sizeof(g_loop_pio), &r);
	expect_pio_out(v, PORT, 2, 7);
	assert_int_equal(efd_count(fd), 150);
	expect_hlt(v);
	assert_int_equal(kvm_ioeventfd(t->kvm, fd, PORT, 2, true, true, 1, false), 0);
	close(fd);
}

/* What KVM answers, exactly (virt/kvm/eventfd.c). */
static void test_ioeventfd_errors(void **state)
{
	struct vm *t = *state;
	struct kvm *k;
	uint64_t x = MMIO_BASE + 0x100;
	int a, b;

	REQUIRE_KVM(t);
	a = new_eventfd();
	b = new_eventfd();
	k = t->kvm;
	assert_int_equal(kvm_ioeventfd(k, a, x, 4, false, true, 1, false), -ENOENT);
	assert_int_equal(kvm_ioeventfd(k, a, x, 4, false, true, 1, true), 0);
	assert_int_equal(kvm_ioeventfd(k, b, x, 4, false, true, 1, true), -EEXIST);
	assert_int_equal(kvm_ioeventfd(k, b, x, 4, false, false, 0, true), -EEXIST);
	assert_int_equal(kvm_ioeventfd(k, b, x, 0, false, false, 0, true), -EEXIST);
	assert_int_equal(kvm_ioeventfd(k, b, x, 4, false, true, 2, true), 0);
	assert_int_equal(kvm_ioeventfd(k, b, x, 2, false, true, 1, true), 0);
	/* Deassign needs the exact registration: fd, len and datamatch. */
	assert_int_equal(kvm_ioeventfd(k, a, x, 4, false, true, 2, false), -ENOENT);
	assert_int_equal(kvm_ioeventfd(k, a, x, 4, false, false, 0, false), -ENOENT);
	assert_int_equal(kvm_ioeventfd(k, a, x, 4, false, true, 1, false), 0);
	assert_int_equal(kvm_ioeventfd(k, a, x, 4, false, true, 1, false), -ENOENT);
	/* KVM takes len 0 on ports too (only len 0 + datamatch is refused);
	 * kickvm's listener refuses it by policy (test_listener). */
	assert_int_equal(kvm_ioeventfd(k, a, PORT, 0, true, false, 0, true), 0);
	assert_int_equal(kvm_ioeventfd(k, a, PORT, 0, true, false, 0, false), 0);
	assert_int_equal(kvm_ioeventfd(k, a, x + 8, 0, false, true, 1, true), -EINVAL);
	assert_int_equal(kvm_ioeventfd(k, a, x + 8, 3, false, false, 0, true), -EINVAL);
	close(a);
	close(b);
}

/* len 0: any access size at exactly that address, no exit. */
static void test_ioeventfd_len0(void **state)
{
	struct vm *t = *state;
	struct kvm_regs r = { .rax = 0x01020304, .rdx = 0x55, .rbx = 0x80 };
	struct vcpu *v;
	int fd;

	REQUIRE_KVM(t);
	fd = new_eventfd();
	vm_add_ram(t);
	assert_int_equal(kvm_ioeventfd(t->kvm, fd, MMIO_BASE + 0x80, 0, false, false, 0, true), 0);
	v = start_real(t, 0, g_sizes_mmio, sizeof(g_sizes_mmio), &r);
	expect_mmio_write(v, MMIO_BASE + 0x84, 4, 0x55);
	assert_int_equal(efd_count(fd), 3);
	expect_hlt(v);
	assert_int_equal(kvm_ioeventfd(t->kvm, fd, MMIO_BASE + 0x80, 0, false, false, 0, false), 0);
	close(fd);
}

struct drained {
	unsigned n;
	uint64_t addr[16], data[16];
	unsigned len[16];
	bool pio[16];
};

static void on_coalesced(void *opaque, uint64_t addr, const void *data, unsigned len, bool pio)
{
	struct drained *d = opaque;

	if (d->n < 16) {
		d->addr[d->n] = addr;
		d->data[d->n] = le(data, len);
		d->len[d->n] = len;
		d->pio[d->n] = pio;
	}
	d->n++;
}

static void test_coalesced(void **state)
{
	static const struct { uint64_t addr; unsigned len; uint64_t data; } want[] = {
		{ MMIO_BASE + 0x0, 1, 0x11 }, { MMIO_BASE + 0x2, 2, 0x2222 },
		{ MMIO_BASE + 0x4, 4, 0x33333333 }, { MMIO_BASE + 0x8, 4, 0x44444444 },
		{ MMIO_BASE + 0xf, 1, 0x55 },
	};
	struct vm *t = *state;
	struct drained d = { 0 };
	const struct kvm_caps *c;
	struct vcpu *v;
	unsigned n;

	REQUIRE_KVM(t);
	c = kvm_get_caps(t->kvm);
	if (!c->coalesced_mmio)
		skip();
	vm_add_ram(t);
	assert_int_equal(kvm_coalesced_zone(t->kvm, MMIO_BASE, 0x100, false, true), 0);
	if (c->coalesced_pio)
		assert_int_equal(kvm_coalesced_zone(t->kvm, 0x520, 4, true, true), 0);
	v = start_real(t, 0, g_coalesced, sizeof(g_coalesced), NULL);
	assert_non_null(v->ring);
	if (!c->coalesced_pio)
		expect_pio_out(v, 0x520, 1, 0x66);
	expect_pio_out(v, PORT, 1, 0x66);
	assert_int_equal(atomic_load(&v->stats.exits_mmio), 0);
	n = vcpu_drain_coalesced(v, on_coalesced, &d);
	assert_int_equal(n, 5 + c->coalesced_pio);
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(d.addr[i], want[i].addr);
		assert_int_equal(d.len[i], want[i].len);
		assert_int_equal(d.data[i], want[i].data);
		assert_false(d.pio[i]);
	}
	if (c->coalesced_pio) {
		assert_int_equal(d.addr[5], 0x520);
		assert_int_equal(d.data[5], 0x66);
		assert_true(d.pio[5]);
	}
	assert_int_equal(vcpu_drain_coalesced(v, on_coalesced, &d), 0);
	assert_int_equal(atomic_load(&v->stats.coalesced), n);
	expect_hlt(v);
	assert_int_equal(kvm_coalesced_zone(t->kvm, MMIO_BASE, 0x100, false, false), 0);
}

struct runner {
	struct vcpu *v;
	int exits, last, port;
	uint64_t data;
};

/* No cmocka asserts off the main thread: record, let main check. */
static void *run_until_hlt(void *opaque)
{
	struct runner *r = opaque;

	for (int i = 0; i < 100; i++) {
		r->last = vcpu_run_once(r->v);
		if (r->last != KVM_EXIT_IO)
			break;
		r->exits++;
		r->port = r->v->run->io.port;
		r->data = le((char *)r->v->run + r->v->run->io.data_offset, r->v->run->io.size);
	}
	return NULL;
}

static void test_two_vcpus(void **state)
{
	struct vm *t = *state;
	struct runner run[2];
	pthread_t th[2];
	int fd[2];

	REQUIRE_KVM(t);
	vm_add_ram(t);
	for (int i = 0; i < 2; i++) {
		struct kvm_regs r = { .rax = 1, .rcx = 300, .rdx = PORT + 2 * i, .rbx = 0x90 + i };

		fd[i] = new_eventfd();
		assert_int_equal(kvm_ioeventfd(t->kvm, fd[i], PORT + 2 * i, 2, true, true, 1, true), 0);
		run[i] = (struct runner){ .v = start_real(t, i, g_loop_pio, sizeof(g_loop_pio), &r) };
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, run_until_hlt, &run[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(run[i].last, KVM_EXIT_HLT);
		assert_int_equal(run[i].exits, 1);
		assert_int_equal(run[i].port, PORT + 2 * i);
		assert_int_equal(run[i].data, 0x90 + i);
		assert_int_equal(efd_count(fd[i]), 300);
		assert_int_equal(atomic_load(&t->v[i]->stats.exits_pio), 1);
		close(fd[i]);
	}
}

struct kicked {
	struct vcpu *v;
	_Atomic int ready;
	int result;
};

static void *spin_thread(void *opaque)
{
	struct kicked *k = opaque;

	k->v->thread = pthread_self();
	k->v->has_thread = true;
	atomic_store(&k->ready, 1);
	k->result = vcpu_run_once(k->v);
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_kick(void **state)
{
	struct vm *t = *state;
	struct kicked k = { 0 };
	pthread_t th;
	uint64_t t0;

	REQUIRE_KVM(t);
	vm_add_ram(t);
	vcpu_signals_init();
	k.v = start_real(t, 0, g_spin, sizeof(g_spin), NULL);
	t0 = now_ms();
	assert_int_equal(pthread_create(&th, NULL, spin_thread, &k), 0);
	while (!atomic_load(&k.ready))
		usleep(1000);
	usleep(50000);  /* let it spin inside KVM_RUN */
	vcpu_kick(k.v);
	pthread_join(th, NULL);
	k.v->has_thread = false;
	assert_int_equal(k.result, -EINTR);
	assert_true(now_ms() - t0 >= 40);
	assert_int_equal(k.v->run->immediate_exit, 0);

	/* A kick that lands before KVM_RUN is not lost. */
	vcpu_kick(k.v);
	assert_int_equal(vcpu_run_once(k.v), -EINTR);
	assert_int_equal(k.v->run->immediate_exit, 0);
	assert_int_equal(atomic_load(&k.v->stats.exits_intr), 2);
}

static int irq_line_status(struct kvm *kvm, int irq)
{
	struct kvm_irq_level l = { .irq = irq, .level = 1 };

	assert_int_equal(ioctl(kvm_vm_fd(kvm), KVM_IRQ_LINE_STATUS, &l), 0);
	return l.status;
}

static void test_msi_irqfd(void **state)
{
	struct vm *t = *state;
	struct kvm *k;
	struct kvm_irq_routing *only_msi;
	int gsi, gsi2, efd, rfd;

	REQUIRE_KVM(t);
	efd = new_eventfd();
	rfd = new_eventfd();
	k = t->kvm;
	assert_int_equal(kvm_create_irqchip(k, kvm_get_caps(k)->pit2), 0);
	assert_int_equal(vcpu_create(k, 0, &t->v[0]), 0);
	gsi = kvm_msi_route_add(k, 0xfee00000, 0x30);
	assert_true(gsi >= 24);   /* IOAPIC pins keep 0-23 */
	gsi2 = kvm_msi_route_add(k, 0xfee00000, 0x31);
	assert_int_equal(gsi2, gsi + 1);
	assert_int_equal(kvm_routes_commit(k), 0);
	assert_int_equal(kvm_irqfd(k, efd, gsi, -1, true), 0);
	assert_int_equal(kvm_msi_route_update(k, gsi, 0xfee00000, 0x32), 0);
	assert_int_equal(kvm_msi_route_update(k, 5000, 0xfee00000, 0x32), -ENOENT);
	assert_int_equal(kvm_routes_commit(k), 0);
	assert_int_equal(kvm_irqfd(k, efd, gsi, -1, false), 0);
	/* A level-triggered IOAPIC pin with a resample fd. */
	assert_int_equal(kvm_irqfd(k, efd, 10, rfd, true), 0);
	assert_int_equal(kvm_irqfd(k, efd, 10, -1, false), 0);
	assert_true(kvm_signal_msi(k, 0xfee00000, 0x30) >= 0);
	kvm_route_del(k, gsi);
	assert_int_equal(kvm_msi_route_update(k, gsi, 0xfee00000, 0x30), -ENOENT);
	assert_int_equal(kvm_msi_route_add(k, 0xfee00000, 0x33), gsi);  /* reused */
	assert_int_equal(kvm_routes_commit(k), 0);

	/* Our table kept the PIC/IOAPIC routes: a legacy line still goes
	 * somewhere.  A table without them (pushed by hand) loses it. */
	assert_true(irq_line_status(k, 4) >= 0);
	assert_int_equal(kvm_irq_line(k, 4, 0), 0);
	only_msi = calloc(1, sizeof(*only_msi) + sizeof(only_msi->entries[0]));
	assert_non_null(only_msi);
	only_msi->nr = 1;
	only_msi->entries[0] = (struct kvm_irq_routing_entry){ .gsi = 30,
							      .type = KVM_IRQ_ROUTING_MSI };
	only_msi->entries[0].u.msi.address_lo = 0xfee00000;
	assert_int_equal(ioctl(kvm_vm_fd(k), KVM_SET_GSI_ROUTING, only_msi), 0);
	free(only_msi);
	assert_int_equal(irq_line_status(k, 4), -1);
	assert_int_equal(kvm_routes_commit(k), 0);
	assert_true(irq_line_status(k, 4) >= 0);
	close(efd);
	close(rfd);
}

/* The listener: RAM through ram_add (with an offset into the region), an
 * ioeventfd through eventfd_add, and everything taken back. */
static void test_listener(void **state)
{
	struct vm *t = *state;
	struct kvm_mem_listener l, lp;
	const struct mem_listener *ops = &kvm_mem_listener_ops;
	struct event_notifier e;
	struct mem_region *mr;
	struct flat_range ram, win;
	struct ioeventfd ev = { .addr = MMIO_BASE + 0x40, .len = 4, .match_data = true,
				.data = 1, .e = &e };
	struct kvm_regs r = { .rax = 1, .rcx = 5, .rdx = 9, .rbx = 0x40 };
	struct vcpu *v;
	int slot;

	REQUIRE_KVM(t);
	mr = mr_new_ram("ram", RAM_SIZE, t->mem, -1, 0);
	assert_non_null(mr);
	assert_int_equal(event_notifier_init(&e, false), 0);
	ram = (struct flat_range){ .addr = 0, .size = 0x8000, .mr = mr, .offset = 0 };
	win = (struct flat_range){ .addr = 0x20000, .size = 0x1000, .mr = mr, .offset = 0x9000 };
	memcpy(t->mem + 0x9000, "\x78\x56\x34\x12", 4);

	kvm_mem_listener_init(&lp, t->kvm, true, IOEVENTFD_AUTO);
	ops->ram_add(&lp, &ram);  /* the port space has no RAM: no slot used */
	kvm_mem_listener_init(&l, t->kvm, false, IOEVENTFD_AUTO);
	ops->ram_add(&l, &ram);
	ops->ram_add(&l, &win);
	v = start_real(t, 0, g_read_2000, sizeof(g_read_2000), NULL);
	expect_pio_out(v, PORT, 4, 0x12345678);
	expect_hlt(v);

	assert_int_equal(ops->eventfd_add(&l, &ev), 0);
	assert_int_equal(ops->eventfd_add(&l, &ev), -EEXIST);
	assert_int_equal(atomic_load(&l.kvm_assigned), 1);
	assert_int_equal(atomic_load(&l.kvm_refused), 1);
	start_real(t, 0, g_loop_mmio, sizeof(g_loop_mmio), &r);
	expect_mmio_write(v, MMIO_BASE + 0x40, 4, 9);
	assert_int_equal(event_notifier_test_and_clear(&e), 5);
	expect_hlt(v);
	ops->eventfd_del(&l, &ev);
	assert_int_equal(atomic_load(&l.kvm_deassigned), 1);
	assert_int_equal(kvm_ioeventfd(t->kvm, e.fd, ev.addr, 4, false, true, 1, false), -ENOENT);

	/* Refusals decided before asking KVM. */
	ev.len = 0;
	ev.match_data = false;
	assert_int_equal(ops->eventfd_add(&lp, &ev), -EINVAL);
	l.mode = IOEVENTFD_OFF;
	assert_int_equal(ops->eventfd_add(&l, &ev), -EOPNOTSUPP);
	l.mode = IOEVENTFD_AUTO;

	ops->ram_del(&l, &win);
	ops->ram_del(&l, &ram);
	ops->ram_del(&lp, &ram);
	/* Both slots went back: the allocator hands out 0 and 1 again. */
	slot = kvm_slot_alloc(t->kvm);
	assert_int_equal(slot, 0);
	assert_int_equal(kvm_slot_alloc(t->kvm), 1);
	kvm_slot_free(t->kvm, 0);
	kvm_slot_free(t->kvm, 1);
	kvm_mem_listener_destroy(&l);
	kvm_mem_listener_destroy(&lp);
	event_notifier_cleanup(&e);
	mr_free(mr);
}

/* The 32-bit PVH entry and the 64-bit entry as the boot loader uses them.
 * With the in-kernel irqchip an AP would wait for INIT/SIPI: vCPU 1 running
 * at all shows the entry state made it runnable.  (HLT no longer exits with
 * the irqchip, so the guests are not run to their end.) */
static void test_boot_state(void **state)
{
	struct vm *t = *state;
	struct vcpu_boot_state bs = { .rip = GUEST_CODE, .rsi = 0x5151, .long_mode = false };
	uint64_t *pml4 = (uint64_t *)(t->mem + 0x2000), *pdpt = (uint64_t *)(t->mem + 0x3000);
	uint64_t *pd0 = (uint64_t *)(t->mem + 0x4000), *pd3 = (uint64_t *)(t->mem + 0x5000);
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct vcpu *v;
	char sig[13] = { 0 };
	uint64_t w[3];

	REQUIRE_KVM(t);
	vm_add_ram(t);
	assert_int_equal(kvm_create_irqchip(t->kvm, false), 0);
	assert_int_equal(vcpu_create(t->kvm, 0, &t->v[0]), 0);
	assert_int_equal(vcpu_create(t->kvm, 1, &t->v[1]), 0);
	v = t->v[0];
	memcpy(t->mem + GUEST_CODE, g_pm32, sizeof(g_pm32));
	assert_int_equal(vcpu_set_boot_state(v, &bs), 0);
	expect_mmio_write(v, KICKVM_TESTDEV_BASE, 4, 0xcafef00d);
	expect_pio_out(v, PORT, 4, 0x5151);

	/* 64-bit: identity map of 0-2 MiB and of the device page, 2 MiB pages. */
	pml4[0] = 0x3000 | 7;
	pdpt[0] = 0x4000 | 7;
	pdpt[3] = 0x5000 | 7;
	pd0[0] = 0x0 | 0x87;
	pd3[(KICKVM_TESTDEV_BASE - 0xc0000000) >> 21] = (KICKVM_TESTDEV_BASE & ~0x1fffffull) | 0x87;
	memcpy(t->mem + 0x8000, g_lm64, sizeof(g_lm64));
	bs = (struct vcpu_boot_state){ .rip = 0x8000, .rsp = 0x7000, .rsi = 1, .cr3 = 0x2000,
				       .long_mode = true };
	v = t->v[1];
	assert_int_equal(ioctl(v->fd, KVM_GET_MP_STATE, &mp), 0);
	assert_int_equal(mp.mp_state, KVM_MP_STATE_UNINITIALIZED);  /* an AP, waiting */
	assert_int_equal(vcpu_set_boot_state(v, &bs), 0);
	assert_int_equal(ioctl(v->fd, KVM_GET_MP_STATE, &mp), 0);
	assert_int_equal(mp.mp_state, KVM_MP_STATE_RUNNABLE);
	expect_mmio_write(v, KICKVM_TESTDEV_BASE, 8, 0x1122334455667788ull);
	for (int i = 0; i < 3; i++) {
		run_expect(v, KVM_EXIT_IO, __LINE__);
		w[i] = le((char *)v->run + v->run->io.data_offset, 4);
		memcpy(sig + 4 * i, &w[i], 4);
	}
	assert_string_equal(sig, KICKVM_CPUID_SIGNATURE);
	expect_pio_out(v, PORT, 4, 1);
	assert_int_equal(ioctl(v->fd, KVM_GET_REGS, &regs), 0);
	assert_int_equal(regs.rsp, 0x7000);
}

/* CPUID as the vCPU got it: APIC ids and the hypervisor range. */
static void test_cpuid(void **state)
{
	struct vm *t = *state;
	struct kvm_cpuid2 *c;
	bool sig = false;

	REQUIRE_KVM(t);
	c = calloc(1, sizeof(*c) + 512 * sizeof(c->entries[0]));
	assert_non_null(c);
	assert_int_equal(vcpu_create(t->kvm, 1, &t->v[1]), 0);
	c->nent = 512;
	assert_int_equal(ioctl(t->v[1]->fd, KVM_GET_CPUID2, c), 0);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1)
			assert_int_equal(e->ebx >> 24, 1);
		if (e->function == 0xb || e->function == 0x1f)
			assert_int_equal(e->edx, 1);
		if (e->function == 0x40000000) {
			assert_int_equal(e->eax, 0x40000000);
			assert_memory_equal(&e->ebx, "KickVM", 4);
			sig = true;
		}
		assert_false(e->function > 0x40000000 && e->function <= 0x400000ff);
	}
	assert_true(sig);
	free(c);
}

/* Everything kvm_open and vcpu_create open, kvm_close and vcpu_destroy close. */
static void test_no_fd_leak(void **state)
{
	struct vm *t = *state;
	struct kvm *k;
	struct vcpu *v[2];
	int before, efd, gsi;

	REQUIRE_KVM(t);
	before = count_fds();
	assert_int_equal(kvm_open(NULL, &k, NULL), 0);
	assert_int_equal(kvm_create_irqchip(k, false), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(vcpu_create(k, i, &v[i]), 0);
	efd = new_eventfd();
	assert_int_equal(kvm_ioeventfd(k, efd, MMIO_BASE, 4, false, false, 0, true), 0);
	gsi = kvm_msi_route_add(k, 0xfee00000, 0x40);
	assert_true(gsi >= 0);
	assert_int_equal(kvm_routes_commit(k), 0);
	assert_int_equal(kvm_irqfd(k, efd, gsi, -1, true), 0);
	assert_true(count_fds() > before);
	close(efd);
	for (int i = 0; i < 2; i++)
		vcpu_destroy(v[i]);
	kvm_close(k);
	assert_int_equal(count_fds(), before);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, vm_setup, vm_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_missing_device),
		T(test_open_caps), T(test_pio_exits), T(test_mmio_exits),
		T(test_ioeventfd_datamatch), T(test_ioeventfd_errors), T(test_ioeventfd_len0),
		T(test_coalesced), T(test_two_vcpus), T(test_kick), T(test_msi_irqfd),
		T(test_listener), T(test_boot_state), T(test_cpuid), T(test_no_fd_leak),
	};
#undef T
	return cmocka_run_group_tests_name("kvm", tests, NULL, NULL);
}
