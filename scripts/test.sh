#!/usr/bin/env bash
# Builds (installing what is missing) and runs the whole test suite: GoogleTest through ctest, and the
# tools' end-to-end scripts. GPU tests skip, saying so, where no CUDA device is present.
#   scripts/test.sh [--cpu-only]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=release
[ "${1:-}" = "--cpu-only" ] && preset=cpu-only
scripts/setup.sh --no-data ${1:+"$1"}
ctest --preset "$preset"
