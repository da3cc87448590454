/*
 * kickvm-virtio.elf: drives virtio-pci devices from a guest, on kickvm or
 * QEMU (microvm, pcie=on).  The command line says what to do:
 *
 *   mode=test  [irq=0|1] [disk=N] [serial=ID]        functional tests (+ rng if present)
 *   mode=bench op=randread|randwrite qd=N reqs=N [tsc_khz=K] [irq=0|1] [disk=N]
 *   mode=hostile [irq=0|1] [disk=N]                   malformed rings (hostile.c)
 *   mode=stream [qd=N] [reqs=N] [disk=N]              boot count, sequential writes (stream.c)
 *   common:    [ecam=ADDR] [qsize=N] [indirect=0|1] [event_idx=0] [quiet=1]
 *
 * Both end with UCALL_REPORTs (printed as "REPORT name=value" too):
 * blk.requests, blk.notifies (doorbell writes made), blk.kicks,
 * blk.completions, blk.interrupts, blk.config_interrupts, blk.errors,
 * blk.resets; test adds rng.requests, rng.bytes, rng.notifies,
 * rng.interrupts; bench adds bench.reqs, bench.tsc_cycles, bench.req_per_s
 * and prints one RESULT line.
 *
 * Unknown words are ignored (e.g. `ioeventfd-agnostic`: nothing here
 * depends on how the host serves a doorbell).  Numbers are decimal or 0x
 * hex.  Everything after set-up runs at CPL3; CPL0 only enables the x2APIC
 * and interrupts when irq=1, routes the vectors, and (without tsc_khz=)
 * reads the hypervisor CPUID leaves and the kvmclock scale.
 */
#include "virtio_guest.h"
#include "cmdline.h"

#define MSR_KVM_SYSTEM_TIME  0x12
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE  (1u << 0)
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)

/* ---- command line (parsed at CPL3) ------------------------------------------------ */

