#!/usr/bin/env bash
# kickvm vs QEMU 7.2 on the same virtio-blk workload: the same guest
# (kickvm-virtio.elf, mode=bench, polled), the same image file, the same
# cache mode, 4 KiB random reads and writes at each queue depth, ioeventfd on
# and off.  This host is noisy (identical runs differ by 2x and more), so
# each side runs --repeat times, interleaved, and the medians are compared;
# min-max ranges are printed too.  QEMU runs its best configuration by
# default: the disk in an iothread (polling, like kickvm's; with ioeventfd
# off QEMU allows only its main loop), aio=threads
# (QEMU's default for cache=writeback; --qemu-aio io_uring for the other).
#
#   bench/compare-qemu.sh [--build DIR] [--reqs N] [--cache writeback|none]
#                         [--qd N]... [--repeat N] [--qemu-aio threads|io_uring]
#                         [--qemu-main-loop]
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
	echo "usage: bench/compare-qemu.sh [--build DIR] [--reqs N] [--cache writeback|none] [--qd N]..." >&2
	echo "                             [--repeat N] [--qemu-aio threads|io_uring] [--qemu-main-loop]" >&2
	exit 2
}

build=build reqs=20000 cache=writeback qds=() repeat=3 qemu_aio=threads qemu_io=(--iothread)
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--reqs) reqs=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--qd) qds+=("$2"); shift 2 ;;
	--repeat) repeat=$2; shift 2 ;;
	--qemu-aio) qemu_aio=$2; shift 2 ;;
	--qemu-main-loop) qemu_io=(); shift ;;
	*) usage ;;
	esac
done
[ ${#qds[@]} -gt 0 ] || qds=(1 8)
[ "$cache" = none ] && qemu_aio=io_uring
kickvm=$build/src/cli/kickvm
guest=$build/guest/kickvm-virtio.elf
[ -x "$kickvm" ] && [ -r "$guest" ] || { echo "compare-qemu: build first (scripts/setup.sh)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "compare-qemu: no qemu-system-x86_64 (apt-get install qemu-system-x86)" >&2; exit 77; }

img=$(mktemp "${TMPDIR:-/tmp}/kickvm-cmp-XXXXXX")
results=$(mktemp "${TMPDIR:-/tmp}/kickvm-cmp-res-XXXXXX")
trap 'rm -f "$img" "$results"' EXIT
head -c $((64 << 20)) /dev/urandom >"$img"
sync "$img"  # no writeback of a fresh image during the runs
tsc_khz=$("$kickvm" info | awk '$1 == "tsc_khz" { print $2 }')
qd_args=()
for q in "${qds[@]}"; do qd_args+=(--qd "$q"); done

# One line per measurement in $results: who op qd ioeventfd req_per_s
kickvm_runs() {
	"$kickvm" bench blk --json --reqs "$reqs" --file "$img" --cache "$cache" "${qd_args[@]}" |
		tr '{' '\n' | sed -n 's/.*"op":"\([a-z]*\)","qd":\([0-9]*\),"ioeventfd":"\([a-z]*\)","req_per_s":\([0-9.]*\).*/kickvm \1 \2 \3 \4/p' \
		>>"$results"
}

qemu_run() {  # op qd on|off
	local r io=("${qemu_io[@]}")
	# QEMU refuses an iothread without ioeventfd: the main loop then.
	[ "$3" = off ] && io=()
	r=$(bench/qemu-guest.sh --disk "$img" --cache "$cache" --aio "$qemu_aio" "${io[@]}" \
		--ioeventfd "$3" --timeout 300 "$guest" \
		"mode=bench op=$1 qd=$2 reqs=$reqs tsc_khz=$tsc_khz quiet=1" 2>/dev/null |
		grep -o 'req_per_s=[0-9]*' | tail -1 | cut -d= -f2) || true
	echo "qemu $1 $2 $3 ${r:-0}" >>"$results"
}

for ((i = 1; i <= repeat; i++)); do
	echo "round $i of $repeat..." >&2
	kickvm_runs
	for q in "${qds[@]}"; do
		for op in randread randwrite; do
			for io in on off; do qemu_run "$op" "$q" "$io"; done
		done
	done
done

printf 'virtio-blk 4 KiB random I/O, %s requests, cache=%s, same guest and image, median of %s runs\n' \
	"$reqs" "$cache" "$repeat"
printf 'QEMU 7.2: aio=%s, disk work in its %s (ioeventfd=off: main loop, QEMU refuses an\n' \
	"$qemu_aio" "$([ ${#qemu_io[@]} -gt 0 ] && echo "iothread" || echo "main loop")"
printf 'iothread without it); kickvm: aio=auto, an iothread\n'
printf '%-10s %3s %5s %22s %22s %8s\n' op qd ioefd "kickvm (min-max)" "qemu (min-max)" kick/qemu
for q in "${qds[@]}"; do
	for op in randread randwrite; do
		for io in on off; do
			awk -v op="$op" -v qd="$q" -v io="$io" '
				function med(a, n,   i, j, t) {
					for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
					return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
				}
				$2 == op && $3 == qd && $4 == io { if ($1 == "kickvm") k[++nk] = $5; else m[++nm] = $5 }
				END {
					km = med(k, nk); qm = med(m, nm)
					printf "%-10s %3s %5s %8.0f (%5.0fk-%5.0fk) %8.0f (%5.0fk-%5.0fk) %8s\n", op, qd, io,
						km, k[1] / 1000, k[nk] / 1000, qm, m[1] / 1000, m[nm] / 1000,
						(qm > 0 ? sprintf("%.2f", km / qm) : "-")
				}' "$results"
		done
	done
done
