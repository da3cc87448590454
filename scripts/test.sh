#!/usr/bin/env bash
# Install, build and run the whole test suite.
#   scripts/test.sh             the normal build (build/)
#   scripts/test.sh --sanitize  an ASan+UBSan build (build-asan/)
#   scripts/test.sh --fuzz [S]  libFuzzer targets (clang, build-fuzz/), S seconds each
set -euo pipefail
cd "$(dirname "$0")/.."

summary() {  # the plain closing line CI reads
	local log=$1/meson-logs/testlog.json ok fail skip
	ok=$(grep -c '"result": "OK"' "$log" || true)
	fail=$(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log" || true)
	skip=$(grep -c '"result": "SKIP"' "$log" || true)
	echo "$ok passed, $fail failed, $skip skipped"
}

case "${1:-}" in
--sanitize)
	scripts/setup.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	status=0
	meson test -C build-asan --print-errorlogs --num-processes 2 || status=$?
	summary build-asan
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
"")
	scripts/setup.sh build
	status=0
	meson test -C build --print-errorlogs --num-processes 2 || status=$?
	summary build
	exit $status
	;;
*)
	echo "usage: scripts/test.sh [--sanitize | --fuzz [SECONDS]]" >&2
	exit 2
	;;
esac
