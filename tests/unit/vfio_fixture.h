/*
 * The fixture of the VFIO device-model tests: a PCI world with guest RAM, an
 * event loop, and a fake backend the test dresses up as a device before
 * starting the model over it; config and memory accessors; the flat range
 * at an address.  Functions are static inline so each test uses what it
 * needs.
 */
#ifndef KICKVM_TEST_VFIO_FIXTURE_H
#define KICKVM_TEST_VFIO_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kickvm/event.h"
#include "kickvm/memory.h"
#include "kickvm/pci.h"
#include "kickvm/vfio_pci.h"
#include "pci_world.h"
#include "vfio/vfio_fake.h"

#define RAM_SIZE  (1u << 20)
#define BAR0_ADDR 0xc0000000ull
#define BAR2_ADDR 0xc1000000ull
#define ROM_ADDR  0xc2000000ull
#define IO_ADDR   0xc100

struct fx {
	struct pci_world w;
	struct msi_log log;
	struct event_loop *loop;
	struct mem_region *ram;
	void *ram_host;
	struct vfio_fake *f;
	struct vfio_pci *v;
	uint8_t devfn;
	unsigned resets_at_exit;
};

static inline int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	msi_log_init(&x->log);
	assert_int_equal(pci_world_create(&x->w, msi_log_hook, &x->log), 0);
	x->loop = event_loop_new("vfio-test");
	x->ram_host = calloc(1, RAM_SIZE);
	x->ram = mr_new_ram("ram", RAM_SIZE, x->ram_host, -1, 0);
	assert_int_equal(mr_add_subregion(x->w.system, 0, x->ram, 0), 0);
	/* An nvme-like function: BAR0 16 KiB with the MSI-X table and PBA in it. */
	x->f = vfio_fake_new("0000:01:00.0", 0x1b36, 0x0010, 0x010802);
	assert_non_null(x->f);
	x->f->resets_at_destroy = &x->resets_at_exit;
	*state = x;
	return 0;
}

/* The model owns the fake: both are gone after this. */
static inline void stop(struct fx *x)
{
	vfio_pci_destroy(x->v);
	x->v = NULL;
	x->f = NULL;
}

static inline int teardown(void **state)
{
	struct fx *x = *state;

	if (x->v)
		stop(x);
	else if (x->f)
		x->f->base.ops->destroy(&x->f->base);
	mr_del_subregion(x->w.system, x->ram);
	mr_free(x->ram);
	free(x->ram_host);
	event_loop_free(x->loop);
	pci_world_destroy(&x->w);
	msi_log_cleanup(&x->log);
	free(x);
	return 0;
}

static inline void start_with(struct fx *x, struct vfio_pci_opts *o)
{
	const char *why = NULL;

	o->loop = x->loop;
	o->dma_root = x->w.system;
	assert_int_equal(vfio_pci_create(x->w.bus, &x->f->base, o, &x->v, &why), 0);
	x->devfn = vfio_pci_device(x->v)->devfn;
}

static inline void start(struct fx *x)
{
	struct vfio_pci_opts o;

	vfio_pci_opts_defaults(&o);
	start_with(x, &o);
}

static inline void nvme_like(struct fx *x)
{
	assert_int_equal(vfio_fake_add_bar(x->f, 0, 0x4000, PCI_BAR_MEM64, true), 0);
	assert_true(vfio_fake_add_msix(x->f, 4, 0, 0x2000, 0, 0x3000, true) > 0);
}

static inline uint32_t cfg_read(struct fx *x, unsigned off, unsigned len)
{
	return pci_bus_config_read(x->w.bus, 0, x->devfn, off, len);
}

static inline void cfg_write(struct fx *x, unsigned off, uint32_t v, unsigned len)
{
	pci_bus_config_write(x->w.bus, 0, x->devfn, off, v, len);
}

static inline uint64_t rd(struct fx *x, uint64_t addr, unsigned len)
{
	uint64_t v = 0;

	address_space_read(x->w.as_mem, addr, &v, len);
	return v;
}

static inline void wr(struct fx *x, uint64_t addr, uint64_t v, unsigned len)
{
	address_space_write(x->w.as_mem, addr, v, len);
}

static inline void place_bar0(struct fx *x, bool mem_on)
{
	cfg_write(x, 0x10, (uint32_t)BAR0_ADDR, 4);
	cfg_write(x, 0x14, 0, 4);
	cfg_write(x, 0x04, mem_on ? 0x0006 : 0x0004, 2);
}

/* The flat range covering @addr. */
struct seen {
	bool found, ramd;
	uint64_t addr, size;
	char name[64];
};

struct lookup {
	uint64_t addr;
	struct seen s;
};

static inline void look(const struct flat_range *fr, void *opaque)
{
	struct lookup *l = opaque;

	if (l->addr >= fr->addr && l->addr - fr->addr < fr->size) {
		l->s.found = true;
		l->s.ramd = mr_is_ram_device(fr->mr);
		l->s.addr = fr->addr;
		l->s.size = fr->size;
		snprintf(l->s.name, sizeof(l->s.name), "%s", mr_name(fr->mr));
	}
}

static inline struct seen range_at(struct fx *x, uint64_t addr)
{
	struct lookup l = { .addr = addr };

	address_space_for_each_range(x->w.as_mem, look, &l);
	return l.s;
}

static inline void signal_fd(int fd)
{
	uint64_t one = 1;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

/* Let the model's loop see the held-interrupt eventfds. */
static inline void run_loop(struct fx *x)
{
	while (event_loop_run_once(x->loop, 20) > 0)
		;
}

#endif
