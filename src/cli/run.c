/* kickvm run: boot a guest and report the paths its writes took. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/device_opts.h"
#include "hw/testdev.h"
#include "kickvm/boot.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "kickvm/qmp.h"
#include "kickvm/sandbox.h"
#include "kickvm/trace.h"

#define MAX_INFO 4
#define MAX_OBJECTS MACHINE_MAX_IOTHREADS

static void run_help(void)
{
	printf("usage: kickvm run [options] [GUEST | --kernel FILE [--initrd FILE]]\n"
	       "Boot the ELF guest GUEST (default: the bundled demo guest).\n\n"
	       "  -m, --memory SIZE        guest RAM, e.g. 256M or 1G (default 256M)\n"
	       "  -c, --cpus N             vCPUs, 1-%d (default 1)\n"
	       "      --ioeventfd MODE     on | off | auto (default auto): off sends every\n"
	       "                           doorbell through the userspace fallback\n"
	       "  -a, --append CMDLINE     the guest's command line\n"
	       "      --kernel FILE        boot Linux instead: a bzImage (64-bit entry) or a\n"
	       "                           vmlinux with a PVH note; with ACPI, e820, a PIT\n"
	       "      --initrd FILE        the initramfs for --kernel\n"
	       "      --boot PROTOCOL      auto (default: KickVM note, else PVH, else ELF64\n"
	       "                           entry), pvh, kickvm or elf64\n"
	       "      --trace PATTERN      enable trace events matching PATTERN (glob,\n"
	       "                           comma-separated, '-' prefix disables), e.g. 'ioeventfd_*'\n"
	       "      --stats              print exits and signals per path when the guest ends\n"
	       "      --info WHAT          print mtree, flatview, ioeventfds or all when the guest ends\n"
	       "  -device virtio-blk,file=IMG[,readonly=on][,ioeventfd=on|off][,iothread=NAME]\n"
	       "         [,serial=S][,cache=writeback|none][,aio=auto|io_uring|threads][,slot=N]\n"
	       "  -device virtio-rng[,ioeventfd=on|off][,iothread=NAME]\n"
	       "  -device vfio-pci,host=BDF[,id=ID][,x-msix-relocation=off|auto|bar0..bar5]\n"
	       "         [,x-no-mmap=on|off][,ioeventfd=on|off][,slot=N]\n"
	       "         [,x-device-ioeventfd=BAR:OFFSET:WIDTH:DATA]...\n"
	       "                            assign a host device bound to vfio-pci; each\n"
	       "                            x-device-ioeventfd (repeatable, WIDTH 1/2/4/8 bytes)\n"
	       "                            makes the kernel perform guest writes of DATA there\n"
	       "                            (ioeventfd=off: kickvm's handler performs them)\n"
	       "  -object iothread,id=NAME[,poll-max-ns=N]\n"
	       "                            a thread for device work (declare before use);\n"
	       "                            it busy-polls N ns before sleeping (default 32768)\n"
	       "      --seccomp MODE       on | off | log (default %s): once set up, each\n"
	       "                           thread runs under an allow-list of system calls;\n"
	       "                           a forbidden call ends kickvm (status %d) naming it;\n"
	       "                           log lets it through and the kernel logs it (dmesg)%s\n"
	       "  -qmp unix:PATH[,server=on][,wait=off]\n"
	       "                           a QMP monitor socket (mode 0600): query, stop, cont,\n"
	       "                           reset, quit, stats (kickvm stat PATH); wait=on waits\n"
	       "                           for a client before the guest starts\n"
	       "  -S                       start with the vCPUs stopped until QMP 'cont'\n"
	       "  -no-reboot               a reset (the guest's, or QMP system_reset) ends\n"
	       "                           kickvm with status 3 instead of resetting in place\n"
	       "  -v, --verbose            log more (repeat for debug)\n"
	       "  -h, --help               this text\n\n"
	       "The exit status is the guest's; 2 means a bad command line or guest file.\n",
	       MACHINE_MAX_VCPUS, sandbox_mode_name(sandbox_get_mode()), SANDBOX_EXIT_STATUS,
	       sandbox_default_off() ? ";\n                           off by default in this AddressSanitizer build" : "");
}

int parse_ioeventfd_mode(const char *s, enum ioeventfd_mode *mode)
{
	if (!strcmp(s, "on"))
		*mode = IOEVENTFD_ON;
	else if (!strcmp(s, "off"))
		*mode = IOEVENTFD_OFF;
	else if (!strcmp(s, "auto"))
		*mode = IOEVENTFD_AUTO;
	else
		return -EINVAL;
	return 0;
}

/* Every iothread a device names was declared, and declared once. */
static int check_device_specs(const struct device_spec *devices, int nr_devices,
			      const struct object_spec *iothreads, int nr_objects)
{
	for (int i = 0; i < nr_objects; i++)
		for (int j = 0; j < i; j++)
			if (!strcmp(iothreads[i].id, iothreads[j].id))
				return usage_error("run ", "iothread '%s' declared twice",
						   iothreads[i].id);
	for (int i = 0; i < nr_devices; i++) {
		const char *want = devices[i].virtio.iothread;
		bool found = !want;

		for (int j = 0; j < nr_objects && !found; j++)
			found = !strcmp(want, iothreads[j].id);
		if (!found)
			return usage_error("run ", "%s: no iothread '%s' (declare it with -object iothread,id=%s)",
					   devices[i].type, want, want);
	}
	return 0;
}

