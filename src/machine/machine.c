/*
 * Building and tearing down a machine: KVM, RAM, the address spaces mirrored
 * into KVM, vCPUs, the main loop, iothreads and the standard devices.
 * Running it is in vcpu_loop.c; what it shows about itself in stats.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/power.h"
#include "hw/rtc_cmos.h"
#include "hw/sysdev.h"
#include "hw/testdev.h"
#include "hw/uart8250.h"
#include "kickvm/boot.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"
#include "kickvm/pci.h"

#include "machine/machine_internal.h"

#define MiB (1ull << 20)
/* Guest-physical address width we model: enough for any BAR placement. */
#define SYSTEM_ADDR_SPACE (1ull << 48)
#define IO_ADDR_SPACE     0x10000ull

void machine_config_defaults(struct machine_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ram_size = 256 * MiB;
	cfg->nr_vcpus = 1;
	cfg->ioeventfd = IOEVENTFD_AUTO;
}

static int create_address_spaces(struct machine *m)
{
	static const char *const bank_names[GUEST_MEM_MAX_BANKS] = {
		"ram-below-4g", "ram-above-4g", "ram2", "ram3",
	};
	int ret = 0;

	m->system_root = mr_new_container("system", SYSTEM_ADDR_SPACE);
	m->io_root = mr_new_container("io", IO_ADDR_SPACE);
	if (!m->system_root || !m->io_root)
		return -ENOMEM;
	memory_transaction_begin();
	for (unsigned i = 0; i < m->mem.nr_banks && !ret; i++) {
		const struct guest_mem_bank *b = &m->mem.banks[i];

		m->ram[i] = mr_new_ram(bank_names[i], b->size, b->hva, m->mem.memfd, b->fd_offset);
		ret = m->ram[i] ? mr_add_subregion(m->system_root, b->gpa, m->ram[i], 0) : -ENOMEM;
	}
	memory_transaction_commit();
	if (ret < 0)
		return ret;
	m->as_memory = address_space_new("memory", AS_MMIO, m->system_root);
	m->as_io = address_space_new("io", AS_PIO, m->io_root);
	if (!m->as_memory || !m->as_io)
		return -ENOMEM;
	kvm_mem_listener_init(&m->memory_listener, m->kvm, false, m->cfg.ioeventfd);
	kvm_mem_listener_init(&m->io_listener, m->kvm, true, m->cfg.ioeventfd);
	address_space_set_listener(m->as_memory, &kvm_mem_listener_ops, &m->memory_listener);
	address_space_set_listener(m->as_io, &kvm_mem_listener_ops, &m->io_listener);
	return 0;
}

static int check_ioeventfd_mode(struct machine *m, const char **why)
{
	const struct kvm_caps *caps = kvm_get_caps(m->kvm);

	if (m->cfg.ioeventfd == IOEVENTFD_ON && !caps->ioeventfd) {
		*why = "--ioeventfd=on but KVM has no KVM_CAP_IOEVENTFD";
		return -ENOTSUP;
	}
	if (m->cfg.ioeventfd == IOEVENTFD_AUTO && !caps->ioeventfd)
		log_warn("machine", "KVM has no ioeventfd: every doorbell takes the userspace path");
	return 0;
}

int machine_create(const struct machine_config *cfg, struct machine **out, const char **why)
{
	struct machine *m;
	int ret;

	*why = NULL;
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > MACHINE_MAX_VCPUS) {
		*why = "vCPU count out of range (1-8)";
		return -EINVAL;
	}
	if (cfg->ram_size < 16 * MiB || (cfg->ram_size & (MiB - 1))) {
		*why = "memory size must be a whole number of MiB, at least 16";
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	machine_pause_init(m);
	ret = kvm_open(cfg->kvm_path, &m->kvm, why);
	if (ret < 0)
		goto fail;
	ret = check_ioeventfd_mode(m, why);
	if (ret < 0)
		goto fail;
	ret = kvm_create_irqchip(m->kvm, false);
	if (ret < 0) {
		*why = "KVM_CREATE_IRQCHIP failed";
		goto fail;
	}
	ret = guest_mem_create(&m->mem, cfg->ram_size, KICKVM_MMIO_HOLE);
	if (ret < 0) {
		*why = "cannot allocate guest RAM";
		goto fail;
	}
	ret = create_address_spaces(m);
	if (ret < 0) {
		*why = "cannot build the address spaces";
		goto fail;
	}
	for (int i = 0; i < cfg->nr_vcpus; i++) {
		ret = vcpu_create(m->kvm, i, &m->vcpus[i]);
		if (ret < 0) {
			*why = "KVM_CREATE_VCPU failed";
			goto fail;
		}
		m->nr_vcpus++;
	}
	m->main_loop = event_loop_new("main");
	if (!m->main_loop) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = uart8250_create(m, KICKVM_UART_PORT, cfg->console, &m->uart);
	if (!ret)
		ret = sysdev_create(m, &m->sysdev);
	if (!ret)
		ret = testdev_create(m, m->main_loop, &m->testdev);
	if (!ret)
		ret = power_create(m, &m->power);
	if (!ret)
		ret = rtc_cmos_create(m, &m->rtc);
	if (!ret) {
		struct pci_host_config pcfg = {
			.system_root = m->system_root, .io_root = m->io_root, .kvm = m->kvm,
		};

		ret = pci_bus_create(&pcfg, &m->pci);
	}
	if (ret < 0) {
		*why = "cannot create the standard devices";
		goto fail;
	}
	*out = m;
	return 0;
fail:
	machine_destroy(m);
	return ret;
}

