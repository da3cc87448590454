#!/usr/bin/env bash
# Install, build, and boot the demo guest, showing the path every doorbell took.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
exec build/src/cli/kickvm run --stats --info ioeventfds "$@"