/* Iothreads first, so devices can bind to them. Returns an exit status or 0. */
static int add_devices(struct machine *m, struct device_spec *devices, int nr_devices,
		       const struct object_spec *iothreads, int nr_objects)
{
	struct machine_device *md;
	struct iothread *it;
	const char *why = NULL;
	int ret = 0;

	for (int i = 0; i < nr_objects && !ret; i++) {
		ret = machine_iothread(m, iothreads[i].id, &it);
		if (!ret && iothreads[i].poll_ns >= 0)
			event_loop_set_poll_ns(iothread_loop(it), (uint64_t)iothreads[i].poll_ns);
	}
	if (ret < 0) {
		fprintf(stderr, "kickvm: cannot start iothreads: %s\n", strerror(-ret));
		return 1;
	}
	for (int i = 0; i < nr_devices; i++) {
		struct device_spec *d = &devices[i];

		if (!strcmp(d->type, "vfio-pci")) {
			ret = machine_add_vfio_pci(m, &d->vfio, &md, &why);
			if (ret < 0) {
				/* The host refused: say what to fix; the command line was fine. */
				if (ret == -EDOM) {
					/* An option this device cannot take. */
					fprintf(stderr, "kickvm: -device vfio-pci,host=%s: %s\n",
						d->vfio.host, why ? why : "bad option");
					return EXIT_USAGE;
				}
				fprintf(stderr, "kickvm: -device vfio-pci,host=%s: %s (%s)\n",
					d->vfio.host, why ? why : "error", strerror(-ret));
				return 1;
			}
			continue;
		}
		if (!strcmp(d->type, "virtio-blk"))
			ret = machine_add_virtio_blk(m, &d->blk, &d->virtio, &md, &why);
		else
			ret = machine_add_virtio_rng(m, &d->virtio, &md, &why);
		if (ret < 0) {
			fprintf(stderr, "kickvm: -device %s%s%s: %s (%s)\n", d->type,
				d->blk.file ? ",file=" : "", d->blk.file ? d->blk.file : "",
				why ? why : "error", strerror(-ret));
			/* A missing or unreadable image is the user's to fix. */
			return ret == -ENOENT || ret == -EACCES || ret == -EISDIR ? EXIT_USAGE : 1;
		}
	}
	return 0;
}

/* -qmp and -S, checked before any machine exists: an exit status or 0. */
static int check_monitor_spec(const char *spec, bool start_paused)
{
	const char *why = NULL;
	char *path = NULL;
	bool wait;

	if (!spec && start_paused)
		return usage_error("run ", "-S needs -qmp: nothing could ever say 'cont'");
	if (spec && qmp_parse_address(spec, &path, &wait, &why) < 0)
		return usage_error("run ", "-qmp %s: %s", spec, why ? why : "bad address");
	free(path);
	return 0;
}

/* Returns an exit status or 0. */
static int start_monitor(struct machine *m, const char *spec, bool start_paused)
{
	const char *why = NULL;
	char *path = NULL;
	bool wait;
	int ret;

	if (!spec)
		return 0;
	ret = qmp_parse_address(spec, &path, &wait, &why);
	if (!ret)
		ret = machine_monitor_start(m, path, start_paused, wait, &why);
	if (ret < 0)
		fprintf(stderr, "kickvm: -qmp %s: %s (%s)\n", spec, why ? why : "error", strerror(-ret));
	free(path);
	/* A path that is not a socket, or in use, is the user's to fix. */
	return ret == 0 ? 0 : ret == -EEXIST || ret == -EADDRINUSE || ret == -ENOENT ||
	       ret == -EACCES || ret == -ENAMETOOLONG ? EXIT_USAGE : 1;
}

