/* kickvm run: boot a guest and report the paths its writes took. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "hw/testdev.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "kickvm/trace.h"

#define MAX_INFO 4

static void run_help(void)
{
	printf("usage: kickvm run [options] [GUEST]\n"
	       "Boot the ELF guest GUEST (default: the bundled demo guest).\n\n"
	       "  -m, --memory SIZE        guest RAM, e.g. 256M or 1G (default 256M)\n"
	       "  -c, --cpus N             vCPUs, 1-%d (default 1)\n"
	       "      --ioeventfd MODE     on | off | auto (default auto): off sends every\n"
	       "                           doorbell through the userspace fallback\n"
	       "  -a, --append CMDLINE     the guest's command line\n"
	       "      --trace PATTERN      enable trace events matching PATTERN (glob,\n"
	       "                           comma-separated, '-' prefix disables), e.g. 'ioeventfd_*'\n"
	       "      --stats              print exits and signals per path when the guest ends\n"
	       "      --info WHAT          print mtree, flatview, ioeventfds or all when the guest ends\n"
	       "  -v, --verbose            log more (repeat for debug)\n"
	       "  -h, --help               this text\n\n"
	       "The exit status is the guest's; 2 means a bad command line or guest file.\n",
	       MACHINE_MAX_VCPUS);
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

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "memory", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "smp", required_argument, NULL, 'c' },
		{ "ioeventfd", required_argument, NULL, 'I' },
		{ "append", required_argument, NULL, 'a' },
		{ "trace", required_argument, NULL, 'T' },
		{ "stats", no_argument, NULL, 'S' },
		{ "info", required_argument, NULL, 'i' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct machine_config cfg;
	struct machine *m = NULL;
	const char *cmdline = "", *guest, *why, *info[MAX_INFO];
	int nr_info = 0, verbose = 0, c, ret;
	bool stats = false;
	uint64_t v;

	machine_config_defaults(&cfg);
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:c:a:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_size(optarg, &cfg.ram_size) < 0)
				return usage_error("run ", "bad memory size '%s'", optarg);
			break;
		case 'c':
			if (parse_uint(optarg, 1, MACHINE_MAX_VCPUS, &v) < 0)
				return usage_error("run ", "bad vCPU count '%s' (1-%d)", optarg,
						   MACHINE_MAX_VCPUS);
			cfg.nr_vcpus = (int)v;
			break;
		case 'I':
			if (parse_ioeventfd_mode(optarg, &cfg.ioeventfd) < 0)
				return usage_error("run ", "--ioeventfd takes on, off or auto, not '%s'",
						   optarg);
			break;
		case 'a':
			cmdline = optarg;
			break;
		case 'T':
			if (trace_enable(optarg) < 0)
				return usage_error("run ", "no trace event matches '%s'", optarg);
			break;
		case 'S':
			stats = true;
			break;
		case 'i':
			if (strcmp(optarg, "mtree") && strcmp(optarg, "flatview") &&
			    strcmp(optarg, "ioeventfds") && strcmp(optarg, "all"))
				return usage_error("run ", "--info takes mtree, flatview, ioeventfds or all");
			if (nr_info == MAX_INFO)
				return usage_error("run ", "too many --info");
			info[nr_info++] = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			run_help();
			return 0;
		default:
			return usage_error("run ", "bad option");
		}
	}
	if (argc - optind > 1)
		return usage_error("run ", "one guest only ('%s' is extra)", argv[optind + 1]);
	guest = optind < argc ? argv[optind] : bundled_guest("kickvm-demo.elf");
	if (access(guest, R_OK) < 0) {
		fprintf(stderr, "kickvm: cannot read guest '%s': %s\n", guest, strerror(errno));
		return EXIT_USAGE;
	}
	if (verbose)
		log_set_level(verbose > 1 ? LOG_DEBUG : LOG_INFO);

	ret = machine_create(&cfg, &m, &why);
	if (ret < 0) {
		fprintf(stderr, "kickvm: cannot create the machine: %s (%s)\n",
			why ? why : "error", strerror(-ret));
		return 1;
	}
	ret = testdev_setup_defaults(m->testdev);
	if (ret < 0) {
		fprintf(stderr, "kickvm: cannot set up the test device: %s\n", strerror(-ret));
		machine_destroy(m);
		return 1;
	}
	ret = machine_load_guest(m, guest, cmdline, &why);
	if (ret < 0) {
		fprintf(stderr, "kickvm: %s: %s\n", guest, why ? why : strerror(-ret));
		machine_destroy(m);
		return ret == -ENOEXEC || ret == -E2BIG || ret == -ENOENT ? EXIT_USAGE : 1;
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
	return ret;
}
