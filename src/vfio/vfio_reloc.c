/*
 * The MSI-X relocation planner (msix_reloc.c) as the device model's
 * vfio_layout_planner: translates the model's physical layout into the
 * planner's terms and the plan back into the layout the guest sees.
 *
 * Only the guest's side comes back (BAR sizes and types, where the emulated
 * table and PBA are); the device's own places stay in the model's physical
 * layout, untouched.  What this means for the BARs follows from the model's
 * rules (vfio_bars.c): below a BAR's physical size every offset is the
 * device's; the emulated table and PBA lie where the guest layout says; the
 * device's own table pages are mapped like the rest of the BAR unless the
 * backend forbids mmap of them (no MSIX_MAPPABLE, no sparse areas), in which
 * case they stay trapped and are forwarded, never emulated.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "kickvm/log.h"
#include "kickvm/vfio_pci.h"
#include "vfio/msix_reloc.h"

_Static_assert(VFIO_MSIX_RELOC_OFF == MSIX_RELOC_OFF && VFIO_MSIX_RELOC_AUTO == MSIX_RELOC_AUTO &&
	       MSIX_RELOC_BAR0 == 0, "the model's and the planner's modes are the same numbers");

int vfio_msix_reloc_planner(const struct vfio_layout *phys, int mode, struct vfio_layout *virt,
			    const char **why)
{
	struct msix_reloc_bar bars[PCI_NUM_BARS];
	struct msix_location loc = { 0 };
	struct msix_reloc_plan plan;
	long page = sysconf(_SC_PAGESIZE);
	char line[160];
	int r;

	if (mode < VFIO_MSIX_RELOC_OFF || mode >= PCI_NUM_BARS) {
		*why = "x-msix-relocation takes off, auto or bar0..bar5";
		return -EINVAL;
	}
	for (int i = 0; i < PCI_NUM_BARS; i++)
		bars[i] = (struct msix_reloc_bar){ .size = phys->bars[i].size,
						   .type = phys->bars[i].type };
	if (phys->has_msix)
		loc = (struct msix_location){
			.table_bir = (unsigned)phys->msix.table_bar,
			.table_offset = (uint32_t)phys->msix.table_offset,
			.pba_bir = (unsigned)phys->msix.pba_bar,
			.pba_offset = (uint32_t)phys->msix.pba_offset };
	r = msix_reloc_plan(bars, &loc, phys->has_msix ? phys->msix_vectors : 0,
			    (enum msix_reloc_mode)mode, page > 4096 ? (uint64_t)page : 4096,
			    &plan, why);
	if (r < 0) {
		if (r == -ENOENT && !*why)
			*why = "x-msix-relocation=barN on a device without MSI-X";
		return r;
	}
	*virt = *phys;
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		const struct msix_reloc_bar *b = &plan.bars[i].bar;

		virt->bars[i] = (struct vfio_bar_layout){ .size = b->upper_half ? 0 : b->size,
							  .type = b->type };
	}
	if (phys->has_msix) {
		virt->msix = (struct vfio_msix_place){
			.table_bar = (int)plan.guest.table_bir,
			.table_offset = plan.guest.table_offset,
			.pba_bar = (int)plan.guest.pba_bir,
			.pba_offset = plan.guest.pba_offset };
		msix_reloc_describe(&plan, line, sizeof(line));
		log_info("vfio", "x-msix-relocation=%s: %s", msix_reloc_mode_name(plan.mode), line);
	}
	return 0;
}
