/* kickvm info: what the host KVM offers and what kickvm will do with it. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kickvm/kvm.h"

int cmd_info(int argc, char **argv)
{
	struct kvm *kvm;
	const char *why = NULL;
	int ret;

	if (argc > 1) {
		if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
			printf("usage: kickvm info\nPrint the KVM capabilities kickvm looks at.\n");
			return 0;
		}
		return usage_error("info ", "unexpected argument '%s'", argv[1]);
	}
	ret = kvm_open(NULL, &kvm, &why);
	if (ret < 0) {
		fprintf(stderr, "kickvm: KVM unavailable: %s (%s)\n", why ? why : "cannot open /dev/kvm",
			strerror(-ret));
		return 1;
	}
	kvm_print_caps(kvm, stdout);
	/* Guests that time themselves (the virtio bench under QEMU too) need it. */
	{
		struct vcpu *v;

		if (vcpu_create(kvm, 0, &v) == 0) {
			printf("  %-22s %-6d guest TSC frequency (kHz)\n", "tsc_khz", vcpu_get_tsc_khz(v));
			vcpu_destroy(v);
		}
	}
	kvm_close(kvm);
	return 0;
}
