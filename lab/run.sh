#!/usr/bin/env bash
# Boot the lab and run one group of tests inside it.
#
#   lab/run.sh GROUP [BUILD_DIR]      groups: the files in lab/groups/
#
# The lab is QEMU's software emulation of an AMD host (TCG, -cpu max: SVM
# with nested paging) with an Intel IOMMU, running a Debian kernel: inside it
# kickvm gets an ordinary KVM and vfio-pci (FIELD-NOTES §10).  The console
# goes to BUILD_DIR/lab/GROUP.log.  Exit: 0 the group passed, 1 it failed
# (or timed out), 77 skipped with the reason (no QEMU, no network for the
# packages, or a group not written yet), 2 bad usage.
#
# Environment: LAB_TIMEOUT seconds (default 300), LAB_MEM (default 2G).
set -uo pipefail
cd "$(dirname "$0")/.."
group=${1:-}
build=$(realpath "${2:-build}")
out=$build/lab
log=$out/$group.log
skip() { echo "lab: SKIP: $*"; exit 77; }

if [ -z "$group" ] || [ ! -f "lab/groups/$group.sh" ]; then
	echo "usage: lab/run.sh GROUP [BUILD_DIR]; groups: $(cd lab/groups && ls *.sh | sed 's/\.sh$//' | tr '\n' ' ')" >&2
	exit 2
fi
# A group not written yet says so in a "# lab-skip:" line: no need to boot.
reason=$(sed -n 's/^# lab-skip: //p' "lab/groups/$group.sh" | head -1)
[ -z "$reason" ] || skip "$group: $reason"
command -v qemu-system-x86_64 >/dev/null ||
	skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
command -v timeout >/dev/null || skip "no timeout(1)"

bash lab/build.sh "$build" || exit $?

# A group asks for its QEMU devices in "# lab-qemu:" lines.
extra=$(sed -n 's/^# lab-qemu: //p' "lab/groups/$group.sh" | sed "s|@LAB@|$out|g")
# The nvme's disk starts empty on every boot: no data from an earlier run
# can stand in for what a test wrote.
case $extra in *nvme.img*) rm -f "$out/nvme.img"; truncate -s 1M "$out/nvme.img";; esac

start=$(date +%s)
echo "lab: booting group $group (console: $log)"
# -smp 1: one of five -smp 2 runs hung (FIELD-NOTES §10).  -no-reboot: a panic
# (panic=-1) ends QEMU instead of looping.  no_timer_check: on a busy host the
# emulated boot can miss the kernel's timer-through-IO-APIC check, which then
# panics ("timer doesn't work through Interrupt-remapped IO-APIC").
# shellcheck disable=SC2086
timeout --foreground -k 10 "${LAB_TIMEOUT:-300}" \
	qemu-system-x86_64 -accel tcg -M q35 -cpu max -smp 1 -m "${LAB_MEM:-2G}" \
	-kernel "$out/vmlinuz" -initrd "$out/lab.cpio.gz" \
	-device intel-iommu,intremap=on $extra \
	-append "console=ttyS0 intel_iommu=on panic=-1 no_timer_check kickvm.group=$group" \
	-nographic -no-reboot -nodefaults -serial stdio -monitor none \
	</dev/null >"$log" 2>&1
qemu_rc=$?
secs=$(( $(date +%s) - start ))

result=$(grep -a "KICKVM-LAB: RESULT $group " "$log" | tail -1 | tr -d '\r')
case $result in
*" PASS "*) echo "lab: $group PASS in ${secs}s (${result#*PASS })"; exit 0;;
*" SKIP "*) echo "lab: SKIP: $group: $(grep -a -B3 'KICKVM-LAB: RESULT' "$log" | head -3 | tr -d '\r' | tr '\n' ' ')"; exit 77;;
esac
[ $qemu_rc = 124 ] && why="timed out after ${secs}s" || why="QEMU exited $qemu_rc after ${secs}s"
echo "lab: $group FAIL: ${result:-no result line}; $why; last lines of $log:"
tail -40 "$log" | tr -d '\r'
exit 1
