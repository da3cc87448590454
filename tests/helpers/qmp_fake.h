/*
 * A fake machine behind the QMP monitor (struct qmp_machine_ops), for the
 * server's unit tests and the fake-machine server `kickvm stat` and the
 * python client are tested against without /dev/kvm.  It records what was
 * asked of it; its counters grow by fixed steps at each query-exit-stats,
 * so rates computed from them are known exactly.
 */
#ifndef KICKVM_QMP_FAKE_H
#define KICKVM_QMP_FAKE_H

#include "kickvm/qmp.h"

/* Per query-exit-stats: cpu0's MMIO exits grow by this, testdev's KVM
 * doorbells by 10x this, virtio-blk0's requests by 3x this. */
#define QMP_FAKE_STEP 100

struct qmp_fake {
	enum qmp_run_state state;
	int stops, conts, resets, powerdowns, quits, stats_queries;
	bool fail_info;        /* info returns -EIO */
	bool needs_reset;      /* virtio-blk0 reports it */
};

extern const struct qmp_machine_ops qmp_fake_ops;

#endif
