# linux: kickvm, on the lab's KVM, boots the lab's own Debian kernel with a
# tiny busybox initramfs (lab/guest-init): once as a bzImage (64-bit boot
# protocol), once as the vmlinux inside it (PVH).  The guest prints
# "KICKVM-GUEST: PASS ..." and powers off through ACPI S5: kickvm must exit 0.
# A third boot reboots instead (ACPI reset register) under -no-reboot: kickvm
# must exit 3.  A fourth reboots once without it: kickvm resets the machine in
# place, Linux boots again (the same kernel, initramfs and command line put
# back), sees the CMOS byte it left and powers off: status 0, one reset.
# lab-timeout: 600
. /lab/lib.sh
K=/kickvm/bin/kickvm
N=/lab/nested
# nokaslr: the rip= and stack lines kickvm prints when a boot hits its limit
# can be named from the lab's own kernel (the same one, also nokaslr).
# tsc=reliable: QEMU's emulation reads the host's TSC, and as its thread
# moves between host CPUs the nested guest's vCPUs see their TSCs warp: Linux
# then marks the TSC unstable and keeps time by counting timer ticks
# (refined-jiffies), and on a busy host ticks are lost by the hundred, so
# its clock runs several times slower than the wall (a `sleep 1` once took
# minutes).  With the TSC kept, its clock follows the wall, however slow.
CMDLINE="console=ttyS0 panic=-1 nokaslr tsc=reliable kickvm.boot"
KFLAGS=
status=0

boot() {  # boot LABEL KERNEL [EXPECTED_STATUS [EXTRA_CMDLINE]]
	echo "linux: === $1: kickvm run --kernel $2 ==="
	start=$(date +%s)
	# shellcheck disable=SC2086
	{ limited $K run -m 512M -c 2 --stats $KFLAGS --kernel "$2" --initrd $N/initrd.cpio.gz \
		-a "$CMDLINE=$1${4:+ $4}"; echo "kickvm-exit=$?" > /tmp/rc.$1; } 2>&1 | tee /tmp/$1.log
	rc=$(sed -n 's/kickvm-exit=//p' /tmp/rc.$1)
	secs=$(( $(date +%s) - start ))
	if [ "$rc" != "${3:-0}" ]; then
		echo "linux: FAIL: $1: kickvm $(status_words "$rc") after ${secs}s, expected status ${3:-0}"
		name_functions /tmp/$1.log
		status=1
	elif ! grep -q "KICKVM-GUEST: PASS" /tmp/$1.log; then
		echo "linux: FAIL: $1: kickvm exited $rc but the guest's marker is missing"
		status=1
	else
		echo "linux: ok: $1 booted to init and ended with status $rc in ${secs}s"
	fi
}

boot bzimage $N/vmlinuz
boot pvh $N/vmlinux
KFLAGS=-no-reboot
boot reboot $N/vmlinuz 3 kickvm.end=reboot
KFLAGS=
boot reboot-in-place $N/vmlinuz 0 kickvm.end=reboot-once
log=/tmp/reboot-in-place.log
for want in "KICKVM-GUEST: first boot, resetting" "KICKVM-GUEST: second boot, after the reset" \
	    "machine resets in place: 1 "; do
	grep -q "$want" $log || { echo "linux: FAIL: reboot-in-place: no '$want'"; status=1; }
done
exit $status
