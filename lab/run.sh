#!/usr/bin/env bash
# Boot the lab and run one group of tests inside it.
#
#   lab/run.sh GROUP [BUILD_DIR]      groups: the files in lab/groups/
#
# The lab is QEMU's software emulation of an AMD host (TCG, -cpu max: SVM
# with nested paging) with an Intel IOMMU, running a Debian kernel: inside it
# kickvm gets an ordinary KVM and vfio-pci (lab/README.md).  The console
# goes to BUILD_DIR/lab/GROUP.log.  Exit: 0 the group passed, 1 it failed
# (or timed out), 77 skipped with the reason (no QEMU, no network for the
# packages, or a group not written yet), 2 bad usage.
#
# Limits: the whole run ends after LAB_TIMEOUT seconds (default: the group's
# "# lab-timeout: N" line, else 300); inside, every kickvm boot ends after
# LAB_BOOT_TIMEOUT seconds (default 180, see lab/lib.sh), so a hang names its
# boot and kickvm prints its state.  Both grow x1-x4 with the host's load per
# CPU (LAB_SLOW=N sets the factor).  LAB_MEM: the lab's RAM (default 2G).
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

limit=${LAB_TIMEOUT:-$(sed -n 's/^# lab-timeout: //p' "lab/groups/$group.sh" | head -1)}
limit=${limit:-300}
# A busy host slows QEMU's emulation down as much as it is overloaded: both
# limits grow with the load per CPU at the start (x1 to x4), or by LAB_SLOW.
slow=${LAB_SLOW:-$(awk -v n="$(nproc)" '{ f = int($1 / n + 0.99); print (f < 1 ? 1 : (f > 4 ? 4 : f)) }' /proc/loadavg)}
limit=$((limit * slow))
boot_limit=$((${LAB_BOOT_TIMEOUT:-180} * slow))
start=$(date +%s)
echo "lab: $(date +%T) group $group started (limits: ${limit}s, each boot ${boot_limit}s; load $(cut -d' ' -f1 /proc/loadavg); console: $log)"
# -smp 1: one of five -smp 2 runs hung (lab/README.md).  -no-reboot: a panic
# (panic=-1) ends QEMU instead of looping.  nokaslr here and in the nested
# guests: the same kernel at the same addresses, so the lab's /proc/kallsyms
# names the nested guest's functions (lab/lib.sh, name_functions).
# shellcheck disable=SC2086
timeout --foreground -k 10 "$limit" \
	qemu-system-x86_64 -accel tcg -M q35 -cpu max -smp 1 -m "${LAB_MEM:-2G}" \
	-kernel "$out/vmlinuz" -initrd "$out/lab.cpio.gz" \
	-device intel-iommu,intremap=on $extra \
	-append "console=ttyS0 intel_iommu=on no_timer_check panic=-1 nokaslr kickvm.group=$group kickvm.boot_timeout=$boot_limit" \
	-nographic -no-reboot -nodefaults -serial stdio -monitor none \
	</dev/null >"$log" 2>&1
qemu_rc=$?
secs=$(( $(date +%s) - start ))

result=$(grep -a "KICKVM-LAB: RESULT $group " "$log" | tail -1 | tr -d "\r" | sed "s/.*KICKVM-LAB: RESULT/KICKVM-LAB: RESULT/")
case $result in
*" PASS "*) echo "lab: $(date +%T) group $group ended: PASS in ${secs}s (${result#*PASS })"; exit 0;;
*" SKIP "*) echo "lab: SKIP: $group: $(grep -a -B3 'KICKVM-LAB: RESULT' "$log" | head -3 | tr -d '\r' | tr '\n' ' ')"; exit 77;;
esac
[ $qemu_rc = 124 ] && why="timed out after ${secs}s" || why="QEMU exited $qemu_rc after ${secs}s"
echo "lab: $(date +%T) group $group ended: FAIL: ${result:-no result line}; $why; last lines of $log:"
tail -40 "$log" | tr -d '\r'
exit 1
