/*
 * The VFIO device model on a real KVM, over the fake backend: a mapped BAR
 * piece is a memory slot (the script guest's reads of it cause no exit and
 * see the device's bytes), x-no-mmap=on traps every access, and an unmasked
 * MSI-X vector hands the device the vector's KVM irqfd while a masked one
 * hands it the eventfd kickvm holds.  Skips without /dev/kvm.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kickvm/pci.h"
#include "kickvm/vfio_pci.h"
#include "vfio/vfio_fake.h"

#define BAR0     0xc0000000ull
#define ECAM_DEV (PCI_ECAM_BASE + (1u << 15))   /* bus 0, slot 1 */

static struct vfio_pci *assign_fake(struct machine *m, bool no_mmap, struct vfio_fake **out)
{
	struct vfio_fake *f = vfio_fake_new("0000:03:00.0", 0x1b36, 0x0010, 0x010802);
	struct vfio_pci_opts o;
	struct vfio_pci *v;
	const char *why;

	assert_non_null(f);
	assert_int_equal(vfio_fake_add_bar(f, 0, 0x4000, PCI_BAR_MEM64, true), 0);
	assert_true(vfio_fake_add_msix(f, 4, 0, 0x2000, 0, 0x3000, true) > 0);
	memcpy(f->mem[0] + 0x100, "\x11\x22\x33\x44", 4);
	vfio_pci_opts_defaults(&o);
	o.slot = 1;
	o.no_mmap = no_mmap;
	o.loop = m->main_loop;
	o.dma_root = m->system_root;
	assert_int_equal(vfio_pci_create(m->pci, &f->base, &o, &v, &why), 0);
	*out = f;
	return v;
}

/* Mapped: two reads of BAR 0 between the syncs, no exit; trapped: two. */
static void check_reads(bool no_mmap)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	struct vfio_fake *f;
	struct vfio_pci *v = assign_fake(m, no_mmap, &f);
	struct vfio_pci_stats st;
	uint64_t exits = 0;

	vm_load_script(m, "w4 0x%llx 0x%llx 1; w4 0x%llx 0 1; w2 0x%llx 6 1; sync 1; cpl3; "
		       "r4 0x%llx 2 0x44332211; cpl0; sync 2; exit 0",
		       (unsigned long long)ECAM_DEV + 0x10, (unsigned long long)BAR0,
		       (unsigned long long)ECAM_DEV + 0x14, (unsigned long long)ECAM_DEV + 0x04,
		       (unsigned long long)BAR0 + 0x100);
	vm_run_to_sync(m, 0, 1, NULL);
	vm_run_to_sync(m, 0, 2, &exits);
	vfio_pci_get_stats(v, &st);
	assert_int_equal(exits, no_mmap ? 2 : 0);
	assert_int_equal(st.trapped_reads, no_mmap ? 2 : 0);
	assert_int_equal(st.mapped_bytes, no_mmap ? 0 : 0x2000);
	vm_expect_exit(m, 0, 0);
	/* The machine owns nothing of the device: take it down first. */
	vfio_pci_destroy(v);
	machine_destroy(m);
}

static void test_mapped_bar_reads_without_exits(void **state)
{
	(void)state;
	check_reads(false);
}

static void test_no_mmap_traps_reads(void **state)
{
	(void)state;
	check_reads(true);
}

static void cfg_write(struct machine *m, unsigned off, uint32_t v, unsigned len)
{
	pci_bus_config_write(m->pci, 0, 1 << 3, off, v, len);
}

/* The device signals KVM directly for an unmasked vector, kickvm's held
 * eventfd for a masked one. */
static void test_msix_vector_uses_irqfd_when_unmasked(void **state)
{
	struct machine *m = vm_create(1, IOEVENTFD_AUTO);
	struct vfio_fake *f;
	struct vfio_pci *v = assign_fake(m, false, &f);
	struct vfio_pci_stats st;
	int held;

	(void)state;
	cfg_write(m, 0x10, (uint32_t)BAR0, 4);
	cfg_write(m, 0x14, 0, 4);
	cfg_write(m, 0x04, 0x0006, 2);
	cfg_write(m, 0x42, 0x8000, 2);
	assert_int_equal(f->irq_enabled[VFIO_IRQ_MSIX], 4);
	held = f->irq_fd[VFIO_IRQ_MSIX][0];
	address_space_write(m->as_memory, BAR0 + 0x2000, 0xfee00000, 4);
	address_space_write(m->as_memory, BAR0 + 0x2008, 0x31, 4);
	address_space_write(m->as_memory, BAR0 + 0x200c, 0, 4);   /* unmask */
	vfio_pci_get_stats(v, &st);
	assert_int_equal(st.vectors_on_irqfd, 1);
	assert_int_not_equal(f->irq_fd[VFIO_IRQ_MSIX][0], held);
	address_space_write(m->as_memory, BAR0 + 0x200c, 1, 4);   /* mask again */
	vfio_pci_get_stats(v, &st);
	assert_int_equal(st.vectors_on_irqfd, 0);
	assert_int_equal(f->irq_fd[VFIO_IRQ_MSIX][0], held);
	vfio_pci_destroy(v);
	machine_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mapped_bar_reads_without_exits),
		cmocka_unit_test(test_no_mmap_traps_reads),
		cmocka_unit_test(test_msix_vector_uses_irqfd_when_unmasked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
