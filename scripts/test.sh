#!/usr/bin/env bash
# Install, build and run the whole test suite.
#   scripts/test.sh             the normal build (build/): the quick part (unit,
#                               kvm, cli: under a minute), then the lab (QEMU
#                               emulating a host: 8 groups, about 15 minutes on a
#                               quiet 2-core host), each lab group printed as it
#                               starts and ends, with its time
#   scripts/test.sh --quick     the quick part only (no lab)
#   scripts/test.sh --sanitize  an ASan+UBSan build (build-asan/)
#   scripts/test.sh --fuzz [S]  libFuzzer targets (clang, build-fuzz/), S seconds each
set -euo pipefail
cd "$(dirname "$0")/.."

summary() {  # summary BUILD LOGBASE...: the plain closing line CI reads
	local dir=$1/meson-logs ok=0 fail=0 skip=0 base
	shift
	for base in "$@"; do
		[ -f "$dir/$base.json" ] || continue
		ok=$((ok + $(grep -c '"result": "OK"' "$dir/$base.json" || true)))
		fail=$((fail + $(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$dir/$base.json" || true)))
		skip=$((skip + $(grep -c '"result": "SKIP"' "$dir/$base.json" || true)))
	done
	echo "$ok passed, $fail failed, $skip skipped"
}

case "${1:-}" in
--sanitize)
	scripts/setup.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	status=0
	meson test -C build-asan --print-errorlogs --num-processes 2 || status=$?
	summary build-asan testlog
	exit $status
	;;
--fuzz)
	# Each target first replays its corpus kept in the repository
	# (tests/fuzz/corpus/NAME/, read-only: a regression check), then fuzzes
	# with it as seeds; new inputs go to build-fuzz/corpus/NAME only.  To
	# fold finds back into the repository, keeping it small:
	#   build-fuzz/tests/fuzz/NAME -merge=1 tests/fuzz/corpus/NAME build-fuzz/corpus/NAME
	secs=${2:-30}
	CC=clang scripts/setup.sh build-fuzz -Dfuzz=true -Dtests=false
	status=0
	for f in build-fuzz/tests/fuzz/fuzz_*; do
		[ -f "$f" ] && [ -x "$f" ] || continue
		name=$(basename "$f")
		corpus=build-fuzz/corpus/$name
		seeds=()
		[ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
		mkdir -p "$corpus"
		if [ ${#seeds[@]} -gt 0 ]; then
			echo "fuzz: $name: replaying $(ls "${seeds[0]}" | wc -l) corpus files"
			"$f" -runs=0 "${seeds[0]}" >"build-fuzz/$name.replay.log" 2>&1 ||
				{ status=1; tail -50 "build-fuzz/$name.replay.log"; continue; }
		fi
		echo "fuzz: $name for ${secs}s"
		"$f" -max_total_time="$secs" -print_final_stats=0 "$corpus" "${seeds[@]}" \
			>"build-fuzz/$name.log" 2>&1 || { status=1; tail -50 "build-fuzz/$name.log"; }
	done
	exit $status
	;;
""|--quick)
	scripts/setup.sh build
	status=0
	rm -f build/meson-logs/quick.json build/meson-logs/lab.json
	echo "test: $(date +%T) the quick part: unit, kvm and cli tests (under a minute)"
	meson test -C build --print-errorlogs --num-processes 2 --no-suite lab --logbase quick ||
		status=$?
	if [ "${1:-}" != --quick ]; then
		echo "test: $(date +%T) the lab: 8 groups one after another, about 15 minutes" \
		     "(scripts/test.sh --quick leaves it out)"
		# --verbose: each group's start and end lines (lab/run.sh) as they come.
		meson test -C build --print-errorlogs --num-processes 1 --suite lab --verbose \
			--logbase lab || status=$?
	fi
	echo "test: $(date +%T) done"
	summary build quick lab
	exit $status
	;;
*)
	echo "usage: scripts/test.sh [--quick | --sanitize | --fuzz [SECONDS]]" >&2
	exit 2
	;;
esac
