/* The kickvm command: subcommands and the helpers they share. */
#ifndef KICKVM_CLI_H
#define KICKVM_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Exit status for a bad command line, a missing file or a guest that is not
 * a guest; kickvm otherwise exits with the guest's status. */
#define EXIT_USAGE 2

int cmd_run(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int bench_blk(int argc, char **argv);
int cmd_vfio_info(int argc, char **argv);
int cmd_stat(int argc, char **argv);

#include "kickvm/kvm.h"

/* "on", "off", "auto". */
int parse_ioeventfd_mode(const char *s, enum ioeventfd_mode *mode);

/* "256M", "1G", "1048576": bytes, or -EINVAL. */
int parse_size(const char *s, uint64_t *out);
/* A whole number in [min, max], or -EINVAL. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Print "kickvm: <msg>" and a hint to stderr; returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The bundled guests, as built next to the kickvm binary. */
const char *bundled_guest(const char *name);

#endif
