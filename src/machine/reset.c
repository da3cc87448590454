/*
 * Resetting a machine in place (QMP system_reset): the machine goes back to
 * the state it had when its guest was loaded, and the guest boots again.
 *
 * What a reset puts back, and from where:
 *  - Every PCI function gets a bus reset (pci_bus_reset): config space to
 *    its power-on values, MSI-X masked, virtio devices reset (their rings
 *    forgotten, host notifiers stopped, requests in flight finished first),
 *    assigned devices reset through VFIO.
 *  - The boot image: the loader's writes were recorded (guest_mem_record_*)
 *    and their contents kept when loading ended, the way QEMU keeps its ROM
 *    blobs; they are written back, so the kernel, its tables and command
 *    line are as loaded even if the guest overwrote them.  The rest of RAM
 *    keeps what it holds, as on real hardware.
 *  - Each vCPU's architectural state and the interrupt controllers, saved
 *    when loading ended (src/kvm/vcpu_state.c): the entry registers, the
 *    LAPIC, MSRs, and wait-for-SIPI for the CPUs the boot protocol starts
 *    later.  A vCPU with a thread restores itself on that thread before it
 *    runs again (KVM wants a vCPU's state changed by the thread that runs
 *    it, after KVM completed the exit it was handling).
 *
 * The vCPUs are parked (the pause of QMP stop) for the length of the reset.
 * A machine that was paused stays paused, as in QEMU.
 *
 * A reset the guest asks for (machine_request_reset: the ACPI reset
 * register, the i8042) is the same reset, run on the main loop since the
 * vCPU that asked cannot wait for itself to park; with -no-reboot, or with
 * no vCPU threads (a test stepping the vCPUs), it ends the machine with
 * MACHINE_EXIT_REBOOT instead.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kickvm/event.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "kickvm/pci.h"

#include "machine/machine_internal.h"

/* How long a reset waits for every vCPU to park. */
#define RESET_PAUSE_MS 2000

struct machine_boot_image {
	unsigned nr;
	uint64_t bytes;
	struct {
		uint64_t gpa, len;
		void *data;
	} blobs[GUEST_MEM_MAX_RANGES];
};

static void free_boot_image(struct machine_boot_image *img)
{
	if (!img)
		return;
	for (unsigned i = 0; i < img->nr; i++)
		free(img->blobs[i].data);
	free(img);
}

void machine_boot_record_begin(struct machine *m)
{
	if (!m->boot_record)
		m->boot_record = calloc(1, sizeof(*m->boot_record));
	if (m->boot_record)
		guest_mem_record_start(&m->mem, m->boot_record);
}

/* Keep the recorded ranges' contents and the vCPU and interrupt controller
 * state.  A machine that cannot keep them still runs; only a reset is
 * refused (machine_reset says why). */
void machine_boot_record_end(struct machine *m, bool loaded)
{
	struct guest_mem_record *rec = m->boot_record;
	struct machine_boot_image *img;
	int ret = 0;

	guest_mem_record_stop(&m->mem);
	free_boot_image(m->boot);
	m->boot = NULL;
	if (!loaded || !rec)
		return;
	if (rec->overflow) {
		log_warn("machine", "the loader wrote more than %d separate ranges: system_reset "
			 "will be refused", GUEST_MEM_MAX_RANGES);
		return;
	}
	img = calloc(1, sizeof(*img));
	if (!img)
		return;
	for (unsigned i = 0; i < rec->nr && !ret; i++) {
		const struct guest_mem_range *r = &rec->ranges[i];
		void *data = malloc(r->len);

		if (!data || guest_mem_read(&m->mem, r->gpa, data, r->len) < 0) {
			free(data);
			ret = -ENOMEM;
			break;
		}
		img->blobs[img->nr].gpa = r->gpa;
		img->blobs[img->nr].len = r->len;
		img->blobs[img->nr++].data = data;
		img->bytes += r->len;
	}
	if (!ret)
		ret = kvm_save_state(m->kvm);
	for (int i = 0; i < m->nr_vcpus && !ret; i++)
		ret = vcpu_save_state(m->vcpus[i]);
	if (ret < 0) {
		log_warn("machine", "cannot keep the boot state (%s): system_reset will be refused",
			 strerror(-ret));
		free_boot_image(img);
		return;
	}
	log_debug("machine", "boot image kept for resets: %u ranges, %llu bytes", img->nr,
		  (unsigned long long)img->bytes);
	m->boot = img;
}

