#!/usr/bin/env bash
# kickvm-edu.elf against QEMU's own edu device (1234:11e8): the guest the lab's
# vfio-edu group runs under kickvm, checked here against the device itself.
#
#   tests/qemu/test_edu_qemu.sh GUEST_EDU_ELF QEMU_GUEST_SH
#
# QEMU with KVM where /dev/kvm can be opened, else QEMU's TCG (slower, the
# same device); exit 77 (skip) without qemu-system-x86_64.  Every QEMU run
# has a timeout shorter than meson's.
set -uo pipefail
elf=$1 runner=$2
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi
echo "qemu-edu: QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') with $accel"
status=0
fail() { echo "qemu-edu: FAIL: $*"; status=1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run EXPECTED_STATUS WITH_EDU(0|1) CMDLINE: the guest's console in $out.
run() {
	local want=$1 dev=() rc
	[ "$2" = 1 ] && dev=(--qemu-arg -device --qemu-arg edu)
	timeout 100 "$runner" --accel $accel --timeout 60 "${dev[@]}" "$elf" "$3" >"$out" 2>&1
	rc=$?
	sed 's/^/  | /' "$out"
	[ $rc = "$want" ] || fail "'$3': exit $rc, expected $want"
}
report() {  # report NAME: the value of the guest's "REPORT NAME=V" line
	sed -n "s/^REPORT $1=\([0-9]*\).*/\1/p" "$out" | tr -d '\r'
}

# The whole functional test: identification, liveness, factorials,
# raises, DMA both ways, MSI counted exactly.  raises=6: 4 factorials + 6
# raises + 3 DMA = 13 interrupts.
run 0 1 "mode=test raises=6"
grep -q "KICKVM-EDU: PASS test" "$out" || fail "mode=test: no PASS line"
[ "$(report edu.interrupts)" = 13 ] || fail "mode=test: $(report edu.interrupts) interrupts, expected 13"
[ "$(report edu.expected_interrupts)" = 13 ] || fail "mode=test: the guest expected $(report edu.expected_interrupts) interrupts"
[ "$(report edu.writes)" -gt 0 ] && [ "$(report edu.reads)" -gt "$(report edu.polls)" ] ||
	fail "mode=test: no register access counts"

# The repeated-write mode: 1 other write + 300 of the value.
run 0 1 "mode=writes value=0x600dcafe count=300"
grep -q "KICKVM-EDU: PASS writes (300 x 0x600dcafe to 0x04)" "$out" || fail "mode=writes: no PASS line"
[ "$(report edu.writes)" = 301 ] || fail "mode=writes: $(report edu.writes) writes reported, expected 301"

# Without the device the guest says so and fails; a bad mode is a usage error.
run 1 0 "mode=test"
grep -q "no edu device (1234:11e8)" "$out" || fail "without an edu: no clear message"
run 2 1 "mode=nonsense"
[ $status = 0 ] && echo "qemu-edu: PASS ($accel)"
exit $status
