/*
 * A machine: KVM, guest RAM, the two address spaces (memory and I/O ports)
 * mirrored into KVM, the vCPUs and their threads, iothreads, and the devices
 * every kickvm guest finds (UART, system device, doorbell test device).
 *
 * Two ways to run it:
 *  - machine_run(): one thread per vCPU dispatching exits, the main thread
 *    running the main event loop; returns when the guest ends.
 *  - the step API (machine_vcpu_run_once + machine_vcpu_dispatch), for tests
 *    written like Linux's KVM selftests and for the benchmarks: the caller
 *    sees every exit before it is dispatched.
 */
#ifndef KICKVM_MACHINE_H
#define KICKVM_MACHINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "event.h"
#include "guest_abi.h"
#include "guest_mem.h"
#include "kvm.h"
#include "memory.h"
#include "vfio_pci.h"

#define MACHINE_MAX_VCPUS     8
#define MACHINE_MAX_IOTHREADS 8
#define MACHINE_MAX_DEVICES   8

struct uart8250;
struct sysdev;
struct testdev;
struct power;
struct rtc_cmos;
struct pci_bus;
struct virtio_dev;
struct virtio_pci;
struct virtio_blk_opts;
struct vfio_pci;
struct machine_boot_image;

struct machine_config {
	uint64_t ram_size;            /* bytes; default 256 MiB */
	int nr_vcpus;                 /* default 1 */
	enum ioeventfd_mode ioeventfd;
	const char *kvm_path;         /* NULL: /dev/kvm */
	FILE *console;                /* UART output; NULL: stdout */
	int boot;                     /* enum boot_protocol; default BOOT_AUTO */
	bool no_reboot;               /* -no-reboot: a reset (guest's or system_reset)
					 * ends the machine with MACHINE_EXIT_REBOOT */
};

void machine_config_defaults(struct machine_config *cfg);

struct machine {
	struct machine_config cfg;
	struct kvm *kvm;
	struct guest_mem mem;
	struct mem_region *system_root, *io_root;
	struct mem_region *ram[GUEST_MEM_MAX_BANKS];
	struct address_space *as_memory, *as_io;
	struct kvm_mem_listener memory_listener, io_listener;
	struct vcpu *vcpus[MACHINE_MAX_VCPUS];
	int nr_vcpus;
	struct event_loop *main_loop;
	struct iothread *iothreads[MACHINE_MAX_IOTHREADS];
	int nr_iothreads;

	struct uart8250 *uart;
	struct sysdev *sysdev;
	struct testdev *testdev;
	struct power *power;          /* ACPI sleep/reset registers, i8042 reset */
	struct rtc_cmos *rtc;         /* the CMOS clock Linux reads at boot */
	struct pci_bus *pci;
	struct machine_device {
		char id[32];              /* "virtio-blk0" */
		struct virtio_dev *vdev;
		struct virtio_pci *vp;
		struct event_loop *loop;  /* where its work runs */
		struct vfio_pci *vfio;    /* an assigned device (vdev, vp NULL) */
	} devices[MACHINE_MAX_DEVICES];
	int nr_devices;

	_Atomic bool stopping;
	int exit_status;              /* valid once stopping */
	bool guest_failed;            /* a guest assertion or an exception */

	/* Paused (QMP stop, -S): vCPU threads park between two KVM_RUNs. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;    /* parked count changed, or resume/stop */
	_Atomic bool pause_requested;
	int vcpus_parked;             /* under pause_lock */
	struct machine_monitor *monitor;  /* the QMP socket, or NULL */

	/* Reset in place (src/machine/reset.c). */
	struct guest_mem_record *boot_record;  /* what the loader wrote */
	struct machine_boot_image *boot;       /* its contents, kept; NULL: no reset */
	_Atomic unsigned reset_gen;            /* bumped by each reset */
	_Atomic bool reset_requested;          /* a guest's reset is on its way */
	uint64_t resets;
};

/*
 * Build a machine from @cfg: opens KVM (on failure *@why says why and the
 * return is negative: -ENOENT/-EACCES when /dev/kvm is missing, -ENOTSUP for a
 * missing capability), RAM, address spaces, vCPUs and the standard devices.
 */
