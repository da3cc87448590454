/* Building blocks of the PCI tests and fuzz targets (see pci_world.h). */
#include <stddef.h>

#include "pci_world.h"

int pci_world_create(struct pci_world *w, void (*msi_hook)(void *opaque, uint64_t addr,
							    uint32_t data),
		     void *msi_opaque)
{
	struct pci_host_config cfg = { 0 };
	int ret;

	w->system = mr_new_container("system", UINT64_MAX);
	w->io = mr_new_container("io", 0x10000);
	w->as_mem = address_space_new("memory", AS_MMIO, w->system);
	w->as_io = address_space_new("io", AS_PIO, w->io);
	cfg = (struct pci_host_config){ .system_root = w->system, .io_root = w->io,
					.msi_hook = msi_hook, .msi_hook_opaque = msi_opaque };
	ret = pci_bus_create(&cfg, &w->bus);
	if (ret < 0) {
		w->bus = NULL;
		pci_world_destroy(w);
	}
	return ret;
}

void pci_world_destroy(struct pci_world *w)
{
	if (w->bus)
		pci_bus_destroy(w->bus);
	address_space_free(w->as_mem);
	address_space_free(w->as_io);
	mr_free(w->system);
	mr_free(w->io);
}

void msi_log_init(struct msi_log *log)
{
	pthread_mutex_init(&log->lock, NULL);
	atomic_store(&log->n, 0);
}

void msi_log_cleanup(struct msi_log *log)
{
	pthread_mutex_destroy(&log->lock);
}

/* The message is stored before the count says so. */
void msi_log_hook(void *opaque, uint64_t addr, uint32_t data)
{
	struct msi_log *log = opaque;
	unsigned n;

	pthread_mutex_lock(&log->lock);
	n = atomic_load(&log->n);
	if (n < MSI_LOG_MAX)
		log->msgs[n] = (struct msi_msg){ addr, data };
	atomic_store(&log->n, n + 1);
	pthread_mutex_unlock(&log->lock);
}

uint32_t msi_log_data(struct msi_log *log, unsigned i)
{
	uint32_t data;

	pthread_mutex_lock(&log->lock);
	data = log->msgs[i].data;
	pthread_mutex_unlock(&log->lock);
	return data;
}

static void collect(const struct ioeventfd *ev, void *opaque)
{
	struct ioeventfd_list *l = opaque;

	if (l->n < 8) {
		l->addr[l->n] = ev->addr;
		l->len[l->n] = ev->len;
	}
	l->n++;
}

struct ioeventfd_list ioeventfds_in(struct address_space *as)
{
	struct ioeventfd_list l = { 0 };

	address_space_for_each_ioeventfd(as, collect, &l);
	return l;
}