static void copy_word(char *dst, size_t size, const char *s, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static void parse_kv(void *ctx, const char *k, size_t kn, const char *v, size_t vn)
{
	struct args *a = ctx;
	uint64_t n = 0;
	bool num = cmdline_u64(v, vn, &n);

	if (cmdline_key_is(k, kn, "mode"))
		copy_word(a->mode, sizeof(a->mode), v, vn);
	else if (cmdline_key_is(k, kn, "op"))
		copy_word(a->op, sizeof(a->op), v, vn);
	else if (cmdline_key_is(k, kn, "serial")) {
		copy_word(a->serial, sizeof(a->serial), v, vn);
		a->has_serial = true;
	} else if (!num)
		GUEST_FAIL("command line: %.*s=%.*s is not a number", (int)kn, k, (int)vn, v);
	else if (cmdline_key_is(k, kn, "qd"))
		a->qd = (unsigned)n;
	else if (cmdline_key_is(k, kn, "reqs"))
		a->reqs = n;
	else if (cmdline_key_is(k, kn, "tsc_khz"))
		a->tsc_khz = n;
	else if (cmdline_key_is(k, kn, "irq"))
		a->irq = n != 0;
	else if (cmdline_key_is(k, kn, "disk"))
		a->disk = (unsigned)n;
	else if (cmdline_key_is(k, kn, "ecam"))
		a->ecam = n;
	else if (cmdline_key_is(k, kn, "qsize"))
		a->qsize = (unsigned)n;
	else if (cmdline_key_is(k, kn, "indirect"))
		a->indirect = n != 0;
	else if (cmdline_key_is(k, kn, "event_idx"))
		a->no_event_idx = n == 0;
	else if (cmdline_key_is(k, kn, "quiet"))
		a->quiet = n != 0;
}

struct parse_job {
	struct args *a;
	const char *cmdline;
};

static long parse_args(void *arg)
{
	struct parse_job *j = arg;

	cmdline_for_each(j->cmdline, parse_kv, j->a);
	return 0;
}

/* ---- TSC frequency: command line, else what KVM tells the guest --------------------- */

struct pvclock {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags, pad[2];
} __attribute__((packed));

static struct pvclock pvclock __attribute__((aligned(64)));

static long kvmclock_msr(void *arg)
{
	uint32_t msr = (uint32_t)(uintptr_t)arg;

	/* Enable (KVM fills the structure before the vCPU runs again), then
	 * disable: only the scale is wanted, not a running clock. */
	wrmsr(msr, (uint64_t)&pvclock | 1);
	wrmsr(msr, 0);
	return 0;
}

struct cpuid_job {
	uint32_t leaf, r[4];
};

static long cpuid_kcall(void *arg)
{
	struct cpuid_job *j = arg;

	cpuid(j->leaf, 0, j->r);
	return 0;
}

/* CPUID as the VMM set it up.  On our nested KVM, CPUID executed at CPL3
 * is answered by the outer hypervisor (it says "KVMKVMKVM" even under
 * kickvm), so the hypervisor leaves are read at CPL0. */
static void cpuid_cpl0(uint32_t leaf, uint32_t r[4])
{
	struct cpuid_job j = { .leaf = leaf };

	run_kernel(cpuid_kcall, &j);
	memcpy(r, j.r, sizeof(j.r));
}

static uint64_t tsc_khz_from_kvm(void)
{
	uint32_t r[4];
	uint64_t khz;

	cpuid_cpl0(0x40000000, r);
	/* "KVMKVMKVM\0\0\0" */
	if (r[1] != 0x4b4d564b || r[2] != 0x564b4d56 || r[3] != 0x4d)
		return 0;
	if (r[0] >= 0x40000010) {
		uint32_t t[4];

		cpuid_cpl0(0x40000010, t);      /* the timing leaf, when exposed */
		if (t[0])
			return t[0];
	}
	cpuid_cpl0(0x40000001, r);
	if (r[0] & KVM_FEATURE_CLOCKSOURCE2)
		run_kernel(kvmclock_msr, (void *)(uintptr_t)MSR_KVM_SYSTEM_TIME_NEW);
	else if (r[0] & KVM_FEATURE_CLOCKSOURCE)
		run_kernel(kvmclock_msr, (void *)(uintptr_t)MSR_KVM_SYSTEM_TIME);
	else
		return 0;
	if (!pvclock.tsc_to_system_mul)
		return 0;
	/* ns = (ticks scaled by 2^shift) * mul / 2^32, so
	 * kHz = 10^6 * 2^32 / mul, scaled back by the shift. */
	khz = (1000000ull << 32) / pvclock.tsc_to_system_mul;
	return pvclock.tsc_shift < 0 ? khz << -pvclock.tsc_shift : khz >> pvclock.tsc_shift;
}

/* ---- shared helpers ---------------------------------------------------------------------- */

bool guest_quiet;

void report(const char *name, uint64_t value)
{
	ucall(UCALL_REPORT, (uint64_t)name, value, 0, 0);
	info("REPORT %s=%llu\n", name, (unsigned long long)value);
}

/* The driver's side of what a kickvm host test can count on its own:
 * notifies = doorbell writes made (kicks minus those EVENT_IDX let us
 * skip), interrupts = counted by the vector's stub, resets = status-0
 * writes (one per initialisation, plus any mid-run reset). */
void report_blk(const struct vblk *b)
{
	const struct virtq *vq = &b->vd.vq[0];

	report("blk.requests", b->requests);
	report("blk.notifies", vq->notifies);
	report("blk.kicks", vq->kicks);
	report("blk.completions", vq->completions);
	report("blk.interrupts", virtq_interrupts(vq));
	report("blk.config_interrupts", b->vd.config_vector ? irq_count(b->vd.config_vector) : 0);
	report("blk.errors", b->errors);
	report("blk.resets", b->vd.resets);
}

void virtio_opts_from(const struct args *a, struct virtio_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->irq = a->irq;
	o->apic_id = a->apic_id;
	o->queue_size = (uint16_t)a->qsize;
	o->no_event_idx = a->no_event_idx;
}

void find_devices(const struct args *a, struct devices *out)
{
	const char *src;
	uint64_t ecam = pci_init(a->ecam, &src);
	unsigned n = pci_enumerate();

	const struct hvm_start_info *si = guest_start_info();

	memset(out, 0, sizeof(*out));
	if (si)
		info("boot: PVH start info: RSDP 0x%llx, %u memory map entries, %llu KiB free for "
		     "page_alloc\n", (unsigned long long)si->rsdp_paddr, si->memmap_entries,
		     (unsigned long long)(page_alloc_free_bytes() >> 10));
	info("pci: ECAM at 0x%llx (%s), %u functions on bus 0\n", (unsigned long long)ecam,
	     src, n);
	for (unsigned i = 0; i < n; i++) {
		struct pci_dev *d = pci_device(i);
		uint16_t type = virtio_pci_device_type(d);

		info("pci: 00:%02x.%x %04x:%04x class %06x%s%s\n", d->slot, d->fn, d->vendor,
		     d->device, d->class_code, type ? " " : "", type ? virtio_type_name(type) : "");
		for (int b = 0; b < 6; b++)
			if (d->bars[b].kind != PCI_BAR_NONE)
				info("pci:   BAR%d %s at 0x%llx, 0x%llx bytes\n", b,
				     d->bars[b].kind == PCI_BAR_IO ? "I/O" :
				     d->bars[b].kind == PCI_BAR_MEM64 ? "mem64" : "mem32",
				     (unsigned long long)d->bars[b].addr,
				     (unsigned long long)d->bars[b].size);
		if (type == VIRTIO_ID_BLOCK && out->nr_blk < MAX_DISKS)
			out->blk[out->nr_blk++] = d;
		else if (type == VIRTIO_ID_RNG && !out->rng)
			out->rng = d;
	}
}

/* ---- entry ----------------------------------------------------------------------------- */

static struct args args;
static struct devices devs;

static long user_main(void *arg)
{
	(void)arg;
	if (!args.tsc_khz)
		args.tsc_khz = tsc_khz_from_kvm();
	find_devices(&args, &devs);
	if (!strcmp(args.mode, "test"))
		return test_run(&args, &devs);
	if (!strcmp(args.mode, "bench"))
		return bench_run(&args, &devs);
	if (!strcmp(args.mode, "hostile"))
		return hostile_run(&args, &devs);
	if (!strcmp(args.mode, "stream"))
		return stream_run(&args, &devs);
	printf("kickvm-virtio: mode=test, bench, hostile or stream, please (got \"%s\")\n",
	       args.mode);
	return 2;
}

int guest_main(const char *cmdline)
{
	struct parse_job job = { &args, cmdline };

	args.indirect = -1;
	run_user(parse_args, &job);
	guest_quiet = args.quiet;
	info("kickvm-virtio: cmdline \"%s\" (%s)\n", cmdline,
	     guest_on_kickvm() ? "kickvm" : "not kickvm");
	if (args.irq) {
		/* MSI-X messages are addressed by APIC id; the counting stubs EOI
		 * through the x2APIC MSR (the xAPIC page under QEMU's TCG). */
		args.apic_id = apic_enable();
		/* run_user() takes RFLAGS along: CPL3 spins with interrupts on. */
		irq_enable();
	}
	return (int)run_user(user_main, NULL);
}
