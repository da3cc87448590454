/* The kickvm system device: exit, ucall and console for test guests. */
#ifndef KICKVM_HW_SYSDEV_H
#define KICKVM_HW_SYSDEV_H

#include <stdint.h>

struct machine;
struct sysdev;

/* The MMIO page at KICKVM_SYSDEV_BASE and the exit port KICKVM_EXIT_PORT. */
int sysdev_create(struct machine *m, struct sysdev **out);
void sysdev_destroy(struct sysdev *sd);
/* ucalls the guest made whose arguments were outside guest RAM. */
uint64_t sysdev_bad_ucalls(const struct sysdev *sd);

#endif