int machine_create(const struct machine_config *cfg, struct machine **out,
		   const char **why);
/* Stop everything, join threads, free. NULL is fine. */
void machine_destroy(struct machine *m);

/* Load an ELF guest and set every vCPU's entry state; *@why on -ENOEXEC. */
int machine_load_guest(struct machine *m, const char *path, const char *cmdline,
		       const char **why);

/*
 * Load a Linux kernel (@kernel: a bzImage, entered at its 64-bit entry, or a
 * vmlinux ELF, entered through its PVH note), @initrd (NULL: none) and the
 * command line, and describe the machine to it: e820 map, ACPI tables (RSDP,
 * XSDT, FADT, DSDT, MADT, MCFG), an in-kernel PIT for its timer calibration.
 * *@why on -ENOEXEC (not a kernel), -ENOMEM (does not fit), -E2BIG (command
 * line too long).
 */
int machine_load_linux(struct machine *m, const char *kernel, const char *initrd,
		       const char *cmdline, const char **why);

/* How a guest that powers off ends machine_run() (src/hw/power.c: ACPI S5),
 * and one that resets (the ACPI reset register, the i8042 reset line) with
 * -no-reboot; without it, the machine resets in place (machine_request_reset). */
#define MACHINE_EXIT_POWEROFF 0
#define MACHINE_EXIT_REBOOT   3

/* Find or create the iothread @name. */
int machine_iothread(struct machine *m, const char *name, struct iothread **out);

/* Options every virtio device takes (QEMU's spelling on the command line). */
struct machine_virtio_opts {
	const char *iothread;         /* run its work there; NULL: main loop */
	bool ioeventfd;               /* host notifiers (default true) */
	int slot;                     /* PCI slot, -1: first free */
};
void machine_virtio_opts_defaults(struct machine_virtio_opts *o);

/* Add a virtio-blk (or -rng) PCI device. *@why says what went wrong. */
int machine_add_virtio_blk(struct machine *m, const struct virtio_blk_opts *blk,
			   const struct machine_virtio_opts *o, struct machine_device **out,
			   const char **why);
int machine_add_virtio_rng(struct machine *m, const struct machine_virtio_opts *o,
			   struct machine_device **out, const char **why);

/* -device vfio-pci: assign the host device @host (canonical BDF). */
struct machine_vfio_opts {
	const char *host;
	const char *id;               /* NULL: "vfio-pciN" */
	int msix_relocation;          /* VFIO_MSIX_RELOC_* (kickvm/vfio_pci.h) */
	bool no_mmap;                 /* x-no-mmap=on */
	bool ioeventfd;               /* device-write ioeventfds (default on) */
	int slot;                     /* PCI slot, -1: first free */
	/* x-device-ioeventfd=BAR:OFFSET:WIDTH:DATA, in the order given */
	struct vfio_pci_ioeventfd_spec ioeventfds[VFIO_PCI_MAX_STATIC_IOEVENTFDS];
	unsigned nr_ioeventfds;
};
void machine_vfio_opts_defaults(struct machine_vfio_opts *o);
/* Errors: -EINVAL/-ENODEV/-EBUSY/-ENOTSUP/... from opening the device or
 * building the model, with *@why naming the fix where there is one. */
int machine_add_vfio_pci(struct machine *m, const struct machine_vfio_opts *o,
			 struct machine_device **out, const char **why);

/* Run the vCPUs on their own threads until the guest ends (or a fatal exit,
 * or machine_request_stop()), and the main loop on another; the caller's
 * thread waits.  Returns the guest's exit status, or a negative errno when
 * the machine failed.  The vCPU threads, the main loop's thread and the
 * iothreads run under their sandbox (kickvm/sandbox.h) from here on, in
 * sandbox_get_mode(); the caller's thread never does. */
int machine_run(struct machine *m);
/* Ask the machine to stop with @status; any thread. */
void machine_request_stop(struct machine *m, int status);

/*
 * Pause the machine: every vCPU thread parks at its next exit (a kick makes
 * one at once) until machine_resume().  Called before machine_run(), the
 * vCPUs start parked (kickvm run -S).  Waits up to @timeout_ms for every
 * running vCPU thread to park: -ETIMEDOUT if one has not yet (it parks at
 * its next exit; a vCPU waiting on the calling thread cannot park).  Any
 * thread but a vCPU's.  machine_request_stop() ends a pause.
 */
