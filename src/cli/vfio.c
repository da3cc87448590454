/* kickvm vfio-info BDF: what VFIO says about a device bound to vfio-pci. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kickvm/vfio.h"

static void vfio_help(void)
{
	printf("usage: kickvm vfio-info BDF\n"
	       "Open the PCI device BDF (e.g. 0000:00:03.0 or 00:03.0), bound to vfio-pci,\n"
	       "through its IOMMU group and a type1 v2 container, and print its regions\n"
	       "(with sparse mmap areas, MSIX_MAPPABLE, types) and IRQs.\n\n"
	       "Exit status: 0 printed; 1 the device cannot be opened (not bound to\n"
	       "vfio-pci, no IOMMU, ...); 2 a malformed or unknown BDF.\n");
}

int cmd_vfio_info(int argc, char **argv)
{
	char bdf[VFIO_BDF_LEN];
	struct vfio_dev dev;
	const char *why;
	int ret;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		vfio_help();
		return 0;
	}
	if (argc != 2)
		return usage_error("vfio-info ", "vfio-info takes one PCI address (BDF)");
	if (vfio_parse_bdf(argv[1], bdf) < 0)
		return usage_error("vfio-info ", "'%s' is not a PCI address (DDDD:BB:DD.F)", argv[1]);
	ret = vfio_dev_open(bdf, &dev, &why);
	if (ret < 0) {
		fprintf(stderr, "kickvm: vfio-info %s: %s (%s)\n", bdf, why ? why : "error",
			strerror(-ret));
		return ret == -ENODEV && why && !strcmp(why, "no such PCI device") ? EXIT_USAGE : 1;
	}
	ret = vfio_dev_print(&dev, stdout);
	vfio_dev_close(&dev);
	return ret < 0 ? 1 : 0;
}
