/* kickvm: the command line. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void print_usage(FILE *out)
{
	fprintf(out,
		"usage: kickvm run [options] [GUEST]   boot an ELF guest (default: the demo guest)\n"
		"       kickvm info                    KVM capabilities and what kickvm uses\n"
		"       kickvm bench doorbell [--writes N] [--json]\n"
		"                                      cost of one doorbell write on every path\n"
		"       kickvm bench blk [--qd N] [--json]\n"
		"                                      virtio-blk 4 KiB random I/O, ioeventfd on/off\n"
		"       kickvm vfio-info BDF           regions and IRQs of a device bound to vfio-pci\n"
		"       kickvm stat [--once] [--json] SOCKET\n"
		"                                      live exits and doorbells per second (QMP)\n"
		"       kickvm help | --help | --version\n"
		"\n'kickvm run --help' lists the run options.\n");
}

int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kickvm: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'kickvm %s--help'.\n", cmd ? cmd : "");
	return EXIT_USAGE;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if ((*end == 'i' || *end == 'B') && shift)
		end += *end == 'i' && end[1] == 'B' ? 2 : 1;
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

const char *bundled_guest(const char *name)
{
	static char path[PATH_MAX + 64];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	/* Built tree: <build>/src/cli/kickvm and <build>/guest/<name>. */
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');

		if (slash) {
			*slash = '\0';
			snprintf(path, sizeof(path), "%s/../../guest/%s", self, name);
			if (access(path, R_OK) == 0)
				return path;
		}
	}
	snprintf(path, sizeof(path), "%s/%s", KICKVM_GUEST_DIR, name);
	return path;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd)
		return print_usage(stderr), EXIT_USAGE;
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "info"))
		return cmd_info(argc - 1, argv + 1);
	if (!strcmp(cmd, "bench"))
		return cmd_bench(argc - 1, argv + 1);
	if (!strcmp(cmd, "vfio-info"))
		return cmd_vfio_info(argc - 1, argv + 1);
	if (!strcmp(cmd, "stat"))
		return cmd_stat(argc - 1, argv + 1);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		print_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("kickvm %s\n", KICKVM_VERSION);
		return 0;
	}
	return usage_error(NULL, "unknown command '%s'", cmd);
}