int cmd_run(int argc, char **argv)
{
/* A bad option after a -device must still free what was parsed. */
#define FAIL_USAGE(...) do { ret = usage_error("run ", __VA_ARGS__); goto out_specs; } while (0)
	static const struct option opts[] = {
		{ "memory", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "smp", required_argument, NULL, 'c' },
		{ "ioeventfd", required_argument, NULL, 'I' },
		{ "append", required_argument, NULL, 'a' },
		{ "trace", required_argument, NULL, 'T' },
		{ "stats", no_argument, NULL, 'S' },
		{ "info", required_argument, NULL, 'i' },
		{ "boot", required_argument, NULL, 'B' },
		{ "device", required_argument, NULL, 'D' },
		{ "object", required_argument, NULL, 'O' },
		{ "kernel", required_argument, NULL, 'K' },
		{ "initrd", required_argument, NULL, 'R' },
		{ "seccomp", required_argument, NULL, 'Z' },
		{ "qmp", required_argument, NULL, 'Q' },
		{ "S", no_argument, NULL, 'P' },  /* -S: start paused (QEMU's) */
		{ "no-reboot", no_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct machine_config cfg;
	struct machine *m = NULL;
	const char *cmdline = "", *guest, *why, *info[MAX_INFO];
	const char *kernel = NULL, *initrd = NULL;  /* --kernel: boot Linux */
	int nr_info = 0, verbose = 0, c, ret;
	bool stats = false;
	enum sandbox_mode sandbox = sandbox_get_mode();
	uint64_t v;
	struct device_spec devices[MACHINE_MAX_DEVICES];
	struct object_spec iothreads[MAX_OBJECTS];
	int nr_devices = 0, nr_objects = 0;
	char err[160];
	const char *qmp_spec = NULL;  /* -qmp */
	bool start_paused = false;    /* -S */

	machine_config_defaults(&cfg);
	optind = 1;
	/* _only: -device/-object take one dash, as in QEMU. */
	while ((c = getopt_long_only(argc, argv, "m:c:a:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_size(optarg, &cfg.ram_size) < 0)
				FAIL_USAGE("bad memory size '%s'", optarg);
			break;
		case 'c':
			if (parse_uint(optarg, 1, MACHINE_MAX_VCPUS, &v) < 0)
				FAIL_USAGE("bad vCPU count '%s' (1-%d)", optarg, MACHINE_MAX_VCPUS);
			cfg.nr_vcpus = (int)v;
			break;
		case 'I':
			if (parse_ioeventfd_mode(optarg, &cfg.ioeventfd) < 0)
				FAIL_USAGE("--ioeventfd takes on, off or auto, not '%s'", optarg);
			break;
		case 'a':
			cmdline = optarg;
			break;
		case 'T':
			if (trace_enable(optarg) < 0)
				FAIL_USAGE("no trace event matches '%s'", optarg);
			break;
		case 'S':
			stats = true;
			break;
		case 'i':
			if (strcmp(optarg, "mtree") && strcmp(optarg, "flatview") &&
			    strcmp(optarg, "ioeventfds") && strcmp(optarg, "all"))
				FAIL_USAGE("--info takes mtree, flatview, ioeventfds or all");
			if (nr_info == MAX_INFO)
				FAIL_USAGE("too many --info");
			info[nr_info++] = optarg;
			break;
		case 'B':
			if (!strcmp(optarg, "auto"))
				cfg.boot = BOOT_AUTO;
			else if (!strcmp(optarg, "pvh"))
				cfg.boot = BOOT_PVH;
			else if (!strcmp(optarg, "kickvm"))
				cfg.boot = BOOT_KICKVM;
			else if (!strcmp(optarg, "elf64"))
				cfg.boot = BOOT_ELF64;
			else
				FAIL_USAGE("--boot takes auto, pvh, kickvm or elf64, not '%s'", optarg);
			break;
		case 'D':
			if (nr_devices == MACHINE_MAX_DEVICES)
				FAIL_USAGE("too many -device (at most %d)", MACHINE_MAX_DEVICES);
			if (device_spec_parse(optarg, &devices[nr_devices++], err, sizeof(err)) < 0)
				FAIL_USAGE("-device %s: %s", optarg, err);
			break;
		case 'O':
			if (nr_objects == MAX_OBJECTS)
				FAIL_USAGE("too many -object");
			ret = object_spec_parse(optarg, &iothreads[nr_objects], err, sizeof(err));
			nr_objects++;
			if (ret < 0)
				FAIL_USAGE("-object %s: %s", optarg, err);
			break;
		case 'K':
			kernel = optarg;
			break;
		case 'R':
			initrd = optarg;
			break;
		case 'Z':
			if (sandbox_parse_mode(optarg, &sandbox) < 0)
				FAIL_USAGE("--seccomp takes on, off or log, not '%s'", optarg);
			break;
		case 'Q':
			qmp_spec = optarg;
			break;
		case 'P':
			start_paused = true;
			break;
		case 'N':
			cfg.no_reboot = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			run_help();
			ret = 0;
			goto out_specs;
		default:
			FAIL_USAGE("bad option");
		}
	}
	ret = check_device_specs(devices, nr_devices, iothreads, nr_objects);
	if (!ret)
		ret = check_monitor_spec(qmp_spec, start_paused);
	if (ret)
		goto out_specs;
	if (argc - optind > 1) {
		ret = usage_error("run ", "one guest only ('%s' is extra)", argv[optind + 1]);
		goto out_specs;
	}
	if (kernel && optind < argc) {
		ret = usage_error("run ", "--kernel and a guest ('%s'): boot one or the other", argv[optind]);
		goto out_specs;
	}
	if (initrd && !kernel) {
		ret = usage_error("run ", "--initrd needs --kernel");
		goto out_specs;
	}
	if (initrd && access(initrd, R_OK) < 0) {
		fprintf(stderr, "kickvm: cannot read initrd '%s': %s\n", initrd, strerror(errno));
		ret = EXIT_USAGE;
		goto out_specs;
	}
	guest = kernel ? kernel : optind < argc ? argv[optind] : bundled_guest("kickvm-demo.elf");
	if (access(guest, R_OK) < 0) {
		fprintf(stderr, "kickvm: cannot read guest '%s': %s\n", guest, strerror(errno));
		ret = EXIT_USAGE;
		goto out_specs;
	}
	if (verbose)
		log_set_level(verbose > 1 ? LOG_DEBUG : LOG_INFO);
	sandbox_set_mode(sandbox);
	if (sandbox == SANDBOX_LOG)
		log_warn("sandbox", "log mode: calls off the allow-lists go through, "
			 "the kernel logs them (dmesg: type=1326 ... syscall=N)");

	ret = machine_create(&cfg, &m, &why);
	if (ret < 0) {
		fprintf(stderr, "kickvm: cannot create the machine: %s (%s)\n",
			why ? why : "error", strerror(-ret));
		ret = 1;
		goto out_specs;
	}
	ret = add_devices(m, devices, nr_devices, iothreads, nr_objects);
	if (ret) {
		machine_destroy(m);
		goto out_specs;
	}
	ret = testdev_setup_defaults(m->testdev);
	if (ret < 0) {
		fprintf(stderr, "kickvm: cannot set up the test device: %s\n", strerror(-ret));
		machine_destroy(m);
		ret = 1;
		goto out_specs;
	}
	ret = kernel ? machine_load_linux(m, kernel, initrd, cmdline, &why)
		     : machine_load_guest(m, guest, cmdline, &why);
	if (ret < 0) {
		fprintf(stderr, "kickvm: %s: %s\n", guest, why ? why : strerror(-ret));
		machine_destroy(m);
		/* A kernel or initrd that does not fit (-ENOMEM) wants a larger -m. */
		ret = ret == -ENOEXEC || ret == -E2BIG || ret == -ENOENT ||
		      (kernel && ret == -ENOMEM) ? EXIT_USAGE : 1;
		goto out_specs;
	}
	ret = start_monitor(m, qmp_spec, start_paused);
	if (ret) {
		machine_destroy(m);
		goto out_specs;
	}
	ret = machine_run(m);
	fflush(stdout);
	if (stats)
		machine_print_stats(m, stdout);
	for (int i = 0; i < nr_info; i++)
		machine_info(m, info[i], stdout);
	if (ret < 0) {
		fprintf(stderr, "kickvm: the machine failed: %s\n", strerror(-ret));
		ret = 1;
	}
	machine_destroy(m);
out_specs:
	for (int i = 0; i < nr_devices; i++)
		device_spec_free(&devices[i]);
	for (int i = 0; i < nr_objects; i++)
		object_spec_free(&iothreads[i]);
	return ret;
}