int machine_pause(struct machine *m, int timeout_ms);
void machine_resume(struct machine *m);
bool machine_paused(struct machine *m);

/*
 * The QMP monitor (kickvm/qmp.h) on the unix socket @path, served by the
 * main loop: query-status, stop/cont, system_reset, quit, the info dumps,
 * query-ioeventfds, query-exit-stats; events STOP, RESUME, RESET,
 * POWERDOWN, SHUTDOWN (sent when machine_run() ends, with the cause) and
 * NEEDS_RESET (a virtio device broken by its driver).  @start_paused: -S
 * (query-status says "prelaunch" until cont).  @wait: wait in this call
 * for a first client (wait=on).  Freed by machine_destroy().
 */
int machine_monitor_start(struct machine *m, const char *path, bool start_paused, bool wait,
			  const char **why);
/* Close the monitor, its socket and clients now, before machine_destroy()
 * (which does it otherwise): a caller that still reads the machine's
 * counters after machine_run() but wants the clients told it ended. */
void machine_monitor_close(struct machine *m);

/*
 * Reset the machine in place (QMP system_reset): every PCI function reset,
 * the boot image written back, each vCPU and the interrupt controllers back
 * to their state when the guest was loaded; the guest boots again.  A paused
 * machine stays paused.  Any thread but a vCPU's.  0, or a negative errno
 * with *@why: -ENOENT no guest loaded, -EBUSY a vCPU did not stop (nothing
 * was reset), -ESHUTDOWN the machine is stopping.
 */
int machine_reset(struct machine *m, const char **why);
/* A reset the guest asked for (the ACPI reset register, the i8042): done in
 * place on the main loop, as machine_reset(); ends the machine with
 * MACHINE_EXIT_REBOOT instead under -no-reboot (cfg.no_reboot), when no
 * boot state was kept, or without vCPU threads (machine_run() not running).
 * Any thread. */
void machine_request_reset(struct machine *m);
/* Bytes (and ranges) of boot image kept for resets; 0 when none. */
uint64_t machine_boot_image_bytes(const struct machine *m, unsigned *ranges);

/* ---- step API ------------------------------------------------------------- */

enum machine_event {
	MACHINE_CONTINUE = 0,     /* exit handled, run again */
	MACHINE_UCALL,            /* the guest made a ucall: see @ucall */
	MACHINE_STOPPED,          /* the guest ended (or stop was requested) */
};

struct machine_exit {
	int reason;               /* KVM_EXIT_* */
	struct kickvm_ucall ucall;/* for MACHINE_UCALL */
};

/* One KVM_RUN of @cpu. Returns the KVM exit reason or a negative errno.
 * The exit is in m->vcpus[cpu]->run until machine_vcpu_dispatch(). */
int machine_vcpu_run_once(struct machine *m, int cpu);
/*
 * Handle the exit of the last run: MMIO and PIO go through the address spaces
 * (so ioeventfd fallback, devices, ucalls), coalesced writes are drained, a
 * fatal exit dumps registers and stops the machine.  Returns an enum
 * machine_event, or a negative errno for a fatal exit.
 */
int machine_vcpu_dispatch(struct machine *m, int cpu, struct machine_exit *ex);
/* Run and dispatch until something other than MACHINE_CONTINUE happens. */
int machine_vcpu_run_until_event(struct machine *m, int cpu, struct machine_exit *ex);

/* ---- for devices ---------------------------------------------------------- */
/* Hand a ucall to whoever is stepping the calling vCPU (machine_vcpu_dispatch
 * then returns MACHINE_UCALL); ignored under machine_run(). */
void machine_post_ucall(struct machine *m, const struct kickvm_ucall *uc);

/* ---- observability --------------------------------------------------------- */
/* Per-vCPU exits, per-address-space dispatch and per-ioeventfd signals by path. */
void machine_print_stats(struct machine *m, FILE *out);
/* "mtree", "flatview", "ioeventfds" or "all"; -EINVAL for anything else. */
int machine_info(struct machine *m, const char *what, FILE *out);

#endif
