#!/usr/bin/env bash
# Install what kickvm needs on Debian 12 (apt-get, only what is missing) and
# build it.  Usage: scripts/setup.sh [BUILD_DIR [meson options...]]
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-system-x86: the lab (a software-emulated host with a real KVM) and the
# QEMU comparison benchmark.
packages=(meson ninja-build gcc pkg-config libcmocka-dev liburing-dev
          clang libclang-rt-14-dev qemu-system-x86 libseccomp-dev libjson-c-dev)
missing=()
for p in "${packages[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "setup: installing ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

build=${1:-build}
shift || true
if [ ! -f "$build/build.ninja" ]; then
	echo "setup: meson setup $build $*"
	meson setup "$build" "$@"
fi
echo "setup: ninja -C $build"
if [ -t 1 ]; then
	ninja -C "$build"        # on a terminal ninja keeps to one status line
else
	# In a log: every warning and error in full, progress every 20 steps.
	ninja -C "$build" | awk '
		/^\[[0-9]+\/[0-9]+\] / { split($1, a, /[][\/]/); n = a[2] + 0; total = a[3] + 0
			if (n % 20 == 0 || n == total) print; next }
		{ print }'
fi
echo "setup: built $build"
