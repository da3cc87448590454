# hostile: the hostile-guest suite (tests/kvm/test_hostile.c) alone on the
# lab's KVM: malformed virtio rings case by case, polled, with MSI-X
# interrupts, and with ioeventfd off.  The suites group runs it as well;
# this one is for working on it.
export KICKVM_VIRTIO_GUEST=/kickvm/guest/kickvm-virtio.elf
export TMPDIR=/tmp
timeout 280 /kickvm/tests/kvm/test_hostile 2>&1
