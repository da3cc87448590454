#!/usr/bin/env bash
# Run a kickvm test guest under QEMU (microvm, pcie=on, KVM) with virtio-pci
# devices: the independent peer our guest drivers and benchmarks are checked
# against.  Prints the guest console and exits with the guest's status.
#
#   bench/qemu-guest.sh [options] GUEST.elf ['guest command line']
#     --disk IMG            a virtio-blk-pci on raw image IMG (repeatable:
#                           disk=0, disk=1, ... in the guest, in this order)
#     --cache MODE          writeback (default) | none   (none = cache=none,aio=io_uring)
#     --aio MODE            threads | io_uring  (default: threads for writeback)
#     --iothread            the disks' work in an iothread (QEMU's polling loop),
#                           not in the main loop
#     --ioeventfd on|off    for every virtio-blk-pci (default on)
#     --serial ID           virtio-blk serial (GET_ID) of the disks that follow
#     --rng                 add a virtio-rng-pci
#     --modern-only         disable-legacy=on (ids 0x1042/0x1044, no I/O BAR)
#     --mem SIZE            guest RAM (default 256M)
#     --timeout SECONDS     kill QEMU after this long (default 300)
#     --accel kvm|tcg       QEMU's accelerator (default kvm; tcg where there is
#                           no /dev/kvm: correct, not fast)
#     --qemu-arg ARG        pass ARG to QEMU as it is (repeatable)
#
# Exit status: the guest's (isa-debug-exit makes QEMU exit with
# (status << 1) | 1, decoded here); 124 on timeout; 125 when QEMU itself
# failed or the guest ended without an exit status.
#
# -cpu qemu64,-cx16: our KVM's CPL0 emulator fails on cmpxchg16b, so the
# CPU must not advertise it (docs/kvm-notes.md).
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
	exit 125
}

cache=writeback ioeventfd=on serial='' mem=256M timeout_s=300 modern=0 aio='' iothread=0 accel=kvm
disks=() serials=() rng=0 qemu_extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--disk) disks+=("$2"); serials+=("$serial"); shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--aio) aio=$2; shift 2 ;;
	--iothread) iothread=1; shift ;;
	--ioeventfd) ioeventfd=$2; shift 2 ;;
	--serial) serial=$2; shift 2 ;;
	--rng) rng=1; shift ;;
	--modern-only) modern=1; shift ;;
	--mem) mem=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--accel) accel=$2; shift 2 ;;
	--qemu-arg) qemu_extra+=("$2"); shift 2 ;;
	-h|--help) usage ;;
	--) shift; break ;;
	-*) echo "qemu-guest.sh: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
elf=$1 cmdline=${2:-}
[ -r "$elf" ] || { echo "qemu-guest.sh: cannot read $elf" >&2; exit 125; }

case "$cache" in
writeback) drive_cache="cache=writeback" ;;
none) drive_cache="cache=none"; aio=${aio:-io_uring} ;;
*) echo "qemu-guest.sh: --cache writeback|none, not $cache" >&2; exit 125 ;;
esac
case "$aio" in
'') ;;
threads|io_uring) drive_cache="$drive_cache,aio=$aio" ;;
*) echo "qemu-guest.sh: --aio threads|io_uring, not $aio" >&2; exit 125 ;;
esac
case "$accel" in
kvm|tcg) ;;
*) echo "qemu-guest.sh: --accel kvm|tcg, not $accel" >&2; exit 125 ;;
esac
case "$ioeventfd" in
on|off) ;;
*) echo "qemu-guest.sh: --ioeventfd on|off, not $ioeventfd" >&2; exit 125 ;;
esac

# shellcheck disable=SC2054  # commas inside QEMU option values
args=(-M microvm,pcie=on -accel "$accel" -cpu qemu64,-cx16 -smp 1 -m "$mem"
      -nodefaults -no-user-config -nographic -serial stdio
      -device isa-debug-exit,iobase=0xf4,iosize=4
      -kernel "$elf" -append "$cmdline")
legacy=
[ "$modern" = 1 ] && legacy=",disable-legacy=on"
io=
if [ "$iothread" = 1 ]; then
	args+=(-object iothread,id=io0)
	io=",iothread=io0"
fi
for i in "${!disks[@]}"; do
	[ -r "${disks[$i]}" ] || { echo "qemu-guest.sh: cannot read ${disks[$i]}" >&2; exit 125; }
	dev="virtio-blk-pci,drive=d$i,ioeventfd=$ioeventfd$legacy$io"
	[ -n "${serials[$i]}" ] && dev="$dev,serial=${serials[$i]}"
	args+=(-drive "id=d$i,file=${disks[$i]},format=raw,if=none,$drive_cache" -device "$dev")
done
[ "$rng" = 1 ] && args+=(-device "virtio-rng-pci$legacy")
args+=("${qemu_extra[@]}")

errlog=$(mktemp)
trap 'rm -f "$errlog"' EXIT
status=0
timeout -k 5 "$timeout_s" qemu-system-x86_64 "${args[@]}" </dev/null 2>"$errlog" || status=$?
# QEMU's own complaints; the pni warning is qemu64's, harmless under KVM.
grep -v "host doesn't support requested feature: CPUID.01H:ECX.pni" "$errlog" >&2 || true

if [ "$status" = 124 ] || [ "$status" = 137 ]; then
	echo "qemu-guest.sh: timed out after ${timeout_s}s" >&2
	exit 124
fi
# QEMU also exits 1 when it cannot start: then its error is on stderr.
if [ "$status" = 1 ] && grep -v "warning:" "$errlog" | grep -q "qemu-system-x86_64:"; then
	echo "qemu-guest.sh: QEMU failed" >&2
	exit 125
fi
if [ $((status & 1)) = 1 ]; then
	exit $((status >> 1))
fi
echo "qemu-guest.sh: QEMU exited with $status without a guest exit status" >&2
exit 125
