#!/usr/bin/env bash
# Configures and builds Basin into ./build (Release). Extra arguments go to cmake;
# BASIN_TARGETS="basin basind" builds only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BASIN_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@"
if [ -n "${BASIN_TARGETS:-}" ]; then
  # shellcheck disable=SC2086
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target ${BASIN_TARGETS}
else
  cmake --build "$BUILD_DIR" -j"$(nproc)"
fi
