#!/usr/bin/env bash
# kickvm vs QEMU 7.2 on the same virtio-blk workload: the same guest
# (kickvm-virtio.elf, mode=bench), the same image file, the same cache mode,
# 4 KiB random reads and writes at each queue depth, ioeventfd on and off.
# Prints requests per second side by side, taken in one run.
#
#   bench/compare-qemu.sh [--build DIR] [--reqs N] [--cache writeback|none] [--qd N]...
set -euo pipefail
cd "$(dirname "$0")/.."

build=build reqs=20000 cache=writeback qds=()
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--reqs) reqs=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--qd) qds+=("$2"); shift 2 ;;
	*) echo "usage: bench/compare-qemu.sh [--build DIR] [--reqs N] [--cache writeback|none] [--qd N]..." >&2; exit 2 ;;
	esac
done
[ ${#qds[@]} -gt 0 ] || qds=(1 8)
kickvm=$build/src/cli/kickvm
guest=$build/guest/kickvm-virtio.elf
[ -x "$kickvm" ] && [ -r "$guest" ] || { echo "compare-qemu: build first (scripts/setup.sh)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "compare-qemu: no qemu-system-x86_64 (apt-get install qemu-system-x86)" >&2; exit 77; }

img=$(mktemp "${TMPDIR:-/tmp}/kickvm-cmp-XXXXXX")
trap 'rm -f "$img"' EXIT
head -c $((64 << 20)) /dev/urandom >"$img"
sync "$img"  # no writeback of a fresh image during the runs
tsc_khz=$("$kickvm" info | awk '$1 == "tsc_khz" { print $2 }')

qd_args=()
for q in "${qds[@]}"; do qd_args+=(--qd "$q"); done
kick_json=$("$kickvm" bench blk --json --reqs "$reqs" --file "$img" --cache "$cache" "${qd_args[@]}")

kick_rate() {  # op qd on|off
	echo "$kick_json" | tr '{' '\n' | grep "\"op\":\"$1\",\"qd\":$2,\"ioeventfd\":\"$3\"" |
		sed 's/.*"req_per_s":\([0-9.]*\).*/\1/'
}

qemu_rate() {  # op qd on|off
	bench/qemu-guest.sh --disk "$img" --cache "$cache" --ioeventfd "$3" --timeout 300 "$guest" \
		"mode=bench op=$1 qd=$2 reqs=$reqs tsc_khz=$tsc_khz quiet=1" 2>/dev/null |
		grep -o 'req_per_s=[0-9]*' | tail -1 | cut -d= -f2
}

printf 'virtio-blk 4 KiB random I/O, %s requests, cache=%s, same guest and image\n' "$reqs" "$cache"
printf '%-10s %4s %10s %12s %12s %8s\n' op qd ioeventfd kickvm qemu kickvm/qemu
for q in "${qds[@]}"; do
	for op in randread randwrite; do
		for io in on off; do
			k=$(kick_rate "$op" "$q" "$io")
			qm=$(qemu_rate "$op" "$q" "$io")
			ratio=$(awk -v k="${k:-0}" -v q="${qm:-0}" 'BEGIN { if (q > 0) printf "%.2f", k / q; else print "-" }')
			printf '%-10s %4s %10s %12.0f %12.0f %8s\n' "$op" "$q" "$io" "${k:-0}" "${qm:-0}" "$ratio"
		done
	done
done