void machine_boot_image_free(struct machine *m)
{
	free_boot_image(m->boot);
	m->boot = NULL;
	free(m->boot_record);
	m->boot_record = NULL;
}

uint64_t machine_boot_image_bytes(const struct machine *m, unsigned *ranges)
{
	if (ranges)
		*ranges = m->boot ? m->boot->nr : 0;
	return m->boot ? m->boot->bytes : 0;
}

/* On a vCPU thread, after a park: restore the state if a reset happened. */
int machine_vcpu_apply_reset(struct machine *m, int cpu, unsigned *seen_gen)
{
	unsigned gen = atomic_load(&m->reset_gen);
	int ret;

	if (gen == *seen_gen)
		return 0;
	*seen_gen = gen;
	ret = vcpu_restore_state(m->vcpus[cpu]);
	if (ret < 0)
		log_error("machine", "cpu%d: reset: cannot restore the vCPU state (%s)", cpu,
			  strerror(-ret));
	return ret;
}

int machine_reset(struct machine *m, const char **why)
{
	bool was_paused = machine_paused(m);
	int ret;

	*why = NULL;
	if (!m->boot) {
		*why = "no boot state was kept (no guest loaded, or it could not be kept)";
		return -ENOENT;
	}
	if (atomic_load(&m->stopping)) {
		*why = "the machine is shutting down";
		return -ESHUTDOWN;
	}
	ret = machine_pause(m, RESET_PAUSE_MS);
	if (ret < 0) {
		if (!was_paused)
			machine_resume(m);
		*why = "a vCPU did not stop for the reset";
		return -EBUSY;
	}
	pci_bus_reset(m->pci);
	for (unsigned i = 0; i < m->boot->nr; i++) {
		ret = guest_mem_write(&m->mem, m->boot->blobs[i].gpa, m->boot->blobs[i].data,
				      m->boot->blobs[i].len);
		if (ret < 0)
			break;
	}
	if (!ret)
		ret = kvm_restore_state(m->kvm);
	/* vCPUs without a thread (tests that step them) are restored here;
	 * the others on their own thread before their next run. */
	for (int i = 0; i < m->nr_vcpus && !ret; i++)
		if (!m->vcpus[i]->has_thread)
			ret = vcpu_restore_state(m->vcpus[i]);
	if (ret < 0) {
		/* Half a reset is no machine to go on with. */
		log_error("machine", "reset failed (%s): stopping", strerror(-ret));
		machine_request_stop(m, 1);
		*why = "the reset failed; the machine stops";
		return ret;
	}
	atomic_fetch_add(&m->reset_gen, 1);
	m->resets++;
	log_info("machine", "reset (%llu so far)", (unsigned long long)m->resets);
	if (!was_paused)
		machine_resume(m);
	return 0;
}

/* On the main loop: the reset a guest asked for. */
static void guest_reset(void *opaque)
{
	struct machine *m = opaque;
	const char *why = NULL;

	atomic_store(&m->reset_requested, false);
	if (atomic_load(&m->stopping))
		return;
	if (machine_reset(m, &why) < 0) {
		log_error("machine", "the guest's reset cannot be done in place (%s): stopping with "
			  "status %d", why ? why : "?", MACHINE_EXIT_REBOOT);
		machine_request_stop(m, MACHINE_EXIT_REBOOT);
		return;
	}
	machine_monitor_reset_event(m, true, "guest-reset");
}

void machine_request_reset(struct machine *m)
{
	bool expected = false;

	if (m->cfg.no_reboot || !m->boot || !m->nr_vcpus || !m->vcpus[0]->has_thread) {
		machine_request_stop(m, MACHINE_EXIT_REBOOT);
		return;
	}
	/* One at a time: a guest that writes the register twice resets once. */
	if (!atomic_compare_exchange_strong(&m->reset_requested, &expected, true))
		return;
	if (event_loop_call(m->main_loop, guest_reset, m) < 0) {
		atomic_store(&m->reset_requested, false);
		machine_request_stop(m, MACHINE_EXIT_REBOOT);
	}
}