int machine_iothread(struct machine *m, const char *name, struct iothread **out)
{
	int ret;

	for (int i = 0; i < m->nr_iothreads; i++) {
		if (strcmp(iothread_name(m->iothreads[i]), name) == 0) {
			*out = m->iothreads[i];
			return 0;
		}
	}
	if (m->nr_iothreads == MACHINE_MAX_IOTHREADS)
		return -ENOSPC;
	ret = iothread_new(name, &m->iothreads[m->nr_iothreads]);
	if (ret < 0)
		return ret;
	*out = m->iothreads[m->nr_iothreads++];
	return 0;
}

static int load_guest(struct machine *m, const char *path, const char *cmdline,
		      const char **why)
{
	struct vcpu_boot_state bs;
	struct boot_image img;
	enum boot_protocol proto;
	int ret;

	*why = NULL;
	ret = boot_load_elf_file(&m->mem, path, &img, why);
	if (ret < 0)
		return ret;
	ret = boot_choose(&img, (enum boot_protocol)m->cfg.boot, &proto, why);
	if (ret < 0)
		return ret;
	log_info("machine", "booting %s (%s entry)", path, boot_protocol_name(proto));
	ret = boot_setup_tables(&m->mem, cmdline ? cmdline : "");
	if (ret < 0) {
		*why = ret == -E2BIG ? "command line too long" : "cannot write boot tables";
		return ret;
	}
	for (int i = 0; i < m->nr_vcpus; i++) {
		/* Under PVH the other vCPUs stay in wait-for-SIPI. */
		if (boot_vcpu_state(&img, proto, i, &bs) == 0)
			continue;
		ret = vcpu_set_boot_state(m->vcpus[i], &bs);
		if (ret < 0) {
			*why = "cannot set the vCPU registers";
			return ret;
		}
	}
	return 0;
}

int machine_load_guest(struct machine *m, const char *path, const char *cmdline,
		       const char **why)
{
	int ret;

	machine_boot_record_begin(m);
	ret = load_guest(m, path, cmdline, why);
	machine_boot_record_end(m, ret == 0);
	return ret;
}

void machine_request_stop(struct machine *m, int status)
{
	bool expected = false;

	/* The first reason to stop wins: a guest that asserts, then exits 0,
	 * still failed. */
	if (atomic_compare_exchange_strong(&m->stopping, &expected, true))
		m->exit_status = status;
	machine_pause_wake(m);
	for (int i = 0; i < m->nr_vcpus; i++)
		vcpu_kick(m->vcpus[i]);
	if (m->main_loop)
		event_loop_stop(m->main_loop);
}

void machine_destroy(struct machine *m)
{
	if (!m)
		return;
	machine_monitor_free(m);
	machine_boot_image_free(m);
	/* Devices first: their doorbells deregister from KVM through the
	 * address spaces, which must still exist; and their work stops before
	 * the iothreads it runs on. */
	machine_remove_devices(m);
	if (m->pci)
		pci_bus_destroy(m->pci);
	rtc_cmos_destroy(m->rtc);
	power_destroy(m->power);
	testdev_destroy(m->testdev);
	sysdev_destroy(m->sysdev);
	uart8250_destroy(m->uart);
	for (int i = 0; i < m->nr_iothreads; i++)
		iothread_free(m->iothreads[i]);
	if (m->as_memory)
		address_space_free(m->as_memory);
	if (m->as_io)
		address_space_free(m->as_io);
	kvm_mem_listener_destroy(&m->memory_listener);
	kvm_mem_listener_destroy(&m->io_listener);
	for (unsigned i = 0; i < GUEST_MEM_MAX_BANKS; i++) {
		if (m->ram[i]) {
			mr_del_subregion(m->system_root, m->ram[i]);
			mr_free(m->ram[i]);
		}
	}
	if (m->system_root)
		mr_free(m->system_root);
	if (m->io_root)
		mr_free(m->io_root);
	for (int i = 0; i < m->nr_vcpus; i++)
		vcpu_destroy(m->vcpus[i]);
	if (m->main_loop)
		event_loop_free(m->main_loop);
	if (m->mem.total)
		guest_mem_destroy(&m->mem);
	if (m->kvm)
		kvm_close(m->kvm);
	free(m);
}
